"""Work queues: what a job costs (round trips, time, memory) on one Redis.

Against a server you run (a stock one: ``tools``' ``stock-redis PORT``):

    python benchmarks/queues.py redis://127.0.0.1:PORT [--jobs 2000]

Prints JSON: per-call latency (p50, p95) of ``put``, ``get`` (a job waiting) and ``ack``,
the throughput of ``put_many`` (100 a call) and of one worker's ``get(count=100)`` + ``ack``,
and the server memory the stream holds per waiting job (a 200-byte payload).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

import redis

from paracache.queues import WorkQueue


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    n = args.jobs
    namespace = "bench-" + uuid.uuid4().hex[:8]
    queue = WorkQueue("bench", redis_url=args.url, namespace=namespace, max_length=10 * n,
                      timeout=5.0)
    payload = {"doc": 0, "text": "x" * 180}
    report: dict[str, Any] = {"jobs": n, "payload_bytes": len(json.dumps(payload))}
    client = redis.Redis.from_url(args.url)
    try:
        puts, gets, acks = [], [], []
        for i in range(n):
            t0 = time.perf_counter()
            queue.put({**payload, "doc": i})
            puts.append(time.perf_counter() - t0)
        used = client.memory_usage(queue.keys[0], samples=0) or 0
        report["stream_bytes_per_waiting_job"] = round(used / n, 1)
        for _ in range(n):
            t0 = time.perf_counter()
            [job] = queue.get("w", block=0)
            t1 = time.perf_counter()
            queue.ack(job)
            t2 = time.perf_counter()
            gets.append(t1 - t0)
            acks.append(t2 - t1)
        report["put"], report["get"], report["ack"] = _ms(puts), _ms(gets), _ms(acks)
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            queue.put_many([{**payload, "doc": i} for i in range(start, min(n, start + 100))])
        report["put_many_100_jobs_per_s"] = round(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        done = 0
        while done < n:
            jobs = queue.get("w", count=100, block=0)
            for job in jobs:
                queue.ack(job)
            done += len(jobs)
        report["get_100_then_ack_each_jobs_per_s"] = round(n / (time.perf_counter() - t0))
        report["left"] = queue.stats().length
    finally:
        client.delete(*queue.keys)
        queue.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
