"""Calibration: measure precision and recall of the cache on your own labelled data, and
pick ``min_similarity`` for a target precision.

Two kinds of labelled data (JSON Lines, one object a line):

* **pairs** ``{"q1": ..., "q2": ..., "same": true|false}``: each ``q1`` is stored (every
  pair in a scope of its own, so a query only ever sees its partner) and ``q2`` asked;
  a hit is correct when ``same`` is true.
* **clusters** ``{"text": ..., "intent": ...}``: questions that share an intent share an
  answer. They are shuffled with a fixed seed and split: ``fill_share`` of them fill the
  cache, the rest are asked; a hit is correct when the stored question has the asker's
  intent.

Everything goes through a real :class:`~paracache.SemanticIndex` (its normaliser, exact
layer, HNSW KNN pre-filtered by scope, top-k re-ranking and guards) in a temporary
namespace that is removed afterwards. Each query is looked up once at the lowest
threshold of the sweep; the candidates the guards see give both curves at once: without
guards a hit is the nearest candidate, with guards the nearest one that passes them and is
at or above the threshold, or one they vouch for below it, within the index's
``corroboration_margin`` (as the semantic layer serves them), unless the ``neighbours``
guard would abstain on it there (a rival close behind it with another answer, modelled
per threshold).

For every threshold the report gives the hit rate (hits / queries), the precision of
hits (correct / hits), the recall (correct / queries that have a correct answer in the
cache) and the false-hit rate (wrong hits / queries). It recommends the loosest
threshold whose precision meets the target there and at every stricter threshold (those
with fewer than 10 hits, or 1 in 50 queries on small data, do not count: noise).

Example:
    >>> from paracache.calibrate import calibrate
    >>> report = calibrate("support_pairs.jsonl", target_precision=0.97)  # doctest: +SKIP
    >>> report.recommended, report.at(report.recommended).hit_rate  # doctest: +SKIP
    (0.88, 0.41)
    >>> report.write_config("paracache.toml")  # doctest: +SKIP
    >>> cache = SemanticIndex.from_config("paracache.toml")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .config import load_config, load_threshold, write_config
from .guards import Guards
from .policy import TTLPolicy
from .scope import Scope
from .values import Candidate, LookupRequest, check_similarity

__all__ = [
    "CalibrationReport",
    "SweepRow",
    "calibrate",
    "load_config",
    "load_labelled",
    "load_threshold",
    "split_clusters",
    "wilson_interval",
    "write_config",
]

Kind = Literal["pairs", "clusters"]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a rate ``successes / n`` (95 % by default): what a
    measured rate may be off by. 0 false hits in 40 traps still allows about 9 %.

    Example:
        >>> [round(x, 3) for x in wilson_interval(0, 40)]
        [0.0, 0.088]
        >>> [round(x, 3) for x in wilson_interval(1, 80)]
        [0.002, 0.067]
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)

#: Thresholds swept by default: 0.50, 0.51, ..., 0.99.
DEFAULT_SWEEP = tuple(round(0.50 + i / 100, 2) for i in range(50))
#: Texts embedded, stored and looked up per step (the index memoises 1,024 embeddings).
CHUNK = 512


# --------------------------------------------------------------------------- data


def load_labelled(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any]], kind: Kind | None = None
) -> tuple[Kind, list[dict[str, Any]]]:
    """Read labelled rows (a JSONL path or an iterable of dicts) and tell their kind.

    Example:
        >>> load_labelled([{"q1": "a", "q2": "b", "same": True}])[0]
        'pairs'
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        rows = []
        with path.open(encoding="utf-8-sig") as fh:  # a byte order mark is no JSON
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object")
                rows.append(row)
    else:
        rows = [dict(r) for r in source]
    if not rows:
        raise ValueError("no labelled rows")
    first = rows[0]
    guessed: Kind = "pairs" if {"q1", "q2", "same"} <= set(first) else "clusters"
    kind = kind or guessed
    if kind not in ("pairs", "clusters"):
        raise ValueError(f"kind must be 'pairs' or 'clusters', got {kind!r}")
    need = ("q1", "q2", "same") if kind == "pairs" else ("text", "intent")
    for i, row in enumerate(rows, 1):
        missing = [k for k in need if k not in row]
        if missing:
            raise ValueError(
                f"row {i}: {kind} rows need {', '.join(need)}; missing {', '.join(missing)}"
            )
        if kind == "pairs" and not isinstance(row["same"], bool):
            raise ValueError(f"row {i}: 'same' must be true or false, got {row['same']!r}")
        for k in need[:2]:
            if not isinstance(row[k], str) or not row[k].strip():
                raise ValueError(f"row {i}: {k!r} must be a non-empty string")
    return kind, rows


def split_clusters(
    rows: Sequence[Mapping[str, Any]], seed: int = 77, fill_share: float = 0.5
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Shuffle clusters rows with ``seed`` and split them into (fill, ask) parts, as
    :func:`calibrate` does (benchmarks use it to give other caches the same split).

    Example:
        >>> fill, ask = split_clusters([{"text": str(i), "intent": "x"} for i in range(10)])
        >>> len(fill), len(ask)
        (5, 5)
    """
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    cut = max(1, min(len(shuffled) - 1, int(len(shuffled) * fill_share)))
    return shuffled[:cut], shuffled[cut:]


# --------------------------------------------------------------------------- report


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """The cache's answers at one threshold.

    Attributes:
        min_similarity: The threshold.
        hits: Queries answered from the cache.
        correct: Hits with a correct answer.
        hit_rate: ``hits / queries``.
        precision: ``correct / hits`` (1.0 when there are no hits).
        recall: ``correct / answerable`` (queries whose correct answer is in the cache).
        false_hit_rate: ``wrong hits / queries``.
    """

    min_similarity: float
    hits: int
    correct: int
    hit_rate: float
    precision: float
    recall: float
    false_hit_rate: float

    @property
    def wrong(self) -> int:
        """Hits with a wrong answer."""
        return self.hits - self.correct


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    """What :func:`calibrate` measured.

    Attributes:
        kind: ``"pairs"`` or ``"clusters"``.
        stored: Entries stored in the cache.
        queries: Questions asked.
        answerable: Questions whose correct answer was in the cache.
        seed: The seed of the split (clusters).
        target_precision: The precision the recommendation must reach.
        guards: The guard settings of the "with guards" sweep (all off: no guards).
        with_guards: The sweep with guards (the same as ``without_guards`` if none).
        without_guards: The sweep on similarity alone.
        recommended: The loosest threshold meeting ``target_precision`` with the
            guards (``None``: none does).
        recommended_without_guards: The same without guards.
        rejections_by_reason: Candidates the guards rejected, by guard.
        seconds: How long it took.
        source: Where the data came from.
        warnings: Why the recommendation should not be trusted (too few questions, or
            no question that a stored one must not answer): :meth:`write_config`
            refuses to write it unless forced.
    """

    kind: Kind
    stored: int
    queries: int
    answerable: int
    seed: int
    target_precision: float
    guards: dict[str, bool]
    with_guards: tuple[SweepRow, ...]
    without_guards: tuple[SweepRow, ...]
    recommended: float | None
    recommended_without_guards: float | None
    rejections_by_reason: dict[str, int]
    seconds: float
    source: str = ""
    warnings: tuple[str, ...] = ()

    def at(self, threshold: float | None, guards: bool = True) -> SweepRow:
        """The sweep row for ``threshold`` (the nearest swept value).

        Example:
            >>> report.at(0.9).precision  # doctest: +SKIP
            0.975
        """
        rows = self.with_guards if guards else self.without_guards
        if threshold is None:
            raise ValueError("no threshold (the target precision was not reached)")
        return min(rows, key=lambda r: abs(r.min_similarity - threshold))

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return dataclasses.asdict(self)

    def format(self, every: float = 0.02) -> str:
        """A text table of both sweeps (every ``every`` and at the recommendations)."""
        marks = {self.recommended, self.recommended_without_guards}
        guard_names = [n for n, on in self.guards.items() if on]
        lines = [
            f"{self.kind}: {self.stored} stored, {self.queries} asked "
            f"({self.answerable} with a correct answer in the cache)"
            + (f", seed {self.seed}" if self.kind == "clusters" else ""),
            f"guards: {', '.join(guard_names) if guard_names else 'none'}",
            "",
            f"{'':>6} {'with guards':^38}   {'without guards':^38}",
            f"{'min_sim':>7} {'hit rate':>9} {'precision':>9} {'recall':>8} {'wrong/100':>9}"
            f"   {'hit rate':>9} {'precision':>9} {'recall':>8} {'wrong/100':>9}",
        ]
        step = max(1, round(every / 0.01))
        for i, (g, n) in enumerate(zip(self.with_guards, self.without_guards, strict=True)):
            if i % step and g.min_similarity not in marks:
                continue
            if n.hits == 0 and g.hits == 0 and g.min_similarity not in marks:
                continue
            mark = " <" if g.min_similarity in marks else ""
            lines.append(
                f"{g.min_similarity:>7.2f} {g.hit_rate:>9.1%} {g.precision:>9.1%} "
                f"{g.recall:>8.1%} {100 * g.false_hit_rate:>9.2f}   {n.hit_rate:>9.1%} "
                f"{n.precision:>9.1%} {n.recall:>8.1%} {100 * n.false_hit_rate:>9.2f}{mark}"
            )
        lines.append("")
        for label, value, guarded in (
            ("with guards", self.recommended, True),
            ("without guards", self.recommended_without_guards, False),
        ):
            if value is None:
                lines.append(
                    f"recommended ({label}): none reaches precision {self.target_precision:.1%}"
                )
            else:
                row = self.at(value, guarded)
                lines.append(
                    f"recommended ({label}): min_similarity = {value:.2f}  (precision "
                    f"{row.precision:.1%}, hit rate {row.hit_rate:.1%}, recall {row.recall:.1%}; "
                    f"target {self.target_precision:.1%})"
                )
        if self.rejections_by_reason:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections_by_reason.items()))
            lines.append(f"guard rejections: {parts}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.append(f"took {self.seconds:.1f} s")
        return "\n".join(lines)

    def write_config(
        self,
        path: str | os.PathLike[str],
        *,
        scope_field: str | None = None,
        scope_value: str | None = None,
        force: bool = False,
    ) -> Path:
        """Write the recommended threshold and the guard settings to a TOML or JSON file
        (by its suffix) that :meth:`SemanticIndex.from_config` and :func:`load_config`
        read. With ``scope_field``/``scope_value`` it is written as that scope's threshold
        instead (e.g. ``tenant``/``medical``), keeping the rest of an existing file.
        A report with :attr:`warnings` is written only with ``force=True``.
        """
        if self.recommended is None:
            raise ValueError(
                f"no threshold reaches precision {self.target_precision:.1%}; nothing to write"
            )
        if self.warnings and not force:
            raise ValueError(
                "the recommendation rests on too little evidence ("
                + "; ".join(self.warnings)
                + "); nothing written (force=True writes it anyway)"
            )
        row = self.at(self.recommended)
        calibration = {
            "source": self.source,
            "kind": self.kind,
            "target_precision": self.target_precision,
            "precision": round(row.precision, 4),
            "hit_rate": round(row.hit_rate, 4),
            "recall": round(row.recall, 4),
            "queries": self.queries,
            "seed": self.seed,
            "date": time.strftime("%Y-%m-%d"),
        }
        if scope_field is not None:
            if not scope_value:
                raise ValueError("scope_value is needed with scope_field")
            return write_config(path, thresholds={scope_field: {scope_value: self.recommended}})
        return write_config(
            path,
            min_similarity=self.recommended,
            guards=Guards.from_dict(self.guards),
            calibration=calibration,
        )

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Draw precision and hit rate against the threshold, and precision against
        recall, with and without guards, to a PNG. Needs matplotlib
        (``pip install 'paracache[plot]'``); raises ``ImportError`` without it."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        series = [
            ("with guards", self.with_guards, "-"),
            ("without guards", self.without_guards, "--"),
        ]
        for label, rows, style in series:
            xs = [r.min_similarity for r in rows]
            left.plot(
                xs, [r.precision for r in rows], style, color="C0", label=f"precision, {label}"
            )
            left.plot(xs, [r.hit_rate for r in rows], style, color="C1", label=f"hit rate, {label}")
            right.plot([r.recall for r in rows], [r.precision for r in rows], style, label=label)
        if self.recommended is not None:
            left.axvline(self.recommended, color="grey", linewidth=0.8)
            row = self.at(self.recommended)
            right.plot(
                [row.recall],
                [row.precision],
                "o",
                color="C3",
                label=f"recommended {self.recommended:.2f}",
            )
        left.axhline(self.target_precision, color="C3", linewidth=0.8, linestyle=":")
        left.set_xlabel("min_similarity (cosine)")
        left.set_ylim(0, 1.02)
        left.legend(fontsize=7, loc="lower left")
        left.set_title("precision and hit rate by threshold")
        right.set_xlabel("recall")
        right.set_ylabel("precision")
        right.set_title("precision / recall")
        right.legend(fontsize=7, loc="lower left")
        name = Path(self.source).name if self.source else self.kind
        fig.suptitle(f"paracache calibration: {name}", fontsize=10)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


# --------------------------------------------------------------------------- the run


#: A candidate a query could be served: (similarity, correct, reach), where reach is the
#: strictest threshold it may be served at (its similarity, or higher where the guards
#: vouch for it below the threshold).
#: A candidate that could serve a query: (similarity, right, reach: the strictest threshold
#: it may be served at, disputed: a rival close behind it would make the ``neighbours``
#: guard abstain where it is served below the threshold).
_Served = tuple[float, bool, float, bool]


@dataclasses.dataclass
class _Outcome:
    """One query: the candidates that could serve it, most similar first, without guards
    (the nearest) and with guards (those that pass them)."""

    plain: list[_Served] = dataclasses.field(default_factory=list)
    guarded: list[_Served] = dataclasses.field(default_factory=list)


def _served(candidates: Sequence[_Served], threshold: float) -> _Served | None:
    """The candidate served at ``threshold``, as the core chooses: the most similar one
    whose reach is at or above it, or none when it is below the threshold (vouched for)
    and disputed."""
    for cand in candidates:
        if cand[2] >= threshold - 1e-9:
            return None if cand[3] and cand[0] < threshold - 1e-9 else cand
    return None


def _reach(
    guards: Guards, query: str, prompt: str, similarity: float, thresholds: Sequence[float],
    margin: float,
) -> float:
    """The strictest of ``thresholds`` (ascending) a candidate may be served at: its
    similarity, or a stricter one the guards vouch for it below (within ``margin``; a
    threshold of 1.0 gets none), as :meth:`paracache.guards.Guards.vouches` decides."""
    reach = similarity
    for t in thresholds:
        if t <= similarity or t >= 1.0 or t - similarity > margin + 1e-9:
            continue
        if Guards.vouches(query, prompt, similarity, t, guards.learned):
            reach = max(reach, t)
    return reach


def _sweep(
    outcomes: Sequence[Sequence[_Served]],
    thresholds: Sequence[float],
    answerable: int,
) -> tuple[SweepRow, ...]:
    rows = []
    n = len(outcomes)
    for t in thresholds:
        hits = correct = 0
        for candidates in outcomes:
            o = _served(candidates, t)
            if o is not None:
                hits += 1
                correct += o[1]
        rows.append(
            SweepRow(
                min_similarity=t,
                hits=hits,
                correct=correct,
                hit_rate=hits / n if n else 0.0,
                precision=correct / hits if hits else 1.0,
                recall=correct / answerable if answerable else 0.0,
                false_hit_rate=(hits - correct) / n if n else 0.0,
            )
        )
    return tuple(rows)


def _recommend(rows: Sequence[SweepRow], target: float, min_hits: int = 1) -> float | None:
    """The loosest threshold whose precision meets ``target`` there and at every stricter
    threshold with at least ``min_hits`` hits (one wrong hit among three is noise)."""
    best = None
    for row in sorted(rows, key=lambda r: -r.min_similarity):
        if row.hits < min_hits:
            continue
        if row.precision < target:
            break
        best = row.min_similarity
    return best


#: Fewer questions than this and a recommendation is a warning, not a result.
MIN_QUERIES = 30


def _warnings(queries: int, plain: Sequence[SweepRow]) -> tuple[str, ...]:
    """Why a recommendation from this sweep (on similarity alone) cannot be trusted.

    Example:
        >>> _warnings(6, [SweepRow(0.5, 6, 6, 1.0, 1.0, 1.0, 0.0)])[0]
        'only 6 questions asked: a threshold chosen on so few is noise (use a few hundred)'
    """
    out = []
    if queries < MIN_QUERIES:
        out.append(
            f"only {queries} questions asked: a threshold chosen on so few is noise "
            "(use a few hundred)"
        )
    if not any(row.wrong for row in plain):
        out.append(
            "no stored question was ever a wrong answer at any similarity swept, so "
            "precision is 100 % everywhere and the loosest threshold wins: add questions "
            "that must not match (pairs with same=false, or other intents)"
        )
    return tuple(out)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="text", leave=False)


def calibrate(
    data: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    *,
    kind: Kind | None = None,
    redis_url: str | None = None,
    vectorizer: Any = None,
    guards: Guards | None = None,
    target_precision: float = 0.95,
    thresholds: Sequence[float] = DEFAULT_SWEEP,
    seed: int = 77,
    fill_share: float = 0.5,
    limit: int | None = None,
    top_k: int = 4,
    progress: bool = True,
    index_options: Mapping[str, Any] | None = None,
) -> CalibrationReport:
    """Measure the cache on labelled data and recommend ``min_similarity``.

    Args:
        data: A JSONL path or rows: pairs ``{"q1", "q2", "same"}`` or clusters
            ``{"text", "intent"}`` (see the module docs).
        kind: ``"pairs"`` or ``"clusters"`` (default: guessed from the first row).
        redis_url: The Redis to run on (default: as :class:`SemanticIndex`; a temporary
            namespace is used and removed).
        vectorizer: The embedder (default: the cache's default).
        guards: The guards of the "with guards" sweep (default: ``Guards()``, all on).
        target_precision: Precision of hits the recommendation must reach.
        thresholds: The ``min_similarity`` values to sweep.
        seed: Seed of the shuffle and split (clusters) and of the sample (``limit``).
        fill_share: Share of clusters rows that fill the cache.
        limit: Use at most this many rows (a seeded sample), for a quick run.
        top_k: Candidates the semantic layer considers (as ``SemanticIndex(top_k=)``).
        progress: Show a progress bar while embedding.
        index_options: Further :class:`SemanticIndex` options (``normalizer``, ``hnsw``...).

    Example:
        >>> rows = [{"text": "refund policy?", "intent": "refund"}, ...]  # doctest: +SKIP
        >>> calibrate(rows, kind="clusters").recommended  # doctest: +SKIP
        0.88
    """
    from .index import SemanticIndex

    target = check_similarity(target_precision, "target_precision")
    sweep = tuple(sorted({round(check_similarity(t, "thresholds"), 4) for t in thresholds}))
    if not sweep:
        raise ValueError("thresholds is empty")
    if not 0.0 < fill_share < 1.0:
        raise ValueError(f"fill_share must be in (0, 1), got {fill_share!r}")
    guards = Guards() if guards is None else guards
    kind, rows = load_labelled(data, kind)
    source = str(data) if isinstance(data, (str, os.PathLike)) else ""
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)

    if kind == "pairs":
        stores = [(r["q1"], str(i), Scope(fields={"pair": i})) for i, r in enumerate(rows)]
        asks = [
            (r["q2"], str(i) if r["same"] else "", Scope(fields={"pair": i}))
            for i, r in enumerate(rows)
        ]
    else:
        fill, ask = split_clusters(rows, seed, fill_share)
        # Each stored question gets an answer of its own, as an LLM's answers all differ
        # (the label as the answer would tell the ``neighbours`` guard which neighbours
        # agree, which no cache knows); a hit is right when its entry's label is the asker's.
        stores = [(r["text"], f"{r['intent']}#{i}", Scope()) for i, r in enumerate(fill)]
        stored_intents = {str(r["intent"]) for r in fill}
        asks = [
            (r["text"], str(r["intent"]) if str(r["intent"]) in stored_intents else "", Scope())
            for r in ask
        ]
    labels = {answer: answer.rpartition("#")[0] or answer for _, answer, _ in stores}

    def right(label: str, response: str | bytes | None) -> bool:
        if isinstance(response, bytes):
            response = response.decode("utf-8", "replace")
        return bool(label) and response is not None and labels.get(response) == label

    answerable = sum(1 for _, label, _ in asks if label)

    options: dict[str, Any] = {
        "namespace": f"paracache-calibrate-{uuid.uuid4().hex[:10]}",
        "vectorizer": vectorizer,
        "guards": guards if guards.active else None,
        "min_similarity": sweep[0],
        "top_k": top_k,
        "ttl_policy": TTLPolicy(default_ttl=6 * 3600, volatile_ttl=None, max_temperature=None),
        "track_hits": False,
        "embed_timeout": None,
        "timeout": 5.0,
    }
    options.update(index_options or {})
    t0 = time.perf_counter()
    index = SemanticIndex(redis_url, **options)
    seen: list[tuple[float, bytes | None, str | None, float, bool]] = []
    rejections: Counter[str] = Counter()
    # The ``neighbours`` guard, per threshold: the core asks it about the candidate about
    # to be served, with all of them; record those, and ask it again as if the candidate
    # were below the threshold (served on the guards' vouching).
    contest = index.core.contest
    rivals: list[Sequence[Candidate]] = [()]
    if contest is not None:
        hook = contest

        def recording(req: LookupRequest, cand: Candidate,
                      candidates: Sequence[Candidate]) -> str | None:
            rivals[0] = candidates
            return hook(req, cand, candidates)

        index.core.contest = recording
    # Candidates below the threshold the guards vouch for are served too (the sweep's
    # "with guards" side models it per threshold: how far below they may be depends on
    # it; the core asks ``corroborate`` before ``accept``).
    margin = index.core.settings.corroboration_margin if index.core.corroborate else 0.0

    def observe(req: LookupRequest, cand: Candidate, reason: str | None) -> None:
        reach = cand.similarity
        prompt = cand.fields.get(b"prompt")
        if margin > 0 and prompt is not None and reason is None:
            text = prompt.decode("utf-8", "replace")
            reach = _reach(guards, req.prompt or req.text, text, cand.similarity, sweep, margin)
        disputed = (
            reason is None
            and contest is not None
            and contest(dataclasses.replace(req, min_similarity=1.0), cand, rivals[0])
            is not None
        )
        seen.append((cand.similarity, cand.fields.get(b"response"), reason, reach, disputed))
        if reason:
            rejections[reason] += 1

    index.core.add_candidate_listener(observe)
    bar = _progress(len(stores) + len(asks), "calibrate: embed + store", progress)
    outcomes: list[_Outcome] = []
    try:
        for start in range(0, len(stores), CHUNK):
            chunk = stores[start : start + CHUNK]
            index.embed_many([text for text, _, _ in chunk])
            for text, label, scope in chunk:
                if index.store(text, label, scope) is None:
                    raise RuntimeError("calibrate: a store failed (is Redis reachable?)")
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.set_description("calibrate: embed + ask")
        for start in range(0, len(asks), CHUNK):
            chunk_asks = asks[start : start + CHUNK]
            index.embed_many([text for text, _, _ in chunk_asks])
            for text, label, scope in chunk_asks:
                seen.clear()
                rivals[0] = ()
                verdict = index.lookup_verdict(text, scope)
                if verdict.outcome == "error":
                    raise RuntimeError(f"calibrate: a lookup failed: {verdict.reason}")
                outcome = _Outcome()
                if verdict.hit is not None and verdict.hit.layer == "exact":
                    ok = right(label, verdict.hit.response)
                    outcome.plain = outcome.guarded = [(1.0, ok, 1.0, False)]
                else:
                    seen.sort(key=lambda s: -s[0])
                    if seen:
                        sim, response, _, _, _ = seen[0]
                        outcome.plain = [(sim, right(label, response), sim, False)]
                    outcome.guarded = [
                        (sim, right(label, response), reach, disputed)
                        for sim, response, reason, reach, disputed in seen
                        if reason is None
                    ]
                outcomes.append(outcome)
            if bar is not None:
                bar.update(len(chunk_asks))
    finally:
        if bar is not None:
            bar.close()
        try:
            index.clear()
        finally:
            index.close()
    min_hits = max(1, min(10, len(asks) // 50))
    without = _sweep([o.plain for o in outcomes], sweep, answerable)
    warnings = _warnings(len(asks), without)
    with_ = (
        _sweep([o.guarded for o in outcomes], sweep, answerable)
        if guards.active
        else without
    )
    return CalibrationReport(
        kind=kind,
        stored=len(stores),
        queries=len(asks),
        answerable=answerable,
        seed=seed,
        target_precision=target,
        guards=guards.as_dict(),
        with_guards=with_,
        without_guards=without,
        recommended=_recommend(with_, target, min_hits),
        recommended_without_guards=_recommend(without, target, min_hits),
        rejections_by_reason=dict(rejections),
        seconds=time.perf_counter() - t0,
        source=source,
        warnings=warnings,
    )


# Re-exported: config files are written from a calibration report.
_ = (load_config, load_threshold)
