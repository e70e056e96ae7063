"""Issue 12, "the first hour": the `livereplay` command, `make run` and the README as a
new user meets them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import jwt
import pytest

import livereplay
from livereplay.cli.common import parse_size
from livereplay_server import config

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 40
OTHER_KEY = "o" * 40


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`livereplay ARGS` in a child process, with no LIVEREPLAY_* variable but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREPLAY_")}
    return subprocess.run(
        [sys.executable, "-m", "livereplay", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one error line of a refused command line, after that command's own usage."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"usage: livereplay {command}"), result.stderr
    (line,) = [row for row in result.stderr.splitlines() if "error:" in row]
    assert line.startswith(f"livereplay {command}: error: "), line
    return line


# -- environment values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVEREPLAY_PORT", "abc"),
        ("LIVEREPLAY_MAX_AGE_S", "soon"),
        ("LIVEREPLAY_HEARTBEAT_S", "nan"),
        ("LIVEREPLAY_WS_PER_MESSAGE_DEFLATE", "maybe"),
        ("LIVEREPLAY_LOG_FORMAT", "xml"),
        ("LIVEREPLAY_MAX_BYTES_PER_SESSION", "lots"),
    ],
)
def test_a_bad_environment_value_is_one_error_naming_it(name: str, value: str) -> None:
    line = error_line(run_cli("serve", env={name: value}), "serve")
    assert name in line
    # ... and it no longer breaks the other subcommands.
    token = run_cli("token", "--session", "s", "--reader-key", KEY, env={name: value})
    assert token.returncode == 0, token.stderr
    assert run_cli("tail", "--help", env={name: value}).returncode == 0


def test_a_bad_url_in_the_environment_is_one_error_naming_it() -> None:
    line = error_line(run_cli("tail", "s", env={"LIVEREPLAY_URL": "ftp://x"}), "tail")
    assert "$LIVEREPLAY_URL" in line and "not a daemon URL" in line


# -- sizes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8388608", 8 * 1024 * 1024),
        ("8MiB", 8 * 1024 * 1024),
        ("8 MiB", 8 * 1024 * 1024),
        ("8mib", 8 * 1024 * 1024),
        ("64KiB", 65536),
        ("64Ki", 65536),
        ("1GiB", 1024**3),
        ("1.5KiB", 1536),
        ("500k", 500_000),
        ("8M", 8_000_000),
        ("8MB", 8_000_000),
        ("1G", 1_000_000_000),
        ("100B", 100),
    ],
)
def test_sizes_take_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MiB", "8 XiB", "-1", "8MiBs", "1e3"])
def test_what_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_every_size_flag_and_variable_takes_units_as_the_readme_writes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = [f.name for f in fields(config.Settings) if config.is_size(f.name)]
    assert {"max_bytes_per_session", "memory_budget_bytes", "max_header_bytes"} <= set(sizes)
    args = [arg for name in sizes for arg in ("--" + config.flag_name(name), "2MiB")]
    settings = config.parse(args)
    assert all(getattr(settings, name) == 2 * 1024 * 1024 for name in sizes)
    monkeypatch.setenv("LIVEREPLAY_MAX_BYTES_PER_SESSION", "8MiB")
    monkeypatch.setenv("LIVEREPLAY_MEMORY_BUDGET_BYTES", "1 GiB")
    settings = config.parse([])
    assert settings.max_bytes_per_session == 8 * 1024 * 1024
    assert settings.memory_budget_bytes == 1024**3
    # The README's own table: `--max-header-bytes` 64 KiB.
    assert config.parse(["--max-header-bytes", "64 KiB"]).max_header_bytes == 65536


def test_serve_takes_a_size_on_its_command_line() -> None:
    """8MiB passes; the command stops on the bad port that follows, not on the size."""
    result = run_cli("serve", "--max-bytes-per-session", "8MiB", "--port", "99999")
    assert "--port must be" in error_line(result, "serve")


# -- prefixes, token, version ---------------------------------------------------


def test_flags_are_never_abbreviated() -> None:
    line = error_line(run_cli("serve", "--max-age", "3"), "serve")
    assert "unrecognized arguments: --max-age" in line


def test_token_takes_the_key_itself_with_reader_key(tmp_path: Path) -> None:
    result = run_cli("token", "--session", "s-1", "--reader-key", KEY)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), KEY, algorithms=["HS256"])
    assert claims["sub"] == "s-1"


def test_token_key_precedence_is_what_its_help_says(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")

    def signed_with(result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode == 0, result.stderr
        for key in (KEY, OTHER_KEY):
            try:
                jwt.decode(result.stdout.strip(), key, algorithms=["HS256"])
                return key
            except jwt.InvalidSignatureError:
                pass
        raise AssertionError("signed with neither key")

    env_key = {"LIVEREPLAY_READER_KEY": OTHER_KEY}
    env_file = {"LIVEREPLAY_READER_KEY_FILE": str(key_file)}
    # A flag wins over the environment.
    assert signed_with(run_cli("token", "--session", "s", "--reader-key", KEY, env=env_key)) == KEY
    flag_file = ("--reader-key-file", str(key_file))
    assert signed_with(run_cli("token", "--session", "s", *flag_file, env=env_key)) == KEY
    # Without a flag, either variable; as for `serve`, not both.
    assert signed_with(run_cli("token", "--session", "s", env=env_key)) == OTHER_KEY
    assert signed_with(run_cli("token", "--session", "s", env=env_file)) == KEY
    both = run_cli("token", "--session", "s", env={**env_key, **env_file})
    assert "not both" in error_line(both, "token")
    flags = run_cli("token", "--session", "s", "--reader-key", KEY, *flag_file)
    assert "not allowed with" in error_line(flags, "token")
    help_text = " ".join(run_cli("token", "--help").stdout.split())
    assert (
        "--reader-key or --reader-key-file; without either, $LIVEREPLAY_READER_KEY or "
        "$LIVEREPLAY_READER_KEY_FILE (one of them, not both)" in help_text
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--session", "s", "--reader-key", "short"],
        ["--session", "s", "--reader-key-fi", "x"],
        ["--session", "s", "--reader-key-file", "/nonexistent/key"],
        ["--reader-key", KEY],
    ],
)
def test_token_errors_show_the_token_usage(args: list[str]) -> None:
    error_line(run_cli("token", *args), "token")


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"livereplay {version('livereplay')}"
    assert livereplay.__version__ == version("livereplay")


# -- make run and the README --------------------------------------------------------


def make_dry_run(target: str, tmp_path: Path) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    result = subprocess.run(
        [make, "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    run = make_dry_run("run", tmp_path)
    assert "-e ./client -e ./server" in run
    assert "--group dev" not in run and "[redis]" not in run
    assert re.search(r"livereplay serve\s*$", run, re.MULTILINE)  # make may add its own lines
    test = make_dry_run("test", tmp_path)
    assert "-e ./client -e './server[redis]'" in test and "--group dev" in test


def test_the_readme_quick_start_says_what_a_first_hour_needs() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/livereplay" in quick_start
    assert "source .venv/bin/activate" in quick_start
    assert "120 s" in quick_start
    assert "/openapi.json" in readme
    assert "`--as-writer`" in readme
