"""How the default ``min_similarity`` was chosen: a threshold sweep on Banking77.

The shared Banking77 train split (10,003 real customer questions, 77 intents) is split
by a fixed seed into a half that fills the cache and a half that queries it. Each
query's nearest stored question (exact cosine KNN, the same similarity the semantic
layer computes) is a *correct* hit when both have the same intent. For each threshold
it prints the hit rate, the precision of hits and correct answers per 100 queries.

    python benchmarks/threshold_sweep.py [--data banking77_train.jsonl]  # default: see banking77.py

Data: Banking77, Casanueva et al. 2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from banking77 import BANKING77

from paracache.vectorizers import MiniLMVectorizer

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = BANKING77  # see banking77.py


def load(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sweep(
    rows: list[dict[str, str]], seed: int = 77, fill_share: float = 0.5
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Embed, split, and measure every threshold from 0.70 to 0.99."""
    rng = random.Random(seed)
    rows = rows[:]
    rng.shuffle(rows)
    cut = int(len(rows) * fill_share)
    fill, query = rows[:cut], rows[cut:]
    vec = MiniLMVectorizer()
    t0 = time.perf_counter()
    texts = [r["text"].lower() for r in rows]
    emb = np.asarray(vec.embed_many(texts, batch_size=64), dtype=np.float32)
    seconds = time.perf_counter() - t0
    f_emb, q_emb = emb[:cut], emb[cut:]
    f_int = np.array([r["intent"] for r in fill])
    q_int = np.array([r["intent"] for r in query])
    sims = q_emb @ f_emb.T
    best = sims.argmax(axis=1)
    best_sim = sims[np.arange(len(query)), best]
    correct = f_int[best] == q_int
    table = []
    for t in np.round(np.arange(0.70, 0.995, 0.01), 2):
        hit = best_sim >= t
        n_hit = int(hit.sum())
        n_ok = int((hit & correct).sum())
        table.append({
            "min_similarity": float(t),
            "hit_rate": n_hit / len(query),
            "precision": n_ok / n_hit if n_hit else 1.0,
            "correct_per_100": 100 * n_ok / len(query),
            "wrong_per_100": 100 * (n_hit - n_ok) / len(query),
        })
    info = {"fill": len(fill), "query": len(query), "embed_seconds": seconds}
    return table, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=77)
    args = ap.parse_args()
    table, info = sweep(load(args.data), seed=args.seed)
    print(f"Banking77 train: {info['fill']} stored, {info['query']} asked "
          f"(seed {args.seed}); embedded in {info['embed_seconds']:.1f} s")
    print(f"{'min_similarity':>14} {'hit rate':>9} {'precision':>10} "
          f"{'correct/100':>12} {'wrong/100':>10}")
    for row in table:
        print(f"{row['min_similarity']:>14.2f} {row['hit_rate']:>9.1%} {row['precision']:>10.1%} "
              f"{row['correct_per_100']:>12.1f} {row['wrong_per_100']:>10.1f}")


if __name__ == "__main__":
    main()
