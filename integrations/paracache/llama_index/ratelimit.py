"""RateLimitedLLM: any LlamaIndex LLM behind a shared :class:`paracache.limiter.RateLimiter`.

LlamaIndex has no rate limiter hook; this wrapper acquires before each model call
(``chat``, ``complete``, their streams and async twins) and charges the limiter's budget
tiers with the call's reported usage (``raw["usage"]``, OpenAI style) afterwards. Put it
*inside* :class:`paracache.llama_index.CachedLLM` so cache hits cost no request:
``CachedLLM(RateLimitedLLM(llm, limiter))``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
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

from ..limiter import RateLimiter, RateLimitExceeded
from ._shared import _MIRRORED, _attr

__all__ = ["RateLimitedLLM", "usage_of"]

logger = logging.getLogger("paracache")


def usage_of(response: Any) -> dict[str, float] | None:
    """``{"input_tokens", "output_tokens", "total_tokens"}`` from a response's ``raw``
    usage (OpenAI's ``prompt_tokens``/``completion_tokens`` too), or ``None``.

    Example:
        >>> from llama_index.core.base.llms.types import CompletionResponse
        >>> usage_of(CompletionResponse(text="x", raw={"usage": {"prompt_tokens": 3,
        ...     "completion_tokens": 4, "total_tokens": 7}}))
        {'input_tokens': 3.0, 'output_tokens': 4.0, 'total_tokens': 7.0}
    """
    raw = getattr(response, "raw", None)
    usage = raw.get("usage") if isinstance(raw, Mapping) else _attr(raw, "usage")
    if usage is None:
        return None

    def field(*names: str) -> float:
        for name in names:
            value = usage.get(name) if isinstance(usage, Mapping) else _attr(usage, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return 0.0

    inp = field("prompt_tokens", "input_tokens")
    out = field("completion_tokens", "output_tokens")
    return {"input_tokens": inp, "output_tokens": out,
            "total_tokens": field("total_tokens") or inp + out}


class RateLimitedLLM(LLM):
    """An LLM whose calls each take one request from ``limiter`` first.

    A blocking acquire waits (sleeping, not spinning; ``asyncio.sleep`` in async calls);
    if the limiter gives up (its ``max_wait``, or Redis unreachable with
    ``fail_open=False``) the call raises :class:`paracache.limiter.RateLimitExceeded`
    instead of reaching the model.

    Args:
        llm: The wrapped LLM.
        limiter: A :class:`paracache.limiter.RateLimiter`.
        cost: Budget units of one call's usage (default: its total tokens).

    Example:
        >>> from paracache.limiter import Limit, RateLimiter
        >>> limiter = RateLimiter([Limit("openai", 5)])  # doctest: +SKIP
        >>> llm = RateLimitedLLM(OpenAI(model="gpt-4o-mini"), limiter)  # doctest: +SKIP
    """

    llm: LLM = Field(description="The wrapped LLM.")
    _limiter: RateLimiter = PrivateAttr()
    _cost: Callable[[Mapping[str, float]], float] = PrivateAttr()

    def __init__(
        self,
        llm: LLM,
        limiter: RateLimiter,
        *,
        cost: Callable[[Mapping[str, float]], float] | None = None,
    ) -> None:
        if not isinstance(llm, LLM):
            raise TypeError(f"llm must be a LlamaIndex LLM, got {type(llm).__name__}")
        if not isinstance(limiter, RateLimiter):
            raise TypeError("limiter must be a paracache.limiter.RateLimiter")
        if cost is not None and not callable(cost):
            raise TypeError("cost must be callable")
        mirrored = {k: getattr(llm, k) for k in _MIRRORED}
        fields: dict[str, Any] = {"llm": llm, **mirrored}
        super().__init__(**fields)
        self._limiter = limiter
        self._cost = cost or (lambda usage: usage["total_tokens"])

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name for this class."""
        return "RateLimitedLLM"

    @property
    def limiter(self) -> RateLimiter:
        """The limiter every call acquires from."""
        return self._limiter

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata."""
        return self.llm.metadata

    def _refused(self) -> RateLimitExceeded:
        return RateLimitExceeded("rate limit: the limiter refused this model call")

    def _charge_amount(self, response: Any) -> float:
        usage = usage_of(response)
        return float(self._cost(usage)) if usage else 0.0

    def _before(self) -> None:
        if not self._limiter.acquire():
            raise self._refused()

    async def _abefore(self) -> None:
        if not await self._limiter.aacquire():
            raise self._refused()

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Acquire, then :meth:`LLM.chat`, then charge its usage."""
        self._before()
        response = self.llm.chat(messages, **kwargs)
        self._limiter.charge(self._charge_amount(response))
        return response

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Acquire, then :meth:`LLM.complete`, then charge its usage."""
        self._before()
        response = self.llm.complete(prompt, formatted=formatted, **kwargs)
        self._limiter.charge(self._charge_amount(response))
        return response

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        await self._abefore()
        response = await self.llm.achat(messages, **kwargs)
        await self._limiter.acharge(self._charge_amount(response))
        return response

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async :meth:`complete`."""
        await self._abefore()
        response = await self.llm.acomplete(prompt, formatted=formatted, **kwargs)
        await self._limiter.acharge(self._charge_amount(response))
        return response

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Acquire, then stream (streams are not charged)."""
        self._before()
        return self.llm.stream_chat(messages, **kwargs)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Acquire, then stream (streams are not charged)."""
        self._before()
        return self.llm.stream_complete(prompt, formatted=formatted, **kwargs)

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        await self._abefore()
        return await self.llm.astream_chat(messages, **kwargs)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        await self._abefore()
        return await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)
