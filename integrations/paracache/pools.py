"""Bounded thread pools for calls that may hang: a user's embedder, a judge.

A call starts only when one of the pool's threads is free to run it, so hung calls never
pile up behind each other: a caller waits for a free thread within its own time limit,
then gives up. Python cannot stop a hung call; its thread stays taken, the caller does
not. The threads are made on first use, and anew in a forked child (the parent's are not
there: a call queued on them would never run).

Example:
    >>> pool = BoundedPool(2, "paracache-example")
    >>> pool.submit(sum, [1, 2], timeout=1.0).result(timeout=1.0)
    3
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from . import forking

__all__ = ["BoundedPool"]


class BoundedPool:
    """``workers`` threads (named ``name``-N), one call each at a time."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._forked()
        forking.track(self)

    def _forked(self) -> None:
        """Start afresh (at construction, and in a forked child, where the parent's
        threads are gone and its locks may have been held at the fork)."""
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.workers)

    def submit(
        self, fn: Callable[..., Any], *args: Any, timeout: float
    ) -> concurrent.futures.Future[Any] | None:
        """``fn(*args)`` on a free thread, waiting up to ``timeout`` seconds for one;
        ``None`` if none came free."""
        slots = self._slots  # the one released (a fork replaces it)
        if not slots.acquire(timeout=timeout):
            return None
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, self.name)
                pool = self._pool
            future = pool.submit(fn, *args)
        except BaseException:
            slots.release()
            raise
        future.add_done_callback(lambda _: slots.release())
        return future
