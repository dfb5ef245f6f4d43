"""Leave-one-set-out evaluation of the learned pair check, with and without features of
the two sentence vectors (issue 14, eighth round).

Each development set (``nearmiss_K.jsonl`` with ``duplicates_K.jsonl``; the tuning set also
takes ``traps.jsonl`` and ``traps_heldout.jsonl``) is a fold. For fold K the check is trained
on every other set plus the tuning half of Banking77's intents (pairs as in
``train_pair_check.py``) and judged on set K, twice:

1. pair level, in the band where the check acts (similarity 0.70-0.97): below 0.90 it
   vouches at ``p >= t``, above it vetoes at ``p < 0.25``; ``t`` is chosen on the training
   sets only, from out-of-fold predictions (each training set predicted by a model trained
   without it): the lowest ``t`` (steps of 0.01) whose out-of-fold precision on the
   training sets' pairs of the vouching band 0.70-0.90 is >= ``--precision``;
2. end to end, in memory: ``pairs_eval.default_decide`` (the core's choice with the default
   guards) with the fold's model as the learned check, on set K's near misses and
   duplicates, and on the held-out half of Banking77's intents.

Models (``--models``): ``shipped`` (the library's own asset, not retrained: a reference,
trained on the tuning set), ``text`` (the shipped 9 features of
:func:`paracache.guards.pair_features`, raw, L2 1.0, as ``train_pair_check.py`` fits them),
``vec`` (those plus ``u*v`` and ``|u-v|`` of the two unit vectors, 768 more, standardised,
L2 ``--l2-vec``) and ``pcaR`` (the same of the vectors projected on the R directions the
training pairs differ most along). ``--diff-words`` adds 5 features of what the words one
question has and the other lacks mean (their MiniLM embeddings: see
:func:`diff_features`). ``--banking-weight`` weighs the Banking77 pairs (1.0 as shipped;
the near-miss and duplicate pairs weigh 5). ``--fixed-threshold`` skips the choice;
``--sweep`` / ``--sweep-veto`` add end-to-end runs of the same fold models at other vouching
thresholds / veto probabilities. Deterministic (Newton steps from zeros). Vectors cached in
``/tmp/i14vec-vectors.npz`` (the text paracache embeds, as ``pairs_eval.py``).

    python benchmarks/pair_check_folds.py [--models text vec] [--folds tune heldout ...]
        [--banking-weight 0.1] [--l2-vec 3000] [--precision 0.90] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs_eval import (
    BANKING,
    FILL_SEED,
    Vectors,
    banking,
    banking_split,
    default_decide,
    dev_set,
    duplicates,
    load,
    nearmiss,
)

import paracache.guards.check as guards_module  # the module that calls them
from paracache.guards import features as features_of
from paracache.guards.pairs import _pair_words
from paracache.guards.vocabulary import _STOP, _stem

FOLDS = ("tune", "heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout7",
         "heldout8")
BAND = (0.70, 0.97)
VOUCH_BAND = (0.70, 0.90)
VETO = 0.25
CASE_WEIGHT = 5.0  # as train_pair_check.py: few near-miss / duplicate pairs, weighed up


class Pairs:
    """Every pair's text features, vector features, label, weight, similarity and set."""

    def __init__(self, vec: Vectors, typos: bool = True, banking_weight: float = 1.0) -> None:
        q: list[str] = []
        c: list[str] = []
        y: list[float] = []
        w: list[float] = []
        src: list[str] = []
        rows = load(BANKING)
        tune, _held = banking_split(rows)
        part = [r for r in rows if r["intent"] in tune]
        mat = np.stack([vec(r["text"]) for r in part])
        for i, r in enumerate(part):
            sims = mat @ mat[i]
            sims[i] = -1
            for j in np.argsort(-sims)[:5]:
                if part[j]["text"].lower() != r["text"].lower():
                    q.append(r["text"])
                    c.append(part[j]["text"])
                    y.append(float(part[j]["intent"] == r["intent"]))
                    w.append(banking_weight)
                    src.append("banking")
        for name in FOLDS:
            nm, dp = dev_set(name)
            for case in nm:
                keys = [("trap", 0.0), ("paraphrase", 1.0)] + ([("typo", 1.0)] if typos else [])
                for key, label in keys:
                    if key in case:
                        q.append(case[key])
                        c.append(case["stored"])
                        y.append(label)
                        w.append(CASE_WEIGHT)
                        src.append(name)
            for p in dp:
                q.append(p["q2"])
                c.append(p["q1"])
                y.append(float(p["duplicate"]))
                w.append(CASE_WEIGHT)
                src.append(name)
        vq = np.stack([vec(t) for t in q]).astype(np.float64)
        vc = np.stack([vec(t) for t in c]).astype(np.float64)
        self.sim = np.einsum("ij,ij->i", vq, vc)
        keep = (self.sim >= BAND[0]) & (self.sim <= BAND[1])
        self.q = [t for t, k in zip(q, keep, strict=True) if k]
        self.c = [t for t, k in zip(c, keep, strict=True) if k]
        self.sim = self.sim[keep]
        self.y = np.asarray(y)[keep]
        self.w = np.asarray(w)[keep]
        self.src = np.asarray(src)[keep]
        self.text = np.asarray([(s, *_pair_words(a, b)) for a, b, s in
                                zip(self.q, self.c, self.sim, strict=True)])
        self.vq, self.vc = vq[keep], vc[keep]
        self.diff: np.ndarray | None = None

    def add_diff(self, vec: Vectors) -> None:
        """The differing words' features (see :func:`diff_features`)."""
        self.diff = np.asarray([diff_features(a, b, u, v) for a, b, u, v in
                                zip(self.q, self.c, self.vq, self.vc, strict=True)])
        self.text = np.hstack([self.text, self.diff])

    def model(self, kind: str, rows: np.ndarray, l2_vec: float) -> Model:
        return Model(kind, self.text[rows], self.vq[rows], self.vc[rows], self.y[rows],
                     self.w[rows], l2_vec)

    def prob(self, model: Model, rows: np.ndarray) -> np.ndarray:
        return model.prob_of(self.text[rows], self.vq[rows], self.vc[rows])


def diff_words(a: str, b: str) -> tuple[str, str]:
    """The content words of ``a`` missing from ``b`` and of ``b`` missing from ``a``
    (stems compared), in order, joined by spaces."""
    fa, fb = features_of(a), features_of(b)
    sa = {_stem(t) for t in fa.tokens}
    sb = {_stem(t) for t in fb.tokens}
    only_a = [t for t in fa.tokens if t not in _STOP and t.isalpha() and _stem(t) not in sb]
    only_b = [t for t in fb.tokens if t not in _STOP and t.isalpha() and _stem(t) not in sa]
    return " ".join(only_a), " ".join(only_b)


DIFF = Vectors(Path("/tmp/i14vec-diffwords.npz"))


def remember_diffs(pairs: list[tuple[str, str]]) -> None:
    """Embed (once, in batches) the differing words of these pairs."""
    DIFF.remember([t for a, b in pairs for t in diff_words(a, b) if t])


def diff_features(a: str, b: str, u: np.ndarray, v: np.ndarray) -> tuple[float, ...]:
    """What the words one question has and the other lacks mean: the cosine of their two
    embeddings, whether both sides have some, how close each side's extra words are to
    the other question (min, max), whether only one side has extra words."""
    dq, dc = diff_words(a, b)
    if dq or dc:
        DIFF.remember([t for t in (dq, dc) if t])
    zero = np.zeros(len(u))
    eq = DIFF(dq).astype(np.float64) if dq else zero
    ec = DIFF(dc).astype(np.float64) if dc else zero
    both = bool(dq) and bool(dc)
    cq, cc = float(eq @ v), float(ec @ u)
    return (float(eq @ ec), float(both), min(cq, cc) if both else 1.0,
            max(cq, cc) if both else 1.0, float(bool(dq) != bool(dc)))


def vector_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hstack([u * v, np.abs(u - v)])


def features(kind: str, text: np.ndarray, u: np.ndarray, v: np.ndarray,
             basis: np.ndarray | None = None) -> np.ndarray:
    """``text``: the 9 text features; ``vec``: and ``u*v``, ``|u-v|``; ``pcaR``: and the
    same of the two vectors projected on ``basis`` (R directions)."""
    if kind == "text":
        return text
    if kind == "vec":
        return np.hstack([text, vector_features(u, v)])
    if kind.startswith("pca"):
        assert basis is not None
        return np.hstack([text, vector_features(u @ basis, v @ basis)])
    raise ValueError(kind)


def pca_basis(u: np.ndarray, v: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` directions along which the training pairs' two vectors differ most."""
    d = np.vstack([u - v, v - u])
    _, _, vt = np.linalg.svd(d, full_matrices=False)
    return np.ascontiguousarray(vt[:rank].T)


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, reg: np.ndarray,
        steps: int = 30) -> np.ndarray:
    """Weighted logistic regression by Newton's method (bias last, unpenalised), the two
    classes weighed equally: ``train_pair_check.fit`` with sample weights instead of
    repeated rows (the same solution)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    ybar = float((w * y).sum() / w.sum())
    sw = w * np.where(y > 0.5, 0.5 / max(ybar, 1e-9), 0.5 / max(1 - ybar, 1e-9))
    r = np.append(reg, 0.0)
    beta = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(xb @ beta, -30, 30)))
        grad = xb.T @ (sw * (p - y)) + r * beta
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(r)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-7:
            break
    return beta


class Model:
    """A fitted check: standardisation of the vector features folded into the weights."""

    def __init__(self, kind: str, text: np.ndarray, u: np.ndarray, v: np.ndarray,
                 y: np.ndarray, w: np.ndarray, l2_vec: float) -> None:
        self.kind = kind
        self.basis = pca_basis(u, v, int(kind[3:])) if kind.startswith("pca") else None
        x = self.features(text, u, v)
        ntext = text.shape[1]
        self.diff = ntext > 9
        mu = np.zeros(x.shape[1])
        sd = np.ones(x.shape[1])
        if x.shape[1] > ntext:
            mu[ntext:] = x[:, ntext:].mean(0)
            sd[ntext:] = x[:, ntext:].std(0) + 1e-6
        reg = np.full(x.shape[1], 1.0)
        reg[ntext:] = l2_vec
        beta = fit((x - mu) / sd, y, w, reg)
        self.weights = beta[:-1] / sd
        self.bias = float(beta[-1] - (beta[:-1] * mu / sd).sum())
        self.threshold = 0.60
        self.veto = VETO

    def features(self, text: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return features(self.kind, text, u, v, self.basis)

    def prob_of(self, text: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        x = self.features(text, u, v)
        return 1 / (1 + np.exp(-np.clip(x @ self.weights + self.bias, -30, 30)))


def choose_threshold(p: np.ndarray, y: np.ndarray, w: np.ndarray, sim: np.ndarray,
                     precision: float) -> float:
    band = (sim >= VOUCH_BAND[0]) & (sim < VOUCH_BAND[1])
    best = 0.99
    for t in np.arange(0.99, 0.30, -0.01):
        chosen = band & (p >= t)
        if not chosen.any():
            continue
        if (w[chosen] * y[chosen]).sum() / w[chosen].sum() >= precision:
            best = float(t)
        else:
            break
    return round(best, 2)


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """The chance that a same pair scores above a different one (ties count half)."""
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    gt = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return float(gt / (len(pos) * len(neg)))


def pair_level(p: np.ndarray, y: np.ndarray, sim: np.ndarray, t: float) -> dict[str, Any]:
    vb = (sim >= VOUCH_BAND[0]) & (sim < VOUCH_BAND[1])
    hb = sim >= VOUCH_BAND[1]
    return {
        "auc_vouch": round(auc(p[vb], y[vb]), 3), "auc_veto": round(auc(p[hb], y[hb]), 3),
        "band_diff": int((vb & (y == 0)).sum()), "band_same": int((vb & (y == 1)).sum()),
        "wrong_vouch": int((vb & (y == 0) & (p >= t)).sum()),
        "right_vouch": int((vb & (y == 1) & (p >= t)).sum()),
        "above_diff": int((hb & (y == 0)).sum()), "above_same": int((hb & (y == 1)).sum()),
        "right_veto": int((hb & (y == 0) & (p < VETO)).sum()),
        "wrong_veto": int((hb & (y == 1) & (p < VETO)).sum()),
    }


@contextmanager
def learned_check(model: Model, vec: Vectors) -> Iterator[None]:
    """The guards' learned check swapped for ``model`` (this benchmark only: the library's
    ``same_question`` and ``_pair_model`` replaced for the duration)."""
    old_sq, old_pm = guards_module.same_question, guards_module._pair_model

    def same_question(query: str, candidate: str, similarity: float) -> float:
        u = vec(query).astype(np.float64)[None]
        v = vec(candidate).astype(np.float64)[None]
        row = (similarity, *_pair_words(query, candidate))
        if model.diff:
            row += diff_features(query, candidate, u[0], v[0])
        return float(model.prob_of(np.asarray([row]), u, v)[0])

    def pair_model() -> tuple[tuple[float, ...], float, float, float]:
        return (), 0.0, model.threshold, model.veto

    guards_module.same_question = same_question  # type: ignore[assignment]
    guards_module._pair_model = pair_model  # type: ignore[assignment]
    try:
        yield
    finally:
        guards_module.same_question = old_sq
        guards_module._pair_model = old_pm


def end_to_end(fold: str, vec: Vectors, bank: list[dict[str, Any]]) -> dict[str, Any]:
    nm, dp = dev_set(fold)
    decide = default_decide()
    out: dict[str, Any] = dict(nearmiss(nm, vec, decide))
    out.update(duplicates(dp, vec, decide))
    out.update({f"b77_{k}": v for k, v in banking(bank, vec, decide).items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["text", "vec"])
    ap.add_argument("--folds", nargs="+", default=list(FOLDS))
    ap.add_argument("--precision", type=float, default=0.90)
    ap.add_argument("--l2-vec", type=float, default=30.0)
    ap.add_argument("--fixed-threshold", type=float, default=None,
                    help="vouch at this probability in every fold instead of choosing it")
    ap.add_argument("--banking-weight", type=float, default=1.0)
    ap.add_argument("--no-typos", action="store_true", help="train without typo pairs")
    ap.add_argument("--sweep", type=float, nargs="*", default=[],
                    help="also the end-to-end results at these vouching thresholds")
    ap.add_argument("--sweep-veto", type=float, nargs="*", default=[],
                    help="also the end-to-end results at these veto probabilities")
    ap.add_argument("--diff-words", action="store_true",
                    help="add the differing words' embedding features to the text ones")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    vec = Vectors(Path("/tmp/i14vec-vectors.npz"))
    t0 = time.time()
    pairs = Pairs(vec, typos=not args.no_typos, banking_weight=args.banking_weight)
    if args.diff_words:
        remember_diffs(list(zip(pairs.q, pairs.c, strict=True)))
        pairs.add_diff(vec)
    print(f"{len(pairs.y)} pairs in band ({int(pairs.y.sum())} same; "
          f"{int((pairs.src == 'banking').sum())} Banking77) in {time.time() - t0:.0f} s",
          flush=True)
    rows = load(BANKING)
    _tune, held = banking_split(rows)
    bank = [r for r in rows if r["intent"] in held]
    if args.diff_words:  # the differing words of every pair the end-to-end runs compare
        shuffled = list(bank)
        random.Random(FILL_SEED).shuffle(shuffled)
        cut = len(shuffled) // 2
        fill, ask = shuffled[:cut], shuffled[cut:]
        mat = np.stack([vec(r["text"]) for r in fill])
        todo = []
        for r in ask:
            for i in np.argsort(-(mat @ vec(r["text"])))[:4]:
                todo.append((r["text"], fill[i]["text"]))
        for fold in FOLDS:
            nm, dp = dev_set(fold)
            todo += [(c[k], c["stored"]) for c in nm for k in ("trap", "paraphrase", "typo")
                     if k in c]
            todo += [(p["q2"], p["q1"]) for p in dp]
        remember_diffs(todo)
    results: dict[str, Any] = {}
    for kind in args.models:
        for fold in args.folds:
            t1 = time.time()
            if kind == "shipped":  # the library's own asset, trained on the tuning set
                results[f"{kind}/{fold}"] = {"e2e": end_to_end(fold, vec, bank)}
                print(kind, fold, f"{time.time() - t1:.0f} s",
                      json.dumps(results[f"{kind}/{fold}"]), flush=True)
                continue
            test = pairs.src == fold
            train = ~test
            # out-of-fold predictions on the training sets, for the threshold
            oof = np.full(len(pairs.y), np.nan)
            for other in FOLDS:
                if other == fold or args.fixed_threshold is not None:
                    continue
                inner = train & (pairs.src != other)
                m = pairs.model(kind, inner, args.l2_vec)
                sel = pairs.src == other
                oof[sel] = pairs.prob(m, sel)
            cases = train & (pairs.src != "banking") & ~np.isnan(oof)
            t = choose_threshold(oof[cases], pairs.y[cases], pairs.w[cases], pairs.sim[cases],
                                 args.precision)
            if args.fixed_threshold is not None:
                t = args.fixed_threshold
            model = pairs.model(kind, train, args.l2_vec)
            model.threshold = t
            p = pairs.prob(model, test)
            res: dict[str, Any] = {"threshold": t,
                                   "pairs": pair_level(p, pairs.y[test], pairs.sim[test], t)}
            if not args.no_e2e:
                with learned_check(model, vec):
                    res["e2e"] = end_to_end(fold, vec, bank)
            for swept in args.sweep:  # the same fold's model at other vouching thresholds
                model.threshold = swept
                with learned_check(model, vec):
                    res[f"e2e@{swept:.2f}"] = end_to_end(fold, vec, bank)
            model.threshold = t
            for veto in args.sweep_veto:  # and at other veto probabilities
                model.veto = veto
                with learned_check(model, vec):
                    res[f"e2e@{t:.2f}v{veto:.2f}"] = end_to_end(fold, vec, bank)
            model.veto = VETO
            results[f"{kind}/{fold}"] = res
            print(kind, fold, f"{time.time() - t1:.0f} s", json.dumps(res), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
