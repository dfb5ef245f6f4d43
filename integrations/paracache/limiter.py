"""Rate limits kept in Redis, shared by every thread, task and process: framework-free.

A :class:`RateLimiter` holds one or more :class:`Limit` tiers (per user or tenant, per
API key, global, ...). One Lua script, on the server's clock (``TIME``), checks all the
tiers of a request in one round trip and admits it only if every tier admits it;
otherwise nothing is consumed from any tier and the script answers how long to wait.

Two algorithms, chosen per tier:

* ``"token_bucket"``: ``amount / window`` per second refill a bucket of ``burst``
  (default ``amount``); a new bucket starts full. Over any span of ``T`` seconds at most
  ``burst + amount / window * T`` are admitted.
* ``"sliding_window"``: at most ``amount`` in any ``window`` seconds (an exact log of
  the window's admissions, one sorted-set member each).

A tier with ``charged=True`` is a *budget* (tokens, money): an admission takes nothing
from it but needs some of it left; :meth:`RateLimiter.charge` spends it after the call
(from the model's reported usage). Once spent, requests wait until the window refills.

Redis unreachable (or slow beyond ``timeout``): ``fail_open=True`` (the default) admits,
logs a warning on the ``paracache`` logger and counts it (``stats().failed_open``);
``fail_open=False`` refuses (``stats().failed_closed``). Neither raises.

Keys: ``paracache:_rl:{<namespace>}:<algorithm>:<digest of the tier key>`` (the braces
are a Redis Cluster hash tag: all tiers of a namespace live in one slot, so a multi-tier
check stays one atomic script; ``_rl`` is no cache namespace, so clearing a cache never
touches rate limits). Tier keys are digested, so any text
(RediSearch, Lua or glob syntax, an API key, a megabyte) is data, never syntax, and
never reaches Redis in clear.

Example:
    >>> limiter = RateLimiter([Limit("user:alice", 5), Limit("global", 100, window=60)])
    ...     # doctest: +SKIP
    >>> limiter.acquire()                   # blocks until both tiers admit  # doctest: +SKIP
    True
    >>> limiter.decide().retry_after        # one attempt: 0.0, or seconds to wait  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from .policy import MAX_TTL, CircuitBreaker
from .redisflow import Failure, Flow, Link, Script, Sleep
from .schema import check_namespace
from .scope import canonical_json, digest

__all__ = ["Decision", "KeyedLimits", "Limit", "LimiterStats", "RateLimitExceeded", "RateLimiter"]

ALGORITHMS = ("token_bucket", "sliding_window")

#: KEYS: two per tier (the state; for a sliding window also its running total).
#: ARGV: mode ("acquire" or "charge"), tier count, then per tier: algorithm ("tb" or
#: "sw"), capacity, refill per microsecond (tb) or window in microseconds (sw), what an
#: admission (or a charge) takes, what must be left to admit (0: anything above 0),
#: time to live in ms (sliding window; a bucket lives until it would be full again).
#: Reply: {admitted (1/0), wait in microseconds (-1: never)}.
RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local n = tonumber(ARGV[2])
local fmt = '%.17g'
local admit = true
local wait = 0
local plan = {}
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local algo = ARGV[b + 1]
  local cap = tonumber(ARGV[b + 2])
  local per = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local need = tonumber(ARGV[b + 5])
  local k1 = KEYS[2 * i - 1]
  local k2 = KEYS[2 * i]
  if algo == 'tb' then
    local st = redis.call('HMGET', k1, 't', 'ts')
    local tokens = tonumber(st[1])
    local ts = tonumber(st[2])
    if tokens == nil or ts == nil then
      tokens = cap
      ts = now
    end
    if now > ts then
      tokens = math.min(cap, tokens + (now - ts) * per)
      ts = now
    end
    if mode == 'acquire' then
      local fits = (need > 0 and tokens >= need) or (need == 0 and tokens > 0)
      if not fits then
        admit = false
        local w
        if need > cap then
          w = -1
        else
          w = math.max(need - tokens, 0) / per + 1
        end
        if w < 0 or wait < 0 then wait = -1 elseif w > wait then wait = w end
      end
    end
    plan[i] = {'tb', k1, tokens, ts}
  else
    local floor = now - per
    local sum = tonumber(redis.call('HGET', k2, 'sum')) or 0
    local gone = redis.call('ZRANGEBYSCORE', k1, '-inf', string.format(fmt, floor))
    for _, m in ipairs(gone) do
      sum = sum - tonumber(string.match(m, ':(.*)$'))
    end
    if redis.call('ZCARD', k1) == #gone then sum = 0 end
    if mode == 'acquire' then
      local left = cap - sum
      local fits = (need > 0 and left >= need) or (need == 0 and left > 0)
      if not fits then
        admit = false
        local w = -1
        if need <= cap then
          local live = redis.call('ZRANGEBYSCORE', k1, '(' .. string.format(fmt, floor), '+inf',
            'WITHSCORES')
          local freed = 0
          for j = 1, #live, 2 do
            freed = freed + tonumber(string.match(live[j], ':(.*)$'))
            local l2 = cap - (sum - freed)
            if (need > 0 and l2 >= need) or (need == 0 and l2 > 0) then
              w = tonumber(live[j + 1]) + per - now + 1
              break
            end
          end
        end
        if w < 0 or wait < 0 then wait = -1 elseif w > wait then wait = w end
      end
    end
    plan[i] = {'sw', k1, k2, sum, floor, #gone}
  end
end
if not admit then
  return {0, math.ceil(wait)}
end
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local cost = tonumber(ARGV[b + 4])
  local ttl = tonumber(ARGV[b + 6])
  local p = plan[i]
  if cost > 0 then
    if p[1] == 'tb' then
      local left = p[3] - cost
      local cap = tonumber(ARGV[b + 2])
      local per = tonumber(ARGV[b + 3])
      redis.call('HSET', p[2], 't', string.format(fmt, left), 'ts', string.format(fmt, p[4]))
      redis.call('PEXPIRE', p[2], math.ceil((cap - left) / per / 1000) + 1000)
    else
      if p[6] > 0 then redis.call('ZREMRANGEBYSCORE', p[2], '-inf', string.format(fmt, p[5])) end
      local seq = redis.call('HINCRBY', p[3], 'seq', 1)
      redis.call('ZADD', p[2], string.format(fmt, now), seq .. ':' .. string.format(fmt, cost))
      redis.call('HSET', p[3], 'sum', string.format(fmt, p[4] + cost))
      redis.call('PEXPIRE', p[2], ttl)
      redis.call('PEXPIRE', p[3], ttl)
    end
  end
end
return {1, 0}
"""


class RateLimitExceeded(RuntimeError):
    """Raised by wrappers that cannot pass a refusal on as ``False`` (e.g.
    :class:`paracache.llama_index.RateLimitedLLM`); ``acquire`` itself never raises it."""


def _number(name: str, value: Any, *, positive: bool = True) -> float:
    if (
        isinstance(value, bool) or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or (isinstance(value, int) and abs(value) > 2**1023)  # no float holds it
    ):
        raise TypeError(f"{name} must be a finite number, got {value!r:.60}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Limit:
    """One tier: at most ``amount`` per ``window`` seconds under the name ``key``.

    Attributes:
        key: What is limited ("global", "user:alice", "apikey:..."): any text; limiters
            with the same namespace and key share one limit.
        amount: Requests (or, with ``charged``, cost units) per window.
        window: Seconds.
        algorithm: ``"token_bucket"`` (default) or ``"sliding_window"``.
        burst: Token bucket capacity (default ``amount``); ignored by a sliding window.
        charged: A budget spent by :meth:`RateLimiter.charge` (tokens, money) rather than
            one unit per request.

    Example:
        >>> Limit("user:alice", 5).rate
        5.0
        >>> Limit("spend", 2.0, window=3600, charged=True).capacity
        2.0
    """

    key: str
    amount: float
    window: float = 1.0
    algorithm: str = "token_bucket"
    burst: float | None = None
    charged: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise TypeError(f"Limit.key must be a str, got {type(self.key).__name__}")
        object.__setattr__(self, "amount", _number("Limit.amount", self.amount))
        object.__setattr__(self, "window", _number("Limit.window", self.window))
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"Limit.algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.burst is not None:
            object.__setattr__(self, "burst", _number("Limit.burst", self.burst))
        if not isinstance(self.charged, bool):
            raise TypeError(f"Limit.charged must be a bool, got {self.charged!r}")
        if self.window > MAX_TTL:
            raise ValueError(f"Limit.window must be at most {MAX_TTL:.0e} s, got {self.window!r}")
        if self.capacity / self.rate > MAX_TTL:  # how long its key lives once drawn on
            raise ValueError(
                f"Limit: a tier must refill within {MAX_TTL:.0e} s, this one takes "
                f"capacity / rate = {self.capacity / self.rate:.3g} s"
            )
        if not self.charged and self.capacity < 1:
            raise ValueError(
                f"a request limit must admit at least one request: burst/amount >= 1, got "
                f"{self.capacity!r}"
            )

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.amount / self.window

    @property
    def capacity(self) -> float:
        """Most a tier can hold: the bucket size, or the window's amount."""
        if self.algorithm == "token_bucket" and self.burst is not None:
            return self.burst
        return self.amount


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer to one attempt.

    Attributes:
        admitted: Go ahead.
        retry_after: Seconds until an attempt may succeed: 0 when admitted, ``inf`` when
            it never can (a cost above a tier's capacity); a refusal while Redis is
            unreachable (``fail_open=False``) says ``check_every_n_seconds`` (or 1).
        failure: The Redis failure kind when Redis was not reached (``None`` otherwise).
    """

    admitted: bool
    retry_after: float = 0.0
    failure: str | None = None


@dataclasses.dataclass(frozen=True)
class LimiterStats:
    """Counters of one :class:`RateLimiter` (this process)."""

    admitted: int = 0
    refused: int = 0
    waits: int = 0
    charges: int = 0
    failed_open: int = 0
    failed_closed: int = 0
    errors: int = 0
    errors_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)


class RateLimiter:
    """Shared rate limits on Redis (see the module docs).

    Args:
        limits: The tiers, checked together; at least one.
        redis_url: Where Redis is (default as for :class:`paracache.SemanticIndex`:
            ``PARACACHE_REDIS_URL``, ``REDIS_URL``, else the embedded server).
        redis_client: Your own ``redis.Redis`` instead.
        namespace: Key prefix, as for the cache (letters, digits, ``_.-``).
        fail_open: Admit (``True``) or refuse (``False``) while Redis is unreachable.
        check_every_n_seconds: How often a blocking :meth:`acquire` retries while Redis
            is unreachable and ``fail_open`` is ``False`` (default 1 s). A refused request
            does not poll: it sleeps the wait the server computed, then asks again.
        max_wait: The longest a blocking :meth:`acquire` waits before giving up and
            returning ``False`` (``None``: no bound).
        timeout: Seconds each Redis call may take before it counts as a failure.

    Example:
        >>> RateLimiter([Limit("api", 5)], redis_url="redis://localhost:6379")  # doctest: +SKIP
        RateLimiter(namespace='default', tiers=1)
    """

    def __init__(
        self,
        limits: Sequence[Limit],
        *,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        namespace: str = "default",
        fail_open: bool = True,
        check_every_n_seconds: float | None = None,
        max_wait: float | None = None,
        timeout: float = 0.5,
        breaker: CircuitBreaker | None = None,
        link: Link | None = None,
    ) -> None:
        if isinstance(limits, Limit) or not isinstance(limits, Sequence):
            raise TypeError("limits must be a sequence of paracache.limiter.Limit")
        if not limits:
            raise ValueError("give at least one Limit")
        for limit in limits:
            if not isinstance(limit, Limit):
                raise TypeError(f"limits must hold Limit objects, got {limit!r}")
        check_namespace(namespace)
        if not isinstance(fail_open, bool):
            raise TypeError(f"fail_open must be a bool, got {fail_open!r}")
        if check_every_n_seconds is not None:
            check_every_n_seconds = _number("check_every_n_seconds", check_every_n_seconds)
        if max_wait is not None:
            max_wait = _number("max_wait", max_wait, positive=False)
            if max_wait < 0:
                raise ValueError(f"max_wait must be >= 0, got {max_wait!r}")
        self.limits = tuple(limits)
        self.namespace = namespace
        self.fail_open = fail_open
        self.check_every_n_seconds = check_every_n_seconds
        self.max_wait = max_wait
        self._link = link or Link(
            redis_url,
            redis_client=redis_client,
            timeout=timeout,
            name=f"paracache:{namespace}:rl",
            breaker=breaker,
        )
        self._shared_link = link is not None
        if not self._shared_link:
            self._link.owner = repr(self)
        self._keys = tuple(k for limit in self.limits for k in self._tier_keys(limit))
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._kinds: dict[str, int] = {}

    def _tier_keys(self, limit: Limit) -> tuple[str, str]:
        algo = "tb" if limit.algorithm == "token_bucket" else "sw"
        base = f"paracache:_rl:{{{self.namespace}}}:{algo}:{digest(limit.key)}"
        return base, base + ":sum"

    def _args(self, mode: str, amount: float) -> tuple[Any, ...]:
        args: list[Any] = [mode, len(self.limits)]
        for limit in self.limits:
            if limit.algorithm == "token_bucket":
                algo, per = "tb", limit.rate / 1e6
                ttl = (limit.capacity / limit.rate + 1) * 1000
            else:
                algo, per = "sw", limit.window * 1e6
                ttl = (limit.window + 1) * 1000
            if mode == "acquire":
                cost, need = (0.0, 0.0) if limit.charged else (amount, amount)
            else:
                cost, need = (amount if limit.charged else 0.0), 0.0
            args += [algo, repr(limit.capacity), repr(per), repr(cost), repr(need),
                     math.ceil(ttl)]
        return tuple(args)

    def with_limits(self, *limits: Limit) -> RateLimiter:
        """Another limiter with more tiers on the same connection (e.g. per request:
        ``base.with_limits(Limit(f"user:{user}", 2))``).

        Example:
            >>> per_user = limiter.with_limits(Limit("user:bob", 1))  # doctest: +SKIP
        """
        return RateLimiter(
            [*self.limits, *limits],
            namespace=self.namespace,
            fail_open=self.fail_open,
            check_every_n_seconds=self.check_every_n_seconds,
            max_wait=self.max_wait,
            link=self._link,
        )

    # ------------------------------------------------------------------ flows

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def _failed(self, failure: Failure) -> None:
        with self._lock:
            self._counts["errors"] = self._counts.get("errors", 0) + 1
            self._kinds[failure.kind] = self._kinds.get(failure.kind, 0) + 1

    def _decide_flow(self, cost: float = 1.0) -> Flow[Decision]:
        reply = yield Script(RATE_SCRIPT, self._keys, self._args("acquire", cost))
        if isinstance(reply, Failure):
            self._failed(reply)
            if self.fail_open:
                self._count("failed_open")
                return Decision(True, 0.0, reply.kind)
            self._count("failed_closed")
            return Decision(False, self.check_every_n_seconds or 1.0, reply.kind)
        admitted, wait_us = int(reply[0]), int(reply[1])
        if admitted:
            self._count("admitted")
            return Decision(True)
        self._count("refused")
        return Decision(False, math.inf if wait_us < 0 else wait_us / 1e6)

    def _acquire_flow(self, blocking: bool, cost: float) -> Flow[bool]:
        started = time.monotonic()
        while True:
            decision = yield from self._decide_flow(cost)
            if decision.admitted:
                return True
            if not blocking or math.isinf(decision.retry_after):
                return False
            pause = decision.retry_after
            pause += random.uniform(0, min(0.002, pause / 10))  # no lockstep wake-ups
            if self.max_wait is not None:
                left = self.max_wait - (time.monotonic() - started)
                if left < pause:
                    if left > 0:
                        yield Sleep(left)
                    return (yield from self._decide_flow(cost)).admitted
            self._count("waits")
            yield Sleep(pause)

    def _charge_flow(self, amount: float) -> Flow[bool]:
        amount = _number("amount", amount, positive=False)
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount!r}")
        if amount == 0 or not any(limit.charged for limit in self.limits):
            return True
        reply = yield Script(RATE_SCRIPT, self._keys, self._args("charge", amount))
        if isinstance(reply, Failure):
            self._failed(reply)
            return False
        self._count("charges")
        return True

    # ------------------------------------------------------------------ API

    def decide(self, cost: float = 1.0) -> Decision:
        """One attempt: admitted (and consumed), or refused with how long to wait.

        ``cost``: units of the request tiers this request takes (default 1).
        """
        return self._link.run(self._decide_flow(_number("cost", cost)))

    async def adecide(self, cost: float = 1.0) -> Decision:
        """:meth:`decide` without blocking the event loop."""
        return await self._link.arun(self._decide_flow(_number("cost", cost)))

    def acquire(self, *, blocking: bool = True, cost: float = 1.0) -> bool:
        """Admit a request; with ``blocking`` sleep (not spin) until every tier admits
        it (or ``max_wait`` passed). Never raises for Redis failures (see ``fail_open``).
        """
        return self._link.run(self._acquire_flow(bool(blocking), _number("cost", cost)))

    async def aacquire(self, *, blocking: bool = True, cost: float = 1.0) -> bool:
        """:meth:`acquire` on asyncio: waits with ``asyncio.sleep``."""
        return await self._link.arun(self._acquire_flow(bool(blocking), _number("cost", cost)))

    def charge(self, amount: float) -> bool:
        """Spend ``amount`` from every ``charged`` tier (after a call: its tokens or
        price). The budget may go below zero; requests then wait until it refills.
        Returns ``False`` if Redis was unreachable (logged and counted)."""
        return self._link.run(self._charge_flow(amount))

    async def acharge(self, amount: float) -> bool:
        """:meth:`charge` without blocking the event loop."""
        return await self._link.arun(self._charge_flow(amount))

    def stats(self) -> LimiterStats:
        """Counters since this limiter was made."""
        with self._lock:
            counts = dict(self._counts)
            kinds = dict(self._kinds)
        return LimiterStats(**counts, errors_by_kind=kinds)

    def close(self) -> None:
        """Release the connections (unless shared with the limiter it was derived from)."""
        if not self._shared_link:
            self._link.close()

    async def aclose(self) -> None:
        """:meth:`close`, also for the running loop's async connection."""
        if not self._shared_link:
            await self._link.aclose()

    def __repr__(self) -> str:
        return f"RateLimiter(namespace={self.namespace!r}, tiers={len(self.limits)})"


class KeyedLimits:
    """The same limits for each caller (API key, tenant, user): a tier per caller.

    ``limits`` are templates: for caller ``c`` each becomes a tier keyed ``(key, c)``, so
    every caller has its own bucket or window; ``shared`` tiers (e.g. a global limit) are
    checked in the same round trip as they are. One connection for all callers.

    Example:
        >>> per_key = KeyedLimits([Limit("service", 5, burst=10)])  # doctest: +SKIP
        >>> per_key.decide("key-1")  # doctest: +SKIP
        Decision(admitted=True, retry_after=0.0, failure=None)
    """

    def __init__(
        self,
        limits: Sequence[Limit],
        *,
        shared: Sequence[Limit] = (),
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        namespace: str = "default",
        fail_open: bool = True,
        timeout: float = 0.5,
    ) -> None:
        # Validates everything once, and holds the connection the per-caller limiters use.
        self._base = RateLimiter(
            [*limits, *shared],
            redis_url=redis_url,
            redis_client=redis_client,
            namespace=namespace,
            fail_open=fail_open,
            timeout=timeout,
        )
        if not limits:
            raise ValueError("give at least one per-caller Limit")
        self.limits = tuple(limits)
        self.shared = tuple(shared)

    def for_caller(self, caller: str) -> RateLimiter:
        """The limiter of one caller (cheap: no connection of its own)."""
        if not isinstance(caller, str):
            raise TypeError(f"caller must be a str, got {type(caller).__name__}")
        tiers = [
            dataclasses.replace(limit, key=canonical_json(["caller/v1", limit.key, caller]))
            for limit in self.limits
        ]
        base = self._base
        limiter = RateLimiter(
            [*tiers, *self.shared],
            namespace=base.namespace,
            fail_open=base.fail_open,
            link=base._link,
        )
        # Counted together: stats() covers every caller.
        limiter._lock, limiter._counts, limiter._kinds = base._lock, base._counts, base._kinds
        return limiter

    def decide(self, caller: str) -> Decision:
        """One attempt for ``caller``: admitted, or how long to wait."""
        return self.for_caller(caller).decide()

    async def adecide(self, caller: str) -> Decision:
        """:meth:`decide` without blocking the event loop."""
        return await self.for_caller(caller).adecide()

    def stats(self) -> LimiterStats:
        """Counters of all callers together (admitted, refused, failures)."""
        return self._base.stats()

    def close(self) -> None:
        """Release the connection."""
        self._base.close()

    async def aclose(self) -> None:
        """:meth:`close`, also for the running loop's async connection."""
        await self._base.aclose()
