"""Lookup flows: the exact layer, then the semantic layer, and which candidate is served.

:class:`Lookups` is the lookup half of :class:`paracache.core.Core`: the exact read (a
plain read; with ``hit_flush_hits=1`` or a sliding TTL one script that also counts the
hit), the scope-pre-filtered KNN search (one read-only script: query, read the
candidates; the guards' analysis of the query's own text runs while its reply is on the
wire), top-k re-ranking through the guards and corroboration, the served candidate's
hit counted in process and sent in batches (:mod:`paracache.bookkeeping`; per hit,
``COUNT`` as a :class:`~paracache.protocol.Post`, with ``hit_flush_hits=1``), and the
:class:`~paracache.values.Verdict`. With batched counts an exact hit is one plain
read of the entry (on a stock server not its companion too: its ``hit_count`` is the
entry's own plus this instance's hits on it). Failures become misses by their kind
(:class:`~paracache.errors.BackendError`); a bug of paracache's own is ``internal``.

Example (driving a flow by hand, as the tests do):
    >>> # flow = core.lookup_flow(core.prepare_lookup("hi", Scope()))
    >>> # op = next(flow)            # Call(("EVALSHA", <EXACT>, 1, "paracache:...:e:..."))
    >>> # op = flow.send([])         # nothing stored under the exact key -> Embed(...)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from .base import FlowBase
from .bookkeeping import companion_key, merged_fields
from .bound import entry_floor
from .errors import BackendError
from .protocol import (
    COUNT,
    EXACT,
    SEARCH,
    Call,
    Flow,
    Post,
    Ready,
    Receive,
    Send,
    _as_fields,
    _b,
    post_script,
    search_rows,
)
from .schema import SCHEMA_VERSION, entry_problem
from .values import (
    CacheHit,
    Candidate,
    LookupRequest,
    Outcome,
    Verdict,
    _last_verdict,
    _num,
    _text,
)

__all__ = ["Lookups", "parse_search"]

logger = logging.getLogger("paracache")

#: Seconds the semantic layer runs as two calls after the server refused its script
#: once (``BUSY``, an ACL); the pause doubles while refusals go on, up to
#: :data:`SCRIPT_RETRY_MAX`.
SCRIPT_RETRY_AFTER = 1.0
SCRIPT_RETRY_MAX = 300.0


@dataclasses.dataclass
class _Searched:
    """What the semantic layer's query found: candidates, most similar first."""

    candidates: list[Candidate]
    #: Count a hit on the winner (off when choosing without I/O).
    count_winner: bool = True
    #: The query's vector (for near-miss verification).
    vector: bytes = b""

    @classmethod
    def from_script(cls, raw: Any) -> _Searched:
        """Read the ``SEARCH`` script's reply (``bad_reply`` if it cannot be read)."""
        try:
            candidates = [
                Candidate(
                    key=_b(key).decode(),
                    similarity=1.0 - float(dist),
                    fields=_as_fields(fields) if fields else {},
                )
                for key, dist, fields in raw
            ]
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise BackendError("bad_reply", f"unreadable search reply: {exc!r}") from exc
        return cls(candidates)


def _distance_arg(distance: float) -> str:
    """A cosine distance for the search script, a hair wide so float text rounding can
    never drop a candidate exactly at the threshold (the core compares again)."""
    return repr(distance + 1e-9)


def parse_search(raw: Any) -> list[Candidate]:
    """The KNN candidates of an ``FT.SEARCH`` reply (similarity = 1 - cosine distance)."""
    return [
        Candidate(key=key, similarity=1.0 - float(fields.get(b"__dist", b"2")), fields=fields)
        for key, fields in search_rows(raw)[1]
    ]


class Lookups(FlowBase):
    """The lookup flows of one cache instance."""

    def lookup_flow(self, req: LookupRequest) -> Flow[Verdict]:
        """Exact layer, then semantic layer; any failure becomes a miss. Then, with hits
        counted in batches, this process's hits are sent if a batch is due (without
        waiting for the reply; see :mod:`paracache.bookkeeping`)."""
        verdict = yield from self._lookup_flow(req)
        if self.settings.batched_hits:
            batch = self.hits.due()
            if batch is not None:
                yield from self.flush_hits_flow(batch)
        return verdict

    def _lookup_flow(self, req: LookupRequest) -> Flow[Verdict]:
        """:meth:`lookup_flow`'s lookup: exact layer, then semantic layer."""
        t0 = time.perf_counter()
        if req.bypass:
            return self._verdict(req, t0, "bypass", req.bypass)
        if not self.breaker.allow():
            self.recorder.error("breaker_open")
            return self._verdict(req, t0, "error", "circuit breaker open")
        best: float | None = None
        try:
            yield from self._ensure_index()
            yield from self._ensure_hit_place()
            hit = None
            unreadable = req.unreadable
            model_text = ""
            if self.settings.exact:
                raw, model_text = yield from self._exact_read(req)
                hit = self._exact_hit(req, raw)
            if hit is None and req.semantic and unreadable is None:
                # What the model sees is worked out once (while the exact layer's reply
                # was on the wire), for the readability check and the embedding; the
                # check runs after the exact layer (exact hits skip it).
                model_text = model_text or self.embed_input(req.text)
                unreadable = self._unreadable_input(model_text)
            if hit is None and req.semantic and unreadable is None:
                vector = yield from self._embed(req.text, model_text)
                if vector is None:
                    self.breaker.record_success()
                    return self._verdict(req, t0, "error", "embedding failed")
                # The search is sent, the guards' analysis of the query runs while its
                # reply is on the wire, then the reply is read.
                found = yield from self._search(req, vector)
                found.vector = vector
                hit, best, reason = yield from self._choose_flow(req, found)
            elif hit is not None:
                reason = "exact match"
            elif unreadable is not None:
                self.breaker.record_success()
                return self._verdict(
                    req,
                    t0,
                    "unreadable",
                    f"no exact match; not matched by similarity: {unreadable}",
                )
            else:
                reason = (
                    "no exact match (semantic layer off)"
                    if self.settings.exact
                    else "both layers off"
                )
        except BackendError as exc:
            self._failure("lookup", exc)
            return self._verdict(req, t0, "error", f"redis: {exc.kind}")
        except Exception as exc:  # a bug of paracache's own, not a Redis failure
            self._internal("lookup", exc)
            return self._verdict(req, t0, "error", f"internal: {type(exc).__name__}")
        self.breaker.record_success()
        if hit is None:
            return self._verdict(req, t0, "miss", reason, best)
        # The exact layer counted its hit when it read the entry (EXACT, or in process
        # with batched counts); the semantic layer once its guards accepted the winner
        # (COUNT without waiting, or in process).
        return self._verdict(req, t0, hit.layer, reason, hit.similarity, hit)

    def _exact_read(self, req: LookupRequest) -> Flow[tuple[Any, str]]:
        """The hash at the exact key (with hits counted per hit, a hit counted in the
        same round trip, ``EXACT``; with hits counted in batches, the entry alone, not
        its companion: see :meth:`_exact_hit`), and what the model would embed for the
        prompt, worked out while the reply is on the wire (``""`` when the semantic
        layer is off for it, or when the reply came first: the caller works it out
        after a miss). An exact hit costs one command, one round trip.

        Only that step (pleasantries and typos) overlaps the round trip, and only when
        the reply has not arrived by the time the command is sent (:class:`Ready`):
        it was measured to delay exact hits whose reply was there already. The
        readability check, which tokenizes, would not overlap, and was measured to slow
        exact hits (benchmarks/RESULTS.md).
        """
        model_text = ""
        sent = yield Send(self._entry_read(req.key, req.scope_digest))
        try:
            # Worked out while waiting only: a reply already here may be a hit, which
            # needs no model input (a miss works it out after, as without the overlap).
            if req.semantic and req.unreadable is None and not (yield Ready(sent)):
                model_text = self.embed_input(req.text)
            raw = yield Receive(sent)
        except BackendError as exc:
            raw = yield from self._reread_entry(req.key, req.scope_digest, exc)
        return raw, model_text

    def _read_commands(
        self, key: str, scope_digest: str
    ) -> tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]:
        """The commands reading the semantic layer's winner without the search script
        (:meth:`_entry_read`), and with hits counted in batches, in companion hashes,
        its companion's counts (sent in the same write)."""
        first = self._entry_read(key, scope_digest)
        if self.settings.batched_hits and self._hits_mode() == "c":
            return first, (("HMGET", companion_key(key), "hit_count", "last_hit_at"),)
        return first, ()

    @staticmethod
    def _merge_read(raw: Any, more: tuple[tuple[Any, ...], ...]) -> Any:
        """An entry's fields from the replies of :meth:`_read_commands`."""
        if not more:
            return raw
        fields, counts = raw
        return merged_fields(_as_fields(fields), counts) if fields else fields

    def _read_entry(self, key: str, scope_digest: str) -> Flow[Any]:
        """An entry's hash, its hit counted in the same round trip if it belongs to
        ``scope_digest`` (and hits are tracked, and not in batches)."""
        first, more = self._read_commands(key, scope_digest)
        try:
            if more:
                return self._merge_read((yield Receive((yield Send(first, more)))), more)
            return (yield Call(first))
        except BackendError as exc:
            return (yield from self._reread_entry(key, scope_digest, exc))

    def _entry_read(self, key: str, scope_digest: str) -> tuple[Any, ...]:
        """The command of :meth:`_read_entry`: ``EXACT`` by its SHA, or a plain read
        without hit tracking or with hits counted in batches (in process)."""
        if not self.settings.track_hits or self.settings.batched_hits:
            return ("HGETALL", key)
        sliding = "1" if self.settings.policy.sliding else ""
        return ("EVALSHA", EXACT.sha, 1, key, scope_digest, time.time(), sliding,
                SCHEMA_VERSION, self._hits_mode())  # fmt: skip

    def _reread_entry(self, key: str, scope_digest: str, exc: BackendError) -> Flow[Any]:
        """:meth:`_read_entry` again after its command failed with ``exc``: ``EXACT``
        with its source on ``NOSCRIPT``; a plain read if the server refused the
        script's writes (out of memory, a read-only replica, an ACL), the companion's
        read (an ACL) or choked on a damaged entry; raised again if the server did not
        answer. A key that is not a hash is a damaged entry (a miss, counted as
        ``corrupt_entry``), not a failing Redis."""
        if not exc.answered:
            raise exc
        if not self.settings.track_hits:  # the read was a plain HGETALL already
            if exc.kind != "wrongtype":
                raise exc
            return self._not_a_hash(key)
        if exc.kind == "noscript" and not self.settings.batched_hits:
            args = self._entry_read(key, scope_digest)
            try:
                return (yield Call(("EVAL", EXACT.source, *args[2:])))
            except BackendError as again:
                if not again.answered:
                    raise
                exc = again
        logger.debug("paracache: reading an entry failed, reading it plainly: %r", exc)
        try:
            return (yield Call(("HGETALL", key)))
        except BackendError as again:
            if again.kind != "wrongtype":
                raise
        return self._not_a_hash(key)

    def _not_a_hash(self, key: str) -> dict[bytes, bytes]:
        """Another application's key at this entry's: a damaged entry, not a failing
        Redis (the breaker is left alone; the write of the next answer replaces it)."""
        self._corrupt(key, "not a hash")
        return {}

    #: What the KNN query returns per candidate: what choosing needs (the guards read
    #: ``prompt``, calibration ``response``). Each returned field costs RediSearch a
    #: read of the hash: 4 fields instead of 13 about halve the query (measured in
    #: benchmarks/RESULTS.md); the winner is read whole afterwards.
    _RETURN = ("scope", "prompt", "response", "__dist")

    def knn_args(
        self, req: LookupRequest, vector: bytes, policy: str | None = None
    ) -> tuple[Any, ...]:
        """The ``FT.SEARCH`` command: KNN pre-filtered on the exact scope digest
        (``policy``: a RediSearch ``HYBRID_POLICY``, or ``None`` to let it choose)."""
        k = self.settings.top_k
        hybrid = f" HYBRID_POLICY {policy}" if policy else ""
        query = f"(@scope:{{{req.scope_digest}}})=>[KNN {k} @embedding $vec{hybrid} AS __dist]"
        return (
            "FT.SEARCH",
            self.layout.index_name,
            query,
            "PARAMS",
            2,
            "vec",
            vector,
            "SORTBY",
            "__dist",
            "RETURN",
            len(self._RETURN),
            *self._RETURN,
            "LIMIT",
            0,
            k,
            "DIALECT",
            2,
        )

    def _hybrid_policy(self, scope_digest: str) -> str | None:
        mode = self.settings.knn_policy
        if mode == "adaptive":
            return self.tuner.choose(scope_digest)
        return None if mode == "auto" else mode.upper()

    def _search(self, req: LookupRequest, vector: bytes) -> Flow[_Searched]:
        """The KNN candidates in scope, most similar first (with their entries' fields
        where they are within ``min_similarity``), retrying once if the index vanished.
        The guards' analysis of the query runs once, while the reply is on the wire."""
        policy = self._hybrid_policy(req.scope_digest)
        started = time.perf_counter()
        # The index gone (FLUSHALL, a restarted server): built again, searched once more.
        found = yield from self._on_index(lambda: self._search_once(req, vector, policy))
        self.tuner.record(req.scope_digest, policy, time.perf_counter() - started)
        return found

    def _search_once(
        self, req: LookupRequest, vector: bytes, policy: str | None
    ) -> Flow[_Searched]:
        args = self.knn_args(req, vector, policy)
        if not self.scripted_search or time.monotonic() < self._script_paused_until:
            # A plain FT.SEARCH (on a cluster: sent to every shard and merged), waited for.
            found = _Searched(parse_search((yield Call(args))))
            self._prepare_query(req)
            return found
        tail = (0, self.layout.index_name, args[2], vector, self.settings.top_k,
                _distance_arg(1.0 - self._read_floor(req)))  # fmt: skip
        try:
            # The search script by its SHA: sent, the query prepared meanwhile, read; with
            # its source on NOSCRIPT.
            sent = yield Send(("EVALSHA", SEARCH.sha, *tail))
            self._prepare_query(req)
            try:
                raw = yield Receive(sent)
            except BackendError as exc:
                if exc.kind != "noscript":
                    raise
                raw = yield Call(("EVAL", SEARCH.source, *tail))
        except BackendError as exc:
            if exc.kind == "no_index" or not exc.answered:
                raise
            self._pause_script(exc)
            found = _Searched(parse_search((yield Call(args))))
            self._prepare_query(req)
            return found
        self._script_backoff = 0.0
        return _Searched.from_script(raw)

    def _prepare_query(self, req: LookupRequest) -> None:
        """The guards' analysis of the query's own text (the ``prepare`` hook; memoised
        per text, so the search's retry after a lost index finds it done); a hook that
        raises is logged and ignored (choosing runs the same analysis again, and counts
        its failure)."""
        if self.prepare is None:
            return
        try:
            self.prepare(req.prompt or req.text)
        except Exception as exc:
            logger.debug("paracache: preparing the query for the guards failed: %r", exc)

    def _pause_script(self, exc: BackendError) -> None:
        """The server would not run the search script (``BUSY`` with another client's
        script, an ACL, a proxy, a module that forbids it): query and read in two calls
        for a while, then try the script again; the pause doubles while it keeps being
        refused (from :data:`SCRIPT_RETRY_AFTER` up to :data:`SCRIPT_RETRY_MAX` seconds)."""
        backoff = min(SCRIPT_RETRY_MAX, max(SCRIPT_RETRY_AFTER, 2 * self._script_backoff))
        self._script_backoff = backoff
        self._script_paused_until = time.monotonic() + backoff
        self._warn_throttled(
            "search_script",
            "paracache: the semantic layer's script was refused (%r); two round trips per "
            "lookup for the next %g s",
            exc,
            backoff,
        )

    def _choose(
        self, req: LookupRequest, candidates: Sequence[Candidate]
    ) -> tuple[CacheHit | None, float | None, str]:
        """:meth:`_choose_flow` for candidates that carry all their fields (no I/O)."""
        flow = self._choose_flow(req, _Searched(list(candidates), count_winner=False))
        try:
            op = next(flow)
        except StopIteration as stop:
            return cast(tuple[CacheHit | None, float | None, str], stop.value)
        flow.close()
        raise ValueError(f"candidates without their entry's fields need I/O: {op!r}")

    def _choose_flow(
        self, req: LookupRequest, found: _Searched
    ) -> Flow[tuple[CacheHit | None, float | None, str]]:
        """The hit among the KNN candidates, and the best similarity and why.

        Top-k re-ranking: the most similar candidate that passes the guards wins. The
        search script read the candidates within the read floor whole; the winner's hit
        is counted once it is chosen (``COUNT``, sent without waiting for its reply), so
        a candidate a guard rejects is never counted. Without the script, the candidates
        carry only what choosing needs and the winner is read (and counted, ``EXACT``)
        afterwards.
        """
        candidates = found.candidates
        best = max((c.similarity for c in candidates), default=None)
        rejected: list[str] = []
        hit: CacheHit | None = None
        below = False
        floor = self._floor(req)
        learner = self.learner
        unserved: Candidate | None = None  # the nearest one not served, for a label
        explored = False
        for cand in sorted(candidates, key=lambda c: -c.similarity):
            if cand.similarity < floor:
                if learner is None or cand.similarity < learner.read_floor:
                    break
                if unserved is None and cand.fields and self._labellable(req, cand):
                    unserved = cand
                continue
            if b"scope" not in cand.fields:
                # The index has it, the shard could not read it: expired since the
                # search, or (on a cluster) its slot is being moved to another shard.
                continue
            if cand.fields.get(b"scope") != req.scope_digest.encode():
                self._corrupt(cand.key, "scope does not match the pre-filter")
                continue  # cannot happen with the pre-filter; never serve it if it does
            below = cand.similarity < req.min_similarity
            if below and not self._corroborated(req, cand):
                if learner is not None and unserved is None and self._labellable(req, cand):
                    unserved = cand
                continue  # below the threshold, and nothing vouches for it
            rejection = (
                self._check(req, cand)
                or self._contested(req, cand, candidates)
                or self._vetoed(cand)
            )
            self._tell_listeners(req, cand, rejection)
            if rejection:
                self.recorder.rejection(rejection)
                rejected.append(f"{cand.similarity:.3f} ({rejection})")
                if rejection == "neighbours":
                    break  # the nearest answers disagree: none of them is served
                continue
            if (
                learner is not None
                and unserved is None
                and learner.explore(cand.similarity, req.min_similarity)
            ):
                unserved, explored = cand, True  # a labelled miss instead of a hit
                break
            fields = cand.fields
            count = False
            if b"v" not in fields:  # a plain KNN row: read the entry (and count the hit)
                raw = yield from self._read_entry(cand.key, req.scope_digest)
                if not raw:
                    continue  # expired since the search
                fields = _as_fields(raw)
                if fields.get(b"scope") != req.scope_digest.encode():
                    self._corrupt(cand.key, "scope does not match the pre-filter")
                    continue
                count = self.settings.batched_hits  # else EXACT counted it
            elif found.count_winner and self.settings.track_hits:
                count = True
            hit = self._decode(cand.key, fields, "semantic", cand.similarity)
            if hit is not None:
                if count:
                    before = yield from self._count_hit(cand.key, req.scope_digest)
                    hit = _more_hits(hit, before)
                break
        if learner is not None:
            self._observe(req, hit, unserved, explored)
            if hit is None and not explored and unserved is not None:
                learner.offer(
                    req.key, req.scope_digest, req.prompt or req.text, unserved,
                    req.min_similarity, found.vector,
                )  # fmt: skip
        if explored and unserved is not None:
            return None, best, f"explored: {unserved.similarity:.3f} labelled, not served"
        if hit is not None:
            reason = f"similarity {hit.similarity:.3f} >= {req.min_similarity:.3f}"
            if below:
                reason = (
                    f"similarity {hit.similarity:.3f} >= {floor:.3f}, corroborated "
                    f"(a shared detail; threshold {req.min_similarity:.3f})"
                )
            if rejected:
                reason += f"; rejected before it: {', '.join(rejected)}"
            return hit, best, reason
        if best is None:
            return None, None, "no candidate in scope"
        if rejected:
            return None, best, f"rejected by guards: {', '.join(rejected)}"
        return None, best, f"best similarity {best:.3f} < {req.min_similarity:.3f}"

    def _count_hit(self, key: str, scope_digest: str) -> Flow[int]:
        """Count a hit on the entry the semantic layer serves (read by the search
        script, which counts nothing): in process with batched counts (returns this
        process's unsent hits on it before this one), else ``COUNT``, posted without
        waiting for its reply (:class:`~paracache.protocol.Post`; returns 0)."""
        if self.settings.batched_hits:
            return self.hits.add(key, scope_digest, time.time())
        op = post_script(
            COUNT,
            (key,),
            scope_digest,
            time.time(),
            "1" if self.settings.policy.sliding else "",
            SCHEMA_VERSION,
            self._hits_mode(),
        )
        if not self._count_loaded and op.fallback is not None:
            # The first time, with its source: a NOSCRIPT answer would be read (and the
            # count sent again) only with the next command, so a count could lag.
            op = Post(op.fallback)
            self._count_loaded = True
        try:
            yield op
        except BackendError as exc:  # bookkeeping: the answer is served regardless
            logger.debug("paracache: counting a hit failed: %r", exc)
        return 0

    # ------------------------------------------------------------------ the error bound

    def _observe(
        self,
        req: LookupRequest,
        hit: CacheHit | None,
        unserved: Candidate | None,
        explored: bool,
    ) -> None:
        """Tell the learner what this lookup found: the similarity of what it served or
        could have served, and the candidate it did not serve (for a label)."""
        similarity = hit.similarity if hit is not None else None
        if unserved is not None:
            similarity = unserved.similarity
        self.learner.observe(
            req.key, req.scope_digest, req.scope, similarity, unserved, explored
        )

    def _labellable(self, req: LookupRequest, cand: Candidate) -> bool:
        """May ``cand`` (below the floor) be labelled: in scope and past the guards."""
        return cand.fields.get(b"scope") == req.scope_digest.encode() and not self._check(
            req, cand
        )

    def _vetoed(self, cand: Candidate) -> str | None:
        """With the bound on: the candidate was judged wrong at this similarity or above
        (its ``lw`` label field), or that field is unreadable: do not serve it."""
        if self.learner is None:
            return None
        try:
            worst = entry_floor(cand.fields)
        except ValueError as exc:
            self.recorder.error("stats_corrupt")
            logger.warning("paracache: unreadable label field on %s: %s", cand.key, exc)
            return "labels_unreadable"
        if worst is not None and cand.similarity <= worst + 0.005:
            return "labelled_wrong"
        return None

    def _read_floor(self, req: LookupRequest) -> float:
        """The lowest similarity a candidate is read at: :meth:`_floor`, or lower with
        the bound on (the nearest unserved candidate is labelled)."""
        floor = self._floor(req)
        if self.learner is None:
            return floor
        return min(floor, float(self.learner.read_floor))

    def _floor(self, req: LookupRequest) -> float:
        """The lowest similarity a candidate may have: the threshold, or with a
        ``corroborate`` hook the threshold less ``corroboration_margin`` (never for a
        threshold of 1.0, which asks for the same meaning exactly, nor for a threshold
        the error bound learned)."""
        if (
            req.learned
            or self.corroborate is None
            or self.settings.corroboration_margin <= 0
            or req.min_similarity >= 1.0
        ):
            return req.min_similarity
        return req.min_similarity - self.settings.corroboration_margin

    def _corroborated(self, req: LookupRequest, cand: Candidate) -> bool:
        """The ``corroborate`` hook's verdict; a hook that raises does not vouch."""
        if self.corroborate is None:
            return False
        try:
            return bool(self.corroborate(req, cand))
        except Exception as exc:
            self.recorder.error("guard")
            logger.warning("paracache: corroborate hook raised: %r", exc)
            return False

    def _contested(
        self, req: LookupRequest, cand: Candidate, candidates: Sequence[Candidate]
    ) -> str | None:
        """The ``contest`` hook's verdict; a hook that raises does not serve."""
        if self.contest is None:
            return None
        try:
            return self.contest(req, cand, candidates)
        except Exception as exc:  # a guard must never break a lookup: do not serve
            self.recorder.error("guard")
            logger.warning("paracache: contest hook raised, not serving: %r", exc)
            return "guard_error"

    def _check(self, req: LookupRequest, cand: Candidate) -> str | None:
        """The ``accept`` hook's verdict on a candidate; a hook that raises rejects it."""
        if self.accept is None:
            return None
        try:
            return self.accept(req, cand)
        except Exception as exc:  # a guard must never break a lookup: do not serve
            self.recorder.error("guard")
            logger.warning("paracache: guard raised, not serving the candidate: %r", exc)
            return "guard_error"

    def _tell_listeners(self, req: LookupRequest, cand: Candidate, rejection: str | None) -> None:
        for listener in self.candidate_listeners:
            try:
                listener(req, cand, rejection)
            except Exception as exc:  # an observer must never break a lookup
                logger.warning("paracache: candidate listener raised: %r", exc)

    def _exact_hit(self, req: LookupRequest, raw: Any) -> CacheHit | None:
        if not raw:
            return None
        fields = _as_fields(raw)
        if fields.get(b"scope") != req.scope_digest.encode():
            # Something else lives at this entry's key (a foreign or damaged hash).
            self._corrupt(req.key, "scope does not match the key")
            return None
        hit = self._decode(req.key, fields, "exact", 1.0)
        if hit is not None and self.settings.batched_hits:  # else EXACT counted it
            if self._hits_mode() == "c":
                # Read without its companion: the hits this instance counted on it, sent
                # to the companion or not (other processes' are not in this read).
                before = self.hits.count(req.key, req.scope_digest, time.time())
            else:  # the entry holds every sent hit; this instance's unsent ones
                before = self.hits.add(req.key, req.scope_digest, time.time())
            hit = _more_hits(hit, before)
        return hit

    def _decode(
        self,
        key: str,
        fields: Mapping[bytes, bytes],
        layer: Literal["exact", "semantic"],
        similarity: float,
    ) -> CacheHit | None:
        """An entry as a hit; a corrupt or foreign one is counted and skipped.

        Both layers check the fields a hit is built from (and the exact layer, which
        read the whole hash, the vector's size); :meth:`SemanticIndex.repair` checks all.
        """
        try:
            problem = entry_problem(fields, full=False, vector_bytes=self.layout.vector_bytes)
            if problem is not None:
                self._corrupt(key, problem)
                return None
            return CacheHit(
                response=_text(fields, "response"),
                layer=layer,
                similarity=round(min(1.0, max(0.0, similarity)), 6),
                entry_id=key.rsplit(":", 1)[-1],
                prompt=_text(fields, "prompt"),
                metadata=json.loads(_text(fields, "metadata", "{}")),
                created_at=_num(fields, "created_at"),
                hit_count=int(_num(fields, "hit_count")),
                tokens=int(_num(fields, "tokens")),
                ttl=int(_num(fields, "ttl")) or None,
            )
        except Exception as exc:  # whatever is stored, reading it never raises
            self._corrupt(key, repr(exc))
            return None

    def _verdict(
        self,
        req: LookupRequest,
        t0: float,
        outcome: Outcome,
        reason: str,
        similarity: float | None = None,
        hit: CacheHit | None = None,
    ) -> Verdict:
        seconds = time.perf_counter() - t0
        self.recorder.lookup(outcome, seconds, hit.tokens if hit else 0, similarity)
        verdict = Verdict(
            outcome=outcome,
            reason=reason,
            scope_digest=req.scope_digest,
            latency_ms=seconds * 1000.0,
            similarity=None if similarity is None else round(similarity, 6),
            hit=hit,
            scope=req.scope,
        )
        _last_verdict.set(verdict)
        if self.on_verdict is not None:
            try:
                self.on_verdict(verdict)
            except Exception as exc:  # an observer must never break a lookup
                logger.warning("paracache: on_verdict callback raised: %r", exc)
        return verdict


def _more_hits(hit: CacheHit, unsent: int) -> CacheHit:
    """``hit`` with this process's ``unsent`` hits on its entry added to its count."""
    return hit if not unsent else dataclasses.replace(hit, hit_count=hit.hit_count + unsent)
