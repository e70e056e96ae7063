"""deploy/compose.yaml (docker is not available here: checked as data, not run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from livereplay_server import config

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def test_compose_runs_two_redis_daemons_with_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    daemons = {name: s for name, s in services.items() if "build" in s}
    assert len(daemons) == 2 and "redis" in services
    assert "ports" not in services["redis"]  # Redis is not published to the host
    for service in daemons.values():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert all(p.startswith("127.0.0.1:") for p in service["ports"])
        env: dict[str, str] = service["environment"]
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        parser = argparse.ArgumentParser()
        config.add_arguments(parser)
        settings = config.settings_from_args(parser.parse_args([]))
        assert settings.backend == "redis"
        assert settings.redis_url.startswith("redis://redis:")
        known = {config.env_name(f) for f in config.Settings.__dataclass_fields__}
        assert set(env) <= known
