"""Hostile and odd input: empty and 1 MB prompts, lone surrogates and control characters,
RediSearch query syntax in prompts, tenants, models, corpus versions and user fields.
No injection, no error, no cross-scope hit, checked by hand and by property tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage, SystemMessage
from reliability_helpers import EchoChatModel, raw, torn_entries

from paracache import Scope, SemanticIndex
from paracache.core import MAX_STORED_PROMPT
from paracache.langchain import SemanticCache

SYNTAX = [
    "@scope:{*}", "*", "|", "-", "=>[KNN 100 @embedding $vec AS d]", '"', "'", "\\", "{", "}",
    "(", ")", "%%", "~", "$vec", "@tenant:{acme}", "\x00", "\x1b[31m", "\ud800", "\udfff",
    "\u202e", "\ufeff", "\r\n", "ä", "租户", "🙂",
]


class Recording:
    """Passes through to the real embedder, recording what it was asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.texts = inner, []
        self.dims, self.model, self.type = inner.dims, inner.model, inner.type

    def embed(self, text: str, **kw: Any) -> Any:
        self.texts.append(text)
        return self.inner.embed(text, **kw)

    async def aembed(self, text: str, **kw: Any) -> Any:
        self.texts.append(text)
        return await self.inner.aembed(text, **kw)


def test_megabyte_prompt_embeds_a_prefix_and_keeps_the_exact_layer(make_index: Any) -> None:
    base = make_index()
    rec = Recording(base.vectorizer)
    idx = make_index(vectorizer=rec)
    big = "Why was I charged twice for my order? " + "x" * (1 << 20)
    other = big[:-1] + "y"  # differs only at the end, a megabyte in
    t0 = time.perf_counter()
    assert idx.store(big, "refund issued") is not None
    hit = idx.lookup(big)
    assert time.perf_counter() - t0 < 5
    assert hit is not None and hit.layer == "exact" and hit.response == "refund issued"
    assert len(hit.prompt) == MAX_STORED_PROMPT
    assert all(len(t) <= idx.settings.max_embed_chars for t in rec.texts)
    miss = idx.lookup_verdict(other, min_similarity=1.0)
    assert miss.hit is None or miss.hit.layer == "semantic"  # never an exact match


@pytest.mark.parametrize(
    "text", ["", " ", "\x00", "\ud800", "\udfff lone", "\x1b[2J\x07", "\u202e"]
)
def test_odd_prompts_round_trip(index: SemanticIndex, text: str) -> None:
    index.store(text, f"answer to {text!r}", metadata={"k\ud800": "v\x00"})
    hit = index.lookup(text)
    assert hit is not None and hit.layer == "exact"


def test_prompts_that_normalise_to_nothing_are_told_apart(index: SemanticIndex) -> None:
    """"?", "!!!" and "..." all normalise to "": one entry served each other's answers."""
    index.store("?", "answer to a question mark")
    index.store("!!!", "answer to an exclamation")
    assert index.lookup("...") is None
    hit = index.lookup("!!!")
    assert hit is not None and hit.layer == "exact" and hit.response == "answer to an exclamation"
    hit = index.lookup("?")
    assert hit is not None and hit.response == "answer to a question mark"


@pytest.mark.parametrize("nasty", SYNTAX)
def test_query_syntax_in_every_scope_field(index: SemanticIndex, nasty: str) -> None:
    mine = Scope(
        model=f"m{nasty}", tenant=f"t{nasty}", corpus_version=f"c{nasty}",
        fields={f"f{nasty}": f"v{nasty}", "plain": nasty},
    )
    neighbours = [
        Scope(model=f"m{nasty}", tenant="t", corpus_version=f"c{nasty}", fields=mine.fields),
        mine.replace(fields={f"f{nasty}": f"v{nasty}", "plain": nasty + " "}),
        Scope(),
        Scope(tenant="*"),
    ]
    question = f"How do I top up {nasty} my account?"
    assert index.store(question, "mine", mine) is not None
    for other in neighbours:
        assert index.store(question, "theirs", other) is not None
    hit = index.lookup(question, mine)
    assert hit is not None and hit.response == "mine"
    para = index.lookup(f"How can I top up {nasty} my account?", mine, min_similarity=0.0)
    assert para is not None and para.response == "mine"
    # the tenant filter is data, not syntax: it clears mine and its same-tenant neighbour
    assert index.clear(tenant=f"t{nasty}") == 2
    assert index.lookup(question, mine) is None
    assert index.clear(corpus_version=f"c{nasty}") == 1
    assert index.stats().errors == 0


def test_hostile_langchain_calls(make_index: Any, redis_url: str) -> None:
    idx = make_index()
    llm = EchoChatModel(model_name='gpt"} @scope:{*} | -x', cache=SemanticCache(index=idx))
    for nasty in ["", *SYNTAX]:
        msgs = [SystemMessage(f"system {nasty}"), HumanMessage(f"{nasty} what are the fees?")]
        first = llm.invoke(msgs)
        assert first.content == f"answer: {nasty} what are the fees?"
        assert llm.invoke(msgs).content == first.content
    assert idx.stats().errors == 0
    assert torn_entries(redis_url, idx.namespace, idx.layout.vector_bytes) == []


# ---------------------------------------------------------------- property tests

hostile_text = st.lists(
    st.one_of(st.sampled_from(SYNTAX), st.text(st.characters(codec=None), max_size=8)),
    max_size=5,
).map("".join)
scopes = st.builds(
    Scope,
    model=st.one_of(st.sampled_from(["gpt-4o", "gpt-4o-mini"]), hostile_text),
    tenant=st.one_of(st.sampled_from(["", "acme", "globex"]), hostile_text),
    corpus_version=st.sampled_from(["", "1", "2"]),
    params=st.fixed_dictionaries({"temperature": st.sampled_from([0, 0.5, 1.0])}),
    fields=st.dictionaries(
        st.text(max_size=4), st.one_of(hostile_text, st.integers(-3, 3), st.none()), max_size=2
    ),
)
questions = st.one_of(
    st.sampled_from(
        ["How do I reset my PIN?", "Where is my card?", "What are the fees?", "Refund please"]
    ),
    hostile_text,
)


@pytest.fixture(scope="module")
def shared_index(redis_url: str) -> Iterator[SemanticIndex]:
    idx = SemanticIndex(redis_url, namespace="prop-" + uuid.uuid4().hex[:8])
    yield idx
    idx.clear()
    idx.close()


@settings(
    max_examples=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(a=scopes, b=scopes, text=questions, probe=questions)
def test_a_lookup_never_returns_another_scopes_entry(
    shared_index: SemanticIndex, a: Scope, b: Scope, text: str, probe: str
) -> None:
    """For any two scopes and texts: with the threshold at 0 (any in-scope neighbour is a
    hit), every hit is an entry of the asking scope, and each scope finds its own."""
    assume(a.digest() != b.digest())
    for scope in (a, b):
        assert shared_index.store(text, f"for {scope.digest()}", scope) is not None
    for scope in (a, b):
        for q in (text, probe):
            hit = shared_index.lookup(q, scope, min_similarity=0.0)
            assert hit is None or hit.response == f"for {scope.digest()}"
        own = shared_index.lookup(text, scope)
        assert own is not None and own.layer == "exact"
        assert own.response == f"for {scope.digest()}"


def test_property_run_left_no_torn_entries(
    shared_index: SemanticIndex, redis_url: str
) -> None:
    assert shared_index.stats().errors == 0
    assert torn_entries(redis_url, shared_index.namespace, shared_index.layout.vector_bytes) == []
    assert raw(redis_url).ping()


# ---------------------------------------------------------------- times to live


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), 1e30, 2e9, 10**400])
def test_a_ttl_redis_cannot_take_is_refused_at_the_boundary(
    make_index: Any, redis_url: str, ttl: float
) -> None:
    """``ttl=1e30`` was accepted, then Redis refused the ``EXPIRE`` inside the write: the
    store said it was dropped, yet the entry was there without a TTL; ``nan`` raised
    "cannot convert float NaN to integer", naming nothing. Conversations and rate limits
    alike: every call failed (counted), a conversation's messages written without TTL.
    Times to live are now finite and at most ``MAX_TTL`` (10**9 s, 31 years)."""
    from paracache import TTLPolicy
    from paracache.limiter import Limit
    from paracache.sessions import SessionStore

    idx = make_index()
    assert idx.store("kept", "yes") is not None
    with pytest.raises(ValueError, match="ttl"):
        idx.store("How do I reset my PIN?", "answer", ttl=ttl)
    assert idx.count() == 1 and idx.stats().errors == 0
    for name in ("default_ttl", "volatile_ttl"):
        with pytest.raises(ValueError, match=name):
            TTLPolicy(**{name: ttl})
    with pytest.raises(ValueError, match="max_temperature"):
        TTLPolicy(max_temperature=float("nan"))
    assert TTLPolicy(max_temperature=float("inf")).bypass(2.0) is None  # inf: no bypass
    with pytest.raises(ValueError, match="ttl"):
        make_index(ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        SessionStore(redis_url=redis_url, namespace=idx.namespace, ttl=ttl)
    with pytest.raises((TypeError, ValueError), match=r"Limit\.window"):
        Limit("api", 5, window=ttl)
    with pytest.raises(ValueError, match="refill"):
        Limit("api", 1e-3, window=1e6, burst=1e9, charged=True)
    assert idx.count() == 1


def test_errors_name_the_argument_given(index: SemanticIndex) -> None:
    """``clear(corpus_version=1)`` said "corpus must be a str" (the index field's name);
    ``embed(5)`` said "normalize() argument 2 must be str" (unicodedata's)."""
    with pytest.raises(TypeError, match=r"^corpus_version must be a str"):
        index.clear(corpus_version=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^text must be a str"):
        index.embed(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^texts\[1\] must be a str"):
        index.embed_many(["a", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^min_similarity must be in \[0, 1\]"):
        index.lookup("q", min_similarity=10**400)  # was OverflowError, naming nothing
    with pytest.raises(ValueError, match=r"^tokens must be >= 0"):  # was a TypeError
        index.store("q", "a", tokens=-1)
    with pytest.raises(TypeError, match=r"^tokens must be an int"):
        index.store("q", "a", tokens="5")  # type: ignore[arg-type]
    assert index.count() == 0


def test_a_temperature_too_large_for_a_float_is_hot_not_an_error(index: SemanticIndex) -> None:
    """``Scope.temperature`` of an int beyond a float (``10**400``, e.g. from an
    ``llm_string``) raised ``OverflowError`` out of every lookup and store; it is now an
    infinite temperature: above ``max_temperature``, a bypass."""
    hot = Scope(params={"temperature": 10**400})
    assert hot.temperature == float("inf")
    assert index.lookup_verdict("What are the fees?", hot).outcome == "bypass"
    assert index.store_result("What are the fees?", "None.", hot).outcome == "skipped"
    cache = SemanticCache(index)
    llm_string = "[('_type', 'x'), ('temperature', 1" + "0" * 400 + ")]"
    assert cache.lookup("What are the fees?", llm_string) is None
