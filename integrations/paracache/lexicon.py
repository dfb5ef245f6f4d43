"""Answer-changing words of Spanish, French, German, Portuguese and Italian, for the guards.

The guards of :mod:`paracache.guards` read English. This module gives them the same
conflicts in the other major European languages the default embedder half reads (issue 19):
weekdays, months and relative days (``dates``), negation (``negation``), common opposite
actions and states (``opposites``), and number words and counts (``numbers``). Word lists
were written for paracache; words are compared without accents and case, so "miércoles"
and "miercoles" are the same day.

Rules, as in English: a conflict needs both texts to state the detail, differently (two
different weekdays), except negation: one text negates and the other does not, and the
other is not a how/where/when question ("Mi tarjeta no ha llegado" and "¿Cuándo llega mi
tarjeta?" ask the same). Pure Python, no I/O; a text's words are read once (memoised).

Example:
    >>> conflict("¿Abren el domingo?", "¿Abren el lunes?")
    'dates'
    >>> conflict("Cancela mi pedido", "No canceles mi pedido")
    'negation'
    >>> conflict("Comment bloquer ma carte ?", "Comment débloquer ma carte ?")
    'opposites'
    >>> conflict("Mir wurde zweimal abgebucht", "Mir wurde dreimal abgebucht")
    'numbers'
    >>> conflict("Quero cancelar meu pedido", "Cancele meu pedido") is None
    True
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Collection

__all__ = ["LANGUAGES", "Lexical", "conflict", "marked", "read"]

#: The languages whose words are listed here (ISO 639-1).
LANGUAGES = ("es", "fr", "de", "pt", "it")


def _plain(word: str) -> str:
    """Lowercase, without accents (ß kept)."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _set(words: str) -> frozenset[str]:
    return frozenset(_plain(w) for w in words.split())


def _table(groups: dict[int | str, str]) -> dict[str, int | str]:
    return {_plain(w): key for key, words in groups.items() for w in words.split()}


_WEEKDAYS = _table({
    1: "lunes lundi montag montags lunedi lunedì segunda-feira",
    2: "martes mardi dienstag dienstags martedi martedì terça-feira terca-feira",
    3: "miércoles mercredi mittwoch mittwochs mercoledi mercoledì quarta-feira",
    4: "jueves jeudi donnerstag donnerstags giovedi giovedì quinta-feira",
    5: "viernes vendredi freitag freitags venerdi venerdì sexta-feira",
    6: "sábado sábados samedi samedis samstag samstags sonnabend sabato sabati",
    7: "domingo domingos dimanche dimanches sonntag sonntags domenica domeniche",
})  # fmt: skip
_MONTHS = _table({
    1: "enero janvier januar jänner janeiro gennaio",
    2: "febrero février februar fevereiro febbraio",
    3: "marzo mars märz maerz março",
    4: "abril avril aprile",
    5: "mayo mai maio maggio",
    6: "junio juin juni junho giugno",
    7: "julio juillet juli julho luglio",
    8: "agosto août",
    9: "septiembre setiembre septembre setembro settembre",
    10: "octubre octobre oktober outubro ottobre",
    11: "noviembre novembre november novembro",
    12: "diciembre décembre dezember dezembro dicembre",
})  # fmt: skip
# "mai" is May in French and German, "never" in Italian ("non ... mai"): a negation when
# the text has another negation word, else the month.
_RELATIVE_DAYS = _table({
    "today": "hoy aujourd'hui aujourdhui heute hoje oggi",
    "tomorrow": "mañana demain morgen amanhã domani",
    "yesterday": "ayer hier gestern ontem ieri",
})  # fmt: skip
#: Number words and counts; 1 is left out (it is also the article: un, une, ein, um, uno).
_NUMBERS = _table({
    2: "dos deux zwei dois duas due zweimal",
    3: "tres trois drei três tre dreimal",
    4: "cuatro quatre vier quatro quattro viermal",
    5: "cinco cinq fünf cinque fünfmal",
    6: "seis six sechs sei",
    7: "siete sept sieben sete sette",
    8: "ocho huit acht oito otto",
    9: "nueve neuf neun nove",
    10: "diez dix zehn dez dieci",
})  # fmt: skip
_NEGATORS = _set(
    "no nunca jamás tampoco ni ningún ninguna nada "  # es
    "ne n pas jamais rien aucun aucune non "  # fr
    "nicht kein keine keinen keinem keiner nie niemals nichts "  # de
    "não nunca nem nenhum nenhuma nada "  # pt
    "non nessun nessuno nessuna niente nulla"  # it ("mai": see read())
)
_WH = _set(
    "cómo cuándo dónde qué cuál cuánto cuánta "  # es
    "comment quand où quel quelle quels quelles combien "  # fr
    "wie wann wo was welche welcher welches wieviel "  # de
    "como quando onde qual quanto quanta "  # pt
    "come quando dove quale quanto quanta cosa"  # it
)
#: Opposite actions or states: (side A word starts, side B word starts); a word belongs to
#: a side when it starts with one of its stems (accents removed).
_OPPOSITES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (  # lock / unlock
        ("bloque", "bloqu", "sperr", "blocc", "verrouill", "cierre"),
        ("desbloque", "debloqu", "entsperr", "sblocc", "deverrouill"),
    ),
    (  # activate / deactivate
        ("activ", "ativ", "aktivier", "attiv", "habilit"),
        ("desactiv", "desativ", "deaktivier", "disattiv", "deshabilit"),
    ),
    (  # deposit / withdraw
        ("deposit", "ingres", "einzahl", "versa", "vers", "zahle"),
        ("retir", "saca", "saco", "saque", "sacar", "abheb", "hebe", "prelev", "preliev"),
    ),
    (  # open / closed
        ("abierto", "abierta", "abren", "abre", "ouvert", "ouvr", "geoffnet", "offen",
         "oeffn", "offn", "aberto", "aberta", "abrem", "aperto", "aperta", "apri"),
        ("cerrado", "cerrada", "cierran", "ferme", "geschlossen", "schliess", "fechado",
         "fechada", "fecham", "chiuso", "chiusa", "chiud"),
    ),
    (  # accept / refuse
        ("acept", "accept", "akzeptier", "angenommen", "aceit", "accett", "aprob", "aprov",
         "approv", "genehmig"),
        ("rechaz", "refus", "rejet", "abgelehnt", "ablehn", "recus", "rejeit", "rifiut",
         "respint"),
    ),
    (  # increase / decrease
        ("aument", "augment", "erhoh", "erhoeh"),
        ("disminu", "reduc", "redui", "diminu", "senk", "verringer", "reduz", "riduc",
         "ridur"),
    ),
    (  # buy / sell
        ("compr", "achet", "kauf", "acquist"),
        ("vend", "verkauf"),
    ),
    (  # send / receive
        ("envi", "envoy", "envoi", "send", "schick", "invi"),
        ("recib", "recev", "recu", "empfang", "bekomm", "receb", "ricev"),
    ),
)  # fmt: skip
#: Opposite phrases (round trip / one way), on the plain text.
_PHRASES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(
            r"\b(?:ida y vuelta|aller[- ]retour|hin[- ]? und ruck|hin und zuruck|"
            r"ida e volta|andata e ritorno)"
        ),
        re.compile(
            r"\b(?:solo ida|sólo ida|aller simple|einfache (?:fahrt|fahrkarte)|"
            r"so de ida|somente ida|so ida|sola andata|solo andata)"
        ),
    ),
)
#: Function words of the listed languages that English does not use: the lexicon judges a
#: pair only when one of its texts has one (English text is the English guards' job).
_MARKERS = _set(
    "el los las del mi mis tu su que qué cómo cuándo dónde por para una está es puedo "
    "quiero tengo hay "  # es
    "le les des du je j vous nous mon ma mes est suis pour avec une ce cette qui quel "
    "quelle comment où "  # fr
    "der das dem des ich mein meine meinen meiner mir mich ist sind und wie wo wann "
    "kann nicht ein eine einen "  # de
    "o os da dos das meu minha em uma não é posso quero "  # pt
    "il lo gli di della che mio mia sono ho è voglio "  # it
    # and a few everyday words of customer questions
    "veces vez hoy ayer sucursal tarjeta pedido cuenta dinero "  # es
    "fois carte commande compte argent "  # fr
    "sie haben habe hat wurde wurden karte konto geld bestellung "  # de
    "você vocês fica mais fui onde cartão conta dinheiro vezes "  # pt
    "siete volte dove carta ordine conto denaro soldi "  # it
)
#: Portuguese words, where "no" is "in the" (em + o), not Spanish or Italian "no".
_PORTUGUESE = _set(
    "você vocês não meu minha meus minhas cartão dinheiro vezes posso quero onde fica na nas é"
)
_PT_WEEKDAY = re.compile(r"\b(segunda|terca|quarta|quinta|sexta)(?:-|\s)feira\b")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|\d+")


@dataclasses.dataclass(frozen=True)
class Lexical:
    """What :func:`read` found in one text.

    Attributes:
        dates: ``weekday:N``, ``month:N``, ``rel:today``/``tomorrow``/``yesterday``.
        numbers: Number words and counts, as ``"2"``, ``"3"``, ...
        negations: Negation words.
        wh_question: Asks how, when, where, what, which or how much.
        opposites: ``(pair, side)`` of opposite words used.
        marked: Has a function word of these languages that English does not use.
    """

    dates: frozenset[str]
    numbers: frozenset[str]
    negations: int
    wh_question: bool
    opposites: frozenset[tuple[int, int]]
    marked: bool = False


def _side(word: str) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for pair, (side_a, side_b) in enumerate(_OPPOSITES):
        in_b = word.startswith(side_b)
        if in_b:
            found.add((pair, 1))
        elif word.startswith(side_a):
            found.add((pair, 0))
    return found


@functools.lru_cache(maxsize=4096)
def _words(text: str) -> tuple[str, tuple[str, ...]]:
    """The plain text (lowercase, no accents) and its words (split at apostrophes)."""
    plain = text.lower() if text.isascii() else _plain(text)
    words: list[str] = []
    for token in _WORD.findall(plain.replace("’", "'")):
        words.extend(token.split("'") if "'" in token else (token,))
    return plain, tuple(w for w in words if w)


def marked(text: str) -> bool:
    """Has ``text`` a function word of the listed languages that English does not use?

    Example:
        >>> marked("¿Abren el domingo?"), marked("Are you open on Sunday?")
        (True, False)
    """
    return not _MARKERS.isdisjoint(_words(text)[1])


@functools.lru_cache(maxsize=4096)
def read(text: str) -> Lexical:
    """The dates, numbers, negations and opposites of ``text`` in the listed languages.

    Example:
        >>> read("¿Puedo reservar para marzo?").dates
        frozenset({'month:3'})
        >>> read("Não recebi o reembolso").negations
        1
    """
    plain, words = _words(text)
    dates: set[str] = set()
    numbers: set[str] = set()
    opposites: set[tuple[int, int]] = set()
    portuguese = any(w in _PORTUGUESE for w in words)
    negations = sum(1 for w in words if w in _NEGATORS and not (portuguese and w == "no"))
    never = negations > 0 and "mai" in words
    for word in words:
        if word in _WEEKDAYS:
            dates.add(f"weekday:{_WEEKDAYS[word]}")
        if word in _RELATIVE_DAYS:
            dates.add(f"rel:{_RELATIVE_DAYS[word]}")
        if word in _NUMBERS:
            numbers.add(str(_NUMBERS[word]))
        opposites |= _side(word)
        if word in _MONTHS and not (never and word == "mai"):
            dates.add(f"month:{_MONTHS[word]}")
    dates.update(f"weekday:{_WEEKDAYS[m.group(0).replace(' ', '-')]}"
                 for m in _PT_WEEKDAY.finditer(plain)
                 if m.group(0).replace(" ", "-") in _WEEKDAYS)  # fmt: skip
    for pair, (a, b) in enumerate(_PHRASES, start=len(_OPPOSITES)):
        if a.search(plain):
            opposites.add((pair, 0))
        elif b.search(plain):
            opposites.add((pair, 1))
    return Lexical(
        dates=frozenset(dates),
        numbers=frozenset(numbers),
        negations=negations,
        wh_question=any(w in _WH for w in words),
        opposites=frozenset(opposites),
        marked=not _MARKERS.isdisjoint(words),
    )


def _exclusive(a: frozenset[tuple[int, int]], b: frozenset[tuple[int, int]]) -> bool:
    """Some pair is used on one side only by each text, on different sides."""
    for pair, side in a:
        if (pair, 1 - side) in b and (pair, side) not in b and (pair, 1 - side) not in a:
            return True
    return False


def _negation_flip(neg: Lexical, other: Lexical) -> bool:
    return neg.negations > 0 and other.negations == 0 and not other.wh_question


def conflict(
    query: str,
    candidate: str,
    enabled: Collection[str] = ("dates", "negation", "opposites", "numbers"),
) -> str | None:
    """The guard (``dates``, ``negation``, ``opposites`` or ``numbers``) whose details in
    these languages differ between ``query`` and ``candidate``, or ``None``.

    Example:
        >>> conflict("Êtes-vous ouverts le dimanche ?", "Ouvrez-vous le dimanche ?") is None
        True
        >>> conflict("Posso reservar para março?", "Posso reservar para maio?")
        'dates'
    """
    if not (marked(query) or marked(candidate)):
        return None  # English, or no language listed here: the English guards' job
    q, c = read(query), read(candidate)
    if "dates" in enabled and q.dates and c.dates and q.dates != c.dates:
        return "dates"
    if "negation" in enabled and (_negation_flip(q, c) or _negation_flip(c, q)):
        return "negation"
    if "opposites" in enabled and _exclusive(q.opposites, c.opposites):
        return "opposites"
    if "numbers" in enabled and q.numbers and c.numbers and q.numbers != c.numbers:
        return "numbers"
    return None
