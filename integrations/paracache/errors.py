"""paracache's exceptions: the one failure type the flows reason about, and its kinds.

The drivers (:mod:`paracache.driver`, :mod:`paracache.transport`) translate what redis-py,
RedisVL and the embedder raise into a :class:`BackendError` with a :data:`Kind` before it
reaches a flow; the flows (:mod:`paracache.lookup`, :mod:`paracache.store`,
:mod:`paracache.admin`) decide on the kind alone. Any other exception in a flow is a bug
in paracache itself: it is logged with its traceback and counted as ``internal`` (a
lookup is still a miss), never taken for a Redis failure; with ``PARACACHE_STRICT=1``
(the test suite sets it) it is raised instead.

Example:
    >>> err = BackendError("oom", "command not allowed when used memory > 'maxmemory'")
    >>> err.kind, err.answered, err.write_refused
    ('oom', True, 'oom')
    >>> isinstance(err, CacheError)
    True
"""

from __future__ import annotations

import os
from typing import Literal, get_args

__all__ = [
    "ANSWERED",
    "BackendError",
    "CacheClosedError",
    "CacheError",
    "EmbeddingError",
    "Kind",
    "RedisSearchUnavailable",
    "describe",
    "strict",
]

#: What went wrong outside paracache:
#:
#: - ``timeout``: no reply in time (a command's ``timeout``, the call's time budget);
#: - ``unavailable``: no connection (refused, reset, authentication, the server loading);
#: - ``oom``, ``readonly``, ``misconf``: the server is up but refuses writes (out of
#:   memory under ``noeviction``, a read-only replica or a primary short of its
#:   ``min-replicas-to-write`` (``NOREPLICAS``), failing persistence);
#: - ``noperm``: the Redis user's ACL does not allow the command (``NOPERM``);
#: - ``busy``: another client's script is running (``BUSY``);
#: - ``noscript``: ``EVALSHA`` of a script the server does not know;
#: - ``no_index``: the search index does not exist (a flushed or restarted server);
#: - ``exists``: the search index exists already (another process created it first);
#: - ``unknown_command``: the server lacks a command (no search module loaded);
#: - ``wrongtype``: the key holds another type than the command works on
#:   (``WRONGTYPE``: another application's key at one of paracache's, a damaged entry);
#: - ``refused``: any other error reply (an ACL, a proxy, a damaged key);
#: - ``bad_reply``: a reply that cannot be read;
#: - ``embedding``: the vectorizer failed, timed out or returned no usable vector.
Kind = Literal[
    "timeout",
    "unavailable",
    "oom",
    "readonly",
    "misconf",
    "noperm",
    "busy",
    "noscript",
    "no_index",
    "exists",
    "unknown_command",
    "wrongtype",
    "refused",
    "bad_reply",
    "embedding",
]
KINDS: frozenset[str] = frozenset(get_args(Kind))

#: Kinds in which Redis answered (with an error reply): the server is up.
ANSWERED: frozenset[str] = KINDS - {"timeout", "unavailable", "bad_reply", "embedding"}


class CacheError(RuntimeError):
    """An administrative operation (clear, delete, count, warm, repair) could not be
    carried out; lookups and stores never raise it (they fail open). ``kind`` says how
    Redis or the embedder failed (see :data:`Kind`; ``None`` if it was not them); the
    driver's :class:`BackendError` is its ``__cause__``.

    Example:
        >>> CacheError("paracache: Connection refused", kind="unavailable").kind
        'unavailable'
    """

    def __init__(self, *args: object, kind: Kind | None = None) -> None:
        super().__init__(*args)
        self.kind: Kind | None = kind


class BackendError(CacheError):
    """Redis or the embedder failed; ``kind`` says how (see :data:`Kind`).

    The original exception is its ``__cause__``. Raised to the caller only by
    administrative operations (it is a :class:`CacheError`).

    Example:
        >>> BackendError("timeout", "no reply within 0.1s").kind
        'timeout'
    """

    def __init__(self, kind: Kind, message: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        super().__init__(f"paracache: {message or kind}", kind=kind)
        self.kind: Kind = kind

    @property
    def answered(self) -> bool:
        """Redis answered with an error reply (the server is up)."""
        return self.kind in ANSWERED

    @property
    def write_refused(self) -> str | None:
        """``"oom"``, ``"readonly"``, ``"misconf"`` or ``"noperm"`` if the server is up
        but refuses writes (not a breaker failure: lookups are still served), else
        ``None``."""
        return self.kind if self.kind in ("oom", "readonly", "misconf", "noperm") else None


class EmbeddingError(BackendError):
    """The vectorizer failed or returned something that is not a usable vector.

    Example:
        >>> EmbeddingError("vector is all zeros").kind
        'embedding'
    """

    def __init__(self, message: str = "") -> None:
        super().__init__("embedding", message)


class CacheClosedError(RuntimeError):
    """A call on a cache, conversation store or rate limiter after its ``close()``.

    A programming error, not Redis being down, so raised (not a miss, not fail-open),
    by lookups too; the message names the object. ``close()`` again is a no-op and
    ``stats()`` still reads the counters. (It used to reconnect without a word.)

    Example:
        >>> str(CacheClosedError("SemanticIndex(namespace='faq')"))
        "paracache: SemanticIndex(namespace='faq') is closed: make a new one to use it again"
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"paracache: {what} is closed: make a new one to use it again")


def strict() -> bool:
    """Is strict mode on (``PARACACHE_STRICT=1``)? Then a bug in paracache's own code
    raises out of a lookup or store instead of being logged and counted as ``internal``.

    Example:
        >>> isinstance(strict(), bool)
        True
    """
    return os.environ.get("PARACACHE_STRICT", "") not in ("", "0")


class RedisSearchUnavailable(RuntimeError):
    """The Redis server has no search module (``FT.*`` commands), cannot index the
    database the URL selects (RediSearch indexes database 0 only), or holds an index of
    the cache's name that it cannot use (made by hand or by another tool: a field
    missing, another vector size or distance, other key prefixes; the message says
    which, and what to do), or is reached as a Redis user whose ACL forbids the search
    commands, or creating the index when none exists yet. Raised when a cache is built: a
    configuration error, not a run-time failure."""


def describe(exc: BaseException) -> str:
    """An exception for a log line: its class and message. redis-py 8's ``repr`` of its
    errors drops the message (``auth:NoPermissionError``, ``network:ConnectionError``),
    which is what says what to change.

    Example:
        >>> describe(ValueError("bad"))
        'ValueError: bad'
    """
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
