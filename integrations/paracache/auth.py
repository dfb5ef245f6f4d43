"""Who is asking the service: API keys, each bound to one tenant.

``PARACACHE_API_KEYS`` (or ``paracache serve --api-keys FILE``) holds ``key:tenant`` pairs
separated by commas (a file may also use newlines and ``#`` comments). A request presents
its key as ``Authorization: Bearer <key>``; :meth:`ApiKeys.authenticate` returns the
key's :class:`Principal`, whose tenant then scopes every lookup and store of the request.

Keys are compared in constant time (a SHA-256 of the presented key against that of every
configured key, with :func:`hmac.compare_digest`, without stopping at a match); only their
digests are kept. A :class:`Principal` never carries the key: its ``key_id`` (``key-1``,
``key-2``, ... in configuration order) is what logs, metrics and per-key limits may use.

Example:
    >>> keys = ApiKeys.parse("k-acme-0123456789abcdef:acme,k-globex-0123456789abcd:globex")
    >>> keys.authenticate("Bearer k-acme-0123456789abcdef")
    Principal(tenant='acme', key_id='key-1')
    >>> keys.authenticate("Bearer wrong") is None, keys.authenticate(None) is None
    (True, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ENV_VAR", "MIN_KEY_CHARS", "ApiKeys", "Principal"]

#: The environment variable the service reads its keys from.
ENV_VAR = "PARACACHE_API_KEYS"
#: Shortest key accepted (a guessable key is no key).
MIN_KEY_CHARS = 16
_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # what fits a Bearer token, no separators


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: the tenant its key belongs to, and the key's label.

    Attributes:
        tenant: The tenant every lookup and store of the request is scoped to.
        key_id: ``key-N``, the key's position in the configuration: safe to log, to
            label metrics with, or to rate-limit on (the key itself never leaves
            :class:`ApiKeys`).
    """

    tenant: str
    key_id: str


class ApiKeys:
    """The service's API keys (digests only), each bound to a tenant.

    Example:
        >>> ApiKeys.parse("short:acme")
        Traceback (most recent call last):
        ...
        ValueError: API key 1 is shorter than 16 characters
    """

    __slots__ = ("_digests",)

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        digests: list[tuple[bytes, Principal]] = []
        seen: set[bytes] = set()
        for n, (key, tenant) in enumerate(pairs, 1):
            if not isinstance(key, str) or not isinstance(tenant, str):
                raise TypeError(f"API key {n}: key and tenant must be str")
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(f"API key {n} is shorter than {MIN_KEY_CHARS} characters")
            if not _KEY.match(key):
                raise ValueError(
                    f"API key {n} has characters a Bearer token cannot carry "
                    "(letters, digits and ._~+/=- only)"
                )
            if not tenant.strip() or tenant != tenant.strip():
                raise ValueError(f"API key {n}: the tenant must be non-empty, not space-padded")
            digest = _digest(key)
            if digest in seen:
                raise ValueError(f"API key {n} is given twice")
            seen.add(digest)
            digests.append((digest, Principal(tenant=tenant, key_id=f"key-{n}")))
        if not digests:
            raise ValueError("no API keys given")
        self._digests = tuple(digests)

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """Keys from ``key:tenant`` pairs separated by commas or newlines (blank lines and
        lines starting with ``#`` are skipped; a tenant may contain ``:``)."""
        pairs: list[tuple[str, str]] = []
        for line in text.splitlines():
            if line.strip().startswith("#"):
                continue
            for item in line.split(","):
                item = item.strip()
                if not item:
                    continue
                key, sep, tenant = item.partition(":")
                if not sep:
                    raise ValueError(
                        f"API key {len(pairs) + 1}: expected key:tenant (the key is not shown)"
                    )
                tenant = tenant.strip()
                if re.search(r"\s#", tenant):  # "key:acme  # prod": not a tenant's name
                    raise ValueError(
                        f"API key {len(pairs) + 1}: its tenant holds a comment ({tenant!r}); "
                        "comments go on lines of their own, starting with #"
                    )
                pairs.append((key.strip(), tenant))
        return cls(pairs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ApiKeys:
        """Keys from a file of ``key:tenant`` pairs (see :meth:`parse`)."""
        return cls.parse(Path(path).read_text(encoding="utf-8-sig"))  # a BOM is no key

    @classmethod
    def from_env(cls) -> ApiKeys | None:
        """Keys from ``PARACACHE_API_KEYS``; ``None`` if it is unset or empty."""
        text = os.environ.get(ENV_VAR, "").strip()
        return cls.parse(text) if text else None

    @property
    def tenants(self) -> frozenset[str]:
        """The tenants the keys belong to."""
        return frozenset(p.tenant for _, p in self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys, {len(self.tenants)} tenants)"

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization`` header's Bearer key; ``None`` without a
        header, with another scheme, or with an unknown key. Every configured key is
        compared (in constant time each), whether or not one matched."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = _digest(token.strip())
        found: Principal | None = None
        for digest, principal in self._digests:
            if hmac.compare_digest(digest, presented) and found is None:
                found = principal
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
