"""deploy/kubernetes/: valid for the Kubernetes versions we claim, and consistent with the image.

kubernetes-validate checks each object against the bundled OpenAPI schemas
(strict: unknown fields are errors). The rest checks what a schema cannot: that
the sidecar starts with the image's settings, that its probes, secrets and
ports line up, and that the shutdown steps fit in the grace period.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from livereplay_server import config
from tests.deploy import dockerfile

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
# Native sidecars are GA from 1.33; the newest schemas bundled are checked too.
VERSIONS = ["1.33", kubernetes_validate.latest_version()]
# Seconds between the daemon's own shutdown grace and a SIGKILL.
SPARE_S = 2
IMAGE = dockerfile.parse((ROOT / "Dockerfile").read_text())


def objects() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects() if o["kind"] == kind]
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = by_kind("Deployment")["spec"]["template"]["spec"]
    return spec


def sidecar() -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in pod_spec()["initContainers"] if c["name"] == "livereplay"
    ]
    (container,) = found
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (`100m`, `768Mi`, `1`) as a number of cores or bytes."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(text))
    assert match, f"unexpected quantity {text!r}"
    return float(match.group(1)) * units[match.group(2)]


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_pass_strict_schema_validation(version: str) -> None:
    assert MANIFESTS and objects()
    for obj in objects():
        kubernetes_validate.validate(obj, version, strict=True)


def test_schema_validation_rejects_a_misspelt_field() -> None:
    broken = by_kind("Deployment")
    broken["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_livereplay_is_a_native_sidecar_with_probes_on_its_own_port() -> None:
    container = sidecar()
    assert container["restartPolicy"] == "Always"  # what makes an init container a sidecar
    assert not any(c["name"] == "livereplay" for c in pod_spec()["containers"])
    (port,) = container["ports"]
    image_env = dockerfile.runtime_env(IMAGE, {})
    assert str(port["containerPort"]) == image_env["LIVEREPLAY_PORT"]
    paths = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe]["httpGet"]
        assert action["port"] == port["name"]
        paths[probe] = action["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",  # 503 while stopping, or while Redis is down
        "livenessProbe": "/healthz",  # never restart the daemon because Redis is down
    }
    # The runtime reaches its sidecar on loopback, on the same port.
    runtime = next(c for c in pod_spec()["containers"] if c["name"] == "runtime")
    assert env_of(runtime)["LIVEREPLAY_URL"] == f"http://127.0.0.1:{port['containerPort']}"


def test_sidecar_starts_with_the_image_settings_and_the_mounted_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = sidecar()
    spec = pod_spec()
    (mount,) = container["volumeMounts"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    files = {item["path"]: item["key"] for item in secret["items"]}
    env = {**dockerfile.runtime_env(IMAGE, {}), **env_of(container)}
    # Each *_FILE setting points into the Secret's mount; stand in real files for them.
    for name in ("LIVEREPLAY_WRITER_TOKEN_FILE", "LIVEREPLAY_READER_KEY_FILE"):
        path = Path(env[name])
        assert path.parent == Path(mount["mountPath"]) and path.name in files
        stand_in = tmp_path / path.name
        stand_in.write_text("s" * 64 + "\n")
        env[name] = str(stand_in)
    for name in list(os.environ):
        if name.startswith("LIVEREPLAY_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("LIVEREPLAY_"):
            monkeypatch.setenv(name, value)
    settings = config.parse([])  # raises if the daemon would refuse to start
    assert settings.host == "0.0.0.0" and settings.writer_token and settings.reader_key
    # The runtime writes with the writer token from the same Secret.
    runtime = next(c for c in spec["containers"] if c["name"] == "runtime")
    refs = [e["valueFrom"]["secretKeyRef"] for e in runtime["env"] if "valueFrom" in e]
    assert {"name": secret["secretName"], "key": files["writer-token"]} in refs
    # Only the owner group can read the token files; the pod runs as the image's user.
    assert secret["defaultMode"] & 0o007 == 0
    user = IMAGE.final.all("USER")[0].args.split(":")
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert [str(security["runAsUser"]), str(security["runAsGroup"])] == user
    assert str(security["fsGroup"]) == user[1]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_shutdown_fits_in_the_grace_period() -> None:
    """Sidecar preStop runs at once; SIGTERM reaches it only after the runtime exits."""
    spec = pod_spec()
    grace = spec["terminationGracePeriodSeconds"]
    shutdown_grace = float(env_of(sidecar())["LIVEREPLAY_SHUTDOWN_GRACE_S"])
    pre_stop = sidecar()["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The sidecar's SIGTERM comes at max(preStop, runtime exit); it then needs its grace.
    runtime_budget = grace - shutdown_grace - SPARE_S
    assert 0 < pre_stop <= runtime_budget
    # The manifest's comment states the runtime's budget: keep it true.
    text = "\n".join(p.read_text() for p in MANIFESTS)
    stated = re.search(r"runtime's\s+#?\s*own shutdown \(at most (\d+) s here\)", text)
    assert stated and int(stated.group(1)) == runtime_budget


def test_resources_are_requested_limited_and_fit_the_memory_budget() -> None:
    for container in [sidecar(), *pod_spec()["containers"]]:
        resources = container["resources"]
        for name, requested in resources["requests"].items():
            limit = resources["limits"].get(name)
            assert limit is None or quantity(requested) <= quantity(limit), container["name"]
        assert "memory" in resources["limits"]
    limits = sidecar()["resources"]["limits"]
    budget = int(env_of(sidecar())["LIVEREPLAY_MEMORY_BUDGET_BYTES"])
    # docs/DEPLOY.md: resident memory stays under about 64 MiB + 3 x the budget.
    assert 64 * 2**20 + 3 * budget <= quantity(limits["memory"])
    assert "cpu" in limits


def test_service_routes_readers_to_the_sidecar_port() -> None:
    service = by_kind("Service")
    labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == sidecar()["ports"][0]["name"]
