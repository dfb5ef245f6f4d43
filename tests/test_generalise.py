"""Issue 14: defaults that generalise. WordNet opposites, typo tolerance, the learned pair
check and neighbouring intents, in the guards and through the real index."""

from __future__ import annotations

import json
from typing import Any

import pytest

from paracache import Scope
from paracache.core import Candidate, Core, Settings
from paracache.guards import (
    PAIR_FEATURES,
    VOUCHED_GAP,
    Guards,
    neighbours_disagree,
    pair_features,
    same_question,
    typo_repeat,
)
from paracache.guards.pairs import _PAIR_CHECK_PATH
from paracache.guards.vocabulary import _antonym_lexicon
from paracache.schema import Layout
from paracache.spelling import correct_typos, known_words

# --------------------------------------------------------------------------- WordNet


# pairs no hand list of paracache's ever held: they come from WordNet's antonyms
WORDNET_OPPOSITES = [
    ("Is it legal to record a phone call?", "Is it illegal to record a phone call?"),
    ("Should I inflate the tires in winter?", "Should I deflate the tires in winter?"),
    ("Is the apartment furnished?", "Is the apartment unfurnished?"),
    ("How do I connect my phone to the car?", "How do I disconnect my phone from the car?"),
    ("Do mortgage rates rise in the spring?", "Do mortgage rates fall in the spring?"),
    ("What are the advantages of online classes?", "What are the disadvantages of online classes?"),
    ("How do I hire a contractor?", "How do I fire a contractor?"),
]


@pytest.mark.parametrize(("query", "stored"), WORDNET_OPPOSITES)
def test_wordnet_opposites_are_rejected(query: str, stored: str) -> None:
    assert Guards().check(query, stored) == "opposites"
    assert Guards().check(stored, query) == "opposites"
    # (``edits``, the backstop for any one-word change, would catch it too)
    assert Guards(opposites=False, edits=False).check(query, stored) is None


@pytest.mark.parametrize(("query", "stored"), [
    ("Is the museum open on Sunday?", "Is the museum open on Sundays, and when does it close?"),
    ("Can I start my policy today?", "Can I start my policy today and stop it tomorrow?"),
    ("Is it legal to record a call?", "Is recording a call legal?"),
])
def test_a_word_and_its_opposite_on_one_side_is_no_conflict(query: str, stored: str) -> None:
    assert Guards(dates=False).check(query, stored) != "opposites"


def test_the_lexicon_is_the_distilled_wordnet_asset() -> None:
    lexicon, first = _antonym_lexicon()
    assert "decreas" in lexicon["increas"] and "illegal" in lexicon["legal"]
    assert "turn" in first and "turn off" in lexicon["turn on"]
    assert "minimum" not in lexicon  # a scope word: the quantifiers guard's
    assert len(lexicon) > 5_000


# comparatives of WordNet's graded antonyms, and opposites that count only in one place
GRADED_AND_ALIGNED = [
    ("Should I leave for the airport earlier on Fridays?",
     "Should I leave for the airport later on Fridays?"),
    ("Why are prices higher in the city centre?", "Why are prices lower in the city centre?"),
    ("Do thicker blankets keep a baby warm?", "Do thinner blankets keep a baby warm?"),
    ("Is the blue sofa in stock at the store?", "Is the blue sofa out of stock at the store?"),
    ("How do I opt into the loyalty scheme?", "How do I opt out of the loyalty scheme?"),
    ("Should I turn the heating up at night?", "Should I turn the heating down at night?"),
    ("Should I feed my puppy more in winter?", "Should I feed my puppy less in winter?"),
    ("Does a bigger engine use more fuel?", "Does a bigger engine use less fuel?"),
]


@pytest.mark.parametrize(("query", "stored"), GRADED_AND_ALIGNED)
def test_comparatives_and_aligned_opposites_are_rejected(query: str, stored: str) -> None:
    assert Guards().check(query, stored) == "opposites"
    assert Guards().check(stored, query) == "opposites"
    assert Guards(opposites=False, edits=False).check(query, stored) is None


@pytest.mark.parametrize(("query", "stored"), [
    # "in" / "out" in different places of two wordings: no conflict
    ("How do I log in to cash out my winnings?", "Where can I cash out after I log in?"),
    # "more" on one side only
    ("How can I save more each month?", "How can I save each month?"),
    ("Tell me more about the premium plan", "What does the premium plan include?"),
    # "less" and "more" in different places
    ("Is it less hassle to pay more upfront?", "Would paying upfront be less hassle?"),
])
def test_aligned_opposites_need_the_same_place(query: str, stored: str) -> None:
    assert Guards().check(query, stored) != "opposites"
    assert Guards().check(stored, query) != "opposites"


def test_the_lexicon_has_graded_forms() -> None:
    lexicon, _ = _antonym_lexicon()
    assert "later" in lexicon["earlier"] and "lower" in lexicon["higher"]
    assert "laterer" not in lexicon  # a graded form is kept only when it is a word


# --------------------------------------------------------------------------- typos


def test_correct_typos() -> None:
    assert correct_typos("how do i chnage my email adress") == "how do i change my email address"
    assert correct_typos("cancle my subscripton") == "cancel my subscription"
    assert correct_typos("where is parcel 1074") == "where is parcel 1074"  # digits: never
    assert correct_typos("why is my bil so high") == "why is my bil so high"  # too short
    assert correct_typos("ibuprofen and paracetamol") == "ibuprofen and paracetamol"
    # beside words it never corrects (short, with an apostrophe), the one it does
    assert correct_typos("i can't chnage my pin") == "i can't change my pin"
    assert correct_typos("the customr's card") == "the customr's card"
    assert correct_typos("how do i change my email address") == "how do i change my email address"
    assert correct_typos("¿dónde está mi tarjeta?") == "¿dónde está mi tarjeta?"
    assert "address" in known_words() and "adress" not in known_words()
    long_word = "adress" * 20_000  # a hostile prompt: left as it is, in linear time
    assert correct_typos(f"my {long_word} please") == f"my {long_word} please"


@pytest.mark.parametrize(("query", "stored", "same"), [
    ("How do I chnage my email adress?", "How do I change my email address?", True),
    ("Can I pay my water bill with PayPall?", "Can I pay my water bill with PayPal?", True),
    ("Where is parcel 1074?", "Where is parcel 1047?", False),  # numbers match exactly
    ("Is my cat covered?", "Is my car covered?", False),  # two words, not a typo
    ("Please cancel my order", "Please don't cancel my order", False),  # a word added
    ("Do I need a visa for Japan?", "Do I need a visa for Japan?", False),  # no typo at all
    ("Wher is teh nerest brnch?", "Where is the nearest branch?", False),  # too many
])
def test_typo_repeat(query: str, stored: str, same: bool) -> None:
    assert typo_repeat(query, stored) is same


def test_a_typo_in_a_name_is_not_another_name() -> None:
    assert Guards().check("Do I need a visa for Japn?", "Do I need a visa for Japan?") is None
    assert Guards().check("Do I need a visa for Iran?", "Do I need a visa for Iraq?") == (
        "entities"
    )


def test_typo_repeats_hit_through_the_real_index(make_index: Any) -> None:
    index = make_index()
    scope = Scope(tenant="t14")
    index.store("How do I change my email address?", "Settings > Email.", scope)
    index.store("Where is parcel 1047?", "Parcel 1047 is in Leeds.", scope)
    hit = index.lookup("How do I chnage my email adress?", scope)
    assert hit is not None and hit.response == "Settings > Email."
    assert index.lookup("Where is parcel 1074?", scope) is None
    # without the spelling correction the typo'd question is far from the stored one ...
    raw = make_index(correct_typos=False)
    verdict = raw.lookup_verdict("How do I chnage my email adress?", scope)
    assert verdict.hit is not None and verdict.hit.similarity < 0.85  # ... but a typo'd repeat
    # and without guards (nothing vouches for it below the threshold) it is a miss
    assert make_index(correct_typos=False, guards=None).lookup(
        "How do I chnage my email adress?", scope) is None
    with pytest.raises(TypeError, match="correct_typos"):
        make_index(correct_typos="yes")


# --------------------------------------------------------------------------- learned


def test_learned_pair_check_asset() -> None:
    with _PAIR_CHECK_PATH.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    assert tuple(doc["features"]) == PAIR_FEATURES
    assert len(doc["weights"]) == len(PAIR_FEATURES)
    assert 0 < doc["veto"] < doc["threshold"] < 1


def test_learned_pair_check_vetoes_a_swapped_word() -> None:
    a = "Is this recipe safe for adults with nut allergies?"
    b = "Is this recipe safe for children with nut allergies?"
    assert pair_features(a, b, 0.93)[PAIR_FEATURES.index("one_swap")] == 1.0
    assert Guards().check(a, b) == "edits"  # a one-word edit: the backstop comes first
    assert Guards(edits=False).check(a, b, 0.93) == "learned"
    assert Guards(edits=False).check(a, b) is None  # no similarity: the learned guard is skipped
    assert Guards(learned=False, edits=False).check(a, b, 0.93) is None
    para = ("Does the room come with breakfast?", "Is breakfast included with the room?")
    assert Guards().check(*para, 0.91) is None
    assert same_question(*para, 0.91) > same_question(a, b, 0.93)


def test_learned_veto_judges_words_not_a_looser_threshold(make_index: Any) -> None:
    # A looser threshold the user sets is honoured: the veto does not act as a second
    # threshold at low similarity ...
    far = ("Why was my card declined?", "How do I activate my new card?")
    assert Guards().check(*far, 0.39) is None
    index = make_index()
    index.store(far[1], "Tap Activate.", Scope())
    assert index.lookup(far[0], Scope()) is None  # the default threshold holds
    hit = index.lookup(far[0], Scope(), min_similarity=0.0)
    assert hit is not None and hit.response == "Tap Activate."
    # ... but a swapped word is still vetoed there, as at the threshold
    swap = ("Is this recipe safe for adults?", "Is this recipe safe for children?")
    assert Guards().check(*swap, 0.5) == "edits"  # the one-word backstop comes first
    assert Guards(edits=False).check(*swap, 0.5) == Guards(edits=False).check(*swap, 0.93) \
        == "learned"


def test_learned_pair_check_vouches_in_its_band_only() -> None:
    q, c = "How do I reset my password?", "I forgot my password"
    assert Guards.vouches(q, c, 0.87, 0.90)
    assert not Guards.vouches(q, c, 0.78, 0.90)  # more than 0.10 below: the threshold holds


# --------------------------------------------------------------------------- neighbours


def _candidate(core: Core, prompt: str, response: str, similarity: float) -> Candidate:
    mapping = core.prepare_store(prompt, response, Scope()).mapping
    fields = {k.encode(): str(v).encode() for k, v in mapping.items()}
    return Candidate(key=f"k:e:{abs(hash(prompt))}", similarity=similarity, fields=fields)


def test_neighbours_make_the_cache_abstain_only_on_a_vouched_candidate() -> None:
    guards = Guards()
    core = Core(Layout.build("t", "m:1", dims=4), Settings(), accept=guards.accept,
                corroborate=guards.corroborate, contest=guards.contest)
    req = core.prepare_lookup("How do I activate my new crad?", Scope())
    # below the threshold, vouched for as a typo'd repeat, with a rival just behind it
    typo = _candidate(core, "How do I activate my new card?", "Open the app.", 0.86)
    rival = _candidate(core, "When will my new card arrive?", "3-5 days.", 0.84)
    hit, _, reason = core._choose(req, [typo, rival])
    assert hit is None and "neighbours" in reason
    assert core.recorder.snapshot().rejections_by_reason == {"neighbours": 1}
    # a rival further behind than VOUCHED_GAP: the vouched candidate is served
    far = _candidate(core, "When will my new card arrive?", "3-5 days.",
                     0.86 - VOUCHED_GAP - 0.01)
    hit, _, _ = core._choose(req, [typo, far])
    assert hit is not None and hit.response == "Open the app."
    # the same answer twice is no disagreement; nor is the neighbour switch off
    same = _candidate(core, "When will my new card arrive?", "Open the app.", 0.84)
    assert core._choose(req, [typo, same])[0] is not None
    off = Guards(neighbours=False)
    plain = Core(Layout.build("t", "m:1", dims=4), Settings(), accept=off.accept,
                 corroborate=off.corroborate, contest=off.contest)
    assert plain._choose(req, [typo, rival])[0] is not None


def test_a_candidate_at_the_threshold_is_served_whatever_its_neighbours() -> None:
    # An LLM's answers all differ: a close neighbour "with another answer" is the rule on
    # a dense store, not a sign of a wrong hit.
    guards = Guards()
    core = Core(Layout.build("t", "m:1", dims=4), Settings(), accept=guards.accept,
                corroborate=guards.corroborate, contest=guards.contest)
    req = core.prepare_lookup("My new card still hasn't come", Scope())
    arrival = _candidate(core, "My card has not arrived yet", "Let us check.", 0.93)
    estimate = _candidate(core, "How long does a new card take to come", "3-5 days.", 0.925)
    hit, _, _ = core._choose(req, [arrival, estimate])
    assert hit is not None and hit.response == "Let us check."
    assert core.recorder.snapshot().rejections_by_reason == {}


def test_the_same_question_stored_twice_is_no_neighbour() -> None:
    # an LLM words its answer differently each time: two answers to one question
    winner = (0.88, "How do I activate my new card?", "Open the app and tap Activate.")
    twice = [(0.87, "how can I activate my new card", "In the app, tap Activate.")]
    assert not neighbours_disagree(winner, twice, 0.90)
    other = [(0.87, "How do I deactivate my new card?", "Tap Freeze.")]
    assert neighbours_disagree(winner, other, 0.90)  # an opposite: another question
    longer = [(0.87, "How do I activate my new card abroad?", "Call us.")]
    assert not neighbours_disagree(winner, longer, 0.90)  # context on one side only
    two = (0.88, "How do I activate my 2 new cards?", "One at a time.")
    assert neighbours_disagree(two, [(0.87, "How do I activate my 3 new cards?", "Call.")],
                               0.90)  # a detail differs


def test_a_candidate_below_the_threshold_needs_a_clear_lead() -> None:
    winner = (0.86, "How do I reset my password?", "Tap Forgot password.")
    rival = (0.83, "How do I change my username?", "Settings > Profile.")
    assert not neighbours_disagree((0.93, *winner[1:]), [(0.89, *rival[1:])], 0.90)
    assert neighbours_disagree(winner, [rival], 0.90)  # vouched for: 0.05 lead needed
    far = (0.80, *rival[1:])
    assert not neighbours_disagree(winner, [far], 0.90)


def test_a_rejected_near_miss_is_no_neighbour() -> None:
    assert not neighbours_disagree(
        (0.88, "Is the store open on Sunday?", "10-16"),
        [(0.80, "Is the store open on Monday?", "9-17")], 0.90)
    assert neighbours_disagree(
        (0.88, "Is the store open on Sunday?", "10-16"),
        [(0.86, "When do you open on weekends?", "Sat 9-12")], 0.90)


def test_a_misspelt_name_or_unit_is_still_a_typo_repeat() -> None:
    g = Guards()
    # the detail guards saw "Benfit" / "Benefit" as two names, "nigths" / "nights" as
    # another unit: a typo'd repeat of the question is served
    assert g.check("How do I claim Child Benfit?", "How do I claim Child Benefit?") is None
    assert g.check("How much is a room for 2 adults for 3 nigths?",
                   "How much is a room for 2 adults for 3 nights?") is None
    # text beyond ASCII elsewhere in the question does not stop a typo being one
    assert typo_repeat("Can I play Spotfiy in my café?", "Can I play Spotify in my café?")
    # but identifiers must match exactly, and names that are words stay names
    assert g.check("Reset the password for jane.dole@example.com",
                   "Reset the password for jane.doe@example.com") == "identifiers"
    assert g.check("Can I pay with Apple Pay?", "Can I pay with Google Pay?") == "entities"
    assert g.check("Where is parcel 1074?", "Where is parcel 1047?") == "identifiers"


@pytest.mark.parametrize(("query", "stored"), [
    ("Can I get a contract for 12 months?", "Is a one year contract available?"),
    ("Is the warranty valid for 2 years?", "Does the warranty last 24 months?"),
    ("Can I return it within 30 days?", "Can I return it within a month?"),
    ("Is 10,000 steps a day enough?", "Are ten thousand steps daily sufficient?"),
    ("Should I take it twice a day?", "Should I take it twice daily?"),
])
def test_calendar_durations_and_rates_are_no_conflict(query: str, stored: str) -> None:
    assert Guards().check(query, stored) != "numbers"
    assert Guards().check(stored, query) != "numbers"


@pytest.mark.parametrize(("query", "stored"), [
    ("Can I get a contract for 11 months?", "Is a one year contract available?"),
    ("Can I return it within 4 weeks?", "Can I return it within a month?"),
    ("Is my refund pending for 3 days normal?", "Is my refund pending for a week normal?"),
    ("Should I take it twice a day?", "Should I take it three times a day?"),
])
def test_different_durations_and_rates_still_conflict(query: str, stored: str) -> None:
    assert Guards().check(query, stored) == "numbers"


# --------------------------------------------------------------------------- fifth round


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("Which plastics can't be recycled?", "Which plastics can be recycled?"),
        ("What foods should I not eat before a run?", "What foods should I eat before a run?"),
        ("Where can't I park my car?", "Where can I park my car?"),
    ],
)
def test_a_question_negated_and_nothing_else_changed_is_another(
    query: str, stored: str
) -> None:
    assert Guards().check(query, stored) == "negation"
    assert Guards().check(stored, query) == "negation"


def test_a_complaint_against_a_how_question_is_still_the_same() -> None:
    # the negation is the asker's trouble, not what is asked: the rule stays
    assert Guards().check(
        "I can't find the export option", "Where do I find the export option?") is None


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("How do I see my podcast's listener stats?",
         "How do I see a competitor's podcast listener stats?"),
        ("Can I water my lawn during the ban?", "Can I water a neighbour's lawn during the ban?"),
    ],
)
def test_an_added_possessor_after_an_article_is_an_edit(query: str, stored: str) -> None:
    assert Guards(learned=False).check(query, stored) == "edits"


def test_an_article_alone_is_no_edit() -> None:
    assert Guards().check("Can I rent a car for a week?", "Can I rent a car for the week?") is None
    # "a week" against "7 days" is the numbers guard's business, not an edit
    assert Guards(numbers=False, learned=False).check(
        "Can I rent a car for a week?", "Can I rent a car for 7 days?") is None


def test_doubled_consonants_are_read_as_their_lemma() -> None:
    # "permitted" is "permit", which WordNet relates to "allow": a rewording
    assert Guards(learned=False).check(
        "Are dogs permitted in the park?", "Are dogs allowed in the park?") is None


def test_the_learned_check_reads_english_with_symbols() -> None:
    stored = "How much should I tip in a restaurant in the US?"
    plain = "What's the usual tip at a US restaurant?"
    curly = "What\u2019s the usual tip at a US restaurant?"
    assert Guards.vouches(plain, stored, 0.895, 0.9)
    assert Guards.vouches(curly, stored, 0.895, 0.9)  # an apostrophe is no other language
    assert not Guards.vouches("¿Cuánto es la propina en un restaurante?", stored, 0.895, 0.9)


# --------------------------------------------------------------------------- seventh round


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        # do-support: "don't offer" is "offer" negated, with no "do" in the plain question
        ("Which airlines don't offer free meals?", "Which airlines offer free meals?"),
        ("Which cards doesn't the shop accept?", "Which cards does the shop accept?"),
        # "without" is "with" negated
        ("How much is a hotel room without breakfast?", "How much is a hotel room with breakfast?"),
    ],
)
def test_do_support_and_without_are_a_negation_of_the_same_words(
    query: str, stored: str
) -> None:
    assert Guards().check(query, stored) == "negation"
    assert Guards().check(stored, query) == "negation"


def test_a_complaint_with_do_support_is_still_the_same_question() -> None:
    assert Guards().check(
        "I don't see the export option", "Where do I see the export option?") is None


@pytest.mark.parametrize(
    ("query", "stored", "guard"),
    [
        ("Is firmware v2.1 safe to install?", "Is firmware v2.4 safe to install?", "identifiers"),
        ("What shoes for a 6.11b slab?", "What shoes for a 6.13b slab?", "identifiers"),
    ],
)
def test_dotted_codes_are_read_whole(query: str, stored: str, guard: str) -> None:
    assert Guards().check(query, stored) == guard


def test_a_decimal_with_its_unit_is_a_number_not_a_code() -> None:
    from paracache.guards import features

    assert features("Is a 3.5mm jack standard?").numbers == {"3.5"}
    assert features("Is a 3.5mm jack standard?").identifiers == frozenset()
    # a decimal the number pattern cannot read whole is not read as its first digits
    assert "1" not in features("It costs 1.5x more").numbers


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("How do I mute notifications for one app?", "How do I mute notifications for all apps?"),
        ("Can I export one sheet as a PDF?", "Can I export every sheet as a PDF?"),
    ],
)
def test_one_item_against_all_of_them_is_another_scope(query: str, stored: str) -> None:
    assert Guards().check(query, stored) == "quantifiers"
    assert Guards().check(stored, query) == "quantifiers"


@pytest.mark.parametrize(
    "text",
    ["Which one is better?", "Can I have more than one account?", "Is one day enough?",
     "Is there one more step?"],
)
def test_one_that_picks_no_item_is_no_scope(text: str) -> None:
    from paracache.guards import features

    assert ("extent", 1) not in features(text).quantifiers


def test_a_shared_detail_vouches_only_when_one_side_says_all_the_other_does() -> None:
    # both name the barn owl (a shared name), each names another bird: not vouched for
    assert not Guards.vouches("How do I tell a barn owl from a snowy owl?",
                              "How do I tell a barn owl from a tawny owl?", 0.87, 0.9)
    # one side only adds words ("track"): still vouched for by the shared parcel number
    assert Guards.vouches("Where is parcel 88231?", "Can you track parcel 88231 for me?",
                          0.87, 0.9)
    assert Guards.vouches("Do you accept Apple Pay?", "Can I pay with Apple Pay?", 0.87, 0.9)


@pytest.mark.parametrize(
    ("query", "stored", "guard"),
    [
        # a time relation: during against after or before
        ("Can I swim while my tattoo is healing?", "Can I swim after my tattoo is healing?",
         "quantifiers"),
        # a preposition and its opposite in the same place
        ("Should I plane with the grain of the board?",
         "Should I plane against the grain of the board?", "edits"),
        # "hardly" negates what it stands before
        ("Is it normal for my cat to eat at night?",
         "Is it normal for my cat to hardly eat at night?", "negation"),
    ],
)
def test_time_relations_prepositions_and_negative_adverbs(
    query: str, stored: str, guard: str
) -> None:
    assert Guards(learned=False).check(query, stored) == guard


def test_a_while_is_no_time_relation() -> None:
    from paracache.guards import features

    assert features("It's been pending for a while, when will it go through?").quantifiers == set()


def test_the_learned_check_vouches_only_for_questions_that_ask_alike() -> None:
    from paracache.guards import same_question

    why, how = "Why do dogs bark at night?", "How can dogs stop barking at night?"
    assert same_question(why, how, 0.86) >= 0.6  # the words alone would do
    assert not Guards.vouches(why, how, 0.86, 0.9)  # a reason against a way to do it
    # where / how-do-I, how much / how big, and "how is" (which tells no kind) ask alike
    assert Guards.vouches("Where do I find my PIN?", "How do I find my PIN?", 0.86, 0.9)
    assert Guards.vouches("How much should I save each month?",
                          "How big should my monthly savings be?", 0.86, 0.9)


def test_only_some_against_all_is_another_scope() -> None:
    assert Guards().check("Why do only the leaves at the top of my basil wilt?",
                          "Why do all the leaves of my basil wilt?") == "quantifiers"


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        # "beter", "neded", "cots" are in the vocabulary (a rare word, a regular inflection
        # of one) but far rarer than the word one edit away
        ("How do I get beter at chess?", "How do I get better at chess?"),
        ("Is a visa neded for Peru?", "Is a visa needed for Peru?"),
        ("How much does it cots to ship a piano?", "How much does it cost to ship a piano?"),
    ],
)
def test_a_rare_word_beside_a_far_more_frequent_one_is_a_typo(query: str, stored: str) -> None:
    assert typo_repeat(query, stored)
    assert Guards.vouches(query, stored, 0.7, 0.9)


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("Is my cat covered?", "Is my car covered?"),  # two common words
        ("Is there a fee for it?", "Is there a few for it?"),
        ("Is the milk in the dairy?", "Is the milk in the diary?"),  # two letters swapped
    ],
)
def test_two_common_words_one_edit_apart_are_no_typo(query: str, stored: str) -> None:
    assert not typo_repeat(query, stored)


# --------------------------------------------------------------------------- in place
# Near misses served above the threshold on the development sets (held-out 5, 7, 8, 9 and
# 10: each a pair as the set has it), and right repeats of those sets and of Banking77
# that the same rules must leave alone.


@pytest.mark.parametrize(("stored", "asked"), [
    ("How much priming sugar do I need to carbonate 5 gallons of pale ale?",
     "How much priming sugar do I need to carbonate 2.5 gallons of pale ale?"),
    ("Can I swim with a watch rated 30m water resistance?",
     "Can I swim with a watch rated 200m water resistance?"),
    ("Is a 3 degree base bevel too much for carving?",
     "Is a 0.5 degree base bevel too much for carving?"),
    ("What's a good 2k erg time for a 16-year-old girl?",
     "What's a good 6k erg time for a 16-year-old girl?"),
])
def test_a_number_replaced_in_place_is_another_question(stored: str, asked: str) -> None:
    # a decimal the dates guard reads as a day and month, a unit glued on: the numbers
    # guard read no conflict; the words around the number are the same
    assert Guards().check(asked, stored, 0.95) == "numbers"
    assert Guards().check(stored, asked, 0.95) == "numbers"
    assert Guards(numbers=False).check(asked, stored, 0.95) != "numbers"


def test_the_same_number_written_otherwise_is_no_change() -> None:
    assert Guards().check("I was charged two times for the same thing.",
                          "I was charged twice for the same thing.", 0.98) is None
    assert Guards().check("Can I top up 1,000 pounds?", "Can I top up 1000 pounds?", 0.99) is None


@pytest.mark.parametrize(("stored", "asked"), [
    ("Should a beginner surfer use a longer board?",
     "Should a beginner surfer use a shorter board?"),
    ("Should I steep oolong longer for the later infusions?",
     "Should I steep oolong shorter for the later infusions?"),
])
def test_an_opposite_in_place_of_a_skipped_word_is_rejected(stored: str, asked: str) -> None:
    # "longer" is a word the negation reader skips ("no longer"), so neither the WordNet
    # opposites nor ``edits`` saw it; in place of its opposite it is the question
    assert Guards().check(asked, stored, 0.97) == "opposites"
    assert Guards().check(stored, asked, 0.97) == "opposites"


@pytest.mark.parametrize(("stored", "asked"), [
    ("How do I sort column B from smallest to largest?",
     "How do I sort column B from largest to smallest?"),
    ("Should my legs push before my arms pull during the rowing stroke?",
     "Should my arms pull before my legs push during the rowing stroke?"),
    ("is a perforated stamp worth more than an imperforate one",
     "is an imperforate stamp worth more than a perforated one"),
])
def test_the_same_words_with_roles_swapped_are_another_question(stored: str, asked: str) -> None:
    assert Guards().check(asked, stored, 0.99) == "edits"
    assert Guards(edits=False).check(asked, stored, 0.99) is None


@pytest.mark.parametrize(("stored", "asked"), [
    # two neighbours swapped, a phrase moved to the front: the same question (held-out 4
    # and 3 paraphrases)
    ("Is plastic number 5 recyclable?", "Is number 5 plastic recyclable?"),
    ("Which brake lever controls the front brake on a UK bike?",
     "On a UK bike, which brake lever controls the front brake?"),
])
def test_words_moved_without_swapping_roles_are_the_same_question(stored: str, asked: str) -> None:
    assert Guards().check(asked, stored, 0.99) is None


@pytest.mark.parametrize(("stored", "asked"), [
    ("Which yoga poses should I do during pregnancy?",
     "Which yoga poses should I avoid during pregnancy?"),
    ("Should I train on an empty stomach before karate class?",
     "Should I avoid training on an empty stomach before karate class?"),
])
def test_an_avoiding_verb_put_before_the_same_action_is_rejected(stored: str, asked: str) -> None:
    assert Guards().check(asked, stored, 0.98) == "edits"
    assert Guards().check(stored, asked, 0.98) == "edits"


def test_an_avoiding_verb_on_both_sides_is_no_change() -> None:
    # Banking77: both ask how to avoid the fee
    assert Guards().check("How do I avoid a fee to use an ATM?",
                          "How do I avoid paying a fee to use an ATM?", 0.97) is None


@pytest.mark.parametrize(("stored", "asked"), [
    ("How do I teach Catan to a group of adults who've never played?",
     "How do I teach Catan to a group of young kids who've never played?"),
    ("What's the minimum age to ride a rental e-scooter in Madrid?",
     "What's the minimum age to ride a privately owned e-scooter in Madrid?"),
    ("How long does it take to get a black belt in Brazilian jiu-jitsu?",
     "How long does it take to get a black belt in judo?"),
])
def test_one_word_for_two_or_three_unrelated_ones_is_an_edit(stored: str, asked: str) -> None:
    assert Guards().check(asked, stored, 0.95) == "edits"
    assert Guards().check(stored, asked, 0.95) == "edits"


@pytest.mark.parametrize(("stored", "asked"), [
    # a phrasal verb for a verb, a compound's part (held-out 3 and 4 paraphrases)
    ("How do I set up a VPN on my iPhone?", "How do I configure a VPN on my iPhone?"),
    ("Is 15 kg of honey enough for a colony to overwinter?",
     "Is 15 kg of honey enough for a colony to get through winter?"),
])
def test_one_word_for_a_phrasal_verb_or_its_own_parts_is_no_edit(stored: str, asked: str) -> None:
    assert Guards().check(asked, stored, 0.95) is None


@pytest.mark.parametrize(("stored", "asked"), [
    ("Do I need a license to host a board game night at my house?",
     "Do I need a license to host a board game night at my café?"),
    ("How much loose leaf tea should I buy per month for myself?",
     "How much loose leaf tea should I buy per month for my café?"),
])
def test_a_borrowed_accented_word_leaves_the_question_english(stored: str, asked: str) -> None:
    assert Guards().check(asked, stored, 0.92) == "edits"
    assert Guards().check(stored, asked, 0.92) == "edits"
    # a typo'd repeat with the same borrowed word is still the same question
    assert Guards().check("Is my café open on Sundya?", "Is my café open on Sunday?", 0.9) is None


def test_in_place_changes_hold_through_the_real_index(make_index: Any) -> None:
    index = make_index()
    scope = Scope(tenant="i14veto2")
    index.store("Should a beginner surfer use a longer board?", "Yes: a longboard.", scope)
    index.store("How do I sort column B from smallest to largest?", "Sort A to Z.", scope)
    assert index.lookup("Should a beginner surfer use a shorter board?", scope) is None
    assert index.lookup("How do I sort column B from largest to smallest?", scope) is None
    hit = index.lookup("How can I sort column B from smallest to largest?", scope)
    assert hit is not None and hit.response == "Sort A to Z."


# --------------------------------------------------------------------------- templates

_CONTEXT = (
    "Acme Bank help centre. Cards: you can freeze a card in the app under Cards > Freeze. "
    "A frozen card can be unfrozen at any time. Lost cards should be reported at once; a "
    "replacement arrives in 5 to 7 working days. Card payments abroad carry no fee in the "
    "EU. Transfers: SEPA transfers arrive the next working day; instant transfers within "
    "seconds, up to 15,000 EUR. International transfers take 2 to 4 days. Accounts: a "
    "current account costs 4 EUR a month, waived with 1,000 EUR of monthly income. Savings "
    "accounts pay 2.1 % a year. Statements are in the app under Accounts > Statements, as "
    "PDF, for the last 10 years. Interest is paid monthly."
)
_TEMPLATES = (
    "Use the following context to answer the question.\nContext: {context}\n\n"
    "Question: {question}\nAnswer:",
    "Answer the question using the context.\nQuestion: {question}\nContext: {context}\nAnswer:",
)


@pytest.mark.parametrize("template", _TEMPLATES)
def test_one_template_around_two_questions_is_two_questions(template: str) -> None:
    def ask(question: str) -> str:
        return template.format(context=_CONTEXT, question=question)

    stored = ask("How long does a replacement card take to arrive?")
    for other in ("What are your opening hours on Saturday?",
                  "How much does the current account cost?", "Can I freeze my card?"):
        assert Guards().check(ask(other), stored, 0.93) is not None, other
    assert Guards().check(ask("How much does the current account cost?"), stored) == "edits"
    for same in ("How long until a replacement card arrives?",
                 "How long does it take to get a replacement card?",
                 "How long does a replacment card take to arive?"):
        assert Guards().check(ask(same), stored, 0.97) is None, same
    # the rule needs a shared template: short questions are the other guards' business
    assert Guards().check("When do branches open?", "What does a current account cost?") is None


def test_a_retrieved_context_does_not_answer_another_question_through_the_real_index(
    make_index: Any,
) -> None:
    # The shared context makes the embeddings alike (on main: 0.91-0.93, served) and
    # every detail "shared" (0.82-0.87, vouched for): a template around two questions.
    index = make_index()
    scope = Scope(model="m")
    ask = _TEMPLATES[0].format
    index.store(ask(context=_CONTEXT, question="How long does a replacement card take to arrive?"),
                "5 to 7 working days.", scope)
    for other in ("What are your opening hours on Saturday?",
                  "How much does the current account cost?"):
        verdict = index.lookup_verdict(ask(context=_CONTEXT, question=other), scope)
        assert verdict.hit is None, (other, verdict.similarity)
    hit = index.lookup(ask(context=_CONTEXT, question="How long until a replacement card arrives?"),
                       scope)
    assert hit is not None and hit.response == "5 to 7 working days."
