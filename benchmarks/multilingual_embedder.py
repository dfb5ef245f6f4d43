"""The multilingual embedder beside the default (issue 19): threshold, quality, speed.

Both models in one process, on one embedded Redis, through the real ``SemanticIndex``:

* ``--calibrate``: Banking77 is split by a hash of each question into a tuning and a
  held-out half. On the tuning half, ``paracache.calibrate`` sweeps both models and
  recommends, as for ``quality.py``, the loosest threshold whose precision (guards on)
  is at least 97 % there and at every stricter threshold.
* quality (default run): on the held-out half of Banking77 each model at its own default
  threshold (guards on); the near-miss traps (``traps.jsonl``, used for tuning the guards)
  and the held-out traps, each case in its own scope; the multilingual pairs
  (``benchmarks/multilingual.py``'s run, held-out and tuning splits).
* ``--speed``: one query at a time (``embed``) and batches (``embed_many``), alternating
  the models; milliseconds per text.

    python benchmarks/multilingual_embedder.py --calibrate [--data PATH]
    python benchmarks/multilingual_embedder.py [--data PATH] [--limit N]
    python benchmarks/multilingual_embedder.py --speed [--n 200]

Data: Banking77, Casanueva et al. 2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from banking77 import BANKING77

from paracache import Scope, SemanticIndex
from paracache.calibrate import calibrate
from paracache.embedded import EmbeddedRedis
from paracache.multilingual import MultilingualE5Vectorizer
from paracache.vectorizers import MiniLMVectorizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import multilingual as pairs_bench  # noqa: E402  (benchmarks/multilingual.py)

DEFAULT_DATA = BANKING77  # see banking77.py
TRAPS = HERE / "data" / "traps.jsonl"
HELDOUT_TRAPS = HERE / "data" / "traps_heldout.jsonl"
SWEEP = tuple(round(0.80 + i / 200, 3) for i in range(40))  # 0.800 ... 0.995


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def half(rows: list[dict[str, Any]], which: str) -> list[dict[str, Any]]:
    """The tuning or held-out half of Banking77, by a hash of each question."""
    def bucket(r: dict[str, Any]) -> str:
        return "tuning" if hashlib.sha256(r["text"].encode()).digest()[0] % 2 else "heldout"

    return [r for r in rows if bucket(r) == which]


def models() -> dict[str, Any]:
    return {"MiniLM (default)": MiniLMVectorizer(), "multilingual-E5": MultilingualE5Vectorizer()}


def row(name: str, thr: float, r: Any, queries: int) -> str:
    return (f"| {name} | {thr:.3f} | {100 * r.hit_rate:.1f} % | {100 * r.precision:.1f} % | "
            f"{100 * r.correct / queries:.1f} | {100 * r.wrong / queries:.1f} |")


def run_calibrate(args: argparse.Namespace) -> None:
    rows = half(load(args.data), "tuning")
    if args.limit:
        rows = random.Random(7).sample(rows, min(args.limit, len(rows)))
    with EmbeddedRedis() as server:
        reports = {
            name: calibrate(rows, kind="clusters", redis_url=server.url, vectorizer=v,
                            thresholds=(*SWEEP, 0.9), target_precision=0.97,
                            progress=False)
            for name, v in models().items()
        }
    base = reports["MiniLM (default)"].at(0.90)
    e5 = reports["multilingual-E5"]
    print(f"Banking77 tuning half: {e5.stored} stored, {e5.queries} asked")
    print("| model | threshold | hit rate | precision | correct / 100 | wrong / 100 |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("MiniLM (default)", 0.90, base, e5.queries))
    for t in SWEEP:
        if t >= 0.93:
            print(row("multilingual-E5", t, e5.at(t), e5.queries))
    print(f"calibrate's recommendation for E5 at target precision 0.97 (quality.py's): "
          f"{e5.recommended}; MiniLM's: {reports['MiniLM (default)'].recommended}")


def traps(cache: SemanticIndex, cases: list[dict[str, Any]]) -> tuple[int, int]:
    false_hits = caught = 0
    for case in cases:
        scope = Scope(fields={"case": case["id"]})
        cache.store(case["stored"], case["id"], scope)
        false_hits += cache.lookup(case["trap"], scope) is not None
        caught += cache.lookup(case["paraphrase"], scope) is not None
    return false_hits, caught


def run_quality(args: argparse.Namespace) -> None:
    rows = half(load(args.data), "heldout")
    if args.limit:
        rows = random.Random(7).sample(rows, min(args.limit, len(rows)))
    t0 = time.perf_counter()
    print("| model | threshold | hit rate | precision | correct / 100 | wrong / 100 |")
    print("|---|---:|---:|---:|---:|---:|")
    trap_rows = []
    with EmbeddedRedis() as server:
        for name, v in models().items():
            thr = getattr(v, "default_min_similarity", 0.90)
            rep = calibrate(rows, kind="clusters", redis_url=server.url, vectorizer=v,
                            thresholds=(thr,), progress=False)
            print(row(name, thr, rep.at(thr), rep.queries))
            cache = SemanticIndex(server.url, namespace="t-" + uuid.uuid4().hex[:8],
                                  vectorizer=v, timeout=2.0)
            try:
                for label, path in (("traps (tuning)", TRAPS), ("held-out traps", HELDOUT_TRAPS)):
                    cases = load(path)
                    fh, ok = traps(cache, cases)
                    trap_rows.append(f"| {name} | {label} | {fh} / {len(cases)} | "
                                     f"{ok} / {len(cases)} |")
            finally:
                cache.clear()
                cache.close()
    print(f"\nBanking77 held-out half: {rep.stored} stored, {rep.queries} asked")
    print("\n| model | trap set | false hits | paraphrases caught |\n|---|---|---:|---:|")
    print("\n".join(trap_rows))
    for split in ("heldout", "tuning"):
        for name in ("default", "multilingual"):
            ns = argparse.Namespace(split=split, vectorizer=name, no_readability=False)
            res = pairs_bench.run(ns)
            tot: dict[str, int] = {}
            for c in res["per"].values():
                for k, n in c.items():
                    tot[k] = tot.get(k, 0) + n
            print(f"\nmultilingual pairs, {split}, vectorizer={name}: false hits "
                  f"{tot.get('false_hit', 0)} / {tot.get('diff', 0)}, paraphrases "
                  f"{tot.get('para_hit', 0)} / {tot.get('para', 0)}, repeats "
                  f"{tot.get('repeat_hit', 0)} / {tot.get('repeat', 0)}, exact-only "
                  f"{tot.get('unreadable', 0)}")
            print(pairs_bench.table(res, {r["lang"]: r["script"] for r in load(pairs_bench.PAIRS)}))
            for line in res["false_hits"]:
                print("  false hit:", line)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


def run_speed(args: argparse.Namespace) -> None:
    texts = [r["text"] for r in random.Random(3).sample(load(args.data), args.n)]
    vs = models()
    for v in vs.values():
        v.warmup()
    single: dict[str, list[float]] = {k: [] for k in vs}
    for i, text in enumerate(texts):
        for name in (list(vs) if i % 2 else list(vs)[::-1]):
            t = time.perf_counter()
            vs[name].embed(text)
            single[name].append(time.perf_counter() - t)
    batch: dict[str, float] = {}
    for name in list(vs) + list(vs)[::-1]:
        t = time.perf_counter()
        vs[name].embed_many(texts, batch_size=32)
        batch[name] = min(batch.get(name, 1e9), (time.perf_counter() - t) / len(texts))
    print(f"{args.n} Banking77 questions; single: alternating call by call; batch: "
          "embed_many(batch_size=32), best of 2 (shared 2-core machine)")
    print("| model | one query p50 | p95 | batch, per text |\n|---|---:|---:|---:|")
    for name, ts in single.items():
        ts.sort()
        print(f"| {name} | {1000 * statistics.median(ts):.1f} ms | "
              f"{1000 * ts[int(0.95 * len(ts))]:.1f} ms | {1000 * batch[name]:.2f} ms |")
    a, b = (statistics.median(single[n]) for n in vs)
    print(f"ratio E5 / MiniLM: one query {b / a:.1f}x, batch "
          f"{batch['multilingual-E5'] / batch['MiniLM (default)']:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of Banking77")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    if args.calibrate:
        run_calibrate(args)
    elif args.speed:
        run_speed(args)
    else:
        run_quality(args)


if __name__ == "__main__":
    main()
