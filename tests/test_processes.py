"""Several processes on one Redis, and a Redis that changes under a running app: the
server restarted, its index dropped or flushed, an index of the same name made by
hand. Real servers (a private embedded one this module restarts), real processes where
they are the point; nothing is mocked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from reliability_helpers import wait_until

import paracache
from paracache import RedisSearchUnavailable, Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis

STORED = "How do I activate my new card?"
NEAR = "how can I activate my card"  # 0.93 to STORED
SCOPE = Scope(model="m", params={"temperature": 0})


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    """A private server (no persistence) the tests may kill and start again."""
    srv = EmbeddedRedis().start()
    yield srv
    srv.close()


@pytest.fixture
def namespace() -> str:
    return "p-" + uuid.uuid4().hex[:10]


def _env() -> dict[str, str]:
    """The environment of a child process: this checkout's paracache first, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    here = str(Path(paracache.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


@contextlib.contextmanager
def _worker(url: str, namespace: str, said: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``paracache worker`` in a process of its own, stopped (SIGINT) on exit; what it
    wrote to stderr is appended to ``said`` then."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "paracache", "worker", "--redis-url", url,
         "--namespace", namespace, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            said.append(proc.communicate(timeout=10)[1])
        except subprocess.TimeoutExpired:
            proc.kill()
            said.append(proc.communicate()[1])


def _labels(url: str, index: SemanticIndex, scope: Scope = SCOPE) -> int:
    """Labels counted in Redis for ``scope`` (its statistics' ``n*`` bins)."""
    assert index.learner is not None
    record = redis.Redis.from_url(url).hgetall(index.learner.stats_key(scope.digest()))
    return sum(int(v) for k, v in record.items() if k[:1] == b"n" and k[1:].isdigit())


def _label_job(index: SemanticIndex, fresh: str) -> None:
    """One label job sent to the stream: a miss below the threshold, then its fresh answer."""
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    verdict = index.lookup_verdict(NEAR, SCOPE)
    assert verdict.outcome == "miss", verdict.reason
    index.store(NEAR, fresh, SCOPE)
    assert index.learner is not None
    wait_until(lambda: index.learner.flush() >= 0 and not index.learner._outbox, timeout=10)


def test_the_worker_process_outlives_a_redis_restart(
    server: EmbeddedRedis, namespace: str
) -> None:
    """``paracache worker`` in its own process through a real crash and restart of its
    Redis (an upgrade, a failover): it keeps running and counts the labels sent after."""
    index = SemanticIndex(
        server.url, namespace=namespace, max_error_rate=0.02, min_similarity=0.99,
        label_worker=False, timeout=2.0,
    )  # fmt: skip
    try:
        said: list[str] = []
        with _worker(server.url, namespace, said) as worker:
            _label_job(index, "Open the app and tap Activate.")
            wait_until(lambda: _labels(server.url, index) == 1, timeout=20)
            server.kill()  # a crash: connections reset, everything in memory gone
            time.sleep(1.5)
            server.start()
            time.sleep(1.0)
            assert worker.poll() is None, worker.communicate()[1][-2000:]
            # Back, empty: a new label job (its index, entries and group rebuilt) is counted.
            wait_until(lambda: index.lookup_verdict(NEAR, SCOPE).outcome == "miss", timeout=10)
            _label_job(index, "Call us.")
            wait_until(lambda: _labels(server.url, index) == 1, timeout=30)
            assert worker.poll() is None
        err = said[0]
        assert "Traceback" not in err, err[-2000:]
        assert "Redis unreachable" in err and "reachable again" in err, err
    finally:
        index.clear()
        index.close()


def test_a_worker_finds_its_group_gone_when_it_claims(
    server: EmbeddedRedis, namespace: str
) -> None:
    """FLUSHALL (or a restart, or ``clear()``) takes the consumer group with it: a worker
    whose periodic claim (``XAUTOCLAIM``) comes first makes the group again, as a read
    does."""
    from paracache.learning import LabelWorker, stream_key

    client = redis.Redis.from_url(server.url)
    worker = LabelWorker(client, namespace, claim_idle_ms=1)
    assert worker.run_once(block_ms=1) == 0  # the group made
    client.flushall()
    worker._claim_at = 0.0  # the claim is due
    assert worker.run_once(block_ms=1) == 0
    client.xadd(stream_key(namespace), {"kind": "nonsense", "sk": "x"})
    outcomes: list[str] = []
    worker.on_label = lambda wrong, kind, explored: outcomes.append(kind)
    wait_until(lambda: worker.run_once(block_ms=1) >= 0 and outcomes == ["learn_message"], 10)


@pytest.mark.parametrize("how", ["FT.DROPINDEX", "FLUSHALL"])
def test_administration_after_the_index_went_away(
    server: EmbeddedRedis, namespace: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process (or an operator) dropped the index, or flushed the server. Lookups
    already created it again; ``count()``, ``entries()``, ``clear(tenant=...)`` and the
    ``max_entries`` trim raised "no such index" (the trim logged it) on every call until a
    semantic lookup of this process happened to rebuild it."""
    index = SemanticIndex(server.url, namespace=namespace, timeout=2.0, max_entries=2)
    client = redis.Redis.from_url(server.url)
    acme = Scope(tenant="acme")

    def lose_the_index() -> None:
        if how == "FLUSHALL":
            client.flushall()
        else:
            client.execute_command("FT.DROPINDEX", index.layout.index_name)

    try:
        index.store(STORED, "Open the app.", acme)
        calls: list[Any] = [
            index.count, index.entries, lambda: index.clear(tenant="globex"), index.trim,
        ]  # fmt: skip
        for call in calls:
            lose_the_index()
            index.store(STORED, "Open the app.", acme)  # a write alone does not notice
            call()  # raised CacheError("... no such index") before
        assert "was gone" in caplog.text
        wait_until(lambda: index.count() == 1, timeout=10)  # the entry indexed again
        assert [e.prompt for e in index.entries()] == [STORED]
        assert index.clear(tenant="acme") == 1
        # The trim after writes (every max_entries // 10 = 1 write here) works too.
        lose_the_index()
        caplog.clear()
        for n in range(4):
            index.store(f"{STORED} #{n}", "Open the app.", acme)
        assert "trimming to max_entries failed" not in caplog.text
        wait_until(lambda: index.count() <= 2, timeout=10)
    finally:
        index.clear()
        index.close()


_TAGS = ("scope", "TAG", "tenant", "TAG", "model", "TAG", "corpus", "TAG",
         "created_at", "NUMERIC", "SORTABLE")  # fmt: skip


def _vector(dims: int = 384, dtype: str = "FLOAT16", metric: str = "COSINE") -> tuple[Any, ...]:
    return ("embedding", "VECTOR", "HNSW", 6, "TYPE", dtype, "DIM", dims,
            "DISTANCE_METRIC", metric)  # fmt: skip


@pytest.mark.parametrize(
    ("schema", "prefix", "said"),
    [
        (_TAGS[2:] + _vector(), None, "it has no 'scope' field"),
        (("scope", "TEXT", *_TAGS[2:], *_vector()), None, "'scope' field is TEXT, not TAG"),
        (_TAGS + _vector(dims=768), None, "vectors have dim 768, the cache's 384"),
        (_TAGS + _vector(dtype="FLOAT32"), None, "data_type FLOAT32, the cache's FLOAT16"),
        (_TAGS + _vector(metric="L2"), None, "distance_metric L2, the cache's COSINE"),
        (_TAGS + _vector(), "app:faq:", "it indexes keys under ['app:faq:']"),
        (_TAGS, None, "it has no 'embedding' field"),
    ],
)
def test_an_index_of_the_same_name_made_otherwise_is_refused_at_construction(
    server: EmbeddedRedis, namespace: str, schema: tuple[Any, ...], prefix: str | None, said: str
) -> None:
    """An index under the cache's name made by hand or another tool. The cache used it:
    without a ``scope`` TAG, with another vector size or type or other prefixes, every
    semantic lookup found nothing, with no error and no log line; with L2 distances it
    served hits at a similarity that is not cosine; without the vector field every
    lookup was counted as a Redis failure and opened the breaker."""
    probe = SemanticIndex(server.url, namespace=namespace)  # its own index, to learn the name
    layout = probe.layout
    probe.close()
    client = redis.Redis.from_url(server.url)
    client.execute_command("FT.DROPINDEX", layout.index_name)
    client.execute_command(
        "FT.CREATE", layout.index_name, "ON", "HASH", "PREFIX", 1, prefix or layout.prefix,
        "SCHEMA", *schema,
    )  # fmt: skip
    try:
        with pytest.raises(RedisSearchUnavailable) as raised:
            SemanticIndex(server.url, namespace=namespace)
        message = str(raised.value)
        assert said in message and layout.index_name in message
        assert "FT.DROPINDEX" in message and "another namespace" in message
    finally:
        client.execute_command("FT.DROPINDEX", layout.index_name)
    # Dropped (the entries stay), the cache makes its own again and works.
    index = SemanticIndex(server.url, namespace=namespace)
    try:
        index.store(STORED, "Open the app and tap Activate.", SCOPE)
        hit = index.lookup("How can I activate my new card?", SCOPE)
        assert hit is not None and hit.layer == "semantic"
    finally:
        index.clear()
        index.close()


def test_an_index_made_with_other_hnsw_settings_is_used(
    server: EmbeddedRedis, namespace: str
) -> None:
    """HNSW settings and extra fields change no answer: such an index is accepted."""
    from paracache.schema import HNSW

    first = SemanticIndex(server.url, namespace=namespace, hnsw=HNSW(m=8, ef_construction=50))
    try:
        first.store(STORED, "Open the app and tap Activate.", SCOPE)
        second = SemanticIndex(server.url, namespace=namespace)  # the default HNSW
        hit = second.lookup("How can I activate my new card?", SCOPE)
        assert hit is not None and hit.layer == "semantic"
        second.close()
    finally:
        first.clear()
        first.close()


def test_an_index_of_another_stored_layout_is_said_at_construction_and_in_stats(
    server: EmbeddedRedis, namespace: str, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After an upgrade that changed the stored layout, the namespace keeps the old
    version's index and entries: never served (a cold start), in memory until they
    expire, counted by ``paracache stats`` as if they were the cache's. Nothing said so."""
    from paracache.cli import main

    probe = SemanticIndex(server.url, namespace=namespace)
    old = probe.layout.index_name.replace(":v2:", ":v1:")
    probe.close()
    client = redis.Redis.from_url(server.url)
    client.execute_command(
        "FT.CREATE", old, "ON", "HASH", "PREFIX", 1, f"{old}:e:", "SCHEMA", *_TAGS, *_vector()
    )
    client.hset(f"{old}:e:{0:032x}", mapping={"v": "1", "prompt": STORED, "response": "a"})
    try:
        caplog.clear()
        index = SemanticIndex(server.url, namespace=namespace)
        index.close()
        assert f"holds {old} of another stored layout" in caplog.text
        assert f"paracache repair --namespace {namespace}" in caplog.text
        assert main(["stats", "--redis-url", server.url, "--namespace", namespace]) == 0
        out = capsys.readouterr().out
        assert f"index {old}  (another stored layout" in out
        assert f"index {probe.layout.index_name}\n" in out  # the current one: no note
    finally:
        client.execute_command("FT.DROPINDEX", old, "DD")


def test_connections_the_server_closed_while_idle_are_replaced_not_failed(namespace: str) -> None:
    """A server with an idle-client ``timeout`` (managed Redis often sets one), or one
    restarted while the app was quiet, has closed each thread's connection. The next call
    of every such thread failed ("Connection closed by server"): a miss, a warning that
    Redis failed, a counted error, and from three in a row an open breaker (2 s of
    misses and dropped writes) against a healthy server."""
    import concurrent.futures

    srv = EmbeddedRedis(config={"timeout": "1"}).start()
    index = SemanticIndex(srv.url, namespace=namespace)  # the product's 0.1 s timeout
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        index.store(STORED, "Open the app and tap Activate.", SCOPE)

        def burst() -> list[str | None]:
            def one(_: int) -> str | None:
                hit = index.lookup(STORED, SCOPE)
                return hit.layer if hit else None

            return list(pool.map(one, range(8)))

        assert burst() == ["exact"] * 8
        time.sleep(2.5)  # the server closes every connection idle for 1 s
        assert burst() == ["exact"] * 8
        assert index.store_result(NEAR, "Open the app.", SCOPE).outcome == "written"
        stats = index.stats()
        assert stats.errors == 0, stats.errors_by_kind
        assert stats.breaker_state == "closed"
        # Each hit counted as it happens: a semantic hit posts its count (the reply read
        # with the thread's next command), and the server closes the connection after it.
        counting = SemanticIndex(srv.url, namespace=namespace, hit_flush_hits=1)
        try:
            for _ in range(2):
                hit = counting.lookup("How can I activate my new card?", SCOPE)
                assert hit is not None and hit.layer == "semantic"
                time.sleep(1.6)
            assert counting.stats().errors == 0, counting.stats().errors_by_kind
        finally:
            counting.close()
    finally:
        pool.shutdown()
        index.clear()
        index.close()
        srv.close()


@pytest.mark.parametrize("how", ["FLUSHALL", "restart"])
def test_writes_after_the_data_went_away_register_their_scope_again(
    server: EmbeddedRedis, namespace: str, how: str
) -> None:
    """The namespace's scope registry went with the data (FLUSHALL, a restart without
    persistence), but the cache trusted for 60 s that its scopes were registered: the
    entries it wrote meanwhile listed with scope ``{}`` (``entries()``, ``inspect``) and
    ``paracache stats`` showed their tenant as "?"."""
    index = SemanticIndex(server.url, namespace=namespace, timeout=2.0)
    acme = Scope(model="m", tenant="acme")
    try:
        index.store(STORED, "Open the app.", acme)
        if how == "FLUSHALL":
            redis.Redis.from_url(server.url).flushall()
        else:
            server.kill()
            server.start()
        # An app's next question: a miss (the lookup finds the index gone and makes it
        # again), then the model's answer stored.
        assert index.lookup(NEAR, acme) is None
        index.store(NEAR, "Open the app.", acme)
        wait_until(lambda: index.count() == 1, timeout=10)
        assert [e.scope.get("tenant") for e in index.entries()] == ["acme"]
    finally:
        index.clear()
        index.close()


def test_a_full_redis_costs_the_error_bound_one_warning_not_a_flood(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``maxmemory`` with ``noeviction`` (Redis's default policy) and the server full:
    lookups are still served, but every send of the labels' outbox (20 a second under
    traffic) is refused, and each refusal was a warning: about 19 lines a second."""
    srv = EmbeddedRedis(maxmemory="4mb", maxmemory_policy="noeviction").start()
    index = SemanticIndex(srv.url, namespace=namespace, max_error_rate=0.05, timeout=2.0)
    try:
        index.store(STORED, "Open the app and tap Activate.", SCOPE)
        client = redis.Redis.from_url(srv.url)
        with contextlib.suppress(redis.exceptions.OutOfMemoryError):
            for n in range(10_000):
                client.set(f"filler:{n}", "x" * 10_000)
        caplog.clear()
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            index.lookup(NEAR, SCOPE)  # a candidate: its traffic count goes to the outbox
            time.sleep(0.01)
        refused = index.stats().errors_by_kind.get("learn_queue", 0)
        warnings = [r for r in caplog.records
                    if r.levelname == "WARNING" and "learn_queue" in r.getMessage()]  # fmt: skip
        assert refused >= 10  # every refusal counted
        assert len(warnings) == 1, len(warnings)
    finally:
        index.close()
        srv.close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_worker_says_what_it_counted(
    server: EmbeddedRedis, namespace: str, sig: signal.Signals, code: int
) -> None:
    """Stopped with Ctrl-C the worker printed "interrupted" and not its counts; with
    SIGTERM (``docker stop``, systemd, Kubernetes) it ended without a word."""
    import json

    index = SemanticIndex(
        server.url, namespace=namespace, max_error_rate=0.02, min_similarity=0.99,
        label_worker=False, timeout=2.0,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "paracache", "worker", "--redis-url", server.url,
         "--namespace", namespace, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        _label_job(index, "Call us.")
        wait_until(lambda: _labels(server.url, index) == 1, timeout=30)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == code, err
        assert json.loads(out)["labels"] == 1
        assert f"stopped ({sig.name})" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        index.clear()
        index.close()
