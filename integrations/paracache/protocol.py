"""The vocabulary between the core and its drivers: I/O requests, Lua scripts, replies.

The core's flows yield these requests; :mod:`paracache.driver` performs them (blocking or
asyncio) and sends back Redis's raw replies, which the helpers here read. Nothing here
decides anything about caching.

Example:
    >>> Call(("HGETALL", "paracache:faq:v1:abc:e:123")).args[0]
    'HGETALL'
    >>> search_rows([1, b"k", [b"prompt", b"hi"]])
    (1, [('k', {b'prompt': b'hi'})])
    >>> search_rows([1, b"k", None])  # a document that vanished before it was loaded
    (1, [('k', {})])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

from .errors import BackendError

__all__ = [
    "COUNT",
    "EXACT",
    "HITS",
    "PUT",
    "READ_SCOPES",
    "REGISTER_SCOPE",
    "SEARCH",
    "Batch",
    "Call",
    "Embed",
    "EmbedMany",
    "EnsureIndex",
    "Flow",
    "Join",
    "Op",
    "Post",
    "Ready",
    "Receive",
    "Script",
    "Send",
    "Submit",
    "post_script",
    "read_scopes_call",
    "run_script",
    "scope_rows",
    "search_rows",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- I/O requests


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One Redis command, e.g. ``Call(("HGETALL", key))``."""

    args: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Post:
    """One Redis command whose reply the flow does not wait for (the bookkeeping of a
    hit, once it is decided). A driver may send it and read its reply later, before the
    connection's next reply (:meth:`paracache.transport.ThreadConnections.post`: the
    command reaches the server before the lookup returns, at the cost of a send), or
    perform it like a :class:`Call`. The answer is ``None``; ``fallback`` is performed
    instead when the server answers ``NOSCRIPT`` (``EVAL`` with the script's source for
    an ``EVALSHA``). An error reply read later is logged and given to ``on_error`` (if
    any), never sent into the flow; a driver that performs it like a :class:`Call`
    raises it into the flow."""

    args: tuple[Any, ...]
    fallback: tuple[Any, ...] | None = None
    on_error: Callable[[BaseException], None] | None = dataclasses.field(
        default=None, compare=False
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Send one Redis command and go on without its reply: the answer is a handle for
    :class:`Receive`. Lets a flow do its own work (preparing the semantic layer) while
    the exact layer's reply is on the wire. A driver may also perform the command at
    once and keep its reply (or error) for :class:`Receive`. The flow receives it
    before its next Redis request.

    ``more``: further commands sent in the same write (a pipeline, not a transaction);
    :class:`Receive` then answers the list of all the replies (the first error reply
    among them raised once all are read)."""

    args: tuple[Any, ...]
    more: tuple[tuple[Any, ...], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Receive:
    """The reply of a :class:`Send` (an error reply is raised into the flow, as for a
    :class:`Call`)."""

    handle: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Ready:
    """Whether the reply of a :class:`Send` has arrived, answered at once (never waits):
    a flow skips work it would only do while waiting (an exact hit does not work out
    the model's input). ``False`` when the driver cannot tell cheaply; the reply is read
    with :class:`Receive` either way."""

    handle: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Several Redis commands in one round trip (``MULTI``/``EXEC`` if ``transaction``)."""

    calls: tuple[tuple[Any, ...], ...]
    transaction: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Embed:
    """Embed one text with the cache's vectorizer; the answer is a sequence of floats."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class EmbedMany:
    """Embed several texts in one batch (``vectorizer.embed_many``); the answer is a
    sequence of vectors in the same order."""

    texts: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class EnsureIndex:
    """Create the search index if it does not exist yet."""


@dataclasses.dataclass(frozen=True, slots=True)
class Submit:
    """Start a :class:`Batch` and go on without waiting; the answer is a handle for
    :class:`Join`. Lets a bulk load embed the next batch while Redis indexes this one."""

    batch: Batch


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """Wait for a :class:`Submit`'s batch; the answer is its replies (or its error)."""

    handle: Any


Op = Call | Post | Send | Receive | Ready | Batch | Embed | EmbedMany | EnsureIndex | Submit | Join
Flow = Generator[Op, Any, T]


# --------------------------------------------------------------------------- Lua scripts


# Hit bookkeeping, shared by the scripts below. A hit is counted in the entry's hash
# (mode 'e': free where RediSearch indexes documents partially, PARTIAL_INDEXED_DOCS) or,
# where any write to an indexed hash re-indexes the whole entry, HNSW vector included
# (about 0.4 ms of server time a write), in its companion hash (mode 'c'): the entry's
# key with ':e:' turned ':h:', outside the index, holding hit_count and last_hit_at (and
# the entry's tenant and model digests, for inspect's breakdown), expiring with the entry.
# Readers see the sum of both (a server restarted with the other setting loses nothing).
_HITS = """
local function companion(key) return (string.gsub(key, ':e:', ':h:', 1)) end
local function merge_hits(key, fields)
  -- pcall: on a Redis Cluster the companion may live on another shard (not readable
  -- from here); there hits are counted on the entry and there is nothing to merge.
  local c = redis.pcall('HMGET', companion(key), 'hit_count', 'last_hit_at')
  if type(c) ~= 'table' or c['err'] or (not c[1] and not c[2]) then return end
  local hi, li
  for i = 1, #fields, 2 do
    if fields[i] == 'hit_count' then hi = i + 1
    elseif fields[i] == 'last_hit_at' then li = i + 1 end
  end
  if c[1] then
    if hi then fields[hi] = tostring((tonumber(fields[hi]) or 0) + (tonumber(c[1]) or 0))
    else fields[#fields + 1] = 'hit_count'; fields[#fields + 1] = c[1] end
  end
  if c[2] then
    if not li then fields[#fields + 1] = 'last_hit_at'; fields[#fields + 1] = c[2]
    elseif (tonumber(c[2]) or 0) > (tonumber(fields[li]) or 0) then fields[li] = c[2] end
  end
end
-- n: hits to add (nil: one, at now); a batch of n keeps last_hit_at from moving back
-- (another process may have flushed a later hit first).
local function count_hit(key, mode, now, sliding, ttl, tenant, model, n)
  if sliding == '1' and ttl and ttl > 0 then redis.call('EXPIRE', key, ttl) end
  local hk = key
  if mode == 'c' then hk = companion(key) end
  if n then
    local last = tonumber(redis.call('HGET', hk, 'last_hit_at'))
    if last and last >= tonumber(now) then now = nil end
  end
  if mode ~= 'c' then
    redis.call('HINCRBY', key, 'hit_count', n or 1)
    if now then redis.call('HSET', key, 'last_hit_at', now) end
    return
  end
  if now then redis.call('HSET', hk, 'last_hit_at', now) end
  redis.call('HSET', hk, 'tenant', tenant or '', 'model', model or '')
  redis.call('HINCRBY', hk, 'hit_count', n or 1)
  local pttl = redis.call('PTTL', key)
  if pttl > 0 then redis.call('PEXPIRE', hk, pttl) else redis.call('PERSIST', hk) end
end
"""

# Reading an entry and counting its hit in one round trip (the exact layer, and the
# winner of the semantic layer): read the entry and, if it is an entry of this schema
# version and of the asker's scope, count the hit. A key that expired in between reads
# as empty and is not touched (a bare HINCRBY would create a torn, TTL-less hash).
# Returns the fields as they were before the hit (``hit_count`` = hits before this one,
# both bookkeeping places summed).
# ARGV: scope digest, now, sliding ('1' refreshes the entry's own TTL), schema version,
# bookkeeping mode ('e' or 'c', see _HITS).
_EXACT = (
    _HITS
    + """
local fields = redis.call('HGETALL', KEYS[1])
local scope, ttl, v, tenant, model
for i = 1, #fields, 2 do
  local name = fields[i]
  if name == 'scope' then scope = fields[i + 1]
  elseif name == 'ttl' then ttl = tonumber(fields[i + 1])
  elseif name == 'tenant' then tenant = fields[i + 1]
  elseif name == 'model' then model = fields[i + 1]
  elseif name == 'v' then v = fields[i + 1] end
end
if scope == ARGV[1] and v == ARGV[4] then
  merge_hits(KEYS[1], fields)
  count_hit(KEYS[1], ARGV[5], ARGV[2], ARGV[3], ttl, tenant, model)
end
return fields
"""
)


class Script:
    """A Lua script run with ``EVALSHA`` (falling back to ``EVAL`` on ``NOSCRIPT``)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


# One entry written atomically (a bulk warm-up pipelines many): ARGV[1] is the TTL in
# seconds (0: none), then field/value pairs. The shebang line makes Redis refuse the
# script up front when it is out of memory (``noeviction``); without it, the leading DEL
# would count as the script's first write and let the rest past ``maxmemory``.
_PUT = """#!lua
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# The semantic layer in one round trip, read only: the scope-filtered KNN query, then
# each candidate at distance <= ARGV[5] read whole (its companion's hit counts added, as
# EXACT does), without the vector (768+ bytes a candidate the core has no use for).
# Nothing is counted here: the core counts the candidate it serves once the guards
# accepted it (COUNT, sent without waiting for its reply: see ``Post``). Returns
# {{key, distance, fields}, ...}, fields empty for candidates beyond ARGV[5].
# ARGV: index, query, vector, k, read distance.
_SEARCH = (
    _HITS
    + """
local res = redis.call('FT.SEARCH', ARGV[1], ARGV[2], 'PARAMS', 2, 'vec', ARGV[3],
  'SORTBY', '__dist', 'RETURN', 1, '__dist', 'LIMIT', 0, tonumber(ARGV[4]), 'DIALECT', 2)
local read_dist = tonumber(ARGV[5])
local rows = {}
for i = 2, #res, 2 do
  local key, row = res[i], res[i + 1]
  local dist = '2'
  for j = 1, #row, 2 do if row[j] == '__dist' then dist = row[j + 1] end end
  local fields = {}
  if (tonumber(dist) or 2) <= read_dist then
    local all = redis.call('HGETALL', key)
    for j = 1, #all, 2 do  -- all but the vector: the index has it, the core needs none
      if all[j] ~= 'embedding' then
        fields[#fields + 1] = all[j]
        fields[#fields + 1] = all[j + 1]
      end
    end
    if #fields > 0 then merge_hits(key, fields) end
  end
  rows[#rows + 1] = {key, dist, fields}
end
return rows
"""
)

# Count a hit on the entry the semantic layer served (after the guards accepted it), as
# EXACT counts one: only if the key still holds an entry of this schema version and of
# the asker's scope (an entry deleted or replaced since is left alone, and no torn,
# TTL-less hash is created). Returns 1 if counted, 0 if not.
# ARGV: scope digest, now, sliding, schema version, bookkeeping mode (see _HITS).
_COUNT = (
    _HITS
    + """
local f = redis.call('HMGET', KEYS[1], 'scope', 'v', 'ttl', 'tenant', 'model')
if f[1] == ARGV[1] and f[2] == ARGV[4] then
  count_hit(KEYS[1], ARGV[5], ARGV[2], ARGV[3], tonumber(f[3]), f[4], f[5])
  return 1
end
return 0
"""
)

# Hits counted in a process and flushed together (``paracache.bookkeeping.HitCounter``),
# as COUNT counts one, for each key: added only if the key still holds an entry of this
# schema version and of the scope the hits were made under (an entry deleted, replaced
# or another tenant's since is left alone; no torn, TTL-less hash is created). Counts
# only ever add (several processes flush their own); last_hit_at only moves forward.
# Returns how many keys were counted. ARGV: schema version, bookkeeping mode (see
# _HITS), then per key (KEYS order): scope digest, hits, time of the last hit.
_FLUSH = (
    _HITS
    + """
local counted = 0
for i = 1, #KEYS do
  local j = 3 * i
  local f = redis.call('HMGET', KEYS[i], 'scope', 'v', 'ttl', 'tenant', 'model')
  local n = tonumber(ARGV[j + 1])
  if f[1] == ARGV[j] and f[2] == ARGV[1] and n and n > 0 then
    count_hit(KEYS[i], ARGV[2], ARGV[j + 2], '', tonumber(f[3]), f[4], f[5], n)
    counted = counted + 1
  end
end
return counted
"""
)

# A scope's canonical JSON into the namespace's scope registry (KEYS[1]), once: ARGV is
# the scope digest, the JSON and how long the row must last (seconds; 0: for ever). The
# row expires (a hash field's TTL, Redis 7.4+) when the last entry written in its scope
# can have: set when added, only ever lengthened after (GT), made persistent for an
# entry without a TTL. Without it every scope ever written (one per conversation turn
# for a chat model) stayed in the registry after its entries had expired. A server
# without field TTLs keeps the row, as before. Best effort, never an error: a registry
# key that is not a hash (someone else's data, a damaged key) must not fail the entry
# written with it in the same round trip; the entry then lists with an unknown scope.
# Returns 1 if added, 0 if known, -1 if the registry refused it.
_REGISTER_SCOPE = """
local added = redis.pcall('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if type(added) == 'table' then return -1 end
local ttl = tonumber(ARGV[3]) or 0
if ttl <= 0 then
  if added == 0 then redis.pcall('HPERSIST', KEYS[1], 'FIELDS', 1, ARGV[1]) end
elseif added == 1 then
  redis.pcall('HEXPIRE', KEYS[1], ttl, 'FIELDS', 1, ARGV[1])
else
  redis.pcall('HEXPIRE', KEYS[1], ttl, 'GT', 'FIELDS', 1, ARGV[1])
end
return added
"""

# The scope JSON of each digest in ARGV from the scope registry (KEYS[1]), nil where
# unknown; all nil if the registry is not a hash (listing entries never fails on it).
_READ_SCOPES = """
local found = redis.pcall('HMGET', KEYS[1], unpack(ARGV))
if found['err'] then return {} end
return found
"""

EXACT = Script(_EXACT)
PUT = Script(_PUT)
SEARCH = Script(_SEARCH)
COUNT = Script(_COUNT)
HITS = Script(_FLUSH)
REGISTER_SCOPE = Script(_REGISTER_SCOPE)
READ_SCOPES = Script(_READ_SCOPES)


def read_scopes_call(registry: str, digests: Sequence[str]) -> tuple[Any, ...]:
    """The command that reads these scope digests' JSON from the registry ``registry``
    (its reply goes to :func:`scope_rows`)."""
    return ("EVAL", READ_SCOPES.source, 1, registry, *digests)


def scope_rows(digests: Sequence[str], reply: Any) -> dict[str, dict[str, Any]]:
    """``{digest: scope as plain data}`` from a :func:`read_scopes_call` reply; digests
    without a readable row are left out.

    Example:
        >>> scope_rows(["ab", "cd"], [b'{"tenant":"acme"}', None])
        {'ab': {'tenant': 'acme'}}
    """
    out: dict[str, dict[str, Any]] = {}
    for name, raw in zip(digests, reply or [], strict=False):
        if raw is None:
            continue
        try:
            value = json.loads(raw)
        except (ValueError, TypeError, RecursionError):
            continue
        if isinstance(value, dict):
            out[name] = value
    return out


def run_script(script: Script, keys: Sequence[str], *args: Any) -> Flow[Any]:
    """Run ``script`` by its SHA (no script text on the wire); load it on ``NOSCRIPT``."""
    try:
        return (yield Call(("EVALSHA", script.sha, len(keys), *keys, *args)))
    except BackendError as exc:
        if exc.kind != "noscript":
            raise
    return (yield Call(("EVAL", script.source, len(keys), *keys, *args)))


def post_script(script: Script, keys: Sequence[str], *args: Any) -> Post:
    """A :class:`Post` of ``script`` by its SHA, with its source as the ``NOSCRIPT``
    fallback.

    Example:
        >>> post_script(COUNT, ["k"], "a").args[:2] == ("EVALSHA", COUNT.sha)
        True
    """
    tail = (len(keys), *keys, *args)
    return Post(("EVALSHA", script.sha, *tail), ("EVAL", script.source, *tail))


# --------------------------------------------------------------------------- replies


def _flatten(mapping: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for k, v in mapping.items():
        out.extend((k, v))
    return out


#: The one type of a reply's field names and values that needs no conversion.
_BYTES_ONLY = frozenset({bytes})


def _as_fields(raw: Any) -> dict[bytes, bytes]:
    # The types are checked as sets (in C), not item by item in Python.
    if isinstance(raw, dict):
        if _BYTES_ONLY.issuperset(map(type, raw)) and _BYTES_ONLY.issuperset(
            map(type, raw.values())
        ):
            return dict(raw)  # redis-py's HGETALL reply, or fields read before: a copy
        return {_b(k): _b(v) for k, v in raw.items()}
    items = list(raw)
    if len(items) % 2 == 0 and _BYTES_ONLY.issuperset(map(type, items)):  # hiredis's replies
        return dict(zip(items[::2], items[1::2], strict=True))
    return {_b(items[i]): _b(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def search_rows(raw: Any) -> tuple[int, list[tuple[str, dict[bytes, bytes]]]]:
    """``(total, [(key, fields), ...])`` from an ``FT.SEARCH`` reply, RESP2 or RESP3
    (:class:`~paracache.errors.BackendError` ``bad_reply`` if it cannot be read)."""
    try:
        return _search_rows(raw)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
        raise BackendError("bad_reply", f"unreadable FT.SEARCH reply: {exc!r}") from exc


def _search_rows(raw: Any) -> tuple[int, list[tuple[str, dict[bytes, bytes]]]]:
    if isinstance(raw, dict):  # RESP3: {total_results, results: [{id, extra_attributes}]}
        raw = {_b(k).decode(): v for k, v in raw.items()}
        rows = [
            (
                _b(r[b"id"] if b"id" in r else r["id"]).decode(),
                _as_fields(r.get(b"extra_attributes", r.get("extra_attributes")) or {}),
            )
            for r in raw.get("results", [])
        ]
        return int(raw.get("total_results", 0)), rows
    total, rest = int(raw[0]), list(raw[1:])
    # NOCONTENT: keys only. A document that vanished before the search loaded it (an
    # expired entry not yet reclaimed) comes as a key and a nil: never a key itself.
    if rest and all(x is not None and not isinstance(x, list) for x in rest):
        return total, [(_b(k).decode(), {}) for k in rest]
    return total, [
        (_b(rest[i]).decode(), _as_fields(rest[i + 1]) if rest[i + 1] is not None else {})
        for i in range(0, len(rest) - 1, 2)
    ]
