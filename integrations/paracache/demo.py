"""The paracache demo: a LangChain support bot answering real customer questions through the cache.

Run it with ``python -m paracache.demo`` (or ``paracache demo``). It streams a few hundred
Banking77 questions (real online-banking customer questions, 24 intents) through a LangChain
chat model that has a :class:`paracache.langchain.SemanticCache` on the embedded Redis, and
prints what the cache did: exact and semantic hits, latency of hits and misses, LLM calls and
tokens saved, and every hit that served an answer to a *different* intent (the honest failure
cases, with examples).

Without ``OPENAI_API_KEY`` the model is simulated: a ``BaseChatModel`` that sleeps like an API
(lognormal, median 200 ms), reports token usage like one, and answers with a canned support
answer for the question's intent. With the key (and ``langchain-openai`` installed) it calls
``gpt-4o-mini``.

Example:
    >>> from paracache.demo import run_demo
    >>> summary = run_demo(questions=60, latency_scale=0, progress=False)  # doctest: +SKIP
    >>> summary["hits"] + summary["misses"] == summary["questions"]         # doctest: +SKIP
    True
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    UsageMetadata,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from .langchain import SemanticCache
from .policy import Normalizer
from .transport import safe_url as _safe_url
from .values import Verdict

__all__ = [
    "ATTRIBUTION",
    "DATA_PATH",
    "PRICE_INPUT_PER_M",
    "PRICE_OUTPUT_PER_M",
    "SYSTEM_PROMPT",
    "Question",
    "SimulatedChatModel",
    "build_stream",
    "canned_answer",
    "format_summary",
    "load_questions",
    "run_demo",
]

#: The demo questions: 24 Banking77 intents x 12 questions (see ``data/README.md``).
DATA_PATH = Path(__file__).resolve().parent / "data" / "banking77_demo.jsonl"
#: One line of attribution, printed with every run.
ATTRIBUTION = (
    'Questions: Banking77 (Casanueva et al. 2020, "Efficient Intent Detection with Dual '
    'Sentence Encoders", PolyAI-LDN/task-specific-datasets), CC BY 4.0.'
)
SYSTEM_PROMPT = (
    "You are a helpful banking support assistant. Answer the customer's question briefly, "
    "accurately and politely. If you need account details, ask for them."
)
#: gpt-4o-mini list prices (USD per million tokens) used for the cost estimate.
PRICE_INPUT_PER_M = 0.15
PRICE_OUTPUT_PER_M = 0.60
PRICE_NOTE = "gpt-4o-mini list price: $0.15/M input, $0.60/M output tokens"
#: The OpenAI model used when ``OPENAI_API_KEY`` is set.
OPENAI_MODEL = "gpt-4o-mini"
#: Share of the stream that repeats an earlier question word for word (case and
#: punctuation may differ).
REPEAT_SHARE = 0.10
DEFAULT_QUESTIONS = 300
DEFAULT_SEED = 7
DEFAULT_NAMESPACE = "demo"
#: Simulated API latency: lognormal with this median (ms) and shape.
LATENCY_MEDIAN_MS = 200.0
LATENCY_SIGMA = 0.3
#: Hit rate is also reported over this many last questions (the warmed-up cache).
TAIL = 100
#: Wrong-intent examples shown.
MAX_EXAMPLES = 5

_normalize = Normalizer()


# --------------------------------------------------------------------------- the data


@dataclasses.dataclass(frozen=True)
class Question:
    """One question of the stream: its text, Banking77 intent, and whether it repeats one."""

    text: str
    intent: str
    repeat: bool = False


def load_questions(path: Path = DATA_PATH) -> list[Question]:
    """The demo's distinct questions, in file order (grouped by intent)."""
    out: list[Question] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out.append(Question(str(row["text"]), str(row["intent"])))
    return out


def _restyle(text: str, rng: random.Random) -> str:
    """The same question typed again: different case or punctuation, same words."""
    bare = text.rstrip("?.! ")
    styles = [
        text.lower(),
        bare,
        bare + "?",
        bare + "??",
        text[:1].upper() + text[1:],
        "  " + text + " ",
    ]
    different = [s for s in styles if s != text]
    return rng.choice(different or styles)


def build_stream(
    n: int,
    seed: int = DEFAULT_SEED,
    questions: Sequence[Question] | None = None,
    repeat_share: float = REPEAT_SHARE,
) -> list[Question]:
    """``n`` questions in a shuffled order, ``repeat_share`` of them exact repeats.

    The distinct questions come from whole intents (drawn with ``seed``) so that a short
    stream has as many questions per intent as the full one. Each repeat comes after the
    question it repeats, restyled (case, punctuation). Same ``n`` and ``seed``, same stream.

    Example:
        >>> s = build_stream(40, seed=1)
        >>> len(s), sum(q.repeat for q in s)
        (40, 4)
    """
    if n < 1:
        raise ValueError(f"the stream needs at least one question, got {n}")
    pool = list(questions) if questions is not None else load_questions()
    rng = random.Random(seed)
    n_repeats = round(n * repeat_share) if n > 1 else 0
    n_unique = min(len(pool), n - n_repeats)
    n_repeats = n - n_unique
    by_intent: dict[str, list[Question]] = {}
    for q in pool:
        by_intent.setdefault(q.intent, []).append(q)
    intents = sorted(by_intent)
    rng.shuffle(intents)
    chosen: list[Question] = []
    for intent in intents:
        if len(chosen) >= n_unique:
            break
        chosen.extend(by_intent[intent])
    rng.shuffle(chosen)
    unique = chosen[:n_unique]
    # Positions: distinct question i at i; a repeat of i somewhere after it.
    events: list[tuple[float, Question]] = [(float(i), q) for i, q in enumerate(unique)]
    for _ in range(n_repeats):
        i = rng.randrange(len(unique))
        original = unique[i]
        text = _restyle(original.text, rng)
        events.append((rng.uniform(i + 0.5, len(unique)), Question(text, original.intent, True)))
    events.sort(key=lambda e: e[0])
    return [q for _, q in events]


# --------------------------------------------------------------------------- the model


def canned_answer(intent: str) -> str:
    """A readable support answer for a Banking77 intent (a generic template).

    Example:
        >>> canned_answer("card_arrival")[:45]
        '[card_arrival] Thanks for asking about card a'
    """
    topic = intent.replace("_", " ")
    return (
        f"[{intent}] Thanks for asking about {topic}. In most cases you can sort this out "
        f'yourself in the app: open Help, choose "{topic.capitalize()}" and follow the steps '
        "shown there; changes usually take effect immediately. If anything still looks wrong, "
        "reply here with the date and amount involved (never your full card number or PIN) "
        "and one of our support agents will check your account and get back to you today."
    )


def _approx_tokens(text: str) -> int:
    """Roughly what a BPE tokenizer makes of English text (about 4 characters a token)."""
    return max(1, math.ceil(len(text) / 4))


class SimulatedChatModel(BaseChatModel):
    """A stand-in for a chat API: realistic latency and token usage, canned answers.

    It knows each demo question's intent (``intents``: normalised text to intent) and
    answers with :func:`canned_answer`; latency is lognormal around ``latency_median_ms``
    times ``latency_scale`` (0: no sleep). ``model_name`` and ``temperature`` are part of
    LangChain's ``llm_string``, hence of the cache scope.

    Example:
        >>> m = SimulatedChatModel(intents={"where is my card": "card_arrival"}, latency_scale=0)
        >>> m.invoke("Where is my card?").content[:14]
        '[card_arrival]'
    """

    model_name: str = "simulated-gpt-4o-mini"
    temperature: float = 0.0
    latency_median_ms: float = LATENCY_MEDIAN_MS
    latency_sigma: float = LATENCY_SIGMA
    latency_scale: float = Field(default=1.0, ge=0.0)
    seed: int = DEFAULT_SEED
    intents: dict[str, str] = Field(default_factory=dict, exclude=True)

    _rng: random.Random = PrivateAttr(default_factory=random.Random)
    _calls: int = PrivateAttr(default=0)

    def model_post_init(self, context: Any, /) -> None:
        self._rng = random.Random(self.seed)

    @property
    def calls(self) -> int:
        """How many times the "API" was called (cache hits do not call it)."""
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "paracache-demo-simulated"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _respond(self, messages: list[BaseMessage]) -> tuple[ChatResult, float]:
        """The answer and how long the "API" takes to give it (seconds)."""
        self._calls += 1
        question = ""
        for message in reversed(messages):
            if isinstance(message, HumanMessage):
                question = message.text
                break
        key = _normalize(question)
        intent = self.intents.get(key, "general_enquiry")
        text = canned_answer(intent)
        input_tokens = sum(_approx_tokens(m.text) + 4 for m in messages) + 3
        # The same question costs the same tokens; the latency varies call to call.
        output_tokens = random.Random(f"{self.seed}:{key}").randint(60, 150)
        usage = UsageMetadata(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )
        message = AIMessage(
            content=text,
            usage_metadata=usage,
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )
        seconds = 0.0
        if self.latency_scale > 0:
            ms = self._rng.lognormvariate(math.log(self.latency_median_ms), self.latency_sigma)
            seconds = min(ms, 10 * self.latency_median_ms) / 1000.0 * self.latency_scale
        result = ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": self.model_name, "token_usage": usage},
        )
        return result, seconds

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result, seconds = self._respond(messages)
        if seconds:
            time.sleep(seconds)
        return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result, seconds = self._respond(messages)
        if seconds:
            await asyncio.sleep(seconds)
        return result


def make_model(
    cache: SemanticCache,
    intents: dict[str, str],
    *,
    latency_scale: float = 1.0,
    seed: int = DEFAULT_SEED,
    simulate: bool | None = None,
) -> tuple[BaseChatModel, bool]:
    """The demo's chat model (with ``cache``), and whether it is simulated.

    ``simulate=None`` picks OpenAI's gpt-4o-mini when ``OPENAI_API_KEY`` is set and
    ``langchain-openai`` is installed, else the simulated model.
    """
    if simulate is None:
        simulate = not os.environ.get("OPENAI_API_KEY")
        if not simulate and importlib.util.find_spec("langchain_openai") is None:
            print(
                "paracache demo: OPENAI_API_KEY is set but langchain-openai is not installed; "
                "run `pip install 'paracache[openai]'` to use gpt-4o-mini. "
                "Using the simulated model.",
                file=sys.stderr,
            )
            simulate = True
    if simulate:
        model = SimulatedChatModel(
            intents=intents, latency_scale=latency_scale, seed=seed, cache=cache
        )
        return model, True
    from langchain_openai import ChatOpenAI  # type: ignore[import-not-found,unused-ignore]

    chat: BaseChatModel = ChatOpenAI(model=OPENAI_MODEL, temperature=0, cache=cache)
    return chat, False


# --------------------------------------------------------------------------- the run


def _pct(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``, or ``None`` if there are none."""
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]


def _lat(values: Sequence[float]) -> dict[str, float | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {"n": len(values), "p50": r(_pct(values, 0.50)), "p95": r(_pct(values, 0.95))}


def _usd(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE_INPUT_PER_M + output_tokens * PRICE_OUTPUT_PER_M) / 1e6


def run_demo(
    *,
    questions: int = DEFAULT_QUESTIONS,
    latency_scale: float = 1.0,
    min_similarity: float | None = None,
    seed: int = DEFAULT_SEED,
    redis_url: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    progress: bool = True,
    simulate: bool | None = None,
) -> dict[str, Any]:
    """Answer a stream of Banking77 questions through a cached LangChain model; the summary.

    The namespace is cleared first. Returns plain data (see :func:`format_summary`).

    Example:
        >>> s = run_demo(questions=60, latency_scale=0, progress=False)  # doctest: +SKIP
        >>> s["exact_hits"], s["semantic_hits"], s["wrong_intent_hits"]  # doctest: +SKIP
        (6, 9, 0)
    """
    if isinstance(questions, bool) or not isinstance(questions, int) or questions < 1:
        raise ValueError(f"questions must be an int >= 1, got {questions!r}")
    if latency_scale < 0:
        raise ValueError(f"latency_scale must be >= 0, got {latency_scale!r}")
    started = time.perf_counter()
    pool = load_questions()
    intents = {_normalize(q.text): q.intent for q in pool}
    stream = build_stream(questions, seed, pool)

    verdicts: list[Verdict] = []
    cache = SemanticCache(
        redis_url=redis_url,
        namespace=namespace,
        min_similarity=min_similarity,
        on_verdict=verdicts.append,
    )
    try:
        cache.clear()
        warmup = getattr(cache.index.vectorizer, "warmup", None)
        if callable(warmup):
            warmup()  # load the embedding model now, not on the first question
        model, simulated = make_model(
            cache, intents, latency_scale=latency_scale, seed=seed, simulate=simulate
        )
        threshold = (
            cache.index.settings.min_similarity if min_similarity is None else min_similarity
        )
        rows = _run_stream(model, stream, intents, verdicts, progress)
        stats = cache.index.stats()
        entries = cache.index.count()
    finally:
        cache.index.close()

    summary = _summarise(rows, stats.tokens_saved, threshold)
    llm_calls = model.calls if isinstance(model, SimulatedChatModel) else summary["misses"]
    summary.update(
        llm_calls=llm_calls,
        llm_calls_saved=summary["hits"],
        entries_stored=entries,
        model=getattr(model, "model_name", OPENAI_MODEL),
        simulated=simulated,
        latency_scale=latency_scale,
        seed=seed,
        namespace=namespace,
        redis_url=_safe_url(cache.index.redis_url),
        runtime_s=round(time.perf_counter() - started, 1),
        attribution=ATTRIBUTION,
    )
    return summary


@dataclasses.dataclass
class _Row:
    question: Question
    outcome: str
    seconds: float
    similarity: float | None
    served: str | None
    served_intent: str | None
    lookup_ms: float
    input_tokens: int
    output_tokens: int


def _run_stream(
    model: BaseChatModel,
    stream: Sequence[Question],
    intents: dict[str, str],
    verdicts: list[Verdict],
    progress: bool,
) -> list[_Row]:
    """Ask every question in turn, timing each ``invoke`` end to end."""
    from tqdm import tqdm

    rows: list[_Row] = []
    hits = 0
    bar = tqdm(
        stream,
        desc="questions",
        unit="q",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    for i, question in enumerate(bar):
        messages = [SystemMessage(SYSTEM_PROMPT), HumanMessage(question.text)]
        before = len(verdicts)
        t0 = time.perf_counter()
        answer = model.invoke(messages)
        seconds = time.perf_counter() - t0
        verdict = verdicts[-1] if len(verdicts) > before else None
        outcome = verdict.outcome if verdict else "error"
        hit = verdict.hit if verdict else None
        served_intent = None
        if hit is not None:
            hits += 1
            served_intent = intents.get(_normalize(hit.prompt), "?")
        usage = getattr(answer, "usage_metadata", None) or {}
        rows.append(
            _Row(
                question=question,
                outcome=outcome,
                seconds=seconds,
                similarity=verdict.similarity if verdict else None,
                served=hit.prompt if hit else None,
                served_intent=served_intent,
                lookup_ms=verdict.latency_ms if verdict else 0.0,
                input_tokens=int(usage.get("input_tokens", 0) or 0),
                output_tokens=int(usage.get("output_tokens", 0) or 0),
            )
        )
        bar.set_postfix(hit_rate=f"{hits / (i + 1):.0%}", refresh=False)
    bar.close()
    return rows


def _summarise(rows: list[_Row], tokens_saved: int, threshold: float) -> dict[str, Any]:
    n = len(rows)
    hit_rows = [r for r in rows if r.outcome in ("exact", "semantic")]
    miss_rows = [r for r in rows if r.outcome not in ("exact", "semantic")]
    by = {k: [r for r in rows if r.outcome == k] for k in ("exact", "semantic", "miss")}
    wrong = [r for r in hit_rows if r.served_intent != r.question.intent]
    tail = rows[-TAIL:]
    saved_in = sum(r.input_tokens for r in hit_rows)
    saved_out = sum(r.output_tokens for r in hit_rows)
    spent_in = sum(r.input_tokens for r in miss_rows)
    spent_out = sum(r.output_tokens for r in miss_rows)
    usd_saved = _usd(saved_in, saved_out)
    usd_spent = _usd(spent_in, spent_out)
    miss_ms = [r.seconds * 1000 for r in miss_rows]
    hit_ms = [r.seconds * 1000 for r in hit_rows]
    mean_miss = sum(miss_ms) / len(miss_ms) if miss_ms else 0.0
    time_saved_s = max(0.0, (mean_miss * len(hit_ms) - sum(hit_ms)) / 1000.0)

    def example(r: _Row) -> dict[str, Any]:
        return {
            "asked": r.question.text,
            "asked_intent": r.question.intent,
            "served": r.served,
            "served_intent": r.served_intent,
            "similarity": r.similarity,
        }

    semantic_examples: list[_Row] = []
    seen: set[str] = set()
    for r in sorted(by["semantic"], key=lambda r: r.similarity or 0.0):
        key = _normalize(r.question.text)
        if r.served_intent == r.question.intent and key not in seen:
            seen.add(key)
            semantic_examples.append(r)
    return {
        "questions": n,
        "repeats_in_stream": sum(r.question.repeat for r in rows),
        "hits": len(hit_rows),
        "exact_hits": len(by["exact"]),
        "semantic_hits": len(by["semantic"]),
        "misses": len(miss_rows),
        "errors": sum(r.outcome in ("error", "bypass") for r in rows),
        "hit_rate": round(len(hit_rows) / n, 4) if n else 0.0,
        "tail_questions": len(tail),
        "tail_hit_rate": round(sum(r.outcome in ("exact", "semantic") for r in tail) / len(tail), 4)
        if tail
        else 0.0,
        "latency_ms": {
            "hit": _lat(hit_ms),
            "exact": _lat([r.seconds * 1000 for r in by["exact"]]),
            "semantic": _lat([r.seconds * 1000 for r in by["semantic"]]),
            "miss": _lat(miss_ms),
            "lookup_on_miss": _lat([r.lookup_ms for r in miss_rows]),
        },
        "llm_time_saved_s": round(time_saved_s, 1),
        "tokens_saved": tokens_saved,
        "input_tokens_saved": saved_in,
        "output_tokens_saved": saved_out,
        "usd_saved": round(usd_saved, 6),
        "usd_spent": round(usd_spent, 6),
        "usd_saved_share": round(usd_saved / (usd_saved + usd_spent), 4)
        if usd_saved + usd_spent
        else 0.0,
        "price_note": PRICE_NOTE,
        "wrong_intent_hits": len(wrong),
        "wrong_intent_share": round(len(wrong) / len(hit_rows), 4) if hit_rows else 0.0,
        "wrong_intent_examples": [example(r) for r in wrong[:MAX_EXAMPLES]],
        # The least similar correct paraphrases served: what the semantic layer adds.
        "semantic_examples": [example(r) for r in semantic_examples[:3]],
        "min_similarity": threshold,
    }


# --------------------------------------------------------------------------- the table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _clip(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_summary(s: dict[str, Any]) -> str:
    """The summary of :func:`run_demo` as an aligned plain-text table."""
    n = s["questions"]
    lat = s["latency_ms"]
    model = s["model"] + (" (simulated: no OPENAI_API_KEY)" if s["simulated"] else "")
    out: list[str] = []
    out.append("")
    out.append("paracache demo: a LangChain support bot answering Banking77 customer questions")
    out.append(f"  model      {model}")
    out.append(f"  cache      SemanticCache on {s['redis_url']}, namespace {s['namespace']!r}")
    out.append(f"  threshold  min_similarity = {s['min_similarity']:.2f} (cosine)")
    out.append("")

    def pct(k: int) -> str:
        return f"{k / n:6.1%}" if n else ""

    rows: list[tuple[str, str, str]] = [
        (
            "Questions asked",
            f"{n:,}",
            f"({s['repeats_in_stream']} repeat an earlier one; case/punctuation may differ)",
        ),
        ("Cache hits", f"{s['hits']:,}", pct(s["hits"])),
        ("  exact (same text)", f"{s['exact_hits']:,}", pct(s["exact_hits"])),
        ("  semantic (paraphrase)", f"{s['semantic_hits']:,}", pct(s["semantic_hits"])),
        ("Misses (answered by the LLM)", f"{s['misses']:,}", pct(s["misses"])),
        (
            f"Hit rate, last {s['tail_questions']} questions",
            f"{s['tail_hit_rate']:.1%}",
            "(the cache warms up as it fills)",
        ),
    ]
    if s["errors"]:
        rows.append(("  of which errors/bypasses", f"{s['errors']:,}", "(served by the LLM)"))
    width = max(len(r[0]) for r in rows) + 2
    for label, value, note in rows:
        out.append(f"  {label:<{width}}{value:>8}  {note}".rstrip())
    out.append("")

    out.append(f"  {'Latency, end to end':<{width}}{'p50':>11}{'p95':>12}")
    for label, key in (
        ("cache hit", "hit"),
        ("  exact", "exact"),
        ("  semantic", "semantic"),
        ("miss (LLM call)", "miss"),
        ("  of which cache lookup", "lookup_on_miss"),
    ):
        d = lat[key]
        out.append(f"  {label:<{width}}{_ms(d['p50']):>11}{_ms(d['p95']):>12}")
    out.append("")

    saved = s["llm_calls_saved"]
    total_calls = s["llm_calls"] + saved
    money = [
        (
            "LLM calls",
            f"{s['llm_calls']:,} made, {saved:,} saved",
            f"({saved / total_calls:.1%} saved)" if total_calls else "",
        ),
        (
            "LLM wait saved (est.)",
            f"{s['llm_time_saved_s']:,.1f} s",
            "(hits x mean miss latency - hit latency)",
        ),
        (
            "Tokens saved",
            f"{s['tokens_saved']:,}",
            f"({s['input_tokens_saved']:,} input + {s['output_tokens_saved']:,} output)",
        ),
        (
            "Cost saved (estimate)",
            f"${s['usd_saved']:.4f}",
            f"of ${s['usd_saved'] + s['usd_spent']:.4f} without the cache "
            f"({s['usd_saved_share']:.1%})",
        ),
    ]
    for label, value, note in money:
        out.append(f"  {label:<{width}}{value}  {note}".rstrip())
    out.append(f"  {'':<{width}}at {s['price_note']}")
    out.append("")

    wrong = s["wrong_intent_hits"]
    out.append(
        f"  {'Wrong-intent hits':<{width}}{wrong} of {s['hits']} hits "
        f"({s['wrong_intent_share']:.1%})"
    )
    out.append(f"  {'':<{width}}(the stored question that answered has another Banking77 intent)")
    for ex in s["wrong_intent_examples"]:
        out.append(f'    asked  "{_clip(ex["asked"])}" [{ex["asked_intent"]}]')
        out.append(
            f'    served "{_clip(ex["served"])}" [{ex["served_intent"]}], '
            f"similarity {ex['similarity']:.3f}"
        )
    if s["semantic_examples"]:
        out.append("")
        out.append("  Paraphrases served, least similar first (correct intent):")
        for ex in s["semantic_examples"]:
            out.append(f'    asked  "{_clip(ex["asked"])}"')
            out.append(
                f'    served "{_clip(ex["served"])}" [{ex["served_intent"]}], '
                f"similarity {ex['similarity']:.3f}"
            )
    out.append("")
    out.append(
        f"  Ran in {s['runtime_s']:.0f} s. Try --min-similarity 0.85 (more hits, more risk) "
        "or 0.95 (fewer, safer)."
    )
    out.append(f"  {s['attribution']}")
    return "\n".join(out)
