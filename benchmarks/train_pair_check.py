"""Train the guards' learned pair check (``paracache/assets/pair_check.json``).

A logistic regression on :func:`paracache.guards.pair_features` (the embedding similarity
and the content-word overlap of two questions), trained only on tuning data, on the pairs
whose similarity lies in the band where the check decides (``--band``, 0.70-0.97: it
vouches down to :data:`paracache.guards.LEARNED_MARGIN` below the default threshold 0.90
and vetoes above it):

- Banking77 (CC BY 4.0, Casanueva et al. 2020), the tuning half of its intents
  (``pairs_eval.banking_split``; the other half is held out): each question against its
  5 nearest other questions with similarity 0.70-0.97, labelled same / different intent;
- the tuning near-miss cases (``benchmarks/data/nearmiss_tune.jsonl``, ``traps.jsonl``,
  ``traps_heldout.jsonl``): stored vs trap (different), stored vs paraphrase (same);
- the tuning duplicate-question pairs (``benchmarks/data/duplicates_tune.jsonl``).

(Until issue 14's fourth round the near-miss and duplicate pairs were taken at any
similarity: pairs far below the band, which the check never sees, pulled its weight on the
similarity up and its vouching down.)

Deterministic (full-batch Newton steps from zeros, L2 penalty; the seed only orders the
data). The decision threshold is the lowest probability whose precision on the training
pairs within ``LEARNED_MARGIN`` below the default threshold stays >= ``--precision``, unless
``--threshold`` sets it: the shipped asset uses 0.60, the loosest vouching probability (in
steps of 0.05) whose end-to-end results on the tuning split (``pairs_eval.py --split
tune``) added no near-miss or duplicate false hit and kept Banking77 precision >= 98.5 %,
with the vouching margin (``LEARNED_MARGIN``) 0.20, the bottom of the training band.

    python benchmarks/train_pair_check.py --threshold 0.60 [--write]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs_eval import BANKING, DATA, Vectors, banking_split, load

from paracache.guards import LEARNED_MARGIN, PAIR_FEATURES, pair_features
from paracache.guards.pairs import _PAIR_CHECK_PATH

SEED = 14
#: The similarities of the training pairs: where the check vouches (down to 0.70) and
#: vetoes (above the threshold).
BAND = (0.70, 0.97)


def training_pairs(vec: Vectors, band: tuple[float, float] = BAND
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, sims = [], [], []

    def add(q: str, c: str, same: bool, weight: int = 1) -> None:
        sim = float(vec(q) @ vec(c))
        if not band[0] <= sim <= band[1]:
            return  # outside the band where the check decides
        for _ in range(weight):
            xs.append(pair_features(q, c, sim))
            ys.append(float(same))
            sims.append(sim)

    rows = load(BANKING)
    tune, _held = banking_split(rows)
    part = [r for r in rows if r["intent"] in tune]
    vec.remember(r["text"] for r in part)
    mat = np.stack([vec(r["text"]) for r in part])
    for i, r in enumerate(part):
        sims_i = mat @ mat[i]
        sims_i[i] = -1
        for j in np.argsort(-sims_i)[:5]:
            if part[j]["text"].lower() != r["text"].lower():
                add(r["text"], part[j]["text"], part[j]["intent"] == r["intent"])
    cases = load(DATA / "nearmiss_tune.jsonl") + load(DATA / "traps.jsonl") + load(
        DATA / "traps_heldout.jsonl")
    dups = load(DATA / "duplicates_tune.jsonl")
    vec.remember([c[k] for c in cases for k in ("stored", "trap", "paraphrase")]
                 + [p[k] for p in dups for k in ("q1", "q2")])
    for c in cases:  # few, but of the kinds Banking77 lacks: weigh them up
        add(c["trap"], c["stored"], False, 5)
        add(c["paraphrase"], c["stored"], True, 5)
    for p in dups:
        add(p["q2"], p["q1"], p["duplicate"], 5)
    order = list(range(len(xs)))
    random.Random(SEED).shuffle(order)
    return (np.asarray(xs, dtype=np.float64)[order], np.asarray(ys)[order],
            np.asarray(sims)[order])


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 30) -> np.ndarray:
    """Logistic regression by Newton's method (bias last), L2 on the weights, the two
    classes weighed equally."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    sw = np.where(y > 0.5, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    w = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(xb @ w)))
        grad = xb.T @ (sw * (p - y)) + reg * w
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        w -= np.linalg.solve(hess, grad)
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", type=float, default=0.97)
    ap.add_argument("--threshold", type=float, default=None,
                    help="the vouching probability, instead of the one --precision picks "
                    "(0.60: chosen end to end on the tuning split with pairs_eval.py)")
    ap.add_argument("--band", type=float, nargs=2, default=BAND, metavar=("LOW", "HIGH"),
                    help="train on pairs of these similarities only")
    ap.add_argument("--veto", type=float, default=0.25,
                    help="reject candidates above the threshold below this probability")
    ap.add_argument("--write", action="store_true", help=f"write {_PAIR_CHECK_PATH}")
    args = ap.parse_args()
    vec = Vectors()
    x, y, sims = training_pairs(vec, tuple(args.band))
    w = fit(x, y)
    p = 1 / (1 + np.exp(-(np.hstack([x, np.ones((len(x), 1))]) @ w)))
    band = (sims >= 0.90 - LEARNED_MARGIN) & (sims < 0.90)
    threshold = 0.99
    for t in np.arange(0.99, 0.30, -0.01):
        chosen = band & (p >= t)
        if chosen.sum() and y[chosen].mean() >= args.precision:
            threshold = float(t)
        elif chosen.sum() > 20:
            break
    if args.threshold is not None:
        threshold = args.threshold
    chosen = band & (p >= threshold)
    print(f"{len(y)} pairs ({int(y.sum())} same); band {0.90 - LEARNED_MARGIN:.2f}-0.90: "
          f"{int(band.sum())} pairs, "
          f"vouched {int(chosen.sum())} at p >= {threshold:.2f}, precision "
          f"{y[chosen].mean() if chosen.sum() else float('nan'):.3f}, recall of same "
          f"{chosen.sum() and (y[chosen].sum() / max(1, y[band].sum())):.3f}")
    for name, weight in zip([*PAIR_FEATURES, "bias"], w, strict=True):
        print(f"  {name:18s} {weight:+.3f}")
    if args.write:
        doc = {
            "model": "logistic regression on paracache.guards.pair_features",
            "trained_by": "benchmarks/train_pair_check.py (tuning data only; Banking77 "
            "CC BY 4.0, Casanueva et al. 2020)",
            "features": list(PAIR_FEATURES),
            "weights": [round(float(v), 6) for v in w[:-1]],
            "bias": round(float(w[-1]), 6),
            "threshold": round(threshold, 2),
            "veto": args.veto,
        }
        _PAIR_CHECK_PATH.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {_PAIR_CHECK_PATH}")


if __name__ == "__main__":
    main()
