"""The error bound on a live query stream: hit rate and error rate over time.

Banking77 questions arrive one by one, shuffled, at a LangChain chat model behind
``paracache.langchain.SemanticCache``. The model is a deterministic fake that answers by
the question's intent. A served answer is *wrong* when the cached answer belongs to
another intent; the error rate is wrong served answers over all queries (the issue's
definition). Compared in the same process, on the same stream and the same Redis:

- static thresholds (a sweep; the default 0.90 with guards and corroboration among
  them), the cache as shipped;
- ``max_error_rate=δ`` for several δ, starting cold.

Run 1: the model answers every question of an intent with the same text, the default
exact judge labels. Run 2 (``--reworded``): the model rewords its answers (one of three
phrasings per question), the labels come from ``EmbeddingJudge``.

Held out: the data is split by ``--split-seed`` into a development part (30 %, which
is what the bound's constants were looked at on) and a report part (70 %) that the
reported streams are drawn from; the default seeds report streams never used while
developing. The embedder's vectors are computed once up front and handed to each
cache's memo (the same vectors it would compute), so a run measures the cache, not the
embedder; every lookup and store still goes through Redis, the guards and the bound.
The learner's queue is given the chance to catch up every ``--sync`` queries (labels
arrive within milliseconds at a few hundred queries per second, not at the thousands
this loop pushes).

    python benchmarks/online.py [--queries 7000] [--stream-seed 1] [--reworded] \
        [--plot benchmarks/online.png] [--json out.json]

Data: Banking77, Casanueva et al. 2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from banking77 import BANKING77
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import SimpleChatModel
from langchain_core.messages import BaseMessage
from pydantic import Field

from paracache import SemanticIndex, last_verdict
from paracache.bound import clopper_pearson
from paracache.embedded import EmbeddedRedis
from paracache.judge import EmbeddingJudge
from paracache.langchain import SemanticCache
from paracache.vectorizers import EmbeddingMemo, MiniLMVectorizer

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = BANKING77  # see banking77.py
STATIC = (0.76, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96)
DELTAS = (0.005, 0.01, 0.02, 0.03, 0.05)
PHRASINGS = (
    "{a}",
    "Sure, happy to help. {a}",
    "{a} Let us know if anything else comes up.",
)


def phrasing(question: str) -> int:
    """Which of :data:`PHRASINGS` the reworded fake model answers ``question`` with."""
    return zlib.crc32(question.encode()) % len(PHRASINGS)


def answer_of(intent: str, variant: int = 0) -> str:
    """The fake model's answer for an intent (``variant``: one of its phrasings)."""
    topic = intent.replace("_", " ")
    core = f"About {topic}: here is what to do for {topic} (ref {intent})."
    return PHRASINGS[variant].format(a=core)


class IntentModel(SimpleChatModel):
    """A deterministic fake chat model answering by the question's intent."""

    intents: dict[str, str] = Field(default_factory=dict)
    reworded: bool = False
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "intent-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "intent-fake", "temperature": 0}

    def _call(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        self.calls += 1
        question = str(messages[-1].content)
        variant = phrasing(question) if self.reworded else 0
        return answer_of(self.intents[question], variant)


def load(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


Rows = list[dict[str, str]]


def split(rows: Rows, seed: int) -> tuple[Rows, Rows]:
    """(development 30 %, report 70 %), duplicates of a text kept on one side."""
    texts = sorted({r["text"] for r in rows})
    random.Random(seed).shuffle(texts)
    dev = set(texts[: int(0.3 * len(texts))])
    return [r for r in rows if r["text"] in dev], [r for r in rows if r["text"] not in dev]


def stream_of(rows: Rows, seed: int, intents: float, queries: int) -> Rows:
    """The query stream: ``rows`` shuffled by ``seed``, the first ``queries`` of them; with
    ``intents`` < 1, only that share of the intents (drawn by the same seed)."""
    stream = rows[:]
    if intents < 1.0:
        names = sorted({r["intent"] for r in stream})
        kept = set(random.Random(seed).sample(names, round(intents * len(names))))
        stream = [r for r in stream if r["intent"] in kept]
    random.Random(seed).shuffle(stream)
    return stream[:queries]


def run_stream(
    url: str,
    stream: list[dict[str, str]],
    memo: EmbeddingMemo,
    *,
    threshold: float | None,
    delta: float | None,
    reworded: bool,
    judge: Any,
    sync: int,
    window: int,
    learn_seed: int | None = None,
) -> dict[str, Any]:
    """One configuration over the stream; per-query outcomes summarised."""
    options: dict[str, Any] = {"timeout": 2.0, "label_worker": True}
    if threshold is not None:
        options["min_similarity"] = threshold
    if delta is not None:
        options["max_error_rate"] = delta
        if judge is not None:
            options["judge"] = judge
    index = SemanticIndex(url, namespace="online-" + uuid.uuid4().hex[:10], **options)
    index._embedder.memo = memo  # precomputed vectors: the same the embedder gives
    if index.learner is not None and learn_seed is not None:
        index.learner.seed_exploration(learn_seed)  # reproducible exploration
    cache = SemanticCache(index)
    intents = {r["text"]: r["intent"] for r in stream}
    model = IntentModel(intents=intents, reworded=reworded, cache=cache)
    intent_of_answer = {
        answer_of(i, v): i for i in set(intents.values()) for v in range(len(PHRASINGS))
    }
    served: list[int] = []
    wrong: list[int] = []
    lookup_ms: list[float] = []
    hits: list[tuple[int, float, int]] = []  # (query, similarity, wrong) of served hits
    thresholds: list[tuple[Any, ...]] = []  # (query, threshold, E(t), upper) at each sync
    started = time.perf_counter()
    for n, row in enumerate(stream, 1):
        before = model.calls
        t0 = time.perf_counter()
        answer = model.invoke(row["text"]).content
        lookup_ms.append((time.perf_counter() - t0) * 1000)
        hit = model.calls == before
        served.append(int(hit))
        wrong.append(int(hit and intent_of_answer.get(str(answer)) != row["intent"]))
        verdict = last_verdict()
        if hit and verdict is not None and verdict.hit is not None:
            hits.append((n, round(verdict.hit.similarity, 4), wrong[-1]))
        if index.learner is not None and n % sync == 0:
            index.learner.wait_idle(60)
            learned = [d for d in index.learner._decisions.values() if d.learned]
            low = min(learned, key=lambda d: d.threshold) if learned else None
            thresholds.append(
                (n, low.threshold, low.estimate, low.upper) if low else (n, None, None, None)
            )
    seconds = time.perf_counter() - started
    learning = index.stats().learning
    records = {}
    if index.learner is not None:  # the final statistics, for offline analysis
        for key in list(index.learner._decisions):
            raw = index._admin.hgetall(key)
            records[key.rsplit(":", 1)[-1]] = {
                (k.decode() if isinstance(k, bytes) else k): (
                    v.decode() if isinstance(v, bytes) else v
                )
                for k, v in raw.items()
            }
    index.close()  # its namespace stays: the benchmark's server goes at the end
    half = len(stream) // 2
    windows = [
        (
            sum(served[i : i + window]) / len(served[i : i + window]),
            sum(wrong[i : i + window]) / len(wrong[i : i + window]),
        )
        for i in range(0, len(stream), window)
    ]
    return {
        "threshold": threshold,
        "delta": delta,
        "hit_rate": sum(served) / len(stream),
        "error_rate": sum(wrong) / len(stream),
        "half_n": len(stream) - half,
        "hit_rate_2nd": sum(served[half:]) / (len(stream) - half),
        "error_rate_2nd": sum(wrong[half:]) / (len(stream) - half),
        "windows": windows,
        "seconds": seconds,
        "learning": {k: v for k, v in learning.items() if k != "thresholds"},
        "thresholds": sorted(learning.get("thresholds", {}).values()),
        "hits": hits,
        "threshold_trace": thresholds,
        "records": records,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split-seed", type=int, default=15)
    ap.add_argument("--stream-seed", type=int, default=1)
    ap.add_argument("--queries", type=int, default=7000)
    ap.add_argument("--dev", action="store_true", help="stream the development part")
    ap.add_argument(
        "--intents", type=float, default=1.0,
        help="stream only this share of the intents (drawn by the stream seed): another "
        "mix of neighbouring topics than the one the constants were tuned on",
    )  # fmt: skip
    ap.add_argument("--reworded", action="store_true")
    ap.add_argument("--static", default=",".join(map(str, STATIC)))
    ap.add_argument("--deltas", default=",".join(map(str, DELTAS)))
    ap.add_argument(
        "--judge-similarity", type=float, default=0.85,
        help="--reworded: the embedding judge's threshold. 0.85 separates the fake model's "
        "phrasings of one answer (lowest 0.858) from other intents' answers (highest 0.889, "
        "99.9th percentile 0.812); at 0.9 it calls 11.7 %% of right answers wrong",
    )  # fmt: skip
    ap.add_argument(
        "--learn-seed", type=int, default=None,
        help="seed of the learner's exploration sampler (default: random, as in production)",
    )  # fmt: skip
    ap.add_argument(
        "--repeats", type=int, default=1,
        help="run each δ this many times (exploration seeds --learn-seed + 0, 1, ...): "
        "validity as a rate over runs, on development streams",
    )  # fmt: skip
    ap.add_argument("--sync", type=int, default=50)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    dev, report = split(load(args.data), args.split_seed)
    stream = stream_of(dev if args.dev else report, args.stream_seed, args.intents, args.queries)
    vectorizer = MiniLMVectorizer()
    server = EmbeddedRedis().start()
    probe = SemanticIndex(server.url, namespace="online-probe")
    keys = [probe.core.embed_input(probe.settings.normalizer(r["text"])) for r in stream]
    t0 = time.perf_counter()
    vectors = vectorizer.embed_many(keys, batch_size=64)
    memo = EmbeddingMemo(len(keys) + 16)
    for key, vector in zip(keys, vectors, strict=True):
        memo.put(key, vector)
    probe.close()
    judge = (
        EmbeddingJudge(vectorizer, min_similarity=args.judge_similarity) if args.reworded else None
    )
    print(
        f"Banking77: {len(stream)} queries ({'development' if args.dev else 'report'} part, "
        f"split seed {args.split_seed}, stream seed {args.stream_seed}"
        + (f", {args.intents:.0%} of the intents" if args.intents < 1.0 else "")
        + "), "
        + (
            f"reworded answers, embedding judge at {args.judge_similarity:g}"
            if args.reworded
            else "exact answers, exact judge"
        )
        + "; "
        f"embedded in {time.perf_counter() - t0:.0f} s; shared 2-core machine"
    )
    results = []
    configs: list[tuple[float | None, float | None, int | None]] = [
        (float(t), None, None) for t in args.static.split(",") if t
    ] + [
        (None, float(d), None if args.learn_seed is None else args.learn_seed + k)
        for k in range(args.repeats)
        for d in args.deltas.split(",")
        if d
    ]
    for threshold, delta, learn_seed in configs:
        r = run_stream(
            server.url, stream, memo, threshold=threshold, delta=delta,
            reworded=args.reworded, judge=judge, sync=args.sync, window=args.window,
            learn_seed=learn_seed,
        )  # fmt: skip
        results.append(r)
        r["learn_seed"] = learn_seed
        name = f"static {threshold:.2f}" if delta is None else f"delta {delta:g}"
        extra = ""
        if delta is not None:
            lr = r["learning"]
            ts = r["thresholds"]
            extra = (
                f"  labels {lr['labels']} (wrong {lr['wrong']}), explorations "
                f"{lr['explorations']} (wrong {lr['explored_wrong']} of "
                f"{lr['explored_labels']}), learned threshold {ts[0] if ts else '-'}"
            )
        print(
            f"{name:>12}: hit {r['hit_rate']:.3f} err {r['error_rate']:.4f} | 2nd half: hit "
            f"{r['hit_rate_2nd']:.3f} err {r['error_rate_2nd']:.4f} ({r['seconds']:.0f} s){extra}",
            flush=True,
        )
    server.close()
    summarise(results)
    if args.repeats > 1:
        validity(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot, args.window, args.reworded)


def best_static(static: list[dict[str, Any]], delta: float) -> dict[str, Any] | None:
    """The static run with the highest second-half hit rate whose second-half error is
    <= ``delta`` (the threshold chosen in hindsight), or ``None`` if none is."""
    under = [s for s in static if s["error_rate_2nd"] <= delta]
    return max(under, key=lambda s: s["hit_rate_2nd"], default=None)


def summarise(results: list[dict[str, Any]]) -> None:
    """The targets: 2nd-half error <= delta; hit rate against the best static threshold
    under delta (in hindsight) and against the static default. Intervals: 95 %
    Clopper-Pearson over the second half's queries."""
    static = [r for r in results if r["delta"] is None]
    default = next((r for r in static if r["threshold"] == 0.90), None)
    print(
        "\n| δ | 2nd half error [95 % CI] | ≤ δ | hit rate [95 % CI] | best static under δ "
        "(hit) | ratio | vs default 0.90 |"
    )
    print("|---:|---:|:---:|---:|---|---:|---:|")
    for r in results:
        if r["delta"] is None:
            continue
        d = r["delta"]
        n = r["half_n"]
        best = best_static(static, d)
        ratio = r["hit_rate_2nd"] / best["hit_rate_2nd"] if best else float("nan")
        vs = r["hit_rate_2nd"] / default["hit_rate_2nd"] if default else float("nan")
        e_lo, e_hi = clopper_pearson(round(r["error_rate_2nd"] * n), n)
        h_lo, h_hi = clopper_pearson(round(r["hit_rate_2nd"] * n), n)
        print(
            f"| {d:g} | {r['error_rate_2nd']:.4f} [{e_lo:.4f}, {e_hi:.4f}] "
            f"| {'yes' if r['error_rate_2nd'] <= d else 'NO'} "
            f"| {r['hit_rate_2nd']:.3f} [{h_lo:.3f}, {h_hi:.3f}] | "
            + (f"{best['threshold']:.2f} ({best['hit_rate_2nd']:.3f})" if best else "none")
            + f" | {ratio:.2f}x | {vs:.2f}x |"
        )


def validity(results: list[dict[str, Any]]) -> None:
    """With repeated runs: per δ, the share of runs whose second-half error was <= δ,
    and the mean and lowest hit-rate ratio to the best static threshold under δ."""
    static = [r for r in results if r["delta"] is None]
    deltas = sorted({r["delta"] for r in results if r["delta"] is not None})
    print("\n| δ | runs | error <= δ | errors (2nd half) | ratio mean (min) |")
    print("|---:|---:|---:|---|---:|")
    for d in deltas:
        runs = [r for r in results if r["delta"] == d]
        best = best_static(static, d)
        top = best["hit_rate_2nd"] if best else float("nan")
        ratios = [r["hit_rate_2nd"] / top for r in runs]
        ok = sum(r["error_rate_2nd"] <= d for r in runs)
        errs = ", ".join(f"{r['error_rate_2nd']:.4f}" for r in runs)
        print(
            f"| {d:g} | {len(runs)} | {ok}/{len(runs)} | {errs} | "
            f"{sum(ratios) / len(ratios):.2f}x ({min(ratios):.2f}x) |"
        )


def plot(results: list[dict[str, Any]], path: Path, window: int, reworded: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        label = f"static {r['threshold']:.2f}" if r["delta"] is None else f"δ={r['delta']:g}"
        style = "--" if r["delta"] is None else "-"
        if r["delta"] is None and r["threshold"] not in (0.86, 0.90, 0.94):
            continue
        xs = [(i + 1) * window for i in range(len(r["windows"]))]
        ax1.plot(xs, [h for h, _ in r["windows"]], style, label=label)
        ax2.plot(xs, [e for _, e in r["windows"]], style, label=label)
    ax1.set_title(f"hit rate per window of {window} queries")
    ax2.set_title("wrong answers per query, per window")
    for ax in (ax1, ax2):
        ax.set_xlabel("queries")
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(
        "Banking77 stream through LangChain: "
        + ("reworded answers, embedding judge" if reworded else "exact answers, exact judge")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
