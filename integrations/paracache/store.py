"""Store and warm-up flows: writing entries, one at a time or in bulk, and the size cap.

:class:`Stores` is the writing half of :class:`paracache.core.Core`: a single write
(atomic, its scope registered in the namespace's scope registry, fail-open: dropped and
counted on failure), a bulk warm-up (batches embedded at once and written pipelined,
the next batch embedded while Redis writes this one), and trimming to ``max_entries``
(checked after writes; the same step for ``store`` and ``astore``).

Example:
    >>> list(_batches(range(5), 2))
    [[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .base import FlowBase
from .bookkeeping import unlink_entries_flow
from .errors import BackendError, EmbeddingError
from .protocol import (
    PUT,
    REGISTER_SCOPE,
    Batch,
    Call,
    EmbedMany,
    Flow,
    Join,
    Submit,
    _flatten,
    search_rows,
)
from .values import StoreRequest, StoreResult

__all__ = ["REGISTER_EVERY", "Stores"]

logger = logging.getLogger("paracache")

T = TypeVar("T")

#: Seconds a cache instance trusts that a scope it registered is still in the scope
#: registry (another process may clear the namespace); single writes re-register after.
REGISTER_EVERY = 60.0

#: A scope registry row outlives the entries written in its scope by this much (seconds).
_ROW_MARGIN = 2 * REGISTER_EVERY


def _row_ttl(ttl: int | None) -> int:
    """Seconds a scope's registry row must last for an entry of ``ttl`` seconds written
    now or up to :data:`REGISTER_EVERY` seconds later (0: for ever)."""
    return 0 if ttl is None or ttl <= 0 else int(ttl + _ROW_MARGIN)


#: A warm-up batch whose writes are under way: (handle, batch, its live requests, start).
_PendingWrite = tuple[Any, list["StoreRequest"], list["StoreRequest"], float]


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


#: How many warm-up requests are ordered by length together: batches of similar
#: lengths pad less in the model (larger windows measured faster: benchmarks/RESULTS.md).
_WARM_WINDOW = 1024


def _by_length(
    requests: Iterable[StoreRequest], size: int, window: int
) -> Iterator[list[StoreRequest]]:
    """``requests`` in batches of ``size``, each ``window`` of them ordered by prompt
    length first. The sort is stable: two requests for the same entry (same scope and
    text, so the same length) keep their order, and the later one still wins."""
    for chunk in _batches(requests, max(window, size)):
        chunk.sort(key=lambda r: len(r.lookup.text))
        yield from _batches(chunk, size)


class Stores(FlowBase):
    """The write flows of one cache instance."""

    def store_flow(self, req: StoreRequest) -> Flow[StoreResult]:
        """Write one entry atomically (``DEL``+``HSET``+``EXPIRE`` in ``MULTI``), its
        scope first registered in the namespace's scope registry (``REGISTER_SCOPE``).

        Each command touches one key (a cluster routes them apart). The registration is
        best effort and costs a round trip only the first time this instance writes a
        scope in :data:`REGISTER_EVERY` seconds: an entry whose scope row is missing
        (the registry cleared by another process meanwhile) still serves lookups, which
        never read the registry; only its listing shows no scope until the next write.
        Returns what it did: written (with the entry id), skipped by the TTL policy, or
        dropped (Redis failed or refused, the breaker is open).
        """
        t0 = time.perf_counter()
        if self.learner is not None:  # a fresh answer: a label for a remembered candidate
            self.learner.on_store(req.lookup.key, req.mapping["response"])
        if req.skip:
            self.recorder.write("skipped")
            logger.debug("paracache: not caching: %s", req.skip)
            return StoreResult("skipped", None, req.skip)
        if not self.breaker.allow():
            self.recorder.write("dropped")
            self.recorder.error("breaker_open")
            return StoreResult("dropped", None, "circuit breaker open")
        mapping = dict(req.mapping)
        if req.lookup.semantic:
            vector = yield from self._embed(req.lookup.text)
            if vector is not None:
                mapping["embedding"] = vector
            # Without a vector the entry still serves the exact layer.
        key = req.lookup.key
        calls: list[tuple[Any, ...]] = [("DEL", key), ("HSET", key, *_flatten(mapping))]
        if req.ttl is not None:
            calls.append(("EXPIRE", key, req.ttl))
        try:
            yield from self._ensure_index()
            if self._register_due(req.lookup.scope_digest, req.ttl):
                try:
                    yield Call(self._register_call(req))
                except BackendError as exc:
                    if not exc.answered:
                        raise
                    # Refused (an ACL without scripting, out of memory): the entry is
                    # written anyway; only its listing lacks the scope.
                    logger.debug("paracache: scope registry write refused: %r", exc)
            yield Batch(tuple(calls), transaction=True)
        except BackendError as exc:
            refused = exc.write_refused
            if refused:  # the server is up but takes no writes: not a breaker failure
                self.breaker.record_success()
                self.recorder.error(refused)
                self._warn_throttled(refused, "paracache: write refused (%s): %r", refused, exc)
            else:
                self._failure("store", exc)
            self.recorder.write("dropped", time.perf_counter() - t0)
            why = f"write refused: {refused}" if refused else f"redis: {exc.kind}"
            return StoreResult("dropped", None, why)
        except Exception as exc:  # a bug of paracache's own, not a Redis failure
            self._internal("store", exc)
            self.recorder.write("dropped", time.perf_counter() - t0)
            return StoreResult("dropped", None, f"internal: {type(exc).__name__}")
        self.breaker.record_success()
        self.recorder.write("written", time.perf_counter() - t0)
        return StoreResult("written", req.lookup.entry_id, "written")

    def _register_due(self, scope_digest: str, ttl: int | None) -> bool:
        """Should this write (its entry living ``ttl`` seconds, ``None``: for ever)
        register its scope? Yes unless this instance did so in the last
        :data:`REGISTER_EVERY` seconds (and has not cleared the namespace since) with a
        row lasting at least as long as this entry."""
        now = time.monotonic()
        ends = math.inf if ttl is None else now + ttl
        with self._trim_lock:
            at, lasts = self._registered.get(scope_digest, (-math.inf, -math.inf))
            if now - at < REGISTER_EVERY and ends <= lasts:
                return False
            if len(self._registered) >= 10_000:  # many scopes: forget, re-register
                self._registered.clear()
            row = _row_ttl(ttl)
            self._registered[scope_digest] = (now, math.inf if row == 0 else now + row)
            return True

    def _register_call(self, req: StoreRequest, ttl: int | None = None) -> tuple[Any, ...]:
        """The command that records ``req``'s scope JSON in the scope registry, its row
        lasting as long as an entry of ``ttl`` seconds (default: ``req``'s) written
        within :data:`REGISTER_EVERY` seconds from now."""
        return (
            "EVAL", REGISTER_SCOPE.source, 1, self.layout.scopes_key,
            req.lookup.scope_digest, req.scope_json, _row_ttl(req.ttl if ttl is None else ttl),
        )  # fmt: skip

    def _put_call(self, req: StoreRequest, mapping: Mapping[str, Any]) -> tuple[Any, ...]:
        """The command that writes one entry atomically (replacing any old one)."""
        ttl = 0 if req.ttl is None else req.ttl
        return ("EVAL", PUT.source, 1, req.lookup.key, ttl, *_flatten(mapping))

    # ------------------------------------------------------------------ bulk warm-up

    def warm_flow(
        self,
        requests: Iterable[StoreRequest],
        *,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> Flow[int]:
        """Write many entries: each batch embedded in one ``EmbedMany`` and written in
        one pipelined round trip (each entry atomically, by the ``PUT`` script).

        ``on_batch`` is called with the number of requests each batch consumed (for a
        progress bar). Returns how many entries were written; entries the policy skips
        are counted as skipped writes. Redis and embedding errors propagate: a warm-up
        is an explicit, administrative operation. A batch's writes are waited for before
        an error propagates (none is left running behind the caller's back).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        yield from self._ensure_index()
        written = 0
        pending: _PendingWrite | None = None
        for batch in _by_length(requests, batch_size, _WARM_WINDOW):
            # Embed this batch while Redis still writes and indexes the previous one.
            started = time.perf_counter()
            try:
                calls, live = yield from self._warm_calls(batch)
            except Exception:
                if pending is not None:  # the previous batch's writes land (or fail) first
                    yield from self._warm_join(pending, on_batch)
                raise
            if pending is not None:
                written += yield from self._warm_join(pending, on_batch)
                pending = None
            if calls:
                pending = ((yield Submit(Batch(tuple(calls)))), batch, live, started)
            else:
                self._warm_count(batch, live, started, on_batch)
        if pending is not None:
            written += yield from self._warm_join(pending, on_batch)
        if written and self.settings.max_entries is not None:
            yield from self.trim_flow()
        return written

    def _warm_calls(
        self, batch: Sequence[StoreRequest]
    ) -> Flow[tuple[list[tuple[Any, ...]], list[StoreRequest]]]:
        """One batch's writes (the ``PUT`` script per entry), its prompts embedded at once."""
        live = [r for r in batch if not r.skip]
        semantic = [r for r in live if r.lookup.semantic]
        vectors: dict[int, bytes] = {}
        if semantic:
            texts = tuple(self.embed_input(r.lookup.text) for r in semantic)
            raw = yield EmbedMany(texts)
            if len(raw) != len(semantic):
                raise EmbeddingError(f"{len(raw)} vectors for {len(semantic)} texts")
            for r, vec in zip(semantic, raw, strict=True):
                vectors[id(r)] = self.encode_vector(vec)
        calls = []
        lasts: dict[str, tuple[StoreRequest, float]] = {}
        for r in live:  # each scope once, as long as its longest-lived entry of the batch
            ttl = math.inf if r.ttl is None else r.ttl
            first = lasts.get(r.lookup.scope_digest)
            if first is None or ttl > first[1]:
                lasts[r.lookup.scope_digest] = (first[0] if first else r, ttl)
        for r, ttl in lasts.values():  # before their entries
            calls.append(self._register_call(r, 0 if math.isinf(ttl) else int(ttl)))
        for r in live:
            mapping = dict(r.mapping)
            if id(r) in vectors:
                mapping["embedding"] = vectors[id(r)]
            calls.append(self._put_call(r, mapping))
        return calls, live

    def _warm_join(
        self, pending: _PendingWrite, on_batch: Callable[[int], None] | None
    ) -> Flow[int]:
        """Wait for a submitted batch's writes, then count them."""
        handle, batch, live, started = pending
        yield Join(handle)
        self._warm_count(batch, live, started, on_batch)
        return len(live)

    def _warm_count(
        self,
        batch: Sequence[StoreRequest],
        live: Sequence[StoreRequest],
        started: float,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        for _ in range(len(batch) - len(live)):
            self.recorder.write("skipped")
        seconds = (time.perf_counter() - started) / max(1, len(live))
        for _ in live:
            self.recorder.write("written", seconds)
        if on_batch is not None:
            on_batch(len(batch))

    # ------------------------------------------------------------------ size cap

    def trim_after(self, entry: str | None) -> Flow[int] | None:
        """After a write: the trim to ``max_entries`` if it is due (:meth:`trim_due`),
        to run as an administrative call; it logs rather than raises (the write
        stands; trimming waits for the next check). ``None`` when nothing is due."""
        if entry is None or not self.trim_due():
            return None
        return self._trim_quietly()

    def _trim_quietly(self) -> Flow[int]:
        try:
            return (yield from self.trim_flow())
        except BackendError as exc:
            logger.warning("paracache: trimming to max_entries failed: %r", exc)
            return 0

    def trim_due(self) -> bool:
        """Called after each write: is it time to check ``max_entries``?

        The check runs every ``max_entries // 10`` writes (at least 1, at most 1000)
        per instance, so the index may overshoot the cap by about 10 % in between.
        """
        cap = self.settings.max_entries
        if cap is None:
            return False
        every = max(1, min(1000, cap // 10))
        with self._trim_lock:
            self._writes_since_trim += 1
            if self._writes_since_trim < every:
                return False
            self._writes_since_trim = 0
            return True

    def trim_flow(self) -> Flow[int]:
        """Delete the oldest entries (by ``created_at``) beyond ``max_entries``."""
        cap = self.settings.max_entries
        if cap is None:
            return 0
        return (yield from self._on_index(lambda: self._trim_to(cap)))

    def _trim_to(self, cap: int) -> Flow[int]:
        name = self.layout.index_name
        raw = yield Call(("FT.SEARCH", name, "*", "LIMIT", 0, 0, "DIALECT", 2))
        excess = search_rows(raw)[0] - cap
        deleted = 0
        while excess > 0:
            raw = yield Call(
                ("FT.SEARCH", name, "*", "NOCONTENT", "SORTBY", "created_at", "ASC",
                 "LIMIT", 0, min(excess, 1000), "DIALECT", 2)
            )  # fmt: skip
            keys = [key for key, _ in search_rows(raw)[1]]
            if not keys:
                break
            deleted += yield from unlink_entries_flow(keys)
            excess -= len(keys)
        if deleted:
            logger.info("paracache: trimmed %d oldest entries (max_entries=%d)", deleted, cap)
        return deleted

    # ------------------------------------------------------------------ administration
