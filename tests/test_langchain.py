"""The LangChain adapter: standard suites, chat models through the cache, exact round trips."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from langchain_core.caches import BaseCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import BaseChatModel, FakeListLLM
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult, Generation
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite

from paracache import Scope, SemanticIndex, Verdict
from paracache.langchain import SemanticCache, parse_llm_string, split_prompt


class SupportModel(BaseChatModel):
    """A chat model that answers from a counter, so every real call is visible."""

    model_name: str = "support-1"
    temperature: float = 0.0
    api_key: str = "sk-test-SECRET-do-not-store"
    calls: int = 0
    with_tool_call: bool = False

    @property
    def _llm_type(self) -> str:
        return "support"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        question = messages[-1].content
        message = AIMessage(
            content=f"answer #{self.calls} to {question!r} by {self.model_name}@{self.temperature}",
            id=f"run-{self.calls}",
            usage_metadata={"input_tokens": 20, "output_tokens": 30, "total_tokens": 50},
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
            tool_calls=(
                [{"name": "lookup_card", "args": {"last4": "1234"}, "id": "call_1"}]
                if self.with_tool_call
                else []
            ),
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": "stop"})]
        )


@pytest.fixture
def lc_cache(make_index: Any) -> SemanticCache:
    return SemanticCache(make_index())


@pytest.fixture
def global_cache(lc_cache: SemanticCache) -> Iterator[SemanticCache]:
    before = get_llm_cache()
    set_llm_cache(lc_cache)
    yield lc_cache
    set_llm_cache(before)


# ---------------------------------------------------------------- langchain-tests suites


class TestSyncStandard(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, make_index: Any) -> BaseCache:
        return SemanticCache(make_index())


class TestAsyncStandard(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, make_index: Any) -> AsyncIterator[BaseCache]:
        index = make_index()
        yield SemanticCache(index)
        await index.aclose()


# ---------------------------------------------------------------- chat models


def test_paraphrase_served_from_cache_through_set_llm_cache(global_cache: SemanticCache) -> None:
    model = SupportModel()
    system = SystemMessage("You are a helpful bank assistant.")
    first = model.invoke([system, HumanMessage("How do I activate my new card?")])
    again = model.invoke([system, HumanMessage("How can I activate my new card?")])
    assert model.calls == 1 and again.content == first.content
    other = model.invoke([system, HumanMessage("What is the fee for international transfers?")])
    assert model.calls == 2 and other.content != first.content


def test_cache_on_one_model(lc_cache: SemanticCache) -> None:
    cached = SupportModel(cache=lc_cache)
    plain = SupportModel()
    for _ in range(2):
        cached.invoke("Why was my card declined?")
        plain.invoke("Why was my card declined?")
    assert cached.calls == 1 and plain.calls == 2


@pytest.mark.parametrize(
    "a, b",
    [
        ({"model_name": "support-1"}, {"model_name": "support-2"}),
        ({"temperature": 0.0}, {"temperature": 0.5}),
    ],
)
def test_two_models_or_temperatures_keep_their_own_answers(
    lc_cache: SemanticCache, a: dict[str, Any], b: dict[str, Any]
) -> None:
    ma, mb = SupportModel(cache=lc_cache, **a), SupportModel(cache=lc_cache, **b)
    ra = ma.invoke("Can I change my PIN online?")
    rb = mb.invoke("Can I change my PIN online?")
    assert ra.content != rb.content and ma.calls == mb.calls == 1
    assert ma.invoke("Can I change my PIN online?").content == ra.content
    assert mb.invoke("Can I change my PIN online?").content == rb.content
    assert ma.calls == mb.calls == 1


def test_system_prompt_history_and_tools_scope_the_answer(lc_cache: SemanticCache) -> None:
    model = SupportModel(cache=lc_cache)
    q = HumanMessage("What documents do I need to verify my identity?")
    model.invoke([SystemMessage("Answer in English."), q])
    model.invoke([SystemMessage("Answer in French."), q])
    assert model.calls == 2
    model.invoke([SystemMessage("Answer in English."), HumanMessage("hi"), AIMessage("hello"), q])
    assert model.calls == 3
    tool = {"type": "function", "function": {"name": "lookup_card", "parameters": {}}}
    model.bind(tools=[tool]).invoke([SystemMessage("Answer in English."), q])
    assert model.calls == 4
    model.invoke([SystemMessage("Answer in English."), q])
    assert model.calls == 4


def test_tool_calls_usage_and_ids_round_trip(lc_cache: SemanticCache) -> None:
    model = SupportModel(cache=lc_cache, with_tool_call=True)
    first = model.invoke("Block the card ending 1234")
    hit = model.invoke("Block the card ending 1234")
    assert model.calls == 1
    assert hit.tool_calls == first.tool_calls and hit.tool_calls[0]["args"] == {"last4": "1234"}
    assert hit.usage_metadata is not None and hit.usage_metadata["total_tokens"] == 50
    assert hit.response_metadata["finish_reason"] == "stop"
    assert hit.id != "run-1"  # the stored message id is not replayed
    assert lc_cache.index.stats().tokens_saved == 50


def test_multiple_generations_and_generation_info_round_trip(lc_cache: SemanticCache) -> None:
    gens = [
        ChatGeneration(
            message=AIMessage("one", tool_calls=[{"name": "f", "args": {"x": [1, 2]}, "id": "c"}]),
            generation_info={"finish_reason": "tool_calls", "logprobs": None},
        ),
        Generation(text="two", generation_info={"n": 2}),
    ]
    lc_cache.update("prompt text", "llm", gens)
    out = lc_cache.lookup("prompt text", "llm")
    assert out == gens
    assert out is not None and out[0] is not gens[0]
    again = lc_cache.lookup("prompt text", "llm")
    assert again is not None and again[0] is not out[0]  # fresh objects every hit


def test_plain_llm_and_verdicts(make_index: Any) -> None:
    seen: list[Verdict] = []
    cache = SemanticCache(make_index(), on_verdict=seen.append)
    llm = FakeListLLM(responses=["first", "second", "third"], cache=cache)
    assert llm.invoke("How do I report a stolen card?") == "first"
    assert llm.invoke("How can I report a stolen card?") == "first"
    assert llm.invoke("What is the weather like on Mars?") == "second"
    assert [v.outcome for v in seen] == ["miss", "semantic", "miss"]
    assert seen[1].similarity is not None and seen[1].similarity >= 0.9
    assert seen[1].hit is not None and seen[1].hit.prompt == "How do I report a stolen card?"


def test_tenants_never_see_each_other(make_index: Any) -> None:
    index = make_index()
    acme = SemanticCache(index, tenant="acme")
    evil = acme.for_tenant('acme"} | @tenant:{*')
    model_a, model_e = SupportModel(cache=acme), SupportModel(cache=evil)
    model_a.invoke("What is my account balance?")
    model_e.invoke("What is my account balance?")
    model_e.invoke("what's my account balance")
    assert model_a.calls == 1 and model_e.calls == 1
    model_a.invoke("What's my account balance?")
    assert model_a.calls == 1
    evil.clear()
    model_a.invoke("What is my account balance?")
    assert model_a.calls == 1  # the other tenant's clear() left acme's entries alone
    with pytest.raises(ValueError):
        acme.clear(tenant="globex")


def test_for_tenant_of_the_empty_tenant_clears_only_its_own(make_index: Any) -> None:
    """``for_tenant(t)`` is bound to ``t``, ``""`` too: ``cache.for_tenant(user.tenant)``
    with an empty tenant cleared every tenant's entries."""
    index = make_index()
    root = SemanticCache(index)
    acme, nobody = root.for_tenant("acme"), root.for_tenant("")
    for cache, answer in ((acme, "acme's"), (nobody, "nobody's")):
        cache.update("How do I reset my PIN?", "llm", [Generation(text=answer)])
    assert index.count() == 2
    nobody.clear()
    assert index.count() == 1
    hit = acme.lookup("How do I reset my PIN?", "llm")
    assert hit is not None and hit[0].text == "acme's"
    with pytest.raises(ValueError, match="bound to another tenant"):
        nobody.clear(tenant="acme")
    with pytest.raises(TypeError, match="tenant"):
        root.for_tenant(None)  # type: ignore[arg-type]
    root.clear()  # an unbound cache still clears everything
    assert index.count() == 0


def test_a_cache_given_the_empty_tenant_clears_only_its_own(make_index: Any) -> None:
    """``SemanticCache(index, tenant=user.tenant)`` with an empty tenant is bound to it, as
    ``for_tenant("")`` is: its ``clear()`` deleted every tenant's entries."""
    index = make_index()
    acme, nobody = SemanticCache(index, tenant="acme"), SemanticCache(index, tenant="")
    for cache in (acme, nobody):
        cache.update("How do I reset my PIN?", "llm", [Generation(text=cache.tenant)])
    nobody.clear()
    assert index.count() == 1 and acme.lookup("How do I reset my PIN?", "llm") is not None
    SemanticCache(index, tenant=None).clear()  # None, the default: no tenant, clears all
    assert index.count() == 0


def test_secrets_never_reach_redis(lc_cache: SemanticCache, redis_url: str) -> None:
    model = SupportModel(cache=lc_cache, api_key="sk-live-TOPSECRET-123")
    model.invoke("How do I get a refund?")
    r = redis.Redis.from_url(redis_url)
    keys = r.keys(lc_cache.index.layout.namespace_prefix + "*")
    assert keys
    for key in keys:
        for value in r.hgetall(key).values():
            assert b"TOPSECRET" not in value


def test_batch_is_thread_safe(lc_cache: SemanticCache) -> None:
    model = SupportModel(cache=lc_cache)
    distinct = [
        "How do I order a new card?",
        "Why is my transfer still pending?",
        "Can I top up with Apple Pay?",
        "What is the exchange rate fee?",
        "How do I close my account?",
    ]
    questions = distinct * 4
    out = model.batch(questions, config={"max_concurrency": 8})
    assert len(out) == 20 and 5 <= model.calls <= 20
    calls = model.calls
    again = model.batch(questions, config={"max_concurrency": 8})
    assert model.calls == calls  # everything answered from the cache
    for q in distinct:
        answers = {m.content for m, asked in zip(again, questions, strict=True) if asked == q}
        assert len(answers) == 1 and q in next(iter(answers))
    assert lc_cache.index.stats().errors == 0


async def test_async_invoke_and_concurrency(lc_cache: SemanticCache) -> None:
    model = SupportModel(cache=lc_cache)
    first = await model.ainvoke("How long do transfers take?")
    again = await model.ainvoke("How long does a transfer take?")
    assert model.calls == 1 and again.content == first.content
    results = await asyncio.gather(
        *(model.ainvoke(f"Is there a fee for payment {i}?") for i in range(10))
    )
    assert len(results) == 10
    assert lc_cache.index.stats().errors == 0


def test_high_temperature_is_not_cached(lc_cache: SemanticCache) -> None:
    model = SupportModel(cache=lc_cache, temperature=1.5)
    model.invoke("Write me a poem about banking")
    model.invoke("Write me a poem about banking")
    assert model.calls == 2
    assert lc_cache.index.stats().bypasses == 2


def test_clear_by_model(lc_cache: SemanticCache) -> None:
    a, b = SupportModel(cache=lc_cache), SupportModel(cache=lc_cache, model_name="support-2")
    a.invoke("Can I open a joint account?")
    b.invoke("Can I open a joint account?")
    lc_cache.clear(model="support-2")
    a.invoke("Can I open a joint account?")
    b.invoke("Can I open a joint account?")
    assert a.calls == 1 and b.calls == 2


def test_constructor_checks(make_index: Any, redis_url: str) -> None:
    index = make_index()
    with pytest.raises(ValueError):
        SemanticCache(index, namespace="other")
    with pytest.raises(TypeError):
        SemanticCache("redis://x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SemanticCache(index, tenant=5)  # type: ignore[arg-type]
    cache = SemanticCache(redis_url=redis_url, namespace="lc-ctor", tenant="t", ttl=60)
    assert isinstance(cache.index, SemanticIndex) and cache.index.namespace == "lc-ctor"
    cache.index.clear()


def test_a_bad_threshold_fails_at_construction(make_index: Any) -> None:
    """A threshold out of range is refused when the cache is built, not by every call."""
    index = make_index()
    for bad, error in ((3, ValueError), (-0.1, ValueError), ("0.9", TypeError),
                       (float("nan"), TypeError)):
        with pytest.raises(error, match="min_similarity"):
            SemanticCache(index, min_similarity=bad)  # type: ignore[arg-type]
    cache = SemanticCache(index, min_similarity=1)
    assert cache.min_similarity == 1.0 and cache.for_tenant("t").min_similarity == 1.0


def test_a_semantic_index_given_to_set_llm_cache_says_what_to_use(make_index: Any) -> None:
    """LangChain calls ``lookup(prompt, llm_string)``: the error names the adapter instead
    of only saying that a str is not a Scope."""
    before = get_llm_cache()
    set_llm_cache(make_index())
    try:
        with pytest.raises(TypeError, match=r"paracache\.langchain\.SemanticCache"):
            FakeListLLM(responses=["a"]).invoke("hello")
    finally:
        set_llm_cache(before)


def test_a_deep_copy_of_a_model_shares_its_cache(make_index: Any) -> None:
    """``copy.deepcopy`` of a model with ``cache=`` (pydantic's ``model_copy(deep=True)``)
    raised "cannot pickle '_thread.lock' object": the copy now shares the cache, as it
    would share a connection pool."""
    import copy

    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from paracache.langchain import CachedChatModel

    cache = SemanticCache(make_index())
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert model.invoke("Where is my card?").content == "first"
    clone = copy.deepcopy(model)
    assert clone.cache is cache and model.model_copy(deep=True).cache is cache
    assert clone.invoke("Where is my card?").content == "first"  # served from the cache
    chat = CachedChatModel(llm=FakeListChatModel(responses=["a", "b"]), cache=cache)
    assert chat.invoke("How do I freeze my card?").content == "a"
    chat = copy.deepcopy(chat)
    assert chat.semantic_cache is cache
    assert chat.invoke("How do I freeze my card?").content == "a"



def test_cached_chat_model_scopes_a_schema_class_by_its_schema(make_index: Any) -> None:
    """langchain-core spells a class argument (``response_format=Answer``, as
    ``with_structured_output(method="json_schema")`` binds it) by its repr in
    ``llm_string``: two schemas with one name (a redeploy, ``create_model``) shared a scope
    and one's answer was served to the other."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from pydantic import Field as PydanticField
    from pydantic import create_model

    from paracache.langchain import CachedChatModel

    english = create_model("Answer", text=(str, PydanticField(description="in English")))
    french = create_model("Answer", text=(str, PydanticField(description="in French")))
    assert repr(english) == repr(french)
    chat = CachedChatModel(llm=FakeListChatModel(responses=["en", "fr"]),
                           cache=SemanticCache(make_index()))
    question = "What is your refund policy?"
    assert chat.bind(response_format=english).invoke(question).content == "en"
    assert chat.bind(response_format=french).invoke(question).content == "fr"
    assert chat.bind(response_format=english).invoke(question).content == "en"  # a hit
    assert chat.llm.i == 0  # type: ignore[attr-defined]  # two calls: the list wrapped round


# ---------------------------------------------------------------- parsing


def test_split_prompt_embeds_only_the_last_human_text() -> None:
    from langchain_core.load import dumps

    msgs = [SystemMessage("sys"), HumanMessage("first"), AIMessage("ok"), HumanMessage("last?")]
    text, ctx, semantic = split_prompt(dumps(msgs))
    assert text == "last?" and semantic
    text2, ctx2, _ = split_prompt(dumps([SystemMessage("other"), *msgs[1:]]))
    assert text2 == text and ctx2 != ctx
    blocks = HumanMessage(content=[{"type": "text", "text": "what is this"},
                                   {"type": "image_url", "image_url": {"url": "data:x"}}])
    text3, ctx3, _ = split_prompt(dumps([blocks]))
    assert text3 == "what is this"
    assert ctx3 != split_prompt(dumps([HumanMessage("what is this")]))[1]
    tool_turn = [*msgs, AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}])]
    assert split_prompt(dumps(tool_turn))[2] is False  # not a human turn: exact layer only
    assert split_prompt("plain prompt") == ("plain prompt", "", True)
    assert split_prompt("[{not json") == ("[{not json", "", True)


def test_parse_llm_string_whitelists_fields() -> None:
    model, params = parse_llm_string(
        '{"id": ["langchain", "chat_models", "openai", "ChatOpenAI"], "kwargs": '
        '{"model_name": "gpt-4o-mini", "temperature": 0.3, "openai_api_key": '
        '{"id": ["OPENAI_API_KEY"], "lc": 1, "type": "secret"}}, "lc": 1, "type": "constructor"}'
        "---[('stop', None), ('top_p', 0.9), ('api_key', 'sk-xyz')]"
    )
    assert model == "gpt-4o-mini" and params == {"temperature": 0.3, "top_p": 0.9}
    assert parse_llm_string("Sample LLM string configuration.") == ("", {})
    assert parse_llm_string("[('_type', 'fake-list')]") == ("fake-list", {})
    scope = Scope(model=model, params=params)
    assert scope.temperature == 0.3


#: ChatOpenAI(model="gpt-4o-mini", temperature=0, extra_body={"temperature": 1.5}) as
#: langchain-core's ``_get_llm_string`` spells it: the body's temperature is what is sent.
HOT_EXTRA_BODY = (
    '{"id": ["langchain", "chat_models", "openai", "ChatOpenAI"], "kwargs": '
    '{"extra_body": {"temperature": 1.5}, "model_name": "gpt-4o-mini", "openai_api_key": '
    '{"id": ["OPENAI_API_KEY"], "lc": 1, "type": "secret"}, "stream_usage": true, '
    '"temperature": 0.0}, "lc": 1, "name": "ChatOpenAI", "type": "constructor"}'
    "---[('stop', None)]"
)


def test_sampling_params_sent_in_extra_body_or_model_kwargs_count(lc_cache: SemanticCache) -> None:
    assert parse_llm_string(HOT_EXTRA_BODY)[1] == {"temperature": 1.5}
    nested = "[('_type', 'x'), ('model_kwargs', {'top_p': 0.2}), ('top_p', 1.0)]"
    assert parse_llm_string(nested)[1] == {"top_p": 0.2}
    # Hotter than max_temperature (1.0): neither looked up nor stored, as documented.
    lc_cache.update("Tell me a joke", HOT_EXTRA_BODY, [Generation(text="a joke")])
    assert lc_cache.lookup("Tell me a joke", HOT_EXTRA_BODY) is None
    stats = lc_cache.index.stats()
    assert (stats.bypasses, stats.writes, stats.writes_skipped) == (1, 0, 1)


def test_app_keeps_working_while_redis_is_down(make_index: Any, redis_server: Any) -> None:
    from paracache import CircuitBreaker

    cache = SemanticCache(make_index(breaker=CircuitBreaker(failures=1, cooldown=0.3)))
    model = SupportModel(cache=cache)
    model.invoke("How do I change my address?")
    redis_server.stop()
    try:
        answers = [model.invoke("How do I change my address?").content for _ in range(5)]
        assert all(a.startswith("answer #") for a in answers) and model.calls == 6
    finally:
        redis_server.start()
    import time

    deadline = time.time() + 10
    while True:  # the breaker closes by itself and caching resumes
        model.invoke("How do I update my home address?")
        calls = model.calls
        model.invoke("How do I update my home address?")
        if model.calls == calls:
            break
        assert time.time() < deadline
        time.sleep(0.3)


def test_parse_llm_string_from_many_threads() -> None:
    """The adapter parses llm_string on every call, from the caller's threads: the same
    answer each time and never an exception (CPython 3.11 raised SystemError once in CI
    when threads built ASTs for ``ast.literal_eval`` at once)."""
    import threading

    llm_string = "[('_type', 'fake-chat'), ('model_name', 'gpt-4o'), ('temperature', 0.2)]"
    expected = parse_llm_string(llm_string)
    results: list[object] = []

    def work() -> None:
        for _ in range(300):
            try:
                results.append(parse_llm_string(llm_string))
            except BaseException as exc:  # reported below
                results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2400 and all(r == expected for r in results)


def test_parse_llm_string_parses_each_string_once() -> None:
    """Memoised per llm_string (bounded): a model's string is parsed once, not on every
    lookup; callers get their own copy of the params."""
    import paracache.langchain as lc

    llm_string = "[('_type', 'fake-chat'), ('model_name', 'memo-test'), ('stop', ['###'])]"
    before = lc._parse_llm_string.cache_info()
    first = parse_llm_string(llm_string)
    first[1]["stop"].append("changed by a caller")
    second = parse_llm_string(llm_string)
    after = lc._parse_llm_string.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert second == ("memo-test", {"stop": ["###"]})
    assert after.maxsize == lc.PARSED_LLM_STRINGS


def test_deeply_nested_prompt_or_llm_string_is_text_not_an_error(make_index: Any) -> None:
    """A plain LLM's prompt is the user's own text: one that starts like JSON and nests
    deeper than the JSON parser's recursion limit raised ``RecursionError`` out of the
    cache (the model call failed) instead of being matched as text."""
    index = make_index()
    cache = SemanticCache(index, tenant="acme")
    deep_prompt = '[{"a":' + "[" * 100_000
    deep_llm = "[" * 100_000
    for prompt, llm_string in ((deep_prompt, "llm"), ("What are the fees?", deep_llm)):
        assert cache.lookup(prompt, llm_string) is None
        cache.update(prompt, llm_string, [Generation(text="answer")])
        hit = cache.lookup(prompt, llm_string)
        assert hit is not None and hit[0].text == "answer"
    assert parse_llm_string(deep_llm) == ("", {})
    assert split_prompt(deep_prompt) == (deep_prompt, "", True)
    assert index.stats().errors == 0


def test_an_infinite_setting_in_llm_string_is_no_error(make_index: Any) -> None:
    """langchain-core writes a model's settings as JSON, where ``float("inf")`` is
    ``Infinity``: ``parse_llm_string`` kept it, and the scope refused it ("not a finite
    number"), raising out of ``lookup`` (the model call failed) instead of missing. It is
    dropped like NaN was; the whole ``llm_string`` still scopes."""
    cache = SemanticCache(make_index())
    head = '{"lc": 1, "type": "constructor", "id": ["x", "ChatX"], "kwargs": {"model": "m", '
    hot = head + '"temperature": Infinity, "seed": -Infinity}}---[]'
    cool = head + '"temperature": 0}}---[]'
    assert parse_llm_string(hot) == ("m", {})
    for llm_string in (hot, cool):
        assert cache.lookup("What are the fees?", llm_string) is None
    cache.update("What are the fees?", hot, [Generation(text="hot")])
    hit = cache.lookup("What are the fees?", hot)
    assert hit is not None and hit[0].text == "hot"
    assert cache.lookup("What are the fees?", cool) is None


# ---------------------------------------------------------------- apps' own prompts

#: A help centre's retrieved context, as a RAG prompt puts it before the question (about
#: 1,000 characters: with the template, more than the 256 word pieces the model reads).
RAG_CONTEXT = " ".join([
    "Acme Bank help centre. Cards: you can freeze a card in the app under Cards > Freeze.",
    "A frozen card can be unfrozen at any time. Lost cards should be reported at once; a",
    "replacement arrives in 5 to 7 working days. Card payments abroad carry no fee in the EU.",
    "Transfers: SEPA transfers arrive the next working day; instant transfers within seconds,",
    "up to 15,000 EUR. International transfers take 2 to 4 days. Accounts: a current account",
    "costs 4 EUR a month, waived with 1,000 EUR of monthly income. Savings accounts pay 2.1 %",
    "a year. Statements are in the app under Accounts > Statements, as PDF, for the last 10",
    "years. Interest is paid monthly. Support is open 8:00-20:00 on weekdays and 9:00-17:00",
    "on Saturdays. Closed on Sundays and public holidays. Overdrafts: an arranged overdraft",
    "costs 9.9 % a year; unarranged overdrafts are declined. Loans from 1,000 to 50,000 EUR.",
    "Mortgages: fixed rates for 5, 10 or 20 years; an early repayment fee of 1 % applies in",
    "the first 5 years.",
])


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_question_after_a_long_context_is_not_served_another_questions_answer(
    make_index: Any, wrapped: bool
) -> None:
    """An LCEL RAG chain whose one human message holds the retrieved context, then the
    question: the model reads 256 word pieces, so every question after the same context
    embedded alike (similarity 1.0) and was served the first question's answer. Such a
    text is served by the exact layer only."""
    from langchain_core.prompts import ChatPromptTemplate

    from paracache.langchain import CachedChatModel

    cache = SemanticCache(make_index())
    model = SupportModel(cache=None if wrapped else cache)
    llm: Any = CachedChatModel(llm=model, cache=cache) if wrapped else model
    chain = ChatPromptTemplate.from_messages(
        [("human", "Use the context to answer.\nContext: {context}\n\nQuestion: {question}")]
    ) | llm
    card = chain.invoke({"context": RAG_CONTEXT, "question": "How long does a new card take?"})
    hours = chain.invoke({"context": RAG_CONTEXT, "question": "When are you open on Saturday?"})
    assert model.calls == 2 and hours.content != card.content
    again = chain.invoke({"context": RAG_CONTEXT, "question": "When are you open on Saturday?"})
    assert model.calls == 2 and again.content == hours.content  # the exact layer still serves


def _local_openai(script: Any) -> Any:
    """langchain-openai's ChatOpenAI (its own request building, result parsing and structured
    output), answering locally: ``script(messages, kwargs)`` gives the message dict."""
    pytest.importorskip("langchain_openai", reason="needs paracache[openai]")
    from langchain_openai import ChatOpenAI
    from pydantic import Field

    class LocalOpenAI(ChatOpenAI):
        sent: list[dict[str, Any]] = Field(default_factory=list)

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            self.sent.append(kwargs)
            message = script(messages, kwargs)
            return self._create_chat_result({
                "id": f"chatcmpl-{len(self.sent)}", "object": "chat.completion", "created": 1,
                "model": self.model_name, "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            })

    return LocalOpenAI(model="gpt-4o-mini", api_key="sk-test", temperature=0)


@pytest.mark.parametrize("method", ["function_calling", "json_mode", "json_schema"])
def test_structured_output_with_include_raw_keeps_the_models_method(
    make_index: Any, method: str
) -> None:
    """``with_structured_output(schema, include_raw=True, method=...)`` on a CachedChatModel
    fell back to LangChain's generic implementation, which drops ``method`` and ``strict``:
    ``json_schema`` and ``json_mode`` silently became tool calling, and
    ``function_calling`` lost the model's own arguments (``parallel_tool_calls``)."""
    import json

    from pydantic import BaseModel

    from paracache.langchain import CachedChatModel

    class Answer(BaseModel):
        text: str

    def script(messages: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("tools"):
            call = {"id": "call_1", "type": "function",
                    "function": {"name": "Answer", "arguments": '{"text": "Settings"}'}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"role": "assistant", "content": json.dumps({"text": "Settings"})}

    plain = _local_openai(script)
    question = "How do I reset my password? Reply in JSON."
    plain.with_structured_output(Answer, method=method, include_raw=True).invoke(question)
    expected = sorted(plain.sent[-1])
    chat = CachedChatModel(llm=_local_openai(script), cache=SemanticCache(make_index()))
    structured = chat.with_structured_output(Answer, method=method, include_raw=True)
    first = structured.invoke(question)
    assert sorted(chat.llm.sent[-1]) == expected  # type: ignore[attr-defined]
    again = structured.invoke(question)
    assert len(chat.llm.sent) == 1  # type: ignore[attr-defined]  # a hit
    assert set(first) == set(again) == {"raw", "parsed", "parsing_error"}
    assert again["raw"].response_metadata["paracache"]["cached"] is True
    if method != "json_schema":  # its parsed answer comes from the API's parse endpoint
        assert first["parsed"] == again["parsed"] == Answer(text="Settings")


def test_generate_reports_the_wrapped_models_llm_output(make_index: Any) -> None:
    """``CachedChatModel.generate()`` returned ``llm_output == {}``: the wrapped model's
    token usage, model name and fingerprint were lost (callbacks' ``on_llm_end`` saw
    them, the caller did not)."""
    from paracache.langchain import CachedChatModel

    def script(messages: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": "Use 'Forgot password'."}

    question = [[HumanMessage("How do I reset my password?")]]
    plain = _local_openai(script)
    expected = plain.generate(question).llm_output
    assert expected["token_usage"]["total_tokens"] == 18 and expected["model_name"]
    cache = SemanticCache(make_index())
    chat = CachedChatModel(llm=_local_openai(script), cache=cache)
    assert chat.generate(question).llm_output == expected  # a miss
    # A hit: as the model's own cache= path reports one (no usage: nothing was spent).
    own = _local_openai(script)
    own.cache = cache
    assert chat.generate(question).llm_output == own.generate(question).llm_output
    assert chat.generate(question).llm_output == {"token_usage": {}, "model_name": "gpt-4o-mini"}
