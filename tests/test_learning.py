"""The error bound at work against the real embedded Redis and the real embedder:
labels through the Redis stream and its consumer group, statistics in Redis, learned
thresholds, exploration, fail-open. Only the LLM is fake."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from paracache import Scope, SemanticIndex
from paracache.langchain import SemanticCache
from paracache.learning import GROUP, LabelWorker, stream_key
from paracache.llama_index import CachedLLM

STORED = "How do I activate my new card?"
NEAR = "how can I activate my card"  # 0.93 to STORED
SCOPE = Scope(model="m", params={"temperature": 0})


def _client(index: SemanticIndex) -> redis.Redis:
    return redis.Redis.from_url(index.redis_url)


def _stats(index: SemanticIndex, scope: Scope = SCOPE) -> dict[bytes, bytes]:
    assert index.learner is not None
    key = index.learner.stats_key(scope.digest())
    return _client(index).hgetall(key)  # type: ignore[return-value]


def _near_miss(index: SemanticIndex, fresh: str, scope: Scope = SCOPE) -> None:
    """A lookup below the threshold, then the fresh answer arriving through store."""
    verdict = index.lookup_verdict(NEAR, scope)
    assert verdict.outcome == "miss", verdict.reason
    index.store(NEAR, fresh, scope)
    assert index.learner is not None and index.learner.wait_idle(30)


def test_bad_max_error_rate_fails_at_construction(make_index: Any) -> None:
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="max_error_rate"):
            make_index(max_error_rate=bad)
    with pytest.raises(TypeError):
        make_index(max_error_rate="0.02")
    with pytest.raises(TypeError):
        make_index(max_error_rate=0.02, judge=42)
    with pytest.raises(ValueError):
        make_index(judge=lambda a, b: True)  # a judge without a bound
    for flag in ("no", 0, None):  # read as True or False before: a worker or none
        with pytest.raises(TypeError, match="label_worker must be a bool"):
            make_index(max_error_rate=0.02, label_worker=flag)
    with pytest.raises(ValueError):
        SemanticCache(max_error_rate=2.0)


def test_static_mode_has_no_learner(index: SemanticIndex) -> None:
    assert index.learner is None and index.core.learner is None
    assert index.stats().learning == {}


def test_a_miss_is_labelled_right_through_the_stream(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    _near_miss(index, "open the app and tap activate")  # same after normalisation
    record = _stats(index)
    assert record[b"n93"] == b"1" and b"w93" not in record
    assert int(record[b"N"]) >= 1 and record[b"t93"] == b"1"
    learning = index.stats().learning
    assert learning["labels"] == 1 and learning["wrong"] == 0
    # Acknowledged: nothing pending in the consumer group.
    info = _client(index).xinfo_groups(stream_key(index.namespace))
    assert [g["pending"] for g in info if g["name"] == GROUP.encode()] == [0]


def test_a_wrong_label_marks_the_entry_and_vetoes_it(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    entry = index.store(STORED, "Open the app and tap Activate.", SCOPE)
    _near_miss(index, "Call us to activate it.")
    record = _stats(index)
    assert record[b"n93"] == b"1" and record[b"w93"] == b"1"
    fields = _client(index).hgetall(index.layout.key(entry))
    assert float(fields[b"lw"]) == pytest.approx(0.93, abs=0.01)
    # At a looser threshold the entry would be served at 0.93, but it was judged wrong
    # there: the veto refuses it (counted as a rejection).
    assert index.delete(index.core.prepare_lookup(NEAR, SCOPE).entry_id)
    verdict = index.lookup_verdict(NEAR, SCOPE, min_similarity=0.8)
    assert verdict.outcome != "semantic"
    assert index.stats().rejections_by_reason.get("labelled_wrong") == 1


def test_learned_threshold_from_statistics_in_redis(make_index: Any) -> None:
    index = make_index(max_error_rate=0.05, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"  # cold: static 0.99
    # Statistics as another process's worker would have counted them: candidates at
    # 0.90-0.99 right every time, at 0.85 often wrong.
    key = index.learner.stats_key(SCOPE.digest())
    fields: dict[str, int | str] = {"v": "1", "N": 1000}
    for b in range(90, 100):
        fields[f"n{b}"] = 40
        fields[f"t{b}"] = 60
    fields.update({"n85": 40, "w85": 20, "t85": 60})
    _client(index).hset(key, mapping=fields)
    index.learner.refresh(force=True)
    verdict = index.lookup_verdict(NEAR, SCOPE)
    assert verdict.outcome in ("semantic", "miss")
    assert index.stats().learning["thresholds"][SCOPE.digest()] <= 0.93
    hits = sum(index.lookup_verdict(NEAR, SCOPE).outcome == "semantic" for _ in range(20))
    assert hits >= 10  # served (a few explored: at most 10 % by default)
    # Another tenant's scope has no statistics: it stays on the static rules.
    other = SCOPE.replace(tenant="globex")
    index.store(STORED, "Open the app and tap Activate.", other)
    assert index.lookup_verdict(NEAR, other).outcome == "miss"
    index.learner.refresh(force=True)
    assert other.digest() not in index.stats().learning["thresholds"]


def test_a_forced_refresh_is_not_undone_by_an_older_read(make_index: Any) -> None:
    """A refresh that read the statistics before they changed (the background thread's)
    must not decide after a forced refresh that read them afterwards."""
    index = make_index(max_error_rate=0.05, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"  # the scope is seen
    learner = index.learner
    assert learner is not None
    read, release = threading.Event(), threading.Event()
    decide = learner._decide

    def held_decide(stats_key: str, record: Any) -> None:
        if threading.current_thread() is older:
            read.set()  # it has read the record as it was: no statistics yet
            release.wait(10)
        decide(stats_key, record)

    learner._decide = held_decide  # type: ignore[method-assign]
    older = threading.Thread(target=learner.refresh, kwargs={"force": True})
    older.start()
    assert read.wait(10)
    fields: dict[str, int | str] = {"v": "1", "N": 1000}
    for b in range(90, 100):
        fields[f"n{b}"] = 40
        fields[f"t{b}"] = 60
    _client(index).hset(learner.stats_key(SCOPE.digest()), mapping=fields)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    learner.refresh(force=True)
    older.join(10)
    timer.join(10)
    assert not older.is_alive()
    assert index.stats().learning["thresholds"].get(SCOPE.digest(), 1.0) <= 0.93


def test_corrupt_statistics_serve_no_semantic_hit(make_index: Any, caplog: Any) -> None:
    # No exploration: a sampled exploration would turn the first hit into a miss.
    index = make_index(max_error_rate=0.05, min_similarity=0.8, explore_rate=0.0)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "semantic"
    key = index.learner.stats_key(SCOPE.digest())
    _client(index).hset(key, mapping={"v": "1", "N": "lots", "n93": "1"})
    index.learner.refresh(force=True)
    verdict = index.lookup_verdict(NEAR, SCOPE)
    assert verdict.outcome == "miss"
    assert index.stats().errors_by_kind.get("stats_corrupt", 0) >= 1
    assert index.lookup_verdict(STORED, SCOPE).outcome == "exact"  # exact layer still serves
    # A record that is not even a hash: the same.
    _client(index).delete(key)
    _client(index).set(key, "garbage")
    index.learner.refresh(force=True)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    # The worker replaces it on its next label: the scope starts cold again.
    index.store(NEAR, "Open the app and tap Activate.", SCOPE)
    assert index.learner.wait_idle(30)
    assert _client(index).type(key) in (b"hash", b"none")


def test_wait_idle_waits_for_outcomes_already_acknowledged(make_index: Any) -> None:
    """The worker acknowledges a label before it counts it: waiting for an empty consumer
    group alone returned before the count (a rare failure of the tests below)."""
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    learner, worker = index.learner, index.learner.worker
    assert worker is not None and worker.on_label is not None
    report = worker.on_label

    def slow_report(wrong: bool | None, kind: str, explored: bool) -> None:
        time.sleep(0.3)  # acknowledged, not yet counted
        report(wrong, kind, explored)

    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert learner.wait_idle(30)  # the lookup's counts: the label below comes alone
    worker.on_label = slow_report
    index.store(NEAR, "open the app and tap activate", SCOPE)
    assert learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] == 1 and learning["wrong"] == 0
    assert not worker.busy


@pytest.mark.parametrize("kind", ["raises", "hangs", "not_bool"])
def test_a_failing_judge_drops_the_label_and_is_counted(make_index: Any, kind: str) -> None:
    release = threading.Event()

    def judge(cached: str, fresh: str) -> bool:
        if kind == "raises":
            raise RuntimeError("judge down")
        if kind == "hangs":
            release.wait(10)
        return "yes"  # type: ignore[return-value]

    index = make_index(max_error_rate=0.02, min_similarity=0.99, judge=judge, judge_timeout=0.2)
    try:
        index.store(STORED, "Open the app and tap Activate.", SCOPE)
        started = time.perf_counter()
        _near_miss(index, "Open the app.")
        assert time.perf_counter() - started < 20
        learning = index.stats().learning
        assert learning["labels"] == 0 and learning["judge_failures"] == 1
        errors = index.stats().errors_by_kind
        assert errors.get("judge_timeout" if kind == "hangs" else "judge_error") == 1
        assert b"n93" not in _stats(index)
    finally:
        release.set()


def test_a_judge_answering_with_numpys_bool_is_heard(make_index: Any) -> None:
    """A judge comparing two scores with numpy (``np.float32(a) > b``) returns numpy's
    bool: a yes or no like any other, not a failed judge whose label is dropped."""
    import numpy as np

    def judge(cached: str, fresh: str) -> bool:
        return np.float32(0.4) > 0.9  # type: ignore[return-value]  # a numpy "no"

    index = make_index(max_error_rate=0.02, min_similarity=0.99, judge=judge)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    _near_miss(index, "Call us.")
    assert index.learner is not None and index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["judge_failures"] == 0
    assert learning["labels"] == 1 and learning["wrong"] == 1


def test_a_killed_worker_loses_no_label(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99, label_worker=False)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    index.store(NEAR, "Open the app and tap Activate.", SCOPE)
    assert index.learner.wait_idle(30)  # sent (no worker in this process counts it)
    client = _client(index)
    stream = stream_key(index.namespace)
    assert client.xlen(stream) >= 1
    # A worker reads the messages and dies before counting them.
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    read = client.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=100)
    assert read and read[0][1]
    assert b"n93" not in _stats(index)
    # Another worker claims them once idle and counts each exactly once.
    survivor = LabelWorker(client, index.namespace, claim_idle_ms=1)
    time.sleep(0.01)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and b"n93" not in _stats(index):
        survivor.run_once(block_ms=10)
    assert _stats(index)[b"n93"] == b"1"
    for _ in range(3):
        survivor.run_once(block_ms=10)
    assert _stats(index)[b"n93"] == b"1"
    info = client.xinfo_groups(stream)
    assert [g["pending"] for g in info if g["name"] == GROUP.encode()] == [0]


def test_exploration_turns_some_hits_into_labelled_misses(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.8, explore_rate=0.5)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    outcomes = [index.lookup_verdict(NEAR, SCOPE) for _ in range(40)]
    explored = [v for v in outcomes if v.reason.startswith("explored")]
    assert explored and len(explored) < 40
    assert all(v.outcome == "miss" for v in explored)
    assert index.stats().learning["explorations"] == len(explored)
    index.store(NEAR, "Open the app and tap Activate.", SCOPE)
    assert index.learner.wait_idle(30)
    record = _stats(index)
    assert record[b"xn"] == b"1" and b"xw" not in record


def test_a_label_at_a_similarity_just_above_one_is_counted(make_index: Any) -> None:
    """float16 vectors put a cosine distance a hair below 0, so a would-be hit on the same
    embedded text can come back at 1.000005. Its label is the most telling one (a
    different answer to the same question), and the worker dropped it as malformed."""
    index = make_index(max_error_rate=0.02, min_similarity=0.8, explore_rate=0.5)
    stored, asked = "How do I close my account?", "Hi, how do I close my account thanks"
    index.store(stored, "Open Settings and tap Close account.", SCOPE)
    for _ in range(40):
        verdict = index.lookup_verdict(asked, SCOPE)
        if verdict.reason.startswith("explored"):
            break
    assert verdict.reason.startswith("explored"), verdict.reason
    assert verdict.similarity is not None and verdict.similarity > 1.0  # the case itself
    index.store(asked, "Write to support.", SCOPE)  # another answer: a wrong label
    assert index.learner is not None and index.learner.wait_idle(30)
    record = _stats(index)
    assert record.get(b"n99") == b"1" and record.get(b"w99") == b"1"
    assert record.get(b"xn") == b"1" and record.get(b"xw") == b"1"
    learning = index.stats().learning
    assert learning["labels"] == 1 and learning["dropped"] == 0
    assert "learn_message" not in index.stats().errors_by_kind
    entry = _client(index).hgetall(index.core.prepare_lookup(stored, SCOPE).key)
    assert float(entry[b"lw"]) == 1.0  # the veto's mark, at most 1


def test_the_worker_counts_an_older_applications_label_above_one(make_index: Any) -> None:
    """Applications before the clamp sent float16's 1.00006 as it was: counted (as 1),
    not dropped as malformed; a similarity clearly out of range still is dropped."""
    index = make_index(max_error_rate=0.02, label_worker=False)
    client = _client(index)
    stream = stream_key(index.namespace)
    stats_key = index.learner.stats_key(SCOPE.digest())
    for sim in ("1.000061", "1.5"):
        client.xadd(stream, {"kind": "label", "sk": stats_key, "ek": "", "sim": sim,
                             "x": "0", "cached": "a", "fresh": "a"})  # fmt: skip
    outcomes: list[tuple[bool | None, str]] = []
    worker = LabelWorker(client, index.namespace, on_label=lambda w, k, x: outcomes.append((w, k)))
    while worker.run_once(block_ms=10):
        pass
    assert outcomes == [(False, "label"), (None, "learn_message")]
    assert _stats(index)[b"n99"] == b"1"


def test_sampled_scopes_are_not_labelled_by_the_exact_judge(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    hot = Scope(model="m", params={"temperature": 0.7})
    index.store(STORED, "Open the app and tap Activate.", hot)
    assert index.lookup_verdict(NEAR, hot).outcome == "miss"
    index.store(NEAR, "Something else.", hot)
    assert index.learner.wait_idle(30)
    assert _stats(index, hot) == {}
    assert index.stats().learning["labels_skipped"] == 1


def test_tenants_never_share_statistics(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    acme, globex = SCOPE.replace(tenant="acme"), SCOPE.replace(tenant="globex")
    for scope in (acme, globex):
        index.store(STORED, "Open the app and tap Activate.", scope)
    _near_miss(index, "Call us.", acme)
    assert _stats(index, acme)[b"w93"] == b"1"
    assert b"n93" not in _stats(index, globex)


def test_redis_down_is_fail_open(make_index: Any, redis_server: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    # The learner's own connection points at a port nothing listens on.
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    index.learner._client = dead
    index.store(NEAR, "Open the app.", SCOPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        index.stats().learning["dropped"] and index.stats().errors_by_kind.get("learn_queue")
    ):  # the learner counts the drop, then the recorder: wait for both
        index.learner.flush()  # this pass or the background thread's: dropped, counted
    assert index.stats().learning["dropped"] >= 1
    assert index.stats().errors_by_kind.get("learn_queue", 0) >= 1
    index.learner.refresh(force=True)  # keeps the decisions it had
    assert index.lookup_verdict(STORED, SCOPE).outcome == "exact"


def test_langchain_update_labels_the_remembered_candidate(make_index: Any) -> None:
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    cache = SemanticCache(index)
    llm = FakeListChatModel(responses=["Open the app and tap Activate."] * 2, cache=cache)
    llm.invoke(STORED)
    llm.invoke(NEAR)  # a miss below the threshold; the same answer comes back
    assert index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] == 1 and learning["wrong"] == 0
    built = SemanticCache(
        max_error_rate=0.03, redis_url=index.redis_url, namespace=index.namespace
    )
    try:
        assert built.index.learner is not None and built.index.learner.delta == 0.03
    finally:
        built.index.close()


def test_paracache_worker_and_stats_commands(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from paracache.cli import main

    index = make_index(max_error_rate=0.02, min_similarity=0.99, label_worker=False)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    index.store(NEAR, "Call us.", SCOPE)
    assert index.learner.wait_idle(30)
    assert b"n93" not in _stats(index)  # nobody counted it yet
    ns = index.namespace
    code = main(["worker", "--redis-url", redis_url, "--namespace", ns, "--once", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["labels"] == 1
    assert _stats(index)[b"w93"] == b"1"
    code = main(["stats", "--redis-url", redis_url, "--namespace", ns, "--json"])
    data = json.loads(capsys.readouterr().out)
    learning = data["namespaces"][0]["learning"]
    assert learning["labels"] == 1 and learning["wrong"] == 1 and learning["scopes"] == 1
    assert learning["queue"]["pending"] == 0
    code = main(["stats", "--redis-url", redis_url, "--namespace", ns])
    assert code == 0 and "labels    1 (1 wrong)" in capsys.readouterr().out


def test_prometheus_shows_labels_explorations_and_observed_error(make_index: Any) -> None:
    from prometheus_client import REGISTRY

    index = make_index(
        max_error_rate=0.02, min_similarity=0.8, explore_rate=0.5, metrics="prometheus"
    )
    ns = index.namespace
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    explored = 0
    for _ in range(40):
        if index.lookup_verdict(NEAR, SCOPE).reason.startswith("explored"):
            explored += 1
            break
    assert explored
    index.store(NEAR, "Call us.", SCOPE)  # judged wrong: an explored would-be hit
    assert index.learner.wait_idle(30)

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"namespace": ns, **labels}) or 0.0

    assert sample("paracache_learning_events_total", outcome="exploration") >= 1
    assert sample("paracache_learning_events_total", outcome="explored_wrong") == 1
    from paracache.observability import refresh_entries

    assert refresh_entries(index) == 2  # the gauges read from Redis (as on each scrape)
    assert sample("paracache_observed_error_rate", kind="estimate") == 1.0
    assert 0.0 < sample("paracache_observed_error_rate", kind="low") < 1.0
    observed = index.stats().learning["observed_error"]
    assert observed[0] == 1.0 and observed[2] == 1.0


def test_service_labels_misses_with_the_model_answer(make_index: Any) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from paracache.service import AnswerRequest, create_app

    index = make_index(max_error_rate=0.02, min_similarity=0.99)

    def llm(req: AnswerRequest) -> str:
        return "Open the app and tap Activate."

    with TestClient(create_app(index, llm, metrics=False)) as client:
        for prompt in (STORED, NEAR):
            r = client.post("/v1/answer", json={"prompt": prompt, "temperature": 0})
            assert r.status_code == 200 and r.json()["cached"] is False
            assert r.json()["min_similarity"] == 0.99  # cold: the static threshold
    assert index.learner.wait_idle(30)
    assert index.stats().learning["labels"] == 1
    with pytest.raises(ValueError):
        create_app(index, llm, max_error_rate=0.02)


def _verifying(
    make_index: Any, verdict: Any, **options: Any
) -> tuple[SemanticIndex, list[tuple[str, ...]]]:
    asked: list[tuple[str, ...]] = []

    def verifier(question: str, cached_question: str, cached_answer: str) -> bool:
        asked.append((question, cached_question, cached_answer))
        if isinstance(verdict, BaseException):
            raise verdict
        return bool(verdict)

    # corroboration_margin=0: no guard vouches below the threshold, so the near miss
    # at 0.93 is a miss for the verifier to see.
    index = make_index(max_error_rate=0.02, min_similarity=0.95, explore_rate=0,
                       corroboration_margin=0, verifier=verifier, **options)  # fmt: skip
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    return index, asked


def test_an_approved_near_miss_is_promoted_and_served_next_time(make_index: Any) -> None:
    index, asked = _verifying(make_index, True)
    first = index.lookup_verdict(NEAR, SCOPE)  # 0.93: within 0.05 below 0.95
    assert first.outcome == "miss"
    assert index.learner is not None and index.learner.wait_idle(30)
    assert asked == [(NEAR, STORED, "Open the app and tap Activate.")]
    again = index.lookup_verdict(NEAR, SCOPE)
    assert again.outcome == "exact" and again.hit is not None
    assert again.hit.response == "Open the app and tap Activate."
    # stored as the question, with its own vector: a paraphrase of it finds it too
    assert index.lookup_verdict("How can I activate my card?", SCOPE).outcome in (
        "exact", "semantic")  # fmt: skip
    learning = index.stats().learning
    assert learning["verifications"] == 1 and learning["promoted"] == 1
    # A lookup far below the band is never sent to the verifier.
    index.lookup_verdict("What is the exchange rate for euros?", SCOPE)
    assert index.learner.wait_idle(30) and len(asked) == 1


@pytest.mark.parametrize("verdict", [False, RuntimeError("judge down")])
def test_a_rejected_or_failing_verifier_promotes_nothing(make_index: Any, verdict: Any) -> None:
    index, asked = _verifying(make_index, verdict)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.learner is not None and index.learner.wait_idle(30)
    assert len(asked) == 1
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.learner.wait_idle(30)
    assert len(asked) == 1  # the same near miss is not verified twice
    learning = index.stats().learning
    assert learning["promoted"] == 0
    if verdict is False:
        assert learning["verify_rejected"] == 1
    else:
        assert learning["judge_failures"] == 1


def test_the_applications_own_answer_wins_over_a_promotion(make_index: Any) -> None:
    index, _ = _verifying(make_index, True, label_worker=False)  # a separate worker
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    index.store(NEAR, "Tap Activate in the app.", SCOPE)  # before the job is handled
    assert index.learner is not None and index.learner.wait_idle(30)  # sent
    promoted: list[str] = []
    worker = LabelWorker(
        _client(index), index.namespace, verifier=lambda q, c, a: True,
        on_label=lambda wrong, kind, explored: promoted.append(kind),
    )  # fmt: skip
    while worker.run_once(block_ms=0):
        pass
    assert "verify_unneeded" in promoted
    hit = index.lookup(NEAR, SCOPE)
    assert hit is not None and hit.response == "Tap Activate in the app."


def test_verifier_needs_the_bound_and_a_callable(make_index: Any) -> None:
    with pytest.raises(ValueError, match="max_error_rate"):
        make_index(verifier=lambda q, c, a: True)
    with pytest.raises(TypeError, match="verifier"):
        make_index(max_error_rate=0.02, verifier="yes")
    with pytest.raises(ValueError, match="verify_band"):
        make_index(max_error_rate=0.02, verifier=lambda q, c, a: True, verify_band=0.5)


def test_paracache_worker_verifies_near_misses_with_an_imported_verifier(
    make_index: Any,
    redis_url: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from paracache.cli import main

    (tmp_path / "my_verifiers.py").write_text(
        "asked = []\n"
        "def approve(question, cached_question, cached_answer):\n"
        "    asked.append((question, cached_question, cached_answer))\n"
        "    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # The application queues the near miss; a separate worker verifies it.
    index, _ = _verifying(make_index, False, label_worker=False)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.learner is not None and index.learner.wait_idle(30)  # sent
    ns = index.namespace
    code = main([
        "worker", "--redis-url", redis_url, "--namespace", ns, "--once", "--json",
        "--verifier", "my_verifiers:approve",
    ])  # fmt: skip
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["promoted"] == 1

    import my_verifiers

    assert my_verifiers.asked == [(NEAR, STORED, "Open the app and tap Activate.")]
    again = index.lookup_verdict(NEAR, SCOPE)
    assert again.hit is not None and again.hit.response == "Open the app and tap Activate."


def test_paracache_worker_gives_langchain_answers_as_text_to_the_verifier(
    make_index: Any,
) -> None:
    from paracache.cli import stored_answer_text

    index = make_index(max_error_rate=0.02, min_similarity=0.99, label_worker=False)
    cache = SemanticCache(index)
    model = FakeListChatModel(responses=["Open the app and tap Activate."], cache=cache)
    model.invoke(STORED)
    (entry,) = index.entries()
    raw = _client(index).hget(entry.key, "response")
    assert raw is not None and raw.startswith(b"{")  # LangChain's JSON, as stored
    assert stored_answer_text(raw.decode()) == "Open the app and tap Activate."
    assert stored_answer_text("plain text") == "plain text"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--verifier", "no_such_module_xyz:verify"], "cannot import"),
        (["--verifier", "json:no_such_name"], "has no"),
        (["--verifier", "json:__doc__"], "not callable"),
        (["--verifier", "nonsense"], "expected embedding or module:callable"),
        (["--judge", "nonsense"], "expected exact, embedding or module:callable"),
        (["--judge", "paracache.judge:ExactJudge"], "is a class"),
    ],
)
def test_paracache_worker_rejects_a_bad_verifier_or_judge(
    redis_url: str, option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from paracache.cli import main

    code = main(["worker", "--redis-url", redis_url, "--namespace", "x", "--once", *option])
    assert code == 2 and message in capsys.readouterr().err


def test_paracache_worker_takes_a_judge_by_import_path(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from paracache.cli import main

    index = make_index(max_error_rate=0.02, min_similarity=0.99, label_worker=False)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    index.store(NEAR, "Call us.", SCOPE)  # the exact judge would say wrong
    assert index.learner is not None and index.learner.wait_idle(30)
    code = main([
        "worker", "--redis-url", redis_url, "--namespace", index.namespace, "--once",
        "--json", "--judge", "operator:is_not",  # (cached, fresh) -> True: always right
    ])  # fmt: skip
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out == {**out, "labels": 1, "wrong": 0}
    record = _stats(index)
    assert record[b"n93"] == b"1" and b"w93" not in record


def test_paracache_worker_verifier_by_name_compares_the_questions(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from paracache.cli import main
    from paracache.judge import QuestionVerifier

    strict = QuestionVerifier(min_similarity=0.99)
    assert not strict(NEAR, STORED, "Open the app and tap Activate.")
    assert strict(STORED, STORED, "anything")
    index, _ = _verifying(make_index, False, label_worker=False)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.learner is not None and index.learner.wait_idle(30)
    code = main([
        "worker", "--redis-url", redis_url, "--namespace", index.namespace, "--once",
        "--json", "--verifier", "embedding", "--verifier-similarity", "0.99",
    ])  # fmt: skip
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["promoted"] == 0 and out["verify_rejected"] == 1
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"


def test_seeded_exploration_is_reproducible(make_index: Any) -> None:
    """``Learner.seed_exploration`` (benchmarks, tests): the same seed explores the same
    lookups; production leaves the sampler random."""
    runs = []
    for _ in range(2):
        index = make_index(max_error_rate=0.02, min_similarity=0.8, explore_rate=0.5)
        index.store(STORED, "Open the app and tap Activate.", SCOPE)
        assert index.learner is not None
        index.learner.seed_exploration(7)
        runs.append(
            [index.lookup_verdict(NEAR, SCOPE).reason.startswith("explored") for _ in range(30)]
        )
        index.clear()
    assert runs[0] == runs[1]
    assert 0 < sum(runs[0]) < 30


def _record(stats: Any) -> dict[str, int | str]:
    fields: dict[str, int | str] = {"v": "1", "N": stats.lookups}
    for b, (n, w) in stats.labels.items():
        fields[f"n{b}"] = n
        if w:
            fields[f"w{b}"] = w
    for b, t in stats.traffic.items():
        fields[f"t{b}"] = t
    return fields


def test_learned_threshold_has_hysteresis(make_index: Any) -> None:
    """A scope's first learned threshold comes down from 1.0 only as far as the stricter
    bound allows, and stays there when re-read statistics allow lower at the 95 %
    bound alone; better statistics lower it, again only as far as the stricter bound
    allows."""
    from paracache import bound

    index = make_index(max_error_rate=0.03, min_similarity=0.99)
    assert index.learner is not None
    index.lookup_verdict(NEAR, SCOPE)  # the learner now reads this scope's statistics
    key = index.learner.stats_key(SCOPE.digest())
    client = _client(index)

    def stats_with(empty: int) -> bound.ScopeStats:
        """60 lookups and labels per bin from 0.70 up, wrong 50 % at 0.80 falling to
        none at 0.95, and ``empty`` lookups without a candidate."""
        stats = bound.ScopeStats()
        for b in range(70, 100):
            s = b / 100 + 0.005
            wrong = round(60 * min(1.0, max(0.0, 0.5 * (0.95 - s) / 0.15)))
            for i in range(60):
                stats.add_traffic(s)
                stats.add_label(s, i >= wrong)
        for _ in range(empty):
            stats.add_traffic(None)
        return stats

    def thresholds(stats: bound.ScopeStats) -> tuple[float, float]:
        return (
            bound.learned_threshold(stats, 0.03, 1.0).threshold,
            bound.learned_threshold(stats, 0.03, 1.0, z=bound.Z_LOWER).threshold,
        )

    first, later = stats_with(0), stats_with(500)  # later: more lookups without a candidate
    (loose_1, strict_1), (loose_2, strict_2) = thresholds(first), thresholds(later)
    assert loose_1 < strict_1 and loose_2 < strict_2 < strict_1  # the case it is for

    def learned() -> float:
        assert index.learner is not None
        index.learner.refresh(force=True)
        return float(index.stats().learning["thresholds"][SCOPE.digest()])

    client.hset(key, mapping=_record(first))
    assert learned() == strict_1
    assert learned() == strict_1  # re-read: not lowered to loose_1
    client.hset(key, mapping=_record(later))
    assert learned() == strict_2


def test_traffic_counts_follow_recent_lookups(make_index: Any, monkeypatch: Any) -> None:
    """Past ``TRAFFIC_WINDOW`` lookups a scope's traffic counts are halved (labels are
    not): the shares the bound weighs errors by are those of recent lookups."""
    from paracache import learning

    monkeypatch.setattr(learning, "TRAFFIC_WINDOW", 10)
    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.learner is not None
    _client(index).hset(index.learner.stats_key(SCOPE.digest()), mapping={"v": "1", "n93": 3})
    for _ in range(8):
        assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.learner.wait_idle(30)
    record = _stats(index)
    assert record[b"N"] == b"8" and record[b"t93"] == b"8"
    for _ in range(4):
        index.lookup_verdict(NEAR, SCOPE)
    assert index.learner.wait_idle(30)
    record = _stats(index)
    # 12 lookups passed the window of 10: halved to 6; the labels are kept whole.
    assert record[b"N"] == b"6" and record[b"t93"] == b"6"
    assert record[b"n93"] == b"3"


def test_paracache_stats_reports_a_label_queue_that_is_not_a_stream(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage at the label queue's key: `paracache stats` said nothing but a traceback
    (WRONGTYPE from XLEN); now it reports the rest and says the queue is unreadable."""
    from paracache.cli import main

    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.learner is not None and index.learner.wait_idle(30)  # counted: 1 scope
    client = _client(index)
    client.delete(stream_key(index.namespace))
    client.set(stream_key(index.namespace), "garbage")
    ns = index.namespace
    assert main(["stats", "--redis-url", redis_url, "--namespace", ns]) == 0
    out = capsys.readouterr().out
    assert "lookups counted" in out and "queue     unreadable" in out
    assert main(["stats", "--redis-url", redis_url, "--namespace", ns, "--json"]) == 0
    learning = json.loads(capsys.readouterr().out)["namespaces"][0]["learning"]
    assert learning["scopes"] == 1 and learning["queue"] == {"length": 0, "unreadable": True}


def test_paracache_worker_outlives_a_redis_restart() -> None:
    """`paracache worker` runs apart for good: when its Redis restarts (or drops the
    connection) it says so and retries. Before, it died with a ConnectionError
    traceback, and labels piled up until someone restarted it."""
    import os
    import subprocess
    import sys

    from paracache.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()
    ns = "t-restart"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "paracache", "worker", "--redis-url", server.url,
         "--namespace", ns],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    index = None
    try:
        assert worker.stderr is not None
        assert "paracache worker" in worker.stderr.readline()  # it runs
        server.kill()
        time.sleep(3.0)
        assert worker.poll() is None, worker.stderr.read()
        server.start()
        index = SemanticIndex(server.url, namespace=ns, max_error_rate=0.02,
                              min_similarity=0.99, label_worker=False)  # fmt: skip
        index.store(STORED, "Open the app and tap Activate.", SCOPE)
        assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
        index.store(NEAR, "Call us.", SCOPE)
        assert index.learner is not None and index.learner.wait_idle(60)  # sent
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"w93" not in _stats(index):
            time.sleep(0.1)
        assert _stats(index)[b"w93"] == b"1"  # counted by the worker after the restart
        assert worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(10)
        if index is not None:
            index.close()
        server.stop()


def test_a_judge_timeout_that_is_not_finite_fails_at_construction(
    make_index: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``judge_timeout=nan`` or ``inf`` was accepted: then every label whose judge took any
    time was dropped, as "judge took more than nans" or as "judge raised OverflowError"."""
    from paracache.cli import main

    for bad in (float("nan"), float("inf"), -1.0, 0):
        with pytest.raises(ValueError, match="judge_timeout"):
            make_index(max_error_rate=0.02, judge_timeout=bad)
        with pytest.raises(ValueError, match="judge_timeout"):
            LabelWorker(_client(make_index()), "faq", judge_timeout=bad)
    with pytest.raises(TypeError, match="judge_timeout"):
        make_index(max_error_rate=0.02, judge_timeout=True)
    code = main(["worker", "--redis-url", redis_url, "--namespace", "faq", "--once",
                 "--judge-timeout", "inf"])  # fmt: skip
    assert code == 2 and "--judge-timeout" in capsys.readouterr().err


def test_service_stats_show_the_error_bound(make_index: Any) -> None:
    """`GET /v1/stats` of a service with `--max-error-rate` says what the bound did (its
    `stats()` does; the endpoint left it out): labels, explorations, observed error;
    no per-scope thresholds (scopes are every tenant's). Without the bound: null."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from paracache.service import create_app

    index = make_index(max_error_rate=0.02, min_similarity=0.99)
    with TestClient(create_app(index, lambda req: "Call us.", metrics=False)) as client:
        for prompt in (STORED, NEAR):
            assert client.post("/v1/answer", json={"prompt": prompt}).json()["cached"] is False
        assert index.learner is not None and index.learner.wait_idle(30)
        learning = client.get("/v1/stats").json()["learning"]
    assert learning["labels"] == 1 and learning["wrong"] == 0  # the same answer twice
    assert learning["explorations"] == 0 and learning["observed_error"] is None
    assert learning["max_error_rate"] == 0.02 and "thresholds" not in learning
    with TestClient(create_app(make_index(), lambda req: "Hi.", metrics=False)) as client:
        assert client.get("/v1/stats").json()["learning"] is None


def test_adapters_sharing_an_index_each_get_their_answers_judged_as_text(
    make_index: Any,
) -> None:
    """One bounded index shared by LangChain and LlamaIndex adapters (as `index=` allows):
    each adapter *replaced* the learner's decoder of stored answers, so the last one
    built decided for all, and the others' answers were judged as their raw JSON: the
    same answer text with other token counts was labelled wrong."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from llama_index.core.llms import MockLLM

    from paracache.llama_index import CachedLLM

    class Counting(BaseChatModel):
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "counting"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kw: Any) -> ChatResult:  # fmt: skip
            self.calls += 1  # the same text, other token counts each time
            usage = {"token_usage": {"total": 10 + self.calls}}
            message = AIMessage(content="Open the app and tap Activate.", response_metadata=usage)
            return ChatResult(generations=[ChatGeneration(message=message)])

    index = make_index(max_error_rate=0.02, min_similarity=0.99, explore_rate=0)
    cache = SemanticCache(index)
    CachedLLM(MockLLM(), index, max_error_rate=0.02)  # built last, on the same index
    llm = Counting(cache=cache)
    llm.invoke(STORED)
    llm.invoke(NEAR)  # a miss below the threshold: the same text comes back
    assert llm.calls == 2
    assert index.learner is not None and index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] == 1 and learning["wrong"] == 0


def test_tool_call_answers_are_judged_by_their_calls(make_index: Any) -> None:
    """A tool-calling answer's text is empty: judged by its text alone, any two tool
    calls were "the same answer" (a call with other arguments labelled right, which
    loosens the bound where it should tighten). Its calls (names, arguments; not their
    ids) are now part of what the judge compares, streamed or not."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool

    from paracache.langchain import CachedChatModel, generations_text

    @tool
    def activate(card: str) -> str:
        """Activate a card."""
        return "done"

    class Tooling(BaseChatModel):
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "tooling"

        def bind_tools(self, tools: Any, **kw: Any) -> Any:
            return self.bind(tools=[t.name for t in tools], **kw)

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kw: Any) -> ChatResult:  # fmt: skip
            self.calls += 1
            card = "new" if "new" in messages[-1].content else "any"
            call = {"name": "activate", "args": {"card": card}, "id": f"call-{self.calls}"}
            message = AIMessage(content="", tool_calls=[call])
            return ChatResult(generations=[ChatGeneration(message=message)])

    index = make_index(max_error_rate=0.02, min_similarity=0.99, explore_rate=0)
    model = Tooling()
    chat = CachedChatModel(llm=model, cache=SemanticCache(index)).bind_tools([activate])
    chat.invoke(STORED)
    streamed = list(chat.stream(NEAR))  # a miss below the threshold: another argument
    assert model.calls == 2 and any(c.tool_call_chunks for c in streamed)
    assert index.learner is not None and index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] == 1 and learning["wrong"] == 1
    chat.invoke("how do I activate the new card")  # the same call, another id: right
    assert model.calls == 3 and index.learner.wait_idle(30)
    learning = index.stats().learning
    assert learning["labels"] == 2 and learning["wrong"] == 1
    plain = generations_text('{"v": 1, "generations": [{"kind": "text", "text": "Yes.", '
                             '"generation_info": null}]}')  # fmt: skip
    assert plain == "Yes."


def test_paracache_worker_gives_llama_index_answers_as_text_to_the_verifier(
    make_index: Any,
) -> None:
    """`paracache worker --verifier` read LangChain entries as text and LlamaIndex ones
    (CachedLLM, the query engine) as their raw JSON."""
    from llama_index.core.llms import ChatMessage, MockLLM

    from paracache.cli import stored_answer_text
    from paracache.llama_index._shared import _dump_response

    index = make_index(max_error_rate=0.02, min_similarity=0.99, label_worker=False)
    llm = CachedLLM(MockLLM(), index, max_error_rate=0.02)
    llm.chat([ChatMessage(role="user", content=STORED)])
    llm.complete(NEAR)
    answers = sorted(
        stored_answer_text(_client(index).hget(e.key, "response").decode())  # type: ignore[union-attr]
        for e in index.entries()
    )
    assert all(not a.startswith("{") for a in answers) and len(answers) == 2, answers
    engine = _dump_response("Reset it in Settings.", [], {"k": 1}, streamed=True)
    assert stored_answer_text(engine) == "Reset it in Settings."
    assert stored_answer_text('{"kind": "complete"}') == '{"kind": "complete"}'


def test_statistics_with_absurd_counts_are_unreadable(make_index: Any) -> None:
    """A count too large for a float (garbage written by hand: a 400-digit number) made
    the bound raise OverflowError: the refresh stopped there, so the scope kept serving
    at its earlier learned threshold and nothing counted the record as unreadable.
    Such a record now gives its scope no semantic hit, like any unreadable one."""
    from paracache import bound

    index = make_index(max_error_rate=0.05, min_similarity=0.99, explore_rate=0.0)
    index.store(STORED, "Open the app and tap Activate.", SCOPE)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"  # the scope is seen
    assert index.learner is not None
    key = index.learner.stats_key(SCOPE.digest())
    fields: dict[str, int | str] = {"v": "1", "N": 1000}
    for b in range(90, 100):
        fields.update({f"n{b}": 40, f"t{b}": 60})
    _client(index).hset(key, mapping=fields)
    index.learner.refresh(force=True)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "semantic"  # learned: served
    _client(index).hset(key, "N", "9" * 400)
    index.learner.refresh(force=True)
    assert index.lookup_verdict(NEAR, SCOPE).outcome == "miss"
    assert index.stats().errors_by_kind.get("stats_corrupt", 0) >= 1
    with pytest.raises(ValueError, match="not a count"):
        bound.ScopeStats.from_record({b"v": b"1", b"N": b"9" * 400})


def test_an_adapters_min_similarity_is_the_static_threshold_under_the_bound(
    make_index: Any, redis_url: str, namespace: str
) -> None:
    """`SemanticCache(max_error_rate=..., min_similarity=...)` fixed every lookup's
    threshold at min_similarity: the learned one was never even read, while exploration
    and labels went on costing model calls. It is now the static threshold the bound
    starts from (as `SemanticIndex(min_similarity=...)` is); on an index that has the
    bound, an adapter's own threshold is refused."""
    from paracache.llama_index import SemanticCacheQueryEngine

    verdicts: list[Any] = []
    cache = SemanticCache(
        redis_url=redis_url, namespace=namespace, max_error_rate=0.05, min_similarity=0.99,
        explore_rate=0.0, on_verdict=verdicts.append,
    )  # fmt: skip
    try:
        index = cache.index
        assert index.learner is not None and index.settings.min_similarity == 0.99
        llm = FakeListChatModel(responses=["Open the app and tap Activate."] * 3, cache=cache)
        llm.invoke(STORED)
        llm.invoke(NEAR)  # cold: a miss below 0.99
        assert verdicts[-1].outcome == "miss" and index.learner.wait_idle(30)
        (key,) = _client(index).scan_iter(match=f"paracache:{namespace}:*:q:*")
        fields: dict[str, int | str] = {"v": "1", "N": 1000}
        for b in range(90, 100):
            fields.update({f"n{b}": 40, f"t{b}": 60})
        _client(index).hset(key, mapping=fields)
        index.learner.refresh(force=True)
        (learned,) = index.stats().learning["thresholds"].values()
        assert learned <= 0.93
        llm.invoke("How can I activate my new card?")  # 0.96 to STORED: learned, served
        assert verdicts[-1].outcome == "semantic", verdicts[-1].reason
    finally:
        cache.index.close()
    learned = make_index(max_error_rate=0.02)
    with pytest.raises(ValueError, match="min_similarity"):
        SemanticCache(learned, min_similarity=0.95)
    with pytest.raises(ValueError, match="min_similarity"):
        SemanticCacheQueryEngine(_Echo(), learned, min_similarity=0.95)
    SemanticCache(make_index(), min_similarity=0.95)  # without the bound: per lookup, as before
    engine = SemanticCacheQueryEngine(
        _Echo(), redis_url=redis_url, namespace=namespace, max_error_rate=0.05,
        min_similarity=0.97,
    )  # fmt: skip
    try:
        assert engine.min_similarity is None and engine.index.settings.min_similarity == 0.97
    finally:
        engine.index.close()


def _echo_engine() -> Any:
    from llama_index.core.query_engine import CustomQueryEngine

    class Echo(CustomQueryEngine):
        def custom_query(self, query_str: str) -> str:
            return query_str

    return Echo()


_Echo = _echo_engine


def test_a_judge_or_verifier_class_instead_of_an_instance_fails_at_construction(
    make_index: Any,
) -> None:
    """`judge=EmbeddingJudge` (the class, without parentheses) is callable, so it was
    accepted, and every label was then dropped: the class called with two answers
    builds a judge (or raises), never says True or False."""
    from paracache.judge import EmbeddingJudge, ExactJudge, QuestionVerifier

    for judge in (ExactJudge, EmbeddingJudge):
        with pytest.raises(TypeError, match=rf"did you mean {judge.__name__}\(\)"):
            make_index(max_error_rate=0.02, judge=judge)
    with pytest.raises(TypeError, match=r"did you mean QuestionVerifier\(\)"):
        make_index(max_error_rate=0.02, verifier=QuestionVerifier)


def test_the_observed_error_gauge_is_the_namespaces_not_each_caches_share(
    make_index: Any, redis_url: str
) -> None:
    """Two caches exporting one namespace (two processes, or two objects in one) each
    set ``paracache_observed_error_rate`` from their own share of the explored labels,
    so it flipped between them. It is read from the statistics they share in Redis."""
    import asyncio

    from prometheus_client import REGISTRY

    from paracache.observability import arefresh_entries, refresh_entries

    first = make_index(max_error_rate=0.02, explore_rate=0.0, metrics="prometheus")
    second = make_index(max_error_rate=0.02, explore_rate=0.0, metrics="prometheus")
    ns = first.namespace
    first.store(STORED, "Open the app and tap Activate.", SCOPE)  # registers the scope
    assert first.learner is not None and second.learner is not None
    # What the label workers of every process have counted for the scope: 40 explored
    # would-be hits, 2 wrong.
    _client(first).hset(
        first.learner.stats_key(SCOPE.digest()), mapping={"v": "1", "N": 100, "xn": 40, "xw": 2}
    )

    def gauge() -> tuple[float | None, ...]:
        return tuple(
            REGISTRY.get_sample_value(
                "paracache_observed_error_rate", {"namespace": ns, "kind": kind}
            )
            for kind in ("estimate", "low", "high")
        )

    first.core.recorder.learning("explored_wrong")  # this object's own share: 1 of 1
    second.core.recorder.learning("explored_right")  # the other's: 0 of 1
    refresh_entries(first)
    seen = gauge()
    assert seen[0] == pytest.approx(0.05) and 0 < seen[1] < 0.05 < seen[2] < 0.2  # type: ignore[operator]
    second.core.recorder.learning("explored_right")
    asyncio.run(arefresh_entries(second))
    assert gauge() == seen  # the same series, whichever cache refreshed it
    assert first.learner.observed_error() == second.learner.observed_error() == seen


def test_idle_scopes_are_not_read_every_second(make_index: Any, monkeypatch: Any) -> None:
    """A scope looked up once was read every REFRESH_SECONDS for the life of the process
    (3,000 scopes: 3,000 HGETALL a second): past IDLE_SECONDS it is no longer read, its
    decision stays, and its next lookup reads it again; decisions are capped."""
    from paracache import learning

    monkeypatch.setattr(learning, "IDLE_SECONDS", 0.3, raising=False)
    monkeypatch.setattr(learning, "MAX_SCOPES", 5, raising=False)
    index = make_index(max_error_rate=0.02)
    learner = index.learner
    assert learner is not None
    scopes = [Scope(model="m", tenant=f"t{i}") for i in range(8)]
    for scope in scopes:
        index.store(STORED, "Open the app and tap Activate.", scope)
        index.lookup_verdict(NEAR, scope)
    learner.refresh(force=True)
    keys = {learner.stats_key(s.digest()) for s in scopes}
    assert keys <= set(learner._seen) and keys <= set(learner._decisions)

    def hgetalls() -> int:
        info = _client(index).info("commandstats")
        return int(info.get("cmdstat_hgetall", {}).get("calls", 0))

    time.sleep(0.5)  # idle now
    learner.refresh()
    assert not keys & set(learner._seen)  # no longer read
    assert len(learner._decisions) <= 5  # capped, the idle ones first
    before = hgetalls()
    time.sleep(1.5)  # the background thread's refreshes find nothing due
    assert hgetalls() - before <= 1
    index.lookup_verdict(NEAR, scopes[0])  # asked again: read again
    assert learner.stats_key(scopes[0].digest()) in learner._seen
    learner.refresh()
    assert learner.stats_key(scopes[0].digest()) in learner._decisions
