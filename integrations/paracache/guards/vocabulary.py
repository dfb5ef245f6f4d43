"""The guards' vocabulary: word lists, stems, the WordNet antonym lexicon and the
regular expressions built from them (data, no logic beyond building it)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..lazy import once

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
_ANTONYMS_PATH = Path(__file__).resolve().parent.parent / "assets" / "antonyms.json"


@once  # not functools.cache: threads asking at once would each load it
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



_EMPTY: frozenset[Any] = frozenset()
