"""Each trap case's outcomes, as JSON: to compare two versions of paracache case by case.

Stores every case's question (traps.jsonl and traps_heldout.jsonl) under its own scope,
then asks its paraphrase and its trap at the default settings; prints
``[[id, paraphrase outcome, paraphrase similarity, trap outcome], ...]``.

    PYTHONPATH=integrations python benchmarks/trap_outcomes.py . > new.json
    PYTHONPATH=/tmp/old/integrations python benchmarks/trap_outcomes.py /tmp/old > old.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from paracache import Guards, Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    cases = [
        json.loads(line)
        for name in ("traps.jsonl", "traps_heldout.jsonl")
        for line in (root / "benchmarks" / "data" / name).open(encoding="utf-8")
        if line.strip()
    ]
    server = EmbeddedRedis().start()
    try:
        index = SemanticIndex(
            server.url, namespace="traps", guards=Guards(), timeout=5.0, embed_timeout=None
        )
        for case in cases:
            index.store(case["stored"], case["id"], Scope(fields={"case": case["id"]}), ttl=None)
        out = []
        for case in cases:
            scope = Scope(fields={"case": case["id"]})
            para = index.lookup_verdict(case["paraphrase"], scope)
            trap = index.lookup_verdict(case["trap"], scope)
            out.append([case["id"], para.outcome, round(para.similarity or 0.0, 4), trap.outcome])
        print(json.dumps(out))
    finally:
        server.close()


if __name__ == "__main__":
    main()
