"""deploy/compose.yaml's tokens: from the environment into secret files the daemons read.

Docker is not available here, so the file is checked as data: each daemon's
command and environment, on top of the image's, must give settings the daemon
accepts, with the secrets compose mounts at /run/secrets/<name>.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from livereplay_server import cli, config
from tests.deploy import dockerfile

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "deploy" / "compose.yaml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_PATH.read_text())
IMAGE = dockerfile.parse((ROOT / "Dockerfile").read_text())
# Where compose mounts a service's secrets (not configurable outside swarm).
SECRETS_DIR = "/run/secrets/"


def daemons() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in COMPOSE["services"].items() if "build" in s}


def settings_for(
    service: dict[str, Any], secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> config.Settings:
    """What `livereplay serve` would run with in this service's container."""
    env = {**dockerfile.runtime_env(IMAGE, {}), **service["environment"]}
    for name in list(os.environ):
        if name.startswith("LIVEREPLAY_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("LIVEREPLAY_"):
            monkeypatch.setenv(name, str(value))
    argv = [*dockerfile.command(IMAGE.final), *service.get("command", [])]
    assert argv[0] == "livereplay"
    argv = [a.replace(SECRETS_DIR, f"{secrets}/") for a in argv[1:]]
    args = cli.build_parser().parse_args(argv)
    return config.settings_from_args(args)


def test_the_build_is_the_repo_dockerfile() -> None:
    for service in daemons().values():
        context = (COMPOSE_PATH.parent / service["build"]["context"]).resolve()
        assert context == ROOT and (context / service["build"]["dockerfile"]).is_file()


def test_tokens_come_from_the_environment_as_secret_files() -> None:
    secrets = COMPOSE["secrets"]
    by_source = {s["environment"]: name for name, s in secrets.items()}
    assert sorted(by_source) == ["LIVEREPLAY_READER_KEY", "LIVEREPLAY_WRITER_TOKEN"]
    for service in daemons().values():
        assert set(service["secrets"]) == set(secrets)
        # Never as plain environment variables of the daemon (visible in `docker inspect`).
        assert not {"LIVEREPLAY_WRITER_TOKEN", "LIVEREPLAY_READER_KEY"} & set(
            service["environment"]
        )
        flags = dict(a.removeprefix("--").split("=", 1) for a in service["command"])
        assert flags == {
            "writer-token-file": SECRETS_DIR + by_source["LIVEREPLAY_WRITER_TOKEN"],
            "reader-key-file": SECRETS_DIR + by_source["LIVEREPLAY_READER_KEY"],
        }


def test_each_daemon_starts_with_the_mounted_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in COMPOSE["secrets"]:
        (tmp_path / name).write_text(f"{name}-{'x' * 40}\n")
    for service in daemons().values():
        settings = settings_for(service, tmp_path, monkeypatch)
        assert settings.host == "0.0.0.0" and settings.backend == "redis"
        assert settings.writer_token == f"livereplay_writer_token-{'x' * 40}"
        assert settings.reader_key == f"livereplay_reader_key-{'x' * 40}"
        # Compose waits longer than the daemon needs to stop before it kills it.
        stop = float(service["stop_grace_period"].removesuffix("s"))
        assert stop > settings.shutdown_grace_s
        # The health check asks the port the daemon listens on.
        assert f"127.0.0.1:{settings.port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_a_daemon_with_empty_secrets_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty variable gives an empty secret: the daemon says so rather than listening openly."""
    for name in COMPOSE["secrets"]:
        (tmp_path / name).write_text("")
    service = next(iter(daemons().values()))
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0"):
        settings_for(service, tmp_path, monkeypatch)
