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
import functools
import logging
import os
import select
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence, Sized
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .core import (
    CacheError,
    CacheHit,
    Candidate,
    Core,
    EntryInfo,
    LookupRequest,
    Settings,
    Verdict,
    check_similarity,
    check_thresholds,
)
from .guards import Guards
from .metrics import CacheStats, Recorder
from .policy import CircuitBreaker, Normalizer, TTLPolicy
from .protocol import Batch, Call, Embed, EmbedMany, EnsureIndex, Flow, Join, Submit
from .repair import RepairReport
from .schema import HNSW, Layout
from .scope import Scope
from .vectorizers import EmbeddingMemo, MiniLMVectorizer, default_vectorizer, vectorizer_id

__all__ = ["RedisSearchUnavailable", "SemanticIndex"]

logger = logging.getLogger("paracache")

_UNSET: Any = object()
T = TypeVar("T")


class RedisSearchUnavailable(RuntimeError):
    """The Redis server has no search module (``FT.*`` commands)."""


def resolve_redis_url(
    redis_url: str | None, embedded_dir: str | os.PathLike[str] | None = None
) -> str:
    """An explicit URL, else an embedded server persisting to ``embedded_dir`` if given,
    else ``PARACACHE_REDIS_URL`` or ``REDIS_URL``, else the embedded server (persisting
    to ``$PARACACHE_EMBEDDED_DIR`` if set, in memory otherwise).

    Example:
        >>> resolve_redis_url("redis://localhost:6379")
        'redis://localhost:6379'
    """
    if redis_url:
        if embedded_dir is not None:
            raise ValueError("give either redis_url= or embedded_dir=, not both")
        return redis_url
    from .embedded import embedded_url

    if embedded_dir is not None:
        return embedded_url(embedded_dir)
    env = os.environ.get("PARACACHE_REDIS_URL") or os.environ.get("REDIS_URL")
    if env:
        return env
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
        thresholds: Per-scope thresholds, ``{scope field: {value: min_similarity}}``, e.g.
            ``{"tenant": {"medical": 0.97}, "model": {"gpt-4o": 0.92}}``; a field is
            ``tenant``, ``model``, ``corpus_version``, ``context`` or a ``Scope.fields``
            key. Precedence: per-call ``min_similarity`` > the strictest matching
            per-scope threshold > ``min_similarity``.
        guards: Checks between the nearest candidates and a hit that reject a candidate
            whose answer-changing details (negation, numbers, dates, amounts,
            identifiers, names, scope words, opposite actions) conflict with the
            query's; see :class:`paracache.guards.Guards`. On by default; ``None`` or
            ``Guards.off()`` turns them off. Rejections are counted in
            ``stats().rejections_by_reason``.
        corroboration_margin: How far below the threshold in effect a candidate may be
            and still be served when it is *corroborated*: it names the same identifier,
            sum, date, number or name as the query, no such detail on either side is
            missing from the other (:func:`paracache.guards.corroborates`), and it
            passes every guard. Default 0.05 (at the default threshold 0.90: down to
            0.85); 0 turns it off, as do ``guards=None``. A threshold of 1.0 (per call
            or per scope) gets no margin.
        strip_pleasantries: Embed prompts without greetings, politeness and hedge frames
            and sign-offs ("Hi, can you tell me ...", "..., thanks in advance"), stored
            and asked alike (:func:`paracache.policy.strip_pleasantries`). On by
            default; the exact layer's key is unchanged either way.
        ttl: Default seconds an entry lives (``None``: no expiry). Shorthand for
            ``ttl_policy=TTLPolicy(default_ttl=...)``.
        ttl_policy: Full TTL and no-cache rules.
        normalizer: How prompts are normalised for both layers.
        top_k: In-scope neighbours the semantic layer considers.
        dtype: ``"float16"`` (default) or ``"float32"`` vectors. float16 halves the
            vectors' memory and moves cosine similarities by at most 0.0001 (Banking77:
            same nearest neighbours, same hit rate and precision); part of the index
            identity, so changing it starts an empty index.
        hnsw: HNSW graph parameters.
        timeout: Seconds each Redis command of a lookup or store may take (default
            0.1). Once twice this has gone into one call's Redis commands, no further
            command is started (a miss or a dropped write), so a hot-path call waits on
            Redis at most about three times this, plus a connect on a fresh connection
            (``max(timeout, 0.5)``). Embedding has its own budget, ``embed_timeout``.
            On async calls, time the event loop was too busy to run the call is not
            counted against it (up to ``max(4 * timeout, 1.0)`` in all).
        admin_timeout: Seconds for clear/count and other administrative calls.
        embed_timeout: Seconds an embedding may take before the lookup gives up on it
            (a miss) and a write is stored for the exact layer only; ``None``: no limit.
            Blocking calls enforce it with a worker thread, except for the offline
            default model (bounded CPU work, run in the calling thread); async calls
            always.
        max_entries: Cap on this index's entries (``None``: no cap). Checked every
            ``max_entries // 10`` writes (1 to 1000) of this instance; the oldest entries
            by ``created_at`` beyond the cap are deleted then (see :meth:`trim`).
        embedded_dir: With no ``redis_url``: use an embedded Redis that persists to this
            directory (append-only file), so entries survive a restart. The same as
            setting ``PARACACHE_EMBEDDED_DIR``.
        breaker: The circuit breaker (default: open after 3 failures for 2 s).
        track_hits: Record ``hit_count`` and ``last_hit_at`` on each hit.
        on_verdict: Called with every lookup's :class:`Verdict`.
        exact: Use the exact layer (on by default).
        semantic: Use the semantic layer (on by default).
        metrics: Export metrics: ``"prometheus"`` (counters and histograms through
            ``prometheus_client``), ``"otel"`` (OpenTelemetry spans), or both as a
            list; see :mod:`paracache.observability`. Default: none (no cost).
        search_script: Run the semantic layer as one Lua script (KNN query, candidates
            read, hit counted: one round trip). ``None`` (default): on, except with a
            ``RedisCluster`` client. Set ``False`` for a sharded database behind a proxy
            (Redis Software / Redis Cloud with several shards), where a script sees one
            shard's index: the query and the winner's read then take two calls. A server
            that refuses the script (an ACL without scripting) switches it off by itself.
        spin: How long a blocking call may busy-wait for Redis's reply before its
            thread sleeps (seconds; default 0.002, 0 turns it off). A reply usually
            comes within a millisecond; waiting awake saves waking a sleeping thread,
            0.03-0.2 ms per call on a virtual machine. Only while one call at a time
            is in flight, only on paracache's own plain (not TLS) connections; with
            concurrent calls each sleeps as usual.

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
        thresholds: dict[str, dict[str, float]] | None = None,
        guards: Guards | None = _UNSET,
        corroboration_margin: float | None = None,
        strip_pleasantries: bool = True,
        ttl: float | None = _UNSET,
        ttl_policy: TTLPolicy | None = None,
        normalizer: Normalizer | None = None,
        top_k: int = 4,
        dtype: str = "float16",
        hnsw: HNSW | None = None,
        timeout: float = 0.1,
        admin_timeout: float = 10.0,
        embed_timeout: float | None = 5.0,
        breaker: CircuitBreaker | None = None,
        track_hits: bool = True,
        on_verdict: Callable[[Verdict], None] | None = None,
        semantic: bool = True,
        metrics: str | Sequence[str] | None = None,
        max_entries: int | None = None,
        embedded_dir: str | os.PathLike[str] | None = None,
        redis_client: redis.Redis | redis.cluster.RedisCluster | None = None,
        async_redis_client: aioredis.Redis | aioredis.cluster.RedisCluster | None = None,
        search_script: bool | None = None,
        spin: float = 0.002,
    ) -> None:
        if redis_url is not None and not isinstance(redis_url, str):
            raise TypeError(f"redis_url must be a str, got {type(redis_url).__name__}")
        if isinstance(spin, bool) or not isinstance(spin, (int, float)):
            raise TypeError(f"spin must be a number of seconds, got {spin!r}")
        if not 0 <= spin <= 0.1:
            raise ValueError(f"spin must be between 0 and 0.1 seconds, got {spin!r}")
        if ttl_policy is None:
            ttl_policy = TTLPolicy() if ttl is _UNSET else TTLPolicy(default_ttl=ttl)
        elif ttl is not _UNSET:
            raise ValueError("give either ttl= or ttl_policy=, not both")
        if not isinstance(ttl_policy, TTLPolicy):
            raise TypeError("ttl_policy must be a paracache.TTLPolicy")
        if not isinstance(strip_pleasantries, bool):
            raise TypeError(f"strip_pleasantries must be a bool, got {strip_pleasantries!r}")
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
        if max_entries is not None and (
            isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
        ):
            raise ValueError(f"max_entries must be a positive int or None, got {max_entries!r}")

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
            max_entries=max_entries,
            thresholds=check_thresholds(thresholds),
            strip_pleasantries=strip_pleasantries,
            corroboration_margin=(
                Settings.corroboration_margin
                if corroboration_margin is None
                else check_similarity(corroboration_margin, "corroboration_margin")
            ),
        )
        if guards is _UNSET:
            guards = Guards()
        elif guards is not None and not isinstance(guards, Guards):
            raise TypeError(f"guards must be a paracache.Guards or None, got {guards!r}")
        self.guards: Guards = guards if guards is not None else Guards.off()
        self._semantic = bool(semantic)
        self._core = Core(
            layout,
            settings,
            recorder=Recorder(),
            breaker=breaker or CircuitBreaker(),
            on_verdict=on_verdict,
            accept=self.guards.accept if self.guards.active else None,
            corroborate=self.guards.corroborate if self.guards.active else None,
        )
        self._own_clients = redis_client is None
        if redis_client is not None:
            if redis_url is not None or embedded_dir is not None:
                raise ValueError("give either redis_client= or redis_url=/embedded_dir=")
            self._user_clients = _check_user_clients(redis_client, async_redis_client)
            self.redis_url = _client_url(redis_client)
        else:
            if async_redis_client is not None:
                raise ValueError("async_redis_client= needs redis_client= as well")
            self.redis_url = resolve_redis_url(redis_url, embedded_dir)
        self._timeout = float(timeout)
        self._admin_timeout = float(admin_timeout)
        self._memo = EmbeddingMemo(1024)
        #: A Redis Cluster: index commands go through a ClusterTransport (paracache.cluster).
        self._cluster = (
            hasattr(redis_client, "nodes_manager")
            if redis_client is not None
            else _is_cluster_url(self.redis_url, max(float(timeout), 0.5))
        )
        self._transports: dict[int, Any] = {}
        if redis_client is not None:  # the caller's client and its timeouts, for both
            self._client = self._admin = cast(redis.Redis, redis_client)
        else:
            self._client = self._sync_client(self._timeout)
            self._admin = self._sync_client(self._admin_timeout)
        if self._cluster:
            # A script's FT.SEARCH would search one shard: query and read in two calls.
            self._core.scripted_search = False
        # Lookups and stores on paracache's own client use one connection per thread
        # directly; a caller's client keeps its pool and wrappers (instrumentation).
        self._direct = (
            _ThreadConnections(self._client, float(spin))
            if self._own_clients and not self._cluster
            else None
        )
        if search_script is not None:
            if not isinstance(search_script, bool):
                raise TypeError(f"search_script must be a bool or None, got {search_script!r}")
            self._core.scripted_search = search_script
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aioredis.Redis, aioredis.Redis]
        ] = weakref.WeakKeyDictionary()
        self._alock = threading.Lock()
        if metrics is not None:
            from .observability import instrument_option

            instrument_option(self, metrics)
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

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **overrides: Any) -> SemanticIndex:
        """A cache with the settings of a config file written by ``paracache calibrate
        --write-config`` (TOML or JSON): ``min_similarity``, ``thresholds`` and
        ``guards``. Keyword arguments override the file and add everything else.

        Example:
            >>> cache = SemanticIndex.from_config("paracache.toml", ttl=3600)  # doctest: +SKIP
        """
        from .calibrate import load_config

        options: dict[str, Any] = load_config(path)
        options.update(overrides)
        return cls(**options)

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
        entry = self._run(self._core.store_flow(req))
        if entry is not None and self._core.trim_due():
            try:
                self.trim()
            except Exception as exc:  # the write stands; trimming waits for the next check
                logger.warning("paracache: trimming to max_entries failed: %r", exc)
        return entry

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
        entry = await self._arun(self._core.store_flow(req))
        if entry is not None and self._core.trim_due():
            try:
                await self.atrim()
            except Exception as exc:  # the write stands; trimming waits for the next check
                logger.warning("paracache: trimming to max_entries failed: %r", exc)
        return entry

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

    def trim(self) -> int:
        """Delete the oldest entries (by ``created_at``) beyond ``max_entries``; returns
        how many. Stores call it every ``max_entries // 10`` writes; call it yourself
        after lowering the cap. No-op without ``max_entries``.

        Example:
            >>> SemanticIndex(namespace="faq", max_entries=10_000).trim()  # doctest: +SKIP
            0
        """
        return self._admin_run(self._core.trim_flow())

    async def atrim(self) -> int:
        """Async :meth:`trim`."""
        return await self._admin_arun(self._core.trim_flow())

    def repair(self, dry_run: bool = False) -> RepairReport:
        """Scan the namespace for entries a lookup would skip (missing or unreadable
        fields, a vector of the wrong size, an older schema version, not a hash) and
        delete them unless ``dry_run``. Keys that are not entries are left alone.
        Raises :class:`CacheError` if Redis is unreachable.

        Example:
            >>> report = cache.repair(dry_run=True)  # doctest: +SKIP
            >>> report.invalid, report.problems      # doctest: +SKIP
            (1, {'no response field': 1})
        """
        return self._admin_run(self._repair_flow(dry_run))

    async def arepair(self, dry_run: bool = False) -> RepairReport:
        """Async :meth:`repair`."""
        return await self._admin_arun(self._repair_flow(dry_run))

    def _repair_flow(self, dry_run: bool) -> Flow[RepairReport]:
        from .repair import repair_flow

        return repair_flow(
            self.namespace,
            dry_run=bool(dry_run),
            vector_sizes={self.layout.prefix: self.layout.vector_bytes},
        )

    def entries(self, limit: int = 20) -> list[EntryInfo]:
        """The ``limit`` newest entries of this index (scope, age, hits, TTL left).

        Example:
            >>> [e.prompt for e in cache.entries(5)]  # doctest: +SKIP
            ["What's your refund policy?"]
        """
        return self._admin_run(self._core.entries_flow(limit))

    async def aentries(self, limit: int = 20) -> list[EntryInfo]:
        """Async :meth:`entries`."""
        return await self._admin_arun(self._core.entries_flow(limit))

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
        settings = self._core.settings
        return list(self._embed_sync(settings.embed_text(settings.normalizer(text))))

    def embed_many(self, texts: Sequence[str], *, batch_size: int = 64) -> list[list[float]]:
        """Embed prompts in batches, as the semantic layer would, and memoise them, so
        storing or looking them up next does not embed them one by one. The memo keeps
        the last 1,024 texts: bulk loads go in chunks of at most that many.

        Example:
            >>> vectors = cache.embed_many(["What's your refund policy?", "Hi"])  # doctest: +SKIP
        """
        limit = self._core.settings.max_embed_chars
        settings = self._core.settings
        keys = [settings.embed_text(settings.normalizer(t))[:limit] for t in texts]
        todo = sorted({k for k in keys if self._memo.get(k) is None})
        if todo:
            fresh = self.vectorizer.embed_many(todo, batch_size=batch_size)
            for key, vector in zip(todo, fresh, strict=True):
                self._memo.put(key, vector)
        out: list[list[float]] = []
        for key in keys:
            vector = self._memo.get(key)
            out.append(list(vector) if vector is not None else list(self._embed_sync(key)))
        return out

    def warm(
        self,
        pairs: Iterable[tuple[str, str]],
        scope: Scope | None = None,
        *,
        batch_size: int = 64,
        progress: bool = True,
        ttl: float | bool | None = True,
        tokens: int = 0,
        semantic: bool = True,
    ) -> int:
        """Bulk-load ``(prompt, response)`` pairs under ``scope``: the prompts are embedded
        ``batch_size`` at a time (``vectorizer.embed_many``) and each batch is written in
        one pipelined round trip, each entry atomically. Several times faster than
        :meth:`store` in a loop. Shows a tqdm progress bar unless ``progress=False``.

        Returns how many entries were written (pairs the TTL policy declines are
        skipped). Unlike :meth:`store` it is not fail-open: it raises
        :class:`CacheError` if Redis fails, and embedding errors propagate; entries
        written before an error stay.

        Example:
            >>> faq = [("What's your refund policy?", "30 days."), ("Do you ship abroad?", "Yes.")]
            >>> cache.warm(faq, Scope(model="gpt-4o-mini"), progress=False)  # doctest: +SKIP
            2
        """
        flow, bar = self._warm_flow(pairs, scope, batch_size, progress, ttl, tokens, semantic)
        try:
            # One writer thread: a batch is written while the next one is embedded.
            with concurrent.futures.ThreadPoolExecutor(1, "paracache-warm") as writer:
                return self._admin_run(flow, writer)
        finally:
            bar.close()

    async def awarm(
        self,
        pairs: Iterable[tuple[str, str]],
        scope: Scope | None = None,
        *,
        batch_size: int = 64,
        progress: bool = True,
        ttl: float | bool | None = True,
        tokens: int = 0,
        semantic: bool = True,
    ) -> int:
        """Async :meth:`warm` (embeddings run in a worker thread)."""
        flow, bar = self._warm_flow(pairs, scope, batch_size, progress, ttl, tokens, semantic)
        try:
            return await self._admin_arun(flow)
        finally:
            bar.close()

    def _warm_flow(
        self,
        pairs: Iterable[tuple[str, str]],
        scope: Scope | None,
        batch_size: int,
        progress: bool,
        ttl: float | bool | None,
        tokens: int,
        semantic: bool,
    ) -> tuple[Flow[int], Any]:
        from tqdm.auto import tqdm

        total = len(pairs) if isinstance(pairs, Sized) else None
        bar = tqdm(total=total, disable=not progress, unit="entry", desc="paracache warm")
        prepare = self._core.prepare_store
        requests = (
            prepare(p, r, scope, ttl=ttl, tokens=tokens, semantic=semantic and self._semantic)
            for p, r in pairs
        )
        flow = self._core.warm_flow(requests, batch_size=batch_size, on_batch=bar.update)
        return flow, bar

    def close(self) -> None:
        """Release connections (the embedded server, if any, stops at exit). A client
        passed as ``redis_client=`` is the caller's to close."""
        if self._own_clients:
            if self._direct is not None:
                self._direct.close()
            self._client.close()
            self._admin.close()

    async def aclose(self) -> None:
        """Release this event loop's connections."""
        loop = asyncio.get_running_loop()
        clients = self._aclients.pop(loop, None)
        if clients and self._own_clients:
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
        """Run a flow, performing its I/O with blocking calls, within the time budget:
        once ``2 * timeout`` seconds have gone into Redis calls, the next one fails at once."""
        spent = 0.0
        try:
            op = next(flow)
            while True:
                try:
                    if isinstance(op, Embed):  # bounded by embed_timeout instead
                        result = self._perform(op, self._client)
                    else:
                        if spent >= 2 * self._timeout:
                            raise redis.TimeoutError("paracache: time budget spent")
                        started = time.perf_counter()
                        try:
                            result = self._perform(op, self._client)
                        finally:
                            spent += time.perf_counter() - started
                except Exception as exc:
                    op = flow.throw(exc)
                else:
                    op = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def _arun(self, flow: Flow[T], admin: bool = False) -> T:
        """Run a flow, performing its I/O without blocking the event loop (within the
        time budget, as :meth:`_run`)."""
        client, admin_client = self._async_clients()
        target = admin_client if admin else client
        spent = 0.0
        try:
            op = next(flow)
            while True:
                try:
                    if admin or isinstance(op, Embed):
                        result = await self._aperform(op, target)
                    else:
                        if spent >= 2 * self._timeout:
                            raise redis.TimeoutError("paracache: time budget spent")
                        started = time.perf_counter()
                        try:
                            if self._own_clients:  # the bound that tolerates a busy loop
                                result = await _within(self._aperform(op, target), self._timeout)
                            else:
                                result = await self._aperform(op, target)
                        finally:
                            took = time.perf_counter() - started
                            # _within gives a call at most `timeout` of the server's time;
                            # beyond that it was the loop's, which the budget does not count.
                            spent += min(took, self._timeout) if self._own_clients else took
                except Exception as exc:
                    op = flow.throw(exc)
                else:
                    op = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)

    def _admin_run(
        self, flow: Flow[T], writer: concurrent.futures.Executor | None = None
    ) -> T:
        try:
            op = next(flow)
            while True:
                op = flow.send(self._perform(op, self._admin, writer))
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

    def _perform(
        self, op: Any, client: redis.Redis, writer: concurrent.futures.Executor | None = None
    ) -> Any:
        if self._cluster and isinstance(op, (Call, EnsureIndex)):
            transport = self._transport(client)
            if isinstance(op, EnsureIndex):
                return transport.ensure_index(self.layout.schema_dict())
            if transport.handles(op.args):
                return transport.execute(op.args)
        if isinstance(op, Call):
            if client is self._client and self._direct is not None:
                return self._direct.call(op.args)
            return cast(Any, client).execute_command(*op.args)
        if isinstance(op, Submit):
            if writer is not None:
                return writer.submit(self._perform, op.batch, client)
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                done.set_result(self._perform(op.batch, client))
            except Exception as exc:
                done.set_exception(exc)
            return done
        if isinstance(op, Join):
            return op.handle.result()
        if isinstance(op, Embed):
            return self._embed_sync(op.text)
        if isinstance(op, EmbedMany):
            return self.vectorizer.embed_many(list(op.texts), batch_size=_EMBED_BATCH)
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
        if self._cluster and isinstance(op, (Call, EnsureIndex)):
            transport = self._transport(self._admin)
            if isinstance(op, EnsureIndex):
                return await transport.aensure_index(self.layout.schema_dict())
            if transport.handles(op.args):
                return await transport.aexecute(op.args, client)
        if isinstance(op, Call):
            return await cast(Any, client).execute_command(*op.args)
        if isinstance(op, Submit):  # runs while the flow embeds the next batch
            return asyncio.ensure_future(self._aperform(op.batch, client))
        if isinstance(op, Join):
            return await op.handle
        if isinstance(op, Embed):
            return await self._embed_async(op.text)
        if isinstance(op, EmbedMany):
            return await self.vectorizer.aembed_many(list(op.texts), batch_size=_EMBED_BATCH)
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
                    raise _as_redis_error(exc) from exc
            return None
        raise TypeError(f"unknown operation {op!r}")

    # ------------------------------------------------------------------ embedding

    def _embed_sync(self, text: str) -> Sequence[float]:
        vec = self._memo.get(text)
        if vec is None:
            if isinstance(self.vectorizer, MiniLMVectorizer) and self.vectorizer.cache is None:
                # The offline model does bounded CPU work (input capped at max_chars) and
                # cannot hang on I/O: run it here. A hop to a pool thread would cost more
                # (about 0.1 ms, several ms on a busy machine) than the bound protects.
                # Its own hook directly: RedisVL's embed() wrapper (argument checks, an
                # embeddings cache this instance does not have) adds about 0.05 ms.
                vec = self.vectorizer._embed(text)
            elif self._embed_timeout is None or isinstance(self.vectorizer, MiniLMVectorizer):
                vec = self.vectorizer.embed(text)
            else:  # a stuck embedder costs the caller embed_timeout, never more
                vec = _embed_bounded(self.vectorizer.embed, text, self._embed_timeout)
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
        if self._cluster:
            from redis.cluster import RedisCluster

            return cast(
                redis.Redis,
                RedisCluster.from_url(
                    self.redis_url, require_full_coverage=False, **self._client_kwargs(timeout)
                ),
            )
        return redis.Redis.from_url(self.redis_url, **self._client_kwargs(timeout))

    def _transport(self, client: Any) -> Any:
        """The :class:`paracache.cluster.ClusterTransport` of a cluster client."""
        transport = self._transports.get(id(client))
        if transport is None:
            from .cluster import ClusterTransport

            transport = self._transports.setdefault(id(client), ClusterTransport(client))
        return transport

    def _async_clients(self) -> tuple[aioredis.Redis, aioredis.Redis]:
        """One pair of async clients per event loop (connections cannot cross loops)."""
        loop = asyncio.get_running_loop()
        clients = self._aclients.get(loop)
        if clients is None:
            with self._alock:
                clients = self._aclients.get(loop)
                if clients is None and not self._own_clients:
                    user = self._user_clients[1] or _derive_async(self._user_clients[0])
                    clients = (user, user)
                    self._aclients[loop] = clients
                if clients is None:
                    # Lookups and stores are bounded by _within (which tolerates a busy
                    # loop); the socket timeout is only a backstop behind it.
                    backstop = _backstop(self._timeout)
                    clients = (
                        self._async_client(backstop),
                        self._async_client(self._admin_timeout),
                    )
                    self._aclients[loop] = clients
        return clients

    def _async_client(self, timeout: float) -> aioredis.Redis:
        if self._cluster:
            from redis.asyncio.cluster import RedisCluster as AsyncCluster
            from redis.asyncio.retry import Retry as AsyncRetry

            options = {**self._client_kwargs(timeout), "retry": AsyncRetry(NoBackoff(), 0)}
            return cast(
                aioredis.Redis,
                AsyncCluster.from_url(self.redis_url, require_full_coverage=False, **options),
            )
        return aioredis.Redis.from_url(self.redis_url, **self._client_kwargs(timeout))

    def _probe(self) -> None:
        """Check the server once: a server without search is a configuration error;
        an unreachable one is not (the cache starts fail-open and retries later)."""
        try:
            self._perform(Call(("FT._LIST",)), self._admin)
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
        except Exception as exc:  # e.g. redisvl's RedisSearchError on an ACL refusal
            logger.warning("paracache: could not create the index yet: %r", exc)


#: Texts per model call in a warm-up: the offline model sorts by length, and small
#: batches of similar length waste the least padding (175 texts/s at 16 against 115 at
#: 64 and 26 as one unsorted batch of 768, on the benchmark machine).
_EMBED_BATCH = 16

_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


class _ThreadConnections:
    """One connection per thread to a client's server, used directly: a command is
    sent and its reply read, without redis-py's pool checkout, retry wrapper and
    per-command bookkeeping (about 0.05 ms a call, a quarter of an exact hit).

    For plain commands on clients paracache made itself (no retries configured, no
    caller's instrumentation to honour). A connection is dropped on any failure but
    an error reply, reopened on the next call, and replaced in a forked child; a
    thread's connection closes when the thread ends (or at :meth:`close`).

    While a call is the only one in flight it polls for its reply for up to ``spin``
    seconds before blocking in the kernel: a thread that sleeps for a sub-millisecond
    reply pays a wake-up, slow on virtual machines.
    """

    def __init__(self, client: redis.Redis, spin: float = 0.0) -> None:
        pool = client.connection_pool
        self._make = functools.partial(pool.connection_class, **pool.connection_kwargs)
        self._callbacks = cast(dict[Any, Any], client.response_callbacks)
        self._spin = spin if hasattr(select, "poll") else 0.0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()
        self._in_flight = 0

    def call(self, args: Sequence[Any]) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = local.conn = self._make()
            local.pid = os.getpid()
            local.poller = None
            with self._lock:
                self._all.add(conn)
        with self._lock:
            self._in_flight += 1
            alone = self._in_flight == 1
        try:
            conn.send_command(*args, check_health=False)
            if alone and self._spin:
                self._await_reply(local, conn)
            reply = conn.read_response()
        except redis.ResponseError:
            raise  # the server answered: the connection is fine
        except BaseException:
            conn.disconnect()  # a reply may be in flight: never reuse the socket
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
        callback = self._callbacks.get(args[0])
        return reply if callback is None else callback(reply)

    def _await_reply(self, local: threading.local, conn: Any) -> None:
        """Poll ``conn``'s socket until it is readable or ``spin`` seconds have passed."""
        sock = conn._sock
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return  # TLS: readable bytes may not make a record; just block
        poller = local.poller
        if poller is None or local.polled is not sock:
            poller = local.poller = select.poll()
            poller.register(sock, select.POLLIN)
            local.polled = sock
        deadline = time.perf_counter() + self._spin
        while not poller.poll(0):
            if time.perf_counter() >= deadline:
                return

    def close(self) -> None:
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            conn.disconnect()


async def _within(work: Awaitable[Any], timeout: float) -> Any:
    """Await ``work`` for at most ``timeout`` seconds of the server's time, not the loop's.

    redis-py's asyncio socket timeout is a timer on the event loop. When the loop is busy
    (other tasks' CPU work, embedding threads on few cores), the timer and a reply that
    arrived long before become ready in the same pass, and the timer runs first: the call
    fails although its answer is in. Here a timer that fires late (the loop could not run
    it in time) gives the call that much time again, up to :func:`_backstop` in all, so
    replies that arrived meanwhile are read; a timer that fires on time cancels the call,
    which becomes a ``TimeoutError``. One timer, no extra task (about 20 us a call; a
    task per call cost 50).
    """
    task = asyncio.current_task()
    if task is None:  # not inside a task: nothing to cancel, redis-py's backstop bounds it
        return await work
    deadline = _Deadline(task, timeout)
    try:
        return await work
    except asyncio.CancelledError:
        if deadline.fired and deadline.withdraw():
            raise redis.TimeoutError(f"paracache: no reply within {timeout:g}s") from None
        raise
    finally:
        deadline.stop()


class _Deadline:
    """The timer behind :func:`_within`: cancels ``task`` once ``timeout`` seconds have
    passed while the loop was responsive."""

    __slots__ = ("_cancelling", "_give_up", "_handle", "_loop", "_task", "fired")

    def __init__(self, task: asyncio.Task[Any], timeout: float) -> None:
        self._loop = task.get_loop()
        self._task = task
        now = self._loop.time()
        self._give_up = now + _backstop(timeout)
        # Python 3.11+ counts cancellations: ours must not swallow anyone else's.
        self._cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        self.fired = False
        self._handle = self._loop.call_at(now + timeout, self._fire, now + timeout)

    def _fire(self, due: float) -> None:
        now = self._loop.time()
        late = now - due
        if late >= _LAG_SLACK and now < self._give_up:
            # The loop could not run this timer for `late` seconds: give them back.
            again = min(now + late, self._give_up)
            self._handle = self._loop.call_at(again, self._fire, again)
            return
        self.fired = True
        self._task.cancel()  # redis-py drops the connection: a late reply reaches no one

    def stop(self) -> None:
        self._handle.cancel()

    def withdraw(self) -> bool:
        """Take back this timer's cancellation; False if someone else cancelled too."""
        if hasattr(self._task, "uncancel"):
            return bool(self._task.uncancel() <= self._cancelling)
        return True


def _backstop(timeout: float) -> float:
    """The most a bounded async call may take while the event loop is busy, and the
    socket timeout behind :func:`_within`."""
    return max(4 * timeout, 1.0)


#: A timer that fires later than this was held up by a busy loop.
_LAG_SLACK = 0.01


def _embed_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that run blocking embeddings under a time limit (shared, created lazily)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                max_workers=_EMBED_WORKERS, thread_name_prefix="paracache-embed"
            )
        return _POOL


_EMBED_WORKERS = 4
#: One slot per pool thread: a job is only queued when a thread is free to run it, so
#: stuck embeddings never pile up behind each other (a caller waits for a slot within
#: its own embed_timeout, then gives up: a miss).
_EMBED_SLOTS = threading.BoundedSemaphore(_EMBED_WORKERS)


def _embed_bounded(embed: Callable[[str], Any], text: str, timeout: float) -> Any:
    started = time.monotonic()
    if not _EMBED_SLOTS.acquire(timeout=timeout):
        raise TimeoutError(f"no embedding slot free within {timeout:g}s (embedder stuck?)")
    try:
        future = _embed_pool().submit(embed, text)
    except BaseException:
        _EMBED_SLOTS.release()
        raise
    future.add_done_callback(lambda _: _EMBED_SLOTS.release())
    return future.result(timeout=max(0.0, timeout - (time.monotonic() - started)))


def _check_user_clients(sync: Any, async_: Any) -> tuple[Any, Any]:
    """Validate ``redis_client=``/``async_redis_client=`` (byte replies needed: entries
    hold binary vectors)."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.cluster import RedisCluster

    if not isinstance(sync, (redis.Redis, RedisCluster)):
        raise TypeError(
            f"redis_client must be a redis.Redis or redis.cluster.RedisCluster, got {sync!r}"
        )
    if async_ is not None and not isinstance(async_, (aioredis.Redis, AsyncCluster)):
        raise TypeError(
            "async_redis_client must be a redis.asyncio.Redis or "
            f"redis.asyncio.cluster.RedisCluster, got {async_!r}"
        )
    for client in (sync, async_):
        if client is not None and _connection_kwargs(client).get("decode_responses"):
            raise ValueError("paracache needs a client with decode_responses=False")
    return sync, async_


def _connection_kwargs(client: Any) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return dict(pool.connection_kwargs)
    manager = getattr(client, "nodes_manager", None)  # a cluster client
    return dict(getattr(manager, "connection_kwargs", None) or {})


def _client_url(client: Any) -> str:
    """A password-free URL naming where ``client`` connects (for messages and logs)."""
    kwargs = _connection_kwargs(client)
    if "host" not in kwargs and hasattr(client, "get_default_node"):
        node = client.get_default_node()
        kwargs = {**kwargs, "host": node.host, "port": node.port}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if kwargs.get("ssl") or "ssl_keyfile" in kwargs else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _derive_async(client: Any) -> Any:
    """An asyncio twin of a caller's sync client: same server, credentials and options.

    For a ``redis.cluster.RedisCluster`` this starts from its default node and lets the
    async cluster client discover the rest (not tested against a real cluster).
    """
    import inspect

    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    kwargs = _connection_kwargs(client)
    for sync_only in ("retry", "redis_connect_func", "connection_pool"):
        kwargs.pop(sync_only, None)  # async clients take their own
    if hasattr(client, "get_default_node"):
        node = client.get_default_node()
        accepted = inspect.signature(AsyncCluster.__init__).parameters
        options = {k: v for k, v in kwargs.items() if k in accepted and k not in ("host", "port")}
        return AsyncCluster(host=node.host, port=node.port, **options)
    sync_class = client.connection_pool.connection_class
    async_class = {
        redis.SSLConnection: aioredis.SSLConnection,
        redis.UnixDomainSocketConnection: aioredis.UnixDomainSocketConnection,
    }.get(sync_class, aioredis.Connection)
    names: set[str] = set()
    for base in cast(Any, async_class).__mro__:
        names |= set(inspect.signature(base.__init__).parameters)
    options = {k: v for k, v in kwargs.items() if k in names}
    pool = aioredis.ConnectionPool(connection_class=async_class, **options)
    return aioredis.Redis(connection_pool=pool)


def _is_cluster_url(url: str, timeout: float) -> bool:
    from .cluster import is_cluster_url

    return is_cluster_url(url, timeout)


def _create_quietly(create: Callable[..., Any]) -> None:
    try:
        create(overwrite=False)
    except Exception as exc:
        if not _already_exists(exc):
            raise _as_redis_error(exc) from exc


def _as_redis_error(exc: Exception) -> Exception:
    """RedisVL wraps Redis failures in its own errors: unwrap them, so administrative
    calls raise :class:`CacheError` for them like for any other Redis failure."""
    if isinstance(exc, redis.RedisError):
        return exc
    cause = exc.__cause__
    if isinstance(cause, redis.RedisError):
        return cause
    return redis.RedisError(str(exc))


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
