"""The demo end to end: real embedded Redis, real embedder, the simulated chat model."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from paracache.cli import build_parser, main
from paracache.demo import (
    DEFAULT_NAMESPACE,
    DEFAULT_QUESTIONS,
    DEFAULT_SEED,
    SimulatedChatModel,
    build_stream,
    format_summary,
    load_questions,
    run_demo,
)
from paracache.langchain import SemanticCache, parse_llm_string
from paracache.policy import Normalizer


@pytest.fixture(autouse=True)
def _no_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="module")
def summary(redis_url: str) -> dict[str, Any]:
    import uuid

    ns = "t-demo-" + uuid.uuid4().hex[:8]
    return run_demo(
        questions=60, latency_scale=0, redis_url=redis_url, namespace=ns, progress=False
    )


def test_data_is_the_documented_subset() -> None:
    qs = load_questions()
    per_intent = Counter(q.intent for q in qs)
    assert len(per_intent) == 24
    assert set(per_intent.values()) == {12}
    assert len({q.text.lower() for q in qs}) == len(qs) == 288


def test_stream_is_reproducible_with_repeats() -> None:
    a, b = build_stream(300, seed=3), build_stream(300, seed=3)
    assert a == b
    assert a != build_stream(300, seed=4)
    assert sum(q.repeat for q in a) == 30
    first = {q.text.lower().strip(" ?.!"): i for i, q in reversed(list(enumerate(a)))}
    for i, q in enumerate(a):
        if q.repeat:  # each repeat comes after the question it repeats
            assert first[q.text.lower().strip(" ?.!")] < i
    short = build_stream(60, seed=3)
    assert len(short) == 60 and sum(q.repeat for q in short) == 6
    # A short stream keeps the full stream's density: few intents, many questions each.
    assert len({q.intent for q in short}) <= 5


def test_counts_add_up(summary: dict[str, Any]) -> None:
    s = summary
    assert s["questions"] == 60
    assert s["hits"] + s["misses"] == s["questions"]
    assert s["exact_hits"] + s["semantic_hits"] == s["hits"]
    assert s["errors"] == 0
    assert s["exact_hits"] > 0
    assert s["semantic_hits"] > 0
    assert s["llm_calls"] == s["misses"]
    assert s["llm_calls_saved"] == s["hits"]
    assert s["entries_stored"] == s["misses"]
    assert s["simulated"] is True


def test_savings_and_wrong_hits(summary: dict[str, Any]) -> None:
    s = summary
    assert s["tokens_saved"] > 0
    assert s["tokens_saved"] == s["input_tokens_saved"] + s["output_tokens_saved"]
    assert 0 < s["usd_saved"] < s["usd_saved"] + s["usd_spent"]
    assert s["wrong_intent_hits"] <= 0.25 * s["hits"]
    assert len(s["wrong_intent_examples"]) == min(5, s["wrong_intent_hits"])
    for ex in s["wrong_intent_examples"]:
        assert ex["asked_intent"] != ex["served_intent"]
        assert ex["similarity"] >= s["min_similarity"]
    assert s["min_similarity"] == pytest.approx(0.90)
    assert s["latency_ms"]["hit"]["n"] == s["hits"]
    assert s["latency_ms"]["miss"]["n"] == s["misses"]


def test_summary_is_json_and_a_table(summary: dict[str, Any]) -> None:
    assert json.loads(json.dumps(summary)) == summary
    table = format_summary(summary)
    for needle in ("Questions asked", "exact", "semantic", "Wrong-intent hits",
                   "min_similarity = 0.90", "Banking77", "CC BY 4.0", "estimate"):
        assert needle in table


def test_threshold_option_is_used(redis_url: str, namespace: str) -> None:
    s = run_demo(questions=30, latency_scale=0, min_similarity=0.99, redis_url=redis_url,
                 namespace=namespace, progress=False)
    assert s["min_similarity"] == 0.99
    assert s["hits"] + s["misses"] == 30


def test_simulated_model_looks_like_an_api(redis_url: str, namespace: str) -> None:
    q = load_questions()[0]
    model = SimulatedChatModel(intents={Normalizer()(q.text): q.intent}, latency_scale=0)
    msg = model.invoke(q.text)
    assert str(msg.content).startswith(f"[{q.intent}] ")
    usage = msg.usage_metadata
    assert usage is not None and 60 <= usage["output_tokens"] <= 150
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert model.calls == 1
    model_name, params = parse_llm_string(model._get_llm_string())
    assert model_name == "simulated-gpt-4o-mini" and params == {"temperature": 0.0}
    # Cached through the adapter, sync and async.
    cache = SemanticCache(redis_url=redis_url, namespace=namespace)
    try:
        cached = SimulatedChatModel(latency_scale=0, cache=cache)
        first = cached.invoke("How long does a transfer take?")
        again = cached.invoke("how long does a transfer take")
        assert again.content == first.content and cached.calls == 1
        assert cache.index.count() == 1
    finally:
        cache.clear()
        cache.index.close()


async def test_simulated_model_async() -> None:
    model = SimulatedChatModel(latency_scale=0.01)
    msg = await model.ainvoke("Where is my card?")
    assert str(msg.content).startswith("[general_enquiry]")


def test_cli_demo_json(redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--questions", "20", "--latency-scale", "0", "--json",
                 "--redis-url", redis_url, "--namespace", namespace, "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["questions"] == 20
    assert out["hits"] + out["misses"] == 20


def test_cli_table_and_help(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--questions", "12", "--latency-scale", "0", "--redis-url",
                 redis_url, "--namespace", namespace, "--no-progress"])
    assert code == 0
    assert "Questions asked" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out
    assert main([]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--min-similarity", "1.5"])


def test_cli_defaults_match_the_demo() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.questions == DEFAULT_QUESTIONS
    assert args.seed == DEFAULT_SEED
    assert args.namespace == DEFAULT_NAMESPACE
    assert args.latency_scale == 1.0 and args.min_similarity is None
