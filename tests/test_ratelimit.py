"""Rate limits on the real embedded Redis: tiers, algorithms, budgets, threads, tasks,
processes, a server killed mid-run, hostile keys, and the LangChain adapter."""

from __future__ import annotations

import asyncio
import json
import math
import os
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
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from paracache.embedded import EmbeddedRedis
from paracache.limiter import Limit, RateLimiter
from paracache.policy import CircuitBreaker
from paracache.ratelimit import RedisRateLimiter, UsageCharger, total_tokens

#: A refill so slow that no test lasts long enough to see one more unit.
HOUR = 3600.0


@pytest.fixture
def ns() -> str:
    return "rl-" + uuid.uuid4().hex[:10]


@pytest.fixture
def make(redis_url: str, ns: str) -> Iterator[Any]:
    made: list[RateLimiter] = []

    def build(limits: list[Limit], **options: Any) -> RateLimiter:
        options.setdefault("namespace", ns)
        options.setdefault("timeout", 5.0)
        limiter = RateLimiter(limits, redis_url=redis_url, **options)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        limiter.close()


def test_token_bucket_burst_then_wait(make: Any) -> None:
    limiter = make([Limit("k", 2, window=HOUR, burst=3)])
    decisions = [limiter.decide() for _ in range(5)]
    assert [d.admitted for d in decisions] == [True, True, True, False, False]
    # 1 unit refills in HOUR / 2 seconds.
    assert 0 < decisions[3].retry_after <= HOUR / 2
    assert limiter.stats().admitted == 3 and limiter.stats().refused == 2


def test_sliding_window_and_its_wait(make: Any) -> None:
    limiter = make([Limit("k", 3, window=HOUR, algorithm="sliding_window")])
    assert [limiter.decide().admitted for _ in range(4)] == [True, True, True, False]
    wait = limiter.decide().retry_after
    assert HOUR - 60 < wait <= HOUR  # the oldest admission leaves the window then


def test_tiers_consume_nothing_when_one_refuses(make: Any) -> None:
    tight = make([Limit("user", 1, window=HOUR), Limit("global", 5, window=HOUR)])
    assert tight.decide().admitted
    for _ in range(3):
        assert not tight.decide().admitted  # "user" refuses: "global" keeps its units
    global_only = make([Limit("global", 5, window=HOUR)])
    assert [global_only.decide().admitted for _ in range(5)] == [True] * 4 + [False]


def test_limiters_with_the_same_key_share_a_limit(make: Any) -> None:
    a = make([Limit("shared", 2, window=HOUR)])
    b = make([Limit("shared", 2, window=HOUR)])
    other = make([Limit("other", 2, window=HOUR)])
    assert a.decide().admitted and b.decide().admitted
    assert not a.decide().admitted and not b.decide().admitted
    assert other.decide().admitted


def test_with_limits_adds_a_tier_on_the_same_connection(make: Any) -> None:
    base = make([Limit("global", 100, window=HOUR)])
    alice = base.with_limits(Limit("user:alice", 1, window=HOUR))
    assert alice.decide().admitted and not alice.decide().admitted
    assert base.decide().admitted  # global still has room
    alice.close()  # shared connection: closing the child leaves the base working
    assert base.decide().admitted


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
def test_budget_charged_after_calls(make: Any, algorithm: str) -> None:
    limiter = make([
        Limit("requests", 100, window=HOUR),
        Limit("tokens", 1000, window=HOUR, algorithm=algorithm, charged=True),
    ])
    assert limiter.decide().admitted
    assert limiter.charge(600)
    assert limiter.decide().admitted  # 400 left: still admitted
    assert limiter.charge(600)  # 200 over budget
    refused = limiter.decide()
    assert not refused.admitted and refused.retry_after > 0
    assert limiter.stats().charges == 2
    # The refusal consumed nothing from the request tier: 100 - 2 admitted = 98 left.
    requests_only = make([Limit("requests", 100, window=HOUR)])
    assert sum(requests_only.decide().admitted for _ in range(100)) == 98


def test_a_request_above_capacity_never_fits(make: Any) -> None:
    limiter = make([Limit("k", 2, window=HOUR)])
    decision = limiter.decide(cost=3)
    assert not decision.admitted and math.isinf(decision.retry_after)
    assert limiter.acquire(cost=3) is False  # blocking, but it could never succeed


def test_blocking_acquire_sleeps_until_the_servers_wait(make: Any) -> None:
    limiter = make([Limit("k", 4, burst=1)])  # one every 0.25 s
    assert limiter.acquire()
    assert limiter.acquire()  # waited for the refill
    stats = limiter.stats()
    # It slept the wait the script computed instead of polling: one or two round trips
    # per admission, never dozens.
    assert stats.admitted == 2 and stats.waits <= 3 and stats.refused <= 3


def test_max_wait_gives_up(make: Any) -> None:
    limiter = make([Limit("k", 1, window=HOUR)], max_wait=0.2)
    assert limiter.acquire()
    assert limiter.acquire() is False
    assert limiter.acquire(blocking=False) is False


def test_threads_admit_exactly_the_capacity(make: Any) -> None:
    limiter = make([Limit("k", 25, window=HOUR)])
    admitted: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            ok = limiter.acquire(blocking=False)
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(admitted) == 160 and sum(admitted) == 25


async def test_tasks_admit_exactly_the_capacity_and_never_block_the_loop(make: Any) -> None:
    limiter = make([Limit("k", 10, window=HOUR)])
    results = await asyncio.gather(*(limiter.aacquire(blocking=False) for _ in range(50)))
    assert sum(results) == 10
    waiting = make([Limit("w", 2, burst=1)])
    assert await waiting.aacquire()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    assert await waiting.aacquire()  # waits about 0.5 s for the refill
    done.set()
    await tick_task
    assert ticks >= 3  # the loop kept running while the acquire waited (~50 ticks idle)


PROCESS = textwrap.dedent(
    """
    import json, sys, time
    from paracache.limiter import Limit, RateLimiter
    url, ns, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    limiter = RateLimiter([Limit("shared", 5, burst=2)], redis_url=url, namespace=ns,
                          timeout=5.0, fail_open=False)
    print("ready", flush=True)
    sys.stdin.readline()
    admitted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        limiter.acquire(blocking=False) and (admitted := admitted + 1)
        time.sleep(0.005)
    stats = limiter.stats()
    print(json.dumps({"admitted": admitted, "errors": stats.errors}), flush=True)
    """
)


def test_three_processes_share_one_limit(redis_url: str, ns: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, redis_url, ns, "2.0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        started = time.monotonic()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = [json.loads(p.communicate(timeout=120)[0].strip()) for p in procs]
        elapsed = time.monotonic() - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    total = sum(r["admitted"] for r in reports)
    assert all(r["errors"] == 0 for r in reports)
    # Exact by construction: the bucket (2) plus 5/s over the span (server time within
    # the span this process measured around all three).
    assert total <= 2 + 5 * elapsed
    assert total >= 2  # the full bucket at least
    assert sum(r["admitted"] > 0 for r in reports) >= 1


# --------------------------------------------------------------------------- faults


@pytest.fixture
def private_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.close()


def test_redis_killed_mid_run(private_server: EmbeddedRedis, ns: str) -> None:
    limits = [Limit("k", 100, window=HOUR)]
    opened = RateLimiter(limits, redis_url=private_server.url, namespace=ns, timeout=1.0,
                         breaker=CircuitBreaker(failures=2, cooldown=0.2))
    closed = RateLimiter(limits, redis_url=private_server.url, namespace=ns, timeout=1.0,
                         fail_open=False, max_wait=0.3,
                         breaker=CircuitBreaker(failures=2, cooldown=0.2))
    try:
        assert opened.acquire() and closed.acquire()
        private_server.kill()
        for _ in range(5):
            assert opened.acquire() is True  # fail open: admitted
            decision = closed.decide()
            assert not decision.admitted and decision.failure is not None
        assert closed.acquire() is False  # blocking: retried until max_wait, refused
        assert opened.stats().failed_open == 5 and opened.stats().errors == 5
        assert closed.stats().failed_closed >= 6
        assert set(opened.stats().errors_by_kind) <= {"unavailable", "timeout", "breaker_open"}
        private_server.start()
        deadline = time.monotonic() + 30
        while not closed.decide().admitted:
            assert time.monotonic() < deadline, "the limiter did not recover"
            time.sleep(0.05)
    finally:
        opened.close()
        closed.close()


async def test_redis_killed_async(private_server: EmbeddedRedis, ns: str) -> None:
    limiter = RateLimiter([Limit("k", 100, window=HOUR)], redis_url=private_server.url,
                          namespace=ns, timeout=1.0, fail_open=False, max_wait=0.2)
    try:
        assert await limiter.aacquire()
        private_server.kill()
        assert await limiter.aacquire() is False
        assert await limiter.aacquire(blocking=False) is False
        assert limiter.stats().errors >= 2
    finally:
        private_server.start()
        await limiter.aclose()


# --------------------------------------------------------------------------- hostile


HOSTILE = [
    "*", "user:*", "[a-z]?", "{global}", "@tenant:{acme} | *", "]]..redis.call('FLUSHALL')--",
    "\x00\n\r", "\udcff lone", "x" * (1 << 20), "",
]


def test_hostile_keys_are_data(make: Any, redis_url: str, ns: str) -> None:
    limiters = [make([Limit(key, 1, window=HOUR)]) for key in HOSTILE]
    assert all(limiter.decide().admitted for limiter in limiters)  # none shares a bucket
    assert not any(limiter.decide().admitted for limiter in limiters)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"paracache:_rl:{{{ns}}}:*",
                                                     count=1000)]
        assert len(keys) == len(HOSTILE)
        prefix = f"paracache:_rl:{{{ns}}}:tb:"
        assert all(k.startswith(prefix) and len(k) == len(prefix) + 32 for k in keys)
        assert client.dbsize() > 0  # nothing was flushed
    finally:
        client.close()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"limits": []}, ValueError),
        ({"limits": Limit("a", 1)}, TypeError),
        ({"limits": ["a"]}, TypeError),
        ({"limits": [Limit("a", 1)], "namespace": "bad ns"}, ValueError),
        ({"limits": [Limit("a", 1)], "fail_open": "yes"}, TypeError),
        ({"limits": [Limit("a", 1)], "max_wait": -1}, ValueError),
        ({"limits": [Limit("a", 1)], "timeout": 0}, ValueError),
        ({"limits": [Limit("a", 1)], "redis_url": 6379}, TypeError),
    ],
)
def test_bad_arguments_raise_at_construction(args: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        RateLimiter(**args)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("k", 0), ValueError),
        (("k", float("nan")), TypeError),
        (("k", True), TypeError),
        ((1, 5), TypeError),
        (("k", 0.5), ValueError),  # a request tier must hold one request
    ],
)
def test_bad_limits(args: tuple[Any, ...], error: type) -> None:
    with pytest.raises(error):
        Limit(*args)
    with pytest.raises(ValueError):
        Limit("k", 1, algorithm="leaky")


def test_bad_call_arguments(make: Any) -> None:
    limiter = make([Limit("k", 5), Limit("b", 5, charged=True)])
    with pytest.raises(ValueError):
        limiter.charge(-1)
    with pytest.raises(TypeError):
        limiter.decide(cost="1")
    with pytest.raises(ValueError):
        RedisRateLimiter(algorithm="fixed")
    with pytest.raises(TypeError):
        RedisRateLimiter(tiers=Limit("x", 1))


# --------------------------------------------------------------------------- LangChain


def test_langchain_model_acquires_before_each_call(redis_url: str, ns: str) -> None:
    limiter = RedisRateLimiter(requests_per_second=1 / HOUR, max_bucket_size=2,
                               redis_url=redis_url, namespace=ns, key="model", timeout=5.0)
    model = GenericFakeChatModel(messages=iter([AIMessage("a"), AIMessage("b")]),
                                 rate_limiter=limiter)
    assert model.invoke("hi").content == "a"
    assert model.invoke("hi").content == "b"
    assert limiter.stats().admitted == 2
    assert limiter.acquire(blocking=False) is False  # the model used the bucket up
    limiter.close()


async def test_langchain_async_and_usage_budget(redis_url: str, ns: str) -> None:
    limiter = RedisRateLimiter(
        requests_per_second=100, max_bucket_size=100, redis_url=redis_url, namespace=ns,
        timeout=5.0, tiers=[Limit("tokens", 50, window=HOUR, charged=True)],
    )
    usage = {"input_tokens": 20, "output_tokens": 20, "total_tokens": 40}
    model = GenericFakeChatModel(
        messages=iter([AIMessage("a", usage_metadata=usage) for _ in range(3)]),
        rate_limiter=limiter, callbacks=[limiter.usage_handler()],
    )
    assert (await model.ainvoke("hi")).content == "a"  # 40 of 50 spent
    assert (await model.ainvoke("hi")).content == "a"  # 10 left: admitted; now -30
    assert limiter.limiter.stats().charges == 2
    assert await limiter.aacquire(blocking=False) is False  # budget spent
    await limiter.limiter.aclose()


def test_usage_charger_reads_llm_output_and_custom_cost(make: Any) -> None:
    from langchain_core.outputs import ChatGeneration, LLMResult

    limiter = make([Limit("r", 100), Limit("usd", 1.0, window=HOUR, charged=True)])
    charger = UsageCharger(limiter, lambda u: u["input_tokens"] * 0.01)
    result = LLMResult(generations=[[ChatGeneration(message=AIMessage("x"))]],
                       llm_output={"token_usage": {"prompt_tokens": 150, "completion_tokens": 5}})
    charger.on_llm_end(result)  # 1.5 USD of 1.0
    assert not limiter.decide().admitted
    assert total_tokens({"input_tokens": 3, "output_tokens": 4}) == 7.0
    fresh = make([Limit("r2", 100), Limit("usd2", 1.0, window=HOUR, charged=True)])
    hit = AIMessage("x", usage_metadata={"input_tokens": 500, "output_tokens": 1,
                                         "total_tokens": 501, "total_cost": 0})  # type: ignore
    UsageCharger(fresh).on_llm_end(LLMResult(generations=[[ChatGeneration(message=hit)]]))
    assert fresh.decide().admitted and fresh.stats().charges == 0  # a cache hit is free
    with pytest.raises(TypeError):
        UsageCharger(limiter, cost="tokens")  # type: ignore[arg-type]


def test_keyed_limits_give_each_caller_its_own_tier(redis_url: str, ns: str) -> None:
    from paracache.limiter import KeyedLimits

    limits = KeyedLimits([Limit("api", 2, window=HOUR)], shared=[Limit("all", 5, window=HOUR)],
                         redis_url=redis_url, namespace=ns, timeout=5.0)
    try:
        assert [limits.decide("key-1").admitted for _ in range(3)] == [True, True, False]
        assert limits.decide("key-2").admitted  # another caller: its own bucket
        assert limits.decide("key-1\x00api").admitted  # no key collides with another's
        assert limits.decide("key-3").admitted
        refused = limits.decide("key-4")  # the shared tier (5) is spent now
        assert not refused.admitted and refused.retry_after > 0
        stats = limits.stats()
        assert stats.admitted == 5 and stats.refused == 2
        with pytest.raises(ValueError):
            KeyedLimits([], redis_url=redis_url)
        with pytest.raises(TypeError):
            limits.decide(7)  # type: ignore[arg-type]
    finally:
        limits.close()


# --------------------------------------------------------------------------- the service


def test_service_answers_429_with_retry_after_per_caller(make_index: Any, ns: str) -> None:
    from fastapi.testclient import TestClient

    from paracache.service import create_app

    calls: list[str] = []

    def llm(req: Any) -> str:
        calls.append(req.prompt)
        return "42"

    app = create_app(make_index(namespace=ns), llm, metrics=False,
                     rate_limits=[Limit("answer", 2, window=HOUR)])
    with TestClient(app) as client:
        def ask(tenant: str, prompt: str) -> Any:
            return client.post("/v1/answer", json={"prompt": prompt, "tenant": tenant})

        assert ask("acme", "one").status_code == 200
        assert ask("acme", "two").status_code == 200
        over = ask("acme", "three")
        assert over.status_code == 429
        assert 1 <= int(over.headers["Retry-After"]) <= HOUR / 2 + 1
        assert "rate limit" in over.json()["detail"]
        assert calls == ["one", "two"]  # the refused request reached neither cache nor model
        assert ask("globex", "three").status_code == 200  # another caller, its own tier
        assert ask("acme", "one").status_code == 429  # even a would-be cache hit
        streamed = client.post("/v1/answer",
                               json={"prompt": "four", "tenant": "acme", "stream": True})
        assert streamed.status_code == 429 and "Retry-After" in streamed.headers
    assert app.state.limits.stats().refused == 3


def test_service_rate_limits_fail_open(ns: str) -> None:
    from fastapi.testclient import TestClient

    from paracache.limiter import KeyedLimits
    from paracache.service import create_app

    server = EmbeddedRedis().start()
    try:
        limits = KeyedLimits([Limit("answer", 1, window=HOUR)], redis_url=server.url,
                             namespace=ns, timeout=1.0)
        app = create_app(llm=lambda req: "42", redis_url=server.url, namespace=ns,
                         metrics=False, rate_limits=limits)
        with TestClient(app) as client:
            assert client.post("/v1/answer", json={"prompt": "a"}).status_code == 200
            assert client.post("/v1/answer", json={"prompt": "b"}).status_code == 429
            server.kill()
            assert client.post("/v1/answer", json={"prompt": "c"}).status_code == 200
        assert limits.stats().failed_open == 1
        limits.close()
    finally:
        server.close()


def test_serve_rate_limit_flag() -> None:
    from paracache.cli import _rate_limits

    assert _rate_limits(None) is None
    (limit,) = _rate_limits(0.5) or []
    assert limit.rate == 0.5 and limit.capacity == 1.0


def test_service_limits_each_api_key(make_index: Any, ns: str) -> None:
    from fastapi.testclient import TestClient

    from paracache.service import caller_id, create_app

    k1, k2 = "k1-" + "a" * 20, "k2-" + "b" * 20
    app = create_app(make_index(namespace=ns), lambda req: "42", metrics=False,
                     api_keys=f"{k1}:acme,{k2}:acme",
                     rate_limits=[Limit("answer", 1, window=HOUR)])
    with TestClient(app) as client:
        def ask(key: str | None, prompt: str) -> int:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            response = client.post("/v1/answer", json={"prompt": prompt}, headers=headers)
            return response.status_code

        assert ask(None, "x") == 401  # not authenticated: takes nothing from any limit
        assert ask(k1, "one") == 200
        assert ask(k1, "two") == 429
        assert ask(k2, "two") == 200  # the same tenant's other key has its own limit
        assert ask(k2, "three") == 429
    assert app.state.limits.stats().admitted == 2
    assert caller_id(None, "acme") == "tenant:acme"


def test_redis_rate_limiter_names_a_bad_rate(redis_url: str) -> None:
    """A rate of 0, below 0 or not finite is refused naming ``requests_per_second`` (the
    argument given), not the ``Limit.amount`` it is turned into."""
    from paracache.ratelimit import RedisRateLimiter

    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="requests_per_second must be"):
            RedisRateLimiter(requests_per_second=bad, redis_url=redis_url)
