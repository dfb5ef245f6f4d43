"""A user's own Redis, configured as users configure theirs (audit 12): ACL users with
fewer rights, a primary that refuses writes without its replicas, clients made by the
user. Real servers configured that way; nothing mocked."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from paracache import Scope, SemanticIndex
from paracache.cli import main
from paracache.embedded import EmbeddedRedis
from paracache.errors import CacheError, RedisSearchUnavailable
from paracache.limiter import Limit, RateLimiter
from paracache.sessions import SessionStore
from paracache.singleflight import SingleFlight

PROMPT = "How do I get a refund for my order?"
REWORDED = "How can I get a refund for my order?"
ANSWER = "Within 30 days."
SCOPE = Scope(tenant="acme")


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    """A stock server (as users run theirs) with a few ACL users besides the admin."""
    with EmbeddedRedis(tuned=False) as srv:
        admin = redis.Redis.from_url(srv.url)
        users = {
            # Reads and searches only, as a read-only role of a managed service with
            # the search commands granted.
            "reader": ["+@read", "+@connection", "+ft.search", "+ft.info", "+ft._list",
                       "+ft.aggregate", "+ft.cursor"],
            # A read-only role as Redis' own categories define it: no FT.* command at all
            # (RediSearch 2.10's commands belong to no ACL category).
            "readonly": ["+@read", "+@connection"],
            # Everything but what a managed service keeps for itself, and FT.CREATE: the
            # index is made by an administrator.
            "app": ["+@all", "-@dangerous", "-ft.create", "-ft.dropindex", "-ft.alter"],
            # A provider that disables Lua scripting.
            "noscript": ["+@all", "-@dangerous", "-@scripting"],
        }  # fmt: skip
        for name, rules in users.items():
            admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", "~*", "&*", *rules)
        admin.close()
        yield srv


def _user_url(srv: EmbeddedRedis, user: str) -> str:
    return f"redis://{user}:pw@127.0.0.1:{srv.port}/0"


@pytest.fixture
def namespace() -> str:
    return "own-" + uuid.uuid4().hex[:10]


@pytest.fixture
def seeded(server: EmbeddedRedis, namespace: str) -> Iterator[SemanticIndex]:
    """The namespace's index and one entry, made with the admin's rights."""
    admin = SemanticIndex(server.url, namespace=namespace, timeout=5.0)
    assert admin.store(PROMPT, ANSWER, SCOPE)
    yield admin
    with contextlib.suppress(Exception):
        admin.clear()
    admin.close()


def _served(cache: SemanticIndex) -> tuple[str, str]:
    exact = cache.lookup_verdict(PROMPT, SCOPE)
    semantic = cache.lookup_verdict(REWORDED, SCOPE)
    assert exact.hit is None or exact.hit.response == ANSWER
    assert semantic.hit is None or semantic.hit.response == ANSWER
    return exact.outcome, semantic.outcome


def test_writes_an_acl_refuses_leave_cached_answers_served(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex
) -> None:
    """A user allowed to read and search but not to write: each store is dropped and
    counted as ``noperm`` (the server is up), and the circuit breaker stays closed, so
    the answers already cached keep being served. Each refused store used to count as
    a Redis failure: three in a row opened the breaker and every lookup was a miss."""
    cache = SemanticIndex(_user_url(server, "reader"), namespace=namespace, timeout=5.0,
                          track_hits=False)  # fmt: skip
    try:
        for i in range(5):
            result = cache.store_result(f"another question {i}", "x", SCOPE)
            assert (result.outcome, result.reason) == ("dropped", "write refused: noperm")
        assert _served(cache) == ("exact", "semantic")
        errors = cache.stats().errors_by_kind
        assert errors.get("noperm") == 5
        assert "breaker_open" not in errors and "redis" not in errors
    finally:
        cache.close()


def test_a_primary_short_of_its_replicas_refuses_writes_only(namespace: str) -> None:
    """``min-replicas-to-write 1`` without a replica: Redis answers every write with
    ``NOREPLICAS``. Stores are dropped and counted as ``readonly``; lookups keep being
    served (it used to open the breaker after three stores)."""
    with EmbeddedRedis(tuned=False) as srv:
        admin = SemanticIndex(srv.url, namespace=namespace, timeout=5.0)
        assert admin.store(PROMPT, ANSWER, SCOPE)
        admin.close()
        redis.Redis.from_url(srv.url).config_set("min-replicas-to-write", 1)
        cache = SemanticIndex(srv.url, namespace=namespace, timeout=5.0)
        try:
            for i in range(5):
                result = cache.store_result(f"another question {i}", "x", SCOPE)
                assert (result.outcome, result.reason) == ("dropped", "write refused: readonly")
            assert _served(cache) == ("exact", "semantic")
            errors = cache.stats().errors_by_kind
            assert errors.get("readonly") == 5
            assert "breaker_open" not in errors and "redis" not in errors
        finally:
            cache.close()


def test_a_user_without_the_search_commands_is_told_at_construction(
    server: EmbeddedRedis, namespace: str
) -> None:
    """It raised redis-py's bare ``NoPermissionError`` for ``FT._LIST``."""
    with pytest.raises(RedisSearchUnavailable, match=r"may not run FT._LIST.*Your own Redis"):
        SemanticIndex(_user_url(server, "readonly"), namespace=namespace)


def test_a_user_without_ft_create_needs_the_index_made_by_an_administrator(
    server: EmbeddedRedis, namespace: str
) -> None:
    """Without the index the cache cannot work (every lookup, exact ones included, failed
    and opened the breaker, after a warning at construction): a configuration error at
    construction, saying how to make the index. Once an administrator's cache of the same
    namespace made it, the user's cache stores, serves, counts hits and administers."""
    url = _user_url(server, "app")
    with pytest.raises(RedisSearchUnavailable, match=r"may not create or read the search index"):
        SemanticIndex(url, namespace=namespace)
    made = SemanticIndex(server.url, namespace=namespace)  # what the message tells
    made.close()
    cache = SemanticIndex(url, namespace=namespace, timeout=5.0)
    try:
        assert cache.store(PROMPT, ANSWER, SCOPE)
        assert _served(cache) == ("exact", "semantic")
        assert cache.count() == 1
        assert cache.flush_hits() == 2
        assert [e.hit_count for e in cache.entries()] == [2]
        assert cache.stats().errors_by_kind == {}
        assert cache.clear() == 1
    finally:
        cache.close()


def test_a_lasting_refusal_is_logged_once_not_on_every_call(
    server: EmbeddedRedis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The rate limiter without scripting (its script refused: ``NOPERM``) admits every
    request (fail-open) and counts each; the conversation store of a read-only user
    drops every write and counts each. Redis is up, so the breaker stays closed and each
    call used to log its own warnings: a warning per request for as long as it lasts."""
    limiter = RateLimiter([Limit("global", 2)], redis_url=_user_url(server, "noscript"),
                          namespace=namespace)  # fmt: skip
    history = SessionStore(redis_url=_user_url(server, "reader"), namespace=namespace)
    try:
        with caplog.at_level(logging.WARNING, logger="paracache"):
            assert all(limiter.acquire(blocking=False) for _ in range(20))
            for _ in range(20):
                assert history.append("chat", [{"type": "human", "data": {}}], [1]) is False
        stats = limiter.stats()
        assert (stats.failed_open, stats.errors_by_kind) == (20, {"noperm": 20})
        assert history.stats().errors_by_kind == {"noperm": 20}
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert 1 <= len(warnings) <= 3, warnings  # the limiter's, the store's and its link's
        assert all("noperm" in w for w in warnings), warnings
    finally:
        limiter.close()
        history.close()


def test_a_callers_async_client_from_another_event_loop_fails_open_and_says_why(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex, caplog: pytest.LogCaptureFixture
) -> None:
    """``async_redis_client=`` made (and used) in one ``asyncio.run``, then used in the
    next: redis-py raises a bare ``RuntimeError`` from its connection. It was taken for
    a bug in paracache (an ERROR with a traceback, ``internal``, raised in strict mode as
    the suite runs); it is that client failing: a counted Redis failure whose log line
    says what to change. redis-py then drops the connection, and the next call works."""
    made: list[aioredis.Redis] = []

    async def make() -> None:
        made.append(aioredis.Redis.from_url(server.url))
        await made[0].ping()

    asyncio.run(make())
    cache = SemanticIndex(redis_client=redis.Redis.from_url(server.url),
                          async_redis_client=made[0], namespace=namespace)  # fmt: skip

    async def use() -> tuple[str, str]:
        first = await cache.alookup_verdict(PROMPT, SCOPE)  # on a connection of a dead loop
        again = await cache.alookup_verdict(PROMPT, SCOPE)
        assert first.hit is None or first.hit.response == ANSWER
        return first.outcome, again.outcome

    try:
        with caplog.at_level(logging.WARNING, logger="paracache"):
            assert asyncio.run(use()) == ("error", "exact")
        errors = cache.stats().errors_by_kind
        assert errors == {"redis": 1}, errors
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "event loop other than" in logged and "internal error" not in logged
    finally:
        cache.close()


@pytest.mark.parametrize("make", ["cache", "limiter", "history"])
def test_a_callers_client_without_a_socket_timeout_is_warned_about(
    server: EmbeddedRedis, namespace: str, make: str, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's default ``socket_timeout=None``: the caller's client waits as long as
    Redis does, whatever paracache's ``timeout=`` (measured: a lookup took the whole 2 s
    of a ``CLIENT PAUSE``). Said once when the object is built; a client with a
    ``socket_timeout`` is not warned about."""
    for socket_timeout, warned in ((None, True), (1.0, False)):
        client = redis.Redis.from_url(server.url, socket_timeout=socket_timeout)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="paracache"):
            if make == "cache":
                SemanticIndex(redis_client=client, namespace=namespace).close()
            elif make == "limiter":
                RateLimiter([Limit("global", 2)], redis_client=client).close()
            else:
                SessionStore(redis_client=client, namespace=namespace).close()
        logged = [r.getMessage() for r in caplog.records if "socket_timeout" in r.getMessage()]
        assert len(logged) == (1 if warned else 0), logged
        client.close()


def test_another_apps_key_at_an_entrys_hit_counter_is_removed_by_repair(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex
) -> None:
    """A string at an entry's hit counter key (``...:h:{id}``, where a stock server's hits
    are counted): lookups still serve the entry, but each batch of hit counts with it
    fails and ``entries()`` / ``inspect`` / ``stats`` raise. ``repair`` left it alone as
    another application's key; it now deletes it as damaged, and all works again."""
    admin = redis.Redis.from_url(server.url)
    entry = next(k.decode() for k in admin.scan_iter(f"paracache:{namespace}:*:e:*"))
    counter = entry.replace(":e:", ":h:")
    admin.set(counter, "another application's value")
    assert seeded.lookup_verdict(PROMPT, SCOPE).outcome == "exact"
    with pytest.raises(CacheError, match="WRONGTYPE"):
        seeded.entries()
    report = seeded.repair(dry_run=True)
    assert report.problems == {"hit counter not a hash (string)": 1}, report
    assert seeded.repair().deleted == 1
    assert not admin.exists(counter)
    assert seeded.lookup_verdict(PROMPT, SCOPE).outcome == "exact"
    assert seeded.flush_hits() == 1
    assert [e.hit_count for e in seeded.entries()] == [1]
    admin.close()


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate it signed for 127.0.0.1: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    window = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1))

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("paracache test CA")).issuer_name(
            name("paracache test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(window[0])
        .not_valid_after(window[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(window[0]).not_valid_after(window[1])
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_endpoint(server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[int, Path]
]:
    """A TLS endpoint in front of the server, as managed services give (their proxy ends
    TLS): ``(port, CA file)``. The redis-server wheel is built without TLS ("Failed
    finding TLS support"), so the TLS is ended by this proxy, in a thread."""
    ca, cert, key = _certificates(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    ready: list[int] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def serve() -> asyncio.Server:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        ready.append(listener.sockets[0].getsockname()[1])
        return listener

    listener = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield ready[0], ca
    loop.call_soon_threadsafe(listener.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_why_redis_is_unreachable_is_said_at_construction(
    server: EmbeddedRedis, tls_endpoint: tuple[int, Path], namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A certificate the client cannot verify, a wrong password: the cache starts
    fail-open (as when Redis is down), and the warning says why. It said
    "network:ConnectionError" and "auth:AuthenticationError" (redis-py's repr)."""
    port, _ = tls_endpoint
    cases = {
        f"rediss://127.0.0.1:{port}/0": "CERTIFICATE_VERIFY_FAILED",
        f"redis://app:wrong@127.0.0.1:{server.port}/0": "invalid username-password pair",
    }
    for url, reason in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="paracache"):
            SemanticIndex(url, namespace=namespace, timeout=1.0).close()
        first = caplog.records[0].getMessage()
        assert "is unreachable" in first and reason in first, first


def test_single_flight_refused_by_an_acl_is_logged_once(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only user may not take the single-flight lock (``SET NX``): each miss leads
    without a lock, counted as ``singleflight``; one warning, not one per miss."""
    cache = SemanticIndex(_user_url(server, "reader"), namespace=namespace, timeout=5.0,
                          track_hits=False)  # fmt: skip
    flights = SingleFlight(cache)
    try:
        with caplog.at_level(logging.WARNING, logger="paracache"):
            for i in range(5):
                with flights.flight(f"question {i}", SCOPE) as claim:
                    assert claim.payload is None  # a leader: calls the model itself
        assert cache.stats().errors_by_kind.get("singleflight", 0) >= 5
        logged = [r.getMessage() for r in caplog.records if "single-flight" in r.getMessage()]
        assert len(logged) == 1, logged
    finally:
        cache.close()


def test_a_label_worker_refused_by_redis_says_so(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex, caplog: pytest.LogCaptureFixture
) -> None:
    """The error bound on a Redis without scripting: the label worker cannot count a
    label (its counting script is refused), so the bound never learns while exploring
    costs hits. Each pass failed at debug level only: nothing said it. A warning (one
    per 10 s) and an error count ``label_worker`` now do."""
    cache = SemanticIndex(_user_url(server, "noscript"), namespace=namespace, timeout=5.0,
                          max_error_rate=0.05, explore_rate=0.5,
                          judge=lambda a, b: True)  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING, logger="paracache"):
            deadline = time.monotonic() + 30
            i = 0
            while "label_worker" not in cache.stats().errors_by_kind:
                assert time.monotonic() < deadline, cache.stats().errors_by_kind
                question = f"How do I get a refund for my order number {i}?"
                cache.store(question, ANSWER, SCOPE)
                reworded = question.replace("How do I", "How can I")
                if cache.lookup(reworded, SCOPE) is None:  # explored: its answer labels it
                    cache.store(reworded, ANSWER, SCOPE)
                i += 1
                time.sleep(0.05)
        assert cache.learner is not None and cache.learner.stats().labels == 0
        logged = [r.getMessage() for r in caplog.records if "label_worker" in r.getMessage()]
        assert logged and "no permissions" in logged[0], logged
    finally:
        cache.close()


#: The ACL docs/scaling.md ("Your own Redis") gives a cache's user: its namespace's keys,
#: no dangerous command, the search commands RediSearch 2.10 puts in no ACL category.
DOCUMENTED_ACL = (
    "resetkeys ~paracache:{ns}:* resetchannels -@all +@connection +@read +@write "
    "+@scripting +@transaction -@dangerous +ft.search +ft.info +ft._list +ft.aggregate "
    "+ft.cursor +ft.create"
)


def test_the_documented_acl_of_a_cache_user(server: EmbeddedRedis, namespace: str) -> None:
    """Everything a cache does works with the documented least rights; another
    namespace's index is refused at construction, naming the keys to grant."""
    admin = redis.Redis.from_url(server.url)
    admin.execute_command("ACL", "SETUSER", "cacheuser", "reset", "on", ">pw",
                          *DOCUMENTED_ACL.format(ns=namespace).split())  # fmt: skip
    url = _user_url(server, "cacheuser")
    cache = SemanticIndex(url, namespace=namespace, timeout=5.0)
    try:
        assert cache.store(PROMPT, ANSWER, SCOPE)
        assert _served(cache) == ("exact", "semantic")
        assert cache.count() == 1
        assert [e.hit_count for e in cache.entries()] == [2]
        assert cache.repair(dry_run=True).invalid == 0
        assert cache.stats().errors_by_kind == {}
        assert cache.clear() == 1
    finally:
        cache.close()
    with pytest.raises(RedisSearchUnavailable, match=rf"~paracache:{namespace}x:\*"):
        SemanticIndex(url, namespace=namespace + "x")
    admin.execute_command("ACL", "DELUSER", "cacheuser")
    admin.close()


def test_listing_a_cache_without_scripting(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without scripting, ``entries()``, ``paracache inspect`` and ``paracache stats``
    read the scope registry with a plain ``HMGET``: they raised ``CacheError`` (``EVAL``
    refused) although nothing else they read needs a script."""
    url = _user_url(server, "noscript")
    cache = SemanticIndex(url, namespace=namespace, timeout=5.0)
    try:
        [entry] = cache.entries()
        assert (entry.prompt, entry.scope["tenant"]) == (PROMPT, "acme")
    finally:
        cache.close()
    for command in ("stats", "inspect"):
        code = main([command, "--namespace", namespace, "--redis-url", url, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "acme" in out


def test_single_flight_across_processes_without_scripting(
    server: EmbeddedRedis, namespace: str, seeded: SemanticIndex
) -> None:
    """Two processes (two caches, two SingleFlights) miss the same question at once on a
    Redis without scripting. The leader's lock release is a script: refused, the lock
    stayed until its TTL (``wait``), and the other process waited that long for an answer
    stored at once. The release falls back to GET and DEL."""
    url = _user_url(server, "noscript")
    caches = [SemanticIndex(url, namespace=namespace, timeout=5.0) for _ in range(2)]
    flights = [SingleFlight(cache, wait=8.0) for cache in caches]
    question, answer = "What are your opening hours?", "9 to 5."
    led = threading.Event()
    took: list[float] = []
    got: list[str | None] = []

    def lead() -> None:
        with flights[0].flight(question, SCOPE) as claim:
            assert claim.leader and claim.payload is None
            led.set()
            time.sleep(0.3)  # the model call
            caches[0].store(question, answer, SCOPE)
            claim.stored(answer)

    def follow() -> None:
        led.wait(5)
        started = time.monotonic()
        with flights[1].flight(question, SCOPE) as claim:
            got.append(claim.payload)
        took.append(time.monotonic() - started)

    try:
        threads = [threading.Thread(target=lead), threading.Thread(target=follow)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert got == [answer]
        assert took[0] < 3.0, took  # the leader's 0.3 s and polling, not the lock's 8 s
    finally:
        for cache in caches:
            cache.close()


def test_a_replica_url_without_the_index_says_so_at_construction(
    server: EmbeddedRedis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica's URL given by mistake (``replica-read-only yes``, the default), for a
    namespace whose index the primary does not have yet: the index cannot be made there.
    The warning says it is a read-only replica and what to do (it said "could not create
    the index yet" with RedisVL's error); lookups fail open, stores are refused."""
    with EmbeddedRedis(tuned=False) as replica:
        link = redis.Redis.from_url(replica.url)
        link.config_set("masterauth", server.password)
        link.execute_command("REPLICAOF", "127.0.0.1", server.port)
        deadline = time.monotonic() + 20
        while link.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with caplog.at_level(logging.WARNING, logger="paracache"):
            cache = SemanticIndex(replica.url, namespace=namespace, timeout=5.0)
        try:
            first = caplog.records[0].getMessage()
            assert "read-only replica" in first and "primary" in first, first
            assert cache.lookup(PROMPT, SCOPE) is None
            assert cache.store_result(PROMPT, ANSWER, SCOPE).reason == "write refused: readonly"
        finally:
            cache.close()
            link.close()
