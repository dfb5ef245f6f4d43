"""Find and remove entries a lookup would skip: corrupt, foreign or from an older schema.

Lookups never raise on a bad entry: they skip it and count ``corrupt_entry``. This module
finds such entries so they can be removed: :meth:`paracache.SemanticIndex.repair` (and
``arepair``) for one cache, ``paracache repair --namespace NS`` from the command line.

It scans the namespace's keys (``SCAN``, never ``KEYS``), reads each entry atomically
(type and fields in one script call), validates it with
:func:`paracache.schema.entry_problem` (every field present and readable, the vector the
size its index expects, the current schema version) and, unless ``dry_run``, deletes it
with a script that checks the entry is still the one it read, so an entry rewritten
meanwhile by a store is never lost. Keys of the namespace that are not entries (not
``paracache:{namespace}:v{N}:{model}:e:{id}``) are counted and left alone, and so are the
entries of a *newer* schema version (a newer paracache sharing the namespace during a
rolling upgrade: a lookup here skips them, a repair here never deletes them), except the
namespace's scope registry (``paracache:{namespace}:scopes``): it is not counted when it
is a hash, and deleted as invalid when it is not (stores could not register scopes); and
an entry's hit counter (``...:h:{id}``) that is not a hash is deleted as invalid (hits
could not be counted, nor the namespace listed).

Example:
    >>> from paracache import SemanticIndex
    >>> cache = SemanticIndex(namespace="faq")                 # doctest: +SKIP
    >>> report = cache.repair(dry_run=True)                    # doctest: +SKIP
    >>> report.invalid, report.problems                        # doctest: +SKIP
    (2, {'schema version 0': 1, 'no response field': 1})
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .protocol import Batch, Call, Flow
from .schema import SCHEMA_VERSION, entry_problem, scopes_key

__all__ = ["RepairReport", "repair_flow"]

#: Keys scanned (and read) per round trip.
SCAN_BATCH = 500
#: How many (key, problem) examples a report keeps.
SAMPLES = 20

_ENTRY_KEY = re.compile(
    r"^paracache:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:v(\d+):([0-9a-f]+):e:[0-9a-z]+$"
)

# A hit counter beside an entry (bookkeeping.py: on a server without partial indexing).
_COMPANION_KEY = re.compile(
    r"^paracache:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:v(\d+):([0-9a-f]+):h:[0-9a-z]+$"
)

# A fingerprint of a hash's fields and values (SHA-1 of each length-prefixed name and
# value in listpack order): any write to the hash changes it.
_FINGERPRINT = """
local function fingerprint(fields)
  local parts = {}
  for i = 1, #fields do parts[i] = #fields[i] .. ':' .. fields[i] end
  return redis.sha1hex(table.concat(parts))
end
"""

# Type, fields and fingerprint of one key, read atomically (no WRONGTYPE race with a
# writer).
_READ = (
    _FINGERPRINT
    + """
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'hash' then
  local fields = redis.call('HGETALL', KEYS[1])
  return {t, fields, fingerprint(fields)}
end
return {t}
"""
)

# Delete a key only if it is still what was judged: same type and, for a hash, the same
# fingerprint (a store in between rewrites the whole entry; a hit changes its counters).
_DELETE_IF_SAME = (
    _FINGERPRINT
    + """
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= ARGV[1] then return 0 end
if t == 'hash' and fingerprint(redis.call('HGETALL', KEYS[1])) ~= ARGV[2] then return 0 end
return redis.call('UNLINK', KEYS[1])
"""
)


@dataclasses.dataclass(frozen=True)
class RepairReport:
    """What :meth:`paracache.SemanticIndex.repair` found and did.

    Attributes:
        namespace: The namespace scanned.
        dry_run: Nothing was deleted.
        scanned: Keys of the namespace looked at.
        valid: Entries that pass validation.
        invalid: Entries that do not (deleted unless ``dry_run``).
        deleted: Entries deleted.
        other_keys: Keys of the namespace that are not entries (left alone).
        problems: How many entries failed, by reason.
        samples: Up to 20 ``(key, reason)`` examples.
    """

    namespace: str
    dry_run: bool
    scanned: int = 0
    valid: int = 0
    invalid: int = 0
    deleted: int = 0
    other_keys: int = 0
    problems: dict[str, int] = dataclasses.field(default_factory=dict)
    samples: tuple[tuple[str, str], ...] = ()

    @property
    def clean(self) -> bool:
        """No invalid entry is left (none found, or all deleted)."""
        return self.invalid == self.deleted

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        out = dataclasses.asdict(self)
        out["samples"] = [list(s) for s in self.samples]
        out["clean"] = self.clean
        return out


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _vector_bytes(info: Any) -> int | None:
    """Bytes per vector of an index, from its ``FT.INFO`` reply (RESP2)."""
    try:
        pairs = dict(zip(map(_s, info[::2]), info[1::2], strict=False))
        for attribute in pairs.get("attributes", []):
            attrs = dict(zip(map(_s, attribute[::2]), attribute[1::2], strict=False))
            if _s(attrs.get("type", "")).upper() == "VECTOR":
                dtype = _s(attrs.get("data_type", "")).upper()
                size = {"FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8}.get(dtype, 4)
                return int(attrs["dim"]) * size
    except (TypeError, ValueError, KeyError):
        return None
    return None


def _judge(
    key: str, reply: Any, vector_sizes: Mapping[str, int], registry: str = ""
) -> tuple[str, str | None, str]:
    """``(kind, problem, fingerprint)``; kind is ``entry``, ``other``, ``registry`` (the
    scope registry, a hash: nothing to judge) or ``gone``."""
    kind = _s(reply[0]) if reply else "none"
    if kind == "none":
        return "gone", None, ""
    fingerprint = _s(reply[2]) if kind == "hash" and len(reply) > 2 else ""
    if key == registry:
        if kind == "hash":
            return "registry", None, ""
        return "entry", f"scope registry not a hash ({kind})", ""
    match = _ENTRY_KEY.match(key)
    if match is None:
        counter = _COMPANION_KEY.match(key)
        if counter is not None and counter.group(1) == SCHEMA_VERSION and kind != "hash":
            # Not a hash at an entry's hit counter: every batch of hit counts that
            # includes the entry fails, and so do entries(), inspect and stats.
            return "entry", f"hit counter not a hash ({kind})", ""
        return "other", None, ""
    if _newer(match.group(1).encode()):  # a newer paracache's (a rolling upgrade): not ours
        return "other", None, ""
    if match.group(1) != SCHEMA_VERSION:
        return "entry", f"schema version {match.group(1)} key", fingerprint
    if kind != "hash":
        return "entry", f"not a hash ({kind})", ""
    flat = reply[1] if len(reply) > 1 else []
    fields = {
        (k if isinstance(k, bytes) else str(k).encode()): (
            v if isinstance(v, bytes) else str(v).encode()
        )
        for k, v in zip(flat[::2], flat[1::2], strict=False)
    }
    prefix = key[: key.rindex(":e:") + 3]
    problem = entry_problem(fields, full=True, vector_bytes=vector_sizes.get(prefix))
    return "entry", problem, fingerprint


def _newer(version: bytes | None) -> bool:
    """Whether ``version`` (a schema version as stored) is newer than this paracache's:
    during a rolling upgrade the old deployment must not delete the new one's entries.

    Example:
        >>> _newer(b"3"), _newer(b"2"), _newer(b"0"), _newer(b"x"), _newer(None)
        (True, False, False, False, False)
    """
    if version is None or not version.isdigit() or len(version) > 9:
        return False
    return int(version) > int(SCHEMA_VERSION)


def repair_flow(
    namespace: str, *, dry_run: bool = False, vector_sizes: Mapping[str, int] | None = None
) -> Flow[RepairReport]:
    """Scan ``namespace``, validate every entry, delete the invalid ones (see module doc).

    ``vector_sizes`` maps an index's entry prefix to its vector size in bytes; the sizes
    of the namespace's existing indexes are read from ``FT.INFO`` as well.
    """
    sizes: dict[str, int] = dict(vector_sizes or {})
    ns_prefix = f"paracache:{namespace}:"
    registry = scopes_key(namespace)
    for raw_name in (yield Call(("FT._LIST",))) or []:
        name = _s(raw_name)
        if name.startswith(ns_prefix) and f"{name}:e:" not in sizes:
            try:
                size = _vector_bytes((yield Call(("FT.INFO", name))))
            except Exception:  # dropped in between: nothing to check against
                size = None
            if size is not None:
                sizes[f"{name}:e:"] = size
    scanned = valid = invalid = deleted = other = 0
    problems: dict[str, int] = {}
    samples: list[tuple[str, str]] = []
    cursor: Any = 0
    while True:
        cursor, raw_keys = yield Call(
            ("SCAN", cursor, "MATCH", ns_prefix + "*", "COUNT", SCAN_BATCH)
        )
        keys = [_s(k) for k in raw_keys or []]
        if keys:
            replies = yield Batch(tuple(("EVAL", _READ, 1, k) for k in keys))
            doomed: list[tuple[str, str, str]] = []
            for key, reply in zip(keys, replies, strict=True):
                kind, problem, fingerprint = _judge(key, reply, sizes, registry)
                if kind in ("gone", "registry"):
                    continue
                scanned += 1
                if kind == "other":
                    other += 1
                elif problem is None:
                    valid += 1
                else:
                    invalid += 1
                    problems[problem] = problems.get(problem, 0) + 1
                    if len(samples) < SAMPLES:
                        samples.append((key, problem))
                    doomed.append((key, _s(reply[0]), fingerprint))
            if doomed and not dry_run:
                results = yield Batch(
                    tuple(("EVAL", _DELETE_IF_SAME, 1, k, t, c) for k, t, c in doomed)
                )
                deleted += sum(int(r) for r in results)
        if int(cursor) == 0:
            break
    return RepairReport(
        namespace=namespace,
        dry_run=dry_run,
        scanned=scanned,
        valid=valid,
        invalid=invalid,
        deleted=deleted,
        other_keys=other,
        problems=problems,
        samples=tuple(samples),
    )
