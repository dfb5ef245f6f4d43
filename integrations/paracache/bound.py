"""The error bound: from labels, the lowest similarity at which a scope may be served.

Pure (no I/O, no clock, no randomness): :mod:`paracache.learning` feeds it what the
cache recorded in Redis and asks it for a threshold.

**What is measured.** For each lookup of a scope the cache records its *traffic*: the
similarity of the candidate it served, or of the nearest candidate it could have
served (the most similar one that passed the guards), or that there was none. A
*label* says whether such a candidate's answer was right for the question: a miss is
labelled when the model's fresh answer arrives (through ``store``), and a sampled share
of would-be hits (*exploration*, :func:`explore_rate`) is turned into misses to be
labelled too. Traffic and labels are counted in similarity bins of width
:data:`BIN_WIDTH`.

**What is bounded.** The error rate the issue's users care about: wrong answers served
over the lookups of the scope (those that reach the semantic layer: exact repeats are
never another question's answer and are not counted, so over all lookups the rate is
lower still). Serving every candidate at similarity ``>= t`` gives

    E(t) = sum over bins b >= t of traffic_b * error_b / lookups

where ``error_b`` is an isotonic fit of the labels (:func:`error_blocks`: non-increasing
in similarity, each estimate resting on at least :data:`POOL_LABELS` labels).
:func:`learned_threshold` returns the lowest bin edge ``t`` whose upper confidence
bound on ``E(t)`` is at most ``delta`` and where no bin at or above ``t`` is estimated
wrong more often than right (:data:`MAX_POINT_ERROR`). This is the rule of the best
static threshold in hindsight, which the bound converges to: a candidate at the
threshold itself may be wrong far more often than ``delta``, as long as the lookups
served at or above it are wrong at most ``delta`` of the time in all.

**The margin.** The bound is one-sided 95 % (:data:`Z` standard errors above the
estimate), each block's variance taken at its Wilson centre, so that a block of few
labels, or none wrong, counts for no more than its labels allow. Searching ``t`` from
the top down and stopping at the first that fails is a fixed-sequence test: choosing
the lowest ``t`` this way needs no correction for the number of thresholds tried.
Decided again every time the statistics are read, the threshold has *hysteresis*
(``previous``): it rises as soon as the bound at :data:`Z` says so, but is lowered only
as far as a stricter bound (:data:`Z_LOWER`) allows, so a lucky run of right labels
does not lower it.

**Cold start.** With fewer than ``min_labels`` labels the scope keeps the static rules
(:class:`Decision` ``learned=False``). An unreadable statistics record gives a decision
that serves no semantic hit at all (:data:`NO_SEMANTIC`), never a looser one.

**Per entry.** An entry's own labels (kept in the entry, see :func:`entry_floor`) only
ever make it stricter: it is not served at or below a similarity at which it was judged
wrong. Entries with no such label use the scope's pooled threshold.

Example:
    >>> stats = ScopeStats()
    >>> for i in range(300):                       # 0.95: always right, 0.85: often wrong
    ...     stats.add_label(0.95, True); stats.add_traffic(0.95)
    ...     stats.add_label(0.85, i % 4 != 0); stats.add_traffic(0.85)
    >>> d = learned_threshold(stats, delta=0.05, static=0.90)
    >>> d.learned, 0.85 < d.threshold <= 0.95
    (True, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from .reals import is_nan, is_real

__all__ = [
    "BIN_WIDTH",
    "NO_SEMANTIC",
    "Block",
    "Decision",
    "ScopeStats",
    "check_delta",
    "clopper_pearson",
    "entry_floor",
    "error_blocks",
    "explore_rate",
    "learned_threshold",
]

#: Width of a similarity bin.
BIN_WIDTH = 0.01
#: Bins span [0, 1]: bin i holds similarities in [i * BIN_WIDTH, (i + 1) * BIN_WIDTH).
BINS = round(1 / BIN_WIDTH)
#: Labels an error estimate rests on at least (a block of bins takes in less similar
#: ones until it has them).
POOL_LABELS = 40
#: Wrong labels (and as many right ones) assumed in each block before any is seen.
PRIOR = 0.5
#: Labels a scope needs before its learned threshold replaces the static rules.
MIN_LABELS = 50
#: Standard errors of the estimate added to it: a one-sided 95 % bound (the normal
#: quantile). The variance of each block is taken at its Wilson centre (see
#: :func:`learned_threshold`), so a block with few or no wrong labels is not trusted
#: more than its count of labels allows.
Z = 1.645
#: Standard errors a *lower* threshold than the one in effect must clear (hysteresis:
#: a lucky run of right labels does not lower it; it rises as soon as the bound at
#: :data:`Z` says so).
Z_LOWER = 2.0
#: A bin whose estimated error is above this is never served, whatever its traffic
#: (the cumulative bound alone would serve a bin no lookup has fallen in yet).
MAX_POINT_ERROR = 0.5
#: The lowest threshold the bound may learn (labels are collected down to it).
LOWEST = 0.70
#: Version of the statistics record (a record of another version is unreadable).
STATS_VERSION = "1"


def check_delta(value: object, name: str = "max_error_rate") -> float | None:
    """Validate δ: ``None`` (no bound: static rules) or a number in (0, 1).

    Example:
        >>> check_delta(0.02), check_delta(None)
        (0.02, None)
        >>> check_delta(1.5)
        Traceback (most recent call last):
        ...
        ValueError: max_error_rate must be in (0, 1) (a share of lookups), got 1.5
    """
    if value is None:
        return None
    if not is_real(value) or is_nan(value):  # any real number: numpy's too
        raise TypeError(f"{name} must be a number in (0, 1) or None, got {value!r}")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (a share of lookups), got {value!r}")
    return float(value)


#: Exploration rate just above a threshold (within :data:`NEAR_BAND`): where the bound
#: is least sure, labels are worth the most.
NEAR_RATE = 0.05
#: How far above the threshold exploration runs at :data:`NEAR_RATE`.
NEAR_BAND = 0.03


def explore_rate(delta: float) -> float:
    """The share of would-be semantic hits turned into labelled misses: ``delta``, kept
    within [0.01, 0.05] (:data:`NEAR_RATE`, 5 %, within :data:`NEAR_BAND` above the
    threshold). Exploration costs at most that many extra model calls per semantic hit;
    it is what lets the bound see errors above its own threshold.

    Example:
        >>> explore_rate(0.005), explore_rate(0.02), explore_rate(0.2)
        (0.01, 0.02, 0.05)
    """
    return min(0.05, max(0.01, delta))


def bin_of(similarity: float) -> int:
    """The bin of a similarity (clamped to [0, BINS - 1]).

    Example:
        >>> bin_of(0.905), bin_of(1.0), bin_of(-0.2)
        (90, 99, 0)
    """
    if math.isnan(similarity):
        return 0
    return min(BINS - 1, max(0, int(similarity / BIN_WIDTH + 1e-9)))


@dataclasses.dataclass
class ScopeStats:
    """What one scope's lookups and labels came to (the record in Redis, decoded).

    ``labels[b] = (n, wrong)`` per bin; ``traffic[b]``: lookups whose candidate fell in
    bin ``b``; ``lookups``: all semantic-layer lookups, with a candidate or not; ``explored``:
    ``(n, wrong)`` of labels from exploration (would-be hits), the observed error of
    served candidates.
    """

    labels: dict[int, tuple[int, int]] = dataclasses.field(default_factory=dict)
    traffic: dict[int, int] = dataclasses.field(default_factory=dict)
    lookups: int = 0
    explored: tuple[int, int] = (0, 0)

    def add_label(self, similarity: float, correct: bool, explored: bool = False) -> None:
        """Count one label (for tests and examples; the worker counts in Redis)."""
        b = bin_of(similarity)
        n, w = self.labels.get(b, (0, 0))
        self.labels[b] = (n + 1, w + (0 if correct else 1))
        if explored:
            self.explored = (self.explored[0] + 1, self.explored[1] + (0 if correct else 1))

    def add_traffic(self, similarity: float | None) -> None:
        """Count one lookup (``None``: it had no candidate)."""
        self.lookups += 1
        if similarity is not None:
            b = bin_of(similarity)
            self.traffic[b] = self.traffic.get(b, 0) + 1

    @property
    def label_count(self) -> int:
        """Labels in all bins."""
        return sum(n for n, _ in self.labels.values())

    @property
    def wrong_count(self) -> int:
        """Labels that said wrong."""
        return sum(w for _, w in self.labels.values())

    @classmethod
    def from_record(cls, record: Mapping[bytes, bytes]) -> ScopeStats:
        """Decode a statistics hash (fields ``v``, ``N``, ``xn``, ``xw``, ``n{b}``,
        ``w{b}``, ``t{b}``). Raises ``ValueError`` on anything malformed: a caller must
        then not trust the record at all.

        Example:
            >>> s = ScopeStats.from_record({b"v": b"1", b"N": b"3", b"n90": b"2",
            ...                             b"w90": b"1", b"t90": b"3"})
            >>> s.labels, s.traffic, s.lookups
            ({90: (2, 1)}, {90: 3}, 3)
        """
        if not record:
            return cls()
        if record.get(b"v") != STATS_VERSION.encode():
            raise ValueError(f"statistics record of version {record.get(b'v')!r}")
        out = cls()
        counts: dict[str, dict[int, int]] = {"n": {}, "w": {}, "t": {}}
        for raw_name, raw_value in record.items():
            name = raw_name.decode("ascii", "replace")
            if name in ("v", "tenant"):
                continue
            value = _count(raw_value, name)
            if name == "N":
                out.lookups = value
            elif name in ("xn", "xw"):
                continue
            elif name[:1] in counts and name[1:].isdigit() and int(name[1:]) < BINS:
                counts[name[:1]][int(name[1:])] = value
            else:
                raise ValueError(f"unknown statistics field {name!r}")
        xn, xw = _count(record.get(b"xn", b"0"), "xn"), _count(record.get(b"xw", b"0"), "xw")
        if xw > xn:
            raise ValueError("more wrong explored labels than explored labels")
        out.explored = (xn, xw)
        for b, n in counts["n"].items():
            w = counts["w"].get(b, 0)
            if w > n:
                raise ValueError(f"bin {b}: {w} wrong labels of {n}")
            out.labels[b] = (n, w)
        if set(counts["w"]) - set(counts["n"]):
            raise ValueError("wrong labels in a bin without labels")
        out.traffic = counts["t"]
        if sum(out.traffic.values()) > out.lookups:
            raise ValueError("more lookups with a candidate than lookups")
        return out


#: No count a cache can reach is larger: anything above is garbage (and would not fit a
#: float in the bound's arithmetic).
MAX_COUNT = 2**53


def _count(raw: bytes, name: str) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"statistics field {name!r} is not a count: {raw!r}") from None
    if value < 0:
        raise ValueError(f"statistics field {name!r} is negative: {value}")
    if value > MAX_COUNT:
        raise ValueError(f"statistics field {name!r} is not a count: larger than 2**53")
    return value


@dataclasses.dataclass(frozen=True)
class Decision:
    """A scope's threshold under the bound.

    ``learned``: ``False`` while the scope is cold (the static rules apply, with their
    threshold ``threshold``); ``estimate`` and ``upper`` are ``E(threshold)`` and its
    upper confidence bound when learned.
    """

    threshold: float
    learned: bool
    estimate: float = 0.0
    upper: float = 0.0
    labels: int = 0


#: The decision for a scope whose statistics cannot be read: no semantic hits.
NO_SEMANTIC = Decision(threshold=1.0, learned=True, estimate=0.0, upper=0.0)


@dataclasses.dataclass(frozen=True)
class Block:
    """Adjacent similarity bins ``low..high`` sharing one error estimate."""

    high: int
    low: int
    labels: int
    wrong: int

    @property
    def error(self) -> float:
        """The smoothed share of wrong labels (half a label of prior each way)."""
        return (self.wrong + PRIOR) / (self.labels + 2 * PRIOR)


def error_blocks(stats: ScopeStats, lowest: float = LOWEST, pool: int = POOL_LABELS) -> list[Block]:
    """``P(wrong | similarity)`` as blocks of adjacent bins, most similar first: an
    isotonic (pool-adjacent-violators) fit, non-increasing in similarity (a candidate
    is never assumed more often right than a more similar one), over bins ``>=
    lowest``; a block also takes in the next less similar one while it holds fewer
    than ``pool`` labels, so that every estimate rests on at least that many (bins
    above every label join the first block that has some).

    Example:
        >>> s = ScopeStats(labels={95: (30, 0), 90: (30, 3), 85: (30, 9)})
        >>> [(b.high, b.low, b.labels, b.wrong) for b in error_blocks(s, pool=20)]
        [(99, 91, 30, 0), (90, 86, 30, 3), (85, 70, 30, 9)]
    """
    blocks: list[Block] = []
    for b in range(BINS - 1, bin_of(lowest) - 1, -1):
        n, w = stats.labels.get(b, (0, 0))
        blocks.append(Block(b, b, n, w))
        while len(blocks) > 1:
            upper, lower = blocks[-2], blocks[-1]
            if (
                upper.labels < pool
                or lower.labels == 0
                or upper.wrong * lower.labels > lower.wrong * upper.labels
            ):
                blocks[-2:] = [
                    Block(upper.high, lower.low, upper.labels + lower.labels,
                          upper.wrong + lower.wrong)
                ]  # fmt: skip
            else:
                break
    return blocks


def learned_threshold(
    stats: ScopeStats,
    delta: float,
    static: float,
    *,
    min_labels: int = MIN_LABELS,
    z: float = Z,
    lowest: float = LOWEST,
    pool: int = POOL_LABELS,
    previous: float | None = None,
    z_lower: float = Z_LOWER,
) -> Decision:
    """The lowest threshold whose upper bound on wrong answers per lookup is <= delta.

    ``E(t)``, the wrong answers per lookup when serving every candidate at ``>= t``,
    is the traffic share of each bin at or above ``t`` times its block's error
    (:func:`error_blocks`); its variance sums, per block, the squared traffic share
    it contributes times ``c(1 - c) / labels``, ``c`` the block's Wilson centre
    ``(wrong + z²/2) / (labels + z²)``. The bound is ``E(t) + z * sd``. A block
    estimated wrong more often than right (:data:`MAX_POINT_ERROR`) is never served.
    ``previous``: the threshold in effect (hysteresis): a threshold below it is
    taken only as far as the bound with ``z_lower`` standard errors allows (if that
    is not below ``previous``, ``previous`` is kept); one above it at once. Cold
    (``stats`` has fewer than ``min_labels`` labels): the static threshold,
    ``learned=False``. If no threshold in [``lowest``, 1] meets the bound,
    1.0 (only identical meanings: in practice no semantic hits until the labels say
    otherwise).

    Example:
        >>> learned_threshold(ScopeStats(), 0.02, static=0.9)
        Decision(threshold=0.9, learned=False, estimate=0.0, upper=0.0, labels=0)
    """
    labels = stats.label_count
    if labels < min_labels or stats.lookups <= 0:
        return Decision(threshold=static, learned=False, labels=labels)
    decision = _lowest_certified(stats, delta, z, lowest, pool)
    if previous is None or decision.threshold >= previous or z_lower <= z:
        return decision
    # Lower than the threshold in effect: only as far as the stricter bound allows.
    strict = _lowest_certified(stats, delta, z_lower, lowest, pool)
    if strict.threshold >= previous:
        return _lowest_certified(stats, delta, z, lowest, pool, at=previous)
    return strict


def _variance(block: Block, z: float) -> float:
    """The variance of a block's error estimate, at its Wilson centre ``(wrong + z²/2)
    / (labels + z²)``: with few labels, or none wrong, the estimate's own
    ``p (1 - p) / n`` would be near zero and the bound would trust a handful of right
    labels."""
    n = max(block.labels, 1)
    centre = (block.wrong + z * z / 2) / (block.labels + z * z)
    return centre * (1.0 - centre) / n


def _lowest_certified(
    stats: ScopeStats,
    delta: float,
    z: float,
    lowest: float,
    pool: int,
    at: float | None = None,
) -> Decision:
    """:func:`learned_threshold`'s search: from the top bin down, the last threshold
    whose upper bound is <= delta (or, with ``at``, the decision at that threshold if
    it is, else the search's)."""
    labels = stats.label_count
    total = float(stats.lookups)
    best = Decision(threshold=1.0, learned=True, labels=labels)
    mean = variance = 0.0
    for block in error_blocks(stats, lowest, pool):
        p = block.error
        if p > MAX_POINT_ERROR:
            break  # more often wrong than right here, however little traffic it gets
        share = 0.0
        for b in range(block.high, block.low - 1, -1):
            share += stats.traffic.get(b, 0) / total
            var_b = _variance(block, z)
            upper = mean + share * p + z * math.sqrt(variance + share * share * var_b)
            if upper > delta:
                return best
            best = Decision(
                threshold=round(b * BIN_WIDTH, 6),
                learned=True,
                estimate=mean + share * p,
                upper=upper,
                labels=labels,
            )
            if at is not None and best.threshold <= at + 1e-9:
                return best
        mean += share * p
        variance += share * share * _variance(block, z)
    return best


def entry_floor(record: Mapping[bytes, bytes]) -> float | None:
    """The similarity at or below which an entry must not be served, from its own
    labels (the ``lw`` field: the highest similarity at which it was judged wrong);
    ``None`` if it has none. Raises ``ValueError`` if the field is unreadable.

    Example:
        >>> entry_floor({b"lw": b"0.912"}), entry_floor({})
        (0.912, None)
    """
    raw = record.get(b"lw")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"entry label field lw is not a similarity: {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"entry label field lw out of range: {value}")
    return value


def clopper_pearson(wrong: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a binomial proportion.

    Example:
        >>> lo, hi = clopper_pearson(0, 100)
        >>> lo, round(hi, 4)
        (0.0, 0.0362)
        >>> tuple(round(x, 4) for x in clopper_pearson(5, 100))
        (0.0164, 0.1128)
    """
    if n < 0 or not 0 <= wrong <= n:
        raise ValueError(f"need 0 <= wrong <= n, got {wrong} of {n}")
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lower = 0.0 if wrong == 0 else _solve(lambda p: _sf(wrong, n, p) - alpha / 2, True)
    upper = 1.0 if wrong == n else _solve(lambda p: _cdf(wrong, n, p) - alpha / 2, False)
    return lower, upper


def _log_pmf(k: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log1p(-p)
    )  # fmt: skip


def _cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), 0 < p < 1."""
    return min(1.0, sum(math.exp(_log_pmf(i, n, p)) for i in range(k + 1)))


def _sf(k: int, n: int, p: float) -> float:
    """P(X >= k)."""
    return min(1.0, sum(math.exp(_log_pmf(i, n, p)) for i in range(k, n + 1)))


def _solve(fn: Callable[[float], float], increasing: bool) -> float:
    """The root of a monotone ``fn`` on (0, 1) by bisection."""
    lo, hi = 1e-12, 1.0 - 1e-12
    for _ in range(100):
        mid = (lo + hi) / 2
        value = fn(mid)
        if (value < 0) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
