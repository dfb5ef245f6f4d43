"""One cache object across the event loops and lifetimes real apps give it: repeated
``asyncio.run`` (a sync worker bridging to async code), loops in threads, close and use
after close. Real Redis; connections counted on the server."""

from __future__ import annotations

import asyncio
import gc
import pickle
import time
from typing import Any

import pytest
import redis

from paracache import SemanticIndex


def _connections(redis_url: str, namespace: str) -> int:
    """Connections the server has from caches of ``namespace`` (by client name)."""
    with redis.Redis.from_url(redis_url) as admin:
        clients = admin.client_list()
    return sum(1 for c in clients if c.get("name") == f"paracache:{namespace}")


def test_asyncio_run_again_and_again_does_not_pile_up_connections(
    make_index: Any, redis_url: str, namespace: str
) -> None:
    """Each ``asyncio.run`` makes a loop, the cache a client on it; once the loop is
    closed its client can never be used again. They are let go (one socket per call
    kept open for ever ran a worker out of file descriptors)."""
    cache: SemanticIndex = make_index()
    cache.store("What is your refund policy?", "30 days.")
    assert cache.lookup("Tell me your refund policy") is not None
    for _ in range(40):
        hit = asyncio.run(cache.alookup("Tell me your refund policy"))
        assert hit is not None and hit.response == "30 days."
    gc.collect()
    assert _connections(redis_url, namespace) <= 6


def test_pickling_a_cache_says_what_to_do(make_index: Any) -> None:
    """``multiprocessing`` spawn (and a fork pool's arguments) pickle what they hand a
    worker; a cache cannot go (connections, threads, a model): the error says so and
    what to do, not "cannot pickle 'InferenceSession' object"."""
    cache: SemanticIndex = make_index()
    cache.lookup("warm the model up")
    with pytest.raises(TypeError, match="build one in each process"):
        pickle.dumps(cache)


def test_close_with_redis_hung_is_bounded_and_counts_what_it_dropped(
    make_index: Any, redis_url: str
) -> None:
    """A server that takes connections but never answers (``CLIENT PAUSE``, a stopped
    process whose port is still open): ``close()`` waited ``admin_timeout`` (10 s) on
    its last hit counts, then up to 2 s per background thread of the learner. It
    returns within about 2 s now, and counts what it could not send."""
    from paracache import Scope
    from paracache.index import CLOSE_TIMEOUT

    scope = Scope(model="m")
    cache: SemanticIndex = make_index(
        max_error_rate=0.02, hit_flush_seconds=3600, timeout=0.5, admin_timeout=10.0
    )
    cache.store("What is your refund policy?", "30 days.", scope)
    assert cache.lookup("What is your refund policy?", scope) is not None  # an unsent hit
    assert cache.learner is not None and cache.learner.wait_idle(30)
    admin = redis.Redis.from_url(redis_url, socket_timeout=10)
    admin.execute_command("CLIENT", "PAUSE", 4000, "ALL")  # longer than close() may take
    try:
        for digest in ("a" * 16, "b" * 16):  # two traffic counts, queued while Redis hangs
            cache.learner.observe(f"k-{digest}", digest, scope, 0.95)
        t0 = time.monotonic()
        cache.close()
        took = time.monotonic() - t0
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")  # answered once the pause is over
        admin.close()
    assert took < CLOSE_TIMEOUT + 1.0, took  # was 12 s
    assert cache.stats().errors_by_kind.get("hit_flush") == 1  # the hit count, dropped
    deadline = time.monotonic() + 5
    while cache.stats().learning["dropped"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.stats().learning["dropped"] == 2  # both traffic counts, dropped


# ---------------------------------------------------------------- use after close


def test_every_call_after_close_raises_a_clear_error(make_index: Any) -> None:
    """After ``close()`` a call reconnected without a word (a lookup even served from
    the cache it had closed). It is a programming error, not Redis down: raised, by
    lookups too (not a miss), naming the cache."""
    from paracache import CacheClosedError, Scope

    cache: SemanticIndex = make_index()
    cache.store("What is your refund policy?", "30 days.", Scope(model="m"))
    cache.close()
    calls = {
        "lookup": lambda: cache.lookup("What is your refund policy?", Scope(model="m")),
        "lookup_verdict": lambda: cache.lookup_verdict("What is your refund policy?"),
        "store": lambda: cache.store("Do you ship abroad?", "Yes."),
        "count": cache.count,
        "clear": cache.clear,
        "entries": cache.entries,
        "flush_hits": cache.flush_hits,
        "embed": lambda: cache.embed("hello"),
        "warm": lambda: cache.warm([("Hi?", "Hello.")], progress=False),
    }
    for name, call in calls.items():
        with pytest.raises(CacheClosedError, match=r"SemanticIndex\(namespace='t-.*is closed"):
            call()
        assert name  # (which call, if one did not raise)

    async def async_calls() -> None:
        with pytest.raises(CacheClosedError):
            await cache.alookup("What is your refund policy?")
        with pytest.raises(CacheClosedError):
            await cache.astore("Do you ship abroad?", "Yes.")
        await cache.aclose()  # a no-op now, as close() is

    asyncio.run(async_calls())
    cache.close()  # again: nothing happens
    assert cache.stats().writes == 1  # the counters stay readable


def test_adapters_after_close_raise_instead_of_reconnecting(
    make_index: Any, redis_url: str
) -> None:
    """The adapters' calls after their cache was closed, and the conversation store's
    and the rate limiter's after their own ``close()``."""
    from langchain_core.language_models import FakeListLLM
    from llama_index.core.llms import MockLLM

    from paracache import CacheClosedError
    from paracache.langchain import SemanticCache
    from paracache.limiter import Limit, RateLimiter
    from paracache.llama_index import CachedLLM
    from paracache.sessions import SessionStore

    index: SemanticIndex = make_index()
    lc = SemanticCache(index)
    llm = FakeListLLM(responses=["30 days."], cache=lc)
    assert llm.invoke("What is your refund policy?") == "30 days."
    li = CachedLLM(MockLLM(), index)
    index.close()
    with pytest.raises(CacheClosedError):
        lc.lookup("What is your refund policy?", "llm")
    with pytest.raises(CacheClosedError):
        llm.invoke("What is your refund policy?")
    with pytest.raises(CacheClosedError):
        li.complete("What is your refund policy?")

    store = SessionStore(redis_url=redis_url, namespace=index.namespace, tenant="acme")
    assert store.append("s1", [{"role": "user", "content": "hi"}], [1])
    store.close()
    with pytest.raises(CacheClosedError, match=r"SessionStore\(namespace="):
        store.read("s1")
    limiter = RateLimiter([Limit("k", 5, window=60)], redis_url=redis_url,
                          namespace=index.namespace)
    assert limiter.decide().admitted
    limiter.close()
    with pytest.raises(CacheClosedError, match=r"RateLimiter\(namespace="):
        limiter.decide()
