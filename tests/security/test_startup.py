"""Safe defaults at start-up, secrets from files, and minting reader tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from livereplay_server import config
from tests.support.daemon import DaemonProcess

KEY = "k" * 40


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livereplay", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_refuses_to_listen_openly_without_auth_and_says_why(host: str) -> None:
    result = run_cli("serve", "--host", host, "--port", "1")
    assert result.returncode == 2
    assert "--writer-token" in result.stderr and "--insecure" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3"])
def test_a_reader_key_alone_does_not_open_writing_on_an_open_address(host: str) -> None:
    """Reads would need a token, but anyone could append, trim, delete and ingest."""
    result = run_cli("serve", "--host", host, "--port", "1", "--reader-key", KEY)
    assert result.returncode == 2
    assert "--writer-token" in result.stderr and "--insecure" in result.stderr
    (line,) = [row for row in result.stderr.splitlines() if "error:" in row]
    assert "write" in line
    with pytest.raises(ValueError, match="--writer-token"):
        config.parse(["--host", host, "--reader-key", KEY])


@pytest.mark.parametrize(
    "extra",
    [
        ["--insecure"],
        ["--writer-token", "s3cret"],
        ["--writer-token", "s3cret", "--reader-key", KEY],
        ["--reader-key", KEY, "--insecure"],
    ],
)
def test_auth_or_insecure_allows_an_open_address(extra: list[str]) -> None:
    settings = config.parse(["--host", "0.0.0.0", *extra])
    assert settings.host == "0.0.0.0"


def test_loopback_needs_no_auth() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        assert config.parse(["--host", host]).host == host


def test_short_reader_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        config.parse(["--reader-key", "short"])


async def test_secrets_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "writer").write_text("from-a-file\n")
    with DaemonProcess(args=["--writer-token-file", str(tmp_path / "writer")]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            body = {"events": [{"revision": 1, "payload": 1}]}
            denied = await client.post("/v1/sessions/s/events", json=body)
            assert denied.status_code == 401
            allowed = await client.post(
                "/v1/sessions/s/events", json=body, headers={"Authorization": "Bearer from-a-file"}
            )
            assert allowed.status_code == 200


def test_token_command_mints_a_scoped_expiring_token(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    result = run_cli(
        "token", "--session", "s-1", "--ttl", "15m", "--reader-key-file", str(key_file)
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), KEY, algorithms=["HS256"])
    assert claims["sub"] == "s-1" and claims["exp"] - claims["iat"] == 900
    missing = run_cli("token", "--prefix", "team-", env={"PATH": "/usr/bin"})
    assert missing.returncode == 2 and "reader key" in missing.stderr


@pytest.mark.parametrize("scope", ["--prefix", "--session"])
def test_token_command_refuses_an_empty_scope(tmp_path: Path, scope: str) -> None:
    """`--prefix ""` would mint a token that reads every session."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    result = run_cli("token", scope, "", "--reader-key-file", str(key_file))
    assert result.returncode == 2
    assert result.stdout == "" and "empty" in result.stderr
