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

Hits are counted in the process first (:class:`HitCounter`) and reach Redis in one
batched script (``HITS``, sent without waiting for its reply) every
``hit_flush_hits`` hits or ``hit_flush_seconds`` (checked by lookups, no thread), at
``close()`` and at interpreter exit: a lookup writes nothing, and an exact hit is a
plain read. Each process flushes its own counts, which only ever add; a process that
crashes loses its unflushed ones. ``hit_flush_hits=1`` (and a sliding TTL, which
refreshes the entry's TTL on each hit) counts each hit as it happens instead.

With batched counts in companions, an exact hit reads the entry alone (one command,
not the companion too): the ``hit_count`` it reports is the entry's own count plus the
hits this cache instance counted on it, sent or not (:meth:`HitCounter.count`). Hits
other processes sent are in ``entries()``, ``paracache inspect`` and ``stats()`` (which
read the companions) and in the ``hit_count`` of semantic hits (whose search script reads
the companion at no extra round trip).

Example:
    >>> companion_key("paracache:faq:v2:ab12:e:0123")
    'paracache:faq:v2:ab12:h:0123'
    >>> is_companion("paracache:faq:v2:ab12:h:0123"), is_companion("paracache:faq:v2:ab12:e:1")
    (True, False)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from . import forking
from .errors import BackendError
from .protocol import Batch, Call, Flow
from .reals import is_int, is_real

__all__ = [
    "DEFAULT_FLUSH_HITS",
    "DEFAULT_FLUSH_SECONDS",
    "UNLINK_BATCH",
    "CompanionHits",
    "HitCounter",
    "HitPlace",
    "PendingHit",
    "ServerFeatures",
    "check_flush",
    "companion_hits_flow",
    "companion_key",
    "detect_flow",
    "flush_calls",
    "is_companion",
    "merged_fields",
    "unlink_entries_flow",
    "unlink_keys_flow",
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


#: Keys per ``UNLINK`` of administration (clear, trim, repair, re-embedding's drop).
#: Deleting an indexed entry takes it out of the vector index there and then, in the
#: server's one thread (``UNLINK`` frees only the memory later): a few tenths of a
#: millisecond to a millisecond each on a big index, so a thousand at once would hold
#: every client of the server for a second. This many keep each command short.
UNLINK_BATCH = 32


def unlink_keys_flow(keys: Sequence[Any]) -> Flow[int]:
    """``UNLINK`` these keys, :data:`UNLINK_BATCH` per command (one command after
    another, so other clients' commands run in between); returns how many existed."""
    deleted = 0
    for start in range(0, len(keys), UNLINK_BATCH):
        deleted += int((yield Call(("UNLINK", *keys[start : start + UNLINK_BATCH]))))
    return deleted


def unlink_entries_flow(keys: Sequence[Any]) -> Flow[int]:
    """Delete entries, then their companion hashes (administration, not the request
    path), :data:`UNLINK_BATCH` keys per command; returns how many entries were deleted
    (companions not counted)."""
    if not keys:
        return 0
    deleted = yield from unlink_keys_flow(keys)
    companions = [companion_key(k) for k in map(_text, keys) if ":e:" in k]
    if companions:
        yield from unlink_keys_flow(companions)
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


#: Hits a process counts before it sends them to Redis (one batched script): the
#: cost of a send (it wakes the server) spread over that many hits (measured in
#: benchmarks/RESULTS.md, issue 13's fifth round).
DEFAULT_FLUSH_HITS = 100
#: Seconds after the first unsent hit that the next lookup sends them at the latest.
DEFAULT_FLUSH_SECONDS = 1.0
#: The largest batch one script is sent with (a bigger one is split).
MAX_FLUSH_KEYS = 1000
#: Entries whose sent hits a :class:`HitCounter` remembers (:meth:`HitCounter.sent`),
#: the most recently sent kept: about 1.5 MB at most.
MAX_SENT_KEYS = 10_000


def check_flush(hits: Any, seconds: Any) -> tuple[int, float]:
    """Validate ``hit_flush_hits`` (an int from 1 to 100,000) and ``hit_flush_seconds``
    (a number of seconds above 0, at most 3,600).

    Example:
        >>> check_flush(100, 1)
        (100, 1.0)
        >>> check_flush(0, 1)
        Traceback (most recent call last):
        ...
        ValueError: hit_flush_hits must be an int from 1 to 100000, got 0
    """
    if not is_int(hits) or not 1 <= hits <= 100_000:
        raise ValueError(f"hit_flush_hits must be an int from 1 to 100000, got {hits!r}")
    if not is_real(seconds) or not 0 < seconds <= 3600:
        raise ValueError(
            f"hit_flush_seconds must be a number of seconds above 0 and at most 3600, "
            f"got {seconds!r}"
        )
    return int(hits), float(seconds)


@dataclasses.dataclass
class PendingHit:
    """The hits a process counted on one entry and has not sent yet."""

    #: The scope digest they were made under (the flush counts them only if the entry
    #: still belongs to it).
    scope: str
    count: int = 0
    #: Unix time of the latest of them.
    last_at: float = 0.0


class HitCounter:
    """Hits counted in process, handed out in batches to be sent to Redis (see
    :meth:`due`): once ``every`` are unsent, or ``seconds`` after the first unsent one,
    and all of them at :meth:`take`. Thread-safe: each batch goes to exactly one caller.
    The sender reports a batch sent to companion hashes with :meth:`sent_to_companions`;
    the counter then remembers those hits per entry (the :data:`MAX_SENT_KEYS` entries
    sent most recently), for :meth:`count`.

    Example:
        >>> counter = HitCounter(every=2, seconds=60)
        >>> counter.add("k:e:1", "s", 10.0), counter.due()
        (0, None)
        >>> counter.add("k:e:1", "s", 11.0)  # the hits on it not sent before this one
        1
        >>> batch = counter.due()
        >>> batch["k:e:1"].count, batch["k:e:1"].last_at, counter.pending("k:e:1")
        (2, 11.0, 0)
        >>> counter.sent_to_companions(batch)
        >>> counter.count("k:e:1", "s", 12.0)  # all its hits before this one, sent or not
        2
    """

    def __init__(
        self, every: int = DEFAULT_FLUSH_HITS, seconds: float = DEFAULT_FLUSH_SECONDS
    ) -> None:
        self.every, self.seconds = check_flush(every, seconds)
        self._lock = threading.Lock()
        self._pending: dict[str, PendingHit] = {}
        #: Entry key -> hits sent to its companion (oldest sent first).
        self._sent: dict[str, int] = {}
        self._hits = 0
        #: When the first unsent hit was counted (monotonic), ``None`` if none is.
        self._since: float | None = None
        forking.track(self)

    def add(self, key: str, scope: str, now: float) -> int:
        """Count one hit on the entry ``key`` under the scope digest ``scope`` at Unix
        time ``now``; returns the hits on it this counter had not sent before it."""
        with self._lock:
            return self._add(key, scope, now)

    def count(self, key: str, scope: str, now: float) -> int:
        """:meth:`add`, returning all the hits on ``key`` this counter counted before
        this one: unsent, and sent to its companion (:meth:`sent_to_companions`)."""
        with self._lock:
            return self._add(key, scope, now) + self._sent.get(key, 0)

    def sent_to_companions(self, batch: Mapping[str, PendingHit]) -> None:
        """Remember that ``batch`` (from :meth:`due` or :meth:`take`) was sent to the
        entries' companion hashes (for :meth:`count`)."""
        with self._lock:
            sent = self._sent
            for key, hit in batch.items():
                key = key.split("\x00", 1)[0]
                sent[key] = sent.pop(key, 0) + hit.count  # to the end: sent most recently
            while len(sent) > MAX_SENT_KEYS:
                del sent[next(iter(sent))]

    def forget(self, key: str | None = None) -> None:
        """Forget the hits sent on ``key`` (an entry deleted), or on every entry (a
        cleared namespace)."""
        with self._lock:
            if key is None:
                self._sent = {}
            else:
                self._sent.pop(key, None)

    def _add(self, key: str, scope: str, now: float) -> int:
        """:meth:`add` under the lock."""
        hit = self._pending.get(key)
        if hit is not None and hit.scope != scope:  # another scope's: kept apart
            key = f"{key}\x00{scope}"
            hit = self._pending.get(key)
        if hit is None:
            hit = self._pending[key] = PendingHit(scope)
        before = hit.count
        hit.count += 1
        if now > hit.last_at:
            hit.last_at = now
        self._hits += 1
        if self._since is None:
            self._since = time.monotonic()
        return before

    def due(self) -> dict[str, PendingHit] | None:
        """The unsent hits if a batch is due (``every`` of them, or ``seconds`` since
        the first), for the caller to send; ``None`` otherwise (cheap: no lock)."""
        since = self._since
        if since is None or (
            self._hits < self.every and time.monotonic() - since < self.seconds
        ):
            return None
        with self._lock:
            return self._take()

    def take(self) -> dict[str, PendingHit] | None:
        """Every unsent hit (``None`` if there is none): at ``close()`` and exit."""
        with self._lock:
            return self._take()

    def pending(self, key: str) -> int:
        """This process's unsent hits on ``key``."""
        hit = self._pending.get(key)
        return 0 if hit is None else hit.count

    def __len__(self) -> int:
        """Unsent hits, in all."""
        return self._hits

    def _take(self) -> dict[str, PendingHit] | None:
        batch, self._pending = self._pending, {}
        self._hits = 0
        self._since = None
        return batch or None

    def _forked(self) -> None:
        """In a forked child: the parent's unsent hits are the parent's to send."""
        self._lock = threading.Lock()
        self._take()


def flush_calls(
    batch: Mapping[str, PendingHit], mode: str, schema_version: str, per_key: bool = False
) -> list[tuple[tuple[str, ...], tuple[Any, ...], int]]:
    """The ``HITS`` script's calls (keys and arguments; :data:`MAX_FLUSH_KEYS` keys
    each, or one per key with ``per_key``: a cluster's script may touch only keys of one
    slot) that add ``batch`` to Redis with the bookkeeping ``mode`` (``"e"``/``"c"``),
    each with the hits it adds.

    Example:
        >>> [(keys, args, hits)] = flush_calls({"k:e:1": PendingHit("s", 2, 5.0)}, "c", "2")
        >>> keys, args, hits
        (('k:e:1',), ('2', 'c', 's', 2, '5.0'), 2)
    """
    rows = [(key.split("\x00", 1)[0], hit) for key, hit in batch.items()]
    size = 1 if per_key else MAX_FLUSH_KEYS
    calls: list[tuple[tuple[str, ...], tuple[Any, ...], int]] = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        args: list[Any] = [schema_version, mode]
        for _, hit in chunk:
            args.extend((hit.scope, hit.count, repr(hit.last_at)))
        keys = tuple(k for k, _ in chunk)
        calls.append((keys, tuple(args), sum(hit.count for _, hit in chunk)))
    return calls
