"""Audit 11 (audit20): paracache's admin paths on a big cache, timed on a stock Redis.

Loads ``--size`` entries in one namespace over a few tenants and LLM models with
``SemanticIndex.warm`` (random unit vectors handed to the offline MiniLM's vectorizer,
as ``own_share.py``'s loader does with precomputed ones), then runs one admin operation
at a time while (1) a client PINGs every 10 ms and (2) an app thread does lookups, and
reports the wall time, the longest PING, the server's SLOWLOG top entry, client-side
memory (tracemalloc peak) and the app's misses/errors.

    python benchmarks/admin_scale.py --url redis://127.0.0.1:7680 load --size 100000
    python benchmarks/admin_scale.py --url redis://127.0.0.1:7680 run count entries stats ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import perf
import redis

from paracache import Scope, SemanticIndex
from paracache.learning import learning_summary

NAMESPACE = "adminscale"
TENANTS = ("acme", "globex", "initech", "umbrella")
MODELS = ("gpt-4o-mini", "gpt-4o")


def scopes() -> list[Scope]:
    return [Scope(tenant=t, model=m) for t in TENANTS for m in MODELS]


def text(i: int) -> str:
    return f"question number {i} about account topic {i % 977} and item {i // 977}"


def make_index(url: str, vec: Any, **kw: Any) -> SemanticIndex:
    return SemanticIndex(redis_url=url, namespace=NAMESPACE, vectorizer=vec, **kw)


def load(url: str, size: int) -> None:
    vec = perf.BenchVectorizer()
    index = make_index(url, vec)
    rng = np.random.default_rng(2026)
    per = size // len(scopes())
    t0 = time.perf_counter()
    n = 0
    for s_i, scope in enumerate(scopes()):
        for start in range(0, per, 5000):
            ids = range(s_i * per + start, s_i * per + min(per, start + 5000))
            texts = [text(i) for i in ids]
            v = rng.standard_normal((len(texts), 384)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            vec.know(texts, v)
            n += index.warm([(t, f"answer {t}") for t in texts], scope, batch_size=512,
                            progress=False)
            vec.forget()
        print(f"loaded {n:,} in {time.perf_counter() - t0:.0f} s", flush=True)
    index.close()


class Watch:
    """PING every 10 ms and an app thread doing lookups, while an operation runs."""

    def __init__(self, url: str, index: SemanticIndex | None, size: int) -> None:
        self.url, self.index, self.size = url, index, size
        self.stop = threading.Event()
        self.pings: list[float] = []
        self.app = {"lookups": 0, "hits": 0, "misses": 0, "errors": 0, "slowest_ms": 0.0,
                    "breaker_open": 0}

    def _ping(self) -> None:
        c = redis.Redis.from_url(self.url)
        while not self.stop.is_set():
            t = time.perf_counter()
            c.ping()
            self.pings.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)

    def _lookups(self) -> None:
        assert self.index is not None
        # globex / gpt-4o-mini: neither trimmed (the oldest) nor cleared by the runs
        scope, first = scopes()[2], 2 * (self.size // len(scopes())) + 1000
        i = 0
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                hit = self.index.lookup(text(first + i % 1000), scope, semantic=False)
            except Exception:
                self.app["errors"] += 1
                hit = None
            ms = (time.perf_counter() - t) * 1000
            self.app["slowest_ms"] = max(self.app["slowest_ms"], ms)
            self.app["lookups"] += 1
            self.app["hits" if hit is not None else "misses"] += 1
            self.app["breaker_open"] += self.index.core.breaker.state != "closed"
            i += 1
            time.sleep(0.01)

    def __enter__(self) -> Watch:
        self.threads = [threading.Thread(target=self._ping, daemon=True)]
        if self.index is not None:
            self.threads.append(threading.Thread(target=self._lookups, daemon=True))
        for t in self.threads:
            t.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.05)
        self.stop.set()
        for t in self.threads:
            t.join()


def measure(
    url: str, name: str, op: Callable[[], Any], app: SemanticIndex | None, size: int
) -> dict[str, Any]:
    c = redis.Redis.from_url(url)
    c.config_set("slowlog-log-slower-than", 10000)
    c.slowlog_reset()
    tracemalloc.start()
    with Watch(url, app, size) as w:
        t0 = time.perf_counter()
        error = None
        try:
            result = op()
        except Exception as exc:
            result, error = None, repr(exc)[:200]
        wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    slow = c.slowlog_get(128)
    top = max(slow, key=lambda e: e["duration"], default=None)
    row = {
        "op": name,
        "utc": time.strftime("%H:%M:%S", time.gmtime()),
        "load1": round(os.getloadavg()[0], 2),
        "wall_s": round(wall, 2),
        "max_ping_ms": round(max(w.pings, default=0.0), 1),
        "slowlog_max_ms": round(top["duration"] / 1000, 1) if top else 0.0,
        "slowlog_n": len(slow),
        "slowlog_top": (b" ".join(top["command"].split()[:3]).decode("utf-8", "replace")[:80]
                        if top else ""),
        "client_peak_mb": round(peak / 1e6, 1),
        "app": {k: round(v, 1) for k, v in w.app.items()},
        "result": str(result)[:120] if error is None else None,
        "error": error,
    }
    print(json.dumps(row), flush=True)
    return row


def service_stats(url: str, vec: Any) -> Any:
    """``GET /v1/stats`` of the service on this namespace (in process, no network)."""
    from fastapi.testclient import TestClient

    from paracache.service import create_app

    app = create_app(make_index(url, vec), llm=lambda request: "unused")
    with TestClient(app) as client:
        reply = client.get("/v1/stats")
        reply.raise_for_status()
        return reply.json()["entries"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="redis://127.0.0.1:7680")
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("--size", type=int, default=100_000)
    rp = sub.add_parser("run")
    rp.add_argument("--size", type=int, default=100_000)
    rp.add_argument("ops", nargs="+")
    args = ap.parse_args()
    if args.cmd == "load":
        load(args.url, args.size)
        return
    vec = perf.BenchVectorizer()
    admin = make_index(args.url, vec)
    app = make_index(args.url, vec)  # the product's default Redis timeout
    cli = [sys.executable, "-m", "paracache"]
    where = ["--redis-url", args.url, "--namespace", NAMESPACE]
    ops: dict[str, Callable[[], Any]] = {
        "count": admin.count,
        "entries": lambda: len(admin.entries(limit=10_000)),
        "stats": admin.stats,
        "cli-stats": lambda: subprocess.run([*cli, "stats", *where], check=True,
                                            capture_output=True).stdout[-300:],
        "cli-inspect": lambda: subprocess.run([*cli, "inspect", *where], check=True,
                                              capture_output=True).stdout[-300:],
        "repair-dry": lambda: admin.repair(dry_run=True),
        "repair": lambda: admin.repair(),
        "clear-tenant": lambda: admin.clear(tenant=TENANTS[-1]),
        "clear-model": lambda: admin.clear(model=MODELS[-1]),
        "clear-all": admin.clear,
        "learning": lambda: learning_summary(redis.Redis.from_url(args.url), NAMESPACE),
        "v1-stats": lambda: service_stats(args.url, vec),
    }
    for name in args.ops:
        if name.startswith("trim="):
            n = int(name.split("=")[1])
            capped = make_index(args.url, vec, max_entries=n)
            measure(args.url, name, capped.trim, app, args.size)
        else:
            measure(args.url, name, ops[name], app, args.size)


if __name__ == "__main__":
    main()
