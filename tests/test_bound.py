"""The error bound's arithmetic (pure: no Redis, no embedder)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from paracache import bound
from paracache.bound import (
    NO_SEMANTIC,
    ScopeStats,
    bin_of,
    check_delta,
    clopper_pearson,
    entry_floor,
    explore_rate,
    learned_threshold,
)


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.01, 1.5])
def test_delta_outside_open_unit_interval_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        check_delta(bad)


@pytest.mark.parametrize("bad", ["0.1", True, float("nan"), [0.1]])
def test_delta_of_the_wrong_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        check_delta(bad)


def test_delta_none_means_static() -> None:
    assert check_delta(None) is None
    assert check_delta(0.02) == 0.02


def test_explore_rate_is_bounded() -> None:
    rates = [explore_rate(d) for d in (1e-6, 0.005, 0.01, 0.03, 0.05, 0.2, 0.9)]
    assert all(0.01 <= r <= 0.10 for r in rates)
    assert rates == sorted(rates)


def test_bins() -> None:
    assert bin_of(0.0) == 0 and bin_of(0.999) == 99 and bin_of(1.0) == 99
    assert bin_of(0.9) == 90 and bin_of(0.8999) == 89
    assert bin_of(float("nan")) == 0 and bin_of(-3) == 0 and bin_of(7) == 99


def _stream(error_at: float, n: int, seed: int, explore: float = 0.05) -> ScopeStats:
    """Traffic whose candidates are right with a probability rising with similarity:
    wrong with probability ``error_at`` at 0.80, falling linearly to 0 at 0.95."""
    rng = random.Random(seed)
    stats = ScopeStats()
    for _ in range(n):
        if rng.random() < 0.2:
            stats.add_traffic(None)
            continue
        s = rng.uniform(0.70, 1.0)
        p_wrong = min(1.0, max(0.0, error_at * (0.95 - s) / 0.15))
        wrong = rng.random() < p_wrong
        stats.add_traffic(s)
        if s < 0.9 or rng.random() < explore:  # misses all labelled, hits explored
            stats.add_label(s, not wrong, explored=s >= 0.9)
    return stats


def _true_error(threshold: float, error_at: float) -> float:
    """Wrong answers per lookup serving >= threshold under :func:`_stream`'s model."""
    steps = 3000
    total = 0.0
    for i in range(steps):
        s = 0.70 + 0.30 * (i + 0.5) / steps
        if s >= threshold:
            total += min(1.0, max(0.0, error_at * (0.95 - s) / 0.15))
    return 0.8 * total / steps


def test_cold_scope_keeps_the_static_threshold() -> None:
    stats = _stream(0.5, 40, seed=1)
    assert stats.label_count < bound.MIN_LABELS
    decision = learned_threshold(stats, 0.02, static=0.9)
    assert decision == bound.Decision(threshold=0.9, learned=False, labels=stats.label_count)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("delta", [0.005, 0.01, 0.03, 0.05])
def test_learned_threshold_keeps_true_error_under_delta(seed: int, delta: float) -> None:
    stats = _stream(0.5, 4000, seed=seed)
    decision = learned_threshold(stats, delta, static=0.9)
    assert decision.learned
    assert decision.upper <= delta
    assert _true_error(decision.threshold, 0.5) <= delta


def test_larger_delta_never_means_a_stricter_threshold() -> None:
    stats = _stream(0.5, 4000, seed=3)
    thresholds = [learned_threshold(stats, d, static=0.9).threshold for d in (0.005, 0.01, 0.03)]
    assert thresholds == sorted(thresholds, reverse=True)
    assert thresholds[-1] < thresholds[0]


def test_all_wrong_closes_the_semantic_layer() -> None:
    stats = ScopeStats()
    for _ in range(200):
        stats.add_traffic(0.97)
        stats.add_label(0.97, False)
    assert learned_threshold(stats, 0.05, static=0.9).threshold == 1.0


def test_record_round_trip_and_corruption() -> None:
    record = {b"v": b"1", b"N": b"10", b"n90": b"4", b"w90": b"1", b"t90": b"6",
              b"xn": b"2", b"xw": b"1"}  # fmt: skip
    stats = ScopeStats.from_record(record)
    assert stats.labels == {90: (4, 1)} and stats.traffic == {90: 6}
    assert stats.lookups == 10 and stats.explored == (2, 1)
    assert ScopeStats.from_record({}) == ScopeStats()
    for bad in (
        {**record, b"v": b"2"},
        {**record, b"n90": b"four"},
        {**record, b"w90": b"9"},
        {**record, b"t90": b"-1"},
        {**record, b"t90": b"99"},
        {**record, b"zz": b"1"},
        {**record, b"n100": b"1"},
        {**record, b"xw": b"3"},
        {**record, b"w50": b"1"},
    ):
        with pytest.raises(ValueError):
            ScopeStats.from_record(bad)


def test_unreadable_statistics_decision_serves_nothing_semantic() -> None:
    assert NO_SEMANTIC.threshold == 1.0 and NO_SEMANTIC.learned


def test_entry_floor() -> None:
    assert entry_floor({}) is None
    assert entry_floor({b"lw": b"0.93"}) == 0.93
    for bad in (b"x", b"1.5", b"nan"):
        with pytest.raises(ValueError):
            entry_floor({b"lw": bad})


def test_clopper_pearson() -> None:
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and math.isclose(lo, 0.6915, abs_tol=1e-4)
    lo, hi = clopper_pearson(1, 50)
    assert math.isclose(lo, 0.000506, abs_tol=1e-5) and math.isclose(hi, 0.1065, abs_tol=1e-4)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


@pytest.mark.parametrize("delta", [0.01, 0.03, 0.05])
def test_learned_threshold_converges_to_the_hindsight_threshold(delta: float) -> None:
    """With many labels everywhere the bound serves down to (nearly) the lowest
    threshold whose wrong answers per lookup stay under delta, not only where a
    candidate's own chance of being wrong is under delta."""
    stats = _stream(0.5, 40_000, seed=5, explore=1.0)
    decision = learned_threshold(stats, delta, static=0.9)
    hindsight = min(t / 100 for t in range(70, 101) if _true_error(t / 100, 0.5) <= delta)
    assert _true_error(decision.threshold, 0.5) <= delta
    assert decision.threshold <= hindsight + 0.02
    # the marginal candidate is wrong far more often than delta
    assert 0.5 * (0.95 - decision.threshold) / 0.15 > 2 * delta


def test_error_blocks_are_monotone_and_pooled() -> None:
    stats = _stream(0.5, 4000, seed=2)
    blocks = bound.error_blocks(stats)
    assert blocks[0].high == bound.BINS - 1 and blocks[-1].low == bin_of(bound.LOWEST)
    assert all(a.low == b.high + 1 for a, b in itertools.pairwise(blocks))
    assert all(b.labels >= bound.POOL_LABELS for b in blocks[:-1])
    errors = [b.wrong / b.labels for b in blocks if b.labels]
    assert errors == sorted(errors)


def _plateau_error(similarity: float) -> float:
    """A harder shape than :func:`_stream`'s line: a plateau of confusable neighbours
    (6 % wrong from 0.85 to 0.95) between many wrong below and few wrong above."""
    return 0.3 if similarity < 0.85 else (0.06 if similarity < 0.95 else 0.01)


def _plateau_stream(n: int, seed: int) -> ScopeStats:
    """A short stream: misses labelled below 0.92, 3 % of the would-be hits above it."""
    rng = random.Random(seed)
    stats = ScopeStats()
    for _ in range(n):
        if rng.random() < 0.25:
            stats.add_traffic(None)
            continue
        s = rng.uniform(0.70, 1.0)
        stats.add_traffic(s)
        if s < 0.92 or rng.random() < 0.03:
            stats.add_label(s, rng.random() >= _plateau_error(s), explored=s >= 0.92)
    return stats


def _plateau_true_error(threshold: float) -> float:
    steps = 3000
    points = (0.70 + 0.30 * (i + 0.5) / steps for i in range(steps))
    total = sum(_plateau_error(s) for s in points if s >= threshold)
    return 0.75 * total / steps


@pytest.mark.parametrize("delta", [0.01, 0.02, 0.03])
def test_bound_holds_in_at_least_95_of_100_short_streams(delta: float) -> None:
    """A one-sided 95 % bound: over 100 draws of a short stream the learned threshold's
    true error stays under delta at least 95 times (z = 1 with each block's own
    variance held 89-97 times here)."""
    held = sum(
        _plateau_true_error(learned_threshold(_plateau_stream(1500, seed), delta, 0.9).threshold)
        <= delta
        for seed in range(100)
    )
    assert held >= 95


def test_a_few_right_labels_do_not_certify_much_traffic() -> None:
    """Every lookup's candidate at 0.95, every label right: 60 labels are too few to say
    that fewer than 3 % of the lookups would be wrong (the block's variance is taken at
    its Wilson centre, not at its near-zero estimate); 300 are enough."""
    stats = ScopeStats()
    for _ in range(60):
        stats.add_traffic(0.95)
        stats.add_label(0.95, True)
    assert learned_threshold(stats, 0.03, static=0.9).threshold > 0.95  # nothing served
    for _ in range(240):
        stats.add_traffic(0.95)
        stats.add_label(0.95, True)
    assert learned_threshold(stats, 0.03, static=0.9).threshold <= 0.95


def test_hysteresis_lowers_only_on_the_stricter_bound_and_rises_at_once() -> None:
    stats = _stream(0.5, 4000, seed=3)
    delta = 0.03
    loose = learned_threshold(stats, delta, static=0.9).threshold
    strict = learned_threshold(stats, delta, static=0.9, z=bound.Z_LOWER).threshold
    assert strict > loose  # the data leave room between the two bounds
    # from above: down only as far as the stricter bound allows
    assert learned_threshold(stats, delta, static=0.9, previous=1.0).threshold == strict
    # in between: kept
    between = round(strict - 0.01, 2)
    if between > loose:
        assert learned_threshold(stats, delta, static=0.9, previous=between).threshold == between
    # too low for the bound at Z: up at once
    assert learned_threshold(stats, delta, static=0.9, previous=loose - 0.05).threshold == loose
    assert learned_threshold(stats, delta, static=0.9, previous=None).threshold == loose
