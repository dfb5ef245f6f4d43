"""Metrics and traces: Prometheus counters and histograms, optional OpenTelemetry spans.

Nothing is exported until you attach it to a cache; an unattached cache pays nothing.
Attach with :func:`instrument` (or ``SemanticIndex(metrics="prometheus")``): a listener
on the cache's :class:`paracache.metrics.Recorder` turns every lookup, write, error and
guard rejection into Prometheus samples and, if asked, OpenTelemetry spans.

Prometheus (``prometheus_client``, registered once per process in its default registry):

==========================================  ============================================
``paracache_lookups_total``                 lookups by ``outcome``: exact, semantic
                                            (the hits, by layer), miss, bypass, error
``paracache_lookup_duration_seconds``       histogram of lookup latency by ``outcome``
``paracache_writes_total``                  stores by ``outcome``: written, dropped, skipped
``paracache_errors_total``                  failures turned into misses, by ``kind``
``paracache_guard_rejections_total``        candidates a guard refused, by ``kind``
``paracache_coalesced_total``               misses answered by another caller's model call
                                            (single-flight)
``paracache_tokens_saved_total``            LLM tokens the hits stood for
``paracache_cost_saved_usd_total``          those tokens at ``usd_per_million_tokens``
``paracache_entries``                       entries in Redis (set by :func:`refresh_entries`)
``paracache_learning_events_total``         with ``max_error_rate``: explorations and labels
                                            by ``outcome``
``paracache_observed_error_rate``           share of explored would-be hits judged wrong,
                                            ``kind``: estimate, low, high (Clopper-Pearson)
                                            (set by :func:`refresh_entries`)
==========================================  ============================================

The two gauges are read from Redis when refreshed (:func:`refresh_entries`; the
service refreshes them on each scrape of ``/metrics``), so every process and every
cache object of a namespace exports the same values: ``paracache_entries`` counts the
index, ``paracache_observed_error_rate`` is computed from the statistics all processes'
labels are counted in (this cache's index, every scope; what ``paracache stats``
reports), not from this process's share of the labels. (It was this process's share,
and two caches exporting one namespace set it in turn.) This process's own explored
labels are counted in ``paracache_learning_events_total``.

Every metric is labelled by ``namespace`` and at most one of ``outcome``/``kind``, whose
values come from paracache's code, never from requests: no tenant, prompt, model name
or secret ever becomes a label, so cardinality stays bounded.

OpenTelemetry (``opentelemetry-api``; spans only, no SDK setup here): ``paracache.lookup``
and ``paracache.store`` spans with ``paracache.outcome``, ``paracache.layer``,
``paracache.similarity`` and ``paracache.namespace``, children of the caller's span.

Example:
    >>> from paracache import SemanticIndex
    >>> from paracache.observability import instrument
    >>> cache = SemanticIndex(namespace="faq")          # doctest: +SKIP
    >>> instrument(cache)                               # doctest: +SKIP
    >>> # prometheus_client.generate_latest() now includes paracache_* for namespace "faq"
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

from .core import Core
from .metrics import MetricEvent, Recorder

__all__ = [
    "DEFAULT_USD_PER_M_TOKENS",
    "Instrumentation",
    "arefresh_entries",
    "instrument",
    "prometheus_metrics",
    "refresh_entries",
]

#: Price used for ``paracache_cost_saved_usd_total`` unless given (or set in
#: ``PARACACHE_USD_PER_M_TOKENS``): gpt-4o-mini's list price, mean of input ($0.15/M)
#: and output ($0.60/M) tokens.
DEFAULT_USD_PER_M_TOKENS = 0.375
#: Lookup latency buckets (seconds): an exact hit is well under a millisecond, a
#: semantic lookup a few milliseconds, a timeout 250 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

LOOKUP_OUTCOMES = ("exact", "semantic", "miss", "bypass", "error", "unreadable")
WRITE_OUTCOMES = ("written", "dropped", "skipped")
#: Events of the error bound (:meth:`paracache.metrics.Recorder.learning`).
LEARNING_EVENTS = (
    "exploration", "label_right", "label_wrong", "explored_right", "explored_wrong",
    "verification", "promoted", "verify_rejected", "verify_unneeded",
)  # fmt: skip
#: At most this many distinct ``kind`` values per metric; later ones count as "other".
MAX_KINDS = 32
_KIND = re.compile(r"^[a-z][a-z_]{0,39}$")


def _kind_label(value: str) -> str:
    """A bounded, content-free label from an error kind or rejection reason.

    Only the part before a ``:`` is kept, and only if it is a plain lowercase word or
    phrase (no digits, quotes or punctuation): whatever a reason quotes from a prompt
    stays out of the label.

    Example:
        >>> _kind_label("breaker_open"), _kind_label("numbers differ: 1047 vs 1074")
        ('breaker_open', 'numbers_differ')
        >>> _kind_label('tenant "acme"')
        'other'
    """
    head = value.split(":", 1)[0].strip().lower().replace(" ", "_").replace("-", "_")
    return head if _KIND.match(head) else "other"


# --------------------------------------------------------------------------- Prometheus


@dataclasses.dataclass(frozen=True)
class PrometheusMetrics:
    """The process-wide paracache collectors (see the module docstring)."""

    lookups: Any
    lookup_seconds: Any
    writes: Any
    errors: Any
    rejections: Any
    tokens_saved: Any
    coalesced: Any
    cost_saved: Any
    entries: Any
    learning: Any
    observed_error: Any


_metrics: PrometheusMetrics | None = None
_metrics_lock = threading.Lock()


def _collector(cls: Any, name: str, doc: str, labels: Sequence[str], **kwargs: Any) -> Any:
    """Register a collector in the default registry, or reuse the one already there
    (e.g. after this module was reloaded)."""
    from prometheus_client import REGISTRY

    try:
        return cls(name, doc, labels, **kwargs)
    except ValueError:  # "Duplicated timeseries": registered before in this process
        names = getattr(REGISTRY, "_names_to_collectors", {})
        base = name.removesuffix("_total")
        existing = names.get(name) or names.get(base)
        if existing is None:
            raise
        return existing


def prometheus_metrics() -> PrometheusMetrics:
    """The paracache collectors, registered in ``prometheus_client``'s default registry
    on first call; later calls return the same ones.

    Raises ``ImportError`` with an install hint if ``prometheus_client`` is missing.
    """
    global _metrics
    if _metrics is not None:
        return _metrics
    with _metrics_lock:
        if _metrics is None:
            try:
                from prometheus_client import Counter, Gauge, Histogram
            except ImportError as exc:
                raise ImportError(
                    "Prometheus metrics need prometheus_client: "
                    "pip install 'paracache[service]' (or prometheus-client)"
                ) from exc
            ns = ("namespace",)
            _metrics = PrometheusMetrics(
                lookups=_collector(
                    Counter,
                    "paracache_lookups_total",
                    "Cache lookups by outcome (exact and semantic are hits).",
                    (*ns, "outcome"),
                ),
                lookup_seconds=_collector(
                    Histogram,
                    "paracache_lookup_duration_seconds",
                    "Lookup latency by outcome.",
                    (*ns, "outcome"),
                    buckets=LATENCY_BUCKETS,
                ),
                writes=_collector(
                    Counter,
                    "paracache_writes_total",
                    "Cache writes by outcome (written, dropped, skipped).",
                    (*ns, "outcome"),
                ),
                errors=_collector(
                    Counter,
                    "paracache_errors_total",
                    "Redis and embedding failures turned into misses, by kind.",
                    (*ns, "kind"),
                ),
                rejections=_collector(
                    Counter,
                    "paracache_guard_rejections_total",
                    "Semantic candidates refused by a quality guard, by kind.",
                    (*ns, "kind"),
                ),
                tokens_saved=_collector(
                    Counter,
                    "paracache_tokens_saved_total",
                    "LLM tokens the cache hits stood for.",
                    ns,
                ),
                coalesced=_collector(
                    Counter,
                    "paracache_coalesced_total",
                    "Misses answered by another caller's model call (single-flight).",
                    ns,
                ),
                cost_saved=_collector(
                    Counter,
                    "paracache_cost_saved_usd_total",
                    "Estimated LLM cost saved by cache hits (USD).",
                    ns,
                ),
                entries=_collector(
                    Gauge, "paracache_entries", "Entries in Redis (at the last refresh).", ns
                ),
                learning=_collector(
                    Counter,
                    "paracache_learning_events_total",
                    "The error bound's work (max_error_rate): explorations and labels "
                    "counted by this process (label_right, label_wrong, explored_right, "
                    "explored_wrong).",
                    (*ns, "outcome"),
                ),
                observed_error=_collector(
                    Gauge,
                    "paracache_observed_error_rate",
                    "Share of explored would-be hits judged wrong in this process, with its "
                    "95 % Clopper-Pearson interval (kind: estimate, low, high).",
                    (*ns, "kind"),
                ),
            )
    assert _metrics is not None
    return _metrics


class _PrometheusListener:
    """Turns one cache's :class:`MetricEvent` stream into Prometheus samples."""

    def __init__(self, namespace: str, usd_per_token: float) -> None:
        m = prometheus_metrics()
        self.namespace = namespace
        self._m = m
        self._usd_per_token = usd_per_token
        # Children bound once: recording is then a dict lookup and an add.
        self._lookups = {o: m.lookups.labels(namespace, o) for o in LOOKUP_OUTCOMES}
        self._seconds = {o: m.lookup_seconds.labels(namespace, o) for o in LOOKUP_OUTCOMES}
        self._writes = {o: m.writes.labels(namespace, o) for o in WRITE_OUTCOMES}
        self._tokens = m.tokens_saved.labels(namespace)
        self._coalesced = m.coalesced.labels(namespace)
        self._cost = m.cost_saved.labels(namespace)
        self._errors: dict[str, Any] = {}
        self._rejections: dict[str, Any] = {}
        self._learning = {e: m.learning.labels(namespace, e) for e in LEARNING_EVENTS}

    def _kind(self, children: dict[str, Any], metric: Any, raw: str) -> Any:
        child = children.get(raw)
        if child is None:
            label = _kind_label(raw)
            if label not in children and len(children) >= MAX_KINDS:
                label = "other"
            child = metric.labels(self.namespace, label)
            if len(children) < MAX_KINDS * 4:  # remember raw spellings, boundedly
                children[raw] = child
        return child

    def __call__(self, event: MetricEvent) -> None:
        kind = event.kind
        if kind == "lookup":
            outcome = event.outcome if event.outcome in self._lookups else "error"
            self._lookups[outcome].inc()
            self._seconds[outcome].observe(event.seconds)
            if event.tokens > 0:
                self._tokens.inc(event.tokens)
                self._cost.inc(event.tokens * self._usd_per_token)
        elif kind == "write":
            child = self._writes.get(event.outcome)
            if child is not None:
                child.inc()
        elif kind == "error":
            self._kind(self._errors, self._m.errors, event.outcome).inc()
        elif kind == "coalesced":
            self._coalesced.inc()
        elif kind == "rejection":
            self._kind(self._rejections, self._m.rejections, event.outcome).inc()
        elif kind == "learning":
            child = self._learning.get(event.outcome)
            if child is not None:
                child.inc()


# --------------------------------------------------------------------------- OpenTelemetry


class _TracingListener:
    """Records each lookup and write as a finished span, timed by the event's duration."""

    def __init__(self, namespace: str, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise ImportError(
                "tracing needs opentelemetry-api: pip install 'paracache[otel]'"
            ) from exc
        from ._version import __version__

        self.namespace = namespace
        self._tracer = trace.get_tracer("paracache", __version__, tracer_provider=tracer_provider)
        self._error = trace.Status(trace.StatusCode.ERROR)

    def __call__(self, event: MetricEvent) -> None:
        if event.kind == "lookup":
            name = "paracache.lookup"
            attrs: dict[str, Any] = {
                "paracache.namespace": self.namespace,
                "paracache.outcome": event.outcome,
            }
            if event.outcome in ("exact", "semantic"):
                attrs["paracache.layer"] = event.outcome
            if event.similarity is not None:
                attrs["paracache.similarity"] = float(event.similarity)
            failed = event.outcome == "error"
        elif event.kind == "write":
            name = "paracache.store"
            attrs = {"paracache.namespace": self.namespace, "paracache.outcome": event.outcome}
            failed = event.outcome == "dropped"
        else:
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            name, start_time=end - int(event.seconds * 1e9), attributes=attrs
        )
        if failed:
            span.set_status(self._error)
        span.end(end_time=end)


# --------------------------------------------------------------------------- attaching


@dataclasses.dataclass
class Instrumentation:
    """What :func:`instrument` attached; :meth:`detach` removes it."""

    recorder: Recorder
    listeners: tuple[Any, ...]

    def detach(self) -> None:
        """Stop exporting this cache's events (counters keep their values)."""
        for listener in self.listeners:
            self.recorder.remove_listener(listener)


class _Index(Protocol):
    """What instrumenting needs of a :class:`paracache.SemanticIndex` (typed
    structurally: this module is imported by ``paracache.index``, not the other way)."""

    @property
    def core(self) -> Core: ...

    @property
    def namespace(self) -> str: ...

    def count(self) -> int: ...

    async def acount(self) -> int: ...


def _as_index(cache: Any) -> _Index:
    for candidate in (cache, getattr(cache, "index", None)):  # adapters hold one
        core = getattr(candidate, "core", None) if candidate is not None else None
        if isinstance(core, Core):
            return cast(_Index, candidate)
    raise TypeError(f"expected a SemanticIndex or an adapter holding one, got {type(cache)!r}")


def instrument(
    cache: Any,
    *,
    prometheus: bool = True,
    tracing: bool | None = None,
    tracer_provider: Any = None,
    usd_per_million_tokens: float | None = None,
) -> Instrumentation:
    """Export a cache's metrics to Prometheus and/or its lookups and writes as spans.

    Idempotent per cache: attaching the same kind twice does not count twice.

    Args:
        cache: A :class:`SemanticIndex`, or an adapter holding one (``.index``).
        prometheus: Export Prometheus metrics (needs ``prometheus_client``).
        tracing: Record OpenTelemetry spans; ``None``: if ``opentelemetry-api`` is
            importable.
        tracer_provider: An OpenTelemetry ``TracerProvider`` (default: the global one).
        usd_per_million_tokens: Price for the cost-saved estimate (default:
            ``PARACACHE_USD_PER_M_TOKENS`` or :data:`DEFAULT_USD_PER_M_TOKENS`).

    Example:
        >>> instrument(cache, tracing=False)  # doctest: +SKIP
    """
    index = _as_index(cache)
    recorder = index.core.recorder
    if tracing is None:
        tracing = importlib.util.find_spec("opentelemetry") is not None
    price = usd_per_million_tokens
    if price is None:
        price = float(os.environ.get("PARACACHE_USD_PER_M_TOKENS") or DEFAULT_USD_PER_M_TOKENS)
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not price >= 0:
        raise ValueError(f"usd_per_million_tokens must be a number >= 0, got {price!r}")
    attached: list[Any] = []
    present = recorder.listeners
    found: list[Any]
    if prometheus:
        found = [x for x in present if isinstance(x, _PrometheusListener)]
        attached += found or [_PrometheusListener(index.namespace, price / 1e6)]
    if tracing:
        found = [x for x in present if isinstance(x, _TracingListener)]
        attached += found or [_TracingListener(index.namespace, tracer_provider)]
    for listener in attached:
        recorder.add_listener(listener)
    return Instrumentation(recorder, tuple(attached))


def instrument_option(index: _Index, metrics: str | Sequence[str]) -> Instrumentation:
    """``SemanticIndex(metrics=...)``: ``"prometheus"``, ``"otel"`` or a list of them."""
    kinds = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = set(kinds) - {"prometheus", "otel"}
    if unknown or not all(isinstance(k, str) for k in kinds):
        raise ValueError(f"metrics must be 'prometheus', 'otel' or a list of them, got {metrics!r}")
    return instrument(index, prometheus="prometheus" in kinds, tracing="otel" in kinds)


def refresh_entries(cache: Any) -> int | None:
    """Set ``paracache_entries`` from Redis (one count), and with ``max_error_rate``
    ``paracache_observed_error_rate`` from the statistics all processes share
    (:meth:`paracache.learning.Learner.observed_error`). Returns the count; ``None`` if
    Redis is unreachable."""
    index = _as_index(cache)
    try:
        n = index.count()
    except Exception:  # CacheError, or the index could not be created: Redis is away
        return None
    prometheus_metrics().entries.labels(index.namespace).set(n)
    _set_observed_error(index, _read_observed_error(index))
    return n


def _read_observed_error(index: _Index) -> Any:
    learner = getattr(index, "learner", None)
    if learner is None:
        return None
    try:
        return learner.observed_error()
    except Exception as exc:  # Redis away: the gauge keeps its last value
        return exc


def _set_observed_error(index: _Index, observed: Any) -> None:
    if observed is None or isinstance(observed, Exception):
        return
    gauge = prometheus_metrics().observed_error
    for stat, value in zip(("estimate", "low", "high"), observed, strict=True):
        gauge.labels(index.namespace, stat).set(value)


async def arefresh_entries(cache: Any, timeout: float = 2.0) -> int | None:
    """Async :func:`refresh_entries`, giving up after ``timeout`` seconds (``None``).

    Skipped (``None``) while the cache's circuit breaker is open, so a scrape never
    waits on a Redis that is down.
    """
    index = _as_index(cache)
    if index.core.breaker.state == "open":
        return None
    deadline = time.monotonic() + timeout
    try:
        n = await asyncio.wait_for(index.acount(), timeout)
    except Exception:  # CacheError, a timeout, an index that could not be created
        return None
    prometheus_metrics().entries.labels(index.namespace).set(n)
    if getattr(index, "learner", None) is not None:
        try:  # a blocking read (the learner's client), off the loop, within the timeout
            observed = await asyncio.wait_for(
                asyncio.to_thread(_read_observed_error, index),
                max(0.0, deadline - time.monotonic()),
            )
        except Exception:
            observed = None
        _set_observed_error(index, observed)
    return n
