"""LangChain adapter: ``RedisChatMessageHistory``, a ``BaseChatMessageHistory`` in Redis.

It only translates: messages become langchain-core's plain JSON (``message_to_dict``:
content blocks, tool calls and metadata round-trip) and come back through
``messages_from_dict`` (never ``langchain_core.load.loads``, never pickle); storage,
TTL, tenants, failures and the context window are :class:`paracache.sessions.SessionStore`'s.

Example:
    >>> from langchain_core.runnables.history import RunnableWithMessageHistory
    >>> from paracache.history import RedisChatMessageHistory
    >>> chain = RunnableWithMessageHistory(
    ...     prompt | model,
    ...     lambda session_id: RedisChatMessageHistory(session_id, tenant="acme", ttl=3600),
    ...     input_messages_key="question", history_messages_key="history",
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    BaseMessage,
    SystemMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.messages.utils import count_tokens_approximately

from .sessions import ContextWindow, SessionStore, StoredMessage, _check_session

__all__ = ["RedisChatMessageHistory"]

logger = logging.getLogger("paracache")

Summarizer = Callable[[list[BaseMessage]], Any]


def _count(message: BaseMessage) -> int:
    return int(count_tokens_approximately([message]))


class RedisChatMessageHistory(BaseChatMessageHistory):
    """One conversation's messages in a Redis list.

    Args:
        session_id: The conversation (any non-empty text; digested into the key).
        redis_url: Where Redis is (default ``PARACACHE_REDIS_URL``, ``REDIS_URL``, else the
            embedded server); ``redis_client``: your own ``redis.Redis`` instead.
        ttl: Seconds an idle conversation lives; every read and write renews it.
        tenant: Whose conversation it is: the same session id under another tenant is
            another conversation.
        namespace: Key prefix, as for the cache.
        token_counter: Tokens of one message, stored with it (default:
            ``count_tokens_approximately``).
        store: A :class:`paracache.sessions.SessionStore` to share (then ``redis_url``,
            ``ttl``, ``tenant``, ``namespace`` and ``fail_open`` are the store's).
        fail_open: Redis unreachable: an empty history and dropped writes, logged and
            counted (default), or :class:`paracache.sessions.SessionError`.

    Example:
        >>> history = RedisChatMessageHistory("chat-42", tenant="acme")  # doctest: +SKIP
        >>> history.add_user_message("hi"); history.messages  # doctest: +SKIP
        [HumanMessage(content='hi', ...)]
    """

    def __init__(
        self,
        session_id: str,
        *,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        ttl: float | None = None,
        tenant: str = "",
        namespace: str = "default",
        token_counter: Callable[[BaseMessage], int] | None = None,
        store: SessionStore | None = None,
        fail_open: bool = True,
        timeout: float = 1.0,
    ) -> None:
        _check_session(session_id)  # a non-empty str
        if token_counter is not None and not callable(token_counter):
            raise TypeError("token_counter must be callable")
        if store is not None and not isinstance(store, SessionStore):
            raise TypeError("store must be a paracache.sessions.SessionStore")
        self.session_id = session_id
        self.store = store or SessionStore(
            redis_url=redis_url,
            redis_client=redis_client,
            namespace=namespace,
            tenant=tenant,
            ttl=ttl,
            fail_open=fail_open,
            timeout=timeout,
        )
        self._tokens = token_counter or _count

    # ------------------------------------------------------------------ translation

    def _encode(self, messages: Sequence[BaseMessage]) -> tuple[list[dict[str, Any]], list[int]]:
        for message in messages:
            if not isinstance(message, BaseMessage):
                raise TypeError(f"expected LangChain messages, got {type(message).__name__}")
        return [message_to_dict(m) for m in messages], [int(self._tokens(m)) for m in messages]

    @staticmethod
    def _decode(stored: Sequence[StoredMessage]) -> list[BaseMessage]:
        try:  # all at once; record by record (skipping bad ones) only if one is bad
            return messages_from_dict([record.message for record in stored])
        except (ValueError, TypeError, KeyError):
            pass
        out: list[BaseMessage] = []
        for record in stored:
            try:
                out.extend(messages_from_dict([record.message]))
            except (ValueError, TypeError, KeyError) as exc:
                logger.warning("paracache: skipped a conversation record that is not a "
                               "LangChain message (%s)", exc)
        return out

    # ------------------------------------------------------------------ BaseChatMessageHistory

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """All messages, oldest first (renews the TTL)."""
        return self._decode(self.store.read(self.session_id))

    async def aget_messages(self) -> list[BaseMessage]:
        """:attr:`messages` without blocking the event loop."""
        return self._decode(await self.store.aread(self.session_id))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append messages in one round trip."""
        self.store.append(self.session_id, *self._encode(messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """:meth:`add_messages` without blocking the event loop."""
        await self.store.aappend(self.session_id, *self._encode(messages))

    def clear(self) -> None:
        """Delete the conversation and its cached summaries."""
        self.store.clear(self.session_id)

    async def aclear(self) -> None:
        """:meth:`clear` without blocking the event loop."""
        await self.store.aclear(self.session_id)

    # ------------------------------------------------------------------ extras

    def stored(self) -> list[StoredMessage]:
        """The messages as stored, with their timestamps and token counts."""
        return self.store.read(self.session_id)

    def window(self, max_tokens: int, summarize: Summarizer | None = None) -> list[BaseMessage]:
        """The newest messages within ``max_tokens``, preceded (when older messages were
        left out and ``summarize`` is given) by a ``SystemMessage`` with their summary.

        ``summarize`` receives one segment of older messages and returns its summary
        text; summaries are stored and reused until those messages change.

        Example:
            >>> history.window(1000, summarize=lambda ms: llm.invoke(
            ...     [("system", "Summarise:"), *ms]).text)  # doctest: +SKIP
        """
        return self._as_messages(
            self.store.window(self.session_id, max_tokens, self._summarizer(summarize))
        )

    async def awindow(
        self, max_tokens: int, summarize: Summarizer | None = None
    ) -> list[BaseMessage]:
        """:meth:`window` without blocking the event loop (``summarize`` may be async)."""
        return self._as_messages(
            await self.store.awindow(self.session_id, max_tokens, self._summarizer(summarize))
        )

    def _summarizer(
        self, summarize: Summarizer | None
    ) -> Callable[[list[StoredMessage]], Any] | None:
        if summarize is None:
            return None
        if not callable(summarize):
            raise TypeError("summarize must be callable")

        def run(stored: list[StoredMessage]) -> Any:
            return summarize(self._decode(stored))  # awaited by the async driver

        return run

    def _as_messages(self, window: ContextWindow) -> list[BaseMessage]:
        recent = self._decode(window.messages)
        if window.summary:
            return [SystemMessage(f"Summary of the earlier conversation:\n{window.summary}"),
                    *recent]
        return recent
