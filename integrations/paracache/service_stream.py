"""The service's streamed answers: ``POST /v1/answer`` with ``"stream": true``.

The answer comes as server-sent events (``text/event-stream``), for hits and misses
alike:

- ``event: meta`` first: what the lookup decided (``cached``, ``outcome``, ``layer``,
  ``similarity``, ``min_similarity``, ``lookup_ms``);
- ``event: delta`` with ``{"text": ...}`` for each piece: a cached answer replayed word by
  word (:mod:`paracache.replay`), a miss as the chat model streams it;
- ``event: done`` last, with the whole answer as the non-streamed response has it;
- or ``event: error`` with ``{"detail": ...}`` if the chat model failed (nothing stored).

A miss is stored only when the model's stream ended and the client was still reading; a
client that disconnects stores nothing. Identical concurrent misses make one model call
(:mod:`paracache.singleflight`); the others get its answer replayed.

Example:
    >>> sse("delta", {"text": "Hi "})
    b'event: delta\\ndata: {"text": "Hi "}\\n\\n'
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .index import SemanticIndex
from .replay import replay_chunks
from .scope import Scope
from .singleflight import SingleFlight
from .values import Verdict

__all__ = ["Piece", "answer_events", "sse"]

logger = logging.getLogger("paracache.service")

#: What a streaming model yields: a text piece, or (at the end) ``(full text, tokens)``.
Piece = str | tuple[str, int]


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event (a lone surrogate, which UTF-8 cannot encode, as a JSON
    ``\\udXXX`` escape: a model's answer may hold one, its pair split by a stream).

    Example:
        >>> sse("delta", {"text": "a \\ud83d b"})
        b'event: delta\\ndata: {"text": "a \\\\ud83d b"}\\n\\n'
    """
    try:
        text = json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        text = json.dumps(data).encode()
    return b"event: " + event.encode() + b"\ndata: " + text + b"\n\n"


async def answer_events(
    index: SemanticIndex,
    flights: SingleFlight,
    prompt: str,
    scope: Scope,
    threshold: float,
    model: Callable[[], AsyncIterator[Piece]],
    done: Callable[[Verdict, str, int, str | None, float], dict[str, Any]],
    *,
    learned: bool = False,
) -> AsyncIterator[bytes]:
    """The events of one streamed answer (see the module's docstring).

    ``model()`` starts the chat model's stream; ``done(verdict, answer, tokens,
    entry_id, t0)`` is the final (non-streamed) response body. ``learned``: ``threshold``
    is the error bound's (``max_error_rate``), only reported; the lookup takes the
    index's own, as a non-streamed request does (a learned threshold has no
    corroboration margin, a per-request one has).
    """
    t0 = time.perf_counter()
    per_request = None if learned else threshold
    verdict = await index.alookup_verdict(prompt, scope, min_similarity=per_request)
    hit = verdict.hit
    # A failed model or a client gone: nothing stored, nothing handed on.
    async with flights.aflight(prompt, scope, join=hit is None and verdict.missed) as claim:
        meta: dict[str, Any] = {
            "cached": hit is not None,
            "outcome": verdict.outcome,
            "layer": hit.layer if hit else None,
            "similarity": verdict.similarity,
            "min_similarity": threshold,
            "lookup_ms": round(verdict.latency_ms, 3),
        }
        if hit is not None or claim.payload is not None:
            text = hit.response if hit is not None else str(claim.payload)
            if hit is None:
                meta.update(cached=True, layer="in-flight")
            yield sse("meta", meta)
            for piece in replay_chunks(text):
                yield sse("delta", {"text": piece})
            tokens = hit.tokens if hit else 0
            final = done(verdict, text, tokens, hit.entry_id if hit else None, t0)
            if hit is None:  # as the meta event says
                final.update(cached=True, layer="in-flight")
            yield sse("done", final)
            return
        yield sse("meta", meta)
        parts: list[str] = []
        tokens = 0
        try:
            async for item in model():
                if isinstance(item, tuple):
                    tokens = item[1]
                    continue
                parts.append(item)
                yield sse("delta", {"text": item})
        except Exception as exc:
            logger.warning("paracache service: the chat model failed: %r", exc)
            yield sse("error", {"detail": f"the chat model failed: {type(exc).__name__}"})
            return
        payload = "".join(parts)
        claim.stored(payload)
        entry_id = await index.astore(
            prompt, payload, scope, tokens=tokens, metadata={"source": "service"}
        )
        yield sse("done", done(verdict, payload, tokens, entry_id, t0))
