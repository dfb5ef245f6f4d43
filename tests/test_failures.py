"""The failure boundary: drivers hand flows typed failures; paracache's own bugs are not
Redis failures. Against the real embedded Redis; the bugs are injected into paracache's
own code, never into Redis."""

from __future__ import annotations

import socket
from collections.abc import Generator
from typing import Any

import pytest
import redis

from paracache import BackendError, CacheError, Scope, SemanticIndex
from paracache.driver import SyncIO, run
from paracache.protocol import Call, Embed
from paracache.transport import Embedder


def _one(op: Any) -> Generator[Any, Any, Any]:
    return (yield op)


def _kind_of(client: redis.Redis, op: Any) -> str:
    with pytest.raises(BackendError) as caught:
        run(_one(op), SyncIO(client))
    assert isinstance(caught.value, CacheError)  # administrative callers catch CacheError
    return caught.value.kind


def test_the_driver_translates_real_replies_into_kinds(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        assert _kind_of(client, Call(("FT.SEARCH", "paracache:no-such:v2:0", "*"))) == "no_index"
        assert _kind_of(client, Call(("EVALSHA", "0" * 40, 0))) == "noscript"
        assert _kind_of(client, Call(("NO.SUCH.COMMAND",))) == "unknown_command"
        assert _kind_of(client, Call(("SET", "only-a-key"))) == "refused"
        name = "paracache:kinds-test:idx"
        client.execute_command("FT.CREATE", name, "SCHEMA", "t", "TEXT")
        try:
            assert _kind_of(client, Call(("FT.CREATE", name, "SCHEMA", "t", "TEXT"))) == "exists"
        finally:
            client.execute_command("FT.DROPINDEX", name)
        assert run(_one(Call(("PING",))), SyncIO(client)) is True  # replies pass through
    finally:
        client.close()


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis.Redis(port=port, socket_connect_timeout=1)
    assert _kind_of(client, Call(("PING",))) == "unavailable"


def test_a_failing_embedder_is_an_embedding_failure(redis_url: str) -> None:
    class Broken:
        def embed(self, text: str) -> list[float]:
            raise RuntimeError("model server down")

    io = SyncIO(redis.Redis.from_url(redis_url), embedder=Embedder(Broken(), timeout=None))
    with pytest.raises(BackendError) as caught:
        run(_one(Embed("hello")), io)
    assert caught.value.kind == "embedding"
    assert isinstance(caught.value.__cause__, RuntimeError)


def _break_exact_layer(index: SemanticIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in paracache's own code: reading the exact layer's reply raises."""

    def bug(*args: Any) -> Any:
        raise KeyError("a bug in paracache")

    monkeypatch.setattr(index.core, "_exact_hit", bug)


def test_a_bug_is_counted_as_internal_and_never_opens_the_breaker(
    make_index: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PARACACHE_STRICT", "0")  # production mode: the app gets a miss
    index: SemanticIndex = make_index()
    scope = Scope(tenant="a")
    assert index.store("What's your refund policy?", "30 days.", scope)
    _break_exact_layer(index, monkeypatch)
    for _ in range(6):  # twice the breaker's failure threshold
        verdict = index.lookup_verdict("What's your refund policy?", scope)
        assert verdict.outcome == "error" and verdict.reason.startswith("internal")
    stats = index.stats()
    assert stats.errors_by_kind.get("internal") == 6 and "redis" not in stats.errors_by_kind
    assert index.core.breaker.state == "closed" and index.core.index_ready
    assert any(r.exc_info and "a bug in paracache" in str(r.exc_info[1]) for r in caplog.records)
    monkeypatch.undo()  # the bug is gone: hits again
    assert index.lookup("What's your refund policy?", scope) is not None


def test_strict_mode_raises_a_bug(make_index: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARACACHE_STRICT", "1")
    index: SemanticIndex = make_index()
    _break_exact_layer(index, monkeypatch)
    with pytest.raises(KeyError, match="a bug in paracache"):
        index.lookup("What's your refund policy?", Scope(tenant="a"))


async def test_a_bug_in_an_async_lookup_is_internal_too(
    make_index: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARACACHE_STRICT", "0")
    index: SemanticIndex = make_index()
    _break_exact_layer(index, monkeypatch)
    verdict = await index.alookup_verdict("What's your refund policy?", Scope(tenant="a"))
    assert verdict.outcome == "error" and index.stats().errors_by_kind == {"internal": 1}
    assert index.core.breaker.state == "closed"


@pytest.mark.parametrize("uncancel", [True, False], ids=["task-uncancel", "python-3.10"])
async def test_the_deadline_tells_its_cancellation_from_the_callers(
    monkeypatch: pytest.MonkeyPatch, uncancel: bool
) -> None:
    """The async bound times out on its own, and a caller's cancellation that lands in
    the same pass of the loop as the bound's own stays the caller's: a CancelledError,
    never a TimeoutError. ``python-3.10``: the path without ``Task.uncancel``."""
    import asyncio
    import time

    from paracache import transport

    monkeypatch.setattr(transport, "_CAN_UNCANCEL", uncancel)
    with pytest.raises(redis.TimeoutError):
        await transport.within(asyncio.sleep(30), 0.05)
    call = asyncio.ensure_future(transport.within(asyncio.sleep(30), 0.05))
    await asyncio.sleep(0)  # the call starts: its bound is due in 0.05 s
    asyncio.get_running_loop().call_later(0.06, call.cancel)  # the caller's, just after
    time.sleep(1.2)  # block the loop past both and past the bound's backstop (1 s)
    with pytest.raises(asyncio.CancelledError):
        await call
    assert call.cancelled()


def test_administrative_calls_raise_cache_error_with_the_kind(
    make_index: Any, redis_server: Any
) -> None:
    """clear/count raise the documented CacheError (its type, not a subclass), telling the
    failure's kind; the driver's BackendError is its cause."""
    index: SemanticIndex = make_index()
    redis_server.stop()
    try:
        with pytest.raises(CacheError) as caught:
            index.count()
    finally:
        redis_server.start()
    assert type(caught.value) is CacheError and caught.value.kind == "unavailable"
    assert isinstance(caught.value.__cause__, BackendError)
