"""A long-lived app server: many threads at once on a cold process, long runs, a
Redis that stalls or drops connections (audit 15). Real Redis throughout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from paracache import spelling
from paracache.guards import edits, pairs, vocabulary


def _at_once(fn: Callable[[], Any], threads: int = 8) -> list[Any]:
    """``fn()`` in ``threads`` threads released together; their results."""
    barrier = threading.Barrier(threads)
    got: list[Any] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        value = fn()
        with lock:
            got.append(value)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert len(got) == threads
    return got


@pytest.mark.parametrize(
    "loader",
    [spelling._vocabulary, vocabulary._antonym_lexicon, edits._kin_lexicon, pairs._pair_model],
    ids=lambda f: f.__name__,
)
def test_a_table_asked_for_by_many_threads_at_once_is_loaded_once(loader: Any) -> None:
    """The first lookups of an app's request threads, all at once: the typo corrector's
    vocabulary (about a second to build) and the guards' lexicons are built by one
    thread while the others wait for it, not once per thread (64 threads spent 20 s of
    CPU building 64 vocabularies, and lookups meanwhile timed out and opened the
    breaker)."""
    loader.cache_clear()
    try:
        tables = _at_once(loader)
        assert len({id(t) for t in tables}) == 1
    finally:
        loader()  # loaded again for the other tests
