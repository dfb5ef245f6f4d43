"""RedisChatStore: a LlamaIndex ``BaseChatStore`` on :class:`paracache.sessions.SessionStore`.

It only translates: a ``ChatMessage`` is stored as its plain JSON (``model_dump(mode="json")``:
content blocks, tool calls in ``additional_kwargs``) and rebuilt with
``ChatMessage.model_validate``; never pickle. Keys are the chat store's keys (a
``ChatMemoryBuffer``'s ``chat_store_key``), scoped by ``tenant``; an empty key is
refused (``ValueError``: it would be one conversation for every caller of the tenant).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.storage.chat_store.base import BaseChatStore

from ..sessions import SessionStore, StoredMessage, approx_tokens

__all__ = ["RedisChatStore"]

logger = logging.getLogger("paracache")


def _plain(message: ChatMessage) -> dict[str, Any]:
    if not isinstance(message, ChatMessage):
        raise TypeError(f"expected a LlamaIndex ChatMessage, got {type(message).__name__}")
    data = message.model_dump(mode="json")
    extra = data.get("additional_kwargs") or {}
    data["additional_kwargs"] = {
        k: message._recursive_serialization(v) for k, v in extra.items()
    }
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a ChatMessage must serialise to plain JSON: {exc}") from exc
    return data


def _tokens(message: ChatMessage) -> int:
    return approx_tokens(message.content or "")


def _decode(stored: Sequence[StoredMessage]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for record in stored:
        try:
            out.append(ChatMessage.model_validate(record.message))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            logger.warning("paracache: skipped a conversation record that is not a "
                           "LlamaIndex ChatMessage (%s)", exc)
    return out


class RedisChatStore(BaseChatStore):
    """Chat histories in Redis lists, shared by every process; works with ``ChatMemoryBuffer``.

    Args:
        redis_url: Where Redis is (default ``PARACACHE_REDIS_URL``, ``REDIS_URL``, else the
            embedded server); ``redis_client``: your own ``redis.Redis`` instead.
        ttl: Seconds an idle conversation lives; every read and write renews it.
        tenant: Whose conversations these are: the same key under another tenant is
            another conversation, and :meth:`get_keys` lists this tenant's only.
        namespace: Key prefix, as for the cache.
        fail_open: Redis unreachable: empty reads and dropped writes, logged and counted
            (default), or :class:`paracache.sessions.SessionError`.
        store: A :class:`paracache.sessions.SessionStore` to share instead.

    Example:
        >>> from llama_index.core.memory import ChatMemoryBuffer
        >>> memory = ChatMemoryBuffer.from_defaults(
        ...     chat_store=RedisChatStore(tenant="acme", ttl=3600), chat_store_key="user-7",
        ...     token_limit=3000)  # doctest: +SKIP
    """

    namespace: str = Field(default="default")
    tenant: str = Field(default="")
    ttl: float | None = Field(default=None)
    _store: SessionStore = PrivateAttr()

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: redis.Redis | None = None,
        ttl: float | None = None,
        tenant: str = "",
        namespace: str = "default",
        fail_open: bool = True,
        timeout: float = 1.0,
        store: SessionStore | None = None,
    ) -> None:
        if store is not None and not isinstance(store, SessionStore):
            raise TypeError("store must be a paracache.sessions.SessionStore")
        store = store or SessionStore(
            redis_url=redis_url,
            redis_client=redis_client,
            namespace=namespace,
            tenant=tenant,
            ttl=ttl,
            fail_open=fail_open,
            timeout=timeout,
        )
        fields: dict[str, Any] = {
            "namespace": store.namespace, "tenant": store.tenant, "ttl": store.ttl,
        }
        super().__init__(**fields)
        self._store = store

    @classmethod
    def class_name(cls) -> str:
        return "RedisChatStore"

    @property
    def store(self) -> SessionStore:
        """The framework-free store (stats, context windows)."""
        return self._store

    @staticmethod
    def _encode(messages: Sequence[ChatMessage]) -> tuple[list[dict[str, Any]], list[int]]:
        plain = [_plain(m) for m in messages]
        return plain, [_tokens(m) for m in messages]

    # ------------------------------------------------------------------ sync

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the messages of ``key`` (atomically)."""
        self._store.replace(key, *self._encode(messages))

    def get_messages(self, key: str) -> list[ChatMessage]:
        """The messages of ``key``, oldest first (renews the TTL)."""
        return _decode(self._store.read(key))

    def add_message(self, key: str, message: ChatMessage) -> None:
        """Append one message."""
        self._store.append(key, *self._encode([message]))

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete ``key``'s conversation; returns its messages (``None`` if it had none)."""
        return _decode(self._store.clear(key)) or None

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Remove and return the message at ``idx`` (``None`` if there is none)."""
        found = self._store.remove(key, idx)
        return _decode([found])[0] if found is not None else None

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Remove and return the last message."""
        return self.delete_message(key, -1)

    def get_keys(self) -> list[str]:
        """This tenant's live keys."""
        return self._store.sessions()

    # ------------------------------------------------------------------ async

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """:meth:`set_messages` without blocking the event loop."""
        await self._store.areplace(key, *self._encode(messages))

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        """:meth:`get_messages` without blocking the event loop."""
        return _decode(await self._store.aread(key))

    async def async_add_message(self, key: str, message: ChatMessage) -> None:
        """:meth:`add_message` without blocking the event loop."""
        await self._store.aappend(key, *self._encode([message]))

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        """:meth:`delete_messages` without blocking the event loop."""
        return _decode(await self._store.aclear(key)) or None

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        """:meth:`delete_message` without blocking the event loop."""
        found = await self._store.aremove(key, idx)
        return _decode([found])[0] if found is not None else None

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        """:meth:`delete_last_message` without blocking the event loop."""
        return await self.adelete_message(key, -1)

    async def aget_keys(self) -> list[str]:
        """:meth:`get_keys` without blocking the event loop."""
        return await self._store.asessions()
