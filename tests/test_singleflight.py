"""paracache.singleflight on its own: the Redis lock's life, another process's leader
(a second SingleFlight on the same Redis, as another process has), a crashed leader's lock,
argument checks. Real embedded Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from paracache import Scope, SemanticIndex
from paracache.singleflight import Claim, SingleFlight

SCOPE = Scope(model="m", tenant="acme")
Q = "How do I close my account?"


def _lock_keys(index: SemanticIndex, url: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter(match=index.layout.namespace_prefix + "flight:*"))
    finally:
        client.close()


def test_the_leader_holds_a_short_lock_until_done(index: SemanticIndex, redis_url: str) -> None:
    flights = SingleFlight(index, wait=5.0)
    claim = flights.claim(Q, SCOPE)
    assert claim.leader and claim.payload is None and flights.in_flight() == 1
    keys = _lock_keys(index, redis_url)
    assert len(keys) == 1
    ttl = redis.Redis.from_url(redis_url).pttl(keys[0])
    assert 0 < ttl <= 5000
    claim.done(None)
    assert _lock_keys(index, redis_url) == [] and flights.in_flight() == 0
    claim.done("late")  # settling twice is harmless


def test_another_process_leader_answers_this_one(make_index: Any, redis_url: str) -> None:
    here, there = make_index(), make_index()  # two instances: nothing shared but Redis
    leader = SingleFlight(there).claim(Q, SCOPE)
    assert leader.leader
    got: list[Claim] = []
    waiter = threading.Thread(target=lambda: got.append(SingleFlight(here).claim(Q, SCOPE)))
    waiter.start()
    time.sleep(0.1)  # let it find the lock taken (if it has not yet, it still reads the entry)
    there.store(Q, "Settings > Close account.", SCOPE)
    leader.done("Settings > Close account.")
    waiter.join(60)
    assert got and got[0].payload == "Settings > Close account." and not got[0].leader


def test_a_crashed_leader_delays_others_by_its_lock_at_most(
    index: SemanticIndex, redis_url: str
) -> None:
    entry_id = index.core.prepare_lookup(Q, SCOPE).entry_id
    key = f"{index.layout.namespace_prefix}flight:{entry_id}"
    redis.Redis.from_url(redis_url).set(key, "someone-gone", px=300)
    t0 = time.monotonic()
    claim = SingleFlight(index, wait=30.0).claim(Q, SCOPE)
    assert claim.payload is None and claim.leader  # the lock expired: this one leads
    assert time.monotonic() - t0 < 25
    claim.done(None)


async def test_async_claims_share_the_flight(index: SemanticIndex) -> None:
    flights = SingleFlight(index)
    first = await flights.aclaim(Q, SCOPE)
    import asyncio

    second = asyncio.ensure_future(flights.aclaim(Q, SCOPE))
    await asyncio.sleep(0.05)
    assert not second.done()
    await first.adone("Settings > Close account.")
    answered = await asyncio.wait_for(second, 30)
    assert answered.payload == "Settings > Close account."


def test_arguments_are_checked(index: SemanticIndex) -> None:
    with pytest.raises(TypeError):
        SingleFlight("not an index")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SingleFlight(index, wait=0)
    with pytest.raises(ValueError):
        SingleFlight(index, retries=-1)
    for flag in ("no", 0):  # were read as True / False: across processes or not
        with pytest.raises(TypeError, match="distributed must be a bool"):
            SingleFlight(index, distributed=flag)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SingleFlight(index).claim(42)  # type: ignore[arg-type]


# ------------------------------------------------------------ flight(): settled on every exit


def test_flight_hands_on_the_stored_answer(index: SemanticIndex, redis_url: str) -> None:
    flights = SingleFlight(index, wait=30.0)
    got: list[Claim] = []
    with flights.flight(Q, SCOPE) as claim:
        assert claim.leader and flights.in_flight() == 1
        waiter = threading.Thread(target=lambda: got.append(flights.claim(Q, SCOPE)))
        waiter.start()
        time.sleep(0.1)
        claim.stored("Settings > Close account.")
    waiter.join(30)
    assert got and got[0].payload == "Settings > Close account."
    assert flights.in_flight() == 0 and _lock_keys(index, redis_url) == []


def test_flight_raising_releases_it(index: SemanticIndex, redis_url: str) -> None:
    flights = SingleFlight(index, wait=30.0)
    with pytest.raises(RuntimeError, match="model down"), flights.flight(Q, SCOPE) as claim:
        assert claim.leader
        raise RuntimeError("model down")
    assert flights.in_flight() == 0 and _lock_keys(index, redis_url) == []
    t0 = time.monotonic()
    again = flights.claim(Q, SCOPE)  # nobody waits on the failed one: leads at once
    assert again.leader and time.monotonic() - t0 < 5
    again.done(None)
    with flights.flight(Q, SCOPE, join=False) as alone:  # nothing claimed
        assert not alone.leader and alone.payload is None and flights.in_flight() == 0


async def test_a_cancelled_aflight_releases_it(index: SemanticIndex, redis_url: str) -> None:
    import asyncio

    flights = SingleFlight(index, wait=30.0)
    inside = asyncio.Event()

    async def caller() -> None:
        async with flights.aflight(Q, SCOPE):
            inside.set()
            await asyncio.sleep(60)  # the model call

    task = asyncio.create_task(caller())
    await asyncio.wait_for(inside.wait(), 30)
    assert flights.in_flight() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flights.in_flight() == 0 and _lock_keys(index, redis_url) == []


async def test_a_task_cancelled_while_claiming_gives_up_its_lead(
    index: SemanticIndex, redis_url: str
) -> None:
    """A caller that leads in its process but waits on another process's Redis lock, and
    is cancelled there (a client gone), gave its in-process flight to nobody: its
    waiters waited ``wait`` seconds in vain. Now the flight is given up at once."""
    import asyncio

    entry_id = index.core.prepare_lookup(Q, SCOPE).entry_id
    other = f"{index.layout.namespace_prefix}flight:{entry_id}"
    client = redis.Redis.from_url(redis_url)
    client.set(other, "another-process", px=30_000)
    try:
        flights = SingleFlight(index, wait=30.0)
        task = asyncio.create_task(flights.aclaim(Q, SCOPE))
        for _ in range(300):  # until it leads here and polls the other's lock
            await asyncio.sleep(0.01)
            if flights.in_flight():
                break
        await asyncio.sleep(0.1)
        assert flights.in_flight() == 1 and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert flights.in_flight() == 0
        assert client.get(other) == b"another-process"  # not ours: left alone
    finally:
        client.delete(other)
        client.close()


async def test_a_task_cancelled_after_taking_the_lock_releases_it(
    make_index: Any, redis_url: str
) -> None:
    """Cancelled between taking the Redis lock and returning its claim (reading the
    entry): the lock was not the claim's yet and stayed until it expired."""
    import asyncio

    index = make_index()
    flights = SingleFlight(index, wait=30.0)
    reading = asyncio.Event()
    release = asyncio.Event()
    lookup = index.alookup_verdict

    async def slow_lookup(*args: Any, **kwargs: Any) -> Any:  # the cache's own re-read
        reading.set()
        await release.wait()
        return await lookup(*args, **kwargs)

    index.store(Q, "Settings > Close account.", SCOPE)  # so the leader re-reads it
    index.alookup_verdict = slow_lookup  # type: ignore[method-assign]
    task = asyncio.create_task(flights.aclaim(Q, SCOPE))
    await asyncio.wait_for(reading.wait(), 30)
    assert len(_lock_keys(index, redis_url)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flights.in_flight() == 0 and _lock_keys(index, redis_url) == []


# ------------------------------------------------------------ a stream dropped unread


def _settling_stream(claim: Claim) -> Any:
    with claim:  # what the adapters' streams do: settled once read, closed or failed
        yield "an answer"


def test_a_dropped_unread_stream_releases_its_lock_for_other_processes(
    make_index: Any, redis_url: str
) -> None:
    """A stream handed its claim (``hand_off``) and dropped before its first ``next``
    never runs its ``with``: its finalizer settled the flight here but left the Redis
    lock, so another process asking the same question waited ``wait`` seconds (30 by
    default) for a stream nobody reads. Dropped, it releases the lock too."""
    import gc

    here, there = make_index(), make_index()  # two processes' view: nothing shared but Redis
    flights = SingleFlight(here, wait=8.0)
    claim = flights.claim(Q, SCOPE)
    assert claim.leader and len(_lock_keys(here, redis_url)) == 1
    moved = claim.hand_off()
    stream = _settling_stream(moved)
    SingleFlight.settle_when_dropped(stream, moved)
    del moved
    claim.done(None)  # settles nothing: handed off
    assert len(_lock_keys(here, redis_url)) == 1
    del stream
    gc.collect()
    for _ in range(500):  # released on a thread of its own
        if not _lock_keys(here, redis_url):
            break
        time.sleep(0.01)
    assert _lock_keys(here, redis_url) == [] and flights.in_flight() == 0
    t0 = time.monotonic()
    other = SingleFlight(there, wait=8.0).claim(Q, SCOPE)
    assert other.leader and time.monotonic() - t0 < 4  # it waited 8 s on the lock
    other.done(None)

