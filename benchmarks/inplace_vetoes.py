"""Near misses served above the threshold, and the in-place vetoes (issue 14, branch i14veto2).

In memory, with ``pairs_eval.default_decide`` (the core's choice with the default guards,
the path ``pair_check_folds.py`` checked against ``quality.py``), on every development
set (tuning with both trap files, held-out 1-5 and 7-10; each a fold):

* ``--served``: the near-miss traps and non-duplicates served, at or above the threshold,
  with the words that differ;
* ``--hypothesis``: pairs whose only difference is one content word substituted for
  another that is not its stem, typo or WordNet kin (:func:`one_substitution`), per fold:
  how many are traps (near-miss traps and non-duplicates), how many right repeats, and
  how many of the near-miss traps served and of the right repeats served it matches
  (run it with main's library on ``PYTHONPATH`` for main's decisions);
* ``--ablate``: each new rule of the guards (``RULES``) switched off in turn, against the
  guards as they are: per fold the near-miss / duplicate decisions it changes, and what it
  changes on Banking77 (both intent halves), on the near-verbatim rewordings
  (``rewordings.rewording_pairs``) and on Banking77's nearest neighbours (each question
  against its 3 nearest others at similarity >= 0.80: pairs newly refused, same or
  different intent).

    python benchmarks/inplace_vetoes.py [--served] [--hypothesis] [--ablate]
        [--vectors /tmp/i14veto2-vectors.npz] [--json OUT]
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs_eval import BANKING, Vectors, banking, banking_split, default_decide, dev_set, load
from rewordings import rewording_pairs

import paracache.guards as G
from paracache.guards import features
from paracache.guards.edits import _edited, _kin, _typo_like
from paracache.guards.vocabulary import _STOP, _stem

SETS = ("tune", "heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout7",
        "heldout8", "heldout9", "heldout10")
THRESHOLD = 0.90

#: Each new rule and how to switch it off (the function, and its stand-in).
RULES: dict[str, tuple[str, Callable[..., Any]]] = {
    "number replaced in place": ("_number_replaced", lambda a, b: False),
    "opposite in place": ("_replaced_by_opposite", lambda a, b: False),
    "roles swapped": ("_roles_swapped", lambda a, b: False),
    "avoiding verb": ("_avoidance_added", lambda a, b: False),
    "one word for two or three": ("_widened", lambda ca, cb, words: "large"),
    "a borrowed accented word": ("_english_letters", lambda t: all(x.isascii() for x in t)),
}


def pairs(name: str) -> list[dict[str, Any]]:
    """Set ``name``'s pairs: (kind, stored, asked, same)."""
    nm, dp = dev_set(name)
    out = [{"kind": k, "sub": c.get("kind"), "stored": c["stored"], "asked": c[k],
            "same": k != "trap"} for c in nm for k in ("trap", "paraphrase", "typo") if k in c]
    out += [{"kind": "dup" if p["duplicate"] else "nondup", "sub": None, "stored": p["q1"],
             "asked": p["q2"], "same": bool(p["duplicate"])} for p in dp]
    return out


def decisions(vec: Vectors) -> dict[tuple[str, int], bool]:
    decide = default_decide()
    out = {}
    for name in SETS:
        for i, p in enumerate(pairs(name)):
            sim = float(vec(p["asked"]) @ vec(p["stored"]))
            out[(name, i)] = decide(p["asked"], [(sim, p["stored"], "x")]) is not None
    return out


def differing(a: str, b: str) -> str:
    ta, tb = features(a).tokens, features(b).tokens
    ops = difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
    return " ".join(f"[{' '.join(ta[i1:i2])} -> {' '.join(tb[j1:j2])}]"
                    for op, i1, i2, j1, j2 in ops if op != "equal")


def one_substitution(query: str, candidate: str) -> bool:
    """The brief's first hypothesis: the same words but one content word substituted for
    another that is not its stem, a typo of it or its WordNet kin."""
    a, b = features(query).tokens, features(candidate).tokens
    if len(a) != len(b) or len(a) < 3:
        return False
    differ = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(differ) != 1:
        return False
    x, y = differ[0]
    if not (x.isalpha() and y.isalpha()) or x in _STOP or y in _STOP:
        return False
    return not (_stem(x) == _stem(y) or _typo_like(x, y) or _kin(x, y))


def served(vec: Vectors) -> None:
    hits = decisions(vec)
    for name in SETS:
        for i, p in enumerate(pairs(name)):
            sim = float(vec(p["asked"]) @ vec(p["stored"]))
            if hits[(name, i)] and not p["same"] and sim >= THRESHOLD:
                print(f"{name:9s} {p['kind']:6s} {p['sub'] or '':8s} {sim:.3f} "
                      f"{differing(p['stored'], p['asked'])}\n    {p['stored']}\n    {p['asked']}")


def hypothesis(vec: Vectors) -> dict[str, Any]:
    hits = decisions(vec)
    out = {}
    for name in SETS:
        row = {"traps": 0, "right": 0, "served traps": 0, "served traps matched": 0,
               "served right matched": 0}
        for i, p in enumerate(pairs(name)):
            match = one_substitution(p["asked"], p["stored"])
            row["right" if p["same"] else "traps"] += match
            if hits[(name, i)] and p["kind"] == "trap":
                row["served traps"] += 1
                row["served traps matched"] += match
            if hits[(name, i)] and p["same"]:
                row["served right matched"] += match
        out[name] = row
        print(name, json.dumps(row))
    return out


def ablate(vec: Vectors) -> dict[str, Any]:
    rows = load(BANKING)
    texts = [r["text"] for r in rows]
    mat = np.stack([vec(t) for t in texts])
    near = []
    for i in range(len(rows)):
        sims = mat @ mat[i]
        sims[i] = -1
        near += [(i, int(j), float(sims[j])) for j in np.argsort(-sims)[:3] if sims[j] >= 0.80]
    tune, held = banking_split(rows)
    stored = [p["stored"] for name in SETS for p in pairs(name) if p["kind"] == "trap"]
    reworded = [p for ps in rewording_pairs(texts + stored).values() for p in ps]

    def state() -> tuple[Any, ...]:
        _edited.cache_clear()
        decide = default_decide()
        b77 = {h: banking([r for r in rows if r["intent"] in part], vec, decide)
               for h, part in (("held-out intents", held), ("tuning intents", tune))}
        g = G.Guards()
        refused = {(i, j): g.check(texts[i], texts[j], s) is not None for i, j, s in near}
        rw = sum(decide(a, [(float(vec(a) @ vec(s)), s, "a")]) is not None for s, a in reworded)
        return decisions(vec), b77, refused, rw

    full = state()
    out: dict[str, Any] = {"pairs": {"b77 neighbours": len(near), "rewordings": len(reworded)}}
    for rule, (name, off) in RULES.items():
        keep = getattr(G, name)
        setattr(G, name, off)
        try:
            without = state()
        finally:
            setattr(G, name, keep)
        folds: dict[str, dict[str, int]] = {}
        for (s, i), hit in full[0].items():
            if hit != without[0][(s, i)]:
                key = f"{pairs(s)[i]['kind']} {'served' if hit else 'refused'}"
                folds.setdefault(s, {}).setdefault(key, 0)
                folds[s][key] += 1
        new = [(i, j) for (i, j), v in full[2].items() if v and not without[2][(i, j)]]
        same = sum(rows[i]["intent"] == rows[j]["intent"] for i, j in new)
        out[rule] = {"folds": folds, "b77 with": full[1], "b77 without": without[1],
                     "b77 neighbours newly refused: same intent": same,
                     "different intent": len(new) - same,
                     "rewordings served with / without": (full[3], without[3])}
        print(rule, json.dumps(out[rule]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--served", action="store_true")
    ap.add_argument("--hypothesis", action="store_true")
    ap.add_argument("--ablate", action="store_true")
    ap.add_argument("--vectors", type=Path, default=Path("/tmp/i14veto2-vectors.npz"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    vec = Vectors(args.vectors)
    b77 = [r["text"] for r in load(BANKING)]
    stored = [p["stored"] for name in SETS for p in pairs(name) if p["kind"] == "trap"]
    texts = b77 + [p[k] for name in SETS for p in pairs(name) for k in ("stored", "asked")]
    texts += [t for ps in rewording_pairs(b77 + stored).values() for p in ps for t in p]
    vec.remember(texts)
    out: dict[str, Any] = {}
    if args.served:
        served(vec)
    if args.hypothesis:
        out["hypothesis"] = hypothesis(vec)
    if args.ablate:
        out["ablate"] = ablate(vec)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
