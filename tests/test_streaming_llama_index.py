"""LlamaIndex streams through the cache: CachedLLM.stream_chat/astream_chat and streaming
query engines replay hits as several chunks, store only completed streams, and make one
call per burst of identical misses. Real Redis and embeddings; MockLLM is the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, CompletionResponseGen
from llama_index.core.llms import MockLLM
from pydantic import PrivateAttr

from paracache import SemanticIndex
from paracache.llama_index import CachedLLM, LlamaIndexEmbedding, SemanticCacheQueryEngine
from paracache.replay import replay_chunks


def _client(index: SemanticIndex) -> redis.Redis:
    return redis.Redis.from_url(index.redis_url)


QUESTION = [ChatMessage(role="user", content="How do I reset my password?")]


class CountingLLM(MockLLM):
    """MockLLM (streams its prompt back) counting its calls; an optional ``gate`` runs
    before answering, ``fail_on`` calls break after a few characters."""

    _calls: list[str] = PrivateAttr(default_factory=list)
    _gate: Callable[[], None] | None = PrivateAttr(default=None)
    _fail_on: set[int] = PrivateAttr(default_factory=set)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        self._calls.append(prompt)
        n = len(self._calls)
        if self._gate is not None:
            self._gate()
        for i, response in enumerate(super().stream_complete(prompt, formatted, **kwargs)):
            if i == 5 and n in self._fail_on:
                raise ConnectionError("the model's stream broke")
            yield response


def _gate_until(index: SemanticIndex, lookups: int) -> Callable[[], None]:
    def gate() -> None:
        deadline = time.monotonic() + 60
        while index.stats().lookups < lookups and time.monotonic() < deadline:
            time.sleep(0.005)

    return gate


def _in_threads(n: int, work: Callable[[], str]) -> list[str]:
    out: list[str] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        try:
            out.append(work())
        except ConnectionError:
            out.append("failed")

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


# ---------------------------------------------------------------- CachedLLM


def test_stream_chat_hit_is_replayed_as_deltas(index: SemanticIndex) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, index)
    first = list(llm.stream_chat(QUESTION))
    text = first[-1].message.content
    assert len(first) > 10 and "reset my password" in text and len(inner._calls) == 1
    assert index.count() == 1

    again = list(llm.stream_chat(QUESTION))
    assert len(inner._calls) == 1
    assert [r.delta for r in again] == replay_chunks(text) and len(again) > 3
    assert again[-1].message.content == text
    assert [r.message.content for r in again][1] == "".join(replay_chunks(text)[:2])
    assert again[0].additional_kwargs["paracache"]["layer"] == "exact"
    # A streamed answer serves chat(), and the other way round.
    assert llm.chat(QUESTION).message.content == text and len(inner._calls) == 1


async def test_astream_chat(index: SemanticIndex) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, index)
    first = [r async for r in await llm.astream_chat(QUESTION)]
    again = [r async for r in await llm.astream_chat(QUESTION)]
    assert len(inner._calls) == 1 and again[-1].message.content == first[-1].message.content
    assert [r.delta for r in again] == replay_chunks(first[-1].message.content or "")


def test_stream_complete_is_cached_like_complete(index: SemanticIndex) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, index)
    prompt = "Which documents do I need to open an account?"
    stream = llm.stream_complete(prompt)
    next(stream), next(stream)
    stream.close()  # abandoned: nothing stored
    assert index.count() == 0 and len(inner._calls) == 1
    first = list(llm.stream_complete(prompt))
    text = first[-1].text
    assert prompt in text and index.count() == 1 and len(inner._calls) == 2

    again = list(llm.stream_complete(prompt))
    assert len(inner._calls) == 2
    assert [r.delta for r in again] == replay_chunks(text) and len(again) > 3
    assert again[-1].text == text and again[1].text == "".join(replay_chunks(text)[:2])
    assert again[0].additional_kwargs["paracache"]["layer"] == "exact"
    # complete() and stream_complete() share their entries, but not chat's.
    assert llm.complete(prompt).text == text and len(inner._calls) == 2
    llm.stream_chat([ChatMessage(role="user", content=prompt)])
    other = list(llm.stream_chat([ChatMessage(role="user", content=prompt)]))
    assert len(inner._calls) == 3 and other[-1].message.content


async def test_astream_complete(index: SemanticIndex) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, index)
    prompt = "How long does a transfer take?"
    first = [r async for r in await llm.astream_complete(prompt)]
    again = [r async for r in await llm.astream_complete(prompt)]
    assert len(inner._calls) == 1 and again[-1].text == first[-1].text
    assert [r.delta for r in again] == replay_chunks(first[-1].text)


def test_stream_chat_stores_only_completed_streams(index: SemanticIndex) -> None:
    inner = CountingLLM()
    inner._fail_on = {2}
    llm = CachedLLM(inner, index)
    stream = llm.stream_chat(QUESTION)
    next(stream), next(stream)
    stream.close()  # abandoned
    assert index.count() == 0
    with pytest.raises(ConnectionError):
        list(llm.stream_chat(QUESTION))  # the second call breaks
    assert index.count() == 0
    assert list(llm.stream_chat(QUESTION))[-1].message.content
    assert index.count() == 1 and len(inner._calls) == 3


def test_stream_chat_eight_threads_one_call(index: SemanticIndex) -> None:
    inner = CountingLLM()
    inner._gate = _gate_until(index, 8)
    llm = CachedLLM(inner, index)
    out = _in_threads(8, lambda: "".join(r.delta or "" for r in llm.stream_chat(QUESTION)))
    assert len(set(out)) == 1 and "reset my password" in out[0]
    assert len(inner._calls) == 1


# ---------------------------------------------------------------- streaming query engines


@pytest.fixture(scope="module")
def vindex() -> VectorStoreIndex:
    docs = [
        Document(text="To reset your password, click 'Forgot password' on the login page."),
        Document(text="Refunds are issued within 30 days of purchase."),
    ]
    return VectorStoreIndex.from_documents(docs, embed_model=LlamaIndexEmbedding())


def test_streaming_engine_hit_chunks_and_single_flight(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    llm = CountingLLM()
    llm._gate = _gate_until(index, 8)
    engine = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=llm, similarity_top_k=1, streaming=True
    )

    def ask() -> str:
        return "".join(engine.query("How do I reset my password?").response_gen)

    answers = _in_threads(8, ask)
    assert len(set(answers)) == 1 and "Forgot password" in answers[0]
    assert len(llm._calls) == 1

    hit = engine.query("How can I reset my password?")
    chunks = list(hit.response_gen)
    assert "".join(chunks) == answers[0] and chunks == replay_chunks(answers[0])
    assert len(chunks) > 3 and hit.metadata["paracache"]["layer"] == "semantic"
    assert len(llm._calls) == 1


def test_abandoned_engine_stream_is_not_stored(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    llm = CountingLLM()
    engine = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=llm, similarity_top_k=1, streaming=True
    )
    gen = engine.query("What is the refund window?").response_gen
    next(gen)
    gen.close()
    assert index.count() == 0
    assert "".join(engine.query("What is the refund window?").response_gen)
    assert index.count() == 1 and len(llm._calls) == 2


def test_an_engine_stream_never_read_releases_its_flight(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    """A streaming answer the caller drops without reading it: its generator never
    started, so it never settled the flight, and identical queries waited ``wait``
    seconds (30) on it. Dropped, it gives the flight up."""
    import gc

    engine = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=CountingLLM(), similarity_top_k=1, streaming=True
    )
    response = engine.query("What is the refund window?")
    assert engine._flights.in_flight() == 1  # the stream settles it once read
    del response
    gc.collect()
    locks = index.layout.namespace_prefix + "flight:*"
    for _ in range(500):  # settled on a thread of its own (see settle_when_dropped)
        if not engine._flights.in_flight() and not list(_client(index).scan_iter(locks)):
            break
        time.sleep(0.01)
    assert engine._flights.in_flight() == 0
    # and its Redis lock released: other processes' identical queries do not wait on it
    assert list(_client(index).scan_iter(locks)) == []
    t0 = time.monotonic()
    again = engine.query("What is the refund window?")  # leads at once, waits on nobody
    assert "".join(again.response_gen) and time.monotonic() - t0 < 10
    assert index.count() == 1 and engine._flights.in_flight() == 0


def test_a_failing_llm_call_releases_its_flight(index: SemanticIndex) -> None:
    class Down(CountingLLM):
        def chat(self, messages: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the model is down")

    llm = CachedLLM(Down(), index)
    with pytest.raises(ConnectionError):
        llm.chat(QUESTION)
    assert llm._flights.in_flight() == 0 and index.count() == 0


async def test_cancelled_astream_chat_stores_nothing(index: SemanticIndex) -> None:
    import asyncio

    started = asyncio.Event()

    class Slow(CountingLLM):
        async def astream_chat(self, messages: Any, **kw: Any) -> Any:
            async def gen() -> Any:
                for i, response in enumerate(self.stream_chat(messages)):
                    if i == 3:
                        started.set()
                        await asyncio.sleep(30)
                    yield response

            return gen()

    llm = CachedLLM(Slow(), index)

    async def consume() -> None:
        async for _ in await llm.astream_chat(QUESTION):
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await index.acount() == 0
    assert llm._flights.in_flight() == 0  # given up: nobody waits on it


async def test_stream_complete_with_the_error_bound_is_cached_like_complete(
    make_index: Any,
) -> None:
    """With ``max_error_rate`` a completion is matched by meaning: its stream twins use the
    same key (they used ``complete``'s exact key, another scope per prompt: the answer
    ``complete`` stored was not served to ``stream_complete``, no paraphrase was ever
    served to a stream, and each prompt got a statistics record of its own)."""
    index = make_index(max_error_rate=0.02, explore_rate=0)
    inner = CountingLLM()
    llm = CachedLLM(inner, index, max_error_rate=0.02)
    prompt = "How do I activate my new card?"
    text = llm.complete(prompt).text  # MockLLM.complete does not count as a stream call
    again = list(llm.stream_complete(prompt))
    assert not inner._calls and again[-1].text == text
    assert again[0].additional_kwargs["paracache"]["layer"] == "exact"
    near = list(llm.stream_complete("how can I activate my new card"))
    assert not inner._calls and near[-1].text == text
    assert near[0].additional_kwargs["paracache"]["layer"] == "semantic"
    anear = [r async for r in await llm.astream_complete("How can I activate my new card?")]
    assert not inner._calls and anear[-1].text == text
    streamed = list(llm.stream_complete("Which documents do I need to open an account?"))
    assert len(inner._calls) == 1
    assert llm.complete("Which documents do I need to open an account?").text == streamed[-1].text
    assert index.learner is not None and index.learner.wait_idle(30)
    records = list(_client(index).scan_iter(match=f"paracache:{index.namespace}:*:q:*"))
    assert len(records) == 1  # one scope: completions of this LLM


async def test_an_async_engine_stream_never_read_releases_its_flight(
    vindex: VectorStoreIndex, index: SemanticIndex
) -> None:
    import gc

    engine = SemanticCacheQueryEngine.from_index(
        vindex, index, llm=CountingLLM(), similarity_top_k=1, streaming=True
    )
    unread = await engine.aquery("What is the refund window?")
    assert engine._flights.in_flight() == 1
    del unread
    gc.collect()
    assert engine._flights.in_flight() == 0
