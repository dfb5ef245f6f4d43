"""One server against a 3-shard Redis Cluster: lookup latency, throughput, memory, failover.

``python benchmarks/perf.py --cluster`` (or this file) fills the same entries into one
embedded server and into an embedded cluster of 3 primaries (RediSearch without a
coordinator: paracache fans the KNN query out to every primary and merges), side by side
in one process, and prints:

* the cache's share of a semantic lookup (exact read, KNN over every shard, merge) with
  an instant embedder, so the embedding model's time is not in it: p50/p99, 1 caller;
* lookups per second with 32 concurrent callers (threads);
* memory per shard (``used_memory``) against the single server's;
* with ``--failover`` (a cluster with replicas): a primary killed under load: exceptions
  into the application, wrong-scope hits, the longest call, and how long until 90 % and
  100 % of the stored questions are served again.

Entries get vectors from a deterministic hash embedder (as in the tests): the index and
the KNN work are real, the similarities are not; lookups that miss cost the exact read
and the full KNN, which is what is measured. The machine is shared: compare ratios.

Run: ``python benchmarks/perf_cluster.py --entries 100000 [--failover]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))

from paracache import Scope, SemanticIndex
from paracache.embedded import EmbeddedCluster, EmbeddedRedis

SCOPES = [Scope(model="m", tenant=f"tenant-{i}") for i in range(10)]


class HashVectorizer:
    """A deterministic, instant embedder: a unit vector seeded by the text's hash."""

    type = "bench"
    model = "hash-384"
    dims = 384

    def embed(self, text: str, **_: Any) -> list[float]:
        seed = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        vec = np.random.default_rng(int.from_bytes(seed, "little")).standard_normal(self.dims)
        return (vec / np.linalg.norm(vec)).astype(np.float32).tolist()

    def embed_many(self, texts: Sequence[str], **_: Any) -> list[list[float]]:
        return [self.embed(t) for t in texts]

    async def aembed(self, text: str, **_: Any) -> list[float]:
        return self.embed(text)

    async def aembed_many(self, texts: Sequence[str], **_: Any) -> list[list[float]]:
        return self.embed_many(texts)


def _question(i: int) -> str:
    return f"customer question number {i} about order {i * 7919 % 100_000}"


def fill(cache: SemanticIndex, n: int) -> float:
    """Store ``n`` entries over the scopes; returns entries per second."""
    started = time.perf_counter()
    per = n // len(SCOPES)
    for s, scope in enumerate(SCOPES):
        pairs = [(_question(s * per + i), f"answer {s * per + i}") for i in range(per)]
        cache.warm(pairs, scope, progress=False, batch_size=256)
    return n / (time.perf_counter() - started)


def latencies(cache: SemanticIndex, count: int, seed: int = 1) -> list[float]:
    """Seconds per semantic lookup (one caller): misses, so every one runs the KNN."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        question = f"never stored question {rng.random()}"
        t0 = time.perf_counter()
        cache.lookup(question, rng.choice(SCOPES))
        out.append(time.perf_counter() - t0)
    return out


def throughput(cache: SemanticIndex, callers: int, seconds: float) -> float:
    """Semantic lookups per second with ``callers`` threads."""
    stop = time.perf_counter() + seconds
    done = [0] * callers

    def work(k: int) -> None:
        rng = random.Random(k)
        while time.perf_counter() < stop:
            cache.lookup(f"never stored question {rng.random()}", rng.choice(SCOPES))
            done[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(callers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def _ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def _cpu(ports: Sequence[int], password: str) -> np.ndarray:
    """CPU seconds each server on ``ports`` has used (``INFO cpu``: user + system)."""
    import redis

    used = []
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port, password=password)
        try:
            info = client.info("cpu")
            used.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
        finally:
            client.close()
    return np.array(used)


def _memory(port: int, password: str) -> int:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def embedding_cpu(texts: int = 300) -> float:
    """CPU milliseconds (all threads of this process) the default embedder spends on one
    text, over ``texts`` distinct questions: what a semantic lookup costs the client
    besides the cache's share measured above."""
    from paracache.vectorizers import MiniLMVectorizer

    vectorizer = MiniLMVectorizer()
    vectorizer.embed("warm up the session")
    started = time.process_time()
    for i in range(texts):
        vectorizer.embed(f"{_question(i)} and something else {i}")
    return (time.process_time() - started) / texts * 1000


def compare(n: int, samples: int, seconds: float) -> None:
    print(f"{n:,} entries over {len(SCOPES)} scopes; shared 2-core machine: compare ratios\n")
    server = EmbeddedRedis().start()
    cluster = EmbeddedCluster(primaries=3, replicas=0).start()
    try:
        caches = {
            "1 server": SemanticIndex(server.url, namespace="bench", vectorizer=HashVectorizer(),
                                      track_hits=False, timeout=2.0, guards=None),
            "3 shards": SemanticIndex(cluster.url, namespace="bench", vectorizer=HashVectorizer(),
                                      track_hits=False, timeout=2.0, guards=None),
        }  # fmt: skip
        rates = {name: fill(cache, n) for name, cache in caches.items()}
        for cache in caches.values():
            latencies(cache, 50)  # warm the connections
        lat: dict[str, list[float]] = {name: [] for name in caches}
        rps: dict[str, float] = dict.fromkeys(caches, 0.0)
        ports = {"1 server": ([server.port], server.password),
                 "3 shards": (cluster.primary_ports(), cluster.password)}  # fmt: skip
        # CPU seconds per lookup with 32 callers: each server's, and this process's.
        shard_cpu = {name: np.zeros(len(ports[name][0])) for name in caches}
        client_cpu = dict.fromkeys(caches, 0.0)
        for _ in range(2):  # alternate, twice: the machine is shared
            for name, cache in caches.items():
                lat[name] += latencies(cache, samples // 2)
            for name, cache in caches.items():
                servers, client, wall = _cpu(*ports[name]), time.process_time(), time.time()
                rate = throughput(cache, 32, seconds / 2)
                done = max(rate * (time.time() - wall), 1)
                shard_cpu[name] += (_cpu(*ports[name]) - servers) / done / 2
                client_cpu[name] += (time.process_time() - client) / done / 2
                rps[name] += rate / 2
        rows = [
            (name, _ms(lat[name], 50), _ms(lat[name], 99), rps[name], rates[name])
            for name in caches
        ]
        print("| | lookup p50 ms | p99 ms | lookups/s, 32 callers | warm entries/s |")
        print("|---|---:|---:|---:|---:|")
        for name, p50, p99, per_s, rate in rows:
            print(f"| {name} | {p50:.2f} | {p99:.2f} | {per_s:,.0f} | {rate:,.0f} |")
        one, three = rows
        print(f"\nratios 3 shards / 1 server: p50 {three[1] / one[1]:.2f}x, "
              f"p99 {three[2] / one[2]:.2f}x, throughput {three[3] / one[3]:.2f}x")  # fmt: skip
        cores = os.cpu_count() or 1
        print("\nCPU per lookup with 32 callers (servers' INFO cpu, this process's time), "
              f"the most {cores} cores could do at that cost, and what was done:")  # fmt: skip
        for name in caches:
            servers, client = float(shard_cpu[name].sum()), client_cpu[name]
            ceiling = cores / (servers + client)
            print(f"  {name}: servers {servers * 1e3:.3f} ms ("
                  + " + ".join(f"{c * 1e3:.3f}" for c in shard_cpu[name])
                  + f"), client {client * 1e3:.3f} ms; ceiling {ceiling:,.0f}/s, "
                  f"measured {rps[name]:,.0f}/s ({rps[name] / ceiling:.0%} of it)")  # fmt: skip
        print("\nPREDICTION (arithmetic on the CPU above, not measured): with a core for "
              "each server and for this process, a process caps at 1 / its CPU per lookup "
              "(the client: one Python process, the GIL):")  # fmt: skip
        predicted = {}
        for name in caches:
            shard_cap = 1 / float(shard_cpu[name].max())
            client_cap = 1 / client_cpu[name]
            predicted[name] = (min(shard_cap, client_cap), shard_cap)
            print(f"  {name}: busiest server {shard_cap:,.0f}/s, client {client_cap:,.0f}/s "
                  f"-> {predicted[name][0]:,.0f}/s with one client process, "
                  f"{shard_cap:,.0f}/s with enough client processes")  # fmt: skip
        (one_p, one_s), (three_p, three_s) = predicted.values()
        print(f"  3 shards / 1 server: {three_p / one_p:.2f}x (one client process), "
              f"{three_s / one_s:.2f}x (enough client processes)")  # fmt: skip
        embed_ms = embedding_cpu()
        print(f"\nthe default embedder (all-MiniLM-L6-v2 int8, ONNX), one text: "
              f"{embed_ms:.2f} ms CPU; alone it caps {cores} cores at "
              f"{cores / embed_ms * 1e3:,.0f} semantic lookups/s, shards or not")  # fmt: skip
        single = _memory(server.port, server.password)
        shards = [_memory(p, cluster.password) for p in cluster.primary_ports()]
        print(f"\nmemory: 1 server {single / 2**20:.1f} MiB; shards "
              + ", ".join(f"{m / 2**20:.1f}" for m in shards)
              + f" MiB (sum {sum(shards) / 2**20:.1f})")  # fmt: skip
        for cache in caches.values():
            cache.close()
    finally:
        server.close()
        cluster.close()


def failover(n: int) -> None:
    """Kill a primary under load (3 threads of lookups and stores) and measure."""
    cluster = EmbeddedCluster(primaries=3, replicas=1, node_timeout=1000).start()
    try:
        url = cluster.node_url(cluster.primary_ports()[0])
        cache = SemanticIndex(url, namespace="failover", vectorizer=HashVectorizer(), timeout=0.1)
        per = n // 2
        stored = [(_question(i), f"answer {i}") for i in range(per)]
        for scope in SCOPES[:2]:
            cache.warm([(q, f"{scope.tenant}: {a}") for q, a in stored], scope, progress=False)
        errors: list[BaseException] = []
        wrong = [0]
        slowest = [0.0]
        stop = threading.Event()

        def work(k: int) -> None:
            rng = random.Random(k)
            while not stop.is_set():
                scope = SCOPES[rng.randrange(2)]
                q, a = stored[rng.randrange(per)]
                t0 = time.perf_counter()
                try:
                    if rng.random() < 0.1:
                        cache.store(q, f"{scope.tenant}: {a}", scope)
                    else:
                        hit = cache.lookup(q, scope)
                        if hit is not None and not hit.response.startswith(f"{scope.tenant}:"):
                            wrong[0] += 1
                except BaseException as exc:
                    errors.append(exc)
                slowest[0] = max(slowest[0], time.perf_counter() - t0)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        victim = cluster.primary_ports()[-1]
        killed = time.monotonic()
        cluster.node(victim).kill()
        while victim in cluster.primary_ports():
            time.sleep(0.02)
        promoted = time.monotonic() - killed

        probe = stored[:: max(1, per // 50)][:50]  # 100 lookups: a fine time resolution

        def served() -> float:
            ok = sum(
                (h := cache.lookup(q, s)) is not None and h.response == f"{s.tenant}: {a}"
                for s in SCOPES[:2] for q, a in probe
            )  # fmt: skip
            return ok / (2 * len(probe))

        after: dict[str, float] = {}
        while time.monotonic() - killed < 60 and "100" not in after:
            share = served()
            for mark, need in (("90", 0.9), ("100", 1.0)):
                if share >= need and mark not in after:
                    after[mark] = time.monotonic() - killed
        stop.set()
        for t in threads:
            t.join()
        print("\nfailover (3 primaries + 3 replicas, cluster-node-timeout 1 s, timeout 0.1 s, "
              "3 threads of lookups and stores):")  # fmt: skip
        print(f"  exceptions into the app: {len(errors)}; wrong-scope hits: {wrong[0]}; "
              f"slowest call: {slowest[0] * 1000:.0f} ms")  # fmt: skip
        print(f"  replica promoted after {promoted:.1f} s; 90 % of the stored questions "
              f"served again {after.get('90', float('nan')):.1f} s after the kill, 100 % "
              f"after {after.get('100', float('nan')):.1f} s")  # fmt: skip
        cache.close()
    finally:
        cluster.close()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=2000, help="timed lookups per system")
    ap.add_argument("--seconds", type=float, default=10.0, help="throughput run per system")
    ap.add_argument("--failover", action="store_true", help="also kill a primary under load")
    ap.add_argument("--only-failover", action="store_true", help="only the failover run")
    ap.add_argument("--cluster", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if not args.only_failover:
        compare(args.entries, args.samples, args.seconds)
    if args.failover or args.only_failover:
        failover(min(args.entries, 10_000))
    print(f"\ndone in {(time.perf_counter() - t0) / 60:.1f} min: "
          f"python benchmarks/perf_cluster.py {' '.join(argv or sys.argv[1:])}")  # fmt: skip

if __name__ == "__main__":
    main()
