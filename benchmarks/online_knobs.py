"""``benchmarks/online.py`` with the error bound's constants changed for one run, for
experiments (issue 15, seventh round); the package is not changed.

Knobs, from the environment: ``X_WINDOW`` (``learning.TRAFFIC_WINDOW``: lookups after
which a scope's traffic counts are halved), ``X_Z`` and ``X_ZLOWER`` (``bound.Z`` and
``bound.Z_LOWER``, the margins to keep and to lower a threshold), ``X_WARM`` (a warm-up
of that many explored labels per scope, where the code has one: ``bound.WARM_LABELS``),
``X_NEAR_RATE`` and ``X_NEAR_BAND`` (``bound.NEAR_RATE`` and ``bound.NEAR_BAND``: the
exploration rate just above the threshold, and how far above it runs).

    X_WINDOW=500 X_Z=1.28 python benchmarks/online_knobs.py benchmarks/online.py --dev ...
"""

from __future__ import annotations

import functools
import os
import runpy
import sys

from paracache import bound, learning


def main() -> None:
    if os.environ.get("X_WARM"):
        if not hasattr(bound, "WARM_LABELS"):
            raise SystemExit("X_WARM: this code has no warm-up (branch i15b-warmup has)")
        bound.WARM_LABELS = int(os.environ["X_WARM"])  # type: ignore[attr-defined]
    if os.environ.get("X_WINDOW"):
        learning.TRAFFIC_WINDOW = int(os.environ["X_WINDOW"])
    if os.environ.get("X_NEAR_RATE"):
        bound.NEAR_RATE = float(os.environ["X_NEAR_RATE"])
    if os.environ.get("X_NEAR_BAND"):
        bound.NEAR_BAND = float(os.environ["X_NEAR_BAND"])
    margins = {}
    if os.environ.get("X_Z"):
        margins["z"] = float(os.environ["X_Z"])
    if os.environ.get("X_ZLOWER"):
        margins["z_lower"] = float(os.environ["X_ZLOWER"])
    if margins:
        bound.learned_threshold = functools.partial(bound.learned_threshold, **margins)  # type: ignore[assignment]
    knobs = {k: v for k, v in os.environ.items() if k.startswith("X_")}
    print("knobs:", knobs, flush=True)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
