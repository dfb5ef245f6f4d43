"""Work queues (``paracache.queues``) against real Redis servers: at least once through a
SIGKILLed worker, dead letters and requeue, a full queue that loses nothing, tenants that
never meet, Redis stopped, the async twins and bad arguments. Nothing is mocked."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redis.cluster import key_slot

from paracache.embedded import EmbeddedCluster, EmbeddedRedis
from paracache.policy import CircuitBreaker
from paracache.queues import MAX_BATCH, Job, QueueError, QueueFull, WorkQueue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEGRATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "integrations")


@pytest.fixture
def ns() -> str:
    return "q-" + uuid.uuid4().hex[:10]


@pytest.fixture
def make(redis_url: str, ns: str) -> Iterator[Any]:
    made: list[WorkQueue] = []

    def build(name: str = "jobs", **options: Any) -> WorkQueue:
        options.setdefault("namespace", ns)
        options.setdefault("timeout", 5.0)
        queue = WorkQueue(name, redis_url=redis_url, **options)
        made.append(queue)
        return queue

    yield build
    for queue in made:
        queue.close()


def test_put_get_ack_round_trip(make: Any) -> None:
    queue = make()
    payloads = [{"text": "Refunds within 30 days.", "doc": 1}, [1, 2.5, None], "plain",
                {"ünïcödé": "日本語 \ud800"}]
    ids = [queue.put(p) for p in payloads]
    assert len(set(ids)) == 4
    assert queue.stats().length == 4 and queue.stats().pending == 0
    jobs = queue.get("w1", count=10, block=0)
    assert [j.id for j in jobs] == ids  # first in, first out
    assert [j.payload for j in jobs] == payloads
    assert all(j.deliveries == 1 and j.consumer == "w1" and j.error is None for j in jobs)
    assert all(abs(j.enqueued_at - time.time()) < 60 for j in jobs)
    stats = queue.stats()
    assert (stats.length, stats.pending, stats.waiting, stats.dead) == (4, 4, 0, 0)
    assert stats.oldest_age is not None and 0 <= stats.oldest_age < 60
    assert all(queue.ack(j) for j in jobs)
    assert not queue.ack(jobs[0])  # twice: no longer pending
    stats = queue.stats()
    assert (stats.length, stats.pending, stats.oldest_age) == (0, 0, None)
    assert queue.get("w1", block=0) == []


def test_blocking_get_wakes_on_a_put_and_times_out(make: Any) -> None:
    queue = make(timeout=0.5)  # blocks in slices of 0.25 s
    started = time.monotonic()
    assert queue.get("w1", block=0.6) == []
    assert 0.55 <= time.monotonic() - started < 3.0
    producer = make()
    timer = threading.Timer(0.4, lambda: producer.put({"late": True}))
    timer.start()
    started = time.monotonic()
    jobs = queue.get("w1", block=10.0)
    timer.join()
    assert [j.payload for j in jobs] == [{"late": True}]
    assert time.monotonic() - started < 3.0


WORKER = textwrap.dedent("""
    import sys, time
    from paracache.queues import WorkQueue
    queue = WorkQueue(sys.argv[2], redis_url=sys.argv[1], namespace=sys.argv[3],
                      visibility_timeout=float(sys.argv[4]), timeout=5.0)
    [job] = queue.get("doomed", block=30)
    print(job.id, flush=True)
    time.sleep(600)   # working: never acknowledges (it is SIGKILLed)
""")


def test_a_sigkilled_workers_job_is_redelivered_after_the_timeout(
    make: Any, redis_url: str, ns: str
) -> None:
    visibility = 1.0
    queue = make("kill-test", visibility_timeout=visibility)
    job_id = queue.put({"embed": "doc-7"})
    other = queue.put({"embed": "doc-8"})
    env = {**os.environ, "PYTHONPATH": INTEGRATIONS}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, redis_url, "kill-test", ns, str(visibility)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == job_id
        delivered = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # Before the timeout the dead worker's job is not handed out: only the other one.
    [first] = queue.get("survivor", block=0)
    assert first.id == other and queue.ack(first)
    assert queue.get("survivor", block=0) == [] or time.monotonic() - delivered >= visibility
    stats = queue.stats()
    assert (stats.length, stats.pending) == (1, 1)  # still there, still pending
    # After it: re-delivered to another consumer, counted as the second delivery.
    [again] = queue.get("survivor", block=visibility + 10)
    assert time.monotonic() - delivered >= visibility
    assert again.id == job_id and again.payload == {"embed": "doc-7"}
    assert again.deliveries == 2 and again.consumer == "survivor"
    assert queue.ack(again)
    assert queue.stats().length == 0


def test_a_callers_client_blocks_within_its_own_timeout(redis_url: str, ns: str) -> None:
    """With your own client, a waiting get blocks in slices within its socket timeout
    (0.3 s here; the queue's own default would wait 0.5 s and time out)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.3)
    queue = WorkQueue("mine", redis_client=client, namespace=ns)
    try:
        started = time.monotonic()
        assert queue.get("w", block=1.0) == []
        assert 0.95 <= time.monotonic() - started < 5.0
        queue.put("x")
        assert [j.payload for j in queue.get("w", block=1.0)] == ["x"]
    finally:
        queue.close()
        client.close()


def test_an_expired_job_behind_many_live_ones_is_found(make: Any) -> None:
    """Each get looks at a bounded part of the pending jobs, going on where the last
    one stopped: an expired job behind 300 live ones is claimed within a few gets."""
    queue = make(visibility_timeout=2.0)  # touching 300 jobs takes well under 2 s
    queue.put_many([{"n": i} for i in range(300)])
    doomed = queue.put("its worker died")
    jobs = queue.get("busy", count=301, block=0)
    assert len(jobs) == 301 and jobs[-1].id == doomed
    time.sleep(2.1)
    assert all(queue.touch(j) for j in jobs[:-1])  # alive, still working on these
    found = []
    for _ in range(4):
        found += queue.get("other", block=0)
        if found:
            break
    assert [j.id for j in found] == [doomed] and found[0].deliveries == 2


def test_touch_keeps_a_long_job_from_being_claimed(make: Any) -> None:
    queue = make(visibility_timeout=1.0)
    queue.put("long job")
    [job] = queue.get("slow", block=0)
    for _ in range(6):  # 1.5 s of work, touched every 0.25 s
        time.sleep(0.25)
        assert queue.touch(job)
        assert queue.get("eager", block=0) == []
    assert queue.ack(job)
    time.sleep(1.1)
    assert queue.get("eager", block=0) == []


def test_dead_letter_after_max_deliveries_then_requeue(make: Any) -> None:
    queue = make(max_deliveries=3)
    job_id = queue.put({"eval": "run-1"})
    keep = queue.put({"eval": "run-2"})
    outcomes = []
    for attempt in range(1, 4):
        [job] = queue.get(f"w{attempt}", block=0)  # a job given back comes first
        assert job.id == job_id and job.deliveries == attempt
        outcomes.append(queue.fail(job, error=f"RateLimitError: attempt {attempt}"))
        assert queue.fail(job) == "stale"  # failing it twice does nothing
    assert outcomes == ["retried", "retried", "dead"]
    [other] = queue.get("w4", block=0)
    assert other.id == keep and queue.ack(other)
    assert queue.get("w4", block=0) == []
    stats = queue.stats()
    assert (stats.length, stats.pending, stats.dead) == (0, 0, 1)
    [dead] = queue.dead()
    assert dead.id == job_id and dead.payload == {"eval": "run-1"}
    assert dead.deliveries == 3 and dead.error == "RateLimitError: attempt 3"
    assert not queue.ack(dead)  # a dead letter is not acknowledged by accident
    assert queue.requeue() == 1
    assert queue.stats().dead == 0
    [back] = queue.get("w5", block=0)
    assert (back.id, back.payload, back.deliveries) == (job_id, {"eval": "run-1"}, 1)
    assert queue.fail(back, retry=False, error="bad input") == "dead"
    assert [d.error for d in queue.dead()] == ["bad input"]
    assert queue.requeue([]) == 0
    assert queue.requeue(queue.dead()) == 1 and queue.dead() == []
    [back] = queue.get("w6", block=0)
    assert queue.fail(back, retry=False) == "dead" and queue.purge_dead() == 1


def test_expired_jobs_past_max_deliveries_become_dead_letters(make: Any) -> None:
    queue = make(max_deliveries=2, visibility_timeout=0.2)
    job_id = queue.put("crashes its workers")
    for n in (1, 2):
        [job] = queue.get(f"w{n}", block=1.0)
        assert job.deliveries == n
        time.sleep(0.25)  # the worker "dies": never acks
    assert queue.get("w3", block=0) == []
    [dead] = queue.dead()
    assert dead.id == job_id and dead.deliveries == 2
    assert dead.error is not None and "visibility timeout" in dead.error


def test_fail_with_a_delay_redelivers_later(make: Any) -> None:
    queue = make()
    queue.put("retry me")
    [job] = queue.get("w1", block=0)
    assert queue.fail(job, delay=1.0) == "retried"
    assert queue.get("w2", block=0) == []
    [again] = queue.get("w2", block=3.0)
    assert again.deliveries == 2


def test_a_full_queue_refuses_and_loses_nothing(make: Any, redis_url: str) -> None:
    queue = make(max_length=5)
    ids = queue.put_many([{"n": i} for i in range(4)])
    with pytest.raises(QueueFull) as info:
        queue.put_many([{"n": 4}, {"n": 5}])  # all or none
    assert info.value.length == 4 and info.value.max_length == 5 and info.value.kind is None
    assert isinstance(info.value, QueueError)
    ids.append(queue.put({"n": 4}))
    with pytest.raises(QueueFull, match="full"):
        queue.put({"n": 5})
    # Delivered jobs still count (not acknowledged yet); acknowledged ones make room.
    jobs = queue.get("w", count=2, block=0)
    with pytest.raises(QueueFull):
        queue.put({"n": 5})
    assert all(queue.ack(j) for j in jobs)
    ids += queue.put_many([{"n": 5}, {"n": 6}])
    seen = [j.id for j in jobs] + [j.id for j in queue.get("w", count=10, block=0)]
    assert seen == ids and raw(redis_url).xlen(queue.keys[0]) == 5


def test_concurrent_producers_never_overfill(make: Any) -> None:
    queue = make(max_length=20)
    accepted: list[str] = []
    refused = []
    lock = threading.Lock()

    def produce(k: int) -> None:
        for i in range(15):
            try:
                job_id = queue.put({"k": k, "i": i})
            except QueueFull:
                with lock:
                    refused.append((k, i))
            else:
                with lock:
                    accepted.append(job_id)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 20 and len(refused) == 40
    delivered = queue.get("w", count=100, block=0)
    assert sorted(j.id for j in delivered) == sorted(accepted)


HOSTILE = ["*", "jobs}:{x", "a:b:c", "' OR 1=1 --", "]]) redis.call('FLUSHALL') --",
           "\x00\n\r", "\ud800", "{", "x" * 100_000, "paracache:_q:default:*"]


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_tenants_and_hostile_names_never_meet(make: Any, redis_url: str, ns: str) -> None:
    queues = {
        (tenant, name): make(name, tenant=tenant)
        for tenant in ("acme", "globex", None, "", "acme}:{globex")
        for name in ("jobs", *HOSTILE[:4])
    }
    put = {key: q.put({"owner": [key[0], key[1][:20]]}) for key, q in queues.items()}
    keys = {k for q in queues.values() for k in q.keys}
    assert len(keys) == 3 * len(queues)  # every queue its own keys
    stored = {k.decode() for k in raw(redis_url).scan_iter(f"paracache:_q:{ns}:*")}
    assert stored == {q.keys[0] for q in queues.values()}  # names never reach Redis
    for key, q in queues.items():
        stats = q.stats()
        assert (stats.length, stats.pending, stats.dead) == (1, 0, 0)
        [job] = q.get("w", count=50, block=0)
        assert job.id == put[key] and job.payload == {"owner": [key[0], key[1][:20]]}
    acme, globex = queues[("acme", "jobs")], queues[("globex", "jobs")]
    acme.put("acme's second")
    [mine] = acme.get("w", block=0)
    # Another tenant's queue refuses the job outright...
    with pytest.raises(ValueError, match="another queue"):
        globex.ack(mine)
    with pytest.raises(ValueError, match="another queue"):
        globex.fail(mine, retry=False)
    # ... and a forged job (the other queue's tag, this entry and id) finds nothing there.
    forged = dataclasses.replace(mine, queue=globex._tag)
    assert globex.ack(forged) is False and globex.fail(forged, retry=False) == "stale"
    assert globex.touch(forged) is False
    assert globex.requeue([forged]) == 0 and globex.dead() == []
    assert acme.stats().pending == 2 and acme.ack(mine)
    # A payload that looks like keys or commands is data.
    hostile = make("jobs", tenant="mallory")
    hostile.put({"id": "x", "p": "null", "keys": HOSTILE[:6]})
    [job] = hostile.get("w", block=0)
    assert job.payload == {"id": "x", "p": "null", "keys": HOSTILE[:6]}
    assert acme.stats().length == 1 and globex.stats().length == 1


def test_a_queues_keys_share_one_cluster_slot() -> None:
    for tenant in (None, "acme", "x}y{z"):
        for name in HOSTILE:
            queue = WorkQueue(name, redis_url="redis://127.0.0.1:1", tenant=tenant)
            assert len({key_slot(k.encode()) for k in queue.keys}) == 1
            queue.close()


def test_the_same_name_and_tenant_is_one_queue(make: Any) -> None:
    producer, consumer = make("shared", tenant="acme"), make("shared", tenant="acme")
    job_id = producer.put({"x": 1})
    assert [j.id for j in consumer.get("w", block=0)] == [job_id]


@pytest.fixture
def private_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(persist=True, appendfsync="always").start()
    yield server
    server.close()


def test_redis_stopped_raises_clear_errors_and_the_worker_waits(
    private_server: EmbeddedRedis, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = WorkQueue("jobs", redis_url=private_server.url, namespace=ns, timeout=1.0,
                      breaker=CircuitBreaker(failures=2, cooldown=0.2))
    try:
        before = queue.put({"n": "before"})
        private_server.stop()
        for _ in range(4):  # breaker closed, then open: the same error, kind unavailable
            with pytest.raises(QueueError, match="put") as info:
                queue.put({"n": "lost?"})
            assert info.value.kind in ("unavailable", "timeout")
            said = "may be queued" if info.value.kind == "timeout" else "was not queued"
            assert said in str(info.value)
        with pytest.raises(QueueError, match="get failed") as info:
            queue.get("w", block=0)
        assert info.value.kind in ("unavailable", "timeout")
        with pytest.raises(QueueError):
            queue.stats()
        handled: list[Any] = []
        stop = threading.Event()
        caplog.set_level(logging.WARNING, logger="paracache")
        worker = threading.Thread(
            target=lambda: queue.run(lambda job: handled.append(job.payload), stop=stop,
                                     max_backoff=0.3)
        )
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive() and handled == []
        assert any("get failed" in r.getMessage() and "goes on" in r.getMessage()
                   for r in caplog.records)
        private_server.start()
        deadline = time.monotonic() + 30
        after = None
        while after is None:
            try:
                after = queue.put({"n": "after"})
            except QueueError:
                assert time.monotonic() < deadline, "the queue did not recover"
                time.sleep(0.1)
        while len(handled) < 2:
            assert time.monotonic() < deadline, handled
            time.sleep(0.05)
        stop.set()
        worker.join(timeout=30)
        assert not worker.is_alive()
        assert handled == [{"n": "before"}, {"n": "after"}]  # persisted, then new
        assert before and queue.stats().length == 0
    finally:
        queue.close()


def test_run_acks_successes_and_dead_letters_a_failing_handler(make: Any) -> None:
    queue = make(max_deliveries=2)
    queue.put_many([{"n": 1}, {"n": "bad"}, {"n": 3}])
    seen: list[Any] = []

    def handler(job: Job) -> None:
        seen.append((job.payload["n"], job.deliveries))
        if job.payload["n"] == "bad":
            raise ValueError("cannot embed")

    assert queue.run(handler, max_jobs=4, consumer="w1") == 4
    consumers = raw(queue._link.url).xinfo_consumers(queue.keys[0], "paracache")
    assert b"w1" not in {c["name"] for c in consumers}  # a clean exit leaves the group
    queue.put_many(["held", "handled"])
    [held] = queue.get("w2", block=0)
    assert queue.run(lambda job: None, max_jobs=1, consumer="w2") == 1
    consumers = raw(queue._link.url).xinfo_consumers(queue.keys[0], "paracache")
    assert b"w2" in {c["name"] for c in consumers}  # ... unless it still holds a job
    assert queue.ack(held)
    assert seen == [(1, 1), ("bad", 1), ("bad", 2), (3, 1)]  # a retry comes back first
    stats = queue.stats()
    assert (stats.length, stats.dead) == (0, 1)
    assert queue.dead()[0].error == "ValueError: cannot embed"

    async def coroutine_handler(job: Job) -> None: ...

    queue.put("x")
    with pytest.raises(TypeError, match="use arun"):
        queue.run(coroutine_handler, max_jobs=1)


async def test_async_twins(make: Any) -> None:
    queue = make(max_deliveries=2, max_length=50)
    ids = await asyncio.gather(*(queue.aput({"n": i}) for i in range(10)))
    ids += await queue.aput_many([{"n": 10}, {"n": 11}])
    assert len(set(ids)) == 12
    assert (await queue.astats()).length == 12
    # Many tasks at once on one loop: every job delivered exactly once.
    batches = await asyncio.gather(*(queue.aget(f"t{i}", count=2, block=0.5) for i in range(8)))
    got = [j for b in batches for j in b]
    assert sorted(j.id for j in got) == sorted(ids)
    assert all(await asyncio.gather(*(queue.aack(j) for j in got[1:])))
    assert await queue.afail(got[0], retry=False, error="async failure") == "dead"
    assert [d.error for d in await queue.adead()] == ["async failure"]
    assert await queue.arequeue() == 1
    [job] = await queue.aget("t", block=1.0)
    assert await queue.atouch(job) and await queue.aack(job)
    await queue.aput({"n": "bad"})
    await queue.aput({"n": "good"})
    handled = []

    async def handler(job: Job) -> None:
        await asyncio.sleep(0)
        handled.append(job.payload["n"])
        if job.payload["n"] == "bad":
            raise RuntimeError("async handler failed")

    assert await queue.arun(handler, max_jobs=3) == 3
    assert handled == ["bad", "bad", "good"]
    assert [d.error for d in await queue.adead()] == ["RuntimeError: async handler failed"]
    assert await queue.apurge_dead() == 1
    assert (await queue.astats()).length == 0
    # The event loop is never blocked by a waiting get.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    assert await queue.aget("idle", block=0.5) == []
    task.cancel()
    assert ticks >= 10  # about 50 when the loop is free; 0 or 1 if a wait blocked it
    await queue.aclose()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"name": ""}, ValueError),
        ({"name": 3}, TypeError),
        ({"tenant": 3}, TypeError),
        ({"namespace": "a b"}, ValueError),
        ({"max_length": 0}, ValueError),
        ({"max_length": 1.5}, TypeError),
        ({"max_length": True}, TypeError),
        ({"visibility_timeout": 0}, ValueError),
        ({"visibility_timeout": math.nan}, TypeError),
        ({"visibility_timeout": 1e12}, ValueError),
        ({"max_deliveries": 0}, ValueError),
        ({"max_payload_bytes": -1}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"redis_client": "redis://x", "redis_url": None}, TypeError),
        ({"redis_client": redis.Redis(), "redis_url": "redis://127.0.0.1:1"}, ValueError),
    ],
)
def test_bad_arguments_raise_at_construction(args: dict[str, Any], error: type) -> None:
    args = {"name": "q", "redis_url": "redis://127.0.0.1:1", **args}
    with pytest.raises(error):
        WorkQueue(**args)


class NotJson:
    pass


def test_bad_payloads_and_call_arguments(make: Any) -> None:
    queue = make(max_payload_bytes=1000)
    for payload in ({1, 2}, NotJson(), math.nan, {"x": math.inf}, b"bytes"):
        with pytest.raises(TypeError, match="JSON-serialisable"):
            queue.put(payload)
    with pytest.raises(ValueError, match="max_payload_bytes=1000"):
        queue.put("x" * 1000)
    with pytest.raises(ValueError, match="max_payload_bytes"):
        queue.put_many(["ok", "x" * 2000])  # nothing queued when one is bad
    with pytest.raises(TypeError):
        queue.put_many("abc")
    with pytest.raises(ValueError, match="at most"):
        queue.put_many([1] * (MAX_BATCH + 1))
    assert queue.put_many([]) == [] and queue.stats().length == 0
    for consumer, error in (("", ValueError), (None, TypeError), ("x" * 300, ValueError)):
        with pytest.raises(error):
            queue.get(consumer, block=0)
    for kwargs, error in (({"count": 0}, ValueError), ({"count": MAX_BATCH + 1}, ValueError),
                          ({"block": -1}, ValueError), ({"block": math.inf}, TypeError),
                          ({"count": "1"}, TypeError)):
        with pytest.raises(error):
            queue.get("w", **kwargs)
    queue.put("fine")
    [job] = queue.get("w", block=0)
    with pytest.raises(TypeError):
        queue.ack("not a job")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        queue.fail(job, delay=-1)
    with pytest.raises(TypeError):
        queue.fail(job, error=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        queue.requeue(job)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        queue.run("not callable", max_jobs=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is_set"):
        queue.run(print, max_jobs=1, stop=object())  # type: ignore[arg-type]
    assert queue.ack(job)


def test_a_foreign_value_at_the_key_is_a_clear_error(make: Any, redis_url: str) -> None:
    queue = make()
    raw(redis_url).set(queue.keys[0], "someone else's string")
    with pytest.raises(QueueError) as info:
        queue.put("x")
    assert info.value.kind == "wrongtype"
    raw(redis_url).delete(queue.keys[0])
    assert queue.put("x")


def test_entries_hold_only_the_id_and_the_payload(make: Any, redis_url: str) -> None:
    queue = make()
    job_id = queue.put({"a": 1})
    [(_, fields)] = raw(redis_url).xrange(queue.keys[0])
    assert fields == {b"id": job_id.encode(), b"p": json.dumps({"a": 1}).replace(" ", "").encode()}


def _readme_section() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read().split("## Work queues", 1)[1].split("\n## ", 1)[0]


def test_the_readme_acl_is_enough(redis_url: str, ns: str) -> None:
    """The ACL the README gives for work queues (with NAMESPACE filled in) runs every
    method, the worker loop included."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    block = _readme_section().split("```text\n", 1)[1].split("```", 1)[0]
    words = block.replace("NAMESPACE", ns).split()
    assert words[:3] == ["ACL", "SETUSER", "worker"]
    user, password = "u-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    rules = [f">{password}" if w == ">PASSWORD" else w for w in words[3:]]
    admin = raw(redis_url)
    admin.execute_command("ACL", "SETUSER", user, *rules)
    parts = urlsplit(redis_url)
    query = {**dict(parse_qsl(parts.query)), "username": user, "password": password}
    url = urlunsplit(parts._replace(query=urlencode(query), netloc=parts.netloc.split("@")[-1]))
    queue = WorkQueue("acl", redis_url=url, namespace=ns, timeout=5.0, max_deliveries=2)
    try:
        queue.put_many([1, 2])
        jobs = queue.get("w", count=2, block=0.1)
        assert queue.touch(jobs[0]) and queue.ack(jobs[0])
        assert queue.fail(jobs[1], retry=False, error="x") == "dead"
        assert queue.requeue(queue.dead()) == 1
        assert queue.run(lambda job: None, max_jobs=1, consumer="loop") == 1
        consumers = admin.xinfo_consumers(queue.keys[0], "paracache")
        assert b"loop" not in {c["name"] for c in consumers}
        assert queue.get("w", block=0.1) == []  # a blocking read too
        queue.put(3)
        [job] = queue.get("w", block=0)
        assert queue.fail(job) == "retried"
        assert queue.stats().length == 1 and queue.purge_dead() == 0
        # And nothing else: another namespace's keys are out of reach.
        other = WorkQueue("acl", redis_url=url, namespace=ns + "x", timeout=5.0)
        with pytest.raises(QueueError) as info:
            other.put(1)
        assert info.value.kind == "noperm"
        other.close()
    finally:
        queue.close()
        admin.execute_command("ACL", "DELUSER", user)


def test_the_readme_example_runs(redis_url: str, ns: str) -> None:
    code = _readme_section().split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('redis_url="redis://localhost:6379"', "redis_url=URL, namespace=NS")
    embedded: list[str] = []

    class RateLimitError(Exception):
        pass

    def embed(text: str) -> None:
        embedded.append(text)
        if len(embedded) == 1:
            raise RateLimitError("429")

    shutdown = threading.Event()
    shutdown.set()  # the worker loop is tested elsewhere: here it stops at once
    scope = {"URL": redis_url, "NS": ns, "embed": embed, "RateLimitError": RateLimitError,
             "shutdown": shutdown}
    exec(compile(code, "README.md", "exec"), scope)
    queue = scope["queue"]
    assert embedded == ["Refunds within 30 days."]
    stats = queue.stats()
    assert (stats.length, stats.pending, stats.dead) == (1, 1, 0)  # failed: given back
    queue.close()


def test_on_a_cluster_one_queue_lives_in_one_slot(
    redis_cluster: EmbeddedCluster, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue's keys share a hash tag: on the node that owns their slot every script
    runs (all its keys in one slot); a cluster client is refused with a clear error, and
    another node's URL fails with an error that says it is a cluster node."""
    client = redis_cluster.client()
    try:
        with pytest.raises(TypeError, match="work queues need one Redis server"):
            WorkQueue("q", redis_client=client, namespace=ns)
    finally:
        client.close()
    probe = WorkQueue("q", redis_url="redis://127.0.0.1:1", namespace=ns, tenant="t")
    owner = redis_cluster.owner_port(key_slot(probe.keys[0].encode()))
    probe.close()
    other = next(p for p in redis_cluster.primary_ports() if p != owner)
    queue = WorkQueue("q", redis_url=redis_cluster.node_url(owner), namespace=ns, tenant="t",
                      timeout=10.0, max_deliveries=1)
    try:
        queue.put_many([{"n": 1}, {"n": 2}])
        jobs = queue.get("w", count=2, block=0.2)
        assert queue.ack(jobs[0]) and queue.fail(jobs[1]) == "dead"
        assert queue.requeue() == 1 and queue.stats().length == 1
    finally:
        queue.close()
    wrong = WorkQueue("q", redis_url=redis_cluster.node_url(other), namespace=ns, tenant="t",
                      timeout=10.0)
    try:
        with caplog.at_level("WARNING", logger="paracache"), pytest.raises(QueueError) as info:
            wrong.put(1)
        assert info.value.kind == "refused"
        assert any("Redis Cluster node" in r.getMessage() for r in caplog.records)
    finally:
        wrong.close()


def test_the_module_imports_no_framework() -> None:
    """Framework-free: the queue's file imports the standard library, redis-py and
    paracache's own framework-free modules, nothing else (LangChain, LlamaIndex, FastAPI
    and the embedder stay out of a worker that only moves jobs)."""
    import ast

    import paracache.queues

    with open(paracache.queues.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." + (node.module or "") if node.level else
                         (node.module or "").split(".")[0])
    own = {".errors", ".policy", ".reals", ".redisflow", ".schema", ".scope"}
    assert imported - sys.stdlib_module_names - {"redis", "__future__"} == own


_texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(HOSTILE[:8])


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.tuples(st.none() | _texts, _texts.filter(bool)),
       b=st.tuples(st.none() | _texts, _texts.filter(bool)))
def test_two_queues_of_any_tenants_and_names_never_share_a_job(
    a: tuple[str | None, str], b: tuple[str | None, str], redis_url: str, ns: str
) -> None:
    """Property: any two different (tenant, name) pairs are two queues; a job put in one
    is seen, counted and handed out by that one only."""
    assume(a != b)
    qa = WorkQueue(a[1], tenant=a[0], redis_url=redis_url, namespace=ns, timeout=5.0)
    qb = WorkQueue(b[1], tenant=b[0], redis_url=redis_url, namespace=ns, timeout=5.0)
    try:
        job_id = qa.put({"tenant": a[0], "name": a[1]})
        assert qb.stats().length == 0 and qb.get("w", count=5, block=0) == []
        [job] = qa.get("w", count=5, block=0)
        assert job.id == job_id and job.payload == {"tenant": a[0], "name": a[1]}
        assert qa.ack(job) and qa.stats().length == 0
    finally:
        qa.close()
        qb.close()
