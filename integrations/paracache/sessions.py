"""Conversation histories in Redis lists: framework-free, shared by the LangChain
(:mod:`paracache.history`) and LlamaIndex (:class:`paracache.llama_index.RedisChatStore`)
adapters.

One Redis list per conversation, one JSON record per message: the adapter's plain-JSON
form of the message (content blocks, tool calls) with its metadata (``ts``: when it was
stored, ``tok``: its token count). Nothing is pickled and nothing read back is turned
into objects other than through ``json.loads`` and the adapter's plain constructors.

* **Keys.** ``paracache:_chat:<namespace>:<digest of (tenant, session id)>`` (the list)
  and ``...:sum`` (cached summaries); ``paracache:_chat:<namespace>:<digest of tenant>:sessions``
  lists a tenant's session ids (``_chat`` is no cache namespace: clearing a cache never
  touches conversations). Session ids and tenants are digested: any text (query,
  Lua or glob syntax, a megabyte) is data, and one tenant's session id can never name
  another tenant's conversation.
* **TTL.** With ``ttl`` every read or write of a conversation renews it; an idle one
  expires whole.
* **Context window.** :meth:`SessionStore.window` returns the newest messages that fit a
  token budget and, with a summariser, one summary of everything older. Older messages
  are summarised by segments of ``segment`` messages; each segment's summary is stored
  (keyed by the digest of its records) and reused until those messages change, so a
  growing conversation pays one summariser call per new segment.
* **Failures.** Redis unreachable with ``fail_open=True`` (default): a read returns an
  empty history and a write is dropped, each with a warning on the ``paracache`` logger
  and a counted error (``stats()``); the chat goes on without its memory rather than
  failing. ``fail_open=False`` raises :class:`SessionError` instead. A record that is
  not valid JSON of the expected shape is skipped and counted (``corrupt``).

Example:
    >>> store = SessionStore(tenant="acme", ttl=3600)          # doctest: +SKIP
    >>> store.append("chat-1", [{"role": "user", "text": "hi"}], [2])  # doctest: +SKIP
    >>> [m.message for m in store.read("chat-1")]           # doctest: +SKIP
    [{'role': 'user', 'text': 'hi'}]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis

from .errors import KINDS, CacheError, Kind
from .policy import MAX_TTL, Throttle, ttl_problem
from .redisflow import Batch, Call, Failure, Flow, Link, Script
from .schema import check_namespace
from .scope import digest

__all__ = [
    "ContextWindow",
    "SessionError",
    "SessionStats",
    "SessionStore",
    "StoredMessage",
    "approx_tokens",
]

logger = logging.getLogger("paracache")

RECORD_VERSION = 1


class SessionError(CacheError):
    """Redis was unreachable and the store was built with ``fail_open=False``; ``kind``
    says how Redis failed, as for any :class:`CacheError` (``unavailable`` too while the
    circuit breaker, opened by earlier failures, skips Redis)."""


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: about 4 characters per token, plus 3 per message.

    Example:
        >>> approx_tokens("What is your refund policy?")
        10
    """
    return math.ceil(len(text) / 4) + 3


@dataclasses.dataclass(frozen=True)
class StoredMessage:
    """One message as stored: the adapter's JSON form and its metadata."""

    message: dict[str, Any]
    timestamp: float
    tokens: int


@dataclasses.dataclass(frozen=True)
class ContextWindow:
    """What fits: ``summary`` of the older messages (``None`` without a summariser or
    when nothing is older), and the newest ``messages`` (oldest first).

    Attributes:
        summarized: How many older messages are left out of ``messages`` (the summary
            covers them, when there is one).
        tokens: The token count of ``messages``.
    """

    messages: list[StoredMessage]
    summary: str | None
    summarized: int
    tokens: int


@dataclasses.dataclass(frozen=True)
class SessionStats:
    """Counters of one :class:`SessionStore` (this process)."""

    reads: int = 0
    writes: int = 0
    summaries_computed: int = 0
    summaries_reused: int = 0
    corrupt: int = 0
    errors: int = 0
    errors_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)


def _stored(data: Any) -> StoredMessage | None:
    """A parsed record, or ``None`` if it does not have the expected shape."""
    if not isinstance(data, dict) or data.get("v") != RECORD_VERSION:
        return None
    message, ts, tok = data.get("m"), data.get("ts"), data.get("tok")
    if (
        not isinstance(message, dict)
        or isinstance(ts, bool) or not isinstance(ts, (int, float))
        or isinstance(tok, bool) or not isinstance(tok, int)
    ):
        return None
    return StoredMessage(message, float(ts), tok)


def _check_session(session_id: Any) -> str:
    """A session id: a non-empty str. ``""`` is refused: every caller of a tenant that
    sends no id (a missing header, an unset field) would share one conversation."""
    if not isinstance(session_id, str):
        raise TypeError(f"session_id must be a str, got {type(session_id).__name__}")
    if not session_id:
        raise ValueError(
            "session_id must not be empty: an empty id would be one conversation shared "
            "by every caller of the tenant; give the conversation's or the user's id"
        )
    return session_id


def _record(message: Mapping[str, Any], tokens: int, now: float) -> str:
    if not isinstance(message, Mapping):
        raise TypeError(f"a message must be a JSON object (a mapping), got {message!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"a token count must be an int >= 0, got {tokens!r}")
    try:
        return json.dumps(
            {"v": RECORD_VERSION, "ts": now, "tok": tokens, "m": message},
            ensure_ascii=True,
            allow_nan=False,
            separators=(",", ":"),
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a message must be plain JSON: {exc}") from exc


class SessionStore:
    """Conversation histories in Redis lists (see the module docs).

    Args:
        redis_url: Where Redis is (default: ``PARACACHE_REDIS_URL``, ``REDIS_URL``, else
            the embedded server). ``redis_client``: your own ``redis.Redis`` instead.
        namespace: Key prefix, as for the cache.
        tenant: Whose conversations these are; tenants never see each other's.
        ttl: Seconds an idle conversation lives (renewed by every read and write);
            ``None``: kept until cleared.
        segment: Older messages are summarised in segments of this many.
        fail_open: See the module docs.
        timeout: Seconds each Redis call may take.
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        namespace: str = "default",
        tenant: str = "",
        ttl: float | None = None,
        segment: int = 8,
        fail_open: bool = True,
        timeout: float = 1.0,
    ) -> None:
        check_namespace(namespace)
        if not isinstance(tenant, str):
            raise TypeError(f"tenant must be a str, got {type(tenant).__name__}")
        if ttl is not None and ttl_problem(ttl) is not None:
            raise ValueError(
                f"ttl must be a positive number of seconds up to {MAX_TTL:.0e} or None, "
                f"got {ttl!r}"
            )
        if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
            raise ValueError(f"segment must be an int >= 1, got {segment!r}")
        if not isinstance(fail_open, bool):
            raise TypeError(f"fail_open must be a bool, got {fail_open!r}")
        self.namespace = namespace
        self.tenant = tenant
        self.ttl = ttl
        self.segment = segment
        self.fail_open = fail_open
        self._link = Link(
            redis_url,
            redis_client=redis_client,
            timeout=timeout,
            name=f"paracache:{namespace}:chat",
        )
        self._link.owner = repr(self)
        self._prefix = f"paracache:_chat:{namespace}:"
        self._registry = f"{self._prefix}{digest('tenant', tenant)}:sessions"
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._kinds: dict[str, int] = {}
        self._warnings = Throttle()  # one warning per operation and failure kind every 10 s

    # ------------------------------------------------------------------ keys

    def _ids(self, session_id: str) -> tuple[str, str, str]:
        """(registry field, list key, summaries key) of a session."""
        field = digest("session", self.tenant, _check_session(session_id))
        key = self._prefix + field
        return field, key, key + ":sum"

    def _renew(self, *keys: str) -> list[tuple[Any, ...]]:
        if self.ttl is None:
            return []
        ms = math.ceil(self.ttl * 1000)
        return [("PEXPIRE", key, ms) for key in keys]

    # ------------------------------------------------------------------ bookkeeping

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def _failed(self, failure: Failure, what: str) -> None:
        with self._lock:
            self._counts["errors"] = self._counts.get("errors", 0) + 1
            self._kinds[failure.kind] = self._kinds.get(failure.kind, 0) + 1
        if not self.fail_open:
            kind = cast(Kind, failure.kind) if failure.kind in KINDS else "unavailable"
            raise SessionError(f"conversation {what} failed: Redis {failure.kind}", kind=kind)
        logger.log(
            logging.WARNING if self._warnings.due(f"{what}:{failure.kind}") else logging.DEBUG,
            "paracache: conversation %s failed (%s); going on without it",
            what,
            failure.kind,
        )

    def _parse(self, raw: Sequence[Any]) -> list[StoredMessage]:
        if raw and all(isinstance(item, bytes) for item in raw):
            # Fast path: one json.loads for the whole list; any surprise (a record that is
            # not one JSON value of the expected shape) falls back to record by record.
            try:
                batch = json.loads(b"[" + b",".join(raw) + b"]")
            except ValueError:
                batch = None
            if isinstance(batch, list) and len(batch) == len(raw):
                fast = [_stored(data) for data in batch]
                if all(m is not None for m in fast):
                    return cast(list[StoredMessage], fast)
        out: list[StoredMessage] = []
        for item in raw:
            try:
                record = _stored(json.loads(item))
                if record is None:
                    raise ValueError("unexpected record shape")
            except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
                self._count("corrupt")
                logger.warning("paracache: skipped a corrupt conversation record (%s)", exc)
                continue
            out.append(record)
        return out

    # ------------------------------------------------------------------ flows

    def _append_flow(
        self, session_id: str, messages: Sequence[Mapping[str, Any]], tokens: Sequence[int]
    ) -> Flow[bool]:
        field, key, sums = self._ids(session_id)
        if len(messages) != len(tokens):
            raise ValueError("give one token count per message")
        now = time.time()
        records = [_record(m, t, now) for m, t in zip(messages, tokens, strict=True)]
        if not records:
            return True
        reply = yield Batch((
            ("RPUSH", key, *records),
            ("HSET", self._registry, field, session_id.encode("utf-8", "surrogatepass")),
            *self._renew(key, sums, self._registry),
        ))
        if isinstance(reply, Failure):
            self._failed(reply, "write")
            return False
        self._count("writes")
        return True

    def _read_flow(self, session_id: str) -> Flow[list[StoredMessage]]:
        _, key, sums = self._ids(session_id)
        reply = yield Batch(
            (("LRANGE", key, 0, -1), *self._renew(key, sums, self._registry)), transaction=False
        )
        if isinstance(reply, Failure):
            self._failed(reply, "read")
            return []
        self._count("reads")
        return self._parse(reply[0])

    def _replace_flow(
        self, session_id: str, messages: Sequence[Mapping[str, Any]], tokens: Sequence[int]
    ) -> Flow[bool]:
        field, key, sums = self._ids(session_id)
        if len(messages) != len(tokens):
            raise ValueError("give one token count per message")
        now = time.time()
        records = [_record(m, t, now) for m, t in zip(messages, tokens, strict=True)]
        commands: list[tuple[Any, ...]] = [("DEL", key)]
        if records:
            commands += [
                ("RPUSH", key, *records),
                ("HSET", self._registry, field, session_id.encode("utf-8", "surrogatepass")),
                *self._renew(key, sums, self._registry),
            ]
        else:
            commands += [("DEL", sums), ("HDEL", self._registry, field)]
        reply = yield Batch(tuple(commands))
        if isinstance(reply, Failure):
            self._failed(reply, "write")
            return False
        self._count("writes")
        return True

    def _clear_flow(self, session_id: str) -> Flow[list[StoredMessage]]:
        field, key, sums = self._ids(session_id)
        reply = yield Batch((
            ("LRANGE", key, 0, -1), ("DEL", key, sums), ("HDEL", self._registry, field),
        ))
        if isinstance(reply, Failure):
            self._failed(reply, "clear")
            return []
        self._count("writes")
        return self._parse(reply[0])

    def _remove_flow(self, session_id: str, index: int) -> Flow[StoredMessage | None]:
        """Remove the message at ``index`` (negative: from the end), atomically."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, got {index!r}")
        _, key, _sums = self._ids(session_id)
        reply = yield Script(_REMOVE_SCRIPT, (key,), (index,))
        if isinstance(reply, Failure):
            self._failed(reply, "write")
            return None
        self._count("writes")
        found = self._parse([reply]) if reply is not None else []
        return found[0] if found else None

    def _window_flow(
        self,
        session_id: str,
        max_tokens: int,
        summarize: Callable[[list[StoredMessage]], Any] | None,
    ) -> Flow[ContextWindow]:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an int >= 0, got {max_tokens!r}")
        if summarize is not None and not callable(summarize):
            raise TypeError("summarize must be callable")
        _, key, sums = self._ids(session_id)
        reply = yield Batch(
            (("LRANGE", key, 0, -1), *self._renew(key, sums, self._registry)), transaction=False
        )
        if isinstance(reply, Failure):
            self._failed(reply, "read")
            return ContextWindow([], None, 0, 0)
        self._count("reads")
        records = self._parse(reply[0])
        start, used = len(records), 0
        while start > 0 and used + records[start - 1].tokens <= max_tokens:
            start -= 1
            used += records[start].tokens
        if start == 0 or summarize is None:
            return ContextWindow(records[start:], None, start, used)
        # Summarise whole segments: round the boundary up to a segment's end, so a
        # segment's summary is computed once and reused while the conversation grows.
        cut = min(-(-start // self.segment) * self.segment, len(records))
        used = sum(r.tokens for r in records[cut:])
        bounds = [(i, min(i + self.segment, cut)) for i in range(0, cut, self.segment)]
        # A segment's summary is keyed by its messages and token counts (not by when they
        # were stored: rewriting the same messages keeps their summaries).
        fields = [
            digest("segment/v1", [[r.message, r.tokens] for r in records[a:b]])
            for a, b in bounds
        ]
        cached = yield Batch((("HMGET", sums, *fields), ("HKEYS", sums)), transaction=False)
        if isinstance(cached, Failure):
            self._failed(cached, "summary read")
            cached = [[None] * len(fields), []]
        stale = {_text(k) for k in cached[1]} - set(fields)
        texts: list[str] = []
        fresh: dict[str, str] = {}
        for (a, b), field, hit in zip(bounds, fields, cached[0], strict=True):
            if hit is not None:
                texts.append(hit.decode() if isinstance(hit, bytes) else str(hit))
                self._count("summaries_reused")
                continue
            text = yield Call(summarize, (records[a:b],))
            if not isinstance(text, str):
                raise TypeError(f"the summariser must return a str, got {type(text).__name__}")
            texts.append(text)
            fresh[field] = text
            self._count("summaries_computed")
        if fresh:
            stored = yield Batch((
                ("HSET", sums, *(x for pair in fresh.items() for x in pair)),
                *((("HDEL", sums, *sorted(stale)),) if stale else ()),
                *self._renew(sums),
            ))
            if isinstance(stored, Failure):
                self._failed(stored, "summary write")
        return ContextWindow(records[cut:], "\n".join(texts), cut, used)

    def _sessions_flow(self) -> Flow[list[str]]:
        reply = yield Batch((("HGETALL", self._registry),), transaction=False)
        if isinstance(reply, Failure):
            self._failed(reply, "listing")
            return []
        pairs = reply[0]
        items = list(pairs.items()) if isinstance(pairs, dict) else []
        if not items:
            return []
        lists = [self._prefix + _text(f) for f, _ in items]
        alive = yield Batch(tuple(("EXISTS", k) for k in lists), transaction=False)
        if isinstance(alive, Failure):
            self._failed(alive, "listing")
            return []
        stale = [f for (f, _), live in zip(items, alive, strict=True) if not live]
        if stale:
            yield Batch((("HDEL", self._registry, *stale),), transaction=False)
        return sorted(
            _text(v, surrogates=True)
            for (_, v), live in zip(items, alive, strict=True) if live
        )

    # ------------------------------------------------------------------ API

    def append(
        self, session_id: str, messages: Sequence[Mapping[str, Any]], tokens: Sequence[int]
    ) -> bool:
        """Append messages (plain JSON objects) with their token counts; ``False`` when
        the write was dropped (Redis unreachable, ``fail_open``)."""
        return self._link.run(self._append_flow(session_id, messages, tokens))

    async def aappend(
        self, session_id: str, messages: Sequence[Mapping[str, Any]], tokens: Sequence[int]
    ) -> bool:
        """:meth:`append` without blocking the event loop."""
        return await self._link.arun(self._append_flow(session_id, messages, tokens))

    def read(self, session_id: str) -> list[StoredMessage]:
        """All messages of a conversation, oldest first."""
        return self._link.run(self._read_flow(session_id))

    async def aread(self, session_id: str) -> list[StoredMessage]:
        """:meth:`read` without blocking the event loop."""
        return await self._link.arun(self._read_flow(session_id))

    def replace(
        self, session_id: str, messages: Sequence[Mapping[str, Any]], tokens: Sequence[int]
    ) -> bool:
        """Replace a conversation's messages (atomically)."""
        return self._link.run(self._replace_flow(session_id, messages, tokens))

    async def areplace(
        self, session_id: str, messages: Sequence[Mapping[str, Any]], tokens: Sequence[int]
    ) -> bool:
        """:meth:`replace` without blocking the event loop."""
        return await self._link.arun(self._replace_flow(session_id, messages, tokens))

    def clear(self, session_id: str) -> list[StoredMessage]:
        """Delete a conversation (and its summaries); returns what it held."""
        return self._link.run(self._clear_flow(session_id))

    async def aclear(self, session_id: str) -> list[StoredMessage]:
        """:meth:`clear` without blocking the event loop."""
        return await self._link.arun(self._clear_flow(session_id))

    def remove(self, session_id: str, index: int) -> StoredMessage | None:
        """Remove and return the message at ``index`` (``-1``: the last), or ``None``."""
        return self._link.run(self._remove_flow(session_id, index))

    async def aremove(self, session_id: str, index: int) -> StoredMessage | None:
        """:meth:`remove` without blocking the event loop."""
        return await self._link.arun(self._remove_flow(session_id, index))

    def window(
        self,
        session_id: str,
        max_tokens: int,
        summarize: Callable[[list[StoredMessage]], str] | None = None,
    ) -> ContextWindow:
        """The newest messages within ``max_tokens`` and, with ``summarize``, a summary of
        the older ones (see the module docs). ``summarize`` gets one segment's messages."""
        return self._link.run(self._window_flow(session_id, max_tokens, summarize))

    async def awindow(
        self,
        session_id: str,
        max_tokens: int,
        summarize: Callable[[list[StoredMessage]], Any] | None = None,
    ) -> ContextWindow:
        """:meth:`window` without blocking the event loop (``summarize`` may be async)."""
        return await self._link.arun(self._window_flow(session_id, max_tokens, summarize))

    def sessions(self) -> list[str]:
        """This tenant's live session ids, sorted."""
        return self._link.run(self._sessions_flow())

    async def asessions(self) -> list[str]:
        """:meth:`sessions` without blocking the event loop."""
        return await self._link.arun(self._sessions_flow())

    def stats(self) -> SessionStats:
        """Counters since this store was made."""
        with self._lock:
            counts = dict(self._counts)
            kinds = dict(self._kinds)
        return SessionStats(**counts, errors_by_kind=kinds)

    def close(self) -> None:
        """Release the connections."""
        self._link.close()

    async def aclose(self) -> None:
        """:meth:`close`, also for the running loop's async connection."""
        await self._link.aclose()

    def __repr__(self) -> str:
        return f"SessionStore(namespace={self.namespace!r}, ttl={self.ttl!r})"


#: Remove one list element by index atomically (LSET to a unique marker, then LREM).
_REMOVE_SCRIPT = """
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = n + i end
if i < 0 or i >= n then return false end
local v = redis.call('LINDEX', KEYS[1], i)
local marker = '\\0paracache-removed\\0'
redis.call('LSET', KEYS[1], i, marker)
redis.call('LREM', KEYS[1], 1, marker)
return v
"""


def _text(value: Any, surrogates: bool = False) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogatepass" if surrogates else "strict")
    return str(value)
