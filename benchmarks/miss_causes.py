"""Why each wrong decision of the near-miss and duplicate sets was made (issue 14).

For every missed paraphrase, typo'd repeat and duplicate, and every served trap and
non-duplicate, at the defaults (threshold 0.90, one candidate per case as in
``pairs_eval.py``): below the corroboration margin, below the learned check's band
(0.70), in the band with the check's probability under its vouching level, in the band
with the check off (a text beyond English letters), or refused by a guard (which one;
for ``opposites`` which rule); for a wrong hit, how it got through (above the threshold,
or vouched for by a shared detail, a typo or the learned check). Counts per set.
``--routes``: how each set's duplicate-question pairs are decided, duplicates and
non-duplicates apart: served above the threshold, vouched for below it (by the learned
check, a shared detail or a typo), or refused by a guard, in the learned check's band
(0.70-0.90) or below it.

    python benchmarks/miss_causes.py [--show] [--routes]
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs_eval import DATA, Vectors, load

from paracache.guards import (
    DETAIL_MARGIN,
    LEARNED_MARGIN,
    TYPO_MARGIN,
    Guards,
    corroborates,
    features,
    same_question,
    typo_repeat,
)
from paracache.guards.check import _both_add
from paracache.guards.compare import _exclusive_sides, _lexicon_opposed, _maybe_typo
from paracache.guards.pairs import _pair_model
from paracache.policy import Normalizer

N = Normalizer()
G = Guards()
T = 0.90  # the default threshold


def cause(q: str, c: str, sim: float) -> tuple[bool, str]:
    """Whether ``q`` is served ``c``'s answer at similarity ``sim``, and why."""
    if N(q) == N(c):
        return True, "exact"
    if sim < T - 0.35:
        return False, "below 0.55"
    via = "above"
    if sim < T:
        gap = T - sim
        if gap <= TYPO_MARGIN and _maybe_typo(q, c) and typo_repeat(q, c):
            via = "typo"
        elif gap <= DETAIL_MARGIN and corroborates(q, c) and not _both_add(q, c):
            via = "detail"
        elif gap <= LEARNED_MARGIN + 1e-9 and G.vouches(q, c, sim, T):
            via = "learned"
        else:
            if gap > LEARNED_MARGIN:
                return False, "below band (<0.70)"
            p = same_question(q, c, sim)
            if p >= _pair_model()[2]:
                return False, "band, check off (non-ASCII)"
            return False, "band, p<0.60" + (" (p>=0.40)" if p >= 0.4 else "")
    g = G.check(q, c, sim)
    if g is None:
        return True, via
    if g == "opposites":
        qf, cf = features(q), features(c)
        sub = ("list" if _exclusive_sides(qf.opposites, cf.opposites) else
               "wordnet" if _lexicon_opposed(qf, cf) else "aligned")
        g = f"opposites/{sub}"
    return False, f"guard {g}"


FILES = {
    "tune": ("nearmiss_tune.jsonl", "duplicates_tune.jsonl"),
    "heldout": ("nearmiss_heldout.jsonl", "duplicates_heldout.jsonl"),
    "heldout2": ("nearmiss_heldout2.jsonl", "duplicates_heldout2.jsonl"),
    "heldout3": ("nearmiss_heldout3.jsonl", "duplicates_heldout3.jsonl"),
    "heldout4": ("nearmiss_heldout4.jsonl", "duplicates_heldout4.jsonl"),
    "heldout5": ("nearmiss_heldout5.jsonl", "duplicates_heldout5.jsonl"),
    "heldout7": ("nearmiss_heldout7.jsonl", "duplicates_heldout7.jsonl"),
}


def routes(vec: Vectors) -> None:
    """Per set, how the duplicate-question pairs are decided (see the module docstring)."""
    names = ("above", "learned", "detail", "typo", "guard", "band", "below")
    print("== duplicate pairs by route: served above / learned / detail / typo, "
          "refused by a guard / in the band / below it")
    print(f"  {'set':10s}{'duplicates':>30s}{'non-duplicates':>30s}")
    for name, (_, dpf) in FILES.items():
        dp = load(DATA / dpf)
        vec.remember([p[k] for p in dp for k in ("q1", "q2")])
        tally: dict[bool, collections.Counter[str]] = {
            True: collections.Counter(), False: collections.Counter()}
        for p in dp:
            sim = float(vec(p["q1"]) @ vec(p["q2"]))
            served, why = cause(p["q2"], p["q1"], sim)
            if served:
                route = why
            elif why.startswith(("band", "guard")):
                route = why.split()[0].rstrip(",")
            else:
                route = "below"
            tally[p["duplicate"]][route] += 1
        cells = [" ".join(str(tally[d][r]) for r in names) for d in (True, False)]
        print(f"  {name:10s}{cells[0]:>30s}{cells[1]:>30s}")


def main() -> None:
    vec = Vectors()
    if "--routes" in sys.argv:
        routes(vec)
        return
    show = "--show" in sys.argv
    tab: dict[str, collections.Counter[tuple[str, str]]] = collections.defaultdict(
        collections.Counter)

    def record(kind: str, name: str, why: str, sim: float, stored: str, asked: str) -> None:
        tab[kind][(name, why)] += 1
        if show:
            p = same_question(asked, stored, sim)
            print(f"{name:8s} {kind:10s} {why:24s} {sim:.3f} p={p:.2f} {stored!r} / {asked!r}")

    for name, (nmf, dpf) in FILES.items():
        nm, dp = load(DATA / nmf), load(DATA / dpf)
        if name == "tune":
            nm += load(DATA / "traps.jsonl") + load(DATA / "traps_heldout.jsonl")
        vec.remember([c[k] for c in nm for k in ("stored", "trap", "paraphrase", "typo") if k in c]
                     + [p[k] for p in dp for k in ("q1", "q2")])
        for c in nm:
            s = vec(c["stored"])
            for key in ("trap", "paraphrase", "typo"):
                if key in c:
                    sim = float(vec(c[key]) @ s)
                    served, why = cause(c[key], c["stored"], sim)
                    if served == (key == "trap"):
                        record(key, name, why, sim, c["stored"], c[key])
        for p in dp:
            sim = float(vec(p["q1"]) @ vec(p["q2"]))
            served, why = cause(p["q2"], p["q1"], sim)
            if served != p["duplicate"]:
                record("dup-miss" if p["duplicate"] else "dup-fh", name, why, sim, p["q1"], p["q2"])
    for kind, cnt in tab.items():
        print("==", kind)
        print(f"  {'cause':28s}" + "".join(f"{n:>9s}" for n in FILES) + "    total")
        for w in sorted({w for (_, w) in cnt}):
            row = [cnt[(n, w)] for n in FILES]
            print(f"  {w:28s}" + "".join(f"{x:9d}" for x in row) + f"{sum(row):9d}")


if __name__ == "__main__":
    main()
