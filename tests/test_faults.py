"""Redis faults under traffic, on a private embedded server this module breaks for real:
killed (SIGKILL) and restarted, paused (CLIENT PAUSE), slowed (DEBUG SLEEP), out of
memory (maxmemory + noeviction), a read-only replica, down when the cache starts.

Every call must come back within the time budget as a miss (or a dropped, counted
write), never an exception; the breaker opens and closes by itself; no thread or task is
left behind; and a LangChain app on the cache gets every one of its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from reliability_helpers import (
    EchoChatModel,
    assert_no_pending_tasks,
    no_hanging_threads,
    raw,
    torn_entries,
    wait_until,
)

from paracache import CacheError, CircuitBreaker, Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis
from paracache.langchain import SemanticCache

#: The longest any hot-path call may take under a fault, with the default timeout
#: (0.1 s: at most about 3 x 0.1 s of Redis time) plus an embedding, on a loaded 2-core
#: machine. A hang would be an admin timeout (10 s) or an embed timeout (5 s) or worse.
BUDGET = 1.5

QUESTIONS = [
    "How do I reset my card PIN?",
    "Why was my transfer declined?",
    "Can I get a refund for a duplicate charge?",
    "Where can I see my exchange rate fees?",
    "How long does a top up take to arrive?",
    "How do I close my account?",
]


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis(enable_debug_command=True).start()
    yield srv
    srv.close()


@pytest.fixture
def make(server: EmbeddedRedis) -> Iterator[Callable[..., SemanticIndex]]:
    made: list[SemanticIndex] = []
    namespace = "f-" + uuid.uuid4().hex[:10]

    def build(**options: Any) -> SemanticIndex:
        options.setdefault("namespace", namespace)
        options.setdefault("breaker", CircuitBreaker(failures=3, cooldown=0.3))
        idx = SemanticIndex(options.pop("url", server.url), **options)
        made.append(idx)
        return idx

    yield build
    if not server.is_running():
        server.start()
    for idx in made:
        with contextlib.suppress(Exception):
            idx.clear()
        idx.close()


class Traffic:
    """Threads mixing lookups, stores and LangChain calls until stopped; records the
    duration of every call and anything raised."""

    def __init__(self, idx: SemanticIndex, threads: int = 3) -> None:
        self.idx = idx
        self.llm = EchoChatModel(cache=SemanticCache(index=idx, min_similarity=0.97))
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.durations: list[float] = []
        self.answers = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(n,), name=f"traffic-{n}")
            for n in range(threads)
        ]

    def _timed(self, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        with self._lock:
            self.durations.append(time.perf_counter() - t0)
        return out

    def _work(self, n: int) -> None:
        scope = Scope(tenant=f"t{n % 2}")
        i = 0
        try:
            while not self.stop.is_set():
                q = QUESTIONS[(n + i) % len(QUESTIONS)]
                self._timed(lambda q=q: self.idx.lookup(q, scope))
                self._timed(lambda q=q, i=i: self.idx.store(f"{q} #{n}-{i}", "a", scope))
                reply = self._timed(lambda q=q: self.llm.invoke([HumanMessage(q)]))
                assert reply.content == f"answer: {q}", reply.content
                with self._lock:
                    self.answers += 1
                i += 1
                time.sleep(0.005)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(10)
            assert not t.is_alive(), "a traffic thread hung"


def _recovers(idx: SemanticIndex, question: str = "Is the cache back?") -> None:
    """The cache heals by itself: stores land again, lookups hit, the breaker closes."""

    def ok() -> bool:
        return idx.store(question, "yes") is not None and idx.lookup(question) is not None

    wait_until(ok, timeout=10, interval=0.1)
    assert idx.stats().breaker_state == "closed"


def test_default_time_budget() -> None:
    assert SemanticIndex.__init__.__kwdefaults__["timeout"] == 0.1


def test_killed_mid_traffic_then_restarted(
    make: Callable[..., SemanticIndex], server: EmbeddedRedis
) -> None:
    idx = make()
    for q in QUESTIONS:
        idx.store(q, "cached")
    with no_hanging_threads(), Traffic(idx) as traffic:
        time.sleep(0.4)
        server.kill()  # SIGKILL: a crash, connections reset, no goodbye
        time.sleep(1.0)
        during = idx.stats()
        for admin_call in (lambda: idx.clear(tenant="t0"), idx.count, idx.repair):
            with pytest.raises(CacheError):  # administrative calls say so, in one way
                admin_call()
        server.start()  # back, empty (no persistence): the index must be rebuilt
        time.sleep(1.0)
    assert traffic.errors == []
    assert traffic.answers > 10
    assert max(traffic.durations) < BUDGET, max(traffic.durations)
    assert during.writes_dropped > 0 and during.errors_by_kind.get("redis", 0) >= 3
    assert during.errors_by_kind.get("breaker_open", 0) > 0  # it stopped paying for errors
    _recovers(idx)
    assert torn_entries(server.url, idx.namespace) == []


async def test_async_tasks_through_a_kill(
    make: Callable[..., SemanticIndex], server: EmbeddedRedis
) -> None:
    idx = make()
    llm = EchoChatModel(cache=SemanticCache(index=idx, min_similarity=0.97))
    before = asyncio.all_tasks()
    durations: list[float] = []
    stop = asyncio.Event()

    async def worker(n: int) -> int:
        answers = 0
        while not stop.is_set():
            q = QUESTIONS[(n + answers) % len(QUESTIONS)]
            t0 = time.perf_counter()
            await idx.alookup(q)
            await idx.astore(f"{q} {n} {answers}", "x")
            reply = await llm.ainvoke([HumanMessage(q)])
            durations.append(time.perf_counter() - t0)
            assert reply.content == f"answer: {q}"
            answers += 1
            await asyncio.sleep(0.005)
        return answers

    tasks = [asyncio.create_task(worker(n)) for n in range(4)]
    await asyncio.sleep(0.4)
    server.kill()
    await asyncio.sleep(1.0)
    server.start()
    await asyncio.sleep(1.0)
    stop.set()
    answers = await asyncio.gather(*tasks)
    assert all(a > 2 for a in answers)
    assert max(durations) < 3 * BUDGET  # three calls per round
    assert idx.stats().writes_dropped > 0
    await assert_no_pending_tasks(before)
    wait_until(lambda: idx.store("async back?", "yes") is not None, timeout=10)
    assert await idx.alookup("async back?") is not None


def test_paused_server(make: Callable[..., SemanticIndex], server: EmbeddedRedis) -> None:
    idx = make()
    idx.store(QUESTIONS[0], "cached")
    with no_hanging_threads(), Traffic(idx, threads=2) as traffic:
        time.sleep(0.3)
        server.pause(1.2)  # CLIENT PAUSE ALL: every command waits
        time.sleep(1.6)
    assert traffic.errors == [] and traffic.answers > 5
    assert max(traffic.durations) < BUDGET, max(traffic.durations)
    s = idx.stats()
    assert s.errors_by_kind.get("redis", 0) > 0 and s.writes_dropped > 0
    _recovers(idx)


async def test_cancelling_a_lookup_cancels_it(
    make: Callable[..., SemanticIndex], server: EmbeddedRedis
) -> None:
    """The caller's cancellation stays a cancellation (never a miss or a TimeoutError),
    on a paused server and while the call's own time bound is running; the next lookup
    works."""
    idx = make(breaker=CircuitBreaker(failures=100, cooldown=0.3))
    idx.store(QUESTIONS[4], "cached")
    before = set(asyncio.all_tasks())
    server.pause(0.6)
    for delay in (0.01, 0.05):
        call = asyncio.ensure_future(idx.alookup(QUESTIONS[4]))
        await asyncio.sleep(delay)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    await assert_no_pending_tasks(before)
    time.sleep(0.6)
    hit = await idx.alookup(QUESTIONS[4])
    assert hit is not None and hit.response == "cached"


async def test_slow_server(make: Callable[..., SemanticIndex], server: EmbeddedRedis) -> None:
    idx = make()
    idx.store(QUESTIONS[1], "cached")
    assert idx.lookup(QUESTIONS[1]) is not None
    sleeper = threading.Thread(
        target=lambda: raw(server.url).execute_command("DEBUG", "SLEEP", "1.0"), name="sleeper"
    )
    sleeper.start()  # the server is stuck for a second
    time.sleep(0.05)
    durations = []
    for i in range(5):
        t0 = time.perf_counter()
        assert idx.lookup(QUESTIONS[1]) is None
        assert await idx.alookup(QUESTIONS[1]) is None
        assert idx.store(f"slow {i}", "x") is None
        durations.append(time.perf_counter() - t0)
    sleeper.join()
    assert max(durations) < 3 * BUDGET
    s = idx.stats()
    assert s.errors >= 3 and s.writes_dropped == 5
    _recovers(idx)


def test_out_of_memory_drops_writes_keeps_serving(
    make: Callable[..., SemanticIndex], server: EmbeddedRedis
) -> None:
    idx = make()
    llm = EchoChatModel(cache=SemanticCache(index=idx, min_similarity=0.97))
    idx.store(QUESTIONS[2], "cached")
    assert llm.invoke([HumanMessage(QUESTIONS[3])]).content == f"answer: {QUESTIONS[3]}"
    admin = raw(server.url)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", max(1, used // 2))
    try:
        calls = llm.calls
        for i in range(6):
            assert idx.store(f"oom question {i}", "x") is None
            hit = idx.lookup(QUESTIONS[2])  # reads still work: the cache keeps serving
            assert hit is not None and hit.response == "cached"
            assert llm.invoke([HumanMessage(QUESTIONS[3])]).content == f"answer: {QUESTIONS[3]}"
            new = f"never cached {i}"
            assert llm.invoke([HumanMessage(new)]).content == f"answer: {new}"
        assert llm.calls == calls + 6  # cached answers served, new ones not written
        s = idx.stats()
        assert s.errors_by_kind.get("oom", 0) >= 12 and s.writes_dropped >= 12
        assert s.errors_by_kind.get("redis", 0) == 0  # refused writes are not outages
        assert s.breaker_state == "closed"
    finally:
        admin.config_set("maxmemory", 0)
    assert idx.store("after oom", "y") is not None
    assert torn_entries(server.url, idx.namespace) == []


def test_read_only_replica(make: Callable[..., SemanticIndex], server: EmbeddedRedis) -> None:
    primary = make()
    primary.store(QUESTIONS[4], "from the primary")
    replica = EmbeddedRedis().start()
    try:
        r = raw(replica.url)
        raw(server.url).config_set("repl-diskless-sync-delay", 0)
        r.config_set("masterauth", server.password)
        r.execute_command("REPLICAOF", "127.0.0.1", server.port)
        wait_until(lambda: r.info("replication").get("master_link_status") == "up", timeout=15)
        wait_until(lambda: r.exists(primary.layout.key(primary.lookup(QUESTIONS[4]).entry_id)))
        idx = make(url=replica.url)
        hit = idx.lookup("How long does a top-up take to arrive?")
        assert hit is not None and hit.response == "from the primary"
        for i in range(4):
            assert idx.store(f"replica write {i}", "x") is None
        s = idx.stats()
        assert s.writes_dropped == 4 and s.errors_by_kind.get("readonly", 0) == 4
        assert s.breaker_state == "closed" and s.errors_by_kind.get("redis", 0) == 0
        assert idx.lookup(QUESTIONS[4]) is not None
    finally:
        replica.close()


def test_server_down_at_start_then_up(tmp_path: Any) -> None:
    srv = EmbeddedRedis(data_dir=tmp_path)
    srv.start()
    srv.stop()  # a port that refuses connections
    idx = SemanticIndex(
        srv.url, namespace="late", breaker=CircuitBreaker(failures=2, cooldown=0.2)
    )
    try:
        t0 = time.perf_counter()
        for _ in range(5):
            assert idx.lookup("Where is my card?") is None
            assert idx.store("Where is my card?", "On its way.") is None
        assert time.perf_counter() - t0 < 2 * BUDGET
        srv.start()
        _recovers(idx, "Where is my card?")
        assert idx.lookup("Where's my card?") is not None
    finally:
        idx.close()
        srv.close()


# ---------------------------------------------------------------- embedding faults


class BadVectorizer:
    """Wraps the real embedder and fails on purpose: raise, NaN, wrong size, too slow."""

    def __init__(self, inner: Any, mode: str) -> None:
        self.inner, self.mode = inner, mode
        self.dims, self.model, self.type = inner.dims, inner.model, inner.type

    def embed(self, text: str, **kw: Any) -> list[float]:
        if self.mode == "raise":
            raise ConnectionError("embedding API down")
        if self.mode == "nan":
            return [float("nan")] * self.dims
        if self.mode == "dims":
            return [0.5] * (self.dims + 3)
        time.sleep(0.6)
        return list(self.inner.embed(text, **kw))

    async def aembed(self, text: str, **kw: Any) -> list[float]:
        if self.mode == "slow":
            await asyncio.sleep(0.6)
            return list(await self.inner.aembed(text, **kw))
        return self.embed(text, **kw)


@pytest.mark.parametrize("mode", ["raise", "nan", "dims", "slow"])
async def test_embedding_faults_through_langchain(
    make: Callable[..., SemanticIndex], server: EmbeddedRedis, mode: str
) -> None:
    good = make()
    bad = make(vectorizer=BadVectorizer(good.vectorizer, mode), embed_timeout=0.2)
    llm = EchoChatModel(cache=SemanticCache(index=bad))
    before = asyncio.all_tasks()
    with no_hanging_threads():
        for q in QUESTIONS[:3]:
            assert llm.invoke([HumanMessage(q)]).content == f"answer: {q}"
            again = q + " (async)"
            assert (await llm.ainvoke([HumanMessage(again)])).content == f"answer: {again}"
    await assert_no_pending_tasks(before)
    assert llm.calls == 6  # every answer came from the model...
    assert bad.stats().errors_by_kind.get("embedding", 0) >= 6
    # ... and was stored for the exact layer only: a repeat is served, nothing is corrupt
    assert llm.invoke([HumanMessage(QUESTIONS[0])]).content == f"answer: {QUESTIONS[0]}"
    assert llm.calls == 6
    assert torn_entries(server.url, good.namespace, good.layout.vector_bytes) == []
    client = raw(server.url)
    for key in client.scan_iter(match=f"paracache:{good.namespace}:*"):
        assert not client.hexists(key, "embedding")
