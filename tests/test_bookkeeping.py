"""Hit bookkeeping that never re-indexes an entry (issue 13): on a server without
partial indexing (a stock Redis 8 / redis-stack), hits are counted in a companion hash
beside the entry; on paracache's tuned embedded server, in the entry itself. Real
servers of both kinds; RediSearch's ``max_doc_id`` (a new document id on every
re-index) shows whether a hit re-indexed the entry."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
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
    # Hits sent when a test says so (flush_hits), never by the clock.
    idx = SemanticIndex(stock_url, namespace=namespace, ttl=3600, hit_flush_seconds=3600)
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
    client = redis.Redis.from_url(stock_url)
    assert not client.exists(companion_key(key))  # counted in process so far
    assert idx.flush_hits() == 4
    # Four hits and not one re-index: no new document id.
    assert int(_info(stock_url, idx)["max_doc_id"]) == before
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
    assert idx.flush_hits() == 1
    assert int(_info(stock_url, idx)["max_doc_id"]) > before


def test_tuned_server_counts_in_the_entry(redis_url: str, index: SemanticIndex) -> None:
    key = index.layout.key(index.store("How do I reset my card PIN?", "In the app.") or "")
    assert index.lookup("How do I reset my card PIN?") is not None
    assert index.core.hit_place == "entry"
    assert index.flush_hits() == 1
    client = redis.Redis.from_url(redis_url)
    assert client.hget(key, "hit_count") == b"1"
    assert not client.exists(companion_key(key))


def test_counts_survive_a_change_of_place(stock_url: str, stock_index: SemanticIndex) -> None:
    """Counts from both places add up (a server restarted with the other setting)."""
    idx = stock_index
    idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
    idx.core.hit_place = "entry"
    idx.lookup("How do I reset my card PIN?", SCOPE)
    assert idx.flush_hits() == 1
    idx.core.hit_place = "companion"
    idx.lookup("How do I reset my card PIN?", SCOPE)
    assert idx.flush_hits() == 1
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
    idx.flush_hits()
    assert client.keys(f"{idx.layout.index_name}:h:*")
    assert idx.clear() == 1  # the entry; its companion goes too, uncounted
    assert not client.keys(f"paracache:{idx.namespace}:*")


# ------------------------------------------------- hits counted in process, sent in batches


def _companion_hits(url: str, index: SemanticIndex, entry: str | None) -> int:
    raw = redis.Redis.from_url(url).hget(companion_key(index.layout.key(entry or "")), "hit_count")
    return int(raw or 0)


def test_batched_counts_reach_redis_on_flush_and_close(stock_url: str, namespace: str) -> None:
    """Hits reach Redis (and inspect's totals) once sent: by flush_hits(), or close()."""
    from paracache import admin

    idx = SemanticIndex(stock_url, namespace=namespace, hit_flush_seconds=3600)
    try:
        entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
        for _ in range(3):
            assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None
        assert _companion_hits(stock_url, idx, entry) == 0
        assert idx.flush_hits() == 3 and idx.flush_hits() == 0
        assert _companion_hits(stock_url, idx, entry) == 3
        client = redis.Redis.from_url(stock_url)
        summary = admin.run(client, admin.index_summary_flow(idx.layout.index_name))
        assert summary.hits == 3
        assert idx.lookup("how can I reset the PIN of my card", SCOPE) is not None
        idx.close()  # sends the semantic hit
        assert _companion_hits(stock_url, idx, entry) == 4
    finally:
        idx.close()
        with SemanticIndex(stock_url, namespace=namespace) as cleaner:  # idx is closed
            cleaner.clear()


def _commands(client: redis.Redis) -> dict[str, int]:
    """The server's command counts since the last ``CONFIG RESETSTAT`` (not INFO's)."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def test_an_exact_hit_on_a_stock_server_reads_the_entry_alone(
    stock_url: str, stock_index: SemanticIndex
) -> None:
    """With batched counts in companions, an exact hit is one command (the entry's
    HGETALL): no companion read, no script, nothing written."""
    idx = stock_index
    idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
    assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None  # index, server asked
    idx.flush_hits()  # the companion exists: the read below could have asked for it
    client = redis.Redis.from_url(stock_url)
    client.config_resetstat()
    hit = idx.lookup("How do I reset my card PIN?", SCOPE)
    assert hit is not None and hit.layer == "exact"
    ran = {k: n for k, n in _commands(client).items() if k not in ("config|resetstat", "info")}
    assert ran == {"hgetall": 1}


def test_an_exact_hit_counts_this_instances_hits_sent_or_not(
    stock_url: str, stock_index: SemanticIndex, namespace: str
) -> None:
    """An exact hit's hit_count on a stock server: the entry's own count plus the hits
    this instance counted on it, sent to the companion or not, so it never goes back
    after a send. Another process's sent hits are in entries(), stats and the semantic
    layer's hit_count (its script reads the companion), not in this instance's exact
    hits."""
    idx = stock_index
    entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
    counts = []
    for flush in (False, True, False, True, True):
        hit = idx.lookup("How do I reset my card PIN?", SCOPE)
        assert hit is not None and hit.layer == "exact"
        counts.append(hit.hit_count)
        if flush:
            idx.flush_hits()
    assert counts == [0, 1, 2, 3, 4]  # hits before each one, across two sends
    assert _companion_hits(stock_url, idx, entry) == 5
    other = SemanticIndex(stock_url, namespace=namespace, hit_flush_seconds=3600)
    try:  # another process: two hits, sent
        assert [other.lookup("How do I reset my card PIN?", SCOPE) for _ in range(2)]
        assert other.flush_hits() == 2
    finally:
        other.close()
    exact = idx.lookup("How do I reset my card PIN?", SCOPE)
    assert exact is not None and exact.hit_count == 5  # this instance's five
    semantic = idx.lookup("how can I reset the PIN of my card", SCOPE)
    assert semantic is not None and semantic.layer == "semantic"
    assert semantic.hit_count == 7 + 1  # all seven sent, and this instance's unsent exact hit
    assert idx.entries()[0].hit_count == 9  # entries() sends this instance's two first
    # A cleared namespace starts again at 0 (its companions are gone with it).
    idx.clear()
    idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
    again = idx.lookup("How do I reset my card PIN?", SCOPE)
    assert again is not None and again.hit_count == 0


def test_a_counter_remembers_the_entries_sent_most_recently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sent hits are remembered for MAX_SENT_KEYS entries (bounded memory): the entries
    sent longest ago are forgotten first; an entry sent again is kept."""
    from paracache import bookkeeping
    from paracache.bookkeeping import HitCounter

    monkeypatch.setattr(bookkeeping, "MAX_SENT_KEYS", 2)
    counter = HitCounter(every=1, seconds=60)
    for key in ("k:e:1", "k:e:2", "k:e:1", "k:e:3"):
        counter.add(key, "s", 1.0)
        batch = counter.due()
        assert batch is not None
        counter.sent_to_companions(batch)
    assert [counter.count(k, "s", 2.0) for k in ("k:e:1", "k:e:2", "k:e:3")] == [2, 0, 1]
    counter.forget("k:e:1")
    assert counter.count("k:e:1", "s", 3.0) == 1  # the unsent hit just counted
    assert counter.pending("k:e:1") == 2


def test_a_batch_is_sent_after_hit_flush_seconds(stock_url: str, namespace: str) -> None:
    """A lookup sends the batch once hit_flush_seconds have passed since its first hit,
    whatever it finds (here a miss); before that, nothing is written."""
    idx = SemanticIndex(stock_url, namespace=namespace, hit_flush_hits=1000, hit_flush_seconds=0.2)
    try:
        entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
        assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None
        assert len(idx.core.hits) == 1  # counted in process, nothing written
        assert _companion_hits(stock_url, idx, entry) == 0
        time.sleep(0.3)
        assert idx.lookup("Can I pay with Apple Pay?", SCOPE) is None  # posts the batch
        assert idx.lookup("Can I pay with Apple Pay?", SCOPE) is None  # reads its reply
        assert _companion_hits(stock_url, idx, entry) == 1
        assert len(idx.core.hits) == 0
    finally:
        idx.clear()
        idx.close()


def test_caches_and_threads_add_up(stock_url: str, namespace: str) -> None:
    """Each cache sends its own counts and they only add: two caches of one namespace
    (two processes, as far as Redis can tell) and four threads sharing one of them."""
    first = SemanticIndex(stock_url, namespace=namespace, hit_flush_hits=7)
    second = SemanticIndex(stock_url, namespace=namespace, hit_flush_hits=5)
    try:
        entry = first.store("How do I reset my card PIN?", "In the app.", SCOPE)

        def ask(n: int) -> None:
            for _ in range(n):
                assert first.lookup("How do I reset my card PIN?", SCOPE) is not None

        threads = [threading.Thread(target=ask, args=(50,)) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(9):
            assert second.lookup("How do I reset my card PIN?", SCOPE) is not None
        for t in threads:
            t.join()
        first.flush_hits()
        second.flush_hits()
        assert _companion_hits(stock_url, first, entry) == 4 * 50 + 9
        assert first.entries()[0].hit_count == 209 == second.entries()[0].hit_count
    finally:
        first.clear()
        first.close()
        second.close()


def test_a_batch_counts_only_entries_still_of_its_scope(stock_url: str, namespace: str) -> None:
    """A batch adds to an entry only if it still holds an entry of the scope the hits
    were made under: one replaced meanwhile (another tenant's data, a damaged hash) or
    deleted is left alone, and no companion is created for it."""
    idx = SemanticIndex(stock_url, namespace=namespace, hit_flush_seconds=3600)
    try:
        kept = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
        replaced = idx.store("Can I pay with Apple Pay?", "Yes.", SCOPE)
        gone = idx.store("Why was my transfer declined?", "A limit.", SCOPE)
        for q in ("How do I reset my card PIN?", "Can I pay with Apple Pay?",
                  "Why was my transfer declined?"):  # fmt: skip
            assert idx.lookup(q, SCOPE) is not None
        client = redis.Redis.from_url(stock_url)
        client.hset(idx.layout.key(replaced or ""), "scope", Scope(tenant="other").digest())
        assert idx.delete(gone or "")
        assert idx.flush_hits() == 3  # sent; counted where the entry is still its own
        assert _companion_hits(stock_url, idx, kept) == 1
        assert not client.exists(companion_key(idx.layout.key(replaced or "")))
        assert not client.exists(companion_key(idx.layout.key(gone or "")))
    finally:
        idx.clear()
        idx.close()


def test_a_failed_batch_is_a_counted_fail_open(stock_url: str, namespace: str) -> None:
    """A server that refuses the batch (an ACL without scripts) costs the counts, never
    an exception: lookups are served, and the loss is counted (kind ``hit_flush``)."""
    admin_client = redis.Redis.from_url(stock_url)
    user, password = "noscript-hits", "pw-" + "y" * 20
    admin_client.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "&*", "+@all",
        "-eval", "-evalsha",
    )  # fmt: skip
    port = admin_client.connection_pool.connection_kwargs["port"]
    idx = SemanticIndex(
        f"redis://{user}:{password}@127.0.0.1:{port}/0",
        namespace=namespace,
        hit_flush_hits=2,
        hit_flush_seconds=3600,
    )
    try:
        entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
        for _ in range(2):  # the second posts the batch: refused
            assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None
        assert idx.lookup("Can I pay with Apple Pay?", SCOPE) is None  # reads the refusal
        assert idx.stats().errors_by_kind.get("hit_flush") == 1
        assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None
        assert idx.flush_hits() == 0  # refused again, waited for: counted, not raised
        assert idx.stats().errors_by_kind.get("hit_flush") == 2
        assert _companion_hits(stock_url, idx, entry) == 0
        assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None
    finally:
        idx.clear()
        idx.close()  # its batch refused too: closing does not raise
        admin_client.execute_command("ACL", "DELUSER", user)


@pytest.mark.parametrize(
    "options",
    [
        {"hit_flush_hits": 0},
        {"hit_flush_hits": -1},
        {"hit_flush_hits": 100_001},
        {"hit_flush_hits": 1.5},
        {"hit_flush_hits": True},
        {"hit_flush_hits": "10"},
        {"hit_flush_seconds": 0},
        {"hit_flush_seconds": -1},
        {"hit_flush_seconds": 3601},
        {"hit_flush_seconds": float("nan")},
        {"hit_flush_seconds": True},
        {"hit_flush_seconds": "1"},
    ],
)
def test_bad_flush_settings_raise(redis_url: str, options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=name):
        SemanticIndex(redis_url, namespace="bad-flush", **options)


def test_async_hits_are_batched_and_sent_at_aclose(stock_url: str, namespace: str) -> None:
    idx = SemanticIndex(stock_url, namespace=namespace, hit_flush_seconds=3600)
    entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)

    async def ask() -> list[Any]:
        try:
            return [await idx.alookup("How do I reset my card PIN?", SCOPE) for _ in range(2)]
        finally:
            await idx.aclose()

    try:
        hits = asyncio.run(ask())
        assert [h.hit_count if h else None for h in hits] == [0, 1]
        assert _companion_hits(stock_url, idx, entry) == 2
    finally:
        idx.clear()
        idx.close()


def test_unsent_hits_are_sent_at_interpreter_exit(stock_url: str, namespace: str) -> None:
    """A process that ends without close() sends its unsent hits at exit."""
    idx = SemanticIndex(stock_url, namespace=namespace)
    try:
        entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
        script = (
            "from paracache import Scope, SemanticIndex\n"
            f"idx = SemanticIndex({stock_url!r}, namespace={namespace!r}, "
            "hit_flush_seconds=3600)\n"
            "for _ in range(3):\n"
            "    assert idx.lookup('How do I reset my card PIN?', Scope(model='m'))\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
        assert _companion_hits(stock_url, idx, entry) == 3
    finally:
        idx.clear()
        idx.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_send_its_parents_hits(stock_url: str, namespace: str) -> None:
    """Unsent hits stay the parent's: a child forked meanwhile (a pre-forking server)
    starts with none, so no hit is sent twice."""
    idx = SemanticIndex(stock_url, namespace=namespace, hit_flush_seconds=3600)
    try:
        entry = idx.store("How do I reset my card PIN?", "In the app.", SCOPE)
        assert idx.lookup("How do I reset my card PIN?", SCOPE) is not None
        pid = os.fork()
        if pid == 0:  # the child: one hit of its own, sent at close()
            code = 1
            try:
                hit = idx.lookup("How do I reset my card PIN?", SCOPE)
                code = 0 if hit is not None and hit.hit_count == 0 else 2
                idx.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _companion_hits(stock_url, idx, entry) == 1  # the child's
        assert idx.flush_hits() == 1
        assert _companion_hits(stock_url, idx, entry) == 2
    finally:
        idx.clear()
        idx.close()
