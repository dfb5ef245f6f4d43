"""``paracache serve``: the cache as an HTTP service in front of a chat model.

For applications that are not written in Python: they ``POST /v1/answer`` a question
(with system prompt, model, temperature and tenant) and get the answer, from the cache
when it is safe to, else from the chat model (and then cached). The service answers
with how: which layer served it, at what similarity, how long it took.

==============================  ===================================================
``POST /v1/answer``             the answer (cached or not); ``X-Paracache-Min-Similarity``
                                overrides the threshold for one request; ``"stream": true``
                                answers with server-sent events
                                (:mod:`paracache.service_stream`)
``GET /v1/stats``               this process's counters and the entries in Redis
``GET /metrics``                Prometheus text (``paracache_*`` and process metrics)
``GET /healthz``                Redis reachability and the circuit breaker's state
``GET /docs``, ``/openapi.json``  the API, interactive (FastAPI)
==============================  ===================================================

Who is asking: with API keys configured (``PARACACHE_API_KEYS`` or ``api_keys=``:
``key:tenant`` pairs, see :mod:`paracache.auth`), ``POST /v1/answer`` and ``GET /v1/stats``
need ``Authorization: Bearer <key>`` (401 without it or with an unknown key); the key's
tenant scopes every lookup and store, and a body naming another tenant gets 403.
``/healthz`` and ``/metrics`` stay open (for probes and scrapers; they carry no tenant
data). ``/v1/stats``'s counters, like ``/metrics``', are the whole service's: every
tenant's traffic summed, whichever key asks (no question or answer of any tenant).
Without keys the body's ``tenant`` is trusted: bind to loopback only (``paracache serve``
refuses another address without keys unless given ``--no-auth``).

The chat model: an OpenAI-compatible API through ``langchain_openai.ChatOpenAI`` when
``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set (``pip install 'paracache[openai]'``),
else the demo's simulated model (canned Banking77 support answers, API-like latency).
Or pass your own to :func:`create_app`: a LangChain chat model, or a function of an
:class:`AnswerRequest` returning the answer text (or an :class:`LLMReply`).

Rate limits (``create_app(rate_limits=[Limit("answer", 5, burst=10)])``, ``paracache serve
--rate-limit 5``): each caller has its own tier of the same limits, kept in Redis (shared by
every worker process); a request over its caller's limit is answered ``429`` with
``Retry-After`` (seconds) and reaches neither the cache nor the model. The caller is the
request's API key, or its tenant on a service without keys (see :func:`caller_id`); a
request refused 401/403 takes nothing from any limit. Redis unreachable: requests are
admitted (fail-open, logged and counted).

Example:
    >>> from paracache.service import create_app
    >>> app = create_app(namespace="support")      # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000), or: paracache serve --port 8000
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import importlib.util
import inspect
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._version import __version__
from .auth import ApiKeys, Principal
from .index import SemanticIndex
from .limiter import KeyedLimits, Limit
from .scope import Scope, digest, endpoints_of
from .service_stream import Piece, answer_events
from .singleflight import SingleFlight
from .values import Verdict, check_similarity

__all__ = [
    "THRESHOLD_HEADER",
    "AnswerRequest",
    "AnswerResponse",
    "HealthResponse",
    "LLMReply",
    "StatsResponse",
    "create_app",
    "default_llm",
    "exposure",
    "serve",
]

logger = logging.getLogger("paracache.service")

#: The header that overrides ``min_similarity`` for one request.
THRESHOLD_HEADER = "X-Paracache-Min-Similarity"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_NAMESPACE = "service"
MAX_PROMPT_CHARS = 16_384
MAX_SYSTEM_CHARS = 32_768


# --------------------------------------------------------------------------- API models


class AnswerRequest(BaseModel):
    """A question for the model, and everything its answer depends on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "How do I activate my new card?",
                    "system": "You are a helpful banking support assistant.",
                    "model": "gpt-4o-mini",
                    "temperature": 0,
                    "tenant": "acme",
                }
            ]
        },
    )

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The user's message: what the semantic layer matches on.",
    )
    system: str = Field(
        "",
        max_length=MAX_SYSTEM_CHARS,
        description="System prompt. Part of the cache scope: a different one never shares answers.",
    )
    model: str = Field(
        DEFAULT_MODEL,
        min_length=1,
        max_length=200,
        description="Chat model name, passed to the model and part of the scope.",
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="Sampling temperature, part of the scope. Above the cache's "
        "max_temperature (1.0) requests bypass the cache.",
    )
    tenant: str = Field(
        "",
        max_length=200,
        description="Whose request this is. Tenants never see each other's entries.",
    )
    stream: bool = Field(
        False,
        description="Answer as server-sent events (text/event-stream): `meta`, then "
        "`delta` pieces (a cached answer replayed word by word, a miss as the model "
        "streams it), then `done` with the full response, or `error`.",
    )


class AnswerResponse(BaseModel):
    """The answer and how it was found."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "answer": "Open the app, choose Cards and tap Activate.",
                    "cached": True,
                    "outcome": "semantic",
                    "layer": "semantic",
                    "similarity": 0.942,
                    "min_similarity": 0.9,
                    "latency_ms": 6.1,
                    "lookup_ms": 5.8,
                    "tokens": 142,
                    "entry_id": "9f2c4b1de0a34c5e8f7a6b5c4d3e2f10",
                }
            ]
        }
    )

    answer: str = Field(description="The model's answer (possibly from the cache).")
    cached: bool = Field(description="Whether the answer came from the cache.")
    outcome: Literal["exact", "semantic", "miss", "bypass", "error", "unreadable"] = Field(
        description="What the lookup decided: a hit by layer, a miss, a bypass (not cacheable, "
        "e.g. high temperature), an error (Redis unavailable: answered by the model) or "
        "unreadable (no exact match, and text the embedding model cannot read is never "
        "matched by similarity)."
    )
    layer: Literal["exact", "semantic", "in-flight"] | None = Field(
        description="The layer that served a cached answer, else null; `in-flight`: the "
        "answer of an identical request that missed at the same time (single-flight: one "
        "model call for both; its outcome stays `miss`)."
    )
    similarity: float | None = Field(
        description="Cosine similarity of the best in-scope cached question (1.0 for an "
        "exact hit), also on a miss; null if there was none."
    )
    min_similarity: float = Field(description="The threshold this request used.")
    latency_ms: float = Field(description="Time to answer, in the service.")
    lookup_ms: float = Field(description="Of which the cache lookup.")
    tokens: int = Field(description="LLM tokens of the answer (saved, if cached).")
    entry_id: str | None = Field(description="The cache entry that served or stores it.")


class StatsResponse(BaseModel):
    """This process's cache counters (since start) and the entries Redis holds."""

    namespace: str
    min_similarity: float
    entries: int | None = Field(description="Entries in Redis; null if unreachable.")
    lookups: int
    hits: int
    exact_hits: int
    semantic_hits: int
    misses: int
    bypasses: int
    errors: int
    rejections: int
    unreadable: int = Field(0, description="Lookups of text the embedder cannot read.")
    writes: int
    writes_dropped: int
    writes_skipped: int
    coalesced: int = Field(0, description="Misses answered by another caller's model call.")
    tokens_saved: int
    hit_rate: float
    breaker_state: str
    hit_latency_ms: dict[str, float | None] = Field(
        description="p50/p95/p99 of hit lookups, ms; null while there has been no hit."
    )
    miss_latency_ms: dict[str, float | None] = Field(
        description="p50/p95/p99 of missed lookups, ms; null while there has been no miss."
    )
    errors_by_kind: dict[str, int]
    learning: dict[str, Any] | None = Field(
        None,
        description="With max_error_rate: what the error bound did in this process "
        "(labels, wrong, explorations, explored_labels, explored_wrong, dropped, ..., "
        "observed_error: [estimate, low, high] or null); per-scope thresholds are left "
        "out. Null without the bound.",
    )


class HealthResponse(BaseModel):
    """Whether the service can reach its Redis. It answers either way (fail-open)."""

    status: Literal["ok", "degraded"] = Field(
        description="degraded: Redis is unreachable, answers come from the model only."
    )
    redis: Literal["reachable", "unreachable"]
    breaker: str = Field(description="The circuit breaker: closed, open or half-open.")
    namespace: str
    version: str


class ErrorResponse(BaseModel):
    """A request the service refused."""

    detail: str


# --------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class LLMReply:
    """What the chat model answered and the tokens it cost (0 if unknown)."""

    text: str
    tokens: int = 0


LLM = Callable[[AnswerRequest], Awaitable[LLMReply]]
StreamLLM = Callable[[AnswerRequest], AsyncIterator[Piece]]


def _langchain_llm(model: Any, pass_settings: bool) -> LLM:
    """Call a LangChain chat model with the request's messages (and model/temperature)."""
    from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

    async def call(req: AnswerRequest) -> LLMReply:
        messages: list[BaseMessage] = [SystemMessage(req.system)] if req.system else []
        messages.append(HumanMessage(req.prompt))
        kwargs: dict[str, Any] = (
            {"model": req.model, "temperature": req.temperature} if pass_settings else {}
        )
        message = await model.ainvoke(messages, **kwargs)
        usage = getattr(message, "usage_metadata", None) or {}
        return LLMReply(str(message.text), int(usage.get("total_tokens", 0) or 0))

    return call


def _langchain_stream(model: Any, pass_settings: bool) -> StreamLLM:
    """Stream a LangChain chat model's answer: text pieces, then ``(text, tokens)``."""
    from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

    async def stream(req: AnswerRequest) -> AsyncIterator[Piece]:
        messages: list[BaseMessage] = [SystemMessage(req.system)] if req.system else []
        messages.append(HumanMessage(req.prompt))
        kwargs: dict[str, Any] = (
            {"model": req.model, "temperature": req.temperature} if pass_settings else {}
        )
        parts: list[str] = []
        tokens = 0
        async for chunk in model.astream(messages, **kwargs):
            usage = getattr(chunk, "usage_metadata", None) or {}
            tokens += int(usage.get("total_tokens", 0) or 0)
            if piece := str(chunk.text):
                parts.append(piece)
                yield piece
        yield "".join(parts), tokens

    return stream


def _call_stream(call: LLM) -> StreamLLM:
    """A model that cannot stream, streamed as one piece."""

    async def stream(req: AnswerRequest) -> AsyncIterator[Piece]:
        reply = await call(req)
        yield reply.text
        yield reply.text, reply.tokens

    return stream


def _as_llm(llm: Any) -> LLM:
    if hasattr(llm, "ainvoke"):
        return _langchain_llm(llm, pass_settings=False)
    if not callable(llm):
        raise TypeError("llm must be a LangChain chat model or a function of an AnswerRequest")

    async def call(req: AnswerRequest) -> LLMReply:
        out = llm(req)
        if inspect.isawaitable(out):
            out = await out
        if isinstance(out, LLMReply):
            return out
        if isinstance(out, str):
            return LLMReply(out)
        raise TypeError(f"the llm function must return str or LLMReply, got {type(out)!r}")

    return call


def default_llm(*, simulate: bool | None = None, latency_scale: float = 1.0) -> tuple[LLM, str]:
    """The chat model ``paracache serve`` uses, and a description of it.

    An OpenAI-compatible API (``langchain_openai.ChatOpenAI``; the request's model and
    temperature are passed through) when ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set
    and ``simulate`` is not true; otherwise the demo's simulated model.
    """
    model, pass_settings, described = _default_model(simulate, latency_scale)
    return _langchain_llm(model, pass_settings), described


def _default_model(simulate: bool | None, latency_scale: float) -> tuple[Any, bool, str]:
    """:func:`default_llm`'s LangChain chat model, whether the request's model and
    temperature are passed to it, and its description."""
    key = os.environ.get("OPENAI_API_KEY")
    base_url = os.environ.get("OPENAI_BASE_URL")
    if simulate is None:
        simulate = not (key or base_url)
        if not simulate and importlib.util.find_spec("langchain_openai") is None:
            logger.warning(
                "paracache serve: OPENAI_API_KEY/OPENAI_BASE_URL is set but langchain-openai "
                "is not installed (pip install 'paracache[openai]'); using the simulated model"
            )
            simulate = True
    if not simulate:
        from langchain_openai import ChatOpenAI  # type: ignore[import-not-found,unused-ignore]

        # A local OpenAI-compatible server may need no key; the client insists on one.
        chat = ChatOpenAI(
            model=DEFAULT_MODEL,
            base_url=base_url or None,
            api_key=SecretStr(key or "unused"),
            cache=False,
        )
        where = f"OpenAI-compatible API at {base_url}" if base_url else "OpenAI API"
        return chat, True, where
    from .demo import SimulatedChatModel, _normalize, load_questions

    intents = {_normalize(q.text): q.intent for q in load_questions()}
    sim = SimulatedChatModel(intents=intents, latency_scale=latency_scale, cache=False)
    return sim, False, "simulated chat model (no API key)"


# --------------------------------------------------------------------------- the app


class _JSONResponse(JSONResponse):
    """JSON any ``str`` can be sent in: a lone surrogate (a model's answer whose pair a
    streaming API split, or request text echoed in a 422) is escaped as ``\\udXXX``
    instead of failing the response (UTF-8 cannot encode it)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
            return text.encode("ascii")


#: The most characters of a refused value a 422 echoes back.
_ECHOED_CHARS = 200


def _clipped(value: Any) -> Any:
    """A refused value as a 422 echoes it: a long one clipped (a 2 MB prompt is not sent
    back whole)."""
    if isinstance(value, str):
        return value if len(value) <= _ECHOED_CHARS else value[:_ECHOED_CHARS] + "…"
    if isinstance(value, (dict, list)):
        text = json.dumps(jsonable_encoder(value), ensure_ascii=False, default=str)
        return value if len(text) <= _ECHOED_CHARS else text[:_ECHOED_CHARS] + "…"
    return value


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 (``detail``: a list of ``type``/``loc``/``msg``/``input``), with the
    ``input`` clipped and renderable whatever text it holds."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {**error, "input": _clipped(error["input"])} if "input" in error else error
        for error in errors
    ]
    return _JSONResponse(status_code=422, content={"detail": jsonable_encoder(detail)})


def _caller(request: Request) -> Principal | None:
    """Who is asking: the principal of the request's API key (``None`` when the app has
    no keys); 401 when it has keys and the request presents none or an unknown one. The
    place for per-key limits: they key on ``Principal.key_id``. Keys are never logged."""
    keys: ApiKeys | None = request.app.state.api_keys
    if keys is None:
        return None
    principal = keys.authenticate(request.headers.get("authorization"))
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="an API key is needed: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


#: A route parameter: the request's :class:`~paracache.auth.Principal` (or ``None``).
Caller = Annotated[Principal | None, Depends(_caller)]


def _threshold(header: str | None, default: float) -> float:
    if header is None:
        return default
    try:
        return check_similarity(float(header.strip()), THRESHOLD_HEADER)
    except (TypeError, ValueError) as exc:
        raise HTTPException(
            status_code=400,
            detail=f"{THRESHOLD_HEADER} must be a number in [0, 1] (cosine similarity), "
            f"got {header[:40]!r}",
        ) from exc


def _response(
    verdict: Verdict,
    answer: str,
    tokens: int,
    threshold: float,
    t0: float,
    entry_id: str | None,
    *,
    in_flight: bool = False,
) -> AnswerResponse:
    hit = verdict.hit
    return AnswerResponse(
        answer=answer,
        cached=hit is not None or in_flight,
        outcome=verdict.outcome,
        layer=hit.layer if hit else "in-flight" if in_flight else None,
        similarity=verdict.similarity,
        min_similarity=threshold,
        latency_ms=round((time.perf_counter() - t0) * 1000.0, 3),
        lookup_ms=round(verdict.latency_ms, 3),
        tokens=tokens,
        entry_id=entry_id,
    )


def caller_id(principal: Principal | None, tenant: str) -> str:
    """Whom a request's rate limits are kept for: its API key (``Principal.key_id``; the
    key itself is never used), else, on a service without keys, its tenant. Callers never
    share a tier.

    Example:
        >>> caller_id(None, "acme")
        'tenant:acme'
    """
    if principal is not None:
        return f"key:{principal.key_id}"
    return f"tenant:{tenant}"


async def _admit(limits: KeyedLimits, caller: str) -> None:
    """Raise ``429`` with ``Retry-After`` when ``caller`` is over its limits."""
    decision = await limits.adecide(caller)
    if not decision.admitted:
        wait = decision.retry_after
        seconds = 3600 if math.isinf(wait) else max(1, math.ceil(wait))
        raise HTTPException(
            status_code=429,
            detail=f"rate limit exceeded: retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


async def _redis_reachable(url: str, timeout: float = 1.0) -> bool:
    client = aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


#: Where a LangChain chat model keeps its server's URL (ChatOpenAI's ``openai_api_base``,
#: set by ``base_url=`` or ``OPENAI_BASE_URL``; other providers' ``base_url`` ...).
MODEL_ENDPOINT_KEYS = ("openai_api_base", "base_url", "api_base", "azure_endpoint", "endpoint")


def model_endpoint(model: Any) -> str | None:
    """The server a chat model calls, normalised (:func:`paracache.scope.normalize_endpoint`),
    or ``None`` when it names none (a function, the simulated model, OpenAI's own API
    without ``base_url``).

    Example:
        >>> class Chat:
        ...     openai_api_base = "http://LOCALHOST:8000/v1/"
        >>> model_endpoint(Chat()), model_endpoint(len)
        ('http://localhost:8000/v1', None)
    """
    return next(iter(endpoints_of(model, MODEL_ENDPOINT_KEYS).values()), None)


def create_app(
    index: SemanticIndex | None = None,
    llm: Any = None,
    *,
    api_keys: ApiKeys | str | None = None,
    redis_url: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    min_similarity: float | None = None,
    max_error_rate: float | None = None,
    metrics: bool = True,
    simulate: bool | None = None,
    latency_scale: float = 1.0,
    rate_limits: Sequence[Limit] | KeyedLimits | None = None,
) -> FastAPI:
    """The FastAPI app of the cache service.

    Args:
        index: The cache (default: a :class:`SemanticIndex` on ``redis_url`` in
            ``namespace``, closed when the app shuts down).
        llm: The chat model: a LangChain chat model, or a function (sync or async) of an
            :class:`AnswerRequest` returning ``str`` or :class:`LLMReply` (its ``tenant``
            is the one the answer is cached for: the API key's, with keys). Default:
            :func:`default_llm`.
        api_keys: Who may ask, and as which tenant: an :class:`~paracache.auth.ApiKeys`
            or its text (``key:tenant`` pairs, comma-separated). Default: the
            ``PARACACHE_API_KEYS`` environment variable; unset, nobody is asked for a
            key (the body's ``tenant`` is trusted: keep the service on loopback).
        redis_url: For the default index (default: ``PARACACHE_REDIS_URL``, ``REDIS_URL``,
            else an embedded Redis).
        namespace: For the default index.
        min_similarity: For the default index (default 0.90); with ``index=``, give it
            to that index (a ``ValueError`` here).
        max_error_rate: For the default index: δ, the error bound learned from traffic
            (``SemanticIndex(max_error_rate=...)``); each miss's fresh answer labels it.
            Requests without the threshold header then use the learned threshold.
        metrics: Export Prometheus metrics (``GET /metrics``).
        simulate: For the default model: force (``True``) or forbid (``False``) the
            simulated model.
        latency_scale: The simulated model's latency factor (0: instant).
        rate_limits: Limits applied per caller to ``POST /v1/answer`` (429 with
            ``Retry-After`` beyond them), on the index's Redis and namespace; or a
            :class:`paracache.limiter.KeyedLimits` of your own. Default: none.

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> client = TestClient(create_app(llm=lambda req: "42"))  # doctest: +SKIP
        >>> client.post("/v1/answer", json={"prompt": "?"}).json()["cached"]  # doctest: +SKIP
        False
    """
    keys = ApiKeys.parse(api_keys) if isinstance(api_keys, str) else api_keys
    if keys is None:
        keys = ApiKeys.from_env()
    elif not isinstance(keys, ApiKeys):
        raise TypeError(f"api_keys must be ApiKeys or str, got {type(api_keys).__name__}")
    owned = index is None
    if index is None:
        index = SemanticIndex(
            redis_url, namespace=namespace, min_similarity=min_similarity,
            max_error_rate=max_error_rate,
        )  # fmt: skip
    elif max_error_rate is not None or min_similarity is not None:
        name = "max_error_rate" if max_error_rate is not None else "min_similarity"
        raise ValueError(f"give {name}= to the SemanticIndex passed as index=")
    elif not isinstance(index, SemanticIndex):
        raise TypeError(f"index must be a SemanticIndex, got {type(index).__name__}")
    if llm is None:
        model, pass_settings, described = _default_model(simulate, latency_scale)
        call = _langchain_llm(model, pass_settings)
        streamer = _langchain_stream(model, pass_settings)
    else:
        model, described = llm, type(llm).__name__
        call = _as_llm(llm)
        streamer = (
            _langchain_stream(llm, False) if hasattr(llm, "astream") else _call_stream(call)
        )
    # The model's server, when it names one, is part of every answer's scope: a service
    # restarted against another OpenAI-compatible server (OPENAI_BASE_URL) serving other
    # weights under the same model name does not serve the old server's answers.
    served_by = model_endpoint(model)
    endpoint_field = {"endpoint": served_by} if served_by else {}
    flights = SingleFlight(index)
    owned_limits = rate_limits is not None and not isinstance(rate_limits, KeyedLimits)
    limits: KeyedLimits | None
    if rate_limits is None or isinstance(rate_limits, KeyedLimits):
        limits = rate_limits
    else:
        limits = KeyedLimits(
            list(rate_limits), redis_url=redis_url or index.redis_url, namespace=index.namespace
        )
    if metrics:
        from .observability import instrument

        instrument(index)
    cache = index

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warmup = getattr(cache.vectorizer, "warmup", None)
        if callable(warmup):  # load the embedding model before the first request
            await asyncio.to_thread(warmup)
        yield
        if owned:
            await cache.aclose()
            cache.close()
        if limits is not None and owned_limits:
            await limits.aclose()

    app = FastAPI(
        title="paracache",
        version=__version__,
        summary="A semantic cache in front of a chat model.",
        description=(
            "Ask `POST /v1/answer`: the answer comes from the cache when a question with "
            "the same scope (model, temperature, system prompt, tenant) and a similar "
            f"enough meaning was answered before, else from the model ({described}). "
            f"`{THRESHOLD_HEADER}` overrides the similarity threshold for one request."
        ),
        lifespan=lifespan,
        default_response_class=_JSONResponse,
        exception_handlers={RequestValidationError: _invalid_request},
    )
    app.state.index = index
    app.state.limits = limits
    app.state.llm_description = described
    app.state.api_keys = keys

    @app.post(
        "/v1/answer",
        response_model=AnswerResponse,
        tags=["cache"],
        summary="Answer a question, from the cache when safe",
        responses={
            200: {
                "description": "The answer; with `\"stream\": true`, server-sent events "
                "(`meta`, `delta`..., `done` or `error`)",
                "content": {"text/event-stream": {}},
            },
            400: {"model": ErrorResponse, "description": "A bad header value"},
            401: {"model": ErrorResponse, "description": "No API key, or an unknown one"},
            403: {"model": ErrorResponse, "description": "The body names another tenant "
                  "than the API key's"},
            429: {"model": ErrorResponse, "description": "Over the caller's rate limit; "
                  "`Retry-After` says in how many seconds to retry"},
            422: {"description": "The body is not a valid AnswerRequest"},
            502: {"model": ErrorResponse, "description": "The chat model failed"},
        },
    )
    async def answer(
        body: AnswerRequest,
        principal: Caller,
        min_similarity: Annotated[
            str | None,
            Header(
                alias=THRESHOLD_HEADER,
                description="Cosine similarity in [0, 1] a semantic hit needs, for this "
                "request only (higher is stricter).",
            ),
        ] = None,
    ) -> AnswerResponse | StreamingResponse:
        tenant = body.tenant
        if principal is not None:
            if tenant and not _same(tenant, principal.tenant):
                raise HTTPException(
                    status_code=403, detail="the body names another tenant than the API key's"
                )
            tenant = principal.tenant
            if body.tenant != tenant:  # the model answers for the tenant it is cached as
                body = body.model_copy(update={"tenant": tenant})
        threshold = _threshold(min_similarity, cache.settings.min_similarity)
        if limits is not None:
            await _admit(limits, caller_id(principal, tenant))
        t0 = time.perf_counter()
        scope = Scope(
            model=body.model,
            tenant=tenant,
            params={"temperature": body.temperature},
            context=digest("service/v1", body.system),
            fields=endpoint_field,
        )
        per_request: float | None = threshold
        if min_similarity is None and cache.learner is not None:  # the learned threshold
            per_request = None
            threshold = cache.learner.threshold(scope.digest(), scope, threshold)[0]
        if body.stream:
            events = answer_events(
                cache, flights, body.prompt, scope, threshold,
                lambda: streamer(body),
                lambda v, text, tokens, entry, t: _response(
                    v, text, tokens, threshold, t, entry
                ).model_dump(mode="json"),
                learned=per_request is None,
            )
            return StreamingResponse(
                events, media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        verdict = await cache.alookup_verdict(body.prompt, scope, min_similarity=per_request)
        if verdict.hit is not None:
            hit = verdict.hit
            return _response(verdict, hit.response, hit.tokens, threshold, t0, hit.entry_id)
        # A failed model (or a client gone): no answer; its waiters elect another leader.
        async with flights.aflight(body.prompt, scope, join=verdict.missed) as claim:
            if claim.payload is not None:  # another request's answer
                return _response(
                    verdict, claim.payload, 0, threshold, t0, None, in_flight=True
                )  # fmt: skip
            try:
                reply = await call(body)
            except Exception as exc:
                logger.warning("paracache service: the chat model failed: %r", exc)
                raise HTTPException(
                    status_code=502, detail=f"the chat model failed: {type(exc).__name__}"
                ) from exc
            entry_id = await cache.astore(
                body.prompt, reply.text, scope, tokens=reply.tokens,
                metadata={"source": "service"},
            )  # fmt: skip
            claim.stored(reply.text)
        return _response(verdict, reply.text, reply.tokens, threshold, t0, entry_id)

    @app.get(
        "/v1/stats",
        response_model=StatsResponse,
        tags=["operations"],
        summary="This process's counters and the entries in Redis",
    )
    async def stats(principal: Caller) -> StatsResponse:
        entries = await _entries(cache, metrics)
        data = cache.stats().as_dict()
        learning = data.pop("learning", None) or None
        if learning is not None:  # scope digests: every tenant's, not the caller's to see
            learning = {k: v for k, v in learning.items() if k != "thresholds"}
        return StatsResponse(
            namespace=cache.namespace,
            min_similarity=cache.settings.min_similarity,
            entries=entries,
            learning=learning,
            **{k: v for k, v in data.items() if k in StatsResponse.model_fields},
        )

    @app.get(
        "/healthz",
        response_model=HealthResponse,
        tags=["operations"],
        summary="Redis reachability and the circuit breaker",
        responses={
            503: {"model": HealthResponse, "description": "strict=true and Redis is unreachable"}
        },
    )
    async def healthz(
        response: Response,
        strict: Annotated[
            bool, Query(description="Answer 503 (not 200) while Redis is unreachable.")
        ] = False,
    ) -> HealthResponse:
        reachable = await _redis_reachable(cache.redis_url)
        if strict and not reachable:
            response.status_code = 503
        return HealthResponse(
            status="ok" if reachable else "degraded",
            redis="reachable" if reachable else "unreachable",
            breaker=cache.core.breaker.state,
            namespace=cache.namespace,
            version=__version__,
        )

    if metrics:

        @app.get(
            "/metrics",
            tags=["operations"],
            summary="Prometheus metrics",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}}},
        )
        async def prometheus() -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

            from .observability import arefresh_entries

            await arefresh_entries(cache)
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def _same(a: str, b: str) -> bool:
    """Tenant names compared in constant time (as keys are)."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


async def _entries(index: SemanticIndex, metrics: bool) -> int | None:
    if metrics:
        from .observability import arefresh_entries

        return await arefresh_entries(index)
    if index.core.breaker.state == "open":
        return None
    try:
        return await asyncio.wait_for(index.acount(), 2.0)
    except Exception:
        return None


def exposure(host: str, keys: ApiKeys | None, *, no_auth: bool = False) -> str:
    """What the service tells at start-up about who may ask it; ``ValueError`` for an
    address other than loopback without API keys, unless ``no_auth`` says so on purpose.

    Example:
        >>> exposure("127.0.0.1", None)[:39]
        'no API keys: requests are not authentic'
        >>> exposure("0.0.0.0", None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: no API keys configured: refusing to listen on 0.0.0.0, where anyone ...
    """
    if keys is not None:
        return (
            f"API keys: {len(keys)} keys for {len(keys.tenants)} tenants; requests need "
            "Authorization: Bearer <key>, and each key's tenant scopes its requests"
        )
    if not _loopback(host) and not no_auth:
        raise ValueError(
            f"no API keys configured: refusing to listen on {host}, where anyone who can "
            "reach it could read any tenant's cached answers; set PARACACHE_API_KEYS or "
            "--api-keys FILE, or pass --no-auth"
        )
    where = "loopback only" if _loopback(host) else f"{host}, WITHOUT authentication (--no-auth)"
    return (
        "no API keys: requests are not authenticated and the body's tenant is trusted; "
        f"listening on {where}"
    )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    no_auth: bool = False,
    **options: Any,
) -> None:
    """Run the service with uvicorn until interrupted (``paracache serve``). Without API
    keys it listens on loopback only unless ``no_auth`` (see :func:`exposure`)."""
    import uvicorn

    keys = options.pop("api_keys", None)
    keys = ApiKeys.parse(keys) if isinstance(keys, str) else keys or ApiKeys.from_env()
    told = exposure(host, keys, no_auth=no_auth)
    app = create_app(api_keys=keys, **options)
    logger.warning(
        "paracache service on http://%s:%d (model: %s); %s",
        host, port, app.state.llm_description, told,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
