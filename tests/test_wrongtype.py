"""A key of another type where paracache expects its own (``WRONGTYPE``): told apart by
its failure kind, ``wrongtype`` (:func:`paracache.transport.translate`), in each place
that handles it, not by matching the reply's text there. Real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from paracache import BackendError, Scope, SemanticIndex
from paracache.driver import SyncIO, run
from paracache.learning import learning_summary, stream_key
from paracache.protocol import Call
from paracache.transport import translate

SCOPE = Scope(model="m", params={"temperature": 0})
STORED = "How do I activate my new card?"
NEAR = "how can I activate my card"


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, protocol=2)


def _one(op: Any) -> Any:
    return (yield op)


def test_wrongtype_replies_are_their_own_kind(redis_url: str, namespace: str) -> None:
    client = _client(redis_url)
    key = f"paracache:{namespace}:a-string"
    client.set(key, "someone else's")
    try:
        with pytest.raises(BackendError) as plain:
            run(_one(Call(("HGETALL", key))), SyncIO(client))
        assert plain.value.kind == "wrongtype" and plain.value.answered
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(key)
        (reply,) = pipe.execute(raise_on_error=False)
        assert getattr(translate(reply), "kind", None) == "wrongtype"
        with pytest.raises(redis.ResponseError) as scripted:
            client.eval("return redis.call('HGETALL', KEYS[1])", 1, key)
        assert getattr(translate(scripted.value), "kind", None) == "wrongtype"
        # Other error replies keep their kinds.
        with pytest.raises(BackendError) as other:
            run(_one(Call(("SET", "only-a-key"))), SyncIO(client))
        assert other.value.kind == "refused"
    finally:
        client.delete(key)


@pytest.mark.parametrize("options", [{"track_hits": False}, {"hit_flush_hits": 1}])
def test_an_entry_key_of_another_type_is_a_corrupt_entry(
    make_index: Any, redis_url: str, options: dict[str, Any]
) -> None:
    """lookup.py's two places: the plain read (no hit tracking) and the plain re-read
    after the hit-counting script failed on it (hits counted one by one)."""
    index: SemanticIndex = make_index(**options)
    key = index.core.prepare_lookup(STORED, SCOPE).key
    _client(redis_url).rpush(key, "a list, not a hash")
    for verdict in (
        index.lookup_verdict(STORED, SCOPE),
        asyncio.run(index.alookup_verdict(STORED, SCOPE)),
    ):
        assert verdict.outcome == "miss", verdict.reason
    stats = index.stats()
    assert stats.errors_by_kind.get("corrupt_entry", 0) == 2
    assert stats.errors_by_kind.get("redis", 0) == 0 and stats.breaker_state == "closed"


def test_statistics_of_another_type_serve_no_semantic_hit(
    make_index: Any, redis_url: str
) -> None:
    """learning.py's read of a scope's statistics: a key of another type there is a
    corrupt record (no semantic hit in that scope), not a failed read."""
    index: SemanticIndex = make_index(max_error_rate=0.05, min_similarity=0.8, explore_rate=0.0)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "semantic"
    assert index.learner is not None
    key = index.learner.stats_key(SCOPE.digest())
    client = _client(redis_url)
    client.delete(key)
    client.sadd(key, "a set, not a hash")
    index.learner.refresh(force=True)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.stats().errors_by_kind.get("stats_corrupt", 0) >= 1
    assert index.lookup_verdict(STORED, SCOPE).outcome == "exact"


def test_a_label_queue_of_another_type_is_reported_unreadable(
    redis_url: str, namespace: str
) -> None:
    """learning.py's summary (``paracache stats``): the queue's key holds a hash."""
    client = _client(redis_url)
    client.hset(stream_key(namespace), mapping={"not": "a stream"})
    try:
        summary = learning_summary(client, namespace)
        assert summary is not None and summary["queue"] == {"length": 0, "unreadable": True}
    finally:
        client.delete(stream_key(namespace))
