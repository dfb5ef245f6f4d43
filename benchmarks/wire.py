"""What a lookup costs on the wire and on the server, counted the same way for every system.

:class:`WireMeter` counts, at the client, every write to a Redis socket made through
redis-py's connection class (``AbstractConnection.send_packed_command``; paracache's own
per-thread connections and langchain-redis's pooled ones both write there) and every
reply read (``read_response``), per connection, while a window is open. A *round trip*
is a write whose reply the client read before the window closed (it waited for it); a
write whose reply was not read in the window is *sent* (posted: paracache's batched
hit counts); the *commands* are the RESP arrays in the writes (a pipeline of ten is one
write, ten commands).

:class:`ServerMeter` reads the server's side of the same window: ``INFO commandstats``
deltas over all commands (those a script runs included: the work the server did), and
the top-level commands' own durations from ``SLOWLOG`` (logging every command while the
meter is open; a script's inner commands are not logged, so their time is counted once,
in the script's), less the meter's own commands.

``python benchmarks/wire.py redis://127.0.0.1:PORT`` checks both against known sequences
(ten ``PING``s are ten round trips and ten commands; a pipeline of ten is one round trip
and ten commands; a posted command is one write, no round trip; a script running two
``GET``s is one top-level command and three in ``INFO commandstats``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from collections.abc import Iterator
from typing import Any

import redis
from redis.connection import AbstractConnection

#: The meter's own connection's name: its commands are left out of the server's counts.
METER_NAME = "perf-meter"
#: Commands the meter itself sends (and the PING that reads a posted reply).
_OWN = frozenset({"info", "slowlog", "config", "client", "hello"})


def command_names(packed: Any) -> list[str]:
    """The (lower-case) names of the RESP commands in a packed write.

    Example:
        >>> command_names([b"*1\\r\\n$4\\r\\nPING\\r\\n*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n"])
        ['ping', 'get']
    """
    if isinstance(packed, (bytes, bytearray, memoryview, str)):
        packed = [packed]
    data = b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in packed)
    names: list[str] = []
    i = 0
    while i < len(data):
        if data[i:i + 1] != b"*":
            raise ValueError(f"not a RESP array at byte {i}: {data[i:i + 16]!r}")
        j = data.index(b"\r\n", i)
        n = int(data[i + 1:j])
        i = j + 2
        for k in range(n):
            if data[i:i + 1] != b"$":
                raise ValueError(f"not a bulk string at byte {i}")
            j = data.index(b"\r\n", i)
            size = int(data[i + 1:j])
            i = j + 2
            if k == 0:
                names.append(data[i:i + size].decode("ascii", "replace").lower())
            i += size + 2
    return names


@dataclasses.dataclass
class _Write:
    conn: int
    commands: list[str]
    #: ``sendall`` calls it takes (redis-py writes each item of a list on its own).
    sendalls: int = 1
    replies: int = 0


@dataclasses.dataclass
class Wire:
    """One window's client-side counts."""

    writes: int
    #: ``sendall`` calls those writes took (more than ``writes`` when a write was a list).
    sendalls: int
    round_trips: int
    sent: int
    commands: list[str]
    #: Replies read in the window to writes made before it (a posted command's).
    earlier_replies: int


class WireMeter:
    """Counts writes and replies on every redis-py connection of the process while
    :meth:`window` is open (all threads). Install once (:meth:`install`), then
    ``with meter.window() as got: ...``; ``got[0]`` is the :class:`Wire` after the
    block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._writes: list[_Write] = []
        self._pending: dict[int, list[_Write]] = {}
        self._earlier = 0
        self._installed: tuple[Any, Any] | None = None

    def install(self) -> WireMeter:
        if self._installed is not None:
            return self
        send, read = AbstractConnection.send_packed_command, AbstractConnection.read_response
        meter = self

        def send_packed_command(conn: Any, command: Any, *a: Any, **kw: Any) -> Any:
            if meter._open:
                meter._wrote(conn, command)
            return send(conn, command, *a, **kw)

        def read_response(conn: Any, *a: Any, **kw: Any) -> Any:
            reply = read(conn, *a, **kw)
            if meter._open:
                meter._read(conn)
            return reply

        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
        AbstractConnection.read_response = read_response  # type: ignore[method-assign]
        self._installed = (send, read)
        return self

    def uninstall(self) -> None:
        if self._installed is not None:
            send, read = self._installed
            AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
            AbstractConnection.read_response = read  # type: ignore[method-assign]
            self._installed = None

    def _wrote(self, conn: Any, command: Any) -> None:
        items = 1 if isinstance(command, (bytes, bytearray, memoryview, str)) else len(command)
        write = _Write(id(conn), command_names(command), items)
        with self._lock:
            self._writes.append(write)
            self._pending.setdefault(id(conn), []).append(write)

    def _read(self, conn: Any) -> None:
        with self._lock:
            queue = self._pending.get(id(conn))
            if not queue:
                self._earlier += 1
                return
            write = queue[0]
            write.replies += 1
            if write.replies >= len(write.commands):
                queue.pop(0)

    @contextlib.contextmanager
    def window(self) -> Iterator[list[Wire]]:
        if self._installed is None:
            raise RuntimeError("WireMeter.install() first")
        got: list[Wire] = []
        with self._lock:
            self._writes, self._pending, self._earlier = [], {}, 0
            self._open = True
        try:
            yield got
        finally:
            with self._lock:
                self._open = False
                writes, earlier = self._writes, self._earlier
            got.append(Wire(
                writes=len(writes),
                sendalls=sum(w.sendalls for w in writes),
                round_trips=sum(1 for w in writes if w.replies),
                sent=sum(1 for w in writes if not w.replies),
                commands=[c for w in writes for c in w.commands],
                earlier_replies=earlier))


@dataclasses.dataclass
class Server:
    """One window's server-side counts."""

    #: ``INFO commandstats`` calls by command, all commands (a script's included).
    calls: dict[str, int]
    #: Top-level commands the server ran (``SLOWLOG``), and their durations (µs).
    top_level: list[str]
    usec: int
    #: The log showed every command the clients sent (else the window is suspect: a
    #: log overrun, a command the server refused before running it).
    matched: bool = True


class ServerMeter:
    """The server's counts around a window: ``INFO commandstats`` deltas and the
    ``SLOWLOG`` of the top-level commands (every command logged while it is open; the
    previous slowlog settings restored at :meth:`close`). Its own connection is named
    :data:`METER_NAME` and its commands are left out."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, protocol=2, client_name=METER_NAME)
        cfg = self.client.config_get("slowlog-*")
        self._saved = {k: cfg[k] for k in ("slowlog-log-slower-than", "slowlog-max-len")}
        self.client.config_set("slowlog-log-slower-than", 0)
        self.client.config_set("slowlog-max-len", 4096)

    def close(self) -> None:
        for k, v in self._saved.items():
            self.client.config_set(k, v)
        self.client.close()

    def _stats(self) -> dict[str, int]:
        raw = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_").lower(): int(v["calls"]) for k, v in raw.items()}

    def start(self) -> None:
        self.client.slowlog_reset()
        self._before = self._stats()

    def stop(self, sent: list[str], ignore_pings: int = 0) -> Server:
        """The counts since :meth:`start`. ``sent``: the commands the clients sent
        meanwhile, in order (:attr:`Wire.commands`), told from the ones scripts ran in
        the log; ``ignore_pings``: PINGs sent after the window to read posted replies
        (left out)."""
        after = self._stats()
        log = self.client.execute_command("SLOWLOG", "GET", "-1")
        before = self._before
        calls = {c: after[c] - before.get(c, 0) for c in after
                 if c not in _OWN and after[c] - before.get(c, 0)}
        if ignore_pings and "ping" in calls:
            calls["ping"] -= ignore_pings
            if not calls["ping"]:
                del calls["ping"]
        # The log holds a script's commands too (Redis 7+), before the script's own
        # entry: the top-level ones are matched against what the clients sent, in order.
        top: list[str] = []
        usec = 0
        for entry in reversed(log):  # oldest first
            name = (entry[3][0].decode() if entry[3] else "").lower()
            if len(top) < len(sent) and name == sent[len(top)]:
                top.append(name)
                usec += int(entry[2])
        return Server(calls, top, usec, matched=top == sent)


def check(url: str) -> dict[str, Any]:
    """The meters against known sequences on the server at ``url`` (raises if one is
    off): ten PINGs, a pipeline of ten PINGs, a posted command and a two-command send on
    paracache's own connections, a script running two commands."""
    from paracache.transport import ThreadConnections

    meter = WireMeter().install()
    server = ServerMeter(url)
    client = redis.Redis.from_url(url, protocol=2)
    direct = ThreadConnections(redis.Redis.from_url(url, protocol=2))
    direct.call(("PING",))  # connected before the windows
    client.ping()
    results: dict[str, Any] = {}

    def measure(label: str, work: Any, want: tuple[int, ...], read_posted: bool = False) -> None:
        """``want``: writes, round trips, sent, commands, server calls, top level."""
        server.start()
        with meter.window() as w:
            work()
        if read_posted:
            direct.call(("PING",))  # reads the posted reply: the server ran it
        srv = server.stop(w[0].commands, ignore_pings=int(read_posted))
        if not srv.matched:
            raise AssertionError(f"{label}: the log shows {srv.top_level}, "
                                 f"sent {w[0].commands}")
        got = (w[0].writes, w[0].round_trips, w[0].sent, len(w[0].commands),
               sum(srv.calls.values()), len(srv.top_level))
        results[label] = dict(zip(("writes", "round_trips", "sent", "commands",
                                   "server_calls", "server_top_level"), got, strict=True))
        if got != want:
            raise AssertionError(f"{label}: (writes, round trips, sent, commands, server "
                                 f"calls, server top level) {got} != {want}")

    def pipeline() -> None:
        pipe = client.pipeline(transaction=False)
        for _ in range(10):
            pipe.ping()
        pipe.execute()

    try:
        measure("10 PINGs (redis-py)", lambda: [client.ping() for _ in range(10)],
                (10, 10, 0, 10, 10, 10))
        measure("a pipeline of 10 PINGs (redis-py)", pipeline, (1, 1, 0, 10, 10, 10))
        measure("10 PINGs (paracache's connection)",
                lambda: [direct.call(("PING",)) for _ in range(10)], (10, 10, 0, 10, 10, 10))
        measure("SET + GET in one write (paracache's send/receive)",
                lambda: direct.receive(direct.send(("SET", "perf-meter:k", "1"),
                                                   (("GET", "perf-meter:k"),))),
                (1, 1, 0, 2, 2, 2))
        measure("a script running two GETs (redis-py EVAL)",
                lambda: client.eval("redis.call('GET', KEYS[1]); "
                                    "return redis.call('GET', KEYS[1])", 1, "perf-meter:k"),
                (1, 1, 0, 1, 3, 1))
        measure("a posted INCR (paracache's post)",
                lambda: direct.post(("INCR", "perf-meter:k")), (1, 0, 1, 1, 1, 1),
                read_posted=True)
        with meter.window():
            direct.post(("INCR", "perf-meter:k"))
        with meter.window() as w2:
            direct.call(("GET", "perf-meter:k"))
        if (w2[0].earlier_replies, w2[0].round_trips, w2[0].writes) != (1, 1, 1):
            raise AssertionError(f"a posted reply read in the next window: {w2[0]}")
        results["a posted reply read in the next window"] = {
            "earlier_replies": w2[0].earlier_replies, "round_trips": w2[0].round_trips}
        client.delete("perf-meter:k")
    finally:
        meter.uninstall()
        server.close()
        client.close()
        direct.close()
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(check(sys.argv[1]), indent=1))
