"""Value types and validation: what the public API takes and returns, checked once.

Hits, verdicts, candidates, settings, validated requests (:func:`prepare_lookup`,
:func:`prepare_store` raise ``TypeError``/``ValueError`` on bad arguments), listed
entries, and the helpers that read an entry's fields. No I/O, no decisions.

Example:
    >>> check_similarity(0.92)
    0.92
    >>> Settings().threshold_for(Scope())
    0.9
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .bookkeeping import DEFAULT_FLUSH_HITS, DEFAULT_FLUSH_SECONDS
from .policy import Normalizer, TTLPolicy, strip_pleasantries
from .reals import is_int, is_nan, is_real
from .schema import SCHEMA_VERSION, Layout, tag_digest
from .scope import Scope, canonical_json, digest
from .spelling import correct_typos

__all__ = [
    "DEFAULT_CORROBORATION_MARGIN",
    "DEFAULT_MIN_SIMILARITY",
    "MAX_STORED_PROMPT",
    "CacheHit",
    "Candidate",
    "EntryInfo",
    "LookupRequest",
    "Settings",
    "StoreRequest",
    "StoreResult",
    "Verdict",
    "check_entry_id",
    "check_similarity",
    "check_thresholds",
    "last_verdict",
    "prepare_lookup",
    "prepare_store",
]

#: Cosine similarity a semantic hit needs by default. Chosen on Banking77 (see README).
DEFAULT_MIN_SIMILARITY = 0.90
#: Default ``corroboration_margin``: how far below the threshold the ``corroborate`` hook
#: is asked about candidates (the guards vouch for typo'd repeats down to it, for others
#: within 0.05 or 0.10: see :meth:`paracache.guards.Guards.vouches`).
DEFAULT_CORROBORATION_MARGIN = 0.35
#: How much of a prompt is kept in the entry (for inspection and guards).
MAX_STORED_PROMPT = 16_384

# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class CacheHit:
    """A cached answer and how it was found.

    Attributes:
        response: The stored response text (adapters put their serialised values here).
        layer: ``"exact"`` (same normalised text and scope) or ``"semantic"``.
        similarity: Cosine similarity of the query to the entry's prompt (1.0 if exact);
            below ``min_similarity`` when a corroborated candidate was served.
        entry_id: The entry's id, for :meth:`SemanticIndex.delete`.
        prompt: The prompt the entry was stored under.
        metadata: The metadata stored with it.
        created_at: Unix time it was stored.
        hit_count: Hits before this one, as far as this lookup could see without
            another read: with hits counted in batches (the default), the hits Redis
            holds plus this instance's unsent ones; on a server without partial
            indexing (counts in companion hashes), an exact hit reads the entry alone,
            so it counts the entry's own hits plus this instance's on it (sent or not),
            not other processes' (``entries()`` and ``inspect`` have every count).
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


#: What a lookup decided (see :class:`Verdict`).
Outcome = Literal["exact", "semantic", "miss", "bypass", "error", "unreadable"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one lookup decided, for logs, callbacks and tests.

    ``outcome`` is ``exact``, ``semantic``, ``miss``, ``bypass``, ``error`` or
    ``unreadable`` (no exact match, and the embedding model cannot read the text, so it
    was not matched by similarity);
    ``similarity`` is the best in-scope candidate's, even on a miss; ``scope`` is the
    scope the lookup was made in.
    """

    outcome: Outcome
    reason: str
    scope_digest: str
    latency_ms: float
    similarity: float | None = None
    hit: CacheHit | None = None
    scope: Scope | None = None

    @property
    def missed(self) -> bool:
        """Nothing served and nothing failed: ``miss``, or ``unreadable`` (a miss of text
        the embedding model cannot read). The caller asks the model (and stores it).

        Example:
            >>> Verdict("unreadable", "no exact match", "0" * 32, 1.0).missed
            True
        """
        return self.outcome in ("miss", "unreadable")


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
class StoreResult:
    """What one write did (:meth:`paracache.SemanticIndex.store_result`).

    Attributes:
        outcome: ``"written"``; ``"skipped"``: the TTL policy declined to cache it (e.g.
            a temperature above ``max_temperature``), nothing is wrong; ``"dropped"``:
            it could not be written (Redis down or refusing writes, the circuit breaker
            open): fail-open, counted and logged.
        entry_id: The entry's id when written, else ``None``.
        reason: Why, in words (``"temperature 1.5 > max_temperature 1.0"``,
            ``"redis: timeout"``, ``"write refused: oom"``, ...).

    Example:
        >>> StoreResult("skipped", None, "temperature 1.5 > max_temperature 1.0").written
        False
    """

    outcome: Literal["written", "skipped", "dropped"]
    entry_id: str | None
    reason: str

    @property
    def written(self) -> bool:
        """Whether the entry was written."""
        return self.outcome == "written"


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
    #: Hits a process counts before sending them to Redis in one batch (1: each hit
    #: as it happens); see :mod:`paracache.bookkeeping`.
    hit_flush_hits: int = DEFAULT_FLUSH_HITS
    #: Seconds after its first hit that a batch is sent at the latest (by a lookup).
    hit_flush_seconds: float = DEFAULT_FLUSH_SECONDS
    #: Look the exact layer up first (off: every lookup goes to the semantic layer).
    exact: bool = True
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
    #: Embed prompts with misspelt words corrected (:func:`~paracache.spelling.correct_typos`);
    #: the exact layer's key and the guards' text are unchanged.
    correct_typos: bool = True
    #: How far below the threshold a candidate may be when the ``corroborate`` hook
    #: vouches for it (a typo'd repeat, a shared specific detail, the learned pair check;
    #: every guard passed); 0: never.
    corroboration_margin: float = DEFAULT_CORROBORATION_MARGIN

    @property
    def batched_hits(self) -> bool:
        """Hits are counted in process and sent in batches (tracked, more than one hit
        a batch, and no sliding TTL, which refreshes the entry's TTL on each hit)."""
        return self.track_hits and self.hit_flush_hits > 1 and not self.policy.sliding

    def embed_text(self, text: str) -> str:
        """The text the embedder sees for the normalised prompt ``text``."""
        out = strip_pleasantries(text) if self.strip_pleasantries else text
        return correct_typos(out) if self.correct_typos else out

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
    #: Why the embedding model cannot read the text (then ``semantic`` is off), or None.
    unreadable: str | None = None
    #: ``min_similarity`` was learned by the error bound (no corroboration margin then).
    learned: bool = False


#: The error bound's hook: ``(scope digest, scope, static threshold) -> (threshold,
#: learned)`` (:meth:`paracache.learning.Learner.threshold`).
ThresholdHook = Callable[[str, Scope, float], "tuple[float, bool]"]


@dataclasses.dataclass(frozen=True)
class StoreRequest:
    """A validated write: the entry's fields (but its vector) and, for the namespace's
    scope registry, its scope's canonical JSON (stored once per scope, not per entry)."""

    lookup: LookupRequest
    mapping: dict[str, Any]
    ttl: int | None
    skip: str | None
    scope_json: str = "{}"


def check_entry_id(entry_id: Any) -> str:
    """Validate an entry id (as :class:`CacheHit` and ``store`` give it: letters and digits).

    Example:
        >>> check_entry_id("../../etc")
        Traceback (most recent call last):
        ...
        ValueError: not an entry id: '../../etc'
    """
    if not isinstance(entry_id, str):
        raise TypeError(f"entry_id must be a str, got {type(entry_id).__name__}")
    if not entry_id.isalnum():
        raise ValueError(f"not an entry id: {entry_id!r}")
    return entry_id


def check_similarity(value: Any, name: str = "min_similarity") -> float:
    """Validate a similarity threshold (a number in [0, 1])."""
    if not is_real(value) or is_nan(value):  # any real number: numpy's too
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (cosine similarity), got {value!r:.40}")
    return float(value)


#: Below this, a threshold is more likely a peer's cosine *distance* than a similarity: at
#: it, MiniLM serves questions that share little but their topic.
DISTANCE_LIKE = 0.5


def distance_like(value: float, name: str = "min_similarity") -> str | None:
    """A warning for a similarity threshold that reads like a cosine distance (a
    langchain-redis or RedisVL ``distance_threshold`` copied across), or ``None``.

    Example:
        >>> distance_like(0.9) is None
        True
        >>> print(distance_like(0.1))  # doctest: +ELLIPSIS
        min_similarity=0.1 serves almost anything in scope: ... give min_similarity=0.9
    """
    if value >= DISTANCE_LIKE:
        return None
    return (
        f"{name}={value:g} serves almost anything in scope: it is a cosine similarity "
        f"(higher is stricter); if it is a peer's distance_threshold, give "
        f"{name}={1 - value:g}"
    )


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


def prepare_lookup(
    layout: Layout,
    settings: Settings,
    prompt: Any,
    scope: Any,
    *,
    min_similarity: Any = None,
    semantic: bool = True,
    unreadable: Callable[[str], str | None] | None = None,
    learned: ThresholdHook | None = None,
) -> LookupRequest:
    """Validate a lookup's arguments (``TypeError``/``ValueError`` on bad input) and
    derive its ids, threshold and TTL-policy bypass. ``unreadable`` (the normalised text
    -> why the embedding model cannot read it, or ``None``) keeps such text to the exact
    layer; ``learned`` (the error bound) replaces the static threshold when the call
    gives none.

    Example:
        >>> layout = Layout.build("docs", "m", dims=4)
        >>> req = prepare_lookup(layout, Settings(), "  Hello?  ", None)
        >>> req.text, req.min_similarity, req.key.startswith("paracache:docs:")
        ('hello', 0.9, True)
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if scope is None:
        scope = Scope()
    elif not isinstance(scope, Scope):
        hint = (
            " (LangChain's llm_string? set_llm_cache() and cache= take a "
            "paracache.langchain.SemanticCache, which wraps a SemanticIndex)"
            if isinstance(scope, str)
            else ""
        )
        raise TypeError(f"scope must be a paracache.Scope, got {type(scope).__name__}{hint}")
    scope_digest = scope.digest()
    is_learned = False
    if min_similarity is not None:
        threshold = check_similarity(min_similarity)
    else:
        threshold = settings.threshold_for(scope)
        if learned is not None:
            threshold, is_learned = learned(scope_digest, scope, threshold)
    text = settings.normalizer(prompt)
    # Nothing left once normalised ("?", "!!!", "\x00"): the prompt as typed (but for
    # white space) is the key, so such prompts are told apart; each still hits its own
    # exact repeat, and "" and "   " stay one.
    entry_id = digest(
        "entry/v1", scope_digest, text if text else "\x00" + "".join(prompt.split())
    )
    semantic = bool(semantic) and bool(text)
    problem = unreadable(text) if semantic and unreadable is not None else None
    return LookupRequest(
        text=text,
        scope=scope,
        scope_digest=scope_digest,
        entry_id=entry_id,
        key=layout.key(entry_id),
        min_similarity=threshold,
        semantic=semantic and problem is None,
        bypass=settings.policy.bypass(scope.temperature),
        prompt=prompt,
        unreadable=problem,
        learned=is_learned,
    )


def prepare_store(
    layout: Layout,
    settings: Settings,
    prompt: Any,
    response: Any,
    scope: Any,
    *,
    ttl: Any = True,
    metadata: Any = None,
    tokens: Any = 0,
    semantic: bool = True,
    unreadable: Callable[[str], str | None] | None = None,
) -> StoreRequest:
    """Validate a write and build the entry's fields (except its vector).

    Example:
        >>> layout = Layout.build("docs", "m", dims=4)
        >>> req = prepare_store(layout, Settings(), "Hi", "Hello!", None, tokens=3)
        >>> req.mapping["response"], req.mapping["tokens"], req.skip
        ('Hello!', 3, None)
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    if not is_int(tokens):
        raise TypeError(f"tokens must be an int >= 0, got {tokens!r}")
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens!r}")
    tokens = int(tokens)
    req = prepare_lookup(layout, settings, prompt, scope, semantic=semantic, unreadable=unreadable)
    decision = settings.policy.decide(req.text, temperature=req.scope.temperature, ttl=ttl)
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


def embed_input(settings: Settings, text: str) -> str:
    """What the model sees for a normalised prompt ``text``: pleasantries stripped (if
    on), capped at ``max_embed_chars``, lone surrogates (which break tokenizers)
    replaced by U+FFFD. Lookups, stores, warm-ups and ``embed()`` all use it.

    Example:
        >>> embed_input(Settings(max_embed_chars=5), "hi, where is my order")
        'where'
    """
    return _clean(settings.embed_text(text)[: settings.max_embed_chars])
