"""Safe in every language (issue 19): different questions, paraphrases and repeats in 18
languages and 10 scripts, through the real cache at its defaults.

Data: ``benchmarks/data/multilingual_pairs.jsonl`` (written for this benchmark by
``make_multilingual_pairs.py``; split into tuning and held-out pairs before any tuning).
Each pair gets its own scope (a tenant of its own): ``q1`` is stored, ``q2`` looked up. A
hit on a pair of *different* questions is a false hit; a hit on a paraphrase is caught.
Repeats: ``q1`` looked up again as typed, and in a normalised variant (upper case where
the script has case, full-width forms for CJK, extra spaces and end punctuation): both
must be served.

    python benchmarks/multilingual.py [--vectorizer default|multilingual]
                                      [--no-readability] [--split all|tuning|heldout]
    python benchmarks/multilingual.py --speed [--n 400]

``--speed``: English lookups through two caches on one Redis, the readability check on and
off, alternating call by call: exact repeats and paraphrases (semantic hits), p50 each and
the ratio (the check's cost on the English hot path).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import uuid
from pathlib import Path
from typing import Any

from paracache import Scope, SemanticIndex
from paracache.embedded import EmbeddedRedis

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "data" / "multilingual_pairs.jsonl"


def variant(text: str, lang: str) -> str:
    """A normalised repeat of ``text``: as a user might retype it."""
    if lang in ("tr", "az"):  # Turkish capitals: i -> İ, ı -> I
        text = text.translate(str.maketrans({"i": "İ", "ı": "I"}))
    upper = text.upper()
    if upper.lower() != text.lower() or upper == text:  # upper case would change it
        upper = text
    wide = "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and not c.isalpha() else c for c in upper
    )  # full-width digits and punctuation, as CJK keyboards type them
    return f"  {wide.rstrip('?？!.。')}  ？"


def vectorizer_for(name: str) -> Any:
    if name == "default":
        return None
    from paracache.multilingual import multilingual_vectorizer

    return multilingual_vectorizer()


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = [json.loads(line) for line in PAIRS.read_text("utf-8").splitlines()]
    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    with EmbeddedRedis() as server:
        cache = SemanticIndex(
            server.url,
            namespace="ml-" + uuid.uuid4().hex[:8],
            vectorizer=vectorizer_for(args.vectorizer),
            check_readability=not args.no_readability,
            timeout=2.0,
        )
        per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        false_hits: list[str] = []
        t0 = time.perf_counter()
        try:
            for i, r in enumerate(rows):
                scope = Scope(tenant=f"pair-{i}")
                cache.store(r["q1"], f"answer to {r['q1']}", scope)
                c = per[r["lang"]]
                v = cache.lookup_verdict(r["q2"], scope)
                hit = v.outcome in ("exact", "semantic")
                if r["same"]:
                    c["para"] += 1
                    c["para_hit"] += hit
                else:
                    c["diff"] += 1
                    c["false_hit"] += hit
                    if hit:
                        false_hits.append(
                            f"{r['lang']} {r['kind']}: {r['q1']} / {r['q2']} ({v.similarity})"
                        )
                c["unreadable"] += v.outcome == "unreadable"
                for q in (r["q1"], variant(r["q1"], r["lang"])):
                    c["repeat"] += 1
                    c["repeat_hit"] += cache.lookup_verdict(q, scope).outcome == "exact"
            stats = cache.stats()
        finally:
            cache.clear()
            cache.close()
    seconds = time.perf_counter() - t0
    return {"per": per, "false_hits": false_hits, "stats": stats, "seconds": seconds}


ENGLISH = [
    ("What's your refund policy?", "what is your refund policy"),
    ("How do I activate my new card?", "how can i activate my new card"),
    ("Is the branch open on Sunday?", "is the branch open on sundays"),
    ("How long does a transfer take?", "how long do transfers take"),
    ("Can I change my PIN at an ATM?", "can i change my pin at the atm"),
]


def speed(n: int) -> None:
    import statistics

    with EmbeddedRedis() as server:
        caches = {
            on: SemanticIndex(
                server.url,
                namespace=f"sp-{on}-" + uuid.uuid4().hex[:6],
                check_readability=on,
                timeout=2.0,
            )
            for on in (True, False)
        }
        scope = Scope(tenant="speed")
        for cache in caches.values():
            cache.warm(ENGLISH, scope, progress=False)
        times: dict[tuple[bool, str], list[float]] = collections.defaultdict(list)
        for i in range(n):
            stored, para = ENGLISH[i % len(ENGLISH)]
            for on in ((True, False) if i % 2 else (False, True)):
                for kind, text in (("exact", stored), ("semantic", para)):
                    cache = caches[on]
                    cache._memo.clear()  # embed every time, as a new paraphrase would be
                    t = time.perf_counter()
                    v = cache.lookup_verdict(text, scope)
                    times[(on, kind)].append(time.perf_counter() - t)
                    assert v.outcome == kind, v
        for cache in caches.values():
            cache.clear()
            cache.close()
    print(f"{n} lookups of each kind per cache, alternating (shared 2-core machine)")
    print("| lookup | check on: p50 | check off: p50 | on / off |")
    print("|---|---:|---:|---:|")
    for kind in ("exact", "semantic"):
        on = statistics.median(times[(True, kind)]) * 1000
        off = statistics.median(times[(False, kind)]) * 1000
        print(f"| {kind} hit | {on:.3f} ms | {off:.3f} ms | {on / off:.2f} |")


def table(res: dict[str, Any], scripts: dict[str, str]) -> str:
    lines = [
        "| language | script | false hits / different pairs | paraphrases caught | "
        "repeats served | lookups exact-only (unreadable) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    tot: collections.Counter[str] = collections.Counter()
    for lang, c in res["per"].items():
        tot.update(c)
        lines.append(
            f"| {lang} | {scripts[lang]} | {c['false_hit']} / {c['diff']} | "
            f"{c['para_hit']} / {c['para']} | {c['repeat_hit']} / {c['repeat']} | "
            f"{c['unreadable']} |"
        )
    lines.append(
        f"| **all** | | **{tot['false_hit']} / {tot['diff']}** | {tot['para_hit']} / "
        f"{tot['para']} | {tot['repeat_hit']} / {tot['repeat']} | {tot['unreadable']} |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--vectorizer", choices=("default", "multilingual"), default="default")
    ap.add_argument("--no-readability", action="store_true",
                    help="similarity for every text (the behaviour before issue 19)")
    ap.add_argument("--split", choices=("all", "tuning", "heldout"), default="all")
    ap.add_argument("--speed", action="store_true", help="the check's cost on English lookups")
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    if args.speed:
        speed(args.n)
        return
    rows = [json.loads(line) for line in PAIRS.read_text("utf-8").splitlines()]
    scripts = {r["lang"]: r["script"] for r in rows}
    res = run(args)
    print(f"vectorizer={args.vectorizer} readability={'off' if args.no_readability else 'on'} "
          f"split={args.split} ({res['seconds']:.1f} s)")
    print(table(res, scripts))
    for line in res["false_hits"]:
        print("  false hit:", line)
    s = res["stats"]
    print(f"stats(): lookups {s.lookups}, unreadable {s.unreadable}, "
          f"rejections {dict(s.rejections_by_reason)}")


if __name__ == "__main__":
    main()
