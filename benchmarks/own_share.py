"""The cache's own share of a LangChain lookup at 10 k, 100 k and 1 M entries, on one server.

Issue 13's target "at 1 M entries the cache's own share stays <= 0.5 ms" (own share =
lookup minus embedding). One Redis server (a stock one: ``/work/shared/tools/stock-redis
PORT``, redis-server 8.2 + RediSearch 2.10 with nothing but ``--loadmodule``) holds one
``paracache.langchain.SemanticCache`` namespace per size (``own-10k``, ``own-100k``,
``own-1m``), all at once, so each size can be measured again later on the same data.

Stored: :func:`perf.corpus_vectors`'s corpus (Banking77 questions not held out, then
templated variations; the first 10 k embedded for real, beyond that a variation's vector
is its source's plus calibrated noise) and, past 100 k, :func:`perf.big_corpus`'s noisy
copies. Entries are written with ``SemanticIndex.warm`` under the scope a LangChain
``lookup``/``update`` with :data:`perf.USER_LLM_STRING` uses, with LangChain's payload (the
generations as ``update`` serialises them), so a hit decodes as it would in an app. The
TTL policy is paracache's default 7 days without the 300 s TTL of prompts naming the
present (a load takes longer than that); nothing else differs from the defaults.

Asked: 400 held-out Banking77 questions through ``SemanticCache.lookup`` (exact layer,
readability, KNN, guards: the path a LangChain app takes), their vectors known (the
embedder is out: the measured time is the cache's own share), the embedding memo cleared
before each lookup. Per lookup: the wall time, the server time (``INFO commandstats``
deltas around it, ``INFO``/``PING`` excluded) and the outcome. Then HNSW recall@1 of the
lookup's KNN query at the defaults (the hybrid policy the lookups' tuner chose and
RediSearch's EF_RUNTIME) against exact search over the stored vectors.

Loading is resumable and bounded, so it can run in short turns under a shared lock::

    python benchmarks/own_share.py --url redis://127.0.0.1:7133 load 1000000 --minutes 18
    python benchmarks/own_share.py --url redis://127.0.0.1:7133 measure 1000000 --passes 2
    python benchmarks/own_share.py --url redis://127.0.0.1:7133 status

Results are printed and saved as ``benchmarks/out/own_share-SIZE-TIME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from typing import Any

import numpy as np
import perf
import redis
from langchain_core.outputs import Generation

from paracache import TTLPolicy
from paracache.langchain import SemanticCache, _dump_generations

QUERIES = 400
#: Texts written per ``warm`` call (the progress counter moves by this much).
CHUNK = 20_000


def namespace(size: int) -> str:
    return f"own-{perf.fmt_size(size).replace(' ', '').lower()}"


def progress_key(size: int) -> str:
    return f"paracache-bench:own-share:{namespace(size)}"


def make_cache(url: str, size: int, vec: perf.BenchVectorizer) -> SemanticCache:
    policy = TTLPolicy(default_ttl=7 * 24 * 3600, volatile_ttl=None)
    return SemanticCache(redis_url=url, namespace=namespace(size), vectorizer=vec,
                         ttl_policy=policy)


def held_out() -> tuple[list[str], np.ndarray]:
    """The held-out questions (perf.run's split) and their vectors."""
    held, _ = perf.held_and_base(random.Random(2026))
    return held, perf.VectorStore(perf.MiniLMVectorizer()).vectors(held, "held")


def stored(size: int) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The first ``size`` texts of the stored corpus, their vectors, and notes."""
    _, base = perf.held_and_base(random.Random(2026))
    store = perf.VectorStore(perf.MiniLMVectorizer())
    notes: dict[str, Any] = {}
    corpus, vecs = perf.corpus_vectors(store, base, 100_000, False, notes)
    if size > len(corpus):
        corpus, vecs = perf.big_corpus(corpus, vecs, size)
    return corpus[:size], vecs[:size], notes


def info_of(client: redis.Redis, index: str) -> dict[str, Any]:
    return perf._pairs_of(client.execute_command("FT.INFO", index))


def server_info(client: redis.Redis) -> dict[str, Any]:
    modules = {m[b"name"] if isinstance(m, dict) else m[1]: m[b"ver"] if isinstance(m, dict)
               else m[3] for m in client.execute_command("MODULE", "LIST")}
    config = perf._pairs_of(client.execute_command("FT.CONFIG", "GET", "PARTIAL_INDEXED_DOCS"))
    return {"redis": client.info("server")["redis_version"],
            "search_module": modules.get(b"search"),
            "partial_indexed_docs": perf._plain(config),
            "hash_max_listpack_value": client.config_get("hash-max-listpack-value")[
                "hash-max-listpack-value"],
            "used_memory": int(client.info("memory")["used_memory"])}


def load(url: str, size: int, minutes: float) -> dict[str, Any]:
    """Write the next chunks of ``size``'s corpus until done or ``minutes`` have passed."""
    client = redis.Redis.from_url(url)
    raw = client.hgetall(progress_key(size))
    done = int(raw.get(b"done", 0))
    spent = float(raw.get(b"seconds", 0.0))
    if done >= size:
        print(f"{namespace(size)}: loaded already ({done:,} texts in {spent:.0f} s)")
        return {"done": done, "seconds": spent}
    texts, vecs, notes = stored(size)
    vec = perf.BenchVectorizer()
    cache = make_cache(url, size, vec)
    _, scope, _ = cache._request(texts[0], perf.USER_LLM_STRING)
    start_mem = int(client.info("memory")["used_memory"])
    if done == 0:
        client.hset(progress_key(size), mapping={"memory_before": start_mem,
                                                 "started": time.strftime("%H:%M:%S",
                                                                          time.gmtime())})
    stop_at = time.monotonic() + minutes * 60
    while done < size and time.monotonic() < stop_at:
        part = texts[done:done + CHUNK]
        vec.know(part, vecs[done:done + CHUNK])
        pairs = [(t, _dump_generations([Generation(text=perf.answer_for(t))])[0])
                 for t in part]
        t0 = time.perf_counter()
        cache.index.warm(pairs, scope, batch_size=512, progress=False)
        spent += time.perf_counter() - t0
        vec.forget()
        done += len(part)
        client.hset(progress_key(size), mapping={"done": done, "seconds": spent})
        print(f"  {namespace(size)}: {done:,}/{size:,} in {spent:.0f} s "
              f"({time.strftime('%H:%M:%S', time.gmtime())} UTC, load "
              f"{os.getloadavg()[0]:.2f})", flush=True)
    if done >= size:
        used = int(client.info("memory")["used_memory"])
        before = int(client.hget(progress_key(size), "memory_before") or 0)
        info = info_of(client, cache.index.layout.index_name)
        client.hset(progress_key(size), mapping={
            "memory_after": used, "finished": time.strftime("%H:%M:%S", time.gmtime()),
            "num_docs": int(info["num_docs"])})
        print(f"{namespace(size)}: done, {int(info['num_docs']):,} entries, "
              f"{spent:.0f} s of writing, used_memory +{(used - before) / 2**20:,.0f} MiB "
              f"({(used - before) / max(1, int(info['num_docs'])):,.0f} B/entry)")
    cache.index.close()
    return {"done": done, "seconds": spent, **notes}


def status(url: str) -> None:
    client = redis.Redis.from_url(url)
    print(json.dumps(server_info(client), default=str))
    for key in sorted(client.scan_iter(match="paracache-bench:own-share:*")):
        print(key.decode(), {k.decode(): v.decode() for k, v in client.hgetall(key).items()})


def measure(url: str, size: int, passes: int, recall: bool) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    loaded = {k.decode(): v.decode() for k, v in client.hgetall(progress_key(size)).items()}
    if int(loaded.get("done", 0)) < size:
        raise SystemExit(f"{namespace(size)} is not loaded: {loaded}")
    held, held_vecs = held_out()
    asked = held[:QUERIES]
    vec = perf.BenchVectorizer()
    vec.know(held, held_vecs)
    vec.warmup()
    cache = make_cache(url, size, vec)
    index_name = cache.index.layout.index_name
    out: dict[str, Any] = {
        "size": size, "namespace": namespace(size), "loaded": loaded,
        "server": server_info(client), "index": perf._plain(
            {k: v for k, v in info_of(client, index_name).items()
             if k in ("num_docs", "vector_index_sz_mb", "doc_table_size_mb", "inverted_sz_mb",
                      "total_index_memory_sz_mb")}),
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_before": os.getloadavg()[0], "passes": [],
    }
    for p in range(passes):
        order = list(asked)
        random.Random(100 + p).shuffle(order)
        # A few lookups first (not counted): connections, scripts, the tuner's first probes.
        for text in order[:10]:
            cache.index._memo.clear()
            cache.lookup(text, perf.USER_LLM_STRING)
        times: list[float] = []
        embeds: list[float] = []
        server_us: list[int] = []
        by_kind: dict[str, list[float]] = {}
        hits = 0
        commands: dict[str, list[int]] = {}
        e0 = vec.seconds
        t_start = time.strftime("%H:%M:%S", time.gmtime())
        for text in order:
            cache.index._memo.clear()
            before = perf._commandstats(client)
            c0 = vec.seconds
            t0 = time.perf_counter()
            verdict = cache.lookup_verdict(text, perf.USER_LLM_STRING)
            got = cache.decode(verdict)
            took = time.perf_counter() - t0
            # A posted command (a batch of hit counts) reaches the server's counts once
            # its reply is read: a PING on the same connection reads it (PINGs left out).
            cache.index._direct.call(("PING",))
            after = perf._commandstats(client)
            delta = {c: (after[c][0] - before.get(c, (0, 0))[0],
                         after[c][1] - before.get(c, (0, 0))[1])
                     for c in after if c not in ("info", "ping")}
            # Commands a script runs are counted under their own names as well: the
            # server's time is the scripts' when the lookup ran scripts.
            scripted = [c for c in delta if c.startswith(("eval", "fcall")) and delta[c][0]]
            usec = sum(delta[c][1] for c in (scripted or delta))
            for c, (calls, us) in delta.items():
                if calls:
                    acc = commands.setdefault(c, [0, 0])
                    acc[0] += calls
                    acc[1] += us
            times.append(took)
            embeds.append(vec.seconds - c0)
            server_us.append(usec)
            hits += got is not None
            by_kind.setdefault(str(verdict.outcome), []).append(took)
        ms = [t * 1e3 for t in times]
        own = [(t - e) * 1e3 for t, e in zip(times, embeds, strict=True)]
        row = {"started": t_start, "ended": time.strftime("%H:%M:%S", time.gmtime()),
               "load_1min": os.getloadavg()[0], "n": len(ms),
               "p50_ms": perf.pct(ms, 50), "p90_ms": perf.pct(ms, 90),
               "p99_ms": perf.pct(ms, 99), "mean_ms": statistics.mean(ms),
               "own_p50_ms": perf.pct(own, 50), "own_p90_ms": perf.pct(own, 90),
               "own_p99_ms": perf.pct(own, 99),
               "tokenizer_ms_p50": perf.pct([e * 1e3 for e in embeds], 50),
               "server_us_p50": statistics.median(server_us),
               "server_us_mean": statistics.mean(server_us),
               "client_ms_p50": perf.pct([t - u / 1e3 for t, u in zip(own, server_us,
                                                                        strict=True)], 50),
               "hit_rate": hits / len(ms), "embedder_s": vec.seconds - e0,
               "model_runs": sum(e > 1e-3 for e in embeds),
               "commands_per_lookup": {c: {"calls": n / len(ms), "usec": us / len(ms)}
                                       for c, (n, us) in sorted(commands.items())},
               "outcomes": {k: {"n": len(v), "p50_ms": perf.pct([x * 1e3 for x in v], 50)}
                            for k, v in sorted(by_kind.items())}}
        out["passes"].append(row)
        print(f"{namespace(size)} pass {p + 1} ({row['started']}-{row['ended']} UTC, load "
              f"{row['load_1min']:.2f}): p50 {row['p50_ms']:.3f} / p90 {row['p90_ms']:.3f} / "
              f"p99 {row['p99_ms']:.3f} ms; own share p50 {row['own_p50_ms']:.3f} / p90 "
              f"{row['own_p90_ms']:.3f} / p99 {row['own_p99_ms']:.3f} ms (tokenizer p50 "
              f"{row['tokenizer_ms_p50']:.3f} ms); server {row['server_us_p50']:.0f} us p50 "
              f"(mean {row['server_us_mean']:.0f}), client {row['client_ms_p50']:.3f} ms, "
              f"hit rate {row['hit_rate']:.1%}, embedder {row['embedder_s']:.3f} s "
              f"({row['model_runs']} lookups ran the model)", flush=True)
        print("    per lookup: " + ", ".join(
            f"{c} {v['calls']:.2f} x {v['usec'] / max(v['calls'], 1e-9):.0f} us"
            for c, v in row["commands_per_lookup"].items()), flush=True)
    if recall:
        req = cache.index.core.prepare_lookup("recall probe", cache._request(
            asked[0], perf.USER_LLM_STRING)[1])
        policy = cache.index.core._hybrid_policy(req.scope_digest)
        texts, vecs, notes = stored(size)
        out["notes"] = notes
        keys = [cache.index.core.prepare_lookup(t, req.scope).key for t in texts]
        s = perf.Systems(cache.index, None, None, client)  # type: ignore[arg-type]
        qv = np.asarray(held_vecs[:QUERIES])
        out["recall"] = perf.measure_recall(s, vecs, keys, qv, (None,), (policy,),
                                            scope=req.scope)
        out["recall_policy"] = policy or "auto"
        r = out["recall"][0]
        print(f"{namespace(size)} recall@1 at the defaults (policy {policy or 'auto'}, "
              f"EF_RUNTIME default): {r['recall_at_1']:.1%}, query p50 {r['p50_ms']:.2f} ms",
              flush=True)
    out["load_after"] = os.getloadavg()[0]
    cache.index.close()
    perf.OUT.mkdir(exist_ok=True)
    path = perf.OUT / f"own_share-{size}-{time.strftime('%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(out, indent=1, default=perf._plain), encoding="utf-8")
    print(f"saved {path}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="redis://127.0.0.1:7133")
    sub = ap.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("load", help="write the next chunks of one size's entries")
    lo.add_argument("size", type=int)
    lo.add_argument("--minutes", type=float, default=18.0,
                    help="stop after the chunk that passes this (default 18)")
    me = sub.add_parser("measure", help="lookups, server time, hit rate, recall@1")
    me.add_argument("size", type=int)
    me.add_argument("--passes", type=int, default=2)
    me.add_argument("--no-recall", action="store_true")
    sub.add_parser("status", help="the server and what is loaded")
    args = ap.parse_args()
    if args.cmd == "load":
        load(args.url, args.size, args.minutes)
    elif args.cmd == "measure":
        measure(args.url, args.size, args.passes, not args.no_recall)
    else:
        status(args.url)


if __name__ == "__main__":
    main()
