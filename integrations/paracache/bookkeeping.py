"""Where an entry's hit count lives, chosen by what the server does on a write.

RediSearch re-indexes a hash, its HNSW vector included, on any write to it, unless it
was loaded with ``PARTIAL_INDEXED_DOCS`` (then a write to fields the index does not
cover costs nothing). paracache's embedded server has it; a stock Redis 8, a
``redis-stack`` container or Redis Cloud do not. So when the index is first used, the
core asks the server (:func:`detect_flow`) and counts hits:

- ``"entry"``: in the entry's own hash (``hit_count``, ``last_hit_at``), where that is
  free (partial indexing on), or where a script may touch only its declared key
  (a cluster client);
- ``"companion"``: in a small hash beside the entry, outside the index
  (:func:`companion_key`), expiring with it: a hit costs the server a few
  microseconds instead of a re-index.

Readers (the lookup scripts, ``entries()``, ``inspect``) add both places up, so a
server restarted with the other setting loses no count.

Example:
    >>> companion_key("paracache:faq:v2:ab12:e:0123")
    'paracache:faq:v2:ab12:h:0123'
    >>> is_companion("paracache:faq:v2:ab12:h:0123"), is_companion("paracache:faq:v2:ab12:e:1")
    (True, False)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .errors import BackendError
from .protocol import Batch, Call, Flow

__all__ = [
    "CompanionHits",
    "HitPlace",
    "ServerFeatures",
    "companion_hits_flow",
    "companion_key",
    "detect_flow",
    "is_companion",
    "merged_fields",
    "unlink_entries_flow",
]

logger = logging.getLogger("paracache")

HitPlace = Literal["entry", "companion"]

#: The mode argument the lookup scripts take (see ``protocol._HITS``).
SCRIPT_MODE: Mapping[HitPlace, str] = {"entry": "e", "companion": "c"}


def companion_key(entry_key: str) -> str:
    """The key of an entry's hit counts (``...:e:<id>`` -> ``...:h:<id>``): under the
    namespace's prefix (cleared with it), outside the index's (never indexed)."""
    head, sep, tail = entry_key.rpartition(":e:")
    if not sep:
        raise ValueError(f"not an entry key: {entry_key!r}")
    return f"{head}:h:{tail}"


def is_companion(key: str) -> bool:
    """Is ``key`` an entry's companion hash (see :func:`companion_key`)?"""
    return ":h:" in key and ":e:" not in key


@dataclasses.dataclass(frozen=True)
class ServerFeatures:
    """What the server told paracache when its index was first used.

    Example:
        >>> ServerFeatures(partial_indexing=False, search_version=21005).hit_place
        'companion'
    """

    #: ``PARTIAL_INDEXED_DOCS`` on (``None``: the server would not say).
    partial_indexing: bool | None
    #: The search module's version (``MODULE LIST``, e.g. 21005 for 2.10.5), if known.
    search_version: int | None = None

    @property
    def hit_place(self) -> HitPlace:
        """Where hits are counted on this server."""
        return "entry" if self.partial_indexing else "companion"


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    return None


def _config_value(raw: Any, name: str) -> Any:
    """The value of ``name`` in an ``FT.CONFIG GET``/``CONFIG GET`` reply (RESP2 list
    of pairs or flat list, or RESP3 map)."""
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            if key.lower() == name.lower():
                return v
        return None
    items = list(raw or [])
    if items and all(isinstance(x, (list, tuple)) for x in items):  # [[name, value], ...]
        items = [y for pair in items for y in pair]
    for i in range(0, len(items) - 1, 2):
        k = items[i]
        key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
        if key.lower() == name.lower():
            return items[i + 1]
    return None


def _search_version(raw: Any) -> int | None:
    for module in raw or []:
        if isinstance(module, Mapping):
            pairs = list(module.items())
        else:
            items = list(module)
            pairs = list(zip(items[0::2], items[1::2], strict=False))
        fields = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in pairs}
        name = fields.get("name")
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if name in ("search", "ft", "searchlight"):
            try:
                return int(fields.get("ver"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None
    return None


def detect_flow() -> Flow[ServerFeatures]:
    """Ask the server whether it indexes documents partially, and its search module's
    version. A server that refuses to say (an ACL, a managed service without
    ``FT.CONFIG``/``MODULE``) is taken as one without partial indexing: companion
    counts cost a few microseconds there too. A server that does not answer raises
    (the caller's lookup fails open and asks again next time)."""
    partial: bool | None = None
    for args, name in (
        (("FT.CONFIG", "GET", "PARTIAL_INDEXED_DOCS"), "PARTIAL_INDEXED_DOCS"),
        (("CONFIG", "GET", "search-partial-indexed-docs"), "search-partial-indexed-docs"),
    ):
        try:
            partial = _truthy(_config_value((yield Call(args)), name))
        except BackendError as exc:
            if not exc.answered:
                raise
            continue
        if partial is not None:
            break
    version: int | None = None
    try:
        version = _search_version((yield Call(("MODULE", "LIST"))))
    except BackendError as exc:
        if not exc.answered:
            raise
    features = ServerFeatures(partial_indexing=partial, search_version=version)
    logger.info(
        "paracache: search module %s, partial indexing %s: counting hits in the %s",
        version if version is not None else "(version unknown)",
        {True: "on", False: "off", None: "unknown"}[partial],
        "entry" if features.hit_place == "entry" else "entry's companion hash",
    )
    return features


def unlink_entries_flow(keys: Sequence[Any]) -> Flow[int]:
    """Delete entries, then their companion hashes (administration, not the request
    path); returns how many entries were deleted (companions not counted)."""
    if not keys:
        return 0
    deleted = int((yield Call(("UNLINK", *keys))))
    companions = [companion_key(k) for k in map(_text, keys) if ":e:" in k]
    if companions:
        yield Call(("UNLINK", *companions))
    return deleted


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class CompanionHits:
    """Hits counted in companion hashes of one index: in all, and by the tenant and
    model digests of their entries."""

    total: int = 0
    by_tenant: dict[str, int] = dataclasses.field(default_factory=dict)
    by_model: dict[str, int] = dataclasses.field(default_factory=dict)


def companion_hits_flow(index_name: str) -> Flow[CompanionHits]:
    """Add up the companion hashes of the index ``index_name`` (``SCAN``, then their
    counts read a thousand at a time): for ``inspect``, never on the request path."""
    out = CompanionHits()
    cursor: Any = 0
    while True:
        cursor, keys = yield Call(("SCAN", cursor, "MATCH", f"{index_name}:h:*", "COUNT", 1000))
        if keys:
            rows = yield Batch(tuple(("HMGET", k, "hit_count", "tenant", "model") for k in keys))
            for row in rows:
                try:
                    n = int(row[0] or 0)
                except (TypeError, ValueError):
                    continue
                out.total += n
                for digest, into in ((row[1], out.by_tenant), (row[2], out.by_model)):
                    if digest is not None:
                        name = _text(digest)
                        into[name] = into.get(name, 0) + n
        if int(cursor) == 0:
            return out


def companion_read(entry_key: str) -> tuple[str, ...]:
    """The call that reads an entry's companion counts (for :func:`merged_fields`)."""
    return ("HMGET", companion_key(entry_key), "hit_count", "last_hit_at")


def merged_fields(fields: Mapping[bytes, bytes], companion: Sequence[Any]) -> dict[bytes, bytes]:
    """An entry's fields with its companion's counts added (``companion``: the reply of
    ``HMGET <companion> hit_count last_hit_at``).

    Example:
        >>> merged_fields({b"hit_count": b"2", b"last_hit_at": b"5"}, [b"3", b"9"])
        {b'hit_count': b'5', b'last_hit_at': b'9'}
        >>> merged_fields({b"prompt": b"hi"}, [None, None])
        {b'prompt': b'hi'}
    """
    out = dict(fields)
    count, last = [*companion, None, None][:2]
    try:
        if count is not None:
            out[b"hit_count"] = str(int(out.get(b"hit_count", b"0")) + int(count)).encode()
        if last is not None and float(last) > float(out.get(b"last_hit_at", b"0")):
            out[b"last_hit_at"] = last if isinstance(last, bytes) else str(last).encode()
    except (TypeError, ValueError):
        pass  # a damaged count reads as it is stored; repair() deals with the entry
    return out
