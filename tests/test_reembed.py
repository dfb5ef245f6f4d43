"""Issue 20: re-embedding a namespace's entries into another model's index. Real Redis and
two real offline vectorizers: the default model's float32 and float16 indexes (two
indexes, as two models have), and the same model through a separate vectorizer instance."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from paracache import CacheError, Scope, SemanticIndex
from paracache.reembed import ReembedError
from paracache.vectorizers import MiniLMVectorizer, default_vectorizer, vectorizer_id

MODEL = vectorizer_id(default_vectorizer())
FAQ = [
    ("What's your refund policy?", "Refunds within 30 days."),
    ("How do I activate my new card?", "Open the app, then Cards > Activate."),
    ("Is the branch open on Sunday?", "Closed on Sundays."),
    ("How long does a transfer take?", "One business day."),
    ("我的卡还没到", "zh: card on its way"),
    ("Can I change my PIN?", "Yes, at any ATM."),
]


def _old_and_new(make_index: Any) -> tuple[SemanticIndex, SemanticIndex]:
    old = make_index(dtype="float32")
    new = make_index(vectorizer=MiniLMVectorizer(), dtype="float16")
    assert old.layout.index_name != new.layout.index_name
    return old, new


def test_reembed_copies_every_live_entry_with_its_state(make_index: Any) -> None:
    old, new = _old_and_new(make_index)
    scope_a, scope_b = Scope(tenant="a", model="m"), Scope(tenant="b")
    old.store(FAQ[0][0], FAQ[0][1], scope_a, ttl=3600, tokens=120, metadata={"src": "faq"})
    old.store(FAQ[1][0], FAQ[1][1], scope_b, ttl=None)
    old.store(FAQ[4][0], FAQ[4][1], scope_a, ttl=3600)
    assert old.lookup(FAQ[0][0], scope_a) is not None  # a hit: counters to keep
    before = {e.prompt: e for e in old.entries(10)}
    # Not copied yet: the new model's lookups do not see the old entries.
    assert new.lookup(FAQ[0][0], scope_a) is None

    report = new.reembed(MODEL, progress=False)

    assert (report.copied, report.skipped_present, report.skipped_expired, report.failed) == (
        3, 0, 0, 0,
    )  # fmt: skip
    assert report.exact_only == 1 and report.source == old.layout.index_name
    assert report.target == new.layout.index_name and report.rate > 0
    hit = new.lookup(FAQ[0][0], scope_a)
    assert hit is not None and hit.layer == "exact" and hit.response == FAQ[0][1]
    assert hit.tokens == 120 and hit.metadata == {"src": "faq"}
    para = new.lookup("what is your refund policy", scope_a)
    assert para is not None and para.layer == "semantic"
    assert new.lookup(FAQ[1][0], scope_a) is None  # scopes kept: not another tenant's
    zh = new.lookup(FAQ[4][0], scope_a)
    assert zh is not None and zh.layer == "exact"  # unreadable: exact layer only
    after = {e.prompt: e for e in new.entries(10)}
    for prompt, entry in before.items():
        copy = after[prompt]
        assert copy.created_at == entry.created_at
        assert copy.hit_count >= entry.hit_count
        if entry.ttl_left is None:
            assert copy.ttl_left is None
        else:
            assert copy.ttl_left is not None and 0 < copy.ttl_left <= entry.ttl_left
    assert before[FAQ[0][0]].hit_count == 1 and after[FAQ[0][0]].hit_count >= 1


def test_reembed_is_resumable_and_leaves_present_entries_alone(
    make_index: Any, redis_url: str
) -> None:
    old, new = _old_and_new(make_index)
    scope = Scope(tenant="t")
    old.warm(FAQ, scope, progress=False)
    new.store(FAQ[2][0], "the new model's own answer", scope)  # written by live traffic
    admin = redis.Redis.from_url(redis_url)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", max(1, used // 2))
    try:
        with pytest.raises(ReembedError) as stopped:
            new.reembed(MODEL, batch_size=2, progress=False)
    finally:
        admin.config_set("maxmemory", 0)
    assert "Run it again to finish" in str(stopped.value)
    assert isinstance(stopped.value, CacheError)
    assert stopped.value.kind == "oom"
    partial = stopped.value.report
    assert partial.copied == 0  # every write was refused: nothing half-written
    assert new.count() == 1

    report = new.reembed(MODEL, batch_size=2, progress=False)
    assert report.copied == len(FAQ) - 1 and report.skipped_present == 1
    assert new.count() == len(FAQ)  # no duplicates
    hit = new.lookup(FAQ[2][0], scope)
    assert hit is not None and hit.response == "the new model's own answer"
    again = new.reembed(MODEL, progress=False)
    assert again.copied == 0 and again.skipped_present == len(FAQ)
    admin.close()


def test_reembed_skips_corrupt_and_foreign_keys(make_index: Any, redis_url: str) -> None:
    old, new = _old_and_new(make_index)
    scope = Scope(tenant="t")
    old.warm(FAQ[:3], scope, progress=False)
    admin = redis.Redis.from_url(redis_url)
    admin.set(old.layout.prefix + "0123abcd", "not a hash")
    admin.hset(old.layout.prefix + "4567cdef", mapping={"v": "2", "prompt": "no response"})
    report = new.reembed(MODEL, progress=False)
    assert (report.copied, report.failed) == (3, 2)
    assert new.count() == 3
    admin.close()


def test_reembed_skips_expired_and_drop_old_removes_the_old_index(
    make_index: Any, redis_url: str
) -> None:
    old, new = _old_and_new(make_index)
    scope = Scope(tenant="t")
    old.store(FAQ[0][0], FAQ[0][1], scope, ttl=1)
    old.store(FAQ[1][0], FAQ[1][1], scope)
    deadline = time.monotonic() + 30
    while old.lookup(FAQ[0][0], scope) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    report = new.reembed(MODEL, progress=False, drop_old=True)
    assert report.copied == 1 and report.dropped >= 1
    admin = redis.Redis.from_url(redis_url)
    assert list(admin.scan_iter(match=old.layout.prefix + "*")) == []
    assert old.layout.index_name.encode() not in admin.execute_command("FT._LIST")
    admin.close()
    assert new.lookup(FAQ[1][0], scope) is not None
    with pytest.raises(ValueError, match="no index"):
        new.reembed(MODEL, progress=False)  # the old index is gone


def test_reembed_async_and_bad_arguments(make_index: Any) -> None:
    old, new = _old_and_new(make_index)
    scope = Scope(tenant="t")
    old.warm(FAQ[:3], scope, progress=False)
    report = asyncio.run(new.areembed(old.layout.index_name, progress=False))
    assert report.copied == 3
    assert new.lookup(FAQ[1][0], scope) is not None
    with pytest.raises(ValueError, match="current model"):
        new.reembed(new.layout.index_name, progress=False)
    with pytest.raises(ValueError, match="neither an index"):
        new.reembed("not-a-model", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        new.reembed(MODEL, batch_size=0, progress=False)


def test_cli_reembed(make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from paracache.cli import main

    old = make_index(dtype="float32")
    scope = Scope(tenant="t")
    old.warm(FAQ[:4], scope, progress=False)
    ns = old.namespace
    code = main(["reembed", "--redis-url", redis_url, "--namespace", ns, "--from", MODEL,
                 "--json"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and '"copied": 4' in out
    new = make_index()  # the default model at float16: what the command wrote into
    assert new.lookup(FAQ[3][0], scope) is not None
    code = main(["reembed", "--redis-url", redis_url, "--namespace", ns, "--from", MODEL,
                 "--drop-old"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "0 entries copied" in out and "4 already present" in out
    code = main(["reembed", "--redis-url", redis_url, "--namespace", ns, "--from", MODEL])
    err = capsys.readouterr().err
    assert code == 2 and "no index" in err


class FailingMiniLM(MiniLMVectorizer):
    """The default model, whose batch embedding fails once ``batches_left`` ran out."""

    batches_left: int = 0

    def _embed_many(
        self, contents: list[Any], batch_size: int = 10, **kwargs: Any
    ) -> list[list[float]]:
        if self.batches_left <= 0:
            raise RuntimeError("model server down")
        self.batches_left -= 1
        return super()._embed_many(contents, batch_size, **kwargs)


def test_an_embedder_failure_stops_the_run_with_nothing_half_written(make_index: Any) -> None:
    old = make_index(dtype="float32")
    scope = Scope(tenant="t")
    old.warm(FAQ, scope, progress=False)
    flaky = FailingMiniLM()
    flaky.batches_left = 1
    new = make_index(vectorizer=flaky, dtype="float16")
    with pytest.raises(ReembedError) as stopped:
        new.reembed(MODEL, batch_size=2, progress=False)
    assert "Run it again to finish" in str(stopped.value)
    assert stopped.value.kind == "embedding"
    copied = stopped.value.report.copied
    assert copied <= 2 and new.count() == copied  # whole batches only
    for prompt, answer in FAQ:
        got = new.lookup(prompt, scope, semantic=False)
        assert got is None or got.response == answer

    flaky.batches_left = 100
    report = new.reembed(MODEL, batch_size=2, progress=False)
    assert report.copied + report.skipped_present == len(FAQ)
    assert report.skipped_present == copied and new.count() == len(FAQ)


def test_lookups_keep_working_while_a_reembed_runs(make_index: Any) -> None:
    import threading

    old, new = _old_and_new(make_index)
    scope = Scope(tenant="t")
    old.warm(FAQ, scope, progress=False)
    done = threading.Event()
    failures: list[BaseException] = []

    def copy() -> None:
        try:
            new.reembed(MODEL, batch_size=1, progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=copy)
    thread.start()
    rounds = 0
    while not done.is_set() or rounds < 2:
        for prompt, answer in FAQ:
            assert old.lookup(prompt, scope) is not None  # the old index serves throughout
            got = new.lookup(prompt, scope)
            assert got is None or got.response == answer  # copied or not: never wrong
        rounds += 1
    thread.join(60)
    assert not failures
    assert all(new.lookup(p, scope) is not None for p, _ in FAQ)


def test_redis_down_or_failing_is_a_reembed_error_and_bad_sources_a_type_error(
    make_index: Any, redis_url: str, namespace: str
) -> None:
    """The documented error for a Redis failure is ReembedError (with its report), before
    the copy starts and after it too (dropping the old index); a from_model that is no
    vectorizer, id or name is a TypeError, not an AttributeError from inside."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = SemanticIndex(f"redis://127.0.0.1:{port}", namespace=namespace, timeout=0.5)
    try:
        with pytest.raises(ReembedError, match="did not start") as stopped:
            down.reembed(MODEL, progress=False)
        assert stopped.value.report.copied == 0
        assert stopped.value.report.target == down.layout.index_name
        assert stopped.value.kind == "unavailable"  # CacheError.kind: how Redis failed
        with pytest.raises(ReembedError, match="did not start") as astopped:
            asyncio.run(down.areembed(MODEL, progress=False))
        assert astopped.value.kind == "unavailable"
    finally:
        down.close()

    old, new = _old_and_new(make_index)
    for bad in (None, 5, object()):
        with pytest.raises(TypeError, match="from_model must be"):
            new.reembed(bad, progress=False)

    # Dropping the old index fails (an ACL user that may not UNLINK): the copy is
    # complete and reported, and the error says so.
    old.warm(FAQ[:2], Scope(tenant="t"), progress=False)
    admin = redis.Redis.from_url(redis_url)
    user, password = f"u-{namespace}", "p-" + namespace
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-unlink"
    )
    try:
        limited = SemanticIndex(
            f"redis://{user}:{password}@127.0.0.1:"
            f"{admin.connection_pool.connection_kwargs['port']}/0",
            namespace=namespace, vectorizer=MiniLMVectorizer(), dtype="float16", timeout=5.0,
        )  # fmt: skip
        try:
            with pytest.raises(ReembedError, match="dropping the old index failed") as failed:
                limited.reembed(MODEL, progress=False, drop_old=True)
            assert failed.value.report.copied == 2
            assert failed.value.kind == "noperm"  # the ACL's refusal (NOPERM)
            assert limited.count() == 2
        finally:
            limited.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
