"""The semantic layer's search is sent, then the query's own analysis for the guards
runs while its reply is on the wire, then the reply is read (real Redis, no timing)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from paracache import Scope, SemanticIndex
from paracache.driver import run
from paracache.protocol import SEARCH, Embed, Ready, Receive, Send

SCOPE = Scope(model="m")


def _recording(index: SemanticIndex, ops: list[Any]) -> Any:
    """The index's driver, recording each operation (and the ``prepare`` hook's runs as
    ``"prepare"``) in order."""
    hook = index.core.prepare
    assert hook is not None  # the guards are on by default

    def prepare(text: str) -> None:
        ops.append("prepare")
        hook(text)

    index.core.prepare = prepare

    def io(op: Any) -> Any:
        ops.append(op)
        return index._io(op)

    return io


def _search_sent(op: Any) -> bool:
    return isinstance(op, Send) and op.args[:2] == ("EVALSHA", SEARCH.sha)


def test_the_query_is_analysed_while_the_search_is_on_the_wire(index: SemanticIndex) -> None:
    index.store("What's your refund policy?", "30 days.", SCOPE)
    ops: list[Any] = []
    io = _recording(index, ops)
    req = index.core.prepare_lookup("What is your refund policy?", SCOPE)
    verdict = run(index.core.lookup_flow(req), io)
    assert verdict.outcome == "semantic" and verdict.hit is not None
    assert verdict.hit.response == "30 days."
    sent = next(i for i, op in enumerate(ops) if _search_sent(op))
    prepared = ops.index("prepare")
    received = next(i for i, op in enumerate(ops) if isinstance(op, Receive) and i > sent)
    assert sent < prepared < received  # analysed between the send and the read
    assert ops.count("prepare") == 1
    assert index.entries(5)[0].hit_count == 1  # the hit still counted
    # A guard still refuses what it refused before the reorder.
    ops.clear()
    req = index.core.prepare_lookup("What's your refund policy for orders over $500?", SCOPE)
    assert run(index.core.lookup_flow(req), io).outcome == "miss"
    # An exact hit never reaches the search (nor the analysis).
    ops.clear()
    req = index.core.prepare_lookup("What's your refund policy?", SCOPE)
    assert run(index.core.lookup_flow(req), io).outcome == "exact"
    assert "prepare" not in ops and not any(_search_sent(op) for op in ops)


def test_gibberish_is_still_unreadable_and_never_searched(index: SemanticIndex) -> None:
    index.store("What's your refund policy?", "30 days.", SCOPE)
    ops: list[Any] = []
    io = _recording(index, ops)
    before = index.stats().unreadable
    for text in ("qxz vbnm wrtk plgh zzkj", "你们的退款政策是什么"):
        req = index.core.prepare_lookup(text, SCOPE)
        verdict = run(index.core.lookup_flow(req), io)
        assert verdict.outcome == "unreadable", (text, verdict)
        assert "not matched by similarity" in verdict.reason
    assert index.stats().unreadable == before + 2
    # Neither embedded nor searched: the check comes before the embedding.
    assert not any(isinstance(op, Embed) or _search_sent(op) for op in ops)
    assert "prepare" not in ops
    # The same through the public API, sync and async.
    assert index.lookup("qxz vbnm wrtk plgh zzkj", SCOPE) is None
    assert asyncio.run(index.alookup("qxz vbnm wrtk plgh zzkj", SCOPE)) is None


def test_a_search_failing_after_the_overlap_is_a_counted_miss(
    make_index: Any, redis_url: str
) -> None:
    """The server stops answering (``CLIENT PAUSE``) just before the search is sent: the
    query is analysed, the reply never comes in time, and the lookup is a miss counted
    as a Redis error (fail-open); once the server answers again, the same lookup serves."""
    index = make_index(timeout=0.2)
    index.store("What's your refund policy?", "30 days.", SCOPE)
    assert index.lookup("What is your refund policy?", SCOPE) is not None  # connected
    admin = redis.Redis.from_url(redis_url)
    ops: list[Any] = []
    io = _recording(index, ops)

    def pausing(op: Any) -> Any:
        if isinstance(op, Embed):  # the search is sent right after the embedding
            admin.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        return io(op)

    errors = index.stats().errors_by_kind.get("redis", 0)
    req = index.core.prepare_lookup("what's the refund policy", SCOPE)
    try:
        verdict = run(index.core.lookup_flow(req), pausing)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    assert verdict.outcome == "error" and verdict.reason == "redis: timeout", verdict
    sent = next(i for i, op in enumerate(ops) if _search_sent(op))
    assert sent < ops.index("prepare")  # sent, then analysed, then the read timed out
    assert index.stats().errors_by_kind.get("redis", 0) == errors + 1
    assert index.lookup("what's the refund policy", SCOPE) is not None  # served again
    admin.close()


def test_async_lookups_serve_the_same(index: SemanticIndex) -> None:
    index.store("What's your refund policy?", "30 days.", SCOPE)

    async def ask() -> Any:
        return await index.alookup_verdict("What is your refund policy?", SCOPE)

    verdict = asyncio.run(ask())
    assert verdict.outcome == "semantic" and verdict.hit is not None
    assert verdict.hit.response == "30 days."


def test_the_models_input_is_worked_out_only_while_the_exact_reply_is_awaited(
    index: SemanticIndex,
) -> None:
    """The exact read is sent; the model's input (pleasantries, typos) is worked out
    while its reply is on the wire, and not at all when the reply is already there and
    is a hit. A miss whose reply came first works it out after it: the same vector, the
    same outcome."""
    index.store("What's your refund policy?", "30 days.", SCOPE)
    worked: list[str] = []
    real = index.core.embed_input

    def embed_input(text: str) -> str:
        worked.append(text)
        return real(text)

    index.core.embed_input = embed_input  # type: ignore[method-assign]
    outcomes = {}
    for arrived in (True, False):

        def io(op: Any, arrived: bool = arrived) -> Any:
            if isinstance(op, Ready):
                index._io(op)  # asked (it never waits), the answer forced
                return arrived
            return index._io(op)

        for text in ("What's your refund policy?", "Hi, what is your refund polcy?"):
            worked.clear()
            index._memo.clear()
            req = index.core.prepare_lookup(text, SCOPE)
            verdict = run(index.core.lookup_flow(req), io)
            outcomes[arrived, text] = (verdict.outcome, verdict.similarity)
            exact = verdict.outcome == "exact"
            assert len(worked) == (0 if exact and arrived else 1), (arrived, text, worked)
    assert outcomes[True, "What's your refund policy?"][0] == "exact"
    for text in ("What's your refund policy?", "Hi, what is your refund polcy?"):
        assert outcomes[True, text] == outcomes[False, text]
    assert outcomes[True, "Hi, what is your refund polcy?"][0] == "semantic"


def test_ready_tells_whether_a_sent_reply_has_arrived(redis_url: str) -> None:
    from paracache.transport import ThreadConnections

    conns = ThreadConnections(redis.Redis.from_url(redis_url))
    try:
        sent = conns.send(("PING",))
        deadline = time.monotonic() + 5
        while not conns.ready(sent):  # never waits: asked until the reply is there
            assert time.monotonic() < deadline
        assert conns.ready(sent)
        assert conns.receive(sent) is True
        assert not conns.ready(sent)  # received: a stale handle tells nothing
    finally:
        conns.close()
