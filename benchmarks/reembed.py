"""Re-embedding on a model change (issue 20): speed against ``warm()`` and quality against
a cache warmed from scratch with the new model, on Banking77.

One embedded Redis, one process. The old model is all-MiniLM-L6-v2 with float32 vectors, the
new one the same model with float16 vectors (the cache's default): two indexes of one
namespace, as two models have. The 5,001 stored questions of the seed-77 split (their
intent as the answer) are warmed into the old index. Then, in alternating rounds:

- ``warm``: the same questions warmed from scratch into the new model's index of a fresh
  namespace (``SemanticIndex.warm``);
- ``reembed``: the old index copied into the new model's index of the old namespace
  (``SemanticIndex.reembed``), after deleting that index and its entries (a fresh index
  each round, as ``warm`` gets).

Each round reports entries/s; the ratio compares the medians, the rounds pairwise (a
shared machine's load drifts between rounds) and this process's CPU time per entry (the
embedder's threads included; the least sensitive to other work on the machine).
Quality: the 5,002 other questions asked of both new-model caches (hit rate, precision:
the hit's intent is the asker's), and every stored question asked again of the
re-embedded cache (exact repeats).

    python benchmarks/reembed.py [--data banking77_train.jsonl]  # default: see banking77.py
                                 [--rounds 3] [--limit N]

Data: Banking77, Casanueva et al. 2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from banking77 import BANKING77

from paracache import Scope, SemanticIndex
from paracache.calibrate import split_clusters
from paracache.embedded import EmbeddedRedis
from paracache.vectorizers import default_vectorizer, vectorizer_id

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = BANKING77  # see banking77.py
SCOPE = Scope(model="gpt-4o-mini")
#: One TTL for every entry: the policy's 300 s for "today"/"now" questions would expire
#: some during a slow run and make the rounds differ.
DAY = 86_400


def empty(url: str, prefix: str) -> None:
    """Delete one index's entries (``clear()`` would empty every model's index)."""
    client = redis.Redis.from_url(url)
    keys = client.scan_iter(match=prefix + "*", count=1000)
    while chunk := list(itertools.islice(keys, 1000)):
        client.unlink(*chunk)
    client.close()


def ask(cache: SemanticIndex, questions: list[dict[str, Any]]) -> tuple[float, float]:
    hits = correct = 0
    for q in questions:
        hit = cache.lookup(q["text"], SCOPE)
        if hit is not None:
            hits += 1
            correct += hit.response == q["intent"]
    return hits / len(questions), (correct / hits if hits else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="use the first N rows of the split")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.data.read_text("utf-8").splitlines() if line]
    stored, asked = split_clusters(rows, seed=77)
    if args.limit:
        stored, asked = stored[: args.limit], asked[: args.limit]
    pairs = [(r["text"], r["intent"]) for r in stored]
    model = vectorizer_id(default_vectorizer())
    warm_rates: list[float] = []
    reembed_rates: list[float] = []
    warm_cpu: list[float] = []  # this process's CPU seconds per entry (embedder included)
    reembed_cpu: list[float] = []
    with EmbeddedRedis() as server:
        ns = "re-" + uuid.uuid4().hex[:8]
        old = SemanticIndex(server.url, namespace=ns, dtype="float32", admin_timeout=60)
        old.warm(pairs, SCOPE, progress=False, ttl=DAY)
        distinct = old.count()
        new = SemanticIndex(server.url, namespace=ns, admin_timeout=60)
        fresh: SemanticIndex | None = None
        for _ in range(args.rounds):
            if fresh is not None:
                fresh.clear()
                fresh.close()
            fresh = SemanticIndex(server.url, namespace="w-" + uuid.uuid4().hex[:8],
                                  admin_timeout=60)  # fmt: skip
            t, c = time.perf_counter(), time.process_time()
            written = fresh.warm(pairs, SCOPE, progress=False, ttl=DAY)
            warm_rates.append(written / (time.perf_counter() - t))
            warm_cpu.append((time.process_time() - c) / written)
            # A fresh target index each round, as warm() gets a fresh namespace: re-inserting
            # into an HNSW graph that just lost 5,000 vectors would cost reembed() more.
            empty(server.url, new.layout.prefix)  # clear() would empty the whole namespace
            drop = redis.Redis.from_url(server.url)
            drop.execute_command("FT.DROPINDEX", new.layout.index_name)
            drop.close()
            new.close()
            new = SemanticIndex(server.url, namespace=ns, admin_timeout=60)
            c = time.process_time()
            report = new.reembed(model, progress=False)
            reembed_cpu.append((time.process_time() - c) / max(report.copied, 1))
            reembed_rates.append(report.rate)
            assert report.copied + report.skipped_expired == distinct, (report, distinct)
        assert fresh is not None
        repeats = sum(
            1 for text, _ in pairs
            if (h := new.lookup(text, SCOPE)) is not None and h.layer == "exact"
        )  # fmt: skip
        re_hit, re_prec = ask(new, asked)
        fr_hit, fr_prec = ask(fresh, asked)
        for cache in (old, new, fresh):
            cache.close()
    w, r = statistics.median(warm_rates), statistics.median(reembed_rates)
    print(f"{len(pairs)} questions ({distinct} distinct entries), {args.rounds} alternating "
          f"rounds, {os.cpu_count()} cores (shared machine)")  # fmt: skip
    print("| | entries/s per round | median |")
    print("|---|---|---:|")
    print(f"| warm() from scratch | {', '.join(f'{x:.0f}' for x in warm_rates)} | {w:.0f} |")
    print(f"| reembed() | {', '.join(f'{x:.0f}' for x in reembed_rates)} | {r:.0f} |")
    paired = statistics.median(b / a for a, b in zip(warm_rates, reembed_rates, strict=True))
    cpu = statistics.median(a / b for a, b in zip(warm_cpu, reembed_cpu, strict=True))
    print(f"reembed / warm: {r / w:.2f} (medians); {paired:.2f} (median of the rounds' "
          f"ratios); {cpu:.2f} by this process's CPU time per entry "
          f"(warm {statistics.median(warm_cpu) * 1e3:.2f} ms, "
          f"reembed {statistics.median(reembed_cpu) * 1e3:.2f} ms)")
    print(f"exact repeats served after the copy: {repeats} / {len(pairs)}")
    print("| new-model cache | hit rate | precision |")
    print("|---|---:|---:|")
    print(f"| re-embedded from the old index | {re_hit:.1%} | {re_prec:.1%} |")
    print(f"| warmed from scratch | {fr_hit:.1%} | {fr_prec:.1%} |")


if __name__ == "__main__":
    main()
