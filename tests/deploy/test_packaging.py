"""The two distributions as a user installs them: wheels built from this tree, in fresh venvs.

`livereplay` alone must give the writer, the reader and `livereplay append|tail|token`
with msgspec and websockets only, and `livereplay serve` must say what to install
rather than crash. `livereplay-server` without its Redis extra must refuse
`--backend redis` with one line. Dependencies come from the index, pinned by the dev
lock, as in `make install`.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
SERVER = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]
KEY = "k" * 40
SOURCES = [str(ROOT / "client"), str(ROOT / "server")]

pytestmark = pytest.mark.timeout(600)


@dataclass
class Venv:
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.path)

    def pip_install(self, *requirements: str) -> None:
        done = self.run(
            "python", "-m", "pip", "install", "-q", "-c", str(ROOT / "requirements.lock"),
            *requirements,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def distributions(self) -> set[str]:
        listing = self.run("python", "-m", "pip", "list", "--format=freeze")
        return {line.split("==")[0].lower() for line in listing.stdout.split()}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), *SOURCES],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (client,) = out.glob("livereplay-*.whl")
    (server,) = out.glob("livereplay_server-*.whl")
    return {"client": client, "server": server}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return Venv(path)


def test_the_versions_agree_and_the_server_pins_its_client() -> None:
    assert CLIENT["version"] == SERVER["version"]
    assert f"livereplay=={CLIENT['version']}" in SERVER["dependencies"]


def test_the_client_wheel_is_typed_and_carries_the_javascript_reader(
    wheels: dict[str, Path],
) -> None:
    names = zipfile.ZipFile(wheels["client"]).namelist()
    assert "livereplay/py.typed" in names
    assert "livereplay/protocol/__init__.py" in names
    assert not any(n.startswith("livereplay_server/") for n in names)
    packaged = zipfile.ZipFile(wheels["client"]).read("livereplay/js/livereplay.js")
    assert packaged == (ROOT / "client" / "js" / "src" / "index.js").read_bytes()


def test_the_client_alone_needs_only_msgspec_and_websockets(
    wheels: dict[str, Path], venv: Venv
) -> None:
    venv.pip_install(str(wheels["client"]))
    assert venv.distributions() - {"pip", "setuptools"} == {"livereplay", "msgspec", "websockets"}

    version = venv.run("livereplay", "--version")
    assert version.returncode == 0 and version.stdout.split() == ["livereplay", CLIENT["version"]]
    for command in ("append", "tail", "token"):
        helped = venv.run("livereplay", command, "--help")
        assert helped.returncode == 0, helped.stderr

    serve = venv.run("livereplay", "serve", "--port", "7447")
    assert serve.returncode == 2
    assert "pip install livereplay-server" in serve.stderr
    assert "Traceback" not in serve.stderr

    minted = venv.run("livereplay", "token", "--session", "demo", "--reader-key", KEY)
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), KEY, algorithms=["HS256"])
    assert claims["sub"] == "demo" and claims["scope"] == "livereplay:read"

    imported = venv.run(
        "python", "-c", "import livereplay, livereplay.protocol, livereplay.cli; "
        "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'uvicorn', 'jwt', 'redis', 'structlog', 'livereplay_server')))",
    )  # fmt: skip
    assert imported.returncode == 0 and imported.stdout.strip() == "[]", imported.stderr


def test_the_server_without_its_redis_extra_refuses_the_redis_backend_in_one_line(
    wheels: dict[str, Path], venv: Venv
) -> None:
    venv.pip_install(str(wheels["client"]), str(wheels["server"]))
    assert {"livereplay", "livereplay-server", "starlette", "uvicorn"} <= venv.distributions()
    assert "redis" not in venv.distributions()

    helped = venv.run("livereplay", "serve", "--help")
    assert helped.returncode == 0 and "--backend" in helped.stdout
    refused = venv.run("livereplay-server", "--backend", "redis", "--port", "1")
    assert refused.returncode == 2
    assert "livereplay-server[redis]" in refused.stderr
    assert "Traceback" not in refused.stderr
