"""Administration on a big cache keeps each Redis command short: the batch limits are
lowered here so that a few entries need several commands (audit 11)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from paracache import Scope, SemanticIndex, admin, bookkeeping

PAIRS = [(f"how do I close account number {i}?", f"answer {i}") for i in range(10)]


@pytest.fixture
def commands(redis_url: str) -> Iterator[Callable[[str, str], list[list[str]]]]:
    """Every command the server runs from now on (its SLOWLOG at a 0 µs threshold):
    ``commands(name, namespace)`` lists those named ``name`` that mention the namespace."""
    client = redis.Redis.from_url(redis_url)
    before = client.config_get("slowlog-*")
    client.config_set("slowlog-max-len", 10_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()

    def seen(name: str, namespace: str) -> list[list[str]]:
        out = []
        for entry in client.slowlog_get(10_000):
            raw = entry["command"]
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            args = text.split()
            if args and args[0].upper() == name and any(namespace in a for a in args):
                out.append(args)
        return out

    yield seen
    for key, value in before.items():
        client.config_set(key, value)
    client.close()


def _load(make_index: Any) -> SemanticIndex:
    idx: SemanticIndex = make_index()
    assert idx.warm(PAIRS, Scope(tenant="acme"), progress=False) == len(PAIRS)
    return idx


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda make, idx: idx.clear(tenant="acme"), id="clear-tenant"),
        pytest.param(lambda make, idx: idx.clear(), id="clear-all"),
        pytest.param(lambda make, idx: make(max_entries=1).trim(), id="trim"),
    ],
)
def test_deleting_many_entries_unlinks_a_few_keys_per_command(
    make_index: Any,
    namespace: str,
    commands: Callable[[str, str], list[list[str]]],
    monkeypatch: pytest.MonkeyPatch,
    operation: Callable[[Any, SemanticIndex], int],
) -> None:
    monkeypatch.setattr(bookkeeping, "UNLINK_BATCH", 3, raising=False)
    idx = _load(make_index)
    deleted = operation(make_index, idx)
    assert deleted >= len(PAIRS) - 1
    unlinks = commands("UNLINK", namespace)
    assert unlinks, "no UNLINK seen"
    assert max(len(args) - 1 for args in unlinks) <= 3
    entry_keys = {a for args in unlinks for a in args[1:] if ":e:" in a}
    assert len(entry_keys) >= deleted
    assert idx.count() == len(PAIRS) - deleted


def test_entries_are_read_a_page_at_a_time_newest_first(
    make_index: Any,
    redis_url: str,
    namespace: str,
    commands: Callable[[str, str], list[list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin, "ENTRIES_PAGE", 3, raising=False)
    idx = _load(make_index)
    client = redis.Redis.from_url(redis_url)
    for i, key in enumerate(sorted(client.scan_iter(f"paracache:{namespace}:*:e:*"))):
        client.hset(key, "created_at", 1_700_000_000 + i)  # distinct ages, a known order
    newest = [e.key for e in idx.entries(limit=len(PAIRS))]
    keys = [k.decode() for k in client.scan_iter(f"paracache:{namespace}:*:e:*")]
    assert newest == sorted(keys, reverse=True)
    assert [e.key for e in idx.entries(limit=4)] == newest[:4]
    searches = [a for a in commands("FT.SEARCH", namespace) if "SORTBY" in a]
    assert searches and max(int(a[a.index("LIMIT") + 2]) for a in searches) <= 3
    client.close()


def test_stats_add_up_a_cursor_of_a_few_rows_a_read_as_the_module_does(
    make_index: Any,
    redis_url: str,
    namespace: str,
    commands: Callable[[str, str], list[list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin, "AGGREGATE_PAGE", 3, raising=False)
    idx = _load(make_index)
    more = [(f"where is branch number {i}?", f"branch {i}") for i in range(4)]
    assert idx.warm(more, Scope(tenant="globex", model="m"), progress=False, tokens=7) == 4
    assert idx.lookup(PAIRS[0][0], Scope(tenant="acme")) is not None
    idx.flush_hits()
    client = redis.Redis.from_url(redis_url)
    name = idx.layout.index_name
    grouped = admin.run(client, admin.index_summary_flow(name, paged=False))
    client.slowlog_reset()
    summed = admin.run(client, admin.index_summary_flow(name))
    assert summed == grouped
    assert summed.entries == 14 and summed.tokens == 28 and summed.hits >= 1
    assert [t["entries"] for t in summed.by_tenant] == [10, 4]
    aggregates = commands("FT.AGGREGATE", namespace)
    assert aggregates and not any("GROUPBY" in a for a in aggregates)
    reads = commands("FT.CURSOR", namespace)
    assert len(reads) >= 4 and all(a[a.index("COUNT") + 1] == "3" for a in reads)
    client.close()
