"""Shared fixtures: one real embedded Redis (with RediSearch) per test session, the real
offline embedder, and a fresh namespace per test. Nothing here is mocked."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Strict mode: a bug in paracache's own code raises out of a lookup or store (in
# production it is logged, counted as ``internal`` and the call is a miss).
os.environ.setdefault("PARACACHE_STRICT", "1")

from paracache import SemanticIndex
from paracache.embedded import EmbeddedCluster, EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A private embedded Redis for the session (tests may stop and restart it)."""
    server = EmbeddedRedis().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_index(redis_url: str, namespace: str) -> Iterator[object]:
    """Build SemanticIndex instances on the session server in this test's namespace."""
    made: list[SemanticIndex] = []

    def make(**options: object) -> SemanticIndex:
        options.setdefault("namespace", namespace)
        # The product's 100 ms Redis timeout fails fast in production; on CI's two cores,
        # shared by the server, the embedder and the suite, a reply can take longer now
        # and then. Tests of timeouts and faults set their own.
        options.setdefault("timeout", CLUSTER_TEST_TIMEOUT)
        index = SemanticIndex(redis_url, **options)  # type: ignore[arg-type]
        made.append(index)
        return index

    yield make
    for index in made:
        with contextlib.suppress(Exception):
            index.clear()
        index.close()


@pytest.fixture
def index(make_index: object) -> SemanticIndex:
    return make_index()  # type: ignore[operator,no-any-return]


#: Seconds per Redis call for the cluster tests' caches (see ``make_cluster_index``).
CLUSTER_TEST_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    """A private Redis Cluster for the session: 3 primaries + 3 replicas, RediSearch on
    every node (no coordinator). Tests that kill or reshard nodes start their own."""
    cluster = EmbeddedCluster().start()
    yield cluster
    cluster.close()


@pytest.fixture
def make_cluster_index(redis_cluster: EmbeddedCluster, namespace: str) -> Iterator[object]:
    """Build SemanticIndex instances on the session cluster (a ``RedisCluster`` client)
    in this test's namespace; ``url=True`` passes the cluster's URL instead.

    The time limit is generous: these tests check behaviour, not speed, and every
    failed call is a miss and an error they would count. On a loaded 2-core machine six
    cluster nodes, this process's embedding threads and other suites share the cores: a
    reply of a starved node took 0.76 s of a 1 s bound, and 16 concurrent async lookups
    on a caller's client spent the 2 s budget (2 x timeout, counted in wall time there)
    and became misses (``test_async_twins_on_a_cluster``, reproduced with 12 busy loops
    beside it; it passed alone). Time limits are tested where they are the subject."""
    made: list[SemanticIndex] = []
    clients: list[object] = []

    def make(url: bool = False, **options: object) -> SemanticIndex:
        options.setdefault("namespace", namespace)
        options.setdefault("timeout", CLUSTER_TEST_TIMEOUT)
        if url:
            index = SemanticIndex(redis_cluster.url, **options)  # type: ignore[arg-type]
        else:
            client = redis_cluster.client(socket_timeout=2.0)
            clients.append(client)
            index = SemanticIndex(redis_client=client, **options)  # type: ignore[arg-type]
        made.append(index)
        return index

    yield make
    for index in made:
        with contextlib.suppress(Exception):
            index.clear()
        index.close()
    for client in clients:
        client.close()  # type: ignore[attr-defined]
