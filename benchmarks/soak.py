"""Soak test: mixed cache traffic for a bounded time while faults hit the Redis server.

A private embedded Redis (loopback only, persistent: AOF with ``appendfsync always``)
serves one :class:`paracache.SemanticIndex` with the default settings (100 ms timeout,
the offline MiniLM embedder). Traffic, all at once:

* threads: lookups of Banking77 questions, a store on each miss, scratch writes that
  are cleared every few seconds, and *ledger* writes (unique prompts, no TTL) whose
  acknowledged ids are recorded;
* asyncio tasks in their own event loop: the same through ``alookup``/``astore``;
* a LangChain chat model (a local echo model) with ``paracache.langchain.SemanticCache``.

Faults, on a schedule (each after a few seconds of normal traffic): ``CLIENT PAUSE`` for
2 s, ``SIGKILL`` and a restart 2 s later, ``DEBUG SLEEP`` (a server stuck 300 ms at a
time for 2 s), out of memory (``maxmemory`` below use, ``noeviction``) for 3 s.

At the end it checks that nothing raised to the caller, every acknowledged ledger entry
is still there with its response (none lost), no entry is corrupt
(``SemanticIndex.repair(dry_run=True)``), no thread is left running, and prints a table:
lookups served, errors raised, entries lost or corrupt, latency percentiles during
faults (from a fault's start to 1 s after its end) and outside them.

    python benchmarks/soak.py [--seconds 120] [--threads 3] [--tasks 6] [--json out.json]

``--cluster``: the same traffic and checks on an embedded Redis Cluster (3 primaries + 3
replicas, ``cluster-node-timeout`` 1 s; no persistence), with cluster faults instead: a
primary paused for 2 s, a primary killed (its replica takes over; the node is restarted
and rejoins as a replica), slots moved between primaries under traffic.

Exit code 0 when errors raised, entries lost and entries corrupt are all 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from redis.backoff import NoBackoff
from redis.retry import Retry

from paracache import Scope, SemanticIndex
from paracache.embedded import EmbeddedCluster, EmbeddedRedis
from paracache.langchain import SemanticCache

DATA = Path(__file__).resolve().parent.parent / "integrations/paracache/data/banking77_demo.jsonl"
RECOVERY = 1.0  # seconds after a fault still counted as "during" it


class EchoChat(BaseChatModel):
    """A local chat model: ``answer: <question>`` after a simulated 20 ms."""

    @property
    def _llm_type(self) -> str:
        return "soak-echo"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **_: Any
    ) -> ChatResult:
        time.sleep(0.02)
        text = f"answer: {messages[-1].content}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


@dataclass
class Record:
    """Everything the traffic observed (appended from many threads; lists are safe)."""

    lookups: list[tuple[float, float, str]] = field(default_factory=list)  # start, s, source
    llm_calls: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    admin_errors: int = 0  # clear() raising CacheError while Redis is down (documented)
    harness_errors: list[str] = field(default_factory=list)
    ledger: dict[str, str] = field(default_factory=dict)  # acknowledged entry id -> response
    hits: int = 0
    writes_attempted: int = 0
    writes_acked: int = 0
    answers: int = 0
    wrong_answers: int = 0
    faults: list[tuple[str, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, protocol=2, socket_timeout=5, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )


# --------------------------------------------------------------------------- traffic


def _thread_worker(
    n: int, idx: SemanticIndex, llm: EchoChat, questions: list[str], rec: Record,
    stop: threading.Event,
) -> None:
    rng = random.Random(n)
    i = 0
    while not stop.is_set():
        i += 1
        try:
            q = rng.choice(questions)
            t0 = time.perf_counter()
            hit = idx.lookup(q, Scope(tenant="shop"))
            rec.lookups.append((time.time(), time.perf_counter() - t0, "sync"))
            if hit is not None:
                with rec.lock:
                    rec.hits += 1
            else:
                idx.store(q, f"answer to {q}", Scope(tenant="shop"))
            idx.store(f"scratch {n} {i} {q}", "scratch", Scope(tenant="scratch"))
            if i % 3 == 0:
                prompt, response = f"ledger {n}-{i}: {q}", f"ledger answer {n}-{i}"
                with rec.lock:
                    rec.writes_attempted += 1
                entry = idx.store(prompt, response, Scope(tenant="ledger"), ttl=None)
                if entry is not None:
                    with rec.lock:
                        rec.writes_acked += 1
                        rec.ledger[entry] = response
            if i % 4 == 0:
                q2 = rng.choice(questions)
                t0 = time.perf_counter()
                reply = llm.invoke([HumanMessage(q2)])
                rec.llm_calls.append((time.time(), time.perf_counter() - t0))
                with rec.lock:
                    rec.answers += 1
                    if not str(reply.content).startswith("answer: "):
                        rec.wrong_answers += 1
            if i % 50 == 0:
                idx.clear(tenant="scratch")
        except Exception as exc:
            if type(exc).__name__ == "CacheError":  # only clear() may, by design
                with rec.lock:
                    rec.admin_errors += 1
            else:
                rec.errors.append(f"thread {n}: {exc!r}")
        time.sleep(0.002)


async def _task_worker(
    n: int, idx: SemanticIndex, llm: EchoChat, questions: list[str], rec: Record,
    stop: threading.Event,
) -> None:
    rng = random.Random(1000 + n)
    i = 0
    while not stop.is_set():
        i += 1
        try:
            q = rng.choice(questions)
            t0 = time.perf_counter()
            hit = await idx.alookup(q, Scope(tenant="shop"))
            rec.lookups.append((time.time(), time.perf_counter() - t0, "async"))
            if hit is not None:
                with rec.lock:
                    rec.hits += 1
            else:
                await idx.astore(q, f"answer to {q}", Scope(tenant="shop"))
            if i % 3 == 0:
                prompt, response = f"ledger a{n}-{i}: {q}", f"ledger answer a{n}-{i}"
                with rec.lock:
                    rec.writes_attempted += 1
                entry = await idx.astore(prompt, response, Scope(tenant="ledger"), ttl=None)
                if entry is not None:
                    with rec.lock:
                        rec.writes_acked += 1
                        rec.ledger[entry] = response
            if i % 4 == 0:
                q2 = rng.choice(questions)
                t0 = time.perf_counter()
                reply = await llm.ainvoke([HumanMessage(q2)])
                rec.llm_calls.append((time.time(), time.perf_counter() - t0))
                with rec.lock:
                    rec.answers += 1
                    if not str(reply.content).startswith("answer: "):
                        rec.wrong_answers += 1
        except Exception as exc:
            rec.errors.append(f"task {n}: {exc!r}")
        await asyncio.sleep(0.002)


def _async_traffic(
    tasks: int, idx: SemanticIndex, llm: EchoChat, questions: list[str], rec: Record,
    stop: threading.Event,
) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        await asyncio.gather(
            *(_task_worker(n, idx, llm, questions, rec, stop) for n in range(tasks))
        )
        await idx.aclose()
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        if left:
            rec.errors.append(f"asyncio tasks left pending: {left}")

    asyncio.run(main())


# --------------------------------------------------------------------------- faults


def _pause(server: EmbeddedRedis) -> None:
    server.pause(2.0)
    time.sleep(2.0)


def _kill(server: EmbeddedRedis) -> None:
    server.kill()
    time.sleep(2.0)
    server.start()


def _slow(server: EmbeddedRedis) -> None:
    client = _client(server.url)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        client.execute_command("DEBUG", "SLEEP", "0.3")
        time.sleep(0.2)
    client.close()


def _oom(server: EmbeddedRedis) -> None:
    client = _client(server.url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", max(1, used // 2))
    time.sleep(3.0)
    client.config_set("maxmemory", 0)
    client.close()


FAULTS: list[tuple[str, Callable[[EmbeddedRedis], None]]] = [
    ("pause", _pause), ("kill+restart", _kill), ("slow", _slow), ("oom", _oom),
]


def _cluster_pause(cluster: EmbeddedCluster) -> None:
    cluster.node(cluster.primary_ports()[0]).pause(2.0)
    time.sleep(2.0)


def _cluster_failover(cluster: EmbeddedCluster) -> None:
    victim = cluster.primary_ports()[-1]
    cluster.node(victim).kill()
    deadline = time.monotonic() + 30
    while victim in cluster.primary_ports() and time.monotonic() < deadline:
        time.sleep(0.05)
    cluster.node(victim).start()  # rejoins as a replica of the promoted one
    cluster.wait_healthy(30)


def _cluster_reshard(cluster: EmbeddedCluster) -> None:
    first = random.randrange(0, 16384 - 200)  # a different stretch of slots each time
    source = cluster.owner_port(first)
    target = next(p for p in cluster.primary_ports() if p != source)
    slots = [s for s in range(first, first + 200) if cluster.owner_port(s) == source]
    cluster.move_slots(slots, source, target)


CLUSTER_FAULTS: list[tuple[str, Callable[[EmbeddedCluster], None]]] = [
    ("pause primary", _cluster_pause), ("failover", _cluster_failover),
    ("reshard", _cluster_reshard),
]


def _fault_schedule(
    server: Any, rec: Record, deadline: float, calm: float, stop: threading.Event
) -> None:
    faults: list[tuple[str, Callable[[Any], None]]] = list(
        CLUSTER_FAULTS if isinstance(server, EmbeddedCluster) else FAULTS
    )
    k = 0
    while True:
        if stop.wait(calm) or time.monotonic() + 4 > deadline:
            return
        name, inject = faults[k % len(faults)]
        start = time.time()
        try:
            inject(server)
        except Exception as exc:
            rec.harness_errors.append(f"fault injector {name}: {exc!r}")
            _revive(server)
        rec.faults.append((name, start, time.time()))
        k += 1


# --------------------------------------------------------------------------- report


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    data = sorted(values)

    def pick(q: float) -> float:
        return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 1)

    return {"n": len(data), "p50": pick(0.5), "p99": pick(0.99), "max": round(data[-1] * 1000, 1)}


def _fault_of(ts: float, faults: list[tuple[str, float, float]]) -> str | None:
    for name, start, end in faults:
        if start <= ts <= end + RECOVERY:
            return name
    return None


def _revive(server: Any) -> None:
    """Restart what a fault left stopped."""
    for node in server.nodes if isinstance(server, EmbeddedCluster) else [server]:
        if not node.is_running():
            node.start()
    if isinstance(server, EmbeddedCluster):
        server.wait_healthy(30)


def run(
    seconds: float, threads: int, tasks: int, calm: float, cluster: bool = False
) -> dict[str, Any]:
    questions = [json.loads(line)["text"] for line in DATA.read_text().splitlines() if line]
    data_dir = tempfile.mkdtemp(prefix="paracache-soak-")
    server: Any = (
        EmbeddedCluster(node_timeout=1000).start()
        if cluster
        else EmbeddedRedis(
            data_dir=data_dir, persist=True, appendfsync="always", enable_debug_command=True
        ).start()
    )
    rec = Record()
    stop = threading.Event()
    threads_before = set(threading.enumerate())
    try:
        idx = SemanticIndex(server.url, namespace="soak")
        idx.embed("warm up")
        llm = EchoChat(cache=SemanticCache(index=idx))
        workers = [
            threading.Thread(
                target=_thread_worker, args=(n, idx, llm, questions, rec, stop),
                name=f"soak-{n}",
            )
            for n in range(threads)
        ]
        workers.append(
            threading.Thread(
                target=_async_traffic, args=(tasks, idx, llm, questions, rec, stop),
                name="soak-async",
            )
        )
        deadline = time.monotonic() + seconds
        injector = threading.Thread(
            target=_fault_schedule, args=(server, rec, deadline, calm, stop), name="soak-faults"
        )
        started = time.time()
        for t in [*workers, injector]:
            t.start()
        while time.monotonic() < deadline:
            time.sleep(0.5)
        stop.set()
        for t in [injector, *workers]:
            t.join(30)
        hanging = [t.name for t in [injector, *workers] if t.is_alive()]
        if hanging:  # say where they are stuck
            import traceback

            frames = sys._current_frames()
            for t in [injector, *workers]:
                if t.is_alive() and t.ident in frames:
                    print(f"--- {t.name} still running:", file=sys.stderr)
                    traceback.print_stack(frames[t.ident], file=sys.stderr)
        elapsed = time.time() - started

        # ------------------------------------------------------------ checks
        _revive(server)
        client: Any = server.client(protocol=2) if cluster else _client(server.url)
        deadline = time.monotonic() + (0 if cluster else 30)
        while time.monotonic() < deadline:  # the index is rebuilt after the last restart
            with contextlib.suppress(redis.RedisError):
                info = client.execute_command("FT.INFO", idx.layout.index_name)
                pairs = dict(zip(info[::2], info[1::2], strict=False))
                if float(pairs.get(b"percent_indexed", 0)) >= 1:
                    break
            time.sleep(0.2)
        lost = 0
        pipe = client.pipeline(transaction=False)
        ledger = list(rec.ledger.items())
        for entry, _ in ledger:
            pipe.hget(idx.layout.key(entry), "response")
        for (_, response), got in zip(ledger, pipe.execute(), strict=True):
            if got != response.encode():
                lost += 1
        report = idx.repair(dry_run=True)
        stats = idx.stats()
        if not hanging:  # never pull connections from under a running thread
            idx.close()
        client.close()
    finally:
        stop.set()
        server.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    extra = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    extra = [n for n in extra if not n.startswith(("paracache-embed", "asyncio_"))]

    during: dict[str, list[float]] = {}
    outside: list[float] = []
    for ts, seconds_, _ in rec.lookups:
        fault = _fault_of(ts, rec.faults)
        if fault is None:
            outside.append(seconds_)
        else:
            during.setdefault(fault, []).append(seconds_)
    all_during = [s for values in during.values() for s in values]
    return {
        "seconds": round(elapsed, 1),
        "backend": "cluster: 3 primaries + 3 replicas" if cluster else "one server",
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        "threads": threads,
        "tasks": tasks,
        "faults": [name for name, _, _ in rec.faults],
        "lookups": len(rec.lookups),
        "lookups_sync": sum(1 for *_, src in rec.lookups if src == "sync"),
        "lookups_async": sum(1 for *_, src in rec.lookups if src == "async"),
        "hits": rec.hits,
        "llm_calls": rec.answers,
        "llm_wrong_answers": rec.wrong_answers,
        "errors_raised": len(rec.errors),
        "error_samples": rec.errors[:5],
        "admin_errors": rec.admin_errors,
        "harness_errors": rec.harness_errors,
        "ledger_writes_attempted": rec.writes_attempted,
        "ledger_writes_acked": rec.writes_acked,
        "entries_lost": lost,
        "entries_corrupt": report.invalid,
        "entries_checked": report.scanned,
        "threads_left": hanging + extra,
        "writes": stats.writes,
        "writes_dropped": stats.writes_dropped,
        "errors_by_kind": stats.errors_by_kind,
        "latency_outside_ms": _pct(outside),
        "latency_during_ms": _pct(all_during),
        "latency_by_fault_ms": {k: _pct(v) for k, v in sorted(during.items())},
        "llm_call_latency_ms": _pct([s for _, s in rec.llm_calls]),
    }


def table(r: dict[str, Any]) -> str:
    out = r["latency_outside_ms"]
    dur = r["latency_during_ms"]
    lines = [
        "| metric | value |",
        "|---|---:|",
        f"| run | {r['backend']}, {r['seconds']} s, {r['threads']} threads + {r['tasks']} "
        "asyncio tasks; "
        f"{r['machine']} |",
        f"| faults injected | {len(r['faults'])}: {', '.join(r['faults'])} |",
        f"| lookups served (sync / async) | {r['lookups']:,} ({r['lookups_sync']:,} / "
        f"{r['lookups_async']:,}), {r['hits']:,} hits |",
        f"| LangChain calls answered | {r['llm_calls']:,} (wrong answers: "
        f"{r['llm_wrong_answers']}) |",
        f"| **errors raised to the caller** (lookups, stores, LLM calls) | "
        f"**{r['errors_raised']}** |",
        f"| `clear()` calls refused with `CacheError` while Redis was down (by design) | "
        f"{r['admin_errors']} |",
        f"| writes stored / dropped (fail-open, counted) | {r['writes']:,} / "
        f"{r['writes_dropped']:,} |",
        f"| ledger writes acknowledged | {r['ledger_writes_acked']:,} of "
        f"{r['ledger_writes_attempted']:,} |",
        f"| **acknowledged entries lost** | **{r['entries_lost']}** |",
        f"| **corrupt entries** (of {r['entries_checked']:,} keys checked) | "
        f"**{r['entries_corrupt']}** |",
        f"| threads left running | {len(r['threads_left'])} |",
        f"| lookup latency outside faults, p50 / p99 / max | {out['p50']} / {out['p99']} / "
        f"{out['max']} ms ({out['n']:,} lookups) |",
        f"| lookup latency during faults, p50 / p99 / max | {dur['p50']} / {dur['p99']} / "
        f"{dur['max']} ms ({dur['n']:,} lookups) |",
    ]
    for name, p in r["latency_by_fault_ms"].items():
        lines.append(
            f"| ... during {name}, p50 / p99 / max | {p['p50']} / {p['p99']} / {p['max']} ms "
            f"({p['n']:,}) |"
        )
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(r["errors_by_kind"].items()))
    lines.append(f"| failures absorbed (counted, not raised) | {kinds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="run time (default 120)")
    parser.add_argument("--threads", type=int, default=3, help="traffic threads (default 3)")
    parser.add_argument("--tasks", type=int, default=6, help="asyncio tasks (default 6)")
    parser.add_argument(
        "--calm", type=float, default=6.0, help="seconds of normal traffic between faults"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--cluster", action="store_true", help="a 3+3 cluster, cluster faults")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.threads, args.tasks, args.calm, cluster=args.cluster)
    print(table(result))
    if result["error_samples"]:
        print("errors:", *result["error_samples"], sep="\n  ", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = not (result["errors_raised"] or result["entries_lost"] or result["entries_corrupt"])
    return 0 if ok and not result["threads_left"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
