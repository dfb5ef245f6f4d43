"""The fast paths (issue 5): one-round-trip exact hits, cheap hit bookkeeping, bulk
warm-up, a caller's own Redis client, and the hybrid-policy tuner. Real Redis, real
embedder; nothing mocked."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from paracache import CacheError, Scope, SemanticIndex
from paracache.driver import _Done
from paracache.embedded import EmbeddedRedis
from paracache.policy import HybridTuner
from paracache.protocol import (
    COUNT,
    EXACT,
    SEARCH,
    Call,
    Embed,
    EmbedMany,
    Join,
    Post,
    Receive,
    Send,
    Submit,
)

PAIRS = [
    ("What's your refund policy?", "Refunds within 30 days."),
    ("How do I reset my card PIN?", "In the app, under Card > PIN."),
    ("Can I pay with Apple Pay?", "Yes, with any of our cards."),
    ("Why was my transfer declined?", "Usually a limit or a typo in the IBAN."),
    ("Do you charge for top-ups?", "Top-ups by card are free."),
]


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


class Counting:
    """A vectorizer passing through to the real one, counting calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.single, self.batches = inner, 0, []
        self.dims, self.model, self.type = inner.dims, inner.model, inner.type

    def embed(self, text: str, **kw: Any) -> Any:
        self.single += 1
        return self.inner.embed(text, **kw)

    async def aembed(self, text: str, **kw: Any) -> Any:
        self.single += 1
        return await self.inner.aembed(text, **kw)

    def embed_many(self, texts: list[str], **kw: Any) -> Any:
        self.batches.append(len(texts))
        return self.inner.embed_many(texts, **kw)

    async def aembed_many(self, texts: list[str], **kw: Any) -> Any:
        self.batches.append(len(texts))
        return await self.inner.aembed_many(texts, **kw)


def test_exact_hit_is_one_round_trip_and_counted(make_index: Any, redis_url: str) -> None:
    """Hits counted as they happen (``hit_flush_hits=1``): the exact layer reads and
    counts in one script."""
    index = make_index(hit_flush_hits=1)
    scope = Scope(model="m")
    entry = index.store("What's your refund policy?", "30 days.", scope)
    assert entry is not None
    assert index.lookup("How do I reset my PIN?", scope) is None  # loads the script
    req = index.core.prepare_lookup("what's your refund policy", scope)
    verdict, ops = _run_counting(index, index.core.lookup_flow(req))
    assert verdict.outcome == "exact" and verdict.hit.hit_count == 0
    assert not [o for o in ops if isinstance(o, Embed)]  # no embedding
    sent = _commands(ops)
    assert len(sent) == 1 and sent[0].args[0] in ("EVALSHA", "EVAL")
    fields = raw_client(redis_url).hgetall(index.layout.key(entry))
    assert fields[b"hit_count"] == b"1" and float(fields[b"last_hit_at"]) > 0
    hit = index.lookup("What's your refund policy?", scope)
    assert hit is not None and hit.hit_count == 1  # hits before this one


def test_exact_script_survives_script_flush(make_index: Any, redis_url: str) -> None:
    index = make_index(hit_flush_hits=1)
    index.store("How do I reset my card PIN?", "In the app.")
    raw_client(redis_url).script_flush()
    assert not raw_client(redis_url).script_exists(EXACT.sha)[0]
    hit = index.lookup("How do I reset my card PIN?")
    assert hit is not None and hit.layer == "exact"  # NOSCRIPT -> EVAL, no error
    assert index.stats().errors == 0


def test_semantic_hit_bookkeeping_is_immediate(make_index: Any, redis_url: str) -> None:
    index = make_index(hit_flush_hits=1)
    entry = index.store("What's your refund policy?", "30 days.")
    hit = index.lookup("What is your refund policy?")
    assert hit is not None and hit.layer == "semantic"
    fields = raw_client(redis_url).hgetall(index.layout.key(str(entry)))
    assert fields[b"hit_count"] == b"1"


def test_a_posted_count_survives_a_script_flush(make_index: Any, redis_url: str) -> None:
    """The semantic layer's count is sent without waiting (Post): a NOSCRIPT answer to it
    is read with the next command, which sends it again with the script's source."""
    index = make_index(hit_flush_hits=1)
    entry = index.store("What's your refund policy?", "30 days.")
    assert index.lookup("What is your refund policy?") is not None
    raw_client(redis_url).script_flush()
    assert index.lookup("What is your refund policy?") is not None  # COUNT: NOSCRIPT
    assert index.lookup("Do you ship to Canada?") is None  # reads it, sends it again
    key = index.layout.key(str(entry))
    assert raw_client(redis_url).hget(key, "hit_count") == b"2"
    assert index.stats().errors == 0


def test_async_semantic_hit_is_counted(index: SemanticIndex, redis_url: str) -> None:
    entry = index.store("What's your refund policy?", "30 days.")

    async def ask() -> Any:
        try:
            return await index.alookup("What is your refund policy?")
        finally:
            await index.aclose()

    hit = asyncio.run(ask())
    assert hit is not None and hit.layer == "semantic" and hit.hit_count == 0
    assert raw_client(redis_url).hget(index.layout.key(str(entry)), "hit_count") == b"1"


def test_hit_bookkeeping_does_not_reindex(redis_server: EmbeddedRedis) -> None:
    """The embedded server skips re-indexing when only non-indexed fields change."""
    r = raw_client(redis_server.url)
    assert r.execute_command("FT.CONFIG", "GET", "PARTIAL_INDEXED_DOCS") in (
        [[b"PARTIAL_INDEXED_DOCS", b"true"]],
        {b"PARTIAL_INDEXED_DOCS": b"true"},
    )
    assert int(r.config_get("hash-max-listpack-value")["hash-max-listpack-value"]) >= 2048


def test_warm_batches_embeddings_and_writes(make_index: Any) -> None:
    from paracache.vectorizers import default_vectorizer

    vec = Counting(default_vectorizer())
    idx = make_index(vectorizer=vec, ttl=600)
    scope = Scope(model="m", tenant="acme")
    assert idx.warm(PAIRS, scope, batch_size=2, progress=False) == len(PAIRS)
    assert vec.batches == [2, 2, 1] and vec.single == 0
    assert idx.count() == len(PAIRS)
    hit = idx.lookup("what is your refund policy", scope)
    assert hit is not None and hit.response == "Refunds within 30 days."
    exact = idx.lookup("Can I pay with Apple Pay?", scope)
    assert exact is not None and exact.layer == "exact" and exact.ttl == 600
    assert idx.lookup("Can I pay with Apple Pay?", Scope(model="m", tenant="b")) is None
    info = {e.prompt: e for e in idx.entries(10)}
    assert set(info) == {p for p, _ in PAIRS}
    assert all(0 < (e.ttl_left or 0) <= 600 for e in info.values())
    assert idx.stats().writes == len(PAIRS)


def test_warm_skips_what_the_policy_declines_and_takes_generators(make_index: Any) -> None:
    idx = make_index()
    hot = Scope(params={"temperature": 1.5})
    assert idx.warm(iter(PAIRS), hot, progress=False) == 0
    assert idx.stats().writes_skipped == len(PAIRS)
    assert idx.warm((p for p in PAIRS[:2]), progress=False) == 2


def test_warm_validates(index: SemanticIndex) -> None:
    with pytest.raises(ValueError):
        index.warm(PAIRS, batch_size=0, progress=False)
    with pytest.raises(TypeError):
        index.warm([("prompt", 42)], progress=False)  # type: ignore[list-item]


def test_warm_names_what_is_not_a_pair(index: SemanticIndex) -> None:
    """A dict or a list of strings is what a careless caller passes: a dict's keys (and
    two-character strings) were unpacked into prompt and response letters, anything else
    failed with "too many values to unpack"; nothing is written now."""
    with pytest.raises(TypeError, match=r"\.items\(\)"):
        index.warm({"What is the fee?": "None."}, progress=False)  # type: ignore[arg-type]
    for bad in (["hi"], ["What is the fee?"], [("q", "a", "x")], [None], "ab"):
        with pytest.raises(TypeError, match="pair"):
            index.warm(bad, progress=False)  # type: ignore[arg-type]
    assert index.count() == 0


def test_warm_raises_when_redis_is_down(make_index: Any, redis_server: EmbeddedRedis) -> None:
    idx = make_index()
    redis_server.stop()
    try:
        with pytest.raises(CacheError):
            idx.warm(PAIRS, progress=False)
    finally:
        redis_server.start()


async def test_awarm(make_index: Any) -> None:
    idx = make_index()
    assert await idx.awarm(PAIRS, batch_size=3, progress=False) == len(PAIRS)
    hit = await idx.alookup("Why was my transfer declined?")
    assert hit is not None and hit.layer == "exact"
    await idx.aclose()


class FailsOnSecondBatch(Counting):
    """The real vectorizer, failing from its second batch on."""

    async def aembed_many(self, texts: list[str], **kw: Any) -> Any:
        if self.batches:
            raise RuntimeError("embedder down")
        return await super().aembed_many(texts, **kw)


async def test_awarm_lands_the_previous_batch_when_embedding_fails(make_index: Any) -> None:
    """The first batch is written while the second is embedded; when that embedding
    fails, awarm waits for the write before raising, never leaving it running."""
    idx = make_index(vectorizer=FailsOnSecondBatch(make_index().vectorizer))
    with pytest.raises(CacheError, match="embedder down"):
        await idx.awarm(PAIRS, batch_size=3, progress=False)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert await idx.acount() == 3  # the first batch's entries
    await idx.aclose()


def test_warm_flow_asks_for_batches() -> None:
    from paracache.core import Core, Settings
    from paracache.schema import Layout

    core = Core(Layout.build("t", "m:4", dims=4), Settings())
    core.index_ready = True
    reqs = [core.prepare_store(p, r, None) for p, r in PAIRS[:3]]
    flow = core.warm_flow(iter(reqs), batch_size=2)
    op = next(flow)
    assert isinstance(op, EmbedMany) and len(op.texts) == 2
    op = flow.send([[1.0, 0.0, 0.0, 0.0]] * 2)
    # The first batch's writes start without waiting: its one scope registered once,
    # then its two entries (PUT scripts) ...
    assert isinstance(op, Submit)
    calls = op.batch.calls
    assert [c[0] for c in calls] == ["EVAL"] * 3 and len({c[3] for c in calls}) == 3
    assert calls[0][3] == core.layout.scopes_key and calls[0][4] == reqs[0].lookup.scope_digest
    op = flow.send("handle-1")
    # ... while the second batch is embedded; only then are they awaited.
    assert isinstance(op, EmbedMany) and len(op.texts) == 1
    assert not isinstance(op, Embed)
    op = flow.send([[0.0, 1.0, 0.0, 0.0]])
    assert op == Join("handle-1")
    op = flow.send([1, 1, 1])
    assert isinstance(op, Submit) and len(op.batch.calls) == 2
    assert flow.send("handle-2") == Join("handle-2")
    with pytest.raises(StopIteration) as done:
        flow.send([1, 1])
    assert done.value.value == 3


def test_warm_orders_by_length_and_the_later_duplicate_wins(make_index: Any) -> None:
    """warm() embeds prompts of similar length together (a window of them sorted by
    length: less padding), and a prompt given twice keeps its later answer."""
    from paracache.core import _by_length
    from paracache.vectorizers import default_vectorizer

    idx = make_index()
    reqs = [idx.core.prepare_store("x" * n, str(n), None) for n in (9, 1, 5, 3, 7, 2)]
    batches = list(_by_length(iter(reqs), 2, 4))
    assert [[len(r.lookup.text) for r in b] for b in batches] == [[1, 3], [5, 9], [2, 7]]

    vec = Counting(default_vectorizer())
    idx = make_index(vectorizer=vec)
    pairs = [
        ("Do you ship abroad?", "first"),
        ("How long does a refund take to reach my account after I return the item?", "r"),
        ("Hi", "h"),
        ("Do you ship abroad?", "second"),
    ]
    assert idx.warm(pairs, batch_size=2, progress=False) == 4
    hit = idx.lookup("Do you ship abroad?")
    assert hit is not None and hit.layer == "exact" and hit.response == "second"
    assert idx.count() == 3


def test_warm_write_errors_surface(make_index: Any, redis_url: str) -> None:
    """A failed background write is raised by warm() (as CacheError), not lost."""
    idx = make_index()
    r = raw_client(redis_url)
    assert idx.warm(PAIRS[:1], progress=False) == 1  # creates the index
    old = r.config_get("maxmemory")["maxmemory"]
    policy = r.config_get("maxmemory-policy")["maxmemory-policy"]
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    try:
        with pytest.raises(CacheError, match=r"(?i)memory"):
            idx.warm(PAIRS, batch_size=2, progress=False)
    finally:
        r.config_set("maxmemory", old)
        r.config_set("maxmemory-policy", policy)


def test_callers_redis_client(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    idx = SemanticIndex(redis_client=client, namespace=namespace)
    try:
        assert idx.redis_url.startswith("redis://127.0.0.1:") and "@" not in idx.redis_url
        assert idx.store("What's your refund policy?", "30 days.") is not None
        hit = idx.lookup("What is your refund policy?")
        assert hit is not None and hit.layer == "semantic"

        async def twin() -> Any:
            try:
                return await idx.alookup("What's your refund policy?")
            finally:
                await idx.aclose()

        hit = asyncio.run(twin())  # the async twin derived from the sync client
        assert hit is not None and hit.layer == "exact"
        idx.close()
        assert client.ping()  # the caller's client stays open
    finally:
        idx.close()
        with SemanticIndex(redis_client=client, namespace=namespace) as cleaner:  # idx is closed
            cleaner.clear()
        client.close()


def test_callers_clients_are_checked(redis_url: str) -> None:
    with pytest.raises(TypeError):
        SemanticIndex(redis_client="redis://x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SemanticIndex(redis_client=redis.Redis.from_url(redis_url, decode_responses=True))
    with pytest.raises(ValueError):
        SemanticIndex(redis_url, redis_client=redis.Redis.from_url(redis_url))


def test_hybrid_tuner() -> None:
    tuner = HybridTuner(slow=0.001, min_samples=3, recheck=10)
    for _ in range(3):  # fast: RediSearch keeps choosing
        tuner.record("small", tuner.choose("small"), 0.0002)
    assert tuner.choose("small") is None
    for _ in range(3):  # slow: try batches
        tuner.record("big", tuner.choose("big"), 0.002)
    assert tuner.choose("big") == "BATCHES"
    tuner.record("big", "BATCHES", 0.0003)
    assert all(tuner.choose("big") == "BATCHES" for _ in range(5))
    # batches turn out slower for another scope: back to RediSearch's choice
    for _ in range(3):
        tuner.record("mid", tuner.choose("mid"), 0.0015)
    assert tuner.choose("mid") == "BATCHES"
    tuner.record("mid", "BATCHES", 0.01)
    assert tuner.choose("mid") is None


def test_hybrid_tuner_keeps_the_faster_policy_near_the_slow_mark() -> None:
    """RediSearch's own choice about as slow as ``slow`` (brute force over a 10 k scope on
    a quiet machine): once batches were measured faster, rechecks of the other policy
    below ``slow`` (but slower than batches) do not bring it back."""
    tuner = HybridTuner(slow=0.0008, min_samples=3, recheck=1000)
    for _ in range(3):
        tuner.record("s", tuner.choose("s"), 0.0009)
    assert tuner.choose("s") == "BATCHES"
    tuner.record("s", "BATCHES", 0.0002)
    tuner.record("s", None, 0.0005)  # rechecks under ``slow``, slower than batches
    tuner.record("s", None, 0.0005)
    assert tuner._stats["s"].auto_average is not None
    assert tuner._stats["s"].auto_average < 0.0008
    assert [tuner.choose("s") for _ in range(20)].count("BATCHES") >= 19  # one recheck at most
    for _ in range(3):  # batches got slower than the other, search after search: switch
        tuner.record("s", "BATCHES", 0.01)
    assert tuner.choose("s") is None


def test_hybrid_tuner_one_slow_sample_of_batches_does_not_keep_brute_force() -> None:
    """Issue 13: a fresh process's first batched search slowed by chance (the embedder's
    threads on the server's core: 4-6 ms where batches take 0.3 ms) left the scope on
    RediSearch's brute force (about 1.3 ms a round trip at 10 k) until the 1,000th lookup
    (a third of fresh caches in benchmarks/RESULTS.md's trial: the first batched sample
    above RediSearch's average, still high from the first search). Batches are measured
    again soon and win."""
    tuner = HybridTuner()  # the defaults: slow 0.8 ms, 5 samples, recheck 1,000
    chosen = []
    for i in range(200):
        policy = tuner.choose("s")
        chosen.append(policy)
        if policy is None:
            seconds = 0.005 if i == 0 else 0.0013  # a first search pays for first uses
        else:
            seconds = 0.006 if policy == "BATCHES" and "BATCHES" not in chosen[:-1] else 0.0003
        tuner.record("s", policy, seconds)
    assert chosen[:6] == [None] * 5 + ["BATCHES"]
    assert chosen[6:8] == [None, None]  # brute force while batches wait to be measured again
    assert chosen[8] == "BATCHES"
    assert chosen[9:] == ["BATCHES"] * (200 - 9)


def test_hybrid_tuner_slow_batches_measured_less_and_less_often() -> None:
    """A scope where batches are really slower (a small share of the index), whose first
    search paid for first uses (50 ms): batches win against RediSearch's average while
    they have few samples (as on main), but once they have ``min_samples`` the fastest
    round trips are compared and RediSearch's choice wins; batches are then measured
    again after 2, 4, 8, ... lookups, then every ``recheck`` (main compared averages, and
    kept batches on every search but its rechecks)."""
    tuner = HybridTuner(min_samples=5, recheck=1000)
    chosen = []
    for i in range(4000):
        policy = tuner.choose("small")
        chosen.append(policy)
        seconds = 0.01 if policy else (0.05 if i == 0 else 0.0002)
        tuner.record("small", policy, seconds)
    tried = [i for i, p in enumerate(chosen) if p == "BATCHES"]
    gaps = [b - a for a, b in itertools.pairwise(tried)]
    assert tried[:5] == [5, 6, 7, 8, 9]
    assert gaps[4:12] == [3, 4, 8, 16, 32, 64, 128, 256]
    assert set(gaps[13:]) == {1000}
    assert len(tried) == 16


def _run_counting(index: SemanticIndex, flow: Any) -> tuple[Any, list[Any]]:
    """Run a flow with the blocking driver's I/O, keeping the operations it asked for."""
    ops: list[Any] = []
    op = next(flow)
    try:
        while True:
            ops.append(op)
            op = flow.send(index._io(op))
    except StopIteration as stop:
        return stop.value, ops


def _commands(ops: list[Any]) -> list[Any]:
    """The commands a flow sent and waited for (its round trips): calls, and the exact
    layer's read (sent, then received while the semantic layer prepares)."""
    return [o for o in ops if isinstance(o, (Call, Send))]


def test_semantic_hit_is_one_round_trip_after_the_exact_layer(
    make_index: Any, redis_url: str
) -> None:
    index = make_index(hit_flush_hits=1)  # each hit counted as it happens
    scope = Scope(model="m")
    entry = index.store("What's your refund policy?", "30 days.", scope)
    assert index.lookup("What is your refund policy?", scope) is not None  # loads scripts
    req = index.core.prepare_lookup("What is the refund policy?", scope)
    verdict, ops = _run_counting(index, index.core.lookup_flow(req))
    assert verdict.outcome == "semantic" and verdict.hit.hit_count == 1
    calls = _commands(ops)
    assert len(calls) == 2 and all(c.args[0] == "EVALSHA" for c in calls)  # exact, search
    # The hit is counted once the guards accepted it, without waiting for the reply.
    posts = [o for o in ops if isinstance(o, Post)]
    assert [p.args[:2] for p in posts] == [("EVALSHA", COUNT.sha)]
    fields = raw_client(redis_url).hgetall(index.layout.key(str(entry)))
    assert fields[b"hit_count"] == b"2" and float(fields[b"last_hit_at"]) > 0
    # A miss costs the same two calls and counts nothing.
    req = index.core.prepare_lookup("Do you ship to Canada?", scope)
    verdict, ops = _run_counting(index, index.core.lookup_flow(req))
    assert verdict.outcome == "miss" and len(_commands(ops)) == 2
    assert not [o for o in ops if isinstance(o, Post)]
    assert raw_client(redis_url).hget(index.layout.key(str(entry)), "hit_count") == b"2"


def test_batched_hits_cost_a_lookup_no_write(make_index: Any, redis_url: str) -> None:
    """By default hits are counted in process: an exact hit is one plain read, a
    semantic hit the exact read and the search script, and nothing is sent for the
    count until a batch is due (here every 3 hits: one script for all of them)."""
    index = make_index(hit_flush_hits=3, hit_flush_seconds=3600)
    scope = Scope(model="m")
    entry = index.store("What's your refund policy?", "30 days.", scope)
    key = index.layout.key(str(entry))
    req = index.core.prepare_lookup("what's your refund policy", scope)
    verdict, ops = _run_counting(index, index.core.lookup_flow(req))
    assert verdict.outcome == "exact" and verdict.hit.hit_count == 0
    assert [o.args[0] for o in _commands(ops)] == ["HGETALL"]  # entry mode: no companion
    assert not [o for o in ops if isinstance(o, Post)]
    req = index.core.prepare_lookup("What is the refund policy?", scope)
    verdict, ops = _run_counting(index, index.core.lookup_flow(req))
    assert verdict.outcome == "semantic" and verdict.hit.hit_count == 1  # this process's
    assert [o.args[0] for o in _commands(ops)] == ["HGETALL", "EVALSHA"]  # exact, search
    assert not [o for o in ops if isinstance(o, Post)]
    assert raw_client(redis_url).hget(key, "hit_count") is None  # nothing written yet
    req = index.core.prepare_lookup("what's your refund policy", scope)
    verdict, ops = _run_counting(index, index.core.lookup_flow(req))
    assert verdict.hit.hit_count == 2
    posts = [o for o in ops if isinstance(o, Post)]  # the third hit: the batch is due
    assert len(posts) == 1 and posts[0].args[0] == "EVAL"  # first time: with its source
    assert index.lookup("Do you ship to Canada?", scope) is None  # reads the reply
    assert raw_client(redis_url).hget(key, "hit_count") == b"3"
    assert index.lookup("what's your refund policy", scope).hit_count == 3  # type: ignore[union-attr]
    assert index.stats().errors == 0


def test_a_posted_batch_survives_a_script_flush(make_index: Any, redis_url: str) -> None:
    """A batch posted by its SHA after the server forgot its scripts (NOSCRIPT) is sent
    again with the script's source when the reply is read."""
    index = make_index(hit_flush_hits=2, hit_flush_seconds=3600)
    entry = index.store("What's your refund policy?", "30 days.")
    key = index.layout.key(str(entry))
    for _ in range(2):  # the first batch, sent with its source
        assert index.lookup("What's your refund policy?") is not None
    raw_client(redis_url).script_flush()
    for _ in range(2):  # the second, by its SHA: NOSCRIPT
        assert index.lookup("What's your refund policy?") is not None
    assert index.lookup("Do you ship to Canada?") is None  # reads it, sends it again
    assert index.lookup("Do you ship to Canada?") is None  # reads that reply
    assert raw_client(redis_url).hget(key, "hit_count") == b"4"
    assert index.stats().errors == 0


def test_a_guard_rejected_candidate_is_not_counted(make_index: Any, redis_url: str) -> None:
    """Only the served candidate is counted: the most similar one, rejected by a guard,
    keeps no hit_count, no last_hit_at and its TTL (sliding TTLs are refreshed on a
    hit only)."""
    from paracache import TTLPolicy

    idx = make_index(ttl_policy=TTLPolicy(default_ttl=600, sliding=True))
    scope = Scope(model="m")
    wrong = idx.store("Please don't cancel my order", "Kept.", scope)  # the nearest
    right = idx.store("I want to cancel my order", "Cancelled.", scope)
    r = raw_client(redis_url)
    r.expire(idx.layout.key(str(wrong)), 100)  # the sliding TTL would reset it to 600
    hit = idx.lookup("Please cancel my order", scope, min_similarity=0.5)
    assert hit is not None and hit.response == "Cancelled."
    wrong_fields = r.hgetall(idx.layout.key(str(wrong)))
    assert wrong_fields.get(b"hit_count", b"0") == b"0"
    assert wrong_fields.get(b"last_hit_at", b"0") in (b"0", b"")
    assert 0 < r.ttl(idx.layout.key(str(wrong))) <= 100
    assert r.hget(idx.layout.key(str(right)), "hit_count") == b"1"
    assert idx.stats().rejections  # counted, with its reason


def test_semantic_layer_falls_back_when_scripts_are_refused(
    make_index: Any, redis_server: EmbeddedRedis
) -> None:
    """A server that refuses the search script (here an ACL user allowed FT.SEARCH but
    not scripts) gets the two-call semantic layer, with the same answers."""
    admin = raw_client(redis_server.url)
    user, password = "noscript-app", "pw-" + "x" * 20
    admin.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}", "resetkeys", "~paracache:*",
        "resetchannels", "-@all", "+ping", "+client|setname", "+hgetall", "+hset", "+del",
        "+unlink", "+expire", "+type", "+scan", "+multi", "+exec", "+FT.SEARCH",
        "+FT.CREATE", "+FT.INFO", "+FT._LIST", "+hincrby",
    )
    try:
        url = f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0"
        idx = SemanticIndex(url, namespace="noscript")
        try:
            assert idx.store("What's your refund policy?", "30 days.") is not None
            hit = idx.lookup("What is your refund policy?")
            assert hit is not None and hit.layer == "semantic" and hit.response == "30 days."
            assert idx.core._script_backoff >= 1.0  # two calls for a while, then retried
            assert idx.lookup("What is the refund policy?") is not None
        finally:
            idx.clear()
            idx.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)


@contextlib.contextmanager
def _busy_server(url: str) -> Iterator[None]:
    """Another client runs a long script: the server answers everything else with
    ``BUSY`` until it is killed (``SCRIPT KILL``) on leaving."""
    r = raw_client(url)
    old = r.config_get("busy-reply-threshold")["busy-reply-threshold"]
    r.config_set("busy-reply-threshold", 20)
    spinner = threading.Thread(target=_spin, args=(url,), daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 30
        while True:  # until the server says BUSY
            try:
                r.ping()
            except redis.ResponseError as exc:
                assert "BUSY" in str(exc)
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield
    finally:
        r.script_kill()
        spinner.join(30)
        r.config_set("busy-reply-threshold", old)
        r.close()


def _spin(url: str) -> None:
    with contextlib.suppress(redis.ResponseError):  # "Script killed by user"
        raw_client(url).eval("while true do end", 0)


def test_a_busy_server_pauses_the_search_script_not_for_good(
    index: SemanticIndex, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BUSY (another client's script running) refuses the search script once: that
    lookup takes two calls, and the script is tried again after a back-off."""
    import paracache.lookup
    from paracache.driver import run

    monkeypatch.setattr(paracache.lookup, "SCRIPT_RETRY_AFTER", 0.0)  # retry at once
    scope = Scope(model="m")
    index.store("What's your refund policy?", "30 days.", scope)
    assert index.lookup("What is your refund policy?", scope) is not None  # loads scripts
    ops: list[Any] = []

    def io(op: Any) -> Any:
        ops.append(op)
        first = not any(o is not op and isinstance(o, Send) and o.args[1:2] == (SEARCH.sha,)
                        for o in ops)  # the first lookup's search script only
        if isinstance(op, Send) and op.args[:2] == ("EVALSHA", SEARCH.sha) and first:
            with _busy_server(redis_url):  # sent and answered while the server is busy
                return _Done.of(lambda: index._io(Receive(index._io(op))))  # the real BUSY
        return index._io(op)

    req = index.core.prepare_lookup("What is the refund policy?", scope)
    verdict = run(index.core.lookup_flow(req), io)
    assert verdict.outcome == "semantic"  # answered with the query and a read instead
    # The winner's read: a plain one (its hit counted in process).
    assert [o.args[0] for o in ops if isinstance(o, Call)][-2:] == ["FT.SEARCH", "HGETALL"]
    assert index.core.scripted_search
    ops.clear()
    req = index.core.prepare_lookup("what's the refund policy", scope)
    assert run(index.core.lookup_flow(req), io).outcome == "semantic"
    assert any(isinstance(o, Send) and o.args[1] == SEARCH.sha for o in ops)  # script again


def test_search_script_can_be_switched_off(make_index: Any) -> None:
    """search_script=False (a sharded database behind a proxy) serves the same answers
    with the plain query and a read of the winner."""
    idx = make_index(search_script=False)
    entry = idx.store("What's your refund policy?", "30 days.")
    req = idx.core.prepare_lookup("What is your refund policy?", None)
    verdict, ops = _run_counting(idx, idx.core.lookup_flow(req))
    assert verdict.outcome == "semantic" and verdict.hit.response == "30 days."
    calls = [o.args[0] for o in _commands(ops)]
    assert calls == ["HGETALL", "FT.SEARCH", "HGETALL"]  # exact, query, winner read
    assert idx.entries(5)[0].hit_count == 1 and entry  # entries() sends the count first
    idx = make_index(search_script=False, hit_flush_hits=1)  # counted as it happens
    idx.store("What's your refund policy?", "30 days.")
    verdict, ops = _run_counting(idx, idx.core.lookup_flow(req))
    assert [o.args[0] for o in _commands(ops)] == ["EVALSHA", "FT.SEARCH", "EVALSHA"]
    with pytest.raises(TypeError):
        make_index(search_script="yes")


def _clients_named(url: str, name: str) -> list[dict[str, Any]]:
    return [c for c in raw_client(url).client_list() if c.get("name") == name]


def test_lookups_use_one_connection_per_thread(make_index: Any, redis_url: str) -> None:
    """Lookups on paracache's own client use one direct connection per thread: reused
    call after call, one per concurrent thread, closed with the thread or at close()."""
    import gc
    import threading

    idx = make_index()
    name = f"paracache:{idx.namespace}"
    idx.store("What's your refund policy?", "30 days.")  # opens this thread's connection
    mine = {c["id"] for c in _clients_named(redis_url, name)}
    for _ in range(5):
        assert idx.lookup("What's your refund policy?") is not None
    assert {c["id"] for c in _clients_named(redis_url, name)} == mine  # no new one

    barrier = threading.Barrier(3)
    during: list[int] = []
    seen: list[bool] = []

    def worker() -> None:
        seen.append(idx.lookup("What's your refund policy?") is not None)
        barrier.wait()  # all three connected at once
        during.append(len(_clients_named(redis_url, name)))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [True, True, True] and max(during) == len(mine) + 3
    gc.collect()  # the ended threads' connections went with them
    deadline = time.monotonic() + 5
    while {c["id"] for c in _clients_named(redis_url, name)} != mine:
        assert time.monotonic() < deadline, "a thread's connection outlived it"
        time.sleep(0.05)
    idx.close()
    while _clients_named(redis_url, name):
        assert time.monotonic() < deadline + 5, "close() left connections open"
        time.sleep(0.05)


def test_direct_connection_recovers_from_a_killed_connection(
    make_index: Any, redis_url: str
) -> None:
    """A connection the server dropped costs one failed-open lookup, never an exception;
    the next lookup reconnects. An error reply (NOSCRIPT) keeps the connection."""
    idx = make_index(hit_flush_hits=1)  # the exact layer's script
    name = f"paracache:{idx.namespace}"
    idx.store("What's your refund policy?", "30 days.")
    assert idx.lookup("What's your refund policy?") is not None
    (conn,) = [c["id"] for c in _clients_named(redis_url, name) if c["cmd"] == "evalsha"]
    raw_client(redis_url).script_flush()
    assert idx.lookup("What's your refund policy?") is not None  # NOSCRIPT, then EVAL
    assert conn in {c["id"] for c in _clients_named(redis_url, name)}
    raw_client(redis_url).client_kill_filter(_id=conn)
    verdicts = [idx.lookup_verdict("What's your refund policy?") for _ in range(3)]
    assert verdicts[-1].outcome == "exact"
    assert {v.outcome for v in verdicts} <= {"exact", "error"}


def test_spin_is_checked(make_index: Any) -> None:
    idx = make_index(spin=0)
    idx.store("What's your refund policy?", "30 days.")
    assert idx.lookup("What's your refund policy?") is not None
    with pytest.raises(TypeError):
        make_index(spin="fast")
    with pytest.raises(TypeError):
        make_index(spin=True)
    with pytest.raises(ValueError):
        make_index(spin=-0.001)
    with pytest.raises(ValueError):
        make_index(spin=1.0)


def test_exact_hit_never_asks_the_tokenizer(make_index: Any) -> None:
    """Readability (the model's tokenizer) is asked only once the exact layer missed."""
    from paracache.vectorizers import MiniLMVectorizer

    class Counted(MiniLMVectorizer):  # type: ignore[misc]
        def unreadable(self, text: str) -> str | None:
            self.__dict__.setdefault("asked", []).append(text)
            return super().unreadable(text)

    vec = Counted()
    idx = make_index(vectorizer=vec)
    idx.store("What's your refund policy?", "30 days.")
    vec.__dict__["asked"] = []
    hit = idx.lookup("What's your refund policy?")
    assert hit is not None and hit.layer == "exact"
    assert vec.__dict__["asked"] == []
    idx.lookup("Can I get my money back?")  # a miss or a semantic hit: asked once
    assert vec.__dict__["asked"] == ["can i get my money back"]


def test_thread_connections_send_post_and_skip(redis_url: str) -> None:
    """The hot path's own connections: a sent command is received later; a reply
    nobody received, or a posted command's (even an error), is skipped by the thread's
    next command; arguments redis-py would refuse are refused the same way."""
    from paracache.transport import ThreadConnections

    client = redis.Redis.from_url(redis_url)
    conns = ThreadConnections(client, spin=0.002)
    key = f"t-conn-{time.time_ns()}"
    try:
        sent = conns.send(("ECHO", "first"))
        assert conns.receive(sent) == b"first"
        conns.send(("ECHO", "never received"))  # e.g. a flow that stopped half-way
        assert conns.call(("ECHO", "second")) == b"second"
        client.set(key, "a string")
        conns.post(("HGET", key, "field"))  # WRONGTYPE: logged when read, never raised
        conns.post(("SET", key, "posted"))
        assert conns.call(("GET", key)) == b"posted"
        with pytest.raises(RuntimeError):
            conns.receive(sent)  # received already
        for bad in (None, True):
            with pytest.raises(redis.DataError):
                conns.call(("SET", key, bad))
        assert conns.call(("ECHO", "still in step")) == b"still in step"
    finally:
        client.delete(key)
        conns.close()


def test_commands_sent_together_go_out_in_one_write(redis_url: str) -> None:
    """A send with more commands (the exact read and its companion's counts) is one
    buffer handed to the socket: redis-py writes each item of a list with its own
    ``sendall``, and each write may wake the server on its own."""
    from paracache.transport import ThreadConnections

    client = redis.Redis.from_url(redis_url)
    conns = ThreadConnections(client)
    key = f"t-one-write-{time.time_ns()}"
    writes: list[Any] = []
    try:
        assert conns.call(("PING",))  # connected (the handshake's writes before)
        conn = conns.connection()
        real = conn.send_packed_command

        def record(packed: Any, check_health: bool = True) -> None:
            writes.append(packed)
            real(packed, check_health=check_health)

        conn.send_packed_command = record
        sent = conns.send(("HSET", key, "f", "v"), (("HGETALL", key), ("HMGET", key, "f", "g")))
        assert conns.receive(sent) == [1, {b"f": b"v"}, [b"v", None]]
        assert len(writes) == 1 and len(writes[0]) == 1  # one write of one buffer
        assert conns.call(("ECHO", "in step")) == b"in step"
    finally:
        client.delete(key)
        conns.close()


def test_fields_from_a_dict_reply_are_a_copy() -> None:
    """Fields read from a dict reply (redis-py's HGETALL) are bytes to bytes, in a new
    dict (the caller may change it), whatever the reply's types."""
    from paracache.protocol import _as_fields

    raw = {b"prompt": b"hi", b"hit_count": b"2"}
    fields = _as_fields(raw)
    assert fields == raw and fields is not raw
    assert _as_fields({"prompt": "hi", b"n": 3}) == {b"prompt": b"hi", b"n": b"3"}


def _reference_measure(text: str, pieces: Any, word_ids: Any) -> Any:
    """readability.measure as it was before its fast paths (a per-letter loop for every
    text): what they must reproduce exactly."""
    import collections
    import unicodedata

    from paracache import lexicon
    from paracache.readability import _ENGLISH, _LETTERS, Readability, script_of

    per_word = collections.Counter(
        w
        for p, w in zip(pieces, word_ids, strict=True)
        if w is not None and any(ch.isalpha() for ch in p)
    )
    letters = foreign = accented = 0
    scripts: collections.Counter[str] = collections.Counter()
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        script = script_of(ch)
        if script != "Latin":
            foreign += 1
            scripts[script] += 1
        elif not ch.isascii() and len(unicodedata.normalize("NFD", ch)) > 1:
            accented += 1
    return Readability(
        tokens=sum(per_word.values()),
        unknown=sum(1 for p in pieces if p == "[UNK]"),
        words=len(per_word),
        letters=letters,
        foreign=foreign,
        accented=accented,
        scripts=tuple(s for s, _ in scripts.most_common()),
        whole=sum(1 for n in per_word.values() if n == 1),
        guarded=lexicon.marked(text),
        english_words=sum(1 for w in _LETTERS.findall(text.lower()) if w in _ENGLISH),
    )


def test_readability_fast_paths_measure_the_same() -> None:
    """The readability check's fast paths (ASCII text, whole-letter pieces) are
    perf-only: every text of the multilingual pairs and some odd ones measure exactly
    as the per-letter reference does, so every verdict is the same."""
    import json
    import pathlib

    from paracache.vectorizers import MiniLMVectorizer

    data = pathlib.Path(__file__).parent.parent / "benchmarks" / "data" / "multilingual_pairs.jsonl"
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    texts = {t for r in rows for t in (r["q1"], r["q2"])}
    texts |= {"", "ok", "1234 5678", "##ing", "x" * 120, "Straße", "naïve café", "I²C ½",
              "ıİşŞ KIR", "£50 to €40?", "order #A-77_b", "what's\tup\n", "ǅemal Ⅻ"}
    vec = MiniLMVectorizer()
    runtime = vec._loaded()
    assert len(texts) > 450
    for text in sorted(texts):
        prepared = vec._prepare(text)
        enc = vec._encode_one(runtime, prepared)
        pieces, word_ids = enc.tokens[1:-1], enc.word_ids[1:-1]
        assert vec.readability(text) == _reference_measure(prepared, pieces, word_ids), text
