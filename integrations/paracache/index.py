"""``SemanticIndex``: the framework-free cache, a thin sync and async shell over the core.

Each public method validates its arguments, builds a flow from :mod:`paracache.core`
and runs it with the blocking driver (``lookup``) or the asyncio driver (``alookup``) of
:mod:`paracache.driver`, on the connections of :mod:`paracache.transport`. The drivers
only carry out I/O; they decide nothing.

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
import atexit
import concurrent.futures
import dataclasses
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis

from .bookkeeping import (
    DEFAULT_FLUSH_HITS,
    DEFAULT_FLUSH_SECONDS,
    check_flush,
    detect_flow,
)
from .bound import check_delta
from .cluster import ClusterTransport, is_cluster_url
from .config import load_config
from .core import Core
from .driver import AsyncIO, SyncIO, arun, run
from .errors import BackendError, CacheClosedError, CacheError, RedisSearchUnavailable, describe
from .guards import Guards
from .learning import CLOSE_TIMEOUT, Learner
from .metrics import CacheStats, Recorder
from .policy import MAX_TTL, CircuitBreaker, Normalizer, TTLPolicy
from .protocol import Call, EnsureIndex, Flow
from .reals import is_int, is_real
from .reembed import ReembedReport
from .repair import RepairReport, repair_flow
from .schema import HNSW, Layout, hnsw_difference, index_problem, other_layouts
from .scope import Scope
from .transport import (
    Embedder,
    ThreadConnections,
    backstop,
    check_user_clients,
    client_kwargs,
    client_url,
    close_async_client,
    derive_async,
    pooled_client,
    resolve_redis_url,
    safe_url,
    selected_db,
    translate,
    warn_unbounded,
)
from .values import (
    CacheHit,
    EntryInfo,
    Settings,
    StoreRequest,
    StoreResult,
    Verdict,
    check_entry_id,
    check_similarity,
    check_thresholds,
    distance_like,
)
from .vectorizers import check_vectorizer, default_vectorizer, vectorizer_id

__all__ = ["RedisSearchUnavailable", "SemanticIndex", "resolve_redis_url"]

logger = logging.getLogger("paracache")

#: Consecutive failures that open the default circuit breaker on a Redis Cluster.
CLUSTER_BREAKER_FAILURES = 10

_UNSET: Any = object()
T = TypeVar("T")

def _admin_error(exc: BackendError) -> CacheError:
    """What an administrative call raises for a driver's failure: the documented
    :class:`CacheError`, with the failure's kind (the :class:`BackendError` is its cause)."""
    return CacheError(str(exc), kind=exc.kind)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


# Kept importable from here (the CLI and older code import them from this module).
_safe_url = safe_url


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
            stricter); overridable per call. Default: the vectorizer's
            ``default_min_similarity`` if it has one (the multilingual model's is 0.98:
            :mod:`paracache.multilingual`), else 0.90. Not a hard floor while guards corroborate:
            a candidate that shares a specific detail with the query (an order number,
            a sum, a name) is served down to ``corroboration_margin`` (0.05) below it,
            so a hit's ``similarity`` can be below ``min_similarity`` (its verdict says
            "corroborated"). ``corroboration_margin=0`` or ``guards=None`` make it one.
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
            and still be served when the guards vouch for it
            (:meth:`paracache.guards.Guards.vouches`): a typo'd repeat of the query
            (down to this margin), a candidate naming the same identifier, sum, date,
            number or name with nothing specific missing on either side (within 0.05),
            or one the learned pair check finds the same question (within 0.20); it must
            pass every guard too. Default 0.35; 0 turns it off, as do ``guards=None``. A
            threshold of 1.0 (per call or per scope) gets no margin.
        strip_pleasantries: Embed prompts without greetings, politeness and hedge frames
            and sign-offs ("Hi, can you tell me ...", "..., thanks in advance"), stored
            and asked alike (:func:`paracache.policy.strip_pleasantries`). On by
            default; the exact layer's key is unchanged either way.
        correct_typos: Embed prompts with misspelt words corrected ("chnage" ->
            "change", :func:`paracache.spelling.correct_typos`), stored and asked alike.
            On by default; the exact layer's key and the guards' text are unchanged.
        ttl: Default seconds an entry lives (``None``: no expiry). Shorthand for
            ``ttl_policy=TTLPolicy(default_ttl=...)``.
        ttl_policy: Full TTL and no-cache rules.
        normalizer: How prompts are normalised for both layers.
        top_k: In-scope neighbours the semantic layer considers.
        dtype: ``"float16"`` (default) or ``"float32"`` vectors. float16 halves the
            vectors' memory and moves cosine similarities by at most 0.0001 (Banking77:
            same nearest neighbours, same hit rate and precision); part of the index
            identity, so changing it starts an empty index.
        hnsw: HNSW graph parameters of the index, applied when this cache creates it.
            An index the namespace holds already keeps the settings it was made with
            (not part of its identity): a cache asking for others logs a warning naming
            both, and how to rebuild the index with the new ones.
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
        breaker: The circuit breaker (default: open after 3 failures in a row for 2 s;
            on a Redis Cluster after 10, so that one shard down does not switch off
            the others).
        track_hits: Record ``hit_count`` and ``last_hit_at`` on each hit.
        hit_flush_hits: Hits this process counts in memory before it sends them to
            Redis in one batch (one script, not waited for); default 100. A lookup then
            writes nothing (an exact hit is one plain read), so the counts Redis holds
            (``entries()``, ``paracache inspect``, the ``hit_count`` of another
            process's hits) lag by up to this many hits, or ``hit_flush_seconds``,
            whichever comes first; this process's own hits are added to the
            ``hit_count`` it reports. On a server without partial indexing (hits in
            companion hashes) an exact hit reads the entry alone (one command): its
            ``hit_count`` is the entry's own plus this instance's hits on it, sent or
            not; other processes' are in ``entries()``, ``inspect`` and semantic hits.
            Batches are also sent by ``close()``, before ``entries()``, and at
            interpreter exit; a process that crashes (or is killed) loses its unsent
            hits, and a batch Redis refuses is lost too (counted as the error kind
            ``hit_flush``). Counts only ever add: each
            process sends its own. ``1``: each hit is counted in Redis as it happens
            (one script per hit, as with a sliding TTL, which always does). 1 to 100,000.
        hit_flush_seconds: Seconds after the first unsent hit that the next lookup sends
            the batch at the latest (no thread: a process that stops looking up sends
            them at ``close()`` or exit); default 1.0. Above 0, at most 3,600.
        on_verdict: Called with every lookup's :class:`Verdict`.
        exact: Look the exact layer up first (on by default). Off, every lookup embeds
            and goes to the semantic layer (an identical prompt is still found there, at
            similarity 1.0); entries are written the same either way.
        semantic: Use the semantic layer (on by default).
        metrics: Export metrics: ``"prometheus"`` (counters and histograms through
            ``prometheus_client``), ``"otel"`` (OpenTelemetry spans), or both as a
            list; see :mod:`paracache.observability`. Default: none (no cost).
        search_script: Run the semantic layer as one Lua script (KNN query, candidates
            read, hit counted: one round trip). ``None`` (default): on, except with a
            ``RedisCluster`` client. Set ``False`` for a sharded database behind a proxy
            (Redis Software / Redis Cloud with several shards), where a script sees one
            shard's index: the query and the winner's read then take two calls. When the
            server refuses the script (``BUSY`` with another client's script, an ACL
            without scripting), lookups take two calls for a while and try the script
            again (after 1 s, doubling while refusals go on, up to 5 minutes).
        spin: How long a blocking call may busy-wait for Redis's reply before its
            thread sleeps (seconds; default 0.002, 0 turns it off). A reply usually
            comes within a millisecond; waiting awake saves waking a sleeping thread,
            slow on virtual machines (see benchmarks/RESULTS.md). Only while one call at a time
            is in flight, only on paracache's own plain (not TLS) connections; with
            concurrent calls each sleeps as usual.
        check_readability: Ask the vectorizer (if it has an ``unreadable(text)`` method,
            as the default English model has) whether it can read a prompt; text it
            cannot read (Chinese, Arabic, Russian, ... for the default model: see
            :mod:`paracache.readability`) is looked up and stored in the exact layer
            only, never matched by similarity; such misses are counted as
            ``stats().unreadable`` and the verdict's outcome ``"unreadable"``. On by
            default.
        max_error_rate: δ, the share of lookups that may get a wrong answer (in (0, 1),
            e.g. 0.02); ``None`` (default): the static rules. With it the cache learns
            from live traffic, per scope, the lowest similarity at which serving keeps
            wrong answers per lookup (a share of the lookups that reach the semantic
            layer, not of hits; exact repeats are not counted) under δ (a
            one-sided 95 % upper bound), labelling its misses with the fresh
            answers that ``store`` receives next; see
            :mod:`paracache.bound` and :mod:`paracache.learning`. Cold scopes keep the
            static rules. ``stats().learning`` shows what it learned.
        judge: With ``max_error_rate``: what says a fresh answer and a cached one are
            interchangeable, a callable ``(cached, fresh) -> bool``. Default:
            :class:`paracache.judge.ExactJudge` (equal after normalisation; lookups
            under a temperature above 0 are then not labelled);
            :class:`paracache.judge.EmbeddingJudge` for reworded answers, or an LLM.
        explore_rate: With ``max_error_rate``: the share of would-be semantic hits
            served as labelled misses instead (default ``max_error_rate`` within
            [0.01, 0.05], and 0.05 within 0.03 above the threshold; 0 turns exploring
            off). Each exploration costs one model call.
        judge_timeout: Seconds a judge call may take before its label is dropped
            (counted as ``judge_timeout``); default 10.
        label_worker: Count labels in a worker thread of this process (default). Set
            ``False`` when ``paracache worker`` processes do it.
        verifier: With ``max_error_rate``: near-miss verification, a callable
            ``(question, cached question, cached answer) -> bool`` (e.g. a small LLM
            call). A miss whose nearest candidate (past the guards) lies within
            ``verify_band`` (default 0.05) below the threshold in effect is queued for
            it; when it approves, the question is stored with the candidate's answer
            (unless its own answer was stored first) and served next time. It runs in
            the label worker, never on the request path.

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
        correct_typos: bool = True,
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
        hit_flush_hits: int = DEFAULT_FLUSH_HITS,
        hit_flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        on_verdict: Callable[[Verdict], None] | None = None,
        exact: bool = True,
        semantic: bool = True,
        metrics: str | Sequence[str] | None = None,
        max_entries: int | None = None,
        embedded_dir: str | os.PathLike[str] | None = None,
        redis_client: redis.Redis | redis.cluster.RedisCluster | None = None,
        async_redis_client: aioredis.Redis | aioredis.cluster.RedisCluster | None = None,
        search_script: bool | None = None,
        spin: float = 0.002,
        check_readability: bool = True,
        max_error_rate: float | None = None,
        judge: Callable[[str, str], bool] | None = None,
        explore_rate: float | None = None,
        judge_timeout: float = 10.0,
        label_worker: bool = True,
        verifier: Any = None,
        verify_band: float = 0.05,
    ) -> None:
        if redis_url is not None and not isinstance(redis_url, str):
            raise TypeError(f"redis_url must be a str, got {type(redis_url).__name__}")
        if not is_real(spin):
            raise TypeError(f"spin must be a number of seconds, got {spin!r}")
        if not 0 <= spin <= 0.1:
            raise ValueError(f"spin must be between 0 and 0.1 seconds, got {spin!r}")
        if ttl_policy is None:
            try:
                ttl_policy = TTLPolicy() if ttl is _UNSET else TTLPolicy(default_ttl=ttl)
            except ValueError:  # say it of the argument the caller gave
                raise ValueError(
                    f"ttl must be a number of seconds >= 0, at most {MAX_TTL:.0e}, or None, "
                    f"got {ttl!r}"
                ) from None
        elif ttl is not _UNSET:
            raise ValueError("give either ttl= or ttl_policy=, not both")
        if not isinstance(ttl_policy, TTLPolicy):
            raise TypeError("ttl_policy must be a paracache.TTLPolicy")
        if not isinstance(strip_pleasantries, bool):
            raise TypeError(f"strip_pleasantries must be a bool, got {strip_pleasantries!r}")
        if not isinstance(correct_typos, bool):
            raise TypeError(f"correct_typos must be a bool, got {correct_typos!r}")
        if not is_int(top_k) or not 1 <= top_k <= 100:
            raise ValueError(f"top_k must be an int in [1, 100], got {top_k!r}")
        top_k = int(top_k)
        for name, value in (("timeout", timeout), ("admin_timeout", admin_timeout)):
            if not is_real(value) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if embed_timeout is not None and (not is_real(embed_timeout) or not embed_timeout > 0):
            raise ValueError(
                f"embed_timeout must be a positive number or None, got {embed_timeout!r}"
            )
        if on_verdict is not None and not callable(on_verdict):
            raise TypeError("on_verdict must be callable")
        self._embed_timeout = None if embed_timeout is None else float(embed_timeout)
        if max_entries is not None and (not is_int(max_entries) or max_entries < 1):
            raise ValueError(f"max_entries must be a positive int or None, got {max_entries!r}")
        max_entries = None if max_entries is None else int(max_entries)
        delta = check_delta(max_error_rate)
        label_worker = _flag(label_worker, "label_worker")  # "no" is not False
        hit_flush_hits, hit_flush_seconds = check_flush(hit_flush_hits, hit_flush_seconds)
        if delta is None and (
            judge is not None or explore_rate is not None or verifier is not None
        ):
            raise ValueError("judge=, explore_rate= and verifier= need max_error_rate=")

        if vectorizer is not None:
            check_vectorizer(vectorizer)
        self.vectorizer = default_vectorizer() if vectorizer is None else vectorizer
        vid = vectorizer_id(self.vectorizer)
        dims = self.vectorizer.dims
        layout = Layout.build(namespace, vid, dims=dims, dtype=dtype, hnsw=hnsw)
        if min_similarity is not None and (hint := distance_like(check_similarity(min_similarity))):
            logger.warning("paracache: %s", hint)
        settings = Settings(
            min_similarity=check_similarity(
                _default_threshold(self.vectorizer) if min_similarity is None else min_similarity
            ),
            top_k=top_k,
            policy=ttl_policy,
            normalizer=normalizer or Normalizer(),
            track_hits=bool(track_hits),
            hit_flush_hits=hit_flush_hits,
            hit_flush_seconds=hit_flush_seconds,
            exact=_flag(exact, "exact"),
            max_entries=max_entries,
            thresholds=check_thresholds(thresholds),
            strip_pleasantries=strip_pleasantries,
            correct_typos=correct_typos,
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
            contest=self.guards.contest if self.guards.neighbours else None,
            unreadable=_unreadable_hook(self.vectorizer) if check_readability else None,
            prepare=self.guards.prepare if self.guards.active else None,
        )
        self._own_clients = redis_client is None
        if redis_client is not None:
            if redis_url is not None or embedded_dir is not None:
                raise ValueError("give either redis_client= or redis_url=/embedded_dir=")
            self._user_clients = check_user_clients(redis_client, async_redis_client)
            self.redis_url = client_url(redis_client)
            warn_unbounded(redis_client, "SemanticIndex")
        else:
            if async_redis_client is not None:
                raise ValueError("async_redis_client= needs redis_client= as well")
            self.redis_url = resolve_redis_url(redis_url, embedded_dir)
        self._timeout = float(timeout)
        #: Seconds of Redis time one lookup or store may use (see ``timeout``).
        self._budget = 2 * self._timeout
        self._admin_timeout = float(admin_timeout)
        self._embedder = Embedder(self.vectorizer, self._embed_timeout)
        self._memo = self._embedder.memo
        #: A Redis Cluster (a RedisCluster client, or a URL of a node in cluster mode):
        #: index commands go to every shard (paracache.cluster).
        self._cluster = (
            hasattr(redis_client, "nodes_manager")
            if redis_client is not None
            else is_cluster_url(self.redis_url, max(self._timeout, 0.5))
        )
        if self._cluster and delta is not None:
            # Its counting script touches the label stream, the statistics and the entry,
            # which a cluster keeps in different slots: every label would fail.
            raise ValueError(
                "max_error_rate= needs one Redis server: the error bound does not support "
                "Redis Cluster yet (use a fixed min_similarity there)"
            )
        if redis_client is not None:  # the caller's client and its timeouts, for both
            self._client = self._admin = cast(redis.Redis, redis_client)
        else:
            self._client = self._sync_client(self._timeout)
            self._admin = self._sync_client(self._admin_timeout)
        if self._cluster:
            # A script's FT.SEARCH would search one shard: query and read in two calls;
            # scripts touch their declared key only: hits are counted on the entry.
            self._core.scripted_search = False
            self._core.hit_place = "entry"
            self._core.flush_per_key = True
            if breaker is None:
                # One shard down fails the calls of its keys only (a third of them on
                # three shards), and the others' successes keep the breaker closed: it
                # opens when many calls in a row fail, as when the whole cluster is down.
                self._core.breaker = CircuitBreaker(failures=CLUSTER_BREAKER_FAILURES)
        # Lookups and stores on paracache's own client use one connection per thread
        # directly; a caller's client keeps its pool and wrappers (instrumentation).
        self._direct = (
            ThreadConnections(self._client, float(spin))
            if self._own_clients and not self._cluster
            else None
        )
        if search_script is not None:
            if not isinstance(search_script, bool):
                raise TypeError(f"search_script must be a bool or None, got {search_script!r}")
            self._core.scripted_search = search_script
        self._shards = ClusterTransport(cast(Any, self._admin)) if self._cluster else None
        # Lookups and stores merge the shards that answer (a shard failing over costs
        # its own entries only); administration needs every shard.
        self._lookup_shards = (
            ClusterTransport(cast(Any, self._client), partial=True, direct=self._own_clients)
            if self._cluster
            else None
        )
        self._io = SyncIO(
            self._client, self._direct, self._embedder, self._core.layout,
            cluster=self._lookup_shards,
        )  # fmt: skip
        self._admin_io = SyncIO(
            self._admin, None, self._embedder, self._core.layout, cluster=self._shards
        )
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncIO, AsyncIO]
        ] = weakref.WeakKeyDictionary()
        self._alock = threading.Lock()
        if metrics is not None:
            from .observability import instrument_option

            instrument_option(self, metrics)
        #: The error bound's in-process side (``max_error_rate``), else ``None``.
        self.learner: Learner | None = None
        if delta is not None:
            self.learner = self._core.learner = Learner(
                self._admin,
                namespace=layout.namespace,
                index_name=layout.index_name,
                delta=delta,
                judge=judge,
                explore_rate=explore_rate,
                judge_timeout=judge_timeout,
                stats_ttl=ttl_policy.default_ttl,
                worker=label_worker,
                recorder=self._core.recorder,
                verifier=verifier,
                verify_band=verify_band,
            )
        #: Set by :meth:`close`: every further call raises :class:`CacheClosedError`.
        self._closed = False
        self._check_database()
        self._probe()
        #: Sends this process's unsent hits at interpreter exit (see ``hit_flush_hits``).
        self._at_exit: Callable[[], None] | None = None
        if settings.batched_hits:
            self._at_exit = _flush_at_exit(weakref.ref(self))
            atexit.register(self._at_exit)

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
        policy declines (e.g. high temperature) or Redis is unavailable (fail-open);
        :meth:`store_result` tells which.

        Example:
            >>> cache.store("What's your refund policy?", "30 days.", tokens=42)  # doctest: +SKIP
        """
        return self.store_result(
            prompt, response, scope, ttl=ttl, metadata=metadata, tokens=tokens, semantic=semantic
        ).entry_id

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
        result = await self.astore_result(
            prompt, response, scope, ttl=ttl, metadata=metadata, tokens=tokens, semantic=semantic
        )
        return result.entry_id

    def store_result(
        self, prompt: str, response: str, scope: Scope | None = None, **options: Any
    ) -> StoreResult:
        """Like :meth:`store` (same arguments), but returns what the write did: a
        :class:`~paracache.values.StoreResult` that is ``written`` (with the entry id),
        ``skipped`` (the TTL policy declined) or ``dropped`` (Redis failed: fail-open).

        Example:
            >>> hot = Scope(params={"temperature": 1.5})
            >>> cache.store_result("Tell me a joke", "...", hot).outcome  # doctest: +SKIP
            'skipped'
        """
        result = self._run(
            self._core.store_flow(self._prepare_store(prompt, response, scope, options))
        )
        if (trim := self._core.trim_after(result.entry_id)) is not None:
            self._admin_run(trim)
        return result

    async def astore_result(
        self, prompt: str, response: str, scope: Scope | None = None, **options: Any
    ) -> StoreResult:
        """Async :meth:`store_result`."""
        req = self._prepare_store(prompt, response, scope, options)
        result = await self._arun(self._core.store_flow(req))
        if (trim := self._core.trim_after(result.entry_id)) is not None:
            await self._admin_arun(trim)
        return result

    def _prepare_store(
        self, prompt: Any, response: Any, scope: Any, options: dict[str, Any]
    ) -> StoreRequest:
        unknown = set(options) - {"ttl", "metadata", "tokens", "semantic"}
        if unknown:
            raise TypeError(f"unexpected store options: {sorted(unknown)}")
        options["semantic"] = bool(options.get("semantic", True)) and self._semantic
        return self._core.prepare_store(prompt, response, scope, **options)

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
        try:
            return self._admin_run(flow)
        finally:
            self._core.hits.forget()
            if self.learner is not None:
                self.learner.forget()

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
        try:
            return await self._admin_arun(flow)
        finally:
            self._core.hits.forget()
            if self.learner is not None:
                self.learner.forget()

    def delete(self, entry_id: str) -> bool:
        """Delete one entry by its id (from :class:`CacheHit` or :meth:`store`)."""
        self._core.hits.forget(self.layout.key(check_entry_id(entry_id)))
        return self._admin_run(self._core.delete_flow(entry_id))

    async def adelete(self, entry_id: str) -> bool:
        """Async :meth:`delete`."""
        self._core.hits.forget(self.layout.key(check_entry_id(entry_id)))
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
        self.flush_hits()
        return self._admin_run(self._core.entries_flow(limit))

    async def aentries(self, limit: int = 20) -> list[EntryInfo]:
        """Async :meth:`entries`."""
        await self.aflush_hits()
        return await self._admin_arun(self._core.entries_flow(limit))

    def flush_hits(self) -> int:
        """Send this process's unsent hit counts to Redis now, waiting for the reply
        (lookups send them every ``hit_flush_hits`` hits or ``hit_flush_seconds``;
        ``close()`` and interpreter exit send the rest). Returns the hits sent. Never
        raises for Redis: a batch that cannot be sent is lost, logged, and counted
        (``stats().errors_by_kind["hit_flush"]``).

        Example:
            >>> cache.lookup("What's your refund policy?")  # doctest: +SKIP
            >>> cache.flush_hits()                          # doctest: +SKIP
            1
        """
        self._check_open()
        batch = self._core.hits.take()
        if batch is None:
            return 0
        return run(self._core.flush_hits_flow(batch, wait=True), self._admin_io)

    async def aflush_hits(self) -> int:
        """Async :meth:`flush_hits`."""
        self._check_open()
        batch = self._core.hits.take()
        if batch is None:
            return 0
        _, io = self._async_io()
        return await arun(self._core.flush_hits_flow(batch, wait=True), io)

    def stats(self) -> CacheStats:
        """Counters and latency percentiles of this instance.

        Example:
            >>> cache.stats().hit_rate  # doctest: +SKIP
            0.62
        """
        stats = self._core.recorder.snapshot(self._core.breaker.state)
        if self.learner is not None:
            stats = dataclasses.replace(stats, learning=self.learner.stats().as_dict())
        return stats

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._core.recorder.reset()

    def embed(self, text: str) -> list[float]:
        """The (normalised, memoised) embedding the semantic layer uses for ``text``."""
        self._check_open()
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(self._embedder.embed(self._embed_key(text)))

    def embed_many(self, texts: Sequence[str], *, batch_size: int = 64) -> list[list[float]]:
        """Embed prompts in batches, as the semantic layer would, and memoise them, so
        storing or looking them up next does not embed them one by one. The memo keeps
        the last 1,024 texts: bulk loads go in chunks of at most that many.

        Example:
            >>> vectors = cache.embed_many(["What's your refund policy?", "Hi"])  # doctest: +SKIP
        """
        self._check_open()
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a str")
        for n, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{n}] must be a str, got {type(text).__name__}")
        keys = [self._embed_key(t) for t in texts]
        todo = sorted({k for k in keys if self._memo.get(k) is None})
        if todo:
            fresh = self._embedder.embed_many(todo, batch_size=batch_size)
            for key, vector in zip(todo, fresh, strict=True):
                self._memo.put(key, vector)
        out: list[list[float]] = []
        for key in keys:
            vector = self._memo.get(key)
            out.append(list(vector) if vector is not None else list(self._embedder.embed(key)))
        return out

    def _embed_key(self, text: str) -> str:
        """What the model sees for ``text``, exactly as a lookup of it would embed."""
        return self._core.embed_input(self._core.settings.normalizer(text))

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
        return self._bulk_run(flow, bar)

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
        return await self._abulk_run(flow, bar)

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

        if isinstance(pairs, (Mapping, str, bytes)):
            hint = ": for a dict pass its .items()" if isinstance(pairs, Mapping) else ""
            raise TypeError(f"pairs must be (prompt, response) pairs{hint}")
        total = len(pairs) if isinstance(pairs, Sized) else None
        bar = tqdm(total=total, disable=not progress, unit="entry", desc="paracache warm")
        prepare = self._core.prepare_store
        requests = (
            prepare(p, r, scope, ttl=ttl, tokens=tokens, semantic=semantic and self._semantic)
            for p, r in map(_pair, pairs, itertools.count())
        )
        flow = self._core.warm_flow(requests, batch_size=batch_size, on_batch=bar.update)
        return flow, bar

    def reembed(
        self,
        from_model: Any,
        *,
        batch_size: int = 64,
        progress: bool = True,
        drop_old: bool = False,
    ) -> ReembedReport:
        """Copy every live entry of another embedding model's index of this namespace into
        this cache's index, its prompt embedded with this cache's vectorizer (in batches,
        as :meth:`warm`), keeping scope, answer, metadata, TTL left, ``created_at`` and
        hit counters. Entries this index already has are left alone; an interrupted run
        finishes when run again; lookups keep working meanwhile (an entry is served by
        this model once it is copied). See :mod:`paracache.reembed`.

        Args:
            from_model: The old model: a vectorizer, its id (``vectorizer_id(v)``, e.g.
                ``"onnx:sentence-transformers/all-MiniLM-L6-v2@onnx-int8:384"``; of the
                same model in another ``dtype`` too) or the old index's name.
            batch_size: Prompts embedded per batch.
            progress: Show a tqdm progress bar.
            drop_old: After a successful copy, delete the old index and its entries
                (without it they expire on their own).

        Raises :class:`~paracache.reembed.ReembedError` (a :class:`CacheError`, with the
        report so far) when Redis or the embedder fails; ``ValueError`` when there is no
        such index.

        Example:
            >>> new = SemanticIndex(namespace="faq", vectorizer=new_model)   # doctest: +SKIP
            >>> report = new.reembed(from_model=default_vectorizer())      # doctest: +SKIP
            >>> report.copied + report.skipped_present == report.seen     # doctest: +SKIP
            True
        """
        flow, bar = self._reembed_flow(from_model, batch_size, progress, drop_old)
        return self._bulk_run(flow, bar)

    async def areembed(
        self,
        from_model: Any,
        *,
        batch_size: int = 64,
        progress: bool = True,
        drop_old: bool = False,
    ) -> ReembedReport:
        """Async :meth:`reembed` (embeddings run in a worker thread)."""
        flow, bar = self._reembed_flow(from_model, batch_size, progress, drop_old)
        return await self._abulk_run(flow, bar)

    def _bulk_run(self, flow: Flow[T], bar: Any) -> T:
        """Run a bulk flow (warm-up, re-embedding) with one writer thread, so a batch is
        written while the next one is embedded; close its progress bar."""
        try:
            with concurrent.futures.ThreadPoolExecutor(1, "paracache-bulk") as writer:
                return self._admin_run(flow, writer)
        finally:
            bar.close()

    async def _abulk_run(self, flow: Flow[T], bar: Any) -> T:
        """Async :meth:`_bulk_run`."""
        try:
            return await self._admin_arun(flow)
        finally:
            bar.close()

    def _reembed_flow(
        self, from_model: Any, batch_size: int, progress: bool, drop_old: bool
    ) -> tuple[Flow[ReembedReport], Any]:
        from tqdm.auto import tqdm

        from .admin import indexes_flow
        from .reembed import ReembedError, drop_index_flow, reembed_flow, resolve_source

        if not isinstance(from_model, str):
            if not all(hasattr(from_model, a) for a in ("type", "model", "dims", "embed")):
                raise TypeError(
                    "from_model must be the old vectorizer, its id (vectorizer_id) or the old "
                    f"index's name, got {type(from_model).__name__}"
                )
            from_model = vectorizer_id(from_model)
        bar = tqdm(disable=not progress, unit="entry", desc="paracache reembed")

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        def flow() -> Flow[ReembedReport]:
            try:
                indexes = yield from indexes_flow(self.namespace)
            except BackendError as exc:  # the documented error, as for a failure midway
                raise ReembedError(
                    f"re-embedding did not start: Redis failed ({exc}); nothing copied.",
                    ReembedReport(from_model, self.layout.index_name),
                    kind=exc.kind,
                ) from exc
            source = resolve_source(self.layout, indexes, from_model)
            report = yield from reembed_flow(
                self._core, source, batch_size=batch_size, on_total=total, on_batch=bar.update
            )
            if drop_old:
                try:
                    dropped = yield from drop_index_flow(source)
                except BackendError as exc:
                    raise ReembedError(
                        f"every entry was copied, but dropping the old index failed: Redis "
                        f"failed ({exc}). Run it again with drop_old to drop it: entries "
                        "already copied are skipped.",
                        report,
                        kind=exc.kind,
                    ) from exc
                report = dataclasses.replace(report, dropped=dropped)
            return report

        return flow(), bar

    def close(self) -> None:
        """Release connections, those of async calls made on any event loop too (the
        embedded server, if any, stops at exit). A client passed as ``redis_client=`` is
        the caller's to close. This process's unsent hit counts (and, with
        ``max_error_rate``, its queued label jobs) are sent first.

        Bounded: with Redis hung (paused, a stopped process whose port still accepts
        connections) it returns within about :data:`CLOSE_TIMEOUT` (2 s), not
        ``admin_timeout``. What was not sent by then is dropped and counted: hit counts
        as the error kind ``hit_flush``, label jobs and traffic counts as
        ``stats().learning["dropped"]`` (and the error kind ``learn_queue``). With a
        client of your own (``redis_client=``), which close leaves open, a send waiting
        on it goes on in the background until its own timeout.

        Final: any later call (lookups and stores too) raises
        :class:`~paracache.errors.CacheClosedError`, a programming error, instead of
        reconnecting; ``close()`` again does nothing, ``stats()`` still reads the
        counters. (:meth:`aclose` releases one event loop's connections only.)
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + CLOSE_TIMEOUT
        # The last sends on threads of their own: a hung Redis holds them, not the caller.
        sender = threading.Thread(target=self._last_hits, name="paracache-close", daemon=True)
        sender.start()
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
            self._at_exit = None
        if self.learner is not None:
            self.learner.close(max(0.0, deadline - time.monotonic()))
        sender.join(max(0.0, deadline - time.monotonic()))
        if sender.is_alive():
            logger.warning(
                "paracache: closing %r: Redis did not take the last hit counts within "
                "%g s; they are dropped",
                self.namespace,
                CLOSE_TIMEOUT,
            )
        self._close_clients()
        # Closing the connections ends a send waiting on a hung server at once: its
        # failure is counted (``hit_flush``) before close returns.
        sender.join(0.5 if self._own_clients else 0.0)

    def _last_hits(self) -> None:
        try:
            batch = self._core.hits.take()
            if batch is not None:
                run(self._core.flush_hits_flow(batch, wait=True), self._admin_io)
        except Exception as exc:  # a bug of paracache's own: closing goes on regardless
            self._core._internal("flush_hits", exc)

    def _close_clients(self) -> None:
        if self._own_clients:
            if self._direct is not None:
                self._direct.close()
            if self._lookup_shards is not None:
                self._lookup_shards.close()
            self._client.close()
            self._admin.close()
            with self._alock:
                loops = list(self._aclients.items())
                self._aclients.clear()
            for loop, ios in loops:
                for io in ios:
                    close_async_client(io.client, loop)

    async def aclose(self) -> None:
        """Release this event loop's connections (this process's unsent hit counts
        are sent first). The cache stays usable (on another loop, or blocking);
        :meth:`close` ends it. After ``close()``, a no-op."""
        if self._closed:
            return
        await self.aflush_hits()
        loop = asyncio.get_running_loop()
        ios = self._aclients.pop(loop, None)
        if ios and self._own_clients:
            for io in ios:
                await io.client.aclose()

    def __enter__(self) -> SemanticIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __copy__(self) -> SemanticIndex:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SemanticIndex:
        """A cache is a shared resource (connections, threads, the embedder): a copy of
        something that holds one, e.g. ``copy.deepcopy`` of a model, shares it."""
        return self

    def __reduce__(self) -> Any:
        """Refused: a cache holds connections, threads and a model, none of which can
        cross to another process. Build one in each process from the same arguments
        (or create it before ``os.fork()``: a forked child uses its parent's)."""
        raise TypeError(
            "a SemanticIndex cannot be pickled (it holds connections, threads and a model): "
            "build one in each process from the same arguments, e.g. in a multiprocessing "
            "pool's initializer, or create it before forking"
        )

    def __repr__(self) -> str:
        return (
            f"SemanticIndex(namespace={self.namespace!r}, index={self.layout.index_name!r}, "
            f"min_similarity={self.settings.min_similarity})"
        )

    # ------------------------------------------------------------------ drivers

    def _check_open(self) -> None:
        """Raise :class:`CacheClosedError` after :meth:`close`."""
        if self._closed:
            raise CacheClosedError(repr(self))

    def _run(self, flow: Flow[T]) -> T:
        """Run a lookup or store flow blocking, within the time budget (``2 * timeout``)."""
        self._check_open()
        return run(flow, self._io, self._budget)

    async def _arun(self, flow: Flow[T]) -> T:
        """Run a lookup or store flow on the event loop, within the time budget; on
        paracache's own clients each request is bounded by :func:`transport.within`."""
        io, _ = self._async_io()  # raises CacheClosedError after close()
        bound = self._timeout if self._own_clients else None
        return await arun(flow, io, self._budget, bound)

    def _admin_run(self, flow: Flow[T], writer: concurrent.futures.Executor | None = None) -> T:
        """Run an administrative flow blocking (``admin_timeout`` per command); a failure
        of Redis or the embedder raises :class:`CacheError` with its ``kind``."""
        self._check_open()
        io = (
            self._admin_io if writer is None else dataclasses.replace(self._admin_io, writer=writer)
        )
        try:
            return run(flow, io)
        except BackendError as exc:
            raise _admin_error(exc) from exc

    async def _admin_arun(self, flow: Flow[T]) -> T:
        """Async :meth:`_admin_run`."""
        _, io = self._async_io()
        try:
            return await arun(flow, io)
        except BackendError as exc:
            raise _admin_error(exc) from exc

    # ------------------------------------------------------------------ connections

    def _sync_client(self, timeout: float) -> redis.Redis:
        options = client_kwargs(self.namespace, timeout)
        if self._cluster:
            from redis.cluster import RedisCluster

            cluster = RedisCluster.from_url(self.redis_url, require_full_coverage=False, **options)
            return cast(redis.Redis, cluster)
        return cast(redis.Redis, pooled_client(self.redis_url, options))

    def _async_client(self, timeout: float) -> aioredis.Redis:
        options = client_kwargs(self.namespace, timeout, asyncio=True)
        if self._cluster:
            from redis.asyncio.cluster import RedisCluster as AsyncCluster

            cluster = AsyncCluster.from_url(self.redis_url, require_full_coverage=False, **options)
            return cast(aioredis.Redis, cluster)
        return cast(aioredis.Redis, pooled_client(self.redis_url, options, asyncio=True))

    def _async_io(self) -> tuple[AsyncIO, AsyncIO]:
        """The async drivers' I/O of this event loop: hot path and administrative (one
        pair of clients per loop: connections cannot cross loops)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        ios = self._aclients.get(loop)
        if ios is None:
            with self._alock:
                ios = self._aclients.get(loop)
                if ios is None:
                    # A closed loop's clients can never run again, and they hold their
                    # loop (so the weak key never dies): let them go, and their sockets
                    # close as they are collected (``asyncio.run`` once per call would
                    # otherwise keep a connection per call for ever).
                    for dead in [old for old in self._aclients if old.is_closed()]:
                        del self._aclients[dead]
                    if not self._own_clients:
                        user = self._user_clients[1] or derive_async(self._user_clients[0])
                        clients = (user, user)
                    else:
                        # Lookups and stores are bounded by within() (which tolerates a busy
                        # loop); the socket timeout is only a backstop behind it.
                        clients = (
                            self._async_client(backstop(self._timeout)),
                            self._async_client(self._admin_timeout),
                        )
                    ios = (
                        AsyncIO(clients[0], self._embedder, self.layout, self._lookup_shards),
                        AsyncIO(clients[1], self._embedder, self.layout, self._shards),
                    )
                    self._aclients[loop] = ios
        assert ios is not None
        return ios

    def _check_database(self) -> None:
        """Database 0 only: RediSearch indexes no other, and a search sent from another
        breaks the server's searches for every client (:func:`~paracache.transport.selected_db`)."""
        if self._cluster:
            return
        clients = [self._admin, self._client]
        if not self._own_clients:
            clients.append(self._user_clients[1])
        db = max(selected_db(c) for c in clients if c is not None)
        if db != 0:
            raise RedisSearchUnavailable(
                f"the Redis at {safe_url(self.redis_url)} is used through database {db}, and "
                "RediSearch indexes database 0 only: drop the /N from the URL (or db= from "
                "the client); namespaces keep caches apart."
            )

    def _probe(self) -> None:
        """Check the server once: a server without search is a configuration error;
        an unreachable one is not (the cache starts fail-open and retries later)."""
        try:
            names = self._admin_io(Call(("FT._LIST",)))
        except redis.ResponseError as exc:
            kind = getattr(translate(exc), "kind", None)
            if kind == "unknown_command":
                raise RedisSearchUnavailable(
                    f"the Redis server at {safe_url(self.redis_url)} has no search module "
                    "(FT.* commands). Use Redis 8, Redis Stack, or leave redis_url unset for "
                    "the embedded server (pip install 'paracache[embedded]')."
                ) from exc
            if kind == "noperm":
                raise RedisSearchUnavailable(
                    f"the Redis user of {safe_url(self.redis_url)} may not run FT._LIST "
                    f"({exc}): paracache needs the search commands (FT.SEARCH, FT.INFO, "
                    "FT._LIST, FT.AGGREGATE, FT.CURSOR; FT.CREATE unless an administrator "
                    "made the index) besides reading and writing its keys. Grant them to "
                    "this user (ACL SETUSER ... +ft.search ...; see \"Your own Redis\" in "
                    "docs/scaling.md)."
                ) from exc
            raise
        except redis.RedisError as exc:
            # The reason in full: redis-py's repr of a connection error drops it (an
            # unverifiable TLS certificate showed as "network:ConnectionError").
            logger.warning(
                "paracache: Redis at %s is unreachable (%s: %s); starting fail-open",
                safe_url(self.redis_url),
                type(exc).__name__,
                exc,
            )
            return
        self._note_other_layouts(names)
        try:
            self._admin_io(EnsureIndex())
            self._core.index_ready = True
        except Exception as exc:  # e.g. redisvl's RedisSearchError
            if getattr(translate(exc), "kind", None) == "noperm":
                # An ACL without FT.CREATE and no index yet, or without this namespace's
                # keys: every lookup would fail.
                name = self._core.layout.index_name
                raise RedisSearchUnavailable(
                    f"the Redis user of {safe_url(self.redis_url)} may not create or read "
                    f"the search index {name} ({exc}). Grant this user the keys "
                    f"~paracache:{self.namespace}:* and the search commands, or, if it may "
                    "not create indexes, have the index made once with an administrator's "
                    "rights: build this cache (the same namespace, vectorizer and dtype) on "
                    "an administrator's URL, e.g. "
                    f"SemanticIndex(ADMIN_URL, namespace={self.namespace!r}, ...) "
                    '(docs/scaling.md, "Your own Redis").'
                ) from exc
            if getattr(translate(exc), "kind", None) == "readonly":
                logger.warning(
                    "paracache: could not create the index %s: the Redis at %s is a read-only "
                    "replica (%s). Until a cache on the primary creates it and it replicates, "
                    "lookups here fail (misses) and stores are refused. For an instance "
                    "that only looks up, use track_hits=False (docs/scaling.md, Read "
                    "replicas); to store, give redis_url the primary's address",
                    self._core.layout.index_name,
                    safe_url(self.redis_url),
                    describe(exc),
                )
                return
            logger.warning("paracache: could not create the index yet: %r", exc)
            return
        self._check_index()
        if self._core.hit_place is None:  # where hits are counted (bookkeeping.py)
            try:
                self._core.server_features = self._admin_run(detect_flow())
                self._core.hit_place = self._core.server_features.hit_place
            except BackendError as exc:  # asked again on the first lookup
                logger.warning("paracache: could not ask the server about indexing: %r", exc)


    def _note_other_layouts(self, names: Any) -> None:
        """Say (once, at construction) that this namespace holds indexes of another
        stored layout (an older or newer ``SCHEMA_VERSION``): their entries are never
        served by this version (a cold start after an upgrade), take memory until they
        expire, and ``paracache stats`` counts them; what removes them."""
        namespace = self._core.layout.namespace
        other = other_layouts(namespace, names)
        if other:
            logger.warning(
                "paracache: namespace %r holds %s of another stored layout (another "
                "paracache version), which this version does not read: its entries are "
                "not served (a cold start). Once no process of that version runs, "
                "`paracache repair --namespace %s` deletes those entries and FT.DROPINDEX "
                "the index",
                namespace,
                ", ".join(other),
                namespace,
            )

    def _check_index(self) -> None:
        """An index of this cache's name that another tool, a hand or another build
        made otherwise (a missing field, another vector size or distance, other key
        prefixes) would make the semantic layer find nothing, or measure similarity
        another way, without a word: a configuration error, said now. A server that
        does not answer is not (checked again on the next construction)."""
        name = self._core.layout.index_name
        try:
            info = self._admin_io(Call(("FT.INFO", name)))
        except Exception as exc:
            logger.debug("paracache: could not read the index definition: %r", exc)
            return
        problem = index_problem(info, self._core.layout)
        if problem is not None:
            raise RedisSearchUnavailable(
                f"the search index {name} on {safe_url(self.redis_url)} is not one this "
                f"cache can use: {problem}. It was made by hand, by another tool or by "
                "another version. Drop it (FT.DROPINDEX, without DD: the entries stay and "
                "paracache indexes them again when it creates the index) or use another "
                "namespace."
            )
        difference = hnsw_difference(info, self._core.layout)
        if difference is not None:
            logger.warning(
                "paracache: the search index %s on %s was made with HNSW %s: the settings "
                "of an index are those of the first cache that made it, so this cache "
                "searches that graph. To rebuild it with this cache's settings, once no "
                "process uses the old ones: FT.DROPINDEX %s (without DD: the entries stay), "
                "then construct the cache again: it creates the index and Redis indexes "
                "the entries again",
                name,
                safe_url(self.redis_url),
                difference,
                name,
            )


def _flush_at_exit(ref: weakref.ReferenceType[SemanticIndex]) -> Callable[[], None]:
    """An ``atexit`` hook that sends the unsent hits of the cache ``ref`` (if it still
    exists and is open); a weak reference, so the hook keeps no cache alive."""

    def flush() -> None:
        cache = ref()
        if cache is None:
            return
        try:
            cache.flush_hits()
        except Exception as exc:  # at exit, never raise (nothing could handle it)
            logger.warning("paracache: sending hit counts at exit failed: %r", exc)

    return flush


def _default_threshold(vectorizer: Any) -> Any:
    """The vectorizer's own ``default_min_similarity``, if it has one, else 0.90."""
    return getattr(vectorizer, "default_min_similarity", Settings.min_similarity)


def _unreadable_hook(vectorizer: Any) -> Callable[[str], str | None] | None:
    """The vectorizer's ``unreadable(text)`` method, if it has one."""
    hook = getattr(vectorizer, "unreadable", None)
    return cast(Callable[[str], "str | None"], hook) if callable(hook) else None


def _pair(item: Any, n: int) -> tuple[Any, Any]:
    """One of :meth:`SemanticIndex.warm`'s pairs, or a ``TypeError`` saying which is not
    one (a str is not: ``"hi"`` would be unpacked into ``"h"`` and ``"i"``)."""
    if not isinstance(item, (str, bytes, Mapping)):
        try:
            prompt, response = item
        except (TypeError, ValueError):
            pass
        else:
            return prompt, response
    raise TypeError(f"pairs[{n}] must be a (prompt, response) pair, got {item!r:.80}")
