"""The ``paracache`` command.

One subcommand per job, each with its own options (``paracache COMMAND --help``). A new
subcommand is a function ``_add_NAME(subparsers)`` that builds its parser and sets
``handler`` to a function taking the parsed arguments and returning an exit code; heavy
imports happen inside the handler, so ``paracache --help`` stays fast and works without
optional extras.

Example:
    >>> from paracache.cli import main
    >>> main(["demo", "--questions", "20", "--latency-scale", "0"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _similarity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a cosine similarity in [0, 1], got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# --------------------------------------------------------------------------- demo


def _add_demo(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="answer real customer questions through a cached LangChain model",
        description=(
            "Stream Banking77 customer questions through a LangChain chat model with "
            "paracache's SemanticCache and report hits, latency, tokens and cost saved, "
            "and the hits that answered a different intent. Uses gpt-4o-mini if "
            "OPENAI_API_KEY is set (and langchain-openai is installed), else a simulated model."
        ),
    )
    parser.add_argument(
        "--questions", type=_positive_int, default=300, metavar="N",
        help="questions to ask (default: 300; about 10%% are asked twice)",
    )
    parser.add_argument(
        "--latency-scale", type=_non_negative, default=1.0, metavar="F",
        help="multiply the simulated model's latency (median 200 ms); 0 = no sleep (default: 1)",
    )
    parser.add_argument(
        "--min-similarity", type=_similarity, default=None, metavar="F",
        help="semantic threshold, cosine similarity in [0, 1] (default: the cache's, 0.90)",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the question stream (default: 7)"
    )
    parser.add_argument(
        "--redis-url", default=None, metavar="URL",
        help="Redis with the search module (default: $PARACACHE_REDIS_URL, $REDIS_URL, "
        "else an embedded server)",
    )
    parser.add_argument(
        "--namespace", default="demo", help="cache namespace, cleared first (default: demo)"
    )
    parser.add_argument(
        "--simulate", action="store_true",
        help="use the simulated model even if OPENAI_API_KEY is set",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from .demo import format_summary, run_demo
    except ImportError as exc:
        print(
            f"paracache demo needs LangChain ({exc}); install it with "
            "`pip install 'paracache[langchain]'`",
            file=sys.stderr,
        )
        return 1
    summary = run_demo(
        questions=args.questions,
        latency_scale=args.latency_scale,
        min_similarity=args.min_similarity,
        seed=args.seed,
        redis_url=args.redis_url,
        namespace=args.namespace,
        progress=not args.no_progress,
        simulate=True if args.simulate else None,
    )
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(format_summary(summary))
    return 0


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``paracache`` argument parser with all subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="paracache",
        description="paracache: a semantic cache for LLM apps on Redis vector search.",
    )
    parser.add_argument("--version", action="version", version=f"paracache {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``paracache`` command; returns the exit code.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        paracache 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `paracache demo --json | head`
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
