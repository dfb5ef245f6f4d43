"""Replaying a cached answer as a stream: the chunks a streamed hit is made of.

A cached answer is one string; a streaming client expects pieces. :func:`replay_chunks`
cuts it into words, each with the whitespace that follows it, so the chunks concatenate
to the stored text exactly (nothing added, nothing normalised). Adapters yield them one
by one, optionally ``pace`` seconds apart (default: no pause, as fast as the consumer
reads).

Example:
    >>> replay_chunks("Refunds within  30 days.\\nThanks")
    ['Refunds ', 'within  ', '30 ', 'days.\\n', 'Thanks']
    >>> "".join(replay_chunks(" a b ")) == " a b "
    True
"""

from __future__ import annotations

import re

__all__ = ["check_pace", "replay_chunks"]

_PIECES = re.compile(r"\s*\S+\s*|\s+", re.DOTALL)


def replay_chunks(text: str) -> list[str]:
    """``text`` as word chunks (each word with the whitespace after it; leading
    whitespace goes with the first word) whose concatenation is ``text``; ``[""]`` for
    an empty text, so a replayed stream always has at least one chunk."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    first = _PIECES.match(text)
    if first is None:
        return [text]
    pieces = [first.group()]
    pieces.extend(m.group() for m in re.finditer(r"\S+\s*", text[first.end():]))
    return pieces


def check_pace(pace: float) -> float:
    """Validate a pacing interval (seconds between replayed chunks, >= 0).

    Example:
        >>> check_pace(0.02)
        0.02
    """
    if isinstance(pace, bool) or not isinstance(pace, (int, float)) or not 0 <= pace <= 10:
        raise ValueError(f"pace must be a number of seconds between 0 and 10, got {pace!r}")
    return float(pace)
