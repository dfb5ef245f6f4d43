"""Metrics listeners, Prometheus export, OpenTelemetry spans and quiet logging, on the real
embedded Redis."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from paracache import Scope, SemanticIndex
from paracache.metrics import MetricEvent, Recorder

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import REGISTRY, generate_latest  # noqa: E402

from paracache.observability import (  # noqa: E402
    MAX_KINDS,
    instrument,
    refresh_entries,
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the hook


def test_recorder_listeners_see_every_event_and_can_be_removed() -> None:
    r = Recorder()
    r.lookup("miss", 0.01)  # nobody listening: nothing to call
    seen: list[MetricEvent] = []
    r.add_listener(seen.append)
    r.add_listener(seen.append)  # attached once
    r.lookup("semantic", 0.004, tokens=120, similarity=0.93)
    r.error("redis")
    r.rejection("numbers differ")
    r.write("written", 0.002)
    assert [(e.kind, e.outcome) for e in seen] == [
        ("lookup", "semantic"), ("error", "redis"), ("rejection", "numbers differ"),
        ("write", "written"),
    ]
    assert seen[0].tokens == 120 and seen[0].similarity == 0.93 and seen[3].seconds == 0.002
    r.reset()
    r.lookup("exact", 0.001)
    assert len(seen) == 5  # listeners survive a reset
    r.remove_listener(seen.append)
    r.lookup("exact", 0.001)
    assert len(seen) == 5
    with pytest.raises(TypeError):
        r.add_listener("not callable")  # type: ignore[arg-type]


def test_a_failing_listener_never_breaks_the_cache(make_index: Any) -> None:
    index: SemanticIndex = make_index()

    def boom(event: MetricEvent) -> None:
        raise RuntimeError("exporter down")

    index.core.recorder.add_listener(boom)
    assert index.store("hello", "hi") is not None
    assert index.lookup("hello") is not None
    assert index.stats().exact_hits == 1


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_counts_hits_by_layer_misses_bypasses_writes_tokens(
    make_index: Any,
) -> None:
    index: SemanticIndex = make_index(metrics="prometheus")
    ns = index.namespace
    scope = Scope(model="m", tenant="acme-secret-tenant")
    index.store("How do I activate my new card?", "Tap Activate.", scope, tokens=200)
    index.lookup("How do I activate my new card?", scope)  # exact
    index.lookup("how can I activate my new card", scope)  # semantic
    index.lookup("What is the weather on Mars?", scope)  # miss
    index.lookup("anything", Scope(params={"temperature": 1.5}))  # bypass
    assert sample("paracache_lookups_total", namespace=ns, outcome="exact") == 1
    assert sample("paracache_lookups_total", namespace=ns, outcome="semantic") == 1
    assert sample("paracache_lookups_total", namespace=ns, outcome="miss") == 1
    assert sample("paracache_lookups_total", namespace=ns, outcome="bypass") == 1
    assert sample("paracache_writes_total", namespace=ns, outcome="written") == 1
    assert sample("paracache_tokens_saved_total", namespace=ns) == 400
    assert sample("paracache_cost_saved_usd_total", namespace=ns) == pytest.approx(400 * 0.375e-6)
    assert sample("paracache_lookup_duration_seconds_count", namespace=ns, outcome="miss") == 1
    assert 0 < sample("paracache_lookup_duration_seconds_sum", namespace=ns, outcome="exact") < 1

    # Labels: namespace and outcome/kind only; no tenant, prompt or model ever.
    text = generate_latest(REGISTRY).decode()
    assert "acme-secret-tenant" not in text and "activate" not in text
    for line in text.splitlines():
        if line.startswith("paracache_") and "{" in line:
            labels = line[line.index("{") + 1 : line.index("}")]
            names = {part.split("=")[0] for part in labels.split(",") if part}
            assert names <= {"namespace", "outcome", "kind", "le"}, line

    assert refresh_entries(index) == 1
    assert sample("paracache_entries", namespace=ns) == 1


def test_prometheus_counts_misses_answered_by_another_callers_call(make_index: Any) -> None:
    """Single-flight's saved calls (counted by tests/test_streaming.py) reach Prometheus."""
    index: SemanticIndex = make_index(metrics="prometheus")
    index.core.recorder.coalesced()
    assert index.stats().coalesced == 1
    assert sample("paracache_coalesced_total", namespace=index.namespace) == 1


def test_instrument_is_idempotent_and_detachable(make_index: Any) -> None:
    index: SemanticIndex = make_index()
    ns = index.namespace
    first = instrument(index, tracing=False)
    instrument(index, tracing=False)  # again: still counted once
    index.lookup("nothing stored")
    assert sample("paracache_lookups_total", namespace=ns, outcome="miss") == 1
    first.detach()
    index.lookup("nothing stored")
    assert sample("paracache_lookups_total", namespace=ns, outcome="miss") == 1
    with pytest.raises(ValueError):
        make_index(metrics="statsd")
    with pytest.raises(TypeError):
        instrument(object())


def test_errors_and_guard_rejections_by_bounded_kind(redis_url: str, namespace: str) -> None:
    dead = SemanticIndex(f"redis://127.0.0.1:{_closed_port()}", namespace=namespace,
                         metrics="prometheus")
    try:
        assert dead.lookup("hello") is None  # fail-open: a miss, counted as an error
        assert sample("paracache_errors_total", namespace=namespace, kind="redis") == 1
        assert sample("paracache_lookups_total", namespace=namespace, outcome="error") == 1
        assert dead.store("hello", "hi") is None
        assert sample("paracache_writes_total", namespace=namespace, outcome="dropped") >= 1
        # Guard reasons become labels only as plain words, and only so many of them.
        recorder = dead.core.recorder
        recorder.rejection("numbers differ: 1047 vs 1074")
        recorder.rejection('tenant "acme"')
        for i in range(MAX_KINDS * 3):
            recorder.rejection(f"reason_{'x' * (i % 40)}")
        text = generate_latest(REGISTRY).decode()
        kinds = {
            line.split('kind="')[1].split('"')[0]
            for line in text.splitlines()
            if line.startswith("paracache_guard_rejections_total")
            and f'namespace="{namespace}"' in line
        }
        assert "numbers_differ" in kinds and "other" in kinds
        assert len(kinds) <= MAX_KINDS + 1
        assert not any(ch.isdigit() for k in kinds for ch in k)
    finally:
        dead.close()


# --------------------------------------------------------------------------- OpenTelemetry


def test_opentelemetry_spans_for_lookups_and_stores(make_index: Any) -> None:
    pytest.importorskip(
        "opentelemetry.sdk", reason="opentelemetry-sdk is not installed (pip install "
        "opentelemetry-sdk) - spans are tested with its in-memory exporter"
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    index: SemanticIndex = make_index()
    instrument(index, prometheus=False, tracing=True, tracer_provider=provider)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        index.store("How do I activate my new card?", "Tap Activate.")
        index.lookup("how can I activate my new card")
        index.lookup("What is the weather on Mars?")
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name != "request"}
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == [
        "paracache.store", "paracache.lookup", "paracache.lookup", "request"
    ]
    store = spans["paracache.store"]
    assert store.attributes["paracache.outcome"] == "written"
    assert store.attributes["paracache.namespace"] == index.namespace
    hit, miss = finished[1], finished[2]
    assert hit.attributes["paracache.outcome"] == "semantic"
    assert hit.attributes["paracache.layer"] == "semantic"
    assert hit.attributes["paracache.similarity"] > 0.9
    assert miss.attributes["paracache.outcome"] == "miss"
    assert "paracache.layer" not in miss.attributes
    for span in finished[:3]:
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.end_time >= span.start_time


# --------------------------------------------------------------------------- logging


def test_hot_path_logs_nothing_at_info(make_index: Any, caplog: pytest.LogCaptureFixture) -> None:
    index: SemanticIndex = make_index(metrics="prometheus")
    scope = Scope(model="m", tenant="t")
    with caplog.at_level(logging.INFO, logger="paracache"):
        for i in range(25):
            index.store(f"question number {i}", f"answer {i}", scope, tokens=10)
        for i in range(25):
            index.lookup(f"Question number {i}?", scope)
            index.lookup(f"an unrelated question about topic {i}", scope)
    assert [r for r in caplog.records if r.name.startswith("paracache")] == []


def test_an_embedder_outage_logs_a_warning_now_and_then_not_per_call(
    make_index: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An embedding API that is down fails every lookup and store over: each is a miss
    and counted, but the log gets one warning per 10 s, as for Redis faults (one per
    call flooded production logs for the whole outage)."""
    from redisvl.utils.vectorize import BaseVectorizer

    class Down(BaseVectorizer):  # type: ignore[misc]
        @property
        def type(self) -> str:
            return "remote"

        def _embed(self, content: Any, **kwargs: Any) -> list[float]:
            raise ConnectionError("embedding API unavailable")

    index: SemanticIndex = make_index(vectorizer=Down(model="down", dims=384))
    with caplog.at_level(logging.INFO, logger="paracache"):
        for i in range(20):
            assert index.lookup(f"an unrelated question about topic {i}") is None
            index.store(f"an unrelated question about topic {i}", "answer")
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert index.stats().errors_by_kind.get("embedding", 0) >= 20
    assert 1 <= len(warned) <= 2, [r.getMessage() for r in warned]
