"""CachedChatModel: any LangChain chat model behind the semantic cache, streams included.

langchain-core's ``stream``/``astream`` never consult a model's cache, and a hit through
``invoke`` fires no ``on_llm_new_token``. This wrapper is itself a chat model:

- ``invoke``/``ainvoke``/``batch`` look up and store exactly as the wrapped model's own
  ``cache=`` path does (same prompt and ``llm_string``: an answer stored one way is a hit
  the other way), but for a class argument (``with_structured_output``'s
  ``response_format=Answer``), spelled by its JSON schema rather than its repr;
- ``stream``/``astream`` replay a hit as word chunks (concatenating to the stored text
  exactly; ``on_llm_new_token`` fires for each), the verdict in the first chunk's
  ``response_metadata["paracache"]``; a miss streams from the wrapped model as it
  arrives and is stored only when that stream ended cleanly (a consumer that stops
  early, a cancelled task or a raising model store nothing);
- identical concurrent misses make one model call (:mod:`paracache.singleflight`);
  the others get its answer, replayed as a stream when they stream.

Tool calls are cached like any answer (they are part of the stored message and their
tools part of the scope); a replayed tool-calling answer ends with the same tool calls.

Example:
    >>> from paracache.langchain import CachedChatModel, SemanticCache
    >>> llm = ChatOpenAI(model="gpt-4o-mini")                      # doctest: +SKIP
    >>> chat = CachedChatModel(llm=llm, cache=SemanticCache())      # doctest: +SKIP
    >>> for chunk in chat.stream("How do I reset my password?"):  # doctest: +SKIP
    ...     print(chunk.content, end="")
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

from langchain_core.caches import BaseCache
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult, Generation
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableParallel,
    RunnableSequence,
)
from pydantic import Field, PrivateAttr, TypeAdapter, model_validator

from .core import Verdict
from .replay import check_pace, replay_chunks
from .singleflight import Claim

__all__ = ["CachedChatModel"]


class _Cache(Protocol):
    """What the wrapper uses of :class:`paracache.langchain.SemanticCache`."""

    def lookup_verdict(self, prompt: str, llm_string: str) -> Verdict: ...
    async def alookup_verdict(self, prompt: str, llm_string: str) -> Verdict: ...
    def decode(self, verdict: Verdict) -> list[Generation] | None: ...
    def load(self, payload: str) -> list[Generation]: ...
    def store_generations(
        self, prompt: str, llm_string: str, generations: Sequence[Generation]
    ) -> str: ...
    async def astore_generations(
        self, prompt: str, llm_string: str, generations: Sequence[Generation]
    ) -> str: ...
    def flight(
        self, prompt: str, llm_string: str, *, join: bool = True
    ) -> AbstractContextManager[Claim]: ...
    def aflight(
        self, prompt: str, llm_string: str, *, join: bool = True
    ) -> AbstractAsyncContextManager[Claim]: ...


_NEEDED = ("lookup_verdict", "decode", "load", "store_generations", "flight", "aflight")


def _hit_meta(verdict: Verdict | None) -> dict[str, Any]:
    """The verdict as a served answer shows it (``response_metadata["paracache"]``)."""
    if verdict is None or verdict.hit is None:  # another caller's answer, just made
        return {"cached": True, "layer": "in-flight", "similarity": None, "entry_id": None}
    hit = verdict.hit
    return {
        "cached": True,
        "layer": hit.layer,
        "similarity": round(hit.similarity, 4),
        "entry_id": hit.entry_id,
    }


def _as_chunk(message: BaseMessage) -> AIMessageChunk:
    """A streamed part as an ``AIMessageChunk`` (a model that cannot stream yields one
    whole ``AIMessage``)."""
    if isinstance(message, AIMessageChunk):
        return message
    if isinstance(message, AIMessage):
        return AIMessageChunk(
            content=message.content,
            additional_kwargs=message.additional_kwargs,
            response_metadata=message.response_metadata,
            tool_call_chunks=_tool_call_chunks(message),
            usage_metadata=message.usage_metadata,
            id=message.id,
        )
    return AIMessageChunk(content=message.content, id=message.id)


def _tool_call_chunks(message: AIMessage) -> list[Any]:
    chunks = [
        tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=i)
        for i, call in enumerate(message.tool_calls)
    ]
    offset = len(chunks)
    chunks += [
        tool_call_chunk(name=bad.get("name"), args=bad.get("args"), id=bad.get("id"), index=i)
        for i, bad in enumerate(message.invalid_tool_calls, start=offset)
    ]
    return chunks


def replay_generation(
    generation: Generation, meta: dict[str, Any]
) -> Iterator[ChatGenerationChunk]:
    """A stored generation as the chunks of a stream, made one at a time: its text by
    words (content blocks in one chunk), message metadata and ``meta`` on the first
    chunk, tool calls and usage on the last (``chunk_position="last"``). The chunks add
    up to the stored message.

    Example:
        >>> from langchain_core.outputs import ChatGeneration
        >>> gen = ChatGeneration(message=AIMessage(content="Tap Freeze card."))
        >>> [c.text for c in replay_generation(gen, {"cached": True})]
        ['Tap ', 'Freeze ', 'card.']
    """
    message = getattr(generation, "message", None)
    if not isinstance(message, AIMessage):
        message = AIMessage(content=generation.text)
    content = message.content
    pieces: list[Any] = replay_chunks(content) if isinstance(content, str) else [content]
    last_i = len(pieces) - 1
    for i, piece in enumerate(pieces):
        if 0 < i < last_i:
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
            continue
        first, last = i == 0, i == last_i
        chunk = AIMessageChunk(
            content=piece,
            additional_kwargs=dict(message.additional_kwargs) if first else {},
            response_metadata={**message.response_metadata, "paracache": meta} if first else {},
            tool_call_chunks=_tool_call_chunks(message) if last else [],
            usage_metadata=message.usage_metadata if last else None,
            chunk_position="last" if last else None,
        )
        info = generation.generation_info if first else None
        yield ChatGenerationChunk(message=chunk, generation_info=info)


class CachedChatModel(BaseChatModel):
    """A chat model answering from a :class:`paracache.langchain.SemanticCache` first,
    streamed or not, with one model call per burst of identical misses.

    Args:
        llm: The chat model to wrap (any ``BaseChatModel``).
        cache: The :class:`paracache.langchain.SemanticCache` (also accepted as
            ``semantic_cache=``). The wrapper's own LangChain ``cache`` stays off, and
            the wrapped model is called with its cache off, so nothing is looked up or
            stored twice.
        pace: Seconds between replayed chunks of a streamed hit (default 0: as fast as
            the consumer reads). A small value (0.01-0.03) makes a cached answer appear
            like a typed one in a UI; it never delays the first chunk.
        single_flight: Coalesce identical concurrent misses (default on; see
            :mod:`paracache.singleflight`; the cache's ``flights`` sets the wait bound).

    The wrapper's run stands for the model call in callbacks and traces (the wrapped
    model is called without the caller's callbacks, so each token is reported once).
    ``bind_tools`` and ``with_structured_output`` bind on the wrapper, so tool-bound
    and structured calls are cached too (the tools are part of the scope).

    Example:
        >>> chat = CachedChatModel(llm=ChatOpenAI(model="gpt-4o-mini"),
        ...                        cache=SemanticCache(tenant="acme"), pace=0.02)  # doctest: +SKIP
        >>> chat.invoke("What's your refund policy?")  # a miss: the model answers  # doctest: +SKIP
        >>> hit = chat.invoke("What is your policy on refunds?")  # doctest: +SKIP
        >>> hit.response_metadata["paracache"]  # doctest: +SKIP
        {'cached': True, 'layer': 'semantic', 'similarity': 0.939, 'entry_id': '...'}
    """

    llm: BaseChatModel = Field(description="The wrapped chat model.")
    semantic_cache: Any = Field(default=None, exclude=True, description="The SemanticCache.")
    pace: float = Field(default=0.0, description="Seconds between replayed chunks.")
    single_flight: bool = Field(default=True, description="Coalesce identical misses.")
    _uncached: BaseChatModel | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _take_cache(cls, data: Any) -> Any:
        if isinstance(data, dict) and "semantic_cache" not in data and "cache" in data:
            data = dict(data)
            data["semantic_cache"] = data.pop("cache")
        if isinstance(data, dict):
            data = {**data, "cache": False}  # LangChain's own cache path stays off
        return data

    def model_post_init(self, context: Any, /) -> None:
        """Check the arguments."""
        super().model_post_init(context)
        if not isinstance(self.llm, BaseChatModel):
            raise TypeError(f"llm must be a BaseChatModel, got {type(self.llm).__name__}")
        if isinstance(self.llm, CachedChatModel):
            raise TypeError("llm is already a CachedChatModel")
        cache = self.semantic_cache
        if not isinstance(cache, BaseCache) or not all(hasattr(cache, n) for n in _NEEDED):
            raise TypeError(
                "cache must be a paracache.langchain.SemanticCache, "
                f"got {type(cache).__name__}"
            )
        self.pace = check_pace(self.pace)
        if not isinstance(self.single_flight, bool):
            raise TypeError("single_flight must be a bool")
        self._uncached = None

    # ------------------------------------------------------------------ identity

    @property
    def _llm_type(self) -> str:
        return f"paracache-{self.llm._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return dict(self.llm._identifying_params)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.llm._get_ls_params(stop=stop, **kwargs)

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None], /) -> dict[str, Any]:
        """``generate()``'s ``llm_output`` as the wrapped model makes it (token usage, model
        name...), not ``{}``."""
        return self.llm._combine_llm_outputs(llm_outputs)

    @property
    def _inner(self) -> BaseChatModel:
        """The wrapped model, or a copy of it with its cache off when it has one (its
        own ``cache=`` or the global ``set_llm_cache``): the wrapper did the lookup."""
        llm = self.llm
        if llm.cache is False or (llm.cache is None and get_llm_cache() is None):
            return llm
        if self._uncached is None:
            self._uncached = llm.model_copy(update={"cache": False})
        return self._uncached

    @property
    def _cache(self) -> _Cache:
        return self.semantic_cache  # type: ignore[no-any-return]

    def _keys(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[str, str]:
        """``(prompt, llm_string)`` as the wrapped model's ``cache=`` path builds them, but
        for a class argument (``response_format=Answer``): spelled by its JSON schema, not
        its repr, so two schemas of one name never share a scope."""
        normalized = [
            m.model_copy(update={"id": None}) if getattr(m, "id", None) is not None else m
            for m in messages
        ]
        spelled = {k: _schema_of(v) if isinstance(v, type) else v for k, v in kwargs.items()}
        return dumps(normalized), self.llm._get_llm_string(stop=stop, **spelled)

    # ------------------------------------------------------------------ helpers

    def _served(self, verdict: Verdict) -> list[Generation] | None:
        return self._cache.decode(verdict)

    def _flight(self, verdict: Verdict) -> bool:
        return self.single_flight and verdict.missed

    def _from_flight(self, claim: Claim) -> list[Generation] | None:
        if claim.payload is None:
            return None
        try:
            return self._cache.load(claim.payload)
        except (ValueError, KeyError, TypeError):
            return None

    def _result(self, generations: list[Generation], verdict: Verdict | None) -> ChatResult:
        out = self._convert_cached_generations(generations)
        meta = _hit_meta(verdict)
        for gen in out:
            gen.message.response_metadata = {**gen.message.response_metadata, "paracache": meta}
        return ChatResult(generations=out)

    @staticmethod
    def _generation(chunks: list[ChatGenerationChunk]) -> list[Generation]:
        return list(generate_from_stream(iter(chunks)).generations)

    # ------------------------------------------------------------------ invoke

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, llm_string = self._keys(messages, stop, kwargs)
        verdict = self._cache.lookup_verdict(prompt, llm_string)
        if (cached := self._served(verdict)) is not None:
            return self._result(cached, verdict)
        with self._cache.flight(prompt, llm_string, join=self._flight(verdict)) as claim:
            if (shared := self._from_flight(claim)) is not None:
                return self._result(shared, None)
            result = self._inner.generate([messages], stop=stop, **kwargs)
            generations = list(result.generations[0])
            claim.stored(self._cache.store_generations(prompt, llm_string, generations))
        return ChatResult(generations=generations, llm_output=result.llm_output)  # type: ignore[arg-type]

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, llm_string = self._keys(messages, stop, kwargs)
        verdict = await self._cache.alookup_verdict(prompt, llm_string)
        if (cached := self._served(verdict)) is not None:
            return self._result(cached, verdict)
        async with self._cache.aflight(prompt, llm_string, join=self._flight(verdict)) as claim:
            if (shared := self._from_flight(claim)) is not None:
                return self._result(shared, None)
            result = await self._inner.agenerate([messages], stop=stop, **kwargs)
            generations = list(result.generations[0])
            claim.stored(await self._cache.astore_generations(prompt, llm_string, generations))
        return ChatResult(generations=generations, llm_output=result.llm_output)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ stream

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt, llm_string = self._keys(messages, stop, kwargs)
        verdict = self._cache.lookup_verdict(prompt, llm_string)
        replay = self._served(verdict)
        join = replay is None and self._flight(verdict)
        # Left early (closed, raising): the flight is settled with no answer.
        with self._cache.flight(prompt, llm_string, join=join) as claim:
            if join:
                replay, verdict = self._from_flight(claim), None  # type: ignore[assignment]
            if replay is not None:
                for i, chunk in enumerate(replay_generation(replay[0], _hit_meta(verdict))):
                    if i and self.pace:
                        time.sleep(self.pace)
                    yield chunk
                return
            chunks: list[ChatGenerationChunk] = []
            for part in self._inner.stream(messages, stop=stop, **kwargs):
                chunk = ChatGenerationChunk(message=_as_chunk(part))
                chunks.append(chunk)
                yield chunk
            if chunks:  # the stream ended cleanly: only now is the answer whole
                generations = self._generation(chunks)
                claim.stored(self._cache.store_generations(prompt, llm_string, generations))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prompt, llm_string = self._keys(messages, stop, kwargs)
        verdict = await self._cache.alookup_verdict(prompt, llm_string)
        replay = self._served(verdict)
        join = replay is None and self._flight(verdict)
        async with self._cache.aflight(prompt, llm_string, join=join) as claim:
            if join:
                replay, verdict = self._from_flight(claim), None  # type: ignore[assignment]
            if replay is not None:
                for i, chunk in enumerate(replay_generation(replay[0], _hit_meta(verdict))):
                    if i and self.pace:
                        await asyncio.sleep(self.pace)
                    yield chunk
                return
            chunks: list[ChatGenerationChunk] = []
            async for part in self._inner.astream(messages, stop=stop, **kwargs):
                chunk = ChatGenerationChunk(message=_as_chunk(part))
                chunks.append(chunk)
                yield chunk
            if chunks:
                generations = self._generation(chunks)
                claim.stored(await self._cache.astore_generations(prompt, llm_string, generations))

    # ------------------------------------------------------------------ tools

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools as the wrapped model formats them, on the wrapper (so tool-bound
        calls go through the cache, the tools in their scope).

        Example:
            >>> chat.bind_tools([get_weather]).invoke("Weather in Paris?")  # doctest: +SKIP
        """
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.llm.bind_tools(tools, **kwargs)
        return self.bind(**_bound_kwargs(bound, self.llm))

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Any:
        """The wrapped model's structured output, its calls going through the cache.

        The wrapped model's own implementation is used (its ``method``, ``strict``...,
        ``include_raw`` too) when its model calls are bindings of the model, in sequence
        or side by side, e.g. ``ChatOpenAI``'s ``json_schema``, ``json_mode`` and
        ``function_calling``; otherwise LangChain's tool-calling implementation over
        :meth:`bind_tools`.

        Example:
            >>> chat.with_structured_output(Answer).invoke("Refund policy?")  # doctest: +SKIP
        """
        try:
            inner = self.llm.with_structured_output(schema, include_raw=include_raw, **kwargs)
        except NotImplementedError:
            inner = None
        rebound = self._rebound(inner) if isinstance(inner, RunnableSequence) else None
        if rebound is not None:
            return rebound
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def _rebound(self, runnable: Any) -> Any:
        """``runnable`` with the wrapped model (bound to arguments or not) replaced by the
        wrapper, in a sequence's steps or a parallel's branches; ``None`` if it holds none."""
        if runnable is self.llm:
            return self
        if isinstance(runnable, RunnableBinding) and runnable.bound is self.llm:
            return self.bind(**runnable.kwargs).with_config(runnable.config)
        if isinstance(runnable, RunnableSequence):
            steps = [self._rebound(step) for step in runnable.steps]
            if all(step is None for step in steps):
                return None
            parts = [new or old for new, old in zip(steps, runnable.steps, strict=True)]
            return RunnableSequence(*parts, name=runnable.name)
        if isinstance(runnable, RunnableParallel):
            branches = {k: self._rebound(v) for k, v in runnable.steps__.items()}
            if all(v is None for v in branches.values()):
                return None
            return RunnableParallel(
                {k: branches[k] or v for k, v in runnable.steps__.items()}
            )
        return None


@functools.lru_cache(maxsize=256)
def _schema_of(cls: type) -> Any:
    """A class argument as data: its name and JSON schema (its repr, ``<class 'm.Answer'>``,
    is the same for every schema of that name); the class itself if it has none. Made
    once per class (building a JSON schema costs more than the rest of a cache key)."""
    try:
        schema = TypeAdapter(cls).json_schema()
    except Exception:
        return cls
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "json_schema": schema}


def _bound_kwargs(bound: Any, llm: Any) -> dict[str, Any]:
    if isinstance(bound, RunnableBinding) and bound.bound is llm:
        return dict(bound.kwargs)
    raise NotImplementedError(
        f"{type(llm).__name__}.bind_tools did not return a binding of the model; "
        "CachedChatModel cannot bind its tools"
    )

