"""Memory and durability: eviction under ``maxmemory`` (LRU/LFU), the ``max_entries`` cap,
and entries that survive a restart of a persistent embedded Redis (AOF)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import HashVectorizer, index_loaded, raw, torn_entries, wait_until

from paracache import CircuitBreaker, Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis, shared_embedded

BIG = "x" * 32_000  # a long answer, so memory fills with few entries


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu"])
def test_eviction_keeps_the_index_consistent(policy: str) -> None:
    srv = EmbeddedRedis(maxmemory="8mb", maxmemory_policy=policy).start()
    try:
        idx = SemanticIndex(srv.url, namespace="evict", vectorizer=HashVectorizer())
        ids = [idx.store(f"question {i}", f"{i}:{BIG}") for i in range(400)]
        client = raw(srv.url)
        assert int(client.info("stats")["evicted_keys"]) > 0
        s = idx.stats()
        assert s.errors == 0 and s.writes == 400 and s.writes_dropped == 0
        client.config_set("maxmemory", 0)  # no more evictions while we count
        keys = set(client.scan_iter(match=idx.layout.prefix + "*", count=1000))
        assert 0 < len(keys) < 400
        assert idx.count() == len(keys)  # evicted keys left the index too
        assert torn_entries(srv.url, "evict", idx.layout.vector_bytes) == []
        for i in (0, 1, 2, 397, 398, 399):  # evicted or not: an answer or a miss
            hit = idx.lookup(f"question {i}")
            assert hit is None or hit.response.startswith(f"{i}:")
            if hit is None:
                assert client.exists(idx.layout.key(ids[i] or "")) == 0
        assert idx.lookup("question 399") is not None  # the newest entry is still there
        assert idx.stats().errors == 0
        idx.close()
    finally:
        srv.close()


def test_max_entries_trims_the_oldest(make_index: Any, redis_url: str) -> None:
    idx = make_index(vectorizer=HashVectorizer(), max_entries=40)
    ids = []
    for i in range(100):
        ids.append(idx.store(f"question {i}", f"answer {i}"))
        assert idx.count() <= 40 + 4  # checked every 40 // 10 writes
    assert idx.trim() >= 0 and idx.count() == 40
    client = raw(redis_url)
    assert not any(client.exists(idx.layout.key(e)) for e in ids[:60])
    assert all(client.exists(idx.layout.key(e)) for e in ids[60:])
    assert idx.stats().errors == 0


async def test_max_entries_async(make_index: Any) -> None:
    idx = make_index(vectorizer=HashVectorizer(), max_entries=10)
    for i in range(30):
        await idx.astore(f"q {i}", "a")
    assert await idx.acount() == 10
    assert await idx.alookup("q 29") is not None and await idx.alookup("q 0") is None
    with pytest.raises(ValueError):
        make_index(max_entries=0)


def test_entries_survive_a_restart(tmp_path: Path) -> None:
    srv = EmbeddedRedis(data_dir=tmp_path, persist=True).start()
    try:
        idx = SemanticIndex(
            srv.url, namespace="durable", breaker=CircuitBreaker(failures=1, cooldown=0.1)
        )
        scope = Scope(tenant="acme")
        idx.store("How do I freeze my card?", "Tap Freeze in the app.", scope)
        idx.store("What is the transfer limit?", "10,000 a day.", scope)
        srv.stop()
        assert idx.lookup("How can I freeze my card?", scope) is None  # down: a miss
        srv.start()
        wait_until(lambda: index_loaded(srv.url, idx.layout.index_name), timeout=15)
        hit = None

        def hit_back() -> bool:
            nonlocal hit
            hit = idx.lookup("How can I freeze my card?", scope)
            return hit is not None

        wait_until(hit_back, timeout=10, interval=0.1)
        assert hit is not None and hit.layer == "semantic"
        assert hit.response == "Tap Freeze in the app."
        assert idx.count() == 2
        idx.close()
    finally:
        srv.close()
    assert any(tmp_path.rglob("*.aof"))


def test_a_crash_loses_nothing_acknowledged_with_fsync_always(tmp_path: Path) -> None:
    srv = EmbeddedRedis(data_dir=tmp_path, persist=True, appendfsync="always").start()
    try:
        idx = SemanticIndex(srv.url, namespace="crash", vectorizer=HashVectorizer())
        acked = {i: idx.store(f"q {i}", f"a {i}") for i in range(50)}
        assert all(acked.values())
        srv.kill()  # SIGKILL: no shutdown, no final fsync
        srv.start()
        wait_until(lambda: index_loaded(srv.url, idx.layout.index_name), timeout=15)
        client = raw(srv.url)
        for i, entry in acked.items():
            assert client.hget(idx.layout.key(entry or ""), "response") == f"a {i}".encode()
        assert torn_entries(srv.url, "crash", idx.layout.vector_bytes) == []
        idx.close()
    finally:
        srv.close()


@pytest.fixture
def no_redis_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("PARACACHE_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield monkeypatch


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_persistent_embedded_server_by_option_or_env(
    tmp_path: Path, no_redis_env: pytest.MonkeyPatch, how: str
) -> None:
    options: dict[str, Any] = {"namespace": "persisted"}
    if how == "argument":
        options["embedded_dir"] = tmp_path
    else:
        no_redis_env.setenv("PARACACHE_EMBEDDED_DIR", str(tmp_path))
    first = SemanticIndex(**options)
    try:
        first.store("Can I change my PIN at an ATM?", "Yes, at most ATMs.")
    finally:
        first.close()
        shared_embedded(tmp_path).close()  # the application stops
    second = SemanticIndex(**options)  # ... and starts again: a new server, same files
    try:
        server = shared_embedded(tmp_path)
        assert server.data_dir == tmp_path.resolve()
        wait_until(lambda: index_loaded(server.url, second.layout.index_name), timeout=15)
        hit = second.lookup("Is it possible to change my PIN at an ATM?")
        assert hit is not None and hit.response == "Yes, at most ATMs."
    finally:
        second.close()
        with contextlib.suppress(Exception):
            shared_embedded(tmp_path).close()
    with pytest.raises(ValueError):
        SemanticIndex("redis://127.0.0.1:1", embedded_dir=tmp_path)
