"""The cache's logic without I/O: what to ask Redis and the embedder, and what answers mean.

Every operation is a *flow*: a generator that yields the I/O it needs (the requests of
:mod:`paracache.protocol`: ``Call``, ``Batch``, ``Embed``, ``EnsureIndex``) and receives
the result (or has the error thrown into it). :mod:`paracache.index` runs the same flows
with a blocking driver and an asyncio driver, so the sync and async twins cannot drift
apart, and all decisions (scoping, thresholds, fail-open, the circuit breaker, metrics)
live here once.

Example (driving a flow by hand, as the tests do):
    >>> # flow = core.lookup_flow(core.prepare_lookup("hi", Scope()))
    >>> # op = next(flow)            # Call(("HGETALL", "paracache:...:e:..."))
    >>> # op = flow.send({})         # nothing stored under the exact key -> Embed(...)
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import numpy as np

from .metrics import Recorder
from .policy import CircuitBreaker, HybridTuner, Normalizer, TTLPolicy, strip_pleasantries
from .protocol import (
    EXACT,
    PUT,
    REGISTER_SCOPE,
    SEARCH,
    UNCOUNT,
    Batch,
    Call,
    Embed,
    EmbedMany,
    EnsureIndex,
    Flow,
    Join,
    Submit,
    _as_fields,
    _b,
    _flatten,
    _missing_index,
    read_scopes_call,
    run_script,
    scope_rows,
    search_rows,
    write_refused,
)
from .schema import (
    SCHEMA_VERSION,
    Layout,
    entry_problem,
    filter_terms,
    namespace_of,
    scopes_key,
    tag_digest,
)
from .scope import Scope, canonical_json, digest

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "Batch",
    "CacheError",
    "CacheHit",
    "Call",
    "Candidate",
    "Core",
    "Embed",
    "EmbedMany",
    "EnsureIndex",
    "EntryInfo",
    "Settings",
    "Verdict",
    "last_verdict",
]

logger = logging.getLogger("paracache")

#: Cosine similarity a semantic hit needs by default. Chosen on Banking77 (see README).
DEFAULT_MIN_SIMILARITY = 0.90
#: Default ``corroboration_margin``: corroborated candidates down to 0.85 at 0.90.
DEFAULT_CORROBORATION_MARGIN = 0.05
#: How much of a prompt is kept in the entry (for inspection and guards).
MAX_STORED_PROMPT = 16_384
#: Seconds a cache instance trusts that a scope it registered is still in the scope
#: registry (another process may clear the namespace); single writes re-register after.
REGISTER_EVERY = 60.0

T = TypeVar("T")


class CacheError(RuntimeError):
    """An administrative operation (clear, delete, count) could not be carried out."""


class EmbeddingError(RuntimeError):
    """The vectorizer failed or returned something that is not a usable vector."""


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class CacheHit:
    """A cached answer and how it was found.

    Attributes:
        response: The stored response text (adapters put their serialised values here).
        layer: ``"exact"`` (same normalised text and scope) or ``"semantic"``.
        similarity: Cosine similarity of the query to the entry's prompt (1.0 if exact).
        entry_id: The entry's id, for :meth:`SemanticIndex.delete`.
        prompt: The prompt the entry was stored under.
        metadata: The metadata stored with it.
        created_at: Unix time it was stored.
        hit_count: Hits before this one.
        tokens: LLM tokens the entry stands for (0 if unknown).
        ttl: The entry's time-to-live in seconds when stored (``None``: no expiry).
    """

    response: str
    layer: Literal["exact", "semantic"]
    similarity: float
    entry_id: str
    prompt: str
    metadata: dict[str, Any]
    created_at: float
    hit_count: int
    tokens: int
    ttl: int | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one lookup decided, for logs, callbacks and tests.

    ``outcome`` is ``exact``, ``semantic``, ``miss``, ``bypass`` or ``error``;
    ``similarity`` is the best in-scope candidate's, even on a miss; ``scope`` is the
    scope the lookup was made in.
    """

    outcome: Literal["exact", "semantic", "miss", "bypass", "error"]
    reason: str
    scope_digest: str
    latency_ms: float
    similarity: float | None = None
    hit: CacheHit | None = None
    scope: Scope | None = None


_last_verdict: contextvars.ContextVar[Verdict | None] = contextvars.ContextVar(
    "paracache_last_verdict", default=None
)


def last_verdict() -> Verdict | None:
    """The verdict of the last lookup made in this context (thread or asyncio task).

    Example:
        >>> from paracache import last_verdict
        >>> # cache.lookup("What's your refund policy?")
        >>> # last_verdict().outcome  -> 'semantic'
    """
    return _last_verdict.get()


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An in-scope neighbour returned by the semantic layer."""

    key: str
    similarity: float
    fields: dict[bytes, bytes]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The knobs of one cache (validated by :class:`paracache.SemanticIndex`)."""

    min_similarity: float = DEFAULT_MIN_SIMILARITY
    top_k: int = 4
    policy: TTLPolicy = dataclasses.field(default_factory=TTLPolicy)
    normalizer: Normalizer = dataclasses.field(default_factory=Normalizer)
    track_hits: bool = True
    max_embed_chars: int = 2_000
    #: Cap on this index's entries; the oldest (by ``created_at``) are trimmed beyond it.
    max_entries: int | None = None
    #: Per-scope thresholds, ``{scope field: {value: min_similarity}}`` (validated by
    #: :func:`check_thresholds`); the strictest matching one replaces ``min_similarity``.
    thresholds: Mapping[str, Mapping[str, float]] = dataclasses.field(
        default_factory=dict, hash=False
    )
    #: How the scope pre-filter meets the HNSW search: ``"adaptive"`` (default: RediSearch
    #: chooses, unless a scope's searches are slow and filtered HNSW batches prove faster,
    #: see :class:`HybridTuner`), ``"auto"`` (RediSearch always chooses), ``"batches"`` or
    #: ``"adhoc_bf"`` (forced).
    knn_policy: Literal["adaptive", "auto", "batches", "adhoc_bf"] = "adaptive"
    #: Embed prompts without greetings, politeness frames and sign-offs
    #: (:func:`~paracache.policy.strip_pleasantries`); the exact layer's key is unchanged.
    strip_pleasantries: bool = True
    #: How far below the threshold a candidate may be when the ``corroborate`` hook
    #: vouches for it (a shared specific detail, every guard passed); 0: never.
    corroboration_margin: float = DEFAULT_CORROBORATION_MARGIN

    def embed_text(self, text: str) -> str:
        """The text the embedder sees for the normalised prompt ``text``."""
        return strip_pleasantries(text) if self.strip_pleasantries else text

    def threshold_for(self, scope: Scope) -> float:
        """The threshold a lookup under ``scope`` needs when the call gives none: the
        strictest per-scope threshold that matches, else ``min_similarity``.

        Example:
            >>> s = Settings(thresholds={"tenant": {"medical": 0.97}})
            >>> s.threshold_for(Scope(tenant="medical")), s.threshold_for(Scope())
            (0.97, 0.9)
        """
        best: float | None = None
        for field, table in self.thresholds.items():
            value = _scope_value(scope, field)
            if value is not None and value in table:
                best = table[value] if best is None else max(best, table[value])
        return self.min_similarity if best is None else best


@dataclasses.dataclass(frozen=True)
class LookupRequest:
    """A validated lookup, everything derived from the arguments computed once."""

    text: str
    scope: Scope
    scope_digest: str
    entry_id: str
    key: str
    min_similarity: float
    semantic: bool
    bypass: str | None
    #: The prompt as given (case kept), for guards; ``text`` is its normalised form.
    prompt: str = ""
    #: ``min_similarity`` was learned by the error bound (no corroboration margin then).
    learned: bool = False


@dataclasses.dataclass(frozen=True)
class StoreRequest:
    """A validated write: the entry's fields (but its vector) and, for the namespace's
    scope registry, its scope's canonical JSON (stored once per scope, not per entry)."""

    lookup: LookupRequest
    mapping: dict[str, Any]
    ttl: int | None
    skip: str | None
    scope_json: str = "{}"


def check_similarity(value: Any, name: str = "min_similarity") -> float:
    """Validate a similarity threshold (a number in [0, 1])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (cosine similarity), got {value!r}")
    return float(value)


#: Scope attributes a per-scope threshold can key on; any other name is a ``Scope.fields`` key.
SCOPE_THRESHOLD_FIELDS = ("tenant", "model", "corpus_version", "context")


def _scope_value(scope: Scope, field: str) -> str | None:
    """The value of ``field`` in ``scope`` as text (``None`` if it is not set)."""
    if field in SCOPE_THRESHOLD_FIELDS:
        value: Any = getattr(scope, field)
        return value or None
    value = scope.fields.get(field)
    if value is None:
        return None
    return value if isinstance(value, str) else canonical_json(value)


def check_thresholds(value: Any) -> dict[str, dict[str, float]]:
    """Validate per-scope thresholds: ``{field: {value: min_similarity}}``.

    ``field`` is ``tenant``, ``model``, ``corpus_version``, ``context`` or a key of
    ``Scope.fields`` (whose values are compared as text: ``"7"`` matches ``7``).

    Example:
        >>> check_thresholds({"tenant": {"medical": 0.97}, "model": {"gpt-4o": 0.92}})
        {'tenant': {'medical': 0.97}, 'model': {'gpt-4o': 0.92}}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            "thresholds must be a mapping {scope field: {value: min_similarity}}, e.g. "
            f'{{"tenant": {{"medical": 0.97}}}}; got {type(value).__name__}'
        )
    out: dict[str, dict[str, float]] = {}
    for field, table in value.items():
        if not isinstance(field, str) or not field:
            raise TypeError(f"thresholds: scope field names must be non-empty str, got {field!r}")
        if field in ("params", "fields", "temperature"):
            raise ValueError(
                f"thresholds: {field!r} is not a scope field to key on; use tenant, model, "
                "corpus_version, context or a key of Scope.fields"
            )
        if not isinstance(table, Mapping) or not table:
            raise TypeError(
                f"thresholds[{field!r}] must be a non-empty mapping {{value: min_similarity}}, "
                f"got {table!r}"
            )
        out[field] = {}
        for key, threshold in table.items():
            if isinstance(key, bool) or not isinstance(key, (str, int, float)):
                raise TypeError(f"thresholds[{field!r}]: values must be str, got {key!r}")
            text = key if isinstance(key, str) else canonical_json(key)
            out[field][text] = check_similarity(threshold, f"thresholds[{field!r}][{key!r}]")
    return out


def _clean(text: str) -> str:
    """Text Redis can store: lone surrogates become U+FFFD (hashes keep the original)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _text(raw: Mapping[bytes, bytes], field: str, default: str = "") -> str:
    value = raw.get(field.encode())
    return default if value is None else value.decode("utf-8")


def _num(raw: Mapping[bytes, bytes], field: str) -> float:
    value = raw.get(field.encode())
    return float(value) if value not in (None, b"") else 0.0


@dataclasses.dataclass
class _Searched:
    """What the semantic layer's query found: candidates, most similar first, and the
    entry the search script counted a hit on (``""``: none) with its state before."""

    candidates: list[Candidate]
    counted: str = ""
    before: tuple[bytes, ...] = ()
    now: str = ""
    #: Count a hit on a winner that carries its fields but was not counted yet.
    count_winner: bool = True

    @classmethod
    def from_script(cls, raw: Any, now: str) -> _Searched:
        """Read the ``SEARCH`` script's reply."""
        counted, before, rows = raw
        candidates = [
            Candidate(
                key=_b(key).decode(),
                similarity=1.0 - float(dist),
                fields=_as_fields(fields) if fields else {},
            )
            for key, dist, fields in rows
        ]
        return cls(candidates, _b(counted).decode(), tuple(_b(x) for x in before), now)


#: A warm-up batch whose writes are under way: (handle, batch, its live requests, start).
_PendingWrite = tuple[Any, list["StoreRequest"], list["StoreRequest"], float]


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


#: How many warm-up requests are ordered by length together: batches of similar
#: lengths pad less in the model (on the benchmark machine 100 texts/s sorted 64 at a
#: time, 130 sorted 256 at a time, 145 sorted 1,024 at a time).
_WARM_WINDOW = 1024


def _by_length(
    requests: Iterable[StoreRequest], size: int, window: int
) -> Iterator[list[StoreRequest]]:
    """``requests`` in batches of ``size``, each ``window`` of them ordered by prompt
    length first. The sort is stable: two requests for the same entry (same scope and
    text, so the same length) keep their order, and the later one still wins."""
    for chunk in _batches(requests, max(window, size)):
        chunk.sort(key=lambda r: len(r.lookup.text))
        yield from _batches(chunk, size)


def _distance_arg(distance: float) -> str:
    """A cosine distance for the search script, a hair wide so float text rounding can
    never drop a candidate exactly at the threshold (the core compares again)."""
    return repr(distance + 1e-9)


def _answered(exc: BaseException) -> bool:
    """Redis answered with an error (a refusal, not a failure of the server)."""
    return "ResponseError" in {cls.__name__ for cls in type(exc).__mro__}


class Core:
    """The decisions of one cache instance, shared by its sync and async shells."""

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
        self.index_ready = False
        self._np_dtype = np.float16 if layout.dtype == "float16" else np.float32
        self.tuner = HybridTuner()
        #: Run the semantic layer as one Lua script (KNN query, candidates read, hit
        #: counted: one round trip). Off for cluster clients (a script's ``FT.SEARCH``
        #: would search one shard) and after a server refused it (an ACL without
        #: scripting, a proxy): then the query and the winner's read are two calls.
        self.scripted_search = True
        self._warned: dict[str, float] = {}
        self._trim_lock = threading.Lock()
        self._writes_since_trim = 0
        #: Scope digest -> when this instance last registered it (``store_flow``).
        self._registered: dict[str, float] = {}
        #: The error bound's in-process side (:class:`paracache.learning.Learner`), or
        #: ``None`` for the static rules.
        self.learner: Any = None

    # ------------------------------------------------------------------ preparing

    def prepare_lookup(
        self,
        prompt: Any,
        scope: Any,
        *,
        min_similarity: Any = None,
        semantic: bool = True,
    ) -> LookupRequest:
        """Validate arguments (``TypeError``/``ValueError`` on bad input) and derive ids."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if scope is None:
            scope = Scope()
        elif not isinstance(scope, Scope):
            raise TypeError(f"scope must be a paracache.Scope, got {type(scope).__name__}")
        learned = False
        scope_digest = scope.digest()
        if min_similarity is not None:
            threshold = check_similarity(min_similarity)
        else:
            threshold = self.settings.threshold_for(scope)
            if self.learner is not None:
                threshold, learned = self.learner.threshold(scope_digest, scope, threshold)
        text = self.settings.normalizer(prompt)
        entry_id = digest("entry/v1", scope_digest, text)
        return LookupRequest(
            text=text,
            scope=scope,
            scope_digest=scope_digest,
            entry_id=entry_id,
            key=self.layout.key(entry_id),
            min_similarity=threshold,
            semantic=bool(semantic) and bool(text),
            bypass=self.settings.policy.bypass(scope.temperature),
            prompt=prompt,
            learned=learned,
        )

    def prepare_store(
        self,
        prompt: Any,
        response: Any,
        scope: Any,
        *,
        ttl: Any = True,
        metadata: Any = None,
        tokens: Any = 0,
        semantic: bool = True,
    ) -> StoreRequest:
        """Validate a write and build the entry's fields (except its vector)."""
        if not isinstance(response, str):
            raise TypeError(f"response must be a str, got {type(response).__name__}")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise TypeError(f"tokens must be an int >= 0, got {tokens!r}")
        req = self.prepare_lookup(prompt, scope, semantic=semantic)
        decision = self.settings.policy.decide(req.text, temperature=req.scope.temperature, ttl=ttl)
        s = req.scope
        # Only what an entry must have is always written (see schema.entry_problem);
        # readers take a missing number as 0 and missing metadata as {}. hit_count and
        # last_hit_at appear on the first hit (the EXACT script's HINCRBY/HSET). The
        # scope's JSON goes to the namespace's scope registry, once per scope.
        mapping: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "prompt": _clean(prompt[:MAX_STORED_PROMPT]),
            "response": _clean(response),
            "scope": req.scope_digest,
            "tenant": tag_digest("tenant", s.tenant),
            "model": tag_digest("model", s.model),
            "corpus": tag_digest("corpus", s.corpus_version),
            "created_at": int(time.time()),  # whole seconds: 10 digits, not 18 chars
        }
        if metadata:
            mapping["metadata"] = _clean(canonical_json(dict(metadata)))
        if tokens:
            mapping["tokens"] = tokens
        if decision.ttl:
            mapping["ttl"] = decision.ttl
        return StoreRequest(
            lookup=req,
            mapping=mapping,
            ttl=decision.ttl,
            skip=None if decision.cache else decision.reason,
            scope_json=_clean(canonical_json(s.as_dict())),
        )

    # ------------------------------------------------------------------ lookups

    def lookup_flow(self, req: LookupRequest) -> Flow[Verdict]:
        """Exact layer, then semantic layer; any failure becomes a miss."""
        t0 = time.perf_counter()
        if req.bypass:
            return self._verdict(req, t0, "bypass", req.bypass)
        if not self.breaker.allow():
            self.recorder.error("breaker_open")
            return self._verdict(req, t0, "error", "circuit breaker open")
        best: float | None = None
        try:
            yield from self._ensure_index()
            raw = yield from self._exact_read(req)
            hit = self._exact_hit(req, raw)
            if hit is None and req.semantic:
                vector = yield from self._embed(req.text)
                if vector is None:
                    self.breaker.record_success()
                    return self._verdict(req, t0, "error", "embedding failed")
                found = yield from self._search(req, vector)
                hit, best, reason = yield from self._choose_flow(req, found)
            else:
                reason = "exact match" if hit else "no exact match (semantic layer off)"
        except Exception as exc:
            self._failure("lookup", exc)
            return self._verdict(req, t0, "error", f"redis: {type(exc).__name__}")
        self.breaker.record_success()
        if hit is None:
            return self._verdict(req, t0, "miss", reason, best)
        # Both layers counted the hit when they read the entry (EXACT, SEARCH scripts).
        return self._verdict(req, t0, hit.layer, reason, hit.similarity, hit)

    def _exact_read(self, req: LookupRequest) -> Flow[Any]:
        """The hash at the exact key; with hit tracking, a hit is counted in the same
        round trip (``EXACT``), so an exact hit costs one call to Redis."""
        return (yield from self._read_entry(req.key, req.scope_digest))

    def _read_entry(self, key: str, scope_digest: str) -> Flow[Any]:
        """An entry's hash, its hit counted in the same round trip if it belongs to
        ``scope_digest`` (and hits are tracked)."""
        if not self.settings.track_hits:
            return (yield Call(("HGETALL", key)))
        sliding = "1" if self.settings.policy.sliding else ""
        try:
            return (
                yield from run_script(
                    EXACT, (key,), scope_digest, time.time(), sliding, SCHEMA_VERSION
                )
            )
        except Exception as exc:
            if not _answered(exc):
                raise  # the server did not answer: a failure
            # It answered but refused the script's writes (out of memory, a read-only
            # replica, an ACL) or choked on a damaged entry: read without bookkeeping.
            logger.debug("paracache: exact-layer script failed, reading plainly: %r", exc)
            return (yield Call(("HGETALL", key)))

    def _ensure_index(self) -> Flow[None]:
        if not self.index_ready:
            yield EnsureIndex()
            self.index_ready = True

    def _embed_input(self, text: str) -> str:
        """What the model sees for a normalised prompt: pleasantries stripped (if on),
        capped at ``max_embed_chars``, lone surrogates (which break tokenizers) replaced
        by U+FFFD."""
        return _clean(self.settings.embed_text(text)[: self.settings.max_embed_chars])

    def _embed(self, text: str) -> Flow[bytes | None]:
        """Embed a normalised prompt (:meth:`_embed_input`) and encode it for Redis;
        ``None`` (counted, logged) on failure."""
        try:
            raw = yield Embed(self._embed_input(text))
            return self.encode_vector(raw)
        except Exception as exc:
            self.recorder.error("embedding")
            logger.warning("paracache: embedding failed, treating as a miss: %r", exc)
            return None

    def encode_vector(self, raw: Any) -> bytes:
        """Check a vectorizer's output (dims, finite) and encode it for the index."""
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

    #: What the KNN query returns per candidate: what choosing needs (the guards read
    #: ``prompt``, calibration ``response``). Each returned field costs RediSearch a
    #: read of the hash: 4 fields instead of 13 halve the query (0.26 ms against 0.47 ms
    #: at 10 k entries); the winner is read whole afterwards.
    _RETURN = ("scope", "prompt", "response", "__dist")

    def knn_args(
        self, req: LookupRequest, vector: bytes, policy: str | None = None
    ) -> tuple[Any, ...]:
        """The ``FT.SEARCH`` command: KNN pre-filtered on the exact scope digest
        (``policy``: a RediSearch ``HYBRID_POLICY``, or ``None`` to let it choose)."""
        k = self.settings.top_k
        hybrid = f" HYBRID_POLICY {policy}" if policy else ""
        query = f"(@scope:{{{req.scope_digest}}})=>[KNN {k} @embedding $vec{hybrid} AS __dist]"
        return (
            "FT.SEARCH",
            self.layout.index_name,
            query,
            "PARAMS",
            2,
            "vec",
            vector,
            "SORTBY",
            "__dist",
            "RETURN",
            len(self._RETURN),
            *self._RETURN,
            "LIMIT",
            0,
            k,
            "DIALECT",
            2,
        )

    def _hybrid_policy(self, scope_digest: str) -> str | None:
        mode = self.settings.knn_policy
        if mode == "adaptive":
            return self.tuner.choose(scope_digest)
        return None if mode == "auto" else mode.upper()

    def _search(self, req: LookupRequest, vector: bytes) -> Flow[_Searched]:
        """The KNN candidates in scope, most similar first (with their entries' fields
        where they are within ``min_similarity``), retrying once if the index vanished."""
        policy = self._hybrid_policy(req.scope_digest)
        started = time.perf_counter()
        try:
            found = yield from self._search_once(req, vector, policy)
        except Exception as exc:
            if not _missing_index(exc):
                raise
            # The index went away (FLUSHALL, a restarted server): build it and retry once.
            self.index_ready = False
            yield from self._ensure_index()
            found = yield from self._search_once(req, vector, policy)
        self.tuner.record(req.scope_digest, policy, time.perf_counter() - started)
        return found

    def _search_once(
        self, req: LookupRequest, vector: bytes, policy: str | None
    ) -> Flow[_Searched]:
        args = self.knn_args(req, vector, policy)
        if not self.scripted_search:
            return _Searched(parse_search((yield Call(args))))
        hit_dist = 1.0 - req.min_similarity if self.settings.track_hits else -1.0
        now = repr(time.time())
        try:
            raw = yield from run_script(
                SEARCH,
                (),
                self.layout.index_name,
                args[2],  # the query, with its HYBRID_POLICY
                vector,
                self.settings.top_k,
                _distance_arg(1.0 - self._read_floor(req)),
                _distance_arg(hit_dist),
                req.scope_digest,
                now,
                "1" if self.settings.policy.sliding else "",
                SCHEMA_VERSION,
            )
        except Exception as exc:
            if _missing_index(exc) or not _answered(exc):
                raise
            if write_refused(exc) is None:
                # The server will not run the search as a script (an ACL, a proxy, a
                # module that forbids it): query and read in two calls from now on.
                self.scripted_search = False
                logger.warning(
                    "paracache: the semantic layer's script was refused (%r); using two "
                    "round trips per lookup instead",
                    exc,
                )
            # Out of memory or a read-only replica refused the hit count: this lookup
            # reads without it.
            return _Searched(parse_search((yield Call(args))))
        return _Searched.from_script(raw, now)

    def _choose(
        self, req: LookupRequest, candidates: Sequence[Candidate]
    ) -> tuple[CacheHit | None, float | None, str]:
        """:meth:`_choose_flow` for candidates that carry all their fields (no I/O)."""
        flow = self._choose_flow(req, _Searched(list(candidates), count_winner=False))
        try:
            op = next(flow)
        except StopIteration as stop:
            return cast(tuple[CacheHit | None, float | None, str], stop.value)
        flow.close()
        raise ValueError(f"candidates without their entry's fields need I/O: {op!r}")

    def _choose_flow(
        self, req: LookupRequest, found: _Searched
    ) -> Flow[tuple[CacheHit | None, float | None, str]]:
        """The hit among the KNN candidates, and the best similarity and why.

        Top-k re-ranking: the most similar candidate that passes the guards wins. The
        search script read the candidates within ``min_similarity`` whole and counted a
        hit on the first of them; if another one wins (a guard rejected the first), that
        count is undone and the winner's counted. Without the script, the candidates
        carry only what choosing needs and the winner is read (and counted) afterwards.
        """
        candidates = found.candidates
        best = max((c.similarity for c in candidates), default=None)
        rejected: list[str] = []
        hit: CacheHit | None = None
        winner = ""
        below = False
        floor = self._floor(req)
        learner = self.learner
        unserved: Candidate | None = None  # the nearest one not served, for a label
        explored = False
        for cand in sorted(candidates, key=lambda c: -c.similarity):
            if cand.similarity < floor:
                if learner is None or cand.similarity < learner.read_floor:
                    break
                if unserved is None and cand.fields and self._labellable(req, cand):
                    unserved = cand
                continue
            if not cand.fields:
                continue  # expired since the search
            if cand.fields.get(b"scope") != req.scope_digest.encode():
                self._corrupt(cand.key, "scope does not match the pre-filter")
                continue  # cannot happen with the pre-filter; never serve it if it does
            below = cand.similarity < req.min_similarity
            if below and not self._corroborated(req, cand):
                continue  # below the threshold, and nothing vouches for it
            rejection = self._check(req, cand) or self._vetoed(cand)
            if rejection:
                self.recorder.rejection(rejection)
                rejected.append(f"{cand.similarity:.3f} ({rejection})")
                continue
            if (
                learner is not None
                and unserved is None
                and learner.explore(cand.similarity, req.min_similarity)
            ):
                unserved, explored = cand, True  # a labelled miss instead of a hit
                break
            fields = cand.fields
            if b"v" not in fields:  # a plain KNN row: read the entry (and count the hit)
                raw = yield from self._read_entry(cand.key, req.scope_digest)
                if not raw:
                    continue  # expired since the search
                fields = _as_fields(raw)
                if fields.get(b"scope") != req.scope_digest.encode():
                    self._corrupt(cand.key, "scope does not match the pre-filter")
                    continue
            elif cand.key != found.counted and found.count_winner and self.settings.track_hits:
                yield from self._count_hit(cand.key, req.scope_digest)
            hit = self._decode(cand.key, fields, "semantic", cand.similarity)
            if hit is not None:
                winner = cand.key
                break
        if found.counted and winner != found.counted:
            yield from self._uncount(found)
        if learner is not None:
            self._observe(req, hit, unserved, explored)
        if explored:
            return None, best, f"explored: {unserved.similarity:.3f} labelled, not served"  # type: ignore[union-attr]
        if hit is not None:
            reason = f"similarity {hit.similarity:.3f} >= {req.min_similarity:.3f}"
            if below:
                reason = (
                    f"similarity {hit.similarity:.3f} >= {floor:.3f}, corroborated "
                    f"(a shared detail; threshold {req.min_similarity:.3f})"
                )
            if rejected:
                reason += f"; rejected before it: {', '.join(rejected)}"
            return hit, best, reason
        if best is None:
            return None, None, "no candidate in scope"
        if rejected:
            return None, best, f"rejected by guards: {', '.join(rejected)}"
        return None, best, f"best similarity {best:.3f} < {req.min_similarity:.3f}"

    def _count_hit(self, key: str, scope_digest: str) -> Flow[None]:
        """Count a hit on an entry the search script read but did not count."""
        try:
            yield from self._read_entry(key, scope_digest)
        except Exception as exc:  # bookkeeping: the answer is served regardless
            logger.debug("paracache: counting a hit failed: %r", exc)

    def _uncount(self, found: _Searched) -> Flow[None]:
        """Undo the search script's hit count on an entry that was not served."""
        created, last, pttl = (*found.before, b"", b"", b"-1")[:3]
        try:
            yield from run_script(
                UNCOUNT,
                (found.counted,),
                created,
                last,
                pttl,
                found.now,
                "1" if self.settings.policy.sliding else "",
            )
        except Exception as exc:  # bookkeeping: a count too many is harmless
            logger.debug("paracache: undoing a hit count failed: %r", exc)

    def _observe(
        self,
        req: LookupRequest,
        hit: CacheHit | None,
        unserved: Candidate | None,
        explored: bool,
    ) -> None:
        """Tell the learner what this lookup found (it never fails the lookup)."""
        similarity = hit.similarity if hit is not None else None
        if unserved is not None:
            similarity = unserved.similarity
        try:
            self.learner.observe(
                req.key, req.scope_digest, req.scope, similarity, unserved, explored
            )
        except Exception as exc:  # pragma: no cover - the learner is memory only
            self.recorder.error("learning")
            logger.warning("paracache: learner failed to observe a lookup: %r", exc)

    def _labellable(self, req: LookupRequest, cand: Candidate) -> bool:
        """May ``cand`` (below the floor) be labelled: in scope and past the guards."""
        return cand.fields.get(b"scope") == req.scope_digest.encode() and not self._check(
            req, cand
        )

    def _vetoed(self, cand: Candidate) -> str | None:
        """With the bound on: the candidate was judged wrong at this similarity or
        above (its ``lw`` label field) - or that field is unreadable."""
        if self.learner is None:
            return None
        from .bound import entry_floor

        try:
            worst = entry_floor(cand.fields)
        except ValueError as exc:
            self.recorder.error("stats_corrupt")
            logger.warning("paracache: unreadable label field on %s: %s", cand.key, exc)
            return "labels_unreadable"
        if worst is not None and cand.similarity <= worst + 0.005:
            return "labelled_wrong"
        return None

    def _read_floor(self, req: LookupRequest) -> float:
        """The lowest similarity a candidate is read at: :meth:`_floor`, or lower with
        the bound on (nearest unserved candidates are labelled)."""
        floor = self._floor(req)
        if self.learner is None:
            return floor
        return min(floor, float(self.learner.read_floor))

    def _floor(self, req: LookupRequest) -> float:
        """The lowest similarity a candidate may have: the threshold, or with a
        ``corroborate`` hook the threshold less ``corroboration_margin`` (never for a
        threshold of 1.0, which asks for the same meaning exactly, nor for a learned
        threshold)."""
        if (
            req.learned
            or self.corroborate is None
            or self.settings.corroboration_margin <= 0
            or req.min_similarity >= 1.0
        ):
            return req.min_similarity
        return req.min_similarity - self.settings.corroboration_margin

    def _corroborated(self, req: LookupRequest, cand: Candidate) -> bool:
        """The ``corroborate`` hook's verdict; a hook that raises does not vouch."""
        if self.corroborate is None:
            return False
        try:
            return bool(self.corroborate(req, cand))
        except Exception as exc:
            self.recorder.error("guard")
            logger.warning("paracache: corroborate hook raised: %r", exc)
            return False

    def _check(self, req: LookupRequest, cand: Candidate) -> str | None:
        """The ``accept`` hook's verdict on a candidate; a hook that raises rejects it."""
        if self.accept is None:
            return None
        try:
            return self.accept(req, cand)
        except Exception as exc:  # a guard must never break a lookup: do not serve
            self.recorder.error("guard")
            logger.warning("paracache: guard raised, not serving the candidate: %r", exc)
            return "guard_error"

    def _exact_hit(self, req: LookupRequest, raw: Any) -> CacheHit | None:
        if not raw:
            return None
        fields = _as_fields(raw)
        if fields.get(b"scope") != req.scope_digest.encode():
            # Something else lives at this entry's key (a foreign or damaged hash).
            self._corrupt(req.key, "scope does not match the key")
            return None
        return self._decode(req.key, fields, "exact", 1.0)

    def _decode(
        self,
        key: str,
        fields: Mapping[bytes, bytes],
        layer: Literal["exact", "semantic"],
        similarity: float,
    ) -> CacheHit | None:
        """An entry as a hit; a corrupt or foreign one is counted and skipped.

        Both layers check the fields a hit is built from (and the exact layer, which
        read the whole hash, the vector's size); :meth:`SemanticIndex.repair` checks all.
        """
        try:
            problem = entry_problem(fields, full=False, vector_bytes=self.layout.vector_bytes)
            if problem is not None:
                self._corrupt(key, problem)
                return None
            return CacheHit(
                response=_text(fields, "response"),
                layer=layer,
                similarity=round(min(1.0, max(0.0, similarity)), 6),
                entry_id=key.rsplit(":", 1)[-1],
                prompt=_text(fields, "prompt"),
                metadata=json.loads(_text(fields, "metadata", "{}")),
                created_at=_num(fields, "created_at"),
                hit_count=int(_num(fields, "hit_count")),
                tokens=int(_num(fields, "tokens")),
                ttl=int(_num(fields, "ttl")) or None,
            )
        except Exception as exc:  # whatever is stored, reading it never raises
            self._corrupt(key, repr(exc))
            return None

    def _corrupt(self, key: str, problem: str) -> None:
        self.recorder.error("corrupt_entry")
        logger.warning(
            "paracache: skipping unreadable entry %s: %s (paracache repair removes it)",
            key,
            problem,
        )

    def _verdict(
        self,
        req: LookupRequest,
        t0: float,
        outcome: Literal["exact", "semantic", "miss", "bypass", "error"],
        reason: str,
        similarity: float | None = None,
        hit: CacheHit | None = None,
    ) -> Verdict:
        seconds = time.perf_counter() - t0
        self.recorder.lookup(outcome, seconds, hit.tokens if hit else 0, similarity)
        verdict = Verdict(
            outcome=outcome,
            reason=reason,
            scope_digest=req.scope_digest,
            latency_ms=seconds * 1000.0,
            similarity=None if similarity is None else round(similarity, 6),
            hit=hit,
            scope=req.scope,
        )
        _last_verdict.set(verdict)
        if self.on_verdict is not None:
            try:
                self.on_verdict(verdict)
            except Exception as exc:  # an observer must never break a lookup
                logger.warning("paracache: on_verdict callback raised: %r", exc)
        return verdict

    def _failure(self, what: str, exc: BaseException) -> None:
        self.breaker.record_failure()
        self.recorder.error("redis")
        # Whatever failed, the server may have restarted without its index: check again.
        self.index_ready = False
        logger.warning("paracache: %s failed, continuing without the cache: %r", what, exc)

    # ------------------------------------------------------------------ writes

    def store_flow(self, req: StoreRequest) -> Flow[str | None]:
        """Write one entry atomically (``DEL``+``HSET``+``EXPIRE`` in ``MULTI``), its
        scope first registered in the namespace's scope registry (``REGISTER_SCOPE``).

        Each command touches one key (a cluster routes them apart). The registration is
        best effort and costs a round trip only the first time this instance writes a
        scope in :data:`REGISTER_EVERY` seconds: an entry whose scope row is missing
        (the registry cleared by another process meanwhile) still serves lookups, which
        never read the registry; only its listing shows no scope until the next write.
        Returns the entry id, or ``None`` when the policy skipped it or it was dropped.
        """
        t0 = time.perf_counter()
        if self.learner is not None:  # a fresh answer: a label for a remembered candidate
            self.learner.on_store(req.lookup.key, req.mapping["response"])
        if req.skip:
            self.recorder.write("skipped")
            logger.debug("paracache: not caching: %s", req.skip)
            return None
        if not self.breaker.allow():
            self.recorder.write("dropped")
            self.recorder.error("breaker_open")
            return None
        mapping = dict(req.mapping)
        if req.lookup.semantic:
            vector = yield from self._embed(req.lookup.text)
            if vector is not None:
                mapping["embedding"] = vector
            # Without a vector the entry still serves the exact layer.
        key = req.lookup.key
        calls: list[tuple[Any, ...]] = [("DEL", key), ("HSET", key, *_flatten(mapping))]
        if req.ttl is not None:
            calls.append(("EXPIRE", key, req.ttl))
        try:
            yield from self._ensure_index()
            if self._register_due(req.lookup.scope_digest):
                try:
                    yield Call(self._register_call(req))
                except Exception as exc:
                    if not _answered(exc):
                        raise
                    # Refused (an ACL without scripting, out of memory): the entry is
                    # written anyway; only its listing lacks the scope.
                    logger.debug("paracache: scope registry write refused: %r", exc)
            yield Batch(tuple(calls), transaction=True)
        except Exception as exc:
            refused = write_refused(exc)
            if refused:  # the server is up but takes no writes: not a breaker failure
                self.breaker.record_success()
                self.recorder.error(refused)
                self._warn_throttled(refused, "paracache: write refused (%s): %r", refused, exc)
            else:
                self._failure("store", exc)
            self.recorder.write("dropped", time.perf_counter() - t0)
            return None
        self.breaker.record_success()
        self.recorder.write("written", time.perf_counter() - t0)
        return req.lookup.entry_id

    def _register_due(self, scope_digest: str) -> bool:
        """Should this write register its scope? Yes unless this instance did so in the
        last :data:`REGISTER_EVERY` seconds (and has not cleared the namespace since)."""
        now = time.monotonic()
        with self._trim_lock:
            if now - self._registered.get(scope_digest, -math.inf) < REGISTER_EVERY:
                return False
            if len(self._registered) >= 10_000:  # many scopes: forget, re-register
                self._registered.clear()
            self._registered[scope_digest] = now
            return True

    def _register_call(self, req: StoreRequest) -> tuple[Any, ...]:
        """The command that records ``req``'s scope JSON in the scope registry."""
        return (
            "EVAL", REGISTER_SCOPE.source, 1, self.layout.scopes_key,
            req.lookup.scope_digest, req.scope_json,
        )  # fmt: skip

    def _put_call(self, req: StoreRequest, mapping: Mapping[str, Any]) -> tuple[Any, ...]:
        """The command that writes one entry atomically (replacing any old one)."""
        ttl = 0 if req.ttl is None else req.ttl
        return ("EVAL", PUT.source, 1, req.lookup.key, ttl, *_flatten(mapping))

    def _warn_throttled(self, kind: str, msg: str, *args: Any) -> None:
        """Log a warning at most once per 10 s per kind (faults can last a while)."""
        now = time.monotonic()
        if now - self._warned.get(kind, -1e9) >= 10.0:
            self._warned[kind] = now
            logger.warning(msg, *args)
        else:
            logger.debug(msg, *args)

    # ------------------------------------------------------------------ bulk warm-up

    def warm_flow(
        self,
        requests: Iterable[StoreRequest],
        *,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> Flow[int]:
        """Write many entries: each batch embedded in one ``EmbedMany`` and written in
        one pipelined round trip (each entry atomically, by the ``PUT`` script).

        ``on_batch`` is called with the number of requests each batch consumed (for a
        progress bar). Returns how many entries were written; entries the policy skips
        are counted as skipped writes. Redis and embedding errors propagate: a warm-up
        is an explicit, administrative operation.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        yield from self._ensure_index()
        written = 0
        pending: _PendingWrite | None = None
        for batch in _by_length(requests, batch_size, _WARM_WINDOW):
            # Embed this batch while Redis still writes and indexes the previous one.
            started = time.perf_counter()
            calls, live = yield from self._warm_calls(batch)
            if pending is not None:
                written += yield from self._warm_join(pending, on_batch)
                pending = None
            if calls:
                pending = ((yield Submit(Batch(tuple(calls)))), batch, live, started)
            else:
                self._warm_count(batch, live, started, on_batch)
        if pending is not None:
            written += yield from self._warm_join(pending, on_batch)
        if written and self.settings.max_entries is not None:
            yield from self.trim_flow()
        return written

    def _warm_calls(
        self, batch: Sequence[StoreRequest]
    ) -> Flow[tuple[list[tuple[Any, ...]], list[StoreRequest]]]:
        """One batch's writes (the ``PUT`` script per entry), its prompts embedded at once."""
        live = [r for r in batch if not r.skip]
        semantic = [r for r in live if r.lookup.semantic]
        vectors: dict[int, bytes] = {}
        if semantic:
            texts = tuple(self._embed_input(r.lookup.text) for r in semantic)
            raw = yield EmbedMany(texts)
            if len(raw) != len(semantic):
                raise EmbeddingError(f"{len(raw)} vectors for {len(semantic)} texts")
            for r, vec in zip(semantic, raw, strict=True):
                vectors[id(r)] = self.encode_vector(vec)
        calls = []
        registered: set[str] = set()
        for r in live:  # each scope of the batch registered once, before its entries
            if r.lookup.scope_digest not in registered:
                registered.add(r.lookup.scope_digest)
                calls.append(self._register_call(r))
        for r in live:
            mapping = dict(r.mapping)
            if id(r) in vectors:
                mapping["embedding"] = vectors[id(r)]
            calls.append(self._put_call(r, mapping))
        return calls, live

    def _warm_join(
        self, pending: _PendingWrite, on_batch: Callable[[int], None] | None
    ) -> Flow[int]:
        """Wait for a submitted batch's writes, then count them."""
        handle, batch, live, started = pending
        yield Join(handle)
        self._warm_count(batch, live, started, on_batch)
        return len(live)

    def _warm_count(
        self,
        batch: Sequence[StoreRequest],
        live: Sequence[StoreRequest],
        started: float,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        for _ in range(len(batch) - len(live)):
            self.recorder.write("skipped")
        seconds = (time.perf_counter() - started) / max(1, len(live))
        for _ in live:
            self.recorder.write("written", seconds)
        if on_batch is not None:
            on_batch(len(batch))

    # ------------------------------------------------------------------ size cap

    def trim_due(self) -> bool:
        """Called after each write: is it time to check ``max_entries``?

        The check runs every ``max_entries // 10`` writes (at least 1, at most 1000)
        per instance, so the index may overshoot the cap by about 10 % in between.
        """
        cap = self.settings.max_entries
        if cap is None:
            return False
        every = max(1, min(1000, cap // 10))
        with self._trim_lock:
            self._writes_since_trim += 1
            if self._writes_since_trim < every:
                return False
            self._writes_since_trim = 0
            return True

    def trim_flow(self) -> Flow[int]:
        """Delete the oldest entries (by ``created_at``) beyond ``max_entries``."""
        cap = self.settings.max_entries
        if cap is None:
            return 0
        yield from self._ensure_index()
        name = self.layout.index_name
        raw = yield Call(("FT.SEARCH", name, "*", "LIMIT", 0, 0, "DIALECT", 2))
        excess = search_rows(raw)[0] - cap
        deleted = 0
        while excess > 0:
            raw = yield Call(
                ("FT.SEARCH", name, "*", "NOCONTENT", "SORTBY", "created_at", "ASC",
                 "LIMIT", 0, min(excess, 1000), "DIALECT", 2)
            )  # fmt: skip
            keys = [key for key, _ in search_rows(raw)[1]]
            if not keys:
                break
            deleted += int((yield Call(("UNLINK", *keys))))
            excess -= len(keys)
        if deleted:
            logger.info("paracache: trimmed %d oldest entries (max_entries=%d)", deleted, cap)
        return deleted

    # ------------------------------------------------------------------ administration

    def clear_flow(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        corpus_version: str | None = None,
        scope: Scope | None = None,
    ) -> Flow[int]:
        """Delete every entry of the namespace, or those matching the given scope parts.

        Without filters every key of the namespace goes, its scope registry too (not
        counted: the count is of entries). With filters, the registry keeps its rows.
        """
        terms = filter_terms(tenant=tenant, model=model, corpus_version=corpus_version)
        if scope is not None:
            if not isinstance(scope, Scope):
                raise TypeError(f"scope must be a paracache.Scope, got {type(scope).__name__}")
            terms.append(f"@scope:{{{scope.digest()}}}")
        deleted = 0
        if not terms:
            deleted = yield from unlink_namespace(self.layout.namespace)
            with self._trim_lock:
                self._registered.clear()  # the registry went too: register anew
            return deleted
        yield from self._ensure_index()
        query = " ".join(terms)
        while True:
            raw = yield Call(
                (
                    "FT.SEARCH",
                    self.layout.index_name,
                    query,
                    "NOCONTENT",
                    "LIMIT",
                    0,
                    1000,
                    "DIALECT",
                    2,
                )
            )
            keys = [key for key, _ in search_rows(raw)[1]]
            if not keys:
                return deleted
            removed = int((yield Call(("UNLINK", *keys))))
            deleted += removed
            if not removed:  # the index lists keys that are gone (it lags): no progress
                return deleted

    def delete_flow(self, entry_id: str) -> Flow[bool]:
        """Delete one entry by id."""
        if not isinstance(entry_id, str) or not entry_id.isalnum():
            raise ValueError(f"not an entry id: {entry_id!r}")
        return bool((yield Call(("UNLINK", self.layout.key(entry_id)))))

    def count_flow(self) -> Flow[int]:
        """How many entries this index holds."""
        yield from self._ensure_index()
        raw = yield Call(("FT.SEARCH", self.layout.index_name, "*", "LIMIT", 0, 0, "DIALECT", 2))
        return search_rows(raw)[0]

    def entries_flow(self, limit: int = 20) -> Flow[list[EntryInfo]]:
        """The ``limit`` newest entries of this index, for inspection."""
        yield from self._ensure_index()
        return (yield from entries_flow(self.layout.index_name, limit))


def unlink_namespace(namespace: str) -> Flow[int]:
    """Delete every key of ``namespace`` (``SCAN``, ``UNLINK``); returns how many were
    deleted, not counting its scope registry (which goes too)."""
    registry = scopes_key(namespace).encode()
    deleted = 0
    cursor: Any = 0
    pattern = f"paracache:{namespace}:*"
    while True:
        cursor, keys = yield Call(("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
        if keys:
            deleted += int((yield Call(("UNLINK", *keys))))
            if any(k == registry or k == registry.decode() for k in keys):
                deleted -= 1  # the registry, not an entry
        if int(cursor) == 0:
            return max(0, deleted)


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    """One stored entry as :meth:`SemanticIndex.entries` and ``paracache inspect`` show it.

    Attributes:
        entry_id: The entry's id (for :meth:`SemanticIndex.delete`).
        key: Its Redis key.
        prompt: The prompt it was stored under.
        scope: Its scope as plain data (model, tenant, corpus version, params, ...),
            from the namespace's scope registry (``{}`` if its row is missing).
        created_at: Unix time it was stored.
        last_hit_at: Unix time of its last hit (``None``: never hit).
        hit_count: How often it was served.
        tokens: LLM tokens it stands for (0 if unknown).
        ttl: The TTL it was stored with, in seconds (``None``: no expiry).
        ttl_left: Seconds until it expires (``None``: never).
    """

    entry_id: str
    key: str
    prompt: str
    scope: dict[str, Any]
    created_at: float
    last_hit_at: float | None
    hit_count: int
    tokens: int
    ttl: int | None
    ttl_left: float | None

    def age(self, now: float | None = None) -> float:
        """Seconds since it was stored."""
        return max(0.0, (time.time() if now is None else now) - self.created_at)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return dataclasses.asdict(self)


_ENTRY_FIELDS = ("prompt", "scope", "created_at", "last_hit_at", "hit_count", "tokens", "ttl")


def entries_flow(index_name: str, limit: int = 20) -> Flow[list[EntryInfo]]:
    """The ``limit`` newest entries of the index ``index_name`` with their TTL left and
    their scope (from the namespace's scope registry, read in the same round trip)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be an int in [1, 10000], got {limit!r}")
    raw = yield Call(
        (
            "FT.SEARCH",
            index_name,
            "*",
            "SORTBY",
            "created_at",
            "DESC",
            "RETURN",
            len(_ENTRY_FIELDS),
            *_ENTRY_FIELDS,
            "LIMIT",
            0,
            limit,
            "DIALECT",
            2,
        )
    )
    rows = search_rows(raw)[1]
    if not rows:
        return []
    digests = sorted({fields.get(b"scope", b"").decode("utf-8", "replace") for _, fields in rows})
    replies = yield Batch(
        (
            *(("PTTL", key) for key, _ in rows),
            read_scopes_call(scopes_key(namespace_of(index_name)), digests),
        )
    )
    pttls = replies[: len(rows)]
    scopes = scope_rows(digests, replies[len(rows)])
    out: list[EntryInfo] = []
    for (key, fields), pttl in zip(rows, pttls, strict=True):
        if int(pttl) == -2:
            continue  # expired in between
        scope = scopes.get(fields.get(b"scope", b"").decode("utf-8", "replace"), {})
        last_hit = _num(fields, "last_hit_at")
        out.append(
            EntryInfo(
                entry_id=key.rsplit(":", 1)[-1],
                key=key,
                prompt=_text(fields, "prompt"),
                scope=scope,
                created_at=_num(fields, "created_at"),
                last_hit_at=last_hit or None,
                hit_count=int(_num(fields, "hit_count")),
                tokens=int(_num(fields, "tokens")),
                ttl=int(_num(fields, "ttl")) or None,
                ttl_left=None if int(pttl) < 0 else int(pttl) / 1000.0,
            )
        )
    return out


def parse_search(raw: Any) -> list[Candidate]:
    """The KNN candidates of an ``FT.SEARCH`` reply (similarity = 1 - cosine distance)."""
    return [
        Candidate(key=key, similarity=1.0 - float(fields.get(b"__dist", b"2")), fields=fields)
        for key, fields in search_rows(raw)[1]
    ]
