"""Guards: near misses are rejected, true paraphrases pass, each guard can be switched off,
rejections are counted, and top-k re-ranking serves the best candidate that passes.

The cases here are written for these tests (general support/e-commerce/banking phrasing);
the benchmark's trap set (benchmarks/data/traps.jsonl) is a separate set.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paracache import Scope
from paracache.core import Candidate, Core, LookupRequest, Settings
from paracache.guards import GUARD_NAMES, Guards, features
from paracache.schema import Layout

# (query, stored prompt, the guard that must reject serving the stored answer)
NEAR_MISSES = [
    # negation
    ("Please refund my last order", "Please don't refund my last order", "negation"),
    ("I want to keep my premium membership", "I do not want to keep my premium membership",
     "negation"),
    ("Was the parcel signed for?", "Was the parcel not signed for?", "negation"),
    ("The courier left the package at my door",
     "The courier never left the package at my door", "negation"),
    ("Is breakfast included in the room rate?", "Is breakfast not included in the room rate?",
     "negation"),
    ("Why was I charged a late fee?", "Why wasn't I charged a late fee?", "negation"),
    ("I approved this payment", "I didn't approve this payment", "negation"),
    # numbers
    ("Can I bring 2 bags on the flight?", "Can I bring 3 bags on the flight?", "numbers"),
    ("Is there a warranty for 12 months?", "Is there a warranty for 24 months?", "numbers"),
    ("I was billed twice for the same item", "I was billed three times for the same item",
     "numbers"),
    ("Do you have a 15% discount for teachers?", "Do you have a 25% discount for teachers?",
     "numbers"),
    ("My refund has been pending for 3 days", "My refund has been pending for a week",
     "numbers"),
    ("Is there a 5 percent cashback?", "Is there a 15% cashback?", "numbers"),
    # identifiers
    ("Where is shipment 55120?", "Where is shipment 55210?", "identifiers"),
    ("Status of order #B-2290", "Status of order #B-2209", "identifiers"),
    ("Cancel booking XK42Q", "Cancel booking XK24Q", "identifiers"),
    ("Where is my order 7781?", "Where is my order?", "identifiers"),
    ("Reset the login for sam@shop.example", "Reset the login for pam@shop.example",
     "identifiers"),
    # amounts
    ("Why did you charge me $9.99?", "Why did you charge me $99.90?", "amounts"),
    ("Can I send 500 euros to my sister?", "Can I send 500 pounds to my sister?", "amounts"),
    ("Do you accept payment in dollars?", "Do you accept payment in euros?", "amounts"),
    ("Is a $2k transfer allowed?", "Is a $20k transfer allowed?", "amounts"),
    ("Why did I only get 20 from the ATM?", "Why did I only get $40 from the ATM?", "numbers"),
    # dates
    ("Can I collect my parcel on Saturday?", "Can I collect my parcel on Friday?", "dates"),
    ("My rent payment on 3 May failed", "My rent payment on 13 May failed", "dates"),
    ("Was my card charged yesterday?", "Was my card charged today?", "dates"),
    ("Book a table for 7pm", "Book a table for 8:30 pm", "dates"),
    ("Show my statement for 2022", "Show my statement for 2021", "dates"),
    # names
    ("Does the plan include Disney+ and Hulu?", "Does the plan include HBO and Hulu?",
     "entities"),
    ("Do you deliver to Ireland?", "Do you deliver to Portugal?", "entities"),
    ("Can I link my Revolut account?", "Can I link my Monzo account?", "entities"),
    ("Is the iPhone case in stock?", "Is the Galaxy case in stock?", "entities"),
    # scope words
    ("Refund all of the items in my order", "Refund one of the items in my order",
     "quantifiers"),
    ("What's the minimum order for free delivery?", "What's the maximum order for free delivery?",
     "quantifiers"),
    ("Can I change my seat before check-in?", "Can I change my seat after check-in?",
     "quantifiers"),
    ("What does a domestic wire cost?", "What does an international wire cost?", "quantifiers"),
    ("What is the weekly spending limit?", "What is the monthly spending limit?", "quantifiers"),
    # opposite actions
    ("How do I activate roaming?", "How do I deactivate roaming?", "opposites"),
    ("How do I freeze my account?", "How do I unfreeze my account?", "opposites"),
    ("How can I raise my overdraft?", "How can I reduce my overdraft?", "opposites"),
    ("How do I open a joint account?", "How do I close a joint account?", "opposites"),
    # one small edit that changes the question (words no list above holds)
    ("How do I secure my home router?", "How do I secure my office router?", "edits"),
    ("Can I add my partner to my phone plan?", "Can I add my partner to my broadband plan?",
     "edits"),
    ("How do I whitelist a sender?", "How do I blacklist a sender?", "edits"),
    # a flipped particle in an otherwise aligned question: the opposites guard's first
    ("Why is the cluster not scaling out?", "Why is the cluster not scaling in?", "opposites"),
    ("What happens if I forget to tap in?", "What happens if I forget to tap out?",
     "opposites"),
    ("Are tickets cheaper at peak times?", "Are tickets cheaper at off-peak times?", "edits"),
    ("Can I park in my own driveway?", "Can I park in my neighbour's driveway?", "edits"),
    ("Can I order a gift card with a personal message online?",
     "Can I order a gift card for my sister with a personal message online?", "edits"),
    ("Is it rude to skip the ceremony but attend the party?",
     "Is it rude to skip the party but attend the ceremony?", "edits"),
    ("I was charged $12.99 instead of $21.99", "I was charged $21.99 instead of $12.99",
     "edits"),
    ("Will a 64GB card hold 500 photos?", "Will a 16GB card hold 500 photos?", "numbers"),
]

# (query, stored prompt): true paraphrases the guards must let through
PARAPHRASES = [
    ("What's your returns policy?", "How do returns work at your store?"),
    ("Can I get my money back for a faulty kettle?", "How do I get a refund for a broken kettle?"),
    ("I've been waiting a week for my card", "my card hasn't arrived after 7 days"),
    ("My parcel hasn't arrived yet", "When will my parcel arrive?"),
    ("I can't find the invoice download button", "Where do I download my invoice?"),
    ("I was charged twice for one order", "One order was billed to me two times"),
    ("Where is order 4410?", "Can you tell me where order #4410 is?"),
    ("Can I pay with Apple Pay?", "Do you take apple pay?"),
    ("How long does delivery to the US take?", "How long is shipping to the United States?"),
    ("Is there a fee for paying by card?", "Do you charge anything for card payments?"),
    ("My card payment was declined", "My card payment was not approved"),
    ("Why did my transfer fail?", "Why didn't my transfer go through?"),
    ("How do I reset my password?", "I forgot my password, how can I reset it?"),
    ("Do you ship internationally?", "Can you send orders abroad?"),
    ("Can I cancel my subscription any time?",
     "Is it possible to cancel the subscription whenever I want?"),
    ("What are your opening hours on Sunday?", "When are you open on Sundays?"),
    ("I need a copy of my December statement", "Can I get my statement for December?"),
    ("How much is the $20 gift card?", "What does the 20 dollar gift card cost?"),
    ("Please update my delivery address", "I need to change the address for delivery"),
    ("Why is my account locked?", "My account is locked, why?"),
    ("Is the 2-seat sofa in stock?", "Do you have the two seat sofa in stock?"),
    ("Can I cancel my reservation 72 hours before arrival?",
     "Is cancelling my reservation three days before arrival possible?"),
    ("Is there a 5 percent cashback?", "Do you give five percent cash back?"),
    # one word replaced by a synonym, a derived form, a hypernym or a misspelling
    ("Why do planes take off into a headwind?", "Why do airplanes take off into a headwind?"),
    ("Can I purchase a gift card online?", "Can I buy a gift card online?"),
    ("Can I open an account for my kids?", "Can I open an account for my children?"),
    ("What is the price of an international transfer?",
     "What is the cost of an international transfer?"),
    ("Can I bring my sofa when I move?", "Can I bring my couch when I move?"),
    ("How do I configure my new router?", "How do I configure my new ruoter?"),
    ("How do I cancel my order?", "How can I cancel the order?"),
    ("Can I get a passport in 2 weeks?", "Can I get a passport in 14 days?"),
    ("Will a 64GB card hold 500 photos?", "Will a 64 GB card hold 500 photos?"),
]


@pytest.mark.parametrize(("query", "stored", "guard"), NEAR_MISSES)
def test_near_misses_are_rejected_by_the_right_guard(query: str, stored: str, guard: str) -> None:
    assert Guards().check(query, stored) == guard
    assert Guards().check(stored, query) == guard  # symmetric
    # ...and only that guard: switching it off lets the pair through (``edits``, the
    # backstop for any one-word change, is off too: it would catch most of them)
    assert Guards(**{guard: False, "edits": False}).check(query, stored) is None


@pytest.mark.parametrize(("query", "stored"), PARAPHRASES)
def test_true_paraphrases_pass(query: str, stored: str) -> None:
    assert Guards().check(query, stored) is None
    assert Guards().check(stored, query) is None


def test_every_near_miss_class_is_covered() -> None:
    # ``learned`` needs a similarity and ``neighbours`` other candidates: tested apart
    assert {g for _, _, g in NEAR_MISSES} == set(GUARD_NAMES) - {"learned", "neighbours"}


def test_switches() -> None:
    assert Guards().enabled == GUARD_NAMES
    assert Guards.off().enabled == () and not Guards.off().active
    assert Guards(numbers=False).numbers is False
    assert Guards.from_dict({"dates": False}) == Guards(dates=False)
    assert Guards.from_dict(Guards(entities=False).as_dict()) == Guards(entities=False)
    with pytest.raises(ValueError, match="unknown guard"):
        Guards.from_dict({"numberz": False})
    with pytest.raises(TypeError):
        Guards(negation="yes")  # type: ignore[arg-type]
    off = Guards.off()
    assert all(off.check(q, s) is None for q, s, _ in NEAR_MISSES)


def test_features_normalise_equivalent_spellings() -> None:
    assert features("a week").numbers == features("7 days").numbers == frozenset({"10080min"})
    assert features("two weeks").numbers == features("14 days").numbers
    assert features("charged twice").numbers == features("charged 2 times").numbers
    assert Guards().check("I only got 20", "I only got $20") is None  # a value, any unit
    assert features("USD 5").amounts == features("$5").amounts == features("5 dollars").amounts
    assert features("order #A-77").identifiers == features("order A77").identifiers
    assert features("May I ask?").dates == frozenset()  # "May" is not a month here
    assert features("Due on 3 May").dates == {"month:5", "day:3"}


def test_ascii_and_unicode_texts_are_analysed_alike() -> None:
    # ASCII texts take a faster tokeniser; a curly apostrophe or a non-ASCII letter
    # takes the general one, which must find the same details
    assert features("I don\u2019t want to cancel Apple Pay") == features(
        "I don't want to cancel Apple Pay"
    )
    assert features("Pay 20 € to Zoë in Zürich").entities == {"zoë", "zürich"}


def test_long_and_odd_inputs_are_safe() -> None:
    for text in ["", "   ", "???", "\u2019\u2019", "x" * 100_000, "1" * 5000, "€€€ $ £",
                 "n't not no never", "\ud800 broken surrogate", "Ünïcödé Ñame İstanbul"]:
        features(text)
        assert Guards().check(text, text) is None


_PIECES = st.sampled_from(["n't", " not ", " May ", " 3rd ", " 5k ", " pm", " $", "€20",
                           " #A-1", " order 12", " 2 weeks", " twice", " all", " Apple Pay"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12) | _PIECES, max_size=10).map("".join),
       st.text(max_size=40))
def test_guards_never_raise(a: str, b: str) -> None:
    assert Guards().check(a, b) in (None, *GUARD_NAMES)


def test_guard_cost_is_measured_not_asserted(record_property: Any) -> None:
    """The overhead is reported (see benchmarks/quality.py for the real number)."""
    queries = [q for q, _, _ in NEAR_MISSES] + [q for q, _ in PARAPHRASES]
    stored = [s for _, s, _ in NEAR_MISSES] + [s for _, s in PARAPHRASES]
    for s in stored:
        features(s)
    guards = Guards()
    t0 = time.thread_time()
    for q in queries:
        features.__wrapped__(q)
        for s in stored[:4]:
            guards.check(q, s)
    per_lookup_us = (time.thread_time() - t0) / len(queries) * 1e6
    record_property("guard_us_per_lookup", round(per_lookup_us, 1))
    print(f"guard cost: {per_lookup_us:.0f} us per lookup (query analysed + 4 comparisons)")


# --------------------------------------------------------------------------- in the core


def _candidate(core: Core, prompt: str, similarity: float) -> Candidate:
    """A KNN candidate with the fields a stored entry has."""
    mapping = core.prepare_store(prompt, f"answer to {prompt}", Scope()).mapping
    fields = {k.encode(): str(v).encode() for k, v in mapping.items()}
    return Candidate(key=f"k:e:{abs(hash(prompt))}", similarity=similarity, fields=fields)


def test_core_reranks_top_k_and_counts_rejections() -> None:
    layout = Layout.build("t", "m:1", dims=4)
    core = Core(layout, Settings(), accept=Guards().accept)
    req: LookupRequest = core.prepare_lookup("Where is parcel 1047?", Scope())
    cands = [
        _candidate(core, "Where is parcel 1074?", 0.99),  # the nearest: the wrong parcel
        _candidate(core, "Where's parcel 1047 now?", 0.93),  # the right one
        _candidate(core, "Where is parcel 1047 right now?", 0.91),
    ]
    hit, best, reason = core._choose(req, cands)
    assert hit is not None and hit.prompt == "Where's parcel 1047 now?"
    assert best == 0.99 and "identifiers" in reason
    stats = core.recorder.snapshot()
    assert stats.rejections == 1 and stats.rejections_by_reason == {"identifiers": 1}
    # All rejected: a miss that says why.
    hit, _, reason = core._choose(req, cands[:1])
    assert hit is None and reason.startswith("rejected by guards")
    # A hook that raises never breaks a lookup: the candidate is not served.
    core.accept = lambda r, c: 1 / 0  # type: ignore[assignment,return-value]
    assert core._choose(req, cands)[0] is None
    assert core.recorder.snapshot().errors_by_kind["guard"] == 3


# --------------------------------------------------------------------------- on real Redis


def test_guards_on_the_real_index(make_index: Any) -> None:
    index = make_index(min_similarity=0.75)
    scope = Scope(model="m")
    index.store("Please cancel my order 5521", "cancelled", scope)
    index.store("How do I enable notifications?", "Settings > Notifications > On", scope)

    trap = index.lookup_verdict("Please don't cancel my order 5521", scope)
    assert trap.outcome == "miss" and "negation" in trap.reason
    assert index.lookup("How do I disable notifications?", scope) is None
    assert index.lookup("Please cancel order 5522", scope) is None
    hit = index.lookup("Could you cancel my order 5521, please?", scope)
    assert hit is not None and hit.response == "cancelled"
    stats = index.stats()
    assert stats.rejections_by_reason.get("negation", 0) >= 1
    assert stats.rejections_by_reason.get("opposites", 0) >= 1
    assert stats.rejections_by_reason.get("identifiers", 0) >= 1


def test_top_k_reranking_on_the_real_index(make_index: Any) -> None:
    index = make_index(min_similarity=0.80, top_k=4)
    scope = Scope(tenant="shop")
    index.store("Is the store open on Monday?", "Mondays 9-17", scope)
    index.store("Are you open on Sundays?", "Sundays 10-16", scope)
    query = "Is the store open on Sunday?"
    q, wrong, right = (index.embed(t) for t in (query, "Is the store open on Monday?",
                                                "Are you open on Sundays?"))
    sim = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert sim(q, wrong) > sim(q, right) > 0.80  # the nearest one is the wrong day
    verdict = index.lookup_verdict(query, scope)
    assert verdict.hit is not None and verdict.hit.response == "Sundays 10-16"
    assert "dates" in verdict.reason
    assert index.stats().rejections_by_reason == {"dates": 1}
    # Without guards the nearest (wrong) day is served; with top_k=1 nothing is.
    plain = make_index(min_similarity=0.80, guards=None)
    assert plain.lookup(query, scope).response == "Mondays 9-17"  # type: ignore[union-attr]
    assert plain.stats().rejections == 0
    assert make_index(min_similarity=0.80, top_k=1).lookup(query, scope) is None


def test_guards_argument_is_validated(make_index: Any) -> None:
    with pytest.raises(TypeError, match="guards"):
        make_index(guards={"negation": True})
    assert make_index(guards=Guards.off()).guards.active is False
    assert make_index(guards=None).core.accept is None
    assert make_index().guards == Guards()
