"""Redis 8 vector sets (``VADD ... Q8``) as the semantic layer: memory, answers, speed.

A standalone probe (the package is not changed): on one stock server
(``/work/shared/tools/stock-redis PORT``: redis-server 8.2 + RediSearch 2.10, nothing but
``--loadmodule``), the 9,499 Banking77 questions ``perf.py --user-only`` stores, with the
vectors it stores (``benchmarks/out/vectors-user-stored-9499-*.npy``), are stored two ways:

(a) as paracache stores them today: ``paracache.langchain.SemanticCache.update`` on a
    default ``SemanticIndex`` (float16 HNSW in RediSearch, M 16), the LangChain scope;
(b) the same hashes (every field as (a) wrote it) minus the vector, plus one vector set per
    index holding each entry's float32 vector (``VADD ... FP32``), its attribute the
    entry's scope digest as JSON (``{"s": "<digest>"}``), M at the default; once with
    ``Q8`` and, for comparison, ``NOQUANT`` and ``BIN``.

``used_memory`` grown per entry is measured for each. Then the 500 questions perf.py looks
up (their stored vectors, ``vectors-user-queries-500-*.npy``) are searched: (a) with the
``FT.SEARCH`` KNN query paracache sends (pre-filtered on the scope, top 4, float16 query
vector), (b) with ``VSIM key FP32 <vector> WITHSCORES COUNT 4 FILTER '.s == "<digest>"'``.
Each is compared with exact cosine over the float32 vectors (recall, similarity error,
decisions at 0.90). A vector set's score is ``(1 + cosine) / 2`` (Redis docs: the cosine
similarity "rescaled from the -1, 1 original range to 0, 1"); it is turned back into a
cosine here before any comparison. Speed: server time (``INFO commandstats`` deltas) and
client time through redis-py, methods alternated in blocks of 25 queries. Last, trials of
what vector sets lack that paracache uses (TTL per element, pre-filters on small scopes).

    /work/shared/tools/stock-redis 7650 /work/main/.venv/bin/python &
    python benchmarks/vset_probe.py --url redis://127.0.0.1:7650 --json /tmp/vsetprobe.json

Results: benchmarks/RESULTS.md, "Vector sets (Q8) probe (vsetprobe)".
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import redis
from langchain_core.outputs import Generation

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # the data, split and vectors perf.py --user-only uses

#: The langchain-redis figure of perf.py's last run (stock server), for the ratio.
PEER_BYTES = 5_695
THRESHOLD = 0.90
K = 4
BLOCK = 25


# --------------------------------------------------------------------------- data


def vectors_file(texts: list[str], label: str) -> np.ndarray:
    """perf.py's cached vectors of ``texts`` (same name rule as ``perf.VectorStore``)."""
    h = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:12]
    path = perf.OUT / f"vectors-{label}-{len(texts)}-{h}.npy"
    if not path.exists():
        raise SystemExit(f"missing {path}: copy it from a perf.py run (see the docstring)")
    return np.load(path).astype(np.float32)


def used_memory(client: redis.Redis) -> int:
    gc.collect()
    return perf.used_memory(client)


def pairs(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    return {
        (raw[i].decode() if isinstance(raw[i], bytes) else raw[i]): raw[i + 1]
        for i in range(0, len(raw) - 1, 2)
    }


def wait_indexed(client: redis.Redis, index: str) -> int:
    for _ in range(1200):
        info = pairs(client.execute_command("FT.INFO", index))
        if int(info.get("indexing", 0)) == 0:
            return int(info["num_docs"])
        time.sleep(0.25)
    raise RuntimeError(f"{index} still indexing")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# --------------------------------------------------------------------------- (a) paracache


def load_paracache(url: str, namespace: str, stored: list[str],
                   vecs: np.ndarray) -> tuple[Any, dict[str, Any]]:
    from paracache.langchain import SemanticCache

    client = redis.Redis.from_url(url)
    vec = perf.BenchVectorizer()
    vec.know(stored, vecs)
    cache = SemanticCache(redis_url=url, namespace=namespace, vectorizer=vec)
    gen = [Generation(text=perf.answer_for(t)) for t in stored]
    before = used_memory(client)
    keys_before = client.dbsize()
    t0 = time.perf_counter()
    for text, g in zip(stored, gen, strict=True):
        cache.update(text, perf.USER_LLM_STRING, [g])
    seconds = time.perf_counter() - t0
    layout = cache.index.layout
    entries = wait_indexed(client, layout.index_name)
    delta = used_memory(client) - before
    vec.forget()
    out = {"seconds": seconds, "entries": entries, "keys": client.dbsize() - keys_before,
           "used_memory_grown": delta, "bytes_per_entry": delta / entries,
           "index": layout.index_name, "prefix": layout.prefix,
           "namespace_prefix": layout.namespace_prefix, "hnsw": vars(layout.hnsw).copy()
           if hasattr(layout.hnsw, "__dict__") else str(layout.hnsw),
           "dtype": layout.dtype}
    client.close()
    return cache, out


def read_entries(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    keys = sorted(client.scan_iter(match=prefix + "*", count=2000))
    rows = []
    for start in range(0, len(keys), 500):
        pipe = client.pipeline(transaction=False)
        for k in keys[start:start + 500]:
            pipe.hgetall(k)
            pipe.pttl(k)
        got = pipe.execute()
        for i, k in enumerate(keys[start:start + 500]):
            rows.append({"key": k, "fields": got[2 * i], "pttl": got[2 * i + 1]})
    return rows


# --------------------------------------------------------------------------- (b) vector sets


def load_hashes(client: redis.Redis, rows: list[dict[str, Any]], old: bytes,
                new: bytes) -> dict[str, Any]:
    """The entries' hashes under another namespace (same key lengths), minus the vector,
    each with the TTL it had."""
    before = used_memory(client)
    for start in range(0, len(rows), 500):
        pipe = client.pipeline(transaction=False)
        for r in rows[start:start + 500]:
            key = r["key"].replace(old, new, 1)
            fields = {f: v for f, v in r["fields"].items() if f != b"embedding"}
            pipe.hset(key, mapping=fields)
            if r["pttl"] > 0:
                pipe.pexpire(key, r["pttl"])
        pipe.execute()
    delta = used_memory(client) - before
    sample = rows[0]["key"].replace(old, new, 1)
    return {"used_memory_grown": delta, "bytes_per_entry": delta / len(rows),
            "encoding": client.object("encoding", sample),
            "memory_usage_sample": client.memory_usage(sample, samples=0),
            "with_ttl": sum(r["pttl"] > 0 for r in rows)}


def tag_index_cost(client: redis.Redis, name: str, prefix: str, n: int) -> dict[str, Any]:
    """What a RediSearch index over (b)'s hashes without a vector field would add (the
    TAG and NUMERIC fields paracache queries: clear(tenant=...), inspect, trimming)."""
    before = used_memory(client)
    client.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", 1, prefix, "SCHEMA",
        "scope", "TAG", "tenant", "TAG", "model", "TAG", "corpus", "TAG",
        "created_at", "NUMERIC", "SORTABLE")
    docs = wait_indexed(client, name)
    delta = used_memory(client) - before
    client.execute_command("FT.DROPINDEX", name)
    return {"docs": docs, "used_memory_grown": delta, "bytes_per_entry": delta / n}


def load_vset(client: redis.Redis, key: str, names: list[bytes], vecs: np.ndarray,
              attrs: list[str] | None, quant: str) -> dict[str, Any]:
    before = used_memory(client)
    t0 = time.perf_counter()
    for start in range(0, len(names), 500):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(len(names), start + 500)):
            attr = ("SETATTR", attrs[i]) if attrs else ()
            pipe.execute_command("VADD", key, "FP32", vecs[i].astype("<f4").tobytes(),
                                 names[i], quant, *attr)
        pipe.execute()
    seconds = time.perf_counter() - t0
    delta = used_memory(client) - before
    info = pairs(client.execute_command("VINFO", key))
    return {"used_memory_grown": delta, "bytes_per_element": delta / len(names),
            "seconds": seconds, "memory_usage": client.memory_usage(key, samples=0),
            "vinfo": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}}


# --------------------------------------------------------------------------- searching


def knn_args(index: str, digest: str, vector: bytes, policy: str | None) -> tuple[Any, ...]:
    """paracache's KNN query (``paracache.lookup``'s ``knn_args``, top_k 4)."""
    hybrid = f" HYBRID_POLICY {policy}" if policy else ""
    query = f"(@scope:{{{digest}}})=>[KNN {K} @embedding $vec{hybrid} AS __dist]"
    ret = ("scope", "prompt", "response", "__dist")
    return ("FT.SEARCH", index, query, "PARAMS", 2, "vec", vector, "SORTBY", "__dist",
            "RETURN", len(ret), *ret, "LIMIT", 0, K, "DIALECT", 2)


def parse_ft(reply: Any, prefix: bytes) -> list[tuple[bytes, float]]:
    if isinstance(reply, dict):  # RESP3 (redis-py's default protocol here)
        return [(row[b"id"][len(prefix):], 1.0 - float(row[b"extra_attributes"][b"__dist"]))
                for row in reply[b"results"]]
    out = []
    for i in range(1, len(reply), 2):
        fields = pairs(reply[i + 1])
        out.append((reply[i][len(prefix):], 1.0 - float(fields["__dist"])))
    return out


def vsim_args(key: str, vector: bytes, digest: str, *extra: Any) -> tuple[Any, ...]:
    return ("VSIM", key, "FP32", vector, "WITHSCORES", "COUNT", K,
            "FILTER", f'.s == "{digest}"', *extra)


def parse_vsim(reply: Any) -> list[tuple[bytes, float]]:
    """(element, cosine) pairs; a vector set's score is (1 + cosine) / 2."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = [(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]
    return [(e if isinstance(e, bytes) else str(e).encode(), 2.0 * float(s) - 1.0)
            for e, s in items]


#: A lookup's semantic step in one round trip: the vector set's neighbours, then the
#: fields paracache's guards read from each candidate's hash (VSIM runs in the main
#: thread inside a script).
LOOKUP_LUA = """
local args = {'VSIM', KEYS[1], 'FP32', ARGV[1], 'WITHSCORES', 'COUNT', 4, 'FILTER', ARGV[2]}
if ARGV[4] ~= '' then
  args[#args + 1] = 'EF'
  args[#args + 1] = ARGV[4]
end
local r = redis.call(unpack(args))
local out = {}
for i = 1, #r, 2 do
  out[#out + 1] = r[i]
  out[#out + 1] = r[i + 1]
  out[#out + 1] = redis.call('HMGET', ARGV[3] .. r[i], 'scope', 'prompt', 'response')
end
return out
"""


def answers(results: list[list[tuple[bytes, float]]], ids: list[bytes], exact_sims: np.ndarray,
            label: str) -> dict[str, Any]:
    """Recall and similarity error of one method's top-4 against exact cosine."""
    pos = {e: i for i, e in enumerate(ids)}
    top = np.argsort(-exact_sims, axis=1)[:, :K]
    r1 = r1_tie = r4 = 0
    diffs: list[float] = []
    top1_diffs: list[float] = []
    false_hit = false_miss = exact_hits = method_hits = 0
    short = 0
    for q, res in enumerate(results):
        best = float(exact_sims[q, top[q, 0]])
        exact_hit = best >= THRESHOLD
        exact_hits += exact_hit
        if len(res) < K:
            short += 1
        if not res:
            false_miss += exact_hit
            continue
        first = pos[res[0][0]]
        r1 += first == top[q, 0]
        r1_tie += float(exact_sims[q, first]) >= best - 1e-6
        r4 += len({pos[e] for e, _ in res} & set(top[q].tolist()))
        for e, s in res:
            diffs.append(abs(s - float(exact_sims[q, pos[e]])))
        top1_diffs.append(abs(res[0][1] - best))
        hit = res[0][1] >= THRESHOLD
        method_hits += hit
        false_hit += hit and not exact_hit
        false_miss += exact_hit and not hit
    n = len(results)
    return {"method": label, "n": n, "recall@1": r1 / n, "recall@1_ties": r1_tie / n,
            "recall@4": r4 / (K * n), "short_replies": short,
            "abs_sim_err_p50": pct(diffs, 50), "abs_sim_err_p99": pct(diffs, 99),
            "abs_sim_err_max": max(diffs), "top1_err_p50": pct(top1_diffs, 50),
            "top1_err_p99": pct(top1_diffs, 99),
            "hits_exact": exact_hits, "hits_method": method_hits,
            "crossed_differently": false_hit + false_miss,
            "false_hits": false_hit, "false_misses": false_miss}


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    raw = client.info("commandstats")
    return {k.removeprefix("cmdstat_").lower(): (int(v["calls"]), int(v["usec"]))
            for k, v in raw.items()}


def timed(client: redis.Redis, methods: dict[str, tuple[str, Any]], n: int,
          warm: int = 50) -> dict[str, Any]:
    """Each method over the first ``n`` queries, alternated in blocks of :data:`BLOCK`
    (order rotated per block); server time from ``INFO commandstats`` deltas of the
    method's command around each block, client time around each call."""
    names = list(methods)
    for name in names:  # warm-up, not counted
        cmd, make = methods[name]
        for i in range(warm):
            client.execute_command(*make(i))
    client_us: dict[str, list[float]] = {m: [] for m in names}
    server = {m: [0, 0] for m in names}
    loads: list[float] = []
    for b, start in enumerate(range(0, n, BLOCK)):
        loads.append(os.getloadavg()[0])
        order = names[b % len(names):] + names[:b % len(names)]
        for name in order:
            cmd, make = methods[name]
            calls = [make(i) for i in range(start, min(n, start + BLOCK))]
            s0 = commandstats(client).get(cmd, (0, 0))
            for args in calls:
                t0 = time.perf_counter()
                client.execute_command(*args)
                client_us[name].append((time.perf_counter() - t0) * 1e6)
            s1 = commandstats(client).get(cmd, (0, 0))
            server[name][0] += s1[0] - s0[0]
            server[name][1] += s1[1] - s0[1]
    loads.append(os.getloadavg()[0])
    return {"load_1min": {"min": min(loads), "max": max(loads)},
            "methods": {m: {"command": methods[m][0], "calls": server[m][0],
                            "server_us_mean": server[m][1] / max(1, server[m][0]),
                            "client_us_p50": pct(client_us[m], 50),
                            "client_us_p90": pct(client_us[m], 90),
                            "client_us_p99": pct(client_us[m], 99)} for m in names}}


# --------------------------------------------------------------------------- trials


def trial_ttl(client: redis.Redis, key: str, prefix: bytes, dims: int) -> dict[str, Any]:
    """An element whose hash expired is still in the vector set and still returned."""
    rng = np.random.default_rng(3)
    v = rng.standard_normal(dims).astype("<f4")
    v /= np.linalg.norm(v)
    name = b"ttltrial0000000000000000000000"
    client.hset(prefix + name, mapping={"prompt": "x", "response": "y"})
    client.pexpire(prefix + name, 300)
    client.execute_command("VADD", key, "FP32", v.tobytes(), name, "Q8",
                           "SETATTR", json.dumps({"s": "ttltrial"}))
    card0 = client.execute_command("VCARD", key)
    time.sleep(0.6)
    alive = client.exists(prefix + name)
    got = parse_vsim(client.execute_command(*vsim_args(key, v.tobytes(), "ttltrial")))
    card1 = client.execute_command("VCARD", key)
    errors = {}
    for args in (("VEXPIRE", key, name, 10), ("HEXPIRE", key, 10, "FIELDS", 1, name)):
        try:
            errors[args[0]] = str(client.execute_command(*args))
        except redis.ResponseError as exc:
            errors[args[0]] = f"error: {exc}"
    client.execute_command("VREM", key, name)
    return {"hash_exists_after_expiry": bool(alive), "vcard_before": card0,
            "vcard_after": card1, "vsim_returned_it": bool(got and got[0][0] == name),
            "vsim_score_cos": got[0][1] if got else None, "per_element_expiry": errors}


def trial_small_scope(client: redis.Redis, key: str, ids: list[bytes], evecs: np.ndarray,
                      qvecs: np.ndarray, size: int, nq: int) -> dict[str, Any]:
    """A scope holding ``size`` of the set's elements: VSIM's FILTER (applied while the
    graph is walked, up to COUNT*100 candidates by default) against exact search of the
    scope, and against one vector set per scope (no filter)."""
    rng = np.random.default_rng(7)
    chosen = sorted(rng.choice(len(ids), size=size, replace=False).tolist())
    for i in chosen:
        client.execute_command("VSETATTR", key, ids[i], json.dumps({"s": "small"}))
    own = key + ":small"
    for i in chosen:
        client.execute_command("VADD", own, "FP32", evecs[i].astype("<f4").tobytes(), ids[i],
                               "Q8")
    sub = evecs[chosen]
    out: dict[str, Any] = {"scope_size": size, "set_size": len(ids), "queries": nq}
    variants = {
        "FILTER (default FILTER-EF = COUNT*100)": lambda b: vsim_args(key, b, "small"),
        # FILTER-EF 0 ("as many nodes as needed" in the docs) is refused by 8.2.3
        # ("invalid FILTER-EF"): the set's size instead.
        "FILTER ... FILTER-EF <set size>": lambda b: vsim_args(key, b, "small", "FILTER-EF",
                                                               len(ids)),
        "one vector set per scope (no FILTER)": lambda b: ("VSIM", own, "FP32", b,
                                                            "WITHSCORES", "COUNT", K),
    }
    for label, make in variants.items():
        got_n, r1, us = [], 0, []
        for q in range(nq):
            b = qvecs[q].astype("<f4").tobytes()
            t0 = time.perf_counter()
            res = parse_vsim(client.execute_command(*make(b)))
            us.append((time.perf_counter() - t0) * 1e6)
            got_n.append(len(res))
            best = ids[chosen[int(np.argmax(sub @ qvecs[q]))]]
            r1 += bool(res) and res[0][0] == best
        out[label] = {"mean_results": statistics.mean(got_n), "empty": got_n.count(0),
                      "recall@1": r1 / nq, "client_us_p50": pct(us, 50)}
    for i in chosen:  # restore
        client.execute_command("VSETATTR", key, ids[i], json.dumps({"s": "restored"}))
    client.delete(own)
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="redis://127.0.0.1:7650")
    ap.add_argument("--stored", type=int, default=10_000, help="perf.py's user_stored")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--limit", type=int, default=0, help="store only the first N (dev runs)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    client = redis.Redis.from_url(args.url)
    client.flushall()
    protocol = client.connection_pool.connection_kwargs.get("protocol")
    stored, queries = perf.user_split(args.stored, args.queries)
    svecs = vectors_file(stored, "user-stored")
    qvecs = vectors_file(queries, "user-queries")
    if args.limit:
        stored, svecs = stored[:args.limit], svecs[:args.limit]
    out: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                           "load_1min_start": os.getloadavg()[0],
                           "server": client.info("server")["redis_version"],
                           "modules": [pairs(m) if not isinstance(m, dict) else
                                       {k.decode(): v for k, v in m.items()}
                                       for m in client.execute_command("MODULE", "LIST")],
                           "hash_max_listpack_value": client.config_get(
                               "hash-max-listpack-value")["hash-max-listpack-value"],
                           "redis_py": redis.__version__, "protocol": protocol,
                           "stored_texts": len(stored), "queries": len(queries),
                           "peer_bytes_per_entry": PEER_BYTES}
    out["modules"] = [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in m.items()
                       if k in ("name", "ver")} for m in out["modules"]]
    print(f"(a) paracache: storing {len(stored):,} through SemanticCache.update", flush=True)
    cache, a = load_paracache(args.url, "vsa", stored, svecs)
    out["a"] = a
    print(f"    {a['entries']:,} entries, {a['bytes_per_entry']:,.0f} B/entry", flush=True)

    rows = read_entries(client, a["prefix"])
    prefix_a = a["prefix"].encode()
    prefix_b = prefix_a.replace(b":vsa:", b":vsb:", 1)
    # Entries paracache stored without a vector (exact-only: too short to embed) keep
    # their hash in (b) and have no element in the vector set.
    vrows = [r for r in rows if b"embedding" in r["fields"]]
    out["entries_with_vector"] = len(vrows)
    ids = [r["key"][len(prefix_a):] for r in vrows]
    digests = sorted({r["fields"][b"scope"].decode() for r in rows})
    assert len(digests) == 1, digests
    digest = digests[0]
    # Each entry's float32 vector: the stored vector its float16 copy came from.
    e16 = np.stack([np.frombuffer(r["fields"][b"embedding"], dtype=np.float16)
                    for r in vrows]).astype(np.float32)
    # Most are the file's vectors; an entry whose text paracache changed before embedding
    # (a corrected typo) holds the model's vector of that text: its float16 copy is
    # taken then (no float32 of it exists outside the embedder).
    match = e16 @ svecs.T
    best = match.max(axis=1)
    matched = best >= 0.999
    out["vectors_from_file"] = int(matched.sum())
    out["vectors_from_float16"] = int((~matched).sum())
    evecs = np.where(matched[:, None], svecs[match.argmax(axis=1)], e16).astype(np.float32)
    out["entry_fields"] = sorted(f.decode() for f in rows[0]["fields"])
    out["entry_memory_usage_sample"] = client.memory_usage(rows[0]["key"], samples=0)
    out["entry_encoding"] = client.object("encoding", rows[0]["key"])

    print("(b) hashes without the vector", flush=True)
    out["b_hashes"] = load_hashes(client, rows, prefix_a, prefix_b)
    out["b_tag_index"] = tag_index_cost(client, "vsb-tags", prefix_b.decode(), len(rows))
    vkey = prefix_b.decode().removesuffix(":e:") + ":vs"
    attrs = [json.dumps({"s": digest}) for _ in ids]
    out["attribute_bytes"] = len(attrs[0])
    vsets: dict[str, str] = {}
    out["b_vsets"] = {}
    for quant in ("Q8", "NOQUANT", "BIN"):
        key = f"{vkey}:{quant.lower()}"
        vsets[quant] = key
        out["b_vsets"][quant] = load_vset(client, key, ids, evecs, attrs, quant)
        print(f"    {quant}: {out['b_vsets'][quant]['bytes_per_element']:,.0f} B/element",
              flush=True)
    # One vector set per scope instead: no attribute, no FILTER (measured, then dropped).
    key = f"{vkey}:q8plain"
    out["b_vset_q8_no_attribute"] = load_vset(client, key, ids, evecs, None, "Q8")
    vsets["Q8 plain"] = key
    hashes_b = out["b_hashes"]["bytes_per_entry"]
    out["bytes_per_entry"] = {
        "a paracache today": a["bytes_per_entry"],
        **{f"b hashes + vector set {q}": hashes_b + v["used_memory_grown"] / len(rows)
           for q, v in out["b_vsets"].items()},
        **{f"b hashes + vector set {q} + TAG/NUMERIC index": hashes_b +
           v["used_memory_grown"] / len(rows) + out["b_tag_index"]["bytes_per_entry"]
           for q, v in out["b_vsets"].items()},
    }
    out["ratio_to_peer"] = {k: v / PEER_BYTES for k, v in out["bytes_per_entry"].items()}

    # ---- answers
    print("answers: exact cosine, FT.SEARCH, VSIM", flush=True)
    en = evecs / np.linalg.norm(evecs, axis=1, keepdims=True)
    qn = qvecs / np.linalg.norm(qvecs, axis=1, keepdims=True)
    exact = qn @ en.T
    out["query_norms"] = [float(np.linalg.norm(qvecs, axis=1).min()),
                          float(np.linalg.norm(qvecs, axis=1).max())]
    index = a["index"]
    q16 = [qvecs[i].astype(np.float16).tobytes() for i in range(len(qvecs))]
    q32 = [qvecs[i].astype("<f4").tobytes() for i in range(len(qvecs))]
    lua = client.register_script(LOOKUP_LUA)
    searches: dict[str, Any] = {
        "a FT.SEARCH (RediSearch's choice)": lambda i: knn_args(index, digest, q16[i], None),
        "a FT.SEARCH HYBRID_POLICY BATCHES": lambda i: knn_args(index, digest, q16[i],
                                                                "BATCHES"),
        "b VSIM Q8": lambda i: vsim_args(vsets["Q8"], q32[i], digest),
        "b VSIM Q8 TRUTH (linear scan)": lambda i: vsim_args(vsets["Q8"], q32[i], digest,
                                                             "TRUTH"),
        "b VSIM Q8 EF 20": lambda i: vsim_args(vsets["Q8"], q32[i], digest, "EF", 20),
        "b VSIM Q8, set without attributes, no FILTER": lambda i: (
            "VSIM", vsets["Q8 plain"], "FP32", q32[i], "WITHSCORES", "COUNT", K),
        "b VSIM NOQUANT": lambda i: vsim_args(vsets["NOQUANT"], q32[i], digest),
        "b VSIM BIN": lambda i: vsim_args(vsets["BIN"], q32[i], digest),
    }
    out["reply_types"] = {"FT.SEARCH": type(client.execute_command(
        *knn_args(index, digest, q16[0], None))).__name__, "VSIM": type(
        client.execute_command(*vsim_args(vsets["Q8"], q32[0], digest))).__name__}
    out["answers"] = []
    for label, make in searches.items():
        res = []
        for i in range(len(queries)):
            reply = client.execute_command(*make(i))
            res.append(parse_ft(reply, prefix_a) if label.startswith("a ")
                       else parse_vsim(reply))
        out["answers"].append(answers(res, ids, exact, label))
    # The Lua lookup answers as VSIM Q8 does (checked on 20 queries).
    for i in range(20):
        r = lua(keys=[vsets["Q8"]], args=[q32[i], f'.s == "{digest}"', prefix_b, ""])
        assert r[0] == parse_vsim(client.execute_command(*searches["b VSIM Q8"](i)))[0][0]

    # ---- speed
    print("speed: alternating blocks", flush=True)
    sha = lua.sha
    timing: dict[str, tuple[str, Any]] = {
        "a FT.SEARCH (RediSearch's choice)": ("ft.search", searches[
            "a FT.SEARCH (RediSearch's choice)"]),
        "a FT.SEARCH HYBRID_POLICY BATCHES": ("ft.search", searches[
            "a FT.SEARCH HYBRID_POLICY BATCHES"]),
        "b VSIM Q8": ("vsim", searches["b VSIM Q8"]),
        "b VSIM Q8 NOTHREAD": ("vsim", lambda i: vsim_args(vsets["Q8"], q32[i], digest,
                                                           "NOTHREAD")),
        "b VSIM Q8 EF 20 NOTHREAD": ("vsim", lambda i: vsim_args(
            vsets["Q8"], q32[i], digest, "EF", 20, "NOTHREAD")),
        "b VSIM Q8 no FILTER": ("vsim", searches[
            "b VSIM Q8, set without attributes, no FILTER"]),
        "b VSIM Q8 no FILTER NOTHREAD": ("vsim", lambda i: (
            *searches["b VSIM Q8, set without attributes, no FILTER"](i), "NOTHREAD")),
        "b VSIM NOQUANT": ("vsim", searches["b VSIM NOQUANT"]),
        "b VSIM BIN": ("vsim", searches["b VSIM BIN"]),
        "b EVALSHA VSIM Q8 + HMGET x4": ("evalsha", lambda i: (
            "EVALSHA", sha, 1, vsets["Q8"], q32[i], f'.s == "{digest}"', prefix_b, "")),
        "b EVALSHA VSIM Q8 EF 20 + HMGET x4": ("evalsha", lambda i: (
            "EVALSHA", sha, 1, vsets["Q8"], q32[i], f'.s == "{digest}"', prefix_b, 20)),
    }
    out["speed_started_utc"] = time.strftime("%H:%M:%S", time.gmtime())
    out["speed"] = timed(client, timing, len(queries))
    out["speed_ended_utc"] = time.strftime("%H:%M:%S", time.gmtime())

    # ---- trials
    print("trials", flush=True)
    out["trial_ttl"] = trial_ttl(client, vsets["Q8"], prefix_b, qvecs.shape[1])
    out["trial_small_scope"] = [
        trial_small_scope(client, vsets["Q8"], ids, evecs, qvecs, size, 200)
        for size in (20, 100, 1000) if size < len(ids)]
    out["ended_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    out["load_1min_end"] = os.getloadavg()[0]
    cache.index.close()
    text = json.dumps(out, indent=1, default=lambda o: o.decode() if isinstance(o, bytes)
                      else str(o))
    if args.json:
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
