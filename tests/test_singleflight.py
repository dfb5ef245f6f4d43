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
