"""Fast in-process evaluation of the guards' decisions (development and training aid).

Models the semantic layer's choice in memory, as the core makes it: the in-scope
candidates most similar first, down to ``min_similarity`` less the corroboration margin
(those below the threshold served only when the ``corroborate`` hook vouches for them),
the first that the ``accept`` hook passes wins. Vectors are the embedder's (the text
paracache embeds), computed once and kept in an ``.npz`` cache. ``benchmarks/quality.py``
measures the same data through the real index; this one is for quick iterations and for
``benchmarks/train_pair_check.py``.

    python benchmarks/pairs_eval.py [--split tune|heldout|both|heldout2|...|heldout7|all]
                                    [--no-banking] [--all-banking] [--show]
    python benchmarks/pairs_eval.py --files NEARMISS.jsonl DUPLICATES.jsonl [--show]

``heldout2`` to ``heldout5`` and ``heldout7`` are the sets written blind (no Banking77 part);
``--all-banking`` adds issue 13's measure: all of Banking77 in 20 folds, each question
asked once against the other 95 % (4 nearest candidates, answers of their own).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from banking77 import BANKING77

from paracache.calibrate import wilson_interval as wilson
from paracache.core import DEFAULT_CORROBORATION_MARGIN, Settings
from paracache.guards import Guards, neighbours_disagree
from paracache.policy import Normalizer

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
BANKING = BANKING77  # see banking77.py
NORMALIZE = Normalizer()
INTENT_SEED = 14  # Banking77's intents split into tuning and held-out halves
FILL_SEED = 77


SETTINGS = Settings()


def embed_key(text: str) -> str:
    """The text paracache embeds for a prompt (normalised, pleasantries stripped, typos
    corrected)."""
    return SETTINGS.embed_text(NORMALIZE(text))


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def dev_set(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Development set ``name``'s near-miss cases and duplicate pairs
    (``nearmiss_<name>.jsonl``, ``duplicates_<name>.jsonl``); ``tune`` also takes the trap
    files (``traps.jsonl``, ``traps_heldout.jsonl``)."""
    nm = load(DATA / f"nearmiss_{name}.jsonl")
    if name == "tune":
        nm += load(DATA / "traps.jsonl") + load(DATA / "traps_heldout.jsonl")
    return nm, load(DATA / f"duplicates_{name}.jsonl")


class Vectors:
    """Unit vectors of the text paracache embeds, computed once (cached on disk)."""

    def __init__(self, cache: Path = Path("/tmp/i14/vectors.npz")) -> None:
        self.cache = cache
        self.table: dict[str, np.ndarray] = {}
        if cache.exists():
            with np.load(cache) as z:
                for k, v in zip(z["keys"], z["vecs"], strict=True):
                    self.table[str(k)] = v
        self._vec: Any = None

    def remember(self, texts: Iterable[str]) -> None:
        keys = sorted({embed_key(t) for t in texts} - set(self.table))
        if not keys:
            return
        if self._vec is None:
            from paracache.vectorizers import MiniLMVectorizer

            self._vec = MiniLMVectorizer()
        out = self._vec._embed_many(keys, 64)
        for k, v in zip(keys, out, strict=True):
            a = np.asarray(v, dtype=np.float32)
            self.table[k] = a / np.linalg.norm(a)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        ks = list(self.table)
        np.savez(self.cache, keys=np.asarray(ks), vecs=np.stack([self.table[k] for k in ks]))

    def __call__(self, text: str) -> np.ndarray:
        return self.table[embed_key(text)]


Decide = Callable[[str, list[tuple[float, str, str]]], tuple[float, str, str] | None]


def default_decide(threshold: float = 0.90, margin: float = DEFAULT_CORROBORATION_MARGIN,
                   guards: Guards | None = None) -> Decide:
    """The core's choice with paracache's hooks (see the module docstring)."""
    g = guards if guards is not None else Guards()

    def decide(query: str, cands: list[tuple[float, str, str]]) -> tuple[float, str, str] | None:
        if any(NORMALIZE(query) == NORMALIZE(p) for _, p, _ in cands):
            return next(c for c in cands if NORMALIZE(query) == NORMALIZE(c[1]))  # exact layer
        for c in sorted(cands, key=lambda c: -c[0]):
            sim, prompt, _ = c
            if sim < threshold - margin:
                break
            if sim < threshold and not g.vouches(query, prompt, sim, threshold, g.learned):
                continue
            if g.check(query, prompt, sim) is None:
                others = [o for o in cands if o is not c and g.check(query, o[1], o[0]) is None]
                if g.neighbours and neighbours_disagree(c, others, threshold):
                    return None
                return c
        return None

    return decide


def nearmiss(cases: list[dict[str, Any]], vec: Vectors, decide: Decide,
             show: bool = False) -> dict[str, tuple[int, int]]:
    """Per kind: (hits, cases) for traps, paraphrases and typo'd repeats."""
    out: dict[str, list[int]] = {}
    for c in cases:
        s = vec(c["stored"])
        for key in ("trap", "paraphrase", "typo"):
            if key not in c:
                continue
            sim = float(vec(c[key]) @ s)
            hit = decide(c[key], [(sim, c["stored"], c["id"])]) is not None
            tag = f"trap:{c['kind']}" if key == "trap" else key
            for t in ({tag, "trap:all"} if key == "trap" else {tag}):
                out.setdefault(t, [0, 0])
                out[t][0] += hit
                out[t][1] += 1
            wrong = hit if key == "trap" else not hit
            if show and wrong:
                print(f"  {key:10s} {sim:.3f} {c['stored']!r} / {c[key]!r}")
    return {k: (v[0], v[1]) for k, v in out.items()}


def duplicates(pairs: list[dict[str, Any]], vec: Vectors, decide: Decide,
               show: bool = False) -> dict[str, tuple[int, int]]:
    fh, nd, rec, dup = 0, 0, 0, 0
    for p in pairs:
        sim = float(vec(p["q1"]) @ vec(p["q2"]))
        hit = decide(p["q2"], [(sim, p["q1"], p["id"])]) is not None
        if p["duplicate"]:
            dup += 1
            rec += hit
        else:
            nd += 1
            fh += hit
        if show and hit != p["duplicate"]:
            print(f"  dup={p['duplicate']!s:5s} {sim:.3f} {p['q1']!r} / {p['q2']!r}")
    return {"false_hits": (fh, nd), "recall": (rec, dup)}


def banking_split(rows: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    intents = sorted({r["intent"] for r in rows})
    random.Random(INTENT_SEED).shuffle(intents)
    half = len(intents) // 2
    return set(intents[:half]), set(intents[half:])


def banking(rows: list[dict[str, Any]], vec: Vectors, decide: Decide, top_k: int = 4,
            show: int = 0) -> dict[str, tuple[int, int]]:
    shuffled = list(rows)
    random.Random(FILL_SEED).shuffle(shuffled)
    cut = len(shuffled) // 2
    fill, ask = shuffled[:cut], shuffled[cut:]
    mat = np.stack([vec(r["text"]) for r in fill])
    hits = correct = 0
    shown = 0
    for r in ask:
        sims = mat @ vec(r["text"])
        top = np.argsort(-sims)[:top_k]
        # each stored question has its own answer (an LLM's answers all differ): the
        # intent as the answer would tell the neighbours guard which neighbours agree
        cands = [(float(sims[i]), fill[i]["text"], f"{fill[i]['intent']}#{i}") for i in top]
        got = decide(r["text"], cands)
        if got is not None:
            hits += 1
            intent = got[2].rpartition("#")[0]
            correct += intent == r["intent"]
            if intent != r["intent"] and shown < show:
                shown += 1
                print(f"  {got[0]:.3f} {r['text']!r} ({r['intent']}) <- {got[1]!r} ({intent})")
    return {"precision": (correct, hits), "answered": (correct, len(ask))}


def banking_folds(rows: list[dict[str, Any]], vec: Vectors, decide: Decide, folds: int = 20,
                  top_k: int = 4) -> dict[str, tuple[int, int]]:
    """All of Banking77 in ``folds`` folds (seed 13): each question asked once, against the
    questions of the other folds, each stored with an answer of its own."""
    shuffled = list(rows)
    random.Random(13).shuffle(shuffled)
    hits = correct = 0
    for f in range(folds):
        ask = shuffled[f::folds]
        fill = [r for i, r in enumerate(shuffled) if i % folds != f]
        mat = np.stack([vec(r["text"]) for r in fill])
        for r in ask:
            sims = mat @ vec(r["text"])
            top = np.argpartition(-sims, top_k)[:top_k]
            top = top[np.argsort(-sims[top])]
            cands = [(float(sims[i]), fill[i]["text"], f"{fill[i]['intent']}#{i}") for i in top]
            got = decide(r["text"], cands)
            if got is not None:
                hits += 1
                correct += got[2].rpartition("#")[0] == r["intent"]
    return {"hits": (hits, len(rows)), "precision": (correct, hits)}


def fmt(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / max(n, 1):5.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] ({k}/{n})"


def report(split: str, vec: Vectors, decide: Decide, with_banking: bool, show: bool,
           files: tuple[Path, Path] | None = None) -> None:
    nm = load(files[0] if files else DATA / f"nearmiss_{split}.jsonl")
    if split == "tune":
        nm += [dict(c, domain="traps") for c in
               load(DATA / "traps.jsonl") + load(DATA / "traps_heldout.jsonl")]
    dp = load(files[1] if files else DATA / f"duplicates_{split}.jsonl")
    vec.remember([c[k] for c in nm for k in ("stored", "trap", "paraphrase", "typo") if k in c]
                 + [p[k] for p in dp for k in ("q1", "q2")])
    print(f"== {split}")
    for k, (h, n) in sorted(nearmiss(nm, vec, decide, show).items()):
        print(f"  near-miss {k:18s} {fmt(h, n)}")
    d = duplicates(dp, vec, decide, show)
    print(f"  duplicates false hits   {fmt(*d['false_hits'])}")
    print(f"  duplicates recall       {fmt(*d['recall'])}")
    if with_banking and split in ("tune", "heldout"):
        rows = load(BANKING)
        tune, held = banking_split(rows)
        part = [r for r in rows if r["intent"] in (tune if split == "tune" else held)]
        vec.remember(r["text"] for r in rows)
        b = banking(part, vec, decide, show=20 if show else 0)
        print(f"  banking77 precision     {fmt(*b['precision'])}")
        print(f"  banking77 answered      {fmt(*b['answered'])}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="tune",
                    choices=["tune", "heldout", "both", "heldout2", "heldout3", "heldout4",
                             "heldout5", "heldout7", "all"])
    ap.add_argument("--no-banking", action="store_true")
    ap.add_argument("--all-banking", action="store_true",
                    help="all of Banking77 in 20 folds (issue 13's hit rate)")
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--files", nargs=2, type=Path, metavar=("NEARMISS", "DUPLICATES"),
                    help="measure this near-miss file and duplicates file (any path) instead")
    args = ap.parse_args()
    vec = Vectors()
    decide = default_decide()
    if args.files:
        report(args.files[0].stem, vec, decide, False, args.show, tuple(args.files))
        return
    every = ["tune", "heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout7"]
    splits = {"both": ["tune", "heldout"], "all": every}.get(args.split, [args.split])
    for split in splits:
        report(split, vec, decide, not args.no_banking, args.show)
    if args.all_banking:
        rows = load(BANKING)
        vec.remember(r["text"] for r in rows)
        b = banking_folds(rows, vec, decide)
        print("== all of Banking77, 20 folds")
        print(f"  banking77 hits          {fmt(*b['hits'])}")
        print(f"  banking77 precision     {fmt(*b['precision'])}")


if __name__ == "__main__":
    main()
