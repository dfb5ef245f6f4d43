"""The drivers: perform a flow's requests, blocking (:func:`run`) or asyncio (:func:`arun`).

One loop per kind of I/O. Each sends a flow the replies of the requests it yields
(:mod:`paracache.protocol`), performed by a :class:`SyncIO` or :class:`AsyncIO` (a
client, and for embeddings an :class:`~paracache.transport.Embedder`), and throws
failures into it translated into :class:`~paracache.errors.BackendError` kinds
(:func:`paracache.transport.translate`), so flows never see redis-py's or the
embedder's exceptions. A time ``budget`` (lookups and stores: ``2 * timeout``) makes
the next Redis request fail at once (``timeout``) once that much time has gone into
Redis; administrative calls run without one. The drivers decide nothing.

Example:
    >>> from paracache.protocol import Call
    >>> def flow():
    ...     reply = yield Call(("PING",))
    ...     return reply
    >>> class Echo:
    ...     def __call__(self, op):
    ...         return op.args[0]
    >>> run(flow(), Echo())
    'PING'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis

from .cluster import ClusterTransport
from .errors import BackendError
from .protocol import (
    Batch,
    Call,
    Embed,
    EmbedMany,
    EnsureIndex,
    Flow,
    Join,
    Post,
    Ready,
    Receive,
    Send,
    Submit,
)
from .schema import Layout
from .transport import Embedder, ThreadConnections, translate, within

__all__ = ["AsyncIO", "SyncIO", "arun", "run"]

T = TypeVar("T")

_EMBEDDING = (Embed, EmbedMany)


def run(flow: Flow[T], io: Callable[[Any], Any], budget: float | None = None) -> T:
    """Run ``flow``, performing its requests with ``io`` (blocking). With a ``budget``,
    once that many seconds have gone into Redis requests the next one fails at once;
    embeddings have their own limit (the embedder's timeout)."""
    spent = 0.0
    try:
        op = next(flow)
        while True:
            try:
                if budget is None or isinstance(op, _EMBEDDING):
                    result = io(op)
                else:
                    if spent >= budget:
                        raise BackendError("timeout", "time budget spent")
                    started = time.perf_counter()
                    try:
                        result = io(op)
                    finally:
                        spent += time.perf_counter() - started
            except Exception as exc:
                op = flow.throw(translate(exc, embedding=isinstance(op, _EMBEDDING)))
            else:
                op = flow.send(result)
    except StopIteration as stop:
        return cast(T, stop.value)


async def arun(
    flow: Flow[T],
    io: Callable[[Any], Awaitable[Any]],
    budget: float | None = None,
    bound: float | None = None,
) -> T:
    """Run ``flow``, performing its requests with ``io`` without blocking the event loop.

    ``budget`` as in :func:`run`; ``bound``: each Redis request may take this many
    seconds of the server's time (:func:`paracache.transport.within`, which tolerates a
    busy loop); the budget then counts at most ``bound`` per request, the rest being
    the loop's time, not the server's.
    """
    spent = 0.0
    try:
        op = next(flow)
        while True:
            try:
                if budget is None or isinstance(op, _EMBEDDING):
                    result = await io(op)
                else:
                    if spent >= budget:
                        raise BackendError("timeout", "time budget spent")
                    started = time.perf_counter()
                    try:
                        result = await (io(op) if bound is None else within(io(op), bound))
                    finally:
                        took = time.perf_counter() - started
                        spent += took if bound is None else min(took, bound)
            except Exception as exc:
                op = flow.throw(translate(exc, embedding=isinstance(op, _EMBEDDING)))
            else:
                op = flow.send(result)
    except StopIteration as stop:
        return cast(T, stop.value)


def _idempotent(cluster: ClusterTransport, op: Any) -> bool:
    """Whether ``op`` may run twice with the effect of once: creating the index, and the
    commands the cluster transport performs (index commands, ``SCAN``, ``UNLINK``)."""
    return isinstance(op, EnsureIndex) or (isinstance(op, Call) and cluster.handles(op.args))


@dataclasses.dataclass(frozen=True)
class SyncIO:
    """Performs requests with blocking calls on ``client`` (hot-path ``Call`` requests
    through ``direct``, one connection per thread, when given). ``embedder`` serves
    ``Embed``/``EmbedMany``, ``layout`` ``EnsureIndex``; ``writer`` runs a ``Submit``'s
    batch in the background (else at once). On a Redis Cluster, ``cluster`` performs
    what the cluster client cannot route: index commands (sent to every shard and
    merged), ``SCAN``, multi-key ``UNLINK``, and ``EnsureIndex``."""

    client: redis.Redis
    direct: ThreadConnections | None = None
    embedder: Embedder | None = None
    layout: Layout | None = None
    writer: concurrent.futures.Executor | None = None
    cluster: ClusterTransport | None = None

    def __call__(self, op: Any) -> Any:
        if self.cluster is None:
            return self._perform(op)
        self.cluster.maintain()
        try:
            return self._on_cluster(op)
        except Exception as exc:
            self.cluster.failed(exc)  # a failover, a moved slot: read the slot map again
            if not (
                isinstance(op, (Call, EnsureIndex))
                and self.cluster.recover(exc, _idempotent(self.cluster, op))
            ):
                raise
        return self._on_cluster(op)  # administration: once more, on the new slot map

    def _on_cluster(self, op: Any) -> Any:
        cluster = _need(self.cluster, op)
        if isinstance(op, EnsureIndex):
            return cluster.ensure_index(_need(self.layout, op).schema_dict())
        if isinstance(op, Call) and cluster.handles(op.args):
            return cluster.execute(op.args)
        return self._perform(op)

    def _perform(self, op: Any) -> Any:
        if isinstance(op, Call):
            if self.direct is not None:
                return self.direct.call(op.args)
            return cast(Any, self.client).execute_command(*op.args)
        if isinstance(op, Send):
            if self.direct is not None:
                return self.direct.send(op.args, op.more)
            if op.more:
                return _Done.of(lambda: self(Batch((op.args, *op.more))))
            return _Done.of(lambda: cast(Any, self.client).execute_command(*op.args))
        if isinstance(op, Receive):
            if isinstance(op.handle, _Done):
                return op.handle.result()
            return _need(self.direct, op).receive(op.handle)
        if isinstance(op, Ready):
            if isinstance(op.handle, _Done):
                return True
            return self.direct is not None and self.direct.ready(op.handle)
        if isinstance(op, Post):
            if self.direct is not None:  # sent now, its reply read with the next call's
                return self.direct.post(op.args, op.fallback, op.on_error)
            try:
                cast(Any, self.client).execute_command(*op.args)
            except redis.exceptions.NoScriptError:
                if op.fallback is None:
                    raise
                cast(Any, self.client).execute_command(*op.fallback)
            return None
        if isinstance(op, Batch):
            pipe = self.client.pipeline(transaction=op.transaction)
            for args in op.calls:
                cast(Any, pipe).execute_command(*args)
            return pipe.execute()
        if isinstance(op, Submit):
            if self.writer is not None:
                return self.writer.submit(self, op.batch)
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                done.set_result(self(op.batch))
            except Exception as exc:
                done.set_exception(exc)
            return done
        if isinstance(op, Join):
            return op.handle.result()
        if isinstance(op, Embed):
            return _need(self.embedder, op).vector(op.text)
        if isinstance(op, EmbedMany):
            return _need(self.embedder, op).embed_many(op.texts)
        if isinstance(op, EnsureIndex):
            from redisvl.index import SearchIndex

            schema = _need(self.layout, op).schema_dict()
            index = SearchIndex.from_dict(schema, redis_client=self.client)
            try:
                index.create(overwrite=False)
            except Exception as exc:
                if not _already_exists(exc):
                    raise _index_error(exc) from exc
            return None
        raise TypeError(f"unknown operation {op!r}")


@dataclasses.dataclass(frozen=True)
class AsyncIO:
    """Performs requests on an asyncio ``client`` (as :class:`SyncIO`; ``cluster`` keeps
    the topology with its blocking client and fans out on ``client``)."""

    client: aioredis.Redis
    embedder: Embedder | None = None
    layout: Layout | None = None
    cluster: ClusterTransport | None = None

    async def __call__(self, op: Any) -> Any:
        if self.cluster is None:
            return await self._perform(op)
        await self.cluster.amaintain(self.client)
        try:
            return await self._on_cluster(op)
        except Exception as exc:
            self.cluster.failed(exc)
            if not (
                isinstance(op, (Call, EnsureIndex))
                and await self.cluster.arecover(exc, self.client, _idempotent(self.cluster, op))
            ):
                raise
        return await self._on_cluster(op)

    async def _on_cluster(self, op: Any) -> Any:
        cluster = _need(self.cluster, op)
        if isinstance(op, EnsureIndex):
            return await cluster.aensure_index(_need(self.layout, op).schema_dict())
        if isinstance(op, Call) and cluster.handles(op.args):
            return await cluster.aexecute(op.args, self.client)
        return await self._perform(op)

    async def _perform(self, op: Any) -> Any:
        if isinstance(op, Call):
            return await cast(Any, self.client).execute_command(*op.args)
        if isinstance(op, Send):  # performed at once: the reply waits in the handle
            try:
                if op.more:
                    return _Done(await self._perform(Batch((op.args, *op.more))))
                return _Done(await cast(Any, self.client).execute_command(*op.args))
            except Exception as exc:
                return _Done(error=exc)
        if isinstance(op, Receive):
            return op.handle.result()
        if isinstance(op, Ready):  # performed at once (Send above)
            return True
        if isinstance(op, Post):
            try:
                await cast(Any, self.client).execute_command(*op.args)
            except redis.exceptions.NoScriptError:
                if op.fallback is None:
                    raise
                await cast(Any, self.client).execute_command(*op.fallback)
            return None
        if isinstance(op, Batch):
            pipe = self.client.pipeline(transaction=op.transaction)
            for args in op.calls:
                cast(Any, pipe).execute_command(*args)
            return await pipe.execute()
        if isinstance(op, Submit):  # runs while the flow embeds the next batch
            return asyncio.ensure_future(self(op.batch))
        if isinstance(op, Join):
            return await op.handle
        if isinstance(op, Embed):
            return await _need(self.embedder, op).aembed(op.text)
        if isinstance(op, EmbedMany):
            return await _need(self.embedder, op).aembed_many(op.texts)
        if isinstance(op, EnsureIndex):
            from redisvl.index import AsyncSearchIndex

            schema = _need(self.layout, op).schema_dict()
            index = AsyncSearchIndex.from_dict(schema, redis_client=self.client)
            try:
                await index.create(overwrite=False)
            except Exception as exc:
                if not _already_exists(exc):
                    raise _index_error(exc) from exc
            return None
        raise TypeError(f"unknown operation {op!r}")


@dataclasses.dataclass(frozen=True)
class _Done:
    """A :class:`~paracache.protocol.Send` a driver performed at once: its reply, or
    the exception it raised (raised again by :class:`~paracache.protocol.Receive`)."""

    value: Any = None
    error: Exception | None = None

    @classmethod
    def of(cls, perform: Callable[[], Any]) -> _Done:
        try:
            return cls(perform())
        except Exception as exc:
            return cls(error=exc)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _need(value: T | None, op: Any) -> T:
    if value is None:
        raise TypeError(f"this driver cannot perform {op!r}")
    return value


def _already_exists(exc: BaseException) -> bool:
    err = translate(exc)
    return isinstance(err, BackendError) and err.kind == "exists"


def _index_error(exc: Exception) -> BackendError:
    """RedisVL wraps Redis's errors (and its own refusals) in its own classes: what
    creating the index failed with, as a kind (``refused`` when it is not Redis's)."""
    err = translate(exc)
    return err if isinstance(err, BackendError) else BackendError("refused", str(exc))
