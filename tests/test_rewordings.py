"""The rule-based near-verbatim rewording pairs of ``benchmarks/rewordings.py`` (issue 14):
pure functions, no Redis."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "rewordings.py"
_SPEC = importlib.util.spec_from_file_location("rewordings", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
rewordings = importlib.util.module_from_spec(_SPEC)
sys.modules["rewordings"] = rewordings
_SPEC.loader.exec_module(rewordings)


@pytest.mark.parametrize(
    ("question", "rule", "expected"),
    [
        ("How do I freeze my card?", "how do I", "How can I freeze my card?"),
        ("How can I freeze my card?", "how do I", "How do I freeze my card?"),
        ("how do i top up", "how do I", "how can i top up"),
        ("What is the fee?", "what is", "What's the fee?"),
        ("What's the fee?", "what is", "What is the fee?"),
        ("what\u2019s the fee", "what is", "what is the fee"),
        ("Where is my card?", "where is", "Where's my card?"),
        ("Where's my card?", "where is", "Where is my card?"),
        ("Can I pay with PayPal?", "can I", "Could I pay with PayPal?"),
        ("could i get a refund", "can I", "can i get a refund"),
        ("HOW DO I PAY", "how do I", "HOW CAN I PAY"),
        ("Send me a new card, please?", "please", "Send me a new card?"),
        ("Cancel my order please", "please", "Cancel my order"),
    ],
)
def test_reword_applies_the_rule(question: str, rule: str, expected: str) -> None:
    assert rewordings.reword(question, rule) == expected


@pytest.mark.parametrize(
    ("question", "rule"),
    [
        ("Why do I need to verify?", "how do I"),  # another opening
        ("Tell me how do I freeze it", "how do I"),  # not the opening
        ("How do you freeze a card?", "how do I"),
        ("What isn't covered?", "what is"),  # "isn't" is not "is"
        ("Whatever is left?", "what is"),
        ("Where was my card sent?", "where is"),
        ("Cannot I pay?", "can I"),
        ("Please cancel my order", "please"),  # not trailing
        ("please", "please"),  # nothing would be left
        ("How do I", "how do I"),  # nothing after the opening
    ],
)
def test_reword_refuses_when_the_opening_does_not_match(question: str, rule: str) -> None:
    assert rewordings.reword(question, rule) is None


def test_pairs_per_rule_each_question_once_in_any_order() -> None:
    questions = ["How do I freeze my card?", "What is my limit?", "Why was I charged?",
                 "How do I freeze my card?", "Where's my card, please?"]
    pairs = rewordings.rewording_pairs(questions)
    assert set(pairs) == set(rewordings.RULES)
    assert pairs["how do I"] == [("How do I freeze my card?", "How can I freeze my card?")]
    assert pairs["what is"] == [("What is my limit?", "What's my limit?")]
    assert pairs["where is"] == [("Where's my card, please?", "Where is my card, please?")]
    assert pairs["please"] == [("Where's my card, please?", "Where's my card?")]
    assert pairs["can I"] == []
    assert rewordings.rewording_pairs(reversed(questions)) == pairs


def test_pairs_are_capped_by_a_seeded_sample() -> None:
    questions = [f"How do I pay bill number {i}?" for i in range(50)]
    first = rewordings.rewording_pairs(questions, cap=10, seed=1)["how do I"]
    assert len(first) == 10
    assert len(set(first)) == 10
    assert first == rewordings.rewording_pairs(list(reversed(questions)), cap=10,
                                               seed=1)["how do I"]
    assert first != rewordings.rewording_pairs(questions, cap=10, seed=2)["how do I"]
    assert all(a.replace("do I", "can I") == b for a, b in first)
    assert len(rewordings.rewording_pairs(questions, cap=100)["how do I"]) == 50
