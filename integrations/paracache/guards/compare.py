"""Whether two texts' details conflict or agree: conflicts of values, negation
flips, opposites (word lists and WordNet), typo'd repeats, and :func:`corroborates`."""

from __future__ import annotations

import difflib
from typing import Any

from ..spelling import known_words as _known_words
from .analysis import Features, features
from .vocabulary import _ALIGNED_INDEX, _ALIGNED_WORDS, _antonym_lexicon, _stem


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


def corroborates(query: str, candidate: str) -> bool:
    """Whether the two texts agree on a specific, answer-changing detail: both name the
    same identifier, sum of money, date, number or name, and every such detail of either
    text is in the other (the same identifiers, amounts, dates and numbers; each name
    mentioned on both sides).

    A shared concrete detail is evidence, beyond the embedding, that two questions are
    about the same thing; the semantic layer uses it to accept a candidate slightly below
    ``min_similarity`` (``SemanticIndex(corroboration_margin=)``), and only if it also
    passes every guard. On Banking77, corroborated candidates just below the threshold
    served the right answer about as often as those above it, and uncorroborated ones
    less often (the figures: ``benchmarks/RESULTS.md``).

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
