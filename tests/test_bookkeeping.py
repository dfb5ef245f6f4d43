"""Hit bookkeeping that never re-indexes an entry (issue 13): on a server without
partial indexing (a stock Redis 8 / redis-stack), hits are counted in a companion hash
beside the entry; on paracache's tuned embedded server, in the entry itself. Real
servers of both kinds; RediSearch's ``max_doc_id`` (a new document id on every
re-index) shows whether a hit re-indexed the entry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from paracache import Scope, SemanticIndex
from paracache.bookkeeping import ServerFeatures, companion_key, detect_flow
from paracache.embedded import EmbeddedRedis

SCOPE = Scope(model="m")


@pytest.fixture(scope="module")
def stock_url() -> Iterator[str]:
    """A server as users run theirs: search module loaded, nothing tuned."""
    with EmbeddedRedis(tuned=False) as server:
        yield server.url


@pytest.fixture
def stock_index(stock_url: str, namespace: str) -> Iterator[SemanticIndex]:
    idx = SemanticIndex(stock_url, namespace=namespace, ttl=3600)
    yield idx
    idx.clear()
    idx.close()


def _info(url: str, index: SemanticIndex) -> dict[str, Any]:
    raw = redis.Redis.from_url(url, protocol=2).execute_command("FT.INFO", index.layout.index_name)
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw) - 1, 2)}


def _run(flow: Any, client: redis.Redis) -> Any:
    try:
        op = next(flow)
        while True:
            try:
                reply = client.execute_command(*op.args)
            except redis.ResponseError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(reply)
    except StopIteration as stop:
        return stop.value


def test_detects_what_each_server_does(stock_url: str, redis_url: str) -> None:
    stock = _run(detect_flow(), redis.Redis.from_url(stock_url))
    tuned = _run(detect_flow(), redis.Redis.from_url(redis_url))
    assert stock == ServerFeatures(partial_indexing=False, search_version=stock.search_version)
    assert tuned.partial_indexing is True
    assert isinstance(stock.search_version, int) and stock.search_version >= 20800
    assert (stock.hit_place, tuned.hit_place) == ("companion", "entry")


def test_hits_on_a_stock_server_never_reindex(stock_url: str, stock_index: SemanticIndex) -> None:
    idx = stock_index
    key = idx.layout.key(idx.store("How do I reset my card PIN?", "In the app.", SCOPE) or "")
    idx.store("Can I pay with Apple Pay?", "Yes.", SCOPE)
    assert idx.core.hit_place == "companion"  # asked when the index was created
    assert idx.core.server_features and idx.core.server_features.partial_indexing is False
    before = int(_info(stock_url, idx)["max_doc_id"])
    exact = [idx.lookup("How do I reset my card PIN?", SCOPE) for _ in range(3)]
    semantic = idx.lookup("how can I reset the PIN of my card", SCOPE)
    assert [h.layer if h else None for h in exact] == ["exact"] * 3
    assert semantic is not None and semantic.layer == "semantic" and semantic.entry_id
    assert [h.hit_count for h in exact if h] == [0, 1, 2]  # hits before this one
    assert semantic.hit_count == 3
    # Four hits and not one re-index: no new document id.
    assert int(_info(stock_url, idx)["max_doc_id"]) == before
    client = redis.Redis.from_url(stock_url)
    assert client.hmget(key, "hit_count", "last_hit_at") == [None, None]
    counts = client.hgetall(companion_key(key))
    assert counts[b"hit_count"] == b"4" and float(counts[b"last_hit_at"]) > 0
    # The companion expires with its entry.
    assert 0 < client.pttl(companion_key(key)) <= client.pttl(key) + 1000
    assert idx.lookup("How do I reset my card PIN?", SCOPE).hit_count == 4  # type: ignore[union-attr]


def test_entry_bookkeeping_on_a_stock_server_reindexes(
    stock_url: str, stock_index: SemanticIndex
) -> None:
    """The contrast the companion avoids: counting in the entry re-indexes it."""
    idx = stock_index
    idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
    idx.core.hit_place = "entry"
    before = int(_info(stock_url, idx)["max_doc_id"])
    hit = idx.lookup("How do I reset my card PIN?", SCOPE)
    assert hit is not None and hit.layer == "exact"
    assert int(_info(stock_url, idx)["max_doc_id"]) > before


def test_tuned_server_counts_in_the_entry(redis_url: str, index: SemanticIndex) -> None:
    key = index.layout.key(index.store("How do I reset my card PIN?", "In the app.") or "")
    assert index.lookup("How do I reset my card PIN?") is not None
    assert index.core.hit_place == "entry"
    client = redis.Redis.from_url(redis_url)
    assert client.hget(key, "hit_count") == b"1"
    assert not client.exists(companion_key(key))


def test_counts_survive_a_change_of_place(stock_url: str, stock_index: SemanticIndex) -> None:
    """Counts from both places add up (a server restarted with the other setting)."""
    idx = stock_index
    idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
    idx.core.hit_place = "entry"
    idx.lookup("How do I reset my card PIN?", SCOPE)
    idx.core.hit_place = "companion"
    idx.lookup("How do I reset my card PIN?", SCOPE)
    hit = idx.lookup("How do I reset my card PIN?", SCOPE)
    assert hit is not None and hit.hit_count == 2


def test_companion_key_shape() -> None:
    assert companion_key("paracache:a:v2:ff:e:01") == "paracache:a:v2:ff:h:01"
    with pytest.raises(ValueError):
        companion_key("paracache:a:v2:ff")


def test_inspect_entries_delete_and_trim_see_companions(
    stock_url: str, stock_index: SemanticIndex
) -> None:
    from paracache import admin

    idx = stock_index
    client = redis.Redis.from_url(stock_url)
    ids = [
        idx.store(q, "answer", Scope(model="m", tenant=t))
        for q, t in (
            ("How do I reset my card PIN?", "acme"),
            ("Can I pay with Apple Pay?", "globex"),
        )
    ]
    for _ in range(3):
        idx.lookup("How do I reset my card PIN?", Scope(model="m", tenant="acme"))
    idx.lookup("Can I pay with Apple Pay?", Scope(model="m", tenant="globex"))
    listed = {e.entry_id: e for e in idx.entries()}
    assert listed[ids[0] or ""].hit_count == 3 and listed[ids[1] or ""].hit_count == 1
    assert listed[ids[0] or ""].last_hit_at is not None
    summary = admin.run(client, admin.index_summary_flow(idx.layout.index_name))
    assert summary.entries == 2 and summary.hits == 4
    assert sorted((t["tenant"], t["hits"]) for t in summary.by_tenant) == [
        ("acme", 3),
        ("globex", 1),
    ]
    # Deleting an entry takes its counts with it (and counts entries, not keys).
    assert idx.delete(ids[0] or "")
    assert not client.exists(companion_key(idx.layout.key(ids[0] or "")))
    assert idx.clear(tenant="globex") == 1
    assert not client.keys(f"{idx.layout.index_name}:h:*")
    idx.store("How do I reset my card PIN?", "again", SCOPE)
    idx.lookup("How do I reset my card PIN?", SCOPE)
    assert client.keys(f"{idx.layout.index_name}:h:*")
    assert idx.clear() == 1  # the entry; its companion goes too, uncounted
    assert not client.keys(f"paracache:{idx.namespace}:*")
