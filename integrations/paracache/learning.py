"""Learning from live traffic, off the request path: labels, their queue, the worker.

A :class:`Learner` is what ``SemanticIndex(max_error_rate=δ)`` attaches to its core.
On the request path it only touches memory:

- :meth:`Learner.threshold` gives a lookup its scope's threshold (learned by
  :func:`paracache.bound.learned_threshold` from statistics read in the background;
  the static rules while the scope is cold);
- :meth:`Learner.explore` turns a sampled share of would-be semantic hits into misses
  (:func:`paracache.bound.explore_rate`);
- :meth:`Learner.observe` counts the lookup (its candidate's similarity bin) and
  remembers the nearest candidate it did not serve, per process, bounded, keyed by
  the asking prompt's entry key;
- :meth:`Learner.on_store` pairs a fresh answer arriving for that key with the
  remembered candidate: a *label job*;
- :meth:`Learner.offer` queues a miss just below the threshold for the ``verifier``
  (near-miss verification): a *verify job*, which the worker promotes when approved
  (:data:`PROMOTE`).

Counts and label jobs go to an in-process outbox (bounded: when full, new items are
dropped and counted as ``learn_queue_full``) that a background thread sends to a Redis
stream, ``paracache:{namespace}:learn``, with ``XADD`` (``MAXLEN ~`` :data:`STREAM_MAX`).
A consumer group (:data:`GROUP`) reads it: by default a worker thread in the same
process (:class:`LabelWorker`), or ``paracache worker`` in other processes. The worker
runs the judge (:mod:`paracache.judge`, time-bounded) and applies the label with one
Lua script that acknowledges the message (``XACK``) and counts it *atomically*, so a
message is counted once: a worker killed before that leaves it pending, and another
worker claims it (``XAUTOCLAIM``) after :data:`CLAIM_IDLE_MS`.

**Where the statistics live.** Per scope, a hash ``{index}:q:{scope digest}`` (the scope
digest covers tenant, model, parameters and context, so tenants never share one),
expiring ``stats_ttl`` seconds after its last update (default: the entries' default
TTL). Per entry, the highest similarity at which it was judged wrong is a field of the
entry itself (``lw``), so it expires and is deleted with the entry.

Redis down or slow: what a send could not deliver is dropped and counted (``dropped``,
the error ``learn_queue``; ``learn_queue_full`` when the outbox is full); nothing is
kept for later, so an outage costs its labels, never a label counted twice. Lookups
keep the thresholds last read (cold scopes: the static rules). A statistics
record that cannot be read (corrupt, foreign, another version) gives its scope no
semantic hits until the worker replaces it (counted as ``stats_corrupt``).

Example:
    >>> from paracache import SemanticIndex
    >>> cache = SemanticIndex(namespace="faq", max_error_rate=0.02)   # doctest: +SKIP
    >>> cache.learner.wait_idle()          # tests: all queued labels counted  # doctest: +SKIP
    True
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from . import bound, forking
from .errors import describe
from .judge import (
    Judge,
    JudgeFailed,
    call_judge,
    check_judge,
    check_judge_timeout,
    check_not_a_class,
)
from .policy import Throttle
from .protocol import Script
from .reals import is_real
from .transport import translate

__all__ = [
    "GROUP",
    "LabelWorker",
    "Learner",
    "LearningStats",
    "learning_summary",
    "stream_key",
]

logger = logging.getLogger("paracache")

#: The consumer group that counts labels.
GROUP = "paracache-learners"
#: Approximate cap on the stream's length (older messages are trimmed beyond it).
STREAM_MAX = 100_000
#: Items the in-process outbox holds before dropping new ones.
OUTBOX_MAX = 10_000
#: Seconds ``close()`` waits for the last sends and the background threads in all
#: (a hung Redis: what is left is dropped and counted).
CLOSE_TIMEOUT = 2.0
#: Candidates remembered per process for a label when the fresh answer arrives.
PENDING_MAX = 10_000
#: Seconds a remembered candidate waits for its fresh answer.
PENDING_SECONDS = 600.0
#: Seconds between reads of a scope's statistics (per process).
REFRESH_SECONDS = 1.0
#: A scope not looked up for this long is no longer read every :data:`REFRESH_SECONDS`
#: (its decision stays, and its next lookup schedules a read again at once).
IDLE_SECONDS = 300.0
#: Decisions kept per process: past this, those of the scopes idle longest go (a scope
#: whose decision went starts again from its statistics in Redis on its next lookup).
MAX_SCOPES = 10_000
#: A pending message idle this long (its worker died) is claimed by another worker.
CLAIM_IDLE_MS = 30_000
#: Lookups of a scope after which its traffic counts are halved (so the shares the
#: bound weighs errors by are those of roughly the last one to two thousand lookups).
TRAFFIC_WINDOW = 2_000
#: Characters of each answer a label job carries to the judge.
MAX_ANSWER = 32_768
#: Seconds the background threads wait between passes when idle.
TICK = 0.05
#: How far above 1 a label's similarity may be and still be counted (as 1): float16
#: vectors put the same text a hair above 1 (1.00006 seen), and older applications
#: sent it so.
SIMILARITY_SLACK = 0.001

# Apply one label: acknowledge the message and count it in one step (a message counted
# twice is impossible; one acknowledged but not counted only if the record was
# unreadable, reported as -1). KEYS: stream, stats hash, entry key (or the stats key
# again when no entry is labelled). ARGV: group, message id, bin, wrong ('1'/'0'),
# explored ('1'/'0'), similarity, stats TTL (0: none).
_LABEL = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'hash' and kind ~= 'none' then return -1 end
local v = redis.call('HGET', KEYS[2], 'v')
if v and v ~= '1' then return -1 end
local ok = redis.pcall('HINCRBY', KEYS[2], 'n' .. ARGV[3], 1)
if type(ok) == 'table' and ok['err'] then return -1 end
redis.call('HSET', KEYS[2], 'v', '1')
if ARGV[4] == '1' then
  ok = redis.pcall('HINCRBY', KEYS[2], 'w' .. ARGV[3], 1)
  if type(ok) == 'table' and ok['err'] then return -1 end
end
if ARGV[5] == '1' then
  ok = redis.pcall('HINCRBY', KEYS[2], 'xn', 1)
  if type(ok) == 'table' and ok['err'] then return -1 end
  if ARGV[4] == '1' then
    ok = redis.pcall('HINCRBY', KEYS[2], 'xw', 1)
    if type(ok) == 'table' and ok['err'] then return -1 end
  end
end
local ttl = tonumber(ARGV[7])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
if ARGV[4] == '1' and KEYS[3] ~= KEYS[2] and redis.call('TYPE', KEYS[3])['ok'] == 'hash' then
  local lw = tonumber(redis.call('HGET', KEYS[3], 'lw') or '')
  if not lw or tonumber(ARGV[6]) > lw then redis.call('HSET', KEYS[3], 'lw', ARGV[6]) end
end
return 1
"""

# Apply one batch of traffic counts: KEYS stream, stats hash; ARGV group, message id,
# stats TTL, window, lookups, then bin/count pairs. Once the lookups counted pass the
# window, every traffic count is halved: the traffic shares follow recent lookups (a
# filling cache's candidates grow more similar over time), while labels, which say how
# often a candidate at a similarity is right, keep accumulating. Returns as _LABEL.
_TRAFFIC = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'hash' and kind ~= 'none' then return -1 end
local v = redis.call('HGET', KEYS[2], 'v')
if v and v ~= '1' then return -1 end
local ok = redis.pcall('HINCRBY', KEYS[2], 'N', tonumber(ARGV[5]))
if type(ok) == 'table' and ok['err'] then return -1 end
redis.call('HSET', KEYS[2], 'v', '1')
for i = 6, #ARGV, 2 do
  ok = redis.pcall('HINCRBY', KEYS[2], 't' .. ARGV[i], tonumber(ARGV[i + 1]))
  if type(ok) == 'table' and ok['err'] then return -1 end
end
if tonumber(redis.call('HGET', KEYS[2], 'N')) > tonumber(ARGV[4]) then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    local name = all[i]
    if name == 'N' or string.match(name, '^t%d+$') then
      local n = tonumber(all[i + 1])
      if not n then return -1 end
      redis.call('HSET', KEYS[2], name, math.floor(n / 2))
    end
  end
end
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
return 1
"""

# Promote a verified near miss: KEYS stream, candidate entry, the question's entry key;
# ARGV group, message id, question (the new entry's prompt), its vector, now. Acknowledges
# the message, then copies the candidate (answer, scope, tags, metadata) to the
# question's key with the question's prompt and vector, unless that key holds an entry
# already (the application stored the model's own answer first) or the candidate is
# gone: 1 promoted, 2 not needed, 3 candidate gone, 0 already acknowledged.
_PROMOTE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if redis.call('TYPE', KEYS[2])['ok'] ~= 'hash' then return 3 end
local all = redis.call('HGETALL', KEYS[2])
local skip = {prompt=1, embedding=1, created_at=1, hit_count=1, last_hit_at=1, lw=1}
local out = {}
for i = 1, #all, 2 do
  if not skip[all[i]] then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
redis.call('HSET', KEYS[3], 'prompt', ARGV[3], 'embedding', ARGV[4],
  'created_at', ARGV[5], 'promoted', KEYS[2], unpack(out))
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then redis.call('PEXPIRE', KEYS[3], pttl) end
return 1
"""

LABEL = Script(_LABEL)
TRAFFIC = Script(_TRAFFIC)
PROMOTE = Script(_PROMOTE)

#: A verifier: ``(question, cached question, cached answer) -> does the cached answer
#: answer the question?`` (e.g. a small LLM call).
Verifier = Callable[[str, str, str], bool]
#: How far below the threshold in effect near misses are verified, by default.
VERIFY_BAND = 0.05


@dataclasses.dataclass(frozen=True)
class LearningStats:
    """What this process's learner did, and its scopes' current decisions.

    ``labels``: labels counted by this process's worker (``wrong`` of them wrong);
    ``explorations``: would-be hits turned into misses here; ``labels_skipped``:
    lookups not labelled (sampled scope with a deterministic-only judge);
    ``verifications``: near misses queued for the verifier, ``promoted`` and
    ``verify_rejected`` of them (as this process's worker decided);
    ``dropped``: label jobs or counts lost (outbox full, Redis unreachable, a judge
    that failed, an unreadable record); ``thresholds``: scope digest -> threshold in
    effect (learned or static).
    """

    max_error_rate: float
    explore_rate: float
    labels: int = 0
    wrong: int = 0
    explorations: int = 0
    explored_labels: int = 0
    explored_wrong: int = 0
    labels_skipped: int = 0
    dropped: int = 0
    judge_failures: int = 0
    verifications: int = 0
    promoted: int = 0
    verify_rejected: int = 0
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def observed_error(self) -> tuple[float, float, float] | None:
        """Of the would-be hits explored and labelled here, the share judged wrong, with
        its 95 % Clopper-Pearson interval: ``(estimate, low, high)``; ``None`` before
        the first. (The share of *served* answers that are wrong, as far as exploration
        samples them.)"""
        if not self.explored_labels:
            return None
        low, high = bound.clopper_pearson(self.explored_wrong, self.explored_labels)
        return self.explored_wrong / self.explored_labels, low, high

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (with ``observed_error``)."""
        out = dataclasses.asdict(self)
        out["observed_error"] = self.observed_error
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    candidate_key: str
    similarity: float
    cached: str
    stats_key: str
    explored: bool
    at: float


_STATS_KEY = re.compile(r"^paracache:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:v\d+:[0-9a-f]+:q:[0-9a-f]+$")
_ENTRY_KEY = re.compile(r"^paracache:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:v\d+:[0-9a-f]+:e:[0-9a-z]+$")


def stream_key(namespace: str) -> str:
    """The label stream of a namespace.

    Example:
        >>> stream_key("faq")
        'paracache:faq:learn'
    """
    return f"paracache:{namespace}:learn"


class Learner:
    """The bound's in-process side for one cache: thresholds, exploration, label jobs.

    Built by :class:`paracache.SemanticIndex` from ``max_error_rate=`` and friends;
    see the module docs. ``client`` is a blocking Redis client for the background
    threads (never used on the request path).
    """

    def __init__(
        self,
        client: Any,
        *,
        namespace: str,
        index_name: str,
        delta: float,
        judge: Judge | None = None,
        explore_rate: float | None = None,
        judge_timeout: float = 10.0,
        stats_ttl: float | None = 7 * 24 * 3600,
        worker: bool = True,
        recorder: Any = None,
        seed: int | None = None,
        verifier: Verifier | None = None,
        verify_band: float = VERIFY_BAND,
    ) -> None:
        checked = bound.check_delta(delta)
        if verifier is not None and not callable(verifier):
            raise TypeError(
                f"verifier must be a callable (question, cached question, cached answer) "
                f"-> bool, got {verifier!r}"
            )
        if verifier is not None:
            check_not_a_class(verifier, "verifier")
        if not is_real(verify_band):
            raise TypeError(f"verify_band must be a number in (0, 0.3], got {verify_band!r}")
        if not 0.0 < verify_band <= 0.3:
            raise ValueError(f"verify_band must be in (0, 0.3], got {verify_band!r}")
        #: Near-miss verification (``None``: off) and its band below the threshold.
        self.verifier = verifier
        self.verify_band = float(verify_band)
        if checked is None:
            raise ValueError("a Learner needs max_error_rate")
        self.delta = checked
        if explore_rate is None:
            explore_rate = bound.explore_rate(checked)
        if not is_real(explore_rate):
            raise TypeError(f"explore_rate must be a number in [0, 0.5], got {explore_rate!r}")
        if not 0.0 <= explore_rate <= 0.5:
            raise ValueError(f"explore_rate must be in [0, 0.5], got {explore_rate!r}")
        judge_timeout = check_judge_timeout(judge_timeout)
        self.explore_rate = float(explore_rate)
        self.judge = check_judge(judge)
        self.judge_timeout = float(judge_timeout)
        self.stats_ttl = int(stats_ttl or 0)
        self.namespace = namespace
        self.index_name = index_name
        self.stream = stream_key(namespace)
        self._client = client
        self._recorder = recorder
        self._random = random.Random(seed)
        #: The lowest similarity a candidate is read and labelled at.
        self.read_floor = bound.LOWEST
        #: Turns a stored response into the text the judge compares (default: the
        #: response as stored; adapters that store serialised objects add their
        #: decoder with :meth:`add_answer_text`).
        self.answer_text: Callable[[str], str] = _identity
        self._decoders: list[Callable[[str], str]] = []
        self._lock = threading.Lock()
        # One refresh at a time: a read of the statistics is decided before the next
        # read starts, so an older read can never overwrite a newer decision.
        self._refresh_lock = threading.Lock()
        self._decisions: dict[str, bound.Decision] = {}
        self._seen: dict[str, float] = {}  # stats key -> when its record was last read
        self._used: dict[str, float] = {}  # stats key -> when a lookup last asked for it
        self._pending: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self._offered: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._outbox: collections.deque[dict[str, Any]] = collections.deque()
        self._traffic: dict[str, collections.Counter[str]] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._warnings = Throttle()  # which errors are logged as warnings
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Set by :meth:`close` once it stopped waiting: nothing is sent any more.
        self._closed = False
        self._threads = [
            threading.Thread(target=self._io_loop, name="paracache-learn", daemon=True)
        ]
        self.worker: LabelWorker | None = None
        if worker:
            self.worker = LabelWorker(
                client, namespace, self.judge, judge_timeout=self.judge_timeout,
                stats_ttl=self.stats_ttl, on_label=self._count_label, verifier=verifier,
                answer_text=lambda text: self.answer_text(text),
            )  # fmt: skip
            self._threads.append(
                threading.Thread(target=self._work_loop, name="paracache-label", daemon=True)
            )
        #: Set in a forked child (:meth:`_forked`): start this process's threads on
        #: its first lookup.
        self._revive = False
        for thread in self._threads:
            thread.start()
        forking.track(self)

    def _forked(self) -> None:
        """In a forked child: the parent's threads do not exist here and its locks may
        have been held at the fork. Fresh locks; what the parent queued is the parent's
        to send; the child's own threads start on its first lookup (none if the
        learner was closed)."""
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._outbox.clear()
        self._traffic = {}
        self._pending.clear()
        self._offered.clear()
        if self.worker is not None:
            self.worker._forked()
        self._revive = not self._stop.is_set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        if not self._revive:
            self._stop.set()

    def _start_threads(self) -> None:
        """This process's background threads (in a forked child, on its first lookup)."""
        with self._lock:
            if not self._revive:
                return
            self._revive = False
            self._threads = [
                threading.Thread(target=self._io_loop, name="paracache-learn", daemon=True)
            ]
            if self.worker is not None:
                self._threads.append(
                    threading.Thread(target=self._work_loop, name="paracache-label", daemon=True)
                )
        for thread in self._threads:
            thread.start()

    def add_answer_text(self, decode: Callable[[str], str]) -> None:
        """Add an adapter's decoder of its stored responses (``decode(payload) -> text``,
        the payload itself when it is not that adapter's). Adapters sharing one index
        each add theirs: a response is judged as the text of the first decoder that
        recognises it (returns something else), or as stored.

        Example:
            >>> # cache.learner.add_answer_text(paracache.langchain.generations_text)
        """
        with self._lock:
            if decode not in self._decoders:
                self._decoders.append(decode)
            decoders = tuple(self._decoders)

        def answer_text(payload: str) -> str:
            for each in decoders:
                text = each(payload)
                if text != payload:
                    return text
            return payload

        self.answer_text = answer_text

    # ------------------------------------------------------------------ request path

    def stats_key(self, scope_digest: str) -> str:
        """The statistics hash of a scope."""
        return f"{self.index_name}:q:{scope_digest}"

    def threshold(self, scope_digest: str, scope: Any, static: float) -> tuple[float, bool]:
        """``(threshold, learned)`` for a lookup under ``scope`` whose static threshold
        is ``static``. Memory only; schedules the scope's statistics to be read."""
        if self._revive:
            self._start_threads()
        key = self.stats_key(scope_digest)
        self._used[key] = time.monotonic()
        if key not in self._seen:
            with self._lock:
                self._seen.setdefault(key, 0.0)
            self._wake.set()
        decision = self._decisions.get(key)
        if decision is None or not decision.learned or not self._labels_apply(scope):
            return static, False
        return decision.threshold, True

    def _labels_apply(self, scope: Any) -> bool:
        """Whether lookups of ``scope`` are labelled (see :mod:`paracache.judge`)."""
        if not getattr(self.judge, "deterministic_only", False):
            return True
        temperature = getattr(scope, "temperature", None)
        return temperature is None or temperature <= 0

    def seed_exploration(self, seed: int | None) -> None:
        """Seed the exploration sampler (benchmarks and tests: a reproducible run;
        ``None``: random again). Production leaves it random: a fixed seed makes which
        would-be hits are explored predictable.

        Example:
            >>> # cache.learner.seed_exploration(7)   # benchmarks/online.py --learn-seed
        """
        with self._lock:
            self._random = random.Random(seed)

    def explore(self, similarity: float, threshold: float) -> bool:
        """Turn this would-be semantic hit at ``similarity`` into a labelled miss?
        Sampled at ``explore_rate``, or at :data:`paracache.bound.NEAR_RATE` within
        :data:`paracache.bound.NEAR_BAND` above the threshold (if ``explore_rate`` is
        not 0)."""
        rate = self.explore_rate
        if rate and similarity < threshold + bound.NEAR_BAND:
            rate = max(rate, bound.NEAR_RATE)
        if rate and self._random.random() < rate:
            with self._lock:
                self._counts["explorations"] += 1
            if self._recorder is not None:
                self._recorder.learning("exploration")
            return True
        return False

    def observe(
        self,
        key: str,
        scope_digest: str,
        scope: Any,
        similarity: float | None,
        candidate: Any = None,
        explored: bool = False,
    ) -> None:
        """Count a lookup (``similarity``: its served or nearest eligible candidate's)
        and remember ``candidate`` (not served) for a label, under the asking prompt's
        entry ``key``."""
        stats_key = self.stats_key(scope_digest)
        labelled = self._labels_apply(scope)
        if not labelled:
            with self._lock:
                self._counts["labels_skipped"] += candidate is not None
            return
        with self._lock:
            counter = self._traffic.setdefault(stats_key, collections.Counter())
            counter["N"] += 1
            if similarity is not None:
                counter[str(bound.bin_of(similarity))] += 1
            if candidate is None:
                return
            raw = candidate.fields.get(b"response", b"")
            self._pending[key] = _Pending(
                candidate_key=candidate.key,
                # float16 vectors can put the same text at 1.00001: a label is in [0, 1].
                similarity=min(1.0, max(0.0, float(candidate.similarity))),
                cached=raw.decode("utf-8", "replace"),
                stats_key=stats_key,
                explored=explored,
                at=time.monotonic(),
            )
            self._pending.move_to_end(key)
            while len(self._pending) > PENDING_MAX:
                self._pending.popitem(last=False)

    def on_store(self, key: str, response: str) -> None:
        """A fresh answer for the prompt at entry ``key``: queue its label, if a
        candidate was remembered for it."""
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None or time.monotonic() - pending.at > PENDING_SECONDS:
            return
        try:
            cached = self.answer_text(pending.cached)
            fresh = self.answer_text(response)
        except Exception as exc:  # an unreadable answer cannot be judged: no label
            self._drop("answer_text", exc)
            return
        self._enqueue(
            {
                "kind": "label",
                "sk": pending.stats_key,
                "ek": pending.candidate_key,
                "sim": repr(round(pending.similarity, 6)),
                "x": "1" if pending.explored else "0",
                "cached": cached[:MAX_ANSWER],
                "fresh": fresh[:MAX_ANSWER],
            }
        )

    def offer(
        self,
        key: str,
        scope_digest: str,
        question: str,
        candidate: Any,
        threshold: float,
        vector: bytes,
    ) -> bool:
        """A miss whose nearest eligible candidate lies within :attr:`verify_band`
        below ``threshold``: queue it for the verifier (near-miss verification), which
        promotes it off the request path when it approves (the question, stored under
        its entry ``key`` with the candidate's answer, is served next time). Memory
        only; ``False`` when not queued."""
        if self.verifier is None or not vector or candidate is None:
            return False
        if not threshold - self.verify_band <= candidate.similarity < threshold:
            return False
        pair = (key, candidate.key)
        with self._lock:
            if pair in self._offered:  # verified recently: not again
                return False
            self._offered[pair] = None
            while len(self._offered) > PENDING_MAX:
                self._offered.popitem(last=False)
            self._counts["verifications"] += 1
        fields = candidate.fields
        if self._recorder is not None:
            self._recorder.learning("verification")
        self._enqueue(
            {
                "kind": "verify",
                "sk": self.stats_key(scope_digest),
                "ek": candidate.key,
                "pk": key,
                "q": question[:MAX_ANSWER],
                "cq": fields.get(b"prompt", b"").decode("utf-8", "replace")[:MAX_ANSWER],
                "ca": fields.get(b"response", b"").decode("utf-8", "replace")[:MAX_ANSWER],
                "vec": vector.hex(),
            }
        )
        return True

    def _enqueue(self, item: dict[str, Any]) -> None:
        if self._revive:
            self._start_threads()
        with self._lock:
            if len(self._outbox) >= OUTBOX_MAX:
                self._counts["dropped"] += 1
                full = True
            else:
                self._outbox.append(item)
                full = False
        if full:
            self._error("learn_queue_full")
        self._wake.set()

    # ------------------------------------------------------------------ background

    def _io_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            try:
                self.flush()
                self.refresh()
            except Exception as exc:  # never let the thread die
                logger.debug("paracache: learner pass failed: %r", exc)

    def _work_loop(self) -> None:
        assert self.worker is not None
        while not self._stop.is_set():
            try:
                if not self.worker.run_once(block_ms=int(TICK * 1000)):
                    self._stop.wait(TICK)
            except redis.ResponseError as exc:
                # Redis answered with a refusal (an ACL without scripting or streams, out
                # of memory): it lasts, and no label is counted meanwhile. Said (a warning
                # every 10 s) and counted as ``label_worker``, not only at debug level.
                self._error("label_worker", exc)
                self._stop.wait(0.5)
            except redis.RedisError as exc:
                logger.debug("paracache: label worker pass failed: %r", exc)
                self._stop.wait(0.5)
            except Exception as exc:
                logger.warning("paracache: label worker failed: %r", exc)
                self._stop.wait(0.5)

    def flush(self) -> int:
        """Send the outbox and the traffic counts to the stream (one pipelined round
        trip); returns how many messages went. Items Redis did not take are dropped
        and counted (so is what is queued once :meth:`close` gave up on Redis)."""
        with self._lock:
            items = list(self._outbox)
            self._outbox.clear()
            traffic, self._traffic = self._traffic, {}
            if self._closed:  # after close(): nothing reconnects to send it
                self._counts["dropped"] += len(items) + len(traffic)
                return 0
        for stats_key, counter in traffic.items():
            bins = ",".join(f"{b}:{c}" for b, c in counter.items() if b != "N")
            items.append({"kind": "traffic", "sk": stats_key, "N": str(counter["N"]), "bins": bins})
        if not items:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            pipe.xadd(self.stream, item, maxlen=STREAM_MAX, approximate=True)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._error("learn_queue", exc)  # first: whoever sees "dropped" sees the error
            with self._lock:
                self._counts["dropped"] += len(items)
            return 0
        return len(items)

    def refresh(self, force: bool = False) -> None:
        """Read the statistics of the scopes this process looked up (each at most every
        :data:`REFRESH_SECONDS`) and decide their thresholds.

        Refreshes run one at a time (the background thread's and a forced one), so a
        forced refresh decides from a read made after it was called: a read the
        background thread started earlier cannot land after it and undo it.
        """
        with self._refresh_lock:
            now = time.monotonic()
            with self._lock:
                self._forget_idle(now)
                due = [k for k, at in self._seen.items() if force or now - at >= REFRESH_SECONDS]
                for k in due:
                    self._seen[k] = now
            if not due:
                return
            pipe = self._client.pipeline(transaction=False)
            for k in due:
                pipe.hgetall(k)
            try:
                records = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:  # keep the decisions we have
                logger.debug("paracache: reading learned statistics failed: %r", exc)
                return
            for k, record in zip(due, records, strict=True):
                self._decide(k, record)

    def _forget_idle(self, now: float) -> None:
        """Stop reading the scopes no lookup asked for in :data:`IDLE_SECONDS` (each was
        read every second for the life of the process: 3,000 scopes looked up once made
        3,000 reads a second), and keep at most :data:`MAX_SCOPES` decisions. Under
        ``_lock``."""
        # A copy: lookups write ``_used`` without the lock. One marked used meanwhile and
        # dropped here is read again at its next lookup.
        for key, at in list(self._used.items()):
            if now - at > IDLE_SECONDS:
                self._seen.pop(key, None)
                self._used.pop(key, None)
        excess = len(self._decisions) - MAX_SCOPES
        if excess > 0:
            idle = [k for k in self._decisions if k not in self._seen][:excess]
            for key in idle:
                del self._decisions[key]

    def _decide(self, stats_key: str, record: Any) -> None:
        try:
            if isinstance(record, Exception):
                if _kind(record) == "wrongtype":
                    raise ValueError("statistics key is not a hash")
                return  # a failure, not a bad record: keep what we have
            stats = bound.ScopeStats.from_record(_as_bytes_map(record))
            before = self._decisions.get(stats_key)
            # Hysteresis from the start: a scope's first learned threshold is lowered
            # from 1.0 on the stricter bound too (a scope just past its first labels is
            # the likeliest to have seen a lucky few).
            decision = bound.learned_threshold(
                stats, self.delta, static=1.0,
                previous=before.threshold if before is not None and before.learned else 1.0,
            )  # fmt: skip
        except (ValueError, ArithmeticError) as exc:  # counts no arithmetic can use
            self._decisions[stats_key] = bound.NO_SEMANTIC
            self._error("stats_corrupt", exc)
            return
        self._decisions[stats_key] = decision

    def _count_label(self, wrong: bool | None, kind: str, explored: bool = False) -> None:
        if kind in ("promoted", "verify_rejected", "verify_unneeded"):
            with self._lock:
                self._counts[kind] += 1
            if self._recorder is not None:
                self._recorder.learning(kind)
            return
        with self._lock:
            if wrong is None:
                self._counts["dropped"] += 1
                if kind.startswith("judge"):
                    self._counts["judge_failures"] += 1
            else:
                self._counts["labels"] += 1
                self._counts["wrong"] += wrong
                if explored:
                    self._counts["explored_labels"] += 1
                    self._counts["explored_wrong"] += wrong
        if wrong is None:
            self._error(kind)
        elif self._recorder is not None:
            self._recorder.learning("label_wrong" if wrong else "label_right")
            if explored:
                self._recorder.learning("explored_wrong" if wrong else "explored_right")

    def _drop(self, kind: str, exc: BaseException) -> None:
        with self._lock:
            self._counts["dropped"] += 1
        self._error(kind, exc)

    def _error(self, kind: str, exc: BaseException | None = None) -> None:
        """Count an error of ``kind``; with ``exc``, log it: a warning at most every
        10 s per kind (:class:`paracache.policy.Throttle`; a full or failing Redis
        refuses every send, 20 a second under traffic), the rest at debug level."""
        if self._recorder is not None:
            self._recorder.error(kind)
        if exc is None:
            return
        if self._warnings.due(kind):
            logger.warning("paracache: learning: %s: %s", kind, describe(exc))
        else:
            logger.debug("paracache: learning: %s: %s", kind, describe(exc))

    # ------------------------------------------------------------------ control

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until everything queued so far is sent and counted by the consumer
        group (this process's worker or another), then re-read the thresholds (for
        tests, benchmarks and shutdown). ``False`` if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush()
            # The group first, then the worker: a message it acknowledged before the
            # group was read has been reported once the worker is no longer busy.
            if self.worker is None or (self._group_done() and not self.worker.busy):
                self.refresh(force=True)
                return True
            time.sleep(0.01)
        return False

    def _group_done(self) -> bool:
        """Nothing in the stream that the consumer group has not counted."""
        with self._lock:
            if self._outbox or self._traffic:
                return False
        try:
            groups = self._client.xinfo_groups(self.stream)
        except redis.ResponseError:
            return True  # no stream yet: nothing was sent
        for group in groups:
            info = {_s(k): v for k, v in group.items()}
            if _s(info.get("name", "")) == GROUP:
                return int(info.get("pending") or 0) == 0 and int(info.get("lag") or 0) == 0
        return False

    def stats(self) -> LearningStats:
        """This process's learning counters and its scopes' thresholds in effect."""
        with self._lock:
            counts = dict(self._counts)
        thresholds = {
            k.rsplit(":", 1)[-1]: d.threshold for k, d in self._decisions.items() if d.learned
        }
        return LearningStats(
            max_error_rate=self.delta,
            explore_rate=self.explore_rate,
            labels=counts.get("labels", 0),
            wrong=counts.get("wrong", 0),
            explorations=counts.get("explorations", 0),
            explored_labels=counts.get("explored_labels", 0),
            explored_wrong=counts.get("explored_wrong", 0),
            labels_skipped=counts.get("labels_skipped", 0),
            dropped=counts.get("dropped", 0),
            judge_failures=counts.get("judge_failures", 0),
            verifications=counts.get("verifications", 0),
            promoted=counts.get("promoted", 0),
            verify_rejected=counts.get("verify_rejected", 0),
            thresholds=thresholds,
        )

    def observed_error(self) -> tuple[float, float, float] | None:
        """The observed error of this index's explored would-be hits, from the statistics
        every process shares in Redis: ``(estimate, low, high)`` (95 % Clopper-Pearson),
        ``None`` before the first explored label. The same in every process (unlike
        ``stats()``, this process's own counts). One read of the namespace's scope
        registry and one pipelined read of its scopes' statistics (blocking; raises
        ``redis.RedisError``). A record that cannot be read is left out.

        Example:
            >>> cache.learner.observed_error()  # doctest: +SKIP
            (0.05, 0.0061, 0.169)
        """
        digests = self._client.hkeys(f"paracache:{self.namespace}:scopes")
        if not digests:
            return None
        pipe = self._client.pipeline(transaction=False)
        for raw in digests:
            pipe.hgetall(self.stats_key(_s(raw)))
        n = wrong = 0
        for record in pipe.execute(raise_on_error=False):
            if isinstance(record, Exception):
                continue
            try:
                explored = bound.ScopeStats.from_record(_as_bytes_map(record)).explored
            except (ValueError, ArithmeticError):
                continue
            n += explored[0]
            wrong += explored[1]
        if not n:
            return None
        return (wrong / n, *bound.clopper_pearson(wrong, n))

    def forget(self) -> None:
        """Drop remembered candidates and decisions (after the namespace was cleared)."""
        with self._lock:
            self._pending.clear()
            self._offered.clear()
            self._decisions.clear()
            self._seen = dict.fromkeys(self._seen, 0.0)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Send what is queued and stop the background threads, waiting at most
        ``timeout`` seconds in all (a hung Redis, a label being judged). What is still
        queued then is dropped and counted (``stats().dropped``); a label being judged
        stays pending in the stream, for a worker to claim. ``False`` if a thread was
        still busy (it stops once its call returns: the cache closes its connections,
        which ends a call waiting on Redis at once)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        # The last send on a thread of its own: a hung Redis holds it, not the caller.
        last = threading.Thread(target=self._last_flush, name="paracache-learn", daemon=True)
        last.start()
        for thread in [*self._threads, last]:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            left = len(self._outbox) + len(self._traffic)
            self._outbox.clear()
            self._traffic = {}
            self._counts["dropped"] += left
        busy = [t.name for t in (*self._threads, last) if t.is_alive()]
        if left or busy:
            self._error(
                "learn_queue",
                TimeoutError(
                    f"closing after {timeout:g} s: {left} queued label job(s) or count(s) "
                    f"dropped; still waiting on Redis or a judge: {', '.join(busy) or 'none'}"
                ),
            )
        return not busy

    def _last_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            logger.debug("paracache: final learner flush failed: %r", exc)


class LabelWorker:
    """Consumes a namespace's label stream in the consumer group :data:`GROUP`: judges
    each label job and counts it (``XACK`` and count in one script).

    Used by a :class:`Learner` in-process, and by ``paracache worker`` on its own.

    Example:
        >>> # worker = LabelWorker(redis.Redis(...), "faq", ExactJudge())
        >>> # while True: worker.run_once()
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        judge: Judge | None = None,
        *,
        judge_timeout: float = 10.0,
        stats_ttl: int = 7 * 24 * 3600,
        consumer: str | None = None,
        on_label: Callable[[bool | None, str, bool], None] | None = None,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        verifier: Verifier | None = None,
        answer_text: Callable[[str], str] | None = None,
    ) -> None:
        self.client = client
        #: Near-miss verifier (``None``: verification jobs are acknowledged unverified,
        #: counted ``verify_skipped``).
        self.verifier = verifier
        self.answer_text = answer_text or _identity
        self.claim_idle_ms = int(claim_idle_ms)
        self.namespace = namespace
        self.stream = stream_key(namespace)
        self.judge = check_judge(judge)
        self.judge_timeout = check_judge_timeout(judge_timeout)
        self.stats_ttl = int(stats_ttl)
        self.consumer = consumer or f"{_host()}-{id(self):x}"
        self._named_by_us = not consumer
        self.on_label = on_label
        self._prefix = f"paracache:{namespace}:"
        self._group_ready = False
        self._claim_at = 0.0
        self._handling = 0  # batches read and not yet all reported (see `busy`)
        self._handling_lock = threading.Lock()

    def _forked(self) -> None:
        """In a forked child (see :meth:`Learner._forked`): a fresh lock, and a consumer
        name of this process's own (the parent's may still read the stream)."""
        self._handling_lock = threading.Lock()
        self._handling = 0
        if self._named_by_us:
            self.consumer = f"{_host()}-{id(self):x}"

    @property
    def busy(self) -> bool:
        """Handling messages it has read: a message is acknowledged before its outcome
        reaches ``on_label``, so an empty consumer group alone does not mean every
        outcome has been counted.

        Example:
            >>> # worker.busy  -> False once run_once has returned
        """
        return self._handling > 0

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def run_once(self, count: int = 64, block_ms: int = 50) -> int:
        """Read and handle up to ``count`` messages (claiming ones a dead worker left
        pending first); returns how many were handled."""
        self._ensure_group()
        messages: list[tuple[Any, Any]] = []
        now = time.monotonic()
        if now >= self._claim_at:
            self._claim_at = now + self.claim_idle_ms / 2000.0
            try:
                claimed = self.client.xautoclaim(
                    self.stream, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=count
                )
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # cleared, or a restarted Redis without its data
                    self._group_ready = False
                    return 0
                raise
            messages.extend(claimed[1] if len(claimed) > 1 else [])
        if not messages:
            try:
                reply = self.client.xreadgroup(
                    GROUP, self.consumer, {self.stream: ">"}, count=count, block=block_ms or None
                )
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the namespace was cleared: the group went too
                    self._group_ready = False
                    return 0
                raise
            for _stream, rows in reply or []:
                messages.extend(rows)
        with self._handling_lock:
            self._handling += 1
        try:
            for message_id, fields in messages:
                self.handle(message_id, fields)
        finally:
            with self._handling_lock:
                self._handling -= 1
        return len(messages)

    def handle(self, message_id: Any, fields: Mapping[Any, Any]) -> None:
        """Judge and count one message (malformed ones are acknowledged and dropped)."""
        data = {_s(k): _s(v) for k, v in (fields or {}).items()}
        kind = data.get("kind")
        stats_key = data.get("sk", "")
        if not _STATS_KEY.match(stats_key) or not stats_key.startswith(self._prefix):
            self._ack(message_id)
            self._report(None, "learn_message")
            return
        if kind == "traffic":
            self._traffic(message_id, stats_key, data)
        elif kind == "label":
            self._label(message_id, stats_key, data)
        elif kind == "verify":
            self._verify(message_id, data)
        else:
            self._ack(message_id)
            self._report(None, "learn_message")

    def _traffic(self, message_id: Any, stats_key: str, data: dict[str, str]) -> None:
        try:
            lookups = int(data.get("N", ""))
            pairs: list[int] = []
            for part in filter(None, data.get("bins", "").split(",")):
                b, c = part.split(":")
                if not 0 <= int(b) < bound.BINS or int(c) < 0:
                    raise ValueError(part)
                pairs += [int(b), int(c)]
            if lookups < 0 or sum(pairs[1::2]) > lookups:
                raise ValueError("more lookups with a candidate than lookups")
        except ValueError:
            self._ack(message_id)
            self._report(None, "learn_message")
            return
        done = self._script(
            TRAFFIC, (self.stream, stats_key), GROUP, message_id, self.stats_ttl,
            TRAFFIC_WINDOW, lookups, *pairs,
        )  # fmt: skip
        if done == -1:
            self._corrupt(stats_key)

    def _label(self, message_id: Any, stats_key: str, data: dict[str, str]) -> None:
        entry_key = data.get("ek", "")
        try:
            similarity = float(data.get("sim", ""))
            # Applications before the clamp in `observe` sent float16's 1.00001 as it was.
            if not 0.0 <= similarity <= 1.0 + SIMILARITY_SLACK:
                raise ValueError(similarity)
            similarity = min(similarity, 1.0)
        except ValueError:
            self._ack(message_id)
            self._report(None, "learn_message")
            return
        if not (_ENTRY_KEY.match(entry_key) and entry_key.startswith(self._prefix)):
            entry_key = stats_key
        try:
            right = call_judge(
                self.judge, data.get("cached", ""), data.get("fresh", ""), self.judge_timeout
            )
        except JudgeFailed as exc:
            logger.warning("paracache: judge failed, label dropped: %s", exc)
            self._ack(message_id)
            self._report(None, exc.kind)
            return
        done = self._script(
            LABEL,
            (self.stream, stats_key, entry_key),
            GROUP,
            message_id,
            bound.bin_of(similarity),
            "0" if right else "1",
            "1" if data.get("x") == "1" else "0",
            repr(similarity),
            self.stats_ttl,
        )
        if done == 1:
            self._report(not right, "label", data.get("x") == "1")
        elif done == -1:
            self._corrupt(stats_key)

    def _verify(self, message_id: Any, data: dict[str, str]) -> None:
        """A near miss: ask the verifier; approved, promote it (:data:`PROMOTE`)."""
        entry_key, new_key = data.get("ek", ""), data.get("pk", "")
        try:
            vector = bytes.fromhex(data.get("vec", ""))
        except ValueError:
            vector = b""
        if not (
            vector
            and _ENTRY_KEY.match(entry_key) and entry_key.startswith(self._prefix)
            and _ENTRY_KEY.match(new_key) and new_key.startswith(self._prefix)
            and entry_key.rsplit(":e:", 1)[0] == new_key.rsplit(":e:", 1)[0]
        ):  # fmt: skip
            self._ack(message_id)
            self._report(None, "learn_message")
            return
        verifier = self.verifier
        if verifier is None:
            self._ack(message_id)
            self._report(None, "verify_skipped")
            return
        question = data.get("q", "")
        try:
            answer = self.answer_text(data.get("ca", ""))
            approved = call_judge(
                lambda cached_q, cached_a: verifier(question, cached_q, cached_a),
                data.get("cq", ""), answer, self.judge_timeout,
            )  # fmt: skip
        except JudgeFailed as exc:
            logger.warning("paracache: verifier failed, near miss not promoted: %s", exc)
            self._ack(message_id)
            self._report(None, exc.kind)
            return
        except Exception as exc:  # an unreadable stored answer: nothing to verify
            logger.warning("paracache: near miss not verifiable: %r", exc)
            self._ack(message_id)
            self._report(None, "learn_message")
            return
        if not approved:
            self._ack(message_id)
            self._report(False, "verify_rejected")
            return
        done = self._script(
            PROMOTE, (self.stream, entry_key, new_key), GROUP, message_id,
            question, vector, int(time.time()),
        )  # fmt: skip
        if done == 1:
            self._report(False, "promoted")
        elif done in (2, 3):
            self._report(False, "verify_unneeded")

    def _script(self, script: Script, keys: tuple[str, ...], *args: Any) -> Any:
        try:
            return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self.client.eval(script.source, len(keys), *keys, *args)

    def _corrupt(self, stats_key: str) -> None:
        """An unreadable statistics record: replace it (its scope starts cold again)."""
        logger.warning(
            "paracache: unreadable learning statistics at %s: deleted, the scope starts over",
            stats_key,
        )
        self.client.delete(stats_key)
        self._report(None, "stats_corrupt")

    def _ack(self, message_id: Any) -> None:
        self.client.xack(self.stream, GROUP, message_id)

    def _report(self, wrong: bool | None, kind: str, explored: bool = False) -> None:
        if self.on_label is not None:
            self.on_label(wrong, kind, explored)


def learning_summary(client: Any, namespace: str) -> dict[str, Any] | None:
    """What the error bound recorded for a namespace, summed over its scopes (for
    ``paracache stats``): scopes, lookups counted, labels, wrong labels, explored labels
    and wrong ones with the observed error of explored would-be hits (95 %
    Clopper-Pearson), unreadable records, and the label queue (length, pending, lag;
    ``unreadable`` when its key holds something else than a stream).
    ``None`` if the namespace has no learning data.

    Example:
        >>> # learning_summary(redis.Redis(...), "faq")["observed_error"]  -> (0.01, 0.002, 0.03)
    """
    out: dict[str, Any] = {
        "scopes": 0, "lookups": 0, "labels": 0, "wrong": 0, "explored_labels": 0,
        "explored_wrong": 0, "unreadable": 0,
    }  # fmt: skip
    for key in client.scan_iter(match=f"paracache:{namespace}:v*:*:q:*", count=1000):
        name = _s(key)
        if not _STATS_KEY.match(name):
            continue
        try:
            stats = bound.ScopeStats.from_record(_as_bytes_map(client.hgetall(name)))
        except (ValueError, redis.ResponseError):
            out["unreadable"] += 1
            continue
        out["scopes"] += 1
        out["lookups"] += stats.lookups
        out["labels"] += stats.label_count
        out["wrong"] += stats.wrong_count
        out["explored_labels"] += stats.explored[0]
        out["explored_wrong"] += stats.explored[1]
    stream = stream_key(namespace)
    queue: dict[str, Any] = {"length": 0}
    try:
        queue["length"] = int(client.xlen(stream) or 0)
        for group in client.xinfo_groups(stream):
            info = {_s(k): v for k, v in group.items()}
            if _s(info.get("name", "")) == GROUP:
                queue["pending"] = int(info.get("pending") or 0)
                queue["lag"] = int(info.get("lag") or 0)
    except redis.ResponseError as exc:  # no stream, or not a stream
        if _kind(exc) == "wrongtype":
            queue = {"length": 0, "unreadable": True}
    out["queue"] = queue
    if not (out["scopes"] or out["unreadable"] or queue["length"] or "unreadable" in queue):
        return None
    n, wrong = out["explored_labels"], out["explored_wrong"]
    out["observed_error"] = (
        (wrong / n, *bound.clopper_pearson(wrong, n)) if n else None
    )
    return out


def _kind(exc: BaseException) -> str | None:
    """The failure kind of a Redis error (:func:`paracache.transport.translate`)."""
    return getattr(translate(exc), "kind", None)


def _identity(text: str) -> str:
    return text


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)




def _as_bytes_map(record: Any) -> dict[bytes, bytes]:
    if not isinstance(record, Mapping):
        raise ValueError(f"statistics record is a {type(record).__name__}")
    return {
        (k if isinstance(k, bytes) else str(k).encode()): (
            v if isinstance(v, bytes) else str(v).encode()
        )
        for k, v in record.items()
    }


def _host() -> str:
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"
