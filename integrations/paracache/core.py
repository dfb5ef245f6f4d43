"""The cache's logic without I/O: :class:`Core`, what to ask Redis and the embedder, and
what the answers mean.

Every operation is a *flow*: a generator that yields the I/O it needs (the requests of
:mod:`paracache.protocol`: ``Call``, ``Batch``, ``Embed``, ``EmbedMany``, ``EnsureIndex``)
and receives the reply, or a :class:`~paracache.errors.BackendError` thrown into it.
:mod:`paracache.driver` runs the same flows blocking and on asyncio, so the sync and async
twins of :class:`paracache.SemanticIndex` cannot drift apart. The flows live by job:

- :mod:`paracache.values`: value types and validation (``prepare_lookup``, ...);
- :mod:`paracache.base`: the instance's state and the steps flows share;
- :mod:`paracache.lookup`: the exact and semantic layers, guards, the verdict;
- :mod:`paracache.store`: single writes, bulk warm-up, the size cap;
- :mod:`paracache.admin`: clear, count, delete, list (also namespace-wide, for the CLI).

This module puts them together; the names it re-exports stay importable from here.

Example (driving a flow by hand, as the tests do):
    >>> # flow = core.lookup_flow(core.prepare_lookup("hi", Scope()))
    >>> # op = next(flow)            # Call(("EVALSHA", <EXACT>, 1, "paracache:...:e:..."))
    >>> # op = flow.send([])         # nothing stored under the exact key -> Embed(...)
"""

from __future__ import annotations

from typing import Any

from .admin import Administration, entries_flow, unlink_namespace
from .errors import BackendError, CacheError, EmbeddingError
from .lookup import Lookups, parse_search
from .protocol import Batch, Call, Embed, EmbedMany, EnsureIndex
from .store import REGISTER_EVERY, Stores, _by_length
from .values import (
    DEFAULT_CORROBORATION_MARGIN,
    DEFAULT_MIN_SIMILARITY,
    MAX_STORED_PROMPT,
    CacheHit,
    Candidate,
    EntryInfo,
    LookupRequest,
    Settings,
    StoreRequest,
    Verdict,
    check_similarity,
    check_thresholds,
    last_verdict,
    prepare_lookup,
    prepare_store,
)

__all__ = [
    "DEFAULT_CORROBORATION_MARGIN",
    "DEFAULT_MIN_SIMILARITY",
    "MAX_STORED_PROMPT",
    "REGISTER_EVERY",
    "BackendError",
    "Batch",
    "CacheError",
    "CacheHit",
    "Call",
    "Candidate",
    "Core",
    "Embed",
    "EmbedMany",
    "EmbeddingError",
    "EnsureIndex",
    "EntryInfo",
    "LookupRequest",
    "Settings",
    "StoreRequest",
    "Verdict",
    "check_similarity",
    "check_thresholds",
    "entries_flow",
    "last_verdict",
    "parse_search",
    "unlink_namespace",
]


class Core(Lookups, Stores, Administration):
    """The decisions of one cache instance, shared by its sync and async shells."""

    def prepare_lookup(self, prompt: Any, scope: Any, **options: Any) -> LookupRequest:
        """Validate a lookup (``TypeError``/``ValueError`` on bad input) and derive its
        ids: :func:`paracache.values.prepare_lookup` with this instance's settings
        (options: ``min_similarity``, ``semantic``)."""
        # Readability is checked by lookup_flow, after an exact miss (exact hits skip it).
        learned = self.learner.threshold if self.learner is not None else None
        return prepare_lookup(
            self.layout, self.settings, prompt, scope, learned=learned, **options
        )

    def prepare_store(self, prompt: Any, response: Any, scope: Any, **options: Any) -> StoreRequest:
        """Validate a write and build the entry's fields (except its vector):
        :func:`paracache.values.prepare_store` with this instance's settings (options:
        ``ttl``, ``metadata``, ``tokens``, ``semantic``)."""
        hook = self.readable_problem if self.unreadable is not None else None
        return prepare_store(
            self.layout, self.settings, prompt, response, scope, unreadable=hook, **options
        )


# Kept importable from here for code written against the single-module core.
_ = (_by_length,)
