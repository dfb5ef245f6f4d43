"""The learned pair check: a logistic regression on a pair's similarity and its
words (:func:`same_question`), weights in ``assets/pair_check.json``."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path

from ..lazy import once
from .analysis import features
from .compare import corroborates
from .vocabulary import _STOP, _stem

#: The learned pair check's weights (``assets/pair_check.json``), trained by
#: ``benchmarks/train_pair_check.py``.
_PAIR_CHECK_PATH = Path(__file__).resolve().parent.parent / "assets" / "pair_check.json"
#: The names of :func:`pair_features`, in order.
PAIR_FEATURES = ("similarity", "overlap", "only_query", "only_candidate", "one_swap",
                 "corroborated", "same_kind", "negation_differs", "length_ratio")


def _one_swap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The two token sequences are the same but for one content word (or two) replaced
    by others ("for *adults*" / "for *children*", "phone battery" / "laptop battery")."""
    if abs(len(a) - len(b)) > 1 or len(a) < 3:
        return False
    i = 0
    n = min(len(a), len(b))
    while i < n and a[i] == b[i]:
        i += 1
    j = 0
    while j < n - i and a[-1 - j] == b[-1 - j]:
        j += 1
    mid_a, mid_b = a[i : len(a) - j], b[i : len(b) - j]
    if not mid_a or not mid_b or len(mid_a) > 2 or len(mid_b) > 2:
        return False
    ca = {_stem(t) for t in mid_a if t not in _STOP and t.isalpha()}
    cb = {_stem(t) for t in mid_b if t not in _STOP and t.isalpha()}
    return bool(ca) and bool(cb) and ca.isdisjoint(cb)


def pair_features(query: str, candidate: str, similarity: float) -> tuple[float, ...]:
    """What the learned pair check sees of two questions: their embedding similarity and
    how their content words (stems, as the guards read them) overlap.

    Example:
        >>> [round(x, 2) for x in pair_features("Is coffee bad for you?",
        ...                                     "Is drinking coffee unhealthy?", 0.877)]
        [0.88, 0.25, 0.5, 0.67, 0.0, 0.0, 1.0, 0.0, 0.8]
    """
    return (similarity, *_pair_words(query, candidate))


@functools.lru_cache(maxsize=1024)  # one lookup asks about a pair to vouch, then to check
def _pair_words(query: str, candidate: str) -> tuple[float, ...]:
    """:func:`pair_features` but the similarity: what the two texts' words say."""
    q, c = features(query), features(candidate)
    qs, cs = q.asserted | q.negated, c.asserted | c.negated
    shared = len(qs & cs)
    only_q, only_c = len(qs) - shared, len(cs) - shared
    nq, nc = len(q.tokens) or 1, len(c.tokens) or 1
    return (
        shared / (len(qs | cs) or 1),
        only_q / (len(qs) or 1),
        only_c / (len(cs) or 1),
        float(_one_swap(q.tokens, c.tokens)),
        float(corroborates(query, candidate)),
        float(q.wh_question == c.wh_question),
        float(bool(q.negations) != bool(c.negations)),
        min(nq, nc) / max(nq, nc),
    )


@once  # not functools.cache: threads asking at once would each load it
def _pair_model() -> tuple[tuple[float, ...], float, float, float]:
    """(weights, bias, vouching threshold, veto threshold) of the learned pair check."""
    with _PAIR_CHECK_PATH.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    if tuple(doc["features"]) != PAIR_FEATURES:
        raise ValueError("assets/pair_check.json was trained on other features: retrain it")
    return tuple(doc["weights"]), float(doc["bias"]), float(doc["threshold"]), float(doc["veto"])


def _latin_letters(text: str) -> bool:
    """Whether every letter of ``text`` is ASCII: the learned check was trained on
    English, and a symbol ("35°C", "£100", a curly apostrophe, a dash) does not make a
    question another language's.

    Example:
        >>> _latin_letters("It\u2019s 35°C out, is £100 enough?"), _latin_letters("¿Dónde está?")
        (True, False)
    """
    return text.isascii() or all(ch.isascii() for ch in text if ch.isalpha())


def same_question(query: str, candidate: str, similarity: float) -> float:
    """The learned pair check: the probability that ``candidate``'s answer answers
    ``query`` (a logistic regression on :func:`pair_features`).

    Example:
        >>> same_question("Is it bad to eat late at night?",
        ...               "Is eating late at night unhealthy?", 0.889) > 0.5
        True
    """
    weights, bias = _pair_model()[:2]
    return _pair_probability(weights, bias, query, candidate, similarity)


def _pair_probability(
    weights: Sequence[float], bias: float, query: str, candidate: str, similarity: float
) -> float:
    """The logistic of :func:`pair_features` under ``weights`` and ``bias``: the shipped
    check's in :func:`same_question`, another's in the benchmarks that compare checks."""
    z = bias + sum(w * x for w, x in zip(weights, pair_features(query, candidate, similarity),
                                         strict=True))
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
