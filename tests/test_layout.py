"""The stored layout of an entry (schema version 2): only what it must have, its scope's
JSON once per scope in the namespace's scope registry, counters written on first hit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reliability_helpers import HashVectorizer, raw, torn_entries

import paracache.store
from paracache import Scope, SemanticIndex
from paracache.schema import SCHEMA_VERSION, entry_problem, scopes_key
from paracache.scope import canonical_json

SCOPE = Scope(model="gpt-4o-mini", tenant="acme", params={"temperature": 0})
REQUIRED = {b"v", b"prompt", b"response", b"scope", b"tenant", b"model", b"corpus"}


def _fields(idx: SemanticIndex, entry_id: str | None, url: str) -> dict[bytes, bytes]:
    assert entry_id is not None
    return raw(url).hgetall(idx.layout.key(entry_id))


def test_an_entry_holds_only_what_it_must(make_index: Any, redis_url: str) -> None:
    idx = make_index(vectorizer=HashVectorizer(), ttl_policy=paracache.TTLPolicy(default_ttl=None))
    entry = idx.store("How do I freeze my card?", "Tap Freeze in the app.", SCOPE)
    fields = _fields(idx, entry, redis_url)
    assert set(fields) == REQUIRED | {b"created_at", b"embedding"}
    assert fields[b"v"] == SCHEMA_VERSION.encode() == b"2"
    assert fields[b"created_at"].isdigit() and len(fields[b"created_at"]) == 10
    assert entry_problem(fields, vector_bytes=idx.layout.vector_bytes) is None
    # Layout budget: besides the vector and the texts, at most 150 bytes of names/values.
    overhead = sum(len(k) + len(v) for k, v in fields.items()) - sum(
        len(fields[f]) for f in (b"embedding", b"prompt", b"response")
    )
    assert overhead <= 150, overhead
    # The scope's JSON is in the registry, once, not in the entry.
    registry = raw(redis_url).hgetall(scopes_key(idx.namespace))
    assert registry == {SCOPE.digest().encode(): canonical_json(SCOPE.as_dict()).encode()}

    hit = idx.lookup("How do I freeze my card?", SCOPE)  # the first hit adds the counters
    assert hit is not None and hit.hit_count == 0 and hit.tokens == 0 and hit.metadata == {}
    assert hit.ttl is None and abs(hit.created_at - float(fields[b"created_at"])) < 1e-9
    assert _fields(idx, entry, redis_url) == fields  # counted in process: nothing written
    assert idx.flush_hits() == 1
    after = _fields(idx, entry, redis_url)
    assert after[b"hit_count"] == b"1" and float(after[b"last_hit_at"]) > 0
    assert entry_problem(after, vector_bytes=idx.layout.vector_bytes) is None


def test_optional_fields_are_written_when_set(make_index: Any, redis_url: str) -> None:
    idx = make_index(vectorizer=HashVectorizer())
    entry = idx.store("What is the limit?", "1,000.", SCOPE, tokens=42, metadata={"k": 1}, ttl=600)
    fields = _fields(idx, entry, redis_url)
    assert fields[b"tokens"] == b"42" and fields[b"ttl"] == b"600"
    assert json.loads(fields[b"metadata"]) == {"k": 1}
    assert 0 < raw(redis_url).ttl(idx.layout.key(entry or "")) <= 600
    hit = idx.lookup("What is the limit?", SCOPE)
    assert hit is not None and (hit.tokens, hit.metadata, hit.ttl) == (42, {"k": 1}, 600)


def test_entries_read_the_scope_from_the_registry(make_index: Any, redis_url: str) -> None:
    idx = make_index(vectorizer=HashVectorizer())
    other = SCOPE.replace(tenant="globex")
    idx.store("Question one", "a", SCOPE)
    idx.warm(
        [("Question two", "b"), ("Question three", "c")], other, progress=False, semantic=False
    )
    rows = {e.prompt: e for e in idx.entries()}
    assert rows["Question one"].scope == SCOPE.as_dict()
    assert (
        rows["Question two"].scope["tenant"] == "globex" == rows["Question three"].scope["tenant"]
    )
    assert rows["Question one"].hit_count == 0 and rows["Question one"].last_hit_at is None
    assert rows["Question one"].age() >= 0 and rows["Question one"].tokens == 0
    # A row missing from the registry: the entry still serves, and lists with no scope.
    raw(redis_url).hdel(scopes_key(idx.namespace), other.digest())
    assert idx.lookup("Question two", other) is not None
    assert {e.prompt: e.scope for e in idx.entries()}["Question two"] == {}


def test_clearing_the_namespace_removes_the_registry(make_index: Any, redis_url: str) -> None:
    idx = make_index(vectorizer=HashVectorizer())
    client = raw(redis_url)
    for i in range(3):
        idx.store(f"q {i}", "a", SCOPE)
    idx.store("q g", "a", SCOPE.replace(tenant="globex"))
    assert idx.clear(tenant="globex") == 1
    assert client.hlen(scopes_key(idx.namespace)) == 2  # a row may outlive its entries
    assert idx.clear() == 3  # entries counted, the registry removed with them
    assert not client.exists(scopes_key(idx.namespace))
    idx.store("q 0", "a", SCOPE)  # the instance registers again after its own clear
    assert client.hexists(scopes_key(idx.namespace), SCOPE.digest())


def test_a_damaged_registry_never_fails_a_write_or_a_listing(
    make_index: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paracache.store, "REGISTER_EVERY", 0.0)
    idx = make_index(vectorizer=HashVectorizer())
    client = raw(redis_url)
    client.set(scopes_key(idx.namespace), "not a hash")
    assert idx.store("How do I pay?", "By card.", SCOPE) is not None
    assert (
        idx.warm([("How do I pay back?", "By transfer.")], SCOPE, progress=False, semantic=False)
        == 1
    )
    assert [e.scope for e in idx.entries()] == [{}, {}]
    assert idx.stats().writes_dropped == 0 and idx.stats().errors == 0
    assert idx.lookup("How do I pay?", SCOPE) is not None
    assert torn_entries(redis_url, idx.namespace) == [scopes_key(idx.namespace)]
    report = idx.repair()
    assert report.problems == {"scope registry not a hash (string)": 1} and report.clean
    idx.store("How do I pay?", "By card.", SCOPE)  # registers again
    assert idx.entries()[0].scope == SCOPE.as_dict()
    assert idx.repair(dry_run=True).valid == 2 and torn_entries(redis_url, idx.namespace) == []


ENTRY = {
    b"v": SCHEMA_VERSION.encode(),
    b"prompt": b"hi",
    b"response": b"hello",
    b"scope": b"0" * 32,
    b"tenant": b"1" * 16,
    b"model": b"2" * 16,
    b"corpus": b"3" * 16,
    b"created_at": b"1700000000",
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({b"hit_count": b"inf"}, "bad hit_count"),
        ({b"tokens": b"-3"}, "bad tokens"),
        ({b"ttl": b"soon"}, "bad ttl"),
        ({b"last_hit_at": b"nan"}, "bad last_hit_at"),
        ({b"metadata": b"[1]"}, "metadata is not a JSON object"),
        ({b"created_at": None}, "bad created_at"),
        ({b"corpus": None}, "bad corpus digest"),
        ({b"scope": b"xyz"}, "bad scope digest"),
        ({b"v": b"1"}, "schema version 1"),
    ],
)
def test_optional_fields_may_be_absent_never_malformed(
    change: dict[bytes, bytes | None], problem: str
) -> None:
    assert entry_problem(ENTRY) is None
    assert entry_problem({**ENTRY, b"hit_count": b"3", b"last_hit_at": b"1.5"}) is None
    fields = {k: v for k, v in {**ENTRY, **change}.items() if v is not None}
    assert entry_problem(fields) == problem
