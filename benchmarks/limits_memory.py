"""Rate limits and conversation memory on Redis (issue 18): prints tables.

* ``acquire``: latency of an admitted ``RateLimiter.decide()`` (one tier, and three tiers
  checked together), next to LangChain's ``InMemoryRateLimiter.acquire(blocking=False)``
  (one process only) measured in the same process.
* history: ``append`` of one message and ``read`` of a 100-message conversation, through
  the framework-free ``SessionStore`` and through the LangChain adapter.
* processes: 3 processes sharing a 5 requests/s limit (bucket 5), starting together
  and asking for 4 s, each as often as the server's answered wait allows; admitted
  against the bound ``5 x 4 + 5``.

Usage::

    python benchmarks/limits_memory.py                       # embedded Redis
    python benchmarks/limits_memory.py --redis-url redis://127.0.0.1:PORT   # e.g. stock-redis
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.rate_limiters import InMemoryRateLimiter

from paracache.history import RedisChatMessageHistory
from paracache.limiter import Limit, RateLimiter
from paracache.sessions import SessionStore
from paracache.transport import safe_url


def percentiles(fn: Callable[[], object], n: int) -> tuple[float, float, float]:
    """(p50, p95, p99) in milliseconds of ``n`` calls of ``fn`` (after 50 warm-up calls)."""
    for _ in range(50):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[n // 2], times[int(n * 0.95)], times[int(n * 0.99)]


PROCESS = textwrap.dedent(
    """
    import json, sys, time
    from paracache.limiter import Limit, RateLimiter
    url, ns, start, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    limiter = RateLimiter([Limit("shared", 5, burst=5)], redis_url=url, namespace=ns,
                          timeout=5.0)
    end = start + seconds
    time.sleep(max(0.0, start - time.time()))
    admitted = []
    while time.time() < end:
        decision = limiter.decide()
        if decision.admitted:
            admitted.append(time.time())
        else:  # sleep the server's wait, but not past the end
            time.sleep(max(0.0, min(decision.retry_after, end - time.time())))
    print(json.dumps({"admitted": admitted, "errors": limiter.stats().errors}), flush=True)
    """
)


def processes(url: str, seconds: float = 4.0) -> tuple[int, float, list[int], int]:
    """3 processes start together at a wall-clock time and stop ``seconds`` later;
    returns (admitted, span from the start to the last admission, per process, errors)."""
    ns = "bench-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.time() + 5.0  # time for the interpreters to start on a busy machine
    procs = [
        subprocess.Popen([sys.executable, "-c", PROCESS, url, ns, str(start), str(seconds)],
                         stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    stamps = [t for r in reports for t in r["admitted"]]
    span = max(stamps) - start if stamps else 0.0
    errors = sum(r["errors"] for r in reports)
    return len(stamps), span, [len(r["admitted"]) for r in reports], errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None, help="default: the embedded server")
    parser.add_argument("-n", type=int, default=2000, help="calls per latency row")
    args = parser.parse_args()
    url = args.redis_url
    if url is None:
        from paracache.embedded import embedded_url

        url = embedded_url()
    ns = "bench-" + uuid.uuid4().hex[:8]
    print(f"Redis: {safe_url(url)}  calls per row: {args.n}  (shared 2-core machine)\n")

    one = RateLimiter([Limit("one", 1e9)], redis_url=url, namespace=ns, timeout=5.0)
    three = RateLimiter([Limit("u", 1e9), Limit("k", 1e9, algorithm="sliding_window",
                                                   window=0.001),
                         Limit("g", 1e9)], redis_url=url, namespace=ns, timeout=5.0)
    memory = InMemoryRateLimiter(requests_per_second=1e9, max_bucket_size=1e9)
    rows = [
        ("RateLimiter.decide(), 1 token-bucket tier", percentiles(one.decide, args.n)),
        ("RateLimiter.decide(), 3 tiers (2 buckets + 1 window)", percentiles(three.decide, args.n)),
        ("InMemoryRateLimiter.acquire(blocking=False)",
         percentiles(lambda: memory.acquire(blocking=False), args.n)),
    ]
    assert one.stats().refused == 0 and one.stats().errors == 0

    store = SessionStore(redis_url=url, namespace=ns, timeout=5.0)
    history = RedisChatMessageHistory("bench-lc", store=store)
    turns = [HumanMessage(f"Question {i}: where is my parcel 4{i:03d}?") if i % 2 == 0
             else AIMessage(f"Answer {i}: it left the depot this morning.") for i in range(100)]
    history.add_messages(turns)
    plain = [{"role": "user", "text": f"message {i} " * 8} for i in range(100)]
    store.append("bench-raw", plain, [20] * 100)
    extra = HumanMessage("And when will it arrive?")
    rows += [
        ("SessionStore.read, 100 messages", percentiles(lambda: store.read("bench-raw"), args.n)),
        ("SessionStore.append, 1 message",
         percentiles(lambda: store.append("bench-app", plain[:1], [20]), args.n)),
        ("RedisChatMessageHistory.messages, 100 messages",
         percentiles(lambda: history.messages, args.n)),
        ("RedisChatMessageHistory.add_messages, 1 message",
         percentiles(lambda: RedisChatMessageHistory("bench-lc2", store=store)
                     .add_messages([extra]), args.n)),
    ]
    print("| operation | p50 ms | p95 ms | p99 ms |\n|---|---:|---:|---:|")
    for name, (p50, p95, p99) in rows:
        print(f"| {name} | {p50:.3f} | {p95:.3f} | {p99:.3f} |")
    ratio = rows[0][1][0] / rows[2][1][0]
    print(f"\nRedis limiter / in-memory limiter, p50: {ratio:.0f}x")

    total, span, each, errors = processes(url)
    print(
        f"\n3 processes, one limit of 5 requests/s (bucket 5), 4 s: admitted {total} "
        f"(per process {each}); target at most 5 x 4 + 5 = 25; last admission "
        f"{span:.3f} s after the start (bound 5 x {span:.3f} + 5 = {5 * span + 5:.1f}); "
        f"Redis errors {errors}"
    )
    for limiter in (one, three):
        limiter.close()
    store.close()


if __name__ == "__main__":
    main()
