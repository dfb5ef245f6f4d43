"""Change the embedding model without losing the cache: copy one model's entries into
another model's index, re-embedding their prompts (issue 20).

Each embedding model has its own index and key prefix in a namespace; an entry's id does
not depend on the model (a digest of its scope and normalised prompt). Re-embedding reads
every entry of the *source* index (``SCAN`` of its key prefix), embeds the prompts with the
*current* model in batches (``EmbedMany``, as :meth:`paracache.SemanticIndex.warm` does)
and writes each entry under the current index's prefix with the same id, every field kept
(scope, answer, metadata, ``created_at``, ``hit_count``, ``last_hit_at``, tokens) and the
TTL it has left, by a script that writes only if the entry is absent. So:

- entries already present in the current index (written by traffic, or by an earlier,
  interrupted run) are left alone, and a run that was killed finishes when started again,
  without duplicates;
- the current model's lookups never see a source entry before it is copied (they search
  their own index only), and a copied entry is complete (one atomic script each);
- expired entries are skipped; a Redis or embedder failure stops the run
  (:class:`ReembedError`, with the report so far); entries the source index holds that a
  lookup would skip (corrupt) are counted as failed and not copied;
- text the current model cannot read (its ``unreadable`` hook) is copied without a
  vector: it serves exact repeats only, as a fresh store would.

The batches overlap: a batch is written while the next one is read and embedded.

Example:
    >>> r = ReembedReport("paracache:faq:v2:aaa", "paracache:faq:v2:bbb", copied=90,
    ...                   skipped_present=8, skipped_expired=2, seconds=0.5)
    >>> r.rate, r.seen
    (180.0, 100)
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .bookkeeping import unlink_keys_flow
from .errors import BackendError, CacheError, EmbeddingError, Kind
from .protocol import Batch, Call, EmbedMany, Flow, Join, Submit, _flatten, search_rows
from .schema import Layout, entry_problem

if TYPE_CHECKING:
    from .core import Core

__all__ = [
    "ReembedError",
    "ReembedReport",
    "drop_index_flow",
    "reembed_flow",
    "resolve_source",
]

#: Keys asked for per ``SCAN`` round trip.
SCAN_COUNT = 1000

# One entry written only if absent (a copy never overwrites what is there): ARGV[1] is the
# TTL left in milliseconds (0: none), then field/value pairs. The shebang makes Redis
# refuse it up front when it is out of memory.
_PUT_ABSENT = """#!lua
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl and ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


# One source entry read atomically: its type, then (for a hash) its fields and TTL left in
# milliseconds, so a foreign key at an entry's name is skipped, never a WRONGTYPE error.
_READ = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' then return {kind} end
return {kind, redis.call('HGETALL', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""


@dataclasses.dataclass(frozen=True)
class ReembedReport:
    """What a re-embedding run did.

    Attributes:
        source: The index copied from.
        target: The index copied into (the current model's).
        copied: Entries written into the target index.
        skipped_present: Entries the target index already had (left alone).
        skipped_expired: Entries that expired before they could be copied.
        failed: Source entries a lookup would skip (corrupt), not copied.
        exact_only: Of ``copied``, entries the current model cannot read (no vector).
        seconds: Wall time of the run.
        dropped: Source entries deleted afterwards (``drop_old``).
    """

    source: str
    target: str
    copied: int = 0
    skipped_present: int = 0
    skipped_expired: int = 0
    failed: int = 0
    exact_only: int = 0
    seconds: float = 0.0
    dropped: int = 0

    @property
    def seen(self) -> int:
        """Source entries looked at."""
        return self.copied + self.skipped_present + self.skipped_expired + self.failed

    @property
    def rate(self) -> float:
        """Entries copied per second."""
        return self.copied / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON.

        Example:
            >>> ReembedReport("a", "b", copied=1, seconds=1.0).as_dict()["rate"]
            1.0
        """
        return {**dataclasses.asdict(self), "seen": self.seen, "rate": round(self.rate, 1)}


class ReembedError(CacheError):
    """A re-embedding run stopped (Redis or the embedder failed). Entries copied so far
    are complete; running it again finishes the job. ``report`` is what was done;
    ``kind`` says how Redis or the embedder failed, as for any :class:`CacheError`."""

    def __init__(self, message: str, report: ReembedReport, *, kind: Kind | None = None) -> None:
        super().__init__(message, kind=kind)
        self.report = report


def resolve_source(current: Layout, indexes: Sequence[str], from_model: str) -> str:
    """The index to copy from: ``from_model`` is an index name of the namespace, or an
    embedding model's id (``vectorizer_id``: ``"{type}:{model}:{dims}"``), whose index of
    either vector type (float16, float32) other than the current one is taken.

    Raises ``ValueError`` if no such index exists, if it is the current index, or if the
    model has two (then name the index).

    Example:
        >>> cur = Layout.build("faq", "onnx:m:4", dims=4, dtype="float16")
        >>> old = Layout.build("faq", "onnx:m:4", dims=4, dtype="float32")
        >>> resolve_source(cur, [cur.index_name, old.index_name], "onnx:m:4") == old.index_name
        True
    """
    if not isinstance(from_model, str) or not from_model:
        raise TypeError(f"from_model must be a model id or an index name, got {from_model!r}")
    listed = ", ".join(indexes) or "none"
    if from_model.startswith(current.namespace_prefix):
        names = [from_model] if from_model in indexes else []
    else:
        dims_text = from_model.rsplit(":", 1)[-1]
        if not dims_text.isdigit():
            raise ValueError(
                f"from_model {from_model!r} is neither an index of namespace "
                f"{current.namespace!r} nor a model id ending in ':DIMS' "
                "(see paracache.vectorizers.vectorizer_id)"
            )
        names = [
            name
            for dtype in ("float16", "float32")
            if (
                name := Layout.build(
                    current.namespace, from_model, dims=int(dims_text), dtype=dtype
                ).index_name
            )
            in indexes
            and name != current.index_name
        ]
    if from_model == current.index_name:
        raise ValueError("from_model is the current model's own index: nothing to copy")
    if not names:
        raise ValueError(
            f"no index of {from_model!r} in namespace {current.namespace!r} other than the "
            f"current model's (indexes: {listed})"
        )
    if len(names) > 1:
        raise ValueError(
            f"{from_model!r} has {len(names)} indexes in {current.namespace!r} "
            f"({', '.join(names)}): pass the index name"
        )
    return names[0]


def _entry_id(key: str, prefix: str) -> str | None:
    rest = key[len(prefix) :] if key.startswith(prefix) else ""
    return rest if rest and rest.isalnum() else None


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class _Tally:
    copied: int = 0
    present: int = 0
    expired: int = 0
    failed: int = 0
    exact_only: int = 0


def reembed_flow(
    core: Core,
    source: str,
    *,
    batch_size: int = 64,
    on_total: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Flow[ReembedReport]:
    """Copy every live entry of the index ``source`` into ``core``'s index, re-embedding
    the prompts ``batch_size`` at a time (see the module docstring).

    ``on_total`` is called once with the source's entry count (for a progress bar),
    ``on_batch`` with the entries each batch looked at. Raises :class:`ReembedError`
    when Redis or the embedder fails.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    started = time.perf_counter()
    tally = _Tally()
    prefix = f"{source}:e:"
    target = core.layout

    def report() -> ReembedReport:
        return ReembedReport(
            source, target.index_name, tally.copied, tally.present, tally.expired,
            tally.failed, tally.exact_only, time.perf_counter() - started,
        )  # fmt: skip

    pending: tuple[Any, list[str]] | None = None
    seen: set[str] = set()  # SCAN may return a key twice
    try:
        yield from core._ensure_index()
        if on_total is not None:
            raw = yield Call(("FT.SEARCH", source, "*", "LIMIT", 0, 0, "DIALECT", 2))
            on_total(search_rows(raw)[0])
        cursor = "0"
        while True:
            reply = yield Call(("SCAN", cursor, "MATCH", prefix + "*", "COUNT", SCAN_COUNT))
            cursor = _s(reply[0])
            ids = []
            for raw_key in reply[1]:
                entry_id = _entry_id(_s(raw_key), prefix)
                if entry_id is not None and entry_id not in seen:
                    seen.add(entry_id)
                    ids.append(entry_id)
            # A page of keys read in one round trip, its live entries sorted by length
            # (as warm() does: less padding per embedding batch), then embedded and
            # written a batch at a time, each batch written while the next is embedded.
            live, read_at = yield from _read_page(core, prefix, ids, tally)
            if on_batch is not None:
                on_batch(len(ids) - len(live))
            for start in range(0, len(live), batch_size):
                chunk = live[start : start + batch_size]
                calls = yield from _copy_calls(core, chunk, read_at, tally)
                if pending is not None:
                    yield from _join(pending, tally)
                    pending = None
                if calls:
                    pending = ((yield Submit(Batch(tuple(c for c, _ in calls)))),
                               [k for _, k in calls])  # fmt: skip
                if on_batch is not None:
                    on_batch(len(chunk))
            if cursor == "0":
                break
        if pending is not None:
            yield from _join(pending, tally)
            pending = None
    except BackendError as exc:
        if pending is not None:  # let the writes already sent finish, and count them
            with contextlib.suppress(BackendError):
                yield from _join(pending, tally)
        what = "the embedder" if exc.kind == "embedding" else "Redis"
        done = report()
        raise ReembedError(
            f"re-embedding stopped: {what} failed ({exc}); {done.copied} entries copied, "
            "each complete. Run it again to finish: entries already copied are skipped.",
            done,
            kind=exc.kind,
        ) from exc
    return report()


_Live = tuple[str, dict[bytes, bytes], int, str]


def _read_page(
    core: Core, prefix: str, ids: Sequence[str], tally: _Tally
) -> Flow[tuple[list[_Live], float]]:
    """Read source entries (and whether the target has them) in one round trip: the live
    ones, shortest normalised prompt first, and when they were read."""
    if not ids:
        return [], time.monotonic()
    target = core.layout
    reads: list[tuple[Any, ...]] = []
    for entry_id in ids:
        reads += [("EVAL", _READ, 1, prefix + entry_id), ("EXISTS", target.key(entry_id))]
    read_at = time.monotonic()
    replies = yield Batch(tuple(reads))
    live: list[_Live] = []
    for n, entry_id in enumerate(ids):
        entry, present = replies[2 * n : 2 * n + 2]
        if int(present):
            tally.present += 1
            continue
        kind = _s(entry[0])
        if kind == "none":
            tally.expired += 1
            continue
        if kind != "hash":  # something else at an entry's key: skipped, as lookups do
            tally.failed += 1
            continue
        flat, pttl = entry[1], int(entry[2])
        fields = {bytes(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
        if entry_problem(fields) is not None:
            tally.failed += 1
            continue
        text = core.settings.normalizer(fields[b"prompt"].decode("utf-8"))
        live.append((entry_id, fields, pttl, text))
    live.sort(key=lambda e: len(e[3]))
    return live, read_at


def _copy_calls(
    core: Core, live: Sequence[_Live], read_at: float, tally: _Tally
) -> Flow[list[tuple[tuple[Any, ...], str]]]:
    """Embed a batch of live entries and build their write-if-absent calls."""
    target = core.layout
    problems = [core.readable_problem(text) if text else "empty" for *_, text in live]
    texts = tuple(
        core.embed_input(text) for (*_, text), p in zip(live, problems, strict=True) if p is None
    )
    vectors: list[Any] = []
    if texts:
        vectors = list((yield EmbedMany(texts)))
        if len(vectors) != len(texts):
            raise EmbeddingError(f"{len(vectors)} vectors for {len(texts)} texts")
    calls: list[tuple[tuple[Any, ...], str]] = []
    elapsed_ms = int((time.monotonic() - read_at) * 1000)
    next_vector = iter(vectors)
    for (entry_id, fields, pttl, _), problem in zip(live, problems, strict=True):
        mapping: dict[str, Any] = {k.decode(): v for k, v in fields.items() if k != b"embedding"}
        if problem is None:
            mapping["embedding"] = core.encode_vector(next(next_vector))
        else:
            tally.exact_only += 1
        ttl = 0
        if pttl > 0:
            ttl = pttl - elapsed_ms
            if ttl <= 0:
                tally.expired += 1
                continue
        key = target.key(entry_id)
        calls.append((("EVAL", _PUT_ABSENT, 1, key, ttl, *_flatten(mapping)), key))
    return calls


def _join(pending: tuple[Any, list[str]], tally: _Tally) -> Flow[None]:
    """Wait for a submitted batch of writes and count them (0: present by then)."""
    handle, keys = pending
    replies = yield Join(handle)
    for written in replies:
        if int(written):
            tally.copied += 1
        else:
            tally.present += 1
    del keys


def drop_index_flow(index_name: str) -> Flow[int]:
    """Delete an index's entries (``SCAN`` + ``UNLINK``) and then the index itself.

    Returns how many entries were deleted.
    """
    prefix = f"{index_name}:e:"
    deleted = 0
    cursor = "0"
    while True:
        reply = yield Call(("SCAN", cursor, "MATCH", prefix + "*", "COUNT", SCAN_COUNT))
        cursor = _s(reply[0])
        keys = [_s(k) for k in reply[1]]
        if keys:
            deleted += yield from unlink_keys_flow(keys)
        if cursor == "0":
            break
    try:
        yield Call(("FT.DROPINDEX", index_name))
    except BackendError as exc:
        if exc.kind != "no_index":
            raise
    return deleted
