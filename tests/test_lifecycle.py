"""One cache object across the event loops and lifetimes real apps give it: repeated
``asyncio.run`` (a sync worker bridging to async code), loops in threads, close and use
after close. Real Redis; connections counted on the server."""

from __future__ import annotations

import asyncio
import gc
import pickle
from typing import Any

import pytest
import redis

from paracache import SemanticIndex


def _connections(redis_url: str, namespace: str) -> int:
    """Connections the server has from caches of ``namespace`` (by client name)."""
    with redis.Redis.from_url(redis_url) as admin:
        clients = admin.client_list()
    return sum(1 for c in clients if c.get("name") == f"paracache:{namespace}")


def test_asyncio_run_again_and_again_does_not_pile_up_connections(
    make_index: Any, redis_url: str, namespace: str
) -> None:
    """Each ``asyncio.run`` makes a loop, the cache a client on it; once the loop is
    closed its client can never be used again. They are let go (one socket per call
    kept open for ever ran a worker out of file descriptors)."""
    cache: SemanticIndex = make_index()
    cache.store("What is your refund policy?", "30 days.")
    assert cache.lookup("Tell me your refund policy") is not None
    for _ in range(40):
        hit = asyncio.run(cache.alookup("Tell me your refund policy"))
        assert hit is not None and hit.response == "30 days."
    gc.collect()
    assert _connections(redis_url, namespace) <= 6


def test_pickling_a_cache_says_what_to_do(make_index: Any) -> None:
    """``multiprocessing`` spawn (and a fork pool's arguments) pickle what they hand a
    worker; a cache cannot go (connections, threads, a model): the error says so and
    what to do, not "cannot pickle 'InferenceSession' object"."""
    cache: SemanticIndex = make_index()
    cache.lookup("warm the model up")
    with pytest.raises(TypeError, match="build one in each process"):
        pickle.dumps(cache)
