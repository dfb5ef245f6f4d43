"""CachedLLM: exact caching of any LlamaIndex LLM's complete/chat calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import LLM

from ..bound import check_delta
from ..errors import CacheClosedError
from ..index import SemanticIndex
from ..replay import replay_chunks
from ..scope import Scope, canonical_json, digest
from ..singleflight import Claim, SingleFlight
from ..values import Verdict
from ._shared import (
    _MIRRORED,
    _R,
    PARAM_KEYS,
    WrapsLLM,
    _attr,
    _emit,
    _json_dict,
    _resolve_index,
    llm_scope,
)

logger = logging.getLogger("paracache")

# --------------------------------------------------------------------------- LLM


class CachedLLM(LLM, WrapsLLM):
    """An LLM whose ``complete``/``chat`` and their streams (sync and async) are cached exactly.

    The key is the full prompt (every message) and the wrapped LLM's model and sampling
    settings; only the exact layer is used. A cached answer asked for as a stream
    (``stream_chat``, ``stream_complete`` and their async twins) is replayed as word
    deltas; a streamed miss is stored once its stream ended cleanly, under the same key
    as the non-streamed call (an answer stored by ``chat`` is a hit for ``stream_chat``).
    Identical concurrent misses make one call (:mod:`paracache.singleflight`). Calls
    with non-JSON arguments (e.g. ``tools``) are not cached. It does not claim
    function calling (``metadata.is_function_calling_model`` is ``False``), so LlamaIndex
    treats it as a text model: ``FunctionAgent`` refuses it, ``AgentWorkflow`` builds a
    ``ReActAgent`` over it and ``structured_predict`` parses JSON text. Use the wrapped
    LLM directly for tool use and function-calling programs.

    **With** ``max_error_rate=δ`` the last message (or the prompt of ``complete``) is
    also matched by meaning, everything else of the call (earlier messages, the last
    message's role, model, settings) staying in the scope, and the error bound decides
    where a similar last message is served: at most δ wrong answers per lookup, learned
    from the wrapped LLM's own answers to the misses (:mod:`paracache.bound`; cold:
    the static threshold and guards). A last message with non-text blocks (images,
    ...) keeps the exact match. Without ``max_error_rate`` only exact repeats are
    served, as before.

    Example:
        >>> from llama_index.core import Settings
        >>> Settings.llm = CachedLLM(OpenAI(model="gpt-4o-mini"), namespace="llm")  # doctest: +SKIP
        >>> learned = CachedLLM(OpenAI(model="gpt-4o-mini"), max_error_rate=0.02)  # doctest: +SKIP
    """

    llm: LLM = Field(description="The wrapped LLM.")
    tenant: str = Field(default="", description="Whose entries these are.")
    scope_fields: dict[str, Any] = Field(default_factory=dict)
    _cache: SemanticIndex = PrivateAttr()
    _flights: SingleFlight = PrivateAttr()
    _semantic: bool = PrivateAttr(default=False)

    def __init__(
        self,
        llm: LLM,
        index: SemanticIndex | None = None,
        *,
        tenant: str = "",
        scope_fields: Mapping[str, Any] | None = None,
        redis_url: str | None = None,
        namespace: str | None = None,
        max_error_rate: float | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(llm, LLM):
            raise TypeError(f"llm must be a LlamaIndex LLM, got {type(llm).__name__}")
        delta = check_delta(max_error_rate)
        if delta is not None and index is not None:
            if index.learner is None or index.learner.delta != delta:
                raise ValueError(
                    "max_error_rate must be the index's: build the index with it, or pass "
                    "max_error_rate without index="
                )
        elif delta is not None:
            options = {**options, "max_error_rate": delta}
        cache = _resolve_index(index, redis_url, namespace, options)
        scope_fields = dict(Scope(tenant=tenant, fields=scope_fields or {}).fields)  # validated
        # Mirror what LLM.predict() applies on the caller's side (system prompt, templates).
        mirrored = {k: getattr(llm, k) for k in _MIRRORED}
        fields: dict[str, Any] = {"llm": llm, "tenant": tenant, "scope_fields": scope_fields}
        super().__init__(**fields, **mirrored)
        self._cache = cache
        self._flights = SingleFlight(cache)
        self._semantic = delta is not None
        if self._semantic and cache.learner is not None:  # judges compare answer texts
            cache.learner.add_answer_text(stored_text)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name for this class."""
        return "CachedLLM"

    @property
    def index(self) -> SemanticIndex:
        """The :class:`paracache.SemanticIndex` the calls are cached in."""
        return self._cache

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata, without function calling."""
        return self.llm.metadata.model_copy(update={"is_function_calling_model": False})

    def _key(self, kind: str, text: str, payload: Any, kwargs: Any) -> tuple[str, Scope] | None:
        """``(text, scope)`` of a call: exact on every message and setting, or ``None``
        (not cacheable, e.g. ``tools=`` or other non-JSON arguments)."""
        try:
            canonical_json([payload, dict(kwargs)])
        except (TypeError, ValueError):
            return None
        try:
            model, params, context = llm_scope(self.llm)
            params.update({k: v for k, v in kwargs.items() if k in PARAM_KEYS})
            return text, Scope(
                model=model,
                tenant=self.tenant,
                params=params,
                fields=self.scope_fields,
                context=digest("li-llm-call/v1", kind, context, payload, dict(kwargs)),
            )
        except Exception as exc:
            logger.warning("paracache: not caching this %s call: %r", kind, exc)
            return None

    def _chat_key(self, messages: Sequence[ChatMessage], kwargs: Any) -> tuple[str, Scope] | None:
        try:
            payload = [m.model_dump(mode="json") for m in messages]
        except Exception:
            return None
        if self._semantic and payload and _text_only(payload[-1]):
            # Matched by meaning: the last message's text is the key, the rest the scope.
            last = {k: v for k, v in payload[-1].items() if k != "blocks"}
            return self._key(
                "chat-semantic", messages[-1].content or "", [*payload[:-1], last], kwargs
            )
        return self._key("chat", (messages[-1].content or "") if messages else "", payload, kwargs)

    def _complete_key(self, prompt: str, formatted: bool, kwargs: Any) -> tuple[str, Scope] | None:
        if self._semantic:
            return self._key("complete-semantic", prompt, [formatted], kwargs)
        return self._key("complete", prompt, [prompt, formatted], kwargs)

    @property
    def _layers(self) -> bool:
        """Whether lookups and stores use the semantic layer (with the error bound)."""
        return self._semantic

    def _hit(self, key: tuple[str, Scope], verdict: Verdict) -> Any:
        _emit("llm", key[0], self.tenant, verdict)
        if verdict.hit is None:
            return None
        return self._decode(verdict.hit.response, verdict.hit.layer, verdict.hit.entry_id)

    def _decode(self, payload: str, layer: str, entry_id: str | None) -> Any:
        """A stored response (``None`` if unreadable), marked with how it was found."""
        try:
            data = json.loads(payload)
            extra = {
                **data["additional_kwargs"],
                "paracache": {"layer": layer, "entry_id": entry_id},
            }
            if data["kind"] == "chat":
                message = ChatMessage.model_validate(data["message"])
                return ChatResponse(message=message, additional_kwargs=extra)
            return CompletionResponse(text=data["text"], additional_kwargs=extra)
        except (ValueError, KeyError, TypeError) as exc:
            self._cache.core.recorder.error("corrupt_entry")
            logger.warning("paracache: unreadable LLM entry %s: %r", entry_id, exc)
            return None

    def _shared(self, claim: Claim) -> Any:
        if claim.payload is None:
            return None
        return self._decode(claim.payload, "in-flight", None)

    @staticmethod
    def _entry(
        key: tuple[str, Scope], response: ChatResponse | CompletionResponse, semantic: bool
    ) -> dict[str, Any]:
        raw = response.raw
        usage = raw.get("usage") if isinstance(raw, Mapping) else _attr(raw, "usage")
        total = (
            usage.get("total_tokens")
            if isinstance(usage, Mapping)
            else _attr(usage, "total_tokens")
        )
        if isinstance(response, ChatResponse):
            data = {"kind": "chat", "message": response.message.model_dump(mode="json")}
        else:
            data = {"kind": "complete", "text": response.text}
        data["additional_kwargs"] = _json_dict(response.additional_kwargs)
        return {
            "prompt": key[0],
            "scope": key[1],
            "semantic": semantic,
            "response": json.dumps(data, ensure_ascii=False),
            "tokens": total if isinstance(total, int) and total > 0 else 0,
        }

    def _save(self, key: tuple[str, Scope], response: Any) -> str | None:
        """Store a complete answer; its payload, for waiters (``None``: not storable)."""
        try:
            entry = self._entry(key, response, self._layers)
            self._cache.store(**entry)
        except CacheClosedError:
            raise  # a programming error, not a failed store
        except Exception as exc:
            logger.warning("paracache: could not store the LLM answer: %r", exc)
            return None
        return str(entry["response"])

    async def _asave(self, key: tuple[str, Scope], response: Any) -> str | None:
        """Async :meth:`_save`."""
        try:
            entry = self._entry(key, response, self._layers)
            await self._cache.astore(**entry)
        except CacheClosedError:
            raise  # a programming error, not a failed store
        except Exception as exc:
            logger.warning("paracache: could not store the LLM answer: %r", exc)
            return None
        return str(entry["response"])

    def _call(self, key: tuple[str, Scope] | None, kind: type[_R], call: Callable[[], _R]) -> _R:
        if key is None:
            return call()
        verdict = self._cache.lookup_verdict(key[0], key[1], semantic=self._layers)
        if isinstance(cached := self._hit(key, verdict), kind):
            return cached
        with self._flights.flight(key[0], key[1], join=verdict.missed) as claim:
            if isinstance(shared := self._shared(claim), kind):
                return shared
            response = call()
            claim.stored(self._save(key, response))
        return response

    async def _acall(
        self, key: tuple[str, Scope] | None, kind: type[_R], call: Callable[[], Awaitable[_R]]
    ) -> _R:
        if key is None:
            return await call()
        verdict = await self._cache.alookup_verdict(key[0], key[1], semantic=self._layers)
        if isinstance(cached := self._hit(key, verdict), kind):
            return cached
        async with self._flights.aflight(key[0], key[1], join=verdict.missed) as claim:
            if isinstance(shared := self._shared(claim), kind):
                return shared
            response = await call()
            claim.stored(await self._asave(key, response))
        return response

    def _stream(self, key: tuple[str, Scope] | None, start: Callable[[], Any]) -> Any:
        """A chat or completion stream: a hit (or another caller's answer) replayed as
        deltas, else the wrapped LLM's stream, stored when it ended cleanly."""
        if key is None:
            yield from start()
            return
        verdict = self._cache.lookup_verdict(key[0], key[1], semantic=self._layers)
        cached = self._hit(key, verdict)
        join = cached is None and verdict.missed
        # An abandoned or failing stream stores nothing and hands nothing on.
        with self._flights.flight(key[0], key[1], join=join) as claim:
            if join:
                cached = self._shared(claim)
            if isinstance(cached, (ChatResponse, CompletionResponse)):
                yield from _deltas(cached)
                return
            last = None
            for last in start():
                yield last
            if last is not None:  # the stream ended cleanly: its last response is whole
                claim.stored(self._save(key, last))

    async def _astream(self, key: tuple[str, Scope] | None, start: Callable[[], Any]) -> Any:
        """Async :meth:`_stream`."""
        if key is None:
            async for response in await start():
                yield response
            return
        verdict = await self._cache.alookup_verdict(key[0], key[1], semantic=self._layers)
        cached = self._hit(key, verdict)
        join = cached is None and verdict.missed
        async with self._flights.aflight(key[0], key[1], join=join) as claim:
            if join:
                cached = self._shared(claim)
            if isinstance(cached, (ChatResponse, CompletionResponse)):
                for delta in _deltas(cached):
                    yield delta
                return
            last = None
            async for last in await start():
                yield last
            if last is not None:
                claim.stored(await self._asave(key, last))

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Cached :meth:`LLM.chat`."""
        key = self._chat_key(messages, kwargs)
        return self._call(key, ChatResponse, lambda: self.llm.chat(messages, **kwargs))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Cached :meth:`LLM.complete`."""
        key = self._complete_key(prompt, formatted, kwargs)
        return self._call(
            key,
            CompletionResponse,
            lambda: self.llm.complete(prompt, formatted=formatted, **kwargs),
        )

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Cached :meth:`LLM.achat`."""
        key = self._chat_key(messages, kwargs)
        return await self._acall(key, ChatResponse, lambda: self.llm.achat(messages, **kwargs))

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Cached :meth:`LLM.acomplete`."""
        key = self._complete_key(prompt, formatted, kwargs)
        return await self._acall(
            key,
            CompletionResponse,
            lambda: self.llm.acomplete(prompt, formatted=formatted, **kwargs),
        )

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Cached :meth:`LLM.stream_chat`: a hit is replayed as word deltas; a miss
        streams from the wrapped LLM and is stored once its stream ended cleanly."""
        key = self._chat_key(messages, kwargs)
        gen: ChatResponseGen = self._stream(key, lambda: self.llm.stream_chat(messages, **kwargs))
        return gen

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Cached :meth:`LLM.stream_complete` (as :meth:`stream_chat`)."""
        key = self._complete_key(prompt, formatted, kwargs)
        gen: CompletionResponseGen = self._stream(
            key, lambda: self.llm.stream_complete(prompt, formatted=formatted, **kwargs)
        )
        return gen

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        key = self._chat_key(messages, kwargs)
        gen: ChatResponseAsyncGen = self._astream(
            key, lambda: self.llm.astream_chat(messages, **kwargs)
        )
        return gen

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        key = self._complete_key(prompt, formatted, kwargs)
        gen: CompletionResponseAsyncGen = self._astream(
            key, lambda: self.llm.astream_complete(prompt, formatted=formatted, **kwargs)
        )
        return gen


def _deltas(response: ChatResponse | CompletionResponse) -> Any:
    """A stored answer as the stream its kind of call gives."""
    if isinstance(response, ChatResponse):
        return _chat_deltas(response)
    return _completion_deltas(response)


def _completion_deltas(response: CompletionResponse) -> CompletionResponseGen:
    """A stored completion as a stream: word deltas, each response carrying the text so
    far; the last one the stored text."""
    so_far = ""
    for piece in replay_chunks(response.text):
        so_far += piece
        yield CompletionResponse(
            text=so_far, delta=piece, additional_kwargs=response.additional_kwargs
        )


def _chat_deltas(response: ChatResponse) -> ChatResponseGen:
    """A stored chat answer as a stream: word deltas, each response carrying the text so
    far (as LlamaIndex streams do); the last one the stored message itself."""
    text = response.message.content or ""
    pieces = replay_chunks(text)
    so_far = ""
    for i, piece in enumerate(pieces):
        so_far += piece
        message = (
            response.message
            if i == len(pieces) - 1
            else ChatMessage(role=response.message.role, content=so_far)
        )
        yield ChatResponse(
            message=message, delta=piece, additional_kwargs=response.additional_kwargs
        )


def _text_only(message: Mapping[str, Any]) -> bool:
    """Whether a dumped chat message holds text blocks only (matchable by meaning)."""
    blocks = message.get("blocks")
    return isinstance(blocks, list) and all(
        isinstance(b, Mapping) and b.get("block_type") == "text" for b in blocks
    )


def stored_text(payload: str) -> str:
    """The answer text of a stored LLM response (what a judge compares); anything else
    as it is.

    Example:
        >>> stored_text('{"kind": "complete", "text": "Paris.", "additional_kwargs": {}}')
        'Paris.'
    """
    try:
        data = json.loads(payload)
        if data["kind"] == "chat":
            return str(ChatMessage.model_validate(data["message"]).content or "")
        return str(data["text"])
    except (ValueError, KeyError, TypeError):
        return payload
