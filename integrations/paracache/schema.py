"""Where entries live in Redis and how they are indexed: key layout and the RedisVL schema.

One namespace isolates one cache from another on the same Redis. Inside it, each
embedding model (and vector type) gets its own index and key prefix, so vectors of
two models never share an index:

    paracache:{namespace}:v2:{model-slug}:e:{entry-id}    one hash per entry
    paracache:{namespace}:v2:{model-slug}                 its search index
    paracache:{namespace}:scopes                          scope digest -> scope JSON

The scope registry holds each scope's JSON once (``inspect`` and ``entries()`` show it),
instead of a copy in every entry: entries carry only the scope's digest.

Example:
    >>> from paracache.schema import Layout
    >>> lay = Layout.build("shop", "onnx:all-MiniLM-L6-v2:384", dims=384)
    >>> lay.index_name.startswith("paracache:shop:v2:")
    True
    >>> lay.scopes_key
    'paracache:shop:scopes'
    >>> lay.key("abc") == lay.prefix + "abc"
    True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .reals import is_int
from .scope import digest

__all__ = [
    "HNSW",
    "SCHEMA_VERSION",
    "Layout",
    "check_namespace",
    "entry_problem",
    "hnsw_difference",
    "index_problem",
    "other_layouts",
    "scopes_key",
]

#: Version of the stored layout; entries of another version are foreign to the core
#: (another index, another key prefix) and ``repair()`` deletes them.
#: 2: no per-entry ``scope_json`` (the namespace's scope registry holds it), optional
#: fields written only when set, ``created_at`` in whole seconds.
SCHEMA_VERSION = "2"
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DTYPES = ("float32", "float16")


def check_namespace(namespace: object) -> str:
    """Validate a namespace (it becomes part of every key and index name).

    Example:
        >>> check_namespace("support-v2")
        'support-v2'
        >>> check_namespace("bad namespace!")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: namespace must be 1-64 characters of ...
    """
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ValueError(
            "namespace must be 1-64 characters of letters, digits, '_', '.', '-' "
            f"starting with a letter or digit, got {namespace!r}"
        )
    return namespace


@dataclasses.dataclass(frozen=True)
class HNSW:
    """HNSW graph parameters of the semantic layer (RediSearch defaults are 16/200/10).

    Example:
        >>> HNSW(m=32, ef_runtime=50).m
        32
    """

    m: int = 16
    ef_construction: int = 200
    ef_runtime: int = 20

    def __post_init__(self) -> None:
        for name in ("m", "ef_construction", "ef_runtime"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"HNSW.{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy's: a plain int


@dataclasses.dataclass(frozen=True)
class Layout:
    """The key layout and index definition of one namespace and embedding model."""

    namespace: str
    vectorizer_id: str
    dims: int
    dtype: str = "float32"
    hnsw: HNSW = dataclasses.field(default_factory=HNSW)

    @classmethod
    def build(
        cls,
        namespace: str,
        vectorizer_id: str,
        *,
        dims: int,
        dtype: str = "float32",
        hnsw: HNSW | None = None,
    ) -> Layout:
        """Validate and build a layout; raises ``ValueError`` on a bad namespace or dtype."""
        check_namespace(namespace)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ValueError(f"the vectorizer's dims must be a positive int, got {dims!r}")
        return cls(namespace, vectorizer_id, dims, dtype, hnsw or HNSW())

    @functools.cached_property
    def slug(self) -> str:
        """Short, stable id of (embedding model, dims, vector type)."""
        raw = f"{self.vectorizer_id}|{self.dims}|{self.dtype}".encode()
        return hashlib.blake2b(raw, digest_size=6).hexdigest()

    @property
    def namespace_prefix(self) -> str:
        """Every key of the namespace, all models, starts with this."""
        return f"paracache:{self.namespace}:"

    @property
    def scopes_key(self) -> str:
        """The namespace's scope registry (a hash: scope digest -> canonical scope JSON)."""
        return scopes_key(self.namespace)

    @functools.cached_property
    def index_name(self) -> str:
        """The RediSearch index of this namespace and model."""
        return f"paracache:{self.namespace}:v{SCHEMA_VERSION}:{self.slug}"

    @functools.cached_property
    def prefix(self) -> str:
        """The key prefix of this index's entries."""
        return f"{self.index_name}:e:"

    def key(self, entry_id: str) -> str:
        """The Redis key of one entry."""
        return self.prefix + entry_id

    @property
    def vector_bytes(self) -> int:
        """Size of one stored vector in bytes."""
        return self.dims * (2 if self.dtype == "float16" else 4)

    def schema_dict(self) -> dict[str, Any]:
        """The RedisVL ``IndexSchema`` definition (hash storage).

        All TAG fields hold hex digests, so no user text ever becomes query syntax.
        The prompt and response are stored but not indexed.
        """
        return {
            "index": {
                "name": self.index_name,
                "prefix": self.prefix,
                "key_separator": ":",
                "storage_type": "hash",
            },
            "fields": [
                {"name": "scope", "type": "tag"},
                {"name": "tenant", "type": "tag"},
                {"name": "model", "type": "tag"},
                {"name": "corpus", "type": "tag"},
                {"name": "created_at", "type": "numeric", "attrs": {"sortable": True}},
                {
                    "name": "embedding",
                    "type": "vector",
                    "attrs": {
                        "dims": self.dims,
                        "algorithm": "hnsw",
                        "distance_metric": "cosine",
                        "datatype": self.dtype,
                        "m": self.hnsw.m,
                        "ef_construction": self.hnsw.ef_construction,
                        "ef_runtime": self.hnsw.ef_runtime,
                    },
                },
            ],
        }


def _text_of(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _as_map(raw: Any) -> dict[str, Any]:
    """A reply of name/value pairs (RESP2: a flat list; RESP3: a map) as a ``str``-keyed
    dict; ``{}`` for anything else."""
    if isinstance(raw, Mapping):
        return {_text_of(k): v for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return {_text_of(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}
    return {}


def index_problem(info: Any, layout: Layout) -> str | None:
    """Why an existing index named ``layout.index_name`` cannot serve ``layout`` (its
    ``FT.INFO`` reply, RESP2 or RESP3), or ``None``.

    Such an index was made by hand, by another tool or by a paracache that built it
    otherwise: with it the semantic layer silently finds nothing (a field missing or of
    another type, a vector of another size, other key prefixes) or measures similarity
    another way. Extra fields, HNSW settings and the vector algorithm do not matter;
    what the reply does not say is not held against it.

    Example:
        >>> lay = Layout.build("faq", "m", dims=2)
        >>> index_problem(["index_definition", ["key_type", "HASH", "prefixes", ["x:"]]], lay)
        ... # doctest: +ELLIPSIS
        "it indexes keys under ['x:'], not the cache's entries (paracache:faq:v2:...:e:)"
    """
    reply = _as_map(info)
    definition = _as_map(reply.get("index_definition"))
    key_type = definition.get("key_type")
    if key_type is not None and _text_of(key_type).upper() != "HASH":
        return f"it indexes {_text_of(key_type)} documents, not hashes"
    prefixes = definition.get("prefixes")
    if isinstance(prefixes, (list, tuple)):
        shown = [_text_of(p) for p in prefixes]
        if shown != [layout.prefix]:
            return f"it indexes keys under {shown}, not the cache's entries ({layout.prefix})"
    fields = _attributes(reply)
    if fields is None:
        return None
    wanted = {f["name"]: f for f in layout.schema_dict()["fields"]}
    for name, spec in wanted.items():
        have = fields.get(name)
        if have is None:
            return f"it has no {name!r} field"
        kind = have.get("type", "").upper()
        if kind and kind != spec["type"].upper():
            return f"its {name!r} field is {kind}, not {spec['type'].upper()}"
    vector = fields["embedding"]
    expected = {
        "dim": str(layout.dims),
        "data_type": layout.dtype.upper(),
        "distance_metric": "COSINE",
    }
    for key, value in expected.items():
        have_value = vector.get(key)
        if have_value is not None and have_value.upper() != value:
            return (
                f"its vectors have {key} {have_value}, the cache's {value} "
                f"(embedding model {layout.vectorizer_id}, dtype {layout.dtype})"
            )
    return None


def _attributes(reply: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    """The fields of an ``FT.INFO`` reply (:func:`_as_map`'d), by name: each field's
    attributes as text; ``None`` if the reply lists none."""
    attributes = reply.get("attributes")
    if not isinstance(attributes, (list, tuple)):
        return None
    fields: dict[str, dict[str, str]] = {}
    for raw in attributes:
        if isinstance(raw, Mapping):
            attrs = {k: _text_of(v) for k, v in _as_map(raw).items()}
        elif isinstance(raw, (list, tuple)):
            # name/value pairs, then bare flags (SORTABLE, UNF): pairs while keys are known
            attrs = {}
            for i in range(0, len(raw) - 1, 2):
                attrs[_text_of(raw[i])] = _text_of(raw[i + 1])
        else:
            continue
        name = attrs.get("attribute") or attrs.get("identifier")
        if name is not None:
            fields[name] = attrs
    return fields


_HNSW_KEYS = (("m", "M"), ("ef_construction", "EF_CONSTRUCTION"), ("ef_runtime", "EF_RUNTIME"))


def hnsw_difference(info: Any, layout: Layout) -> str | None:
    """How the HNSW settings of an existing index (its ``FT.INFO`` reply, RESP2 or RESP3,
    the keys in either case) differ from ``layout.hnsw``: ``"M=16, EF_CONSTRUCTION=200
    (this cache asked for M=32, EF_CONSTRUCTION=200)"``, or ``None`` if they do not (or
    the reply does not say). The index is made once, by the first cache of its name, so
    a cache asking for other settings later searches the existing graph.

    Example:
        >>> lay = Layout.build("faq", "m", dims=2, hnsw=HNSW(m=32))
        >>> vector = ["attribute", "embedding", "type", "VECTOR", "M", 16, "ef_construction", 200]
        >>> hnsw_difference(["attributes", [vector]], lay)
        'M=16, EF_CONSTRUCTION=200 (this cache asked for M=32, EF_CONSTRUCTION=200)'
        >>> hnsw_difference(["attributes", [vector]], Layout.build("faq", "m", dims=2)) is None
        True
    """
    fields = _attributes(_as_map(info)) or {}
    vector = {k.lower(): v for k, v in fields.get("embedding", {}).items()}
    have, asked = [], []
    differs = False
    for attr, label in _HNSW_KEYS:
        value = vector.get(attr)
        if value is None:
            continue  # not reported (EF_RUNTIME by RediSearch 2.10): not held against it
        wanted = getattr(layout.hnsw, attr)
        have.append(f"{label}={value}")
        asked.append(f"{label}={wanted}")
        differs |= value.strip() != str(wanted)
    if not differs:
        return None
    return f"{', '.join(have)} (this cache asked for {', '.join(asked)})"


_LAYOUT_INDEX = re.compile(r"^paracache:([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):v(\d+):([0-9a-f]+)$")


def other_layouts(namespace: str, index_names: Any) -> list[str]:
    """The indexes of ``namespace`` among ``index_names`` (``FT._LIST``'s reply) whose
    stored layout is not this version's (:data:`SCHEMA_VERSION`: older or newer), sorted.

    Example:
        >>> other_layouts("faq", [b"paracache:faq:v1:0a1b", b"paracache:faq:v2:0a1b", "x"])
        ['paracache:faq:v1:0a1b']
    """
    out = []
    for raw in index_names or ():
        name = _text_of(raw)
        m = _LAYOUT_INDEX.match(name)
        if m and m.group(1) == namespace and m.group(2) != SCHEMA_VERSION:
            out.append(name)
    return sorted(out)


# --------------------------------------------------------------------------- validation

_HEX32 = re.compile(rb"^[0-9a-f]{32}$")
_HEX16 = re.compile(rb"^[0-9a-f]{16}$")
#: Numbers an entry must have.
_NUMBER_FIELDS = ("created_at",)
#: Numbers written only when not 0 (a reader takes a missing one as 0): ``hit_count``
#: and ``last_hit_at`` appear on the first hit, ``tokens`` and ``ttl`` when given.
_OPTIONAL_NUMBER_FIELDS = ("hit_count", "tokens", "ttl")
_DIGEST_FIELDS = ("tenant", "model", "corpus")


def _json_object(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        return isinstance(json.loads(value.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        return False


def _number(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number >= 0


def entry_problem(
    fields: Mapping[bytes, bytes], *, full: bool = True, vector_bytes: int | None = None
) -> str | None:
    """Why a stored entry (its hash fields, as bytes) cannot be served, or ``None``.

    An entry must have ``v`` (the schema version), ``prompt`` and ``response`` (UTF-8),
    the ``scope``, ``tenant``, ``model`` and ``corpus`` digests and ``created_at``.
    ``metadata`` (a JSON object), ``tokens``, ``ttl``, ``hit_count`` and ``last_hit_at``
    (numbers) are optional, written only when set, but must be well-formed when present.
    ``full=False`` checks what a lookup reads back (the KNN query returns a subset of
    the fields); ``full=True`` also checks ``last_hit_at``. Given ``vector_bytes``, a
    vector present must have that size. Extra fields are allowed; an entry without a
    vector is valid (it serves the exact layer only).
    Lookups skip a failing entry (counted as ``corrupt_entry``);
    :meth:`paracache.SemanticIndex.repair` deletes it.

    Example:
        >>> entry_problem({b"v": b"0"})
        'schema version 0'
        >>> entry = {b"v": b"2", b"prompt": b"hi", b"response": b"hello", b"scope": b"0" * 32,
        ...          b"tenant": b"1" * 16, b"model": b"2" * 16, b"corpus": b"3" * 16,
        ...          b"created_at": b"1700000000"}
        >>> entry_problem(entry) is None
        True
        >>> entry_problem({**entry, b"hit_count": b"-1"})
        'bad hit_count'
    """
    version = fields.get(b"v")
    if version != SCHEMA_VERSION.encode():
        shown = "missing" if version is None else version[:16].decode("utf-8", "replace")
        return f"schema version {shown}"
    for name in ("prompt", "response"):
        value = fields.get(name.encode())
        if value is None:
            return f"no {name} field"
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return f"undecodable {name}"
    if not _HEX32.match(fields.get(b"scope", b"")):
        return "bad scope digest"
    if not _json_object(fields.get(b"metadata", b"{}")):
        return "metadata is not a JSON object"
    for name in _NUMBER_FIELDS:
        if not _number(fields.get(name.encode())):
            return f"bad {name}"
    optional = _OPTIONAL_NUMBER_FIELDS + (("last_hit_at",) if full else ())
    for name in optional:
        value = fields.get(name.encode())
        if value is not None and not _number(value):
            return f"bad {name}"
    for name in _DIGEST_FIELDS:
        if not _HEX16.match(fields.get(name.encode(), b"")):
            return f"bad {name} digest"
    vector = fields.get(b"embedding")
    if vector is not None and vector_bytes is not None and len(vector) != vector_bytes:
        return f"vector of {len(vector)} bytes, the index needs {vector_bytes}"
    return None


def scopes_key(namespace: str) -> str:
    """The scope registry of ``namespace``: one hash, scope digest -> canonical scope JSON,
    written (``HSETNX``) with each entry, read by ``entries()``/``inspect``/``stats``.
    A scope's row may outlive its entries; clearing the whole namespace removes it.

    Example:
        >>> scopes_key("faq")
        'paracache:faq:scopes'
    """
    return f"paracache:{namespace}:scopes"


def namespace_of(index_name: str) -> str:
    """The namespace of a paracache index or entry key (``paracache:{ns}:...``).

    Example:
        >>> namespace_of("paracache:faq:v2:0a1b2c3d4e5f")
        'faq'
    """
    return index_name.split(":", 2)[1]


def tag_digest(name: str, value: str) -> str:
    """What the ``name`` TAG field holds for ``value``: a digest, never the text itself.

    Example:
        >>> len(tag_digest("tenant", 'acme"} | @tenant:{*'))
        16
    """
    return digest(name, value, size=16)


def filter_terms(
    *,
    tenant: str | None = None,
    model: str | None = None,
    corpus_version: str | None = None,
) -> list[str]:
    """RediSearch terms selecting entries by tenant, model and corpus version.

    Example:
        >>> filter_terms(tenant="acme")[0].startswith("@tenant:{")
        True
    """
    terms = []
    for field, argument, value in (
        ("tenant", "tenant", tenant),
        ("model", "model", model),
        ("corpus", "corpus_version", corpus_version),
    ):
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{argument} must be a str, got {type(value).__name__}")
            # The digest's salt is the field's name ("corpus"), as the entries' are.
            terms.append(f"@{field}:{{{tag_digest(field, value)}}}")
    return terms
