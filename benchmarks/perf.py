"""Speed, memory and scale: paracache against langchain-redis and RedisVL, one run.

First, *the user's path* (:func:`user_path`): what a LangChain app runs, on two servers
started here, side by side: a **stock-config** one (redis-server 8.2 + RediSearch 2.10
with nothing but ``--loadmodule``: no ``PARTIAL_INDEXED_DOCS``, Redis' default
``hash-max-listpack-value`` 64; what a ``redis-stack`` container, Redis Cloud or a
self-managed Redis 8 looks like) and paracache's **tuned** embedded one (those two
settings changed) as the extra column. ``paracache.langchain.SemanticCache`` and
langchain-redis ``RedisSemanticCache`` each store Banking77 questions through
``update`` and look up others through ``lookup``, (a) on one shared, clocked embedder
(the cache's own share = lookup minus embedding) and (b) each on its own default
embedding pipeline end to end. paracache's embedding memo is cleared before each of its
lookups everywhere in this script: no system is spared an embedding the others pay.

Then the three-system tiers (10 k, 100 k, 1 M entries) on the stock server by default
(``--server tuned`` for the embedded one), on one shared embedder (paracache's offline
int8 MiniLM; the peers get it as their vectorizer, langchain-redis through a LangChain
``Embeddings`` adapter). Systems are alternated query by query, so machine noise hits
all alike; results are medians and ratios. Stored entries are bulk-loaded with
precomputed vectors (each system with its own key and field layout; the peers through
their index's ``load()``); queries go through the embedder end to end, except at 1 M
entries, where query vectors are precomputed too (the embedder taken out).

    python benchmarks/perf.py --quick              # development: small sizes
    python benchmarks/perf.py --user-only          # only the user's path (both servers)
    python benchmarks/perf.py                      # the full run (10 k, 100 k, 1 M entries)
    python benchmarks/perf.py --write-results      # ... and update benchmarks/RESULTS.md

Stored questions: Banking77 (shared data, 10,003 questions, CC BY 4.0), then templated
variations (greeting prefixes, closing suffixes, number substitutions) up to 100 k; at
1 M, noisy copies of those vectors. Paraphrase hits and misses are held-out Banking77
questions whose nearest stored question is at cosine similarity >= 0.90 (a hit at the
default threshold) or < 0.85 (a clear miss); exact repeats are stored questions asked
verbatim. Needs ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from banking77 import BANKING77, require

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib

import redis
from langchain_core.embeddings import Embeddings
from langchain_core.outputs import Generation
from redisvl.extensions.cache.llm import SemanticCache as RVLSemanticCache
from redisvl.extensions.cache.llm.schema import CacheEntry

from paracache import Normalizer, Scope, SemanticIndex, TTLPolicy
from paracache.embedded import EmbeddedRedis
from paracache.policy import strip_pleasantries
from paracache.protocol import search_rows
from paracache.vectorizers import MiniLMVectorizer

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
#: Banking77 in the shared data folder beside the checkout (see banking77.py).
DATA = BANKING77
RESULTS = HERE / "RESULTS.md"
PLOT = HERE / "latency_vs_size.png"
SYSTEMS = ("paracache", "langchain-redis", "redisvl")
LLM_STRING = "gpt-4o-mini|temperature=0"
SCOPE = Scope(model="gpt-4o-mini", params={"temperature": 0})

PREFIXES = ["", "Hi, ", "Hello, ", "Hey, ", "Quick question: ", "Please help: ",
            "Excuse me, ", "Good morning, ", "Sorry to bother you, ", "I need help: "]
SUFFIXES = ["", " Thanks", " Thank you so much", " Please advise", " Any ideas",
            " Cheers", " This is urgent", " Thanks in advance", " Help me out here",
            " Kind regards"]
# Query-side variations for the async run (never stored).
ASYNC_PREFIXES = ["Hiya, ", "Yo, ", "Dear support, ", "One more thing: ", "Hi team, ",
                  "Good evening, ", "Question: ", "Help please: "]


# --------------------------------------------------------------------------- data


def load_intents() -> dict[str, str]:
    """Banking77's intent of each question (as :func:`load_questions` strips it)."""
    with require(DATA).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r["text"].strip(): r["intent"] for r in rows}


def load_questions() -> list[str]:
    with require(DATA).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    seen: set[str] = set()
    out = []
    for r in rows:
        t = r["text"].strip()
        if t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out


def _substitute_numbers(text: str, k: int) -> str:
    digits = "0123456789"
    return "".join(digits[(digits.index(c) + k) % 10] if c.isdigit() else c for c in text)


def variants(base: Sequence[str], n: int, seed: int = 5) -> list[str]:
    """``n`` distinct texts: ``base`` first, then prefix/suffix/number variations."""
    return variants_with_sources(base, n, seed)[0]


def variants_with_sources(base: Sequence[str], n: int,
                          seed: int = 5) -> tuple[list[str], list[int]]:
    """:func:`variants` and, for each text, the index of the base question it varies."""
    combos = [(p, s) for p in range(len(PREFIXES)) for s in range(len(SUFFIXES))][1:]
    random.Random(seed).shuffle(combos)
    out = list(base[:n])
    sources = list(range(len(out)))
    seen = {t.lower() for t in out}
    for k, (p, s) in enumerate(combos):
        for j, q in enumerate(base):
            if len(out) >= n:
                return out, sources
            text = PREFIXES[p] + (q[0].lower() + q[1:] if PREFIXES[p] else q) + SUFFIXES[s]
            text = _substitute_numbers(text, k % 9 + 1) if any(c.isdigit() for c in q) else text
            if text.lower() not in seen:
                seen.add(text.lower())
                out.append(text)
                sources.append(j)
    if len(out) >= n:
        return out, sources
    raise ValueError(f"cannot make {n} variants from {len(base)} questions")


#: Texts embedded for real; beyond, a variation's vector is its source question's plus
#: noise calibrated on the real ones (``--embed-all`` embeds everything).
REAL_EMBEDDED = 10_000


def corpus_vectors(store: VectorStore, base: Sequence[str], n: int, embed_all: bool,
                   info: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    texts, sources = variants_with_sources(base, n)
    if embed_all or n <= REAL_EMBEDDED:
        return texts, store.vectors(texts, "stored")
    real = store.vectors(texts[:REAL_EMBEDDED], "stored")
    nb = len(base)
    # how close a real variation is to its source question
    cos = [float(real[i] @ real[sources[i]]) for i in range(nb, REAL_EMBEDDED)]
    target = statistics.median(cos)
    dims = real.shape[1]
    sigma = float(np.sqrt((1 / target**2 - 1) / dims))
    rng = np.random.default_rng(11)
    src = real[np.asarray(sources[REAL_EMBEDDED:]) % REAL_EMBEDDED]
    synth = src + rng.standard_normal(src.shape).astype(np.float32) * sigma
    synth /= np.linalg.norm(synth, axis=1, keepdims=True)
    info["variation_vectors"] = {"real": REAL_EMBEDDED, "synthetic": n - REAL_EMBEDDED,
                                 "median_cos_real_variation": target, "sigma": sigma}
    return texts, np.concatenate([real, synth]).astype(np.float32)


class VectorStore:
    """Embeddings of texts, computed once with the offline model and kept on disk."""

    def __init__(self, embedder: MiniLMVectorizer) -> None:
        self.embedder = embedder
        OUT.mkdir(exist_ok=True)

    def vectors(self, texts: Sequence[str], label: str) -> np.ndarray:
        h = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:12]
        path = OUT / f"vectors-{label}-{len(texts)}-{h}.npy"
        if path.exists():
            return np.load(path)
        print(f"  embedding {len(texts):,} texts once (cached in {path.name}) ...", flush=True)
        t0 = time.perf_counter()
        chunks = []
        for start in range(0, len(texts), 2048):
            chunks.append(np.asarray(
                self.embedder.embed_many(list(texts[start:start + 2048]), batch_size=32),
                dtype=np.float32))
            done = min(len(texts), start + 2048)
            rate = done / (time.perf_counter() - t0)
            print(f"    {done:,}/{len(texts):,} ({rate:.0f}/s)", flush=True)
        arr = np.concatenate(chunks)
        np.save(path, arr)
        return arr


# --------------------------------------------------------------------------- embedder


class BenchVectorizer(MiniLMVectorizer):  # type: ignore[misc]
    """The offline MiniLM, plus (1) precomputed vectors for known texts (bulk loads, the
    1 M tier) and (2) a clock of the time spent in the real model, so each lookup can
    be split into embedder and cache. Same model id: same index identity as MiniLM.

    The clock covers the tokenizer as well as the model, whichever step asks for the
    tokens first: paracache tokenizes a question for its readability check and embeds
    from those tokens (one pass, :meth:`MiniLMVectorizer._encode_one`), the peers
    tokenize inside their embedding call; either way the tokens are the model's input."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_known", {})
        object.__setattr__(self, "_clock", [0.0])
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_inside", threading.local())

    def _encode_one(self, runtime: Any, prepared: str) -> Any:
        if getattr(self._inside, "embedding", False):  # on the clock already
            return super()._encode_one(runtime, prepared)
        t0 = time.perf_counter()
        try:
            return super()._encode_one(runtime, prepared)
        finally:
            with self._lock:
                self._clock[0] += time.perf_counter() - t0

    def know(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Answer these texts (as given, and as paracache normalises them) from memory."""
        norm = Normalizer()
        for t, v in zip(texts, vectors, strict=True):
            self._known[t] = v
            self._known[norm(t)] = v
            self._known.setdefault(strip_pleasantries(norm(t)), v)  # what paracache embeds

    def forget(self) -> None:
        self._known.clear()

    @property
    def seconds(self) -> float:
        return float(self._clock[0])

    def _embed(self, content: Any, **kw: Any) -> list[float]:
        known = self._known.get(content)
        if known is not None:
            return [float(x) for x in known]
        t0 = time.perf_counter()
        self._inside.embedding = True
        try:
            return super()._embed(content, **kw)
        finally:
            self._inside.embedding = False
            with self._lock:
                self._clock[0] += time.perf_counter() - t0

    def _embed_array(self, content: Any) -> Any:
        """The cache's own embedding path (the model's float32 row): known texts from
        memory, others from the model, on the clock."""
        known = self._known.get(content)
        if known is not None:
            return np.array(known, dtype=np.float32)
        if getattr(self._inside, "embedding", False):  # on the clock already (_embed)
            return super()._embed_array(content)
        t0 = time.perf_counter()
        self._inside.embedding = True
        try:
            return super()._embed_array(content)
        finally:
            self._inside.embedding = False
            with self._lock:
                self._clock[0] += time.perf_counter() - t0

    def _embed_many(self, contents: list[Any], batch_size: int = 10, **kw: Any) -> Any:
        out: list[Any] = [self._known.get(c) for c in contents]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            t0 = time.perf_counter()
            fresh = super()._embed_many([contents[i] for i in todo], batch_size=batch_size)
            with self._lock:
                self._clock[0] += time.perf_counter() - t0
            for i, v in zip(todo, fresh, strict=True):
                out[i] = v
        return [list(map(float, v)) for v in out]


class LangChainAdapter(Embeddings):
    """LangChain ``Embeddings`` over the same vectorizer, for langchain-redis."""

    def __init__(self, vectorizer: BenchVectorizer) -> None:
        self.vectorizer = vectorizer

    def embed_query(self, text: str) -> list[float]:
        return list(self.vectorizer.embed(text))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(v) for v in self.vectorizer.embed_many(texts, batch_size=32)]

    async def aembed_query(self, text: str) -> list[float]:
        return list(await self.vectorizer.aembed(text))


# --------------------------------------------------------------------------- systems


@dataclasses.dataclass
class Systems:
    para: SemanticIndex
    rvl: RVLSemanticCache
    lc: Any
    client: redis.Redis

    def lookup(self, name: str, text: str) -> bool:
        if name == "paracache":
            # No memo advantage: the peers embed every query, so paracache does too
            # (the cache-alone pass re-asks the same queries).
            self.para._memo.clear()
            return self.para.lookup(text, SCOPE) is not None
        if name == "redisvl":
            return bool(self.rvl.check(prompt=text))
        return self.lc.lookup(text, LLM_STRING) is not None

    async def alookup(self, name: str, text: str) -> bool:
        if name == "paracache":
            self.para._memo.clear()
            return (await self.para.alookup(text, SCOPE)) is not None
        if name == "redisvl":
            return bool(await self.rvl.acheck(prompt=text))
        return (await self.lc.alookup(text, LLM_STRING)) is not None

    def store(self, name: str, text: str, answer: str) -> None:
        if name == "paracache":
            self.para.store(text, answer, SCOPE)
        elif name == "redisvl":
            self.rvl.store(prompt=text, response=answer)
        else:
            self.lc.update(text, LLM_STRING, [Generation(text=answer)])


def make_systems(url: str, tag: str, vec: BenchVectorizer, dtype: str = "float16",
                 **para_kw: Any) -> Systems:
    from langchain_redis import RedisSemanticCache

    client = redis.Redis.from_url(url)
    # paracache's default 7-day TTL, without the 300 s TTL for prompts that name the
    # present ("now", "today"): a 15-minute bulk load would see those expire mid-run.
    policy = TTLPolicy(default_ttl=7 * 24 * 3600, volatile_ttl=None)
    para = SemanticIndex(url, namespace=f"bench-{tag}", vectorizer=vec, dtype=dtype,
                         ttl_policy=policy, **para_kw)
    rvl = RVLSemanticCache(name=f"rvl-{tag}", vectorizer=vec, distance_threshold=0.10,
                           redis_client=redis.Redis.from_url(url))
    lc = RedisSemanticCache(embeddings=LangChainAdapter(vec),
                            redis_client=redis.Redis.from_url(url),
                            distance_threshold=0.10, name=f"lcr-{tag}")
    return Systems(para, rvl, lc, client)


def answer_for(text: str) -> str:
    return f"Here is how to handle that: {text[:60]}. Contact support if it persists."


def used_memory(client: redis.Redis) -> int:
    time.sleep(0.2)
    return int(client.info("memory")["used_memory"])


def load_paracache(s: Systems, texts: Sequence[str], vectors: np.ndarray,
                   vec: BenchVectorizer) -> float:
    vec.know(texts, vectors)
    t0 = time.perf_counter()
    s.para.warm(((t, answer_for(t)) for t in texts), SCOPE, batch_size=512, progress=False)
    vec.forget()
    return time.perf_counter() - t0


def load_redisvl(cache: RVLSemanticCache, texts: Sequence[str], vectors: np.ndarray,
                 response: Callable[[str], str], metadata: dict[str, Any] | None) -> float:
    t0 = time.perf_counter()
    dtype = cache._vectorizer.dtype
    for start in range(0, len(texts), 2000):
        rows = [
            CacheEntry(prompt=t, response=response(t), prompt_vector=v.tolist(),
                       metadata=metadata).to_dict(dtype)
            for t, v in zip(texts[start:start + 2000], vectors[start:start + 2000], strict=True)
        ]
        cache._index.load(data=rows, id_field="entry_id", batch_size=500)
    return time.perf_counter() - t0


def lc_response(text: str) -> str:
    from langchain_core.load import dumps

    return json.dumps([dumps(Generation(text=answer_for(text)))])


def load_all(s: Systems, texts: Sequence[str], vectors: np.ndarray,
             vec: BenchVectorizer) -> dict[str, dict[str, float]]:
    """Bulk-load every system, measuring used_memory per entry for each."""
    out: dict[str, dict[str, float]] = {}
    for name in SYSTEMS:
        gc.collect()
        before = used_memory(s.client)
        if name == "paracache":
            seconds = load_paracache(s, texts, vectors, vec)
        elif name == "redisvl":
            seconds = load_redisvl(s.rvl, texts, vectors, answer_for, None)
        else:
            seconds = load_redisvl(s.lc.cache, texts, vectors, lc_response,
                                   {"llm_string": LLM_STRING})
        wait_indexed(s, name)
        delta = used_memory(s.client) - before
        entries = count_docs(s, name)  # texts that normalise alike share an entry
        out[name] = {"load_s": seconds, "bytes_per_entry": delta / max(1, entries),
                     "entries": entries}
        print(f"    loaded {name}: {entries:,} entries in {seconds:.1f} s, "
              f"{delta / max(1, entries):,.0f} B/entry", flush=True)
    return out


def index_name(s: Systems, name: str) -> str:
    if name == "paracache":
        return s.para.layout.index_name
    if name == "redisvl":
        return s.rvl._index.name
    return s.lc.cache._index.name


def ft_info(s: Systems, name: str) -> dict[str, Any]:
    raw = s.client.execute_command("FT.INFO", index_name(s, name))
    if isinstance(raw, dict):
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw) - 1, 2)}


def count_docs(s: Systems, name: str) -> int:
    return int(ft_info(s, name)["num_docs"])


def wait_indexed(s: Systems, name: str) -> None:
    for _ in range(600):
        info = ft_info(s, name)
        if int(info.get("indexing", 0)) == 0:
            return
        time.sleep(0.5)


# --------------------------------------------------------------------------- measuring


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


@dataclasses.dataclass
class Samples:
    total: list[float] = dataclasses.field(default_factory=list)
    embed: list[float] = dataclasses.field(default_factory=list)
    hits: int = 0
    right: int = 0  # hits whose answer was stored for a question of the asker's intent

    def add(self, total: float, embed: float, hit: bool, right: bool = False) -> None:
        self.total.append(total)
        self.embed.append(embed)
        self.hits += int(hit)
        self.right += int(hit and right)

    @property
    def own(self) -> list[float]:
        return [t - e for t, e in zip(self.total, self.embed, strict=True)]

    def summary(self) -> dict[str, float]:
        ms = [x * 1e3 for x in self.total]
        own = [x * 1e3 for x in self.own]
        emb = [x * 1e3 for x in self.embed]
        return {"p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
                "own_p50": pct(own, 50), "own_p95": pct(own, 95),
                "embed_p50": pct(emb, 50), "n": len(ms), "hit_rate": self.hits / max(1, len(ms)),
                "precision": self.right / self.hits if self.hits else float("nan")}


def measure_lookups(s: Systems, vec: BenchVectorizer, queries: dict[str, list[str]],
                    embedder_alone: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """Per kind of query, per system: latency percentiles, split embedder/cache.
    Systems take turns on each query (rotating who goes first)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind, texts in queries.items():
        samples = {name: Samples() for name in (*SYSTEMS, "embedder alone")}
        order = list(SYSTEMS) + (["embedder alone"] if embedder_alone else [])
        for i, text in enumerate(texts):
            rot = order[i % len(order):] + order[:i % len(order)]
            for name in rot:
                e0 = vec.seconds
                t0 = time.perf_counter()
                if name == "embedder alone":
                    vec.embed(text)
                    hit = False
                else:
                    hit = s.lookup(name, text)
                total = time.perf_counter() - t0
                samples[name].add(total, vec.seconds - e0, hit)
        out[kind] = {name: smp.summary() for name, smp in samples.items() if smp.total}
    return out


def measure_transport(s: Systems, unix_url: str,
                      queries: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """paracache over loopback TCP (as in the tables) against its default transport, the
    embedded server's Unix socket: same entries, query vectors known, turns alternated."""
    sock = SemanticIndex(unix_url, namespace=s.para.namespace, vectorizer=s.para.vectorizer,
                         dtype=s.para.layout.dtype, ttl_policy=s.para.settings.policy)
    sock.core.tuner = s.para.core.tuner  # the hybrid policy already learnt, for both
    out: dict[str, dict[str, float]] = {}
    for kind, texts in queries.items():
        times: dict[str, list[float]] = {"tcp": [], "unix": []}
        for i, text in enumerate(texts):
            pair = (("tcp", s.para), ("unix", sock))
            for name, idx in pair if i % 2 else pair[::-1]:
                t0 = time.perf_counter()
                idx.lookup(text, SCOPE)
                times[name].append(time.perf_counter() - t0)
        out[kind] = {name: pct(ts, 50) * 1e3 for name, ts in times.items()}
    sock.close()
    return out


def measure_writes(s: Systems, texts: Sequence[str]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for i, text in enumerate(texts):
        rot = SYSTEMS[i % 3:] + SYSTEMS[:i % 3]
        for name in rot:
            t0 = time.perf_counter()
            s.store(name, text, answer_for(text))
            times[name].append(time.perf_counter() - t0)
    return {name: len(ts) / sum(ts) for name, ts in times.items()}


def measure_warm(s: Systems, vec: BenchVectorizer, texts: Sequence[str],
                 chunk: int) -> dict[str, float]:
    """paracache.warm against the embedder's own embed_many on the same texts (with its
    default bulk threads, one per core, and with one thread), alternating chunk by
    chunk and rotating which goes first."""
    def embed_on(threads: int | None) -> Callable[[list[str]], None]:
        def go(part: list[str]) -> None:
            before = vec.bulk_threads
            object.__setattr__(vec, "bulk_threads", threads)
            try:
                vec.embed_many(part, batch_size=16)
            finally:
                object.__setattr__(vec, "bulk_threads", before)
        return go

    def warm(part: list[str]) -> None:
        s.para.warm([(t, answer_for(t)) for t in part], SCOPE, progress=False)

    steps = {"warm": warm, "embed": embed_on(None), "embed_1": embed_on(1)}
    spent = dict.fromkeys(steps, 0.0)
    names = list(steps)
    for n, start in enumerate(range(0, len(texts), chunk)):
        part = list(texts[start:start + chunk])
        for name in names[n % 3:] + names[:n % 3]:
            t0 = time.perf_counter()
            steps[name](part)
            spent[name] += time.perf_counter() - t0
    return {"warm_per_s": len(texts) / spent["warm"],
            "embed_many_per_s": len(texts) / spent["embed"],
            "embed_many_1_per_s": len(texts) / spent["embed_1"],
            "threads": float(vec._threads_for(64)),
            "share": spent["embed"] / spent["warm"]}


def measure_async(s: Systems, mixes: list[list[str]], concurrency: int) -> dict[str, float]:
    """Lookups/s with ``concurrency`` tasks on one event loop; each system runs each
    mix once (a fresh mix per round, systems rotated)."""
    rates: dict[str, list[float]] = {name: [] for name in SYSTEMS}

    async def run(name: str, texts: list[str]) -> float:
        queue = list(texts)
        # The rounds ask the same questions behind other greetings, which paracache
        # strips before embedding: without this, its embedding memo would answer later
        # rounds while the peers embed every query.
        s.para._memo.clear()

        async def worker() -> None:
            while queue:
                await s.alookup(name, queue.pop())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - t0)

    async def main() -> None:
        for r, mix in enumerate(mixes):
            for name in SYSTEMS[r % 3:] + SYSTEMS[:r % 3]:
                rates[name].append(await run(name, mix))
            await s.para.aclose()

    asyncio.run(main())
    return {name: statistics.median(v) for name, v in rates.items()}


def measure_recall(s: Systems, stored_vectors: np.ndarray, stored_keys: list[str],
                   query_vectors: np.ndarray, efs: Sequence[int | None],
                   policies: Sequence[str | None] = ("BATCHES", None),
                   scope: Scope = SCOPE) -> list[dict[str, Any]]:
    """Recall@1 of paracache's HNSW KNN (scope-filtered, as lookups run it) against
    exact brute force, and the query's round trip, for several EF_RUNTIME values
    (``None``: the index's own, RediSearch's default) and hybrid policies (``None``:
    RediSearch chooses)."""
    core = s.para.core
    stored16 = stored_vectors.astype(np.float16).astype(np.float32)
    truth = []
    for start in range(0, len(query_vectors), 64):
        sims = query_vectors[start:start + 64] @ stored16.T
        truth.extend(stored_keys[j] for j in sims.argmax(axis=1))
    req = core.prepare_lookup("recall probe", scope)
    rows = []
    for policy in policies:
        for ef in efs:
            found, times = 0, []
            for qv, want in zip(query_vectors, truth, strict=True):
                args = list(core.knn_args(req, qv.astype(np.float16).tobytes(), policy))
                if ef is not None:
                    args[2] = args[2].replace(" AS __dist", f" EF_RUNTIME {ef} AS __dist")
                t0 = time.perf_counter()
                raw = s.client.execute_command(*args)
                times.append(time.perf_counter() - t0)
                hits = search_rows(raw)[1]
                got = hits[0][0] if hits else None
                found += int(got == want)
            rows.append({"policy": policy or "auto", "ef_runtime": ef or "default",
                         "recall_at_1": found / len(truth),
                         "p50_ms": pct(times, 50) * 1e3})
    return rows


def profile_lookups(s: Systems, texts: Sequence[str]) -> str:
    """cProfile of paracache lookups (paraphrase hits), top functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for t in texts:
        s.para._memo.clear()  # the prefixes it strips would make memo hits
        s.para.lookup(t, SCOPE)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
    return buf.getvalue()


# --------------------------------------------------------------------------- the user's path

#: What LangChain passes as ``llm_string`` for a chat model (the same for both caches).
USER_LLM_STRING = ("[('_type', 'openai-chat'), ('model_name', 'gpt-4o-mini'), "
                   "('temperature', 0.0)]")


class OnnxEmbeddings(Embeddings):
    """The MiniLM ONNX model as a LangChain ``Embeddings``: langchain-redis's pipeline.
    ``vectorizer`` defaults to onnxruntime's default session options (one thread per
    core), what a user who loads the model with onnxruntime gets."""

    def __init__(self, vectorizer: MiniLMVectorizer | None = None) -> None:
        self.vectorizer = vectorizer or MiniLMVectorizer(intra_op_num_threads=0)

    def embed_query(self, text: str) -> list[float]:
        return list(self.vectorizer.embed(text))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(self.vectorizer.embed(t)) for t in texts]


def user_split(n_stored: int, n_queries: int) -> tuple[list[str], list[str]]:
    """Banking77 questions split by a fixed seed: ``n_queries`` to ask, the next
    ``n_stored`` to store (all the others at most)."""
    questions = load_questions()
    random.Random(13).shuffle(questions)
    return questions[n_queries:n_queries + n_stored], questions[:n_queries]


def user_path(url: str, stored: Sequence[str], queries: Sequence[str],
              store: VectorStore) -> dict[str, Any]:
    """paracache.langchain.SemanticCache against langchain-redis RedisSemanticCache, as a
    LangChain app calls them (``update``, ``lookup``), side by side on one server.

    (a) *shared embedder*: both on one clocked MiniLM, so each lookup splits into the
    embedder's time and the cache's own share. (b) *own pipeline*: each on its default
    embedding path end to end (paracache: its default vectorizer; langchain-redis: the
    same model on onnxruntime's default session options, see :class:`OnnxEmbeddings`).
    Entries are written through ``update`` (vectors of the stored questions known in
    advance, so the load does not wait for the model). On the shared embedder the
    systems take turns query by query; on their own pipelines in blocks of
    :data:`OWN_BLOCK` queries (one system's embedder threads must not run into the
    other's timings). paracache's embedding memo is cleared before each of its lookups
    (the peer has none), so every lookup embeds. Exact repeats are stored questions asked
    verbatim, each right after a question on the same system's own pipeline.
    """
    from langchain_redis import RedisSemanticCache

    from paracache.langchain import SemanticCache

    client = redis.Redis.from_url(url)
    tag = hashlib.sha1(url.encode()).hexdigest()[:6]
    ns, lc_name = f"user-{tag}", f"lcr-user-{tag}"
    shared = BenchVectorizer()
    shared.warmup()
    vecs = store.vectors(list(stored), "user-stored")
    shared.know(stored, vecs)
    para_shared = SemanticCache(redis_url=url, namespace=ns, vectorizer=shared)
    lc_shared = RedisSemanticCache(embeddings=LangChainAdapter(shared), redis_client=client,
                                   name=lc_name)
    gen = [Generation(text=answer_for(t)) for t in stored]
    modules = {m[b"name"] if isinstance(m, dict) else m[1]: m[b"ver"] if isinstance(m, dict)
               else m[3] for m in client.execute_command("MODULE", "LIST")}
    config = _pairs_of(client.execute_command("FT.CONFIG", "GET", "PARTIAL_INDEXED_DOCS"))
    out: dict[str, Any] = {
        "stored": len(stored), "queries": len(queries),
        "server": {"redis": client.info("server")["redis_version"],
                   "search_module": modules.get(b"search"),
                   "partial_indexed_docs": _plain(config),
                   "hash_max_listpack_value": client.config_get("hash-max-listpack-value")[
                       "hash-max-listpack-value"]}}
    for name, cache in (("paracache", para_shared), ("langchain-redis", lc_shared)):
        gc.collect()
        before = used_memory(client)
        t0 = time.perf_counter()
        for text, g in zip(stored, gen, strict=True):
            cache.update(text, USER_LLM_STRING, [g])
        seconds = time.perf_counter() - t0
        index = (para_shared.index.layout.index_name if name == "paracache"
                 else lc_shared.cache._index.name)
        info = _pairs_of(client.execute_command("FT.INFO", index))
        entries = int(info["num_docs"])
        keys = sum(1 for _ in client.scan_iter(
            match=(para_shared.index.layout.prefix if name == "paracache"
                   else f"{lc_shared.cache._index.prefix}:") + "*", count=1000))
        delta = used_memory(client) - before
        out.setdefault("load", {})[name] = {
            "seconds": seconds, "entries": entries, "keys": keys,
            "bytes_per_entry": delta / max(1, entries)}
        print(f"    {name}: {entries:,} entries ({keys:,} keys) through update() in "
              f"{seconds:.0f} s, {delta / max(1, entries):,.0f} B/entry", flush=True)
    shared.forget()
    para_own = SemanticCache(redis_url=url, namespace=ns)
    own_embeddings = OnnxEmbeddings()
    lc_own = RedisSemanticCache(embeddings=own_embeddings, redis_client=client, name=lc_name)
    para_own.index.vectorizer.warmup()
    own_embeddings.vectorizer.warmup()
    runs: dict[str, tuple[Any, BenchVectorizer | None]] = {
        "paracache, shared embedder": (para_shared, shared),
        "langchain-redis, shared embedder": (lc_shared, shared),
        "paracache, own pipeline": (para_own, None),
        "langchain-redis, own pipeline": (lc_own, None),
    }
    samples = {name: Samples() for name in runs}
    exact = {name: Samples() for name in ("paracache", "langchain-redis")}
    asked = list(stored[: len(queries)])
    loads: list[float] = []
    # A hit is right when its answer was stored for a question of the asker's intent.
    intents = load_intents()
    answer_intent = {answer_for(t): intents.get(t) for t in stored}

    def ask(name: str, text: str, into: Samples) -> None:
        cache, clock = runs[name]
        if isinstance(cache, SemanticCache):
            cache.index._memo.clear()
        e0 = clock.seconds if clock else 0.0
        t0 = time.perf_counter()
        got = cache.lookup(text, USER_LLM_STRING)
        total = time.perf_counter() - t0
        right = bool(got) and answer_intent.get(got[0].text) == intents.get(text)
        into.add(total, (clock.seconds - e0) if clock else 0.0, got is not None, right)

    # (a) One shared embedder: the systems take turns query by query.
    shared_pair = ("paracache, shared embedder", "langchain-redis, shared embedder")
    for i, text in enumerate(queries):
        if i % 25 == 0:
            loads.append(os.getloadavg()[0])
        for name in shared_pair if i % 2 else shared_pair[::-1]:
            ask(name, text, samples[name])
    # (b) Each system on its own pipeline, in alternating blocks of OWN_BLOCK queries (a
    # question, then an exact repeat): two onnxruntime pools in one process on a few
    # cores would otherwise charge one system for the other's threads (onnxruntime's
    # default pool keeps spinning after a call; see RESULTS.md, issue 13).
    own = ("paracache", "langchain-redis")
    for b, start in enumerate(range(0, len(queries), OWN_BLOCK)):
        loads.append(os.getloadavg()[0])
        for system in own if b % 2 else own[::-1]:
            for i in range(start, min(len(queries), start + OWN_BLOCK)):
                ask(f"{system}, own pipeline", queries[i], samples[f"{system}, own pipeline"])
                ask(f"{system}, own pipeline", asked[i], exact[system])
    loads.append(os.getloadavg()[0])
    out["lookups"] = {name: smp.summary() for name, smp in samples.items()}
    out["exact"] = {name: smp.summary() for name, smp in exact.items()}
    out["load_1min"] = {"min": min(loads), "max": max(loads)}
    out["server"]["cost"] = server_costs(url, para_own, lc_own, queries, asked)
    for cache in (para_shared, para_own):
        cache.index.clear()
    para_shared.index.close()
    para_own.index.close()
    with contextlib.suppress(redis.ResponseError):
        client.execute_command("FT.DROPINDEX", lc_name, "DD")
    client.close()
    return out


#: Queries per turn of a system on its own embedding pipeline (:func:`user_path`).
OWN_BLOCK = 25


def _commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    raw = client.info("commandstats")
    return {k.removeprefix("cmdstat_").lower(): (int(v["calls"]), int(v["usec"]))
            for k, v in raw.items()}


def server_costs(url: str, para: Any, lc: Any, queries: Sequence[str],
                 exact: Sequence[str], n: int = 150) -> dict[str, Any]:
    """What each lookup costs on the wire and on the server, by outcome, every system
    counted the same way (:mod:`wire`): at the client, writes to the socket, round
    trips (writes whose reply the lookup waited for), writes sent without waiting and
    the commands in them; at the server, all commands run (``INFO commandstats``, a
    script's own commands included) and the time of the top-level ones (``SLOWLOG``,
    every command logged while this runs). The meters are checked against known
    sequences first (:func:`wire.check`). Systems alternated, per lookup."""
    from wire import ServerMeter, WireMeter, check

    from paracache.langchain import SemanticCache

    checked = check(url)
    meter = WireMeter().install()
    server = ServerMeter(url)
    acc: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for i in range(min(n, len(queries))):
            pairs = [(name, cache, text) for name, cache in (("paracache", para),
                                                             ("langchain-redis", lc))
                     for text in (queries[i], exact[i])]
            for name, cache, text in pairs if i % 2 else pairs[::-1]:
                if isinstance(cache, SemanticCache):
                    cache.index._memo.clear()
                server.start()
                with meter.window() as w:
                    hit = cache.lookup(text, USER_LLM_STRING) is not None
                wire = w[0]
                pinged = 0
                direct = getattr(getattr(cache, "index", None), "_direct", None)
                if wire.sent and direct is not None:
                    direct.call(("PING",))  # reads the posted replies: the server ran them
                    pinged = 1
                srv = server.stop(wire.commands, ignore_pings=pinged)
                kind = ("exact repeat" if text == exact[i] else
                        "semantic hit" if hit else "miss")
                acc.setdefault(name, {}).setdefault(kind, []).append({
                    "writes": wire.writes, "sendalls": wire.sendalls,
                    "round_trips": wire.round_trips,
                    "sent": wire.sent, "commands": len(wire.commands),
                    "server_calls": sum(srv.calls.values()), "by_command": srv.calls,
                    "usec": srv.usec, "matched": srv.matched})
    finally:
        meter.uninstall()
        server.close()

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        names = sorted({c for r in rows for c in r["by_command"]})
        return {"round_trips": statistics.mean(r["round_trips"] for r in rows),
                "writes": statistics.mean(r["writes"] for r in rows),
                "sendalls": statistics.mean(r["sendalls"] for r in rows),
                "posted": statistics.mean(r["sent"] for r in rows),
                "commands_sent": statistics.mean(r["commands"] for r in rows),
                "server_commands": statistics.mean(r["server_calls"] for r in rows),
                "server_by_command": {c: statistics.mean(r["by_command"].get(c, 0)
                                                         for r in rows) for c in names},
                "server_us_p50": statistics.median(r["usec"] for r in rows),
                "server_us_mean": statistics.mean(r["usec"] for r in rows),
                "unmatched": sum(not r["matched"] for r in rows),
                "n": len(rows)}

    return {"meter_check": checked,
            **{name: {kind: summary(rows) for kind, rows in kinds.items()}
               for name, kinds in acc.items()}}


def _pairs_of(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw) - 1, 2)}


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass
class Plan:
    sizes: list[int]
    big: int | None
    n_queries: int
    n_writes: int
    n_warm: int
    n_async: int
    concurrency: int
    recall_queries: int
    embed_all: bool = False
    user_stored: int = 10_000
    user_queries: int = 500
    server: str = "stock"
    user_only: bool = False


def held_and_base(rng: random.Random) -> tuple[list[str], list[str]]:
    """Banking77 questions shuffled by ``rng``: 1,500 held out (asked, never stored) and
    the rest (the base of the stored corpus, see :func:`corpus_vectors`)."""
    questions = load_questions()
    rng.shuffle(questions)
    return questions[:1500], questions[1500:]


def choose_queries(stored_vecs: np.ndarray, held: list[str], held_vecs: np.ndarray,
                   stored: list[str], n: int, rng: random.Random) -> dict[str, list[str]]:
    s16 = stored_vecs.astype(np.float16).astype(np.float32)
    best = np.concatenate([(held_vecs[i:i + 256] @ s16.T).max(axis=1)
                           for i in range(0, len(held_vecs), 256)])
    para = [t for t, b in zip(held, best, strict=True) if b >= 0.91]
    miss = [t for t, b in zip(held, best, strict=True) if b < 0.85]
    rng.shuffle(para)
    rng.shuffle(miss)
    exact = rng.sample(stored[: min(len(stored), 10_000)], n)
    return {"exact repeat": exact, "paraphrase hit": para[:n], "miss": miss[:n]}


def run(plan: Plan, out: dict[str, Any]) -> None:
    rng = random.Random(2026)
    held, base = held_and_base(rng)
    vec = BenchVectorizer()
    vec.warmup()
    store = VectorStore(MiniLMVectorizer())
    max_size = max(plan.sizes)
    corpus, corpus_vecs = corpus_vectors(store, base, max_size, plan.embed_all, out)
    held_vecs = store.vectors(held, "held")
    user_stored, user_queries = user_split(plan.user_stored, plan.user_queries)
    out["user_path"] = {}
    for kind in ("stock", "tuned"):
        print(f"== the user's path, {kind} server: {len(user_stored):,} stored through "
              f"update(), {len(user_queries)} looked up", flush=True)
        with EmbeddedRedis(tuned=kind == "tuned") as user_server:
            out["user_path"][kind] = user_path(user_server.url, user_stored, user_queries,
                                               store)
        save(out)
    if plan.user_only:
        out["tiers"] = {}
        return
    server = EmbeddedRedis(tuned=plan.server == "tuned").start()
    # Every system over loopback TCP (RedisVL's async path cannot take a Unix socket
    # client); paracache's default, the embedded server's Unix socket, is measured apart.
    url = server.url
    probe = redis.Redis.from_url(url, protocol=2)
    # No query time limit: the peers' FLAT scans at 1 M entries can pass RediSearch's
    # default 500 ms, and a query that fails there would measure nothing.
    probe.execute_command("FT.CONFIG", "SET", "TIMEOUT", "0")
    modules = {m[1]: m[3] for m in probe.execute_command("MODULE", "LIST")}
    out["server"] = {"redis": probe.info("server")["redis_version"],
                     "search_module": modules.get(b"search"), "kind": plan.server}
    out["wakeup"] = measure_wakeup(probe)
    probe.close()
    tiers: dict[str, Any] = {}
    out["tiers"] = tiers
    try:
        for size in plan.sizes:
            print(f"== {size:,} entries", flush=True)
            s = make_systems(url, f"t{size}", vec)
            texts, vecs = corpus[:size], corpus_vecs[:size]
            tier: dict[str, Any] = {"load": load_all(s, texts, vecs, vec)}
            queries = choose_queries(vecs, held, held_vecs, texts, plan.n_queries, rng)
            print("    lookups ...", flush=True)
            tier["lookups"] = measure_lookups(s, vec, queries)
            vec.know(held, held_vecs)
            where = {t: i for i, t in enumerate(texts)}
            vec.know(queries["exact repeat"], vecs[[where[t] for t in queries["exact repeat"]]])
            tier["lookups_cache_only"] = measure_lookups(s, vec, queries, embedder_alone=False)
            if server.unix_url:
                tier["transport"] = measure_transport(s, server.unix_url, queries)
            vec.forget()
            if size == plan.sizes[0]:
                print("    profile, writes, warm-up, async, threads, memory ...", flush=True)
                tier["profile"] = profile_lookups(s, [f"Hi team, {q}" for q in
                                                      queries["paraphrase hit"]])
                s.para.core.settings = dataclasses.replace(s.para.core.settings,
                                                           knn_policy="auto")
                tier["lookups_rediSearch_policy"] = measure_lookups(
                    s, vec, {"paraphrase hit": [f"Hey team, {q}" for q in
                                                queries["paraphrase hit"]]},
                    embedder_alone=False)
                s.para.core.settings = dataclasses.replace(s.para.core.settings,
                                                           knn_policy="adaptive")
                fresh = variants(held, len(held) + plan.n_writes * 2)[len(held):]
                tier["writes"] = measure_writes(s, fresh[: plan.n_writes])
                warm_texts = variants(held, len(held) * 3)[-plan.n_warm:]
                tier["warm"] = measure_warm(s, vec, warm_texts, chunk=256)
                tier["async"] = async_runs(s, queries, plan, held)
                tier["threads"] = thread_runs(url, queries, plan, held)
                tier["memory_dtypes"] = memory_dtypes(url, texts, vecs, vec)
            if plan.recall_queries and size == max(plan.sizes):
                qv = held_vecs[: plan.recall_queries]
                keys = [s.para.core.prepare_lookup(t, SCOPE).key for t in texts]
                tier["recall"] = measure_recall(s, vecs, keys, qv, (10, 20, 50, 100))
            tiers[str(size)] = tier
            save(out)
            drop(s)
        if plan.big:
            tiers[str(plan.big)] = big_tier(url, plan, corpus, corpus_vecs, held,
                                            held_vecs, vec, rng)
            save(out)
    finally:
        server.close()


def measure_wakeup(client: redis.Redis, rounds: int = 200) -> dict[str, float]:
    """PING p50 (ms) right after another PING, and after the client spun 1, 2 and 10 ms
    (the server idle meanwhile): what one round trip costs once the server has been
    idle, e.g. during an embedding. On a virtual machine that wakes idle vCPUs slowly
    this is paid once per round trip that follows the embedder."""
    out: dict[str, float] = {}
    for idle_ms in (0, 1, 2, 10):
        times = []
        for _ in range(rounds):
            end = time.perf_counter() + idle_ms / 1000
            while time.perf_counter() < end:
                pass
            t0 = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - t0)
        out[str(idle_ms)] = statistics.median(times) * 1000
    return out


def save(out: dict[str, Any]) -> None:
    """Keep what was measured so far (a long run that dies still leaves its data)."""
    OUT.mkdir(exist_ok=True)
    name = "perf-quick.json" if out.get("quick") else "perf.json"
    (OUT / name).write_text(json.dumps(_plain(out), indent=1, default=str), encoding="utf-8")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else x


def async_runs(s: Systems, queries: dict[str, list[str]], plan: Plan,
               held: list[str]) -> dict[str, Any]:
    n = plan.n_async
    mixes = []
    for r in range(3):
        pre = ASYNC_PREFIXES[r]
        mix = ([q for q in queries["exact repeat"]][: n // 3]
               + [pre + q for q in queries["paraphrase hit"]][: n // 3]
               + [pre + q for q in queries["miss"]][: n // 3])
        random.Random(r).shuffle(mix)
        mixes.append(mix)
    # paracache would answer the exact repeats of later rounds from its memo-free
    # exact layer anyway; the peers embed them every time.
    errors = s.para.stats().errors
    rates = measure_async(s, mixes, plan.concurrency)
    return {"concurrency": plan.concurrency, "lookups_per_s": rates,
            "paracache_errors": s.para.stats().errors - errors,
            "lookups_each": sum(len(m) for m in mixes)}


#: The embedder settings compared for the request path (``intra_op_num_threads``).
THREAD_SETTINGS = {"1 thread": 1, "one per core (onnxruntime default)": 0,
                   "adaptive (paracache default)": None}


def thread_runs(url: str, queries: dict[str, list[str]], plan: Plan,
                held: list[str]) -> dict[str, Any]:
    """The embedder's request-path settings: one query at a time (p50, settings
    alternated query by query), and texts/s with 1, 2 and 4 callers embedding at once
    (threads; each setting on the same texts, rounds rotated)."""
    texts = [*queries["paraphrase hit"], *queries["miss"]]
    models = {name: MiniLMVectorizer(intra_op_num_threads=n) for name, n in THREAD_SETTINGS.items()}
    for v in models.values():
        v.warmup()
    names = list(models)
    single: dict[str, list[float]] = {name: [] for name in names}
    for i, t in enumerate(texts):
        for name in names[i % 3:] + names[:i % 3]:
            t0 = time.perf_counter()
            models[name].embed(t)
            single[name].append(time.perf_counter() - t0)
    out: dict[str, Any] = {"single_p50_ms": {n: pct(ts, 50) * 1e3 for n, ts in single.items()}}

    def rate(v: MiniLMVectorizer, callers: int) -> float:
        queue = list(texts)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    t = queue.pop()
                v.embed(t)

        workers = [threading.Thread(target=work) for _ in range(callers)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return len(texts) / (time.perf_counter() - t0)

    rates: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    for r in range(2):
        for callers in (1, 2, 4):
            for name in names[r % 3:] + names[:r % 3]:
                rates[name].setdefault(str(callers), []).append(rate(models[name], callers))
    out["per_s"] = {n: {c: statistics.median(v) for c, v in by.items()} for n, by in rates.items()}
    return out


def memory_dtypes(url: str, texts: Sequence[str], vecs: np.ndarray,
                  vec: BenchVectorizer) -> dict[str, float]:
    """paracache bytes/entry in float32 and float16, and on Redis' default
    hash-max-listpack-value (64) for comparison."""
    client = redis.Redis.from_url(url)
    out = {}
    n = min(len(texts), 10_000)
    for label, dtype, listpack in (("float16", "float16", None), ("float32", "float32", None),
                                   ("float16, listpack 64", "float16", 64),
                                   ("float32, listpack 64", "float32", 64)):
        old = client.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
        if listpack:
            client.config_set("hash-max-listpack-value", listpack)
        try:
            idx = SemanticIndex(url, namespace=f"bench-mem-{abs(hash(label))}",
                                vectorizer=vec, dtype=dtype)
            before = used_memory(client)
            vec.know(texts[:n], vecs[:n])
            idx.warm(((t, answer_for(t)) for t in texts[:n]), SCOPE, batch_size=512,
                     progress=False)
            vec.forget()
            out[label] = (used_memory(client) - before) / n
            idx.clear()
            client.execute_command("FT.DROPINDEX", idx.layout.index_name)
            idx.close()
        finally:
            client.config_set("hash-max-listpack-value", old)
    return out


def drop(s: Systems) -> None:
    for name in SYSTEMS:
        with contextlib.suppress(redis.ResponseError):
            s.client.execute_command("FT.DROPINDEX", index_name(s, name), "DD")
    s.para.close()
    s.client.close()
    time.sleep(1)


def big_corpus(corpus: list[str], corpus_vecs: np.ndarray,
               size: int) -> tuple[list[str], np.ndarray]:
    """``size`` stored texts and vectors: ``corpus`` and its vectors, then noisy copies
    of them (cosine ~0.8 to their source; texts suffixed `` (#k)``) up to ``size``."""
    base_n = len(corpus)
    texts = list(corpus)
    vecs = [corpus_vecs]
    nrng = np.random.default_rng(7)
    k = 0
    while sum(len(v) for v in vecs) < size:
        n = min(base_n, size - sum(len(v) for v in vecs))
        noise = nrng.standard_normal((n, corpus_vecs.shape[1])).astype(np.float32) * 0.035
        copy = corpus_vecs[:n] + noise
        copy /= np.linalg.norm(copy, axis=1, keepdims=True)
        vecs.append(copy)
        k += 1
        texts.extend(f"{t} (#{k})" for t in corpus[:n])
    return texts, np.concatenate(vecs)


def big_tier(url: str, plan: Plan, corpus: list[str], corpus_vecs: np.ndarray,
             held: list[str], held_vecs: np.ndarray, vec: BenchVectorizer,
             rng: random.Random) -> dict[str, Any]:
    """The 1 M tier: stored vectors are the real ones plus noisy copies (cosine ~0.8 to
    their source); query vectors precomputed (the embedder is out of the lookup)."""
    size = plan.big or 0
    print(f"== {size:,} entries (precomputed vectors)", flush=True)
    texts, allv = big_corpus(corpus, corpus_vecs, size)
    s = make_systems(url, f"t{size}", vec)
    tier: dict[str, Any] = {"load": load_all(s, texts, allv, vec), "embedder_out": True}
    queries = choose_queries(corpus_vecs, held, held_vecs, corpus, plan.n_queries // 2, rng)
    vec.know(held, held_vecs)
    where = {t: i for i, t in enumerate(texts)}
    exact_vecs = allv[[where[t] for t in queries["exact repeat"]]]
    vec.know(queries["exact repeat"], exact_vecs)
    print("    lookups (embedder out) ...", flush=True)
    tier["lookups"] = measure_lookups(s, vec, queries, embedder_alone=False)
    vec.forget()
    if plan.recall_queries:
        keys = [s.para.core.prepare_lookup(t, SCOPE).key for t in texts]
        tier["recall"] = measure_recall(s, allv, keys, held_vecs[: plan.recall_queries // 2],
                                        (20, 50, 100))
    drop(s)
    return tier


# --------------------------------------------------------------------------- report


def fmt_size(n: int) -> str:
    return f"{n // 1_000_000} M" if n >= 1_000_000 else f"{n // 1000} k"


def user_report(out: dict[str, Any]) -> list[str]:
    """The headline: what a LangChain user runs, stock server first."""
    runs = out.get("user_path") or {}
    if not runs:
        return []
    first = next(iter(runs.values()))
    lines = [f"### What a LangChain app runs: `paracache.langchain.SemanticCache` against "
             f"langchain-redis `RedisSemanticCache` ({first['stored']:,} Banking77 questions "
             f"stored through `update`, {first['queries']} others looked up through `lookup`; "
             "p50 ms)", ""]
    for kind, u in runs.items():
        srv = u["server"]
        lines.append(f"- *{kind}* server: Redis {srv['redis']}, RediSearch "
                     f"{srv['search_module']}, PARTIAL_INDEXED_DOCS "
                     f"{next(iter(srv['partial_indexed_docs'].values()), '?')}, "
                     f"hash-max-listpack-value {srv['hash_max_listpack_value']}"
                     + (f"; 1-minute load average {u['load_1min']['min']:.1f}-"
                        f"{u['load_1min']['max']:.1f} during its lookups"
                        if "load_1min" in u else ""))
    lines += ["", "| measure | " + " | ".join(
        f"paracache ({k}) | langchain-redis ({k}) | ratio ({k})" for k in runs) + " |",
        "|---|" + "---:|---:|---:|" * len(runs)]

    def row(label: str, get: Callable[[dict[str, Any], str], float], fmt: str = "{:.2f}",
            ratio: bool = True) -> None:
        cells = []
        for u in runs.values():
            a, b = get(u, "paracache"), get(u, "langchain-redis")
            cells += [fmt.format(a), fmt.format(b), f"{a / b:.2f}x" if ratio and b else ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("lookup end to end, each on its own embedding pipeline",
        lambda u, n: u["lookups"][f"{n}, own pipeline"]["p50"])
    row("... hit rate (paracache 0.90 + guards; langchain-redis distance 0.20)",
        lambda u, n: 100 * u["lookups"][f"{n}, own pipeline"]["hit_rate"], "{:.0f} %", False)
    row("... precision (hits answered from a question of the asker's Banking77 intent)",
        lambda u, n: 100 * u["lookups"][f"{n}, own pipeline"].get("precision", float("nan")),
        "{:.1f} %", False)
    row("lookup, one shared embedder", lambda u, n: u["lookups"][f"{n}, shared embedder"]["p50"])
    row("... the cache's own share (lookup minus embedding)",
        lambda u, n: u["lookups"][f"{n}, shared embedder"]["own_p50"])
    row("... embedding inside the lookup",
        lambda u, n: u["lookups"][f"{n}, shared embedder"]["embed_p50"])
    row("exact repeat of a stored question, own pipeline", lambda u, n: u["exact"][n]["p50"])
    row("bytes per entry (used_memory grown / entries)",
        lambda u, n: u["load"][n]["bytes_per_entry"], "{:,.0f}")
    row("entries in Redis after the load (FT.INFO num_docs)",
        lambda u, n: u["load"][n]["entries"], "{:,.0f}", False)
    lines += ["", "What a lookup costs on the wire and on the server, every system counted "
              "the same way (benchmarks/wire.py, checked against known sequences in the same "
              "run): *RT* = round trips (writes to the socket whose reply the lookup waited "
              "for), *+ n sent* = writes not waited for (paracache's batched hit counts, one "
              "write per 100 hits), *cmds* = commands in the client's writes; *server* = all "
              "commands the server ran (`INFO commandstats`, a script's own commands "
              "included) and the top-level commands' time, p50 µs (`SLOWLOG`, a script's "
              "inner commands inside its time); by outcome:", "",
              "| server | system | exact repeat | semantic hit | miss |", "|---|---|---|---|---|"]
    for kind, u in runs.items():
        for name, by in (u["server"].get("cost") or {}).items():
            if name == "meter_check":
                continue
            cells = [f"{by[k]['round_trips']:.2f} RT"
                     + (f" + {by[k]['posted']:.2f} sent" if by[k].get("posted") else "")
                     + f", {by[k].get('commands_sent', 0):.2f} cmds; server "
                     + f"{by[k].get('server_commands', 0):.2f} cmds, "
                     + f"{by[k]['server_us_p50']:.0f} µs"
                     if k in by else "" for k in ("exact repeat", "semantic hit", "miss")]
            lines.append(f"| {kind} | {name} | " + " | ".join(cells) + " |")
    for kind, u in runs.items():
        for name, by in (u["server"].get("cost") or {}).items():
            if name == "meter_check":
                continue
            for k in ("exact repeat", "semantic hit", "miss"):
                if k in by and by[k].get("server_by_command"):
                    per = ", ".join(f"{c} {v:.2f}" for c, v in by[k]["server_by_command"].items())
                    lines.append(f"- {kind}, {name}, {k} (n={by[k]['n']}): "
                                 f"{by[k].get('sendalls', 0):.2f} sendall calls; server "
                                 f"time mean {by[k].get('server_us_mean', 0):.0f} µs; "
                                 f"commands: {per}")
    lines += ["", "paracache's embedding memo is cleared before each of its lookups: every "
              "lookup of either cache embeds its question. On the shared embedder the systems "
              "take turns query by query; on their own pipelines in alternating blocks of "
              f"{OWN_BLOCK} queries (a question, then an exact repeat).", ""]
    return lines


def report(out: dict[str, Any]) -> str:
    tiers = out.get("tiers") or {}
    if not tiers:
        return "\n".join([f"Run: {out['when']}, {out['machine']}; load average "
                          f"{out['load_before']} before, {out.get('load_after', '?')} after. "
                          f"Command: `{out['command']}`.", "", *user_report(out)])
    lines = [f"Run: {out['when']}, {out['machine']}; load average {out['load_before']} before, "
             f"{out.get('load_after', '(unfinished run)')} after. Redis "
             f"{out['server']['redis']}, RediSearch {out['server']['search_module']}, "
             "every system over loopback TCP. "
             f"Command: `{out['command']}`.", "", *user_report(out)]
    lines += ["### Lookup latency (ms; p50 / p95 / p99; *cache* = lookup minus embedder, p50)",
              "", "| entries | query | system | p50 | p95 | p99 | cache p50 | embedder p50 | "
              "hits | vs peers (p50) |", "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for size, tier in tiers.items():
        for kind, rows in tier["lookups"].items():
            peers = [rows[p]["p50"] for p in ("langchain-redis", "redisvl") if p in rows]
            for name, r in rows.items():
                ratio = (f"{r['p50'] / statistics.median(peers):.2f}x"
                         if name == "paracache" and peers else "")
                lines.append(
                    f"| {fmt_size(int(size))} | {kind} | {name} | {r['p50']:.2f} | "
                    f"{r['p95']:.2f} | {r['p99']:.2f} | {r['own_p50']:.2f} | "
                    f"{r['embed_p50']:.2f} | {r['hit_rate']:.0%} | {ratio} |")
    wake = out.get("wakeup")
    if wake:
        lines += ["", "Round trip after the server sat idle (PING p50, ms; the client spinning "
                  "meanwhile): " + ", ".join(f"{k} ms idle: {v:.3f}" for k, v in wake.items())
                  + ". Every call that follows the embedder pays the last figure once: "
                  "paracache's semantic layer makes two calls (exact layer, then search), "
                  "the peers one."]
    for size, tier in tiers.items():
        if tier.get("transport"):
            t = tier["transport"]
            lines += ["", f"paracache's default transport to the embedded server, its Unix "
                      f"socket, against loopback TCP (the tables), {fmt_size(int(size))} "
                      "entries, cache alone, p50 ms: " + "; ".join(
                          f"{kind} {v['unix']:.2f} vs {v['tcp']:.2f}"
                          for kind, v in t.items()) + "."]
    lines += ["", "### The cache alone (query vectors precomputed: embedder out), p50 / p95 ms",
              "", "| entries | query | paracache | langchain-redis | redisvl | paracache vs "
              "peers (p50) |", "|---:|---|---:|---:|---:|---:|"]
    for size, tier in tiers.items():
        rows_by_kind = tier.get("lookups_cache_only") or (
            tier["lookups"] if tier.get("embedder_out") else {})
        for kind, rows in rows_by_kind.items():
            cells = [f"{rows[n]['p50']:.2f} / {rows[n]['p95']:.2f}" for n in SYSTEMS]
            peer = statistics.median([rows[n]["p50"] for n in SYSTEMS[1:]])
            lines.append(f"| {fmt_size(int(size))} | {kind} | {' | '.join(cells)} | "
                         f"{rows['paracache']['p50'] / peer:.2f}x |")
    first = tiers[next(iter(tiers))]
    lines += ["", "### Writes and memory", "",
              "Bytes per entry: `used_memory` grown by the bulk load / entries indexed.", "",
              "| system | single writes / s | bytes per entry " +
              " | ".join(fmt_size(int(s)) for s in tiers) + " | load time (s) at each size |",
              "|---|---:|" + "---:|" * len(tiers) + "---|"]
    for name in SYSTEMS:
        mem = " | ".join(f"{t['load'][name]['bytes_per_entry']:,.0f}" for t in tiers.values())
        loads = ", ".join(f"{t['load'][name]['load_s']:.0f}" for t in tiers.values())
        lines.append(f"| {name} | {first['writes'][name]:.0f} | {mem} | {loads} |")
    w = first["warm"]
    lines += ["", f"Bulk warm-up (`SemanticIndex.warm`, batch 64): **{w['warm_per_s']:.0f} "
              f"entries/s**; the embedder's own `embed_many` (batch 16, its fastest) on the "
              "same texts: "
              f"{w['embed_many_per_s']:.0f} texts/s, so warm-up runs at "
              f"**{w['share']:.0%}** of the embedder's speed."]
    if "embed_many_1_per_s" in w:
        lines[-1] += (f" Both run `embed_many`'s batches on {w['threads']:.0f} threads "
                      f"(`bulk_threads`, one per core); on one thread the embedder does "
                      f"{w['embed_many_1_per_s']:.0f} texts/s.")
    lines.append("")
    md = first["memory_dtypes"]
    lines += ["paracache bytes per entry at 10 k by vector type and hash encoding: " +
              ", ".join(f"{k}: {v:,.0f}" for k, v in md.items()) + ".", ""]
    a = first["async"]
    lines += [f"### Async throughput ({a['concurrency']} concurrent tasks, mixed exact/paraphrase"
              "/miss lookups, one event loop)", "", "| system | lookups / s |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in a["lookups_per_s"].items()]
    lines += ["", f"(paracache lookups that failed open, e.g. on its 100 ms Redis timeout: "
              f"{a.get('paracache_errors', 0)} of {a.get('lookups_each', 0)}.)"]
    lines += thread_table(first["threads"])
    pol = first.get("lookups_rediSearch_policy", {}).get("paraphrase hit", {})
    if pol:
        lines += [f"Paraphrase hits at {fmt_size(int(next(iter(tiers))))} with RediSearch choosing "
                  f"the hybrid policy alone (`knn_policy=\"auto\"`): p50 "
                  f"{pol['paracache']['p50']:.2f} ms, cache {pol['paracache']['own_p50']:.2f} ms "
                  "(adaptive, above: see the table).", ""]
    for size, tier in tiers.items():
        if "recall" in tier:
            lines += [f"### HNSW recall@1 vs EF_RUNTIME at {fmt_size(int(size))} (scope-filtered "
                      "KNN as lookups run it, against exact search)", "",
                      "| policy | EF_RUNTIME | recall@1 | query p50 (ms) |", "|---|---:|---:|---:|"]
            lines += [f"| {r['policy']} | {r['ef_runtime']} | {r['recall_at_1']:.1%} | "
                      f"{r['p50_ms']:.2f} |" for r in tier["recall"]]
            lines.append("")
    lines += [f"![lookup latency against cache size]({PLOT.name})", ""]
    return "\n".join(lines)


def thread_table(th: dict[str, Any]) -> list[str]:
    lines = ["", "### The embedder on the request path (same model, same vectors; "
             "`intra_op_num_threads`)", "",
             "| setting | one query at a time, p50 ms | texts/s, 1 caller | 2 callers | "
             "4 callers |", "|---|---:|---:|---:|---:|"]
    for name, p50 in th["single_p50_ms"].items():
        r = th["per_s"][name]
        lines.append(f"| {name} | {p50:.2f} | {r['1']:.0f} | {r['2']:.0f} | {r['4']:.0f} |")
    return [*lines, ""]


def plot(out: dict[str, Any], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiers = out.get("tiers") or {}
    sizes = [int(s) for s in tiers]
    kinds = ["exact repeat", "paraphrase hit", "miss"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, kind in zip(axes, kinds, strict=True):
        for name, style in zip(SYSTEMS, ("o-", "s--", "^:"), strict=True):
            ys = [(tiers[str(s)].get("lookups_cache_only") or tiers[str(s)]["lookups"])
                  [kind][name]["p50"] for s in sizes]
            ax.plot(sizes, ys, style, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(kind)
        ax.set_xlabel("entries stored")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("lookup p50 (ms)")
    axes[0].legend()
    fig.suptitle("Lookup latency (p50) against cache size: the cache alone (query vectors "
                 "precomputed), one machine, one Redis")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(text: str) -> None:
    begin, end = "<!-- perf:begin -->", "<!-- perf:end -->"
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Results\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n## Speed and memory\n\n" + block + "\n"
    RESULTS.write_text(current, encoding="utf-8")


def main() -> None:
    if "--cluster" in sys.argv[1:]:  # one server against a 3-shard cluster
        from perf_cluster import main as cluster_main

        cluster_main([a for a in sys.argv[1:] if a != "--cluster"])
        return
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="--cluster [ARGS]: one server against a 3-shard Redis Cluster instead "
        "(perf_cluster.py; --cluster --help lists its own flags).",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, for development")
    ap.add_argument("--sizes", type=str, default=None, help="e.g. 10000,100000")
    ap.add_argument("--big", type=int, default=None, help="precomputed-vector tier (1000000)")
    ap.add_argument("--write-results", action="store_true",
                    help="update the generated part of benchmarks/RESULTS.md and the plot")
    ap.add_argument("--embed-all", action="store_true",
                    help="embed every stored text (default: the first 10 k; see REAL_EMBEDDED)")
    ap.add_argument("--server", choices=("stock", "tuned"), default="stock",
                    help="the server of the three-system tiers: stock (default: no "
                         "PARTIAL_INDEXED_DOCS, Redis' default listpack limits) or paracache's "
                         "tuned embedded one; the user's path runs on both")
    ap.add_argument("--user-only", action="store_true",
                    help="only the user's path (LangChain caches, both servers)")
    ap.add_argument("--embedder-only", action="store_true",
                    help="only the embedder's request-path settings (no Redis)")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="only report (and plot) a previous run's out/perf.json")
    args = ap.parse_args()
    if args.from_json:
        out = json.loads(args.from_json.read_text(encoding="utf-8"))
        print(report(out))
        if out.get("tiers"):
            plot(out, PLOT if args.write_results else OUT / PLOT.name)
        if args.write_results:
            write_results(report(out))
        return
    if args.embedder_only:
        _, asked = user_split(0, 400)
        th = thread_runs("", {"paraphrase hit": asked[:200], "miss": asked[200:]},
                         Plan([], None, 0, 0, 0, 0, 0, 0), [])
        print(json.dumps(th, indent=1))
        print("\n".join(thread_table(th)))
        return
    if args.quick:
        plan = Plan([2_000, 10_000], None, 40, 40, 512, 150, 16, 30)
    else:
        plan = Plan([10_000, 100_000], 1_000_000, 200, 150, 2048, 600, 32, 200)
    if args.quick:
        plan.user_stored, plan.user_queries = 2_000, 150
    plan.server = args.server
    plan.user_only = args.user_only
    if args.sizes:
        plan.sizes = [int(x) for x in args.sizes.split(",")]
    if args.big is not None:
        plan.big = args.big or None
    plan.embed_all = args.embed_all
    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                   f"{platform.python_version()}",
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": "python benchmarks/perf.py " + " ".join(sys.argv[1:]),
        "quick": args.quick,
    }
    t0 = time.perf_counter()
    run(plan, out)
    out["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out["seconds"] = time.perf_counter() - t0
    save(out)
    text = report(out)
    print(text)
    if out["tiers"]:
        print(out["tiers"][next(iter(out["tiers"]))].get("profile", ""))
    where = PLOT if args.write_results else OUT / PLOT.name
    if out["tiers"]:
        plot(out, where)
    if args.write_results:
        write_results(text)
    print(f"done in {out['seconds'] / 60:.1f} min; plot: {where}")


if __name__ == "__main__":
    main()
