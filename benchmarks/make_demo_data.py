"""Write paracache's demo data: a reproducible Banking77 subset for ``python -m paracache.demo``.

Selection: from the Banking77 train split, ``--intents`` intents drawn at random (``--seed``),
then ``--per-intent`` questions of each, drawn at random with the same seed. Questions that
normalise to the same text as an already chosen one (case, spacing, edge punctuation) are
skipped (paracache's own :class:`~paracache.policy.Normalizer` decides), so every row is a
distinct question; the demo adds its exact repeats itself.

Usage (from the repository root; this is how ``integrations/paracache/data/banking77_demo.jsonl``
was made):

    PYTHONPATH=integrations python benchmarks/make_demo_data.py \
        --source /work/shared/data/banking77_train.jsonl \
        --out integrations/paracache/data/banking77_demo.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from paracache.policy import Normalizer

SEED = 20200406
INTENTS = 24
PER_INTENT = 12


def select(
    rows: list[dict[str, str]], intents: int, per_intent: int, seed: int
) -> list[dict[str, str]]:
    """``intents`` random intents x ``per_intent`` random distinct questions, grouped by intent."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_intent[row["intent"]].append(row["text"].strip())
    rng = random.Random(seed)
    chosen = sorted(rng.sample(sorted(by_intent), intents))
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    key = Normalizer()
    for intent in chosen:
        pool = list(by_intent[intent])
        rng.shuffle(pool)
        taken = 0
        for text in pool:
            if taken == per_intent:
                break
            if key(text) in seen:
                continue
            seen.add(key(text))
            out.append({"text": text, "intent": intent})
            taken += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="/work/shared/data/banking77_train.jsonl")
    parser.add_argument("--out", default="integrations/paracache/data/banking77_demo.jsonl")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--intents", type=int, default=INTENTS)
    parser.add_argument("--per-intent", type=int, default=PER_INTENT)
    args = parser.parse_args()
    with open(args.source, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = select(rows, args.intents, args.per_intent, args.seed)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in out:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} questions ({args.intents} intents x {args.per_intent}) to {path}")


if __name__ == "__main__":
    main()
