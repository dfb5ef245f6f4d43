"""A long-lived app server: many threads at once on a cold process, long runs, a
Redis that stalls or drops connections (audit 15). Real Redis throughout."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reliability_helpers import HashVectorizer, raw, wait_until

from paracache import CircuitBreaker, Scope, SemanticIndex, spelling
from paracache.embedded import EmbeddedRedis
from paracache.guards import edits, pairs, vocabulary
from paracache.limiter import Limit, RateLimiter
from paracache.schema import scopes_key
from paracache.singleflight import SingleFlight
from paracache.store import REGISTER_EVERY


def _at_once(fn: Callable[[], Any], threads: int = 8) -> list[Any]:
    """``fn()`` in ``threads`` threads released together; their results."""
    barrier = threading.Barrier(threads)
    got: list[Any] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        value = fn()
        with lock:
            got.append(value)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert len(got) == threads
    return got


@pytest.mark.parametrize(
    "loader",
    [spelling._vocabulary, vocabulary._antonym_lexicon, edits._kin_lexicon, pairs._pair_model],
    ids=lambda f: f.__name__,
)
def test_a_table_asked_for_by_many_threads_at_once_is_loaded_once(loader: Any) -> None:
    """The first lookups of an app's request threads, all at once: the typo corrector's
    vocabulary and the guards' lexicons are built by one thread while the others wait
    for it, not once per thread (seconds of CPU per thread on a cold process, and
    lookups meanwhile timed out and opened the breaker: benchmarks/RESULTS.md, audit 15)."""
    loader.cache_clear()
    try:
        tables = _at_once(loader)
        assert len({id(t) for t in tables}) == 1
    finally:
        loader()  # loaded again for the other tests


async def test_more_than_a_hundred_lookups_at_once_on_one_loop_all_hit(
    make_index: Any, redis_url: str
) -> None:
    """A burst of async requests: redis-py's pool failed a call at once when all its
    connections were taken ("Too many connections"), a Redis failure to the cache:
    three opened the breaker, and a healthy server answered many of 150 simultaneous
    lookups as misses. Calls now wait for a free connection; the pool keeps its size."""
    idx: SemanticIndex = make_index(semantic=False)
    idx.store("How do I freeze my card?", "Tap Freeze in the app.")
    before = len(raw(redis_url).client_list())
    for _ in range(3):
        hits = await asyncio.gather(*(idx.alookup("How do I freeze my card?") for _ in range(150)))
        assert all(hit is not None for hit in hits)
    s = idx.stats()
    assert s.errors == 0 and s.exact_hits == 450 and s.breaker_state == "closed", s
    assert len(raw(redis_url).client_list()) - before <= 100


async def test_more_than_a_hundred_rate_limit_checks_at_once_all_decide(redis_url: str) -> None:
    """The rate limiter's connection pool likewise (a service under 200 clients)."""
    limiter = RateLimiter([Limit("burst", 1000)], redis_url=redis_url, namespace="t-rl-burst")
    try:
        decisions = await asyncio.gather(*(limiter.adecide() for _ in range(150)))
        assert all(d.admitted and d.failure is None for d in decisions)
        assert limiter.stats().errors == 0
    finally:
        await limiter.aclose()


def _row_ttl(url: str, idx: SemanticIndex, scope: Scope) -> int:
    reply = raw(url).execute_command(
        "HTTL", scopes_key(idx.namespace), "FIELDS", 1, scope.digest()
    )
    return int(reply[0])


def test_a_scope_registry_row_expires_with_the_entries_of_its_scope(
    make_index: Any, redis_url: str
) -> None:
    """Every scope a cache ever wrote in (a chat model's: one per conversation turn,
    earlier turns being part of the scope) kept its registry row for ever, after its
    entries had expired. A row now lasts as long as its scope's longest-lived entry
    (plus a margin): only lengthened, persistent for an entry without a TTL."""
    idx: SemanticIndex = make_index(vectorizer=HashVectorizer())
    margin = int(2 * REGISTER_EVERY)
    short, forever = Scope(tenant="short"), Scope(tenant="forever")
    idx.store("How do I freeze my card?", "Tap Freeze.", short, ttl=600)
    assert 600 < _row_ttl(redis_url, idx, short) <= 600 + margin
    idx.store("How do I unfreeze my card?", "Tap Unfreeze.", short, ttl=60)  # never shortens
    assert 600 < _row_ttl(redis_url, idx, short) <= 600 + margin
    idx.store("Where is my card?", "On its way.", short, ttl=7200)  # a longer-lived entry
    assert 7200 < _row_ttl(redis_url, idx, short) <= 7200 + margin
    idx.store("What is my PIN?", "In the app.", short, ttl=None)  # one that never expires
    assert _row_ttl(redis_url, idx, short) == -1
    idx.store("What is my limit?", "1,000.", forever, ttl=None)
    assert _row_ttl(redis_url, idx, forever) == -1
    warm = [("How do I close my account?", "In Settings.")]
    idx.warm(warm, Scope(tenant="warm"), progress=False, semantic=False)
    assert _row_ttl(redis_url, idx, Scope(tenant="warm")) > 0  # the default TTL's
    assert {e.scope.get("tenant") for e in idx.entries(limit=10)} == {"short", "forever", "warm"}


def test_streams_dropped_while_redis_is_down_leave_nothing_behind() -> None:
    """A streamed answer dropped before it started (a client gone before the first
    chunk) releases its Redis lock; when that fails (Redis down), the token waits for
    the next claim of the same prompt in this process. Prompts never asked again kept
    theirs for ever, though each lock expires in Redis after ``wait``: those are
    forgotten."""
    server = EmbeddedRedis().start()
    try:
        idx = SemanticIndex(
            server.url, namespace="t-orphans", vectorizer=HashVectorizer(), timeout=0.05,
            breaker=CircuitBreaker(failures=1000),
        )  # fmt: skip
        flights = SingleFlight(idx, wait=0.5)

        def drop_unstarted_while_paused(prompts: list[str]) -> None:
            claims = [flights.claim(p) for p in prompts]
            server.pause(0.4)  # the releases below fail
            for claim in claims:

                def stream() -> Iterator[str]:
                    yield "never read"

                gen = stream()
                SingleFlight.settle_when_dropped(gen, claim)
                del gen
            gc.collect()
            wait_until(lambda: flights.in_flight() == 0, timeout=10)
            time.sleep(0.45)  # the pause is over

        drop_unstarted_while_paused([f"a question asked once, number {i}" for i in range(10)])
        assert len(flights._orphans) == 10
        time.sleep(0.2)  # every lock above has expired in Redis
        drop_unstarted_while_paused(["one more question"])
        assert len(flights._orphans) == 1
        idx.close()
    finally:
        server.close()


def test_a_stalled_server_under_many_threads_logs_a_warning_not_one_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every lookup in flight when Redis stalls fails at once: one warning per request
    thread for one fault, and as many again at each failed retry of the breaker. One
    per 10 s, as for other faults; each failure is still counted."""
    server = EmbeddedRedis().start()
    try:
        idx = SemanticIndex(
            server.url, namespace="t-stall", vectorizer=HashVectorizer(), timeout=0.05,
            breaker=CircuitBreaker(failures=1000),
        )  # fmt: skip
        idx.store("How do I freeze my card?", "Tap Freeze.")
        server.pause(1.0)
        with caplog.at_level(logging.INFO, logger="paracache"):
            _at_once(lambda: idx.lookup("How do I freeze my card?"), threads=32)
        warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert idx.stats().errors_by_kind.get("redis", 0) >= 16
        assert 1 <= len(warned) <= 2, [r.getMessage() for r in warned]
        idx.close()
    finally:
        server.close()
