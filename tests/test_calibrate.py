"""Calibration (pairs and clusters through the real index), per-scope thresholds, config
files and the ``paracache calibrate`` command."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from paracache import Scope, SemanticIndex
from paracache.calibrate import (
    calibrate,
    load_config,
    load_labelled,
    load_threshold,
    split_clusters,
    write_config,
)
from paracache.cli import main
from paracache.core import Settings, check_thresholds
from paracache.guards import Guards

PAIRS = [
    # true paraphrases
    ("How do I reset my password?", "I forgot my password, how do I reset it?", True),
    ("What are your opening hours?", "When are you open?", True),
    ("Can I return a jacket I bought online?", "How do I return a jacket ordered online?", True),
    ("Do you ship to Canada?", "Can you deliver to Canada?", True),
    ("How long does standard delivery take?", "How many days is standard shipping?", True),
    ("Where can I see my invoices?", "Where do I find my invoices?", True),
    ("Is there a fee for card payments?", "Do you charge for paying by card?", True),
    ("How do I update my email address?", "How can I change my email address?", True),
    ("Why was my payment declined?", "Why did my payment get declined?", True),
    ("Can I change my delivery address?", "Is it possible to change the delivery address?", True),
    ("How do I contact customer support?", "How can I reach customer service?", True),
    ("Can I pay in instalments?", "Do you offer payment in instalments?", True),
    # near misses: same words, different answer
    ("Please cancel my order", "Please don't cancel my order", False),
    ("Where is order 4471?", "Where is order 4417?", False),
    ("Can I pay with Apple Pay?", "Can I pay with Google Pay?", False),
    ("How do I enable two-factor login?", "How do I disable two-factor login?", False),
    ("Is the shop open on Sunday?", "Is the shop open on Monday?", False),
    ("Why was I charged $5?", "Why was I charged $50?", False),
    ("Cancel all my subscriptions", "Cancel one of my subscriptions", False),
    ("What is the minimum deposit?", "What is the maximum deposit?", False),
    # unrelated
    ("How do I reset my router?", "How do I reset my password?", False),
    ("What's your refund policy?", "Do you sell gift cards?", False),
]

CLUSTERS = {
    "refund": ["What is your refund policy?", "How do refunds work?", "Can I get a refund?",
               "How do I get my money back?", "Am I eligible for a refund?",
               "What is the process for a refund?"],
    "password": ["How do I reset my password?", "I forgot my password", "Reset my password",
                 "How can I change my password?", "I can't remember my password",
                 "Password reset help"],
    "shipping": ["How long does shipping take?", "When will my order be delivered?",
                 "What are the delivery times?", "How many days for delivery?",
                 "How fast is shipping?", "Shipping time?"],
    "hours": ["What are your opening hours?", "When are you open?", "What time do you open?",
              "Are you open now?", "What are your business hours?", "When do you close?"],
    "cancel": ["How do I cancel my order?", "Cancel my order please",
               "I want to cancel my order", "Can I cancel an order?",
               "How can I cancel a purchase?", "Order cancellation"],
}


def _pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    with path.open("w") as fh:
        for q1, q2, same in PAIRS:
            fh.write(json.dumps({"q1": q1, "q2": q2, "same": same}) + "\n")
    return path


def _cluster_rows() -> list[dict[str, str]]:
    return [{"text": t, "intent": i} for i, texts in CLUSTERS.items() for t in texts]


# --------------------------------------------------------------------------- calibration


def test_pairs_calibration_sweep_shape(tmp_path: Path, redis_url: str) -> None:
    report = calibrate(_pairs_file(tmp_path), redis_url=redis_url, progress=False,
                       target_precision=0.95)
    assert report.kind == "pairs"
    assert report.stored == report.queries == len(PAIRS)
    assert report.answerable == sum(same for _, _, same in PAIRS)
    for rows in (report.with_guards, report.without_guards):
        thresholds = [r.min_similarity for r in rows]
        assert thresholds == sorted(thresholds) and thresholds[0] == 0.5
        rates = [r.hit_rate for r in rows]
        assert all(a >= b for a, b in itertools.pairwise(rates))  # monotone
        recalls = [r.recall for r in rows]
        assert all(a >= b for a, b in itertools.pairwise(recalls))
        assert all(0.0 <= r.precision <= 1.0 and r.correct <= r.hits for r in rows)
    # Here the guards remove the near misses.
    for g, n in zip(report.with_guards, report.without_guards, strict=True):
        # the guards reject wrong candidates and vouch for some right ones below the
        # threshold (typo'd repeats, the learned check): never more wrong hits
        assert g.wrong <= n.wrong
    low_g, low_n = report.at(0.7), report.at(0.7, guards=False)
    assert low_n.wrong >= 5 and low_g.wrong <= 1
    assert low_g.correct >= low_n.correct - 1
    assert report.rejections_by_reason  # counted by guard
    # A sensible recommendation: the target is met there and at every stricter threshold.
    assert report.recommended is not None
    assert all(r.precision >= 0.95 for r in report.with_guards
               if r.min_similarity >= report.recommended and r.hits)
    assert report.recommended_without_guards is None or (
        report.recommended_without_guards >= report.recommended
    )
    text = report.format()
    assert "recommended (with guards)" in text and "min_sim" in text
    json.dumps(report.as_dict())


def test_clusters_calibration(redis_url: str) -> None:
    rows = _cluster_rows()
    report = calibrate(rows, redis_url=redis_url, progress=False, seed=3, fill_share=0.5,
                       thresholds=[0.6, 0.7, 0.8, 0.9], guards=Guards.off())
    fill, ask = split_clusters(rows, 3, 0.5)
    assert report.kind == "clusters" and report.stored == len(fill) == 15
    assert report.queries == len(ask) == 15
    assert report.with_guards == report.without_guards  # no guards: one sweep
    assert [r.min_similarity for r in report.with_guards] == [0.6, 0.7, 0.8, 0.9]
    hits = [r.hits for r in report.with_guards]
    assert hits == sorted(hits, reverse=True) and hits[0] > 0
    assert report.at(0.6).precision >= 0.6
    # The same seed gives the same split and the same numbers.
    again = calibrate(rows, redis_url=redis_url, progress=False, seed=3,
                      thresholds=[0.6, 0.7, 0.8, 0.9], guards=Guards.off())
    assert again.with_guards == report.with_guards


def test_calibration_cleans_up_and_validates(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    calibrate(_cluster_rows()[:12], redis_url=redis_url, progress=False, thresholds=[0.8])
    assert not list(client.scan_iter("paracache:paracache-calibrate-*"))
    with pytest.raises(ValueError, match="need"):
        load_labelled([{"q1": "a", "q2": "b"}], kind="pairs")
    with pytest.raises(ValueError, match="same"):
        load_labelled([{"q1": "a", "q2": "b", "same": "yes"}])
    with pytest.raises(ValueError, match="fill_share"):
        calibrate(_cluster_rows(), redis_url=redis_url, fill_share=1.5, progress=False)
    with pytest.raises(ValueError):
        calibrate(_cluster_rows(), redis_url=redis_url, target_precision=2, progress=False)


# --------------------------------------------------------------------------- per-scope thresholds


def test_per_scope_thresholds_make_one_tenant_stricter(make_index: Any) -> None:
    index = make_index(min_similarity=0.80, thresholds={"tenant": {"medical": 0.97}})
    medical, chat = Scope(tenant="medical"), Scope(tenant="chitchat")
    for scope in (medical, chat):
        index.store("How do I reset my password?", f"reset ({scope.tenant})", scope)
    question = "I forgot my password, how do I reset it?"
    similarity = index.lookup(question, chat)
    assert similarity is not None and 0.80 <= similarity.similarity < 0.97
    assert index.lookup(question, medical) is None  # the stricter tenant misses
    verdict = index.lookup_verdict(question, medical)
    assert "0.970" in verdict.reason
    # per-call beats per-scope
    hit = index.lookup(question, medical, min_similarity=0.8)
    assert hit is not None and hit.response == "reset (medical)"


def test_threshold_precedence() -> None:
    settings = Settings(
        min_similarity=0.9,
        thresholds=check_thresholds({
            "tenant": {"medical": 0.97, "games": 0.85},
            "model": {"gpt-4o": 0.92},
            "topic": {"dosage": 0.99, "7": 0.5},
        }),
    )
    assert settings.threshold_for(Scope()) == 0.9  # global
    assert settings.threshold_for(Scope(tenant="games")) == 0.85  # looser per scope
    assert settings.threshold_for(Scope(model="gpt-4o")) == 0.92
    assert settings.threshold_for(Scope(tenant="medical", model="gpt-4o")) == 0.97  # strictest
    assert settings.threshold_for(Scope(tenant="games", model="gpt-4o")) == 0.92
    assert settings.threshold_for(Scope(fields={"topic": "dosage"})) == 0.99  # user field
    assert settings.threshold_for(Scope(fields={"topic": 7})) == 0.5  # compared as text


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ({"tenant": 0.9}, TypeError, "non-empty mapping"),
        ({"tenant": {}}, TypeError, "non-empty mapping"),
        ({"tenant": {"a": 1.5}}, ValueError, r"thresholds\['tenant'\]\['a'\]"),
        ({"tenant": {"a": "high"}}, TypeError, "number"),
        ({"params": {"a": 0.9}}, ValueError, "not a scope field"),
        ([("tenant", {"a": 0.9})], TypeError, "mapping"),
        ({"": {"a": 0.9}}, TypeError, "non-empty str"),
    ],
)
def test_thresholds_are_validated(value: Any, error: type, match: str, make_index: Any) -> None:
    with pytest.raises(error, match=match):
        make_index(thresholds=value)


# --------------------------------------------------------------------------- config files


@pytest.mark.parametrize("name", ["paracache.toml", "paracache.json"])
def test_config_round_trip(tmp_path: Path, name: str, redis_url: str) -> None:
    path = tmp_path / name
    write_config(path, min_similarity=0.88, guards=Guards(entities=False),
                 thresholds={"tenant": {"medical": 0.97, "a b\"c": 0.93}},
                 calibration={"source": "x.jsonl", "precision": 0.97})
    write_config(path, thresholds={"tenant": {"games": 0.85}, "model": {"gpt-4o": 0.92}})
    config = load_config(path)
    assert config == {
        "min_similarity": 0.88,
        "guards": Guards(entities=False),
        "thresholds": {"tenant": {"medical": 0.97, "a b\"c": 0.93, "games": 0.85},
                       "model": {"gpt-4o": 0.92}},
    }
    assert load_threshold(path) == 0.88
    index = SemanticIndex.from_config(path, redis_url=redis_url, namespace="cfg-test")
    try:
        assert index.settings.min_similarity == 0.88
        assert index.guards == Guards(entities=False)
        assert index.settings.threshold_for(Scope(tenant="medical")) == 0.97
        overridden = SemanticIndex.from_config(path, redis_url=redis_url, namespace="cfg-test",
                                               min_similarity=0.5, guards=None)
        assert overridden.settings.min_similarity == 0.5 and overridden.core.accept is None
        overridden.close()
    finally:
        index.close()


def test_bad_config_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[paracache]\nmin_similarity = 1.5\n")
    with pytest.raises(ValueError):
        load_config(bad)
    bad.write_text("[paracache]\nmin_similarity = 0.9\nthreshold = 0.8\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(bad)
    bad.write_text("[paracache.guards]\nnegations = false\n")
    with pytest.raises(ValueError, match="unknown guard"):
        load_config(bad)
    empty = tmp_path / "empty.json"
    empty.write_text('{"paracache": {"guards": {"dates": false}}}')
    with pytest.raises(ValueError, match="no min_similarity"):
        load_threshold(empty)


@pytest.mark.parametrize(
    ("name", "text"),
    [("c.toml", "min_similarity = 0.93\n"), ("c.json", '{"min_similarity": 0.93}')],
)
def test_a_config_file_saved_with_a_byte_order_mark_is_read(
    tmp_path: Path, name: str, text: str
) -> None:
    """An editor that saves UTF-8 with a BOM (Notepad): "Invalid statement (at line 1,
    column 1)" for TOML, "Unexpected UTF-8 BOM" for JSON."""
    from paracache.config import load_config

    path = tmp_path / name
    path.write_bytes(("\ufeff" + text).encode())
    assert load_config(path) == {"min_similarity": 0.93}
    data = tmp_path / "pairs.jsonl"  # calibrate's labelled data: "1: not JSON"
    data.write_bytes('\ufeff{"q1": "a", "q2": "b", "same": true}\n'.encode())
    assert load_labelled(data)[0] == "pairs"


def test_a_bad_config_file_is_named_in_the_error(tmp_path: Path) -> None:
    """A service with several config files learns which one holds the bad value (the
    value checks and the JSON/TOML parsers did not say)."""
    cases = [
        ("range.toml", "[paracache]\nmin_similarity = 1.5\n", ValueError, "in \\[0, 1\\]"),
        ("text.toml", 'min_similarity = "0.9"\n', TypeError, "must be a number"),
        ("scoped.toml", '[thresholds]\n"tenant=x" = 0.95\n', TypeError, "thresholds"),
        ("guard.toml", "[paracache.guards]\nnegations = false\n", ValueError, "unknown guard"),
        ("comma.json", '{"min_similarity": 0.9,}', ValueError, "line 1 column"),
        ("broken.toml", "min_similarity = \n", ValueError, "line 1"),
    ]
    for name, text, kind, what in cases:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(kind, match=what) as raised:
            SemanticIndex.from_config(path, namespace="never-built")
        assert str(raised.value).startswith(f"{path}: "), str(raised.value)


@pytest.mark.parametrize("name", ["paracache.yaml", "paracache.YML"])
def test_a_yaml_config_file_is_refused_by_name(tmp_path: Path, name: str) -> None:
    """A YAML file was read as TOML: a valid YAML config failed with a TOML parser's
    error, or a YAML file that happened to parse was taken. Now every path says which
    file and which formats are read, and nothing is written."""
    path = tmp_path / name
    path.write_text("paracache:\n  min_similarity: 0.9\n")
    for call in (
        lambda: load_config(path),
        lambda: load_threshold(path),
        lambda: SemanticIndex.from_config(path, namespace="never-built"),
        lambda: write_config(path, min_similarity=0.9),
        lambda: write_config(tmp_path / ("new-" + name), min_similarity=0.9),
    ):
        with pytest.raises(ValueError) as raised:
            call()
        message = str(raised.value)
        assert message.startswith(str(path.parent)) and name in message, message
        assert "YAML" in message and "TOML (.toml) or JSON (.json)" in message, message
    assert path.read_text() == "paracache:\n  min_similarity: 0.9\n"
    assert not (tmp_path / ("new-" + name)).exists()
    # "min_similarity = 0.9" is TOML and YAML-ish alike: it must not be read either.
    path.write_text("min_similarity = 0.9\n")
    with pytest.raises(ValueError, match="YAML config files are not supported"):
        load_config(path)


def test_another_suffix_is_read_as_toml_and_says_so(tmp_path: Path) -> None:
    conf = tmp_path / "paracache.conf"
    conf.write_text("[paracache]\nmin_similarity = 0.9\n")
    assert load_config(conf) == {"min_similarity": 0.9}  # as before: TOML
    conf.write_text("min_similarity: 0.9\n")
    with pytest.raises(ValueError, match=r"paracache.conf: read as TOML \(config files are "
                       r"TOML \(.toml\) or JSON \(.json\)\)"):
        load_config(conf)


def test_report_writes_global_or_scoped_config(tmp_path: Path, redis_url: str) -> None:
    report = calibrate(_pairs_file(tmp_path), redis_url=redis_url, progress=False,
                       target_precision=0.9)
    assert report.recommended is not None
    assert len(report.warnings) == 1 and "only 22 questions" in report.warnings[0]
    path = report.write_config(tmp_path / "p.toml", force=True)  # small test data
    text = path.read_text()
    assert f"min_similarity = {report.recommended}" in text and "[paracache.calibration]" in text
    report.write_config(path, scope_field="tenant", scope_value="medical", force=True)
    config = load_config(path)
    assert config["min_similarity"] == report.recommended
    assert config["thresholds"] == {"tenant": {"medical": report.recommended}}


# --------------------------------------------------------------------------- the command


def test_calibrate_command(tmp_path: Path, redis_url: str, capsys: Any) -> None:
    data = _pairs_file(tmp_path)
    config, png = tmp_path / "out.toml", tmp_path / "pr.png"
    code = main(["calibrate", str(data), "--redis-url", redis_url, "--no-progress",
                 "--target-precision", "0.9", "--write-config", str(config),
                 "--plot", str(png), "--force"])  # 22 pairs: warned, written anyway
    out = capsys.readouterr().out
    assert code == 0, out
    assert "recommended (with guards)" in out and f"wrote {png}" in out
    assert 0.5 <= load_config(config)["min_similarity"] <= 0.99
    pytest.importorskip("matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code = main(["calibrate", str(data), "--redis-url", redis_url, "--no-progress", "--json",
                 "--for", "tenant=medical", "--write-config", str(config), "--force"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["kind"] == "pairs"
    assert "medical" in load_config(config)["thresholds"]["tenant"]

    assert main(["calibrate", str(data), "--for", "tenant"]) == 2
    yaml = tmp_path / "out.yaml"
    assert main(["calibrate", str(data), "--redis-url", redis_url, "--no-progress",
                 "--write-config", str(yaml)]) == 2  # refused before the sweep
    err = capsys.readouterr().err
    assert f"--write-config {yaml}: YAML config files are not supported" in err
    assert not yaml.exists()
    assert main(["calibrate", str(tmp_path / "missing.jsonl"), "--redis-url", redis_url]) == 1


def test_plot_without_matplotlib(tmp_path: Path, redis_url: str, capsys: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    code = main(["calibrate", str(_pairs_file(tmp_path)), "--redis-url", redis_url,
                 "--no-progress", "--plot", str(tmp_path / "x.png")])
    assert code == 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_calibrated_hits_match_the_index_at_the_defaults(redis_url: str, make_index: Any) -> None:
    # The "with guards" sweep models how far below each threshold the guards vouch for a
    # candidate: at the default threshold it serves about what the index serves.
    from importlib import resources

    text = resources.files("paracache").joinpath("data/banking77_demo.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    report = calibrate(rows, redis_url=redis_url, progress=False, seed=5, fill_share=0.5,
                       thresholds=[0.8, 0.9])
    fill, ask = split_clusters(rows, 5, 0.5)
    index = make_index(track_hits=False)
    for i, row in enumerate(fill):  # answers of their own, as calibrate stores them
        index.store(row["text"], f"{row['intent']}#{i}", Scope())
    served = [index.lookup(row["text"], Scope()) for row in ask]
    hits = sum(hit is not None for hit in served)
    assert hits > 0
    # the neighbours guard is modelled per threshold; a candidate beyond the first one
    # that passes the guards at the lowest threshold is not seen: a few may differ
    assert abs(report.at(0.9).hits - hits) <= max(3, len(ask) // 30)
    assert report.at(0.9).hits < report.at(0.8).hits


def test_a_disputed_vouched_candidate_is_served_only_at_or_below_its_similarity() -> None:
    from paracache.calibrate import _served

    # similarity 0.86, vouched for up to 0.90, a rival close behind it with another answer
    disputed = (0.86, True, 0.90, True)
    assert _served([disputed], 0.85) == disputed  # above the threshold: served
    assert _served([disputed], 0.86) == disputed
    assert _served([disputed], 0.88) is None  # vouched for, disputed: the cache abstains
    assert _served([disputed], 0.92) is None  # beyond its reach
    undisputed = (0.86, True, 0.90, False)
    assert _served([undisputed], 0.88) == undisputed


def test_too_little_evidence_is_a_warning_and_no_config(tmp_path: Path, redis_url: str,
                                                         capsys: Any) -> None:
    """Six pairs, all the same question: precision is 100 % at every threshold, so the
    sweep "recommends" its loosest. The report says why not to trust it, and nothing is
    written without --force."""
    data = tmp_path / "six.jsonl"
    with data.open("w") as fh:
        for q1, q2, same in [p for p in PAIRS if p[2]][:6]:
            fh.write(json.dumps({"q1": q1, "q2": q2, "same": same}) + "\n")
    report = calibrate(data, redis_url=redis_url, progress=False)
    assert report.queries == 6 and len(report.warnings) == 2
    assert "only 6 questions" in report.warnings[0]
    assert "must not match" in report.warnings[1]
    assert "warning: only 6 questions" in report.format()
    with pytest.raises(ValueError, match="too little evidence"):
        report.write_config(tmp_path / "x.toml")
    config = tmp_path / "six.toml"
    args = ["calibrate", str(data), "--redis-url", redis_url, "--no-progress",
            "--write-config", str(config)]
    assert main(args) == 1
    assert not config.exists()
    assert "--force" in capsys.readouterr().err
    if report.recommended is not None:
        assert main([*args, "--force"]) == 0
        assert load_config(config)["min_similarity"] == report.recommended
    # The 22 pairs above have near misses: only the size is warned about.
    warned = calibrate(_pairs_file(tmp_path), redis_url=redis_url, progress=False).warnings
    assert len(warned) == 1 and "only 22 questions" in warned[0]
