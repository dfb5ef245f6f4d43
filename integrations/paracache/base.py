"""The state of one cache instance and the steps every flow shares.

:class:`FlowBase` holds what the flows of :mod:`paracache.lookup`, :mod:`paracache.store`
and :mod:`paracache.admin` decide with (layout, settings, recorder, circuit breaker,
hooks) and the steps they share: making sure the index exists, embedding a prompt,
checking a vector, and accounting for failures by kind
(:class:`~paracache.errors.BackendError`) or as a bug of paracache's own (``internal``).
No I/O: flows yield requests (:mod:`paracache.protocol`) that a driver performs.

Example:
    >>> from paracache.schema import Layout
    >>> base = FlowBase(Layout.build("docs", "m", dims=2), Settings())
    >>> [round(float(x), 2) for x in np.frombuffer(base.encode_vector([0.6, 0.8]), base._np_dtype)]
    [0.6, 0.8]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np

from .bookkeeping import (
    SCRIPT_MODE,
    HitCounter,
    HitPlace,
    PendingHit,
    ServerFeatures,
    detect_flow,
    flush_calls,
)
from .errors import BackendError, EmbeddingError, describe, strict
from .metrics import Recorder
from .policy import CircuitBreaker, HybridTuner, Throttle
from .protocol import HITS, Embed, EnsureIndex, Flow, Post, post_script, run_script
from .schema import SCHEMA_VERSION, Layout
from .values import Candidate, LookupRequest, Settings, Verdict, embed_input

__all__ = ["CandidateListener", "FlowBase"]

logger = logging.getLogger("paracache")

T = TypeVar("T")

#: Called with each semantic candidate a lookup puts before the guards, and their
#: verdict (a rejection reason or ``None``): see :meth:`FlowBase.add_candidate_listener`.
CandidateListener = Callable[[LookupRequest, Candidate, "str | None"], None]


class FlowBase:
    """The decisions' state of one cache instance, shared by its sync and async shells."""

    def __init__(
        self,
        layout: Layout,
        settings: Settings,
        *,
        recorder: Recorder | None = None,
        breaker: CircuitBreaker | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
        accept: Callable[[LookupRequest, Candidate], str | None] | None = None,
        corroborate: Callable[[LookupRequest, Candidate], bool] | None = None,
        contest: Callable[[LookupRequest, Candidate, Sequence[Candidate]], str | None]
        | None = None,
        unreadable: Callable[[str], str | None] | None = None,
        prepare: Callable[[str], None] | None = None,
    ) -> None:
        self.layout = layout
        self.settings = settings
        self.recorder = recorder or Recorder()
        self.breaker = breaker or CircuitBreaker()
        self.on_verdict = on_verdict
        #: Optional guard: returns a rejection reason for a candidate, or ``None``.
        self.accept = accept
        #: Optional: may a candidate within ``corroboration_margin`` below the threshold
        #: be served (it still has to pass ``accept``)?
        self.corroborate = corroborate
        #: Optional: a reason not to serve the candidate about to win, given the others
        #: (one below the threshold with a neighbour close behind it that has another
        #: answer), or ``None``.
        self.contest = contest
        #: Optional: why the embedding model cannot read a text it would embed (``None``:
        #: it can). Such text is looked up and stored in the exact layer only.
        self.unreadable = unreadable
        #: Optional: the guards' analysis of a query's own text (memoised), run while
        #: the semantic search is on the wire, so choosing among the candidates finds
        #: it done. A hook that raises is ignored (the check then raises it again).
        self.prepare = prepare
        self.candidate_listeners: list[CandidateListener] = []
        self.index_ready = False
        self._np_dtype = np.float16 if layout.dtype == "float16" else np.float32
        self.tuner = HybridTuner()
        #: Run the semantic layer as one Lua script (KNN query, candidates read, hit
        #: counted: one round trip). Off for cluster clients (a script's ``FT.SEARCH``
        #: would search one shard) and after a server refused it (an ACL without
        #: scripting, a proxy): then the query and the winner's read are two calls.
        self.scripted_search = True
        #: After a refusal of the search script: two calls until then (monotonic time),
        #: and the current pause (see :meth:`paracache.lookup.Lookups._pause_script`).
        self._script_paused_until = 0.0
        self._script_backoff = 0.0
        #: Whether this instance sent the ``COUNT`` script's source since the last
        #: failure (a restarted server has forgotten its scripts).
        self._count_loaded = False
        #: Where hits are counted (:mod:`paracache.bookkeeping`): asked of the server
        #: on the first lookup (``None`` until then); a driver may fix it beforehand.
        self.hit_place: HitPlace | None = None
        #: What the server said then (``None``: not asked yet).
        self.server_features: ServerFeatures | None = None
        #: This process's hits not sent to Redis yet (``settings.batched_hits``).
        self.hits = HitCounter(settings.hit_flush_hits, settings.hit_flush_seconds)
        #: Send a batch of hits as one script per entry (a cluster's script may touch
        #: only keys of one slot) instead of one for the whole batch.
        self.flush_per_key = False
        #: Whether this instance sent the ``HITS`` script's source since the last failure.
        self._hits_loaded = False
        self._warnings = Throttle()
        self._trim_lock = threading.Lock()
        self._writes_since_trim = 0
        #: Scope digest -> when this instance last registered it (``store_flow``), and
        #: until when (monotonic time, ``inf``: for ever) that registry row lasts.
        self._registered: dict[str, tuple[float, float]] = {}
        #: The error bound's in-process side (:class:`paracache.learning.Learner`), or
        #: ``None`` for the static rules.
        self.learner: Any = None

    def add_candidate_listener(self, listener: CandidateListener) -> None:
        """Call ``listener(request, candidate, rejection)`` for every semantic candidate
        a lookup checks with its guards (``rejection``: the guards' reason, ``None`` if
        it passed), e.g. to record a threshold sweep (:func:`paracache.calibrate.calibrate`).
        A listener that raises is logged and ignored.

        Example:
            >>> from paracache.schema import Layout
            >>> base = FlowBase(Layout.build("docs", "m", dims=2), Settings())
            >>> base.add_candidate_listener(lambda req, cand, rejection: None)
        """
        self.candidate_listeners.append(listener)

    # ------------------------------------------------------------------ shared steps

    def _ensure_index(self) -> Flow[None]:
        if not self.index_ready:
            yield EnsureIndex()
            self.index_ready = True

    def _index_lost(self) -> None:
        """The index went away under this instance (``FT.DROPINDEX``, ``FLUSHALL``, a
        server restarted without it): say so, and have the next step create it again
        (its entries still in Redis are indexed again by the server)."""
        self.index_ready = False
        self._forget_registered()  # the scope registry is likely gone too
        self._warn_throttled(
            "no_index",
            "paracache: the index %s was gone (dropped, flushed or a restarted server); "
            "creating it again",
            self.layout.index_name,
        )

    def _forget_registered(self) -> None:
        """Have the next write of every scope register it again (the namespace's scope
        registry was cleared, or the server may have lost it)."""
        with self._trim_lock:
            self._registered.clear()

    def _on_index(self, make: Callable[[], Flow[T]]) -> Flow[T]:
        """Run the flow ``make()`` returns, which queries this instance's index; if the
        index is gone, create it again and run a fresh one once more."""
        yield from self._ensure_index()
        try:
            return (yield from make())
        except BackendError as exc:
            if exc.kind != "no_index":
                raise
        self._index_lost()
        yield from self._ensure_index()
        return (yield from make())

    def _ensure_hit_place(self) -> Flow[None]:
        """Ask the server, once, where hits are best counted (:mod:`.bookkeeping`)."""
        if self.hit_place is None:
            self.server_features = yield from detect_flow()
            self.hit_place = self.server_features.hit_place

    def _hits_mode(self) -> str:
        """The lookup scripts' bookkeeping argument (companions until the server said)."""
        return SCRIPT_MODE[self.hit_place or "companion"]

    def flush_hits_flow(
        self, batch: Mapping[str, PendingHit] | None, wait: bool = False
    ) -> Flow[int]:
        """Send a batch of this process's hits (:class:`~paracache.bookkeeping.HitCounter`)
        to Redis: the ``HITS`` script, posted without waiting for its reply, or with
        ``wait`` (at ``close()``) called. Returns the hits sent. Never raises for Redis:
        a batch that fails is lost (counts only ever add: nothing is sent twice),
        logged, and counted as an error of kind ``hit_flush``."""
        if not batch:
            return 0
        mode = self._hits_mode()
        if mode == SCRIPT_MODE["companion"]:
            # What an exact hit reports (it reads the entry alone, not its companion).
            self.hits.sent_to_companions(batch)
        sent = 0
        calls = flush_calls(batch, mode, SCHEMA_VERSION, per_key=self.flush_per_key)
        for keys, args, hits in calls:
            post = post_script(HITS, keys, *args)
            try:
                if wait:
                    yield from run_script(HITS, keys, *args)
                elif not self._hits_loaded:
                    # The first time, with its source: a NOSCRIPT answer would be read
                    # (and the batch sent again) only with the next command.
                    self._hits_loaded = True
                    source = cast(tuple[Any, ...], post.fallback)  # post_script gives one
                    yield Post(source, None, self._flush_refused)
                else:
                    yield dataclasses.replace(post, on_error=self._flush_refused)
            except BackendError as exc:
                self._flush_refused(exc)
                continue
            sent += hits
        return sent

    def _flush_refused(self, exc: BaseException) -> None:
        """A batch of hits was not counted (Redis down, refused): count it, log it."""
        self.recorder.error("hit_flush")
        self._warn_throttled(
            "hit_flush", "paracache: sending hit counts failed, they are lost: %s", describe(exc)
        )

    def embed_input(self, text: str) -> str:
        """What the model sees for a normalised prompt (:func:`paracache.values.embed_input`)."""
        return embed_input(self.settings, text)

    def readable_problem(self, text: str) -> str | None:
        """Why the model cannot read what it would embed for the normalised ``text`` (the
        ``unreadable`` hook), or ``None``. A hook that fails (the model did not load)
        counts as an embedding error and keeps the text to the exact layer."""
        if self.unreadable is None:
            return None
        return self._unreadable_input(self.embed_input(text))

    def _unreadable_input(self, model_text: str) -> str | None:
        """:meth:`readable_problem` of what the model would embed (``embed_input``). Text
        cut at ``max_embed_chars`` is one the model cannot read: its vector stands for its
        beginning only."""
        if self.unreadable is None:
            return None
        if len(model_text) >= self.settings.max_embed_chars:
            return f"longer than max_embed_chars ({self.settings.max_embed_chars} characters)"
        try:
            return self.unreadable(model_text)
        except Exception as exc:
            self.recorder.error("embedding")
            self._warn_throttled(
                "readability", "paracache: readability check failed, exact layer only: %r", exc
            )
            return f"readability check failed: {type(exc).__name__}"

    def _embed(self, text: str, model_text: str | None = None) -> Flow[bytes | None]:
        """Embed a normalised prompt (:meth:`embed_input`, or ``model_text`` if the caller
        has it already) and encode it for Redis; ``None`` (counted, logged) when the
        embedder failed."""
        try:
            raw = yield Embed(self.embed_input(text) if model_text is None else model_text)
            return self.encode_vector(raw)
        except BackendError as exc:
            if exc.kind != "embedding":
                raise
            self.recorder.error("embedding")
            self._warn_throttled(
                "embedding", "paracache: embedding failed, treating as a miss: %r", exc
            )
            return None

    def encode_vector(self, raw: Any) -> bytes:
        """Check a vectorizer's output (dims, finite) and encode it for the index;
        :class:`~paracache.errors.EmbeddingError` if it is not a usable vector."""
        try:
            arr = np.asarray(raw, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(f"not a vector: {type(raw).__name__}") from exc
        if arr.shape[0] != self.layout.dims:
            raise EmbeddingError(f"vector has {arr.shape[0]} dims, the index {self.layout.dims}")
        # One dot product vouches for the common case: finite and not all zeros.
        norm2 = float(np.dot(arr, arr))
        if not (0.0 < norm2 < math.inf):
            if not np.isfinite(arr).all():
                raise EmbeddingError("vector contains NaN or infinity")
            if not np.any(arr):
                raise EmbeddingError("vector is all zeros")
        return arr.astype(self._np_dtype).tobytes()

    # ------------------------------------------------------------------ accounting

    def _failure(self, what: str, exc: BackendError) -> None:
        """Redis failed (not merely refused a write): count it, tell the breaker."""
        self.breaker.record_failure()
        self.recorder.error("redis")
        # Whatever failed, the server may have restarted without its index (and its
        # scripts, and the scope registry): check again.
        self.index_ready = False
        self._forget_registered()
        self._count_loaded = False
        self._hits_loaded = False
        # One warning per kind every 10 s: on a cluster the breaker stays closed while one
        # shard fails over (the others answer), and every failed call came here.
        self._warn_throttled(
            f"failed:{what}", "paracache: %s failed, continuing without the cache: %r", what, exc
        )

    def _internal(self, what: str, exc: Exception) -> None:
        """A bug in paracache's own code: not a Redis failure (the breaker and the index
        state are left alone); logged with its traceback, counted as ``internal``, and
        raised in strict mode (``PARACACHE_STRICT=1``, as the test suite runs)."""
        self.recorder.error("internal")
        logger.error("paracache: internal error in %s (a bug; a miss): %r", what, exc, exc_info=exc)
        if strict():
            raise exc

    def _corrupt(self, key: str, problem: str) -> None:
        self.recorder.error("corrupt_entry")
        logger.warning(
            "paracache: skipping unreadable entry %s: %s (paracache repair removes it)",
            key,
            problem,
        )

    def _warn_throttled(self, kind: str, msg: str, *args: Any) -> None:
        """Log a warning at most once per 10 s per kind (faults can last a while)."""
        if self._warnings.due(kind):
            logger.warning(msg, *args)
        else:
            logger.debug(msg, *args)
