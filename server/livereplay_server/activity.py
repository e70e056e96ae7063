"""What an operator sees at info while the daemon works.

Connections opened and closed (reader or writer, session, client address),
refusals, and a periodic summary (`--log-summary-s`). Lines carry ids, counts,
codes and addresses: never a payload, never a token (logs.py redacts the rest),
and a path is logged without its query string.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter
from starlette.types import Scope

from livereplay.protocol.constants import INGEST_PATH

from .logs import get_logger
from .metrics import Metrics

if TYPE_CHECKING:
    from .state import AppState

log = get_logger("livereplay.activity")

Kind = Literal["reader", "writer"]
# Set in a socket's scope once it is admitted: when, and what it is.
OPENED_KEY = "livereplay.opened"


@dataclass(slots=True)
class Activity:
    """Open sockets by kind, for the summary (a reader's count is also a gauge)."""

    open: dict[str, int] = field(default_factory=lambda: {"reader": 0, "writer": 0})


def peer(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def socket_kind(scope: Scope) -> Kind:
    """The ingest socket is a writer's; every other socket a reader's (also before routing)."""
    path: str = scope.get("path", "")
    return "writer" if path.rstrip("/").endswith(INGEST_PATH) else "reader"


def socket_opened(scope: Scope, activity: Activity) -> None:
    kind = socket_kind(scope)
    session_id = scope.get("path_params", {}).get("session_id")
    scope[OPENED_KEY] = (time.monotonic(), kind)
    activity.open[kind] += 1
    log.info("connection_opened", kind=kind, session_id=session_id, client=peer(scope))


def socket_closed(scope: Scope, activity: Activity) -> None:
    """After the socket's handler returned; nothing for a socket that was never admitted."""
    opened = scope.pop(OPENED_KEY, None)
    if opened is None:
        return
    since, kind = opened
    activity.open[kind] -= 1
    log.info(
        "connection_closed",
        kind=kind,
        session_id=scope.get("path_params", {}).get("session_id"),
        client=peer(scope),
        duration_s=round(time.monotonic() - since, 3),
    )


def socket_refused(scope: Scope, code: str, *, limit: bool = False) -> None:
    """A socket refused by its token or a connection limit (after the handshake)."""
    (log.warning if limit else log.info)(
        "connection_refused",
        kind=socket_kind(scope),
        session_id=scope.get("path_params", {}).get("session_id"),
        client=peer(scope),
        code=code,
    )


def request_refused(scope: Scope, status: int, code: str, **details: str | None) -> None:
    """An HTTP error answer (or a refused socket handshake), without the query string."""
    fields: dict[str, Any] = {"status": status, "code": code, "client": peer(scope), **details}
    if scope["type"] == "websocket":
        event, fields["kind"] = "connection_refused", socket_kind(scope)
    else:
        event, fields["method"] = "request_refused", scope.get("method")
    fields["path"] = scope.get("path")
    # Forbidden Hosts and Origins are worth a look (a page elsewhere, DNS rebinding), as
    # are failures; the rest is a client's business, at info.
    loud = code in ("host_forbidden", "origin_forbidden") or (status >= 500 and code != "starting")
    (log.warning if loud else log.info)(event, **fields)


# -- the summary --------------------------------------------------------------


def _total(counter: Counter) -> float:
    """A counter's value summed over its labels."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _totals(counters: Iterable[Counter]) -> float:
    return sum(_total(c) for c in counters)


def _rss_bytes() -> int | None:
    """The process's resident memory now (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(slots=True)
class _Totals:
    appended: float
    delivered: float
    gaps: float
    refused: float
    at: float

    @classmethod
    def now(cls, metrics: Metrics) -> _Totals:
        return cls(
            appended=_total(metrics.appended),
            delivered=_total(metrics.events_sent),
            gaps=_total(metrics.gaps),
            refused=_totals(
                (metrics.append_refused, metrics.connections_refused, metrics.http_errors)
            ),
            at=time.monotonic(),
        )


def summary(state: AppState, before: _Totals) -> tuple[dict[str, Any], _Totals]:
    """The summary line's fields since `before`, and the totals to compare with next."""
    metrics = state.metrics
    after = _Totals.now(metrics)
    elapsed = max(after.at - before.at, 1e-9)
    stats = state.store.stats()
    fields: dict[str, Any] = {
        "sessions": stats.sessions,
        "readers": int(_total_gauge(metrics)),
        "writers": state.activity.open["writer"],
        "appends_per_s": round((after.appended - before.appended) / elapsed, 1),
        "deliveries_per_s": round((after.delivered - before.delivered) / elapsed, 1),
        "gaps": int(after.gaps - before.gaps),
        "refusals": int(after.refused - before.refused),
        "retained_events": stats.retained_events,
        "retained_bytes": stats.retained_bytes,
        "held_bytes": stats.held_bytes,
        "rss_bytes": _rss_bytes(),
        "interval_s": round(elapsed, 1),
    }
    return fields, after


def _total_gauge(metrics: Metrics) -> float:
    return sum(s.value for m in metrics.readers.collect() for s in m.samples)


async def summary_forever(state: AppState) -> None:
    """Log `summary` every `--log-summary-s` seconds (never when it is 0)."""
    interval = state.settings.log_summary_s
    if interval <= 0:
        return
    before = _Totals.now(state.metrics)
    while True:
        await asyncio.sleep(interval)
        try:
            fields, before = summary(state, before)
        except Exception:
            log.exception("summary_failed")
            continue
        log.info("summary", **fields)
