"""LangChain adapter: ``RedisRateLimiter``, a ``BaseRateLimiter`` shared across processes.

It only translates: the limits live in :class:`paracache.limiter.RateLimiter` (Redis,
one Lua script, the server's clock). Plug it into any chat model's ``rate_limiter=``;
for budgets of tokens or money, add :meth:`RedisRateLimiter.usage_handler` to the
model's callbacks so each call's ``usage_metadata`` is charged after it returns.

Example:
    >>> from paracache.limiter import Limit
    >>> from paracache.ratelimit import RedisRateLimiter
    >>> limiter = RedisRateLimiter(requests_per_second=5, max_bucket_size=5, key="user:alice",
    ...     tiers=[Limit("tokens", 50_000, window=60, charged=True)])  # doctest: +SKIP
    >>> model = ChatOpenAI(model="gpt-4o-mini", rate_limiter=limiter,
    ...     callbacks=[limiter.usage_handler()])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.rate_limiters import BaseRateLimiter

from .limiter import ALGORITHMS, Limit, LimiterStats, RateLimiter

__all__ = ["RedisRateLimiter", "UsageCharger", "total_tokens"]

logger = logging.getLogger("paracache")


def total_tokens(usage: Mapping[str, Any]) -> float:
    """The default cost of a call: its ``total_tokens`` (else input + output).

    Example:
        >>> total_tokens({"input_tokens": 12, "output_tokens": 30, "total_tokens": 42})
        42.0
    """
    total = usage.get("total_tokens")
    if isinstance(total, (int, float)) and not isinstance(total, bool):
        return float(total)
    return float(usage.get("input_tokens", 0) or 0) + float(usage.get("output_tokens", 0) or 0)


class RedisRateLimiter(BaseRateLimiter):
    """``InMemoryRateLimiter``'s knobs, kept in Redis: exact across threads and processes.

    Args:
        requests_per_second: The primary tier's rate (``key``).
        check_every_n_seconds: How often a blocking acquire retries while Redis is
            unreachable and ``fail_open`` is ``False``. A refused request does not poll: it
            sleeps the wait the server computed (never spins), then asks again.
        max_bucket_size: Burst: the token bucket's size (a sliding window: ignored; its
            window holds ``requests_per_second * window`` requests).
        redis_url: Where Redis is (default: ``PARACACHE_REDIS_URL``, ``REDIS_URL``, else
            the embedded server). ``redis_client``: your own ``redis.Redis`` instead.
        key: Name of the primary tier; limiters with the same namespace and key share it.
        namespace: Key prefix, as for the cache.
        algorithm: ``"token_bucket"`` or ``"sliding_window"`` (the primary tier).
        window: The sliding window's seconds (default 1).
        tiers: More :class:`paracache.limiter.Limit` tiers checked in the same round trip
            (per tenant, per API key, global, token or money budgets).
        fail_open: While Redis is unreachable, admit (default; logged and counted) or
            refuse. With ``False`` a blocking acquire waits for Redis to come back (up to
            ``max_wait``): LangChain ignores ``acquire``'s return value, so waiting is the
            only way to hold a model call back.
        max_wait: The longest a blocking acquire waits (``None``: unbounded); then it
            returns ``False``.
        timeout: Seconds a Redis call may take before it counts as a failure.

    Example:
        >>> limiter = RedisRateLimiter(requests_per_second=2, key="demo")  # doctest: +SKIP
        >>> limiter.acquire(blocking=False)  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        *,
        requests_per_second: float = 1,
        check_every_n_seconds: float = 0.1,
        max_bucket_size: float = 1,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        key: str = "default",
        namespace: str = "default",
        algorithm: str = "token_bucket",
        window: float = 1.0,
        tiers: Sequence[Limit] = (),
        fail_open: bool = True,
        max_wait: float | None = None,
        timeout: float = 0.5,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        if isinstance(tiers, Limit) or not isinstance(tiers, Sequence):
            raise TypeError("tiers must be a sequence of paracache.limiter.Limit")
        if isinstance(requests_per_second, bool) or not isinstance(
            requests_per_second, (int, float)
        ):
            raise TypeError(f"requests_per_second must be a number, got {requests_per_second!r}")
        if not 0 < requests_per_second < math.inf:
            raise ValueError(
                f"requests_per_second must be a number > 0, got {requests_per_second!r}"
            )
        if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        primary = Limit(
            key,
            requests_per_second * window,
            window=window,
            algorithm=algorithm,
            burst=max_bucket_size if algorithm == "token_bucket" else None,
        )
        self.limiter = RateLimiter(
            [primary, *tiers],
            redis_url=redis_url,
            redis_client=redis_client,
            namespace=namespace,
            fail_open=fail_open,
            check_every_n_seconds=check_every_n_seconds,
            max_wait=max_wait,
            timeout=timeout,
        )

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take one request from every tier (waiting, if ``blocking``, without spinning)."""
        return self.limiter.acquire(blocking=blocking)

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """:meth:`acquire` on asyncio (``asyncio.sleep``; the loop is never blocked)."""
        return await self.limiter.aacquire(blocking=blocking)

    def charge(self, amount: float) -> bool:
        """Spend ``amount`` (tokens, money) from the ``charged`` tiers."""
        return self.limiter.charge(amount)

    async def acharge(self, amount: float) -> bool:
        """:meth:`charge` without blocking the event loop."""
        return await self.limiter.acharge(amount)

    def usage_handler(
        self, cost: Callable[[Mapping[str, Any]], float] = total_tokens
    ) -> UsageCharger:
        """A callback handler charging each call's ``usage_metadata`` (through ``cost``:
        total tokens by default; pass a function of the usage dict for money)."""
        return UsageCharger(self.limiter, cost)

    def stats(self) -> LimiterStats:
        """Counters (admitted, refused, waits, charges, failures) of this process."""
        return self.limiter.stats()

    def close(self) -> None:
        """Release the connections."""
        self.limiter.close()


class UsageCharger(BaseCallbackHandler):
    """Charges a limiter's budget tiers with each chat model call's reported usage.

    Reads ``AIMessage.usage_metadata`` of every generation (falling back to
    ``llm_output["token_usage"]``); calls without usage, and cache hits (whose usage
    langchain-core marks with ``total_cost: 0``), are not charged. A failure to
    charge (Redis down) is logged and counted, never raised into the call.

    Example:
        >>> handler = UsageCharger(limiter.limiter, lambda u: u["total_tokens"] * 1e-6)
        ...     # doctest: +SKIP
    """

    def __init__(
        self, limiter: RateLimiter, cost: Callable[[Mapping[str, Any]], float] = total_tokens
    ) -> None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError("limiter must be a paracache.limiter.RateLimiter")
        if not callable(cost):
            raise TypeError("cost must be callable")
        self.limiter = limiter
        self.cost = cost

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        """Charge the call's usage."""
        total = 0.0
        seen = False
        for generations in response.generations:
            for generation in generations:
                if isinstance(generation, ChatGeneration):
                    usage = getattr(generation.message, "usage_metadata", None)
                    if usage and usage.get("total_cost") == 0:
                        seen = True  # a cache hit (langchain-core zeroes its cost): free
                        continue
                    if usage:
                        total += float(self.cost(dict(usage)))
                        seen = True
        if not seen:
            usage = (response.llm_output or {}).get("token_usage")
            if isinstance(usage, Mapping) and usage:
                fixed = {
                    "input_tokens": usage.get("prompt_tokens", usage.get("input_tokens", 0)),
                    "output_tokens": usage.get(
                        "completion_tokens", usage.get("output_tokens", 0)
                    ),
                    "total_tokens": usage.get("total_tokens"),
                }
                total += float(self.cost(fixed))
                seen = True
        if seen and total > 0:
            self.limiter.charge(total)
