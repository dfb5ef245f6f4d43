"""Counters and latency percentiles of one cache instance, thread-safe and in-process.

Example:
    >>> from paracache.metrics import Recorder
    >>> r = Recorder()
    >>> r.lookup("semantic", 0.004); r.lookup("miss", 0.006)
    >>> s = r.snapshot()
    >>> s.lookups, s.semantic_hits, s.misses, s.hit_rate
    (2, 1, 1, 0.5)
    >>> Recorder().snapshot().hit_latency_ms  # nothing measured yet
    {'p50': None, 'p95': None, 'p99': None}
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, cast

__all__ = ["CacheStats", "MetricEvent", "Recorder"]

logger = logging.getLogger("paracache")

#: How many recent latencies are kept per outcome for the percentiles.
WINDOW = 10_000


def _percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds; ``None`` each when nothing was measured (a "0 ms"
    would read as a measurement)."""
    data = sorted(values)
    if not data:
        return {"p50": None, "p95": None, "p99": None}

    def pick(q: float) -> float:
        return data[min(len(data) - 1, int(q * len(data)))] * 1000.0

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A snapshot of a cache's metrics since it was created (or last :meth:`reset`).

    Latencies (``hit_latency_ms``, ``miss_latency_ms``: ``p50``, ``p95``, ``p99``) are in
    milliseconds over the last 10,000 lookups of each kind; ``None`` while there has been
    no lookup of that kind (no hit yet: no hit latency, rather than a "0 ms").
    ``bypasses`` are requests the TTL policy kept away from the cache (e.g. a high
    temperature); ``errors`` are Redis or embedding failures turned into misses;
    ``rejections`` are candidates a guard refused; ``unreadable`` are lookups of text the
    embedding model cannot read that had no exact match (counted in ``misses`` too: such
    text is never matched by similarity); ``writes_dropped`` are stores that
    failed (fail-open) and ``writes_skipped`` stores the policy declined;
    ``coalesced`` are misses answered by another caller's model call
    (:mod:`paracache.singleflight`): model calls saved beyond the hits.
    """

    lookups: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    bypasses: int = 0
    errors: int = 0
    rejections: int = 0
    unreadable: int = 0
    writes: int = 0
    writes_dropped: int = 0
    writes_skipped: int = 0
    coalesced: int = 0
    tokens_saved: int = 0
    breaker_state: str = "closed"
    hit_latency_ms: dict[str, float | None] = dataclasses.field(default_factory=dict)
    miss_latency_ms: dict[str, float | None] = dataclasses.field(default_factory=dict)
    errors_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    rejections_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    #: With ``max_error_rate``: the learner's counters and thresholds
    #: (:class:`paracache.learning.LearningStats` as a dict); empty otherwise.
    learning: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def hits(self) -> int:
        """Exact plus semantic hits."""
        return self.exact_hits + self.semantic_hits

    @property
    def hit_rate(self) -> float:
        """Hits over lookups that reached the cache (bypasses excluded)."""
        served = self.lookups - self.bypasses
        return self.hits / served if served else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON or a table."""
        out = dataclasses.asdict(self)
        out["hits"] = self.hits
        out["hit_rate"] = self.hit_rate
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class MetricEvent:
    """One thing a :class:`Recorder` counted, as handed to its listeners.

    ``kind`` is ``lookup`` (``outcome``: exact, semantic, miss, bypass, error, unreadable),
    ``error`` (``outcome``: the error kind), ``rejection`` (``outcome``: the guard's reason) or
    ``write`` (``outcome``: written, dropped, skipped), ``coalesced`` (a miss answered by
    another caller's model call) or ``learning`` (see
    :meth:`Recorder.learning`). ``seconds`` is the operation's
    duration when known, ``tokens`` what a hit saved, ``similarity`` a lookup's best
    in-scope similarity (``None`` when there was no candidate).
    """

    kind: str
    outcome: str
    seconds: float = 0.0
    tokens: int = 0
    similarity: float | None = None


Listener = Callable[[MetricEvent], None]


class Recorder:
    """Collects the metrics; one per cache instance, safe to share across threads.

    Listeners (:meth:`add_listener`) see every event as it is recorded, e.g. to export
    it to Prometheus or OpenTelemetry (:mod:`paracache.observability`). With none
    attached, recording costs nothing extra.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self.reset()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with a :class:`MetricEvent` for everything recorded.

        Listeners run synchronously in the caller's thread (or task), so they must be
        quick; one that raises is logged and otherwise ignored.
        """
        if not callable(listener):
            raise TypeError("listener must be callable")
        with self._lock:
            if listener not in self._listeners:
                self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (no error if it was not attached)."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """The attached listeners."""
        return self._listeners

    def _emit(self, event: MetricEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:  # an exporter must never break the cache
                logger.warning("paracache: metrics listener raised: %r", exc)

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._counts: collections.Counter[str] = collections.Counter()
            self._errors: collections.Counter[str] = collections.Counter()
            self._rejections: collections.Counter[str] = collections.Counter()
            self._hit_lat: collections.deque[float] = collections.deque(maxlen=WINDOW)
            self._miss_lat: collections.deque[float] = collections.deque(maxlen=WINDOW)

    def lookup(
        self, outcome: str, seconds: float, tokens: int = 0, similarity: float | None = None
    ) -> None:
        """Record one lookup: ``outcome`` is exact, semantic, miss, bypass, error or
        unreadable."""
        self._lookup(outcome, seconds, tokens)
        if self._listeners:
            self._emit(MetricEvent("lookup", outcome, seconds, max(0, tokens), similarity))

    def _lookup(self, outcome: str, seconds: float, tokens: int) -> None:
        with self._lock:
            self._counts["lookups"] += 1
            if outcome == "exact":
                self._counts["exact_hits"] += 1
            elif outcome == "semantic":
                self._counts["semantic_hits"] += 1
            elif outcome == "bypass":
                self._counts["bypasses"] += 1
                return
            elif outcome == "unreadable":
                self._counts["unreadable"] += 1
                self._counts["misses"] += 1
                self._miss_lat.append(seconds)
                return
            else:
                self._counts["misses"] += 1
                self._miss_lat.append(seconds)
                return
            self._counts["tokens_saved"] += max(0, tokens)
            self._hit_lat.append(seconds)

    def error(self, kind: str) -> None:
        """Record a failure turned into a miss or a dropped write."""
        with self._lock:
            self._counts["errors"] += 1
            self._errors[kind] += 1
        if self._listeners:
            self._emit(MetricEvent("error", kind))

    def rejection(self, reason: str) -> None:
        """Record a candidate refused by a guard."""
        with self._lock:
            self._counts["rejections"] += 1
            self._rejections[reason] += 1
        if self._listeners:
            self._emit(MetricEvent("rejection", reason))

    def learning(self, event: str) -> None:
        """Tell listeners about the error bound's work (``max_error_rate``): ``event`` is
        ``exploration``, ``label_right``, ``label_wrong``, ``explored_right``,
        ``explored_wrong``, or for near-miss verification ``verification``,
        ``promoted``, ``verify_rejected`` or ``verify_unneeded`` (the learner keeps its
        own counts: ``stats().learning``)."""
        if self._listeners:
            self._emit(MetricEvent("learning", event))

    def coalesced(self) -> None:
        """Record a miss answered by another caller's model call (single-flight)."""
        with self._lock:
            self._counts["coalesced"] += 1
        if self._listeners:
            self._emit(MetricEvent("coalesced", "answered"))

    def write(self, outcome: str, seconds: float = 0.0) -> None:
        """Record a store: ``outcome`` is written, dropped or skipped."""
        key = {"written": "writes", "dropped": "writes_dropped", "skipped": "writes_skipped"}
        with self._lock:
            self._counts[key[outcome]] += 1
        if self._listeners:
            self._emit(MetricEvent("write", outcome, seconds))

    def snapshot(self, breaker_state: str = "closed") -> CacheStats:
        """The current numbers as an immutable :class:`CacheStats`."""
        with self._lock:
            counts = dict(self._counts)
            return CacheStats(
                **cast(dict[str, Any], {f: counts.get(f, 0) for f in _COUNT_FIELDS}),
                breaker_state=breaker_state,
                hit_latency_ms=_percentiles(self._hit_lat),
                miss_latency_ms=_percentiles(self._miss_lat),
                errors_by_kind=dict(self._errors),
                rejections_by_reason=dict(self._rejections),
            )


_COUNT_FIELDS = (
    "lookups",
    "exact_hits",
    "semantic_hits",
    "misses",
    "bypasses",
    "errors",
    "rejections",
    "unreadable",
    "writes",
    "writes_dropped",
    "writes_skipped",
    "coalesced",
    "tokens_saved",
)
