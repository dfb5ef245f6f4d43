"""CachedChatModel: streamed hits, clean-only stores, tool calls, single-flight (LangChain).

Real embedded Redis, real embeddings; only the chat models are fakes (langchain-core's
GenericFakeChatModel, which streams word by word, with a call counter)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from pydantic import BaseModel

from paracache import SemanticIndex
from paracache.langchain import CachedChatModel, SemanticCache
from paracache.replay import replay_chunks
from paracache.singleflight import SingleFlight

ANSWER = "Refunds are possible within 30 days of purchase, with the receipt.\nThanks!"


class CountingModel(GenericFakeChatModel):
    """GenericFakeChatModel answering ``answer(n)`` on its n-th call (streamed word by
    word), counting calls; ``gate`` (if set) runs before answering, ``fail`` raises
    after the first words of a stream."""

    messages: Iterator[AIMessage | str] = iter(())
    answer: Callable[[int], str | AIMessage] = lambda n: ANSWER
    gate: Callable[[], None] | None = None
    fail_on: frozenset[int] = frozenset()
    calls: int = 0

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        n = self.calls
        if self.gate is not None:
            self.gate()
        self.messages = iter([self.answer(n)])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kw)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        for i, chunk in enumerate(super()._stream(messages, stop, run_manager, **kw)):
            if i == 3 and self.calls in self.fail_on:
                raise ConnectionError("the model's stream broke")
            yield chunk

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


class ATokens(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


@pytest.fixture
def lc_cache(make_index: Any) -> SemanticCache:
    return SemanticCache(make_index())


def _text(chunks: list[Any]) -> str:
    return "".join(c.content for c in chunks)


# ---------------------------------------------------------------- streamed hits


def test_streamed_miss_then_streamed_hit_replays_words(lc_cache: SemanticCache) -> None:
    model = CountingModel()
    chat = CachedChatModel(llm=model, cache=lc_cache)
    first = list(chat.stream("What is your refund policy?"))
    assert _text(first) == ANSWER and len(first) > 5 and model.calls == 1
    assert "paracache" not in first[0].response_metadata  # a miss is not marked cached

    handler = Tokens()
    again = list(chat.stream("What's your refund policy?", config={"callbacks": [handler]}))
    assert model.calls == 1
    words = [c.content for c in again if c.content]
    assert "".join(words) == ANSWER and words == replay_chunks(ANSWER) and len(words) > 5
    assert [t for t in handler.tokens if t] == words  # on_llm_new_token per replayed chunk
    meta = again[0].response_metadata["paracache"]
    assert meta["cached"] is True and meta["layer"] == "semantic" and 0.9 < meta["similarity"] < 1
    assert again[-1].chunk_position == "last"
    assert lc_cache.index.count() == 1


async def test_astream_hit_and_callbacks(lc_cache: SemanticCache) -> None:
    model = CountingModel()
    chat = CachedChatModel(llm=model, cache=lc_cache)
    assert _text([c async for c in chat.astream("How do I freeze my card?")]) == ANSWER
    handler = ATokens()
    chunks = [
        c async for c in chat.astream("How do I freeze my card?", config={"callbacks": [handler]})
    ]
    assert model.calls == 1 and _text(chunks) == ANSWER
    assert chunks[0].response_metadata["paracache"]["layer"] == "exact"
    assert [t for t in handler.tokens if t] == replay_chunks(ANSWER)


def test_invoke_and_cache_kwarg_share_entries(lc_cache: SemanticCache) -> None:
    wrapped = CountingModel()
    chat = CachedChatModel(llm=wrapped, cache=lc_cache)
    plain = CountingModel(cache=lc_cache)  # today's cache= path, same model settings

    assert chat.invoke("Do you ship abroad?").content == ANSWER and wrapped.calls == 1
    hit = plain.invoke("Do you ship abroad?")
    assert hit.content == ANSWER and plain.calls == 0  # stored by the wrapper, hit via cache=

    plain.answer = lambda n: "We open at 9 am."
    assert plain.invoke("When do you open?").content == "We open at 9 am." and plain.calls == 1
    streamed = list(chat.stream("When do you open?"))  # stored via cache=, streamed hit
    assert _text(streamed) == "We open at 9 am." and wrapped.calls == 1
    m = chat.invoke("when do you open")
    assert m.response_metadata["paracache"]["layer"] == "exact" and wrapped.calls == 1

    batch = chat.batch(["Do you ship abroad?", "When do you open?", "Is there a fee?"])
    assert [m.content for m in batch] == [ANSWER, "We open at 9 am.", ANSWER]
    assert wrapped.calls == 2


def test_wrapper_checks_its_arguments(lc_cache: SemanticCache) -> None:
    with pytest.raises(TypeError, match="SemanticCache"):
        CachedChatModel(llm=CountingModel(), cache=object())
    with pytest.raises(ValueError, match="pace"):
        CachedChatModel(llm=CountingModel(), cache=lc_cache, pace=-1)
    chat = CachedChatModel(llm=CountingModel(), semantic_cache=lc_cache, pace=0.001)
    assert chat.cache is False and chat.semantic_cache is lc_cache
    list(chat.stream("Pace me"))
    assert _text(list(chat.stream("Pace me"))) == ANSWER


# ---------------------------------------------------------------- never a partial answer


def test_abandoned_stream_is_not_stored(lc_cache: SemanticCache) -> None:
    model = CountingModel()
    chat = CachedChatModel(llm=model, cache=lc_cache)
    stream = chat.stream("Can I change my delivery address?")
    got = [next(stream) for _ in range(3)]
    stream.close()
    assert _text(got) and _text(got) != ANSWER
    assert lc_cache.index.count() == 0
    assert _text(list(chat.stream("Can I change my delivery address?"))) == ANSWER
    assert model.calls == 2 and lc_cache.index.count() == 1


def test_failing_stream_is_not_stored(lc_cache: SemanticCache) -> None:
    model = CountingModel(fail_on=frozenset({1}))
    chat = CachedChatModel(llm=model, cache=lc_cache)
    got: list[Any] = []
    with pytest.raises(ConnectionError):
        for chunk in chat.stream("Why was my card declined?"):
            got.append(chunk)
    assert got and lc_cache.index.count() == 0
    assert chat.invoke("Why was my card declined?").content == ANSWER
    assert model.calls == 2 and lc_cache.index.count() == 1


async def test_cancelled_astream_is_not_stored(lc_cache: SemanticCache) -> None:
    started = asyncio.Event()

    class Slow(CountingModel):
        async def _astream(self, *args: Any, **kwargs: Any) -> Any:
            for i, chunk in enumerate(self._stream(*args, **kwargs)):
                if i == 2:
                    started.set()
                    await asyncio.sleep(30)
                yield chunk

    model = Slow()
    chat = CachedChatModel(llm=model, cache=lc_cache)

    async def consume() -> str:
        return _text([c async for c in chat.astream("Where is my parcel?")])

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await lc_cache.index.acount() == 0
    assert lc_cache.flights.in_flight() == 0  # the flight was given up, nobody waits on it


def test_a_failing_invoke_releases_the_flight(lc_cache: SemanticCache) -> None:
    def down() -> None:
        raise ConnectionError("the model is down")

    chat = CachedChatModel(llm=CountingModel(gate=down), cache=lc_cache)
    with pytest.raises(ConnectionError):
        chat.invoke("Is my transfer delayed?")
    assert lc_cache.flights.in_flight() == 0 and lc_cache.index.count() == 0
    with lc_cache.flight("p", "s", join=False) as claim:  # nothing to claim
        assert not claim.leader and lc_cache.flights.in_flight() == 0


async def test_a_cancelled_ainvoke_releases_the_flight(
    lc_cache: SemanticCache, redis_url: str
) -> None:
    started = asyncio.Event()

    class Slow(CountingModel):
        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            started.set()
            await asyncio.sleep(30)
            return self._generate(*args, **kwargs)

    chat = CachedChatModel(llm=Slow(), cache=lc_cache)
    task = asyncio.create_task(chat.ainvoke("Is my transfer delayed?"))
    await asyncio.wait_for(started.wait(), 30)
    assert lc_cache.flights.in_flight() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lc_cache.flights.in_flight() == 0  # given up at once, nobody waits on it
    client = redis.Redis.from_url(redis_url)
    try:
        prefix = lc_cache.index.layout.namespace_prefix + "flight:*"
        assert list(client.scan_iter(match=prefix)) == []  # its Redis lock released too
    finally:
        client.close()


# ---------------------------------------------------------------- tools, structured output


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


class ToolStreamModel(CountingModel):
    """Streams a tool call the way providers do: name first, the arguments in pieces."""

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.calls += 1
        args = json.dumps({"city": "Paris"})
        yield ChatGenerationChunk(message=AIMessageChunk(content="Let me check. "))
        parts = [args[:5], args[5:12], args[12:]]
        for i, part in enumerate(parts):
            call = {"name": "get_weather" if i == 0 else None, "args": part,
                    "id": "call_1" if i == 0 else None, "index": 0}
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[call]))


def test_streamed_tool_call_is_aggregated_and_replayed(lc_cache: SemanticCache) -> None:
    model = ToolStreamModel()
    chat = CachedChatModel(llm=model, cache=lc_cache).bind_tools([get_weather])
    first = list(chat.stream("What's the weather in Paris?"))
    merged = first[0]
    for c in first[1:]:
        merged = merged + c
    assert merged.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
    ]
    again = list(chat.stream("What's the weather in Paris?"))
    assert model.calls == 1
    replayed = again[0]
    for c in again[1:]:
        replayed = replayed + c
    assert replayed.tool_calls == merged.tool_calls and replayed.content == "Let me check. "
    invoked = chat.invoke("What's the weather in Paris?")
    assert invoked.tool_calls == merged.tool_calls and model.calls == 1
    # Without the tools bound it is another scope: no hit.
    plain = CachedChatModel(llm=model, cache=lc_cache)
    list(plain.stream("What's the weather in Paris?"))
    assert model.calls == 2


class Answer(BaseModel):
    days: int


def test_with_structured_output_through_the_wrapper(lc_cache: SemanticCache) -> None:
    def tool_answer(n: int) -> AIMessage:
        return AIMessage(
            content="", tool_calls=[{"name": "Answer", "args": {"days": 30 + n}, "id": f"c{n}"}]
        )

    model = CountingModel(answer=tool_answer)
    structured = CachedChatModel(llm=model, cache=lc_cache).with_structured_output(Answer)
    assert structured.invoke("How many days for a refund?") == Answer(days=31)
    assert structured.invoke("How many days do I have for a refund?") == Answer(days=31)
    assert model.calls == 1


# ---------------------------------------------------------------- single-flight


def _gate_until(index: SemanticIndex, lookups: int) -> Callable[[], None]:
    """Hold the model call until ``lookups`` lookups were made (all callers missed)."""

    def gate() -> None:
        deadline = time.monotonic() + 60
        while index.stats().lookups < lookups and time.monotonic() < deadline:
            time.sleep(0.005)

    return gate


def test_eight_threads_one_model_call(lc_cache: SemanticCache) -> None:
    model = CountingModel(gate=_gate_until(lc_cache.index, 8))
    chat = CachedChatModel(llm=model, cache=lc_cache)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def ask(i: int) -> None:
        barrier.wait()
        if i % 2:
            results.append(chat.invoke("How long does a transfer take?").text)
        else:
            results.append(_text(list(chat.stream("How long does a transfer take?"))))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [ANSWER] * 8
    assert model.calls == 1
    assert lc_cache.index.stats().coalesced == 7  # the calls saved are counted


async def test_eight_tasks_one_model_call(lc_cache: SemanticCache) -> None:
    model = CountingModel()
    release = asyncio.Event()

    class Held(CountingModel):
        async def _astream(self, *args: Any, **kwargs: Any) -> Any:
            await release.wait()
            for chunk in self._stream(*args, **kwargs):
                yield chunk

    model = Held()
    chat = CachedChatModel(llm=model, cache=lc_cache)

    async def ask() -> str:
        return _text([c async for c in chat.astream("Can I pay with PayPal?")])

    tasks = [asyncio.create_task(ask()) for _ in range(8)]
    deadline = time.monotonic() + 60
    while lc_cache.index.stats().lookups < 8 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*tasks) == [ANSWER] * 8
    assert model.calls == 1
    assert lc_cache.index.stats().coalesced == 7


def test_waiters_elect_a_new_leader_when_the_first_fails(lc_cache: SemanticCache) -> None:
    model = CountingModel(fail_on=frozenset({1}), gate=_gate_until(lc_cache.index, 4))
    chat = CachedChatModel(llm=model, cache=lc_cache)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        barrier.wait()
        try:
            outcomes.append(_text(list(chat.stream("Is my account blocked?"))))
        except ConnectionError:
            outcomes.append("failed")

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(outcomes) == [ANSWER] * 3 + ["failed"]
    assert model.calls == 2 and lc_cache.index.count() == 1


def test_waiting_is_bounded(lc_cache: SemanticCache) -> None:
    release = threading.Event()
    lc_cache.flights = SingleFlight(lc_cache.index, wait=0.2)
    model = CountingModel(gate=lambda: release.wait(60))
    chat = CachedChatModel(llm=model, cache=lc_cache)
    leader = threading.Thread(target=chat.invoke, args=("Close my account",))
    leader.start()
    deadline = time.monotonic() + 60
    while model.calls < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    model.gate = None
    # The leader is stuck: after `wait` this caller asks the model itself.
    assert chat.invoke("Close my account").content == ANSWER
    assert model.calls == 2
    release.set()
    leader.join(60)


def test_redis_down_everyone_calls_the_model(make_index: Any, redis_server: Any) -> None:
    index = make_index(timeout=0.2)
    cache = SemanticCache(index)
    model = CountingModel()
    chat = CachedChatModel(llm=model, cache=cache)
    redis_server.stop()
    try:
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(chat.invoke("Hello?").text))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == [ANSWER] * 4 and model.calls == 4
        assert _text(list(chat.stream("Hello?"))) == ANSWER and model.calls == 5
    finally:
        redis_server.start()


def _process_asks(url: str, namespace: str, barrier: Any, calls: Any, out: Any) -> None:
    """One process of the cross-process test: its own index, model and flights."""
    index = SemanticIndex(url, namespace=namespace, timeout=1.0)
    index.lookup("warm up the embedder")
    model = CountingModel(gate=lambda: time.sleep(1.0))
    chat = CachedChatModel(llm=model, cache=SemanticCache(index))
    barrier.wait(120)
    text = chat.invoke("Which documents do I need to open an account?").text
    with calls.get_lock():
        calls.value += model.calls
    out.put(text)
    index.close()


def test_two_processes_one_model_call(redis_url: str, namespace: str, make_index: Any) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, calls, out = ctx.Barrier(2), ctx.Value("i", 0), ctx.Queue()
    procs = [
        ctx.Process(target=_process_asks, args=(redis_url, namespace, barrier, calls, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    answers = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert answers == [ANSWER, ANSWER] and calls.value == 1
    make_index()  # cleans the namespace up afterwards


def test_a_stream_dropped_or_closed_early_holds_no_flight_lock(lc_cache: SemanticCache) -> None:
    """The single-flight claim of a streamed miss is taken on the first chunk (a stream
    created and dropped unread claims nothing) and released when the stream is closed
    after its first chunk: other processes asking the same never wait on it."""
    import gc

    chat = CachedChatModel(llm=CountingModel(), cache=lc_cache)
    client = redis.Redis.from_url(lc_cache.index.redis_url)
    pattern = lc_cache.index.layout.namespace_prefix + "flight:*"
    unread = chat.stream("Can I change my delivery address?")
    del unread
    gc.collect()
    assert list(client.scan_iter(pattern)) == []
    stream = chat.stream("Can I change my delivery address?")
    next(stream)
    assert len(list(client.scan_iter(pattern))) == 1  # held while the model streams
    stream.close()
    assert list(client.scan_iter(pattern)) == []
    client.close()
