"""The writer client's one background sender: the I/O shell around `WriterMachine`.

It runs as a task on an event loop (the caller's, or a private one in a thread)
and is the only code of the client that does I/O: it connects through a
`Transport`, sends the batches the machine hands it, feeds it the answers, and
sleeps the backoffs and lingers it decides. What to send and what an answer
means are the machine's rules (`writer/machine.py`); timers and closing are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import msgspec

from livereplay.protocol.ingest import ServerMessage, server_decoder
from livereplay.writer.machine import Decision, Reconnect, Stop, WriterMachine
from livereplay.writer.options import WriterOptions
from livereplay.writer.transport import (
    CONNECTION_ERRORS,
    ConnectFailed,
    Connection,
    Transport,
    WebSocketTransport,
)
from livereplay.writer.window import LocalWindow

log = logging.getLogger("livereplay.writer")


class ProtocolFault(Exception):
    """The daemon sent a frame that is no ingest message at all."""


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Sender:
    def __init__(
        self,
        url: str,
        window: LocalWindow,
        options: WriterOptions,
        token: str | None,
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.window = window
        self.options = options
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.transport = transport or WebSocketTransport(
            options.ping_interval_s, options.ping_timeout_s
        )
        self.machine = WriterMachine(window, options, monotonic_ms)
        self.done = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        # Set by an append when the sender is idle, by an answer, and by close.
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()  # close: cut short a backoff sleep
        self._idle = False
        self._closing = False
        self._deadline = float("inf")
        self._stop_now = False

    # -- called from any thread ------------------------------------------------

    def notify(self) -> None:
        """An append happened: wake the sender if it sleeps for want of work."""
        if self._idle:
            self._idle = False
            self._call(self._wake.set)

    def begin_close(self, timeout: float) -> None:
        """Send what is buffered for up to `timeout` seconds, then stop."""
        self._deadline = min(self._deadline, time.monotonic() + max(0.0, timeout))
        self._closing = True
        self._call(self._wake_all)

    def stop_now(self) -> None:
        self._stop_now = True
        self._closing = True
        self._call(self._wake_all)

    def _wake_all(self) -> None:
        self._wake.set()
        self._interrupt.set()

    def _call(self, callback: object) -> None:
        assert callable(callback)
        if self.loop is None:
            return
        if threading.get_ident() == self.loop_thread:
            callback()
            return
        with contextlib.suppress(RuntimeError):  # the loop has already stopped
            self.loop.call_soon_threadsafe(callback)

    # -- the task --------------------------------------------------------------

    def _finished(self) -> bool:
        if self._deadline_passed():
            return True
        return self._closing and self.machine.unacknowledged() == 0

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        machine = self.machine
        try:
            while not self._finished():
                try:
                    remaining = self._deadline - time.monotonic()
                    conn = await self.transport.connect(
                        self.url,
                        self.headers,
                        max(0.1, min(self.options.connect_timeout_s, remaining)),
                    )
                except (OSError, TimeoutError, ConnectFailed) as exc:
                    status = exc.http_status if isinstance(exc, ConnectFailed) else 0
                    if (refused := machine.connect_failed(status)) is not None:
                        self._stopped(refused)
                        return
                    # Once per outage at warning (appends are buffered meanwhile), then debug.
                    first = machine.failures_in_a_row == 1
                    level = logging.WARNING if first else logging.DEBUG
                    log.log(level, "livereplay cannot connect to %s: %s", self.url, exc)
                    await self._pause()
                    continue
                machine.opened()
                try:
                    decision = await self._serve(conn)
                    if isinstance(decision, Stop):
                        self._stopped(decision)
                        return
                    if isinstance(decision, Reconnect):
                        _log_reconnect(decision)
                except CONNECTION_ERRORS as exc:
                    log.warning("livereplay connection lost: %s", exc)
                except (ProtocolFault, msgspec.DecodeError) as exc:
                    log.error("livereplay protocol fault, reconnecting: %s", exc)
                except Exception:
                    log.exception("livereplay connection failed, reconnecting")
                finally:
                    machine.disconnected()
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):
                            await conn.close()
                if not self._finished():
                    await self._pause()
        except asyncio.CancelledError:
            log.warning(
                "livereplay sender cancelled, %d events unacknowledged", machine.unacknowledged()
            )
            raise
        except Exception:
            log.exception("livereplay sender failed; appends are kept but no longer sent")
        finally:
            self.done.set()
            buffered = machine.unacknowledged()
            if buffered:
                log.warning("livereplay writer stopped with %d events unacknowledged", buffered)

    async def _pause(self) -> None:
        """Back off before the next connection attempt, unless closing cuts it short."""
        self._interrupt.clear()
        delay = self.machine.backoff_s()
        delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._interrupt.wait()

    async def _serve(self, conn: Connection) -> Decision | None:
        async with asyncio.timeout(self.options.connect_timeout_s):
            first = _decode(await conn.recv())
        decision = self.machine.welcomed(first)
        if decision is not None:
            return decision
        log.info("livereplay connected to %s (instance %s)", self.url, self.machine.instance)
        reader = asyncio.create_task(self._read_answers(conn))
        writer = asyncio.create_task(self._write_batches(conn))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            decision = task.result()  # re-raise what ended the connection
            if decision is not None:
                return decision
        return None

    def _stopped(self, stop: Stop) -> None:
        """Stop for good: retrying would be refused the same way."""
        log.error("livereplay writer stopped: %s", stop.refusal)
        if self.options.on_refused is not None:
            try:
                self.options.on_refused(stop.refusal)
            except Exception:
                log.exception("livereplay on_refused callback failed")

    async def _write_batches(self, conn: Connection) -> None:
        machine = self.machine
        linger = self.options.linger_s
        while True:
            if not await self._await_work():
                return  # closing, and everything is acknowledged (or time is up)
            if not machine.in_flight and not self._closing and linger > 0:
                await asyncio.sleep(linger)  # let a batch gather
            while (batch := machine.next_batch()) is not None:
                await conn.send(batch)
            machine.report_losses()

    async def _await_work(self) -> bool:
        """Wait until there is something to send and room for it; False means stop."""
        machine = self.machine
        while True:
            if self._deadline_passed():
                return False
            if self._closing and not machine.in_flight and machine.unacknowledged() == 0:
                return False  # closing, and everything is acknowledged
            self._wake.clear()
            self._idle = True
            if machine.can_send():
                self._idle = False
                return True
            remaining = self._deadline - time.monotonic() if self._closing else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            self._idle = False

    def _deadline_passed(self) -> bool:
        return self._stop_now or time.monotonic() >= self._deadline

    async def _read_answers(self, conn: Connection) -> Decision | None:
        async for message in conn:
            decision = self.machine.received(_decode(message))
            if decision is not None:
                return decision
            self._wake.set()
        return None


def _decode(message: str | bytes) -> ServerMessage:
    if isinstance(message, str):
        raise ProtocolFault("the ingest socket carries binary frames only")
    decoded: ServerMessage = server_decoder.decode(message)
    return decoded


def _log_reconnect(decision: Reconnect) -> None:
    if decision.fault:
        log.error("livereplay protocol fault, reconnecting: %s", decision.reason)
    else:
        log.warning("livereplay connection lost: %s", decision.reason)


__all__ = ["ProtocolFault", "Sender", "monotonic_ms"]
