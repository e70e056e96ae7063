"""Live delivery for the Redis backend: one pub/sub connection per daemon process.

The append script publishes on the session's channel. This daemon subscribes,
on a single connection with no socket timeout, to the channels of the sessions
its own readers watch (`ChangeFeed.readers`), and turns each message into
`ChangeFeed.notify`. Readers never read Redis on their own to wait.

Pub/sub is at-most-once, so it is only a doorbell: a notified reader re-reads
the stream by position. Two rules keep the cut between history and live exact:

- a reader's first snapshot waits until Redis has confirmed the subscription
  (`ready_for`), so every append after that read rings the bell;
- when the connection is lost, every watched session is notified while the
  feed is down, so readers re-read, find the backend unavailable and are closed
  (1011) to reconnect with their cursor; after a reconnect every channel is
  subscribed again and its readers are told to re-read once confirmed.

The store also treats this connection as its view of Redis being up: it refuses
appends while the feed is down, and the feed re-reads the data set's instance id
(`on_connect`) before it counts as up again, so a writer learns that Redis lost
its data before its first append lands in the new, empty data set.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import RedisError

from livereplay.backoff import Backoff

from .logs import get_logger
from .redis_live import Windows
from .store import ChangeFeed, StoreUnavailable

log = get_logger("livereplay.redis")

# A subscriber that hears nothing (not even its own PING) for this long is dead.
PING_INTERVAL_S = 5.0
DEAD_AFTER_S = 3 * PING_INTERVAL_S
# A write to Redis (SUBSCRIBE, PING) that takes longer than this means a stuck link.
WRITE_TIMEOUT_S = 5.0
# How long a new reader waits for Redis to confirm its session's subscription.
CONFIRM_TIMEOUT_S = 5.0
# Reconnect backoff (full jitter); the first wait is at most 0.1 s.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
# Channels per SUBSCRIBE/UNSUBSCRIBE command.
CHANNELS_PER_COMMAND = 512


@dataclass(slots=True)
class _Channel:
    """What was last asked of Redis for one session's channel, and how many replies are due."""

    subscribed: bool = True
    outstanding: int = 0

    @property
    def confirmed(self) -> bool:
        return self.subscribed and self.outstanding == 0


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class RedisChangeFeed(ChangeFeed):
    """A `ChangeFeed` whose pub/sub subscription follows the sessions watched in this process."""

    def __init__(
        self,
        pool: ConnectionPool,
        channel: Callable[[str], str],
        session_of: Callable[[str], str | None],
        on_connect: Callable[[], Awaitable[None]],
        windows: Windows,
    ) -> None:
        super().__init__()
        # The events each message carries, for this daemon's live readers (redis_live.py).
        self.windows = windows
        self._pool = pool
        self._on_connect = on_connect
        self._channel = channel
        self._session_of = session_of
        self._channels: dict[str, _Channel] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._resync: set[str] = set()
        self._dirty = asyncio.Event()
        self._kicked = False
        self._task: asyncio.Task[None] | None = None
        self._last_seen = 0.0
        self.live = False
        self.connected = asyncio.Event()
        self.reconnects = 0

    # -- the ChangeFeed side ----------------------------------------------------

    def watch(self, session_id: str) -> None:
        super().watch(session_id)
        self._dirty.set()

    def unwatch(self, session_id: str) -> None:
        super().unwatch(session_id)
        if session_id not in self.readers:
            self.windows.forget(session_id)
        self._dirty.set()

    async def ready_for(self, session_id: str) -> None:
        """Return once Redis has confirmed the subscription for a watched session."""
        if not self.live:
            raise StoreUnavailable("the change feed is not connected to Redis")
        channel = self._channels.get(session_id)
        if channel is not None and channel.confirmed:
            return
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(session_id, [])
        waiters.append(future)
        self._dirty.set()
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await future
        except TimeoutError:
            raise StoreUnavailable("Redis did not confirm the subscription in time") from None
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(session_id, None)

    def kick(self) -> None:
        """Reconnect now: Redis is not the data set we were connected to (it restarted
        empty), so re-read its instance and have every reader read again."""
        self._kicked = True
        self._dirty.set()

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="livereplay-redis-subscriber")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._pool.disconnect()
        self.notify_all()

    async def _run(self) -> None:
        backoff = Backoff(BACKOFF_BASE_S, BACKOFF_CAP_S)
        while True:
            conn: AbstractConnection | None = None
            try:
                conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                # E.g. re-read the data set's id, before anything is accepted again.
                await self._on_connect()
                backoff.reset()
                self._up()
                await self._serve(conn)
            except (RedisError, OSError, StoreUnavailable) as exc:
                # Once per outage at warning level; each failed reconnect at debug.
                report = log.warning if backoff.attempt == 0 else log.debug
                report("redis_subscriber_lost", error=str(exc), reconnects=self.reconnects)
            except Exception:
                log.exception("redis_subscriber_failed")
            finally:
                await self._down(conn)
            self.reconnects += 1
            await asyncio.sleep(backoff.next())

    def _up(self) -> None:
        self._channels.clear()
        # After a reconnect, readers re-read once their channel is confirmed again. On the
        # first connect there is nothing to catch up: reads failed until the feed was live.
        self._resync = set(self.readers) if self.reconnects else set()
        self._last_seen = asyncio.get_running_loop().time()
        self.live = True
        self.connected.set()
        self._dirty.set()
        if self.reconnects:
            log.info("redis_subscriber_connected", reconnects=self.reconnects)

    async def _down(self, conn: AbstractConnection | None) -> None:
        was_live = self.live
        self.live = False
        self.windows.clear()  # what was told while down is lost: readers read Redis
        self.connected.clear()
        self._channels.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            await self._pool.release(conn)
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(StoreUnavailable("the change feed lost Redis"))
        self._waiters.clear()
        if was_live:
            # Readers re-read, find the backend unavailable, and close with 1011.
            self.notify_all()

    async def _serve(self, conn: AbstractConnection) -> None:
        reader = asyncio.create_task(self._read(conn))
        writer = asyncio.create_task(self._write(conn))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)

    # -- the connection ---------------------------------------------------------

    async def _read(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message: Any = await conn.read_response(timeout=math.inf)
            self._last_seen = loop.time()
            kind = message[0]
            if kind == b"message":
                session_id = self._session_of(message[1].decode())
                if session_id is not None:
                    if session_id in self.readers:
                        self.windows.told(session_id, message[2])
                    self.notify(session_id)
            elif kind in (b"subscribe", b"unsubscribe"):
                session_id = self._session_of(message[1].decode())
                if session_id is not None:
                    self._replied(session_id)

    def _replied(self, session_id: str) -> None:
        channel = self._channels.get(session_id)
        if channel is None:
            return
        channel.outstanding -= 1
        if channel.outstanding > 0:
            return
        if not channel.subscribed:
            del self._channels[session_id]
            return
        for future in self._waiters.pop(session_id, []):
            if not future.done():
                future.set_result(None)
        if session_id in self._resync:
            # Messages may have been lost while disconnected: read again.
            self._resync.discard(session_id)
            self.notify(session_id)

    async def _write(self, conn: AbstractConnection) -> None:
        """Keep the subscription in step with `readers`, and PING to prove the link alive."""
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        while True:
            wait = last_ping + PING_INTERVAL_S - loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0)):
                    await self._dirty.wait()
            now = loop.time()
            if self._kicked:
                self._kicked = False
                raise ConnectionError("the Redis data set changed")
            if now - self._last_seen > DEAD_AFTER_S:
                raise ConnectionError("the Redis subscriber connection stopped answering")
            if now - last_ping >= PING_INTERVAL_S:
                await self._send(conn, "PING", [])
                last_ping = now
            if self._dirty.is_set():
                self._dirty.clear()
                await self._sync(conn)

    async def _sync(self, conn: AbstractConnection) -> None:
        channels = self._channels
        wanted = set(self.readers)
        subscribe = [s for s in wanted if s not in channels or not channels[s].subscribed]
        unsubscribe = [s for s, c in channels.items() if c.subscribed and s not in wanted]
        for command, sessions, state in (
            ("SUBSCRIBE", subscribe, True),
            ("UNSUBSCRIBE", unsubscribe, False),
        ):
            for chunk in _chunks(sessions, CHANNELS_PER_COMMAND):
                for session_id in chunk:
                    channel = channels.setdefault(session_id, _Channel())
                    channel.subscribed = state
                    channel.outstanding += 1
                await self._send(conn, command, (self._channel(s) for s in chunk))

    async def _send(self, conn: AbstractConnection, command: str, args: Iterable[str]) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await conn.send_command(command, *args, check_health=False)
