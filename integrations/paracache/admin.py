"""Namespace-wide administration straight from Redis: what ``paracache stats``,
``inspect`` and ``clear`` show and do.

These work without an embedding model: a namespace's indexes (one per embedding model)
are found by name (``FT._LIST``), so the command line can report on and clear caches
written by any process with any vectorizer. What Redis knows is reported (entries,
hits recorded on them, age, memory); hit rates and latencies are in-process counters of
each application (``SemanticIndex.stats()``, the service's ``/metrics``).

The same flows serve one cache instance (:class:`Administration`, the administrative
third of :class:`paracache.core.Core`: ``clear``, ``count``, ``delete``, ``entries``), so
clearing by tenant has one loop, with one no-progress guard, for both. Like every flow
they yield requests; :func:`run` performs them with a blocking client
(:func:`paracache.driver.run`).

Example:
    >>> import redis                                                     # doctest: +SKIP
    >>> client = redis.Redis.from_url("redis://localhost:6379", protocol=2)  # doctest: +SKIP
    >>> run(client, namespaces_flow())                                   # doctest: +SKIP
    ['faq', 'langchain']
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import redis

from .base import FlowBase
from .bookkeeping import (
    companion_hits_flow,
    companion_read,
    is_companion,
    merged_fields,
    unlink_entries_flow,
    unlink_keys_flow,
)
from .cluster import ClusterTransport
from .driver import SyncIO
from .driver import run as drive
from .errors import BackendError
from .protocol import Batch, Call, Flow, read_scopes_call, scope_rows, search_rows
from .schema import filter_terms, namespace_of, scopes_key
from .scope import Scope
from .values import EntryInfo, _num, _text, check_entry_id

__all__ = [
    "AGGREGATE_PAGE",
    "ENTRIES_PAGE",
    "Administration",
    "IndexSummary",
    "clear_flow",
    "count_flow",
    "entries_flow",
    "index_summary_flow",
    "indexes_flow",
    "namespaces_flow",
    "run",
    "unlink_namespace",
]

logger = logging.getLogger("paracache")

T = TypeVar("T")

_INDEX = re.compile(r"^paracache:([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):v(\d+):([0-9a-f]+)$")
#: Entries sampled with ``MEMORY USAGE`` for the memory estimate.
MEMORY_SAMPLE = 16
#: Entries per search of :func:`entries_flow` (``inspect --limit``).
ENTRIES_PAGE = 500


@dataclasses.dataclass(frozen=True)
class IndexSummary:
    """What Redis knows about one index (one namespace and embedding model).

    Attributes:
        namespace: The namespace.
        index: The RediSearch index name.
        entries: Entries it holds.
        hits: Sum of the entries' ``hit_count`` (hits served from them since stored).
        tokens: Sum of the LLM tokens the entries stand for.
        oldest: Unix time of the oldest entry (``None`` when empty).
        newest: Unix time of the newest entry.
        memory_bytes: Estimated memory of entries plus index (sampled ``MEMORY USAGE``
            times entries, plus RediSearch's own sizes).
        by_tenant: ``{"tenant": ..., "entries": n, "hits": n}``, largest first (up to 20).
        by_model: The same per model.
    """

    namespace: str
    index: str
    entries: int
    hits: int
    tokens: int
    oldest: float | None
    newest: float | None
    memory_bytes: int | None
    by_tenant: list[dict[str, Any]]
    by_model: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return dataclasses.asdict(self)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pairs(raw: Any) -> dict[str, Any]:
    """A flat ``[k, v, k, v]`` (RESP2) or dict (RESP3) reply as a ``str``-keyed dict."""
    if isinstance(raw, Mapping):
        return {_s(k): v for k, v in raw.items()}
    items = list(raw)
    return {_s(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _float(value: Any) -> float | None:
    try:
        out = float(_s(value))
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN -> None


def indexes_flow(namespace: str | None = None) -> Flow[list[str]]:
    """The paracache index names (of one namespace, or all), sorted."""
    names = yield Call(("FT._LIST",))
    out = []
    for raw in names:
        name = _s(raw)
        m = _INDEX.match(name)
        if m and (namespace is None or m.group(1) == namespace):
            out.append(name)
    return sorted(out)


def namespaces_flow() -> Flow[list[str]]:
    """Every namespace that has a paracache index on this server."""
    names = yield from indexes_flow()
    return sorted({_namespace(n) for n in names})


def _namespace(index_name: str) -> str:
    m = _INDEX.match(index_name)
    if not m:
        raise ValueError(f"not a paracache index: {index_name!r}")
    return m.group(1)


def _aggregate_rows(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, Mapping):  # RESP3
        results = _pairs(raw).get("results", [])
        return [_pairs(_pairs(r).get("extra_attributes", {})) for r in results]
    return [_pairs(row) for row in list(raw)[1:]]


def _group(
    rows: list[dict[str, Any]], field: str, scopes: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One ``{field: name, entries, hits}`` per aggregated row; the name is read from a
    sample entry's scope (``scopes``: digest -> scope data, from the scope registry)."""
    out = []
    for row in rows:
        sample = scopes.get(_s(row.get("sample", b"")), {})
        name = sample.get(field) if isinstance(sample, dict) else None
        out.append(
            {
                field.removesuffix("_version"): name if isinstance(name, str) else "?",
                "entries": int(_float(row.get("n")) or 0),
                "hits": int(_float(row.get("hits")) or 0),
            }
        )
    return out


def index_summary_flow(
    index_name: str, breakdown: int = 20, *, paged: bool = True
) -> Flow[IndexSummary]:
    """Entries, hits, age, memory and the largest tenants and models of one index.

    ``paged`` (default): the entries' fields are read with an ``FT.AGGREGATE`` cursor,
    :data:`AGGREGATE_PAGE` rows per read, and added up here, so no one command goes over
    the whole index (a grouped aggregate of 100 k entries holds the server for a tenth of
    a second or more). ``paged=False``: the module groups and adds up (one command each
    for the totals and the tenant and model breakdowns); for a cluster, where
    :mod:`paracache.cluster` emulates those aggregates and has no cursors.
    """
    info = _pairs((yield Call(("FT.INFO", index_name))))
    entries = int(_float(info.get("num_docs")) or 0)
    hits = tokens = 0
    oldest = newest = None
    by_tenant: list[dict[str, Any]] = []
    by_model: list[dict[str, Any]] = []
    memory: int | None = None
    if entries:
        if paged:
            totals, groups = yield from _summed_flow(index_name, breakdown)
        else:
            totals, groups = yield from _aggregated_flow(index_name, breakdown)
        companion = yield from companion_hits_flow(index_name)
        hits = companion.total
        if totals:
            hits += int(_float(totals.get("hits")) or 0)
            tokens = int(_float(totals.get("tokens")) or 0)
            oldest = _float(totals.get("oldest"))
            newest = _float(totals.get("newest"))
        for field, out in (("tenant", by_tenant), ("model", by_model)):
            grouped_rows = groups[field]
            extra = companion.by_tenant if field == "tenant" else companion.by_model
            for row in grouped_rows:  # hits counted beside the entries (bookkeeping.py)
                more = extra.get(_s(row.get(field, b"")), 0)
                if more:
                    row["hits"] = (_float(row.get("hits")) or 0) + more
            digests = sorted({_s(row.get("sample", b"")) for row in grouped_rows})
            scopes: dict[str, Any] = {}
            if digests:
                registry = scopes_key(_namespace(index_name))
                scopes = yield from _scopes_flow(registry, digests)
            out.extend(_group(grouped_rows, field, scopes))
        sample = yield Call(
            (
                "FT.SEARCH",
                index_name,
                "*",
                "NOCONTENT",
                "LIMIT",
                0,
                MEMORY_SAMPLE,
                "DIALECT",
                2,
            )
        )
        keys = [key for key, _ in search_rows(sample)[1]]
        if keys:
            sizes = yield Batch(tuple(("MEMORY", "USAGE", k, "SAMPLES", "0") for k in keys))
            known = [int(x) for x in sizes if x is not None]
            if known:
                index_mb = sum(
                    _float(info.get(f)) or 0.0
                    for f in ("total_index_memory_sz_mb", "vector_index_sz_mb")
                )
                memory = round(sum(known) / len(known) * entries + index_mb * 1024 * 1024)
    return IndexSummary(
        namespace=_namespace(index_name),
        index=index_name,
        entries=entries,
        hits=hits,
        tokens=tokens,
        oldest=oldest,
        newest=newest,
        memory_bytes=memory,
        by_tenant=by_tenant,
        by_model=by_model,
    )


#: Rows per read of :func:`index_summary_flow`'s cursor.
AGGREGATE_PAGE = 500

_SUMMED = ("@hit_count", "@tokens", "@created_at", "@tenant", "@model", "@scope")


def _summed_flow(
    index_name: str, breakdown: int
) -> Flow[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]:
    """The totals and the ``breakdown`` largest tenant and model groups of an index,
    its entries read with a cursor (:data:`AGGREGATE_PAGE` rows a read) and added up
    here: the rows :func:`_aggregated_flow` has the module make."""
    hits = tokens = 0.0
    oldest: float | None = None
    newest: float | None = None
    seen = False
    groups: dict[str, dict[str, list[Any]]] = {"tenant": {}, "model": {}}
    reply = yield Call(
        ("FT.AGGREGATE", index_name, "*", "LOAD", len(_SUMMED), *_SUMMED,
         "WITHCURSOR", "COUNT", AGGREGATE_PAGE, "DIALECT", 2)
    )  # fmt: skip
    while True:
        rows, cursor = reply[0], reply[1]
        for row in _aggregate_rows(rows):
            seen = True
            n_hits = _float(row.get("hit_count")) or 0.0
            hits += n_hits
            tokens += _float(row.get("tokens")) or 0.0
            created = _float(row.get("created_at"))
            if created is not None:
                oldest = created if oldest is None else min(oldest, created)
                newest = created if newest is None else max(newest, created)
            for field, by in groups.items():
                group = by.setdefault(_s(row.get(field, b"")), [0, 0.0, row.get("scope")])
                group[0] += 1
                group[1] += n_hits
        if not int(cursor):
            break
        reply = yield Call(("FT.CURSOR", "READ", index_name, cursor, "COUNT", AGGREGATE_PAGE))
    totals: dict[str, Any] = {}
    if seen:
        totals = {"hits": hits, "tokens": tokens, "oldest": oldest, "newest": newest}
    out: dict[str, list[dict[str, Any]]] = {}
    for field, by in groups.items():
        largest = sorted(by.items(), key=lambda kv: (-kv[1][0], kv[0]))[:breakdown]
        out[field] = [
            {field: value, "n": n, "hits": h, "sample": sample or b""}
            for value, (n, h, sample) in largest
        ]
    return totals, out


def _aggregated_flow(
    index_name: str, breakdown: int
) -> Flow[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]:
    """:func:`_summed_flow`'s rows, grouped and added up by the module (one aggregate
    each over the whole index)."""
    total = yield Call(
        (
            "FT.AGGREGATE",
            index_name,
            "*",
            "LOAD",
            2,
            "@hit_count",
            "@tokens",
            "GROUPBY",
            0,
            "REDUCE",
            "SUM",
            1,
            "@hit_count",
            "AS",
            "hits",
            "REDUCE",
            "SUM",
            1,
            "@tokens",
            "AS",
            "tokens",
            "REDUCE",
            "MIN",
            1,
            "@created_at",
            "AS",
            "oldest",
            "REDUCE",
            "MAX",
            1,
            "@created_at",
            "AS",
            "newest",
            "DIALECT",
            2,
        )
    )
    rows = _aggregate_rows(total)
    groups: dict[str, list[dict[str, Any]]] = {}
    for field, tag in (("tenant", "@tenant"), ("model", "@model")):
        grouped = yield Call(
            (
                "FT.AGGREGATE",
                index_name,
                "*",
                "LOAD",
                2,
                "@hit_count",
                "@scope",
                "GROUPBY",
                1,
                tag,
                "REDUCE",
                "COUNT",
                0,
                "AS",
                "n",
                "REDUCE",
                "SUM",
                1,
                "@hit_count",
                "AS",
                "hits",
                "REDUCE",
                "FIRST_VALUE",
                1,
                "@scope",
                "AS",
                "sample",
                "SORTBY",
                2,
                "@n",
                "DESC",
                "MAX",
                breakdown,
                "DIALECT",
                2,
            )
        )
        groups[field] = _aggregate_rows(grouped)
    return (rows[0] if rows else {}), groups


def _filter_query(tenant: str | None, model: str | None, corpus_version: str | None) -> str:
    """The digest terms entries are filtered on (``*``: all)."""
    return " ".join(filter_terms(tenant=tenant, model=model, corpus_version=corpus_version)) or "*"


def count_flow(
    index_names: list[str],
    *,
    tenant: str | None = None,
    model: str | None = None,
    corpus_version: str | None = None,
) -> Flow[int]:
    """How many entries of these indexes match the filters (all, without filters)."""
    return (yield from _count(index_names, _filter_query(tenant, model, corpus_version)))


def _count(index_names: Sequence[str], query: str) -> Flow[int]:
    total = 0
    for name in index_names:
        raw = yield Call(("FT.SEARCH", name, query, "LIMIT", 0, 0, "DIALECT", 2))
        total += search_rows(raw)[0]
    return total


def clear_flow(
    namespace: str,
    *,
    tenant: str | None = None,
    model: str | None = None,
    corpus_version: str | None = None,
) -> Flow[int]:
    """Delete a namespace's entries (every embedding model's), or those matching the
    filters; returns how many were deleted. Indexes are kept; so is the namespace's
    scope registry, unless the whole namespace is cleared."""
    if not _INDEX.match(f"paracache:{namespace}:v1:0"):
        raise ValueError(f"not a namespace: {namespace!r}")
    if tenant is None and model is None and corpus_version is None:
        # Every key of the namespace, its scope registry too (not counted).
        return (yield from unlink_namespace(namespace))
    query = _filter_query(tenant, model, corpus_version)
    return (yield from _delete_matching((yield from indexes_flow(namespace)), query))


def _delete_matching(index_names: Sequence[str], query: str) -> Flow[int]:
    """Delete the entries of these indexes that match ``query``, 1,000 at a time.

    Stops on an index when a round deletes nothing: the index may list keys that are
    gone (expired, deleted; it lags), and asking again would list them again forever.
    """
    deleted = 0
    for name in index_names:
        while True:
            raw = yield Call(
                ("FT.SEARCH", name, query, "NOCONTENT", "LIMIT", 0, 1000, "DIALECT", 2)
            )
            keys = [key for key, _ in search_rows(raw)[1]]
            if not keys:
                break
            removed = yield from unlink_entries_flow(keys)
            deleted += removed
            if not removed:  # the index lists keys that are gone: no progress
                break
    return deleted


def unlink_namespace(namespace: str) -> Flow[int]:
    """Delete every key of ``namespace`` (``SCAN``, ``UNLINK``); returns how many were
    deleted, not counting its scope registry (which goes too)."""
    registry = scopes_key(namespace).encode()
    deleted = 0
    cursor: Any = 0
    pattern = f"paracache:{namespace}:*"
    while True:
        cursor, keys = yield Call(("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
        if keys:
            yield from unlink_keys_flow(keys)
            # Entries only: not the registry, not the entries' companion hit counts.
            deleted += sum(
                1
                for k in keys
                if k not in (registry, registry.decode()) and not is_companion(_s(k))
            )
        if int(cursor) == 0:
            return max(0, deleted)


_ENTRY_FIELDS = ("prompt", "scope", "created_at", "last_hit_at", "hit_count", "tokens", "ttl")


def entries_flow(index_name: str, limit: int = 20) -> Flow[list[EntryInfo]]:
    """The ``limit`` newest entries of the index ``index_name`` with their TTL left and
    their scope (from the namespace's scope registry), read :data:`ENTRIES_PAGE` at a
    time: a search returning thousands of entries at once holds the server meanwhile."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be an int in [1, 10000], got {limit!r}")
    out: list[EntryInfo] = []
    seen: set[str] = set()
    offset = 0
    while offset < limit:
        page = min(ENTRIES_PAGE, limit - offset)
        rows, returned = yield from _entries_page(index_name, offset, page)
        for entry in rows:
            if entry.key not in seen:  # written in between: a row moves to the next page
                seen.add(entry.key)
                out.append(entry)
        if returned < page:
            break
        offset += page
    return out[:limit]


def _scopes_flow(registry: str, digests: Sequence[str]) -> Flow[dict[str, dict[str, Any]]]:
    """The scopes of ``digests`` from the registry (:func:`read_scopes_call`: a script, so
    that a registry of another type reads as empty); where the server runs no scripts
    (an ACL without ``@scripting``, a provider that disables Lua, ``EVAL`` renamed), a
    plain ``HMGET``, and nothing if that is refused too (a registry that is not a hash)."""
    try:
        reply = yield Call(read_scopes_call(registry, digests))
    except BackendError as exc:
        if exc.kind not in ("noperm", "unknown_command"):
            raise
        try:
            reply = yield Call(("HMGET", registry, *digests))
        except BackendError as again:
            if not again.answered:
                raise
            reply = []
    return scope_rows(digests, reply)


def _entries_page(index_name: str, offset: int, page: int) -> Flow[tuple[list[EntryInfo], int]]:
    """A page's live entries, and how many rows the search returned."""
    raw = yield Call(
        (
            "FT.SEARCH",
            index_name,
            "*",
            "SORTBY",
            "created_at",
            "DESC",
            "RETURN",
            len(_ENTRY_FIELDS),
            *_ENTRY_FIELDS,
            "LIMIT",
            offset,
            page,
            "DIALECT",
            2,
        )
    )
    rows = search_rows(raw)[1]
    out: list[EntryInfo] = []
    if not rows:
        return out, 0
    digests = sorted({fields.get(b"scope", b"").decode("utf-8", "replace") for _, fields in rows})
    replies = yield Batch(
        (
            *(("PTTL", key) for key, _ in rows),
            *(companion_read(key) for key, _ in rows),
        )
    )
    n = len(rows)
    pttls = replies[:n]
    rows = [
        (key, merged_fields(f, c)) for (key, f), c in zip(rows, replies[n : 2 * n], strict=True)
    ]
    scopes = yield from _scopes_flow(scopes_key(namespace_of(index_name)), digests)
    for (key, fields), pttl in zip(rows, pttls, strict=True):
        if int(pttl) == -2:
            continue  # expired in between
        scope = scopes.get(fields.get(b"scope", b"").decode("utf-8", "replace"), {})
        last_hit = _num(fields, "last_hit_at")
        out.append(
            EntryInfo(
                entry_id=key.rsplit(":", 1)[-1],
                key=key,
                prompt=_text(fields, "prompt"),
                scope=scope,
                created_at=_num(fields, "created_at"),
                last_hit_at=last_hit or None,
                hit_count=int(_num(fields, "hit_count")),
                tokens=int(_num(fields, "tokens")),
                ttl=int(_num(fields, "ttl")) or None,
                ttl_left=None if int(pttl) < 0 else int(pttl) / 1000.0,
            )
        )
    return out, n


class Administration(FlowBase):
    """The administrative flows of one cache instance (its own index, or its whole
    namespace), built on the namespace-wide flows above."""

    def clear_flow(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        corpus_version: str | None = None,
        scope: Scope | None = None,
    ) -> Flow[int]:
        """Delete every entry of the namespace, or those of this index matching the
        given scope parts.

        Without filters every key of the namespace goes, its scope registry too (not
        counted: the count is of entries). With filters, the registry keeps its rows.
        """
        terms = filter_terms(tenant=tenant, model=model, corpus_version=corpus_version)
        if scope is not None:
            if not isinstance(scope, Scope):
                raise TypeError(f"scope must be a paracache.Scope, got {type(scope).__name__}")
            terms.append(f"@scope:{{{scope.digest()}}}")
        if not terms:
            deleted = yield from unlink_namespace(self.layout.namespace)
            self._forget_registered()  # the registry went too: register anew
            return deleted
        names, query = [self.layout.index_name], " ".join(terms)
        return (yield from self._on_index(lambda: _delete_matching(names, query)))

    def delete_flow(self, entry_id: str) -> Flow[bool]:
        """Delete one entry by id."""
        key = self.layout.key(check_entry_id(entry_id))
        return bool((yield from unlink_entries_flow([key])))

    def count_flow(self) -> Flow[int]:
        """How many entries this index holds."""
        return (yield from self._on_index(lambda: _count([self.layout.index_name], "*")))

    def entries_flow(self, limit: int = 20) -> Flow[list[EntryInfo]]:
        """The ``limit`` newest entries of this index, for inspection."""
        return (yield from self._on_index(lambda: entries_flow(self.layout.index_name, limit)))


def run(client: redis.Redis, flow: Flow[T]) -> T:
    """Perform a flow's Redis calls with a blocking client (:func:`paracache.driver.run`);
    :class:`~paracache.errors.BackendError` (a ``CacheError``) on failure."""
    if hasattr(client, "nodes_manager"):  # a RedisCluster: index commands on every shard
        return drive(flow, SyncIO(client, cluster=ClusterTransport(cast(Any, client))))
    return drive(flow, SyncIO(client))
