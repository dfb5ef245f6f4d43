"""Answer quality beyond the guards: corroborated candidates just below the threshold are
served (a shared specific detail, every guard passed), and prompts are embedded without
pleasantries (greetings, politeness frames, sign-offs) while the exact layer's key stays.

The cases are written for these tests; the benchmark's trap sets
(benchmarks/data/traps*.jsonl) are separate.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paracache import Scope
from paracache.calibrate import _reach, _served, _sweep
from paracache.core import DEFAULT_CORROBORATION_MARGIN, Candidate, Core, LookupRequest, Settings
from paracache.guards import Guards, corroborates
from paracache.policy import _RE_P_TRAIL, _may_trail, strip_pleasantries
from paracache.schema import Layout

# --------------------------------------------------------------------------- corroborates

CORROBORATED = [
    ("Do you accept PayPal for phone bills?", "Can I pay my phone bill with PayPal?"),
    ("Any news about order 48213?", "Where is my order 48213?"),
    ("Is a $60 gift card refundable?", "Can I get a refund on a $60 gift card?"),
    ("Can I use the gym at 6am?", "Is the gym open at 6am?"),
    ("When will a parcel to Norway arrive?", "How long does shipping to Norway take?"),
    ("Is a two-night stay enough for the voucher?", "Does the voucher need 2 nights?"),
]
NOT_CORROBORATED = [
    # nothing specific in common: the embedding alone has to be sure
    ("I forgot my password, what do I do?", "How do I reset my password?"),
    ("Can I pay my phone bill online?", "Can I pay my phone bill with PayPal?"),
    # a detail on one side only, or a different one
    ("Can I take Ibuprofen with Aspirin?", "Can I take Ibuprofen?"),
    ("Where is my order 48213?", "Where is my order?"),
    ("Is a $60 gift card refundable?", "Is a $60 gift card refundable after 14 days?"),
    ("Is the gym open at 6am?", "Is the gym open at 7am?"),
    ("Can I pay with Apple Pay?", "Can I pay with Google Pay?"),
]


@pytest.mark.parametrize(("query", "stored"), CORROBORATED)
def test_shared_details_corroborate(query: str, stored: str) -> None:
    assert corroborates(query, stored) and corroborates(stored, query)
    assert Guards().check(query, stored) is None


@pytest.mark.parametrize(("query", "stored"), NOT_CORROBORATED)
def test_missing_or_different_details_do_not_corroborate(query: str, stored: str) -> None:
    assert not corroborates(query, stored) and not corroborates(stored, query)


# --------------------------------------------------------------------------- in the core


def _candidate(core: Core, prompt: str, similarity: float) -> Candidate:
    mapping = core.prepare_store(prompt, f"answer to {prompt}", Scope()).mapping
    fields = {k.encode(): str(v).encode() for k, v in mapping.items()}
    return Candidate(key=f"k:e:{abs(hash(prompt))}", similarity=similarity, fields=fields)


def _core(margin: float = 0.05, corroborate: bool = True) -> Core:
    guards = Guards()
    return Core(
        Layout.build("t", "m:1", dims=4),
        Settings(corroboration_margin=margin),
        accept=guards.accept,
        corroborate=guards.corroborate if corroborate else None,
    )


def test_core_serves_a_corroborated_candidate_below_the_threshold() -> None:
    core = _core()
    req: LookupRequest = core.prepare_lookup("Do you accept PayPal for phone bills?", Scope())
    assert req.min_similarity == 0.90
    hit, best, reason = core._choose(req, [_candidate(core, CORROBORATED[0][1], 0.87)])
    assert hit is not None and hit.similarity == 0.87
    assert best == 0.87 and "corroborated" in reason and ">= 0.850" in reason
    # Below the margin: a miss.
    hit, _, reason = core._choose(req, [_candidate(core, CORROBORATED[0][1], 0.849)])
    assert hit is None and reason == "best similarity 0.849 < 0.900"


def test_core_skips_uncorroborated_candidates_below_the_threshold() -> None:
    core = _core()
    req = core.prepare_lookup("I forgot my password, what do I do?", Scope())
    cands = [  # nothing specific shared, no typo, below the learned check's band
        _candidate(core, "How do I reset my password?", 0.78),
        _candidate(core, "Password reset steps", 0.76),
    ]
    hit, best, reason = core._choose(req, cands)
    assert hit is None and best == 0.78 and reason == "best similarity 0.780 < 0.900"
    # Skipped, not rejected: the guards' counters are for candidates that could be hits.
    assert core.recorder.snapshot().rejections == 0


def test_core_top_k_prefers_above_threshold_then_corroborated() -> None:
    core = _core()
    req = core.prepare_lookup("Any news about order 48213?", Scope())
    cands = [
        _candidate(core, "Any news about order 48231?", 0.97),  # the wrong order: rejected
        _candidate(core, "What is the status of my order?", 0.91),  # no id: rejected
        _candidate(core, "Where is my order 48213?", 0.86),  # corroborated: served
    ]
    hit, _, reason = core._choose(req, cands)
    assert hit is not None and hit.prompt == "Where is my order 48213?"
    assert "corroborated" in reason and "identifiers" in reason
    assert core.recorder.snapshot().rejections_by_reason == {"identifiers": 2}


def test_corroborated_candidates_still_pass_every_guard() -> None:
    core = _core()
    req = core.prepare_lookup("Please don't cancel order 48213", Scope())
    assert corroborates("Please don't cancel order 48213", "Please cancel order 48213")
    hit, _, reason = core._choose(req, [_candidate(core, "Please cancel order 48213", 0.88)])
    assert hit is None and "negation" in reason


def test_corroboration_off() -> None:
    stored = CORROBORATED[0][1]
    for core in (_core(margin=0.0), _core(corroborate=False)):
        req = core.prepare_lookup(CORROBORATED[0][0], Scope())
        assert core._choose(req, [_candidate(core, stored, 0.87)])[0] is None
    # A hook that raises vouches for nothing (and is counted).
    core = _core()
    core.corroborate = lambda r, c: 1 / 0  # type: ignore[assignment,return-value]
    req = core.prepare_lookup(CORROBORATED[0][0], Scope())
    assert core._choose(req, [_candidate(core, stored, 0.87)])[0] is None
    assert core.recorder.snapshot().errors_by_kind["guard"] == 1
    # Above the threshold the hook is not asked.
    assert core._choose(req, [_candidate(core, stored, 0.95)])[0] is not None


def test_per_call_threshold_moves_the_margin() -> None:
    core = _core()
    req = core.prepare_lookup(CORROBORATED[0][0], Scope(), min_similarity=0.95)
    stored = CORROBORATED[0][1]
    assert core._choose(req, [_candidate(core, stored, 0.91)])[0] is not None
    assert core._choose(req, [_candidate(core, stored, 0.89)])[0] is None


def test_calibration_sweep_models_corroboration() -> None:
    # (similarity, correct, reach: the strictest threshold it may be served at), most
    # similar first, per query
    outcomes = [
        [(0.95, True, 0.95, False)],
        [(0.88, True, 0.93, False)],  # vouched for up to the threshold 0.93
        [(0.88, False, 0.88, False)],  # served only at 0.88 and below
        [(0.86, False, 0.86, False), (0.84, True, 0.89, False)],
        [],
    ]
    assert _served(outcomes[3], 0.88) == (0.84, True, 0.89, False)
    assert _served(outcomes[3], 0.86) == (0.86, False, 0.86, False)
    assert _served(outcomes[3], 0.90) is None
    rows = _sweep(outcomes, (0.86, 0.90, 0.93), answerable=4)
    assert [(r.hits, r.correct) for r in rows] == [(4, 2), (2, 2), (2, 2)]


def test_calibration_reach_is_where_the_guards_vouch() -> None:
    sweep = (0.80, 0.85, 0.90, 0.95)
    guards = Guards()
    # a shared detail vouches within 0.05 of the threshold, no further
    q, c = "Do you accept PayPal for phone bills?", "Can I pay my phone bill with PayPal?"
    assert _reach(guards, q, c, 0.87, sweep, 0.35) == 0.90
    # a typo'd repeat far below the default threshold, not at a stricter one
    q, c = "How do I chnage my email adress?", "How do I change my email address?"
    assert _reach(guards, q, c, 0.70, sweep, 0.35) == 0.90
    assert _reach(guards, q, c, 0.70, sweep, 0.0) == 0.70  # no margin: its similarity
    # nothing vouches: its similarity
    assert _reach(guards, "Where is parcel 1074?", "Where is parcel 1047?", 0.7, sweep, 0.35) \
        == 0.7


# --------------------------------------------------------------------------- pleasantries

PLEASANTRIES = [
    ("hi, can you tell me how do i top up my card? thanks!", "how do i top up my card"),
    ("hello there! please cancel my subscription, thanks in advance",
     "cancel my subscription"),
    ("i was wondering if the gym is open at 6am", "the gym is open at 6am"),
    ("could you please send me the invoice by email? kind regards",
     "send me the invoice by email"),
    ("good morning, i'd like to know whether you ship to norway",
     "you ship to norway"),
    ("what is the fee for 2 transfers, please", "what is the fee for 2 transfers"),
    ("hey so my card hasn't arrived. any help would be appreciated",
     "my card hasn't arrived"),
]
UNCHANGED = [
    "please don't cancel my order",  # the negation stays (only "please" goes: see below)
    "thanks",
    "hello there",
    "can you deliver to canada",  # a question about the service, not a politeness frame
    "do not send me the invoice by email",
    "is the thank-you card free",
    "how do i say thanks to the driver",
]


@pytest.mark.parametrize(("text", "expected"), PLEASANTRIES)
def test_strip_pleasantries(text: str, expected: str) -> None:
    assert strip_pleasantries(text) == expected
    assert strip_pleasantries(expected) == expected  # idempotent


@pytest.mark.parametrize("text", UNCHANGED)
def test_strip_pleasantries_keeps_meaning(text: str) -> None:
    out = strip_pleasantries(text)
    assert out == text or (text.startswith("please ") and out == text[len("please "):])


_WORDS = ["thanks", "thank", "you", "please", "kindly", "much", "so", "a", "lot", "in",
          "advance", "any", "help", "would", "be", "appreciated", "regards", "it", "ty",
          "card", "THANKS", "Thank", "\u017fo", "k\u0131ndly", "\u0131t", "\u212aindly"]
_SEPS = [" ", ", ", "!", ".", " - ", "\u2003", "\t", ";", "?", ""]


@given(st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(_SEPS)), max_size=8))
@settings(max_examples=3000, deadline=None)
def test_trailing_pleasantry_precheck_never_skips_a_match(parts: list[tuple[str, str]]) -> None:
    """The cheap test in front of the trailing-pleasantry pattern may say "maybe" too
    often, never "no" when the pattern would strip something (so the output is the
    pattern's own)."""
    text = "".join(word + sep for word, sep in parts)
    if _RE_P_TRAIL.search(text):
        assert _may_trail(text)


# --------------------------------------------------------------------------- on real Redis


def test_corroboration_on_the_real_index(make_index: Any) -> None:
    index = make_index()  # the defaults: 0.90, guards on
    scope = Scope(tenant="shop")
    pairs = [
        ("Can I pay my phone bill with PayPal?", "Do you accept PayPal for phone bills?"),
        ("Can I get a refund on a $60 gift card?", "Is a $60 gift card refundable?"),
        ("Is the gym open at 6am?", "Can I use the gym at 6am?"),
    ]
    for stored, _ in pairs:
        index.store(stored, f"answer: {stored}", scope)
    index.store("How do I reset my password?", "answer: reset", scope)
    strict = make_index(corroboration_margin=0)
    for stored, asked in pairs:
        sim = sum(a * b for a, b in zip(index.embed(stored), index.embed(asked), strict=True))
        assert 0.85 <= sim < 0.90, (asked, sim)  # below the threshold, within the margin
        verdict = index.lookup_verdict(asked, scope)
        assert verdict.hit is not None and verdict.hit.response == f"answer: {stored}"
        assert "corroborated" in verdict.reason
        assert strict.lookup(asked, scope) is None  # no margin: a miss
    # Nothing specific shared: the threshold stands.
    asked = "I forgot my password, what do I do?"
    sim = sum(
        a * b
        for a, b in zip(index.embed("How do I reset my password?"), index.embed(asked),
                        strict=True)
    )
    assert 0.85 <= sim < 0.90
    # Nothing specific shared: no shared detail vouches, the threshold stands (the learned
    # pair check, which finds it the same question, is off here) ...
    unlearned = make_index(guards=Guards(learned=False))
    assert unlearned.lookup(asked, scope) is None
    # ... with it on (the default), the password reset answers it.
    hit = index.lookup(asked, scope)
    assert hit is not None and hit.response == "answer: reset"
    # Without guards nothing vouches: the threshold stands too.
    assert make_index(guards=None).lookup(pairs[0][1], scope) is None
    with pytest.raises(ValueError, match="corroboration_margin"):
        make_index(corroboration_margin=1.5)


def test_pleasantries_on_the_real_index(make_index: Any) -> None:
    index = make_index()
    plain = make_index(strip_pleasantries=False)
    polite = "Hi! Can you tell me how I top up my card? Thanks in advance"
    bare = "How I top up my card"
    assert index.embed(polite) == index.embed(bare)
    assert plain.embed(polite) != plain.embed(bare)
    # Only what is embedded changes: the exact layer's key is the same either way.
    scope = Scope(model="m")
    assert (
        index.core.prepare_lookup(polite, scope).entry_id
        == plain.core.prepare_lookup(polite, scope).entry_id
    )
    text = index.core.prepare_lookup(polite, scope).text
    assert index.core.settings.embed_text(text) == "how i top up my card"
    index.store(polite, "Tap Top up in the app", scope)
    exact = index.lookup_verdict(polite, scope)
    assert exact.hit is not None and exact.hit.layer == "exact"
    hit = index.lookup("hello, how I top up my card, please", scope)
    assert hit is not None and hit.layer == "semantic" and hit.similarity > 0.999
    # An entry stored under the other setting is still found by the exact layer.
    assert plain.lookup(polite, scope) is not None


def test_no_margin_below_a_threshold_of_one() -> None:
    """min_similarity=1.0 asks for the same meaning exactly: nothing below it is served,
    corroborated or not."""
    core = Core(Layout.build("t", "m:4", dims=4), Settings(), corroborate=lambda r, c: True)
    strict = core.prepare_lookup("Where is parcel 1047?", Scope(), min_similarity=1.0)
    assert core._floor(strict) == 1.0
    default = core.prepare_lookup("Where is parcel 1047?", Scope())
    assert core._floor(default) == pytest.approx(0.90 - DEFAULT_CORROBORATION_MARGIN)


def test_option_types_are_checked(make_index: Any) -> None:
    with pytest.raises(TypeError):
        make_index(strip_pleasantries="yes")
    with pytest.raises((TypeError, ValueError)):
        make_index(corroboration_margin=2)
