"""Single-flight: one model call per burst of identical cache misses.

When several callers miss on the same entry at once (same normalised prompt, same
scope: the exact layer's key), one of them, the *leader*, calls the model; the others
wait for its answer and replay it instead of paying a call each. Framework-free: the
adapters (:mod:`paracache.langchain`, :mod:`paracache.llama_index`, the service) call
:meth:`SingleFlight.claim` after a miss and settle the :class:`Claim` they get.

- Within a process, threads and asyncio tasks meet on one in-memory flight per key.
- Across processes, the leader holds a short Redis lock (``SET key token NX PX ttl``,
  the key derived from the entry's id); a process that finds it taken polls until it is
  released or expired, then reads the entry the leader stored (one exact lookup).
- Bounded: nobody waits longer than ``wait`` seconds, then it calls the model itself.
  A leader that fails or whose stream is abandoned answers its waiters "no answer":
  one of them becomes the next leader (at most ``retries`` times), the rest wait again.
- Fail-open: a Redis error (or an open circuit breaker) while taking the lock makes the
  caller a leader without a lock, so with Redis down every process calls the model
  and nobody waits on Redis; a log line and an ``errors["singleflight"]`` count say so.

Adapters use :meth:`SingleFlight.flight` (``aflight`` in async code): it claims, and
settles the claim however its block is left (an exception, a cancelled task, a closed
generator), handing the waiters the answer the block :meth:`Claim.stored`, or "no answer".

Example:
    >>> with flights.flight("What's your refund policy?", scope) as claim:  # doctest: +SKIP
    ...     if claim.payload is not None:
    ...         answer = claim.payload      # another caller's answer, just stored
    ...     else:
    ...         answer = call_the_model()   # store it, then:
    ...         claim.stored(answer)        # handed to the waiters as the block ends
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any

from . import forking
from .errors import BackendError
from .index import SemanticIndex
from .protocol import Call, Flow
from .reals import is_int, is_real
from .scope import Scope

__all__ = ["Claim", "SingleFlight"]

logger = logging.getLogger("paracache")

#: What a waiter receives when the leader gave up (failed, abandoned, cancelled).
_FAILED: Any = object()

# Deletes the lock only if it is still ours (it may have expired and been re-taken).
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0"
)


class _Flight:
    """One in-process computation of an answer, awaited by threads and asyncio tasks."""

    __slots__ = ("_event", "_lock", "_waiters", "result", "started")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self.result: Any = None

    def settle(self, result: Any) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.result = result
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A closed loop (RuntimeError) has nobody waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_result, future, result)

    def wait(self, timeout: float) -> Any:
        """The result, or ``None`` after ``timeout`` seconds."""
        return self.result if self._event.wait(timeout) else None

    async def await_(self, timeout: float) -> Any:
        """:meth:`wait` without blocking the event loop."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._event.is_set():
                return self.result
            self._waiters.append((asyncio.get_running_loop(), future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


@dataclasses.dataclass(frozen=True)
class _Wait:
    flight: _Flight
    timeout: float


@dataclasses.dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class _Redis:
    args: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class _Recheck:
    pass


_Step = _Wait | _Sleep | _Redis | _Recheck


class Claim:
    """What :meth:`SingleFlight.claim` decided for one caller.

    - ``payload`` is not ``None``: another caller's answer (the stored response string):
      serve it, call nothing, settle nothing.
    - ``leader`` is true: call the model, store the answer, then :meth:`done` with the
      stored response (``None`` if the call failed or the stream was not completed), in
      every case, so waiters never wait in vain. As a context manager (``with claim:``,
      ``async with claim:``; :meth:`SingleFlight.flight` gives one) it does that itself
      on leaving the block: with what :meth:`stored` was told, else ``None``.
    - neither: waiting timed out; call the model yourself (:meth:`done` is a no-op).
    """

    __slots__ = (
        "_flight", "_flights", "_key", "_lock", "_settled", "_stored", "leader", "payload",
    )  # fmt: skip

    def __init__(
        self,
        flights: SingleFlight | None = None,
        key: str = "",
        flight: _Flight | None = None,
        *,
        payload: str | None = None,
    ) -> None:
        self._flights = flights
        self._key = key
        self._flight = flight
        self._lock: tuple[str, str] | None = None
        self.payload = payload
        self.leader = flight is not None
        self._settled = flight is None
        self._stored: str | None = None

    def __repr__(self) -> str:
        role = "answered" if self.payload is not None else "leader" if self.leader else "alone"
        return f"Claim({role})"

    def stored(self, payload: str | None) -> None:
        """The answer this leader stored (the response string): what leaving the claim's
        ``with`` block hands to the waiters. Not told: "no answer", and one of them
        calls the model next."""
        self._stored = payload

    def hand_off(self) -> Claim:
        """A claim that settles this one's flight instead of it (leaving this one's block
        then settles nothing): for an answer that is complete only later, like a stream
        stored once consumed, whose generator settles it (``with claim.hand_off():``
        inside the generator; :meth:`SingleFlight.settle_when_dropped` for one never
        started)."""
        moved = Claim(self._flights, self._key, self._flight, payload=self.payload)
        moved.leader, moved._settled, moved._lock = self.leader, self._settled, self._lock
        self._settled, self._lock = True, None
        return moved

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done(self._stored)

    async def __aenter__(self) -> Claim:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._settled:  # shielded: a cancelled caller still releases its flight
            await asyncio.shield(self.adone(self._stored))

    def _settle(self, payload: str | None) -> tuple[str, str] | None:
        if self._settled:
            return None
        self._settled = True
        assert self._flights is not None and self._flight is not None
        self._flights._finish(self._key, self._flight, _FAILED if payload is None else payload)
        lock, self._lock = self._lock, None
        return lock

    def done(self, payload: str | None) -> None:
        """Hand the answer (or ``None``: no answer) to the waiters and release the lock.

        Call it after storing the answer, so that other processes find it.
        """
        lock = self._settle(payload)
        if lock is not None and self._flights is not None:
            self._flights._release(lock)

    async def adone(self, payload: str | None) -> None:
        """:meth:`done` without blocking the event loop."""
        lock = self._settle(payload)
        if lock is not None and self._flights is not None:
            await self._flights._arelease(lock)


class SingleFlight:
    """Coalesces identical concurrent misses on one :class:`paracache.SemanticIndex`.

    Args:
        index: The cache whose entries the flights are for (its Redis holds the locks).
        wait: Seconds a caller waits for another's answer before calling the model
            itself (default 30). Also the Redis lock's lifetime, so a crashed leader
            delays other processes by at most this.
        distributed: Coordinate across processes through Redis locks (default on);
            off: within this process only.
        retries: How many times waiters elect a new leader after one failed.
        poll: First interval (seconds) at which a process waiting on another's lock
            checks it; doubled up to 0.2 s.

    Example:
        >>> flights = SingleFlight(index, wait=10.0)  # doctest: +SKIP
    """

    def __init__(
        self,
        index: SemanticIndex,
        *,
        wait: float = 30.0,
        distributed: bool = True,
        retries: int = 2,
        poll: float = 0.01,
    ) -> None:
        if not isinstance(index, SemanticIndex):
            raise TypeError(f"index must be a SemanticIndex, got {type(index).__name__}")
        for name, value in (("wait", wait), ("poll", poll)):
            if not is_real(value) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not is_int(retries) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        retries = int(retries)
        self.index = index
        self.wait = float(wait)
        if not isinstance(distributed, bool):  # "no" is not False
            raise TypeError(f"distributed must be a bool, got {distributed!r}")
        self.distributed = distributed
        self.retries = retries
        self.poll = float(poll)
        self._flights: dict[str, _Flight] = {}
        self._mutex = threading.Lock()
        #: Redis locks of dropped streams' claims that could not be released (Redis
        #: down): lock key to token and when the lock expires by itself, released by the
        #: next claim of that key here; forgotten once expired (oldest first).
        self._orphans: dict[str, tuple[str, float]] = {}
        forking.track(self)

    def _forked(self) -> None:
        """In a forked child: the parent's flights are led by threads that do not exist
        here (nothing would settle them); their answers come through Redis, as another
        process's do. A fresh lock: the parent's may have been held at the fork."""
        self._flights = {}
        self._mutex = threading.Lock()
        self._orphans = {}

    def __copy__(self) -> SingleFlight:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SingleFlight:
        """Shared, like the cache it coalesces on (its locks cannot be copied)."""
        return self

    def __repr__(self) -> str:
        return f"SingleFlight({self.index.namespace!r}, wait={self.wait})"

    # ------------------------------------------------------------------ public

    @contextlib.contextmanager
    def flight(
        self, prompt: str, scope: Scope | None = None, *, join: bool = True
    ) -> Iterator[Claim]:
        """:meth:`claim` (if ``join``; else an unclaimed :class:`Claim`), settled however
        the block is left: with the answer :meth:`Claim.stored` was told, else "no
        answer" (an exception, a generator closed mid-stream).

        Example:
            >>> with flights.flight(prompt, scope, join=verdict.missed) as claim:  # doctest: +SKIP
            ...     if claim.payload is None:
            ...         claim.stored(store(call_the_model()))
        """
        claim = self.claim(prompt, scope) if join else Claim()
        with claim:
            yield claim

    @contextlib.asynccontextmanager
    async def aflight(
        self, prompt: str, scope: Scope | None = None, *, join: bool = True
    ) -> AsyncIterator[Claim]:
        """:meth:`flight` without blocking the event loop; a cancelled task settles too."""
        claim = await self.aclaim(prompt, scope) if join else Claim()
        async with claim:
            yield claim

    @staticmethod
    def settle_when_dropped(stream: Any, claim: Claim) -> None:
        """Settle ``claim`` ("no answer") when ``stream`` (a generator that would settle
        it, see :meth:`Claim.hand_off`) is garbage-collected, in case it never started:
        a generator closed before its first step runs none of its code. Settled on a
        thread of its own (a finalizer runs wherever the garbage collector does), which
        also releases the Redis lock, so other processes' identical requests go on at
        once instead of waiting for it to expire (``wait``). Should that release fail
        (Redis down, the cache closed), the next claim of the key in this process
        releases it."""
        finalizer = weakref.finalize(stream, _abandon_later, claim)
        finalizer.atexit = False

    def claim(self, prompt: str, scope: Scope | None = None) -> Claim:
        """Join the flight for ``prompt`` under ``scope`` (after a miss); may wait.
        Prefer :meth:`flight`, which also settles the claim.

        Raises ``TypeError``/``ValueError`` for bad arguments, as a lookup does. A caller
        interrupted while claiming (an exception in a step) gives up a lead it took.
        """
        self.index._check_open()
        taken: list[Claim] = []
        steps = self._steps(prompt, scope, taken)
        reply: Any = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, _Wait):
                    reply = step.flight.wait(step.timeout)
                elif isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                elif isinstance(step, _Redis):
                    reply = self._redis(step.args)
                else:
                    reply = self._payload(self.index.lookup_verdict(prompt, scope, semantic=False))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            for claim in taken:
                claim.done(None)
            raise

    async def aclaim(self, prompt: str, scope: Scope | None = None) -> Claim:
        """:meth:`claim` without blocking the event loop. Prefer :meth:`aflight`.

        A task cancelled while claiming gives up a lead it took (its waiters elect
        another leader at once; its Redis lock is released)."""
        self.index._check_open()
        taken: list[Claim] = []
        steps = self._steps(prompt, scope, taken)
        reply: Any = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, _Wait):
                    reply = await step.flight.await_(step.timeout)
                elif isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, _Redis):
                    reply = await self._aredis(step.args)
                else:
                    verdict = await self.index.alookup_verdict(prompt, scope, semantic=False)
                    reply = self._payload(verdict)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            for claim in taken:
                await asyncio.shield(claim.adone(None))
            raise

    def in_flight(self) -> int:
        """How many keys have a leader in this process right now."""
        with self._mutex:
            return len(self._flights)

    # ------------------------------------------------------------------ the flow

    def _steps(
        self, prompt: str, scope: Scope | None, taken: list[Claim]
    ) -> Generator[_Step, Any, Claim]:
        """The claim's flow; a lead it takes is appended to ``taken`` at once, so that a
        driver interrupted before the flow returns it can settle it."""
        req = self.index.core.prepare_lookup(prompt, scope, semantic=False)
        key = req.key
        for _ in range(self.retries + 1):
            with self._mutex:
                flight = self._flights.get(key)
                if flight is not None and time.monotonic() - flight.started > 2 * self.wait:
                    flight = None  # a leader that never settled (a bug): do not wait on it
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if not leader:
                result = yield _Wait(flight, self.wait)
                if result is _FAILED:
                    continue  # the leader gave up: elect another
                if result is not None:
                    self.index.core.recorder.coalesced()
                return Claim(payload=result)  # an answer, or None: timed out, go alone
            claim = Claim(self, key, flight)
            taken.append(claim)
            if self.distributed:
                yield from self._lock_or_wait(claim, req.entry_id, key)
            return claim
        return Claim()

    def _lock_or_wait(
        self, claim: Claim, entry_id: str, entry_key: str
    ) -> Generator[_Step, Any, None]:
        """Take the Redis lock, or wait for its holder's answer (settling the claim).

        With the lock taken, a leader whose entry exists by now (another caller stored
        it after this one's lookup) reads it instead of calling the model."""
        if not self.index.core.breaker.allow():
            return  # Redis is known to be down: lead without a lock
        lock_key = f"{self.index.layout.namespace_prefix}flight:{entry_id}"
        with self._mutex:
            orphan = self._orphans.pop(lock_key, None)
        if orphan is not None:  # this process's own, given up: not worth waiting for
            yield _Redis(("EVAL", _RELEASE, 1, lock_key, orphan[0]))
        token = secrets.token_hex(8)
        reply = yield _Redis(("SET", lock_key, token, "NX", "PX", int(self.wait * 1000)))
        if reply is _FAILED:
            return
        if reply is not None:
            claim._lock = (lock_key, token)  # ours now: settling the claim releases it
            exists = yield _Redis(("EXISTS", entry_key))
            payload = (yield _Recheck()) if exists is not _FAILED and exists else None
            if payload is not None:
                lock = self._answered(claim, payload)
                if lock is not None:
                    yield _Redis(("EVAL", _RELEASE, 1, *lock))
            return
        deadline = time.monotonic() + self.wait
        delay = self.poll
        while time.monotonic() < deadline:
            yield _Sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.2)
            held = yield _Redis(("EXISTS", lock_key))
            if held is _FAILED or not held:
                break
        payload = yield _Recheck()
        if payload is not None:
            self._answered(claim, payload)
        # else: the other process failed or is slow: answer ourselves, still leading here

    # ------------------------------------------------------------------ helpers

    def _answered(self, claim: Claim, payload: str) -> tuple[str, str] | None:
        """The leader found the answer stored by another: hand it to its waiters too;
        the Redis lock it held, to release."""
        self.index.core.recorder.coalesced()
        lock = claim._settle(payload)
        claim.payload, claim.leader = payload, False
        return lock

    def _orphan(self, lock: tuple[str, str]) -> None:
        now = time.monotonic()
        with self._mutex:
            orphans = self._orphans
            # Locks whose time is up have expired in Redis: nothing left to release. (Kept,
            # one per lock not released while Redis was down, they piled up for ever.)
            while orphans:
                key = next(iter(orphans))
                if orphans[key][1] > now:
                    break
                del orphans[key]
            orphans.pop(lock[0], None)  # last in order: the latest expiry
            orphans[lock[0]] = (lock[1], now + self.wait)

    def _finish(self, key: str, flight: _Flight, result: Any) -> None:
        with self._mutex:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.settle(result)

    @staticmethod
    def _payload(verdict: Any) -> str | None:
        hit = getattr(verdict, "hit", None)
        return hit.response if hit is not None else None

    def _failed(self, exc: BackendError) -> Any:
        self.index.core.recorder.error("singleflight")
        # At most one warning every 10 s: a refusal with Redis up (an ACL without SET or
        # scripting, out of memory) leaves the breaker closed and lasts.
        self.index.core._warn_throttled(
            "singleflight", "paracache: single-flight lock unavailable, not coordinating: %r", exc
        )
        return _FAILED

    def _redis(self, args: tuple[Any, ...]) -> Any:
        try:
            return self.index._run(_one(args))
        except BackendError as exc:
            return self._failed(exc)

    async def _aredis(self, args: tuple[Any, ...]) -> Any:
        try:
            return await self.index._arun(_one(args))
        except BackendError as exc:
            return self._failed(exc)

    def _release(self, lock: tuple[str, str]) -> None:
        self._redis(("EVAL", _RELEASE, 1, *lock))

    async def _arelease(self, lock: tuple[str, str]) -> None:
        await self._aredis(("EVAL", _RELEASE, 1, *lock))


def _abandon_later(claim: Claim) -> None:
    """Settle a dropped stream's claim on a short-lived thread: a finalizer runs wherever
    the garbage collector does, maybe while this thread holds the locks settling takes
    (or inside an event loop, which a Redis call must not block)."""
    if not claim._settled:  # the stream ran and settled it: the usual case, nothing to do
        thread = threading.Thread(target=_give_up, args=(claim,), name="paracache-flight")
        thread.daemon = True
        thread.start()


def _give_up(claim: Claim) -> None:
    """Settle ``claim`` as "no answer" and release its Redis lock (one call, within the
    cache's ``timeout``); a lock not released (Redis down: counted as a single-flight
    error; the cache closed) is left to the next claim of the key in this process."""
    lock = claim._settle(None)
    if lock is None or claim._flights is None:
        return
    flights = claim._flights
    try:
        if flights._redis(("EVAL", _RELEASE, 1, *lock)) is not _FAILED:
            return
    except Exception as exc:  # e.g. the cache was closed meanwhile
        logger.debug("paracache: could not release a dropped stream's flight lock: %r", exc)
    flights._orphan(lock)


def _one(args: tuple[Any, ...]) -> Flow[Any]:
    if args[:2] == ("EVAL", _RELEASE):
        return (yield from _release_flow(args[3], args[4]))
    return (yield Call(args))


def _release_flow(lock_key: str, token: str) -> Flow[Any]:
    """Delete the lock if it is still this claim's: one script; where the server runs no
    scripts (an ACL without ``@scripting``, Lua disabled or ``EVAL`` renamed), ``GET``
    then ``DEL``. Unreleased, the lock kept the other processes waiting its whole TTL
    (``wait``, 30 s by default) for an answer stored long before. Without the script the
    lock may expire and be taken by another process between the two commands, and be
    deleted: at worst one more model call, never a wrong answer."""
    try:
        return (yield Call(("EVAL", _RELEASE, 1, lock_key, token)))
    except BackendError as exc:
        if exc.kind not in ("noperm", "unknown_command"):
            raise
    held = yield Call(("GET", lock_key))
    if held is None or (held.decode() if isinstance(held, bytes) else str(held)) != token:
        return 0
    return (yield Call(("DEL", lock_key)))


