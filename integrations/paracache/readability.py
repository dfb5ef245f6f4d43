"""Can the embedding model read a text? Measured per text from its own tokenizer's output.

all-MiniLM-L6-v2 is an English model: its WordPiece tokenizer maps most characters of
Chinese, Thai or Hindi to unknown tokens or single-character pieces, breaks Russian and
Greek words into characters, and strips the tone marks Vietnamese depends on. Similarities
between such texts mean nothing (on the multilingual pairs of ``benchmarks/multilingual.py``
*different* questions in every non-Latin script reach 0.85-1.00, as high as paraphrases), so
a cache must not serve one for the other by similarity. What is measured:

* ``foreign_share``: the share of letters outside the Latin script (scripts named);
* ``unknown_share``: the share of word pieces that are the unknown token;
* ``pieces_per_word``: how finely the tokenizer cuts the text's words (English 1.0-1.5,
  Spanish, French, German, Portuguese, Italian 1.6-2.1, Turkish and Polish about 3, Russian
  and Greek 5: the model knows the words it keeps whole);
* ``accent_share``: the share of letters with a diacritic (which the uncased tokenizer
  strips: Vietnamese 23-33 %, French at most 20 %).

:func:`measure` needs only a tokenizer callable; :class:`ReadabilityLimits` says where reading
stops. The limits were set on the tuning half of ``benchmarks/data/multilingual_pairs.jsonl``
(see ``benchmarks/RESULTS.md``, issue 19). The vectorizer computes the verdict
(:meth:`paracache.vectorizers.MiniLMVectorizer.unreadable`); the core only acts on it: such a
text is looked up and stored in the exact layer only.

Example:
    >>> r = Readability(tokens=12, unknown=0, words=6, letters=20, foreign=18,
    ...                 accented=0, scripts=("Han",))
    >>> r.problem()
    'script Han (90 % of letters) is outside the model vocabulary'
    >>> Readability(tokens=7, unknown=0, words=6, letters=24, foreign=0, accented=0).problem()
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string
import unicodedata
from collections.abc import Callable, Sequence

from . import lexicon

__all__ = ["DEFAULT_LIMITS", "Readability", "ReadabilityLimits", "measure", "script_of"]

#: First words of Unicode character names that name a script, mapped to a short label.
_SCRIPT_NAMES = {
    "CJK": "Han", "HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HALFWIDTH": "Japanese",
    "HANGUL": "Hangul", "CYRILLIC": "Cyrillic", "GREEK": "Greek", "ARABIC": "Arabic",
    "HEBREW": "Hebrew", "DEVANAGARI": "Devanagari", "THAI": "Thai", "BENGALI": "Bengali",
    "TAMIL": "Tamil", "TELUGU": "Telugu", "GUJARATI": "Gujarati", "GURMUKHI": "Gurmukhi",
    "KANNADA": "Kannada", "MALAYALAM": "Malayalam", "SINHALA": "Sinhala", "LAO": "Lao",
    "KHMER": "Khmer", "MYANMAR": "Myanmar", "GEORGIAN": "Georgian", "ARMENIAN": "Armenian",
    "ETHIOPIC": "Ethiopic", "TIBETAN": "Tibetan", "MONGOLIAN": "Mongolian",
}  # fmt: skip


def script_of(ch: str) -> str:
    """The script of one letter: ``"Latin"``, ``"Han"``, ``"Cyrillic"``, ... (``"Other"``).

    Example:
        >>> script_of("é"), script_of("中"), script_of("ж"), script_of("ก")
        ('Latin', 'Han', 'Cyrillic', 'Thai')
    """
    name = unicodedata.name(ch, "")
    head = name.split(" ", 1)[0]
    if head == "LATIN" or (ch.isascii() and ch.isalpha()):
        return "Latin"
    return _SCRIPT_NAMES.get(head, "Other")


@dataclasses.dataclass(frozen=True)
class ReadabilityLimits:
    """Where the default model stops reading a text (each share is in [0, 1]).

    A text is unreadable when any limit is exceeded. Texts with fewer than
    ``min_letters`` letters are never judged (an order number, "ok").

    Example:
        >>> ReadabilityLimits().max_foreign_share
        0.2
    """

    max_foreign_share: float = 0.2
    max_unknown_share: float = 0.25
    max_pieces_per_word: float = 2.75
    max_accent_share: float = 0.2
    min_letters: int = 3
    #: Text the model reads as English: at most this many pieces per word, or at least
    #: ``min_whole_share`` of its words kept whole. Other readable text is matched by
    #: similarity only when the guards know its language (:mod:`paracache.lexicon`).
    max_english_pieces_per_word: float = 1.5
    min_whole_share: float = 0.75


DEFAULT_LIMITS = ReadabilityLimits()


@dataclasses.dataclass(frozen=True)
class Readability:
    """What a tokenizer made of one text.

    Attributes:
        tokens: Word pieces of those words (special tokens excluded).
        unknown: How many of them are the unknown token.
        words: Words with letters the tokenizer's pre-tokenizer saw (each CJK character
            is one).
        letters: Letters in the text.
        foreign: Letters outside the Latin script.
        accented: Latin letters carrying a diacritic.
        scripts: The non-Latin scripts present, most letters first.
        whole: Words the tokenizer kept whole (one piece).
        guarded: The guards read the text's language beyond English (it has function
            words of Spanish, French, German, Portuguese or Italian).
        english_words: English function words ("the", "how", "my", ...; none that
            Polish, Turkish or the guarded languages also use).
    """

    tokens: int
    unknown: int
    words: int
    letters: int
    foreign: int
    accented: int
    scripts: tuple[str, ...] = ()
    whole: int = 0
    guarded: bool = True
    english_words: int = 0

    @property
    def foreign_share(self) -> float:
        """Letters outside the Latin script over all letters."""
        return self.foreign / self.letters if self.letters else 0.0

    @property
    def unknown_share(self) -> float:
        """Unknown tokens over all word pieces."""
        return self.unknown / self.tokens if self.tokens else 0.0

    @property
    def pieces_per_word(self) -> float:
        """Word pieces per word."""
        return self.tokens / self.words if self.words else 0.0

    @property
    def whole_share(self) -> float:
        """Words kept whole over all words."""
        return self.whole / self.words if self.words else 0.0

    @property
    def accent_share(self) -> float:
        """Latin letters with a diacritic over all letters."""
        return self.accented / self.letters if self.letters else 0.0

    def english(self, limits: ReadabilityLimits = DEFAULT_LIMITS) -> bool:
        """The text reads as English: an English function word, few pieces per word or
        most words kept whole by the English tokenizer.

        Example:
            >>> Readability(tokens=4, unknown=0, words=4, letters=20, foreign=0,
            ...             accented=0).english()
            True
        """
        return (
            self.english_words > 0
            or self.pieces_per_word <= limits.max_english_pieces_per_word
            or self.whole_share >= limits.min_whole_share
        )

    def problem(self, limits: ReadabilityLimits = DEFAULT_LIMITS) -> str | None:
        """Why the model cannot read this text, or ``None`` if it can.

        Example:
            >>> Readability(tokens=10, unknown=0, words=3, letters=20, foreign=0,
            ...             accented=0).problem()
            'words cut into 3.3 pieces each: outside the model vocabulary'
        """
        if self.letters < limits.min_letters:
            return None
        if self.foreign_share > limits.max_foreign_share:
            named = self.scripts[0] if self.scripts else "Other"
            share = _pct(self.foreign_share)
            return f"script {named} ({share} of letters) is outside the model vocabulary"
        if self.unknown_share > limits.max_unknown_share:
            return f"{_pct(self.unknown_share)} unknown tokens"
        if self.accent_share > limits.max_accent_share:
            return f"{_pct(self.accent_share)} of letters carry diacritics the model strips"
        if self.pieces_per_word > limits.max_pieces_per_word:
            return (
                f"words cut into {self.pieces_per_word:.1f} pieces each: outside the model "
                "vocabulary"
            )
        if not self.english(limits) and not self.guarded:
            return (
                f"not English ({self.pieces_per_word:.1f} pieces per word) and no guards "
                "for its language"
            )
        return None


#: English function words that Spanish, French, German, Portuguese, Italian, Polish and
#: Turkish do not use (so not "a", "i", "do", "to", "on", "no", "in", "me").
_ENGLISH_WORDS = (
    "the an of for my you your is are does did how what where when why which who can "
    "could it this that with from have has was were not and or will would should there "
    "get am been their they our we"
)
_ENGLISH = frozenset(_ENGLISH_WORDS.split())
_LETTERS = re.compile(r"[^\W\d_]+")
#: Deletes the ASCII letters (``len(text) - len(text.translate(...))`` counts them).
_ASCII_LETTERS = str.maketrans("", "", string.ascii_letters)


def _pct(share: float) -> str:
    return f"{round(share * 100)} %"


def measure(
    text: str,
    tokenize: Callable[[str], tuple[Sequence[str], Sequence[int | None]]],
    unknown_token: str = "[UNK]",
) -> Readability:
    """Measure ``text`` with ``tokenize`` (text -> (pieces, word index of each piece), special
    tokens already removed).

    Example:
        >>> def split(t):
        ...     words = t.split()
        ...     return words, list(range(len(words)))
        >>> measure("open on sunday", split).pieces_per_word
        1.0
    """
    pieces, word_ids = tokenize(text)
    # Words of letters only: digits and punctuation say nothing about the language.
    # Counted in a plain dict (a Counter costs more to build than these few pieces).
    per_word: dict[int, int] = {}
    for p, w in zip(pieces, word_ids, strict=True):
        if w is not None and (p.isalpha() or any(ch.isalpha() for ch in p)):
            per_word[w] = per_word.get(w, 0) + 1
    words = len(per_word)
    letters = foreign = accented = 0
    scripts: collections.Counter[str] | None = None
    if text.isascii():  # most text: every letter Latin and unaccented (no per-letter work)
        letters = len(text) - len(text.translate(_ASCII_LETTERS))
    else:
        scripts = collections.Counter()
        for ch in text:
            if not ch.isalpha():
                continue
            letters += 1
            if ch.isascii():  # an ASCII letter: Latin, unaccented (no name lookup)
                continue
            script = script_of(ch)
            if script != "Latin":
                foreign += 1
                scripts[script] += 1
            elif len(unicodedata.normalize("NFD", ch)) > 1:
                accented += 1
    return Readability(
        tokens=sum(per_word.values()),
        unknown=sum(1 for p in pieces if p == unknown_token),
        words=words,
        letters=letters,
        foreign=foreign,
        accented=accented,
        scripts=() if scripts is None else tuple(s for s, _ in scripts.most_common()),
        whole=sum(1 for n in per_word.values() if n == 1),
        guarded=lexicon.marked(text),
        english_words=sum(1 for w in _LETTERS.findall(text.lower()) if w in _ENGLISH),
    )
