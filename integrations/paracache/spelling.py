"""Typo tolerance: misspelt words corrected in the text the embedder sees.

The default embedder (all-MiniLM-L6-v2) cuts an unknown word into word pieces, so one
typo moves a question far away from itself: "How do I chnage my email adress?" is only
about 0.7 similar to "How do I change my email address?", well below any safe threshold,
and a cache would answer the typo'd repeat with a miss. :func:`correct_typos` replaces each
word the embedder's vocabulary does not know by the most frequent known word one edit
away (two neighbours swapped, a letter dropped, added or changed: the likeliest kind of
typo first, then the word that keeps the first letter, then the most frequent).

Only what is embedded changes (stored and asked prompts alike); the exact layer's key and
the text the guards compare are the prompts as written, so a detail changed by a "typo"
("parcel 1047" / "parcel 1074", "Venmo" / "PayPal") is still a different question.
Words with digits, words of fewer than four or more than 24 letters and words with an
apostrophe are never touched.

The vocabulary is the embedder's own: the whole words of the all-MiniLM-L6-v2 tokenizer
shipped with paracache (``assets/tokenizer.json``, ordered by frequency) and their
regular inflections. Pure Python, no I/O after the first use (the vocabulary loads once,
in about 0.1 s); a few microseconds for a text of known words, tens of microseconds per
unknown word.

Example:
    >>> correct_typos("how do i chnage my email adress")
    'how do i change my email address'
    >>> correct_typos("where is parcel 1074")
    'where is parcel 1074'
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path

from .lazy import once

__all__ = ["correct_typos", "known_words"]

_TOKENIZER = Path(__file__).resolve().parent / "assets" / "tokenizer.json"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_RE_WORD = re.compile(r"(?<![\w'])[a-z]+(?:'[a-z]+)?(?![\w'])")
#: Shortest word that is corrected: shorter ones have too many neighbours ("bil": bill,
#: oil, bit, big...).
MIN_LENGTH = 4
#: Longest word that is corrected: a word's edits are about 54 per letter, each as long as
#: the word; no English word needs more.
MAX_LENGTH = 24
#: Suffixes a known word may take and still be known ("vaccinating", "leases").
_SUFFIXES = ("s", "es", "ed", "ing", "er", "ers", "ly", "ness", "ment", "ments", "ation",
             "ations", "able")


@once  # not functools.cache: threads asking at once would each load it
def _vocabulary() -> dict[str, int]:
    """Known words and their frequency rank (lower: more frequent)."""
    with _TOKENIZER.open(encoding="utf-8") as fh:
        vocab: dict[str, int] = json.load(fh)["model"]["vocab"]
    words = sorted(
        (i, w) for w, i in vocab.items() if w.isascii() and w.isalpha() and len(w) > 1
    )
    known: dict[str, int] = {}
    for rank, (_, word) in enumerate(words):
        known.setdefault(word, rank)
    extra: dict[str, int] = {}
    for word, rank in known.items():
        for suffix in _SUFFIXES:
            if word.endswith("e") and suffix[0] in "aeiou":
                form = word[:-1] + suffix  # "vaccinate" + "ing"
            elif word.endswith("y") and suffix in ("es", "ed"):
                form = word[:-1] + "i" + suffix  # "policy" + "es"
            else:
                form = word + suffix
            extra.setdefault(form, rank + len(words))
    for word, rank in extra.items():
        known.setdefault(word, rank)
    return known


def known_words() -> Mapping[str, int]:
    """The words :func:`correct_typos` knows (the embedder's vocabulary and regular
    inflections), each with its frequency rank (0: the most frequent).

    Example:
        >>> "address" in known_words(), "adress" in known_words()
        (True, False)
    """
    return _vocabulary()


def _edits(word: str) -> list[set[str]]:
    """The strings one edit away from ``word`` (Damerau: a transposition is one), most
    likely typos first: two neighbours swapped, then a letter dropped or doubled, then a
    letter added, then a letter changed."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    dropped = {a + c + b for a, b in splits for c in _LETTERS}  # the typo lacks a letter
    added = {a + b[1:] for a, b in splits if b}  # the typo has one too many
    changed = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    return [swaps - {word}, dropped, added, changed - {word}]


@functools.lru_cache(maxsize=8192)
def _correct(word: str) -> str:
    known = _vocabulary()
    for group in _edits(word):
        # a typo rarely touches the first letter ("adress" is "address", not "dress")
        best = min(
            ((w[0] != word[0], known[w], w) for w in group
             if w in known and len(w) >= MIN_LENGTH),
            default=None,
        )
        if best is not None:
            return best[2]
    return word


def correct_typos(text: str) -> str:
    """``text`` (lowercase, as normalised) with each unknown word of four letters or
    more replaced by the most frequent known word one edit away, if any.

    Example:
        >>> correct_typos("is the musuem open on public holidays")
        'is the museum open on public holidays'
    """
    if not text.isascii():
        return text  # English only: other scripts and accents are left as they are
    known = _vocabulary()
    for word in _RE_WORD.findall(text):  # what fix() below would look at, without a call
        if MIN_LENGTH <= len(word) <= MAX_LENGTH and word not in known and "'" not in word:
            break
    else:
        return text  # no word to correct (most text)

    def fix(m: re.Match[str]) -> str:
        word = m.group(0)
        if not MIN_LENGTH <= len(word) <= MAX_LENGTH or "'" in word or word in known:
            return word
        return _correct(word)

    return _RE_WORD.sub(fix, text)
