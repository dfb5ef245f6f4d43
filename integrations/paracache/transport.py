"""Transport: connections to Redis, time bounds, and the embedding worker threads.

What the drivers (:mod:`paracache.driver`) stand on and nothing decides with: where to
connect (:func:`resolve_redis_url`), the clients paracache makes (:func:`client_kwargs`)
or accepts (:func:`check_user_clients`), one direct connection per thread for hot-path
calls (:class:`ThreadConnections`), the asyncio deadline that tolerates a busy event
loop (:func:`within`), the embedder with its memo and time limit (:class:`Embedder`),
and the translation of redis-py's, RedisVL's and the embedder's exceptions into
:class:`~paracache.errors.BackendError` kinds (:func:`translate`).

Example:
    >>> import redis
    >>> translate(redis.TimeoutError("Timeout reading from socket")).kind
    'timeout'
    >>> translate(redis.ResponseError("BUSY Redis is busy running a script.")).kind
    'busy'
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import re
import select
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import numpy as np
import redis
import redis.asyncio as aioredis
from hiredis import pack_command as _hiredis_pack
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import BackendError, Kind
from .pools import BoundedPool
from .vectorizers import EmbeddingMemo, MiniLMVectorizer

__all__ = [
    "Embedder",
    "ThreadConnections",
    "backstop",
    "check_user_clients",
    "client_kwargs",
    "client_url",
    "close_async_client",
    "derive_async",
    "pooled_client",
    "resolve_redis_url",
    "safe_url",
    "selected_db",
    "translate",
    "within",
]

logger = logging.getLogger("paracache")


def resolve_redis_url(
    redis_url: str | None, embedded_dir: str | os.PathLike[str] | None = None
) -> str:
    """An explicit URL, else an embedded server persisting to ``embedded_dir`` if given,
    else ``PARACACHE_REDIS_URL`` or ``REDIS_URL``, else the embedded server (persisting
    to ``$PARACACHE_EMBEDDED_DIR`` if set, in memory otherwise).

    Example:
        >>> resolve_redis_url("redis://localhost:6379")
        'redis://localhost:6379'
    """
    if redis_url:
        if embedded_dir is not None:
            raise ValueError("give either redis_url= or embedded_dir=, not both")
        return redis_url
    from .embedded import embedded_url

    if embedded_dir is not None:
        return embedded_url(embedded_dir)
    env = os.environ.get("PARACACHE_REDIS_URL") or os.environ.get("REDIS_URL")
    if env:
        return env
    return embedded_url()


#: Texts per model call in a warm-up: the offline model sorts by length, and small
#: batches of similar length waste the least padding (the fastest size measured:
#: benchmarks/RESULTS.md).
_EMBED_BATCH = 16

#: Lets another ready thread run (``sched_yield``) where the platform has it.
_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)


#: Seconds a thread's connection may stay unused before its next call first checks
#: that the server has not closed it (one non-blocking read; busy connections never do).
IDLE_CHECK = 0.25


def _closed(conn: Any) -> bool:
    """Whether the server closed ``conn`` (or sent what nobody asked for): readable, or
    failing, while no reply is due. Never blocks; a connection not open is not closed."""
    if conn._sock is None:
        return False
    try:
        return bool(conn.can_read(timeout=0))
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return True


class ThreadConnections:
    """One connection per thread to a client's server, used directly: a command is
    sent and its reply read, without redis-py's pool checkout, retry wrapper and
    per-command bookkeeping (a sizeable share of an exact hit: benchmarks/RESULTS.md).

    For plain commands on clients paracache made itself (no retries configured, no
    caller's instrumentation to honour). A connection is dropped on any failure but
    an error reply, reopened on the next call, and replaced in a forked child; a
    thread's connection closes when the thread ends (or at :meth:`close`).

    While a call is the only one in flight it polls for its reply for up to ``spin``
    seconds before blocking in the kernel (a thread that sleeps for a sub-millisecond
    reply pays a wake-up, slow on virtual machines), yielding the core between polls to
    any thread ready to run.

    :meth:`post` sends a command without waiting for its reply (a hit's bookkeeping):
    the reply is read, and an error reply logged, before the thread's next command is
    sent on the same connection.
    """

    def __init__(self, client: redis.Redis, spin: float = 0.0) -> None:
        pool = client.connection_pool
        self._make = functools.partial(pool.connection_class, **pool.connection_kwargs)
        self._callbacks = cast(dict[Any, Any], client.response_callbacks)
        self._spin = spin if hasattr(select, "poll") else 0.0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()
        self._in_flight = 0
        kwargs = pool.connection_kwargs
        #: Pack commands with hiredis directly where redis-py would (its default
        #: encoding): redis-py's packer encodes each argument in Python first.
        self._hiredis = (
            kwargs.get("encoding", "utf-8") == "utf-8"
            and kwargs.get("encoding_errors", "strict") == "strict"
        )

    def connection(self) -> Any:
        """This thread's connection (made on first use, and again in a forked child),
        with the replies of this thread's posted commands read; whoever sends on it
        reads the reply, or disconnects it.

        Example:
            >>> ThreadConnections(redis.Redis()).connection().port
            6379
        """
        local, conn = self._connection()
        self._drain(local, conn)
        return conn

    def _connection(self) -> tuple[threading.local, Any]:
        local = self._local
        conn = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is None or local.pid != os.getpid():
            conn = local.conn = self._make()
            local.pid = os.getpid()
            local.poller = None
            local.unread = []
            local.sent = None
            with self._lock:
                self._all.add(conn)
        else:
            if local.sent is not None:  # a sent command's replies nobody received: skip them
                sent, local.sent = local.sent, None
                if sent.sock is conn._sock and conn._sock is not None:
                    local.unread[:0] = [(sent.sock, None, None)] * (1 + len(sent.more))
            # Unused for a while: the server may have closed it (its `timeout`, a
            # restart, a failover); checked once the replies still due are read.
            local.idle = now - local.used >= IDLE_CHECK
        local.used = now
        return local, conn

    def _drain(self, local: threading.local, conn: Any) -> None:
        """Read the replies of this thread's posted commands; then, if the connection
        was idle, replace it if the server closed it meanwhile (a new one, instead of a
        failed call that counts as Redis failing and opens the breaker)."""
        while local.unread:
            self._read_posted(local, conn)
        if getattr(local, "idle", False):
            local.idle = False
            if _closed(conn):
                conn.disconnect()

    def _pack(self, conn: Any, args: Sequence[Any]) -> Any:
        if self._hiredis and isinstance(args[0], str) and " " not in args[0]:
            try:
                return [_hiredis_pack(tuple(args))]
            except TypeError as exc:  # None, a bool...: as redis-py would refuse it
                raise redis.DataError(f"invalid argument in {args[0]!r}: {exc}") from None
        return conn.pack_command(*args)

    def call(self, args: Sequence[Any]) -> Any:
        local, conn = self._connection()
        self._drain(local, conn)
        with self._lock:
            self._in_flight += 1
            alone = self._in_flight == 1
        try:
            conn.send_packed_command(self._pack(conn, args), check_health=False)
            if alone and self._spin:
                self._await_reply(local, conn)
            reply = conn.read_response()
        except redis.ResponseError:
            raise  # the server answered: the connection is fine
        except BaseException:
            self._drop(local, conn)  # a reply may be in flight: never reuse the socket
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
        callback = self._callbacks.get(args[0])
        return reply if callback is None else callback(reply)

    def send(self, args: Sequence[Any], more: Sequence[Sequence[Any]] = ()) -> _Sent:
        """Send ``args`` (and the commands ``more`` in the same write) and return
        without the replies: a handle for :meth:`receive` (the thread's next command
        skips replies never received)."""
        local, conn = self._send_unwaited(args, more)
        sent = local.sent = _Sent(conn, conn._sock, args[0], tuple(c[0] for c in more))
        return sent

    def ready(self, sent: _Sent) -> bool:
        """Has the reply of :meth:`send` ``sent`` (of this thread) arrived? Never waits:
        one ``poll`` of the socket; ``False`` where that cannot tell (TLS, a
        connection dropped since, no ``poll``)."""
        sock = sent.sock
        if (
            getattr(self._local, "sent", None) is not sent
            or sock is None
            or sock is not sent.conn._sock
            or isinstance(sock, ssl.SSLSocket)
            or not hasattr(select, "poll")
        ):
            return False
        return bool(self._poller(self._local, sock).poll(0))

    def receive(self, sent: _Sent) -> Any:
        """The reply of a :meth:`send` of this thread (waiting for it); with ``more``
        commands, the list of all replies (the first error reply raised once all are
        read)."""
        local, conn = self._local, sent.conn
        if getattr(local, "sent", None) is not sent:
            raise RuntimeError("paracache: a reply received twice or on another thread")
        local.sent = None
        with self._lock:
            self._in_flight += 1
            alone = self._in_flight == 1
        try:
            if alone and self._spin:
                self._await_reply(local, conn)
            if not sent.more:
                reply = conn.read_response()
            else:
                replies, error = self._read_all(conn, 1 + len(sent.more))
        except redis.ResponseError:
            raise
        except BaseException:
            self._drop(local, conn)
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
        if not sent.more:
            callback = self._callbacks.get(sent.command)
            return reply if callback is None else callback(reply)
        if error is not None:
            raise error
        out = []
        for command, one in zip((sent.command, *sent.more), replies, strict=True):
            callback = self._callbacks.get(command)
            out.append(one if callback is None else callback(one))
        return out

    @staticmethod
    def _read_all(conn: Any, n: int) -> tuple[list[Any], redis.ResponseError | None]:
        """``n`` replies off ``conn`` (all of them, whatever they are), and the first
        error reply among them."""
        replies: list[Any] = []
        error: redis.ResponseError | None = None
        for _ in range(n):
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(None)
                error = error or exc
        return replies, error

    def post(
        self,
        args: Sequence[Any],
        fallback: Sequence[Any] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Send ``args`` and return without its reply (read before this thread's next
        command on the connection). ``fallback`` is sent instead if the server answers
        ``NOSCRIPT``. An error reply is logged (at debug level) and given to
        ``on_error``, never raised."""
        local, conn = self._send_unwaited(args)
        local.unread.append((conn._sock, fallback, on_error))

    def _send_unwaited(
        self, args: Sequence[Any], more: Sequence[Sequence[Any]] = ()
    ) -> tuple[threading.local, Any]:
        """Send ``args`` (and ``more``, in one write) on this thread's connection (after
        reading the replies of its posted commands) without reading the reply; a failed
        send drops the connection."""
        local, conn = self._connection()
        self._drain(local, conn)
        try:
            packed = self._pack(conn, args)
            if more:  # one buffer: redis-py writes each item of a list with its own sendall
                packed = [b"".join([*packed, *(p for c in more for p in self._pack(conn, c))])]
            conn.send_packed_command(packed, check_health=False)
        except BaseException:
            self._drop(local, conn)
            raise
        return local, conn

    def _read_posted(self, local: threading.local, conn: Any) -> None:
        """Read the replies of this thread's posted commands (sent on this connection:
        a connection dropped since took them along); a ``NOSCRIPT`` one is posted again
        with its fallback (its reply read by the caller's next round)."""
        unread, local.unread = local.unread, []
        retry: list[tuple[Sequence[Any], Callable[[BaseException], None] | None]] = []
        for sock, fallback, on_error in unread:
            if sock is None or sock is not conn._sock:
                continue
            try:
                conn.read_response()
            except redis.exceptions.NoScriptError as exc:
                if fallback is not None:
                    retry.append((fallback, on_error))
                elif on_error is not None:
                    _tell(on_error, exc)
            except redis.ResponseError as exc:  # refused (out of memory, a replica...)
                logger.debug("paracache: a posted command failed: %r", exc)
                if on_error is not None:
                    _tell(on_error, exc)
            except BaseException:
                self._drop(local, conn)
                raise
        for args, on_error in retry:  # the script was flushed meanwhile: with its source
            self.post(args, None, on_error)

    def _drop(self, local: threading.local, conn: Any) -> None:
        local.unread = []
        local.sent = None
        conn.disconnect()

    @staticmethod
    def _poller(local: threading.local, sock: Any) -> Any:
        poller = local.poller
        if poller is None or local.polled is not sock:
            poller = local.poller = select.poll()
            poller.register(sock, select.POLLIN)
            local.polled = sock
        return poller

    def _await_reply(self, local: threading.local, conn: Any) -> None:
        """Poll ``conn``'s socket until it is readable or ``spin`` seconds have passed."""
        sock = conn._sock
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return  # TLS: readable bytes may not make a record; just block
        poller = self._poller(local, sock)
        deadline = time.perf_counter() + self._spin
        while not poller.poll(0):
            if time.perf_counter() >= deadline:
                return
            # Give the core to any thread that is ready to run (Redis on the same host,
            # the embedder's threads): on a busy machine a pure spin delays the very reply
            # it waits for; with a core idle this returns at once and the spin goes on.
            _yield()

    def close(self) -> None:
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            conn.disconnect()


@dataclasses.dataclass(frozen=True, slots=True)
class _Sent:
    """A command :meth:`ThreadConnections.send` sent: the connection and socket it went
    out on (a connection dropped since cannot answer it), its name, and the names of
    the commands sent with it."""

    conn: Any
    sock: Any
    command: Any
    more: tuple[Any, ...] = ()


def _tell(on_error: Callable[[BaseException], None], exc: BaseException) -> None:
    """Give a posted command's error reply to its ``on_error`` (which must not raise)."""
    try:
        on_error(exc)
    except Exception as again:  # a bookkeeping callback never breaks the caller's call
        logger.warning("paracache: a posted command's error callback raised: %r", again)


async def within(work: Awaitable[Any], timeout: float) -> Any:
    """Await ``work`` for at most ``timeout`` seconds of the server's time, not the loop's.

    redis-py's asyncio socket timeout is a timer on the event loop. When the loop is busy
    (other tasks' CPU work, embedding threads on few cores), the timer and a reply that
    arrived long before become ready in the same pass, and the timer runs first: the call
    fails although its answer is in. Here a timer that fires late (the loop could not run
    it in time) gives the call that much time again, up to :func:`backstop` in all, so
    replies that arrived meanwhile are read; a timer that fires on time cancels the call,
    which becomes a ``TimeoutError``. One timer on the calling task, no extra task
    (cheaper per call; see ``benchmarks/RESULTS.md``), where the task can take its own
    cancellation back (``Task.uncancel``, Python 3.11+), so a caller's cancellation is
    never mistaken for a timeout; on Python 3.10 the work runs as its own task, which the
    timer cancels instead (:func:`_within_task`).
    """
    task = asyncio.current_task()
    if task is None:  # not inside a task: nothing to cancel, redis-py's backstop bounds it
        return await work
    if not _CAN_UNCANCEL:
        return await _within_task(work, timeout)
    deadline = _Deadline(task, timeout)
    try:
        return await work
    except asyncio.CancelledError:
        if deadline.fired and deadline.withdraw():
            raise redis.TimeoutError(f"paracache: no reply within {timeout:g}s") from None
        raise
    finally:
        deadline.stop()


#: Tasks count cancellations and can take one back (Python 3.11+).
_CAN_UNCANCEL = hasattr(asyncio.Task, "uncancel")


async def _within_task(work: Awaitable[Any], timeout: float) -> Any:
    """:func:`within` without ``Task.uncancel`` (Python 3.10): ``work`` runs as its own
    task and the timer cancels that task, never the caller's, so a cancellation of the
    caller is always the caller's (it cancels ``work`` too and propagates)."""
    loop = asyncio.get_running_loop()
    inner = asyncio.ensure_future(work)
    start = loop.time()
    due, give_up = start + timeout, start + backstop(timeout)
    try:
        while True:
            done, _ = await asyncio.wait({inner}, timeout=max(0.0, due - loop.time()))
            if done:
                return inner.result()
            now = loop.time()
            late = now - due
            if late >= _LAG_SLACK and now < give_up:  # a busy loop: give the time back
                due = min(now + late, give_up)
                continue
            inner.cancel()  # redis-py drops the connection: a late reply reaches no one
            raise redis.TimeoutError(f"paracache: no reply within {timeout:g}s")
    except asyncio.CancelledError:
        inner.cancel()
        raise


class _Deadline:
    """The timer behind :func:`within`: cancels ``task`` once ``timeout`` seconds have
    passed while the loop was responsive."""

    __slots__ = ("_cancelling", "_give_up", "_handle", "_loop", "_task", "fired")

    def __init__(self, task: asyncio.Task[Any], timeout: float) -> None:
        self._loop = task.get_loop()
        self._task = task
        now = self._loop.time()
        self._give_up = now + backstop(timeout)
        # Tasks count cancellations: ours must not swallow anyone else's.
        self._cancelling = task.cancelling()
        self.fired = False
        self._handle = self._loop.call_at(now + timeout, self._fire, now + timeout)

    def _fire(self, due: float) -> None:
        now = self._loop.time()
        late = now - due
        if late >= _LAG_SLACK and now < self._give_up:
            # The loop could not run this timer for `late` seconds: give them back.
            again = min(now + late, self._give_up)
            self._handle = self._loop.call_at(again, self._fire, again)
            return
        self.fired = True
        self._task.cancel()  # redis-py drops the connection: a late reply reaches no one

    def stop(self) -> None:
        self._handle.cancel()

    def withdraw(self) -> bool:
        """Take back this timer's cancellation; False if someone else cancelled too."""
        return bool(self._task.uncancel() <= self._cancelling)


def backstop(timeout: float) -> float:
    """The most a bounded async call may take while the event loop is busy, and the
    socket timeout behind :func:`within`."""
    return max(4 * timeout, 1.0)


#: A timer that fires later than this was held up by a busy loop.
_LAG_SLACK = 0.01


#: Threads that run blocking embeddings under a time limit: a job is only queued when a
#: thread is free to run it, so stuck embeddings never pile up behind each other (a
#: caller waits for a slot within its own embed_timeout, then gives up: a miss).
_EMBEDDERS = BoundedPool(4, "paracache-embed")


def _embed_bounded(embed: Callable[[str], Any], text: str, timeout: float) -> Any:
    started = time.monotonic()
    future = _EMBEDDERS.submit(embed, text, timeout=timeout)
    if future is None:
        raise TimeoutError(f"no embedding slot free within {timeout:g}s (embedder stuck?)")
    return future.result(timeout=max(0.0, timeout - (time.monotonic() - started)))


def check_user_clients(sync: Any, async_: Any) -> tuple[Any, Any]:
    """Validate ``redis_client=``/``async_redis_client=`` (byte replies needed: entries
    hold binary vectors)."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.cluster import RedisCluster

    if not isinstance(sync, (redis.Redis, RedisCluster)):
        raise TypeError(
            f"redis_client must be a redis.Redis or redis.cluster.RedisCluster, got {sync!r}"
        )
    if async_ is not None and not isinstance(async_, (aioredis.Redis, AsyncCluster)):
        raise TypeError(
            "async_redis_client must be a redis.asyncio.Redis or "
            f"redis.asyncio.cluster.RedisCluster, got {async_!r}"
        )
    for client in (sync, async_):
        if client is not None and _connection_kwargs(client).get("decode_responses"):
            raise ValueError("paracache needs a client with decode_responses=False")
    return sync, async_


def warn_unbounded(client: Any, what: str) -> None:
    """Log a warning if a caller's client has no ``socket_timeout``: its commands wait as
    long as Redis does (redis-py's default), and paracache's own ``timeout`` bounds only
    the clients it makes, so a hung server would hang the caller's requests (``what``
    names the object, e.g. ``"SemanticIndex"``)."""
    if _connection_kwargs(client).get("socket_timeout") is None:
        logger.warning(
            "paracache: the redis_client given to %s has no socket_timeout: each of its "
            "commands waits as long as Redis takes, so a hung or paused Redis holds the "
            "calling request (paracache's timeout= bounds only the clients it makes). Give "
            "the client socket_timeout= (e.g. 0.5 s), or pass redis_url= instead",
            what,
        )


def _connection_kwargs(client: Any) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return dict(pool.connection_kwargs)
    manager = getattr(client, "nodes_manager", None)  # a cluster client
    return dict(getattr(manager, "connection_kwargs", None) or {})


def client_url(client: Any) -> str:
    """A password-free URL naming where ``client`` connects (for messages and logs)."""
    kwargs = _connection_kwargs(client)
    sentinel = _sentinel_pool(client)
    if sentinel is not None:  # its kwargs name no server: the sentinels and the service
        first = sentinel.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
        host, port = first.get("host", "localhost"), first.get("port", 26379)
        return f"redis+sentinel://{host}:{port}/{sentinel.service_name}"
    if "host" not in kwargs and hasattr(client, "get_default_node"):
        node = client.get_default_node()
        kwargs = {**kwargs, "host": node.host, "port": node.port}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if kwargs.get("ssl") or "ssl_keyfile" in kwargs else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def derive_async(client: Any) -> Any:
    """An asyncio twin of a caller's sync client: same server, credentials and options.

    For a ``redis.cluster.RedisCluster`` this starts from its default node and lets the
    async cluster client discover the rest (tested on the embedded cluster: tests/test_cluster.py).
    """
    import inspect

    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    kwargs = _connection_kwargs(client)
    for sync_only in ("retry", "redis_connect_func", "connection_pool"):
        kwargs.pop(sync_only, None)  # async clients take their own
    sentinel = _sentinel_pool(client)
    if sentinel is not None:
        return _derive_sentinel(sentinel, kwargs)
    if hasattr(client, "get_default_node"):
        node = client.get_default_node()
        accepted = inspect.signature(AsyncCluster.__init__).parameters
        options = {k: v for k, v in kwargs.items() if k in accepted and k not in ("host", "port")}
        return AsyncCluster(host=node.host, port=node.port, **options)
    sync_class = client.connection_pool.connection_class
    async_class = {
        redis.SSLConnection: aioredis.SSLConnection,
        redis.UnixDomainSocketConnection: aioredis.UnixDomainSocketConnection,
    }.get(sync_class, aioredis.Connection)
    names: set[str] = set()
    for base in cast(Any, async_class).__mro__:
        names |= set(inspect.signature(base.__init__).parameters)
    options = {k: v for k, v in kwargs.items() if k in names}
    pool = aioredis.ConnectionPool(connection_class=async_class, **options)
    return aioredis.Redis(connection_pool=pool)


def _sentinel_pool(client: Any) -> Any:
    """The ``redis.sentinel.SentinelConnectionPool`` of a client made by
    ``Sentinel.master_for``/``slave_for``, else ``None``."""
    from redis.sentinel import SentinelConnectionPool

    pool = getattr(client, "connection_pool", None)
    return pool if isinstance(pool, SentinelConnectionPool) else None


def _derive_sentinel(pool: Any, kwargs: dict[str, Any]) -> Any:
    """The asyncio twin of a Sentinel-managed client: an asyncio ``Sentinel`` on the same
    sentinels (with their options) asked for the same service, master or replica, with
    the client's connection options. (Its connection kwargs name no server: a plain
    asyncio client made from them connected to ``localhost:6379``.)"""
    import inspect

    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    manager = pool.sentinel_manager
    sentinels = [
        (s.connection_pool.connection_kwargs.get("host", "localhost"),
         s.connection_pool.connection_kwargs.get("port", 26379))
        for s in manager.sentinels
    ]  # fmt: skip
    names: set[str] = set()
    for base in cast(Any, aioredis.Connection).__mro__:
        names |= set(inspect.signature(base.__init__).parameters)
    names -= {"host", "port", "retry", "redis_connect_func"}
    options = {k: v for k, v in kwargs.items() if k in names}
    sentinel_options = {
        k: v for k, v in dict(manager.sentinel_kwargs).items() if k in names
    }  # its sync ``retry`` dropped: the asyncio Sentinel sets its own
    twin = AsyncSentinel(
        sentinels,
        min_other_sentinels=manager.min_other_sentinels,
        sentinel_kwargs=sentinel_options,
        force_master_ip=getattr(manager, "_force_master_ip", None),
    )
    ask = twin.master_for if pool.is_master else twin.slave_for
    return ask(pool.service_name, check_connection=pool.check_connection, **options)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def selected_db(client: Any) -> int:
    """The database number a redis-py client (blocking or asyncio, not a cluster) selects;
    0 when it does not say.

    RediSearch indexes database 0 only, and (2.10) one ``FT.SEARCH`` sent from another
    database leaves the server's searches returning documents without their fields,
    for every client, so paracache sends none from there.

    Example:
        >>> import redis
        >>> selected_db(redis.Redis.from_url("redis://localhost:6379/2"))
        2
    """
    db = _connection_kwargs(client).get("db", 0)
    try:
        return int(db or 0)
    except (TypeError, ValueError):
        return 0


def client_kwargs(namespace: str, timeout: float, *, asyncio: bool = False) -> dict[str, Any]:
    """Options of the clients paracache makes: ``timeout`` per command, no retries (the
    circuit breaker handles failures), RESP2, named after the namespace; ``asyncio=True``
    for a ``redis.asyncio`` client (its own retry class).

    Example:
        >>> client_kwargs("faq", 0.1)["client_name"]
        'paracache:faq'
    """
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": max(timeout, 0.5),
        # the breaker handles failures, not retries
        "retry": (AsyncRetry if asyncio else Retry)(NoBackoff(), 0),
        "health_check_interval": 0,
        "protocol": 2,
        "client_name": f"paracache:{namespace}",
    }


#: Connections each client paracache makes may hold open (redis-py's own default). A call
#: that finds them all busy waits for one to come free, within its own time limit.
POOL_CONNECTIONS = 100


def pooled_client(url: str, options: dict[str, Any], *, asyncio: bool = False) -> Any:
    """A ``redis.Redis`` (``asyncio=True``: a ``redis.asyncio.Redis``) on ``url`` with
    ``options`` (:func:`client_kwargs`), whose pool holds at most
    :data:`POOL_CONNECTIONS` connections and makes a caller wait for a free one (up to
    ``options["socket_timeout"]``) instead of failing at once.

    redis-py's default pool refuses a call at once when all its connections are taken:
    a burst of asyncio tasks (or threads storing) on a healthy server were failed calls,
    counted as Redis failures that opened the breaker.

    Example:
        >>> client = pooled_client("redis://localhost:6379", client_kwargs("faq", 0.1))
        >>> client.connection_pool.max_connections
        100
    """
    module = aioredis if asyncio else redis
    pool = module.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=options["socket_timeout"], **options
    )
    return module.Redis.from_pool(pool)


# --------------------------------------------------------------------------- failures


def translate(exc: BaseException, *, embedding: bool = False) -> BaseException:
    """The :class:`~paracache.errors.BackendError` for an exception redis-py, RedisVL or
    (``embedding=True``) the embedder raised; any other exception is returned as it is
    (a bug in paracache's own code, for the flow to count as ``internal``).

    Example:
        >>> translate(ValueError("x"), embedding=True).kind
        'embedding'
        >>> type(translate(KeyError("x"))).__name__
        'KeyError'
    """
    if isinstance(exc, BackendError):
        return exc
    if not embedding and _other_loop(exc):
        err = BackendError("unavailable", f"{exc} ({_OTHER_LOOP})")
        err.__cause__ = exc
        return err
    kind: Kind | None = "embedding" if embedding else _kind(exc)
    if kind is None:
        return exc
    err = BackendError(kind, str(exc).removeprefix("paracache: ") or type(exc).__name__)
    err.__cause__ = exc
    return err


_BUSY = re.compile(r"\bBUSY\b")
#: The error code at the start of a reply, or after a pipeline's or script's prefix.
_WRONGTYPE = re.compile(r"(?:^|[\s:])WRONGTYPE\b")

_OTHER_LOOP = (
    "a redis.asyncio client used on an event loop other than the one its connection was "
    "made on: give async_redis_client= a client made on the loop that uses it, or none "
    "(paracache then makes one per event loop)"
)


def _other_loop(exc: BaseException) -> bool:
    """A ``redis.asyncio`` connection used on another event loop than its own (a caller's
    client made in one ``asyncio.run`` and used in the next): redis-py fails with a bare
    ``RuntimeError`` from its own code, then drops the connection. A failure of that
    client, not a bug in paracache."""
    if not isinstance(exc, RuntimeError):
        return False
    texts = (str(exc), str(exc.__context__ or ""))
    if not any("different loop" in t or "Event loop is closed" in t for t in texts):
        return False
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
        if "/redis/asyncio/" in name:
            return True
        tb = tb.tb_next
    return False


def _kind(exc: BaseException) -> Kind | None:
    if isinstance(exc, (redis.TimeoutError, TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(exc, redis.ResponseError):
        return _reply_kind(exc)
    if isinstance(exc, (redis.ConnectionError, OSError)):
        return "unavailable"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return "bad_reply"
    if isinstance(exc, redis.DataError):
        return None  # arguments paracache built itself: a bug, not a failure
    if isinstance(exc, (redis.RedisError, redis.exceptions.RedisClusterException)):
        return "unavailable"  # a cluster client's own errors (no node for a slot, ...)
    cause = exc.__cause__  # RedisVL wraps Redis's errors in its own
    if isinstance(cause, redis.RedisError):
        return _kind(cause)
    return None


def _reply_kind(exc: redis.ResponseError) -> Kind:
    """What an error reply means (redis-py maps some error codes to classes; the rest
    are told by their code, at the start of the message or after a pipeline's prefix)."""
    text = str(exc)
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        "command not allowed when used memory" in text
    ):
        return "oom"
    if isinstance(exc, redis.exceptions.ReadOnlyError) or "read only replica" in text:
        return "readonly"
    if "NOREPLICAS" in text:  # a primary short of its min-replicas-to-write
        return "readonly"
    if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in text:
        return "noperm"
    if "MISCONF" in text:
        return "misconf"
    if isinstance(exc, redis.exceptions.NoScriptError):
        return "noscript"
    lowered = text.lower()
    if "no such index" in lowered or "unknown index name" in lowered:
        return "no_index"
    if "index already exists" in lowered:
        return "exists"
    if "unknown command" in lowered:
        return "unknown_command"
    if _BUSY.search(text):
        return "busy"
    if _WRONGTYPE.search(text):
        return "wrongtype"
    return "refused"


# --------------------------------------------------------------------------- embedding


class Embedder:
    """A vectorizer behind a memo (the same text is not embedded twice in a row) and a
    time limit (``timeout`` seconds; ``None``: none).

    Blocking calls run the offline default model in the calling thread (bounded CPU
    work that cannot hang on I/O) and any other vectorizer on a worker thread they
    wait for at most ``timeout``; async calls run it without blocking the loop.

    Example:
        >>> from paracache.vectorizers import default_vectorizer
        >>> e = Embedder(default_vectorizer(), timeout=5.0)   # doctest: +SKIP
        >>> len(e.embed("hello"))                              # doctest: +SKIP
        384
    """

    def __init__(self, vectorizer: Any, timeout: float | None, memo_size: int = 1024) -> None:
        self.vectorizer = vectorizer
        self.timeout = timeout
        self.memo = EmbeddingMemo(memo_size)

    def embed(self, text: str) -> Sequence[float]:
        """The vector for ``text`` (already the model's input), memoised."""
        vec = self.vector(text)
        if isinstance(vec, np.ndarray):
            out: list[float] = vec.tolist()
            return out
        return cast(Sequence[float], vec)

    def vector(self, text: str) -> Any:
        """:meth:`embed` for the cache's own flows (which encode it for Redis,
        :meth:`paracache.base.FlowBase.encode_vector`): the same vector, as a float
        array where there is one (the offline default model's output, a memo hit), else
        as the vectorizer returned it."""
        vec: Any = self.memo.get_array(text)
        if vec is None:
            vectorizer = self.vectorizer
            if isinstance(vectorizer, MiniLMVectorizer) and vectorizer.cache is None:
                # The offline model does bounded CPU work (input capped at max_chars) and
                # cannot hang on I/O: run it here. A hop to a pool thread would cost more
                # (a thread wake-up, slow on a busy machine) than the bound protects.
                # Its own hook directly: RedisVL's embed() wrapper (argument checks, an
                # embeddings cache this instance does not have) costs time per call.
                vec = (
                    vectorizer._embed_array(text)
                    if _array_hook(type(vectorizer))
                    else vectorizer._embed(text)
                )
            elif self.timeout is None or isinstance(vectorizer, MiniLMVectorizer):
                vec = vectorizer.embed(text)
            else:  # a stuck embedder costs the caller embed_timeout, never more
                vec = _embed_bounded(vectorizer.embed, text, self.timeout)
            self.memo.put(text, vec)
        return vec

    async def aembed(self, text: str) -> Sequence[float]:
        """Async :meth:`embed` (never blocks the event loop)."""
        vec = self.memo.get(text)
        if vec is None:
            fresh: Sequence[float] = await asyncio.wait_for(
                self.vectorizer.aembed(text), self.timeout
            )
            self.memo.put(text, fresh)
            return fresh
        return vec

    def embed_many(self, texts: Sequence[str], batch_size: int = _EMBED_BATCH) -> Any:
        """Vectors for ``texts`` in one batched call of the vectorizer (not memoised)."""
        return self.vectorizer.embed_many(list(texts), batch_size=batch_size)

    async def aembed_many(self, texts: Sequence[str], batch_size: int = _EMBED_BATCH) -> Any:
        """Async :meth:`embed_many`."""
        return await self.vectorizer.aembed_many(list(texts), batch_size=batch_size)


def _array_hook(cls: type[MiniLMVectorizer]) -> bool:
    """Whether the cache embeds with ``cls``'s array hook (``_embed_array``): unless a
    subclass overrides ``_embed`` and not ``_embed_array`` (its ``_embed`` is then what
    it means to be called)."""
    return (
        cls._embed is MiniLMVectorizer._embed
        or cls._embed_array is not MiniLMVectorizer._embed_array
    )


def close_async_client(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close an asyncio client made on ``loop`` from outside it: on that loop if it runs
    in another thread (waiting up to 5 s), by running it if it is stopped, as a task if
    it is the caller's own. A closed loop's connections cannot be closed through it;
    they close when they are garbage-collected.

    Example:
        >>> # close_async_client(client, loop_of_another_thread)
    """
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    try:
        if loop is current:
            loop.create_task(client.aclose())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5.0)
        elif not loop.is_closed():
            loop.run_until_complete(client.aclose())
    except Exception as exc:  # closing is best effort: the connections are dropped anyway
        logger.debug("paracache: closing an async client failed: %r", exc)
