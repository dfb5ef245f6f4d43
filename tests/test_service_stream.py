"""The service's streamed answers (``"stream": true``): server-sent events for hits and
misses, only completed streams stored, one model call per burst. Real Redis and
embeddings; the chat model is langchain-core's GenericFakeChatModel (streams by word)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx
from fastapi.testclient import TestClient
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

from paracache import Scope, SemanticIndex
from paracache.replay import replay_chunks
from paracache.service import AnswerRequest, create_app

CARD = "How do I activate my new card?"
CARD_PARAPHRASE = "how can I activate my new card"
ANSWER = "Open the app, choose Cards and tap Activate. It takes a minute."


class StreamingModel(GenericFakeChatModel):
    """Streams ANSWER word by word; counts calls; ``fail`` breaks the stream midway;
    ``hold`` (an asyncio.Event) delays the answer until set."""

    messages: Iterator[AIMessage | str] = iter(())
    calls: int = 0
    fail: bool = False
    hold: Any = None

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        self.messages = iter([ANSWER])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kw)

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Any:
        if self.hold is not None:
            await self.hold.wait()
        for i, chunk in enumerate(self._stream(messages, stop, run_manager, **kw)):
            if self.fail and i == 4:
                raise ConnectionError("upstream broke, key sk-secret")
            yield chunk


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def stream(client: TestClient, prompt: str) -> list[tuple[str, dict[str, Any]]]:
    with client.stream("POST", "/v1/answer", json={"prompt": prompt, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return events(r.read().decode())


def test_streamed_miss_then_streamed_hit(make_index: Any) -> None:
    index: SemanticIndex = make_index()
    model = StreamingModel()
    with TestClient(create_app(index, model)) as c:
        first = stream(c, CARD)
        assert first[0] == ("meta", first[0][1]) and first[0][1]["cached"] is False
        deltas = [d["text"] for e, d in first if e == "delta"]
        assert "".join(deltas) == ANSWER and len(deltas) > 5
        assert first[-1][0] == "done" and first[-1][1]["answer"] == ANSWER
        assert first[-1][1]["entry_id"]

        again = stream(c, CARD_PARAPHRASE)
        meta = again[0][1]
        assert meta["cached"] is True and meta["layer"] == "semantic"
        deltas = [d["text"] for e, d in again if e == "delta"]
        assert deltas == replay_chunks(ANSWER) and len(deltas) > 5
        assert again[-1][1]["cached"] is True and again[-1][1]["answer"] == ANSWER
        # The same entry answers a non-streamed request.
        plain = c.post("/v1/answer", json={"prompt": CARD}).json()
        assert plain["cached"] is True and plain["answer"] == ANSWER
    assert model.calls == 1


def test_function_model_streams_as_one_piece(make_index: Any) -> None:
    with TestClient(create_app(make_index(), lambda req: f"echo {req.prompt}")) as c:
        got = stream(c, "hello there")
        assert [d["text"] for e, d in got if e == "delta"] == ["echo hello there"]
        assert stream(c, "hello there")[0][1]["layer"] == "exact"


def test_failing_stream_is_an_error_event_and_nothing_is_stored(make_index: Any) -> None:
    index: SemanticIndex = make_index()
    model = StreamingModel(fail=True)
    with TestClient(create_app(index, model)) as c:
        got = stream(c, CARD)
        assert got[-1][0] == "error" and "ConnectionError" in got[-1][1]["detail"]
        assert "sk-secret" not in json.dumps(got)
        assert any(e == "delta" for e, _ in got)  # it had started
    assert index.count() == 0


async def test_eight_concurrent_streamed_misses_one_model_call(make_index: Any) -> None:
    index: SemanticIndex = make_index()
    model = StreamingModel(hold=asyncio.Event())
    app = create_app(index, model)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:

        dones: list[dict[str, Any]] = []

        async def ask() -> str:
            r = await client.post("/v1/answer", json={"prompt": CARD, "stream": True})
            got = events(r.text)
            meta, done = got[0][1], got[-1][1]
            assert (meta["cached"], meta["layer"]) == (done["cached"], done["layer"])
            dones.append(done)
            return "".join(d["text"] for e, d in got if e == "delta")

        tasks = [asyncio.create_task(ask()) for _ in range(8)]
        deadline = time.monotonic() + 60
        while index.stats().lookups < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        model.hold.set()
        assert await asyncio.gather(*tasks) == [ANSWER] * 8
    assert model.calls == 1
    # The waiters' final event says what their first one did: served from the flight.
    assert sorted(str(d["layer"]) for d in dones) == ["None"] + ["in-flight"] * 7


def test_stream_flag_is_part_of_the_request_schema() -> None:
    assert AnswerRequest(prompt="x", stream=True).stream is True
    assert AnswerRequest(prompt="x").stream is False


async def test_a_client_gone_midway_stores_nothing(make_index: Any) -> None:
    """What Starlette does when the client disconnects: the event stream is closed."""
    from paracache.service_stream import answer_events
    from paracache.singleflight import SingleFlight

    index: SemanticIndex = make_index()
    flights = SingleFlight(index)
    model = StreamingModel()

    async def pieces() -> Any:
        async for chunk in model.astream(CARD):
            yield chunk.text

    events_out = answer_events(
        index, flights, CARD, Scope(), 0.9, pieces, lambda *a: {"answer": a[1]}
    )
    got = [await events_out.__anext__() for _ in range(4)]  # meta and three deltas
    assert got[0].startswith(b"event: meta") and got[-1].startswith(b"event: delta")
    await events_out.aclose()
    assert await index.acount() == 0 and flights.in_flight() == 0
    # The next request streams it again, completely, and stores it.
    events_out = answer_events(
        index, flights, CARD, Scope(), 0.9, pieces, lambda *a: {"answer": a[1]}
    )
    last = [e async for e in events_out][-1]
    assert last.startswith(b"event: done") and ANSWER.encode() in last
    assert await index.acount() == 1 and model.calls == 2


def test_streamed_answers_keep_to_the_api_keys_tenant(make_index: Any) -> None:
    acme, globex = "key-acme-" + "a1" * 12, "key-globex-" + "g2" * 12
    model = StreamingModel()
    app = create_app(make_index(), model, api_keys=f"{acme}:acme, {globex}:globex")
    body = {"prompt": CARD, "stream": True}
    with TestClient(app) as c:

        def ask(key: str) -> list[tuple[str, dict[str, Any]]]:
            headers = {"Authorization": f"Bearer {key}"}
            return events(c.post("/v1/answer", json=body, headers=headers).text)

        r = c.post("/v1/answer", json=body)
        assert r.status_code == 401  # no key, no stream
        first, other, again = ask(acme), ask(globex), ask(acme)
    assert first[0][1]["cached"] is False and other[0][1]["cached"] is False
    assert again[0][1]["cached"] is True and model.calls == 2


def test_a_streamed_answer_keeps_to_the_learned_threshold(make_index: Any) -> None:
    """With ``max_error_rate`` a learned threshold gets no corroboration margin: the
    streamed path passed it to the lookup as a per-request threshold, which has one, and
    served a corroborated candidate below it that a non-streamed request did not."""
    import redis

    index: SemanticIndex = make_index(max_error_rate=0.05, explore_rate=0.0)
    stored, asked = "Can I get a refund on a $60 gift card?", "Is a $60 gift card refundable?"
    with TestClient(create_app(index, lambda req: "Only unused cards.")) as c:
        assert c.post("/v1/answer", json={"prompt": stored}).json()["cached"] is False
        assert index.learner is not None and index.learner.wait_idle(30)
        client = redis.Redis.from_url(index.redis_url)
        (key,) = client.scan_iter(match=f"paracache:{index.namespace}:*:q:*")
        # As workers would have counted them: right from 0.90 up, often wrong below.
        fields: dict[str, int | str] = {"v": "1", "N": 2000}
        for b in range(80, 100):
            fields.update({f"n{b}": 40, f"t{b}": 60}, **({f"w{b}": 20} if b < 90 else {}))
        client.hset(key, mapping=fields)
        index.learner.refresh(force=True)
        (learned,) = index.stats().learning["thresholds"].values()
        got = events(
            c.post("/v1/answer", json={"prompt": asked, "stream": True}).text
        )  # fmt: skip
        meta = got[0][1]
        assert meta["min_similarity"] == learned and 0.8 < meta["similarity"] < learned
        assert meta["cached"] is False and meta["outcome"] == "miss", meta
        assert got[-1][0] == "done" and got[-1][1]["answer"] == "Only unused cards."


async def test_a_client_gone_after_the_meta_event_releases_the_flight(make_index: Any) -> None:
    """A client that disconnects right after the first event (`meta`, sent before the
    model starts) left the single-flight it led unsettled: identical requests waited the
    full bound (30 s) and other processes until the Redis lock expired."""
    from paracache.service_stream import answer_events
    from paracache.singleflight import SingleFlight

    index: SemanticIndex = make_index()
    flights = SingleFlight(index)
    model = StreamingModel()

    async def pieces() -> Any:
        async for chunk in model.astream(CARD):
            yield chunk.text

    events_out = answer_events(
        index, flights, CARD, Scope(), 0.9, pieces, lambda *a: {"answer": a[1]}
    )
    assert (await events_out.__anext__()).startswith(b"event: meta")
    assert flights.in_flight() == 1
    await events_out.aclose()
    assert flights.in_flight() == 0 and await index.acount() == 0 and model.calls == 0
