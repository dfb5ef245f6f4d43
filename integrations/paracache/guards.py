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
    when they know it.
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

import dataclasses
import difflib
import functools
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import lexicon
from .spelling import known_words as _known_words

if TYPE_CHECKING:
    from .core import Candidate, LookupRequest

__all__ = [
    "GUARD_NAMES",
    "PAIR_FEATURES",
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

#: The guards, in the order they are checked (the first that fails names the rejection).
GUARD_NAMES = (
    "identifiers",
    "amounts",
    "dates",
    "numbers",
    "negation",
    "opposites",
    "quantifiers",
    "entities",
    "edits",
    "learned",
    "neighbours",
)

#: Characters of a text the guards look at (the default embedder sees about as many).
MAX_GUARD_CHARS = 2_000
#: How far below the threshold a candidate that shares a specific detail with the
#: question may be served (:func:`corroborates`); typo'd repeats are served further down,
#: to the core's ``corroboration_margin``.
DETAIL_MARGIN = 0.05
#: A candidate served below the threshold (the guards vouched for it) needs this lead over
#: any other candidate with another answer to another question (the ``neighbours`` guard):
#: on Banking77, vouched hits with a rival closer than this were right about half the time.
VOUCHED_GAP = 0.05
#: How far below the threshold a typo'd repeat of the question may be served (the core
#: asks only down to its ``corroboration_margin``).
TYPO_MARGIN = 0.35
#: How far below the threshold the learned pair check (:func:`same_question`) may vouch
#: for a candidate.
LEARNED_MARGIN = 0.20
#: The ``learned`` guard reads a pair's similarity as at least this (the default
#: threshold): how similar is enough is the threshold's business (a looser one the user
#: sets is honoured); the veto judges the words, as if the pair sat at the threshold.
VETO_SIMILARITY = 0.90

# --------------------------------------------------------------------------- word lists

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_MULTIPLIERS = {"once": 1, "twice": 2, "thrice": 3}
_ORDINALS = {
    "first": 1,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}  # "second" is left out: it is also a unit of time and a verb
#: Duration units in minutes (a month counted as 30 days, a year as 365).
_DURATIONS = {
    "minute": 1,
    "min": 1,
    "hour": 60,
    "hr": 60,
    "day": 1_440,
    "night": 1_440,
    "week": 10_080,
    "fortnight": 20_160,
    "month": 43_200,
    "year": 525_600,
}
_MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
#: Month spellings that are also ordinary words: a month only next to a day or a year.
_AMBIGUOUS_MONTHS = {
    "may",
    "march",
    "mar",
    "jan",
    "dec",
    "sep",
    "oct",
    "nov",
    "aug",
    "jun",
    "jul",
    "apr",
    "feb",
}
_WEEKDAYS = {
    "monday": 1,
    "tuesday": 2,
    "wednesday": 3,
    "thursday": 4,
    "friday": 5,
    "saturday": 6,
    "sunday": 7,
    "mondays": 1,
    "tuesdays": 2,
    "wednesdays": 3,
    "thursdays": 4,
    "fridays": 5,
    "saturdays": 6,
    "sundays": 7,
    "weekend": 8,
    "weekends": 8,
}
_CURRENCY_SYMBOLS = {
    "$": "usd",
    "€": "eur",
    "£": "gbp",
    "¥": "jpy",
    "₹": "inr",
    "₽": "rub",
    "₩": "krw",
    "₿": "btc",
    "฿": "thb",
    "₺": "try",
    "₪": "ils",
    "₫": "vnd",
    "₦": "ngn",
    "₱": "php",
}
_CURRENCY_WORDS = {
    "usd": "usd",
    "dollar": "usd",
    "dollars": "usd",
    "buck": "usd",
    "bucks": "usd",
    "cent": "usd-cent",
    "cents": "usd-cent",
    "eur": "eur",
    "euro": "eur",
    "euros": "eur",
    "gbp": "gbp",
    "pound": "gbp",
    "pounds": "gbp",
    "quid": "gbp",
    "sterling": "gbp",
    "pence": "gbp-pence",
    "penny": "gbp-pence",
    "jpy": "jpy",
    "yen": "jpy",
    "inr": "inr",
    "rupee": "inr",
    "rupees": "inr",
    "chf": "chf",
    "franc": "chf",
    "francs": "chf",
    "cad": "cad",
    "aud": "aud",
    "nzd": "nzd",
    "hkd": "hkd",
    "sgd": "sgd",
    "cny": "cny",
    "rmb": "cny",
    "yuan": "cny",
    "rub": "rub",
    "ruble": "rub",
    "rubles": "rub",
    "rouble": "rub",
    "roubles": "rub",
    "sek": "sek",
    "nok": "nok",
    "dkk": "dkk",
    "krona": "sek",
    "kronor": "sek",
    "krone": "nok",
    "kroner": "nok",
    "pln": "pln",
    "zloty": "pln",
    "mxn": "mxn",
    "peso": "mxn",
    "pesos": "mxn",
    "brl": "brl",
    "reais": "brl",
    "btc": "btc",
    "bitcoin": "btc",
    "bitcoins": "btc",
    "eth": "eth",
}
#: Currency words too ambiguous to count as a currency without a number next to them.
_WEAK_CURRENCIES = {"cent", "cents", "pence", "penny", "pound", "franc", "buck", "bucks"}
_CURRENCY_ADJ = {  # "US dollars", "Canadian dollars", "Swiss francs"
    "us": "usd",
    "american": "usd",
    "canadian": "cad",
    "australian": "aud",
    "swiss": "chf",
    "hong kong": "hkd",
    "new zealand": "nzd",
    "singapore": "sgd",
    "mexican": "mxn",
    "swedish": "sek",
    "norwegian": "nok",
    "danish": "dkk",
    "indian": "inr",
    "british": "gbp",
    "uk": "gbp",
}
#: Words that introduce an identifier: "order 1047", "parcel #1047", "account no. 55".
_ID_NOUNS = (
    "order|parcel|package|shipment|ticket|invoice|account|acct|reference|ref|case|tracking|"
    "booking|reservation|confirmation|transaction|claim|policy|id|serial|item|sku|flight|"
    "room|seat|gate|platform|route|bus|train|extension|ext|ending(?: in)?|number|no|nr|num"
)

#: Negation cues. Contractions ("don't", "dont", "can't", "cant") are caught by their
#: ``n't``/``nt`` ending too.
_NEGATORS = {
    "hardly",
    "barely",
    "scarcely",
    "not",
    "no",
    "never",
    "without",
    "none",
    "nothing",
    "nobody",
    "nowhere",
    "neither",
    "nor",
    "cannot",
    "unable",
    "dont",
    "doesnt",
    "didnt",
    "isnt",
    "arent",
    "wasnt",
    "werent",
    "havent",
    "hasnt",
    "hadnt",
    "wont",
    "wouldnt",
    "cant",
    "couldnt",
    "shouldnt",
    "mustnt",
    "neednt",
    "aint",
}
#: Words that negate the verb after "to": "I have yet to receive", "it failed to arrive".
_IMPLICIT_NEGATORS = {
    "yet",
    "fail",
    "fails",
    "failed",
    "failing",
    "refuse",
    "refused",
    "refuses",
    "neglected",
    "forgot",
    "forget",
}
#: Verbs of wanting: "I don't want to cancel" is a different request, not a problem report.
_VOLITION = {
    "want",
    "need",
    "wish",
    "like",
    "intend",
    "plan",
    "mean",
    "prefer",
    "require",
    "ask",
    "agree",
    "authoriz",
    "authoris",
    "allow",
    "accept",
    "consent",
}
#: Words skipped when looking for the word a negation applies to ("hasn't *yet* arrived").
_NEG_SKIP = {
    "a",
    "an",
    "the",
    "any",
    "be",
    "been",
    "being",
    "is",
    "are",
    "was",
    "were",
    "am",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "yet",
    "even",
    "ever",
    "really",
    "actually",
    "still",
    "also",
    "quite",
    "at",
    "all",
    "to",
    "so",
    "very",
    "too",
    "longer",
    "more",
    "able",
    "i",
    "you",
    "we",
    "they",
    "he",
    "she",
    "it",
    "me",
    "my",
    "your",
    "our",
    "their",
    "his",
    "her",
    "its",
    "this",
    "that",
    "these",
    "those",
    "just",
    "always",
    "necessarily",
    "exactly",
    "fully",
    "properly",
    "correctly",
    "anymore",
    "please",
    "currently",
    "seem",
    "seems",
    "seemed",
}
#: Words that end the reach of a negation.
_CLAUSE_END = {
    "but",
    "and",
    "or",
    "because",
    "since",
    "though",
    "although",
    "if",
    "when",
    "while",
    "then",
    "which",
    "who",
    "until",
    "unless",
    "so",
}
#: Function words never taken as the content of either side.
_STOP = (
    _NEG_SKIP
    | _CLAUSE_END
    | {
        "of",
        "in",
        "on",
        "for",
        "with",
        "from",
        "by",
        "about",
        "as",
        "into",
        "can",
        "could",
        "will",
        "would",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "what",
        "why",
        "how",
        "where",
        "who",
        "whom",
        "whose",
        "which",
        "there",
        "here",
        "some",
        "not",
        "no",
        "i'm",
        "i've",
        "i'd",
        "i'll",
        "it's",
        "that's",
        "there's",
        "what's",
        "you're",
        "we're",
    }
)
_WH = {
    "how",
    "where",
    "when",
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "what's",
    "where's",
    "how's",
    "when's",
    "who's",
    "whats",
    "wheres",
    "hows",
}
_WHY = {"why", "why's", "whys", "how come"}

#: Groups of mutually exclusive scope words: each group lists its sides.
_QUANTIFIER_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "extent": (
        (
            "all",
            "every",
            "each",
            "entire",
            "whole",
            "both",
            "everything",
            "everyone",
            "everybody",
            "all of",
        ),
        (
            "some of",
            "one of",
            "part of",
            "partial",
            "partially",
            "only one",
            "just one",
            "a single",
            "one single",
            "a few of",
            "several of",
            "either",
            "half",
            "only the",
            "only my",
            "only some",
            "only certain",
        ),
    ),
    "bound": (
        (
            "minimum",
            "min",
            "least",
            "lowest",
            "smallest",
            "fewest",
            "less than",
            "fewer than",
            "below",
            "under",
            "at least",
            "lower limit",
        ),
        (
            "maximum",
            "max",
            "most",
            "highest",
            "largest",
            "biggest",
            "more than",
            "above",
            "over",
            "at most",
            "upper limit",
            "up to",
        ),
    ),
    "order": (
        ("first", "earliest", "oldest", "initial"),
        ("last", "latest", "newest", "most recent", "final"),
    ),
    "time": (
        ("before", "prior to", "earlier than"),
        ("after", "later than"),
        ("while", "whilst", "during"),
    ),
    "reach": (
        (
            "domestic",
            "domestically",
            "local",
            "locally",
            "inland",
            "within the country",
            "in the country",
            "national",
            "nationally",
        ),
        (
            "international",
            "internationally",
            "abroad",
            "overseas",
            "foreign",
            "cross-border",
            "worldwide",
            "outside the country",
        ),
    ),
    "holder": (
        ("personal", "individual", "private"),
        ("business", "company", "corporate", "commercial", "joint"),
    ),
    "period": (
        ("daily", "per day", "a day", "each day", "every day"),
        ("weekly", "per week", "a week", "each week", "every week"),
        ("monthly", "per month", "a month", "each month", "every month"),
        ("yearly", "annual", "annually", "per year", "a year", "each year", "every year"),
    ),
    "form": (("physical", "plastic"), ("virtual", "digital", "disposable")),
    "speed": (("standard", "regular"), ("express", "instant", "expedited", "same-day")),
}
#: Words of the "bound" group that only count in front of a number or an amount.
_NUMERIC_BOUNDS = {"below", "under", "over", "above"}
#: "a day", "a week" are periods only in "N times a day", "per", or next to a limit or fee.
_PERIOD_PHRASES = {"a day", "a week", "a month", "a year"}

#: Opposite actions and states: (side A, side B), as words (stemmed when loaded).
_OPPOSITES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("activate", "activation", "enable", "reactivate", "reactivation", "turn on", "switch on"),
        ("deactivate", "deactivation", "disable", "turn off", "switch off"),
    ),
    (("lock",), ("unlock",)),
    (("block",), ("unblock",)),
    (("freeze", "frozen", "froze"), ("unfreeze", "unfrozen")),
    (("pause", "suspend", "suspension"), ("resume", "unpause", "reinstate")),
    (
        (
            "subscribe",
            "subscription",
            "sign up",
            "opt in",
            "enrol",
            "enroll",
            "register",
            "registration",
        ),
        ("unsubscribe", "opt out", "deregister", "unregister"),
    ),
    (("open", "opening"), ("close", "closing", "closure", "shut")),
    (
        ("add", "link", "attach", "include", "install"),
        ("remove", "removal", "delete", "unlink", "detach", "exclude", "uninstall"),
    ),
    (
        ("increase", "raise", "upgrade", "extend", "extension"),
        ("decrease", "reduce", "reduction", "lower", "downgrade", "shorten"),
    ),
    (
        ("deposit", "top up", "topup", "top-up", "pay in"),
        ("withdraw", "withdrawal", "take out", "cash out", "pay out"),
    ),
    (("buy", "purchase"), ("sell", "sale")),
    (
        (
            "accept",
            "acceptance",
            "approve",
            "approval",
            "grant",
            "succeed",
            "success",
            "successful",
            "successfully",
            "pass",
        ),
        (
            "decline",
            "reject",
            "rejection",
            "deny",
            "denial",
            "refuse",
            "refusal",
            "fail",
            "failure",
            "unsuccessful",
        ),
    ),
    (("incoming", "inbound"), ("outgoing", "outbound")),
    (("import",), ("export",)),
    (("log in", "login", "sign in", "signin"), ("log out", "logout", "sign out", "signout")),
    (("gain", "profit"), ("loss", "lose")),
    (("overpay", "overpaid", "overcharge"), ("underpay", "underpaid", "undercharge")),
)

#: Capitalised words that are not names: sentence starters, greetings, common words.
_NOT_NAMES = {
    "i",
    "i'm",
    "i've",
    "i'd",
    "i'll",
    "ok",
    "okay",
    "hi",
    "hello",
    "hey",
    "dear",
    "thanks",
    "thank",
    "please",
    "yes",
    "no",
    "mr",
    "mrs",
    "ms",
    "dr",
    "sir",
    "madam",
    "am",
    "pm",
    "ps",
    "fyi",
    "asap",
    "lol",
    "ty",
    "pls",
    "plz",
    "btw",
    "omg",
    "faq",
    "a",
    "the",
    "my",
    "your",
    "our",
    "it",
    "this",
    "that",
    "is",
    "are",
    "can",
    "could",
    "will",
    "would",
    "do",
    "does",
    "did",
    "how",
    "why",
    "what",
    "where",
    "when",
    "which",
    "who",
    "help",
    "urgent",
    "important",
    "note",
    "update",
    "question",
    "issue",
    "problem",
    "re",
    "fw",
    "fwd",
    "hmm",
    "um",
    "uh",
    "oh",
    "wow",
    "so",
    "and",
    "but",
    "or",
    "if",
    "also",
    "then",
    "now",
    "today",
    "yesterday",
    "tomorrow",
    "last",
    "next",
    "morning",
    "evening",
    "in",
    "on",
    "at",
    "for",
    "with",
    "to",
    "from",
    "of",
    "by",
    "after",
    "before",
    "as",
    "there",
    "here",
    "we",
    "you",
    "they",
    "he",
    "she",
    "me",
    "us",
    "them",
    "not",
    "any",
    "all",
    "some",
    "one",
    "just",
    "still",
    "why's",
    "what's",
    "it's",
    "that's",
}
#: Common spellings of the same name, reduced to one.
_ALIASES = {
    "usa": "us",
    "u.s": "us",
    "u.s.a": "us",
    "united states": "us",
    "america": "us",
    "american": "us",
    "states": "us",
    "uk": "uk",
    "u.k": "uk",
    "united kingdom": "uk",
    "britain": "uk",
    "great britain": "uk",
    "british": "uk",
    "england": "uk",
    "eu": "eu",
    "european union": "eu",
    "europe": "eu",
    "european": "eu",
    "uae": "uae",
    "emirates": "uae",
    "united arab emirates": "uae",
    "nyc": "new york",
    "ny": "new york",
    "la": "los angeles",
    "sf": "san francisco",
    "amex": "american express",
    "mc": "mastercard",
    "master card": "mastercard",
}

_ALIAS_FIRST = frozenset(k.split()[0] for k in _ALIASES if " " in k)
_ALIAS_KEYS = frozenset(_ALIASES)

_IRREGULAR = {
    "sent": "send",
    "got": "get",
    "gotten": "get",
    "paid": "pay",
    "made": "make",
    "took": "take",
    "taken": "take",
    "gave": "give",
    "given": "give",
    "bought": "buy",
    "sold": "sell",
    "lost": "lose",
    "stolen": "steal",
    "stole": "steal",
    "broke": "break",
    "broken": "break",
    "went": "go",
    "gone": "go",
    "came": "come",
    "left": "leave",
    "saw": "see",
    "seen": "see",
    "knew": "know",
    "known": "know",
    "found": "find",
    "told": "tell",
    "said": "say",
    "held": "hold",
    "kept": "keep",
    "spent": "spend",
    "won": "win",
    "began": "begin",
    "begun": "begin",
    "ran": "run",
    "chose": "choose",
    "chosen": "choose",
    "froze": "freeze",
    "frozen": "freeze",
    "wrote": "write",
    "written": "write",
    "drew": "draw",
    "drawn": "draw",
    "withdrew": "withdraw",
    "withdrawn": "withdraw",
    "shut": "shut",
    "overpaid": "overpay",
    "underpaid": "underpay",
}


@functools.lru_cache(maxsize=16384)
def _stem(word: str) -> str:
    """A crude English stem: enough to match "arrive", "arrived", "arriving", "arrives".

    Example:
        >>> [_stem(w) for w in ("arrived", "arriving", "cancelled", "stopped", "sent")]
        ['arriv', 'arriv', 'cancel', 'stop', 'send']
    """
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = _IRREGULAR.get(w, w)
    if len(w) > 5 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif (len(w) > 4 and w.endswith("ed")) or (len(w) > 4 and w.endswith("es") and w[-3] in "sxz"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiousz":  # stopped -> stopp -> stop
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _phrase_key(phrase: str) -> str:
    return " ".join(_stem(w) for w in re.split(r"[\s-]+", phrase))


def _alt(words: Iterable[str]) -> str:
    """A regex alternation of words or phrases, longest first, blanks matching any space."""
    items = sorted(set(words), key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"[\s-]+") for w in items)


_QUANT_INDEX: dict[str, tuple[str, int]] = {}
for _group, _sides in _QUANTIFIER_GROUPS.items():
    for _side, _words in enumerate(_sides):
        for _w in _words:
            _QUANT_INDEX[_w.replace("-", " ")] = (_group, _side)

_QUANT_FIRST = frozenset(k.split()[0] for k in _QUANT_INDEX)

_OPP_INDEX: dict[str, tuple[int, int]] = {}
for _pair, (_side_a, _side_b) in enumerate(_OPPOSITES):
    for _side, _words in enumerate((_side_a, _side_b)):
        for _w in _words:
            _OPP_INDEX.setdefault(_phrase_key(_w), (_pair, _side))
_OPP_FIRST = frozenset(k.split()[0] for k in _OPP_INDEX if " " in k)

#: WordNet 3.0's antonyms, distilled by ``tools/build_antonyms.py`` (see the asset's
#: notice): a word or two-word phrase to its opposites.
_ANTONYMS_PATH = Path(__file__).resolve().parent / "assets" / "antonyms.json"


@functools.cache
def _antonym_lexicon() -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """The antonym lexicon as stems (stem -> opposite stems) and the first stems of its
    two-word phrases; loaded on first use (about 10 k words)."""
    with _ANTONYMS_PATH.open(encoding="utf-8") as fh:
        raw: dict[str, list[str]] = json.load(fh)["antonyms"]
    table: dict[str, set[str]] = {}
    for word, opposites in raw.items():
        key = _phrase_key(word)
        mine = table.setdefault(key, set())
        mine.update(_phrase_key(o) for o in opposites)
    # the scope words of the quantifiers guard stay its own ("minimum" / "maximum")
    own = {_phrase_key(w) for w in _QUANT_INDEX}
    lexicon = {k: frozenset(v - {k} - own) for k, v in table.items() if k not in own}
    lexicon = {k: v for k, v in lexicon.items() if v}
    first = frozenset(k.split()[0] for k in lexicon if " " in k)
    return lexicon, first


def _lexicon_words(words: list[str], asserted: Iterable[str]) -> frozenset[str]:
    """The stems of ``words`` (and of their two-word phrases) that the antonym lexicon
    knows, among the ``asserted`` ones (a negated word is the negation guard's)."""
    lexicon, first = _antonym_lexicon()
    asserted = set(asserted)
    found = {a for a in asserted if a in lexicon}
    if not first.isdisjoint(asserted):
        for i in range(len(words) - 1):
            head = _stem(words[i])
            if head in first and head in asserted:
                phrase = f"{head} {_stem(words[i + 1])}"
                if phrase in lexicon:
                    found.add(phrase)
    return frozenset(found) if found else _EMPTY


def _lexicon_opposed(q: Features, c: Features) -> bool:
    """A word of one text has its WordNet opposite in the other, and neither text has
    both ("open" / "closed", "legal" / "illegal", "inflate" / "deflate")."""
    if not (q.antonyms and c.antonyms):
        return False
    lexicon = _antonym_lexicon()[0]
    for word in q.antonyms:
        opposed = lexicon[word] & c.antonyms
        if opposed and word not in c.antonyms and opposed.isdisjoint(q.antonyms):
            return True
    return False


#: Opposite words that only count where one text has the other's word in the same place
#: (the rest of the two texts aligned): particles ("in stock" / "out of stock", "opt
#: into" / "opt out of", "turn the heat up" / "down") and degrees ("water it more" /
#: "less"). Anywhere else they are too common to compare ("log in to pay out").
_ALIGNED_OPPOSITES: tuple[tuple[tuple[tuple[str, ...], ...], ...], ...] = (
    ((("in",), ("into",), ("inside",)), (("out",), ("out", "of"), ("outside",))),
    ((("up",), ("upward",), ("upwards",)), (("down",), ("downward",), ("downwards",))),
    ((("on",), ("onto",)), (("off",), ("off", "of"))),
    ((("more",),), (("less",), ("fewer",))),
)
_ALIGNED_INDEX: dict[tuple[str, ...], tuple[int, int]] = {
    phrase: (group, side)
    for group, sides in enumerate(_ALIGNED_OPPOSITES)
    for side, phrases in enumerate(sides)
    for phrase in phrases
}
_ALIGNED_WORDS = frozenset(p[0] for p in _ALIGNED_INDEX)


def _aligned_opposed(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One text has an aligned opposite (:data:`_ALIGNED_OPPOSITES`) where the other has
    its counterpart, the words around them matching ("Is the jacket *in* stock?" / "Is the
    jacket *out of* stock?").

    Example:
        >>> _aligned_opposed(("is", "it", "in", "stock"), ("is", "it", "out", "of", "stock"))
        True
        >>> _aligned_opposed(("log", "in", "to", "pay"), ("can", "i", "cash", "out"))
        False
    """
    found_a = _ALIGNED_WORDS.intersection(a)
    found_b = _ALIGNED_WORDS.intersection(b)
    if not found_a or not found_b or found_a == found_b:
        return False
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "replace" or i2 - i1 > 2 or j2 - j1 > 2:
            continue
        x, y = _ALIGNED_INDEX.get(a[i1:i2]), _ALIGNED_INDEX.get(b[j1:j2])
        if x is not None and y is not None and x[0] == y[0] and x[1] != y[1]:
            return True
    return False


def _replaced_by_opposite(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The two token sequences are the same but for one word, replaced by its WordNet
    opposite, even a word the other guards skip as a function word ("use a *longer* /
    *shorter* board", "steep it *longer* / *shorter*").

    Example:
        >>> _replaced_by_opposite(("a", "longer", "board"), ("a", "shorter", "board"))
        True
        >>> _replaced_by_opposite(("lost", "card", "found"), ("found", "card", "lost"))
        False
    """
    if len(a) != len(b):
        return False
    differ = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(differ) != 1 or not (differ[0][0].isalpha() and differ[0][1].isalpha()):
        return False
    x, y = _stem(differ[0][0]), _stem(differ[0][1])
    lexicon = _antonym_lexicon()[0]
    return y in lexicon.get(x, ()) or x in lexicon.get(y, ())


# --------------------------------------------------------------------------- patterns

_NUMBER = r"\d+(?:[.,]\d+)*"
_NUMBER_WORD = _alt([*_UNITS, *_TENS, "a", "an", "a couple of", "couple of", "a few"])

_RE_TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*|\d+(?:[.,:]\d+)*|[.!?;:\n]|\S")
#: ``_RE_TOKEN`` for ASCII texts (the same tokens, with cheaper character classes).
_RE_TOKEN_ASCII = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[0-9]+(?:[.,:][0-9]+)*|[.!?;:\n]|\S")
_RE_DIGIT = re.compile(r"\d")
_RE_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")

_RE_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_RE_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
_RE_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_RE_CODE = re.compile(  # letters and digits mixed, e.g. AB123, X7-99Q, 4111-XXXX, v1.2, 5.10a
    r"(?<![\w$€£¥₹.,])(?=[a-z0-9.-]*\d)(?=[a-z0-9.-]*[a-z])[a-z0-9]+(?:[-.][a-z0-9]+)*(?![\w])",
    re.I,
)
_RE_NOT_CODE = re.compile(  # "2nd", "5pm", "24h", "10k", "3x", "7days", "2fa", "4g"
    r"^\d+(?:st|nd|rd|th|am|pm|h|hr|hrs|hour|hours|min|mins|s|sec|secs|d|day|days|"
    r"w|wk|wks|week|weeks|m|mo|mos|month|months|y|yr|yrs|year|years|k|mn|bn|x|fa|g|gb|mb|"
    r"kb|tb|kg|km|mi|ml|l|p|pc|pcs|eur|usd|gbp)$|^(?:mp3|mp4|h264|x86|a4|b2b|b2c|p2p|g7)$"
    r"|^\d+-[a-z]+$"  # "4-person", "2-day", "3-pack": a count and a word, not a code
    r"|^\d+[.,]\d+(?:gb|mb|kb|tb|kg|mg|km|cm|mm|ml|mp|mah|kwh|kw|ghz|mhz|hz|px|lbs|lb|oz|ft|mi|g|"
    r"w|v|k|m|x|h|s|am|pm)$",  # "3.5mm", "2.4GHz", "1.5k": a number with its unit
    re.I,
)
_RE_HASH_ID = re.compile(r"#\s?([a-z0-9][a-z0-9-]*)", re.I)
_RE_NOUN_ID = re.compile(
    rf"\b(?:{_ID_NOUNS})\.?\s*(?:#|no\.?|number|nr\.?|num\.?)?\s*:?\s*(\d[\d-]+\d|\d{{2,}})\b"
    r"(?!\s*(?:%|percent|per cent|hours?|hrs?|days?|nights?|weeks?|months?|years?|minutes?|"
    r"mins?|items?|times|people|persons?|guests?|pieces?|units?)\b)",  # "booking 48 hours"
    re.I,
)
_RE_LONG_DIGITS = re.compile(r"(?<![\d.,])\d{5,}(?![\d.,]\d)")

_CUR_SYM = "".join(re.escape(s) for s in _CURRENCY_SYMBOLS)
_RE_SYMBOL = re.compile(f"[{_CUR_SYM}]")
_RE_AMOUNT_PRE = re.compile(
    rf"([{_CUR_SYM}])\s?({_NUMBER})(\s?(?:k|m|bn|million|thousand)\b)?", re.I
)
_RE_DOLLAR_PREFIX = re.compile(r"\b(ca|cad|au|aud|nz|nzd|hk|hkd|s|sg|sgd|mx|mxn)\s?$", re.I)
_RE_AMOUNT_POST = re.compile(
    rf"(?<![\w.,])({_NUMBER})(\s?(?:k|m|bn|million|thousand)\b)?\s?"
    rf"(?:({_alt(_CURRENCY_ADJ)})\s)?({_alt(_CURRENCY_WORDS)})\b",
    re.I,
)
_RE_AMOUNT_CODE_PRE = re.compile(
    rf"\b({_alt(w for w in _CURRENCY_WORDS if len(w) == 3)})"
    rf"\s?({_NUMBER})\b",
    re.I,
)
_RE_CURRENCY = re.compile(rf"(?:\b({_alt(_CURRENCY_ADJ)})\s)?\b({_alt(_CURRENCY_WORDS)})\b", re.I)

_RE_ISO_DATE = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")
_RE_NUM_DATE = re.compile(r"\b(\d{1,2})[/.](\d{1,2})(?:[/.](\d{2,4}))?\b")
_RE_MONTH_DAY = re.compile(
    rf"\b(?:(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?)?({_alt(_MONTHS)})\.?\b"
    rf"(?:\s+(\d{{1,2}})(?:st|nd|rd|th)?\b)?(?:,?\s+(\d{{4}})\b)?",
    re.I,
)
_RE_RELATIVE = re.compile(
    r"\b(today|tonight|tomorrow|yesterday|"
    r"(?:last|next|this|previous|coming)\s+(?:week|weekend|month|year|quarter))\b",
    re.I,
)
_RE_TIME = re.compile(
    r"\b(\d{1,2})(?::(\d{2}))?\s?(am|pm|a\.m\.|p\.m\.)(?!\w)|\b(\d{1,2}):(\d{2})\b", re.I
)
_RE_YEAR = re.compile(
    r"\b(?:in|of|since|from|during|for|year|until|till)\s+((?:19|20)\d{2})\b", re.I
)
#: A count right before a unit ("2 ", "two ", "twenty-five ", "a "), matched backwards
#: from each unit word found (cheaper than scanning the whole text for the pair).
_RE_COUNT_BEFORE = re.compile(
    rf"(?<![\w.,])({_NUMBER}|(?:{_NUMBER_WORD})(?:[\s-]+(?:{_alt(_UNITS)}))?)[\s-]*$", re.I
)
_RE_TIMES_BEFORE = re.compile(
    rf"(?<![\w.,])({_NUMBER}|{_alt([*_UNITS, *_TENS])})\s+(?:[a-z]+\s+)?$", re.I
)
_RE_WORD_AT: dict[str, re.Pattern[str]] = {}


def _word_at(word: str) -> re.Pattern[str]:
    """A compiled ``\\bword\\b`` (a literal search, fast), memoised."""
    pattern = _RE_WORD_AT.get(word)
    if pattern is None:
        pattern = _RE_WORD_AT[word] = re.compile(rf"\b{re.escape(word)}\b", re.I)
    return pattern


#: Units written onto a number ("64GB", "500ml", "5kg"): the number is compared, the unit
#: dropped ("64GB" = "64 GB"). Not time units (durations are compared in minutes) nor
#: "k"/"m" (thousand, million, metre, minute).
_GLUED_UNITS = (
    "gb|mb|kb|tb|kg|mg|km|cm|mm|ml|mp|mah|kwh|kw|ghz|mhz|hz|px|lbs|lb|oz|ft|mi|g|w|v"
)
_RE_NUMBER = re.compile(
    rf"(?<![\w.,]){_NUMBER}(?![.,]\d)(?:st|nd|rd|th|{_GLUED_UNITS})?"
    r"(?:\s?%|\s(?:percent|per cent|pct)\b)?(?![\w])",
    re.I,
)
_RE_GLUED_UNIT = re.compile(rf"(?<=\d)(?:{_GLUED_UNITS})$", re.I)
_RE_PERCENT_AFTER = re.compile(r"\s*(?:%|percent\b|per cent\b|pct\b)", re.I)
_RE_NUMBER_WORDS = re.compile(
    rf"\b(?:{_alt([*_UNITS, *_TENS])})(?:[\s-]+(?:{_alt(_UNITS)}))?"
    rf"(?:\s+(?:{_alt(_SCALES)}))?\b|\b(?:{_alt(_MULTIPLIERS)})\b|\b(?:{_alt(_ORDINALS)})\b",
    re.I,
)
_RE_NUMERIC_AHEAD = re.compile(
    rf"\s*(?:than\s+)?(?:[{_CUR_SYM}]\s?)?(?:\d|(?:{_alt([*_UNITS, *_TENS])})\b)", re.I
)
_RE_PERIOD_CONTEXT = re.compile(
    r"\b(?:limit|limits|fee|fees|cost|costs|charge|charges|withdraw\w*|spend\w*|times|per|"
    r"transfer\w*|top[\s-]?ups?|payments?|allowance|max\w*|min\w*)\b"
)

_CURRENCY_KEYS = frozenset(_CURRENCY_WORDS)
_ID_NOUN_KEYS = frozenset(w for w in re.split(r"[|()?: ]+", _ID_NOUNS) if w)
_MONTH_KEYS = frozenset(_MONTHS)
_WEEKDAY_KEYS = frozenset(_WEEKDAYS)
_RELATIVE_DAYS = frozenset(["today", "tonight", "tomorrow", "yesterday"])
_RELATIVE_KEYS = frozenset(["last", "next", "this", "previous", "coming"])
_PERIOD_UNITS = frozenset(["week", "weekend", "month", "year", "quarter"])
_DURATION_KEYS = frozenset([*_DURATIONS, *(u + "s" for u in _DURATIONS), "mins", "hrs"])
_NUMBER_GATE = frozenset([*_UNITS, *_TENS, *_MULTIPLIERS, *_ORDINALS, *_SCALES]) - {"one"}
#: Words whose presence makes a text worth the numeric and date patterns.
_NUMERIC_WORDS = frozenset(
    [
        *_UNITS,
        *_TENS,
        *_SCALES,
        *_MULTIPLIERS,
        *_ORDINALS,
        *_MONTHS,
        *_WEEKDAYS,
        *_CURRENCY_WORDS,
        "today",
        "tonight",
        "tomorrow",
        "yesterday",
        "noon",
        "midnight",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "day",
        "days",
        "hour",
        "hours",
        "minute",
        "minutes",
        "fortnight",
        "night",
        "nights",
        "dozen",
        "couple",
        "times",
    ]
)


# --------------------------------------------------------------------------- features


@dataclasses.dataclass(frozen=True, slots=True)
class Features:
    """The answer-changing details of one text, as the guards compare them.

    Attributes:
        identifiers: Normalised ids, codes, e-mail addresses, URLs.
        amounts: ``currency:value`` sums of money.
        currencies: Currencies named (with or without an amount).
        dates: ``month:3``, ``day:14``, ``weekday:5``, ``rel:yesterday``, ``time:17:00``, ...
        numbers: Numbers that are not sums of money, counts (``x2`` for "twice"),
            ordinals (``#3``), percentages and durations in minutes (``10080min``).
        negated: Stems of words under a negation ("don't *cancel*").
        negated_groups: Stems negated together, one of which is the negated verb
            ("why didn't *my transfer go* through": transfer, go).
        asserted: Stems of content words not under a negation.
        negations: How many negation cues the text has.
        firm_negation: A negation of wanting or an order ("I don't want", "Don't ...").
        wh_question: Asks how, where, when, what or which (not why).
        opposites: ``(pair, side)`` of opposite actions or states used.
        quantifiers: ``(group, side)`` of scope words used.
        entities: Lowercased names (capitalised words, acronyms, CamelCase brands).
        words: Every lowercased word, singular forms and aliases (to look names up in).
        lowered: The lowercased words joined by single spaces, padded with a space.
        antonyms: Stems of words and two-word phrases, not under a negation, that have
            opposites in the WordNet lexicon (``assets/antonyms.json``).
        tokens: The lowercased words and numbers, in order (punctuation dropped).
    """

    identifiers: frozenset[str]
    amounts: frozenset[str]
    currencies: frozenset[str]
    dates: frozenset[str]
    numbers: frozenset[str]
    negated: frozenset[str]
    negated_groups: frozenset[frozenset[str]]
    asserted: frozenset[str]
    negations: int
    firm_negation: bool
    wh_question: bool
    opposites: frozenset[tuple[int, int]]
    quantifiers: frozenset[tuple[str, int]]
    entities: frozenset[str]
    words: frozenset[str]
    lowered: str
    antonyms: frozenset[str] = frozenset()
    tokens: tuple[str, ...] = ()


def _number_value(text: str) -> float | None:
    """The value of a number written in digits or words ("1,000", "twenty five", "a")."""
    t = text.lower().strip()
    if t[:1].isdigit():
        t = re.sub(r"(?:st|nd|rd|th)$", "", t)
        if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", t):
            t = t.replace(",", "")
        elif t.count(",") == 1 and "." not in t:
            t = t.replace(",", ".")  # 2,50 (a decimal comma)
        try:
            return float(t)
        except ValueError:
            return None
    words = [w for w in re.split(r"[\s-]+", t) if w]
    if words in (["a"], ["an"]):
        return 1.0
    if "couple" in words:
        return 2.0
    if "few" in words:
        return None  # vague
    total = 0.0
    current = 0.0
    seen = False
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in _SCALES:
            current = max(current, 1.0) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total += current
                current = 0.0
        elif w in ("a", "an", "and", "of"):
            continue
        else:
            return None
        seen = True
    return total + current if seen else None


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _scale(suffix: str | None) -> float:
    s = (suffix or "").strip().lower()
    return {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9}.get(s, 1.0)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the given spans replaced by spaces (so later passes skip them)."""
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _identifiers(text: str, words: frozenset[str]) -> tuple[set[str], list[tuple[int, int]]]:
    found: set[str] = set()
    spans: list[tuple[int, int]] = []
    if "@" in text or "www" in text or "://" in text or "-" in text:
        for pattern in (_RE_EMAIL, _RE_URL, _RE_UUID):
            for m in pattern.finditer(text):
                found.add(m.group(0).lower().rstrip(".,;:!?)"))
                spans.append(m.span())
        text = _blank(text, spans)
    if "#" in text:
        for m in _RE_HASH_ID.finditer(text):
            found.add(m.group(1).lower().replace("-", ""))
            spans.append(m.span())
        text = _blank(text, spans)
    if not _RE_DIGIT.search(text):
        return found, spans
    for m in _RE_NOUN_ID.finditer(text) if not _ID_NOUN_KEYS.isdisjoint(words) else ():
        found.add(m.group(1).replace("-", ""))
        spans.append(m.span(1))
    text = _blank(text, spans)
    for m in _RE_CODE.finditer(text):
        token = m.group(0)
        if _RE_NOT_CODE.match(token):
            continue
        found.add(token.lower().replace("-", ""))
        spans.append(m.span())
    text = _blank(text, spans)
    for m in _RE_LONG_DIGITS.finditer(text):
        found.add(m.group(0))
        spans.append(m.span())
    return found, spans


def _amounts(
    text: str, digits: bool, words: frozenset[str]
) -> tuple[set[str], set[str], list[tuple[int, int]]]:
    amounts: set[str] = set()
    currencies: set[str] = set()
    spans: list[tuple[int, int]] = []
    symbol = bool(_RE_SYMBOL.search(text))
    named = not _CURRENCY_KEYS.isdisjoint(words)
    if not (symbol or named):
        return amounts, currencies, spans
    if digits:
        for m in _RE_AMOUNT_PRE.finditer(text) if symbol else ():
            cur = _CURRENCY_SYMBOLS[m.group(1)]
            if cur == "usd":  # CA$, AU$, S$, MX$ ...
                prefix = _RE_DOLLAR_PREFIX.search(text[max(0, m.start() - 4) : m.start()])
                if prefix:
                    code = prefix.group(1).lower()
                    cur = {
                        "ca": "cad",
                        "au": "aud",
                        "nz": "nzd",
                        "hk": "hkd",
                        "s": "sgd",
                        "sg": "sgd",
                        "mx": "mxn",
                    }.get(code, code)
            value = _number_value(m.group(2))
            if value is not None:
                amounts.add(f"{cur}:{_fmt(value * _scale(m.group(3)))}")
                currencies.add(cur)
                spans.append(m.span())
        text = _blank(text, spans)
        for m in _RE_AMOUNT_POST.finditer(text) if named else ():
            cur = _CURRENCY_WORDS[m.group(4).lower()]
            if m.group(3):
                cur = _CURRENCY_ADJ[_RE_SPACES.sub(" ", m.group(3).lower())]
            value = _number_value(m.group(1))
            if value is not None:
                amounts.add(f"{cur}:{_fmt(value * _scale(m.group(2)))}")
                currencies.add(cur.split("-")[0])
                spans.append(m.span())
        text = _blank(text, spans)
        for m in _RE_AMOUNT_CODE_PRE.finditer(text) if named else ():
            value = _number_value(m.group(2))
            if value is not None:
                cur = _CURRENCY_WORDS[m.group(1).lower()]
                amounts.add(f"{cur}:{_fmt(value)}")
                currencies.add(cur)
                spans.append(m.span())
        text = _blank(text, spans)
    if symbol:
        currencies.update(_CURRENCY_SYMBOLS[c] for c in _RE_SYMBOL.findall(text))
    if named:
        for m in _RE_CURRENCY.finditer(text):
            word = m.group(2).lower()
            if word in _WEAK_CURRENCIES and not m.group(1):
                continue  # "pound" (weight), "cents" (opinion): too ambiguous alone
            cur = _CURRENCY_WORDS[word]
            if m.group(1):
                cur = _CURRENCY_ADJ[_RE_SPACES.sub(" ", m.group(1).lower())]
            currencies.add(cur.split("-")[0])
    return amounts, currencies, spans


def _dates(
    text: str, digits: bool, words: frozenset[str]
) -> tuple[set[str], list[tuple[int, int]]]:
    found: set[str] = set()
    spans: list[tuple[int, int]] = []
    if digits:
        for m in _RE_ISO_DATE.finditer(text):
            y, mo, d = m.groups()
            found.add(f"date:{int(y)}-{int(mo)}-{int(d)}")
            spans.append(m.span())
        text = _blank(text, spans)
    found.update(f"time:{w}" for w in words & {"noon", "midnight"})
    for m in _RE_TIME.finditer(text) if digits else ():
        if m.group(3):
            hour = int(m.group(1)) % 12 + (12 if m.group(3).lower().startswith("p") else 0)
            found.add(f"time:{hour}:{m.group(2) or '00'}")
        else:
            found.add(f"time:{int(m.group(4))}:{m.group(5)}")
        spans.append(m.span())
    text = _blank(text, spans)
    if digits:
        for m in _RE_NUM_DATE.finditer(text):
            a, b, y = m.groups()
            if int(a) > 31 or int(b) > 31 or (int(a) > 12 and int(b) > 12):
                continue
            found.add(f"date:{int(a)}/{int(b)}" + (f"/{int(y) % 100}" if y else ""))
            spans.append(m.span())
        text = _blank(text, spans)
    named = words & _MONTH_KEYS
    months = bool(named) and (digits or not named <= _AMBIGUOUS_MONTHS)
    for m in _RE_MONTH_DAY.finditer(text) if months else ():
        month_word = m.group(2).lower()
        day = m.group(1) or m.group(3)
        if month_word in _AMBIGUOUS_MONTHS and not (day or m.group(4)):
            continue  # "may I", "march on", "sep": a month only with a day or a year
        found.add(f"month:{_MONTHS[month_word]}")
        if day and 1 <= int(day) <= 31:
            found.add(f"day:{int(day)}")
        if m.group(4):
            found.add(f"year:{m.group(4)}")
        spans.append(m.span())
    text = _blank(text, spans)
    found.update(f"weekday:{_WEEKDAYS[w]}" for w in words & _WEEKDAY_KEYS)
    relative = not _RELATIVE_DAYS.isdisjoint(words) or (
        not _RELATIVE_KEYS.isdisjoint(words) and not _PERIOD_UNITS.isdisjoint(words)
    )
    for m in _RE_RELATIVE.finditer(text) if relative else ():
        found.add("rel:" + _RE_SPACES.sub(" ", m.group(1).lower()).replace("previous", "last"))
        spans.append(m.span())
    if digits:
        for m in _RE_YEAR.finditer(text):
            found.add(f"year:{m.group(1)}")
            spans.append(m.span(1))
    return found, spans


#: A count right before an article and a unit ("10,000 steps *a day*", "twice *a week*",
#: "5 dollars *a month*"): the unit is a rate, not a duration.
_RE_RATE_BEFORE = re.compile(
    rf"(?:\d|\b(?:{_alt([*_UNITS, *_TENS, *_SCALES, *_MULTIPLIERS, 'times'])}))"
    r"(?:\s+[a-z]+){0,2}\s+$",
    re.I,
)
_MONTH_MINUTES = _DURATIONS["month"]
_YEAR_MINUTES = _DURATIONS["year"]


def _duration(value: float, minutes: int) -> str:
    """A duration as the numbers guard compares it: in minutes, or in months when it is a
    whole number of months or years by the calendar ("12 months" = "a year" = "365
    days" = "52 weeks" = ``12mo``; "30 days" = "a month" = ``1mo``; "4 weeks" stays
    ``40320min``, not a month).

    Example:
        >>> [_duration(v, m) for v, m in ((12, 43_200), (1, 525_600), (52, 10_080), (3, 1_440))]
        ['12mo', '12mo', '12mo', '4320min']
    """
    total = value * minutes
    if minutes == _YEAR_MINUTES or (total >= _YEAR_MINUTES and total % _YEAR_MINUTES == 0):
        return f"{_fmt(12 * total / _YEAR_MINUTES)}mo"
    if minutes == _DURATIONS["week"] and value >= 52 and value % 52 == 0:
        return f"{_fmt(12 * value / 52)}mo"
    if total >= _MONTH_MINUTES and total % _MONTH_MINUTES == 0 and minutes != _DURATIONS["week"]:
        return f"{_fmt(total / _MONTH_MINUTES)}mo"
    return f"{_fmt(total)}min"


def _numbers(text: str, digits: bool, words: frozenset[str]) -> set[str]:
    found: set[str] = set()
    spans: list[tuple[int, int]] = []
    for unit_word in sorted(words & _DURATION_KEYS):
        unit = unit_word.lower()
        minutes = (
            1 if unit in ("mins", "min") else (_DURATIONS.get(unit) or _DURATIONS.get(unit[:-1], 0))
        )
        for m in _word_at(unit_word).finditer(text):
            window_start = max(0, m.start() - 32)
            head = _RE_COUNT_BEFORE.search(text, window_start, m.start())
            value = _number_value(head.group(1)) if head else None
            if head is None or value is None or not minutes:
                continue
            if head.group(1).lower() in ("a", "an") and _RE_RATE_BEFORE.search(
                text, max(0, head.start(1) - 40), head.start(1)
            ):
                continue  # "10,000 steps a day", "twice a week", "$5 a month": a rate
            found.add(_duration(value, minutes))
            spans.append((head.start(1), m.end()))
    text = _blank(text, spans)
    for m in _word_at("times").finditer(text) if "times" in words else ():
        head = _RE_TIMES_BEFORE.search(text, max(0, m.start() - 32), m.start())
        value = _number_value(head.group(1)) if head else None
        if head is not None and value is not None:
            found.add(f"x{_fmt(value)}")
            spans.append((head.start(1), m.end()))
    text = _blank(text, spans)
    if digits:
        for m in _RE_NUMBER.finditer(text):
            token = m.group(0).strip()
            if token.endswith(("%", "percent", "per cent", "pct")):
                value = _number_value(re.split(r"\s|%", token, maxsplit=1)[0])
                if value is not None:
                    found.add(f"{_fmt(value)}%")
                continue
            ordinal = token[-2:].lower() in ("st", "nd", "rd", "th")
            value = _number_value(_RE_GLUED_UNIT.sub("", token))
            if value is not None:
                found.add(("#" if ordinal else "") + _fmt(value))
    spelled = not _NUMBER_GATE.isdisjoint(words)  # "one" alone is never counted
    for m in _RE_NUMBER_WORDS.finditer(text) if spelled else ():
        word = _RE_SPACES.sub(" ", m.group(0).lower())
        if word in _MULTIPLIERS:
            if not text[max(0, m.start() - 5) : m.start()].lower().endswith("than "):
                found.add(f"x{_MULTIPLIERS[word]}")  # not "more than once"
        elif word in _ORDINALS:
            found.add(f"#{_ORDINALS[word]}")
        elif word == "one":
            continue  # "one of", "this one", "the one": too often not a count
        else:
            value = _number_value(word)
            if value is not None:
                percent = _RE_PERCENT_AFTER.match(text, m.end())
                found.add(_fmt(value) + ("%" if percent else ""))
    return found


#: Tokens that end a clause (``_clauses``) and tokens that open a sentence (``_entities``).
_CLAUSE_BREAKS = frozenset(".!?;:\n")
_NAME_BREAKS = frozenset('.!?;:\n"(-')


def _clauses(tokens: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    start = 0
    for i, token in enumerate(tokens):
        if token in _CLAUSE_BREAKS:
            if i > start:
                out.append(tokens[start:i])
            start = i + 1
    if start < len(tokens):
        out.append(tokens[start:])
    if "-" in tokens:  # "top-up" is "top up"
        out = [c for c in ([t for t in c if t != "-"] for c in out) if c]
    return out


#: Function words that are neither a negation cue nor the start of one.
_PLAIN_STOP = frozenset(_STOP - _NEGATORS - _IMPLICIT_NEGATORS)
_DETERMINERS = frozenset(
    {
        "my",
        "the",
        "your",
        "this",
        "that",
        "a",
        "an",
        "our",
        "his",
        "her",
        "their",
        "its",
        "these",
        "those",
        "any",
        "some",
    }
)
#: Words skipped when looking at how a clause starts ("Hi, how do I ...").
_LEAD_SKIP = frozenset(
    {"hi", "hello", "hey", "so", "and", "but", "please", "ok", "okay", "um", "well"}
)
_TELL_ME_WH = frozenset({"how", "where", "when", "what", "which"})
#: Punctuation that neither ends the reach of a negation nor is a word.
_NEG_TRANSPARENT = frozenset({",", "'", '"', "-", "(", ")"})

#: What ``_polarity`` needs to know about a lowercased token: starts with a letter,
#: negation cue, implicit negation cue, "n't" contraction, clause end, stem, first word of
#: a two-word opposite, opposite hit, skipped after a negation, not a content word, verb
#: of wanting. Memoised in a bounded dict (cleared when full).
_WordInfo = tuple[
    bool, bool, bool, bool, bool, str, bool, "tuple[int, int] | None", bool, bool, bool
]
_WORD_INFO: dict[str, _WordInfo] = {}
_WORD_INFO_MAX = 32_768


def _word_info(word: str) -> _WordInfo:
    info = _WORD_INFO.get(word)
    if info is None:
        contraction = word.endswith("n't")
        stem = _stem(word)
        info = (
            word[0].isalpha(),
            word in _NEGATORS or contraction,
            word in _IMPLICIT_NEGATORS,
            contraction,
            word in _CLAUSE_END,
            stem,
            stem in _OPP_FIRST,
            _OPP_INDEX.get(stem),
            word in _NEG_SKIP,
            word in _STOP or len(stem) < 2,
            stem in _VOLITION,
        )
        if len(_WORD_INFO) >= _WORD_INFO_MAX:
            _WORD_INFO.clear()
        _WORD_INFO[word] = info
    return info


def _polarity(
    clauses: list[list[str]],
) -> tuple[set[str], set[frozenset[str]], set[str], int, bool, bool, set[tuple[int, int]]]:
    """Negated stems, negated groups, other content stems, negation cues, firm negation,
    wh-question, opposites.

    A contraction before a noun phrase ("why didn't *my transfer go* through") negates a
    verb somewhere after the noun: its first two content words form a group, which only
    conflicts with a text that states both.
    """
    negated: set[str] = set()
    groups: set[frozenset[str]] = set()
    asserted: set[str] = set()
    cues = 0
    firm = False
    wh = False
    opposites: set[tuple[int, int]] = set()
    info_of = _WORD_INFO.get
    for clause in clauses:
        if not wh:
            lead = [w for w in clause[:3] if w not in _LEAD_SKIP]
            if lead and (
                lead[0] in _WH
                or (
                    len(lead) == 3
                    and lead[0] == "tell"
                    and lead[1] == "me"
                    and lead[2] in _TELL_ME_WH
                )
            ):
                wh = True
        pending = False
        cue_at = -1
        group: list[str] | None = None
        last = len(clause) - 1
        for i, word in enumerate(clause):
            if not pending and word in _PLAIN_STOP:
                continue  # the most common case, first
            (
                alpha,
                negator,
                implicit,
                contraction,
                clause_end,
                stem,
                opp_first,
                opp_hit,
                neg_skip,
                not_content,
                volition,
            ) = info_of(word) or _word_info(word)
            if not alpha:
                if word not in _NEG_TRANSPARENT:
                    if group:
                        groups.add(frozenset(group))
                    pending, group = False, None
                continue
            if negator or (implicit and i < last and clause[i + 1] == "to"):
                pending = True  # "not", "don't", "without", "have yet to", "failed to"
                cue_at = i
                cues += 1
                inverted = contraction and i < last and clause[i + 1] in _DETERMINERS
                group = [] if inverted else None
                continue
            if clause_end:
                if group:
                    groups.add(frozenset(group))
                pending, group = False, None
                continue
            # opposite words; a negated one ("not approved") is left to the negation guard
            hit = None
            if opp_first and i < last:
                hit = _OPP_INDEX.get(stem + " " + _stem(clause[i + 1]))
            hit = hit or opp_hit
            if hit is not None and not pending:
                opposites.add(hit)
            if pending and neg_skip:
                continue
            if not_content:
                continue
            if pending and group is not None:
                group.append(stem)
                if len(group) == 2:
                    groups.add(frozenset(group))
                    pending, group = False, None
                continue
            if pending:
                negated.add(stem)
                # an order ("Don't ...", "please do not ...") or a change of mind
                # ("I don't want to ...") is a different request, never a problem report
                if volition or cue_at == 0 or clause[cue_at - 1] == "please":
                    firm = True
                # "don't want to *cancel*": the wanted action is negated too
                pending = volition and i < last and clause[i + 1] == "to"
            else:
                asserted.add(stem)
        if group:
            groups.add(frozenset(group))
    return negated, groups, asserted, cues, firm, wh, opposites


def _quantifiers(lowered_words: list[str], text: str) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    n = len(lowered_words)
    resume = 0  # after a phrase, its words are not looked at again
    for i, word in enumerate(lowered_words):
        if word not in _QUANT_FIRST or i < resume:
            continue
        for size in (3, 2, 1):
            if i + size > n:
                continue
            phrase = " ".join(lowered_words[i : i + size]) if size > 1 else word
            hit = _QUANT_INDEX.get(phrase)
            if hit is None:
                continue
            if phrase in _NUMERIC_BOUNDS:
                ahead = " ".join(lowered_words[i + size : i + size + 3])
                if not _RE_NUMERIC_AHEAD.match(" " + ahead):
                    break  # "over the phone", "under my name": not a bound
            if phrase == "while" and i and lowered_words[i - 1] in _DETERMINERS:
                break  # "it's been a while": a noun, not "while taking"
            if phrase in _PERIOD_PHRASES:
                before = " ".join(lowered_words[max(0, i - 2) : i])
                if not (_RE_PERIOD_CONTEXT.search(before) or _RE_PERIOD_CONTEXT.search(text)):
                    break  # "for a week": a duration, not a period
            found.add(hit)
            resume = i + size
            break
        else:
            if word == "one" and _one_thing(lowered_words, i):
                found.add(("extent", 1))  # "for *one* app" against "for *all* apps"
    return found


#: Words before "one" that make it no single item of several ("more than one", "the one
#: I use", "which one", "any one") and words after it that are no item ("one day").
_NOT_ONE_BEFORE = frozenset(
    {"than", "the", "this", "that", "which", "any", "no", "every", "each", "another"}
)
_NOT_ONE_AFTER = frozenset({"time", "times", "more", "another", "way", "other", "last", "thing"})


def _one_thing(words: list[str], i: int) -> bool:
    """Whether "one" at ``words[i]`` picks one item of several ("for *one* app", "to *one*
    clip"): a noun follows, and no word before it makes it something else."""
    if i + 1 >= len(words) or (i > 0 and words[i - 1] in _NOT_ONE_BEFORE):
        return False
    nxt = words[i + 1]
    return not (
        nxt in _STOP or nxt in _DETERMINERS or nxt in _NOT_ONE_AFTER or nxt in _DURATION_KEYS
        or nxt in _NUMERIC_WORDS
    )


def _entities(tokens: list[str], lowered_tokens: list[str]) -> set[str]:
    """Names: capitalised words not opening a sentence, acronyms, CamelCase; runs of them
    are one name ("Apple Pay"), known aliases are reduced to one spelling.

    ``lowered_tokens`` are ``tokens`` lowercased, one for one."""
    found: set[str] = set()
    run: list[str] = []
    sentence_start = True
    for token, plain in zip(tokens, lowered_tokens, strict=True):
        if not token[0].isalpha():
            if token in _NAME_BREAKS:
                sentence_start = True
                if run and token != ".":
                    found.add(" ".join(run))
                    run = []
            continue  # other punctuation and numbers neither open nor end a name
        at_start = sentence_start
        sentence_start = False
        if token == plain:
            if run:
                found.add(" ".join(run))
                run = []
            continue
        tail = token[1:]
        acronym = len(token) >= 2 and token.isupper()
        camel = tail != tail.lower() and not acronym  # iPhone, PayPal
        capitalised = not at_start and token[0].isupper()
        if (
            (acronym or camel or capitalised)
            and plain not in _NOT_NAMES
            and not (plain in _MONTHS or plain in _WEEKDAYS or plain in _CURRENCY_WORDS)
        ):
            run.append(plain)
            continue
        if run:
            found.add(" ".join(run))
            run = []
    if run:
        found.add(" ".join(run))
    return {_ALIASES.get(name, name) for name in found}


def _word_forms(words: list[str], wordset: frozenset[str] | None = None) -> frozenset[str]:
    """Words plus their singular forms and the aliases of words and word pairs
    (``wordset``: ``frozenset(words)``, when the caller has it)."""
    out = frozenset(words) if wordset is None else wordset
    extra = [w[:-1] for w in out if w[-1] == "s" and len(w) > 3]
    extra.extend(_ALIASES[w] for w in _ALIAS_KEYS.intersection(out))
    if not _ALIAS_FIRST.isdisjoint(out):
        n = len(words)
        for i, w in enumerate(words):
            if w in _ALIAS_FIRST and i + 1 < n:
                pair = f"{w} {words[i + 1]}"
                triple = f"{pair} {words[i + 2]}" if i + 2 < n else ""
                for phrase in (pair, triple):
                    if phrase in _ALIASES:
                        extra.append(_ALIASES[phrase])
    return out.union(extra) if extra else out


_EMPTY: frozenset[Any] = frozenset()
#: Lowercased capitalised words that never start or extend a name (see ``_entities``).
_NEVER_NAMES = frozenset([*_NOT_NAMES, *_MONTHS, *_WEEKDAYS, *_CURRENCY_WORDS])
#: The slot setters of :class:`Features`, in field order: a frozen dataclass's
#: ``__init__`` goes through ``object.__setattr__`` once per field, which is slower.
_FEATURE_SETTERS = tuple(getattr(Features, f.name).__set__ for f in dataclasses.fields(Features))


def _new_features(*values: Any) -> Features:
    """``Features(*values)``, without the frozen dataclass's ``__init__`` overhead."""
    out = object.__new__(Features)
    for setter, value in zip(_FEATURE_SETTERS, values, strict=True):
        setter(out, value)
    return out


@functools.lru_cache(maxsize=4096)
def features(text: str) -> Features:
    """The :class:`Features` of ``text`` (memoised: each text is analysed once).

    Example:
        >>> f = features("Refund $50 for order #A1047 by Friday, please don't wait")
        >>> sorted(f.amounts), sorted(f.identifiers), sorted(f.dates), sorted(f.negated)
        (['usd:50'], ['a1047'], ['weekday:5'], ['wait'])
    """
    text = text[:MAX_GUARD_CHARS]
    if text.isascii():  # ASCII is already NFKC and has no curly apostrophe
        tokens = _RE_TOKEN_ASCII.findall(text)
    else:
        text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
        tokens = _RE_TOKEN.findall(text)
    cased = text != text.lower()
    if not cased:
        lowered_tokens = tokens
    elif tokens:
        # one lower() for all tokens: no token holds a space, and a space stops the
        # context of a final sigma like the end of a token does
        lowered_tokens = " ".join(tokens).lower().split(" ")
    else:
        lowered_tokens = []
    words = [t for t in lowered_tokens if t[0].isalpha()]
    wordset = frozenset(words)
    digits = bool(_RE_DIGIT.search(text))
    numeric = digits or not _NUMERIC_WORDS.isdisjoint(wordset) or bool(_RE_SYMBOL.search(text))
    ids: set[str] = set()
    amounts: set[str] = set()
    currencies: set[str] = set()
    dates: set[str] = set()
    numbers: set[str] = set()
    if numeric or "#" in text or "@" in text or "://" in text:
        ids, spans = _identifiers(text, wordset)
        rest = _blank(text, spans)
        amounts, currencies, spans = _amounts(rest, digits, wordset)
        rest = _blank(rest, spans)
        dates, spans = _dates(rest, digits, wordset)
        rest = _blank(rest, spans)
        numbers = _numbers(rest, digits, wordset)
    negated, groups, asserted, cues, firm, wh, opposites = _polarity(_clauses(lowered_tokens))
    lowered = " ".join(words)
    entities: set[str] = set()
    # a capitalised word that cannot be a name ("I", "Hi", "What") never starts one
    if cased and not _NEVER_NAMES.issuperset(
        [p for t, p in zip(tokens, lowered_tokens, strict=True) if t != p]
    ):
        entities = _entities(tokens, lowered_tokens)
    return _new_features(
        frozenset(ids) if ids else _EMPTY,
        frozenset(amounts) if amounts else _EMPTY,
        frozenset(currencies) if currencies else _EMPTY,
        frozenset(dates) if dates else _EMPTY,
        frozenset(numbers) if numbers else _EMPTY,
        frozenset(negated) if negated else _EMPTY,
        frozenset(groups) if groups else _EMPTY,
        frozenset(asserted) if asserted else _EMPTY,
        cues,
        firm,
        wh,
        frozenset(opposites) if opposites else _EMPTY,
        frozenset(_quantifiers(words, lowered)),
        frozenset(entities) if entities else _EMPTY,
        _word_forms(words, wordset),
        f" {lowered} ",
        _lexicon_words(words, asserted) if asserted else _EMPTY,
        tuple(t for t in lowered_tokens if t[0].isalnum()),
    )


# --------------------------------------------------------------------------- comparisons


def _exclusive_sides(a: frozenset[tuple[Any, int]], b: frozenset[tuple[Any, int]]) -> bool:
    """Both texts use the same group of exclusive words, on disjoint sides."""
    for group in {g for g, _ in a} & {g for g, _ in b}:
        if {s for g, s in a if g == group}.isdisjoint({s for g, s in b if g == group}):
            return True
    return False


def _values(amounts: frozenset[str]) -> frozenset[str]:
    return frozenset(a.split(":", 1)[1] for a in amounts)


def _conflict(a: frozenset[str], b: frozenset[str]) -> bool:
    """Both texts state the detail, differently."""
    return bool(a) and bool(b) and a != b


def _negation_flip(neg: Features, other: Features) -> bool:
    """A word negated in ``neg`` is stated in ``other``, which negates nothing."""
    if other.negations:
        return False
    if not (neg.negated & other.asserted) and not any(
        g <= other.asserted for g in neg.negated_groups
    ):
        return False
    # "I can't find the X option" against "Where do I find the X option?": the same
    # question, unless the negation is an order or a change of mind, or the two are the
    # same words but the negation ("Which plastics *can't* be recycled?").
    return not (other.wh_question and not neg.firm_negation) or _negation_only(
        neg.tokens, other.tokens
    )


#: Negated contractions and the words they negate ("can't" is "can" negated).
_NEGATED_FORMS = {
    "cannot": "can", "cant": "can", "wont": "will", "dont": "do", "doesnt": "does",
    "didnt": "did", "isnt": "is", "arent": "are", "wasnt": "was", "werent": "were",
    "havent": "have", "hasnt": "has", "hadnt": "had", "wouldnt": "would",
    "couldnt": "could", "shouldnt": "should", "mustnt": "must", "neednt": "need",
    "aint": "is",
}


#: Negated forms of "do" that only carry the negation ("which museums *don't* charge" is
#: "which museums charge" negated: no "do" in the plain question).
_DO_SUPPORT = frozenset({"dont", "doesnt", "didnt"})


def _negation_only(neg: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """``neg`` is ``other`` with a negation added and nothing else changed ("which
    plastics *can't* be recycled" / "which plastics can be recycled", "which museums
    *don't* charge a fee" / "which museums charge a fee", "a car *without* a driver" / "a
    car *with* a driver").

    Example:
        >>> _negation_only(("which", "museums", "don't", "charge"),
        ...                ("which", "museums", "charge"))
        True
    """
    plain = []
    undone = []  # ``plain`` without do-support's "do"
    for t in neg:
        bare = t.replace("'", "").replace("\u2019", "")
        if bare in ("not", "never", "no"):
            continue
        word = "with" if bare == "without" else _NEGATED_FORMS.get(bare, t)
        plain.append(word)
        if bare not in _DO_SUPPORT:
            undone.append(word)
    if plain == list(neg):
        return False
    target = tuple(map(_stem, other))
    # do-support: "don't charge" is "charge" negated when the other has no "do" there
    return tuple(map(_stem, plain)) == target or (
        len(undone) < len(plain) and tuple(map(_stem, undone)) == target
    )


def _unmatched(names: frozenset[str], other: Features) -> bool:
    """Some name is not mentioned (in any case, singular or plural) in the other text."""
    for name in names:
        if " " in name:
            if f" {name} " in other.lowered or (
                name.endswith("s") and f" {name[:-1]} " in other.lowered
            ):
                continue
            if name in other.words:  # an alias of a name in the other text
                continue
            return True
        if name in other.words or (name.endswith("s") and name[:-1] in other.words):
            continue
        if len(name) >= 4 and any(_misspelt(name, w, substitution=False) for w in other.words):
            continue  # "Japn" / "Japan", "Chorme" / "Chrome": a typo, not another name
        return True
    return False


def _one_edit(a: str, b: str, substitution: bool = True) -> bool:
    """``a`` and ``b`` differ by one edit: two neighbours swapped, a letter added or
    dropped, or (with ``substitution``) a letter changed. Never for digits: "1047" and
    "1074" are different numbers, and "Iran" / "Iraq" (a changed letter) different names
    when ``substitution`` is false."""
    la, lb = len(a), len(b)
    if a == b or abs(la - lb) > 1 or min(la, lb) < 3 or a[0] != b[0]:
        return False
    if any(ch.isdigit() for ch in a) or any(ch.isdigit() for ch in b):
        return False
    i = 0
    while i < min(la, lb) and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 2 :] == b[i + 2 :] and i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i]:
            return True  # a swap
        return substitution and a[i + 1 :] == b[i + 1 :]
    return a[i + 1 :] == b[i:] if la > lb else a[i:] == b[i + 1 :]


#: A known word this rare (its frequency rank in the embedder's vocabulary; about 21 k
#: whole words, then their regular inflections) may be a misspelling of a word one edit
#: away that is :data:`TYPO_RATIO` times more frequent ("beter" / "better", "eta" /
#: "eat", "dose" / "does"); two common words ("cat" / "car", "fee" / "few") never are.
RARE_RANK = 8_000
TYPO_RATIO = 5


def _misspelt(a: str, b: str, substitution: bool = True) -> bool:
    """One of ``a`` and ``b`` is a misspelling of the other: one edit apart, and one of
    them is not a word the embedder's vocabulary knows, or a rare one beside a far more
    frequent one ("cat" / "car" are two words, "beter" / "better" a typo)."""
    if not _one_edit(a, b, substitution):
        return False
    known = _known_words()
    ra, rb = known.get(a), known.get(b)
    if ra is None or rb is None:
        return True
    rare, common = max(ra, rb), min(ra, rb)
    return rare >= RARE_RANK and rare >= TYPO_RATIO * common


def _maybe_typo(query: str, candidate: str) -> bool:
    """A cheap test before :func:`typo_repeat`: as many words, lengths a few letters
    apart (one letter per edited word at most)."""
    words = query.count(" ")
    return words == candidate.count(" ") and abs(len(query) - len(candidate)) <= 1 + words // 3


def typo_repeat(query: str, candidate: str) -> bool:
    """Whether ``query`` is ``candidate`` asked again with typos: the same words in the
    same order, a few of them (at most one in three) one edit away and not a known word
    ("chnage the email adress" / "change the email address"; "cat" / "car" are two
    words, not a typo). Numbers must match exactly, so "parcel 1047"
    is never a typo of "parcel 1074"; words are never added or dropped ("not").

    Example:
        >>> typo_repeat("How do I chnage my email adress?", "How do I change my email address?")
        True
        >>> typo_repeat("Where is parcel 1074?", "Where is parcel 1047?")
        False
        >>> typo_repeat("Is my cat covered?", "Is my car covered?")
        False
        >>> typo_repeat("Is my café open on Sundya?", "Is my café open on Sunday?")
        True
    """
    a = features(query).tokens
    b = features(candidate).tokens
    if len(a) != len(b) or not a:
        return False
    differ = 0
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        if not (x.isascii() and y.isascii()) or not _misspelt(x, y):
            return False  # the vocabulary that tells a typo from a word is English
        differ += 1
    return 0 < differ <= max(1, len(a) // 3)


#: The learned pair check's weights (``assets/pair_check.json``), trained by
#: ``benchmarks/train_pair_check.py``.
_PAIR_CHECK_PATH = Path(__file__).resolve().parent / "assets" / "pair_check.json"
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


@functools.cache
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


# --------------------------------------------------------------------------- edits

#: WordNet 3.0's related words and person nouns, distilled by ``tools/build_kin.py`` (see
#: the asset's notice).
_KIN_PATH = Path(__file__).resolve().parent / "assets" / "kin.json"
#: Two questions are a minimal edit of each other when at least this share of the longer
#: one's words (as stems) is common to both, in order.
EDIT_COVER = 0.75
#: Words an edit may change without changing the question: function words, and verbs and
#: adjectives that only carry the asking ("how do I" / "how can I", "the best way").
_EDIT_FUNCTION = frozenset(
    _STOP
    | _DETERMINERS
    | {
        "i", "you", "we", "they", "he", "she", "it", "me", "us", "them", "is", "are", "was",
        "were", "be", "been", "being", "am", "do", "does", "did", "have", "has", "had", "to",
        "at", "please", "just", "really", "also", "get", "got", "if", "when", "and", "or",
        "so", "then", "than", "too", "very", "much", "more", "most", "one", "ones", "way",
        "ways", "best", "good", "anyone", "someone", "somebody", "anybody", "something",
        "anything", "need", "want", "like", "know", "tell", "explain", "possible", "able",
    }
)
#: Words the detail guards read (numbers, durations, dates, currencies): an edit of them
#: is theirs to judge ("a week" / "7 days").
_EDIT_DETAILS = frozenset(_NUMERIC_WORDS | _DURATION_KEYS | {"a", "an"})
#: Directional particles and their opposites ("tap *in*" / "tap *out*", "scale *out*" /
#: "scale *in*", "turn *on*" / "turn *off*", "closest *to*" / "farthest *from*").
_PARTICLES = (
    (frozenset({"in", "into"}), frozenset({"out"})),
    (frozenset({"on", "onto"}), frozenset({"off"})),
    (frozenset({"up"}), frozenset({"down"})),
    (frozenset({"to"}), frozenset({"from"})),
    (frozenset({"with", "for"}), frozenset({"against"})),
)
#: Prefixes written as words of their own ("*off*-peak", "*non*-stop", "*anti*-virus").
_EDIT_PREFIXES = frozenset({"non", "off", "anti", "un", "dis", "counter"})
#: Words before a person noun that make it whose question it is ("for *my* partner").
_OWNERS = frozenset({"my", "his", "her", "their", "our", "your", "a", "the", "for"})
_PLURALS = {"children": "child", "people": "person", "men": "man", "women": "woman",
            "feet": "foot", "teeth": "tooth", "mice": "mouse", "geese": "goose"}
_LEMMA_SUFFIXES = (("s", ""), ("es", ""), ("ies", "y"), ("ing", ""), ("ing", "e"), ("ed", ""),
                   ("ed", "e"), ("d", ""), ("er", ""), ("est", ""), ("ier", "y"),
                   ("iest", "y"), ("ly", ""))


@functools.cache
def _kin_lexicon() -> tuple[dict[str, tuple[frozenset[int], frozenset[int]]], frozenset[str]]:
    """The kin lexicon (word -> its synsets, and those one step above them) and the
    person nouns; loaded on first use (about 13 k words)."""
    with _KIN_PATH.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    table = {}
    for word, spec in doc["kin"].items():
        own, _, up = spec.partition("|")
        table[word] = (frozenset(int(x, 16) for x in own.split()),
                       frozenset(int(x, 16) for x in up.split()))
    return table, frozenset(doc["persons"])


@functools.lru_cache(maxsize=8192)
def _lemmas(word: str) -> tuple[frozenset[int], frozenset[int], bool]:
    """The synsets of ``word`` read as any of its possible lemmas ("children": child,
    "arrived": arrive), those one step above, and whether it can be a person noun."""
    if word.endswith("'s"):
        word = word[:-2]
    forms = {word, _PLURALS.get(word, word), _IRREGULAR.get(word, word)}
    for suffix, repl in _LEMMA_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: len(word) - len(suffix)]
            forms.add(stem + repl)
            if not repl and len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
                forms.add(stem[:-1])  # a doubled consonant: "permitted", "stopped"
    if len(word) > 4 and word[-1] == word[-2]:
        forms.add(word[:-1])
    table, persons = _kin_lexicon()
    own: set[int] = set()
    up: set[int] = set()
    for form in forms:
        if form in table:
            own |= table[form][0]
            up |= table[form][1]
    return frozenset(own), frozenset(up), not persons.isdisjoint(forms)


def _kin(a: str, b: str) -> bool:
    """``a`` and ``b`` name the same concept for WordNet: synonyms, derived forms, or one
    a direct hypernym of the other ("planes" / "airplanes", "fee" / "charge"); never two
    siblings ("adults" / "children")."""
    own_a, up_a, _ = _lemmas(a)
    own_b, up_b, _ = _lemmas(b)
    return not (own_a.isdisjoint(own_b) and own_a.isdisjoint(up_b) and up_a.isdisjoint(own_b))


def _typo_like(a: str, b: str) -> bool:
    """Two spellings of one word: the same first letter and at most one edit apart (two
    for words of five letters or more), swaps of neighbours counting as one edit."""
    if a[0] != b[0] or not (a.isalpha() and b.isalpha()):
        return False
    limit = 1 if min(len(a), len(b)) < 5 else 2
    if abs(len(a) - len(b)) > limit:
        return False
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1] <= limit


def _edit_content(tokens: Sequence[str]) -> list[str]:
    out = []
    for t in tokens:
        w = t[:-2] if t.endswith("'s") else t
        if w.isalpha() and w not in _EDIT_FUNCTION:
            out.append(w)
    return out


def _adds_owner(mine: Sequence[str], start: int, long: Sequence[str]) -> bool:
    """Whether the added words ``mine`` (at ``start`` of ``long``) name a possessor or
    a person the question is for: "my *neighbor's* pond", "an e-bike *for my partner*"."""
    for k, t in enumerate(mine):
        possessive = t.endswith("'s") and t[:-2].isalpha() and t[:-2] not in _EDIT_FUNCTION
        if possessive or (
            _lemmas(t)[2]
            and ((k > 0 and mine[k - 1] in _OWNERS)
                 or (start > 0 and k == 0 and long[start - 1] in _OWNERS))
        ):
            return True
    return False


def _edit_kind(long: Sequence[str], start: int, end: int, other: Sequence[str]) -> str:
    """What one edit does: ``long[start:end]`` replaced by ``other`` (empty: inserted).
    ``"neutral"`` (function words, a synonym, an inflection, a typo), ``"changed"`` (a
    content word replaced by another that is not kin, a particle or prefix flipped, a
    person or possessor inserted) or ``"large"`` (more than one content word a side: a
    rewording, not a minimal edit)."""
    mine = long[start:end]
    if any((t[0].isdigit() or t in _EDIT_DETAILS or t in _NEGATORS or t.endswith("n't"))
           and t not in ("a", "an")  # an article, unless a number goes with it
           for t in (*mine, *other)):
        return "neutral"  # "2 weeks" / "14 days", "declined" / "not approved": the detail
        # and negation guards'
    if other:
        a, b = set(mine), set(other)
        for one, opposite in _PARTICLES:
            if (a & one and b & opposite and not a & opposite and not b & one) or (
                a & opposite and b & one and not a & one and not b & opposite
            ):
                return "changed"
        ca, cb = _edit_content(mine), _edit_content(other)
        if not ca or not cb:
            # only function words on one side: the other's words are added, as below
            # ("see *my* podcast's stats" / "see *a competitor's* podcast's stats")
            added = other if ca == [] and cb else mine if ca else ()
            return "changed" if added and _adds_owner(added, 0, ()) else "neutral"
        if len(ca) > 1 or len(cb) > 1:
            return _widened(ca, cb, (*mine, *other))
        x, y = ca[0], cb[0]
        if _stem(x) == _stem(y) or _typo_like(x, y) or _kin(x, y):
            return "neutral"
        return "changed"
    if _adds_owner(mine, start, long):
        return "changed"  # "my *neighbor's* pond", "an e-bike *for my partner*"
    if len(mine) == 1 and mine[0] in _EDIT_PREFIXES:
        return "changed"  # "*off*-peak"
    return "neutral"


#: Adverbial particles: a verb with one is one verb in other words ("*set up*" /
#: "*configure*", "*get through* winter" / "*overwinter*").
_PHRASAL = frozenset({"up", "down", "out", "off", "in", "on", "over", "through", "back", "away",
                      "around", "into", "onto"})


def _widened(ca: list[str], cb: list[str], words: Sequence[str]) -> str:
    """One edit that puts two or three content words for one ("for *adults*" / "for
    *young kids*", "a *rental* / *privately owned* e-scooter", "in *Brazilian jiu-jitsu*"
    / "in *judo*"): ``"changed"`` when none of them is the one word's kin, stem, typo or
    part ("*overwinter*" / "get through *winter*") and no particle makes them one verb
    ("*set up*" / "*configure*"); otherwise ``"large"`` (a rewording)."""
    if min(len(ca), len(cb)) != 1 or max(len(ca), len(cb)) > 3:
        return "large"
    if not _PHRASAL.isdisjoint(words):
        return "large"
    one, many = (ca[0], cb) if len(ca) == 1 else (cb[0], ca)
    stem = _stem(one)
    for w in many:
        other = _stem(w)
        if other == stem or other in one or stem in w or _typo_like(one, w) or _kin(one, w):
            return "large"
    return "changed"


#: Verbs that ask how not to do what follows them ("should I *avoid* training", "*skip*
#: prewashing").
_AVOIDING = frozenset({"avoid", "avoiding", "skip", "skipping", "stop", "stopping", "quit",
                       "quitting", "refrain", "prevent", "preventing"})


def _avoidance_added(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One question asks how not to do what the other asks to do: the same words but an
    avoiding verb put before the same action, or in place of "do" ("Should I *train* on an
    empty stomach?" / "Should I *avoid training* ...", "Which poses should I *do* / *avoid*
    during pregnancy?"). Not when both have such a verb.

    Example:
        >>> ask = ("should", "i", "train", "on", "an", "empty", "stomach")
        >>> _avoidance_added(ask, ("should", "i", "avoid", "training", *ask[3:]))
        True
        >>> _avoidance_added(("how", "to", "avoid", "fees"),
        ...                  ("how", "to", "avoid", "paying", "fees"))
        False
    """
    in_a, in_b = not _AVOIDING.isdisjoint(a), not _AVOIDING.isdisjoint(b)
    if in_a == in_b:
        return False
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    edits = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    same = sum(block.size for block in matcher.get_matching_blocks())
    if len(edits) > 2 or same < EDIT_COVER * max(len(a), len(b)):
        return False
    for _op, i1, i2, j1, j2 in edits:
        for mine, other in ((a[i1:i2], b[j1:j2]), (b[j1:j2], a[i1:i2])):
            k = next((i for i, t in enumerate(mine) if t in _AVOIDING), None)
            if k is None:
                continue
            after = {_stem(t) for t in mine[k + 1 :]}
            if all(t in _EDIT_FUNCTION or _stem(t) in after for t in other):
                return True
    return False


#: Words that join two things either way round ("cats *and* dogs" / "dogs *and* cats").
_SYMMETRIC = frozenset({"and", "or", "nor", "vs", "versus", "with", "the", "a", "an", "my"})


def _roles_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The same words, with two of them (or two phrases) swapped around the words between
    ("sort from *smallest* to *largest*" / "from *largest* to *smallest*", "pour *lye* into
    *water*" / "pour *water* into *lye*", "should my *legs push* before my *arms pull*"):
    who does what to whom changed. Not around "and" / "or" ("cats and dogs"), nor two
    neighbours swapped ("plastic number 5" / "number 5 plastic", "On a UK bike, which
    lever ..." / "Which lever ... on a UK bike?").

    Example:
        >>> _roles_swapped(("pour", "lye", "into", "water"), ("pour", "water", "into", "lye"))
        True
        >>> _roles_swapped(("cats", "and", "dogs"), ("dogs", "and", "cats"))
        False
    """
    if len(a) != len(b) or len(a) < 3 or a == b or set(a) != set(b) or sorted(a) != sorted(b):
        return False
    i = 0
    while a[i] == b[i]:
        i += 1
    j = 0
    while a[-1 - j] == b[-1 - j]:
        j += 1
    mid_a, mid_b = a[i : len(a) - j], b[i : len(b) - j]
    n = len(mid_a)
    for lx in range(1, n - 1):
        for ly in range(1, n - lx):
            x, between, y = mid_a[:lx], mid_a[lx : n - ly], mid_a[n - ly :]
            if (
                mid_b == y + between + x
                and x != y
                and not _SYMMETRIC.issuperset(between)
                and any(t not in _EDIT_FUNCTION for t in x)
                and any(t not in _EDIT_FUNCTION for t in y)
            ):
                return True
    return False


@functools.lru_cache(maxsize=4096)
def _stems(tokens: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
    stems = tuple(_stem(t) for t in tokens)
    return stems, frozenset(stems)


@functools.lru_cache(maxsize=1024)
def _edited(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether token sequences ``a`` and ``b`` are the same question but for one or two
    small edits that change what is asked (see :func:`minimal_edit`)."""
    la, lb = len(a), len(b)
    need = EDIT_COVER * max(la, lb)
    if min(la, lb) < 2 or min(la, lb) < need or a == b:
        return False
    if _numbers_swapped(a, b):
        return True
    (sa, set_a), (sb, set_b) = _stems(a), _stems(b)
    # at most the shared stems, and a's repeated ones, can be aligned: a cheap test
    # first, the alignment only for a near copy
    if len(set_a & set_b) + la - len(set_a) < need or sa == sb:
        return False
    matcher = difflib.SequenceMatcher(None, sa, sb, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    if same < need:
        return False
    changed = 0
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i2 - i1 > 3 or j2 - j1 > 3:
            return False
        kind = _edit_kind(a, i1, i2, b[j1:j2]) if i2 > i1 else _edit_kind(b, j1, j2, ())
        if kind == "large":
            return False
        changed += kind == "changed"
    return 0 < changed <= 2


def _numbers_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The same words around the same numbers in another order ("refunded $12.99 instead
    of $21.99" / "$21.99 instead of $12.99")."""
    numbers_a = [t for t in a if t[0].isdigit()]
    if len(set(numbers_a)) < 2 or len(a) != len(b):
        return False
    numbers_b = [t for t in b if t[0].isdigit()]
    return (
        numbers_a != numbers_b
        and sorted(numbers_a) == sorted(numbers_b)
        and all(x == y for x, y in zip(a, b, strict=True) if not x[0].isdigit())
    )


def _number_replaced(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The two token sequences are the same words but for a number (or two), replaced in
    place by another ("carbonate *5* / *2.5* gallons", "a watch rated *30*m / *200*m", "a
    good *2*k / *6*k time"): whatever the number counts, the question changed. Catches what
    the numbers guard's reading leaves out (a unit glued on, a decimal that reads as a
    date); the same numbers swapped are :func:`minimal_edit`'s.

    Example:
        >>> _number_replaced(("carbonate", "5", "gallons"), ("carbonate", "2.5", "gallons"))
        True
        >>> _number_replaced(("pay", "1,000", "now"), ("pay", "1000", "now"))
        False
        >>> _number_replaced(("add", "1,5", "litres"), ("add", "1.5", "litres"))  # decimal comma
        False
        >>> _number_replaced(("add", "1,5", "litres"), ("add", "15", "litres"))
        True
    """
    if len(a) != len(b) or a == b:
        return False
    before: list[float] = []
    after: list[float] = []
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        vx = _number_value(x) if x[:1].isdigit() else None
        vy = _number_value(y) if y[:1].isdigit() else None
        if vx is None or vy is None or vx == vy:
            return False
        before.append(vx)
        after.append(vy)
    return sorted(before) != sorted(after)  # the same numbers swapped: ``edits``'s


def minimal_edit(query: str, candidate: str) -> bool:
    """Whether two questions are the same words but for one or two small edits that
    change what is asked (the ``edits`` guard): a content word replaced by another that
    WordNet does not relate to it ("secure my *home* / *office* Wi-Fi", "make the bucket
    *public* / *private*", "*whitelist* / *blacklist* an IP", "for *adults* / *children*";
    two such words swapped: "the *ceremony* but not the *reception*"), a directional
    particle flipped ("tap *in* / *out*", "closest *to* / farthest *from*"), a prefix
    added ("*off*-peak"), or a person or possessor added ("my *neighbor's* pond", "an
    e-bike *for my partner*"). Synonyms, derived forms and direct hypernyms (WordNet 3.0,
    ``assets/kin.json``), inflections, typos and function words are no change. English
    only (the lexicon is).

    Example:
        >>> minimal_edit("How do I secure my home Wi-Fi?", "How do I secure my office Wi-Fi?")
        True
        >>> minimal_edit("Why do planes take off into a headwind?",
        ...              "Why do airplanes take off into a headwind?")
        False
        >>> minimal_edit("What if I forget to tap in?", "What if I forget to tap out?")
        True
    """
    return _english_edit(features(query), features(candidate))


def _english_edit(q: Features, c: Features) -> bool:
    """:func:`minimal_edit` on two texts' features: English only (the lexicon is; Spanish,
    French, German, Portuguese and Italian are :mod:`paracache.lexicon`'s)."""
    return (
        _english_letters(q.tokens)
        and _english_letters(c.tokens)
        and (
            _edited(q.tokens, c.tokens)
            or _roles_swapped(q.tokens, c.tokens)
            or _avoidance_added(q.tokens, c.tokens)
        )
        and not (_marked(q.tokens) or _marked(c.tokens))
    )


def _english_letters(tokens: tuple[str, ...]) -> bool:
    """ASCII letters, or one word borrowed with its accents ("my *café*", "a *naïve*
    question"): English the lexicon can read. More such words are another language's.

    Example:
        >>> _english_letters(("host", "it", "at", "my", "café"))
        True
        >>> _english_letters(("où", "est", "la", "bibliothèque"))
        False
    """
    borrowed = [t for t in tokens if not t.isascii()]
    return not borrowed or (
        len(borrowed) == 1
        and all(ch.isascii() or unicodedata.name(ch, "").startswith("LATIN")
                for ch in borrowed[0] if ch.isalpha())
    )


def _marked(tokens: tuple[str, ...]) -> bool:
    """Words of another language :mod:`paracache.lexicon` reads, one-letter words aside
    (the "e" of "e-bike" is no Italian "and")."""
    return lexicon.marked(" ".join(t for t in tokens if len(t) > 1))


def _differs(name: str, q: Features, c: Features) -> bool:
    if name == "identifiers":
        return q.identifiers != c.identifiers
    if name == "amounts":
        return _conflict(q.amounts, c.amounts) or _conflict(q.currencies, c.currencies)
    if name == "dates":
        return _conflict(q.dates, c.dates)
    if name == "numbers":
        if (
            q.identifiers == c.identifiers  # an identifier, a sum or a date that differs
            and not _conflict(q.amounts, c.amounts)  # is its own guard's to name
            and not _conflict(q.dates, c.dates)
            and _number_replaced(q.tokens, c.tokens)
        ):
            return True
        if not (q.numbers or c.numbers):
            return False  # sums of money only: the amounts guard's business
        # a bare number against a sum ("only got 20" vs "only got $30") compares values
        return _conflict(q.numbers | _values(q.amounts), c.numbers | _values(c.amounts))
    if name == "negation":
        return _negation_flip(q, c) or _negation_flip(c, q)
    if name == "opposites":
        return (
            _exclusive_sides(q.opposites, c.opposites)
            or _lexicon_opposed(q, c)
            or _aligned_opposed(q.tokens, c.tokens)
            or _replaced_by_opposite(q.tokens, c.tokens)
        )
    if name == "quantifiers":
        return _exclusive_sides(q.quantifiers, c.quantifiers)
    if name == "entities":
        return _unmatched(q.entities, c) and _unmatched(c.entities, q)
    if name == "edits":
        return _english_edit(q, c)
    raise ValueError(f"unknown guard {name!r}")


@dataclasses.dataclass(frozen=True)
class Guards:
    """Which guards run between the nearest candidates and a hit (all on by default).

    Pass it as ``SemanticIndex(guards=Guards(...))``; ``guards=None`` or
    :meth:`Guards.off` turns them all off. A rejected candidate is counted in
    ``stats().rejections_by_reason`` under the guard's name, and the next candidate of
    the top-k is tried.

    Example:
        >>> Guards(entities=False).enabled
        ... # doctest: +NORMALIZE_WHITESPACE
        ('identifiers', 'amounts', 'dates', 'numbers', 'negation', 'opposites', 'quantifiers',
         'edits', 'learned', 'neighbours')
        >>> Guards().check("Can I pay with Apple Pay?", "Can I pay with Google Pay?")
        'entities'
    """

    negation: bool = True
    numbers: bool = True
    dates: bool = True
    amounts: bool = True
    identifiers: bool = True
    entities: bool = True
    quantifiers: bool = True
    opposites: bool = True
    edits: bool = True
    learned: bool = True
    neighbours: bool = True

    def __post_init__(self) -> None:
        for name in GUARD_NAMES:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Guards.{name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def off(cls) -> Guards:
        """All guards off (the same as ``guards=None``)."""
        return cls(**dict.fromkeys(GUARD_NAMES, False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Guards:
        """Guards from a mapping of guard names to bools (unknown names are an error).

        Example:
            >>> Guards.from_dict({"numbers": False}).numbers
            False
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"guards must be a mapping of names to bools, got {data!r}")
        unknown = set(data) - set(GUARD_NAMES)
        if unknown:
            raise ValueError(f"unknown guard(s) {sorted(unknown)}; known: {', '.join(GUARD_NAMES)}")
        return cls(**dict(data))

    def as_dict(self) -> dict[str, bool]:
        """The settings as a plain mapping."""
        return {name: getattr(self, name) for name in GUARD_NAMES}

    @property
    def enabled(self) -> tuple[str, ...]:
        """The names of the guards that are on, in checking order."""
        return tuple(name for name in GUARD_NAMES if getattr(self, name))

    @property
    def active(self) -> bool:
        """Whether any guard is on."""
        return bool(self.enabled)

    def check(
        self, query: str, candidate: str, similarity: float | None = None
    ) -> str | None:
        """The name of the first guard that refuses to serve ``candidate``'s answer to
        ``query``, or ``None`` when no checked detail conflicts. The ``learned`` guard
        needs the pair's embedding ``similarity`` (it is skipped without it).

        Example:
            >>> Guards().check("Transfer $50 to Anna", "Transfer $500 to Anna")
            'amounts'
        """
        q = features(query)
        c = features(candidate)
        for name in GUARD_NAMES:  # the order of ``enabled``, without building it
            if not getattr(self, name) or name == "neighbours":
                continue  # ``neighbours`` compares candidates: see :meth:`contest`
            if name == "learned":
                if (
                    similarity is not None
                    and _latin_letters(query)
                    and _latin_letters(candidate)  # trained on English
                    and same_question(query, candidate, max(similarity, VETO_SIMILARITY))
                    < _pair_model()[3]
                    and not typo_repeat(query, candidate)  # the model never saw typos
                ):
                    return name
            elif _differs(name, q, c):
                if (
                    name != "identifiers"  # "jane.doe@" / "jane.dole@": two addresses
                    and _maybe_typo(query, candidate)
                    and typo_repeat(query, candidate)
                ):
                    continue  # the "detail" is a misspelt word: "Benfit" / "Benefit"
                return name
        # Spanish, French, German, Portuguese, Italian: paracache.lexicon.
        return lexicon.conflict(query, candidate, self.enabled)

    def prepare(self, query: str) -> None:
        """Analyse ``query``'s side of the checks ahead of its candidates (the analyses
        are memoised per text, so :meth:`check` finds them done). The
        :class:`~paracache.core.Core` hook run while the search is on the wire.

        Example:
            >>> Guards().prepare("Transfer $50 to Anna")
            >>> features.cache_info().currsize > 0
            True
        """
        f = features(query)
        if self.edits and f.lowered.isascii():
            _stems(f.tokens)
            _marked(f.tokens)
        if lexicon.marked(query):
            lexicon.read(query)

    def accept(self, req: LookupRequest, cand: Candidate) -> str | None:
        """The :class:`~paracache.core.Core` hook: a rejection reason, or ``None``."""
        raw = cand.fields.get(b"prompt")
        if raw is None:
            return None  # nothing to compare with: similarity alone decides
        stored = raw.decode("utf-8", "replace")
        return self.check(req.prompt or req.text, stored, cand.similarity)

    @staticmethod
    def corroborates(query: str, candidate: str) -> bool:
        """Whether ``candidate`` shares a specific detail with ``query`` and no detail
        on either side is missing from the other: see :func:`corroborates`.

        Example:
            >>> Guards.corroborates("Do you accept Apple Pay?", "Can I pay with Apple Pay?")
            True
        """
        return corroborates(query, candidate)

    @staticmethod
    def vouches(
        query: str, candidate: str, similarity: float, threshold: float, learned: bool = True
    ) -> bool:
        """Whether a candidate ``similarity`` below ``threshold`` may still be served (if
        it passes every guard): it is the query asked again with typos
        (:func:`typo_repeat`) at most :data:`TYPO_MARGIN` below the threshold; or it
        shares a specific detail with the query (:func:`corroborates`), one of the two says
        all the other says, and it is at most :data:`DETAIL_MARGIN` below; or the learned
        pair check (:func:`same_question`) vouches for it, the two ask for the same kind of
        thing (a reason, a way, a time, a place, a person, a quantity: the words that open
        them) and it is at most :data:`LEARNED_MARGIN` below (unless ``learned`` is
        false). The typo and learned margins are for the default threshold 0.90; a
        stricter one shrinks them with the square of its distance (at 0.95 to a quarter).

        Example:
            >>> Guards.vouches("Do you accept Apple Pay?", "Can I pay with Apple Pay?", 0.87, 0.9)
            True
            >>> Guards.vouches("How do I chnage my adress?", "How do I change my address?",
            ...                0.7, 0.9)
            True
            >>> Guards.vouches("How do I reset my password?", "I forgot my password", 0.86, 0.9)
            True
            >>> Guards.vouches("How do I reset my password?", "I forgot my password", 0.74, 0.9)
            False
        """
        if similarity >= threshold:
            return True
        # The typo and learned margins are set for the default threshold (distance
        # 0.10); a stricter threshold shrinks them with the square of its distance (at
        # 0.95 to a quarter, at 0.97 to a tenth): who asks for 0.97 wants near-exact.
        scale = min(1.0, max(0.0, 1.0 - threshold) / 0.10) ** 2
        gap = threshold - similarity - 1e-9
        if gap <= TYPO_MARGIN * scale and _maybe_typo(query, candidate) and typo_repeat(
            query, candidate
        ):
            return True
        if gap <= DETAIL_MARGIN and corroborates(query, candidate) and not _both_add(
            query, candidate
        ):
            return True
        return (
            learned
            and gap <= LEARNED_MARGIN * scale
            and _latin_letters(query)
            and _latin_letters(candidate)  # trained on English
            and same_question(query, candidate, similarity) >= _pair_model()[2]
            and _asks_alike(query, candidate)
        )

    def contest(
        self, req: LookupRequest, cand: Candidate, candidates: Sequence[Candidate]
    ) -> str | None:
        """The :class:`~paracache.core.Core` hook run on a candidate about to be served:
        ``"neighbours"`` when ``cand`` is below the threshold (served on the guards'
        vouching) and another candidate within :data:`VOUCHED_GAP` of its similarity
        that the guards would pass asks another question and has another answer, else
        ``None``."""
        if not self.neighbours or cand.similarity >= req.min_similarity:
            return None
        query = req.prompt or req.text
        floor = _neighbour_floor(cand.similarity)
        answer = cand.fields.get(b"response")
        others = []
        for c in candidates:  # the cheap tests first: the guards only for a possible rival
            if c is cand or not c.fields or c.similarity < floor:
                continue
            if c.fields.get(b"response") == answer:
                continue
            prompt = _field(c, b"prompt")
            if self.check(query, prompt, c.similarity) is None:  # a near miss is no rival
                others.append((c.similarity, prompt, _field(c, b"response")))
        if not others:
            return None
        winner = (cand.similarity, _field(cand, b"prompt"), _field(cand, b"response"))
        return "neighbours" if neighbours_disagree(winner, others, req.min_similarity) else None

    def corroborate(self, req: LookupRequest, cand: Candidate) -> bool:
        """The :class:`~paracache.core.Core` hook for candidates below the threshold
        (within ``corroboration_margin``): may it be served? See :meth:`vouches`."""
        raw = cand.fields.get(b"prompt")
        if raw is None:
            return False  # nothing to compare with: the threshold stands
        return self.vouches(req.prompt or req.text, raw.decode("utf-8", "replace"),
                            cand.similarity, req.min_similarity, self.learned)


def _field(cand: Candidate, name: bytes) -> str:
    raw = cand.fields.get(name)
    return "" if raw is None else raw.decode("utf-8", "replace")


def neighbours_disagree(
    winner: tuple[float, str, str], others: Iterable[tuple[float, str, str]],
    threshold: float,
) -> bool:
    """Whether a ``winner`` below ``threshold`` (served on the guards' vouching) has
    another candidate ``(similarity, prompt, response)`` within :data:`VOUCHED_GAP` of its
    similarity asking another question with another answer. A winner at or above the
    threshold never does.

    Example:
        >>> neighbours_disagree((0.88, "when will my card arrive", "It takes 3 days"),
        ...                     [(0.86, "how long does card delivery take", "Track it")], 0.9)
        True
        >>> neighbours_disagree((0.88, "when will my card arrive", "It takes 3 days"),
        ...                     [(0.80, "where is my card", "Track it")], 0.9)
        False
        >>> neighbours_disagree((0.93, "when will my card arrive", "It takes 3 days"),
        ...                     [(0.92, "how long does card delivery take", "Track it")], 0.9)
        False
    """
    sim, prompt, response = winner
    if sim >= threshold:
        return False
    floor = _neighbour_floor(sim)
    for other_sim, other_prompt, other_response in others:
        if other_sim < floor or other_response == response:
            continue
        if _another_question(prompt, other_prompt):
            return True
    return False


def _neighbour_floor(similarity: float) -> float:
    """The lowest similarity a rival of a vouched-for winner at ``similarity`` may have."""
    return similarity - VOUCHED_GAP - 1e-9


#: The guards that compare details (not ``learned``, which needs a similarity).
_DETAIL_GUARDS = tuple(n for n in GUARD_NAMES if n not in ("learned", "neighbours"))


def _another_question(a: str, b: str) -> bool:
    """Whether two stored prompts ask different questions: each has a content word the
    other lacks ("when will my card *arrive*" / "how *long* does card *delivery* take"),
    or a detail differs. The same question stored twice with two answers (an LLM words
    it differently each time: "How do I activate my new card?" / "how can I activate
    my new card") is no disagreement."""
    fa, fb = features(a), features(b)
    wa, wb = fa.asserted | fa.negated, fb.asserted | fb.negated
    if not (wa <= wb or wb <= wa):
        return True
    return any(_differs(name, fa, fb) for name in _DETAIL_GUARDS)


def _content_words(f: Features) -> list[str]:
    return [w for w in (t[:-2] if t.endswith("'s") else t for t in f.tokens)
            if w.isalpha() and w not in _EDIT_FUNCTION]


@functools.lru_cache(maxsize=1024)
def _both_add(query: str, candidate: str) -> bool:
    """Whether each text has a content word that the other neither says nor says in
    other words (WordNet kin: synonyms, derived forms, a direct hypernym; or a typo):
    "a barn owl from a *snowy* owl" / "from a *tawny* owl", "*show hidden* files on a
    Mac" / "*hide* files on a Mac". A shared detail says the two are about the same
    thing, not that they ask the same of it.

    Example:
        >>> _both_add("How do I tell a barn owl from a snowy owl?",
        ...           "How do I tell a barn owl from a tawny owl?")
        True
        >>> _both_add("Where is parcel 88231?", "Can you track parcel 88231 for me?")
        False
    """
    a, b = _content_words(features(query)), _content_words(features(candidate))
    stems_a, stems_b = {_stem(w) for w in a}, {_stem(w) for w in b}

    def unmatched(words: list[str], stems: set[str], other: list[str]) -> bool:
        return any(
            _stem(w) not in stems and not any(_kin(w, o) or _typo_like(w, o) for o in other)
            for w in words
        )

    return unmatched(a, stems_b, b) and unmatched(b, stems_a, a)


#: What a question asks for, by the words its clauses open with (after a pleasantry): a
#: person, a time, a place, a reason, a quantity or degree, or a way to do something.
_ASK_OPENERS = {"who": "person", "whom": "person", "whose": "person", "when": "time",
                "where": "place", "why": "reason"}
_HOW_TIME = frozenset({"long", "soon", "fast", "quickly", "quick", "often", "early", "late"})
_HOW_WAY = frozenset({"do", "does", "did", "can", "could", "should", "would", "will", "to",
                      "shall", "may", "might", "must"})
#: "How is my deposit not there yet?" asks why, "how is Easter's date worked out" how:
#: "how" before a form of "be" tells no kind.
_HOW_BE = frozenset({"is", "are", "was", "were", "am", "'s", "come"})
#: Kinds of asking that are one question in other words ("where do I find" / "how do I
#: find", "how long" / "how much longer", "how much" / "how big").
_ASKS_ALIKE = frozenset({frozenset({"place", "way"}), frozenset({"time", "quantity"})})


@functools.lru_cache(maxsize=4096)
def _asks(tokens: tuple[str, ...]) -> frozenset[str]:
    out = set()
    start = True
    for i, t in enumerate(tokens):
        if t in _LEAD_SKIP or t in ("and", "or", "but"):
            start = True
            continue
        if start:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if t in _ASK_OPENERS:
                out.add(_ASK_OPENERS[t])
            elif t == "how" and nxt not in _HOW_BE:
                out.add("quantity" if nxt in ("much", "many")
                        else "time" if nxt in _HOW_TIME else "way" if nxt in _HOW_WAY or not nxt
                        else "quantity")  # "how big", "how old": a degree
            elif t == "how" and nxt == "come":
                out.add("reason")
        start = False
    return frozenset(out)


def _asks_alike(query: str, candidate: str) -> bool:
    """Whether two questions ask for the same kind of thing, as far as the words that open
    their clauses tell: a person (who), a time (when, how long), a place (where), a
    reason (why, how come), a quantity or degree (how much, how big) or a way to do
    something (how do I, how can). Where / how-do-I and how long / how much longer ask
    alike; a question with no opener ("Is it ...?", "How is ...?") asks like any.

    Example:
        >>> _asks_alike("Why do dogs bark at night?", "How can dogs stop barking at night?")
        False
        >>> _asks_alike("Where do I find my PIN?", "How do I find my PIN?")
        True
    """
    a, b = _asks(features(query).tokens), _asks(features(candidate).tokens)
    return (not a or not b or bool(a & b)
            or any(frozenset({x, y}) in _ASKS_ALIKE for x in a for y in b))


def corroborates(query: str, candidate: str) -> bool:
    """Whether the two texts agree on a specific, answer-changing detail: both name the
    same identifier, sum of money, date, number or name, and every such detail of either
    text is in the other (the same identifiers, amounts, dates and numbers; each name
    mentioned on both sides).

    A shared concrete detail is evidence, beyond the embedding, that two questions are
    about the same thing; the semantic layer uses it to accept a candidate slightly below
    ``min_similarity`` (``SemanticIndex(corroboration_margin=)``), and only if it also
    passes every guard. On Banking77 (three splits), candidates in 0.85-0.90 that pass
    the guards serve the right answer 96.6-97.4 % of the time when corroborated, as often
    as those above 0.90, against 89-92 % when not.

    Example:
        >>> corroborates("Where is parcel 88231?", "Can you track parcel 88231 for me?")
        True
        >>> corroborates("How do I reset my password?", "I forgot my password")
        False
        >>> corroborates("Can I take Ibuprofen with Aspirin?", "Can I take Ibuprofen?")
        False
    """
    q, c = features(query), features(candidate)
    shared = False
    for name in ("identifiers", "amounts", "dates", "numbers"):
        mine, theirs = getattr(q, name), getattr(c, name)
        if mine != theirs:
            return False
        shared = shared or bool(mine)
    if _unmatched(q.entities, c) or _unmatched(c.entities, q):
        return False
    return shared or bool(q.entities & c.entities)
