"""Many threads and asyncio tasks on one instance, and several processes on one server,
mixing lookups, writes and clears: no exception, no torn entry, consistent counters."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
from typing import Any

from reliability_helpers import HashVectorizer, no_hanging_threads, torn_entries

from paracache import CacheStats, Scope, SemanticIndex

TENANTS = ["a", "b", "c"]
QUESTIONS = [f"How do I order card number {i}?" for i in range(12)]


def _consistent(s: CacheStats, lookups: int, stores: int) -> None:
    assert s.lookups == lookups
    assert s.exact_hits + s.semantic_hits + s.misses + s.bypasses == s.lookups
    assert s.writes + s.writes_dropped + s.writes_skipped == stores
    assert s.errors == 0 and s.writes_dropped == 0, s.errors_by_kind


async def test_threads_and_tasks_with_clears(make_index: Any, redis_url: str) -> None:
    # A generous timeout: this is about correctness under contention, not latency (12
    # workers on 2 cores), so any error counted below is a bug, not a slow machine.
    idx = make_index(vectorizer=HashVectorizer(), timeout=1.0)
    errors: list[BaseException] = []
    counts = {"lookups": 0, "stores": 0}
    lock = threading.Lock()

    def count(kind: str) -> None:
        with lock:
            counts[kind] += 1

    def thread_worker(n: int) -> None:
        rng = random.Random(n)
        try:
            for _ in range(60):
                tenant = rng.choice(TENANTS)
                q = rng.choice(QUESTIONS)
                roll = rng.random()
                if roll < 0.45:
                    hit = idx.lookup(q, Scope(tenant=tenant), min_similarity=0.0)
                    count("lookups")
                    assert hit is None or hit.response == f"{tenant}:{hit.prompt}"
                elif roll < 0.95:
                    idx.store(q, f"{tenant}:{q}", Scope(tenant=tenant))
                    count("stores")
                else:
                    idx.clear(tenant=tenant)
        except BaseException as exc:
            errors.append(exc)

    async def task_worker(n: int) -> None:
        rng = random.Random(100 + n)
        for i in range(40):
            tenant = rng.choice(TENANTS)
            q = rng.choice(QUESTIONS)
            roll = rng.random()
            if roll < 0.45:
                hit = await idx.alookup(q, Scope(tenant=tenant), min_similarity=0.0)
                count("lookups")
                assert hit is None or hit.response == f"{tenant}:{hit.prompt}"
            elif roll < 0.97:
                await idx.astore(q, f"{tenant}:{q}", Scope(tenant=tenant))
                count("stores")
            elif i % 2:
                await idx.aclear(tenant=tenant)
            else:
                await idx.aclear()

    before = asyncio.all_tasks()
    with no_hanging_threads():
        threads = [threading.Thread(target=thread_worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        await asyncio.gather(*(task_worker(n) for n in range(8)))
        for t in threads:
            t.join()
    assert asyncio.all_tasks() - before <= {asyncio.current_task()}
    assert errors == []
    _consistent(idx.stats(), counts["lookups"], counts["stores"])
    assert torn_entries(redis_url, idx.namespace, idx.layout.vector_bytes) == []


def _process(url: str, namespace: str, n: int, out: Any) -> None:
    """One process, its own SemanticIndex on the shared server."""
    try:
        idx = SemanticIndex(url, namespace=namespace, vectorizer=HashVectorizer(), timeout=1.0)
        rng = random.Random(n)
        lookups = stores = 0
        for _ in range(80):
            tenant = rng.choice(TENANTS)
            q = rng.choice(QUESTIONS)
            roll = rng.random()
            if roll < 0.45:
                hit = idx.lookup(q, Scope(tenant=tenant), min_similarity=0.0)
                lookups += 1
                assert hit is None or hit.response == f"{tenant}:{hit.prompt}"
            elif roll < 0.95:
                idx.store(q, f"{tenant}:{q}", Scope(tenant=tenant))
                stores += 1
            else:
                idx.clear(tenant=tenant)
        _consistent(idx.stats(), lookups, stores)
        idx.close()
        out.put((n, "ok"))
    except BaseException as exc:
        out.put((n, repr(exc)))


def test_processes_share_a_server(namespace: str, redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(redis_url, namespace, n, out)) for n in range(3)]
    for p in procs:
        p.start()
    try:
        results = dict(out.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert results == {0: "ok", 1: "ok", 2: "ok"}
    assert all(p.exitcode == 0 for p in procs)
    idx = SemanticIndex(redis_url, namespace=namespace, vectorizer=HashVectorizer())
    try:
        assert torn_entries(redis_url, namespace, idx.layout.vector_bytes) == []
        report = idx.repair(dry_run=True)
        assert report.invalid == 0 and report.valid == idx.count()
    finally:
        idx.clear()
        idx.close()


def test_clear_stops_when_the_index_lags(index: SemanticIndex) -> None:
    """A clear by tenant never spins: if the index lists keys that are already gone (UNLINK
    deletes none of them), it stops instead of asking again forever."""
    flow = index.core.clear_flow(tenant="a")
    op = next(flow)
    rounds = 0
    try:
        while True:
            args = getattr(op, "args", ("ENSURE",))
            if args[0] == "FT.SEARCH":
                rounds += 1
                assert rounds < 5, "clear keeps asking"
                op = flow.send([2, b"k1", b"k2"])  # NOCONTENT reply: two ghost keys
            elif args[0] == "UNLINK":
                op = flow.send(0)
            else:
                op = flow.send(None)
    except StopIteration as stop:
        assert stop.value == 0
