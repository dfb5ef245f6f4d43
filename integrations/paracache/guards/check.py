"""The :class:`Guards` a lookup runs between the nearest candidates and a hit: which
guards are on, the verdict on a candidate, vouching below the threshold, and the
``neighbours`` rule."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import lexicon
from .analysis import _CLAUSE_BREAKS, _LEAD_SKIP, MAX_GUARD_CHARS, Features, features
from .compare import (
    _aligned_opposed,
    _conflict,
    _exclusive_sides,
    _lexicon_opposed,
    _maybe_typo,
    _negation_flip,
    _replaced_by_opposite,
    _unmatched,
    _values,
    corroborates,
    typo_repeat,
)
from .edits import (
    _EDIT_FUNCTION,
    _english_edit,
    _kin,
    _marked,
    _number_replaced,
    _stems,
    _typo_like,
)
from .pairs import _latin_letters, _pair_model, same_question
from .vocabulary import _RE_TOKEN, _stem

if TYPE_CHECKING:
    from ..core import Candidate, LookupRequest


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
            elif _differs(name, q, c) or (
                name == "edits" and _templated_apart(query, candidate, q, c)
            ):
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


#: Two prompts whose common beginning and end hold at least this many words (and half of
#: the shorter one) are one template around two questions (:func:`_templated_apart`).
TEMPLATE_WORDS = 24
#: ... and their questions are two questions when each has at least this share of its
#: content words unmatched in the other (stems, WordNet kin, typos).
TEMPLATE_APART = 0.5


def _templated_apart(query: str, candidate: str, q: Features, c: Features) -> bool:
    """Whether two prompts are one template (an instruction, a retrieved context,
    "Answer:") around two different questions. Their common beginning and end hold at
    least :data:`TEMPLATE_WORDS` words and half of the shorter prompt; the clauses that
    differ (from the sentence break before the first difference to the one after the
    last) have two content words or more each, and each at least :data:`TEMPLATE_APART`
of its own (words the other neither says nor says in other words). The shared
    words make the two embeddings alike and every detail "shared", and say nothing about
    the questions. The same question reworded in a template, or a long question asked
    again with a word or two changed, keeps most of its words and is no such pair.

    Example:
        >>> ctx = "Use the context. Context: cards arrive in 5 days, branches open 9 to 5, "
        >>> ctx += "a current account costs 3 EUR a month, transfers take a day. Question: "
        >>> a, b = ctx + "When do branches open?", ctx + "What does the current account cost?"
        >>> _templated_apart(a, b, features(a), features(b))
        True
        >>> b = ctx + "When do the branches open?"
        >>> _templated_apart(a, b, features(a), features(b))
        False
    """
    if min(len(q.tokens), len(c.tokens)) < TEMPLATE_WORDS:
        return False
    n = min(len(q.tokens), len(c.tokens))
    head = 0
    while head < n and q.tokens[head] == c.tokens[head]:
        head += 1
    tail = 0
    while tail < n - head and q.tokens[-1 - tail] == c.tokens[-1 - tail]:
        tail += 1
    if head + tail < TEMPLATE_WORDS or 2 * (head + tail) < n:
        return False
    a, b = _differing_clauses(query, candidate)
    return (
        min(len(a), len(b)) >= 2  # "what's going on" / "why did it happen": too little to tell
        and _own_share(a, b) >= TEMPLATE_APART
        and _own_share(b, a) >= TEMPLATE_APART
    )


def _differing_clauses(query: str, candidate: str) -> tuple[list[str], list[str]]:
    """The content words of the clauses where two texts differ."""
    a, b = _raw_tokens(query), _raw_tokens(candidate)
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    while head > 0 and a[head - 1] not in _CLAUSE_BREAKS:
        head -= 1
    while tail > 0 and a[len(a) - tail] not in _CLAUSE_BREAKS:
        tail -= 1
    return (_content_words(features(" ".join(a[head:len(a) - tail]))),
            _content_words(features(" ".join(b[head:len(b) - tail]))))


@functools.lru_cache(maxsize=1024)
def _raw_tokens(text: str) -> tuple[str, ...]:
    """A text's tokens, punctuation included (where its clauses break)."""
    return tuple(_RE_TOKEN.findall(text[:MAX_GUARD_CHARS].lower()))


def _own_share(words: list[str], other: list[str]) -> float:
    """The share of ``words`` that ``other`` neither says nor says in other words."""
    if not words:
        return 0.0
    stems = {_stem(w) for w in other}
    own = sum(
        _stem(w) not in stems and not any(_kin(w, o) or _typo_like(w, o) for o in other)
        for w in words
    )
    return own / len(words)


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
