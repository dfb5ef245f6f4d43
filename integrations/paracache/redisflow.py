"""Small sans-IO flows of Redis work, and the two drivers that run them.

The rate limiter (:mod:`paracache.limiter`) and the conversation store
(:mod:`paracache.sessions`) write their logic once, as generators that *yield* steps
(:class:`Script`, :class:`Batch`, :class:`Sleep`, :class:`Call`) and receive the
results. A :class:`Link` runs such a flow with blocking calls (:meth:`Link.run`) or on
asyncio (:meth:`Link.arun`), so the sync and async APIs share one body.

A Redis failure is translated at this boundary, like the cache's drivers do
(:func:`paracache.transport.translate`: a :class:`paracache.errors.BackendError` kind) and
is not raised into the flow: the flow receives a :class:`Failure` with that ``kind`` and
decides (fail open or closed). A circuit breaker stops paying timeouts while Redis is
down (error replies, e.g. a foreign value of the wrong type at a key, do not open it).
Anything else (a bug in paracache) propagates.

Example:
    >>> def ping_flow():
    ...     replies = yield Batch((("PING",),))
    ...     return replies
    >>> Link("redis://localhost:6379").run(ping_flow())  # doctest: +SKIP
    [True]
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import BackendError, CacheClosedError
from .policy import CircuitBreaker, Throttle
from .transport import (
    client_url,
    derive_async,
    pooled_client,
    resolve_redis_url,
    safe_url,
    translate,
    warn_unbounded,
)

__all__ = ["Batch", "Call", "Failure", "Flow", "Link", "Script", "Sleep"]

logger = logging.getLogger("paracache")

T = TypeVar("T")

_CLUSTER = (
    "; rate limits, conversations and work queues need one Redis server (Redis Cluster "
    "is not supported for them yet)"
)


@dataclasses.dataclass(frozen=True)
class Script:
    """Run a Lua script (``EVALSHA``, loading it on ``NOSCRIPT``); the reply is sent back."""

    source: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Batch:
    """Commands in one round trip (``MULTI``/``EXEC`` when ``transaction``); the list of
    replies is sent back."""

    commands: tuple[tuple[Any, ...], ...]
    transaction: bool = True


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Wait (``time.sleep`` or ``asyncio.sleep``); ``None`` is sent back."""

    seconds: float


@dataclasses.dataclass(frozen=True)
class Call:
    """Call the user's function (awaited if it returns an awaitable); its result is sent
    back. Exceptions from it propagate."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class Failure:
    """Sent instead of a reply when Redis failed: ``kind`` is a
    :data:`paracache.errors.Kind` (``timeout``, ``unavailable``, ``oom``, ``readonly``,
    ``refused``, ...) or ``breaker_open``."""

    kind: str
    error: str


Step = Script | Batch | Sleep | Call
Flow = Generator[Step, Any, T]


class Link:
    """A connection to one Redis that runs flows, sync or async.

    Args:
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL; ``None``: like
            :class:`paracache.SemanticIndex` (``PARACACHE_REDIS_URL``, ``REDIS_URL``, else
            the embedded server).
        redis_client: Your own ``redis.Redis`` instead (its timeouts apply).
        timeout: Seconds each command may take (own clients).
        name: Client name shown by ``CLIENT LIST``.
        breaker: Opens after repeated failures; while open, steps fail at once.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: redis.Redis | None = None,
        timeout: float = 0.5,
        name: str = "paracache",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if redis_url is not None and not isinstance(redis_url, str):
            raise TypeError(f"redis_url must be a str, got {type(redis_url).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError("breaker must be a paracache.CircuitBreaker")
        self._timeout = float(timeout)
        self._name = name
        self.breaker = breaker or CircuitBreaker(failures=3, cooldown=1.0)
        self._own = redis_client is None
        if redis_client is not None:
            if redis_url is not None:
                raise ValueError("give either redis_client= or redis_url=, not both")
            if not isinstance(redis_client, redis.Redis):
                raise TypeError(
                    f"redis_client must be a redis.Redis, got {redis_client!r}"
                    + (_CLUSTER if type(redis_client).__name__ == "RedisCluster" else "")
                )
            self.url = client_url(redis_client)
            self._client: redis.Redis = redis_client
            warn_unbounded(redis_client, name)
        else:
            self.url = resolve_redis_url(redis_url)
            self._client = pooled_client(self.url, self._kwargs())
        self._safe = safe_url(self.url)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._shas: dict[str, str] = {}
        #: What the closed error names (the store or limiter that owns this link).
        self.owner = f"Link({self._safe!r})"
        self._closed = False
        #: One warning per failure kind every 10 s: a refusal that lasts (an ACL, out of
        #: memory) keeps the breaker closed and would otherwise log on every call.
        self._warnings = Throttle()

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError(self.owner)

    def _kwargs(self, asynchronous: bool = False) -> dict[str, Any]:
        return {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": max(self._timeout, 0.5),
            "retry": (AsyncRetry if asynchronous else Retry)(NoBackoff(), 0),
            "health_check_interval": 0,
            "client_name": self._name,
        }

    def _aclient(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            with self._lock:
                client = self._aclients.get(loop)
                if client is None:
                    client = (
                        pooled_client(self.url, self._kwargs(asynchronous=True), asyncio=True)
                        if self._own
                        else cast(aioredis.Redis, derive_async(self._client))
                    )
                    self._aclients[loop] = client
        return client

    def _sha(self, source: str) -> str:
        sha = self._shas.get(source)
        if sha is None:
            sha = hashlib.sha1(source.encode()).hexdigest()
            self._shas[source] = sha
        return sha

    # ------------------------------------------------------------------ drivers

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` with blocking calls in this thread; after :meth:`close`, raise
        :class:`~paracache.errors.CacheClosedError`."""
        self._check_open()
        reply: Any = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, Sleep):
                    time.sleep(max(0.0, step.seconds))
                    reply = None
                elif isinstance(step, Call):
                    reply = step.fn(*step.args)
                    if inspect.isawaitable(reply):
                        if inspect.iscoroutine(reply):
                            reply.close()
                        raise TypeError("this call is blocking: pass a plain function, or use "
                                        "the async method")
                else:
                    reply = self._io(step)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def arun(self, flow: Flow[T]) -> T:
        """Run ``flow`` on the running event loop (never blocks it)."""
        self._check_open()
        reply: Any = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, Sleep):
                    await asyncio.sleep(max(0.0, step.seconds))
                    reply = None
                elif isinstance(step, Call):
                    reply = step.fn(*step.args)
                    if inspect.isawaitable(reply):
                        reply = await reply
                else:
                    reply = await self._aio(step)
        except StopIteration as stop:
            return cast(T, stop.value)

    def _io(self, step: Script | Batch) -> Any:
        if not self.breaker.allow():
            return Failure("breaker_open", "circuit breaker open")
        client = self._client
        try:
            if isinstance(step, Script):
                sha = self._sha(step.source)
                try:
                    reply = client.evalsha(sha, len(step.keys), *step.keys, *step.args)
                except redis.exceptions.NoScriptError:
                    reply = client.eval(step.source, len(step.keys), *step.keys, *step.args)
            elif len(step.commands) == 1 and not step.transaction:
                reply = [client.execute_command(*step.commands[0])]  # type: ignore[no-untyped-call]
            else:
                pipe = client.pipeline(transaction=step.transaction)
                for command in step.commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                reply = pipe.execute()
        except Exception as exc:
            return self._failed(exc)
        self.breaker.record_success()
        return reply

    async def _aio(self, step: Script | Batch) -> Any:
        if not self.breaker.allow():
            return Failure("breaker_open", "circuit breaker open")
        client = self._aclient()
        try:
            if isinstance(step, Script):
                sha = self._sha(step.source)
                try:
                    reply = await client.evalsha(
                        sha, len(step.keys), *step.keys, *step.args
                    )
                except redis.exceptions.NoScriptError:
                    reply = await client.eval(
                        step.source, len(step.keys), *step.keys, *step.args
                    )
            elif len(step.commands) == 1 and not step.transaction:
                reply = [await client.execute_command(*step.commands[0])]  # type: ignore[no-untyped-call]
            else:
                pipe = client.pipeline(transaction=step.transaction)
                for command in step.commands:
                    pipe.execute_command(*command)
                reply = await pipe.execute()
        except Exception as exc:
            return self._failed(exc)
        self.breaker.record_success()
        return reply

    def _failed(self, exc: Exception) -> Failure:
        err = translate(exc)
        if not isinstance(err, BackendError):
            raise exc  # a bug in paracache, not a Redis failure
        if err.answered:
            # An error reply (e.g. someone else's value at our key): Redis is up.
            self.breaker.record_success()
        else:
            self.breaker.record_failure()
        level = logging.WARNING if self._warnings.due(err.kind) else logging.DEBUG
        if isinstance(exc, redis.exceptions.AskError):  # MOVED/ASK: a cluster node
            logger.log(
                level,
                "paracache: Redis at %s failed (%s): %s: it is a Redis Cluster node%s",
                self._safe, err.kind, exc, _CLUSTER,
            )  # fmt: skip
        else:
            logger.log(level, "paracache: Redis at %s failed (%s): %s", self._safe, err.kind, exc)
        return Failure(err.kind, str(exc))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release this link's own connections (a caller's client is left open). Final:
        flows run later raise :class:`~paracache.errors.CacheClosedError`."""
        self._closed = True
        if self._own:
            self._client.close()

    async def aclose(self) -> None:
        """Also close the async client of the running loop."""
        self._closed = True
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        self.close()

