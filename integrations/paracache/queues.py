"""Work queues on Redis Streams: a reliable job queue for LLM work, framework-free.

Embedding jobs, batch completions, evaluation runs: a producer :meth:`WorkQueue.put`\\ s a
JSON payload, workers :meth:`~WorkQueue.get` jobs, do them and :meth:`~WorkQueue.ack`
them (or :meth:`~WorkQueue.fail` them). The logic is written once, as sans-IO flows run
by :class:`paracache.redisflow.Link` with blocking calls or on asyncio (every method has
an ``a``-prefixed twin).

* **At least once.** A delivered job stays pending in the stream's consumer group until it
  is acknowledged. A job whose worker died (or outlived ``visibility_timeout`` without
  :meth:`~WorkQueue.touch`) is claimed (``XAUTOCLAIM``) by the next :meth:`~WorkQueue.get`
  of any worker, so a handler may run more than once: make it idempotent.
* **Dead letters.** A job is delivered at most ``max_deliveries`` times: a job failed on
  its last delivery, failed with ``retry=False``, or found expired after its last delivery
  moves (in the same script, atomically) to the queue's dead-letter stream, with its last
  error.
  :meth:`~WorkQueue.dead` lists them, :meth:`~WorkQueue.requeue` puts them back.
* **Never lost silently.** ``max_length`` bounds the jobs not yet acknowledged; a full
  queue refuses :meth:`~WorkQueue.put` with :class:`QueueFull` (checked and added in one
  Lua script): nothing is ever trimmed. Redis unreachable: every method raises
  :class:`QueueError` with the failure's ``kind``. Unlike the cache, which fails open (a
  lookup that cannot reach Redis is a miss, and the app calls the model), a queue
  cannot: a producer told nothing would believe its job queued. Only the worker loop
  (:meth:`~WorkQueue.run`) outlives an outage: it logs, backs off and goes on.
* **Keys.** ``paracache:_q:<namespace>:{<digest of (tenant, name)>}:jobs`` (the stream),
  ``...:dead`` (the dead letters) and ``...:claim`` (where the search for expired jobs
  goes on). Tenants and queue names are digested: any text (glob, Lua or query
  syntax, a megabyte) is data, and one tenant's queue name can never name, read, claim,
  acknowledge or count another tenant's jobs. The braces are a Redis Cluster hash tag:
  a queue's keys share one slot (Redis Cluster itself is not supported yet, as for rate
  limits: a ``RedisCluster`` client is refused with a clear error).

Example:
    >>> queue = WorkQueue("embeddings", tenant="acme")          # doctest: +SKIP
    >>> queue.put({"doc": 17, "text": "Refunds within 30 days."})  # doctest: +SKIP
    '3f0c...'
    >>> [job] = queue.get("worker-1", block=1.0)                 # doctest: +SKIP
    >>> queue.ack(job)                                           # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, cast

import redis

from .errors import KINDS, CacheError, Kind
from .policy import MAX_TTL, CircuitBreaker, Throttle
from .reals import as_number, is_finite, is_int, is_real
from .redisflow import Batch, Call, Failure, Flow, Link, Script, Sleep
from .schema import check_namespace
from .scope import digest

__all__ = ["Job", "Outcome", "QueueError", "QueueFull", "QueueStats", "WorkQueue"]

logger = logging.getLogger("paracache")

#: The consumer group every worker of a queue reads in.
GROUP = "paracache"
#: What :meth:`WorkQueue.fail` did: given back for another delivery, made a dead letter,
#: or nothing (the job was no longer this worker's: re-delivered, acknowledged or dead).
Outcome = Literal["retried", "dead", "stale"]

#: The consumer that holds a job given back by :meth:`WorkQueue.fail` until a worker
#: claims it (no worker may take this name).
GIVEN_BACK = "paracache:given-back"
#: Most jobs one :meth:`WorkQueue.get` or :meth:`WorkQueue.put_many` handles.
MAX_BATCH = 1000
#: Dead letters a :meth:`WorkQueue.requeue` of all moves per script (one round trip each).
REQUEUE_PAGE = 200

# Shared Lua: make the stream and its group on first use; read one field of an entry.
_LUA_COMMON = """
local function ensure(key, group)
  if redis.call('EXISTS', key) == 0 then
    redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
  end
end
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end
"""

#: KEYS: stream. ARGV: group, max_length, then (job id, payload) pairs.
#: Reply: {1, entry ids...} or {0, current length} (full: nothing added).
PUT_SCRIPT = _LUA_COMMON + """
ensure(KEYS[1], ARGV[1])
local n = redis.call('XLEN', KEYS[1])
local k = (#ARGV - 2) / 2
if n + k > tonumber(ARGV[2]) then return {0, n} end
local out = {1}
for i = 3, #ARGV, 2 do
  out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'p', ARGV[i + 1])
end
return out
"""

#: KEYS: stream, dead letters, claim cursor. ARGV: group, consumer, count, visibility
#: (ms), max_deliveries. Claims expired jobs (dead-lettering those past max_deliveries),
#: going on through the pending jobs where the last get stopped (each ``XAUTOCLAIM``
#: looks at ten entries per job wanted: a fixed start would never reach an expired job
#: behind many live ones), then reads new ones (without blocking: a script cannot).
#: Reply: {jobs, dead-lettered} with each job {entry id, fields, deliveries}.
GET_SCRIPT = _LUA_COMMON + """
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
local want = tonumber(ARGV[3])
local max = tonumber(ARGV[5])
local out = {}
local dead = 0
local cursor = redis.call('GET', KEYS[3]) or '0-0'
local wraps = 0
for _ = 1, 16 do
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], cursor, 'COUNT',
    want - #out)
  cursor = r[1]
  if cursor == '0-0' then wraps = wraps + 1 end
  for _, e in ipairs(r[2]) do
    if e and e[2] then
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
      local n = p[1] and p[1][4] or 1
      if n > max then
        redis.call('XADD', KEYS[2], '*', 'id', field(e[2], 'id') or '', 'p',
          field(e[2], 'p') or 'null', 'n', n - 1, 'err',
          'not acknowledged within the visibility timeout')
        redis.call('XACK', KEYS[1], ARGV[1], e[1])
        redis.call('XDEL', KEYS[1], e[1])
        dead = dead + 1
      else
        out[#out + 1] = {e[1], e[2], n}
      end
    end
  end
  if wraps == 2 or #out >= want then break end
end
redis.call('SET', KEYS[3], cursor)
if #out < want then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want - #out,
    'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do out[#out + 1] = {e[1], e[2], 1} end
  end
end
return {out, dead}
"""

# Is the job at this entry still delivered to this consumer, this many times? (A job
# re-delivered to another worker, acknowledged or dead-lettered is no longer ours.)
_LUA_OWNED = """
local function owned(key, group, entry, job, consumer, n)
  local e = redis.call('XRANGE', key, entry, entry)
  if #e == 0 or field(e[1][2], 'id') ~= job then return false end
  local p = redis.call('XPENDING', key, group, entry, entry, 1)
  if #p == 0 or p[1][2] ~= consumer or tostring(p[1][4]) ~= n then return false end
  return e[1][2]
end
"""

#: KEYS: stream. ARGV: group, entry id, job id. Reply: 1 acknowledged, 0 not pending.
ACK_SCRIPT = _LUA_COMMON + """
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #e == 0 or field(e[1][2], 'id') ~= ARGV[3] then return 0 end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

#: KEYS: stream, dead letters. ARGV: group, entry id, job id, consumer, deliveries,
#: mode ("retry", "dead" or "touch"), max_deliveries, idle (ms) a retried job gets,
#: error text, the consumer that holds jobs given back.
#: Reply: 0 stale (no longer this consumer's), 1 retried or touched, 2 dead-lettered.
FAIL_SCRIPT = _LUA_COMMON + _LUA_OWNED + """
local fields = owned(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if not fields then return 0 end
local mode = ARGV[6]
if mode == 'touch' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, ARGV[2], 'IDLE', 0, 'JUSTID')
  return 1
end
if mode == 'retry' and tonumber(ARGV[5]) < tonumber(ARGV[7]) then
  -- Given back: no longer this worker's, claimable by any get once idle long enough.
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[10], 0, ARGV[2], 'IDLE', ARGV[8], 'JUSTID')
  return 1
end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'p', field(fields, 'p') or 'null',
  'n', ARGV[5], 'err', ARGV[9])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 2
"""

#: KEYS: stream, dead letters. ARGV: group, max_length, limit, then dead entry ids and
#: their job ids in pairs (none: the oldest ``limit`` dead letters). Moves each back to
#: the stream as a new delivery count, while the queue has room. Reply: {moved, full
#: (1/0), dead letters left}.
REQUEUE_SCRIPT = _LUA_COMMON + """
ensure(KEYS[1], ARGV[1])
local rows = {}
if #ARGV == 3 then
  rows = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[3]))
else
  for i = 4, #ARGV, 2 do
    local e = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
    if #e > 0 and field(e[1][2], 'id') == ARGV[i + 1] then rows[#rows + 1] = e[1] end
  end
end
local cap = tonumber(ARGV[2])
local moved = 0
local full = 0
for _, e in ipairs(rows) do
  if redis.call('XLEN', KEYS[1]) >= cap then full = 1 break end
  redis.call('XADD', KEYS[1], '*', 'id', field(e[2], 'id') or '', 'p', field(e[2], 'p') or 'null')
  redis.call('XDEL', KEYS[2], e[1])
  moved = moved + 1
end
return {moved, full, redis.call('XLEN', KEYS[2])}
"""

#: KEYS: stream. ARGV: group, consumer. Deletes the consumer if it holds no job.
FORGET_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(p) ~= 'table' or p.err or #p > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""

#: KEYS: stream, dead letters. ARGV: group. Reply: {length, pending, dead, oldest entry
#: id or false, server seconds, microseconds}.
STATS_SCRIPT = """
local len = redis.call('XLEN', KEYS[1])
local pending = 0
if len > 0 then
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
  if type(p) == 'table' and p[1] then pending = p[1] end
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local t = redis.call('TIME')
return {len, pending, redis.call('XLEN', KEYS[2]), first[1] and first[1][1] or false, t[1], t[2]}
"""


class QueueError(CacheError):
    """A queue operation could not be carried out: the job was *not* queued (``put``),
    nothing was read (``get``), ... ``kind`` says how Redis failed (see
    :data:`paracache.errors.Kind`; ``unavailable`` too while the circuit breaker, opened by
    earlier failures, skips Redis; ``None`` for :class:`QueueFull`).

    A ``timeout`` is the one ambiguous kind: the command may have run before its reply was
    lost, so a ``put`` that timed out may have queued its job (at least once: a producer
    that retries may queue it twice).

    Example:
        >>> QueueError("paracache: Redis unavailable", kind="unavailable").kind
        'unavailable'
    """


class QueueFull(QueueError):
    """:meth:`WorkQueue.put` refused: the queue holds ``max_length`` jobs not yet
    acknowledged (``length``). Nothing was added; nothing was trimmed.

    Example:
        >>> QueueFull("full", length=10, max_length=10).length
        10
    """

    def __init__(self, *args: object, length: int, max_length: int) -> None:
        super().__init__(*args, kind=None)
        self.length = length
        self.max_length = max_length


@dataclasses.dataclass(frozen=True)
class Job:
    """A job as delivered to a worker (or as listed among the dead letters).

    Attributes:
        id: The id :meth:`WorkQueue.put` returned (kept by retries and requeues).
        payload: The payload, as ``json.loads`` reads it back.
        deliveries: How many times it was delivered, this delivery included (dead
            letters: how many times it had been).
        enqueued_at: When it was put (or requeued; a dead letter: when it died), seconds
            since the epoch, on the server's clock.
        consumer: The worker it is delivered to (``""`` for a dead letter).
        error: A dead letter's last error (``None`` otherwise).
        entry: Its stream entry id (what :meth:`WorkQueue.ack` names).

    Example:
        >>> job = Job("j1", {"doc": 1}, 1, 0.0, "w1", None, "1-0", "q")
        >>> job.payload["doc"], job.deliveries
        (1, 1)
    """

    id: str
    payload: Any
    deliveries: int
    enqueued_at: float
    consumer: str
    error: str | None
    entry: str
    queue: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """What a queue holds now (all workers, all processes).

    Attributes:
        length: Jobs not yet acknowledged: waiting plus delivered (at most ``max_length``).
        pending: Of those, delivered and not acknowledged: in progress, given back by
            :meth:`WorkQueue.fail` for another delivery, or whose worker died.
        dead: Dead letters.
        oldest_age: Seconds since the oldest job not yet acknowledged was put (``None``
            when there is none).

    Example:
        >>> QueueStats(length=3, pending=1, dead=0, oldest_age=2.5).waiting
        2
    """

    length: int
    pending: int
    dead: int
    oldest_age: float | None

    @property
    def waiting(self) -> int:
        """Jobs not delivered yet."""
        return self.length - self.pending


class _Stop(Protocol):
    def is_set(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class _Raised:
    error: BaseException


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {_text(k): v for k, v in raw.items()}
    items = list(raw or [])
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _entry_ms(entry: str) -> int:
    head = entry.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    """``value`` as a plain number if it is a (finite) real number, not a bool, numpy's
    scalars included (:mod:`paracache.reals`), and positive (or zero where allowed)."""
    if not (is_int(value) if integer else is_real(value) and is_finite(value)):
        kind = "an int" if integer else "a finite number"
        raise TypeError(f"{name} must be {kind}, got {value!r:.60}")
    number = as_number(value)
    if number < 0 or (number == 0 and not zero):
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}")
    return number


def _consumer(consumer: Any) -> str:
    if not isinstance(consumer, str):
        raise TypeError(f"consumer must be a str, got {type(consumer).__name__}")
    if not consumer or len(consumer) > 256:
        raise ValueError(f"consumer must be 1 to 256 characters, got {len(consumer)}")
    if consumer == GIVEN_BACK:
        raise ValueError(f"{GIVEN_BACK!r} is the queue's own consumer name")
    return consumer


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class WorkQueue:
    """A reliable job queue on a Redis stream and its consumer group (see the module docs).

    Args:
        name: The queue's name: any text (it is digested into the keys).
        redis_url: Where Redis is (default: ``PARACACHE_REDIS_URL``, ``REDIS_URL``, else the
            embedded server). ``redis_client``: your own ``redis.Redis`` instead.
        tenant: Whose queue this is; tenants never see each other's jobs (``None`` and
            ``""`` are two different tenants).
        namespace: Key prefix, as for the cache (letters, digits, ``_.-``).
        max_length: Most jobs not yet acknowledged; beyond it ``put`` raises
            :class:`QueueFull`.
        visibility_timeout: Seconds a delivered job may go unacknowledged (and untouched)
            before another worker's ``get`` claims it.
        max_deliveries: Most deliveries of a job before it becomes a dead letter.
        max_payload_bytes: Largest payload, as UTF-8 JSON.
        timeout: Seconds each Redis call may take (a blocking ``get`` waits in slices
            shorter than this).

    Example:
        >>> WorkQueue("evals", redis_url="redis://localhost:6379")   # doctest: +SKIP
        WorkQueue(name='evals', tenant=None, namespace='default')
    """

    def __init__(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        tenant: str | None = None,
        namespace: str = "default",
        max_length: int = 100_000,
        visibility_timeout: float = 300.0,
        max_deliveries: int = 5,
        max_payload_bytes: int = 1 << 20,
        timeout: float = 1.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("name must not be empty")
        if tenant is not None and not isinstance(tenant, str):
            raise TypeError(f"tenant must be a str or None, got {type(tenant).__name__}")
        check_namespace(namespace)
        self.max_length: int = _positive("max_length", max_length, integer=True)
        self.visibility_timeout = float(_positive("visibility_timeout", visibility_timeout))
        if self.visibility_timeout > MAX_TTL or self.visibility_timeout < 0.001:
            raise ValueError(
                f"visibility_timeout must be 0.001 to {MAX_TTL:.0e} s, got {visibility_timeout!r}"
            )
        self.max_deliveries: int = _positive("max_deliveries", max_deliveries, integer=True)
        self.max_payload_bytes: int = _positive("max_payload_bytes", max_payload_bytes,
                                                integer=True)
        _positive("timeout", timeout)
        self.name = name
        self.tenant = tenant
        self.namespace = namespace
        self._link = Link(
            redis_url,
            redis_client=redis_client,
            timeout=timeout,
            name=f"paracache:{namespace}:queue",
            breaker=breaker,
        )
        # One blocking read's wait: well within the command timeout (a caller's client:
        # its own socket timeout), or the read would fail as a timeout on an idle queue.
        limit: Any = timeout
        if redis_client is not None:
            limit = redis_client.connection_pool.connection_kwargs.get("socket_timeout")
        self._slice = 1.0 if not limit else max(0.001, min(1.0, float(limit) / 2))
        self._tag = digest("queue/v1", tenant, name)
        prefix = f"paracache:_q:{namespace}:{{{self._tag}}}"
        #: The stream, the dead letters, the claim cursor.
        self.keys: tuple[str, str, str] = (prefix + ":jobs", prefix + ":dead",
                                           prefix + ":claim")
        self._throttle = Throttle(every=10.0)

    # ------------------------------------------------------------------ helpers

    def _raise(self, failure: Failure, what: str) -> None:
        kind = cast(Kind, failure.kind) if failure.kind in KINDS else "unavailable"
        raise QueueError(
            f"paracache: queue {what} failed: Redis {failure.kind} ({failure.error})", kind=kind
        )

    def _encode(self, payload: Any) -> bytes:
        try:
            text = json.dumps(payload, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":"))
        except (TypeError, ValueError) as exc:  # RecursionError is a RuntimeError
            raise TypeError(
                f"a job's payload must be JSON-serialisable (dicts, lists, str, int, float, "
                f"bool, None): {exc}"
            ) from exc
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > self.max_payload_bytes:
            raise ValueError(
                f"a job's payload is {len(data)} bytes as JSON, more than max_payload_bytes="
                f"{self.max_payload_bytes}: store large inputs elsewhere and queue their key"
            )
        return data

    def _job(self, entry: Any, fields: Any, deliveries: Any, consumer: str) -> Job:
        data = _fields(fields)
        entry_id = _text(entry)
        raw = data.get("p", b"null")
        try:
            payload = json.loads(_text(raw))
        except ValueError:  # not written by a queue: given as it is, never dropped
            payload = _text(raw)
        err = data.get("err")
        return Job(
            id=_text(data.get("id", b"")),
            payload=payload,
            deliveries=int(deliveries),
            enqueued_at=_entry_ms(entry_id) / 1000,
            consumer=consumer,
            error=None if err is None else _text(err),
            entry=entry_id,
            queue=self._tag,
        )

    def _own(self, job: Any) -> Job:
        if not isinstance(job, Job):
            raise TypeError(f"expected a paracache.queues.Job, got {type(job).__name__}")
        if job.queue != self._tag:
            raise ValueError(f"job {job.id!r} belongs to another queue (or another tenant's)")
        return job

    # ------------------------------------------------------------------ flows

    def _put_flow(self, payloads: Sequence[Any]) -> Flow[list[str]]:
        if isinstance(payloads, (str, bytes)) or not isinstance(payloads, Sequence):
            raise TypeError("put_many takes a sequence (a list) of payloads")
        if len(payloads) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} jobs per put_many, got {len(payloads)}")
        if not payloads:
            return []
        ids = [uuid.uuid4().hex for _ in payloads]
        args: list[Any] = [GROUP, self.max_length]
        for job_id, payload in zip(ids, payloads, strict=True):
            args += [job_id, self._encode(payload)]
        reply = yield Script(PUT_SCRIPT, self.keys[:1], tuple(args))
        if isinstance(reply, Failure):
            self._raise(reply, "put (it may have run before its reply was lost: the job may "
                        "be queued)" if reply.kind == "timeout" else "put (the job was not queued)")
        if int(reply[0]) == 0:
            length = int(reply[1])
            raise QueueFull(
                f"paracache: queue {self.name!r} is full: {length} jobs not yet acknowledged, "
                f"max_length={self.max_length}; {len(payloads)} more refused, nothing queued",
                length=length,
                max_length=self.max_length,
            )
        return ids

    def _get_flow(self, consumer: str, count: int, block: float) -> Flow[list[Job]]:
        consumer = _consumer(consumer)
        count = _positive("count", count, integer=True)
        if count > MAX_BATCH:
            raise ValueError(f"count must be at most {MAX_BATCH}, got {count}")
        block = float(_positive("block", block, zero=True))
        deadline = time.monotonic() + block
        args = (GROUP, consumer, count, math.ceil(self.visibility_timeout * 1000),
                self.max_deliveries)
        while True:
            reply = yield Script(GET_SCRIPT, self.keys, args)
            if isinstance(reply, Failure):
                self._raise(reply, "get")
            rows, dead = reply
            if int(dead):
                logger.warning(
                    "paracache: queue %r: %d job(s) expired after %d deliveries became dead "
                    "letters", self.name, int(dead), self.max_deliveries,
                )  # fmt: skip
            if rows:
                return [self._job(r[0], r[1], r[2], consumer) for r in rows]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            # A script cannot block: wait for new jobs with a blocking read, in slices
            # shorter than the command timeout, claiming expired jobs between slices.
            wait_ms = max(1, math.ceil(min(left, self._slice) * 1000))
            read = yield Batch(
                (("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "BLOCK", wait_ms,
                  "STREAMS", self.keys[0], ">"),),
                transaction=False,
            )  # fmt: skip
            if isinstance(read, Failure):
                self._raise(read, "get")
            jobs = [
                self._job(entry, fields, 1, consumer)
                for entries in _stream_entries(read[0])
                for entry, fields in entries
            ]
            if jobs:
                return jobs

    def _ack_flow(self, job: Job) -> Flow[bool]:
        job = self._own(job)
        reply = yield Script(ACK_SCRIPT, self.keys[:1], (GROUP, job.entry, job.id))
        if isinstance(reply, Failure):
            self._raise(reply, "ack")
        if not int(reply):
            logger.info("paracache: queue %r: job %s was no longer pending (acknowledged "
                        "after a re-delivery, or a dead letter)", self.name, job.id)
        return bool(int(reply))

    def _fail_flow(
        self, job: Job, mode: str, delay: float, error: str | None
    ) -> Flow[Literal["retried", "dead", "stale", "touched"]]:
        job = self._own(job)
        delay = float(_positive("delay", delay, zero=True))
        if error is not None and not isinstance(error, str):
            raise TypeError(f"error must be a str or None, got {type(error).__name__}")
        vis_ms = math.ceil(self.visibility_timeout * 1000)
        idle = max(0, vis_ms - math.ceil(delay * 1000))
        reply = yield Script(FAIL_SCRIPT, self.keys[:2], (
            GROUP, job.entry, job.id, job.consumer, str(job.deliveries), mode,
            self.max_deliveries, idle, (error or "")[:4096], GIVEN_BACK,
        ))  # fmt: skip
        if isinstance(reply, Failure):
            self._raise(reply, "touch" if mode == "touch" else "fail")
        outcome = int(reply)
        if outcome == 0:
            return "stale"
        if outcome == 2:
            return "dead"
        return "touched" if mode == "touch" else "retried"

    def _dead_flow(self, count: int) -> Flow[list[Job]]:
        count = _positive("count", count, integer=True)
        reply = yield Batch(
            (("XRANGE", self.keys[1], "-", "+", "COUNT", count),), transaction=False
        )
        if isinstance(reply, Failure):
            self._raise(reply, "dead-letter listing")
        return [
            self._job(entry, fields, int(_fields(fields).get("n", 0) or 0), "")
            for entry, fields in reply[0] or []
        ]

    def _requeue_flow(self, jobs: Sequence[Job] | None) -> Flow[int]:
        pairs: list[str] = []
        if jobs is not None:
            if isinstance(jobs, Job) or not isinstance(jobs, Sequence):
                raise TypeError("requeue takes a sequence of dead-letter Jobs (from dead()) "
                                "or None (all)")
            for job in jobs:
                job = self._own(job)
                pairs += [job.entry, job.id]
            if not pairs:
                return 0
        moved = 0
        for start in range(0, max(len(pairs), 1), 2 * REQUEUE_PAGE):
            chunk = pairs[start:start + 2 * REQUEUE_PAGE]
            while True:
                reply = yield Script(
                    REQUEUE_SCRIPT, self.keys[:2], (GROUP, self.max_length, REQUEUE_PAGE, *chunk)
                )
                if isinstance(reply, Failure):
                    self._raise(reply, f"requeue (after {moved} requeued)")
                n, full, left = int(reply[0]), int(reply[1]), int(reply[2])
                moved += n
                if full:
                    raise QueueFull(
                        f"paracache: queue {self.name!r} filled up after {moved} dead letters "
                        f"were requeued; the others are still dead letters",
                        length=self.max_length,
                        max_length=self.max_length,
                    )
                if chunk or n == 0 or left == 0:
                    break
        return moved

    def _purge_flow(self) -> Flow[int]:
        reply = yield Batch((("XLEN", self.keys[1]), ("DEL", self.keys[1])))
        if isinstance(reply, Failure):
            self._raise(reply, "dead-letter purge")
        return int(reply[0])

    def _stats_flow(self) -> Flow[QueueStats]:
        reply = yield Script(STATS_SCRIPT, self.keys[:2], (GROUP,))
        if isinstance(reply, Failure):
            self._raise(reply, "stats")
        length, pending, dead, first, secs, micros = reply
        oldest = None
        if first:
            now_ms = int(secs) * 1000 + int(micros) / 1000
            oldest = max(0.0, (now_ms - _entry_ms(_text(first))) / 1000)
        return QueueStats(int(length), int(pending), int(dead), oldest)

    def _run_flow(
        self,
        handler: Callable[[Job], Any],
        consumer: str | None,
        count: int,
        max_jobs: int | None,
        stop: _Stop | None,
        max_backoff: float,
        blocking: bool,
    ) -> Flow[int]:
        if not callable(handler):
            raise TypeError("handler must be callable")
        consumer = _consumer(consumer if consumer is not None else _default_consumer())
        if max_jobs is not None:
            _positive("max_jobs", max_jobs, integer=True)
        max_backoff = float(_positive("max_backoff", max_backoff))
        if stop is not None and not callable(getattr(stop, "is_set", None)):
            raise TypeError("stop must have is_set() (a threading.Event or asyncio.Event)")
        done = 0
        backoff = 0.0
        while (max_jobs is None or done < max_jobs) and not (stop is not None and stop.is_set()):
            want = count if max_jobs is None else min(count, max_jobs - done)
            try:
                jobs = yield from self._get_flow(consumer, want, 1.0)
            except QueueError as exc:
                backoff = min(max_backoff, backoff * 2 if backoff else 0.1)
                self._log_outage(exc, "get", backoff)
                yield Sleep(backoff * random.uniform(0.5, 1.0))
                continue
            backoff = 0.0
            for job in jobs:
                outcome = yield Call(_guarded(handler, blocking), (job,))
                try:
                    if isinstance(outcome, _Raised):
                        err = outcome.error
                        logger.warning(
                            "paracache: queue %r: job %s failed (delivery %d of %d): %s: %s",
                            self.name, job.id, job.deliveries, self.max_deliveries,
                            type(err).__name__, err, exc_info=err,
                        )  # fmt: skip
                        yield from self._fail_flow(
                            job, "retry", 0.0, f"{type(err).__name__}: {err}"
                        )
                    else:
                        yield from self._ack_flow(job)
                except QueueError as exc:
                    # The job stays pending: re-delivered after the visibility timeout.
                    self._log_outage(exc, "ack" if not isinstance(outcome, _Raised) else "fail",
                                     0.0)
                done += 1
        # A clean exit: this worker's name leaves the group's list of consumers, unless
        # it still holds jobs (they would lose their way back: kept to be claimed).
        gone = yield Script(FORGET_SCRIPT, self.keys[:1], (GROUP, consumer))
        if isinstance(gone, Failure):
            logger.debug("paracache: queue %r: consumer %r not forgotten (%s)", self.name,
                         consumer, gone.kind)
        return done

    def _log_outage(self, exc: QueueError, what: str, backoff: float) -> None:
        message = "paracache: queue %r: %s failed (%s); the worker goes on%s"
        after = f", next try in {backoff:.1f} s" if backoff else " (re-delivered later)"
        level = logging.WARNING if self._throttle.due(f"{what}:{exc.kind}") else logging.DEBUG
        logger.log(level, message, self.name, what, exc.kind, after)

    # ------------------------------------------------------------------ API

    def put(self, payload: Any) -> str:
        """Queue one job; returns its id. Raises :class:`QueueFull` when the queue is full
        and :class:`QueueError` when Redis failed: either way the job was not queued.

        Example:
            >>> queue.put({"prompt": "Summarise ticket 42", "model": "gpt-4o-mini"})
            ...     # doctest: +SKIP
            '9b1d...'
        """
        return self._link.run(self._put_flow([payload]))[0]

    async def aput(self, payload: Any) -> str:
        """:meth:`put` without blocking the event loop.

        Example:
            >>> await queue.aput({"doc": 1})  # doctest: +SKIP
        """
        return (await self._link.arun(self._put_flow([payload])))[0]

    def put_many(self, payloads: Sequence[Any]) -> list[str]:
        """Queue several jobs at once (up to :data:`MAX_BATCH`), all or none: a queue
        without room for all of them refuses all (:class:`QueueFull`).

        Example:
            >>> queue.put_many([{"doc": i} for i in range(100)])  # doctest: +SKIP
        """
        return self._link.run(self._put_flow(payloads))

    async def aput_many(self, payloads: Sequence[Any]) -> list[str]:
        """:meth:`put_many` without blocking the event loop.

        Example:
            >>> await queue.aput_many([{"doc": 1}, {"doc": 2}])  # doctest: +SKIP
        """
        return await self._link.arun(self._put_flow(payloads))

    def get(self, consumer: str, *, count: int = 1, block: float = 5.0) -> list[Job]:
        """Up to ``count`` jobs for the worker ``consumer``: expired jobs of dead workers
        first, then new ones; waits up to ``block`` seconds for one (``0``: not at all).
        Returns ``[]`` if none came. Raises :class:`QueueError` when Redis failed.

        Example:
            >>> for job in queue.get("worker-1", count=10, block=2.0):  # doctest: +SKIP
            ...     embed(job.payload); queue.ack(job)
        """
        return self._link.run(self._get_flow(consumer, count, block))

    async def aget(self, consumer: str, *, count: int = 1, block: float = 5.0) -> list[Job]:
        """:meth:`get` without blocking the event loop.

        Example:
            >>> jobs = await queue.aget("worker-1", block=1.0)  # doctest: +SKIP
        """
        return await self._link.arun(self._get_flow(consumer, count, block))

    def ack(self, job: Job) -> bool:
        """Acknowledge a job: done, removed from the queue. ``False`` if it was no longer
        pending (another worker acknowledged it after a re-delivery, or it became a dead
        letter). Raises :class:`QueueError` when Redis failed (the job stays pending and is
        re-delivered after the visibility timeout), ``ValueError`` for another queue's job.

        Example:
            >>> queue.ack(job)  # doctest: +SKIP
            True
        """
        return self._link.run(self._ack_flow(job))

    async def aack(self, job: Job) -> bool:
        """:meth:`ack` without blocking the event loop.

        Example:
            >>> await queue.aack(job)  # doctest: +SKIP
            True
        """
        return await self._link.arun(self._ack_flow(job))

    def fail(
        self, job: Job, *, retry: bool = True, delay: float = 0.0, error: str | None = None
    ) -> Outcome:
        """Give a job back: with ``retry`` it is re-delivered (to any worker) after
        ``delay`` seconds, unless it had its ``max_deliveries`` already; then, or without
        ``retry``, it becomes a dead letter holding ``error``. ``"stale"``: the job was no
        longer this worker's (re-delivered to another, acknowledged or dead): nothing done.

        Example:
            >>> queue.fail(job, error="RateLimitError: 429")  # doctest: +SKIP
            'retried'
        """
        mode = "retry" if retry else "dead"
        return cast(Outcome, self._link.run(self._fail_flow(job, mode, delay, error)))

    async def afail(
        self, job: Job, *, retry: bool = True, delay: float = 0.0, error: str | None = None
    ) -> Outcome:
        """:meth:`fail` without blocking the event loop.

        Example:
            >>> await queue.afail(job, retry=False, error="bad input")  # doctest: +SKIP
            'dead'
        """
        mode = "retry" if retry else "dead"
        return cast(Outcome, await self._link.arun(self._fail_flow(job, mode, delay, error)))

    def touch(self, job: Job) -> bool:
        """Tell the queue a long job is still being worked on: its visibility timeout
        starts again. ``False`` if the job is no longer this worker's.

        Example:
            >>> queue.touch(job)  # doctest: +SKIP
            True
        """
        return self._link.run(self._fail_flow(job, "touch", 0.0, None)) == "touched"

    async def atouch(self, job: Job) -> bool:
        """:meth:`touch` without blocking the event loop.

        Example:
            >>> await queue.atouch(job)  # doctest: +SKIP
            True
        """
        return (await self._link.arun(self._fail_flow(job, "touch", 0.0, None))) == "touched"

    def dead(self, count: int = 100) -> list[Job]:
        """The oldest ``count`` dead letters (each with its ``error`` and ``deliveries``).

        Example:
            >>> [(j.id, j.error) for j in queue.dead()]  # doctest: +SKIP
            [('9b1d...', 'TimeoutError: model took 60 s')]
        """
        return self._link.run(self._dead_flow(count))

    async def adead(self, count: int = 100) -> list[Job]:
        """:meth:`dead` without blocking the event loop.

        Example:
            >>> await queue.adead(10)  # doctest: +SKIP
        """
        return await self._link.arun(self._dead_flow(count))

    def requeue(self, jobs: Sequence[Job] | None = None) -> int:
        """Put dead letters back in the queue (``jobs`` from :meth:`dead`, or all), with
        their ids and payloads and a fresh count of deliveries; returns how many moved.
        Raises :class:`QueueFull` if the queue filled up first (the rest stay dead
        letters: a job is in one stream or the other, never neither).

        Example:
            >>> queue.requeue()  # doctest: +SKIP
            3
        """
        return self._link.run(self._requeue_flow(jobs))

    async def arequeue(self, jobs: Sequence[Job] | None = None) -> int:
        """:meth:`requeue` without blocking the event loop.

        Example:
            >>> await queue.arequeue()  # doctest: +SKIP
            3
        """
        return await self._link.arun(self._requeue_flow(jobs))

    def purge_dead(self) -> int:
        """Delete every dead letter; returns how many there were.

        Example:
            >>> queue.purge_dead()  # doctest: +SKIP
            2
        """
        return self._link.run(self._purge_flow())

    async def apurge_dead(self) -> int:
        """:meth:`purge_dead` without blocking the event loop.

        Example:
            >>> await queue.apurge_dead()  # doctest: +SKIP
            2
        """
        return await self._link.arun(self._purge_flow())

    def stats(self) -> QueueStats:
        """Length, pending, dead letters and the oldest job's age, read from Redis.

        Example:
            >>> queue.stats()  # doctest: +SKIP
            QueueStats(length=12, pending=2, dead=0, oldest_age=3.2)
        """
        return self._link.run(self._stats_flow())

    async def astats(self) -> QueueStats:
        """:meth:`stats` without blocking the event loop.

        Example:
            >>> (await queue.astats()).length  # doctest: +SKIP
            12
        """
        return await self._link.arun(self._stats_flow())

    def run(
        self,
        handler: Callable[[Job], Any],
        *,
        consumer: str | None = None,
        count: int = 1,
        max_jobs: int | None = None,
        stop: _Stop | None = None,
        max_backoff: float = 5.0,
    ) -> int:
        """A worker loop: get jobs, call ``handler(job)``, ack it when it returns, fail it
        (retried, or a dead letter after ``max_deliveries``) when it raises. Redis down:
        logs a warning and backs off (up to ``max_backoff`` seconds) instead of raising.
        Runs until ``max_jobs`` were handled or ``stop.is_set()``; returns how many were.
        ``consumer``: the worker's name in the group (default: host, pid and a random
        part); a stable name (a pod's) keeps the group's list of consumers short, which a
        clean exit also does by leaving it.

        Example:
            >>> stop = threading.Event()                              # doctest: +SKIP
            >>> queue.run(lambda job: embed(job.payload["text"]), stop=stop)  # doctest: +SKIP
        """
        return self._link.run(
            self._run_flow(handler, consumer, count, max_jobs, stop, max_backoff, True)
        )

    async def arun(
        self,
        handler: Callable[[Job], Any] | Callable[[Job], Awaitable[Any]],
        *,
        consumer: str | None = None,
        count: int = 1,
        max_jobs: int | None = None,
        stop: _Stop | None = None,
        max_backoff: float = 5.0,
    ) -> int:
        """:meth:`run` on asyncio; ``handler`` may be ``async``.

        Example:
            >>> await queue.arun(embed_job, max_jobs=100)  # doctest: +SKIP
            100
        """
        return await self._link.arun(
            self._run_flow(handler, consumer, count, max_jobs, stop, max_backoff, False)
        )

    def close(self) -> None:
        """Release the connections.

        Example:
            >>> queue.close()  # doctest: +SKIP
        """
        self._link.close()

    async def aclose(self) -> None:
        """:meth:`close`, also for the running loop's async connection.

        Example:
            >>> await queue.aclose()  # doctest: +SKIP
        """
        await self._link.aclose()

    def __repr__(self) -> str:
        return (
            f"WorkQueue(name={self.name!r}, tenant={self.tenant!r}, "
            f"namespace={self.namespace!r})"
        )


def _guarded(handler: Callable[[Job], Any], blocking: bool) -> Callable[[Job], Any]:
    """The handler, its exception returned (as :class:`_Raised`) rather than raised: the
    drivers raise a call's exception out of the flow, and the worker loop must go on. An
    ``async`` handler in the blocking loop is a mistake, said at once."""

    def call(job: Job) -> Any:
        try:
            result = handler(job)
        except Exception as exc:
            return _Raised(exc)
        if inspect.isawaitable(result):
            if blocking:
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError("the handler returned an awaitable: run is blocking, use "
                                "arun for an async handler")
            return _awaited(result)
        return result

    return call


async def _awaited(result: Awaitable[Any]) -> Any:
    try:
        return await result
    except Exception as exc:
        return _Raised(exc)


def _stream_entries(reply: Any) -> list[Any]:
    """The entry lists of an ``XREADGROUP`` reply as redis-py parses it (RESP2: a list of
    ``[stream, entries]``; RESP3: a dict of stream to ``[entries]``)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [e[0] if len(e) == 1 and isinstance(e[0], list) else e for e in reply.values()]
    return [entries for _name, entries in reply]
