"""Minimal edits: two questions that are the same words but for one or two small
changes that change what is asked (:func:`minimal_edit`)."""

from __future__ import annotations

import difflib
import functools
import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from .. import lexicon
from ..lazy import once
from .analysis import _DETERMINERS, Features, _number_value, features
from .vocabulary import _DURATION_KEYS, _IRREGULAR, _NEGATORS, _NUMERIC_WORDS, _STOP, _stem

#: WordNet 3.0's related words and person nouns, distilled by ``tools/build_kin.py`` (see
#: the asset's notice).
_KIN_PATH = Path(__file__).resolve().parent.parent / "assets" / "kin.json"
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


@once  # not functools.cache: threads asking at once would each load it
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
