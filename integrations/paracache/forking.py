"""What a forked child must start afresh.

Threads do not survive ``os.fork``, and a lock another thread held at the fork stays held
in the child for ever. A pre-fork server (gunicorn ``--preload``, ``multiprocessing`` with
fork) hands its workers objects built in the parent: their background threads (hit-count
senders, the error bound's label worker, embedding and judge pools) and in-process state
(single-flight's flights) must be made anew in each child. Objects :func:`track`\\ ed here
have their ``_forked()`` called in every forked child; :func:`on_fork` runs a function
there. Nothing here does I/O.

Example:
    >>> class Pool:
    ...     def __init__(self) -> None:
    ...         self.threads = ["worker"]
    ...         track(self)
    ...     def _forked(self) -> None:
    ...         self.threads = []        # the parent's threads are not in the child
    >>> pool = Pool()
    >>> _after_fork(); pool.threads       # what a forked child runs
    []
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["on_fork", "track"]


class Forkable(Protocol):
    """An object that starts afresh in a forked child."""

    def _forked(self) -> None: ...


_TRACKED: weakref.WeakSet[Forkable] = weakref.WeakSet()


def track(obj: Forkable) -> None:
    """Call ``obj._forked()`` in every forked child, for as long as ``obj`` lives."""
    _TRACKED.add(obj)


def on_fork(fn: Callable[[], None]) -> None:
    """Run ``fn`` in every forked child (where the platform forks)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=fn)


def _after_fork() -> None:
    for obj in list(_TRACKED):
        obj._forked()


on_fork(_after_fork)
