"""Pure decisions: how text is normalised, what is cached for how long, when to stop trying.

Nothing here does I/O; every rule can be read and tested on its own.

Example:
    >>> from paracache.policy import Normalizer, TTLPolicy
    >>> Normalizer()("  What's   your REFUND policy?? ")
    "what's your refund policy"
    >>> TTLPolicy().decide("What is the exchange rate today?", temperature=0.0).ttl
    300
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable

from .reals import as_number, is_finite, is_nan, is_real

__all__ = [
    "MAX_TTL",
    "CircuitBreaker",
    "HybridTuner",
    "Normalizer",
    "TTLDecision",
    "TTLPolicy",
    "Throttle",
    "strip_pleasantries",
]

#: The longest time to live, in seconds (about 31 years), of an entry, a conversation or
#: a rate-limit tier; ``None`` keeps a key until it is cleared. Far larger ones reach a
#: limit of Redis's (an ``EXPIRE`` of ``1e30`` s is refused, inside a write that then
#: fails half done): they are refused at the boundary instead.
MAX_TTL = 10**9


def ttl_problem(value: object, *, zero: bool = False) -> str | None:
    """Why ``value`` is not a time to live in seconds (``zero``: ``0`` allowed), or
    ``None``.

    Example:
        >>> ttl_problem(3600) is None, ttl_problem(float("nan")), ttl_problem(0)
        (True, 'not a finite number', 'not > 0')
    """
    if not is_real(value):  # any real number: numpy's too
        return "not a number"
    if not is_finite(value):
        return "not a finite number"
    if value < 0 or (value == 0 and not zero):
        return ">= 0 needed" if zero else "not > 0"
    if value > MAX_TTL:
        return f"more than MAX_TTL ({MAX_TTL:.0e} s); None: no expiry"
    return None


_WS = re.compile(r"\s+")
_EDGE_CHARS = (
    "\\s\"'`.,;:!?\u00bf\u00a1\u2026\u2018\u2019\u201c\u201d"
    # As other scripts type them: guillemets, low quotes, CJK stops, commas and
    # brackets (full-width ASCII forms are already ASCII after NFKC), the Arabic
    # question mark and comma, the Devanagari danda, the Ethiopic full stop.
    "\u00ab\u00bb\u201e\u201a\u2039\u203a\u3001\u3002\u300c\u300d\u300e\u300f"
    "\u061f\u060c\u06d4\u0964\u0965\u1362"
)
_EDGE_PUNCT = re.compile(f"^[{_EDGE_CHARS}]+|[{_EDGE_CHARS}]+$")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b"
    r"|\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?(?:am|pm)\b)?",
    re.I,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Turns a prompt into the text the exact layer fingerprints and the embedder sees.

    By default: Unicode NFKC, lowercase, control characters dropped, whitespace
    collapsed, punctuation and quotes trimmed from both ends. Numbers, names and
    inner punctuation are kept: they change the answer. ``strip_volatile`` also
    replaces timestamps, clock times and UUIDs with placeholders, for prompts that
    embed a request id or the current time.

    Example:
        >>> Normalizer(strip_volatile=True)("Order 7 at 2026-11-22T10:00:00Z, id "
        ...     "123e4567-e89b-12d3-a456-426614174000?")
        'order 7 at <time>, id <uuid>'
    """

    lowercase: bool = True
    strip_edge_punctuation: bool = True
    strip_volatile: bool = False

    def __call__(self, text: str) -> str:
        out = unicodedata.normalize("NFKC", text)
        out = _CONTROL.sub(" ", out)
        if self.lowercase:
            out = _lower(out)
        if self.strip_volatile:
            out = _UUID.sub("<uuid>", out)
            out = _TIMESTAMP.sub("<time>", out)
        out = _WS.sub(" ", out).strip()
        if self.strip_edge_punctuation:
            out = _EDGE_PUNCT.sub("", out)
        return out


#: Letters only Turkish and Azerbaijani write; their capital I is dotless (I -> ı, İ -> i).
_TURKIC = frozenset("ıİşŞğĞ")
_TURKIC_LOWER = str.maketrans({"I": "ı", "İ": "i"})


def _lower(text: str) -> str:
    """Lowercase as the text's language does where Unicode's default would change the
    meaning: in Turkish and Azerbaijani text (recognised by ı, İ, ş or ğ) "I" is the
    capital of "ı" and "İ" of "i" ("KIR" is "kır", countryside, not "kir", dirt). ß is
    kept (``str.lower``, not ``casefold``: "Maße" is not "Masse").

    Example:
        >>> _lower("KIRMIZI IŞIK"), _lower("İSTANBUL"), _lower("MAßE"), _lower("I WANT")
        ('kırmızı ışık', 'istanbul', 'maße', 'i want')
    """
    if not text.isascii() and not _TURKIC.isdisjoint(text):
        text = text.translate(_TURKIC_LOWER)
    return text.lower()


# Pleasantries: greetings, politeness and hedge frames, sign-offs. Only ever removed at the
# start or the end of a text (and a lone "please" inside it): negations, numbers and names
# are never touched, and a text that would keep fewer than two words is left as it is.
_P_SEP = r"[\s,!.:;\-]*"
_P_LEAD = (
    r"(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening|day))"
    r"(?: there| all| team| guys| folks| everyone| support)?\b",
    r"dear (?:sir or madam|sir|madam|team|support team|support|all)\b",
    r"(?:ok|okay|so|um|uh|hmm|oh)\b(?=[\s,])",
    r"(?:please|pls|plz|kindly)\b",
    r"(?:can|could|would|will) you (?:please |kindly )?(?:tell|let|show) me(?: know)?\b",
    r"(?:please )?(?:tell|let) me know\b",
    r"(?:please )?tell me\b(?= (?:how|what|where|when|which|who|why|if|whether)\b)",
    r"(?:can|could|would|will) you (?:please|kindly)\b",
    r"(?:i was|i am|i'm|im) (?:just )?wondering(?: if| whether)?\b",
    r"(?:i would|i'd|id) like to (?:know|ask)(?: if| whether)?\b",
    r"i (?:want|need) to know(?: if| whether)?\b",
    r"(?:i have a |quick |a quick |i've got a )?question(?: for you)?\b(?=[:,\-])",
)
_P_TRAIL = (  # each ends with a word of _P_TRAIL_LAST: keep the two in step
    r"(?:please|pls|plz|kindly)",
    r"(?:many |thanks? )?(?:thanks|thank you|thx|ty|cheers)"
    r"(?: (?:so|very) much| a lot| a bunch)?(?: in advance| for your help| for the help)?",
    r"(?:kind |best |warm )?regards",
    r"(?:i )?(?:would |will )?(?:much |really )?appreciate(?:d)? (?:it|your help|any help)",
    r"any help (?:is|would be) (?:much |greatly )?appreciated",
)
_RE_P_LEAD = re.compile(r"^(?:" + "|".join(_P_LEAD) + r")" + _P_SEP, re.I)
_RE_P_TRAIL = re.compile(r"[\s,!.:;\-]*\b(?:" + "|".join(_P_TRAIL) + r")[\s,!.:;\-]*$", re.I)
_RE_P_INNER = re.compile(r"(?<=\s)(?:please|pls|plz|kindly)\b,?\s", re.I)
_RE_P_EDGE = re.compile(r"^[\s,!.:;\-?]+|[\s,!.:;\-?]+$")
#: Every trailing pleasantry ends with one of these words (a cheap test before the
#: trailing pattern, which Python's ``re`` would try at every position of the text).
_P_TRAIL_LAST = (
    "please", "pls", "plz", "kindly", "thanks", "you", "thx", "ty", "cheers", "much",
    "lot", "bunch", "advance", "help", "regards", "it", "appreciated",
)  # fmt: skip


def _may_trail(text: str) -> bool:
    """Could :data:`_RE_P_TRAIL` match ``text``? (never ``False`` when it could)."""
    end = len(text)
    while end and (text[end - 1].isspace() or text[end - 1] in ",!.:;-"):
        end -= 1
    tail = text[max(0, end - 16) : end]
    # Outside ASCII, re.IGNORECASE knows equivalences lower() does not (long s, dotless i).
    return not tail.isascii() or tail.lower().endswith(_P_TRAIL_LAST)


def strip_pleasantries(text: str) -> str:
    """The text the embedder sees: ``text`` without the greetings, politeness and hedge
    frames and sign-offs that carry nothing for the answer ("Hi, can you tell me ...",
    "I was wondering if ...", "..., thanks in advance").

    Applied to the (normalised) text of stored and asked prompts alike, and only to what
    is embedded: the exact layer's key is unchanged. Negations, numbers and names are
    kept; a text that would keep fewer than two words is returned unchanged.

    Example:
        >>> strip_pleasantries("hi, can you tell me how do i top up my card? thanks!")
        'how do i top up my card'
        >>> strip_pleasantries("please don't cancel my order")
        "don't cancel my order"
        >>> strip_pleasantries("hello there")
        'hello there'
    """
    out = text
    for _ in range(4):
        stripped = _RE_P_LEAD.sub("", out)
        if _may_trail(stripped):
            stripped = _RE_P_TRAIL.sub("", stripped)
        if stripped == out:
            break
        out = stripped
    out = _RE_P_EDGE.sub("", _RE_P_INNER.sub("", out))
    return out if len(out.split()) >= 2 else text


#: Words that make an answer depend on when it is asked.
DEFAULT_VOLATILE_PATTERN = (
    r"\b(today|tonight|tomorrow|yesterday|now|right now|currently|current|latest|"
    r"at the moment|this (?:morning|afternoon|evening|week|month|year)|"
    r"recent|recently|breaking|live|so far)\b"
)


@dataclasses.dataclass(frozen=True)
class TTLDecision:
    """Whether to cache and for how long (``ttl`` in whole seconds, ``None``: forever)."""

    cache: bool
    ttl: int | None
    reason: str


@dataclasses.dataclass(frozen=True)
class TTLPolicy:
    """Maps a request to a time-to-live, or to no caching at all.

    Attributes:
        default_ttl: Seconds an entry lives (``None``: until cleared). Absolute: a hit
            does not extend it unless ``sliding`` is set.
        max_temperature: Requests sampled hotter than this are neither looked up nor
            stored: the caller asked for variety. ``None`` disables the rule.
        volatile_ttl: TTL for prompts that name the present ("today", "now", "latest");
            ``0`` means do not cache them. ``None`` disables the rule.
        volatile_pattern: The regular expression (case-insensitive) for such prompts.
        sliding: Refresh an entry's TTL on every hit (off by default).

    Example:
        >>> p = TTLPolicy(default_ttl=3600, max_temperature=0.7)
        >>> p.decide("hello", temperature=1.2).cache
        False
        >>> p.decide("hello", temperature=0.0, ttl=60).ttl
        60
    """

    default_ttl: float | None = 7 * 24 * 3600
    max_temperature: float | None = 1.0
    volatile_ttl: float | None = 300
    volatile_pattern: str = DEFAULT_VOLATILE_PATTERN
    sliding: bool = False

    def __post_init__(self) -> None:
        for name in ("default_ttl", "max_temperature", "volatile_ttl"):
            value = getattr(self, name)
            if value is None:
                continue
            if name == "max_temperature":  # inf: no bypass; nan: no comparison holds
                bad = not is_real(value) or is_nan(value) or value < 0
            else:
                bad = ttl_problem(value, zero=True) is not None
            if bad:
                limit = "" if name == "max_temperature" else f", at most {MAX_TTL:.0e} s,"
                raise ValueError(
                    f"TTLPolicy.{name} must be a number >= 0{limit} or None, got {value!r}"
                )
            object.__setattr__(self, name, as_number(value))  # numpy's: a plain number
        object.__setattr__(self, "_volatile", re.compile(self.volatile_pattern, re.I))

    def bypass(self, temperature: float | None) -> str | None:
        """The reason to skip the cache entirely for this request, or ``None``."""
        if (
            self.max_temperature is not None
            and temperature is not None
            and temperature > self.max_temperature
        ):
            return f"temperature {temperature:g} > max_temperature {self.max_temperature:g}"
        return None

    def decide(
        self, text: str, *, temperature: float | None = None, ttl: float | bool | None = True
    ) -> TTLDecision:
        """Decide for one write. ``ttl=True`` means "use the policy"; a number overrides it;
        ``None`` stores without expiry."""
        reason = self.bypass(temperature)
        if reason:
            return TTLDecision(False, None, reason)
        if ttl is not True:
            if ttl is None:
                return TTLDecision(True, None, "per-call ttl: none")
            if ttl_problem(ttl) is not None:
                raise ValueError(
                    f"ttl must be a positive number of seconds up to {MAX_TTL:.0e} or None, "
                    f"got {ttl!r}"
                )
            return TTLDecision(True, max(1, round(ttl)), "per-call ttl")
        pattern: re.Pattern[str] = object.__getattribute__(self, "_volatile")
        if self.volatile_ttl is not None and pattern.search(text):
            if self.volatile_ttl == 0:
                return TTLDecision(False, None, "time-sensitive prompt")
            return TTLDecision(True, max(1, round(self.volatile_ttl)), "time-sensitive prompt")
        if self.default_ttl is None:
            return TTLDecision(True, None, "default ttl: none")
        return TTLDecision(True, max(1, round(self.default_ttl)), "default ttl")


class Throttle:
    """At most one event of a kind every ``every`` seconds: which warnings of a lasting
    fault are logged as warnings (the rest at debug level). No lock (nothing to hold
    across a fork): two threads at the same moment may both be told "due", one more
    warning at worst.

    Example:
        >>> throttle = Throttle(every=10.0)
        >>> throttle.due("redis", now=0.0), throttle.due("redis", now=5.0)
        (True, False)
        >>> throttle.due("embedding", now=5.0), throttle.due("redis", now=10.0)
        (True, True)
    """

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def due(self, kind: str, now: float | None = None) -> bool:
        """Whether an event of ``kind`` is due now (and, if so, count it as the last)."""
        now = time.monotonic() if now is None else now
        if now - self._last.get(kind, -math.inf) < self.every:
            return False
        self._last[kind] = now
        return True


class CircuitBreaker:
    """Stops paying timeouts on every call while a dependency is down.

    Closed: calls go through. After ``failures`` consecutive failures it opens: calls are
    refused (a cache miss) for ``cooldown`` seconds. Then one trial call is let through
    (half-open); its success closes the breaker, its failure opens it again.

    Example:
        >>> t = [0.0]
        >>> b = CircuitBreaker(failures=2, cooldown=5, clock=lambda: t[0])
        >>> b.record_failure(); b.record_failure(); b.allow()
        False
        >>> t[0] = 6; b.allow(), b.allow()   # one trial call only
        (True, False)
        >>> b.record_success(); b.allow()
        True
    """

    def __init__(
        self,
        failures: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        if cooldown < 0:
            raise ValueError("cooldown must be >= 0")
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._opened_at: float | None = None
        self._trial = False
        self._trial_at = 0.0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial or self._clock() - self._opened_at >= self.cooldown:
                return "half-open"
            return "open"

    def allow(self) -> bool:
        """May a call go through now?"""
        with self._lock:
            if self._opened_at is None:
                return True
            now = self._clock()
            # A trial whose caller never reported back must not wedge the breaker.
            since = now - (self._trial_at if self._trial else self._opened_at)
            if since >= self.cooldown:
                self._trial = True
                self._trial_at = now
                return True
            return False

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._count = 0
            self._opened_at = None
            self._trial = False

    def record_failure(self) -> None:
        """A call failed: count it, and open (or re-open) the breaker."""
        with self._lock:
            self._count += 1
            if self._trial or self._count >= self.failures:
                self._opened_at = self._clock()
                self._trial = False


class HybridTuner:
    """Per scope, whether to ask RediSearch for filtered HNSW batches, learned from timings.

    A KNN query pre-filtered on a scope runs either as brute force over the scope's
    entries (``ADHOC_BF``) or as HNSW search in batches, filtered as it goes
    (``BATCHES``); RediSearch picks one with a built-in model. When one scope holds most
    of a small or mid-sized index (one model, one system prompt: a common case) it picks
    brute force, several times slower than batches (measured in ``benchmarks/RESULTS.md``,
    "Profile of the semantic layer"); for a scope that holds a small share, batches are
    far worse. So RediSearch chooses until a scope's searches are slow (moving average
    above ``slow`` seconds over at least ``min_samples``), which can only happen for a
    large scope; then batches are tried and, from then on, the faster of the two is
    used, the other measured again every ``recheck`` lookups of that scope.

    Batches are judged on the fastest of their samples: the machine can only slow a
    round trip down (a preempted thread, an embedder's threads on the server's core, a
    collector pause), never speed it up, so one slow sample must not pass for the
    policy's cost. Until batches have ``min_samples`` samples they are judged against
    RediSearch's moving average (as the decision to try them was); from then on, against
    the fastest of RediSearch's last ``min_samples``. Batches that lose are measured
    again after 2, 4, 8, ... lookups, at most ``recheck`` apart (a first sample slowed
    by chance would otherwise leave the scope on brute force until the next
    ``recheck``); batches that win are kept, RediSearch's choice measured again every
    ``recheck``.

    Example:
        >>> tuner = HybridTuner(slow=0.001, min_samples=2)
        >>> for _ in range(2):
        ...     tuner.record("s", tuner.choose("s"), 0.002)
        >>> tuner.choose("s")
        'BATCHES'
        >>> tuner.record("s", "BATCHES", 0.009)   # one slow first sample of batches
        >>> [tuner.choose("s") for _ in range(3)]  # brute force meanwhile, then batches again
        [None, None, 'BATCHES']
        >>> tuner.record("s", "BATCHES", 0.0003)
        >>> tuner.choose("s")
        'BATCHES'
    """

    _ALPHA = 0.2

    def __init__(
        self,
        slow: float = 0.0008,
        *,
        min_samples: int = 5,
        recheck: int = 1000,
        maxsize: int = 4096,
    ) -> None:
        self.slow = slow
        self.min_samples = min_samples
        self.recheck = recheck
        self.maxsize = maxsize
        self._stats: dict[str, _ScopeTimes] = {}
        self._lock = threading.Lock()

    def choose(self, scope: str) -> str | None:
        """``"BATCHES"`` or ``None`` (RediSearch chooses) for the next search in ``scope``."""
        with self._lock:
            st = self._stats.get(scope)
            if st is None:
                return None
            st.lookups += 1
            if st.auto_samples < self.min_samples or st.auto_average is None:
                return None
            if not st.batches:  # batches are tried once RediSearch's choice is slow
                return "BATCHES" if st.auto_average > self.slow else None
            # Both measured: the faster one, whatever ``slow`` says (a choice near it
            # must not flip back to the slower policy each time its average dips below).
            if len(st.batches) < self.min_samples:
                # Few batched samples yet: judged against RediSearch's average, as the
                # try was decided (its first searches' costs still weigh in it); then
                # fastest against fastest.
                faster = "BATCHES" if min(st.batches) < st.auto_average else None
            else:
                faster = "BATCHES" if min(st.batches) < min(st.auto) else None
            if faster is None:
                # Batches lost, perhaps on a sample slowed by chance: measured again after
                # 2, 4, 8, ... lookups, at most ``recheck`` apart.
                if st.retry_at == 0:
                    st.retry_gap = 2
                    st.retry_at = st.lookups + st.retry_gap
                elif st.lookups >= st.retry_at:
                    st.retry_gap = min(2 * st.retry_gap, self.recheck)
                    st.retry_at = st.lookups + st.retry_gap
                    return "BATCHES"
                return None
            st.retry_at = 0  # batches win: a later loss starts the schedule again
            if st.lookups % self.recheck == 0:  # measure the other one again
                return None
            return faster

    def record(self, scope: str, policy: str | None, seconds: float) -> None:
        """Account one search's round trip."""
        with self._lock:
            st = self._stats.get(scope)
            if st is None:
                if len(self._stats) >= self.maxsize:
                    self._stats.pop(next(iter(self._stats)))
                window = max(1, self.min_samples)
                st = self._stats[scope] = _ScopeTimes(
                    auto=collections.deque(maxlen=window),
                    batches=collections.deque(maxlen=window),
                )
            if policy:
                st.batches.append(seconds)
                return
            st.auto.append(seconds)
            old = st.auto_average
            st.auto_average = seconds if old is None else old + self._ALPHA * (seconds - old)
            st.auto_samples += 1


@dataclasses.dataclass
class _ScopeTimes:
    """One scope's search round trips, by policy (see :class:`HybridTuner`)."""

    #: RediSearch's own choice: the last round trips, their moving average, how many.
    auto: collections.deque[float]
    #: ``BATCHES``: the last round trips.
    batches: collections.deque[float]
    auto_average: float | None = None
    auto_samples: int = 0
    #: Searches chosen for in this scope.
    lookups: int = 0
    #: While batches lose: when to try them again (0: not set), and the gap that
    #: doubles each time.
    retry_at: int = 0
    retry_gap: int = 2
