"""SemanticIndex against the real embedded Redis and the real offline embedder."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from typing import Any

import pytest
import redis

from paracache import (
    CacheError,
    CircuitBreaker,
    Normalizer,
    RedisSearchUnavailable,
    Scope,
    SemanticIndex,
    TTLPolicy,
    last_verdict,
)
from paracache.embedded import EmbeddedRedis
from paracache.scope import digest

HOSTILE = [
    'ac{me}|@*-:"\' x',
    "tenant with spaces",
    "*",
    "a|b",
    "@tenant:{x}",
    "-acme",
    "acme)",
    "x' OR '1'='1",
    "ünïcødé 租户",
    "",
]


def raw_client(url: str) -> redis.Redis:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), protocol=2)


# ---------------------------------------------------------------- the two layers


def test_exact_semantic_and_miss(index: SemanticIndex) -> None:
    scope = Scope(model="m1")
    entry = index.store("What's your refund policy?", "Refunds within 30 days.", scope)
    assert entry is not None

    exact = index.lookup_verdict("  what's your REFUND policy ", scope)
    assert exact.outcome == "exact" and exact.hit is not None
    assert exact.hit.similarity == 1.0 and exact.hit.response == "Refunds within 30 days."
    assert exact.hit.entry_id == entry

    para = index.lookup_verdict("What is your refund policy?", scope)
    assert para.outcome == "semantic" and para.hit is not None
    assert para.hit.prompt == "What's your refund policy?"
    assert 0.9 <= para.hit.similarity < 1.0

    miss = index.lookup_verdict("How do I reset my router?", scope)
    assert miss.outcome == "miss" and miss.hit is None
    assert miss.similarity is not None and miss.similarity < 0.5
    assert last_verdict() == miss


class CountingVectorizer:
    """Passes through to the real vectorizer, counting calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, []
        self.dims, self.model, self.type = inner.dims, inner.model, inner.type

    def embed(self, text: str, **kw: Any) -> Any:
        self.calls.append(text)
        return self.inner.embed(text, **kw)

    async def aembed(self, text: str, **kw: Any) -> Any:
        self.calls.append(text)
        return await self.inner.aembed(text, **kw)


def test_exact_layer_needs_no_embedding(make_index: Any) -> None:
    base = make_index()
    counting = CountingVectorizer(base.vectorizer)
    idx = make_index(vectorizer=counting)
    idx.store("Where is my card?", "On its way.")
    assert counting.calls == ["where is my card"]
    assert idx.lookup("  WHERE is my card ") is not None
    assert len(counting.calls) == 1  # answered by the exact layer, nothing embedded
    idx.lookup("Where has my card got to?")
    idx.lookup("where has my card got to")  # same normalised text: memoised
    assert len(counting.calls) == 2


def test_per_call_threshold(index: SemanticIndex) -> None:
    index.store("How do I change my PIN?", "In the app, under Card.")
    assert index.lookup("How can I change my PIN number?", min_similarity=0.8) is not None
    assert index.lookup("How can I change my PIN number?", min_similarity=0.999) is None
    with pytest.raises(ValueError):
        index.lookup("x", min_similarity=1.5)
    with pytest.raises(TypeError):
        index.lookup("x", min_similarity="high")  # type: ignore[arg-type]


def test_top_k_considers_the_best_in_scope(index: SemanticIndex) -> None:
    for i, q in enumerate(["How do I top up?", "What are the fees?", "Where is my card?"]):
        index.store(q, f"a{i}")
    hit = index.lookup("Where's my card?")
    assert hit is not None and hit.response == "a2"


# ---------------------------------------------------------------- scoping


@pytest.mark.parametrize(
    "a, b",
    [
        (Scope(model="gpt-4o"), Scope(model="gpt-4o-mini")),
        (Scope(params={"temperature": 0}), Scope(params={"temperature": 0.2})),
        (Scope(tenant="acme"), Scope(tenant="globex")),
        (Scope(context=digest("You are terse.")), Scope(context=digest("You are verbose."))),
        (Scope(corpus_version="1"), Scope(corpus_version="2")),
        (Scope(fields={"lang": "en"}), Scope(fields={"lang": "de"})),
    ],
)
def test_same_prompt_two_scopes_two_entries(index: SemanticIndex, a: Scope, b: Scope) -> None:
    ida = index.store("What is the exchange rate fee?", "answer A", a)
    idb = index.store("What is the exchange rate fee?", "answer B", b)
    assert ida != idb
    for scope, answer in ((a, "answer A"), (b, "answer B")):
        exact = index.lookup("What is the exchange rate fee?", scope)
        para = index.lookup("What fee do you charge for the exchange rate?", scope)
        assert exact is not None and exact.response == answer
        assert para is None or para.response == answer


@pytest.mark.parametrize("tenant", HOSTILE)
def test_hostile_tenant_and_model_names_are_data(index: SemanticIndex, tenant: str) -> None:
    mine = Scope(tenant=tenant, model=tenant + " model}")
    index.store("Can I cancel a transfer?", f"for {tenant!r}", mine)
    for other in HOSTILE:
        if other == tenant:
            continue
        theirs = Scope(tenant=other, model=other + " model}")
        assert index.lookup("Can I cancel a transfer?", theirs) is None
        assert index.lookup("Is it possible to cancel a transfer?", theirs) is None
    hit = index.lookup("Is it possible to cancel a transfer?", mine, min_similarity=0.7)
    assert hit is not None and hit.response == f"for {tenant!r}"


def test_query_syntax_in_prompts_is_harmless(index: SemanticIndex) -> None:
    nasty = '@scope:{*} | -(x) => [KNN 100 @embedding $vec] "\' \\ %%% ~ \x00 \ud800'
    assert index.store(nasty, "ok") is not None
    hit = index.lookup(nasty)
    assert hit is not None and hit.response == "ok"
    assert index.lookup("", Scope()) is None
    assert index.store("", "empty") is not None
    assert (hit := index.lookup("   ")) is not None and hit.response == "empty"


def test_huge_prompt(index: SemanticIndex) -> None:
    big = "Please explain my statement. " * 40_000  # ~1.2 MB
    assert index.store(big, "long answer") is not None
    hit = index.lookup(big)
    assert hit is not None and hit.layer == "exact"


def test_a_prompt_longer_than_the_model_reads_keeps_to_the_exact_layer(
    index: SemanticIndex,
) -> None:
    """The embedder sees the first ``max_embed_chars`` (2,000) characters and 256 word
    pieces: two prompts that differ only after that embedded alike, and one was served the
    other's answer at similarity 1.0. Such prompts are served by the exact layer only."""
    # Long words, one word piece each: cut at 2,000 characters, inside 256 pieces.
    context = "international administration responsibilities " * 46
    assert len(context) > index.settings.max_embed_chars
    index.store(context + "How long does a new card take?", "5 to 7 working days")
    verdict = index.lookup_verdict(context + "When are you open on Saturday?")
    assert verdict.hit is None and "max_embed_chars" in verdict.reason
    # Cut by the tokenizer (256 word pieces) before max_embed_chars:
    context = "Our help centre covers cards, transfers, statements and support hours. " * 20
    assert len(context) < index.settings.max_embed_chars
    index.store(context + "How long does a new card take?", "5 to 7 working days")
    verdict = index.lookup_verdict(context + "When are you open on Saturday?")
    assert verdict.hit is None and "256 word pieces" in verdict.reason
    hit = index.lookup(context + "How long does a new card take?")
    assert hit is not None and hit.layer == "exact"  # a repeat is still served
    index.store("How long does a new card take?", "5 to 7 working days")
    hit = index.lookup("How long will a new card take?")  # short prompts as before
    assert hit is not None and hit.layer == "semantic"


# ---------------------------------------------------------------- TTL policy


def test_ttl_expires_and_hits_do_not_extend_it(make_index: Any, redis_url: str) -> None:
    idx = make_index(ttl=2)
    entry = idx.store("How long does a transfer take?", "One day.")
    key = idx.layout.key(entry)
    r = raw_client(redis_url)
    assert 0 < r.ttl(key) <= 2
    time.sleep(1.1)
    assert idx.lookup("How long does a transfer take?") is not None
    assert r.ttl(key) <= 1  # absolute: the hit did not refresh it
    assert idx.flush_hits() == 1
    assert r.ttl(key) <= 1  # nor did its count
    fields = r.hgetall(key)
    assert fields[b"hit_count"] == b"1" and float(fields[b"last_hit_at"]) > 0
    time.sleep(1.5)
    assert idx.lookup("How long does a transfer take?") is None


def test_sliding_ttl_is_an_option(make_index: Any, redis_url: str) -> None:
    idx = make_index(ttl_policy=TTLPolicy(default_ttl=3, sliding=True))
    key = idx.layout.key(idx.store("What is my balance limit?", "1000"))
    r = raw_client(redis_url)
    time.sleep(1.2)
    assert idx.lookup("What is my balance limit?") is not None
    assert r.ttl(key) == 3


def test_policy_bypasses_hot_temperature_and_shortens_time_sensitive(
    make_index: Any, redis_url: str
) -> None:
    idx = make_index(ttl_policy=TTLPolicy(default_ttl=3600, max_temperature=0.7, volatile_ttl=60))
    hot = Scope(params={"temperature": 1.2})
    assert idx.store("Tell me a joke", "ha", hot) is None
    assert idx.lookup_verdict("Tell me a joke", hot).outcome == "bypass"
    r = raw_client(redis_url)
    key = idx.layout.key(idx.store("What is the exchange rate today?", "1.1"))
    assert 0 < r.ttl(key) <= 60
    key = idx.layout.key(idx.store("What is the exchange rate?", "1.1"))
    assert 60 < r.ttl(key) <= 3600
    key = idx.layout.key(idx.store("Pinned answer", "x", ttl=None))
    assert r.ttl(key) == -1
    s = idx.stats()
    assert s.bypasses == 1 and s.writes_skipped == 1


# ---------------------------------------------------------------- invalidation


def test_clear_by_scope_and_delete(index: SemanticIndex) -> None:
    a = Scope(tenant="a", model="m1", corpus_version="1")
    b = Scope(tenant="b", model="m1", corpus_version="2")
    c = Scope(tenant="a", model="m2", corpus_version="2")
    for s in (a, b, c):
        index.store("How do I verify my identity?", "v", s)
        index.store("Why was my card declined?", "d", s)
    assert index.count() == 6
    assert index.clear(tenant="b") == 2
    assert index.lookup("Why was my card declined?", b) is None
    assert index.lookup("Why was my card declined?", a) is not None
    assert index.clear(model="m2") == 2
    assert index.clear(tenant="a", corpus_version="2") == 0
    assert index.clear(corpus_version="1") == 2
    assert index.count() == 0
    entry = index.store("x y z", "w", a)
    assert entry is not None and index.delete(entry) is True and index.delete(entry) is False
    index.store("one", "1")
    assert index.clear() == 1 and index.count() == 0
    with pytest.raises(ValueError):
        index.delete("../../etc")
    for bad in (None, 5):  # a bad type says so, not "can only concatenate str"
        with pytest.raises(TypeError, match="entry_id must be a str"):
            index.delete(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="entry_id must be a str"):
            asyncio.run(index.adelete(bad))  # type: ignore[arg-type]


async def test_async_twins(index: SemanticIndex) -> None:
    scope = Scope(tenant="t")
    entry = await index.astore("How do I freeze my card?", "Tap Freeze.", scope)
    assert entry is not None
    hit = await index.alookup("How can I freeze my card?", scope)
    assert hit is not None and hit.layer == "semantic"
    assert (await index.alookup("how do i freeze my card", scope)).layer == "exact"  # type: ignore[union-attr]
    assert await index.acount() == 1
    assert await index.adelete(entry) is True
    await index.astore("a", "b", scope)
    assert await index.aclear(tenant="t") == 1


def test_stats(index: SemanticIndex) -> None:
    index.store("What are your opening hours?", "9 to 5", tokens=120)
    index.lookup("What are your opening hours?")
    index.lookup("When are you open?", min_similarity=0.5)
    index.lookup("Completely unrelated question about the weather on Mars")
    s = index.stats()
    assert (s.lookups, s.exact_hits, s.semantic_hits, s.misses) == (3, 1, 1, 1)
    assert s.tokens_saved == 240 and s.writes == 1 and s.errors == 0
    assert s.hit_latency_ms["p50"] > 0 and s.miss_latency_ms["p95"] > 0
    assert s.hit_rate == pytest.approx(2 / 3)


def test_stats_without_hits_has_no_hit_latency(index: SemanticIndex) -> None:
    """No hit, no hit latency: ``None``, never a "0 ms" that reads as measured."""
    fresh = index.stats()
    assert fresh.hit_latency_ms == {"p50": None, "p95": None, "p99": None}
    assert fresh.miss_latency_ms == {"p50": None, "p95": None, "p99": None}
    index.lookup("What are your opening hours?")  # a miss on an empty cache
    s = index.stats()
    assert s.misses == 1 and s.hits == 0
    assert s.hit_latency_ms == {"p50": None, "p95": None, "p99": None}
    assert all(v is not None and v > 0 for v in s.miss_latency_ms.values())
    assert s.as_dict()["hit_latency_ms"]["p50"] is None
    index.reset_stats()
    assert index.stats().miss_latency_ms["p99"] is None


# ---------------------------------------------------------------- bad input


def test_bad_input_is_refused_at_the_boundary(redis_url: str, index: SemanticIndex) -> None:
    with pytest.raises(TypeError):
        index.lookup(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.store("q", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.lookup("q", {"tenant": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scope(tenant=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scope(params={"temperature": object()})
    with pytest.raises(ValueError):
        Scope(params={"temperature": float("nan")})
    with pytest.raises(ValueError):
        SemanticIndex(redis_url, namespace="bad namespace!")
    with pytest.raises(ValueError):
        SemanticIndex(redis_url, namespace="ok", top_k=0)
    with pytest.raises(ValueError):
        SemanticIndex(redis_url, namespace="ok", min_similarity=2)
    with pytest.raises(ValueError):
        index.store("q", "a", ttl=-5)
    with pytest.raises(ValueError, match=r"^ttl must be a number of seconds"):  # not TTLPolicy's
        SemanticIndex(redis_url, namespace="ok", ttl="1h")  # type: ignore[arg-type]


def test_scope_is_frozen_against_caller_mutation() -> None:
    params = {"temperature": 0.0}
    s = Scope(params=params)
    before = s.digest()
    params["temperature"] = 1.0
    assert s.digest() == before


# ---------------------------------------------------------------- fail-open


class BrokenVectorizer:
    """A vectorizer whose output is unusable (wrong dims, NaN) or that raises."""

    def __init__(self, inner: Any, mode: str) -> None:
        self.inner, self.mode = inner, mode
        self.dims, self.model, self.type = inner.dims, inner.model, inner.type

    def embed(self, text: str, **kw: Any) -> list[float]:
        if self.mode == "raise":
            raise RuntimeError("embedding service down")
        if self.mode == "nan":
            return [float("nan")] * self.dims
        return [0.1] * (self.dims - 1)

    async def aembed(self, text: str, **kw: Any) -> list[float]:
        return self.embed(text)


@pytest.mark.parametrize("mode", ["raise", "nan", "dims"])
async def test_embedding_faults_are_misses_never_corrupt_entries(
    make_index: Any, mode: str, redis_url: str
) -> None:
    good = make_index()
    good.store("Is there a fee for top ups?", "No fee.")
    bad = make_index(vectorizer=BrokenVectorizer(good.vectorizer, mode))
    assert bad.layout.index_name == good.layout.index_name
    assert bad.lookup("Do you charge for topping up?") is None
    assert await bad.alookup("Do you charge for topping up?") is None
    assert bad.lookup("is there a fee for top ups") is not None  # exact layer still works
    assert bad.store("Can I top up by cheque?", "No.") is not None  # stored exact-only
    assert bad.stats().errors_by_kind.get("embedding", 0) >= 3
    hit = good.lookup("can i top up by cheque")
    assert hit is not None and hit.response == "No."
    r = raw_client(redis_url)
    assert b"embedding" not in r.hgetall(good.layout.key(hit.entry_id))


def test_redis_down_mid_test_then_back(
    make_index: Any, redis_server: EmbeddedRedis
) -> None:
    idx = make_index(breaker=CircuitBreaker(failures=2, cooldown=0.5), timeout=0.2)
    idx.store("How do I close my account?", "Settings > Close.")
    assert idx.lookup("How do I close my account?") is not None
    redis_server.stop()
    try:
        t0 = time.perf_counter()
        for _ in range(20):
            assert idx.lookup("How do I close my account?") is None
            assert idx.store("Another question?", "x") is None
        assert time.perf_counter() - t0 < 5  # the breaker spares the timeouts
        s = idx.stats()
        assert s.errors >= 2 and s.writes_dropped == 20
        assert s.errors_by_kind.get("breaker_open", 0) > 0
        assert s.breaker_state in ("open", "half-open")
        with pytest.raises(CacheError):
            idx.clear()
    finally:
        redis_server.start()
    time.sleep(0.6)
    # The server came back empty (no persistence): the index is rebuilt on its own.
    deadline = time.time() + 5
    while idx.store("How do I close my account?", "Settings > Close.") is None:
        assert time.time() < deadline
        time.sleep(0.2)
    assert idx.lookup("How can I close my account?") is not None
    assert idx.stats().breaker_state == "closed"


def test_unreachable_redis_at_start_is_fail_open(redis_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    idx = SemanticIndex(f"redis://127.0.0.1:{port}", namespace="nowhere", timeout=0.1)
    assert idx.lookup("anything") is None
    assert idx.store("anything", "x") is None
    assert idx.stats().errors >= 1


def test_server_without_search_module_is_a_clear_error(redis_server: EmbeddedRedis) -> None:
    binary = redis_server.server_binary
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}"
        for _ in range(50):
            try:
                raw_client(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        if b"search" in str(raw_client(url).execute_command("MODULE", "LIST")).encode():
            pytest.skip("this redis-server has search built in")
        with pytest.raises(RedisSearchUnavailable, match="no search module"):
            SemanticIndex(url, namespace="plain")
    finally:
        proc.terminate()
        proc.wait(5)


def test_a_database_other_than_0_is_refused_before_any_search() -> None:
    """RediSearch indexes database 0 only, and one FT.SEARCH sent from database 1 leaves
    the server's searches returning documents without fields, for every client. A URL
    ending in /1 used to build a cache anyway: on a namespace whose index existed it
    searched from there (breaking `paracache inspect` for everyone), on a new one every
    call logged "Cannot create index on db != 0". Refused now, whatever the index."""
    with EmbeddedRedis() as server:
        url0 = server.url
        assert url0.endswith("/0")
        first = SemanticIndex(url0, namespace="db-zero")
        first.store("How do I freeze my card?", "Tap Freeze.")
        for namespace in ("db-zero", "db-new"):
            with pytest.raises(RedisSearchUnavailable, match="database 0 only"):
                SemanticIndex(url0[:-1] + "1", namespace=namespace)
        client = raw_client(url0[:-1] + "1")
        try:
            with pytest.raises(RedisSearchUnavailable, match="database 1"):
                SemanticIndex(redis_client=client, namespace="db-zero")
        finally:
            client.close()
        assert [e.prompt for e in first.entries(5)] == ["How do I freeze my card?"]
        first.close()


# ---------------------------------------------------------------- concurrency


def test_threads_share_one_instance(index: SemanticIndex) -> None:
    errors: list[BaseException] = []
    questions = [f"How do I order card number {i}?" for i in range(8)]

    def worker(n: int) -> None:
        try:
            for i in range(15):
                q = questions[(n + i) % len(questions)]
                index.store(q, q.upper(), Scope(tenant=f"t{n % 2}"))
                hit = index.lookup(q, Scope(tenant=f"t{n % 2}"))
                assert hit is None or hit.response == q.upper()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = index.stats()
    assert s.lookups == 90 and s.writes == 90 and s.errors == 0


async def test_tasks_share_one_instance(index: SemanticIndex) -> None:
    async def worker(n: int) -> None:
        for i in range(10):
            q = f"Why is my transfer number {i % 4} pending?"
            await index.astore(q, q[::-1], Scope(tenant=str(n % 3)))
            hit = await index.alookup(q, Scope(tenant=str(n % 3)))
            assert hit is not None and hit.response == q[::-1]

    await asyncio.gather(*(worker(n) for n in range(8)))
    s = index.stats()
    assert s.lookups == 80 and s.errors == 0


async def test_a_busy_event_loop_is_not_a_redis_timeout(make_index: Any) -> None:
    """Replies that arrive while the loop is blocked (CPU work in other tasks) are read,
    not timed out, and the time the loop was stuck is not charged to a lookup's budget:
    the timeout measures the server, not the event loop."""
    index = make_index(timeout=0.1)  # the default
    questions = [f"Where is my parcel number {i}?" for i in range(8)]
    for q in questions:
        await index.astore(q, q.upper())
    # Exact repeats (one call) and, behind a pleasantry, semantic hits (two calls).
    asks = questions + [q[:-1] + ", please?" for q in questions]
    index.reset_stats()

    async def block_loop(passes: int) -> None:
        for _ in range(passes):  # the lookups start their calls meanwhile
            await asyncio.sleep(0)
        time.sleep(0.25)  # then the loop is stuck for 2.5x the timeout, replies arriving

    for passes in (1, 2, 3):
        _, *hits = await asyncio.gather(block_loop(passes), *(index.alookup(q) for q in asks))
        assert all(h is not None and h.response == h.prompt.upper() for h in hits)
    s = index.stats()
    assert s.errors == 0, s.errors_by_kind
    assert s.exact_hits == 24 and s.semantic_hits == 24


# ---------------------------------------------------------------- pure parts


def test_normalizer_keeps_what_changes_the_answer() -> None:
    n = Normalizer()
    assert n("Where is parcel 1047?") != n("Where is parcel 1074?")
    assert n("Please DON'T cancel my order.") == "please don't cancel my order"
    assert n("\tHello\n\nWorld!!") == "hello world"
    vol = Normalizer(strip_volatile=True)
    assert vol("at 10:30 id 123e4567-e89b-12d3-a456-426614174000") == "at <time> id <uuid>"


def test_breaker_state_machine() -> None:
    now = [0.0]
    b = CircuitBreaker(failures=2, cooldown=1.0, clock=lambda: now[0])
    assert b.allow() and b.state == "closed"
    b.record_failure()
    assert b.allow()
    b.record_failure()
    assert not b.allow() and b.state == "open"
    now[0] = 1.5
    assert b.allow() and not b.allow()  # one trial
    b.record_failure()
    assert not b.allow()
    now[0] = 3.0
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow()


class SlowVectorizer(CountingVectorizer):
    def embed(self, text: str, **kw: Any) -> Any:
        time.sleep(1.0)
        return super().embed(text, **kw)

    async def aembed(self, text: str, **kw: Any) -> Any:
        await asyncio.sleep(1.0)
        return await super().aembed(text, **kw)


async def test_embedding_timeout_is_a_miss(make_index: Any) -> None:
    base = make_index()
    base.store("How do I dispute a charge?", "Open the transaction.")
    slow = make_index(vectorizer=SlowVectorizer(base.vectorizer), embed_timeout=0.1)
    t0 = time.perf_counter()
    assert slow.lookup("How can I dispute a charge?") is None
    assert await slow.alookup("Can I dispute a charge?") is None
    assert time.perf_counter() - t0 < 1.0
    assert slow.stats().errors_by_kind == {"embedding": 2}
    assert slow.lookup("how do i dispute a charge") is not None  # the exact layer still answers


def test_float16_vectors(make_index: Any, redis_url: str) -> None:
    idx = make_index(dtype="float16")
    key = idx.layout.key(idx.store("How do I set up a direct debit?", "In Payments."))
    assert len(raw_client(redis_url).hget(key, "embedding") or b"") == 384 * 2
    hit = idx.lookup("How can I set up a direct debit?")
    assert hit is not None and hit.layer == "semantic"
    other = make_index(dtype="float32").layout.index_name
    assert idx.layout.index_name != other  # never shares an index
    assert make_index().layout.dtype == "float16"  # the default


def test_close_releases_async_connections_of_every_loop(
    make_index: Any, redis_url: str, namespace: str
) -> None:
    """close() closes the async clients made on other event loops too: one running in
    another thread, one stopped."""
    idx = make_index()
    r = raw_client(redis_url)

    def mine() -> list[Any]:
        return [c for c in r.client_list() if c.get("name") == f"paracache:{namespace}"]

    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    stopped = asyncio.new_event_loop()
    try:
        asyncio.run_coroutine_threadsafe(idx.alookup("Where is my card?"), running).result(60)
        stopped.run_until_complete(idx.alookup("Where is my card?"))
        assert len(mine()) >= 3  # this thread's, and each loop's
        idx.close()
        deadline = time.monotonic() + 30
        while mine() and time.monotonic() < deadline:  # the server sees them go
            time.sleep(0.05)
        assert mine() == []
    finally:
        running.call_soon_threadsafe(running.stop)
        thread.join(30)
        running.close()
        stopped.close()
        r.close()


def test_exact_layer_can_be_turned_off(make_index: Any) -> None:
    """exact=False (documented): lookups go to the semantic layer only."""
    idx = make_index(exact=False)
    idx.store("Where is my card?", "On its way.")
    hit = idx.lookup("Where is my card?")
    assert hit is not None and hit.layer == "semantic" and hit.similarity > 0.99
    with pytest.raises(TypeError, match="exact"):
        make_index(exact="no")


def test_store_result_tells_declined_from_dropped(
    make_index: Any, redis_server: EmbeddedRedis
) -> None:
    idx = make_index()
    hot = Scope(params={"temperature": 1.5})
    skipped = idx.store_result("Tell me a joke", "...", hot)
    assert (skipped.outcome, skipped.entry_id, skipped.written) == ("skipped", None, False)
    assert "temperature" in skipped.reason
    written = idx.store_result("Where is my card?", "On its way.", tokens=3)
    assert written.written and written.entry_id == idx.store("Where is my card?", "On its way.")
    redis_server.stop()
    try:
        dropped = idx.store_result("Where is my parcel?", "Tomorrow.")
    finally:
        redis_server.start()
    assert dropped.outcome == "dropped" and dropped.reason.startswith("redis: ")
    with pytest.raises(TypeError, match="unexpected store options"):
        idx.store_result("Hi", "Hello", ttl_seconds=3)


def test_embed_sees_what_lookups_embed(make_index: Any) -> None:
    """embed()/embed_many() apply the max_embed_chars cap lookups apply: a long prompt
    embedded ahead is not embedded again by its lookup (one memo key for both)."""
    class Counting(CountingVectorizer):
        def embed_many(self, texts: list[str], **kw: Any) -> Any:
            self.calls.extend(texts)
            return self.inner.embed_many(texts, **kw)

    counting = Counting(make_index().vectorizer)
    idx = make_index(vectorizer=counting, embed_timeout=None)  # a loaded CI machine
    parcel = "where is the parcel I ordered last week " * 100  # 4,000 characters
    card = "my new card has still not arrived, what now " * 100
    idx.embed(parcel)
    idx.embed_many([card])
    assert len(counting.calls) == 2 and all(len(t) <= 2_000 for t in counting.calls)
    idx.lookup(parcel)
    idx.lookup(card)
    assert len(counting.calls) == 2  # both lookups found their vectors in the memo


# ---------------------------------------------------------------- HNSW settings


def test_a_cache_asking_other_hnsw_settings_of_an_existing_index_says_so(
    make_index: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The index is made by the first cache of its name; a second one (another process,
    another deploy) with other ``hnsw=`` settings searched that graph without a word."""
    from paracache import HNSW

    first = make_index(hnsw=HNSW(m=16, ef_construction=200))
    with caplog.at_level("WARNING", logger="paracache"):
        make_index(hnsw=HNSW(m=16, ef_construction=200))  # the same: nothing to say
    assert not [r for r in caplog.records if "HNSW" in r.getMessage()]
    with caplog.at_level("WARNING", logger="paracache"):
        make_index(hnsw=HNSW(m=32, ef_construction=100))
    said = [r.getMessage() for r in caplog.records if "HNSW" in r.getMessage()]
    assert len(said) == 1
    assert "M=16, EF_CONSTRUCTION=200 (this cache asked for M=32, EF_CONSTRUCTION=100)" in said[0]
    assert f"FT.DROPINDEX {first.layout.index_name} (without DD" in said[0]


@pytest.mark.parametrize(
    "vector",
    [
        # RESP2: name/value pairs, RediSearch 2.10's spelling
        ["attribute", "embedding", "type", "VECTOR", "M", 16, "ef_construction", 200],
        # upper-case keys, and EF_RUNTIME reported (other versions)
        ["attribute", "embedding", "type", "VECTOR", "M", "16", "EF_CONSTRUCTION", "200",
         "EF_RUNTIME", "20"],
        # RESP3: a map, lower-case keys
        {"attribute": "embedding", "type": "VECTOR", "m": 16, "ef_construction": 200},
    ],
)
def test_hnsw_settings_are_read_in_either_spelling(vector: Any) -> None:
    from paracache import HNSW
    from paracache.schema import Layout, hnsw_difference

    same = Layout.build("faq", "m", dims=2, hnsw=HNSW(m=16, ef_construction=200))
    other = Layout.build("faq", "m", dims=2, hnsw=HNSW(m=32, ef_construction=200))
    for info in (["attributes", [vector]], {"attributes": [vector]}):
        assert hnsw_difference(info, same) is None
        said = hnsw_difference(info, other)
        assert said is not None and said.startswith("M=16, EF_CONSTRUCTION=200")
        assert "asked for M=32, EF_CONSTRUCTION=200" in said
    assert hnsw_difference(["attributes", []], other) is None  # not reported: no claim


# ---------------------------------------------------------------- numpy numbers


def test_numeric_arguments_accept_numpy_scalars(make_index: Any, redis_url: str) -> None:
    """``max_error_rate=np.float32(0.02)`` (a number read from an array, a DataFrame, a
    config parsed by numpy) was refused: ``np.float32`` is neither ``int`` nor ``float``.
    Any real number that is not a bool is one now, and is stored as a plain number."""
    import numpy as np

    from paracache import HNSW
    from paracache.singleflight import SingleFlight

    index: SemanticIndex = make_index(
        max_error_rate=np.float32(0.02),
        min_similarity=np.float32(0.85),
        corroboration_margin=np.float64(0.05),
        thresholds={"tenant": {"acme": np.float32(0.95)}},
        top_k=np.int64(4),
        timeout=np.float32(5.0),
        admin_timeout=np.int32(10),
        embed_timeout=np.float16(5),
        ttl=np.float32(3600),
        max_entries=np.int64(1000),
        hit_flush_hits=np.int64(1),
        hit_flush_seconds=np.float32(1),
        explore_rate=np.float32(0.0),
        judge_timeout=np.float32(10),
        hnsw=HNSW(m=np.int64(16), ef_construction=np.int32(200)),  # type: ignore[arg-type]
    )
    assert index.learner is not None and type(index.learner.delta) is float
    assert index.learner.delta == pytest.approx(0.02)
    assert type(index.settings.min_similarity) is float and type(index.settings.top_k) is int
    assert type(index.settings.policy.default_ttl) is float
    assert type(index.layout.hnsw.m) is int
    scope = Scope(model="m", tenant="other")
    entry = index.store("How do I close my account?", "Settings > Close.", scope,
                        tokens=np.int64(12), ttl=np.float32(600))
    assert entry is not None
    ttl = redis.Redis.from_url(redis_url).ttl(index.layout.key(entry))
    assert 0 < ttl <= 600
    hit = index.lookup("How can I close my account?", scope, min_similarity=np.float32(0.8))
    assert hit is not None and hit.tokens == 12
    flights = SingleFlight(index, wait=np.float32(5), retries=np.int64(1), poll=np.float64(0.01))
    assert type(flights.wait) is float and type(flights.retries) is int
    for bad in (True, np.bool_(True), "0.02"):
        with pytest.raises(TypeError):
            index.lookup("x", scope, min_similarity=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        make_index(max_error_rate=np.bool_(True))
