"""Tables loaded on first use, once per process however many threads ask at once.

``functools.cache`` on a loader does not stop two threads from running it together: each
thread that asks before the first has finished loads its own copy. The typo corrector's
vocabulary is slow to build, so an app whose request threads made their first lookups
together built one copy per thread, and lookups waiting on Redis meanwhile ran out of
their time budget and opened the breaker (benchmarks/RESULTS.md, audit 15). :func:`once`
makes the first caller load and the others wait for its result. Nothing here does I/O
itself.

Example:
    >>> calls = []
    >>> @once
    ... def table() -> dict[str, int]:
    ...     calls.append(1)
    ...     return {"a": 1}
    >>> table() is table(), len(calls)
    (True, 1)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from . import forking

__all__ = ["Once", "once"]

T = TypeVar("T")

_UNSET: object = object()


class Once(Generic[T]):
    """A loader run at most once (successfully); see :func:`once`."""

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._value: object = _UNSET
        self._lock = threading.Lock()
        functools.update_wrapper(self, load)
        forking.track(self)

    def __call__(self) -> T:
        value = self._value
        if value is _UNSET:
            with self._lock:
                if self._value is _UNSET:  # the first caller loads; the others waited
                    self._value = self._load()
                value = self._value
        return value  # type: ignore[return-value]

    def cache_clear(self) -> None:
        """Load again on the next call (as ``functools.cache``'s)."""
        with self._lock:
            self._value = _UNSET

    def _forked(self) -> None:
        # A thread of the parent may have been loading at the fork: its lock stays held.
        self._lock = threading.Lock()


def once(load: Callable[[], T]) -> Once[T]:
    """Decorate a loader without arguments: the first call runs it, calls made meanwhile
    by other threads wait for that result, later calls return it. An exception is
    raised to the callers and the next call tries again."""
    return Once(load)
