"""Judges: are a fresh answer and a cached one interchangeable?

A judge is any callable ``judge(cached, fresh) -> bool`` (``True``: the cached answer
would have been right to serve). The bound (:mod:`paracache.bound`) learns from what
it says, so it decides what "right" means:

- :class:`ExactJudge` (the default): the two answers are equal after normalisation
  (Unicode NFKC, case, whitespace, punctuation at the ends). Right for deterministic
  models (temperature 0), whose answer to the same question is the same text.
- :class:`EmbeddingJudge`: the answers' embeddings are at least ``min_similarity``
  apart in cosine similarity. For answers reworded from call to call.
- Any callable, e.g. an LLM asked "do these two answers say the same?".

**Sampled models (temperature > 0).** Two samples of the same question differ in
wording, so an exact-match judge would call most right answers wrong and the bound
would close the semantic layer for nothing. With :class:`ExactJudge`, lookups under a
scope with a temperature above 0 are therefore not labelled (they keep the static
rules; counted as ``labels_skipped``); give an :class:`EmbeddingJudge` or an LLM judge
to learn there. Whatever the judge, a label then says "the cached answer is as good as
one more sample", which is what serving it means for a sampled model.

Judges run off the request path, in the label worker, each call bounded by
:func:`call_judge` (a judge that raises or hangs drops that label, counted).

Example:
    >>> ExactJudge()("Refunds within 30 days.", "  refunds within 30 days ")
    True
    >>> ExactJudge()("Refunds within 30 days.", "Refunds within 14 days.")
    False
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
from collections.abc import Callable
from typing import Any

from .policy import Normalizer
from .pools import BoundedPool
from .reals import is_real

__all__ = [
    "EmbeddingJudge",
    "ExactJudge",
    "Judge",
    "JudgeFailed",
    "QuestionVerifier",
    "call_judge",
    "check_judge",
    "check_judge_timeout",
    "check_not_a_class",
]

#: A judge: ``(cached answer, fresh answer) -> right to serve?``
Judge = Callable[[str, str], bool]


class JudgeFailed(RuntimeError):
    """A judge raised, hung past its time limit or returned something not a bool."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        #: ``"judge_error"`` or ``"judge_timeout"`` (the metric's kind).
        self.kind = kind


class ExactJudge:
    """Equal after normalisation (the default; for deterministic models).

    Example:
        >>> ExactJudge()("Yes.", "yes")
        True
    """

    #: Labels from this judge are meaningless for sampled models (see module docs).
    deterministic_only = True

    def __init__(self, normalizer: Normalizer | None = None) -> None:
        self.normalizer = normalizer or Normalizer()

    def __call__(self, cached: str, fresh: str) -> bool:
        return bool(self.normalizer(cached) == self.normalizer(fresh))

    def __repr__(self) -> str:
        return "ExactJudge()"


class EmbeddingJudge:
    """Cosine similarity of the two answers' embeddings at least ``min_similarity``.

    Args:
        vectorizer: Anything with ``embed(text) -> list[float]`` (a RedisVL vectorizer);
            default: the offline all-MiniLM-L6-v2.
        min_similarity: How close two answers must be to count as the same (default
            0.9).

    Example:
        >>> judge = EmbeddingJudge(min_similarity=0.9)                    # doctest: +SKIP
        >>> judge("Refunds take 30 days.", "Money back within 30 days.")  # doctest: +SKIP
        True
    """

    deterministic_only = False

    def __init__(self, vectorizer: Any = None, *, min_similarity: float = 0.9) -> None:
        if not is_real(min_similarity):
            raise TypeError(f"min_similarity must be a number in [0, 1], got {min_similarity!r}")
        if not 0.0 <= min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [0, 1], got {min_similarity!r}")
        if vectorizer is None:
            from .vectorizers import default_vectorizer

            vectorizer = default_vectorizer()
        if not callable(getattr(vectorizer, "embed", None)):
            raise TypeError("vectorizer must have an embed(text) method")
        self.vectorizer = vectorizer
        self.min_similarity = float(min_similarity)
        self._normalizer = Normalizer()

    def __call__(self, cached: str, fresh: str) -> bool:
        a, b = self._normalizer(cached), self._normalizer(fresh)
        if a == b:
            return True
        u = [float(x) for x in self.vectorizer.embed(a[:2000])]
        v = [float(x) for x in self.vectorizer.embed(b[:2000])]
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        norm = math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v))
        return bool(norm > 0 and dot / norm >= self.min_similarity)

    def __repr__(self) -> str:
        return f"EmbeddingJudge(min_similarity={self.min_similarity})"


class QuestionVerifier:
    """A near-miss verifier (``verifier=``, ``paracache worker --verifier embedding``):
    approves when the question and the cached question are at least ``min_similarity``
    alike under ``vectorizer``'s embeddings (the cached answer is not looked at).

    Near misses lie *below* the cache's threshold by the cache's own embedder, so with
    the same model this only promotes what a threshold of ``min_similarity`` would
    serve: worth it with another, stronger embedding model (``vectorizer=``), or as a
    cheap stand-in while an LLM verifier is being written.

    Example:
        >>> verify = QuestionVerifier(min_similarity=0.95)          # doctest: +SKIP
        >>> verify("how do I freeze my card", "How can I freeze my card?",
        ...        "Tap Freeze.")                                       # doctest: +SKIP
        True
    """

    def __init__(self, vectorizer: Any = None, *, min_similarity: float = 0.95) -> None:
        self._judge = EmbeddingJudge(vectorizer, min_similarity=min_similarity)
        self.min_similarity = self._judge.min_similarity

    def __call__(self, question: str, cached_question: str, cached_answer: str) -> bool:
        return self._judge(cached_question, question)

    def __repr__(self) -> str:
        return f"QuestionVerifier(min_similarity={self.min_similarity})"


def check_judge(judge: Any) -> Judge:
    """Validate a judge argument (``None``: :class:`ExactJudge`).

    Example:
        >>> check_judge(None)
        ExactJudge()
        >>> check_judge(42)
        Traceback (most recent call last):
        ...
        TypeError: judge must be a callable (cached, fresh) -> bool, got 42
    """
    if judge is None:
        return ExactJudge()
    if not callable(judge):
        raise TypeError(f"judge must be a callable (cached, fresh) -> bool, got {judge!r}")
    check_not_a_class(judge, "judge")
    return judge  # type: ignore[no-any-return]


def check_not_a_class(value: Any, name: str) -> None:
    """Refuse a class where a judge or verifier is expected: callable, but calling it
    builds an object instead of saying ``True`` or ``False`` (``judge=EmbeddingJudge``
    for ``judge=EmbeddingJudge()``), so every label would be dropped at run time.

    Example:
        >>> check_not_a_class(ExactJudge, "judge")
        Traceback (most recent call last):
        ...
        TypeError: judge must be ... not the class ExactJudge: did you mean ExactJudge()?
    """
    if isinstance(value, type):
        raise TypeError(
            f"{name} must be a callable returning a bool, not the class {value.__name__}: "
            f"did you mean {value.__name__}()?"
        )


def check_judge_timeout(value: Any, name: str = "judge_timeout") -> float:
    """Validate a judge's time limit: a finite number of seconds > 0 (NaN or infinity
    would make every judge call that takes any time fail).

    Example:
        >>> check_judge_timeout(10)
        10.0
        >>> check_judge_timeout(float("inf"))
        Traceback (most recent call last):
        ...
        ValueError: judge_timeout must be a finite number of seconds > 0 (at most ...), got inf
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a number of seconds > 0, got {value!r}")
    if not 0.0 < value <= threading.TIMEOUT_MAX:  # NaN fails this too
        raise ValueError(
            f"{name} must be a finite number of seconds > 0 (at most "
            f"{threading.TIMEOUT_MAX:.0f}), got {value!r}"
        )
    return float(value)


#: A judge call is only started when a thread is free to run it: hung judges never
#: pile up behind each other.
_JUDGES = BoundedPool(2, "paracache-judge")


def call_judge(judge: Judge, cached: str, fresh: str, timeout: float) -> bool:
    """``judge(cached, fresh)`` within ``timeout`` seconds, or :class:`JudgeFailed`.

    A hung judge keeps its thread (Python cannot stop it) but not the caller; while
    every judge thread is stuck, further calls fail at once after waiting ``timeout``.

    Example:
        >>> call_judge(ExactJudge(), "a", "A", timeout=1.0)
        True
    """
    future = _JUDGES.submit(judge, cached, fresh, timeout=timeout)
    if future is None:
        raise JudgeFailed("judge_timeout", f"no judge thread free within {timeout:g}s")
    try:
        verdict = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise JudgeFailed("judge_timeout", f"judge took more than {timeout:g}s") from None
    except Exception as exc:
        raise JudgeFailed("judge_error", f"judge raised {exc!r}") from exc
    if not isinstance(verdict, bool):
        kind = type(verdict)
        if kind.__module__ != "numpy" or kind.__name__ not in ("bool_", "bool"):
            raise JudgeFailed("judge_error", f"judge returned {verdict!r}, not a bool")
        verdict = bool(verdict)  # numpy's bool (e.g. a comparison of two scores) is one
    return verdict
