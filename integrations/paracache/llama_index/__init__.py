"""LlamaIndex adapter: a caching query engine, a caching LLM, and an offline embedding.

It only translates; every caching decision (thresholds, TTLs, fail-open, the breaker)
lives in :class:`paracache.SemanticIndex`.

* :class:`SemanticCacheQueryEngine` wraps any query engine. It embeds only the query
  string; everything else that changes the answer (the LLM's model and sampling
  settings, synthesizer, ``similarity_top_k``, metadata filters, prompt templates, the
  vector index's id, a corpus version, the tenant) becomes the entry's scope. Answers
  are stored as plain JSON (text, source nodes, metadata; never pickle) and rebuilt as
  real ``Response`` objects.
* :class:`CachedLLM` caches exact ``complete``/``chat`` calls of any LLM.
* :class:`RedisChatStore` keeps chat histories in Redis (a ``BaseChatStore`` for
  ``ChatMemoryBuffer``); :class:`RateLimitedLLM` acquires from a shared Redis rate
  limiter before each model call.
* :class:`LlamaIndexEmbedding` lets a ``VectorStoreIndex`` embed with the cache's
  vectorizer (offline MiniLM by default), so a miss can hand the query embedding the
  cache already computed to the retriever instead of embedding the query twice.

Example:
    >>> from paracache.llama_index import LlamaIndexEmbedding, SemanticCacheQueryEngine
    >>> embed = LlamaIndexEmbedding()
    >>> vindex = VectorStoreIndex.from_documents(docs, embed_model=embed)  # doctest: +SKIP
    >>> engine = SemanticCacheQueryEngine.from_index(vindex, similarity_top_k=3)  # doctest: +SKIP
    >>> engine.query("What is your refund policy?").metadata["paracache"]  # doctest: +SKIP
"""

from __future__ import annotations

from ._shared import CacheHitEvent, CacheMissEvent, llm_scope
from .chat_store import RedisChatStore
from .embedding import LlamaIndexEmbedding
from .llm import CachedLLM
from .query_engine import SemanticCacheQueryEngine
from .ratelimit import RateLimitedLLM

__all__ = [
    "CacheHitEvent",
    "CacheMissEvent",
    "CachedLLM",
    "LlamaIndexEmbedding",
    "RateLimitedLLM",
    "RedisChatStore",
    "SemanticCacheQueryEngine",
    "llm_scope",
]
