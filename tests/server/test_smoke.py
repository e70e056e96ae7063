import httpx

from tests.support.daemon import DaemonProcess, InProcessDaemon


async def test_in_process_daemon_serves_health(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}


def test_child_process_daemon_restarts_with_a_new_instance(daemon_process: DaemonProcess) -> None:
    first = httpx.get(daemon_process.http_url + "/readyz").json()["instance"]
    daemon_process.restart()
    second = httpx.get(daemon_process.http_url + "/readyz").json()["instance"]
    assert first != second
