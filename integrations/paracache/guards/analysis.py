"""One text's answer-changing details (:class:`Features`): identifiers, sums,
dates, numbers, negated and asserted words, opposites, scope words and names, extracted
once per text and kept in an LRU."""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from typing import Any

from .vocabulary import (
    _ALIAS_FIRST,
    _ALIAS_KEYS,
    _ALIASES,
    _AMBIGUOUS_MONTHS,
    _CLAUSE_END,
    _CURRENCY_ADJ,
    _CURRENCY_KEYS,
    _CURRENCY_SYMBOLS,
    _CURRENCY_WORDS,
    _DURATION_KEYS,
    _DURATIONS,
    _EMPTY,
    _ID_NOUN_KEYS,
    _IMPLICIT_NEGATORS,
    _MONTH_KEYS,
    _MONTHS,
    _MULTIPLIERS,
    _NEG_SKIP,
    _NEGATORS,
    _NOT_NAMES,
    _NUMBER_GATE,
    _NUMERIC_BOUNDS,
    _NUMERIC_WORDS,
    _OPP_FIRST,
    _OPP_INDEX,
    _ORDINALS,
    _PERIOD_PHRASES,
    _PERIOD_UNITS,
    _QUANT_FIRST,
    _QUANT_INDEX,
    _RE_AMOUNT_CODE_PRE,
    _RE_AMOUNT_POST,
    _RE_AMOUNT_PRE,
    _RE_CODE,
    _RE_COUNT_BEFORE,
    _RE_CURRENCY,
    _RE_DIGIT,
    _RE_DOLLAR_PREFIX,
    _RE_EMAIL,
    _RE_GLUED_UNIT,
    _RE_HASH_ID,
    _RE_ISO_DATE,
    _RE_LONG_DIGITS,
    _RE_MONTH_DAY,
    _RE_NOT_CODE,
    _RE_NOUN_ID,
    _RE_NUM_DATE,
    _RE_NUMBER,
    _RE_NUMBER_WORDS,
    _RE_NUMERIC_AHEAD,
    _RE_PERCENT_AFTER,
    _RE_PERIOD_CONTEXT,
    _RE_RELATIVE,
    _RE_SPACES,
    _RE_SYMBOL,
    _RE_TIME,
    _RE_TIMES_BEFORE,
    _RE_TOKEN,
    _RE_TOKEN_ASCII,
    _RE_URL,
    _RE_UUID,
    _RE_YEAR,
    _RELATIVE_DAYS,
    _RELATIVE_KEYS,
    _SCALES,
    _STOP,
    _TENS,
    _UNITS,
    _VOLITION,
    _WEAK_CURRENCIES,
    _WEEKDAY_KEYS,
    _WEEKDAYS,
    _WH,
    _alt,
    _lexicon_words,
    _stem,
    _word_at,
)

#: Characters of a text the guards look at (the default embedder sees about as many).
MAX_GUARD_CHARS = 2_000



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
