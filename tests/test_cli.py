"""The ``paracache`` command's admin subcommands (stats, inspect, clear) and exit codes,
against the real embedded Redis; and ``SemanticIndex.entries``."""

from __future__ import annotations

import io
import itertools
import json
import socket
import time
from typing import Any

import pytest
import redis

from paracache import Scope, SemanticIndex
from paracache.cli import main


@pytest.fixture
def filled(make_index: Any) -> SemanticIndex:
    """Five entries of tenant acme (gpt-4o-mini), two of globex (another model), one hit."""
    index: SemanticIndex = make_index()
    acme = Scope(model="gpt-4o-mini", tenant="acme")
    for i in range(5):
        index.store(f"How do I order card number {i}?", f"answer {i}", acme, tokens=100)
    globex = Scope(model="claude", tenant="globex", corpus_version="2026-10")
    index.store("What is the fee for transfers?", "1 EUR", globex, ttl=None)
    index.store("Can I freeze my card?", "Yes", globex, ttl=60)
    assert index.lookup("How do I order card number 1?", acme) is not None
    assert index.flush_hits() == 1  # what another process (the CLI) sees
    return index


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The exit code as the shell sees it (argparse exits for --help and usage errors)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- usage


def test_help_and_usage_errors_exit_0_and_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for command in ("stats", "inspect", "clear", "serve", "demo"):
        assert command in out
    code, out, _ = _run(capsys, "clear", "--help")
    assert code == 0 and "--corpus-version" in out and "--yes" in out
    assert _run(capsys, "stats", "--bogus")[0] == 2
    assert _run(capsys, "inspect", "--limit", "0")[0] == 2
    assert _run(capsys, "serve", "--port", "70000")[0] == 2
    assert _run(capsys)[0] == 2  # no command: help, usage error


def test_a_malformed_namespace_is_a_usage_error(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command's --namespace is checked as the library checks it: exit 2 and one
    line (clear, reembed, demo and serve raised a ValueError traceback; stats, inspect and
    worker went on with a namespace no cache can have)."""
    for argv in (
        ("stats", "--redis-url", redis_url),
        ("inspect", "--redis-url", redis_url),
        ("clear", "--redis-url", redis_url, "--yes"),
        ("worker", "--redis-url", redis_url, "--once"),
        ("reembed", "--redis-url", redis_url, "--from", "x"),
        ("demo", "--redis-url", redis_url),
        ("serve", "--redis-url", redis_url),
    ):
        code, out, err = _run(capsys, *argv, "--namespace", "a b")
        assert code == 2, (argv, out, err)
        assert "argument --namespace: must be 1-64 characters" in err, (argv, err)
        assert "Traceback" not in err and "ValueError" not in err


def test_no_redis_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARACACHE_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    code, _, err = _run(capsys, "stats")
    assert code == 2
    assert "--redis-url" in err and "PARACACHE_REDIS_URL" in err


def test_unreachable_redis_exits_1_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://:secret-pw@127.0.0.1:{_closed_port()}"
    for command in ("stats", "inspect"):
        code, out, err = _run(capsys, command, "--redis-url", url)
        assert code == 1
        assert "cannot reach Redis" in err and "127.0.0.1" in err
        assert "secret-pw" not in err + out  # the password is never printed
    code, _, err = _run(capsys, "clear", "--redis-url", url, "--namespace", "x", "--yes")
    assert code == 1 and "cannot reach Redis" in err
    assert _run(capsys, "stats", "--redis-url", "http://nope")[0] == 2


def test_a_database_other_than_0_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A URL ending in /1: exit 2 before any FT.* command. Before, `stats` searched from
    database 1, which (RediSearch 2.10) left every later search of the server returning
    documents without fields, and `inspect` then failed with a traceback for everyone."""
    from paracache.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        url0 = server.url
        index = SemanticIndex(url0, namespace="db-cli")
        index.store("How do I freeze my card?", "Tap Freeze.", Scope(tenant="acme"))
        for command in ("stats", "inspect"):
            code, out, err = _run(capsys, command, "--redis-url", url0[:-1] + "1")
            assert code == 2 and "database 0 only" in err, (out, err)
        code, out, err = _run(capsys, "inspect", "--redis-url", url0, "--namespace", "db-cli")
        assert code == 0 and "How do I freeze my card?" in out, err
        index.close()


def test_inspect_skips_an_entry_that_expired_under_the_index(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An expired entry the server has not reclaimed yet is still in the index; a search
    that loads it gets no fields (nil). When every listed entry was such, the reply read
    as a NOCONTENT one, "None" became an entry key, and `inspect` failed with a
    traceback."""
    from paracache.embedded import EmbeddedRedis

    with EmbeddedRedis(enable_debug_command=True) as server:
        redis.Redis.from_url(server.url).execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        index = SemanticIndex(server.url, namespace="expiring")
        index.store("How do I freeze my card?", "Tap Freeze.", ttl=1)
        time.sleep(1.2)
        code, out, err = _run(capsys, "inspect", "--redis-url", server.url,
                              "--namespace", "expiring")
        assert code == 0 and "Traceback" not in err and "freeze" not in out, (out, err)
        assert index.entries(5) == []
        index.close()


def test_commands_that_build_a_cache_report_an_unusable_redis_in_one_line(
    redis_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """`demo`, `calibrate` (and `serve`) build a SemanticIndex: a Redis it refuses (here:
    database 1) is reported like the admin commands' failures, not as a traceback."""
    url = redis_url[:-1] + "1"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"q1": "Hi?", "q2": "Hello?", "same": True}) + "\n")
    for argv in (["demo", "--questions", "2", "--no-progress", "--redis-url", url],
                 ["calibrate", str(pairs), "--redis-url", url]):
        code, _, err = _run(capsys, *argv)
        assert code == 1 and err.startswith(f"paracache {argv[0]}: "), err
        assert "database 0 only" in err and "Traceback" not in err


# --------------------------------------------------------------------------- stats


def test_stats_reports_what_redis_knows(
    filled: SemanticIndex, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = filled.namespace
    code, out, _ = _run(capsys, "stats", "--redis-url", redis_url, "--namespace", ns, "--json")
    assert code == 0
    data = json.loads(out)
    assert [n["namespace"] for n in data["namespaces"]] == [ns]
    group = data["namespaces"][0]
    assert group["entries"] == 7 and group["hits"] == 1
    (idx,) = group["indexes"]
    assert idx["index"] == filled.layout.index_name
    assert idx["tokens"] == 500
    assert idx["oldest"] <= idx["newest"]
    assert idx["memory_bytes"] > 0
    assert {r["tenant"]: (r["entries"], r["hits"]) for r in idx["by_tenant"]} == {
        "acme": (5, 1),
        "globex": (2, 0),
    }
    assert {r["model"]: r["entries"] for r in idx["by_model"]} == {"gpt-4o-mini": 5, "claude": 2}

    code, out, _ = _run(capsys, "stats", "--redis-url", redis_url, "--namespace", ns)
    assert code == 0
    assert f"namespace {ns}: 7 entries" in out
    assert "acme 5 (hits 1)" in out and "gpt-4o-mini 5" in out
    assert "in each application process" in out

    # Without --namespace: every namespace, this one included.
    code, out, _ = _run(capsys, "stats", "--redis-url", redis_url, "--json")
    assert code == 0 and ns in {n["namespace"] for n in json.loads(out)["namespaces"]}


def test_stats_of_an_unknown_namespace_is_empty(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "stats", "--redis-url", redis_url, "--namespace", "no-such-ns")
    assert code == 0 and "no paracache index" in out
    code, out, _ = _run(
        capsys, "stats", "--redis-url", redis_url, "--namespace", "no-such-ns", "--json"
    )
    assert json.loads(out)["namespaces"] == []


# --------------------------------------------------------------------------- inspect


def test_inspect_lists_newest_entries_with_scope_age_hits_ttl(
    filled: SemanticIndex, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = filled.namespace
    code, out, _ = _run(
        capsys, "inspect", "--redis-url", redis_url, "--namespace", ns, "--limit", "3", "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 3
    assert rows[0]["prompt"] == "Can I freeze my card?"  # newest first
    first = rows[0]
    assert first["namespace"] == ns
    assert first["scope"]["tenant"] == "globex" and first["scope"]["model"] == "claude"
    assert first["scope"]["corpus_version"] == "2026-10"
    assert 0 < first["ttl_left"] <= 60 and first["ttl"] == 60
    assert rows[1]["ttl_left"] is None  # stored with ttl=None: never expires
    assert first["age"] >= 0

    code, out, _ = _run(capsys, "inspect", "--redis-url", redis_url, "--namespace", ns)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["AGE", "HITS", "TTL"]
    assert len(lines) == 1 + 7
    hit_row = next(line for line in lines if "card number 1" in line)
    assert hit_row.split()[1] == "1"  # one hit recorded
    assert "never" in next(line for line in lines if "fee for transfers" in line)


def test_inspect_never_prints_control_characters(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    index = make_index()
    index.store("evil \x1b[2J\x1b[31mprompt\r\nsecond line", "x", Scope(tenant="t\x07"))
    code, out, _ = _run(capsys, "inspect", "--redis-url", redis_url, "--namespace", index.namespace)
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "second line" in out


def test_index_entries_sync_and_async(filled: SemanticIndex) -> None:
    import asyncio

    entries = filled.entries(10)
    assert len(entries) == 7
    assert entries[0].prompt == "Can I freeze my card?"
    assert all(a.created_at >= b.created_at for a, b in itertools.pairwise(entries))
    hit = next(e for e in entries if e.prompt == "How do I order card number 1?")
    assert hit.hit_count == 1 and hit.last_hit_at is not None and hit.tokens == 100
    assert hit.ttl == 7 * 24 * 3600 and hit.ttl_left is not None
    assert [e.entry_id for e in filled.entries(2)] == [e.entry_id for e in entries[:2]]
    assert [e.entry_id for e in asyncio.run(filled.aentries(3))] == [
        e.entry_id for e in entries[:3]
    ]
    with pytest.raises(ValueError):
        filled.entries(0)


# --------------------------------------------------------------------------- clear


def test_clear_asks_then_deletes_by_scope(
    filled: SemanticIndex,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = filled.namespace
    base = ("clear", "--redis-url", redis_url, "--namespace", ns)
    # No terminal to ask on and no --yes: refuse, delete nothing.
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = _run(capsys, *base, "--tenant", "acme")
    assert code == 2 and "would delete 5 entries" in err and "--yes" in err
    assert filled.count() == 7
    # --clear needs a namespace.
    assert _run(capsys, "clear", "--redis-url", redis_url, "--yes")[0] == 2

    code, out, _ = _run(capsys, *base, "--model", "claude", "--corpus-version", "old", "--yes")
    assert code == 0 and "deleted 0 entries" in out
    code, out, _ = _run(capsys, *base, "--tenant", "acme", "--yes", "--json")
    assert code == 0 and json.loads(out) == {
        "namespace": ns, "filters": {"tenant": "acme"}, "deleted": 5
    }
    assert filled.count() == 2
    assert filled.lookup("What is the fee for transfers?",
                         Scope(model="claude", tenant="globex", corpus_version="2026-10"))
    code, out, _ = _run(capsys, *base, "--yes")
    assert code == 0 and "deleted 2 entries" in out
    assert filled.count() == 0


def test_clear_matches_semantic_index_clear(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's digest filters are the core's: a tenant name full of query syntax works."""
    index = make_index()
    odd = 'globex"} | @tenant:{*'
    index.store("q1", "a", Scope(tenant=odd, model="m"))
    index.store("q2", "a", Scope(tenant="acme", model="m"))
    code, out, _ = _run(
        capsys, "clear", "--redis-url", redis_url, "--namespace", index.namespace,
        "--tenant", odd, "--yes",
    )
    assert code == 0 and "deleted 1 entries" in out
    assert index.lookup("q2", Scope(tenant="acme", model="m")) is not None
    assert index.lookup("q1", Scope(tenant=odd, model="m")) is None


def test_clear_by_tenant_when_the_index_lists_gone_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Entries that expired but are still listed by the index (active expiry off, so
    only a touch expires them): ``clear --tenant`` deletes the live ones, counts none of
    the gone ones and stops (the CLI and SemanticIndex.clear share one loop with a
    no-progress guard)."""
    import time

    from paracache.embedded import EmbeddedRedis

    with EmbeddedRedis(enable_debug_command=True) as srv:
        index = SemanticIndex(srv.url, namespace="gone", timeout=1.0)
        raw = redis.Redis.from_url(srv.url, protocol=2)
        raw.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        for i in range(3):
            index.store(f"expiring {i}", "a", Scope(tenant="acme"), ttl=1)
        index.store("lasting", "a", Scope(tenant="acme"), ttl=None)
        index.store("other tenant", "a", Scope(tenant="globex"), ttl=None)
        time.sleep(1.5)
        listed = raw.execute_command(
            "FT.SEARCH", index.layout.index_name, "*", "NOCONTENT", "LIMIT", 0, 0
        )[0]
        assert listed == 5  # the expired entries are still listed
        code, out, _ = _run(
            capsys, "clear", "--redis-url", srv.url, "--namespace", "gone",
            "--tenant", "acme", "--yes", "--json",
        )
        assert code == 0 and json.loads(out)["deleted"] == 1
        assert index.count() == 1 and index.lookup("other tenant", Scope(tenant="globex"))
        index.close()
        raw.close()


def test_json_output_escapes_what_a_terminal_would_obey(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` kept non-ASCII text as it is, C1 controls too: ``\\x9b`` is a terminal's
    CSI (as ESC ``[``), ``\\u202e`` reverses what follows. They are escaped now; the JSON
    reads back the same."""
    index = make_index()
    evil = "q\x9b2J \u202eevil\u2028line \U000e0041 ü"
    index.store(evil, "x", Scope(tenant=evil, model="m\x85"))
    for command in ("inspect", "stats"):
        code, out, _ = _run(
            capsys, command, "--redis-url", redis_url, "--namespace", index.namespace, "--json"
        )
        assert code == 0
        assert all(c.isprintable() or c == "\n" for c in out), command
        assert "ü" in out  # readable text stays as it is
        assert evil in json.dumps(json.loads(out), ensure_ascii=False)
