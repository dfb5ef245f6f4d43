"""Conversation memory on the real embedded Redis: the framework-free SessionStore, the
LangChain history (with RunnableWithMessageHistory), the LlamaIndex chat store (with
ChatMemoryBuffer), context windows with cached summaries, TTLs, tenants, hostile session
ids, threads, tasks, corrupt records and a server killed mid-conversation."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.llms import MockLLM
from llama_index.core.memory import ChatMemoryBuffer

from paracache.embedded import EmbeddedRedis
from paracache.history import RedisChatMessageHistory
from paracache.limiter import Limit, RateLimiter, RateLimitExceeded
from paracache.llama_index import CachedLLM, RateLimitedLLM, RedisChatStore
from paracache.sessions import SessionError, SessionStore, StoredMessage


@pytest.fixture
def ns() -> str:
    return "h-" + uuid.uuid4().hex[:10]


@pytest.fixture
def make_store(redis_url: str, ns: str) -> Iterator[Any]:
    made: list[SessionStore] = []

    def build(**options: Any) -> SessionStore:
        options.setdefault("namespace", ns)
        options.setdefault("timeout", 5.0)
        store = SessionStore(redis_url=redis_url, **options)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _history(store: SessionStore, session_id: str = "s1") -> RedisChatMessageHistory:
    return RedisChatMessageHistory(session_id, store=store)


# --------------------------------------------------------------------------- LangChain


def test_messages_round_trip_with_blocks_and_tool_calls(make_store: Any) -> None:
    history = _history(make_store())
    sent: list[BaseMessage] = [
        SystemMessage("You are terse."),
        HumanMessage(content=[{"type": "text", "text": "What is in this picture?"},
                              {"type": "image_url",
                               "image_url": {"url": "data:image/png;base64,AA=="}}]),
        AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"q": "cat"}, "id": "call_1"}],
                  usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}),
        ToolMessage("a cat", tool_call_id="call_1"),
        AIMessage("A cat.", id="msg-9", response_metadata={"model": "m"}),
    ]
    history.add_messages(sent)
    got = history.messages
    assert got == sent
    assert got[2].tool_calls[0]["args"] == {"q": "cat"}  # type: ignore[attr-defined]
    stored = history.stored()
    assert all(isinstance(m, StoredMessage) and m.tokens > 0 and m.timestamp > 0 for m in stored)
    history.clear()
    assert history.messages == []


def test_runnable_with_message_history_keeps_the_conversation(make_store: Any) -> None:
    store = make_store(ttl=3600)
    seen: list[list[BaseMessage]] = []

    def fake_model(prompt: Any) -> AIMessage:  # the LLM is the only fake
        messages = prompt.to_messages()
        seen.append(messages)
        return AIMessage(f"reply {len(messages)}")

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    chain = RunnableWithMessageHistory(
        prompt | RunnableLambda(fake_model),
        lambda session_id: RedisChatMessageHistory(session_id, store=store),
        input_messages_key="question",
        history_messages_key="history",
    )
    config: Any = {"configurable": {"session_id": "user-1"}}
    assert chain.invoke({"question": "Hi, I am Ada."}, config=config).content == "reply 2"
    assert chain.invoke({"question": "Who am I?"}, config=config).content == "reply 4"
    assert [m.content for m in seen[1][1:3]] == ["Hi, I am Ada.", "reply 2"]
    # Another process (a fresh history object) sees the same conversation.
    assert len(RedisChatMessageHistory("user-1", store=store).messages) == 4
    assert RedisChatMessageHistory("user-2", store=store).messages == []


async def test_async_history_and_runnable(make_store: Any) -> None:
    store = make_store()
    history = _history(store, "async-1")
    await history.aadd_messages([HumanMessage("a"), AIMessage("b")])
    assert [m.content for m in await history.aget_messages()] == ["a", "b"]
    results = await asyncio.gather(
        *(_history(store, f"task-{i}").aadd_messages([HumanMessage(str(i))]) for i in range(20))
    )
    assert results == [None] * 20
    for i in range(20):
        assert [m.content for m in await _history(store, f"task-{i}").aget_messages()] == [str(i)]
    await history.aclear()
    assert await history.aget_messages() == []
    await store.aclose()


def test_threads_append_to_one_conversation(make_store: Any) -> None:
    store = make_store()

    def work(n: int) -> None:
        history = _history(store, "shared")
        for i in range(10):
            history.add_messages([HumanMessage(f"{n}-{i}")])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    contents = [m.content for m in _history(store, "shared").messages]
    assert sorted(contents) == sorted(f"{n}-{i}" for n in range(8) for i in range(10))
    for n in range(8):  # each thread's messages stay in its order
        mine = [c for c in contents if isinstance(c, str) and c.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(10)]


def test_ttl_is_renewed_by_activity(make_store: Any, raw: redis.Redis) -> None:
    store = make_store(ttl=1000)
    history = _history(store, "ttl")
    history.add_messages([HumanMessage("hello")])
    _, key, _ = store._ids("ttl")
    assert 990_000 < raw.pttl(key) <= 1_000_000
    raw.pexpire(key, 5000)
    assert history.messages  # a read renews it
    assert raw.pttl(key) > 900_000
    untimed = make_store()
    _history(untimed, "forever").add_messages([HumanMessage("x")])
    assert raw.pttl(untimed._ids("forever")[1]) == -1


def test_tenants_never_see_each_other(make_store: Any) -> None:
    acme, globex = make_store(tenant="acme"), make_store(tenant="globex")
    _history(acme, "chat").add_messages([HumanMessage("acme secret")])
    assert _history(globex, "chat").messages == []
    _history(globex, "chat").add_messages([HumanMessage("globex")])
    assert [m.content for m in _history(acme, "chat").messages] == ["acme secret"]
    assert acme.sessions() == ["chat"] and globex.sessions() == ["chat"]
    _history(globex, "chat").clear()
    assert globex.sessions() == [] and acme.sessions() == ["chat"]


HOSTILE = [
    "*", "chat:*", "[a-z]?", "{tenant}", "@tenant:{acme} | *", "]]..redis.call('FLUSHALL')--",
    "\x00\r\n", "\udcff", "s" * (1 << 20),
]  # "" is refused (test_an_empty_session_id_is_refused_everywhere)


def test_hostile_session_ids_and_tenants_are_data(
    make_store: Any, raw: redis.Redis, ns: str
) -> None:
    store = make_store(tenant="*} | @x:{*")
    for i, session in enumerate(HOSTILE):
        _history(store, session).add_messages([HumanMessage(f"m{i}")])
    for i, session in enumerate(HOSTILE):
        assert [m.content for m in _history(store, session).messages] == [f"m{i}"]
    assert sorted(store.sessions()) == sorted(HOSTILE)
    keys = {k.decode() for k in raw.scan_iter(match=f"paracache:_chat:{ns}:*", count=1000)}
    assert len(keys) == len(HOSTILE) + 1  # the lists and the tenant's session registry
    assert all(len(k) < 120 and "*" not in k and "{" not in k for k in keys)
    assert not list(raw.scan_iter(match=f"paracache:{ns}:*"))  # a cache's clear() spares them
    other = make_store(tenant="*")
    assert all(_history(other, s).messages == [] for s in HOSTILE[:3])


def test_corrupt_records_are_skipped_and_counted(make_store: Any, raw: redis.Redis) -> None:
    store = make_store()
    history = _history(store, "c")
    history.add_messages([HumanMessage("one")])
    key = store._ids("c")[1]
    raw.rpush(key, b"not json", b'{"v": 1, "ts": 1, "tok": 1, "m": {"type": "alien"}}',
              b'{"v": 99}', b"\xff\xfe")
    history.add_messages([HumanMessage("two")])
    assert [m.content for m in history.messages] == ["one", "two"]
    assert store.stats().corrupt >= 3


def test_redis_killed_mid_conversation(caplog: pytest.LogCaptureFixture, ns: str) -> None:
    server = EmbeddedRedis().start()
    opened = SessionStore(redis_url=server.url, namespace=ns, timeout=1.0)
    closed = SessionStore(redis_url=server.url, namespace=ns, timeout=1.0, fail_open=False)
    try:
        history = _history(opened, "k")
        history.add_messages([HumanMessage("before")])
        server.kill()
        with caplog.at_level(logging.WARNING, logger="paracache"):
            assert history.messages == []  # the chat goes on, not silently:
            history.add_messages([HumanMessage("during")])  # dropped
        assert "conversation read failed" in caplog.text
        assert "conversation write failed" in caplog.text
        assert opened.stats().errors >= 2
        with pytest.raises(SessionError) as failed:
            _history(closed, "k").messages  # noqa: B018
        assert failed.value.kind == "unavailable"  # CacheError.kind: how Redis failed
        with pytest.raises(SessionError):
            _history(closed, "k").add_messages([HumanMessage("x")])
        server.start()
        # The embedded server keeps nothing across a kill; the store works again.
        deadline = 100
        while deadline and not history.store.append("k", [{"type": "human"}], [1]):
            deadline -= 1
            threading.Event().wait(0.1)
        assert deadline, "the store did not recover"
    finally:
        opened.close()
        closed.close()
        server.close()


def test_bad_arguments(make_store: Any) -> None:
    with pytest.raises(TypeError):
        RedisChatMessageHistory(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SessionStore(namespace="bad ns")
    with pytest.raises(ValueError):
        SessionStore(ttl=0)
    with pytest.raises(TypeError):
        SessionStore(tenant=None)  # type: ignore[arg-type]
    store = make_store()
    with pytest.raises(TypeError):
        store.append("s", [{"x": object()}], [1])
    with pytest.raises(ValueError):
        store.append("s", [{"x": 1}], [])
    with pytest.raises(TypeError):
        _history(store).add_messages(["not a message"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        store.window("s", -1)
    assert store.read("s") == []  # nothing was written by the refused calls


# --------------------------------------------------------------------------- windows


def test_window_fits_the_budget_and_reuses_segment_summaries(make_store: Any) -> None:
    store = make_store(segment=4)
    history = RedisChatMessageHistory("w", store=store, token_counter=lambda m: 10)
    history.add_messages([HumanMessage(f"m{i}") for i in range(20)])
    calls: list[list[str]] = []

    def summarize(messages: list[BaseMessage]) -> str:
        calls.append([str(m.content) for m in messages])
        return f"[{messages[0].content}..{messages[-1].content}]"

    window = history.window(55, summarize)  # 5 messages fit; the cut rounds to 16
    assert isinstance(window[0], SystemMessage)
    assert "[m0..m3]" in str(window[0].content) and "[m12..m15]" in str(window[0].content)
    assert [m.content for m in window[1:]] == ["m16", "m17", "m18", "m19"]
    assert len(calls) == 4 and store.stats().summaries_computed == 4
    history.window(55, summarize)
    assert len(calls) == 4 and store.stats().summaries_reused == 4  # stored, reused
    history.add_messages([HumanMessage("m20")])
    history.window(55, summarize)
    assert len(calls) == 4  # m16..m20 fit: no new older segment, nothing recomputed
    history.add_messages([HumanMessage("m21"), HumanMessage("m22")])
    history.window(55, summarize)
    assert calls[-1] == ["m16", "m17", "m18", "m19"] and len(calls) == 5  # one new segment
    # Older messages change: only the changed segment is summarised again.
    messages = history.messages
    messages[1] = HumanMessage("edited")
    store.replace("w", *history._encode(messages))
    history.window(55, summarize)
    assert calls[-1] == ["m0", "edited", "m2", "m3"] and len(calls) == 6
    # Without a summariser: just the newest that fit.
    assert [m.content for m in history.window(30)] == ["m20", "m21", "m22"]
    assert store.window("w", 10**6).summarized == 0


async def test_async_window_with_an_async_summariser(make_store: Any) -> None:
    store = make_store(segment=2)
    history = RedisChatMessageHistory("aw", store=store, token_counter=lambda m: 1)
    await history.aadd_messages([HumanMessage(f"m{i}") for i in range(6)])

    async def summarize(messages: list[BaseMessage]) -> str:
        await asyncio.sleep(0)
        return "+".join(str(m.content) for m in messages)

    window = await history.awindow(2, summarize)
    assert window[0].content.endswith("m0+m1\nm2+m3")  # type: ignore[union-attr]
    assert [m.content for m in window[1:]] == ["m4", "m5"]
    fresh = RedisChatMessageHistory("aw-sync", store=store, token_counter=lambda m: 1)
    fresh.add_messages([HumanMessage(f"m{i}") for i in range(6)])
    with pytest.raises(TypeError):
        fresh.window(2, summarize)  # an async summariser needs the async call
    await store.aclose()


# --------------------------------------------------------------------------- LlamaIndex


def test_llama_index_chat_store_with_memory_buffer(redis_url: str, ns: str) -> None:
    store = RedisChatStore(redis_url, namespace=ns, tenant="acme", ttl=3600, timeout=5.0)
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="user-7",
                                            token_limit=10_000)
    memory.put(ChatMessage(role=MessageRole.USER, content="Hi, I am Ada."))
    memory.put(ChatMessage(role=MessageRole.ASSISTANT, content="Hello Ada."))
    again = ChatMemoryBuffer.from_defaults(
        chat_store=RedisChatStore(redis_url, namespace=ns, tenant="acme"),
        chat_store_key="user-7", token_limit=10_000,
    )
    assert [m.content for m in again.get()] == ["Hi, I am Ada.", "Hello Ada."]
    other_tenant = RedisChatStore(redis_url, namespace=ns, tenant="globex")
    assert other_tenant.get_messages("user-7") == [] and other_tenant.get_keys() == []
    assert store.get_keys() == ["user-7"]
    rich = ChatMessage(
        role=MessageRole.ASSISTANT,
        blocks=[TextBlock(text="see"), ImageBlock(image=b"\x89PNG", image_mimetype="image/png")],
        additional_kwargs={
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]
        },
    )
    store.add_message("user-7", rich)
    assert store.get_messages("user-7")[-1] == rich
    assert store.delete_last_message("user-7") == rich
    assert store.delete_message("user-7", 0).content == "Hi, I am Ada."  # type: ignore[union-attr]
    assert store.delete_message("user-7", 5) is None
    store.set_messages("user-7", [ChatMessage(role=MessageRole.USER, content="reset")])
    assert [m.content for m in store.get_messages("user-7")] == ["reset"]
    assert [m.content for m in store.delete_messages("user-7") or []] == ["reset"]
    assert store.delete_messages("user-7") is None and store.get_keys() == []


async def test_llama_index_chat_store_async(redis_url: str, ns: str) -> None:
    store = RedisChatStore(redis_url, namespace=ns, timeout=5.0)
    await store.aset_messages("k", [ChatMessage(role=MessageRole.USER, content="a")])
    await store.async_add_message("k", ChatMessage(role=MessageRole.ASSISTANT, content="b"))
    assert [m.content for m in await store.aget_messages("k")] == ["a", "b"]
    assert await store.aget_keys() == ["k"]
    assert (await store.adelete_last_message("k")).content == "b"  # type: ignore[union-attr]
    assert (await store.adelete_message("k", 0)).content == "a"  # type: ignore[union-attr]
    assert await store.adelete_messages("k") is None
    await store.store.aclose()


def test_rate_limited_llama_index_llm(redis_url: str, ns: str) -> None:
    limiter = RateLimiter([Limit("llm", 2, window=3600)], redis_url=redis_url, namespace=ns,
                          timeout=5.0, max_wait=0.1)
    llm = RateLimitedLLM(MockLLM(max_tokens=4), limiter)
    assert llm.complete("hello").text
    assert llm.chat([ChatMessage(role=MessageRole.USER, content="hi")]).message.content
    with pytest.raises(RateLimitExceeded):
        llm.complete("one too many")
    assert limiter.stats().admitted == 2
    limiter.close()


async def test_rate_limited_llm_behind_the_cache(redis_url: str, ns: str, index: Any) -> None:
    limiter = RateLimiter([Limit("llm", 1, window=3600)], redis_url=redis_url, namespace=ns,
                          timeout=5.0, max_wait=0.1)
    cached = CachedLLM(RateLimitedLLM(MockLLM(max_tokens=4), limiter), index)
    first = await cached.acomplete("What is the refund policy?")
    again = await cached.acomplete("What is the refund policy?")  # a hit: no request taken
    assert again.text == first.text and limiter.stats().admitted == 1
    with pytest.raises(RateLimitExceeded):
        await cached.acomplete("Something new")
    await limiter.aclose()


def test_clearing_the_cache_keeps_conversations_and_limits(
    make_store: Any, make_index: Any, redis_url: str, ns: str
) -> None:
    store = make_store()
    _history(store, "kept").add_messages([HumanMessage("still here")])
    limiter = RateLimiter([Limit("kept", 1, window=3600)], redis_url=redis_url, namespace=ns)
    assert limiter.decide().admitted
    cache = make_index(namespace=ns)
    cache.store("What is the refund policy?", "30 days.")
    cache.clear()
    assert [m.content for m in _history(store, "kept").messages] == ["still here"]
    assert not limiter.decide().admitted  # the bucket survived too
    limiter.close()


def test_an_acl_user_limited_to_these_keys_and_commands(
    redis_url: str, raw: redis.Redis, ns: str
) -> None:
    """The ACL the README gives for rate limits and conversations is enough."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    user, password = "u-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    raw.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "resetkeys",
        f"~paracache:_rl:{{{ns}}}:*", f"~paracache:_chat:{ns}:*", "resetchannels", "-@all",
        "+ping", "+client|setname", "+evalsha", "+eval", "+time", "+hmget", "+hget", "+hset",
        "+hincrby", "+hdel", "+hgetall", "+hkeys", "+pexpire", "+zrangebyscore", "+zcard",
        "+zremrangebyscore", "+zadd", "+rpush", "+lrange", "+llen", "+lindex", "+lset", "+lrem",
        "+del", "+exists", "+multi", "+exec",
    )
    parts = urlsplit(redis_url)
    query = {**dict(parse_qsl(parts.query)), "username": user, "password": password}
    url = urlunsplit(parts._replace(query=urlencode(query), netloc=parts.netloc.split("@")[-1]))
    limiter = RateLimiter([Limit("acl", 1, window=3600),
                           Limit("w", 5, window=60, algorithm="sliding_window"),
                           Limit("b", 10, window=60, charged=True)],
                          redis_url=url, namespace=ns, timeout=5.0, fail_open=False)
    store = SessionStore(redis_url=url, namespace=ns, timeout=5.0, fail_open=False, ttl=60,
                         segment=1)
    try:
        assert limiter.decide().admitted and not limiter.decide().admitted
        assert limiter.charge(3)
        history = _history(store, "acl")
        history.add_messages([HumanMessage("a"), AIMessage("b"), HumanMessage("c")])
        assert len(history.messages) == 3
        assert history.window(5, lambda ms: "s")[0].content.endswith("s")
        assert store.remove("acl", 0) is not None and store.sessions() == ["acl"]
        store.replace("acl", [{"x": 1}], [1])
        assert store.clear("acl") and limiter.stats().errors == 0
    finally:
        limiter.close()
        store.close()
        raw.execute_command("ACL", "DELUSER", user)


HISTORY_PROCESS = """
import sys
from langchain_core.messages import HumanMessage
from paracache.history import RedisChatMessageHistory
url, ns, n = sys.argv[1], sys.argv[2], sys.argv[3]
history = RedisChatMessageHistory("shared", redis_url=url, namespace=ns, tenant="t", timeout=5.0)
for i in range(20):
    history.add_messages([HumanMessage(f"{n}-{i}")])
print(history.store.stats().errors)
"""


def test_processes_append_to_one_conversation(redis_url: str, ns: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", HISTORY_PROCESS, redis_url, ns, str(n)],
                         stdout=subprocess.PIPE, text=True, env=env)
        for n in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outputs == ["0", "0", "0"]
    history = RedisChatMessageHistory("shared", redis_url=redis_url, namespace=ns, tenant="t")
    contents = [str(m.content) for m in history.messages]
    assert sorted(contents) == sorted(f"{n}-{i}" for n in range(3) for i in range(20))
    for n in range(3):
        assert [c for c in contents if c.startswith(f"{n}-")] == [f"{n}-{i}" for i in range(20)]
    history.store.close()


def test_your_own_client_even_with_decoded_replies(redis_url: str, ns: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = SessionStore(redis_client=client, namespace=ns, tenant="t", segment=1)
        history = _history(store, "mine")
        history.add_messages([HumanMessage("a"), AIMessage("b"), HumanMessage("c")])
        assert [m.content for m in history.messages] == ["a", "b", "c"]
        assert store.sessions() == ["mine"]
        assert history.window(4, lambda ms: "sum")[0].content.endswith("sum\nsum")
        limiter = RateLimiter([Limit("own", 1, window=3600)], redis_client=client, namespace=ns)
        assert limiter.decide().admitted and not limiter.decide().admitted
        store.close()  # the caller's client stays open
        assert client.ping()
    finally:
        client.close()
    with pytest.raises(ValueError):
        SessionStore(redis_client=client, redis_url=redis_url)


# --------------------------------------------------------------------------- empty ids


def test_an_empty_session_id_is_refused_everywhere(
    make_store: Any, redis_url: str, ns: str
) -> None:
    """``""`` (a missing header, an unset field) was a session like any other: one
    conversation shared by every caller of the tenant that sent none. Refused at every
    entry point, sync and async, before anything reaches Redis."""
    import asyncio

    from llama_index.core.llms import ChatMessage

    store = make_store()
    msg = [{"role": "user", "content": "my card number is 1234"}]
    sync_calls = [
        lambda: store.append("", msg, [5]),
        lambda: store.read(""),
        lambda: store.replace("", msg, [5]),
        lambda: store.clear(""),
        lambda: store.remove("", 0),
        lambda: store.window("", 100),
        lambda: RedisChatMessageHistory("", store=store),
    ]
    chat = RedisChatStore(redis_url, namespace=ns, tenant="acme", timeout=5.0)
    li = ChatMessage(role="user", content="hi")
    sync_calls += [
        lambda: chat.set_messages("", [li]),
        lambda: chat.get_messages(""),
        lambda: chat.add_message("", li),
        lambda: chat.delete_messages(""),
        lambda: chat.delete_message("", 0),
        lambda: chat.delete_last_message(""),
    ]
    for n, call in enumerate(sync_calls):
        with pytest.raises(ValueError, match="session_id must not be empty"):
            call()
        assert n >= 0

    async def async_calls() -> None:
        for make in (
            lambda: store.aappend("", msg, [5]),
            lambda: store.aread(""),
            lambda: store.areplace("", msg, [5]),
            lambda: store.aclear(""),
            lambda: store.aremove("", 0),
            lambda: store.awindow("", 100),
            lambda: chat.aset_messages("", [li]),
            lambda: chat.aget_messages(""),
            lambda: chat.async_add_message("", li),
            lambda: chat.adelete_messages(""),
        ):
            with pytest.raises(ValueError, match="session_id must not be empty"):
                await make()

    asyncio.run(async_calls())
    assert store.sessions() == [] and chat.get_keys() == []  # nothing was written
    chat.store.close()
