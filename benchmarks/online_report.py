"""Summarise ``benchmarks/online.py --json`` runs of several configurations on the same
streams (issue 15, seventh round): per δ, the runs whose second-half error was <= δ,
the mean error, the hit-rate ratio to the best static threshold under δ and to the
static default 0.90 (both from a baseline run's static sweep of the same stream, so a
configuration's runs may skip the sweep: ``--static 0.90``), the whole-stream hit rate,
explorations, and the bound's own estimate ``E(t)`` at its threshold (mean over the
second half's syncs) against the realised error.

    python benchmarks/online_report.py --base 'base_s{s}.json' --streams 1,2,3,4 \
        main='base_s{s}.json' warm='warm_s{s}.json'
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def best_static(static: list[dict[str, Any]], delta: float) -> dict[str, Any] | None:
    under = [s for s in static if s["error_rate_2nd"] <= delta]
    return max(under, key=lambda s: s["hit_rate_2nd"], default=None)


def estimate(run: dict[str, Any]) -> float | None:
    """Mean of ``E(t)`` at the threshold in effect over the second half's syncs."""
    half = run["half_n"]
    trace = [t for t in run["threshold_trace"] if t[0] >= half and len(t) > 2 and t[2] is not None]
    return statistics.fmean(t[2] for t in trace) if trace else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the static sweep's JSON, {s}: stream")
    ap.add_argument("--streams", required=True)
    ap.add_argument("configs", nargs="+", help="NAME=PATTERN ({s}: stream)")
    args = ap.parse_args()
    print("| δ | configuration | runs ≤ δ | mean error | mean E(t) | ratio mean (min) "
          "| vs default mean (min) | whole-stream hit | explorations |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for config in args.configs:
        name, pattern = config.split("=", 1)
        by_delta: dict[float, list[dict[str, float]]] = {}
        for s in args.streams.split(","):
            path = Path(pattern.format(s=s))
            if not path.exists():
                continue
            base = json.loads(Path(args.base.format(s=s)).read_text())
            static = [r for r in base if r["delta"] is None]
            default = next(r for r in static if r["threshold"] == 0.90)
            for run in json.loads(path.read_text()):
                delta = run["delta"]
                if delta is None:
                    continue
                best = best_static(static, delta)
                by_delta.setdefault(delta, []).append({
                    "err": run["error_rate_2nd"],
                    "ratio": run["hit_rate_2nd"] / best["hit_rate_2nd"] if best else float("nan"),
                    "vs": run["hit_rate_2nd"] / default["hit_rate_2nd"],
                    "hit": run["hit_rate"],
                    "x": run["learning"]["explorations"],
                    "est": estimate(run) if estimate(run) is not None else float("nan"),
                })  # fmt: skip
        for delta, rows in sorted(by_delta.items()):
            ok = sum(r["err"] <= delta for r in rows)
            mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
            print(
                f"| {delta:g} | {name} | {ok}/{len(rows)} | {mean['err']:.4f} | {mean['est']:.4f} "
                f"| {mean['ratio']:.2f}x ({min(r['ratio'] for r in rows):.2f}x) "
                f"| {mean['vs']:.2f}x ({min(r['vs'] for r in rows):.2f}x) | {mean['hit']:.3f} "
                f"| {mean['x']:.0f} |"
            )


if __name__ == "__main__":
    main()
