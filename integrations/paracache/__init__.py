"""paracache: a semantic cache for LLM applications on Redis vector search.

One framework-free core, :class:`SemanticIndex` (exact layer in front of a semantic
layer, scoped pre-filtered lookups, TTL policy, metrics, fail-open), and thin adapters:
:mod:`paracache.langchain` and :mod:`paracache.llama_index`.

Example:
    >>> from paracache import SemanticIndex, Scope
    >>> cache = SemanticIndex(namespace="faq")  # doctest: +SKIP
    >>> cache.store("What's your refund policy?", "30 days.", Scope(tenant="a"))  # doctest: +SKIP
    >>> cache.lookup("Can I get a refund?", Scope(tenant="acme"))  # doctest: +SKIP
"""

from ._version import __version__
from .errors import BackendError, CacheClosedError, CacheError, EmbeddingError
from .guards import Guards
from .index import RedisSearchUnavailable, SemanticIndex
from .metrics import CacheStats
from .policy import CircuitBreaker, Normalizer, TTLPolicy
from .repair import RepairReport
from .schema import HNSW
from .scope import Scope, digest
from .values import (
    DEFAULT_MIN_SIMILARITY,
    CacheHit,
    EntryInfo,
    StoreResult,
    Verdict,
    last_verdict,
)

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "HNSW",
    "BackendError",
    "CacheClosedError",
    "CacheError",
    "CacheHit",
    "CacheStats",
    "CircuitBreaker",
    "EmbeddingError",
    "EntryInfo",
    "Guards",
    "Normalizer",
    "RedisSearchUnavailable",
    "RepairReport",
    "Scope",
    "SemanticIndex",
    "StoreResult",
    "TTLPolicy",
    "Verdict",
    "__version__",
    "digest",
    "last_verdict",
]
