"""Near-verbatim rewordings of a question, made by rule (issue 14).

Every near-miss set pairs a minimal-edit *trap* with a fully reworded *paraphrase*, so
none holds a near-verbatim same question other than a typo'd one: a pair check could
learn to veto "How do I freeze my card?" / "How can I freeze my card?" and no set would
see it. :func:`rewording_pairs` makes such pairs mechanically from questions a benchmark
already has (never chosen by outcome), each rule obviously answer-preserving:

* ``how do I``: an opening "How do I" <-> "How can I";
* ``what is``: an opening "What is" <-> "What's";
* ``where is``: an opening "Where is" <-> "Where's";
* ``can I``: an opening "Can I" <-> "Could I";
* ``please``: a trailing "please" dropped ("..., please?" -> "...?").

The case of the opening follows the question's ("how do i" -> "how can i", "How do I" ->
"How can I"). Only the standard library: ``tests/test_rewordings.py`` imports it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

#: Each two-way rule: the two openings (lower case, "'" for either apostrophe).
SWAPS: dict[str, tuple[str, str]] = {
    "how do I": ("how do i", "how can i"),
    "what is": ("what is", "what's"),
    "where is": ("where is", "where's"),
    "can I": ("can i", "could i"),
}
#: The one-way rule: a trailing "please" (with its comma) dropped, the end kept.
PLEASE = "please"
RULES = (*SWAPS, PLEASE)
#: Pairs per rule at most (a seeded sample beyond it), to keep a benchmark run short.
CAP = 300
SEED = 14

_PLEASE = re.compile(r",?\s+please(?P<end>[\s?.!]*)$", re.IGNORECASE)


def _opening(phrase: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(w).replace("'", "['\u2019]") for w in phrase.split())
    return re.compile(rf"(?P<lead>\s*)(?P<open>{body})\b", re.IGNORECASE)


_OPENINGS = {rule: (_opening(a), _opening(b)) for rule, (a, b) in SWAPS.items()}


def _recase(matched: str, replacement: str) -> str:
    """``replacement`` in the case of ``matched``: all lower, all upper, or a capital
    first letter and a capital pronoun "I" where ``matched`` has them."""
    if matched.isupper():
        return replacement.upper()
    out = replacement.lower()
    if matched[:1].isupper():
        out = out[:1].upper() + out[1:]
    if re.search(r"\bI\b", matched):
        out = re.sub(r"\bi\b", "I", out)
    return out


def reword(question: str, rule: str) -> str | None:
    """``question`` rewritten by ``rule`` (one of :data:`RULES`), or None when the rule
    does not apply (its opening, or the trailing "please", is not there)."""
    if rule == PLEASE:
        m = _PLEASE.search(question)
        if m is None or not question[: m.start()].strip():
            return None
        return question[: m.start()] + m.group("end")
    first, second = _OPENINGS[rule]
    a, b = SWAPS[rule]
    for pattern, replacement in ((first, b), (second, a)):
        m = pattern.match(question)
        if m is not None and question[m.end() :].strip():
            return (m.group("lead") + _recase(m.group("open"), replacement)
                    + question[m.end() :])
    return None


def rewording_pairs(questions: Iterable[str], cap: int = CAP,
                    seed: int = SEED) -> dict[str, list[tuple[str, str]]]:
    """``(stored, asked)`` pairs per rule: each distinct question with the rule's rewording
    of it, at most ``cap`` per rule (a sample seeded by ``seed``, in the questions' sorted
    order so the input's order does not matter). A rule that applies to no question has
    an empty list."""
    distinct = sorted(set(questions))
    out: dict[str, list[tuple[str, str]]] = {}
    for rule in RULES:
        pairs = [(q, r) for q in distinct if (r := reword(q, rule)) is not None and r != q]
        if len(pairs) > cap:
            pairs = random.Random(f"{seed}:{rule}").sample(pairs, cap)
        out[rule] = pairs
    return out
