"""Vouching-only variants of the learned pair check, in memory (issue 14, eighth round).

The library's pair check does two things: below the threshold it *vouches* (p >= its
vouching probability) and above it it *vetoes* (p < its veto probability). This benchmark
swaps only the vouching side, in memory, for the duration of a run: the veto stays the
shipped asset's. Variants (``--variants``):

* ``S``: the shipped check (no swap);
* ``V``: vouching by another check (``--retrained``, a ``pair_check.json``) at its own
  vouching probability;
* ``V+``: ``V``, and the learned check never vouches for a pair with no content word in
  common (``_pair_words(q, c)[0] == 0``);
* ``E``: either check vouches (the shipped one at its probability or the other at its
  own), with the ``V+`` rule.
* ``E@M`` (e.g. ``E@0.10``): ``E``, but the other check vouches only within ``M`` below the
  threshold (scaled for a stricter threshold as the library's margins are); the ``V+``
  rule binds the other check only (the shipped one vouches as it does in ``S``).

Measured as ``pair_check_folds.py`` does (``pairs_eval.default_decide``): near misses and
duplicates of the sets named (``--judge``, ``--reference``; each a list pooled), the
held-out half of Banking77's intents, the near-verbatim rewordings of
``rewordings.rewording_pairs`` (Banking77 with every near-miss set's stored questions,
one stored candidate each) and the pair "one" / "two". :func:`variant` is also what a
pytest plugin needs to run the suite with a variant in place.

    python benchmarks/vouch_variants.py --retrained PAIR_CHECK.json [--variants S V V+ E]
        [--judge heldout9 heldout10] [--reference heldout7 heldout8] [--json OUT]
        [--per-set]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs_eval import (
    BANKING,
    Vectors,
    banking,
    banking_split,
    default_decide,
    dev_set,
    duplicates,
    load,
    nearmiss,
)
from rewordings import rewording_pairs

import paracache.guards.check as guards_module  # the module that calls them
from paracache.guards import Guards
from paracache.guards.pairs import _pair_probability, _pair_words

VARIANTS = ("S", "V", "V+", "E")
SETS = ("tune", "heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout7",
        "heldout8", "heldout9", "heldout10")


def _prob(model: dict[str, Any], query: str, candidate: str, similarity: float) -> float:
    return _pair_probability(model["weights"], model["bias"], query, candidate, similarity)


def narrowed(name: str) -> float | None:
    """The other check's margin of an ``E@M`` variant, else ``None``."""
    if not name.startswith("E@"):
        return None
    return float(name[2:])


@contextmanager
def variant(name: str, retrained: dict[str, Any]) -> Iterator[None]:
    """The guards' vouching swapped for variant ``name`` (see the module docstring) for
    the duration; the veto (and every other use of ``same_question``) stays the shipped
    check's. ``Guards.vouches`` marks its calls so ``same_question`` knows which side asks;
    inside them it answers 1.0 (vouch) or 0.0 against the shipped vouching probability."""
    if name == "S":
        yield
        return
    margin = narrowed(name)
    if name not in VARIANTS and margin is None:
        raise ValueError(name)
    shipped_sq = guards_module.same_question
    shipped_vouches = Guards.__dict__["vouches"]
    inside = threading.local()

    def vouches(query: str, candidate: str, similarity: float, threshold: float,
                learned: bool = True) -> bool:
        inside.depth = getattr(inside, "depth", 0) + 1
        inside.threshold = threshold
        try:
            return bool(shipped_vouches.__func__(query, candidate, similarity, threshold,
                                                 learned))
        finally:
            inside.depth -= 1

    def same_question(query: str, candidate: str, similarity: float) -> float:
        shipped = shipped_sq(query, candidate, similarity)
        if not getattr(inside, "depth", 0):
            return shipped
        if margin is not None:
            threshold = inside.threshold
            scale = min(1.0, max(0.0, 1.0 - threshold) / 0.10) ** 2
            ok = (threshold - similarity - 1e-9 <= margin * scale
                  and _pair_words(query, candidate)[0] > 0
                  and _prob(retrained, query, candidate, similarity) >= retrained["threshold"])
            return 1.0 if ok or shipped >= guards_module._pair_model()[2] else 0.0
        ok = _prob(retrained, query, candidate, similarity) >= retrained["threshold"]
        if name == "E":
            ok = ok or shipped >= guards_module._pair_model()[2]
        if name in ("V+", "E") and _pair_words(query, candidate)[0] == 0:
            ok = False
        return 1.0 if ok else 0.0

    guards_module.same_question = same_question  # type: ignore[assignment]
    Guards.vouches = staticmethod(vouches)  # type: ignore[method-assign]
    try:
        yield
    finally:
        guards_module.same_question = shipped_sq
        Guards.vouches = shipped_vouches  # type: ignore[method-assign]


def nearmiss_sets(names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nm: list[dict[str, Any]] = []
    dp: list[dict[str, Any]] = []
    for name in names:
        cases, pairs = dev_set(name)
        nm += cases
        dp += pairs
    return nm, dp


def measure(names: list[str], vec: Vectors) -> dict[str, tuple[int, int]]:
    nm, dp = nearmiss_sets(names)
    decide = default_decide()
    got = nearmiss(nm, vec, decide)
    d = duplicates(dp, vec, decide)
    return {"false_hits": got["trap:all"], "antonym": got.get("trap:antonym", (0, 0)),
            "paraphrases": got["paraphrase"], "typos": got["typo"],
            "dup_false_hits": d["false_hits"], "dup_recall": d["recall"]}


def served(pairs: dict[str, list[tuple[str, str]]], vec: Vectors) -> dict[str, tuple[int, int]]:
    decide = default_decide()
    out = {}
    for rule, ps in pairs.items():
        hits = sum(decide(asked, [(float(vec(asked) @ vec(stored)), stored, "a")]) is not None
                   for stored, asked in ps)
        out[rule] = (hits, len(ps))
    out["all"] = (sum(v[0] for v in out.values()), sum(v[1] for v in out.values()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--retrained", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--judge", nargs="+", default=["heldout9", "heldout10"])
    ap.add_argument("--reference", nargs="+", default=["heldout7", "heldout8"])
    ap.add_argument("--vectors", type=Path, default=Path("/tmp/i14vouch-vectors.npz"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--per-set", action="store_true",
                    help="also measure each set of --judge and --reference alone")
    args = ap.parse_args()
    retrained = json.loads(args.retrained.read_text(encoding="utf-8"))
    vec = Vectors(args.vectors)
    rows = load(BANKING)
    _tune, held = banking_split(rows)
    bank = [r for r in rows if r["intent"] in held]
    stored = [c["stored"] for c in nearmiss_sets(list(SETS))[0]]
    reworded = rewording_pairs([r["text"] for r in rows] + stored)
    texts = [r["text"] for r in rows] + [t for ps in reworded.values() for p in ps for t in p]
    for names in (args.judge, args.reference):
        nm, dp = nearmiss_sets(names)
        texts += [c[k] for c in nm for k in ("stored", "trap", "paraphrase", "typo") if k in c]
        texts += [p[k] for p in dp for k in ("q1", "q2")]
    vec.remember([*texts, "one", "two"])
    results: dict[str, Any] = {}
    for name in args.variants:
        t0 = time.time()
        with variant(name, retrained):
            sim = float(vec("two") @ vec("one"))
            r = {"judge": measure(args.judge, vec), "reference": measure(args.reference, vec),
                 "b77_held": banking(bank, vec, default_decide()),
                 "rewordings": served(reworded, vec),
                 "one_two": (int(default_decide()("two", [(sim, "one", "a")]) is not None), 1)}
            if args.per_set:
                r["sets"] = {s: measure([s], vec) for s in [*args.judge, *args.reference]}
        results[name] = r
        print(name, f"{time.time() - t0:.0f} s", json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
