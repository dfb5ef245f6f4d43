"""The cache's logic without I/O: what to ask Redis and the embedder, and what answers mean.

Every operation is a *flow*: a generator that yields the I/O it needs (:class:`Call`,
:class:`Batch`, :class:`Embed`, :class:`EnsureIndex`) and receives the result (or has the
error thrown into it). :mod:`paracache.index` runs the same flows with a blocking
driver and an asyncio driver, so the sync and async twins cannot drift apart, and all
decisions (scoping, thresholds, fail-open, the circuit breaker, metrics) live here once.

Example (driving a flow by hand, as the tests do):
    >>> # flow = core.lookup_flow(core.prepare_lookup("hi", Scope()))
    >>> # op = next(flow)            # Call(("HGETALL", "paracache:...:e:..."))
    >>> # op = flow.send({})         # nothing stored under the exact key -> Embed(...)
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from .metrics import Recorder
from .policy import CircuitBreaker, Normalizer, TTLPolicy
from .schema import SCHEMA_VERSION, Layout
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
    "EnsureIndex",
    "Settings",
    "Verdict",
    "last_verdict",
]

logger = logging.getLogger("paracache")

#: Cosine similarity a semantic hit needs by default. Chosen on Banking77 (see README).
DEFAULT_MIN_SIMILARITY = 0.90
#: How much of a prompt is kept in the entry (for inspection and guards).
MAX_STORED_PROMPT = 16_384

T = TypeVar("T")


class CacheError(RuntimeError):
    """An administrative operation (clear, delete, count) could not be carried out."""


class EmbeddingError(RuntimeError):
    """The vectorizer failed or returned something that is not a usable vector."""


# --------------------------------------------------------------------------- I/O requests


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One Redis command, e.g. ``Call(("HGETALL", key))``."""

    args: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Several Redis commands in one round trip (``MULTI``/``EXEC`` if ``transaction``)."""

    calls: tuple[tuple[Any, ...], ...]
    transaction: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Embed:
    """Embed one text with the cache's vectorizer; the answer is a sequence of floats."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class EnsureIndex:
    """Create the search index if it does not exist yet."""


Op = Call | Batch | Embed | EnsureIndex
Flow = Generator[Op, Any, T]


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


@dataclasses.dataclass(frozen=True)
class StoreRequest:
    """A validated write."""

    lookup: LookupRequest
    mapping: dict[str, Any]
    ttl: int | None
    skip: str | None


def check_similarity(value: Any, name: str = "min_similarity") -> float:
    """Validate a similarity threshold (a number in [0, 1])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (cosine similarity), got {value!r}")
    return float(value)


def _clean(text: str) -> str:
    """Text Redis can store: lone surrogates become U+FFFD (hashes keep the original)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _text(raw: Mapping[bytes, bytes], field: str, default: str = "") -> str:
    value = raw.get(field.encode())
    return default if value is None else value.decode("utf-8")


def _num(raw: Mapping[bytes, bytes], field: str) -> float:
    value = raw.get(field.encode())
    return float(value) if value not in (None, b"") else 0.0


# Hit bookkeeping in one round trip, and only if the entry still exists: a plain
# HINCRBY on a key that expired in between would create a torn, TTL-less hash.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'hit_count', 1)
  redis.call('HSET', KEYS[1], 'last_hit_at', ARGV[1])
  if ARGV[2] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  return 1
end
return 0
"""


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
    ) -> None:
        self.layout = layout
        self.settings = settings
        self.recorder = recorder or Recorder()
        self.breaker = breaker or CircuitBreaker()
        self.on_verdict = on_verdict
        #: Optional guard: returns a rejection reason for a candidate, or ``None``.
        self.accept = accept
        self.index_ready = False
        self._np_dtype = np.float16 if layout.dtype == "float16" else np.float32

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
        threshold = (
            self.settings.min_similarity
            if min_similarity is None
            else check_similarity(min_similarity)
        )
        text = self.settings.normalizer(prompt)
        scope_digest = scope.digest()
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
        now = time.time()
        s = req.scope
        mapping: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "prompt": _clean(prompt[:MAX_STORED_PROMPT]),
            "response": _clean(response),
            "scope": req.scope_digest,
            "tenant": digest("tenant", s.tenant, size=16),
            "model": digest("model", s.model, size=16),
            "corpus": digest("corpus", s.corpus_version, size=16),
            "scope_json": _clean(canonical_json(s.as_dict())),
            "metadata": _clean(canonical_json(dict(metadata))),
            "tokens": tokens,
            "created_at": now,
            "last_hit_at": 0,
            "hit_count": 0,
            "ttl": decision.ttl or 0,
        }
        return StoreRequest(
            lookup=req,
            mapping=mapping,
            ttl=decision.ttl,
            skip=None if decision.cache else decision.reason,
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
            raw = yield Call(("HGETALL", req.key))
            hit = self._exact_hit(req, raw)
            if hit is None and req.semantic:
                vector = yield from self._embed(req.text)
                if vector is None:
                    self.breaker.record_success()
                    return self._verdict(req, t0, "error", "embedding failed")
                candidates = yield from self._search(req, vector)
                hit, best, reason = self._choose(req, candidates)
            else:
                reason = "exact match" if hit else "no exact match (semantic layer off)"
        except Exception as exc:
            self._failure("lookup", exc)
            return self._verdict(req, t0, "error", f"redis: {type(exc).__name__}")
        self.breaker.record_success()
        if hit is None:
            return self._verdict(req, t0, "miss", reason, best)
        if self.settings.track_hits:
            try:
                touch = (self.layout.key(hit.entry_id), time.time(), self._sliding_ttl(hit))
                yield Call(("EVAL", _TOUCH, 1, *touch))
            except Exception as exc:  # the hit stands; only its bookkeeping was lost
                logger.debug("paracache: hit bookkeeping failed: %r", exc)
        return self._verdict(req, t0, hit.layer, reason, hit.similarity, hit)

    def _sliding_ttl(self, hit: CacheHit) -> str:
        """The TTL to refresh on a hit: only with a sliding policy (absolute by default)."""
        if self.settings.policy.sliding and hit.ttl:
            return str(hit.ttl)
        return ""

    def _ensure_index(self) -> Flow[None]:
        if not self.index_ready:
            yield EnsureIndex()
            self.index_ready = True

    def _embed(self, text: str) -> Flow[bytes | None]:
        """Embed ``text`` and encode it for Redis; ``None`` (counted, logged) on failure."""
        try:
            raw = yield Embed(text[: self.settings.max_embed_chars])
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
        if not np.isfinite(arr).all():
            raise EmbeddingError("vector contains NaN or infinity")
        if not np.any(arr):
            raise EmbeddingError("vector is all zeros")
        return arr.astype(self._np_dtype).tobytes()

    _RETURN = (
        "prompt",
        "response",
        "scope",
        "metadata",
        "created_at",
        "hit_count",
        "tokens",
        "ttl",
        "v",
        "__dist",
    )

    def knn_args(self, req: LookupRequest, vector: bytes) -> tuple[Any, ...]:
        """The ``FT.SEARCH`` command: KNN pre-filtered on the exact scope digest."""
        k = self.settings.top_k
        query = f"(@scope:{{{req.scope_digest}}})=>[KNN {k} @embedding $vec AS __dist]"
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

    def _search(self, req: LookupRequest, vector: bytes) -> Flow[list[Candidate]]:
        try:
            raw = yield Call(self.knn_args(req, vector))
        except Exception as exc:
            if not _missing_index(exc):
                raise
            # The index went away (FLUSHALL, a restarted server): build it and retry once.
            self.index_ready = False
            yield from self._ensure_index()
            raw = yield Call(self.knn_args(req, vector))
        return parse_search(raw)

    def _choose(
        self, req: LookupRequest, candidates: Sequence[Candidate]
    ) -> tuple[CacheHit | None, float | None, str]:
        best = max((c.similarity for c in candidates), default=None)
        for cand in sorted(candidates, key=lambda c: -c.similarity):
            if cand.similarity < req.min_similarity:
                break
            if _text(cand.fields, "scope") != req.scope_digest:
                continue  # cannot happen with the pre-filter; never serve it if it does
            rejection = self.accept(req, cand) if self.accept else None
            if rejection:
                self.recorder.rejection(rejection)
                continue
            hit = self._decode(cand.key, cand.fields, "semantic", cand.similarity)
            if hit is not None:
                return hit, best, f"similarity {cand.similarity:.3f} >= {req.min_similarity:.3f}"
        if best is None:
            return None, None, "no candidate in scope"
        return None, best, f"best similarity {best:.3f} < {req.min_similarity:.3f}"

    def _exact_hit(self, req: LookupRequest, raw: Any) -> CacheHit | None:
        if not raw:
            return None
        fields = _as_fields(raw)
        if _text(fields, "scope") != req.scope_digest:
            return None
        return self._decode(req.key, fields, "exact", 1.0)

    def _decode(
        self,
        key: str,
        fields: Mapping[bytes, bytes],
        layer: Literal["exact", "semantic"],
        similarity: float,
    ) -> CacheHit | None:
        """An entry as a hit; a corrupt or foreign one is counted and skipped."""
        try:
            if _text(fields, "v") != SCHEMA_VERSION:
                raise ValueError(f"schema version {_text(fields, 'v')!r}")
            metadata = json.loads(_text(fields, "metadata", "{}"))
            if not isinstance(metadata, dict):
                raise ValueError("metadata is not an object")
            if b"response" not in fields:
                raise ValueError("no response field")
            return CacheHit(
                response=_text(fields, "response"),
                layer=layer,
                similarity=round(min(1.0, max(0.0, similarity)), 6),
                entry_id=key.rsplit(":", 1)[-1],
                prompt=_text(fields, "prompt"),
                metadata=metadata,
                created_at=_num(fields, "created_at"),
                hit_count=int(_num(fields, "hit_count")),
                tokens=int(_num(fields, "tokens")),
                ttl=int(_num(fields, "ttl")) or None,
            )
        except (ValueError, UnicodeDecodeError) as exc:
            self.recorder.error("corrupt_entry")
            logger.warning("paracache: skipping unreadable entry %s: %s", key, exc)
            return None

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
        self.recorder.lookup(outcome, seconds, hit.tokens if hit else 0)
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
        """Write one entry atomically (``DEL``+``HSET``+``EXPIRE`` in ``MULTI``).

        Returns the entry id, or ``None`` when the policy skipped it or it was dropped.
        """
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
            yield Batch(tuple(calls), transaction=True)
        except Exception as exc:
            self._failure("store", exc)
            self.recorder.write("dropped")
            return None
        self.breaker.record_success()
        self.recorder.write("written")
        return req.lookup.entry_id

    # ------------------------------------------------------------------ administration

    def clear_flow(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        corpus_version: str | None = None,
        scope: Scope | None = None,
    ) -> Flow[int]:
        """Delete every entry of the namespace, or those matching the given scope parts."""
        terms = []
        for field, name, value in (
            ("tenant", "tenant", tenant),
            ("model", "model", model),
            ("corpus", "corpus", corpus_version),
        ):
            if value is not None:
                if not isinstance(value, str):
                    raise TypeError(f"{name} must be a str, got {type(value).__name__}")
                terms.append(f"@{field}:{{{digest(name, value, size=16)}}}")
        if scope is not None:
            if not isinstance(scope, Scope):
                raise TypeError(f"scope must be a paracache.Scope, got {type(scope).__name__}")
            terms.append(f"@scope:{{{scope.digest()}}}")
        deleted = 0
        if not terms:
            cursor: Any = 0
            pattern = self.layout.namespace_prefix + "*"
            while True:
                cursor, keys = yield Call(("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
                if keys:
                    deleted += int((yield Call(("UNLINK", *keys))))
                if int(cursor) == 0:
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
            deleted += int((yield Call(("UNLINK", *keys))))

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


def _flatten(mapping: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for k, v in mapping.items():
        out.extend((k, v))
    return out


def _as_fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return {_b(k): _b(v) for k, v in raw.items()}
    items = list(raw)
    return {_b(items[i]): _b(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def search_rows(raw: Any) -> tuple[int, list[tuple[str, dict[bytes, bytes]]]]:
    """``(total, [(key, fields), ...])`` from an ``FT.SEARCH`` reply, RESP2 or RESP3."""
    if isinstance(raw, dict):  # RESP3: {total_results, results: [{id, extra_attributes}]}
        raw = {_b(k).decode(): v for k, v in raw.items()}
        rows = [
            (
                _b(r[b"id"] if b"id" in r else r["id"]).decode(),
                _as_fields(r.get(b"extra_attributes", r.get("extra_attributes")) or {}),
            )
            for r in raw.get("results", [])
        ]
        return int(raw.get("total_results", 0)), rows
    total, rest = int(raw[0]), list(raw[1:])
    if rest and all(not isinstance(x, list) for x in rest):  # NOCONTENT: keys only
        return total, [(_b(k).decode(), {}) for k in rest]
    return total, [
        (_b(rest[i]).decode(), _as_fields(rest[i + 1])) for i in range(0, len(rest) - 1, 2)
    ]


def parse_search(raw: Any) -> list[Candidate]:
    """The KNN candidates of an ``FT.SEARCH`` reply (similarity = 1 - cosine distance)."""
    return [
        Candidate(key=key, similarity=1.0 - float(fields.get(b"__dist", b"2")), fields=fields)
        for key, fields in search_rows(raw)[1]
    ]


def _missing_index(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "no such index" in text or "unknown index name" in text
