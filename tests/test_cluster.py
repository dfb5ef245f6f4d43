"""paracache on a real Redis Cluster (3 primaries + 3 replicas, RediSearch without a
coordinator: each shard indexes its own keys): construction, both layers, administration
and the command line, against the same cache on one server."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections import Counter
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from paracache import Scope, SemanticIndex
from paracache.cli import main
from paracache.embedded import EmbeddedCluster
from paracache.shards import index_base

ACME = Scope(model="gpt-4o-mini", tenant="acme")
GLOBEX = Scope(model="gpt-4o-mini", tenant="globex")

FAQ = [
    ("What's your refund policy?", "Refunds within 30 days."),
    ("How do I reset my password?", "Use the forgot-password link."),
    ("Where is my parcel?", "Track it under Orders."),
    ("Can I pay with PayPal?", "Yes, PayPal is accepted."),
    ("How do I close my account?", "Settings, then Close account."),
    ("Do you ship to Canada?", "Yes, in 5-7 days."),
    ("How can I change my delivery address?", "Edit it under Orders before dispatch."),
    ("Why was my card declined?", "Your bank refused the payment."),
    ("How long does a bank transfer take?", "One to two working days."),
    ("Can I cancel my subscription?", "Yes, any time from Billing."),
    ("Is there a student discount?", "Yes, 20 % with a student card."),
    ("How do I contact customer support?", "Chat with us in the app."),
]
PARAPHRASES = {
    "What's your refund policy?": "what is your refund policy",
    "How do I reset my password?": "how can I reset my password",
    "Can I pay with PayPal?": "can i pay using paypal",
    "How do I close my account?": "how can I close my account",
    "Do you ship to Canada?": "do you ship to canada at all",
    "How long does a bank transfer take?": "how long do bank transfers take",
    "Can I cancel my subscription?": "can I cancel my subscription please",
    "How do I contact customer support?": "how can I contact customer support",
}


def _owners(client: RedisCluster, keys: list[str]) -> Counter[str]:
    """How many of ``keys`` each primary owns."""
    slots = client.nodes_manager.slots_cache
    return Counter(slots[key_slot(k.encode())][0].name for k in keys)


def test_the_cluster_is_real(redis_cluster: EmbeddedCluster) -> None:
    primaries = redis_cluster.primary_ports()
    assert len(primaries) == 3 and len(redis_cluster.nodes) == 6
    for port in primaries:
        assert len(redis_cluster.replica_ports(port)) == 1
    for node in redis_cluster.nodes:
        plain = redis.Redis(host="127.0.0.1", port=node.port, password=redis_cluster.password)
        info = plain.execute_command("CLUSTER", "INFO")
        assert b"cluster_state:ok" in info if isinstance(info, bytes) else info["cluster_state"]
        assert b"search" in {m[b"name"] for m in plain.execute_command("MODULE", "LIST")}
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            # no retries: redis-py's default retries an authentication error for ~4 s
            redis.Redis(host="127.0.0.1", port=node.port, retry=Retry(NoBackoff(), 0)).ping()
        plain.close()


def test_without_a_coordinator_each_primary_gets_its_own_index(
    make_cluster_index: Any, redis_cluster: EmbeddedCluster
) -> None:
    # Before: RedisClusterException "Missing key. Command: FT._LIST" at construction.
    idx: SemanticIndex = make_cluster_index()
    client = idx._client
    assert isinstance(client, RedisCluster)
    assert idx.count() == 0
    for node in client.get_primaries():
        names = [n.decode() for n in node.redis_connection.execute_command("FT._LIST")]
        own = [n for n in names if index_base(n) == idx.layout.index_name]
        assert len(own) == 1, names
        # The name's hash tag puts it in a slot this primary owns (else: MOVED).
        assert client.nodes_manager.slots_cache[key_slot(own[0].encode())][0].name == node.name
    transport = idx._shards
    assert transport is not None
    assert transport.coordinator is False
    assert idx.layout.index_name.encode() in transport.execute(("FT._LIST",))


def test_both_layers_serve_entries_of_every_shard(make_cluster_index: Any) -> None:
    idx: SemanticIndex = make_cluster_index()
    ids = [idx.store(q, a, ACME, tokens=10) for q, a in FAQ]
    assert all(ids)
    keys = [idx.layout.key(i or "") for i in ids]
    assert len(_owners(idx._client, keys)) == 3  # the entries are spread over all shards
    assert idx.count() == len(FAQ)
    for question, answer in FAQ:
        hit = idx.lookup(question, ACME)
        assert hit is not None and hit.layer == "exact" and hit.response == answer
        assert idx.lookup(question, GLOBEX) is None  # another tenant: never
    served = 0
    for question, paraphrase in PARAPHRASES.items():
        hit = idx.lookup(paraphrase, ACME)
        if hit is not None:
            assert hit.layer == "semantic" and hit.prompt == question
            served += 1
        assert idx.lookup(paraphrase, GLOBEX) is None
    assert served >= len(PARAPHRASES) - 1
    stats = idx.stats()
    assert stats.errors == 0 and stats.semantic_hits == served


@pytest.mark.parametrize("url", [False, True], ids=["callers-client", "own-clients"])
def test_knn_merged_over_shards_equals_one_server(
    make_cluster_index: Any, make_index: Any, url: bool
) -> None:
    """The same entries on one server and on the cluster: every lookup's verdict (the
    hit, its similarity, the best candidate) is the same, whether the shards are asked
    through the caller's cluster pipeline or on paracache's own connection to each."""
    on_cluster: SemanticIndex = make_cluster_index(url=url, track_hits=False)
    on_server: SemanticIndex = make_index(track_hits=False)
    for idx in (on_cluster, on_server):
        idx.warm(FAQ, ACME, progress=False)
        idx.warm(FAQ[:6], GLOBEX, progress=False)
    asks = [*PARAPHRASES.values(), "how do refunds work", "is shipping to canada possible",
            "what about student prices", "my card got declined, why", "hello there"]  # fmt: skip
    for ask in asks:
        for scope in (ACME, GLOBEX):
            a = on_cluster.lookup_verdict(ask, scope, min_similarity=0.6)
            b = on_server.lookup_verdict(ask, scope, min_similarity=0.6)
            assert (a.outcome, a.hit and a.hit.entry_id) == (b.outcome, b.hit and b.hit.entry_id)
            assert a.similarity == pytest.approx(b.similarity, abs=1e-6)


def _own_connections(idx: SemanticIndex, node: Any) -> list[int]:
    """The ids of ``idx``'s connections on ``node`` (its clients carry the namespace)."""
    listed = node.redis_connection.execute_command("CLIENT", "LIST")
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    name = f"name=paracache:{idx.namespace} "
    return [int(line.split()[0][3:]) for line in text.splitlines() if name in line + " "]


def test_a_shard_connection_dropped_costs_one_lookup_its_shard(make_cluster_index: Any) -> None:
    """paracache's own connections to the shards (one per thread and node): the server
    dropping them on one primary costs the next lookup that shard's candidates only (the
    others still serve, nothing raises), and the lookup after it reconnects."""
    idx: SemanticIndex = make_cluster_index(url=True, exact=False)
    ids = {q: idx.store(q, a, ACME) for q, a in FAQ}
    owner = _owners(idx._client, [idx.layout.key(ids[q] or "") for q in PARAPHRASES])
    served = {q for q, p in PARAPHRASES.items() if idx.lookup(p, ACME) is not None}
    assert len(served) >= len(PARAPHRASES) - 1
    slots = idx._client.nodes_manager.slots_cache

    def home(question: str) -> str:
        return str(slots[key_slot(idx.layout.key(ids[question] or "").encode())][0].name)

    victim = next(n for n in idx._client.get_primaries() if n.name in owner)
    elsewhere = next(q for q in served if home(q) != victim.name)
    there = [q for q in served if home(q) == victim.name]
    killed = _own_connections(idx, victim)
    assert killed  # the lookups above opened one
    for client_id in killed:
        victim.redis_connection.execute_command("CLIENT", "KILL", "ID", client_id)
    hit = idx.lookup(PARAPHRASES[elsewhere], ACME)  # the dead connection fails in it
    assert hit is not None and hit.prompt == elsewhere
    again = {q for q, p in PARAPHRASES.items() if idx.lookup(p, ACME) is not None}
    assert again == served and set(there) <= again
    assert idx.stats().errors == 0


def test_a_flushed_shard_script_is_loaded_again(make_cluster_index: Any) -> None:
    idx: SemanticIndex = make_cluster_index(url=True, exact=False)
    idx.warm(FAQ, ACME, progress=False)
    assert idx.lookup(PARAPHRASES["Can I pay with PayPal?"], ACME) is not None
    for node in idx._client.get_primaries():
        node.redis_connection.execute_command("SCRIPT", "FLUSH")
    hit = idx.lookup(PARAPHRASES["Do you ship to Canada?"], ACME)
    assert hit is not None and hit.prompt == "Do you ship to Canada?"
    assert idx.stats().errors == 0


def test_close_releases_the_shard_connections(redis_cluster: EmbeddedCluster) -> None:
    idx = SemanticIndex(redis_cluster.url, namespace="closing", timeout=10.0, exact=False)
    idx.warm(FAQ[:3], ACME, progress=False)
    assert idx.lookup(FAQ[0][0], ACME) is not None
    nodes = idx._client.get_primaries()
    assert all(_own_connections(idx, node) for node in nodes)
    watcher = redis_cluster.client(socket_timeout=2.0)
    idx.clear()
    idx.close()
    left = [1]
    for _ in range(100):  # the server notices closed sockets a moment later
        left = [i for n in watcher.get_primaries() for i in _own_connections(idx, n)]
        if not left:
            break
        time.sleep(0.05)
    assert left == []
    watcher.close()


def test_a_hit_is_counted_on_the_owning_shard_only(make_cluster_index: Any) -> None:
    idx: SemanticIndex = make_cluster_index()
    idx.warm(FAQ, ACME, progress=False)
    hit = idx.lookup("how can I reset my password", ACME)
    assert hit is not None and hit.layer == "semantic"
    counts = {e.prompt: e.hit_count for e in idx.entries(50)}
    assert counts.pop("How do I reset my password?") == 1
    assert set(counts.values()) == {0}
    again = idx.lookup("how can I reset my password", ACME)
    assert again is not None and again.hit_count == 1  # the count before this hit


def test_administration_spans_every_shard(make_cluster_index: Any) -> None:
    idx: SemanticIndex = make_cluster_index()
    idx.warm(FAQ, ACME, progress=False)
    idx.warm(FAQ[:5], GLOBEX, progress=False)
    assert idx.count() == len(FAQ) + 5
    listed = idx.entries(100)
    assert len(listed) == len(FAQ) + 5
    assert [e.created_at for e in listed] == sorted((e.created_at for e in listed), reverse=True)
    assert {e.scope.get("tenant") for e in listed} == {"acme", "globex"}
    assert len(idx.entries(3)) == 3
    report = idx.repair(dry_run=True)
    assert report.valid == len(FAQ) + 5 and report.invalid == 0
    # A torn entry on some shard: found and deleted by repair.
    torn = idx.layout.key("0" * 32)
    idx._client.hset(torn, mapping={"prompt": "half an entry"})
    assert idx.repair().deleted == 1 and not idx._client.exists(torn)
    assert idx.clear(tenant="globex") == 5
    assert idx.count() == len(FAQ)
    assert idx.lookup(FAQ[0][0], GLOBEX) is None and idx.lookup(FAQ[0][0], ACME) is not None
    assert idx.clear() == len(FAQ)  # SCAN on every primary
    assert idx.count() == 0
    pattern = f"paracache:{idx.namespace}:*"
    nodes = idx._client.get_primaries()
    assert [k for n in nodes for k in n.redis_connection.scan_iter(match=pattern)] == []


def test_reembed_drop_old_drops_the_old_index_on_every_shard(make_cluster_index: Any) -> None:
    # Before: every entry was copied and the old entries deleted, then ReembedError
    # "FT.DROPINDEX is not supported on a cluster", on every run again: the old index
    # (one per primary) could not be dropped through paracache at all.
    old: SemanticIndex = make_cluster_index()
    old.warm(FAQ, ACME, progress=False)
    new: SemanticIndex = make_cluster_index(dtype="float32")  # another index, same namespace
    report = new.reembed(from_model=old.layout.index_name, progress=False, drop_old=True)
    assert report.copied == len(FAQ) and report.dropped == len(FAQ)
    for node in new._client.get_primaries():
        names = [n.decode() for n in node.redis_connection.execute_command("FT._LIST")]
        ours = [index_base(n) for n in names if n.startswith(f"paracache:{new.namespace}:")]
        assert ours == [new.layout.index_name], names
    assert new.count() == len(FAQ)
    hit = new.lookup(PARAPHRASES[FAQ[0][0]], ACME)
    assert hit is not None and hit.response == FAQ[0][1]


def test_max_entries_trims_across_shards(make_cluster_index: Any) -> None:
    idx: SemanticIndex = make_cluster_index(max_entries=5)
    assert idx.warm(FAQ, ACME, progress=False) == len(FAQ)  # warm trims at its end
    assert idx.count() == 5
    kept = [e.created_at for e in idx.entries(10)]
    assert len(kept) == 5 and idx.trim() == 0
    assert max(kept) >= max(e.created_at for e in idx.entries(10))


def test_a_cluster_url_is_detected(make_cluster_index: Any, redis_cluster: EmbeddedCluster) -> None:
    by_url: SemanticIndex = make_cluster_index(url=True)
    assert isinstance(by_url._client, RedisCluster)
    by_client: SemanticIndex = make_cluster_index()
    by_client.warm(FAQ, ACME, progress=False)
    assert by_url.count() == len(FAQ)  # the same index, found on every shard
    hit = by_url.lookup("can i pay using paypal", ACME)
    assert hit is not None and hit.response == "Yes, PayPal is accepted."


def test_async_twins_on_a_cluster(make_cluster_index: Any) -> None:
    for idx in (make_cluster_index(), make_cluster_index(url=True)):

        async def run(idx: SemanticIndex = idx) -> None:
            for q, a in FAQ:
                assert await idx.astore(q, a, ACME) is not None
            assert await idx.acount() == len(FAQ)
            hits = await asyncio.gather(
                *(idx.alookup(p, ACME) for p in PARAPHRASES.values()),
                *(idx.alookup(p, GLOBEX) for p in PARAPHRASES.values()),
            )
            ours, theirs = hits[: len(PARAPHRASES)], hits[len(PARAPHRASES) :]
            assert sum(h is not None for h in ours) >= len(PARAPHRASES) - 1
            assert all(h is None for h in theirs)
            assert len(await idx.aentries(50)) == len(FAQ)
            assert await idx.aclear(tenant="acme") == len(FAQ)
            assert await idx.acount() == 0
            await idx.aclose()

        asyncio.run(run())
        assert idx.stats().errors == 0


def test_the_cli_on_a_cluster_url(
    make_cluster_index: Any, redis_cluster: EmbeddedCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    idx: SemanticIndex = make_cluster_index()
    idx.warm(FAQ, ACME, progress=False, tokens=7)
    idx.warm(FAQ[:3], GLOBEX, progress=False)
    assert idx.lookup(FAQ[1][0], ACME) is not None
    assert idx.flush_hits() == 1  # one script per entry: a cluster's keys span slots
    url = redis_cluster.node_url(redis_cluster.primary_ports()[-1])  # any node will do
    base = ["--redis-url", url]
    assert main(["stats", *base, "--namespace", idx.namespace, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ((summary,),) = [ns["indexes"] for ns in out["namespaces"]]
    assert summary["entries"] == len(FAQ) + 3
    assert summary["hits"] == 1 and summary["tokens"] == 7 * len(FAQ)
    tenants = {row["tenant"]: row["entries"] for row in summary["by_tenant"]}
    assert tenants == {"acme": len(FAQ), "globex": 3}
    assert main(["inspect", *base, "--namespace", idx.namespace, "--limit", "50", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(FAQ) + 3
    code = main(["clear", *base, "--namespace", idx.namespace, "--tenant", "globex", "--yes"])
    assert code == 0 and idx.count() == len(FAQ)
    capsys.readouterr()


def test_keys_route_by_key_not_by_namespace(make_cluster_index: Any) -> None:
    """No hash tag on the namespace: one cache spreads over every shard."""
    idx: SemanticIndex = make_cluster_index(semantic=False)
    ids = [idx.store(f"question number {i}", "a", ACME) for i in range(60)]
    owners = _owners(idx._client, [idx.layout.key(i or "") for i in ids])
    assert len(owners) == 3 and min(owners.values()) >= 5
    assert "{" not in idx.layout.key("x")
    assert list(itertools.islice(owners, 3))


def test_a_node_whose_bus_port_was_taken_starts_on_another() -> None:
    # Ports are free when chosen, not always when the node binds them (before: the node
    # retried new client ports with the same taken bus port, and the cluster failed).
    cluster = EmbeddedCluster(primaries=1, replicas=0)
    taken = cluster._bus_ports[0]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with cluster:
            assert cluster._bus_ports[0] != taken
            assert cluster.client(socket_timeout=2.0).set("k", "v")


def test_rate_limits_and_conversations_on_a_cluster_say_it_is_not_supported(
    redis_cluster: EmbeddedCluster, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """README: rate limits and conversations need one Redis server. Given a cluster
    client, the TypeError says why; given a node's URL, a key of another node's slot is
    a fail-open miss whose warning says the server is a cluster node (it only showed
    redis-py's bare MOVED reply, '13921 127.0.0.1:40125')."""
    from paracache.limiter import Limit, RateLimiter
    from paracache.sessions import SessionStore

    client = redis_cluster.client()
    try:
        for build in (
            lambda: SessionStore(redis_client=client, namespace=namespace),
            lambda: RateLimiter([Limit("a", 5)], redis_client=client, namespace=namespace),
        ):
            with pytest.raises(TypeError, match="Redis Cluster is not supported"):
                build()
    finally:
        client.close()

    probe = SessionStore(redis_url="redis://127.0.0.1:1", namespace=namespace, tenant="t")
    key = probe._ids("s1")[1]
    probe.close()
    owner = redis_cluster.owner_port(key_slot(key.encode()))
    other = next(p for p in redis_cluster.primary_ports() if p != owner)
    store = SessionStore(
        redis_url=redis_cluster.node_url(other), namespace=namespace, tenant="t", timeout=10
    )
    try:
        with caplog.at_level("WARNING", logger="paracache"):
            assert store.append("s1", [{"type": "human", "data": {"content": "hi"}}], [1]) is False
        assert store.stats().errors == 1
        assert any("Redis Cluster node" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_the_error_bound_on_a_cluster_is_refused_at_construction(
    make_cluster_index: Any,
) -> None:
    """README: max_error_rate is not for Redis Cluster yet. It was accepted, and then
    every label failed in the worker ('label worker failed: server:RedisClusterException'
    logged again and again, nothing counted, no error in stats()): the threshold was
    never learned. Now the cache says so when it is built, from a client or a URL."""
    for url in (False, True):
        with pytest.raises(ValueError, match="does not support Redis Cluster"):
            make_cluster_index(max_error_rate=0.02, url=url)
    assert make_cluster_index(url=True).learner is None  # a fixed threshold still works


def test_serve_with_the_error_bound_on_a_cluster_is_a_usage_error(
    redis_cluster: EmbeddedCluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--redis-url", redis_cluster.url, "--namespace", namespace,
            "--max-error-rate", "0.02", "--simulate"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "paracache serve: max_error_rate= needs one Redis server" in err
    assert "Traceback" not in err
    # Its label worker likewise (it logged a RedisClusterException per batch).
    argv = ["worker", "--redis-url", redis_cluster.url, "--namespace", namespace, "--once"]
    assert main(argv) == 2
    assert "does not support Redis Cluster yet" in capsys.readouterr().err
