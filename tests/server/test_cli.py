"""The `livereplay` command: help, flags, environment variables and its logs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

from livereplay_server import config
from livereplay_server.cli import build_parser
from tests.support.daemon import DaemonProcess
from tests.support.wire import append, open_stream, recv_until


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livereplay", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_help_explains_every_serve_flag_and_its_environment_variable() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    text = " ".join(serve.stdout.split())
    for f in fields(config.Settings):
        assert "--" + config.flag_name(f.name) in text
        assert config.env_name(f.name) in text


def test_client_commands_are_part_of_the_cli() -> None:
    result = run_cli("append", "--help")
    assert result.returncode == 0 and "--revision" in result.stdout


def test_environment_sets_defaults_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEREPLAY_MAX_EVENTS_PER_SESSION", "7")
    monkeypatch.setenv("LIVEREPLAY_WS_PER_MESSAGE_DEFLATE", "true")
    parser = build_parser()
    settings = config.settings_from_args(parser.parse_args(["serve"]))
    assert settings.max_events_per_session == 7 and settings.ws_per_message_deflate is True
    settings = config.settings_from_args(
        parser.parse_args(["serve", "--max-events-per-session", "9"])
    )
    assert settings.max_events_per_session == 9


@pytest.mark.parametrize(
    "args",
    [["--max-age-s", "0"], ["--port", "70000"], ["--log-format", "xml"], ["--heartbeat-s", "x"]],
)
def test_invalid_flags_are_refused_with_a_message(args: list[str]) -> None:
    result = run_cli("serve", *args)
    assert result.returncode == 2
    assert "error:" in result.stderr


async def test_logs_are_json_lines_with_uvicorn_lines_and_no_payloads() -> None:
    secret = "payload-that-must-not-be-logged"
    with DaemonProcess(args=["--log-level", "debug"]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "s-1", [{"secret": secret}])
            await client.get("/v1/sessions/s-1/events", params={"after": "earliest"})
            async with open_stream(daemon.stream_url("s-1", "earliest")) as ws:
                await recv_until(ws, "caught_up")
        daemon.stop()
        lines = [line for line in daemon.logs().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {"event", "level", "timestamp"} <= set(records[0])
    assert any(r.get("logger") == "uvicorn.error" for r in records)
    assert any(r.get("event") == "started" for r in records)
    assert all(secret not in line for line in lines)


def test_readme_documents_every_flag() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for f in fields(config.Settings):
        assert "`--" + config.flag_name(f.name) + "`" in readme, f.name
