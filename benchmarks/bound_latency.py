"""Does the error bound slow lookups down? Static mode against ``max_error_rate``, side by side.

Two caches on **one store**: two ``SemanticIndex`` objects on the same Redis, the same
namespace and the same embedder, one of them with ``max_error_rate`` (so both search
exactly the same entries). The learning one first sees traffic and labels (lookups of
other questions, each followed by its answer through ``store``, which both then hold), so
its scope has a learned threshold. Then paraphrase lookups alternate between the two,
query by query, and the latency of each is recorded (``SemanticIndex.lookup_verdict``,
end to end in the calling thread; query vectors precomputed into the shared memo so the
embedder's time does not drown the difference). Prints p50/p95/p99 per mode, per
outcome, and the p50 difference.

(The first version gave each mode its own namespace; the learning one had 1,500 more
entries, its teaching stores, and a higher hit rate, so its +0.26 ms measured a bigger
store as much as the bound.)

    python benchmarks/bound_latency.py [--entries 2000] [--lookups 3000] [--teach 1500]

Data: Banking77, Casanueva et al. 2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from pathlib import Path

from banking77 import BANKING77

from paracache import Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis
from paracache.vectorizers import EmbeddingMemo, MiniLMVectorizer

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = BANKING77  # see banking77.py


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--lookups", type=int, default=3000)
    ap.add_argument("--delta", type=float, default=0.03)
    ap.add_argument("--teach", type=int, default=1500)
    args = ap.parse_args()
    rows = [json.loads(x) for x in args.data.read_text(encoding="utf-8").splitlines() if x]
    random.Random(3).shuffle(rows)
    stored, asked = rows[: args.entries], rows[args.entries : args.entries + args.lookups]
    teach = rows[args.entries + args.lookups :][: args.teach]
    server = EmbeddedRedis().start()
    vectorizer = MiniLMVectorizer()
    ns = f"lat-{uuid.uuid4().hex[:8]}"
    static = SemanticIndex(server.url, namespace=ns, timeout=1.0)
    bound = SemanticIndex(server.url, namespace=ns, timeout=1.0, max_error_rate=args.delta)
    scope = Scope(model="m", params={"temperature": 0})
    used = stored + asked + teach
    keys = [static.core.embed_input(static.settings.normalizer(r["text"])) for r in used]
    memo = EmbeddingMemo(len(keys) + 16)
    for key, vector in zip(keys, vectorizer.embed_many(keys, batch_size=64), strict=True):
        memo.put(key, vector)
    for index in (static, bound):
        index._embedder.memo = memo
    static.warm(((r["text"], r["intent"]) for r in stored), scope, progress=False)
    # Teach the learning cache: lookups of other questions, each followed by its answer
    # (stored in the shared namespace: both caches then hold the same entries).
    assert bound.learner is not None
    for r in teach:
        bound.lookup_verdict(r["text"], scope)
        bound.store(r["text"], r["intent"], scope)
    bound.learner.wait_idle(120)
    learned = bound.stats().learning["thresholds"]
    entries = static.count()
    times: dict[str, list[float]] = {"static": [], "bound": []}
    outcomes: dict[tuple[str, str], list[float]] = {}
    hits = {"static": 0, "bound": 0}
    for i, r in enumerate(asked):
        order = (("static", static), ("bound", bound))
        for name, index in order if i % 2 else order[::-1]:
            t0 = time.perf_counter()
            verdict = index.lookup_verdict(r["text"], scope)
            ms = (time.perf_counter() - t0) * 1000
            times[name].append(ms)
            outcomes.setdefault((name, verdict.outcome), []).append(ms)
            hits[name] += verdict.hit is not None
    print(
        f"{entries} entries (one store for both), {len(asked)} lookups per mode alternating, "
        f"learned threshold {sorted(learned.values())} at δ={args.delta} (static 0.90); "
        "shared 2-core machine"
    )
    print(f"{'mode':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean':>8} {'hit rate':>9}")
    for name, values in times.items():
        print(
            f"{name:>7} {pct(values, 0.5):8.3f} {pct(values, 0.95):8.3f} "
            f"{pct(values, 0.99):8.3f} {statistics.fmean(values):8.3f} "
            f"{hits[name] / len(asked):9.1%}"
        )
    for (name, outcome), values in sorted(outcomes.items()):
        if len(values) >= 20:
            p50 = pct(values, 0.5)
            print(f"{name:>7} {outcome:>9}: {len(values):5d} lookups, p50 {p50:.3f} ms")
    diff = pct(times["bound"], 0.5) - pct(times["static"], 0.5)
    print(f"p50 difference (bound - static): {diff:+.3f} ms")
    static.close()
    bound.clear()
    bound.close()
    server.close()


if __name__ == "__main__":
    main()
