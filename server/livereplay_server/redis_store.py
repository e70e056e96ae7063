"""The Redis backend: several daemons share the session logs (see docs/REDIS.md).

Every per-session key carries the session id as a Redis Cluster hash tag, so a
session lives in one slot and each Lua script touches one slot only:

    {prefix}:{<session_id>}:meta        hash: inc, tail, rev, bytes
    {prefix}:{<session_id>}:stream      stream: ID "<position>-0", fields d (event JSON),
                                        t (receive time, ms), r (revision)
    {prefix}:{<session_id>}:holes       list of "first:last" position ranges never received
    {prefix}:{<session_id>}:superseded  list of incarnations this session has superseded
    {prefix}:{<session_id>}:changes     pub/sub channel, rung by every append
    {prefix}:sessions                   sorted set: the session index, for listing (a hint)
    {prefix}:instance                   string: this data set's instance id

Each operation on a session is one Lua script (lua/), so it is atomic across
daemons; this module encodes events, calls the scripts and maps Redis trouble
to `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livereplay.protocol import (
    AppendRefused,
    AppendResult,
    Cursor,
    Head,
    Limits,
    Snapshot,
    StoredEvent,
)
from livereplay.protocol.clock import Clock, now_ms
from livereplay.protocol.constants import U64_MAX
from livereplay.protocol.records import NewEvent, RecordEncoder
from livereplay.protocol.session_log import MAX_HOLES, MAX_SUPERSEDED, check_batch, new_incarnation

from .fanout import LiveSource
from .logs import get_logger
from .metrics import StoreStats
from .redis_feed import RedisChangeFeed
from .redis_live import Windows
from .store import ChangeFeed, SessionInfo, StoreUnavailable

log = get_logger("livereplay.redis")

# Command connections: a bounded pool; a burst waits up to POOL_WAIT_S for a free
# connection, then the request is refused as unavailable.
COMMAND_POOL_SIZE: Final = 32
POOL_WAIT_S: Final = 2.0
COMMAND_TIMEOUT_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 2.0
# One quick retry on a fresh connection covers pooled connections that a Redis
# restart left dead; more would hold a writer back instead of telling it to retry.
COMMAND_RETRIES: Final = 1
# Daemon-assigned positions depend on the tail: retry a stale guess this often.
MAX_ASSIGN_ATTEMPTS: Final = 16
# Events of daemon-assigned appends to one session sent together in one call, at most
# (an append larger than this goes alone).
MAX_GROUP_EVENTS: Final = 1000
# Sessions whose head (incarnation, tail) this daemon remembers from its own last append.
MAX_HEAD_GUESSES: Final = 10_000
# Sessions looked at per sweep (index pruning, age trimming, totals for /metrics).
WALK_BATCH: Final = 256
# Redis replies that mean "not now" rather than "wrong".
TRANSIENT_REPLIES: Final = frozenset(
    {"OOM", "READONLY", "LOADING", "MASTERDOWN", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS"}
)
# How long start-up waits for the first connection before serving (not ready).
START_WAIT_S: Final = CONNECT_TIMEOUT_S + 1
MIN_REDIS: Final = (6, 2)  # XTRIM MINID, exclusive XRANGE bounds, LPOS

REFUSALS: Final = {
    "incarnation_superseded": "a newer incarnation has taken over this session",
    "event_too_large": "an event's JSON encoding is larger than {max_event_bytes} bytes",
}


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn Redis being unreachable, overloaded or read-only into `StoreUnavailable`."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc
    except ResponseError as exc:
        if str(exc).split(" ", 1)[0] in TRANSIENT_REPLIES:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        raise


def _lex_range(after: str | None, prefix: str | None) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds: ids after `after`, and only those starting with `prefix`.

    Session ids are ASCII, so `prefix` + 0xff sorts after every id under the prefix.
    """
    start = b"-" if after is None else b"(" + after.encode()
    end = b"+"
    if prefix is not None:
        low = prefix.encode()
        if after is None or after.encode() < low:
            start = b"[" + low
        end = b"[" + low + b"\xff"
    return start, end


@dataclass(frozen=True, slots=True)
class _Script:
    text: str
    sha: str

    @classmethod
    def load(cls, name: str) -> _Script:
        folder = resources.files(__package__) / "lua"
        text = (folder / "common.lua").read_text() + "\n" + (folder / name).read_text()
        return cls(text, hashlib.sha1(text.encode()).hexdigest())


APPEND: Final = _Script.load("append.lua")
READ: Final = _Script.load("read.lua")
TRIM: Final = _Script.load("trim.lua")
DELETE: Final = _Script.load("delete.lua")
SCRIPTS: Final = (APPEND, READ, TRIM, DELETE)


@dataclass(frozen=True, slots=True)
class _Read:
    """A parsed reply of the read script."""

    head: Head
    retained_bytes: int
    retained_events: int
    aged: int
    next_in_hole: bool
    events: list[StoredEvent]

    @classmethod
    def parse(cls, session_id: str, reply: list[Any]) -> _Read:
        incarnation = reply[0].decode()
        oldest = None
        if reply[6] is not None:
            oldest = Cursor(incarnation, int(reply[7]), int(reply[6]), session_id)
        restoring_to = int(reply[9]) if reply[9] is not None else 0
        restore_until = int(reply[10]) if reply[10] is not None else 0
        head = Head(
            session_id,
            incarnation,
            int(reply[1]),
            int(reply[2]),
            oldest,
            restoring_to,
            restore_until,
        )
        events = [
            StoredEvent(int(reply[i]), int(reply[i + 1]), int(reply[i + 2]), reply[i + 3])
            for i in range(11, len(reply), 4)
        ]
        return cls(head, int(reply[3]), int(reply[4]), int(reply[5]), reply[8] == 1, events)

    def info(self) -> SessionInfo:
        head = self.head
        return SessionInfo(
            head.session_id,
            head.incarnation,
            head.tail_cursor,
            head.oldest,
            self.retained_events,
            self.retained_bytes,
        )


_Assigned = tuple[str, list[tuple[int, NewEvent]], list[Any]]


@dataclass(slots=True)
class _Queued:
    """A daemon-assigned append waiting for the call in flight to its session."""

    events: Sequence[NewEvent]
    now: int
    done: asyncio.Future[_Assigned]


@dataclass(slots=True)
class _Walk:
    """A sweep's progress through the session index, and the totals of the last full pass."""

    after: str = "-"
    sessions: int = 0
    events: int = 0
    bytes: int = 0
    last: StoreStats | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _client_name(role: str) -> str:
    return f"livereplay-{os.getpid()}-{role}"


def command_pool(url: str) -> BlockingConnectionPool:
    """The pool every command uses. Options in the URL's query string win over these."""
    return BlockingConnectionPool.from_url(
        url,
        max_connections=COMMAND_POOL_SIZE,
        timeout=POOL_WAIT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), COMMAND_RETRIES),
        health_check_interval=0,
        client_name=_client_name("cmd"),
        protocol=3,
    )


def subscriber_pool(url: str) -> ConnectionPool:
    """One connection with no socket timeout: it waits for messages indefinitely.

    Its reconnects (with backoff) are the change feed's own, so no retries here.
    """
    options: dict[str, Any] = dict(parse_url(url))
    options.update(
        max_connections=1,
        socket_timeout=None,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=_client_name("feed"),
        protocol=2,
    )
    return ConnectionPool(**options)


class RedisStore:
    def __init__(self, limits: Limits, url: str, prefix: str, clock: Clock = now_ms) -> None:
        self.limits = limits
        self.prefix = prefix
        # Every time rule (event ts, age, restore deadlines, the live windows' ages) reads
        # this clock and hands the scripts the time. Idle expiry alone runs on Redis's clock:
        # Redis expires the keys itself (PEXPIRE), with no daemon sweeping.
        self._clock = clock
        self._pool = command_pool(url)
        self._client = Redis(connection_pool=self._pool)
        self._feed = RedisChangeFeed(
            subscriber_pool(url),
            self._channel,
            self._session_of,
            self._refresh_instance,
            Windows(limits.max_age_ms),
        )
        self.changes: ChangeFeed = self._feed
        # Provisional until Redis answers; then the data set's own id and birth time.
        self.instance_id = new_incarnation()
        self.instance_known = False
        self.data_since_ms = clock()
        self._instance_value = ""  # the instance key's value: id and birth time
        self._reads = 0  # snapshots read from Redis (livereplay_redis_reads_total)
        self._trimmed = {"events": 0, "bytes": 0, "age": 0}
        self._walk = _Walk()
        self._alive: set[str] = set()
        # Sessions with a daemon-assigned append in flight: the appends queued behind it.
        self._queued: dict[str, list[_Queued]] = {}
        self._rounds: set[asyncio.Task[None]] = set()
        self._heads: dict[str, tuple[bytes | None, bytes | None]] = {}
        self._sweeping: asyncio.Task[None] | None = None

    # -- keys -------------------------------------------------------------------

    def _keys(self, session_id: str) -> list[str]:
        base = f"{self.prefix}:{{{session_id}}}:"
        return [base + "meta", base + "stream", base + "holes", base + "superseded"]

    def _channel(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:changes"

    def _session_of(self, channel: str) -> str | None:
        head, tail = f"{self.prefix}:{{", "}:changes"
        if channel.startswith(head) and channel.endswith(tail):
            return channel[len(head) : -len(tail)]
        return None

    @property
    def _index(self) -> str:
        return f"{self.prefix}:sessions"

    @property
    def _instance_key(self) -> str:
        return f"{self.prefix}:instance"

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        self._feed.start()
        try:
            async with asyncio.timeout(START_WAIT_S):
                await self._feed.connected.wait()
            await self._check_version()
        except (StoreUnavailable, TimeoutError) as exc:
            # Serve anyway: /readyz says not ready, and the feed keeps reconnecting.
            log.warning("redis_unavailable_at_start", error=str(exc) or "no connection")

    async def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeping
        await self._feed.close()
        await self._client.aclose()
        await self._pool.disconnect()

    async def ready(self) -> bool:
        try:
            with unavailable_on_error():
                await self._client.ping()
        except StoreUnavailable:
            return False
        return self._feed.live

    async def _check_version(self) -> None:
        with unavailable_on_error():
            server = await self._client.info("server")
        version = tuple(int(p) for p in str(server["redis_version"]).split(".")[:2])
        if version < MIN_REDIS:
            raise RuntimeError(f"livereplay needs Redis >= 6.2, found {server['redis_version']}")

    async def _refresh_instance(self) -> None:
        """Adopt the data set's id and birth time, creating them if Redis lost them (its
        writers then re-send their windows, and readers wait for them a startup grace)."""
        key = self._instance_key
        with unavailable_on_error():
            await self._client.set(key, f"{new_incarnation()}:{self._clock()}", nx=True)
            value = await self._client.get(key)
        if value is None:
            return
        self._instance_value = _text(value)
        instance, _, since = self._instance_value.partition(":")
        if instance == self.instance_id and self.instance_known:
            return
        if self.instance_known:
            log.warning("redis_data_set_changed", instance=instance)
        self.instance_id = instance
        self.data_since_ms = int(since) if since.isdigit() else 0
        self.instance_known = True

    # -- scripts ----------------------------------------------------------------

    async def _eval(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with unavailable_on_error():
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._client.script_load(script.text)
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def _pipeline(self, build: Callable[[Pipeline], None]) -> list[Any]:
        """One round trip of several commands; reloads the scripts once if Redis forgot them."""
        for attempt in range(2):
            with unavailable_on_error():
                async with self._client.pipeline(transaction=False) as pipe:
                    build(pipe)
                    results: list[Any] = await pipe.execute(raise_on_error=False)
                if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                    for script in SCRIPTS:
                        await self._client.script_load(script.text)
                    continue
                for result in results:
                    if isinstance(result, Exception):
                        raise result
                return results
        raise AssertionError("unreachable")

    def _read_args(self, after: int, limit: int, max_bytes: int) -> list[Any]:
        return [str(after), limit, max_bytes, self._clock(), self.limits.max_age_ms]

    # -- writing ----------------------------------------------------------------

    async def append(
        self,
        session_id: str,
        incarnation: str | None,
        events: Sequence[NewEvent],
        *,
        restore_to: int | None = None,
        instance: str | None = None,
    ) -> AppendResult:
        if not self._feed.live:
            # Also while reconnecting: the data set may be a new one (see redis_feed).
            raise StoreUnavailable("Redis is unreachable; the daemon is reconnecting")
        if instance is not None and instance != self.instance_id:
            raise StoreUnavailable("the Redis data set changed; re-send the window")
        await self._check(session_id, incarnation, events)
        if not events and incarnation is None:
            info = await self.info(session_id)
            return AppendResult(0, 0, info.tail_cursor if info else None, False, False)
        now = self._clock()
        if incarnation is not None:
            staged = [(e.position or 0, e) for e in events]
            reply = await self._run_append(
                session_id, "w", incarnation, "", 0, staged, now, restore_to
            )
        else:
            incarnation, staged, reply = await self._append_assigned(session_id, events, now)
        if reply[0] == b"moved":
            # Redis restarted empty under us before the change feed noticed: nothing was
            # written; learn the new data set now so writers hear of it on reconnect.
            self._feed.kick()
            raise StoreUnavailable("the Redis data set changed; re-send the window")
        if reply[0] == b"refused":
            code = reply[1].decode()
            message = REFUSALS[code].format(max_event_bytes=self.limits.max_event_bytes)
            raise AppendRefused(code, message)
        _, accepted, inc, tail, rev, created, took_over, *trimmed, holes, skipped = reply
        for cause, count in zip(("events", "bytes", "age"), trimmed, strict=True):
            self._trimmed[cause] += count
        tail_cursor = None
        if inc is not None:
            tail_cursor = Cursor(inc.decode(), int(rev), int(tail), session_id)
        return AppendResult(
            accepted,
            len(events) - accepted,
            tail_cursor,
            created=bool(created),
            took_over=bool(took_over),
            holes=int(holes),
            skipped=int(skipped),
            incarnation=incarnation,
            assigned_from=staged[0][0] if staged else 0,
            events=events,
        )

    async def _check(
        self, session_id: str, incarnation: str | None, events: Sequence[NewEvent]
    ) -> None:
        """The in-memory log's own batch checks, in its order (superseded before malformed)."""
        try:
            check_batch(incarnation, events)
        except AppendRefused as refused:
            if refused.code == "invalid_event" and incarnation is not None:
                with unavailable_on_error():
                    superseded = await self._client.lpos(self._keys(session_id)[3], incarnation)
                if superseded is not None:
                    code = "incarnation_superseded"
                    raise AppendRefused(code, REFUSALS[code]) from None
            raise
        await self._check_session_count(session_id, events)

    async def _check_session_count(self, session_id: str, events: Sequence[NewEvent]) -> None:
        """`--max-sessions`, from the sweep's count (about a second old): approximate across
        daemons, and free of any extra round trip until the limit is near."""
        counted = self._walk.last.sessions if self._walk.last else 0
        if not events or counted < self.limits.max_sessions:
            return
        with unavailable_on_error():
            exists = await self._client.exists(self._keys(session_id)[0])
        if not exists:
            raise AppendRefused(
                "too_many_sessions", f"the service holds its limit of {counted} sessions"
            )

    async def _append_assigned(
        self, session_id: str, events: Sequence[NewEvent], now: int
    ) -> _Assigned:
        """Positions after the tail under the current incarnation (or a new one).

        The JSON of an event names its position and incarnation, so it is encoded
        against a guess of the head that the script confirms or corrects. One call per
        session is in flight from this process, so only other daemons can make a guess
        stale; the appends that arrive meanwhile go together in the next call (group
        commit): a busy session costs one round trip per call, not per append.
        """
        queued = self._queued.get(session_id)
        if queued is not None:
            waiter = _Queued(events, now, asyncio.get_running_loop().create_future())
            queued.append(waiter)
            return await waiter.done
        self._queued[session_id] = []
        try:
            return await self._assign(session_id, events, now)
        finally:
            self._next_round(session_id)

    def _next_round(self, session_id: str) -> None:
        """The call in flight is done: send what queued behind it, or let the session go."""
        queued = self._queued.pop(session_id, [])
        if queued:
            taken, events = 1, len(queued[0].events)
            while taken < len(queued) and events + len(queued[taken].events) <= MAX_GROUP_EVENTS:
                events += len(queued[taken].events)
                taken += 1
            self._queued[session_id] = queued[taken:]
            task = asyncio.create_task(self._round(session_id, queued[:taken]))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    async def _round(self, session_id: str, group: list[_Queued]) -> None:
        try:
            await self._commit_group(session_id, group)
        except BaseException:  # cancelled (shutdown): nobody may wait for good
            for queued in group:
                _settle(queued.done, StoreUnavailable("the daemon is stopping; retry"))
            raise
        finally:
            self._next_round(session_id)

    async def _commit_group(self, session_id: str, group: list[_Queued]) -> None:
        """One call for the whole group; each append gets its own share of the reply. A
        refusal is answered append by append, so one bad batch refuses only itself."""
        if len(group) > 1:
            events = [e for queued in group for e in queued.events]
            try:
                incarnation, staged, reply = await self._assign(session_id, events, group[0].now)
            except AppendRefused:
                reply = [b"refused"]
            except Exception as exc:
                for queued in group:
                    _settle(queued.done, exc)
                return
            if reply[0] != b"refused":
                for i, share in enumerate(_shares(staged, reply, group)):
                    _settle(group[i].done, (incarnation, *share))
                return
        for queued in group:
            try:
                result = await self._assign(session_id, queued.events, queued.now)
            except Exception as exc:
                _settle(queued.done, exc)
            else:
                _settle(queued.done, result)

    async def _assign(self, session_id: str, events: Sequence[NewEvent], now: int) -> _Assigned:
        guess = self._heads.pop(session_id, None)
        if guess is None:
            with unavailable_on_error():
                current, tail = await self._client.hmget(self._keys(session_id)[0], ["inc", "tail"])
        else:
            current, tail = guess
        for _ in range(MAX_ASSIGN_ATTEMPTS):
            expected = _text(current) if current else ""
            last = int(tail or 0)
            if last + len(events) > U64_MAX:
                raise AppendRefused("invalid_event", "positions would pass 2^64-1")
            incarnation = expected or new_incarnation()
            staged = [(last + 1 + i, e) for i, e in enumerate(events)]
            reply = await self._run_append(
                session_id, "d", incarnation, expected, last, staged, now
            )
            if reply[0] == b"ok":
                self._guess_head(session_id, reply[2], reply[3])
            if reply[0] != b"retry":
                return incarnation, staged, reply
            current, tail = reply[1], reply[2]
        raise StoreUnavailable("too many concurrent appends to this session; retry")

    def _guess_head(self, session_id: str, incarnation: bytes, tail: bytes) -> None:
        """What this daemon's last append left as the session's head: the next append's
        guess, which saves a round trip (the script refuses a stale one)."""
        if len(self._heads) >= MAX_HEAD_GUESSES:
            del self._heads[next(iter(self._heads))]
        self._heads[session_id] = (incarnation, tail)

    async def _run_append(
        self,
        session_id: str,
        mode: str,
        incarnation: str,
        expected: str,
        expected_tail: int,
        staged: list[tuple[int, NewEvent]],
        now: int,
        restore_to: int | None = None,
    ) -> list[Any]:
        limits = self.limits
        args: list[Any] = [
            mode,
            incarnation,
            expected,
            str(expected_tail),
            now,
            limits.max_events_per_session,
            limits.max_bytes_per_session,
            limits.max_age_ms,
            limits.max_event_bytes,
            limits.session_idle_ttl_ms,
            self._channel(session_id),
            MAX_SUPERSEDED,
            MAX_HOLES,
            "" if restore_to is None else str(restore_to),
            now + limits.restore_wait_ms,
            self._instance_value,
        ]
        records = RecordEncoder(session_id, incarnation, now)
        for position, event in staged:
            data = records.encode(event.turn_id, event.revision, position, event.payload)
            args += [str(position), str(event.revision), data]
        keys = [*self._keys(session_id), self._instance_key]
        if not staged:
            reply: list[Any] = await self._eval(APPEND, keys, args)
            return reply

        def build(pipe: Pipeline) -> None:
            pipe.evalsha(APPEND.sha, len(keys), *keys, *args)
            # The index is repaired by every append; listing skips what has expired.
            pipe.zadd(self._index, {session_id: 0}, nx=True)

        results = await self._pipeline(build)
        appended: list[Any] = results[0]
        return appended

    async def trim(self, session_id: str) -> int | None:
        limits = self.limits
        args = [
            limits.max_events_per_session,
            limits.max_bytes_per_session,
            self._clock(),
            limits.max_age_ms,
            self._channel(session_id),
        ]
        reply = await self._eval(TRIM, self._keys(session_id)[:3], args)
        if reply is None:
            return None
        for cause, count in zip(("events", "bytes", "age"), reply, strict=True):
            self._trimmed[cause] += count
        return int(sum(reply))

    async def delete(self, session_id: str) -> bool:
        deleted = await self._eval(DELETE, self._keys(session_id), [self._channel(session_id)])
        with unavailable_on_error():
            await self._client.zrem(self._index, session_id)
        return bool(deleted)

    # -- reading ----------------------------------------------------------------

    async def snapshot(self, session_id: str, after: int, limit: int, max_bytes: int) -> Snapshot:
        watched = bool(self.changes.readers.get(session_id))
        if watched:
            # Subscribe first, read second: no append can fall between them.
            await self._feed.ready_for(session_id)
        keys = self._keys(session_id)[:3]
        self._reads += 1
        reply = await self._eval(READ, keys, self._read_args(after, limit, max_bytes))
        if reply is None:
            return Snapshot(None)
        read = _Read.parse(session_id, reply)
        self._trimmed["age"] += read.aged
        if watched:
            self._alive.add(session_id)  # so the sweep notices when Redis expires it
        return Snapshot(read.head, read.events, read.next_in_hole)

    def live(self, session_id: str) -> LiveSource | None:
        """This daemon's window of the session, fed by its pub/sub messages: live readers
        never read Redis (redis_live.py)."""
        if not self._feed.live:
            return None
        return self._feed.windows.get(session_id, self._clock())

    async def info(self, session_id: str) -> SessionInfo | None:
        reply = await self._eval(READ, self._keys(session_id)[:3], self._read_args(0, 0, 0))
        if reply is None:
            return None
        read = _Read.parse(session_id, reply)
        self._trimmed["age"] += read.aged
        return read.info()

    async def _infos(self, session_ids: list[str]) -> list[_Read | None]:
        """Heads of several sessions in one round trip; None for those that have expired."""
        args = self._read_args(0, 0, 0)

        def build(pipe: Pipeline) -> None:
            for session_id in session_ids:
                keys = self._keys(session_id)[:3]
                pipe.evalsha(READ.sha, len(keys), *keys, *args)

        replies = await self._pipeline(build)
        reads = [
            None if reply is None else _Read.parse(session_id, reply)
            for session_id, reply in zip(session_ids, replies, strict=True)
        ]
        self._trimmed["age"] += sum(r.aged for r in reads if r is not None)
        return reads

    async def list_sessions(
        self, after: str | None, limit: int, *, prefix: str | None = None
    ) -> list[SessionInfo]:
        page: list[SessionInfo] = []
        start, end = _lex_range(after, prefix)
        while len(page) < limit:
            with unavailable_on_error():
                members = await self._client.zrangebylex(
                    self._index, start, end, 0, limit - len(page)
                )
            if not members:
                break
            session_ids = [_text(m) for m in members]
            reads = await self._infos(session_ids)
            page += [r.info() for r in reads if r is not None]
            await self._forget(sid for sid, r in zip(session_ids, reads, strict=True) if r is None)
            start = b"(" + session_ids[-1].encode()
        return page

    async def _forget(self, session_ids: Iterable[str]) -> None:
        stale = list(session_ids)
        if stale:
            with unavailable_on_error():
                await self._client.zrem(self._index, *stale)

    # -- housekeeping -----------------------------------------------------------

    def stats(self) -> StoreStats:
        """Totals from the last full pass over the index (see `sweep`); trims by this daemon."""
        last = self._walk.last or StoreStats(0, 0, 0)
        trimmed = dict(self._trimmed)
        return StoreStats(
            last.sessions,
            last.retained_events,
            last.retained_bytes,
            trimmed,
            backend_reads=self._reads,
        )

    def sweep(self) -> None:
        """Start one housekeeping step unless the previous one is still running."""
        if self._sweeping is None or self._sweeping.done():
            self._sweeping = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        try:
            await self._refresh_instance()
            await self._notice_expired()
            await self._walk_step()
        except StoreUnavailable as exc:
            log.debug("sweep_skipped", error=str(exc))
        except Exception:
            log.exception("sweep_failed")

    async def _notice_expired(self) -> None:
        """Redis expires idle sessions by itself; tell their local readers (session_deleted)."""
        watched = list(self.changes.readers)
        if not watched:
            self._alive.clear()
            return

        def build(pipe: Pipeline) -> None:
            for session_id in watched:
                pipe.exists(self._keys(session_id)[0])

        exists = await self._pipeline(build)
        gone = {sid for sid, found in zip(watched, exists, strict=True) if not found}
        for session_id in self._alive & gone:
            self.changes.notify(session_id)
        alive = (self._alive | set(watched)) - gone
        self._alive = {sid for sid in alive if sid in self.changes.readers}

    async def _walk_step(self) -> None:
        """Look at the next WALK_BATCH sessions: age out old events, prune expired entries
        from the index, and add them up for /metrics."""
        walk = self._walk
        with unavailable_on_error():
            members = await self._client.zrangebylex(self._index, walk.after, "+", 0, WALK_BATCH)
        session_ids = [_text(m) for m in members]
        reads = await self._infos(session_ids) if session_ids else []
        for read in reads:
            if read is not None:
                walk.sessions += 1
                walk.events += read.retained_events
                walk.bytes += read.retained_bytes
        await self._forget(sid for sid, r in zip(session_ids, reads, strict=True) if r is None)
        if len(session_ids) < WALK_BATCH:
            walk.last = StoreStats(walk.sessions, walk.events, walk.bytes)
            walk.after, walk.sessions, walk.events, walk.bytes = "-", 0, 0, 0
        else:
            walk.after = "(" + session_ids[-1]


def _shares(
    staged: list[tuple[int, NewEvent]], reply: list[Any], group: list[_Queued]
) -> list[tuple[list[tuple[int, NewEvent]], list[Any]]]:
    """Split a group's reply: each append its positions; trims, a new session or a
    takeover reported once, with the first."""
    if reply[0] != b"ok":  # 'moved': the same for everyone
        return [(staged, reply) for _ in group]
    shares = []
    at = 0
    for i, queued in enumerate(group):
        mine = staged[at : at + len(queued.events)]
        at += len(mine)
        share = list(reply)
        share[1] = len(mine)  # daemon-assigned events are all new
        if i:
            share[5:10] = [0, 0, 0, 0, 0]
            share[10] = b"0"
        shares.append((mine, share))
    return shares


def _settle(done: asyncio.Future[_Assigned], outcome: _Assigned | BaseException) -> None:
    if done.done():  # its request went away; the events were appended all the same
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
