"""Guards: a cheap check between the nearest cached question and a hit.

Embedding similarity cannot tell "Please cancel my order" from "Please don't cancel my
order", "Where is parcel 1047?" from "Where is parcel 1074?" or "Can I pay with Apple
Pay?" from "Can I pay with Google Pay?": the vectors are nearly the same, the right
answers are not. A guard compares the *answer-changing details* of the query and of a
candidate's stored prompt and rejects the candidate when they conflict; the semantic
layer then tries the next candidate of its top-k, or misses.

Pure code, no I/O: one tokenising pass, precompiled regular expressions that only run
when a text has digits or the words they look for, and small word lists; English only.
A text's features are extracted once and kept in an LRU keyed by text, so the query is
analysed once per lookup however many candidates it is compared with, and popular
stored prompts are not analysed again (tens of microseconds for a new text).

Details mentioned on one side only ("my card hasn't arrived *after 2 weeks*" vs "my card
hasn't arrived") are usually context, not a different question, so most guards fire on a
*conflict*: both texts state the detail, differently. Identifiers are the exception: an
answer about order 1047 is never the answer about "my order".

The guards (each on by default, each switchable):

``identifiers``
    Different order/parcel/account numbers, codes mixing letters and digits, e-mail
    addresses, URLs, UUIDs, or an identifier on one side only.
``amounts``
    Different sums of money ("$50" vs "$500", "20 euros" vs "20 dollars") or currencies
    ("pay in euros" vs "pay in dollars").
``dates``
    Different dates, months, weekdays, years, clock times or relative days ("today" vs
    "yesterday", "this month" vs "next month").
``numbers``
    Different numbers, counts ("twice" = "two times"), ordinals, percentages or
    durations ("2 weeks" = "14 days" = "fourteen days"; "a week" = "7 days"); or the same
    words with a number replaced in place, whatever it counts ("carbonate *5* / *2.5*
    gallons", "rated *30*m / *200*m").
``negation``
    A word negated in one text ("don't *cancel*", "has not *arrived*", "no *fee*",
    "*hardly* sleeps", "*without* a driver") and stated in the other, which has no
    negation ("cancel my order"). Not a conflict: a reported problem against a
    how/where/when question about the same thing ("I can't find the top-up option" vs
    "Where do I find the top-up option?"), unless the two are the same words but the
    negation ("Which museums *don't* charge a fee?" / "Which museums charge a fee?").
``opposites``
    Opposite actions or states, one side each: "activate"/"deactivate", "lock"/
    "unlock", "increase"/"decrease", "open"/"close", "deposit"/"withdraw",
    "approved"/"declined", ... ("not approved" is left to the negation guard: it does
    not conflict with "declined"); a word replaced in place by its WordNet opposite
    ("use a *longer* / *shorter* board").
``quantifiers``
    Exclusive scope words, one side each: "all" vs "one of"/"some of", "minimum" vs
    "maximum", "first" vs "last", "before" vs "after" vs "while", "one" (item) vs "all",
    "domestic" vs "international", "personal" vs "business", "daily" vs "monthly",
    "virtual" vs "physical", ...
``entities``
    Swapped names: each side names something (a capitalised name, an acronym, a brand)
    that the other does not mention ("Apple Pay" vs "Google Pay", "France" vs "Spain").
``edits``
    The two questions are the same words but for one or two small edits that change what
    is asked (:func:`minimal_edit`): a content word replaced by one that WordNet does not
    relate to it ("secure my *home* / *office* Wi-Fi", "make the bucket *public* /
    *private*", "for *adults* / *children*"; or two swapped: "the *ceremony* but not the
    *reception*"), a directional particle or preposition flipped ("tap *in* / *out*",
    "*with* / *against* the grain"), a prefix added ("*off*-peak") or a person or
    possessor added ("my *neighbor's* pond", "*for my
    partner*"), one word put for two or three unrelated ones ("for *adults* / *young
    kids*", "a *rental* / *privately owned* e-scooter"), two parts swapped around the
    words between them ("from *smallest* to *largest*" / "from *largest* to *smallest*")
    or an avoiding verb put before the same action ("should I *train*" / "should I *avoid
    training*"). Synonyms ("planes" / "airplanes"), derived forms, direct hypernyms ("fee"
    / "charge"), inflections, typos, function words, a phrasal verb for a verb ("set up" /
    "configure") and words moved without swapping roles are no change; a rewording of more
    than a word here and there is not a minimal edit. English, with at most one borrowed
    accented word ("my *café*"). A backstop for the guards above: they name the detail
    when they know it. Also one prompt template (an instruction, a retrieved context,
    "Answer:") around two different questions: the shared words make the embeddings alike
    and every detail "shared", so the clauses that differ are compared on their own.
``neighbours``
    Not a pair check: a candidate below the threshold that the other guards vouch for
    is not served when another candidate with a different answer (to another question)
    is within :data:`VOUCHED_GAP` of its similarity: the nearest stored questions
    disagree (Banking77's ``card_arrival`` / ``card_delivery_estimate``), and the
    candidate has only the guards' word for it. A candidate at or above the threshold is
    served whatever its neighbours: an LLM's answers all differ, so on a dense store
    nearly every such hit has a close neighbour "with another answer", and abstaining
    there refused hits that were as often right as the rest (benchmarks/RESULTS.md,
    issue 13).
``learned``
    The learned pair check (:func:`same_question`, a logistic regression on the
    similarity and the word overlap of the two questions) finds the pair very unlikely to
    be the same question, typically one content word swapped for another ("safe for
    *adults*" vs "safe for *children*", "*men's* sizes" vs "*women's* sizes").

The package, one job a module: :mod:`~paracache.guards.check` (the :class:`Guards` a
lookup runs, vouching, the ``neighbours`` rule), :mod:`~paracache.guards.analysis` (one
text's details), :mod:`~paracache.guards.compare` (two texts' details against each other),
:mod:`~paracache.guards.edits` (minimal edits), :mod:`~paracache.guards.pairs` (the learned
pair check) and :mod:`~paracache.guards.vocabulary` (word lists and patterns).

Example:
    >>> from paracache.guards import Guards
    >>> g = Guards()
    >>> g.check("Please cancel my order", "Please don't cancel my order")
    'negation'
    >>> g.check("Where is parcel 1047?", "Where is parcel 1074?")
    'identifiers'
    >>> g.check("What's your refund policy?", "Can I get my money back?") is None
    True
    >>> Guards(negation=False).check("Please cancel my order", "Please don't cancel my order")
    >>> Guards.off().active
    False
"""

from __future__ import annotations

from .analysis import MAX_GUARD_CHARS, Features, features
from .check import (
    DETAIL_MARGIN,
    GUARD_NAMES,
    LEARNED_MARGIN,
    TYPO_MARGIN,
    VETO_SIMILARITY,
    VOUCHED_GAP,
    Guards,
    neighbours_disagree,
)
from .compare import corroborates, typo_repeat
from .edits import minimal_edit
from .pairs import PAIR_FEATURES, pair_features, same_question

__all__ = [
    "DETAIL_MARGIN",
    "GUARD_NAMES",
    "LEARNED_MARGIN",
    "MAX_GUARD_CHARS",
    "PAIR_FEATURES",
    "TYPO_MARGIN",
    "VETO_SIMILARITY",
    "VOUCHED_GAP",
    "Features",
    "Guards",
    "corroborates",
    "features",
    "minimal_edit",
    "neighbours_disagree",
    "pair_features",
    "same_question",
    "typo_repeat",
]
