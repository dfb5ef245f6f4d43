"""What an answer depends on besides the question: the scope of a cache entry.

A cached answer may only be served to a request with exactly the same scope: the same
model and sampling parameters, the same system prompt, history, tools and response
format, the same tenant and corpus version, the same user fields. The scope is reduced
to a digest that is stored with the entry and applied as a *pre-filter* on every lookup,
and folded into the entry's id, so the same prompt under two scopes is two entries.

Every value that reaches Redis as a query term is a hex digest, never the raw string:
whatever a tenant or model name contains (``{}|@*-:"'``, spaces, RediSearch syntax),
it is data, never query syntax.

Example:
    >>> from paracache import Scope
    >>> a = Scope(model="gpt-4o-mini", tenant="acme", params={"temperature": 0})
    >>> b = Scope(model="gpt-4o-mini", tenant="acme", params={"temperature": 0.0})
    >>> a.digest() == b.digest()          # 0 and 0.0 are the same setting
    True
    >>> a.digest() == a.replace(tenant="globex").digest()
    False
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = ["Scope", "canonical_json", "digest", "endpoints_of", "normalize_endpoint"]

#: One encoder for every digest (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

#: Scalar types allowed as sampling-parameter and user-field values.
_SCALARS = (str, int, float, bool, type(None))


def _canon(value: Any, path: str) -> Any:
    """Turn ``value`` into plain JSON data with one spelling per meaning."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{path}: {value!r} is not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: keys must be str, got {type(k).__name__}")
            out[k] = _canon(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canon(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{path}: {type(value).__name__} is not JSON data (use str, int, float, bool, "
        "None, lists and str-keyed mappings)"
    )


def canonical_json(value: Any) -> str:
    """One canonical JSON spelling of ``value`` (sorted keys, ``1.0`` spelled ``1``).

    Example:
        >>> canonical_json({"b": 1.0, "a": [True, None]})
        '{"a":[true,null],"b":1}'
    """
    return _ENCODER.encode(_canon(value, "value"))


def digest(*parts: Any, size: int = 32) -> str:
    """A hex digest (``size`` hex characters) of JSON-able ``parts``.

    Lone surrogates and other text that is not valid UTF-8 are hashed as they are,
    so two different strings never share a digest.

    Example:
        >>> len(digest("system prompt", [{"role": "user"}]))
        32
    """
    if all(type(part) is str for part in parts):  # strings are canonical as they are
        text = _ENCODER.encode(list(parts))
    else:
        text = canonical_json(list(parts))
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=size // 2).hexdigest()


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"Scope.{name} must be a str, got {type(value).__name__}")
    return value


@dataclasses.dataclass(frozen=True)
class Scope:
    """The conditions under which a cached answer is valid.

    Attributes:
        model: The LLM's model name (``""`` when unknown).
        tenant: Whose entry this is. Tenants never see each other's entries.
        corpus_version: Bump it after re-indexing a corpus to stop serving old answers.
        params: Sampling parameters (temperature, top_p, max_tokens, ...) as JSON scalars.
        context: A digest of everything else that conditions the answer: system prompt,
            earlier turns, tools, response format, the framework's full model settings.
            Build it with :func:`digest`. Adapters fill it in.
        fields: Any further user fields (str keys, JSON scalar values).

    Example:
        >>> s = Scope(model="gpt-4o-mini", params={"temperature": 0.2},
        ...           context=digest("You are a helpful bank assistant."))
        >>> s.temperature
        0.2
    """

    model: str = ""
    tenant: str = ""
    corpus_version: str = ""
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    context: str = ""
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("model", "tenant", "corpus_version", "context"):
            _check_str(name, getattr(self, name))
        for name in ("params", "fields"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"Scope.{name} must be a mapping, got {type(value).__name__}")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(f"Scope.{name} keys must be str, got {key!r}")
                if not isinstance(item, _SCALARS) and not isinstance(item, (list, tuple)):
                    raise TypeError(
                        f"Scope.{name}[{key!r}] must be a JSON scalar or list, "
                        f"got {type(item).__name__}"
                    )
            # Freeze a private copy so later changes to the caller's dict cannot
            # change the scope (and its digest) behind our back.
            object.__setattr__(self, name, dict(_canon(dict(value), f"Scope.{name}")))

    @property
    def temperature(self) -> float | None:
        """The ``temperature`` sampling parameter, if known."""
        value = self.params.get("temperature")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        try:
            return float(value)
        except OverflowError:  # an int beyond any float (10**400): as hot as it gets
            return math.inf

    def as_dict(self) -> dict[str, Any]:
        """The scope as plain JSON data (what ``inspect`` shows)."""
        return {
            "model": self.model,
            "tenant": self.tenant,
            "corpus_version": self.corpus_version,
            "params": dict(self.params),
            "context": self.context,
            "fields": dict(self.fields),
        }

    def digest(self) -> str:
        """The digest every lookup filters on: equal digests mean equal scopes."""
        cached: str | None = self.__dict__.get("_digest")
        if cached is None:  # a scope is frozen (private copies), so its digest is too
            cached = digest("scope/v1", self.as_dict())
            object.__setattr__(self, "_digest", cached)
        return cached

    def replace(self, **changes: Any) -> Scope:
        """A copy with some attributes changed.

        Example:
            >>> Scope(model="a").replace(tenant="t").tenant
            't'
        """
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scope:
        """Rebuild a scope from :meth:`as_dict` output."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_endpoint(value: Any) -> str | None:
    """One spelling of a server's URL for a scope: scheme, lower-case host, port (a
    scheme's default port left out) and path without a trailing slash. Never the query
    string, the fragment or user-info (``user:password@``), which may hold credentials.
    ``None`` for no endpoint (``None``, ``""``, a secret, not text, no host).

    Example:
        >>> normalize_endpoint("HTTPS://user:pw@API.Example.com:443/v1/?key=s3cret")
        'https://api.example.com/v1'
        >>> normalize_endpoint("localhost:8000/v1/")
        '//localhost:8000/v1'
    """
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return None
    if not isinstance(value, str):  # a URL type (pydantic's AnyUrl, httpx.URL) spells itself
        if value is None or isinstance(value, (bytes, bool, int, float, Mapping, list, tuple)):
            return None
        value = str(value)
    text = value.strip()
    if not text:
        return None
    if "://" not in text:  # "localhost:8000/v1": a host without a scheme
        text = "//" + text.lstrip("/")
    try:
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a malformed port or IPv6 address: no host to tell apart
        return None
    if not host:
        return None
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host  # hostname is lower-case already
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}:" * bool(scheme) + f"//{netloc}{path}"


def endpoints_of(obj: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The servers ``obj`` (a model client) names in its attributes ``names``, normalised
    (:func:`normalize_endpoint`), by attribute; an attribute that fails to read names none.

    Example:
        >>> class Client:
        ...     base_url = "http://LOCALHOST:8000/v1/"
        >>> endpoints_of(Client(), ("api_base", "base_url"))
        {'base_url': 'http://localhost:8000/v1'}
    """
    found: dict[str, str] = {}
    for name in names:
        try:
            value = getattr(obj, name, None)
        except Exception:  # a property that fails names no server
            continue
        if url := normalize_endpoint(value):
            found[name] = url
    return found
