"""The HTTP service: FastAPI's TestClient against the real embedded Redis, and once as a
real ``paracache serve`` process over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
import httpx
from fastapi import FastAPI, Request  # module level: the fake API's annotations resolve here
from fastapi.testclient import TestClient

from paracache import SemanticIndex
from paracache.service import THRESHOLD_HEADER, AnswerRequest, LLMReply, create_app

CARD = "How do I activate my new card?"
CARD_PARAPHRASE = "how can I activate my new card"


class CountingLLM:
    """A stand-in chat model: counts calls, answers with what it was asked."""

    def __init__(self) -> None:
        self.calls: list[AnswerRequest] = []

    def __call__(self, req: AnswerRequest) -> LLMReply:
        self.calls.append(req)
        return LLMReply(f"[{req.model} t={req.temperature}] answer to: {req.prompt}", 150)


@pytest.fixture
def llm() -> CountingLLM:
    return CountingLLM()


@pytest.fixture
def client(make_index: Any, llm: CountingLLM) -> Iterator[TestClient]:
    index: SemanticIndex = make_index()
    with TestClient(create_app(index, llm)) as c:
        yield c


def ask(client: TestClient, prompt: str, **fields: Any) -> dict[str, Any]:
    headers = fields.pop("headers", {})
    r = client.post("/v1/answer", json={"prompt": prompt, **fields}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- answers


def test_miss_then_exact_then_semantic_hit(client: TestClient, llm: CountingLLM) -> None:
    first = ask(client, CARD, tenant="acme", system="You are a bank assistant.")
    assert first["cached"] is False and first["outcome"] == "miss" and first["layer"] is None
    assert first["answer"].endswith(CARD) and first["tokens"] == 150
    assert first["entry_id"] and first["latency_ms"] >= first["lookup_ms"] > 0

    again = ask(client, CARD, tenant="acme", system="You are a bank assistant.")
    assert again["cached"] is True and again["layer"] == "exact" and again["similarity"] == 1.0
    assert again["answer"] == first["answer"] and again["entry_id"] == first["entry_id"]

    para = ask(client, CARD_PARAPHRASE, tenant="acme", system="You are a bank assistant.")
    assert para["cached"] is True and para["layer"] == "semantic"
    assert para["min_similarity"] <= para["similarity"] < 1.0
    assert para["answer"] == first["answer"]
    assert len(llm.calls) == 1


def test_scope_keeps_answers_apart(client: TestClient, llm: CountingLLM) -> None:
    ask(client, CARD, tenant="acme")
    for fields in (
        {"tenant": "globex"},
        {"tenant": "acme", "model": "other-model"},
        {"tenant": "acme", "temperature": 0.5},
        {"tenant": "acme", "system": "Answer in French."},
    ):
        assert ask(client, CARD, **fields)["cached"] is False, fields
    assert len(llm.calls) == 5
    # A temperature above the policy's maximum is never cached.
    hot = [ask(client, "Write a poem", temperature=1.5) for _ in range(2)]
    assert [h["outcome"] for h in hot] == ["bypass", "bypass"]


def test_threshold_header_overrides_per_request(client: TestClient) -> None:
    ask(client, CARD)
    strict = ask(client, CARD_PARAPHRASE, headers={THRESHOLD_HEADER: "0.999"})
    assert strict["cached"] is False and strict["min_similarity"] == 0.999
    assert strict["similarity"] is not None and strict["similarity"] < 0.999  # best candidate
    loose = ask(client, "Why was my card declined?", headers={THRESHOLD_HEADER: " 0.0 "})
    assert loose["cached"] is True and loose["layer"] == "semantic"
    assert ask(client, CARD_PARAPHRASE)["min_similarity"] == 0.9  # the default again


@pytest.mark.parametrize("value", ["abc", "1.5", "-0.1", "nan", ""])
def test_bad_threshold_header_is_400(client: TestClient, value: str) -> None:
    r = client.post("/v1/answer", json={"prompt": CARD}, headers={THRESHOLD_HEADER: value})
    assert r.status_code == 400
    assert THRESHOLD_HEADER in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": 42},
        {"prompt": "x" * 20_000},
        {"prompt": "hi", "temperature": 5},
        {"prompt": "hi", "temperature": "hot"},
        {"prompt": "hi", "model": ""},
        {"prompt": "hi", "unknown_field": 1},
        {"prompt": "hi", "tenant": None},
    ],
)
def test_invalid_bodies_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/v1/answer", json=body)
    assert r.status_code == 422, body
    assert r.json()["detail"]


@pytest.mark.parametrize("field", ["prompt", "tenant", "system", "model"])
def test_a_lone_surrogate_or_a_huge_value_is_a_short_422(make_index: Any, field: str) -> None:
    """JSON may spell a lone surrogate (``"\\ud800"``): pydantic refuses it, and FastAPI's
    422 echoed it back, which cannot be encoded as UTF-8: a 500. A 2 MB prompt's 422
    echoed all 2 MB."""
    index: SemanticIndex = make_index()
    with TestClient(create_app(index, CountingLLM()), raise_server_exceptions=False) as c:
        body = b'{"prompt": "hi", "%s": "acme\\ud800"}' % field.encode()
        r = c.post("/v1/answer", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", field]
        r = c.post("/v1/answer", json={"prompt": "hi", field: "x" * (2 << 20)})
        assert r.status_code == 422 and len(r.content) < 2000
        assert r.json()["detail"][0]["loc"] == ["body", field]
    assert index.count() == 0


def test_a_lone_surrogate_in_the_models_answer_is_answered(make_index: Any) -> None:
    """A model's answer holding a lone surrogate (a pair split by a streaming API) failed
    the response (500) after it was cached, and a streamed one failed as the model's
    fault; it is now sent JSON-escaped."""
    index: SemanticIndex = make_index()
    app = create_app(index, lambda req: "before \ud83d after")
    with TestClient(app, raise_server_exceptions=False) as c:
        first = c.post("/v1/answer", json={"prompt": "What is the fee?"})
        assert first.status_code == 200, first.text
        assert first.json()["answer"] == "before \ud83d after"
        again = c.post("/v1/answer", json={"prompt": "What is the fee?"})
        assert again.status_code == 200 and again.json()["cached"] is True
        # Streamed, it was an `error` event blaming the model ("the chat model failed:
        # UnicodeEncodeError"), and nothing was cached.
        streamed = c.post("/v1/answer", json={"prompt": "Where is my card?", "stream": True})
        assert streamed.status_code == 200 and "event: error" not in streamed.text
        assert '"answer": "before \\ud83d after"' in streamed.text
    assert index.count() == 2


def test_not_json_is_422(client: TestClient) -> None:
    r = client.post(
        "/v1/answer", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_a_failing_model_is_502_and_nothing_is_cached(make_index: Any) -> None:
    index: SemanticIndex = make_index()

    async def broken(req: AnswerRequest) -> str:
        raise ConnectionError("upstream down, key sk-secret")

    with TestClient(create_app(index, broken)) as c:
        r = c.post("/v1/answer", json={"prompt": CARD})
        assert r.status_code == 502
        assert "ConnectionError" in r.json()["detail"] and "sk-secret" not in r.text
    assert index.count() == 0


def test_async_llm_function_and_langchain_model(make_index: Any) -> None:
    from paracache.demo import SimulatedChatModel

    async def async_llm(req: AnswerRequest) -> str:
        return "async answer"

    with TestClient(create_app(make_index(), async_llm)) as c:
        assert ask(c, "hello")["answer"] == "async answer"
    sim = SimulatedChatModel(latency_scale=0, cache=False)
    with TestClient(create_app(make_index(namespace="t-svc-sim"), sim)) as c:
        out = ask(c, CARD)
        assert out["answer"].startswith("[general_enquiry]") and out["tokens"] > 0
        assert ask(c, CARD)["cached"] is True
    assert sim.calls == 1


def test_the_models_server_is_in_the_scope(make_index: Any) -> None:
    """A service restarted against another OpenAI-compatible server (``OPENAI_BASE_URL``)
    that serves other weights under the same model name must not serve the first
    server's answers; the same server spelled otherwise is the same scope."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class Served(FakeListChatModel):
        base_url: str | None = None

    index = make_index(namespace="t-svc-endpoint")
    first = Served(responses=["from server A"], base_url="http://a.example:8000/v1")
    with TestClient(create_app(index, first)) as c:
        assert ask(c, CARD)["answer"] == "from server A"
        assert ask(c, CARD)["cached"] is True
    other = Served(responses=["from server B"], base_url="http://b.example:8000/v1")
    with TestClient(create_app(index, other)) as c:
        out = ask(c, CARD)
        assert out["cached"] is False and out["answer"] == "from server B"
    again = Served(responses=["never called"], base_url="HTTP://A.example:8000/v1/")
    with TestClient(create_app(index, again)) as c:
        out = ask(c, CARD)
        assert out["cached"] is True and out["answer"] == "from server A"


# --------------------------------------------------------------------------- operations


def test_stats_before_any_hit_has_null_hit_latency(client: TestClient) -> None:
    """No hit yet: the hit percentiles are null (not 0.0, which reads as measured), in
    the JSON and in the OpenAPI schema."""
    fresh = client.get("/v1/stats").json()
    assert fresh["hit_latency_ms"] == {"p50": None, "p95": None, "p99": None}
    ask(client, CARD)  # one miss
    stats = client.get("/v1/stats").json()
    assert stats["hit_latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert stats["miss_latency_ms"]["p50"] > 0
    spec = client.get("/openapi.json").json()["components"]["schemas"]["StatsResponse"]
    assert "null" in json.dumps(spec["properties"]["hit_latency_ms"])


def test_stats_metrics_health_and_docs(client: TestClient) -> None:
    ask(client, CARD, tenant="acme-private")
    ask(client, CARD, tenant="acme-private")
    stats = client.get("/v1/stats").json()
    ns = stats["namespace"]
    assert stats["entries"] == 1 and stats["lookups"] == 2
    assert stats["exact_hits"] == 1 and stats["misses"] == 1 and stats["hit_rate"] == 0.5
    assert stats["tokens_saved"] == 150 and stats["breaker_state"] == "closed"
    assert stats["unreadable"] == 0 and stats["coalesced"] == 0
    assert stats["hit_latency_ms"]["p50"] > 0 and stats["miss_latency_ms"]["p99"] > 0

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert f'paracache_lookups_total{{namespace="{ns}",outcome="exact"}} 1.0' in r.text
    assert f'paracache_entries{{namespace="{ns}"}} 1.0' in r.text
    assert "acme-private" not in r.text

    health = client.get("/healthz").json()
    assert health == {
        "status": "ok", "redis": "reachable", "breaker": "closed", "namespace": ns,
        "version": health["version"],
    }
    spec = client.get("/openapi.json").json()
    assert {"/v1/answer", "/v1/stats", "/metrics", "/healthz"} <= set(spec["paths"])
    post = spec["paths"]["/v1/answer"]["post"]
    assert THRESHOLD_HEADER in [p["name"] for p in post["parameters"]]
    assert {"200", "400", "422", "502"} <= set(post["responses"])
    assert spec["components"]["schemas"]["AnswerRequest"]["examples"]
    assert client.get("/docs").status_code == 200


def test_redis_down_the_service_still_answers(namespace: str, llm: CountingLLM) -> None:
    url = f"redis://127.0.0.1:{_free_port()}"  # nothing listens there
    index = SemanticIndex(url, namespace=namespace, timeout=0.1)
    try:
        with TestClient(create_app(index, llm)) as c:
            out = ask(c, CARD)
            assert out["outcome"] == "error" and out["cached"] is False
            assert out["answer"].endswith(CARD)
            health = c.get("/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"
            assert health.json()["redis"] == "unreachable"
            assert c.get("/healthz?strict=true").status_code == 503
            assert c.get("/v1/stats").json()["entries"] is None
            assert c.get("/metrics").status_code == 200
    finally:
        index.close()


# --------------------------------------------------------------------------- a real process


def test_paracache_serve_as_a_real_process(redis_url: str, namespace: str) -> None:
    port = _free_port()
    env = {**os.environ, "PARACACHE_REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "paracache.cli", "serve", "--port", str(port),
         "--namespace", namespace, "--latency-scale", "0", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=base, timeout=10) as http:
            while True:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                try:
                    health = http.get("/healthz")
                    if health.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "paracache serve did not come up"
                time.sleep(0.2)
            assert health.json()["redis"] == "reachable"
            body = {"prompt": CARD, "tenant": "acme"}
            first = http.post("/v1/answer", json=body).json()
            second = http.post("/v1/answer", json=body).json()
            assert first["cached"] is False
            assert second["cached"] is True and second["layer"] == "exact"
            assert second["answer"] == first["answer"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        SemanticIndex(redis_url, namespace=namespace).clear()


# --------------------------------------------------------------------------- OpenAI-compatible


def test_openai_compatible_model_via_base_url(
    make_index: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OPENAI_BASE_URL the default model is ChatOpenAI against that API: here a fake
    OpenAI-compatible server on loopback that echoes the model and temperature it got."""
    pytest.importorskip("langchain_openai", reason="needs paracache[openai]")
    import threading

    import uvicorn

    from paracache.service import default_llm

    seen: list[dict[str, Any]] = []
    fake = FastAPI()

    @fake.post("/v1/chat/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({**body, "auth": request.headers.get("authorization")})
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": body["model"],
            "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant",
                            "content": f"{body['model']} t={body['temperature']}"},
            }],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        }

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(fake, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
        _, described = default_llm()
        assert "OpenAI-compatible" in described
        index: SemanticIndex = make_index()
        with TestClient(create_app(index)) as c:
            out = ask(c, CARD, model="local-llama", temperature=0.3, system="Be brief.")
            assert out["answer"] == "local-llama t=0.3" and out["tokens"] == 30
            assert ask(c, CARD, model="local-llama", temperature=0.3, system="Be brief.")[
                "cached"
            ]
        assert len(seen) == 1
        assert seen[0]["model"] == "local-llama" and seen[0]["temperature"] == 0.3
        assert [m["role"] for m in seen[0]["messages"]] == ["system", "user"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --------------------------------------------------------------------------- API keys

KEY_ACME = "key-acme-" + "a1" * 12
KEY_GLOBEX = "key-globex-" + "g2" * 12


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(make_index: Any, llm: CountingLLM) -> Iterator[TestClient]:
    index: SemanticIndex = make_index()
    keys = f"{KEY_ACME}:acme, {KEY_GLOBEX}:globex"
    with TestClient(create_app(index, llm, api_keys=keys)) as c:
        yield c


def test_without_a_known_key_nothing_is_answered(keyed: TestClient, llm: CountingLLM) -> None:
    for headers in (
        {},
        bearer("key-unknown-" + "x" * 20),
        bearer(KEY_ACME[:-1]),
        {"Authorization": f"Basic {KEY_ACME}"},
        {"Authorization": "Bearer"},
    ):
        r = keyed.post("/v1/answer", json={"prompt": CARD}, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert KEY_ACME not in r.text
    assert keyed.get("/v1/stats").status_code == 401
    assert llm.calls == []
    assert keyed.get("/healthz").status_code == 200  # probes and scrapers stay open
    assert keyed.get("/metrics").status_code == 200


def test_the_keys_tenant_scopes_every_request(
    keyed: TestClient, llm: CountingLLM, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    body = {"prompt": CARD, "tenant": "globex"}
    r = keyed.post("/v1/answer", json=body, headers=bearer(KEY_ACME))
    assert r.status_code == 403 and llm.calls == []
    first = ask(keyed, CARD, headers=bearer(KEY_ACME))  # no tenant in the body: the key's
    assert first["cached"] is False
    assert ask(keyed, CARD, tenant="acme", headers=bearer(KEY_ACME))["cached"] is True
    theirs = ask(keyed, CARD, headers=bearer(KEY_GLOBEX))  # the same question, other tenant
    assert theirs["cached"] is False and len(llm.calls) == 2
    assert ask(keyed, CARD_PARAPHRASE, headers=bearer(KEY_GLOBEX))["cached"] is True
    assert keyed.get("/v1/stats", headers=bearer(KEY_GLOBEX)).status_code == 200
    # Keys never reach Redis, logs or metrics.
    index: SemanticIndex = keyed.app.state.index  # type: ignore[attr-defined]
    client = redis.Redis.from_url(redis_url)
    stored = b""
    for key in client.scan_iter(f"paracache:{index.namespace}:*"):
        if client.type(key) == b"hash":
            stored += b"".join(k + v for k, v in client.hgetall(key).items())
    assert b"acme" in stored or b"globex" in stored  # what was stored is readable here
    for key in (KEY_ACME, KEY_GLOBEX):
        assert key.encode() not in stored
        assert key not in caplog.text
        assert key not in keyed.get("/metrics").text


def test_the_model_is_told_the_keys_tenant(keyed: TestClient, llm: CountingLLM) -> None:
    """The answer is cached under the key's tenant, so the model must answer for that
    tenant: a body without ``tenant`` reached the model as tenant ``""`` (a model that
    picks its documents by ``req.tenant`` answered acme from the empty tenant's, and the
    answer was cached as acme's), by JSON and by stream alike."""
    ask(keyed, CARD, headers=bearer(KEY_ACME))
    r = keyed.post(
        "/v1/answer", json={"prompt": "What are the fees?", "stream": True},
        headers=bearer(KEY_GLOBEX),
    )  # fmt: skip
    assert r.status_code == 200 and "event: done" in r.text
    assert [req.tenant for req in llm.calls] == ["acme", "globex"]


def test_a_keys_file_saved_with_a_byte_order_mark_is_read(tmp_path: Any) -> None:
    """An editor that saves UTF-8 with a BOM (Notepad) put U+FEFF before the first key:
    "API key 1 has characters a Bearer token cannot carry", for a key that has none."""
    from paracache.auth import ApiKeys

    path = tmp_path / "keys.txt"
    path.write_bytes(f"\ufeff{KEY_ACME}:acme\r\n{KEY_GLOBEX}:globex\r\n".encode())
    keys = ApiKeys.from_file(path)
    assert keys.tenants == {"acme", "globex"}
    assert keys.authenticate(f"Bearer {KEY_ACME}") is not None


def test_api_keys_are_checked_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from paracache.auth import ApiKeys

    with pytest.raises(ValueError, match="shorter"):
        ApiKeys.parse("short:acme")
    with pytest.raises(ValueError, match="twice"):
        ApiKeys.parse(f"{KEY_ACME}:acme,{KEY_ACME}:globex")
    with pytest.raises(ValueError, match="key:tenant") as caught:
        ApiKeys.parse(KEY_ACME)
    assert KEY_ACME not in str(caught.value)  # a key is never echoed
    with pytest.raises(ValueError, match="tenant"):
        ApiKeys.parse(f"{KEY_ACME}:")
    with pytest.raises(ValueError, match="comment") as caught:  # not tenant "acme  # prod"
        ApiKeys.parse(f"{KEY_ACME}:acme  # prod")
    assert KEY_ACME not in str(caught.value)
    keys = ApiKeys.parse(f"# ops keys\n{KEY_ACME}:acme:eu\n\n{KEY_GLOBEX}:globex\n")
    assert keys.tenants == {"acme:eu", "globex"} and KEY_ACME not in repr(keys)
    monkeypatch.setenv("PARACACHE_API_KEYS", f"{KEY_ACME}:acme")
    from_env = ApiKeys.from_env()
    assert from_env is not None and from_env.authenticate(f"Bearer {KEY_ACME}") is not None
    monkeypatch.setenv("PARACACHE_API_KEYS", "")
    assert ApiKeys.from_env() is None


def test_serve_refuses_to_listen_beyond_loopback_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from paracache.cli import main

    monkeypatch.delenv("PARACACHE_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err
    assert err.startswith("paracache serve: no API keys") and err.count("paracache serve:") == 1
    assert main(["serve", "--api-keys", str(tmp_path / "missing")]) == 2
    bad = tmp_path / "keys"
    bad.write_text(f"{KEY_ACME}\n")
    assert main(["serve", "--api-keys", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "key:tenant" in err and KEY_ACME not in err


async def _all_looked_up(index: SemanticIndex, n: int) -> None:
    """Wait until ``n`` lookups were made, then a little longer: every miss reaches the
    model or the flight it waits on."""
    import asyncio

    deadline = time.monotonic() + 60
    while index.stats().lookups < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)


async def test_concurrent_identical_misses_make_one_model_call(make_index: Any) -> None:
    """Single-flight (README: on by default in the service) for plain JSON answers too,
    not only for streamed ones: eight identical concurrent misses, one model call."""
    import asyncio

    index: SemanticIndex = make_index()
    hold = asyncio.Event()
    calls: list[str] = []

    async def slow(req: AnswerRequest) -> LLMReply:
        calls.append(req.prompt)
        await hold.wait()
        return LLMReply("Open the app and tap Activate.", 12)

    app = create_app(index, slow)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:

        async def ask_once() -> dict[str, Any]:
            r = await client.post("/v1/answer", json={"prompt": CARD})
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        tasks = [asyncio.create_task(ask_once()) for _ in range(8)]
        await _all_looked_up(index, 8)
        hold.set()
        got = await asyncio.gather(*tasks)
    assert calls == [CARD]
    assert [g["answer"] for g in got] == ["Open the app and tap Activate."] * 8
    assert sum(1 for g in got if g["cached"]) == 7
    assert {g["layer"] for g in got if g["cached"]} == {"in-flight"}
    assert index.stats().coalesced == 7  # paracache_coalesced_total
    assert index.count() == 1


async def test_a_failing_leader_hands_the_question_to_a_waiter(make_index: Any) -> None:
    """The request whose model call fails gets its 502; the requests that waited on it
    are not failed with it: one of them calls the model, the others get that answer."""
    import asyncio

    index: SemanticIndex = make_index()
    hold = asyncio.Event()
    calls: list[str] = []

    async def flaky(req: AnswerRequest) -> LLMReply:
        calls.append(req.prompt)
        await hold.wait()
        if len(calls) == 1:
            raise ConnectionError("upstream down")
        return LLMReply("Open the app and tap Activate.", 12)

    app = create_app(index, flaky)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        tasks = [
            asyncio.create_task(client.post("/v1/answer", json={"prompt": CARD}))
            for _ in range(4)
        ]
        await _all_looked_up(index, 4)
        hold.set()
        got = await asyncio.gather(*tasks)
    assert sorted(r.status_code for r in got) == [200, 200, 200, 502]
    assert len(calls) == 2
    assert {r.json()["answer"] for r in got if r.status_code == 200} == {
        "Open the app and tap Activate."
    }


def test_min_similarity_beside_an_index_is_refused(make_index: Any, llm: CountingLLM) -> None:
    """create_app's min_similarity= is for the index it builds; beside index= it was
    silently ignored (the service ran at the index's 0.90)."""
    index: SemanticIndex = make_index()
    with pytest.raises(ValueError, match="give min_similarity= to the SemanticIndex"):
        create_app(index, llm, min_similarity=0.95)
    strict = make_index(min_similarity=0.95)
    with TestClient(create_app(strict, llm)) as c:
        assert ask(c, CARD)["min_similarity"] == 0.95
