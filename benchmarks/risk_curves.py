"""Offline: would a better risk score than similarity serve more at the same error?

For each query of an ``online.py`` stream, the candidate the cache would serve or label
(the most similar stored question among the ``top_k`` nearest, at ``>= 0.70``, that
passes the guards' ``accept`` check, as in ``max_error_rate=`` mode), its features
known at lookup time without extra I/O, and the truth (its answer is the query's
intent's). The cache here stores every query (a miss everywhere), so that the
candidates do not depend on the score being compared: the curves compare scores on the
same candidates, not the absolute hit rates of ``online.py``'s runs. The KNN runs in
memory over MiniLM vectors (exact cosine, as RediSearch's FLAT index), the exact layer
is the normaliser's key.

Hindsight curves: serve every candidate whose score is ``>= t``; for each error level
δ (wrong served answers over all queries of the stream's second half), the highest
hit rate over ``t``. Scores:

- ``sim``: the similarity (the best static threshold, without corroboration);
- ``pair``: the learned pair check's probability (``guards.same_question``);
- ``logit``: a logistic regression on (similarity, logit of the pair check, gap to the
  next candidate, whether the next candidate's answer differs, whether the guards
  would vouch for it at 0.90), fitted on the *first* half of the stream's lookups;
- ``strata``: similarity bins x agreement of the next candidate (none within 0.05 /
  same answer / another answer), each stratum's error from the first half (isotonic in
  similarity within its class), ties broken by similarity; ``strata4`` the same with
  four classes from the other candidates within 0.05 (none / all the same answer / all
  another / both);
- ``votes``: a logistic regression (first half) on similarity and how many other
  candidates, within 0.05 and in all, have the same answer and another one;
  ``votes_reworded``: the same when "the same answer" means the same text under
  ``online.py --reworded``'s three phrasings;
- ``no_answers``: a logistic regression (first half) on what does not look at answers:
  similarity, pair check, gap to the next candidate, vouching, corroboration, count of
  other candidates;
- ``sim+vouch``: 2-D strata similarity x the guards' vouching, two thresholds chosen
  in hindsight (:func:`vouched_curve`);
- the entry's own labels so far (:func:`entry_label_curves`).

Scores fitted on the first half use every first-half label (a deployment only has
its misses' and explorations' labels): an upper bound on what they can do.

    python benchmarks/risk_curves.py --dump /tmp/x.json   # then --load /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from online import DEFAULT_DATA, load, phrasing, split, stream_of  # noqa: E402
from pairs_eval import banking_split  # noqa: E402

from paracache import SemanticIndex  # noqa: E402
from paracache.embedded import EmbeddedRedis  # noqa: E402
from paracache.guards import Guards, corroborates, same_question  # noqa: E402
from paracache.vectorizers import MiniLMVectorizer  # noqa: E402

FLOOR = 0.70
DELTAS = (0.01, 0.02, 0.03, 0.05)
STREAMS = ((1, 1.0), (2, 1.0), (3, 1.0), (4, 0.5))


def dump(args: argparse.Namespace) -> dict[str, Any]:
    dev, _report = split(load(args.data), args.split_seed)
    _tune, held = banking_split(load(args.data))
    server = EmbeddedRedis().start()
    probe = SemanticIndex(server.url, namespace="risk-probe")
    texts = sorted({r["text"] for r in dev})
    keys = {t: probe.settings.normalizer(t) for t in texts}
    model_in = [probe.core.embed_input(keys[t]) for t in texts]
    probe.close()
    server.close()
    vecs = np.asarray(MiniLMVectorizer().embed_many(model_in, batch_size=64), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    row_of = {t: i for i, t in enumerate(texts)}
    guards = Guards()
    out: dict[str, Any] = {}
    for seed, share in STREAMS:
        stream = stream_of(dev, seed, share, args.queries)
        stored: list[int] = []  # rows of texts in the cache, first answer kept
        stored_key: dict[str, int] = {}
        answer: dict[int, str] = {}
        lookups = []
        for n, r in enumerate(stream):
            text, intent = r["text"], r["intent"]
            rec: dict[str, Any] = {"n": n, "held": intent in held}
            k = keys[text]
            if k in stored_key:
                rec["exact"] = True
                rec["right"] = answer[stored_key[k]] == intent
                lookups.append(rec)
                continue
            rec["exact"] = False
            v = vecs[row_of[text]]
            if stored:
                sims = vecs[stored] @ v
                top = np.argsort(-sims)[: args.top_k]
                cands = [(float(sims[i]), stored[i]) for i in top if sims[i] >= FLOOR]
            else:
                cands = []
            chosen = None
            for j, (s, row) in enumerate(cands):
                if guards.check(text, texts[row], s) is None:
                    chosen = j
                    break
            if chosen is not None:
                s, row = cands[chosen]
                ctext = texts[row]
                rest = [c for i, c in enumerate(cands) if i != chosen]
                nxt = rest[0] if rest else None
                others_pass = [
                    c for c in rest if guards.check(text, texts[c[1]], c[0]) is None
                ]
                nxtp = others_pass[0] if others_pass else None
                rec.update(
                    sim=round(s, 5),
                    pair=same_question(text, ctext, s),
                    vouch=Guards.vouches(text, ctext, s, 0.90),
                    corr=corroborates(text, ctext),
                    rank=chosen,
                    entry=row,
                    next_sim=None if nxt is None else round(nxt[0], 5),
                    next_differs=None if nxt is None else answer[nxt[1]] != answer[row],
                    nextp_sim=None if nxtp is None else round(nxtp[0], 5),
                    nextp_differs=None if nxtp is None else answer[nxtp[1]] != answer[row],
                    rest=[
                        (round(c[0], 5), answer[c[1]] == answer[row],
                         answer[c[1]] == answer[row] and phrasing(texts[c[1]]) == phrasing(ctext))
                        for c in rest
                    ],
                    agree=sum(answer[c[1]] == answer[row] for c in rest),
                    disagree=sum(answer[c[1]] != answer[row] for c in rest),
                    right=answer[row] == intent,
                )
            lookups.append(rec)
            stored_key[k] = row_of[text]
            stored.append(row_of[text])
            answer[row_of[text]] = intent
        out[f"{seed}"] = lookups
        print(f"stream {seed}: {len(lookups)} lookups", flush=True)
    return out


# ----------------------------------------------------------------------- curves


def _logit(p: float) -> float:
    p = min(1 - 1e-6, max(1e-6, p))
    return math.log(p / (1 - p))


def _x(r: dict[str, Any]) -> list[float]:
    gap = 0.1 if r["next_sim"] is None else min(0.1, r["sim"] - r["next_sim"])
    differs = 1.0 if r["next_differs"] and gap < 0.05 else 0.0
    return [r["sim"], _logit(r["pair"]), gap, differs, float(r["vouch"]), float(r["corr"])]


def _votes(r: dict[str, Any], window: float = 0.05, field: int = 1) -> tuple[int, int]:
    """Other candidates within ``window`` below: (same answer, another answer);
    ``field`` 2: the same *text* of the answer when the model rewords (``--reworded``)."""
    near = [c[field] for c in r["rest"] if r["sim"] - c[0] < window]
    return sum(near), len(near) - sum(near)


def _x2(r: dict[str, Any], field: int = 1) -> list[float]:
    same, other = _votes(r, field=field)
    far_same, far_other = _votes(r, 1.0, field=field)
    return [r["sim"], float(same), float(other), float(far_same), float(far_other)]


def _x3(r: dict[str, Any]) -> list[float]:
    """Without the answers: similarity, pair check, gap to the next candidate, the
    guards' vouching and corroboration, how many other candidates there are."""
    gap = 0.1 if r["next_sim"] is None else min(0.1, r["sim"] - r["next_sim"])
    return [r["sim"], _logit(r["pair"]), gap, float(r["vouch"]), float(r["corr"]),
            float(len(r["rest"]))]


def fit_logistic(xs: np.ndarray, ys: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Newton's method; returns weights with the bias last (inputs standardised)."""
    mu, sd = xs.mean(0), xs.std(0) + 1e-9
    z = np.hstack([(xs - mu) / sd, np.ones((len(xs), 1))])
    w = np.zeros(z.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-z @ w))
        g = z.T @ (p - ys) + l2 * w
        h = (z.T * (p * (1 - p))) @ z + l2 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    return np.concatenate([w[:-1] / sd, [w[-1] - (w[:-1] * mu / sd).sum()]])


def _cls(r: dict[str, Any]) -> int:
    if VOTES:
        same, other = _votes(r)
        return 0 if same == other == 0 else (1 if other == 0 else (2 if same == 0 else 3))
    if r["next_sim"] is None or r["sim"] - r["next_sim"] >= 0.05:
        return 0
    return 2 if r["next_differs"] else 1


VOTES = False


def strata_score(first: list[dict[str, Any]]) -> Any:
    """Error per (class, 0.02 similarity bin) from the first half, isotonic
    (non-increasing in similarity) within each class; returns score(record)."""
    table: dict[tuple[int, int], tuple[int, int]] = {}
    for r in first:
        key = (_cls(r), int(r["sim"] / 0.02))
        n, w = table.get(key, (0, 0))
        table[key] = (n + 1, w + (not r["right"]))
    est: dict[tuple[int, int], float] = {}
    for c in (0, 1, 2, 3):
        blocks: list[list[float]] = []  # [high bin, low bin, n, w], top down
        for b in range(49, 34, -1):
            n, w = table.get((c, b), (0, 0))
            blocks.append([b, b, n, w])
            while len(blocks) > 1:
                up, lo = blocks[-2], blocks[-1]
                if up[2] < 10 or lo[2] == 0 or up[3] * lo[2] > lo[3] * up[2]:
                    blocks[-2:] = [[up[0], lo[1], up[2] + lo[2], up[3] + lo[3]]]
                else:
                    break
        for hb, lb, n, w in blocks:
            for b in range(int(lb), int(hb) + 1):
                est[(c, b)] = (w + 0.5) / (n + 1)

    def score(r: dict[str, Any]) -> float:
        return -est.get((_cls(r), int(r["sim"] / 0.02)), 1.0) + 1e-3 * r["sim"]

    return score


def _with_votes(f: Any, r: dict[str, Any]) -> float:
    global VOTES
    VOTES = True
    try:
        return float(f(r))
    finally:
        VOTES = False


def curve(
    second: list[dict[str, Any]], score: Any, deltas: tuple[float, ...]
) -> dict[float, float]:
    """Best hit rate at error <= δ, serving the candidates with score >= t (any t)."""
    n = len(second)
    base = sum(1 for r in second if r.get("exact"))
    base_wrong = sum(1 for r in second if r.get("exact") and not r["right"])
    cands = sorted(
        ((score(r), r["right"]) for r in second if not r.get("exact") and "sim" in r),
        key=lambda x: -x[0],
    )
    out = {}
    for d in deltas:
        hits, wrong, best = base, base_wrong, base if base_wrong <= d * n else 0
        i = 0
        while i < len(cands):
            j = i
            while j < len(cands) and cands[j][0] == cands[i][0]:  # ties go together
                hits += 1
                wrong += not cands[j][1]
                j += 1
            if wrong <= d * n:
                best = max(best, hits)
            i = j
        out[d] = best / n
    return out


def vouched_curve(second: list[dict[str, Any]], deltas: tuple[float, ...]) -> dict[float, float]:
    """2-D strata, similarity x the guards' vouching (at the default 0.90): serve at
    ``sim >= t``, or vouched at ``sim >= t2`` (``t2 <= t``), both on a 0.01 grid; the
    best hit rate at error <= δ over (t, t2). With ``t2 = t`` it is the ``sim`` curve on
    the grid."""
    n = len(second)
    base = [r for r in second if r.get("exact")]
    cands = [r for r in second if not r.get("exact") and "sim" in r]
    grid = [x / 100 for x in range(70, 101)]
    points = []
    for t in grid:
        for t2 in grid:
            if t2 > t:
                continue
            served = base + [r for r in cands if r["sim"] >= t or (r["vouch"] and r["sim"] >= t2)]
            points.append((len(served) / n, sum(not r["right"] for r in served) / n))
    return {d: max((h for h, e in points if e <= d), default=0.0) for d in deltas}


def entry_label_curves(lookups: list[dict[str, Any]], below: float | None) -> list[list[float]]:
    """The entry's own labels as a risk axis (vCache's per-entry view): each earlier
    lookup whose candidate was the same entry labels it (all of them, or with ``below``
    only those under that similarity, as misses would). Best hit rates at ``DELTAS`` on
    the second half for: similarity; similarity with the entry veto (a wrong label at or
    above the similarity refuses it, as the bound's mode does); and that plus serving
    down to a second threshold an entry labelled right within 0.02 of the similarity."""
    hist: dict[int, list[tuple[float, bool]]] = {}
    veto: dict[int, bool] = {}
    own: dict[int, bool] = {}
    for r in lookups:
        if "entry" not in r:
            continue
        h = hist.get(r["entry"], [])
        veto[r["n"]] = any(not ok and r["sim"] <= s + 0.005 for s, ok in h)
        own[r["n"]] = any(ok and s >= r["sim"] - 0.02 for s, ok in h)
        if below is None or r["sim"] < below:
            hist.setdefault(r["entry"], []).append((r["sim"], r["right"]))
    second = lookups[len(lookups) // 2 :]
    n = len(second)
    exact = [r for r in second if r.get("exact")]
    cands = [r for r in second if not r.get("exact") and "sim" in r]
    grid = [x / 100 for x in range(70, 101)]

    def best(serve: Any, two: bool) -> list[float]:
        points = []
        for t in grid:
            for t2 in grid if two else [t]:
                if t2 > t:
                    continue
                served = exact + [r for r in cands if serve(r, t, t2)]
                points.append((len(served) / n, sum(not r["right"] for r in served) / n))
        return [max((h for h, e in points if e <= d), default=0.0) for d in DELTAS]

    return [
        best(lambda r, t, t2: r["sim"] >= t, False),
        best(lambda r, t, t2: not veto[r["n"]] and r["sim"] >= t, False),
        best(
            lambda r, t, t2: not veto[r["n"]]
            and (r["sim"] >= t or (own[r["n"]] and r["sim"] >= t2)),
            True,
        ),
    ]


def report(data: dict[str, Any]) -> None:
    rows = []
    for seed, lookups in data.items():
        half = len(lookups) // 2
        first, second = lookups[:half], lookups[half:]
        fc = [r for r in first if not r.get("exact") and "sim" in r]
        w = fit_logistic(np.array([_x(r) for r in fc]), np.array([float(r["right"]) for r in fc]))
        scores = {
            "sim": lambda r: r["sim"],
            "pair": lambda r: r["pair"],
            "logit": lambda r, w=w: float(np.dot(w[:-1], _x(r)) + w[-1]),
            "strata": strata_score(fc),
        }
        w2 = fit_logistic(np.array([_x2(r) for r in fc]), np.array([float(r["right"]) for r in fc]))
        scores["votes"] = lambda r, w=w2: float(np.dot(w[:-1], _x2(r)) + w[-1])
        ys = np.array([float(r["right"]) for r in fc])
        w3 = fit_logistic(np.array([_x2(r, 2) for r in fc]), ys)
        scores["votes_reworded"] = lambda r, w=w3: float(np.dot(w[:-1], _x2(r, 2)) + w[-1])
        w4 = fit_logistic(np.array([_x3(r) for r in fc]), ys)
        scores["no_answers"] = lambda r, w=w4: float(np.dot(w[:-1], _x3(r)) + w[-1])
        global VOTES
        VOTES = True
        scores["strata4"] = strata_score(fc)
        inner = scores["strata4"]
        scores["strata4"] = lambda r, f=inner: _with_votes(f, r)
        VOTES = False
        for part, sel in (("all", second), ("held-out intents", [r for r in second if r["held"]])):
            curves = {name: curve(sel, s, DELTAS) for name, s in scores.items()}
            curves["sim+vouch"] = vouched_curve(sel, DELTAS)
            rows.append((seed, part, len(sel), curves))
        print(f"stream {seed}: logistic weights (sim, logit pair, gap, next differs, vouch, "
              f"corr; bias) {np.round(w, 2).tolist()}")
    print("\nThe entry's own labels (hit rate at error <= " + ", ".join(map(str, DELTAS)) + "):")
    for seed, lookups in data.items():
        if not any("entry" in r for r in lookups):
            continue  # a dump from before the entry was recorded
        for below in (None, 0.90):
            sim, vetoed, labelled = entry_label_curves(lookups, below)
            pairs = zip(vetoed, labelled, strict=True)
            ratio = " / ".join(f"{b / a:.2f}" if a else "nan" for a, b in pairs)
            print(f"  stream {seed}, labels from {'every lookup' if below is None else 'misses'}:"
                  f" sim {' / '.join(f'{x:.3f}' for x in sim)}; with the veto "
                  f"{' / '.join(f'{x:.3f}' for x in vetoed)}; + own right label "
                  f"{' / '.join(f'{x:.3f}' for x in labelled)} ({ratio}x)")
    print("\n| stream | queries (2nd half) | score | " + " | ".join(
        f"hit at err ≤ {d}" for d in DELTAS) + " |")
    print("|---|---|---|" + "---:|" * len(DELTAS))
    for seed, part, n, curves in rows:
        for name, c in curves.items():
            cells = []
            for d in DELTAS:
                ratio = c[d] / curves["sim"][d] if curves["sim"][d] else float("nan")
                cells.append(f"{c[d]:.3f}" + ("" if name == "sim" else f" ({ratio:.2f}x)"))
            print(f"| {seed} | {part}: {n} | {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split-seed", type=int, default=15)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--load", type=Path)
    args = ap.parse_args()
    if args.load:
        data = json.loads(args.load.read_text())
    else:
        data = dump(args)
        if args.dump:
            args.dump.write_text(json.dumps(data))
    report(data)


if __name__ == "__main__":
    main()
