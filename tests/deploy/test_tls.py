"""docs/DEPLOY.md's TLS example, run: a self-signed certificate, then HTTPS and WSS.

The certificate is made by the `openssl` command printed in the docs, so the
worked example cannot drift from what is tested.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.deploy.launch import Launched
from tests.support.daemon import free_port

ROOT = Path(__file__).resolve().parents[2]
LIVEREPLAY = Path(sys.executable).parent / "livereplay"


def documented_openssl_command() -> list[str]:
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    match = re.search(r"^openssl req (?:.*\\\n)*.*$", text, re.MULTILINE)
    assert match, "docs/DEPLOY.md shows no `openssl req` command"
    return shlex.split(match.group(0).replace("\\\n", " "))


@dataclass
class TlsDaemon:
    port: int
    cert: Path
    context: ssl.SSLContext
    workdir: Path


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDaemon]:
    if shutil.which("openssl") is None:
        pytest.skip("the worked example needs the openssl command")
    workdir = tmp_path_factory.mktemp("tls")
    subprocess.run(
        documented_openssl_command(), cwd=workdir, check=True, capture_output=True, timeout=60
    )
    cert = workdir / "cert.pem"
    context = ssl.create_default_context(cafile=cert)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREPLAY_")}
    argv = [str(LIVEREPLAY), "serve", "--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--startup-grace-s", "0"]
    base = f"https://127.0.0.1:{port}"
    daemon = Launched(argv, env, workdir, base, ssl_context=context)
    try:
        daemon.wait_healthy()
        yield TlsDaemon(port, cert, context, workdir)
    finally:
        status = daemon.stop()
    assert status == -signal.SIGTERM, daemon.logs()


def test_https_serves_with_the_certificate_and_only_with_it(tls_daemon: TlsDaemon) -> None:
    port = tls_daemon.port
    for host in ("localhost", "127.0.0.1"):  # both names are in the certificate
        url = f"https://{host}:{port}/healthz"
        with urllib.request.urlopen(url, timeout=5, context=tls_daemon.context) as answer:
            assert json.load(answer) == {"status": "ok"}
    # A client that does not trust it refuses the connection: it really is this certificate.
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    # Plain HTTP is not served on the TLS port.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()


def test_wss_stream_delivers_events_appended_over_https(tls_daemon: TlsDaemon) -> None:
    base = f"https://127.0.0.1:{tls_daemon.port}"
    events = [{"revision": 1, "payload": "over tls"}]
    with httpx.Client(base_url=base, verify=tls_daemon.context, timeout=10) as http:
        appended = http.post("/v1/sessions/tls-demo/events", json={"events": events})
        assert appended.status_code == 200, appended.text
    url = f"wss://localhost:{tls_daemon.port}/v1/sessions/tls-demo/stream?cursor=earliest"
    with connect(
        url, ssl=tls_daemon.context, subprotocols=[Subprotocol("livereplay.v1.json")]
    ) as ws:
        frames = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
    assert [f["type"] for f in frames] == ["hello", "events", "caught_up"]
    assert frames[1]["events"][0]["payload"] == "over tls"


def test_livereplay_tail_trusts_the_certificate_through_ssl_cert_file(
    tls_daemon: TlsDaemon,
) -> None:
    with httpx.Client(verify=tls_daemon.context, timeout=10) as http:
        url = f"https://127.0.0.1:{tls_daemon.port}/v1/sessions/tail-demo/events"
        assert http.post(url, json={"events": [{"revision": 1, "payload": 7}]}).status_code == 200
    env = {**os.environ, "SSL_CERT_FILE": str(tls_daemon.cert)}
    url = f"https://localhost:{tls_daemon.port}"
    argv = [str(LIVEREPLAY), "tail", "tail-demo", "--json", "--url", url]
    # Unbuffered, so select() sees every line that readline() has not taken yet.
    tail = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    lines: list[dict[str, object]] = []
    try:
        assert tail.stdout is not None
        deadline = time.monotonic() + 15
        while not any(line.get("type") == "caught_up" for line in lines):
            left = deadline - time.monotonic()
            assert left > 0 and select.select([tail.stdout], [], [], left)[0], lines
            raw = tail.stdout.readline()
            assert raw, (tail.stderr.read() if tail.stderr else b"").decode()
            lines.append(json.loads(raw))
    finally:
        tail.terminate()
        tail.wait(10)
    payloads = [line.get("payload") for line in lines if "payload" in line]
    assert payloads == [7]
