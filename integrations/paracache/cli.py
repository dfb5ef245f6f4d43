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
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
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


def _error_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _namespace(text: str) -> str:
    from .schema import check_namespace

    try:
        return check_namespace(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("namespace ")) from None


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
        "--questions",
        type=_positive_int,
        default=300,
        metavar="N",
        help="questions to ask (default: 300; about 10%% are asked twice)",
    )
    parser.add_argument(
        "--latency-scale",
        type=_non_negative,
        default=1.0,
        metavar="F",
        help="multiply the simulated model's latency (median 200 ms); 0 = no sleep (default: 1)",
    )
    parser.add_argument(
        "--min-similarity",
        type=_similarity,
        default=None,
        metavar="F",
        help="semantic threshold, cosine similarity in [0, 1] (default: the cache's, 0.90)",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the question stream (default: 7)"
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis with the search module (default: $PARACACHE_REDIS_URL, $REDIS_URL, "
        "else an embedded server)",
    )
    parser.add_argument(
        "--namespace",
        default="demo",
        type=_namespace,
        help="cache namespace, cleared first (default: demo)",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
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
        print(_json_text(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


# --------------------------------------------------------------------------- calibrate


def _add_calibrate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="measure precision/recall on labelled data and recommend min_similarity",
        description=(
            "Run labelled questions through a real cache (embedder, Redis, guards) in a "
            "temporary namespace and report hit rate, precision, recall and false hits "
            "over a sweep of min_similarity, with and without guards; recommend the "
            "loosest threshold that meets the target precision. DATA is JSON Lines: pairs "
            '{"q1", "q2", "same"} or intent clusters {"text", "intent"}.'
        ),
    )
    parser.add_argument("data", metavar="DATA", help="labelled JSONL file")
    parser.add_argument(
        "--kind",
        choices=("pairs", "clusters"),
        default=None,
        help="kind of data (default: guessed from the first row)",
    )
    parser.add_argument(
        "--target-precision",
        type=_similarity,
        default=0.95,
        metavar="P",
        help="precision of hits the recommendation must reach (default: 0.95)",
    )
    parser.add_argument(
        "--seed", type=int, default=77, help="seed of the split and sample (default: 77)"
    )
    parser.add_argument(
        "--fill-share",
        type=_similarity,
        default=0.5,
        metavar="F",
        help="share of clusters rows stored; the rest are asked (default: 0.5)",
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="use a seeded sample of N rows (a quick run)",
    )
    parser.add_argument(
        "--top-k",
        type=_positive_int,
        default=4,
        metavar="K",
        help="candidates the semantic layer considers (default: 4)",
    )
    parser.add_argument(
        "--no-guards", action="store_true", help="sweep and recommend without guards"
    )
    parser.add_argument(
        "--write-config",
        metavar="PATH",
        default=None,
        help="write the recommendation to a TOML (or .json; not YAML) file for "
        "SemanticIndex.from_config(PATH); an existing file is updated",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the config even when the report warns that the data is too small "
        "or has no question that must not match",
    )
    parser.add_argument(
        "--for",
        dest="scope",
        metavar="FIELD=VALUE",
        default=None,
        help="write the threshold for one scope instead, e.g. tenant=medical",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        default=None,
        help="draw precision/recall curves to a PNG (needs paracache[plot])",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis with the search module (default: $PARACACHE_REDIS_URL, $REDIS_URL, "
        "else an embedded server)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate
    from .guards import Guards

    scope_field = scope_value = None
    if args.scope is not None:
        scope_field, sep, scope_value = args.scope.partition("=")
        if not sep or not scope_field or not scope_value:
            print(f"--for needs FIELD=VALUE, got {args.scope!r}", file=sys.stderr)
            return 2
    if args.write_config:  # before the sweep, not after it
        from .config import check_config_path

        try:
            check_config_path(args.write_config)
        except ValueError as exc:
            print(f"paracache calibrate: --write-config {exc}", file=sys.stderr)
            return 2
    try:
        report = calibrate(
            args.data,
            kind=args.kind,
            redis_url=args.redis_url,
            guards=Guards.off() if args.no_guards else Guards(),
            target_precision=args.target_precision,
            seed=args.seed,
            fill_share=args.fill_share,
            limit=args.limit,
            top_k=args.top_k,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as exc:
        print(f"paracache calibrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    status = 0
    if args.write_config:
        if report.recommended is None:
            print("no threshold reaches the target precision: config not written", file=sys.stderr)
            status = 1
        elif report.warnings and not args.force:
            print(
                "config not written: the recommendation rests on too little evidence "
                "(the warnings above); --force writes it anyway",
                file=sys.stderr,
            )
            status = 1
        else:
            path = report.write_config(
                args.write_config,
                scope_field=scope_field,
                scope_value=scope_value,
                force=args.force,
            )
            where = f" for {scope_field}={scope_value}" if scope_field else ""
            print(
                f"wrote min_similarity {report.recommended:.2f}{where} to {path}",
                file=sys.stderr if args.json else sys.stdout,
            )
    if args.plot:
        try:
            report.plot(args.plot)
        except ImportError:
            print(
                "no plot: matplotlib is not installed (pip install 'paracache[plot]')",
                file=sys.stderr,
            )
        else:
            print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return status


# --------------------------------------------------------------------------- shared


class CommandError(Exception):
    """A command failed in a way the user can fix: printed, then exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _add_common(parser: argparse.ArgumentParser, *, namespace_help: str) -> None:
    """``--redis-url``, ``--namespace`` and ``--json``, the options every admin command has."""
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis with the search module (default: $PARACACHE_REDIS_URL, else $REDIS_URL)",
    )
    parser.add_argument(
        "--namespace", default=None, type=_namespace, metavar="NS", help=namespace_help
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


@dataclasses.dataclass(frozen=True)
class _Connection:
    client: Any
    url: str  # without its password, for messages


def _connect(args: argparse.Namespace) -> _Connection:
    """A blocking Redis client for an admin command; :class:`CommandError` if unusable."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from .transport import safe_url as _safe_url
    from .transport import selected_db, translate

    url = args.redis_url or os.environ.get("PARACACHE_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        raise CommandError(
            "no Redis to talk to: pass --redis-url or set PARACACHE_REDIS_URL (an embedded "
            "server lives only inside the process that started it)",
            2,
        )
    client: Any
    try:
        client = redis.Redis.from_url(
            url,
            protocol=2,
            socket_timeout=10,
            socket_connect_timeout=3,
            retry=Retry(NoBackoff(), 0),
            client_name="paracache-cli",
        )
    except ValueError as exc:
        raise CommandError(f"not a Redis URL: {exc}", 2) from None
    db = selected_db(client)
    if db != 0:  # see paracache.transport.selected_db: no FT.* from there
        client.close()
        raise CommandError(
            f"{_safe_url(url)} selects database {db}, and RediSearch indexes "
            "database 0 only: drop the /N from the URL",
            2,
        )
    from .cluster import ClusterTransport, is_cluster_url

    if is_cluster_url(url, 3):  # any node of a Redis Cluster: talk to all of them
        from redis.cluster import RedisCluster

        client.close()
        client = RedisCluster.from_url(
            url, protocol=2, socket_timeout=10, socket_connect_timeout=3,
            retry=Retry(NoBackoff(), 0), client_name="paracache-cli",
            require_full_coverage=False,
        )
    try:
        if isinstance(client, redis.cluster.RedisCluster):
            ClusterTransport(client).execute(("FT._LIST",))
        else:
            client.execute_command("FT._LIST")
    except redis.ResponseError as exc:
        if getattr(translate(exc), "kind", None) == "unknown_command":
            raise CommandError(
                f"the Redis at {_safe_url(url)} has no search module (FT.* commands)"
            ) from None
        raise CommandError(f"Redis at {_safe_url(url)} refused: {exc}") from None
    except redis.RedisError as exc:
        raise CommandError(f"cannot reach Redis at {_safe_url(url)}: {exc}") from None
    return _Connection(client, _safe_url(url))


def _json_text(data: Any, **options: Any) -> str:
    """``json.dumps(data, ensure_ascii=False, **options)`` with what a terminal would obey
    escaped (C1 controls such as ``\\x9b``, a CSI; bidi overrides; line separators):
    readable text stays as it is, and the JSON reads back the same."""
    text = json.dumps(data, ensure_ascii=False, **options)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else json.dumps(c)[1:-1] for c in text)


def _printable(text: str, width: int | None = None) -> str:
    """One line of text safe to print to a terminal (no control characters), clipped."""
    text = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({_ago(max(0.0, now - ts))} ago)"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"~{n / 1024 / 1024:,.1f} MiB (estimate)"


# --------------------------------------------------------------------------- stats


def _add_stats(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="what Redis holds per namespace: entries, hits, age, memory",
        description=(
            "Report what Redis knows about paracache namespaces: entries, the hits recorded "
            "on them, oldest and newest entry, memory (estimated), largest tenants and models. "
            "Hit rates and latencies are counted inside each application process: see its "
            "SemanticIndex.stats() or the service's /v1/stats and /metrics."
        ),
    )
    _add_common(parser, namespace_help="only this namespace (default: all)")
    parser.set_defaults(handler=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    import time

    from . import admin
    from .learning import learning_summary
    from .schema import other_layouts

    conn = _connect(args)
    names = admin.run(conn.client, admin.indexes_flow(args.namespace))
    paged = not hasattr(conn.client, "nodes_manager")  # a cluster: no cursors across shards
    summaries = [
        admin.run(conn.client, admin.index_summary_flow(name, paged=paged)) for name in names
    ]
    namespaces: dict[str, list[Any]] = {}
    for s in summaries:
        namespaces.setdefault(s.namespace, []).append(s)
    if args.json:
        print(
            _json_text(
                {
                    "redis_url": conn.url,
                    "namespaces": [
                        {
                            "namespace": ns,
                            "entries": sum(s.entries for s in group),
                            "hits": sum(s.hits for s in group),
                            "indexes": [s.as_dict() for s in group],
                            "learning": learning_summary(conn.client, ns),
                        }
                        for ns, group in namespaces.items()
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"Redis {conn.url}")
    if not summaries:
        which = f"namespace {args.namespace!r}" if args.namespace else "any namespace"
        print(f"  no paracache index for {which}")
        return 0
    now = time.time()
    for ns, group in namespaces.items():
        entries = sum(s.entries for s in group)
        hits = sum(s.hits for s in group)
        print(f"\nnamespace {ns}: {entries:,} entries, {hits:,} hits served from them")
        for s in group:
            other = other_layouts(ns, [s.index])
            print(f"  index {s.index}" + (
                f"  (another stored layout: this version does not serve its entries; "
                f"paracache repair --namespace {ns} deletes them)" if other else ""))
            print(f"    entries   {s.entries:,}")
            print(f"    hits      {s.hits:,} (sum of the entries' hit counts)")
            print(f"    tokens    {s.tokens:,} (LLM tokens the entries stand for)")
            print(f"    oldest    {_when(s.oldest, now)}")
            print(f"    newest    {_when(s.newest, now)}")
            print(f"    memory    {_mib(s.memory_bytes)}")
            for label, key, rows in (
                ("tenants", "tenant", s.by_tenant),
                ("models", "model", s.by_model),
            ):
                if rows:
                    shown = ", ".join(
                        f"{_printable(r[key] or '(none)', 24)} {r['entries']:,}"
                        f" (hits {r['hits']:,})"
                        for r in rows[:5]
                    )
                    more = f", +{len(rows) - 5} more" if len(rows) > 5 else ""
                    print(f"    {label:<9} {shown}{more}")
        _print_learning(conn.client, ns)
    print(
        "\nHit rates and latencies live in each application process "
        "(SemanticIndex.stats(), the service's /v1/stats and /metrics)."
    )
    return 0


def _print_learning(client: Any, namespace: str) -> None:
    """The error bound's statistics of a namespace (``max_error_rate``), if any."""
    from .learning import learning_summary

    s = learning_summary(client, namespace)
    if s is None:
        return
    print(f"  error bound (max_error_rate): {s['scopes']:,} scopes learning, "
          f"{s['lookups']:,} lookups counted (recent window)")
    print(f"    labels    {s['labels']:,} ({s['wrong']:,} wrong)")
    observed = s["observed_error"]
    shown = "-" if observed is None else (
        f"{observed[0]:.2%} (95% CI {observed[1]:.2%}-{observed[2]:.2%})"
    )
    print(f"    explored  {s['explored_labels']:,} labelled would-be hits, "
          f"{s['explored_wrong']:,} wrong: observed error {shown}")
    q = s["queue"]
    if q.get("unreadable"):
        print("    queue     unreadable: its key holds something else than a stream "
              "(labels are dropped until it is deleted)")
    else:
        print(f"    queue     {q['length']:,} messages, {q.get('pending', 0):,} pending, "
              f"lag {q.get('lag', 0):,}")
    if s["unreadable"]:
        print(f"    unreadable statistics records: {s['unreadable']:,}")


# --------------------------------------------------------------------------- worker


def _add_worker(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="count the error bound's labels (max_error_rate) in a separate process",
        description=(
            "Consume a namespace's label stream in its consumer group: judge each label job "
            "and count it in Redis (acknowledged and counted in one step; jobs a dead worker "
            "left pending are claimed after 30 s). It keeps running while Redis restarts or "
            "fails over, and prints what it counted when stopped (SIGINT, SIGTERM). Run any "
            "number of them; give the "
            "applications label_worker=False. The judge: exact (equal after normalisation, "
            "the default), embedding (answers' cosine similarity, offline model) or your "
            "own callable as module:callable. With --verifier, near misses the "
            "applications queued (their verifier=) are verified here and promoted when "
            "approved; without it they are acknowledged unverified (verify_skipped)."
        ),
    )
    _add_common(parser, namespace_help="the namespace whose labels to count (required)")
    parser.add_argument(
        "--judge", default="exact", metavar="JUDGE",
        help="exact (default), embedding, or module:callable, a (cached answer, fresh "
        "answer) -> bool imported from the worker's Python path (e.g. an LLM judge)",
    )
    parser.add_argument(
        "--judge-similarity", type=_similarity, default=0.9, metavar="S",
        help="embedding judge: answers at least this similar are the same (default 0.9)",
    )
    parser.add_argument(
        "--verifier", default=None, metavar="VERIFIER",
        help="near-miss verification: module:callable, a (question, cached question, "
        "cached answer) -> bool imported from the worker's Python path (e.g. a small LLM "
        "call), or embedding: the two questions' cosine similarity under the offline "
        "model at least --verifier-similarity (only worth it with a stricter S than the "
        "cache's threshold or another model; see docs)",
    )
    parser.add_argument(
        "--verifier-similarity", type=_similarity, default=0.95, metavar="S",
        help="--verifier embedding: questions at least this similar are the same "
        "(default 0.95)",
    )
    parser.add_argument(
        "--judge-timeout", type=_non_negative, default=10.0, metavar="SECONDS",
        help="seconds a judge call may take before its label is dropped (default 10)",
    )
    parser.add_argument(
        "--stats-ttl", type=_positive_int, default=7 * 24 * 3600, metavar="SECONDS",
        help="statistics expire this long after their last update (default: 7 days)",
    )
    parser.add_argument(
        "--once", action="store_true", help="handle what is queued now, then exit"
    )
    parser.set_defaults(handler=_run_worker)


def _import_callable(spec: str, option: str) -> Any:
    """The callable named ``module:attribute`` (``attribute`` may be dotted), imported
    from the Python path; a clear :class:`CommandError` if it is not there or not
    callable."""
    import importlib

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CommandError(f"{option} {spec!r}: expected module:callable", 2)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"{option} {spec!r}: cannot import {module_name!r}: {exc}", 2) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise CommandError(f"{option} {spec!r}: {module_name!r} has no {attribute!r}", 2)
        target = getattr(target, part)
    if not callable(target):
        raise CommandError(f"{option} {spec!r}: {attribute!r} is not callable", 2)
    if isinstance(target, type):  # calling it would build an object, not say yes or no
        raise CommandError(
            f"{option} {spec!r}: {attribute!r} is a class; name a function or an instance "
            "(e.g. a module-level judge = MyJudge())",
            2,
        )
    return target


def _worker_judge(args: argparse.Namespace) -> Any:
    from .judge import EmbeddingJudge, ExactJudge

    if args.judge == "exact":
        return ExactJudge()
    if args.judge == "embedding":
        return EmbeddingJudge(min_similarity=args.judge_similarity)
    if ":" not in args.judge:
        raise CommandError(
            f"--judge {args.judge!r}: expected exact, embedding or module:callable", 2
        )
    return _import_callable(args.judge, "--judge")


def _worker_verifier(args: argparse.Namespace) -> Any:
    from .judge import QuestionVerifier

    if args.verifier is None:
        return None
    if args.verifier == "embedding":
        return QuestionVerifier(min_similarity=args.verifier_similarity)
    if ":" not in args.verifier:
        raise CommandError(
            f"--verifier {args.verifier!r}: expected embedding or module:callable", 2
        )
    return _import_callable(args.verifier, "--verifier")


def stored_answer_text(payload: str) -> str:
    """The text of a stored response for a judge or verifier in a process that does not
    know which adapter stored it (``paracache worker``): the answer text of a LangChain
    adapter entry (when ``langchain_core`` is importable) or of a LlamaIndex one
    (``CachedLLM``, the query engine; when ``llama_index`` is), else the response as
    stored.

    Example:
        >>> stored_answer_text("Tap Freeze.")
        'Tap Freeze.'
    """
    if not payload.startswith("{"):
        return payload
    decoders: list[Callable[[str], str]] = []
    try:
        if '"generations"' in payload:
            from .langchain import generations_text

            decoders.append(generations_text)
        elif '"kind"' in payload:
            from .llama_index._shared import response_text
            from .llama_index.llm import stored_text

            decoders += [response_text, stored_text]
    except ImportError:
        return payload
    for decode in decoders:
        text = decode(payload)
        if text != payload:
            return text
    return payload


def _run_worker(args: argparse.Namespace) -> int:
    from .learning import LabelWorker

    if not args.namespace:
        raise CommandError("worker needs --namespace", 2)
    from .judge import check_judge_timeout

    try:
        check_judge_timeout(args.judge_timeout, "--judge-timeout")
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    judge = _worker_judge(args)
    verifier = _worker_verifier(args)
    conn = _connect(args)
    from redis.cluster import RedisCluster

    if isinstance(conn.client, RedisCluster):  # as SemanticIndex(max_error_rate=) says
        conn.client.close()
        raise CommandError(
            f"{conn.url} is a Redis Cluster: the error bound (max_error_rate=, its labels "
            "and this worker) does not support Redis Cluster yet",
            2,
        )
    counted = {"labels": 0, "wrong": 0, "dropped": 0, "promoted": 0, "verify_rejected": 0}

    def report(wrong: bool | None, kind: str, explored: bool) -> None:
        if kind in ("promoted", "verify_rejected"):
            counted[kind] += 1
        elif kind == "verify_unneeded":
            pass
        elif wrong is None:
            counted["dropped"] += 1
        else:
            counted["labels"] += 1
            counted["wrong"] += wrong

    worker = LabelWorker(
        conn.client, args.namespace, judge, judge_timeout=args.judge_timeout,
        stats_ttl=args.stats_ttl, on_label=report, verifier=verifier,
        answer_text=stored_answer_text,
    )
    print(f"paracache worker: namespace {args.namespace!r} on {conn.url}, judge {judge!r}"
          + (f", verifier {verifier!r}" if verifier is not None else ""), file=sys.stderr)
    code = 0
    try:
        with _stop_on_signals():
            _work(worker, conn.url, once=args.once)
    except _Stopped as stop:  # SIGINT (Ctrl-C) or SIGTERM (docker stop, systemd): say
        code = stop.code      # what was counted; a job begun stays pending, claimed later
        print(f"paracache worker: stopped ({stop.name})", file=sys.stderr)
    if args.json:
        print(json.dumps(counted))
    else:
        print(f"counted {counted['labels']:,} labels ({counted['wrong']:,} wrong), "
              f"dropped {counted['dropped']:,}"
              + (f"; near misses promoted {counted['promoted']:,}, rejected "
                 f"{counted['verify_rejected']:,}" if verifier is not None else ""))
    return code


def _work(worker: Any, url: str, *, once: bool) -> None:
    """Run a :class:`~paracache.learning.LabelWorker` until stopped (``once``: until the
    queue is empty), through Redis restarts and failovers (said once, retried)."""
    import time

    import redis

    delay = 0.0  # > 0: Redis is unreachable, retrying after this many seconds
    while True:
        try:
            handled = worker.run_once(block_ms=0 if once else 1000)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if once:
                raise CommandError(f"Redis unreachable at {url}: {exc}", 1) from None
            if not delay:  # once per outage, not once per retry
                print(f"paracache worker: Redis unreachable at {url} ({exc}); "
                      "retrying (nothing is lost: unacknowledged labels stay queued)",
                      file=sys.stderr)  # fmt: skip
            delay = min(max(delay * 2, 0.5), 5.0)
            time.sleep(delay)
            continue
        except redis.ResponseError as exc:  # e.g. the queue's key holds another type
            raise CommandError(f"Redis refused the label queue's commands: {exc}", 1) from None
        if delay:
            print("paracache worker: Redis reachable again", file=sys.stderr)
            delay = 0.0
        if once and not handled:
            return


class _Stopped(Exception):
    """``paracache worker`` was asked to stop by a signal (exit ``128 + signal``)."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(name)
        self.name, self.code = name, code


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise :class:`_Stopped` in the main thread (where the
    worker runs); elsewhere, or outside, signals behave as before."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise _Stopped(signal.Signals(signum).name, 128 + signum)

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- inspect


def _add_inspect(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="list the newest entries: scope, age, hits, TTL left",
        description="List the newest cache entries with their scope (tenant, model, corpus "
        "version), age, hit count and time to live left.",
    )
    _add_common(parser, namespace_help="only this namespace (default: all)")
    parser.add_argument(
        "--limit",
        type=_positive_int,
        default=20,
        metavar="N",
        help="entries to show (default: 20, newest first)",
    )
    parser.set_defaults(handler=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    import time

    from . import admin

    conn = _connect(args)
    limit = min(args.limit, 10_000)
    rows: list[tuple[str, Any]] = []
    for name in admin.run(conn.client, admin.indexes_flow(args.namespace)):
        ns = name.split(":")[1]
        rows.extend((ns, e) for e in admin.run(conn.client, admin.entries_flow(name, limit)))
    rows.sort(key=lambda r: -r[1].created_at)
    rows = rows[:limit]
    now = time.time()
    if args.json:
        out = [{"namespace": ns, **e.as_dict(), "age": round(e.age(now), 3)} for ns, e in rows]
        print(_json_text(out, indent=2))
        return 0
    if not rows:
        print("no entries")
        return 0
    header = (
        f"{'AGE':>9} {'HITS':>6} {'TTL LEFT':>9}  {'NAMESPACE':<14} {'TENANT':<14} "
        f"{'MODEL':<18} PROMPT"
    )
    print(header)
    for ns, e in rows:
        ttl = "never" if e.ttl_left is None else _ago(e.ttl_left)
        scope = e.scope
        print(
            f"{_ago(e.age(now)):>9} {e.hit_count:>6} {ttl:>9}  {_printable(ns, 14):<14} "
            f"{_printable(str(scope.get('tenant') or '-'), 14):<14} "
            f"{_printable(str(scope.get('model') or '-'), 18):<18} {_printable(e.prompt, 60)}"
        )
    return 0


# --------------------------------------------------------------------------- clear


def _add_clear(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clear",
        help="delete a namespace's entries, or those of a tenant, model or corpus version",
        description="Delete the entries of a namespace (every embedding model's), or only "
        "those matching all of --tenant, --model and --corpus-version. Asks first unless "
        "--yes is given.",
    )
    _add_common(parser, namespace_help="the namespace to clear (required)")
    parser.add_argument("--tenant", default=None, help="only this tenant's entries")
    parser.add_argument("--model", default=None, help="only this model's entries")
    parser.add_argument(
        "--corpus-version", default=None, metavar="V", help="only this corpus version's entries"
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(handler=_run_clear)


def _run_clear(args: argparse.Namespace) -> int:
    from . import admin

    if not args.namespace:
        raise CommandError("clear needs --namespace (the namespace to clear)", 2)
    filters = {
        k: v
        for k, v in (
            ("tenant", args.tenant),
            ("model", args.model),
            ("corpus_version", args.corpus_version),
        )
        if v is not None
    }
    conn = _connect(args)
    names = admin.run(conn.client, admin.indexes_flow(args.namespace))
    matching = admin.run(conn.client, admin.count_flow(names, **filters))
    what = f"{matching:,} entries of namespace {args.namespace!r}" + (
        " matching " + ", ".join(f"{k}={v!r}" for k, v in filters.items()) if filters else ""
    )
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"would delete {what}; pass --yes to confirm", 2)
        if input(f"Delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    deleted = admin.run(conn.client, admin.clear_flow(args.namespace, **filters))
    if args.json:
        print(json.dumps({"namespace": args.namespace, "filters": filters, "deleted": deleted}))
    else:
        print(f"deleted {deleted:,} entries of namespace {args.namespace!r}")
    return 0


# --------------------------------------------------------------------------- serve


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {value}")
    return value


def _add_serve(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the cache as an HTTP service in front of a chat model",
        description=(
            "Serve POST /v1/answer (answers from the cache when safe, else from the chat "
            "model), GET /v1/stats, /metrics (Prometheus), /healthz and the OpenAPI docs at "
            "/docs. The model: an OpenAI-compatible API if OPENAI_API_KEY or OPENAI_BASE_URL "
            "is set (needs paracache[openai]), else a simulated one. Needs paracache[service]."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis with the search module (default: $PARACACHE_REDIS_URL, $REDIS_URL, "
        "else an embedded server living as long as the service)",
    )
    parser.add_argument(
        "--namespace",
        default="service",
        type=_namespace,
        metavar="NS",
        help="cache namespace (default: service)",
    )
    parser.add_argument(
        "--min-similarity",
        type=_similarity,
        default=None,
        metavar="F",
        help="default semantic threshold, cosine similarity in [0, 1] (default: 0.90); "
        "requests may override it with the X-Paracache-Min-Similarity header",
    )
    parser.add_argument(
        "--max-error-rate", type=_error_rate, default=None, metavar="DELTA",
        help="learn each scope's threshold from traffic, keeping wrong answers per lookup "
        "under DELTA, in (0, 1) (default: the static threshold)",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="use the simulated model even if OPENAI_API_KEY or OPENAI_BASE_URL is set",
    )
    parser.add_argument(
        "--latency-scale",
        type=_non_negative,
        default=1.0,
        metavar="F",
        help="the simulated model's latency factor (median 200 ms); 0 = instant (default: 1)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_positive,
        default=None,
        metavar="RPS",
        help="requests per second each caller (API key; tenant without keys) may send to "
        "/v1/answer, with bursts "
        "of as many; beyond it: 429 with Retry-After; kept in Redis (default: no limit)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default: info)",
    )
    parser.add_argument(
        "--api-keys", default=None, metavar="FILE",
        help="API keys: a file of key:tenant pairs (comma- or newline-separated); requests "
        "then need Authorization: Bearer <key>, and the key's tenant scopes them "
        "(default: $PARACACHE_API_KEYS)",
    )
    parser.add_argument(
        "--no-auth", action="store_true",
        help="without API keys, listen on a --host other than loopback anyway (anyone who "
        "reaches it can read any tenant's answers)",
    )
    parser.set_defaults(handler=_run_serve)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _rate_limits(rps: float | None) -> list[Any] | None:
    """``--rate-limit RPS``: one token bucket per caller, ``RPS`` per second, bursts of
    ``max(1, RPS)``."""
    if rps is None:
        return None
    from .limiter import Limit

    return [Limit("serve", rps, burst=max(1.0, rps))]


def _run_serve(args: argparse.Namespace) -> int:
    import logging

    try:
        import uvicorn

        from .service import create_app
    except ImportError as exc:
        raise CommandError(
            f"paracache serve needs FastAPI and uvicorn ({exc}); "
            "install them with `pip install 'paracache[service]'`"
        ) from None
    from .auth import ApiKeys
    from .service import exposure

    try:
        keys = ApiKeys.from_file(args.api_keys) if args.api_keys else ApiKeys.from_env()
        told = exposure(args.host, keys, no_auth=args.no_auth)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc), 2) from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(
            api_keys=keys,
            redis_url=args.redis_url,
            namespace=args.namespace,
            min_similarity=args.min_similarity,
            max_error_rate=args.max_error_rate,
            simulate=True if args.simulate else None,
            latency_scale=args.latency_scale,
            rate_limits=_rate_limits(args.rate_limit),
        )
    except ValueError as exc:  # options this Redis cannot serve (--max-error-rate, cluster)
        raise CommandError(str(exc), 2) from None
    from .transport import safe_url as _safe_url

    print(
        f"paracache serve: namespace {args.namespace!r} on "
        f"{_safe_url(app.state.index.redis_url)}, model: {app.state.llm_description}; "
        f"API docs at http://{args.host}:{args.port}/docs\nparacache serve: {told}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


# --------------------------------------------------------------------------- repair


def _add_repair(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "repair",
        help="find and delete corrupt, foreign or old-schema entries of a namespace",
        description="Scan a namespace's keys and validate every entry (all fields present "
        "and readable, the vector the size its index expects, the current schema "
        "version); delete those that fail, unless --dry-run. Lookups already skip such "
        "entries (counted as corrupt_entry); this removes them. Keys that are not cache "
        "entries are left alone. Exit code 0: clean (or repaired), 1: --dry-run found "
        "entries to delete.",
    )
    _add_common(parser, namespace_help="the namespace to repair (required)")
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be deleted, delete nothing"
    )
    parser.set_defaults(handler=_run_repair)


def _run_repair(args: argparse.Namespace) -> int:
    from . import admin
    from .repair import repair_flow

    if not args.namespace:
        raise CommandError("repair needs --namespace (the namespace to scan)", 2)
    conn = _connect(args)
    report = admin.run(conn.client, repair_flow(args.namespace, dry_run=args.dry_run))
    if args.json:
        print(_json_text(report.as_dict(), indent=2))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(
            f"namespace {args.namespace!r} on {conn.url}: {report.scanned:,} keys scanned, "
            f"{report.valid:,} valid entries, {report.invalid:,} invalid, "
            f"{verb} {report.invalid if args.dry_run else report.deleted:,}"
            + (f", {report.other_keys:,} other keys left alone" if report.other_keys else "")
        )
        for problem, n in sorted(report.problems.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>8,}  {_printable(problem, 80)}")
        for key, problem in report.samples[:5]:
            print(f"  e.g. {_printable(key, 90)}: {_printable(problem, 60)}")
    return 0 if report.clean else 1


# --------------------------------------------------------------------------- reembed


def _add_reembed(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reembed",
        help="copy a namespace's entries from an old embedding model into the default one",
        description="Copy every live entry of another embedding model's index of a namespace "
        "into the index of paracache's default model (all-MiniLM-L6-v2 at --dtype), each "
        "prompt re-embedded, scope, answer, TTL left, created_at and hit counters kept. "
        "Entries already there are left alone, so an interrupted run finishes when run "
        "again; the cache keeps serving meanwhile. For another current model, call "
        "SemanticIndex(vectorizer=...).reembed() from Python. Exit code 0: done, 1: Redis "
        "or the embedder failed (run it again), 2: usage (no such index).",
    )
    _add_common(parser, namespace_help="the namespace to re-embed (required)")
    parser.add_argument(
        "--from", dest="from_model", required=True, metavar="MODEL_ID",
        help="the old model's id (paracache.vectorizers.vectorizer_id: TYPE:MODEL:DIMS) "
        "or its index name (paracache stats --json lists the indexes)",
    )  # fmt: skip
    parser.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16",
        help="vector type of the current index (default: float16, the cache's default)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=_positive_int, default=64, metavar="N",
        help="prompts embedded per batch (default: 64)",
    )  # fmt: skip
    parser.add_argument(
        "--drop-old", action="store_true",
        help="after a successful copy, delete the old index and its entries",
    )  # fmt: skip
    parser.set_defaults(handler=_run_reembed)


def _run_reembed(args: argparse.Namespace) -> int:
    from .index import SemanticIndex
    from .reembed import ReembedError

    if not args.namespace:
        raise CommandError("reembed needs --namespace (the namespace to re-embed)", 2)
    conn = _connect(args)
    conn.client.close()
    url = args.redis_url or os.environ.get("PARACACHE_REDIS_URL") or os.environ.get("REDIS_URL")
    cache = SemanticIndex(url, namespace=args.namespace, dtype=args.dtype)
    try:
        report = cache.reembed(
            args.from_model,
            batch_size=args.batch_size,
            progress=not args.json and sys.stderr.isatty(),
            drop_old=args.drop_old,
        )
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    except ReembedError as exc:
        if args.json:
            print(_json_text(exc.report.as_dict(), indent=2))
        raise CommandError(str(exc), 1) from None
    finally:
        cache.close()
    if args.json:
        print(_json_text(report.as_dict(), indent=2))
    else:
        print(
            f"namespace {args.namespace!r} on {conn.url}: {report.copied:,} entries copied "
            f"({report.exact_only:,} exact-only), skipped {report.skipped_present:,} already "
            f"present and {report.skipped_expired:,} expired, {report.failed:,} failed "
            f"(corrupt); {report.seconds:.1f} s, {report.rate:,.0f} entries/s"
            + (f"; old index dropped ({report.dropped:,} entries)" if args.drop_old else "")
        )
        print(f"  from {report.source}\n  into {report.target}")
    return 0


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``paracache`` argument parser with all subcommands."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="paracache",
        description="paracache: a semantic cache for LLM apps on Redis vector search.",
    )
    parser.add_argument("--version", action="version", version=f"paracache {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subparsers)
    _add_calibrate(subparsers)
    _add_stats(subparsers)
    _add_inspect(subparsers)
    _add_clear(subparsers)
    _add_serve(subparsers)
    _add_repair(subparsers)
    _add_worker(subparsers)
    _add_reembed(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``paracache`` command; returns the exit code.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        paracache 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # --help and usage errors: SystemExit(0) / (2)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from .errors import CacheError, RedisSearchUnavailable

    try:
        return handler(args)
    except CommandError as exc:
        print(f"paracache {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except (CacheError, RedisSearchUnavailable) as exc:  # Redis failed, or cannot be used
        print(f"paracache {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `paracache demo --json | head`
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
