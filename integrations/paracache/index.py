"""``SemanticIndex``: the framework-free cache, a thin sync and async shell over the core.

Each public method validates its arguments, builds a flow from :mod:`paracache.core`
and runs it with a blocking driver (``lookup``) or an asyncio driver (``alookup``).
The drivers only carry out I/O; they decide nothing.

Example:
    >>> from paracache import SemanticIndex, Scope
    >>> cache = SemanticIndex(namespace="docs-example")    # embedded Redis, offline embedder
    >>> scope = Scope(model="gpt-4o-mini", tenant="acme")
    >>> cache.store("What's your refund policy?", "Refunds in 30 days.", scope)  # doctest: +SKIP
    '9f2c...'
    >>> hit = cache.lookup("what is your refund policy", scope)  # doctest: +SKIP
    >>> hit.layer, hit.response  # doctest: +SKIP
    ('semantic', 'Refunds within 30 days.')
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .core import (
    Batch,
    CacheError,
    CacheHit,
    Call,
    Candidate,
    Core,
    Embed,
    EnsureIndex,
    Flow,
    LookupRequest,
    Settings,
    Verdict,
    check_similarity,
)
from .metrics import CacheStats, Recorder
from .policy import CircuitBreaker, Normalizer, TTLPolicy
from .schema import HNSW, Layout
from .scope import Scope
from .vectorizers import EmbeddingMemo, default_vectorizer, vectorizer_id

__all__ = ["RedisSearchUnavailable", "SemanticIndex"]

logger = logging.getLogger("paracache")

_UNSET: Any = object()
T = TypeVar("T")


class RedisSearchUnavailable(RuntimeError):
    """The Redis server has no search module (``FT.*`` commands)."""


def resolve_redis_url(redis_url: str | None) -> str:
    """An explicit URL, else ``PARACACHE_REDIS_URL`` or ``REDIS_URL``, else the embedded server.

    Example:
        >>> resolve_redis_url("redis://localhost:6379")
        'redis://localhost:6379'
    """
    if redis_url:
        return redis_url
    env = os.environ.get("PARACACHE_REDIS_URL") or os.environ.get("REDIS_URL")
    if env:
        return env
    from .embedded import embedded_url

    return embedded_url()


class SemanticIndex:
    """A semantic cache on Redis vector search: exact layer, then semantic layer.

    Args:
        redis_url: ``redis://`` or ``rediss://`` URL. Default: ``PARACACHE_REDIS_URL``,
            ``REDIS_URL``, else an embedded Redis started on first use (needs the
            ``embedded`` extra).
        namespace: Isolates this cache from others on the same Redis.
        vectorizer: Any RedisVL vectorizer. Default: offline all-MiniLM-L6-v2 (int8 ONNX).
            Its model id is part of the index identity.
        min_similarity: Cosine similarity in [0, 1] a semantic hit needs (higher is
            stricter); overridable per call.
        ttl: Default seconds an entry lives (``None``: no expiry). Shorthand for
            ``ttl_policy=TTLPolicy(default_ttl=...)``.
        ttl_policy: Full TTL and no-cache rules.
        normalizer: How prompts are normalised for both layers.
        top_k: In-scope neighbours the semantic layer considers.
        dtype: ``"float32"`` or ``"float16"`` vectors.
        hnsw: HNSW graph parameters.
        timeout: Seconds a hot-path Redis call may take before it counts as a failure.
        admin_timeout: Seconds for clear/count and other administrative calls.
        embed_timeout: Seconds an embedding may take before the lookup gives up on it
            (a miss) and a write is stored for the exact layer only; ``None``: no limit.
        breaker: The circuit breaker (default: open after 3 failures for 2 s).
        track_hits: Record ``hit_count`` and ``last_hit_at`` on each hit.
        on_verdict: Called with every lookup's :class:`Verdict`.
        exact: Use the exact layer (on by default).
        semantic: Use the semantic layer (on by default).

    Example:
        >>> cache = SemanticIndex(namespace="faq", min_similarity=0.92, ttl=3600)  # doctest: +SKIP
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str = "default",
        vectorizer: Any = None,
        min_similarity: float | None = None,
        ttl: float | None = _UNSET,
        ttl_policy: TTLPolicy | None = None,
        normalizer: Normalizer | None = None,
        top_k: int = 4,
        dtype: str = "float32",
        hnsw: HNSW | None = None,
        timeout: float = 0.25,
        admin_timeout: float = 10.0,
        embed_timeout: float | None = 5.0,
        breaker: CircuitBreaker | None = None,
        track_hits: bool = True,
        on_verdict: Callable[[Verdict], None] | None = None,
        semantic: bool = True,
    ) -> None:
        if redis_url is not None and not isinstance(redis_url, str):
            raise TypeError(f"redis_url must be a str, got {type(redis_url).__name__}")
        if ttl_policy is None:
            ttl_policy = TTLPolicy() if ttl is _UNSET else TTLPolicy(default_ttl=ttl)
        elif ttl is not _UNSET:
            raise ValueError("give either ttl= or ttl_policy=, not both")
        if not isinstance(ttl_policy, TTLPolicy):
            raise TypeError("ttl_policy must be a paracache.TTLPolicy")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 100:
            raise ValueError(f"top_k must be an int in [1, 100], got {top_k!r}")
        for name, value in (("timeout", timeout), ("admin_timeout", admin_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if embed_timeout is not None and (
            isinstance(embed_timeout, bool)
            or not isinstance(embed_timeout, (int, float))
            or embed_timeout <= 0
        ):
            raise ValueError(
                f"embed_timeout must be a positive number or None, got {embed_timeout!r}"
            )
        if on_verdict is not None and not callable(on_verdict):
            raise TypeError("on_verdict must be callable")
        self._embed_timeout = None if embed_timeout is None else float(embed_timeout)

        self.vectorizer = default_vectorizer() if vectorizer is None else vectorizer
        vid = vectorizer_id(self.vectorizer)
        dims = self.vectorizer.dims
        layout = Layout.build(namespace, vid, dims=dims, dtype=dtype, hnsw=hnsw)
        settings = Settings(
            min_similarity=(
                Settings.min_similarity
                if min_similarity is None
                else check_similarity(min_similarity)
            ),
            top_k=top_k,
            policy=ttl_policy,
            normalizer=normalizer or Normalizer(),
            track_hits=bool(track_hits),
        )
        self._semantic = bool(semantic)
        self._core = Core(
            layout,
            settings,
            recorder=Recorder(),
            breaker=breaker or CircuitBreaker(),
            on_verdict=on_verdict,
        )
        self.redis_url = resolve_redis_url(redis_url)
        self._timeout = float(timeout)
        self._admin_timeout = float(admin_timeout)
        self._memo = EmbeddingMemo(1024)
        self._client = self._sync_client(self._timeout)
        self._admin = self._sync_client(self._admin_timeout)
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aioredis.Redis, aioredis.Redis]
        ] = weakref.WeakKeyDictionary()
        self._alock = threading.Lock()
        self._probe()

    # ------------------------------------------------------------------ properties

    @property
    def namespace(self) -> str:
        """The namespace this cache lives in."""
        return self._core.layout.namespace

    @property
    def layout(self) -> Layout:
        """Key layout and index definition."""
        return self._core.layout

    @property
    def settings(self) -> Settings:
        """The validated settings (threshold, top_k, TTL policy, normaliser)."""
        return self._core.settings

    @property
    def core(self) -> Core:
        """The sans-IO core (for adapters that add guards or observers)."""
        return self._core

    # ------------------------------------------------------------------ public API

    def lookup(
        self,
        prompt: str,
        scope: Scope | None = None,
        *,
        min_similarity: float | None = None,
        semantic: bool = True,
    ) -> CacheHit | None:
        """The cached answer for ``prompt`` under ``scope``, or ``None``.

        Never raises for Redis or embedding failures (those are misses); raises
        ``TypeError``/``ValueError`` for bad arguments.

        Example:
            >>> hit = cache.lookup("Can I get my money back?", Scope(tenant="a"))  # doctest: +SKIP
        """
        return self.lookup_verdict(
            prompt, scope, min_similarity=min_similarity, semantic=semantic
        ).hit

    async def alookup(
        self,
        prompt: str,
        scope: Scope | None = None,
        *,
        min_similarity: float | None = None,
        semantic: bool = True,
    ) -> CacheHit | None:
        """Async :meth:`lookup`; never blocks the event loop."""
        verdict = await self.alookup_verdict(
            prompt, scope, min_similarity=min_similarity, semantic=semantic
        )
        return verdict.hit

    def lookup_verdict(
        self,
        prompt: str,
        scope: Scope | None = None,
        *,
        min_similarity: float | None = None,
        semantic: bool = True,
    ) -> Verdict:
        """Like :meth:`lookup`, but returns the full :class:`Verdict` (hit or why not)."""
        req = self._core.prepare_lookup(
            prompt, scope, min_similarity=min_similarity, semantic=semantic and self._semantic
        )
        return self._run(self._core.lookup_flow(req))

    async def alookup_verdict(
        self,
        prompt: str,
        scope: Scope | None = None,
        *,
        min_similarity: float | None = None,
        semantic: bool = True,
    ) -> Verdict:
        """Async :meth:`lookup_verdict`."""
        req = self._core.prepare_lookup(
            prompt, scope, min_similarity=min_similarity, semantic=semantic and self._semantic
        )
        return await self._arun(self._core.lookup_flow(req))

    def store(
        self,
        prompt: str,
        response: str,
        scope: Scope | None = None,
        *,
        ttl: float | bool | None = True,
        metadata: dict[str, Any] | None = None,
        tokens: int = 0,
        semantic: bool = True,
    ) -> str | None:
        """Store ``response`` for ``prompt`` under ``scope``; returns the entry id.

        ``ttl=True`` applies the TTL policy, a number overrides it, ``None`` never
        expires. ``tokens`` is what the LLM call cost (counted as saved on each hit).
        ``semantic=False`` stores for the exact layer only. Returns ``None`` when the
        policy declines (e.g. high temperature) or Redis is unavailable (fail-open).

        Example:
            >>> cache.store("What's your refund policy?", "30 days.", tokens=42)  # doctest: +SKIP
        """
        req = self._core.prepare_store(
            prompt,
            response,
            scope,
            ttl=ttl,
            metadata=metadata,
            tokens=tokens,
            semantic=semantic and self._semantic,
        )
        return self._run(self._core.store_flow(req))

    async def astore(
        self,
        prompt: str,
        response: str,
        scope: Scope | None = None,
        *,
        ttl: float | bool | None = True,
        metadata: dict[str, Any] | None = None,
        tokens: int = 0,
        semantic: bool = True,
    ) -> str | None:
        """Async :meth:`store`."""
        req = self._core.prepare_store(
            prompt,
            response,
            scope,
            ttl=ttl,
            metadata=metadata,
            tokens=tokens,
            semantic=semantic and self._semantic,
        )
        return await self._arun(self._core.store_flow(req))

    def clear(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        corpus_version: str | None = None,
        scope: Scope | None = None,
    ) -> int:
        """Delete entries; returns how many. With no argument: the whole namespace
        (every embedding model's entries). With arguments: the entries of this index
        matching all of them. Raises :class:`CacheError` if Redis is unreachable.

        Example:
            >>> cache.clear(tenant="acme", corpus_version="2026-10")  # doctest: +SKIP
            12
        """
        flow = self._core.clear_flow(
            tenant=tenant, model=model, corpus_version=corpus_version, scope=scope
        )
        return self._admin_run(flow)

    async def aclear(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        corpus_version: str | None = None,
        scope: Scope | None = None,
    ) -> int:
        """Async :meth:`clear`."""
        flow = self._core.clear_flow(
            tenant=tenant, model=model, corpus_version=corpus_version, scope=scope
        )
        return await self._admin_arun(flow)

    def delete(self, entry_id: str) -> bool:
        """Delete one entry by its id (from :class:`CacheHit` or :meth:`store`)."""
        return self._admin_run(self._core.delete_flow(entry_id))

    async def adelete(self, entry_id: str) -> bool:
        """Async :meth:`delete`."""
        return await self._admin_arun(self._core.delete_flow(entry_id))

    def count(self) -> int:
        """How many entries this namespace holds for this embedding model."""
        return self._admin_run(self._core.count_flow())

    async def acount(self) -> int:
        """Async :meth:`count`."""
        return await self._admin_arun(self._core.count_flow())

    def stats(self) -> CacheStats:
        """Counters and latency percentiles of this instance.

        Example:
            >>> cache.stats().hit_rate  # doctest: +SKIP
            0.62
        """
        return self._core.recorder.snapshot(self._core.breaker.state)

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._core.recorder.reset()

    def embed(self, text: str) -> list[float]:
        """The (normalised, memoised) embedding the semantic layer uses for ``text``."""
        return list(self._embed_sync(self._core.settings.normalizer(text)))

    def close(self) -> None:
        """Release connections (the embedded server, if any, stops at exit)."""
        self._client.close()
        self._admin.close()

    async def aclose(self) -> None:
        """Release this event loop's connections."""
        loop = asyncio.get_running_loop()
        clients = self._aclients.pop(loop, None)
        if clients:
            for c in clients:
                await c.aclose()

    def __enter__(self) -> SemanticIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SemanticIndex(namespace={self.namespace!r}, index={self.layout.index_name!r}, "
            f"min_similarity={self.settings.min_similarity})"
        )

    # ------------------------------------------------------------------ drivers

    def _run(self, flow: Flow[T]) -> T:
        """Run a flow, performing its I/O with blocking calls."""
        try:
            op = next(flow)
            while True:
                try:
                    result = self._perform(op, self._client)
                except Exception as exc:
                    op = flow.throw(exc)
                else:
                    op = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def _arun(self, flow: Flow[T], admin: bool = False) -> T:
        """Run a flow, performing its I/O without blocking the event loop."""
        client, admin_client = self._async_clients()
        target = admin_client if admin else client
        try:
            op = next(flow)
            while True:
                try:
                    result = await self._aperform(op, target)
                except Exception as exc:
                    op = flow.throw(exc)
                else:
                    op = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)

    def _admin_run(self, flow: Flow[T]) -> T:
        try:
            op = next(flow)
            while True:
                op = flow.send(self._perform(op, self._admin))
        except StopIteration as stop:
            return cast(T, stop.value)
        except redis.RedisError as exc:
            raise CacheError(f"paracache: {exc}") from exc

    async def _admin_arun(self, flow: Flow[T]) -> T:
        _, admin = self._async_clients()
        try:
            op = next(flow)
            while True:
                op = flow.send(await self._aperform(op, admin))
        except StopIteration as stop:
            return cast(T, stop.value)
        except redis.RedisError as exc:
            raise CacheError(f"paracache: {exc}") from exc

    def _perform(self, op: Any, client: redis.Redis) -> Any:
        if isinstance(op, Call):
            return cast(Any, client).execute_command(*op.args)
        if isinstance(op, Embed):
            return self._embed_sync(op.text)
        if isinstance(op, Batch):
            pipe = client.pipeline(transaction=op.transaction)
            for args in op.calls:
                cast(Any, pipe).execute_command(*args)
            return pipe.execute()
        if isinstance(op, EnsureIndex):
            from redisvl.index import SearchIndex

            index = SearchIndex.from_dict(self.layout.schema_dict(), redis_client=client)
            _create_quietly(index.create)
            return None
        raise TypeError(f"unknown operation {op!r}")

    async def _aperform(self, op: Any, client: aioredis.Redis) -> Any:
        if isinstance(op, Call):
            return await cast(Any, client).execute_command(*op.args)
        if isinstance(op, Embed):
            return await self._embed_async(op.text)
        if isinstance(op, Batch):
            pipe = client.pipeline(transaction=op.transaction)
            for args in op.calls:
                cast(Any, pipe).execute_command(*args)
            return await pipe.execute()
        if isinstance(op, EnsureIndex):
            from redisvl.index import AsyncSearchIndex

            index = AsyncSearchIndex.from_dict(self.layout.schema_dict(), redis_client=client)
            try:
                await index.create(overwrite=False)
            except Exception as exc:
                if not _already_exists(exc):
                    raise
            return None
        raise TypeError(f"unknown operation {op!r}")

    # ------------------------------------------------------------------ embedding

    def _embed_sync(self, text: str) -> Sequence[float]:
        vec = self._memo.get(text)
        if vec is None:
            if self._embed_timeout is None:
                vec = self.vectorizer.embed(text)
            else:  # a stuck embedder costs the caller embed_timeout, never more
                future = _embed_pool().submit(self.vectorizer.embed, text)
                vec = future.result(timeout=self._embed_timeout)
            self._memo.put(text, vec)
        return vec

    async def _embed_async(self, text: str) -> Sequence[float]:
        vec = self._memo.get(text)
        if vec is None:
            fresh: Sequence[float] = await asyncio.wait_for(
                self.vectorizer.aembed(text), self._embed_timeout
            )
            self._memo.put(text, fresh)
            return fresh
        return vec

    # ------------------------------------------------------------------ connections

    def _client_kwargs(self, timeout: float) -> dict[str, Any]:
        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": max(timeout, 0.5),
            "retry": Retry(NoBackoff(), 0),  # the breaker handles failures, not retries
            "health_check_interval": 0,
            "protocol": 2,
            "client_name": f"paracache:{self.namespace}",
        }

    def _sync_client(self, timeout: float) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, **self._client_kwargs(timeout))

    def _async_clients(self) -> tuple[aioredis.Redis, aioredis.Redis]:
        """One pair of async clients per event loop (connections cannot cross loops)."""
        loop = asyncio.get_running_loop()
        clients = self._aclients.get(loop)
        if clients is None:
            with self._alock:
                clients = self._aclients.get(loop)
                if clients is None:
                    clients = (
                        aioredis.Redis.from_url(
                            self.redis_url, **self._client_kwargs(self._timeout)
                        ),
                        aioredis.Redis.from_url(
                            self.redis_url, **self._client_kwargs(self._admin_timeout)
                        ),
                    )
                    self._aclients[loop] = clients
        return clients

    def _probe(self) -> None:
        """Check the server once: a server without search is a configuration error;
        an unreachable one is not (the cache starts fail-open and retries later)."""
        try:
            cast(Any, self._admin).execute_command("FT._LIST")
        except redis.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise RedisSearchUnavailable(
                    f"the Redis server at {_safe_url(self.redis_url)} has no search module "
                    "(FT.* commands). Use Redis 8, Redis Stack, or leave redis_url unset for "
                    "the embedded server (pip install 'paracache[embedded]')."
                ) from exc
            raise
        except redis.RedisError as exc:
            logger.warning(
                "paracache: Redis at %s is unreachable (%r); starting fail-open",
                _safe_url(self.redis_url),
                exc,
            )
            return
        try:
            self._perform(EnsureIndex(), self._admin)
            self._core.index_ready = True
        except redis.RedisError as exc:
            logger.warning("paracache: could not create the index yet: %r", exc)


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _embed_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that run blocking embeddings under a time limit (shared, created lazily)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="paracache-embed"
            )
        return _POOL


def _create_quietly(create: Callable[..., Any]) -> None:
    try:
        create(overwrite=False)
    except Exception as exc:
        if not _already_exists(exc):
            raise


def _already_exists(exc: BaseException) -> bool:
    return "already exists" in str(exc).lower()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# Re-exported for type checkers of adapters.
_ = (Candidate, LookupRequest)
