"""paracache behind Redis Sentinel (real servers: a primary and a replica with the search
module, one sentinel from the same ``redis-server`` binary, ``--sentinel``): a client of
``redis.sentinel.Sentinel(...).master_for(...)`` passed as ``redis_client=``, blocking
and asyncio, and after the sentinel fails the primary over to the replica."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel

from paracache import Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis
from paracache.embedded.server import _free_port

ACME = Scope(model="m", tenant="acme")
QUESTIONS = [f"What is the status of order number {1000 + i}?" for i in range(20)]
SERVICE = "paracache-test"


def _answer(question: str) -> str:
    return f"order {question[-5:-1]}"


class Sentinelled:
    """A primary, its replica and one sentinel watching them (quorum 1, a primary is
    down after 1 s without answers)."""

    def __init__(self, tmp: Path) -> None:
        self.primary = EmbeddedRedis(config={"repl-diskless-sync-delay": "0"}).start()
        password = self.primary.password
        self.replica = EmbeddedRedis(
            password=password, config={"masterauth": password, "repl-diskless-sync-delay": "0"}
        ).start()
        plain = redis.Redis(port=self.replica.port, password=password)
        plain.execute_command("REPLICAOF", "127.0.0.1", self.primary.port)
        self._wait(lambda: plain.info("replication").get("master_link_status") == "up")
        plain.close()
        self.port = _free_port()
        conf = tmp / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel auth-pass {SERVICE} {password}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.proc = subprocess.Popen(
            [str(self.primary.server_binary), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.sentinel = Sentinel([("127.0.0.1", self.port)], socket_timeout=2.0)
        self._wait(lambda: len(self.sentinel.discover_slaves(SERVICE)) == 1)

    def master(self) -> tuple[str, int]:
        try:
            host, port = self.sentinel.discover_master(SERVICE)
        except redis.RedisError:
            return ("", 0)
        return (str(host), int(port))

    @staticmethod
    def _wait(ready: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise AssertionError("timed out")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.replica.close()
        self.primary.close()


@pytest.fixture
def sentinelled(tmp_path: Path) -> Iterator[Sentinelled]:
    servers = Sentinelled(tmp_path)
    yield servers
    servers.close()


def _cache(servers: Sentinelled) -> tuple[SemanticIndex, Any]:
    client = servers.sentinel.master_for(
        SERVICE, password=servers.primary.password, socket_timeout=2.0, socket_connect_timeout=1.0
    )
    return SemanticIndex(redis_client=client, namespace="sentinel", timeout=2.0), client


def test_a_sentinel_client_serves_blocking_and_asyncio(sentinelled: Sentinelled) -> None:
    # Before: the asyncio twin of a Sentinel-managed client was a plain client of its
    # connection options, which name no server: every async lookup and store went to
    # localhost:6379 (another Redis there, or a counted failure), and messages named it.
    cache, client = _cache(sentinelled)
    assert cache.redis_url == f"redis+sentinel://127.0.0.1:{sentinelled.port}/{SERVICE}"
    cache.warm([(q, _answer(q)) for q in QUESTIONS], ACME, progress=False)
    hit = cache.lookup("status of order number 1005", ACME)
    assert hit is not None and hit.response == _answer(QUESTIONS[5])

    async def both() -> tuple[Any, Any]:
        hit = await cache.alookup("status of order number 1007", ACME)
        stored = await cache.astore("Where is my parcel?", "In transit.", ACME)
        await cache.aclose()
        return hit, stored

    hit, stored = asyncio.run(both())
    assert hit is not None and hit.response == _answer(QUESTIONS[7])
    assert stored is not None and cache.count() == len(QUESTIONS) + 1
    assert cache.stats().errors == 0
    cache.close()
    client.close()


def test_a_sentinel_failover(sentinelled: Sentinelled) -> None:
    cache, client = _cache(sentinelled)
    cache.warm([(q, _answer(q)) for q in QUESTIONS], ACME, progress=False)
    old = sentinelled.master()
    assert old[1] == sentinelled.primary.port
    sentinelled.primary.kill()
    sentinelled._wait(lambda: sentinelled.master()[1] == sentinelled.replica.port)
    # The promoted replica has the index and the entries; the cache finds it through
    # the sentinel (fail-open misses meanwhile, never an exception).
    deadline = time.monotonic() + 15
    hit = None
    while hit is None and time.monotonic() < deadline:
        hit = cache.lookup("status of order number 1003", ACME)
        time.sleep(0.1)
    assert hit is not None and hit.response == _answer(QUESTIONS[3])
    assert cache.count() == len(QUESTIONS)
    assert cache.store("Where is my parcel?", "In transit.", ACME) is not None

    async def after() -> Any:
        hit = await cache.alookup("status of order number 1009", ACME)
        await cache.aclose()
        return hit

    hit = asyncio.run(after())
    assert hit is not None and hit.response == _answer(QUESTIONS[9])
    cache.close()
    client.close()
