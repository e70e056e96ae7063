"""Scenario 5: the Redis backend under faults.

(a) Redis killed (-9: every key is gone) and restarted on the same port; (b) one of
two daemons sharing one Redis killed and restarted, readers spread over both. Gaps
are allowed where history was really lost, and are reported; duplicates and
unreported holes are not.
"""

from __future__ import annotations

import asyncio

from tests.faults.harness import FaultRun, Scale
from tests.support.redis import unique_prefix

SESSION = "fault-s5"


def redis_args(url: str, prefix: str) -> list[str]:
    return ["--backend", "redis", "--redis-url", url, "--redis-key-prefix", prefix]


async def test_kill_9_redis(fault_run: FaultRun, scale: Scale) -> None:
    run = fault_run
    redis = run.redis_server()
    daemon = run.daemon(*redis_args(redis.url, unique_prefix()))
    writer = run.writer(daemon.http_url, SESSION, rate=1000)
    for i in range(scale.pick(4, 10)):
        run.reader(f"r-{i}", daemon.http_url, SESSION)
    for _ in range(scale.pick(1, 4)):
        await asyncio.to_thread(writer.wait_acked, writer.acked + scale.pick(1000, 3000), 30)
        await asyncio.to_thread(redis.kill)
        run.fault("redis kill -9")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis.start)
    await asyncio.to_thread(writer.wait_acked, writer.acked + 500, 30)
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()


async def test_kill_9_one_of_two_daemons(fault_run: FaultRun, scale: Scale) -> None:
    run = fault_run
    redis = run.redis_server()
    # 20 s of history at 1000 events/s: a reader whose daemon a loaded machine restarts
    # slowly is still covered, so any gap would be the service's fault, not retention's.
    args = [*redis_args(redis.url, unique_prefix()), "--max-events-per-session", "20000"]
    a, b = run.daemon(*args), run.daemon(*args)
    writer = run.writer(a.http_url, SESSION, "--window-events", "20000", rate=1000)
    count = scale.pick(3, 6)
    for i in range(count):
        run.reader(f"a-{i}", a.http_url, SESSION)
        run.reader(f"b-{i}", b.http_url, SESSION)
    rounds = scale.pick(2, 6)
    for i in range(rounds):
        await asyncio.to_thread(writer.wait_acked, writer.acked + scale.pick(1000, 2000), 30)
        # The short run kills the readers' daemon; the soak also the writer's.
        victim = a if scale.soak and i % 2 else b
        await asyncio.to_thread(run.kill_daemon, victim)
    await asyncio.to_thread(writer.wait_acked, writer.acked + 500, 30)
    await run.finish(a.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("Redis kept the whole history")
