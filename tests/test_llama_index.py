"""The LlamaIndex adapter on a real VectorStoreIndex, the real embedded Redis and the real
offline embedder. Synthesis uses LlamaIndex's MockLLM (it echoes the prompt, so every
answer carries its retrieved context). Nothing is mocked on the cache side."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from llama_index.core import Document, PromptTemplate, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import QueryBundle
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters
from pydantic import Field, PrivateAttr

from paracache import SemanticIndex
from paracache.embedded import EmbeddedRedis
from paracache.llama_index import (
    CachedLLM,
    CacheHitEvent,
    CacheMissEvent,
    LlamaIndexEmbedding,
    SemanticCacheQueryEngine,
    llm_scope,
)

SECRET = "sk-paracache-test-SECRET-4f9a1c"

DOCS = [
    ("Refunds are issued within 30 days of purchase to the original payment method.",
     "billing"),
    ("Annual plans can be cancelled at any time; unused months are refunded pro rata.",
     "billing"),
    ("To reset your password, click 'Forgot password' on the login page and follow the "
     "emailed link.", "account"),
    ("Two-factor authentication can be enabled under Settings > Security.", "account"),
    ("Standard shipping takes 3 to 5 business days; express shipping takes 1 day.",
     "shipping"),
    ("We ship to 40 countries; customs duties are paid by the recipient.", "shipping"),
    ("Support is available Monday to Friday, 9am to 6pm Central European Time.", "support"),
    ("You can export all your data as CSV from the Account > Export page.", "account"),
]

REFUND = "What is your refund policy?"
REFUND_PARAPHRASE = "What's your refund policy"
PASSWORD = "How do I reset my password?"
PASSWORD_PARAPHRASE = "How can I reset my password?"
SUPPORT = "When is customer support available?"


class CountingEmbedding(LlamaIndexEmbedding):
    """Counts the query embeddings LlamaIndex asks of it."""

    _queries: list[str] = PrivateAttr(default_factory=list)

    def _get_query_embedding(self, query: str) -> list[float]:
        self._queries.append(query)
        return super()._get_query_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        self._queries.append(query)
        return await super()._aget_query_embedding(query)


class SecretLLM(MockLLM):
    """A MockLLM with a model name, sampling settings and an API key, counting calls."""

    model: str = "mock-1"
    temperature: float = 0.0
    api_key: str = SECRET
    _calls: list[str] = PrivateAttr(default_factory=list)

    def __init__(self, temperature: float = 0.0, max_tokens: int | None = None) -> None:
        super().__init__(max_tokens=max_tokens)
        self.temperature = temperature

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._calls.append(prompt)
        return super().complete(prompt, formatted=formatted, **kwargs)


class Collector(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


class EchoEngine(CustomQueryEngine):
    """An engine the adapter cannot introspect (it overrides query())."""

    calls: list[str] = Field(default_factory=list)

    def custom_query(self, query_str: str) -> str:
        self.calls.append(query_str)
        return f"echo: {query_str}"


@pytest.fixture(scope="module")
def embed_model() -> LlamaIndexEmbedding:
    return LlamaIndexEmbedding()


@pytest.fixture(scope="module")
def vindex(embed_model: LlamaIndexEmbedding) -> VectorStoreIndex:
    docs = [Document(text=t, metadata={"category": c}) for t, c in DOCS]
    return VectorStoreIndex.from_documents(docs, embed_model=embed_model)


@pytest.fixture
def engine(vindex: VectorStoreIndex, index: SemanticIndex) -> SemanticCacheQueryEngine:
    return SemanticCacheQueryEngine.from_index(
        vindex, index, llm=MockLLM(), similarity_top_k=2
    )


@pytest.fixture
def collector() -> Iterator[Collector]:
    root = get_dispatcher()
    handler = Collector()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


def cache_info(response: Any) -> dict[str, Any] | None:
    info = (response.metadata or {}).get("paracache")
    return info if isinstance(info, dict) else None


def ids(response: Any) -> list[str]:
    return [n.node.node_id for n in response.source_nodes]


def namespace_values(index: SemanticIndex, redis_url: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        values: list[bytes] = []
        for key in client.scan_iter(match=index.layout.namespace_prefix + "*"):
            values.append(key)
            if client.type(key) == b"hash":
                for field, value in client.hgetall(key).items():
                    values.extend((field, value))
        return values
    finally:
        client.close()


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


# --------------------------------------------------------------------------- query engine


def test_paraphrase_hits_and_other_questions_miss(engine: SemanticCacheQueryEngine) -> None:
    first = engine.query(REFUND)
    assert isinstance(first, Response) and cache_info(first) is None
    assert "Refunds are issued within 30 days" in str(first)

    again = engine.query(REFUND_PARAPHRASE)
    info = cache_info(again)
    assert info is not None and info["layer"] == "semantic" and info["similarity"] >= 0.9
    assert info["cached_query"] == REFUND
    assert str(again) == str(first)

    exact = engine.query(REFUND)
    assert cache_info(exact)["layer"] == "exact"  # type: ignore[index]

    other = engine.query(SUPPORT)
    assert cache_info(other) is None and "Monday to Friday" in str(other)
    stats = engine.index.stats()
    assert (stats.semantic_hits, stats.exact_hits, stats.misses) == (1, 1, 2)


def test_response_and_source_nodes_round_trip(engine: SemanticCacheQueryEngine) -> None:
    fresh = engine.query(PASSWORD)
    cached = engine.query(PASSWORD_PARAPHRASE)
    assert isinstance(cached, Response) and cache_info(cached) is not None
    assert cached.response == fresh.response
    assert len(cached.source_nodes) == len(fresh.source_nodes) == 2
    for a, b in zip(cached.source_nodes, fresh.source_nodes, strict=True):
        assert a.node.node_id == b.node.node_id
        assert a.node.get_content() == b.node.get_content()
        assert a.node.metadata == b.node.metadata
        assert a.node.ref_doc_id == b.node.ref_doc_id
        assert a.score == pytest.approx(b.score)
    meta = dict(cached.metadata or {})
    meta.pop("paracache")
    assert meta == fresh.metadata
    assert "Source (Doc id" in cached.get_formatted_sources()


@pytest.mark.parametrize("streaming", [False, True])
def test_source_nodes_keep_their_offsets_and_neighbours(
    embed_model: LlamaIndexEmbedding, index: SemanticIndex, streaming: bool
) -> None:
    """A hit's source nodes lost their character offsets (``start_char_idx``,
    ``end_char_idx``: what an app highlights in the source document) and their
    previous/next/parent relationships; only the source document was kept."""
    from llama_index.core.node_parser import SentenceSplitter

    text = " ".join(f"Step {i}: open menu {i} and press button {i}." for i in range(40))
    chunked = VectorStoreIndex.from_documents(
        [Document(text=text, id_="guide")],
        embed_model=embed_model,
        transformations=[SentenceSplitter(chunk_size=48, chunk_overlap=0)],
    )
    engine = SemanticCacheQueryEngine.from_index(
        chunked, index, llm=MockLLM(max_tokens=8), similarity_top_k=2, streaming=streaming
    )

    def described(response: Any) -> list[Any]:
        if streaming:
            "".join(response.response_gen)
        return [
            (n.node.node_id, n.node.start_char_idx, n.node.end_char_idx,
             {r: i.node_id for r, i in n.node.relationships.items()})
            for n in response.source_nodes
        ]

    fresh = described(engine.query("What does step 7 do?"))
    hit = engine.query("What happens in step 7?")
    assert cache_info(hit) is not None
    assert described(hit) == fresh
    assert all(start is not None for _, start, _, _ in fresh)
    assert all(len(relations) >= 2 for *_, relations in fresh)  # source and a neighbour


def test_entries_stored_before_offsets_still_load() -> None:
    from paracache.llama_index._shared import _load_response

    old = ('{"v": 1, "kind": "text", "response": "ok", "metadata": {}, "source_nodes": '
           '[{"id": "n1", "text": "t", "metadata": {}, "score": 0.5, "ref_doc_id": "d1", '
           '"excluded_embed": [], "excluded_llm": []}]}')
    text, nodes, _, _ = _load_response(old)
    assert text == "ok" and nodes[0].node.ref_doc_id == "d1"
    assert nodes[0].node.start_char_idx is None


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"similarity_top_k": 3}, id="top_k"),
        pytest.param(
            {"filters": MetadataFilters(filters=[ExactMatchFilter(key="category",
                                                                  value="billing")])},
            id="filters",
        ),
        pytest.param({"llm": MockLLM(max_tokens=6)}, id="llm-setting"),
        pytest.param({"response_mode": "tree_summarize"}, id="response_mode"),
        pytest.param({"text_qa_template": PromptTemplate("Q: {query_str}\nC: {context_str}")},
                     id="template"),
    ],
)
def test_what_changes_the_answer_changes_the_scope(
    vindex: VectorStoreIndex, index: SemanticIndex, variant: dict[str, Any]
) -> None:
    base_kwargs: dict[str, Any] = {"llm": MockLLM(max_tokens=5), "similarity_top_k": 2}
    base = SemanticCacheQueryEngine.from_index(vindex, index, **base_kwargs)
    other = SemanticCacheQueryEngine.from_index(vindex, index, **{**base_kwargs, **variant})
    base.query(REFUND)
    assert cache_info(base.query(REFUND)) is not None
    assert cache_info(other.query(REFUND)) is None
    assert cache_info(other.query(REFUND_PARAPHRASE)) is not None  # its own entry now


def test_corpus_version_and_tenant(engine: SemanticCacheQueryEngine) -> None:
    engine.query(REFUND)
    acme = engine.for_tenant("acme")
    assert acme.index is engine.index and acme.tenant == "acme"
    assert cache_info(acme.query(REFUND)) is None
    assert cache_info(acme.query(REFUND)) is not None
    assert cache_info(engine.query(REFUND)) is not None

    engine.bump_corpus_version("v2")
    assert engine.corpus_version == "v2"
    assert cache_info(engine.query(REFUND)) is None
    assert cache_info(engine.query(REFUND)) is not None
    engine.corpus_version = ""
    assert cache_info(engine.query(REFUND)) is not None
    assert engine.index.clear(corpus_version="v2") == 1


def test_a_tenant_that_is_not_a_str_is_refused(engine: SemanticCacheQueryEngine) -> None:
    """``tenant or ""`` made a falsy non-str (``0``, ``False``: a numeric tenant id 0) the
    empty tenant, shared with every caller without one, where ``5`` raised; and
    ``for_tenant(None)`` silently meant the empty tenant (LangChain's raises)."""
    for bad in (0, False, 5, b""):
        with pytest.raises(TypeError, match="tenant"):
            engine.for_tenant(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tenant"):
            SemanticCacheQueryEngine(engine.query_engine, engine.index, tenant=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tenant"):
        engine.for_tenant(None)  # type: ignore[arg-type]
    assert SemanticCacheQueryEngine(engine.query_engine, engine.index).tenant == ""
    assert engine.for_tenant("").tenant == ""


def test_scope_records_settings_without_secrets(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    engine = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=SecretLLM(temperature=0.1), similarity_top_k=4,
        response_mode="compact", scope_fields={"app": "docs"},
    )
    scope = engine.scope_for(QueryBundle(REFUND))
    assert scope.model == "mock-1" and scope.params == {"temperature": 0.1}
    assert scope.fields["similarity_top_k"] == 4
    assert scope.fields["response_mode"] == "compact"
    assert scope.fields["index_id"] == vindex.index_id
    assert scope.fields["app"] == "docs"
    assert SECRET not in repr(scope.as_dict())


def test_prompts_pass_through_and_change_the_scope(engine: SemanticCacheQueryEngine) -> None:
    key = "response_synthesizer:text_qa_template"
    assert set(engine.get_prompts()) == set(engine.query_engine.get_prompts())
    engine.query(REFUND)
    assert cache_info(engine.query(REFUND)) is not None

    engine.update_prompts({key: PromptTemplate("Answer briefly.\n{context_str}\n{query_str}")})
    assert engine.query_engine.get_prompts()[key].get_template().startswith("Answer briefly")
    fresh = engine.query(REFUND)
    assert cache_info(fresh) is None and str(fresh).startswith("Answer briefly")


async def test_async_query(engine: SemanticCacheQueryEngine) -> None:
    first = await engine.aquery(PASSWORD)
    assert isinstance(first, Response) and cache_info(first) is None
    hit = await engine.aquery(PASSWORD_PARAPHRASE)
    assert isinstance(hit, Response) and cache_info(hit)["layer"] == "semantic"  # type: ignore[index]
    assert hit.response == first.response
    assert ids(hit) == ids(first)


def test_streaming_is_stored_once_consumed(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    llm = MockLLM()
    stream = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=llm, similarity_top_k=2, streaming=True
    )
    plain = SemanticCacheQueryEngine.from_index(vindex, index, llm=llm, similarity_top_k=2)

    first = stream.query(PASSWORD)
    assert isinstance(first, StreamingResponse) and cache_info(first) is None
    assert index.count() == 0  # nothing stored until the stream is read to the end
    text = "".join(first.response_gen)
    assert "Forgot password" in text and index.count() == 1

    hit = stream.query(PASSWORD_PARAPHRASE)
    assert isinstance(hit, StreamingResponse) and cache_info(hit) is not None
    assert "".join(hit.response_gen) == text
    assert ids(hit) == ids(first)
    # The same answer serves a non-streaming engine with the same settings.
    served = plain.query(PASSWORD)
    assert isinstance(served, Response) and served.response == text


async def test_async_streaming(vindex: VectorStoreIndex, index: SemanticIndex) -> None:
    stream = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=MockLLM(), similarity_top_k=2, streaming=True
    )
    first = await stream.aquery(REFUND)
    assert isinstance(first, AsyncStreamingResponse) and cache_info(first) is None
    text = "".join([token async for token in first.async_response_gen()])
    assert "Refunds are issued" in text
    hit = await stream.aquery(REFUND_PARAPHRASE)
    assert isinstance(hit, AsyncStreamingResponse) and cache_info(hit) is not None
    assert str((await hit.get_response()).response) == text


def test_instrumentation_events(engine: SemanticCacheQueryEngine, collector: Collector) -> None:
    engine.query(REFUND)
    engine.query(REFUND_PARAPHRASE)
    ours = [e for e in collector.events if isinstance(e, (CacheHitEvent, CacheMissEvent))]
    assert [type(e) for e in ours] == [CacheMissEvent, CacheHitEvent]
    miss, hit = ours
    assert isinstance(miss, CacheMissEvent) and miss.outcome == "miss" and miss.query == REFUND
    assert isinstance(hit, CacheHitEvent) and hit.layer == "semantic" and hit.similarity >= 0.9
    assert hit.source == "query_engine" and hit.span_id is not None
    assert hit.model_dump()["class_name"] == "CacheHitEvent"
    # LlamaIndex's own query events still flow around ours.
    names = [e.class_name() for e in collector.events]
    assert names.count("QueryStartEvent") >= 2


def test_query_embedding_is_reused_when_exact(index: SemanticIndex) -> None:
    docs = [Document(text=t, metadata={"category": c}) for t, c in DOCS]
    counting = CountingEmbedding()
    vindex = VectorStoreIndex.from_documents(docs, embed_model=counting)
    engine = SemanticCacheQueryEngine.from_index(vindex, index, llm=MockLLM(), similarity_top_k=2)

    cached_path = engine.query(REFUND)  # miss: the retriever gets the cache's embedding
    assert counting._queries == []
    engine.query(REFUND_PARAPHRASE)  # hit: no retrieval at all
    assert counting._queries == []
    direct = vindex.as_query_engine(llm=MockLLM(), similarity_top_k=2).query(REFUND)
    assert counting._queries == [REFUND]
    assert ids(cached_path) == ids(direct)
    for a, b in zip(cached_path.source_nodes, direct.source_nodes, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)

    # Queries embedded verbatim differ from the cache's normalised text: no reuse.
    verbatim = CountingEmbedding(query_normalizer=None)
    vindex2 = VectorStoreIndex.from_documents(docs, embed_model=verbatim)
    engine2 = SemanticCacheQueryEngine.from_index(vindex2, index, llm=MockLLM())
    engine2.query(SUPPORT)
    assert verbatim._queries == [SUPPORT]


def test_wraps_an_engine_it_cannot_introspect(index: SemanticIndex) -> None:
    inner = EchoEngine()
    engine = SemanticCacheQueryEngine.wrap(inner, index, tenant="t1", scope_fields={"v": 1})
    assert str(engine.query(REFUND)) == f"echo: {REFUND}"
    hit = engine.query(REFUND_PARAPHRASE)
    assert str(hit) == f"echo: {REFUND}" and cache_info(hit) is not None
    assert inner.calls == [REFUND]
    scope = engine.scope_for(QueryBundle(REFUND))
    assert scope.fields == {"engine": "EchoEngine", "v": 1} and scope.tenant == "t1"
    other = SemanticCacheQueryEngine.wrap(inner, index, tenant="t1", scope_fields={"v": 2})
    assert cache_info(other.query(REFUND)) is None


def test_scope_fields_cannot_replace_what_the_engine_says_of_itself(
    index: SemanticIndex, vindex: VectorStoreIndex
) -> None:
    """``scope_fields={"index_id": ...}`` replaced the vector index's own id in the scope:
    two engines over different indexes given the same value shared answers."""
    for name in ("index_id", "engine", "similarity_top_k"):
        with pytest.raises(ValueError, match=name):
            SemanticCacheQueryEngine.from_index(
                vindex, index, llm=MockLLM(), scope_fields={name: "x"}
            )
    SemanticCacheQueryEngine.from_index(vindex, index, llm=MockLLM(), scope_fields={"app": "x"})


def test_builds_its_own_index(redis_url: str, vindex: VectorStoreIndex, namespace: str) -> None:
    engine = SemanticCacheQueryEngine.wrap(
        vindex.as_query_engine(llm=MockLLM()), redis_url=redis_url, namespace=namespace, ttl=60
    )
    try:
        assert engine.index.namespace == namespace
        engine.query(REFUND)
        assert cache_info(engine.query(REFUND)) is not None
    finally:
        engine.index.clear()
        engine.index.close()
    with pytest.raises(ValueError, match="either index="):
        SemanticCacheQueryEngine.wrap(vindex.as_query_engine(llm=MockLLM()), engine.index,
                                      namespace="x")


def test_a_bad_threshold_fails_at_construction(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    """Refused when the engine is built: before, every query logged "lookup failed" and
    was answered by the engine, so the cache silently never served."""
    for bad, error in ((1.5, ValueError), ("0.9", TypeError)):
        with pytest.raises(error, match="min_similarity"):
            SemanticCacheQueryEngine.from_index(vindex, index, min_similarity=bad, llm=MockLLM())
    engine = SemanticCacheQueryEngine.from_index(vindex, index, min_similarity=1, llm=MockLLM())
    assert engine.min_similarity == 1.0 and engine.for_tenant("t").min_similarity == 1.0


def test_from_index_builds_its_cache_where_told(
    redis_url: str, vindex: VectorStoreIndex, namespace: str
) -> None:
    """``redis_url``/``namespace`` go to the cache, as with the constructor and ``wrap``;
    before, ``as_query_engine`` swallowed them and the cache went to an embedded server's
    ``llama_index`` namespace. Other cache options there are refused, not ignored."""
    with pytest.raises(TypeError, match=r"\['max_error_rate', 'ttl'\].*cache_options"):
        SemanticCacheQueryEngine.from_index(vindex, llm=MockLLM(), ttl=60, max_error_rate=0.02)
    with pytest.raises(ValueError, match="namespace given both"):
        SemanticCacheQueryEngine.from_index(
            vindex, namespace="a", cache_options={"namespace": "b"}, llm=MockLLM()
        )
    engine = SemanticCacheQueryEngine.from_index(
        vindex, redis_url=redis_url, namespace=namespace, cache_options={"ttl": 60},
        llm=MockLLM(), similarity_top_k=2,
    )
    try:
        assert engine.index.namespace == namespace
        assert engine.index.redis_url == redis_url
        assert "namespace" not in engine.scope_for(QueryBundle(REFUND)).fields
        engine.query(REFUND)
        assert cache_info(engine.query(REFUND)) is not None
        assert engine.index.count() == 1
    finally:
        engine.index.clear()
        engine.index.close()


def test_a_deep_copy_shares_the_cache(index: SemanticIndex) -> None:
    """``copy.deepcopy`` of a CachedLLM (``model_copy(deep=True)``) raised on its cache's
    locks and model session; the copy now shares the cache."""
    import copy

    llm = CachedLLM(MockLLM(max_tokens=3), index)
    first = llm.complete("hello there").text
    clone = copy.deepcopy(llm)
    assert clone.index is index and llm.model_copy(deep=True).index is index
    assert clone.complete("hello there").text == first


def test_corrupt_entry_falls_back_to_the_engine(engine: SemanticCacheQueryEngine) -> None:
    scope = engine.scope_for(QueryBundle(REFUND))
    engine.index.store(REFUND, "not json", scope)
    answer = engine.query(REFUND)
    assert cache_info(answer) is None and "Refunds are issued" in str(answer)
    assert engine.index.stats().errors_by_kind.get("corrupt_entry") == 1
    assert cache_info(engine.query(REFUND)) is not None  # the engine's answer replaced it


def test_fail_open_when_redis_is_down(
    engine: SemanticCacheQueryEngine, redis_server: EmbeddedRedis
) -> None:
    engine.query(REFUND)
    redis_server.stop()
    try:
        for question in (REFUND_PARAPHRASE, PASSWORD, SUPPORT, PASSWORD):
            answer = engine.query(question)
            assert isinstance(answer, Response) and cache_info(answer) is None
            assert answer.response and answer.source_nodes
    finally:
        redis_server.start()

    def resumed() -> bool:
        engine.query(PASSWORD)
        return cache_info(engine.query(PASSWORD)) is not None

    assert eventually(resumed), "caching did not resume after Redis came back"
    assert engine.index.stats().errors >= 1


# --------------------------------------------------------------------------- CachedLLM


def test_cached_llm_complete_and_chat(index: SemanticIndex, collector: Collector) -> None:
    inner = SecretLLM()
    llm = CachedLLM(inner, index)
    assert llm.metadata.model_name == inner.metadata.model_name
    assert llm.metadata.is_function_calling_model is False

    first = llm.complete("Say hi")
    second = llm.complete("Say hi")
    assert first.text == second.text == "Say hi" and len(inner._calls) == 1
    assert second.additional_kwargs["paracache"]["layer"] == "exact"
    assert "paracache" not in first.additional_kwargs
    llm.complete("say hi")  # exact means exact: case is part of the prompt
    assert len(inner._calls) == 2

    messages = [ChatMessage(role="system", content="Be terse."), ChatMessage(content="Hi")]
    a = llm.chat(messages)
    b = llm.chat(messages)
    assert b.message.content == a.message.content and b.message.role == a.message.role
    assert len(inner._calls) == 3
    llm.chat([ChatMessage(role="system", content="Be verbose."), ChatMessage(content="Hi")])
    assert len(inner._calls) == 4  # a different system prompt is a different call

    hotter = CachedLLM(SecretLLM(temperature=0.7), index)
    hotter.complete("Say hi")
    assert len(hotter.llm._calls) == 1  # type: ignore[attr-defined]
    llm.complete("Say hi", temperature=0.5)  # a per-call setting is part of the key
    assert len(inner._calls) == 5
    sources = {e.source for e in collector.events if isinstance(e, (CacheHitEvent,
                                                                   CacheMissEvent))}
    assert sources == {"llm"}


class KwargsLLM(SecretLLM):
    """A MockLLM whose provider settings live in a dict, as LlamaIndex's OpenAI, Anthropic
    and Ollama LLMs keep ``additional_kwargs`` (HuggingFace: ``generate_kwargs``)."""

    additional_kwargs: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, additional_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.additional_kwargs = additional_kwargs


def test_cached_llm_scopes_the_llms_settings_dicts(index: SemanticIndex) -> None:
    narrow = CachedLLM(KwargsLLM({"top_p": 0.1, "api_key": SECRET}), index)
    wide = CachedLLM(KwargsLLM({"top_p": 0.9, "response_format": {"type": "json_object"}}),
                     index)
    narrow.complete("Say hi")
    wide.complete("Say hi")  # another top_p and response format: another scope, a miss
    assert len(wide.llm._calls) == 1  # type: ignore[attr-defined]
    same = CachedLLM(KwargsLLM({"api_key": "other", "top_p": 0.1}), index)
    same.complete("Say hi")  # the same settings (a secret is no setting): a hit
    assert len(same.llm._calls) == 0  # type: ignore[attr-defined]


def test_cached_llm_reads_sampling_params_from_additional_kwargs(index: SemanticIndex) -> None:
    hot = KwargsLLM({"temperature": 1.5, "top_p": 0.3})  # sent with the request, winning
    assert llm_scope(hot)[1] == {"temperature": 1.5, "top_p": 0.3}
    llm = CachedLLM(hot, index)
    llm.complete("Tell me a joke")
    llm.complete("Tell me a joke")  # hotter than max_temperature (1.0): never cached
    assert len(hot._calls) == 2 and index.stats().bypasses == 2


class EndpointLLM(SecretLLM):
    """A MockLLM sent to an OpenAI-compatible server (``api_base``, as LlamaIndex's OpenAI
    and OpenAILike LLMs keep it): two servers may serve different models as "mock-1"."""

    api_base: str = "https://api.openai.com/v1"

    def __init__(self, api_base: str) -> None:
        super().__init__()
        self.api_base = api_base


def test_cached_llm_scopes_the_llms_endpoint(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    a = CachedLLM(EndpointLLM("http://gpu-a.internal:8000/v1"), index)
    b = CachedLLM(EndpointLLM("http://gpu-b.internal:8000/v1"), index)
    a.complete("Say hi")
    b.complete("Say hi")  # the same model name on another server: never a's answer
    assert len(b.llm._calls) == 1  # type: ignore[attr-defined]
    a.chat([ChatMessage(content="Hi")])
    b.chat([ChatMessage(content="Hi")])
    assert len(b.llm._calls) == 2  # type: ignore[attr-defined]
    # The same server spelled another way (case of the host, default port, trailing
    # slash, user-info, query string): one scope, a hit.
    same = CachedLLM(EndpointLLM("HTTP://user:pw@GPU-A.internal:8000/v1/?api-key=x"), index)
    same.complete("Say hi")
    same.chat([ChatMessage(content="Hi")])
    assert len(same.llm._calls) == 0  # type: ignore[attr-defined]
    assert llm_scope(EndpointLLM("https://api.openai.com:443/v1/"))[2] == llm_scope(
        EndpointLLM("https://API.openai.com/v1"))[2]
    # ... and the query engine's LLM scope sees it too.
    scopes = {
        SemanticCacheQueryEngine.from_index(vindex, index, llm=llm)
        .scope_for(QueryBundle(REFUND)).digest()
        for llm in (a.llm, b.llm, same.llm)
    }
    assert len(scopes) == 2


def test_an_llm_without_an_endpoint_keeps_its_scope() -> None:
    """Pinned: a MockLLM's (no endpoint attribute) digest is the one it had before
    endpoints were scoped, so its entries stay valid."""
    assert llm_scope(MockLLM()) == ("MockLLM", {}, "006f9cc22fcdc60b9544eb2a0ad37db6")
    assert llm_scope(MockLLM(max_tokens=8))[2] == "f276fe2a4b3f16a314785e96f55e0445"


async def test_cached_llm_async(index: SemanticIndex) -> None:
    inner = SecretLLM()
    llm = CachedLLM(inner, index)
    first = await llm.acomplete("Name a colour")
    second = await llm.acomplete("Name a colour")
    assert first.text == second.text and len(inner._calls) == 1
    messages = [ChatMessage(content="Name a fruit")]
    a = await llm.achat(messages)
    b = await llm.achat(messages)
    assert a.message.content == b.message.content and len(inner._calls) == 2
    assert llm.complete("Name a colour").text == first.text  # sync sees async entries
    assert len(inner._calls) == 2


def test_cached_llm_streams_the_wrapped_llm_on_a_miss(index: SemanticIndex) -> None:
    inner = SecretLLM(max_tokens=3)
    llm = CachedLLM(inner, index)
    assert [r.delta for r in llm.stream_complete("x")] == ["text ", "text ", "text"]
    assert index.count() == 1  # stored once the stream ended cleanly


def test_cached_llm_as_settings_llm_and_synthesizer(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    inner = SecretLLM()
    cached = CachedLLM(inner, index)
    previous = Settings._llm
    try:
        Settings.llm = cached
        assert Settings.llm is cached
        engine = vindex.as_query_engine(similarity_top_k=2)  # picks up Settings.llm
        first = engine.query(REFUND)
        second = engine.query(REFUND)
        assert str(first) == str(second) and len(inner._calls) == 1
    finally:
        Settings._llm = previous
    assert llm_scope(cached) == llm_scope(inner)


def test_secrets_never_reach_redis(
    vindex: VectorStoreIndex, index: SemanticIndex, redis_url: str
) -> None:
    llm = SecretLLM()
    engine = SemanticCacheQueryEngine.from_index(vindex, index, llm=llm, similarity_top_k=2)
    engine.query(REFUND)
    engine.query(REFUND_PARAPHRASE)
    cached = CachedLLM(SecretLLM(), index)
    cached.complete("Say hi")
    cached.chat([ChatMessage(content="Hi")])
    values = namespace_values(index, redis_url)
    assert index.count() == 3 and values
    assert not [v for v in values if SECRET.encode() in v]
    assert llm.api_key == SECRET  # it was there to leak


def test_error_bound_labels_query_engine_misses(
    vindex: VectorStoreIndex, make_index: Any
) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.995)
    engine = SemanticCacheQueryEngine.from_index(vindex, index, llm=MockLLM(), similarity_top_k=2)
    assert index.learner is not None
    engine.query(PASSWORD)
    engine.query(PASSWORD_PARAPHRASE)  # a miss below the threshold: its response labels
    assert index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] == 1  # MockLLM echoes the prompt: the answers differ
    assert learning["wrong"] == 1


class FaqLLM(SecretLLM):
    """Answers by topic: the same text for every question about refunds."""

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._calls.append(prompt)
        last = prompt.lower().rsplit("user:", 1)[-1]
        return CompletionResponse(
            text="Refunds within 30 days." if "refund" in last else "Ask our support team."
        )


def test_cached_llm_error_bound(make_index: Any) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        CachedLLM(FaqLLM(), max_error_rate=1.5)
    with pytest.raises(ValueError, match="index"):  # the bound is the index's
        CachedLLM(FaqLLM(), make_index(), max_error_rate=0.02)
    index = make_index(max_error_rate=0.02, min_similarity=0.99, explore_rate=0)
    inner = FaqLLM()
    llm = CachedLLM(inner, index, max_error_rate=0.02)
    system = ChatMessage(role="system", content="Be terse.")
    llm.chat([system, ChatMessage(content="What is your refund policy?")])
    hit = llm.chat([system, ChatMessage(content="what's your refund policy")])
    assert len(inner._calls) == 1  # matched by meaning (cold: the static rules)
    assert hit.additional_kwargs["paracache"]["layer"] == "semantic"
    # earlier messages stay in the scope: another system prompt is another call
    llm.chat([ChatMessage(role="system", content="Be verbose."),
              ChatMessage(content="what's your refund policy")])  # fmt: skip
    assert len(inner._calls) == 2
    # a miss below the threshold is labelled with the fresh answer, judged as text
    llm.chat([system, ChatMessage(content="How does your refund policy work?")])
    assert len(inner._calls) == 3
    assert index.learner is not None and index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] >= 1 and learning["wrong"] == 0
    assert llm.complete("Tell me about refunds").text == "Refunds within 30 days."


# --------------------------------------------------------------------------- fail closed


def test_the_retriever_attributes_read_are_pinned(vindex: VectorStoreIndex) -> None:
    """The scope reads a VectorIndexRetriever's private attributes: if llama-index-core
    renames one, this fails (and a query whose filters cannot be read is not cached)."""
    from paracache.llama_index.query_engine import RETRIEVER_ATTRS

    filters = MetadataFilters(filters=[ExactMatchFilter(key="category", value="billing")])
    retriever = vindex.as_retriever(similarity_top_k=3, filters=filters, doc_ids=["d1"])
    names = vars(retriever)
    for name in (*RETRIEVER_ATTRS, "_node_ids", "_similarity_top_k", "_index"):
        assert name in names, name
    assert retriever._filters is filters and retriever._doc_ids == ["d1"]  # type: ignore[attr-defined]
    assert retriever._similarity_top_k == 3  # type: ignore[attr-defined]


class Opaque:
    """A filter value nothing can tell apart by its data."""


@pytest.mark.parametrize("broken", ["raises", "opaque"])
def test_unreadable_filters_are_never_cached(
    vindex: VectorStoreIndex, index: SemanticIndex, broken: str
) -> None:
    """Fail closed: a retriever whose filters cannot be read (the attribute raises) or
    fingerprinted (an object without data) is not cached, so one user's RAG answer is
    never served to a user with other filters."""
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.retrievers import VectorIndexRetriever

    class BrokenFilters(VectorIndexRetriever):
        @property  # type: ignore[override]
        def _filters(self) -> Any:
            if broken == "raises":
                raise RuntimeError("filters are resolved per request elsewhere")
            return Opaque()

        @_filters.setter
        def _filters(self, value: Any) -> None:
            pass

        def _build_vector_store_query(self, bundle: QueryBundle) -> Any:
            from llama_index.core.vector_stores import VectorStoreQuery

            # This retriever resolves its filters elsewhere: retrieval works regardless.
            return VectorStoreQuery(
                query_embedding=bundle.embedding,
                similarity_top_k=self._similarity_top_k,
                query_str=bundle.query_str,
            )

    retriever = BrokenFilters(vindex, similarity_top_k=2)
    inner = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    engine = SemanticCacheQueryEngine.wrap(inner, index)
    assert "Refunds" in str(engine.query(REFUND))
    again = engine.query(REFUND)
    assert cache_info(again) is None and "Refunds" in str(again)  # answered, not cached
    assert index.count() == 0 and index.stats().lookups == 0


def test_a_query_after_the_cache_was_closed_raises(engine: SemanticCacheQueryEngine) -> None:
    """A closed cache is a programming error, not Redis down: the engine says so
    instead of answering without it (its lookups were fail-open)."""
    from paracache import CacheClosedError

    engine.index.close()
    with pytest.raises(CacheClosedError, match="is closed"):
        engine.query(REFUND)
