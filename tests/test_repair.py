"""Corrupt and foreign data in a namespace: lookups skip and count it, never raise;
``SemanticIndex.repair`` / ``arepair`` and ``paracache repair`` find and delete it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from reliability_helpers import raw, torn_entries

from paracache import Scope, SemanticIndex
from paracache.cli import main
from paracache.repair import _DELETE_IF_SAME, RepairReport, repair_flow

SCOPE = Scope(model="m", tenant="acme")


def _entry(idx: SemanticIndex, prompt: str, response: str = "ok") -> tuple[str, dict[str, Any]]:
    """The key and full field mapping a store would write (with its vector)."""
    req = idx.core.prepare_store(prompt, response, SCOPE)
    mapping = dict(req.mapping)
    mapping["embedding"] = idx.core.encode_vector(idx.vectorizer.embed(req.lookup.text))
    return req.lookup.key, mapping


CORRUPTIONS: dict[str, Any] = {
    "missing response": lambda m: m.pop("response"),
    "undecodable response": lambda m: m.update(response=b"\xff\xfe\xfa not utf-8"),
    "vector of the wrong size": lambda m: m.update(embedding=b"\x00" * 100),
    "older schema v=0": lambda m: m.update(v="0"),
    "metadata not an object": lambda m: m.update(metadata="[1, 2]"),
    "created_at not a number": lambda m: m.update(created_at="yesterday"),
    "hit_count infinite": lambda m: m.update(hit_count="inf"),
    "missing tenant digest": lambda m: m.pop("tenant"),
}


def _plant(idx: SemanticIndex, url: str) -> list[str]:
    """One corrupt entry per kind (at the key its prompt's lookup reads), plus a string
    where a hash should be, an old-schema key and a non-entry key. Returns bad keys."""
    client = raw(url)
    bad = []
    for n, (name, corrupt) in enumerate(CORRUPTIONS.items()):
        key, mapping = _entry(idx, f"Question {n} about {name}")
        corrupt(mapping)
        client.hset(key, mapping=mapping)
        bad.append(key)
    wrong_type = idx.layout.key("0" * 32)
    client.set(wrong_type, "not a hash")
    old_key = f"paracache:{idx.namespace}:v0:{idx.layout.slug}:e:{'1' * 32}"
    client.hset(old_key, mapping={"v": "0", "prompt": "old", "response": "old"})
    client.set(f"paracache:{idx.namespace}:notes", "someone else's key")
    return [*bad, wrong_type, old_key]


def test_corrupt_entries_are_skipped_counted_never_raised(make_index: Any, redis_url: str) -> None:
    idx = make_index()
    idx.store("How do I change my address?", "In Settings.", SCOPE)
    _plant(idx, redis_url)
    for n, name in enumerate(CORRUPTIONS):
        prompt = f"Question {n} about {name}"
        exact = idx.lookup_verdict(prompt, SCOPE)  # the exact layer reads the bad hash
        assert exact.hit is None or exact.hit.response == "In Settings.", name
        para = idx.lookup_verdict(f"a question, {n}, on {name}", SCOPE, min_similarity=0.5)
        assert para.outcome in ("miss", "semantic", "error")
        assert para.hit is None or para.hit.response in ("ok", "In Settings.")
    s = idx.stats()
    assert s.errors_by_kind.get("corrupt_entry", 0) >= len(CORRUPTIONS)
    assert s.errors_by_kind.get("redis", 0) == 0 and s.breaker_state == "closed"
    hit = idx.lookup("How can I change my address?", SCOPE)
    assert hit is not None and hit.response == "In Settings."


def test_a_key_of_another_type_at_an_entrys_key_is_a_corrupt_entry(
    make_index: Any, redis_url: str
) -> None:
    """Another application SET a string at the key a prompt's lookup reads. Each lookup of
    that prompt was counted as a Redis failure ("WRONGTYPE"); three opened the breaker, so
    one bad key switched the whole cache off, again and again, and the write of the fresh
    answer that would have replaced it was dropped while the breaker was open."""
    for options in ({}, {"track_hits": False}):
        _wrong_type_at_a_prompts_key(make_index(**options), redis_url)


def _wrong_type_at_a_prompts_key(idx: SemanticIndex, redis_url: str) -> None:
    idx.store("How do I change my address?", "In Settings.", SCOPE)
    prompt = "How do I reset my password?"
    raw(redis_url).set(idx.core.prepare_lookup(prompt, SCOPE).key, "someone else's value")
    for _ in range(5):
        verdict = idx.lookup_verdict(prompt, SCOPE)
        assert verdict.outcome == "miss", verdict.reason
    s = idx.stats()
    assert s.errors_by_kind.get("corrupt_entry", 0) >= 5
    assert s.errors_by_kind.get("redis", 0) == 0 and s.breaker_state == "closed"
    assert idx.lookup("How do I change my address?", SCOPE) is not None  # the rest serves
    assert idx.store_result(prompt, "Tap Forgot password.", SCOPE).outcome == "written"
    hit = idx.lookup(prompt, SCOPE)
    assert hit is not None and hit.response == "Tap Forgot password."


def test_repair_reports_then_deletes(make_index: Any, redis_url: str) -> None:
    idx = make_index()
    good = [idx.store(f"How do I order card number {i}?", f"a{i}", SCOPE) for i in range(5)]
    idx.store("Stored without a vector", "exact only", SCOPE, semantic=False)
    bad = _plant(idx, redis_url)

    report = idx.repair(dry_run=True)
    assert isinstance(report, RepairReport) and report.dry_run
    assert (report.valid, report.invalid, report.deleted) == (6, len(bad), 0)
    assert report.other_keys == 1 and report.scanned == 6 + len(bad) + 1
    assert not report.clean
    assert report.problems["schema version 0"] == 1
    assert report.problems["schema version 0 key"] == 1
    assert report.problems["no response field"] == 1
    assert report.problems["not a hash (string)"] == 1
    assert any("vector of 100 bytes" in p for p in report.problems)
    assert {k for k, _ in report.samples} == set(bad)
    client = raw(redis_url)
    assert all(client.exists(k) for k in bad)  # a dry run deletes nothing

    report = idx.repair()
    assert report.deleted == len(bad) and report.clean
    assert not any(client.exists(k) for k in bad)
    assert client.exists(f"paracache:{idx.namespace}:notes")  # not ours to judge
    assert all(client.exists(idx.layout.key(e)) for e in good if e)
    again = idx.repair(dry_run=True)
    assert again.invalid == 0 and again.valid == 6 and again.clean
    assert json.loads(json.dumps(again.as_dict()))["clean"] is True
    assert torn_entries(redis_url, idx.namespace, idx.layout.vector_bytes) == [
        f"paracache:{idx.namespace}:notes"
    ]


async def test_arepair(make_index: Any, redis_url: str) -> None:
    idx = make_index()
    await idx.astore("Why is my balance wrong?", "Pending payments.", SCOPE)
    bad = _plant(idx, redis_url)
    report = await idx.arepair()
    assert report.invalid == report.deleted == len(bad) and report.valid == 1


def test_repair_never_deletes_an_entry_rewritten_meanwhile(
    make_index: Any, redis_url: str
) -> None:
    idx = make_index()
    key, mapping = _entry(idx, "What is the daily limit?")
    mapping.pop("response")
    client = raw(redis_url)
    client.hset(key, mapping=mapping)
    flow = repair_flow(idx.namespace)
    op = next(flow)
    try:
        while True:
            if hasattr(op, "calls") and op.calls[0][1] == _DELETE_IF_SAME:
                # A store rewrites the entry between the scan and the delete.
                assert idx.store("What is the daily limit?", "1,000 a day.", SCOPE) is not None
            if hasattr(op, "calls"):
                pipe = client.pipeline(transaction=False)
                for args in op.calls:
                    pipe.execute_command(*args)
                result: Any = pipe.execute()
            else:
                result = client.execute_command(*op.args)
            op = flow.send(result)
    except StopIteration as stop:
        report = stop.value
    assert report.invalid == 1 and report.deleted == 0
    hit = idx.lookup("What is the daily limit?", SCOPE)
    assert hit is not None and hit.response == "1,000 a day."


def test_cli_repair(make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    idx = make_index()
    idx.store("How do I activate my card?", "In the app.", SCOPE)
    bad = _plant(idx, redis_url)
    args = ["repair", "--redis-url", redis_url, "--namespace", idx.namespace]
    assert main([*args, "--dry-run", "--json"]) == 1  # problems found, nothing done
    out = json.loads(capsys.readouterr().out)
    assert out["invalid"] == len(bad) and out["deleted"] == 0 and out["clean"] is False
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"deleted {len(bad)}" in text and "schema version 0" in text
    assert redis_url.split("@")[0] not in text  # no password on screen
    assert main([*args, "--dry-run"]) == 0
    assert main(["repair", "--redis-url", redis_url]) == 2  # --namespace is required


def test_repair_of_an_unreachable_redis_raises_cache_error() -> None:
    from paracache import CacheError

    idx = SemanticIndex("redis://127.0.0.1:1/0", namespace="gone", admin_timeout=0.5)
    with pytest.raises(CacheError):
        idx.repair()
    with pytest.raises(redis.RedisError):
        raw("redis://127.0.0.1:1/0", timeout=0.5).ping()


def test_repair_leaves_a_newer_versions_entries_alone(make_index: Any, redis_url: str) -> None:
    """A rolling upgrade: the new deployment writes entries of a newer schema version in
    the same namespace while the old one still runs; a repair run from the old one must
    not delete them (an older version's entries are still removed)."""
    idx = make_index()
    idx.store("How do I order a card?", "Tap Order.", SCOPE)
    client = raw(redis_url)
    newer = f"paracache:{idx.namespace}:v3:{idx.layout.slug}:e:{'2' * 32}"
    client.hset(newer, mapping={"v": "3", "prompt": "new", "response": "new", "more": "x"})
    older = f"paracache:{idx.namespace}:v1:{idx.layout.slug}:e:{'3' * 32}"
    client.hset(older, mapping={"v": "1", "prompt": "old", "response": "old"})
    report = idx.repair()
    assert client.exists(newer) and not client.exists(older)
    assert report.deleted == 1 and report.valid == 1 and report.other_keys == 1
