"""Answer quality: paracache (with and without guards) beside langchain-redis and RedisVL.

All three caches run on one embedded Redis (``paracache.embedded.EmbeddedRedis``) with the
same offline embedder (paracache's ``MiniLMVectorizer``; langchain-redis gets it through a
tiny LangChain ``Embeddings`` adapter). Every text is embedded once, normalised the way
paracache embeds it; the vectors are reused by all caches.

1. Banking77 (10,003 real banking questions, 77 intents): split by seed 77 into 5,001
   stored and 5,002 asked questions. A hit is correct when the stored question has the
   asker's intent. paracache runs through ``paracache.calibrate.calibrate`` (the real
   index, exact layer, HNSW, top-k, guards); the peers through their own lookup APIs at
   their default thresholds and at the loosest threshold whose precision matches
   paracache's at its defaults.
2. Near-miss traps (``benchmarks/data/traps.jsonl``, written for this benchmark): a stored
   question, a trap that differs in one answer-changing detail (negation, a number, an
   identifier, an amount, a date, a name, a scope word, an opposite action) and a true
   paraphrase. Each case is isolated (its own scope / filter / a cleared cache): a trap
   that hits is a false hit, a paraphrase that hits is caught.
3. Held-out traps (``benchmarks/data/traps_heldout.jsonl``): 40 more cases of the same
   kinds in other domains (travel, telecom, health, utilities...), written later and never
   used to tune anything: the check that (2) was not overfitted.
4. Near-verbatim rewordings (``benchmarks/rewordings.py``): pairs made by rule from the
   questions above ("How do I" <-> "How can I", "What is" <-> "What's", ...; at most
   ``rewordings.CAP`` per rule, seeded), each isolated: the same question, to be served.
   ``--generalise-only`` measures them per column too.

    python benchmarks/quality.py [--data banking77_train.jsonl]  # default: see banking77.py
                                 [--write benchmarks/RESULTS.md]
    python benchmarks/quality.py --generalise-only [--nearmiss F --duplicates F --label L]

``--generalise-only`` prints issue 14's table (tuning, held-out and held-out 2 data,
the defaults and the defaults with issue 14's additions off); each ``--nearmiss`` /
``--duplicates`` / ``--label`` triple adds a column for another data set.

Data: Banking77, Casanueva et al. 2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from banking77 import BANKING77, require
from langchain_core.embeddings import Embeddings
from langchain_core.outputs import Generation
from pairs_eval import INTENT_SEED, banking_split
from pydantic import PrivateAttr
from rewordings import CAP as REWORDING_CAP
from rewordings import RULES as REWORDING_RULES
from rewordings import rewording_pairs
from tqdm import tqdm

from paracache import DEFAULT_MIN_SIMILARITY, Scope, SemanticIndex
from paracache.calibrate import calibrate, split_clusters, wilson_interval
from paracache.core import DEFAULT_CORROBORATION_MARGIN, Settings
from paracache.embedded import EmbeddedRedis
from paracache.guards import DETAIL_MARGIN, LEARNED_MARGIN, Guards, features
from paracache.policy import Normalizer
from paracache.vectorizers import MiniLMVectorizer

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = BANKING77  # see banking77.py
TRAPS = HERE / "data" / "traps.jsonl"
HELDOUT = HERE / "data" / "traps_heldout.jsonl"
SEED = 77
LANGCHAIN_DEFAULT = 0.2  # langchain-redis RedisSemanticCache(distance_threshold=0.2)
REDISVL_DEFAULT = 0.1  # redisvl SemanticCache(distance_threshold=0.1)
NORMALIZE = Normalizer()


EMBED_SETTINGS = Settings()


def embed_key(text: str) -> str:
    """The text paracache embeds for a prompt: normalised, pleasantries stripped, typos
    corrected."""
    return EMBED_SETTINGS.embed_text(NORMALIZE(text))


# --------------------------------------------------------------------------- embeddings


class SharedVectors(MiniLMVectorizer):
    """paracache's embedder, answering from vectors computed once (keyed by the text
    paracache embeds, :func:`embed_key`); anything new is embedded and remembered."""

    _table: dict[str, list[float]] = PrivateAttr(default_factory=dict)

    def remember(self, texts: Sequence[str], batch_size: int = 64) -> None:
        keys = sorted({embed_key(t) for t in texts} - set(self._table))
        for start in tqdm(range(0, len(keys), 512), desc="embedding (once)", unit="batch"):
            chunk = keys[start : start + 512]
            for key, vec in zip(chunk, super()._embed_many(chunk, batch_size), strict=True):
                self._table[key] = vec

    def vector(self, text: str) -> list[float]:
        key = embed_key(text)
        if key not in self._table:
            self._table[key] = super()._embed(key)
        return self._table[key]

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        return self.vector(str(content))

    def _embed_many(
        self, contents: list[Any], batch_size: int = 10, **kw: Any
    ) -> list[list[float]]:
        return [self.vector(str(c)) for c in contents]


class LangChainEmbeddings(Embeddings):
    """The adapter langchain-redis needs: LangChain ``Embeddings`` over the same vectors."""

    def __init__(self, vectors: SharedVectors) -> None:
        self.vectors = vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors.vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors.vector(text)


# --------------------------------------------------------------------------- helpers


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score(nearest: Sequence[tuple[float, bool] | None], sim: float) -> dict[str, float]:
    """Hit rate, precision and correct/wrong per 100 if hits need similarity >= ``sim``."""
    n = len(nearest)
    hits = [o for o in nearest if o is not None and o[0] >= sim - 1e-9]
    ok = sum(1 for o in hits if o[1])
    return {
        "n": n,
        "hits": len(hits),
        "correct": ok,
        "hit_rate": len(hits) / n,
        "precision": ok / len(hits) if hits else 1.0,
        "correct_per_100": 100 * ok / n,
        "wrong_per_100": 100 * (len(hits) - ok) / n,
    }


def matched_distance(
    nearest: Sequence[tuple[float, bool] | None], precision: float
) -> float:
    """The loosest distance threshold (0.01 steps) whose precision is >= ``precision``."""
    best = 0.0
    for step in range(1, 41):
        d = step / 100
        if score(nearest, 1 - d)["precision"] >= precision:
            best = d
        else:
            break
    return best


# --------------------------------------------------------------------------- peers


def run_redisvl(url: str, vec: SharedVectors, fill: list[dict[str, Any]],
                ask: list[dict[str, Any]]) -> dict[str, Any]:
    from redisvl.extensions.cache.llm import SemanticCache

    cache = SemanticCache(name="bench-redisvl", redis_url=url, vectorizer=vec,
                          distance_threshold=REDISVL_DEFAULT, overwrite=True)
    for row in tqdm(fill, desc="redisvl: store", unit="q"):
        cache.store(row["text"], row["intent"], vector=vec.vector(row["text"]))

    def ask_all(distance: float) -> list[tuple[float, bool] | None]:
        out: list[tuple[float, bool] | None] = []
        for row in ask:
            res = cache.check(vector=vec.vector(row["text"]), distance_threshold=distance,
                              num_results=1, return_fields=["response", "vector_distance"])
            if res:
                out.append((1 - float(res[0]["vector_distance"]),
                            res[0]["response"] == row["intent"]))
            else:
                out.append(None)
        return out

    nearest = ask_all(0.5)  # the nearest entry of each query, to find the matched threshold
    at_default = ask_all(REDISVL_DEFAULT)
    return {"nearest": nearest, "default": at_default, "ask": ask_all, "done": cache.delete}


def run_langchain(url: str, vec: SharedVectors, fill: list[dict[str, Any]],
                  ask: list[dict[str, Any]]) -> dict[str, Any]:
    from langchain_redis import RedisSemanticCache

    cache = RedisSemanticCache(embeddings=LangChainEmbeddings(vec), redis_url=url,
                               name="bench-langchain", distance_threshold=LANGCHAIN_DEFAULT)
    cache.clear()
    llm = "bench-llm"
    for row in tqdm(fill, desc="langchain-redis: store", unit="q"):
        cache.update(row["text"], llm, [Generation(text=row["intent"])])

    def ask_all(distance: float) -> list[tuple[float, bool] | None]:
        cache.cache.set_threshold(distance)
        out: list[tuple[float, bool] | None] = []
        for row in ask:
            got = cache.lookup(row["text"], llm)
            # langchain-redis reports no similarity: a hit counts as within the threshold
            out.append((1 - distance, got[0].text == row["intent"]) if got else None)
        return out

    at_default = ask_all(LANGCHAIN_DEFAULT)
    return {"default": at_default, "ask": ask_all, "done": cache.clear}


# --------------------------------------------------------------------------- traps


def trap_runs(url: str, vec: SharedVectors, traps: list[dict[str, Any]],
              settings: dict[str, float]) -> dict[str, dict[str, float]]:
    """False hits on traps and paraphrases caught, per system and setting."""
    from langchain_redis import RedisSemanticCache
    from redisvl.extensions.cache.llm import SemanticCache
    from redisvl.query.filter import Tag

    results: dict[str, dict[str, float]] = {}

    def tally(name: str, hit: Callable[[dict[str, Any], str], bool]) -> None:
        traps_hit = sum(hit(c, "trap") for c in traps)
        paraphrases = sum(hit(c, "paraphrase") for c in traps)
        results[name] = {"false_hits": traps_hit / len(traps),
                         "paraphrases": paraphrases / len(traps),
                         "n": len(traps), "false_hits_k": traps_hit,
                         "paraphrases_k": paraphrases}

    ns = f"bench-traps-{int(time.time())}"
    on = SemanticIndex(url, namespace=ns, vectorizer=vec, guards=Guards())
    off = SemanticIndex(url, namespace=ns, vectorizer=vec, guards=None)
    strict = SemanticIndex(url, namespace=ns, vectorizer=vec, guards=Guards(),
                           corroboration_margin=0)
    for case in traps:
        on.store(case["stored"], case["id"], Scope(fields={"case": case["id"]}), ttl=None)
    default = settings["paracache"]
    for label, index, sim in (
        (f"paracache, guards on, min_similarity {default:.2f} (default)", on, default),
        (f"paracache, guards on, no corroboration, min_similarity {default:.2f}", strict,
         default),
        ("paracache, guards on, min_similarity 0.88", on, 0.88),
        ("paracache, guards on, min_similarity 0.85", on, 0.85),
        (f"paracache, guards off, min_similarity {default:.2f}", off, default),
        ("paracache, guards off, min_similarity 0.85", off, 0.85),
    ):
        tally(label, lambda c, k, index=index, sim=sim: index.lookup(
            c[k], Scope(fields={"case": c["id"]}), min_similarity=sim) is not None)
    on.clear()

    rvl = SemanticCache(name="bench-traps-redisvl", redis_url=url, vectorizer=vec,
                        filterable_fields=[{"name": "case", "type": "tag"}], overwrite=True)
    for case in traps:
        rvl.store(case["stored"], case["id"], vector=vec.vector(case["stored"]),
                  filters={"case": case["id"]})
    for d, how in ((REDISVL_DEFAULT, "default"), (settings["redisvl"], "matched precision")):
        tally(f"RedisVL SemanticCache, distance {d:.2f} ({how})", lambda c, k, d=d: bool(rvl.check(
            vector=vec.vector(c[k]), distance_threshold=d,
            filter_expression=Tag("case") == c["id"])))
    rvl.delete()

    lc = RedisSemanticCache(embeddings=LangChainEmbeddings(vec), redis_url=url,
                            name="bench-traps-langchain")
    for d, how in ((LANGCHAIN_DEFAULT, "default"), (settings["langchain"], "matched precision")):
        lc.cache.set_threshold(d)
        hits: dict[tuple[str, str], bool] = {}
        for case in traps:  # one case at a time: langchain-redis filters after its top-1
            lc.clear()
            lc.update(case["stored"], "llm", [Generation(text=case["id"])])
            for k in ("trap", "paraphrase"):
                hits[(case["id"], k)] = lc.lookup(case[k], "llm") is not None
        tally(f"langchain-redis RedisSemanticCache, distance {d:.2f} ({how})",
              lambda c, k, hits=hits: hits[(c["id"], k)])
    lc.clear()
    return results


# --------------------------------------------------------------------------- rewordings

REWORDED = "near-verbatim rewordings served"


def rewording_runs(index: SemanticIndex, pairs: dict[str, list[tuple[str, str]]],
                   tag: str, missed: list[list[str]] | None = None) -> dict[str, list[int]]:
    """Counts ``[served, n]`` of near-verbatim rewordings (``rewordings.rewording_pairs``)
    through ``index``, overall (:data:`REWORDED`) and per rule (indented keys): each pair
    isolated in its own scope as the near-miss cases are, the question stored with an
    answer of its own, then its rewording asked; a hit is served. The pairs not served are
    appended to ``missed`` as ``[tag, rule, stored, asked]``."""
    res: dict[str, list[int]] = {REWORDED: [0, 0]}
    for r, rule in enumerate(REWORDING_RULES):
        key = f"  {rule}"
        res[key] = [0, 0]
        for i, (stored, asked) in enumerate(pairs.get(rule, [])):
            scope = Scope(fields={"reworded": f"{tag}:{r}:{i}"})
            index.store(stored, f"{r}#{i}", scope, ttl=None)
            hit = index.lookup(asked, scope) is not None
            if not hit and missed is not None:
                missed.append([tag, rule, stored, asked])
            for k in (REWORDED, key):
                res[k][0] += hit
                res[k][1] += 1
    return res


REWORDING_NOTE = (
    "*Near-verbatim rewordings* (`benchmarks/rewordings.py`): pairs made by rule, not "
    "chosen by outcome, from the questions the run already has (each question stored, its "
    "rewording asked, each pair in its own scope): an opening \"How do I\" <-> \"How can "
    "I\", \"What is\" <-> \"What's\", \"Where is\" <-> \"Where's\", \"Can I\" <-> "
    "\"Could I\", a trailing \"please\" dropped; at most "
    f"{REWORDING_CAP} pairs per rule (a seeded sample). The same question: every one "
    "should be served.")


def pair_texts(pairs: dict[str, list[tuple[str, str]]]) -> list[str]:
    return [t for rows in pairs.values() for pair in rows for t in pair]


# --------------------------------------------------------------------------- issue 14

NEARMISS = {"tune": HERE / "data" / "nearmiss_tune.jsonl",
            "heldout": HERE / "data" / "nearmiss_heldout.jsonl",
            "blind": HERE / "data" / "nearmiss_heldout2.jsonl"}
DUPLICATES = {"tune": HERE / "data" / "duplicates_tune.jsonl",
              "heldout": HERE / "data" / "duplicates_heldout.jsonl",
              "blind": HERE / "data" / "duplicates_heldout2.jsonl"}
#: The splits of issue 14's table: tuning, held-out, and a second held-out set written
#: blind after the third round's rules were chosen (no Banking77 part).
SPLITS = {"tune": "tuning", "heldout": "held-out", "blind": "held-out 2"}


def ci(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / max(n, 1):.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] ({k}/{n})"


def intent_halves(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Banking77 split by intent (``pairs_eval.banking_split``, seed 14): the tuning half
    and the held-out half."""
    tune, _ = banking_split(rows)
    return {"tune": [r for r in rows if r["intent"] in tune],
            "heldout": [r for r in rows if r["intent"] not in tune]}


def split_rewordings(rows: list[dict[str, Any]], split: str) -> dict[str, list[tuple[str, str]]]:
    """The near-verbatim rewording pairs of a split: from its near-miss cases' stored
    questions and, for the tuning and held-out splits, its Banking77 intent half's
    questions (at most ``rewordings.CAP`` per rule, seeded)."""
    questions = [c["stored"] for c in load(NEARMISS[split])]
    if split in ("tune", "heldout"):
        questions += [r["text"] for r in intent_halves(rows)[split]]
    return rewording_pairs(questions)


def generalisation(url: str, vec: SharedVectors, rows: list[dict[str, Any]],
                   index_options: dict[str, Any], missed: list[list[str]] | None = None,
                   ) -> dict[str, dict[str, tuple[int, int]]]:
    """Counts ``(k, n)`` per measure and split, through the real index at the defaults
    (``index_options`` changes them): near-miss cases (each isolated in its own scope),
    duplicate-question pairs (the same), Banking77's intents by halves (5 stored : 5
    asked within each half, split by seed 77), near-verbatim rewordings of the split's
    questions (:func:`split_rewordings`, each pair isolated; those not served appended to
    ``missed``)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    ns = f"bench-i14-{int(time.time() * 1000) % 10**9}"
    index = SemanticIndex(url, namespace=ns, vectorizer=vec, **index_options)
    try:
        for split in SPLITS:
            res: dict[str, list[int]] = {}

            def tally(key: str, hit: bool, res: dict[str, list[int]] = res) -> None:
                res.setdefault(key, [0, 0])
                res[key][0] += hit
                res[key][1] += 1

            cases = load(NEARMISS[split])
            for case in cases:
                scope = Scope(fields={"case": f"{split}:{case['id']}"})
                index.store(case["stored"], case["id"], scope, ttl=None)
                for key in ("trap", "paraphrase", "typo"):
                    hit = index.lookup(case[key], scope) is not None
                    if key == "trap":
                        tally("near-miss false hits", hit)
                        tally(f"  {case['kind']}", hit)
                    else:
                        tally(f"{key}s caught" if key == "typo" else "paraphrases caught", hit)
            for pair in load(DUPLICATES[split]):
                scope = Scope(fields={"pair": f"{split}:{pair['id']}"})
                index.store(pair["q1"], pair["id"], scope, ttl=None)
                hit = index.lookup(pair["q2"], scope) is not None
                tally("duplicates: recall" if pair["duplicate"] else "duplicates: false hits",
                      hit)
            res.update(rewording_runs(index, split_rewordings(rows, split), split, missed))
            if split not in ("tune", "heldout"):
                out[split] = {k: (v[0], v[1]) for k, v in res.items()}
                continue
            part = intent_halves(rows)[split]
            fill, ask = split_clusters(part, SEED, 0.5)
            scope = Scope(fields={"banking": split})
            # each stored question has its own answer (an LLM's answers all differ; the
            # intent as the answer would tell the neighbours guard which neighbours agree)
            index.warm([(r["text"], f"{r['intent']}#{i}") for i, r in enumerate(fill)], scope,
                       progress=False, ttl=None)
            hits = correct = 0
            for r in ask:
                hit = index.lookup(r["text"], scope)
                if hit is not None:
                    hits += 1
                    correct += hit.response.rpartition("#")[0] == r["intent"]
            res["banking77: precision"] = [correct, hits]
            res["banking77: answered correctly"] = [correct, len(ask)]
            out[split] = {k: (v[0], v[1]) for k, v in res.items()}
    finally:
        index.clear()
        index.close()
    return out


def render_generalisation(gen: dict[str, dict[str, dict[str, tuple[int, int]]]],
                          cost: dict[str, float], command: str) -> str:
    lines = [
        "## Issue 14: tuning and held-out data",
        "",
        f"`{command}`, through the real index (embedded Redis, the default embedder), the "
        "machine shared with other engineers. Each cell: the rate, its 95 % Wilson interval "
        "and the counts. Held-out data was written before any rule of issue 14 changed and "
        "never tuned on: near-miss cases in insurance, education, HR, cooking, automotive, "
        "real estate, pets and legal questions (`benchmarks/data/nearmiss_heldout.jsonl`; "
        "tuning: health, travel, retail, software, telecom, utilities, fitness, government), "
        "duplicate/non-duplicate question pairs in other topics "
        "(`duplicates_heldout.jsonl`), and the Banking77 intents of the held-out half "
        f"(split by intent, seed {INTENT_SEED}). Each near-miss case and pair is isolated in "
        "its own scope; Banking77 stores half of each half's questions and asks the rest, "
        "each stored question with an answer of its own (as an LLM's answers differ). "
        "*Held-out 2* was written blind on 2026-12-05 by an engineer who did not read the "
        "guards and ran nothing on it, after the third round's rules were chosen: 120 "
        "near-miss cases in 12 other domains (`nearmiss_heldout2.jsonl`) and 60 question "
        "pairs in 5 other topics (`duplicates_heldout2.jsonl`); measured since, it is no "
        "longer blind.",
        "",
        REWORDING_NOTE,
        "",
    ]
    configs = list(gen)
    header = "| measure | " + " | ".join(
        f"{c}: {name}" for c in configs for name in SPLITS.values()) + " |"
    lines += [header, "|---|" + "---:|" * (len(SPLITS) * len(configs))]
    keys = list(gen[configs[0]]["heldout"])
    for key in keys:
        cells = []
        for c in configs:
            for split in SPLITS:
                k, n = gen[c][split].get(key, (0, 0))
                cells.append(ci(k, n) if n else "")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Guard cost (CPU time of the core's choice with the default guards, cold: query "
        f"and candidates analysed from scratch) over {cost['lookups']} held-out Banking77 "
        f"lookups that reached the guards ({cost['candidates_per_lookup']:.0f} nearest "
        f"candidates each): mean "
        f"{cost['mean_us']:.0f} µs, p50 {cost['p50_us']:.0f} µs, p99 {cost['p99_us']:.0f} µs.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- guard cost


def guard_overhead(fill: list[dict[str, Any]], ask: list[dict[str, Any]],
                   vec: SharedVectors, threshold: float, top_k: int = 4) -> dict[str, float]:
    """CPU microseconds the guards add to a lookup, through the core's own choice
    (``Core._choose`` with the default guards' hooks: candidates most similar first,
    those below the threshold asked whether the guards vouch for them, the guards, the
    neighbour check) on the ``top_k`` nearest stored questions, for the lookups whose
    nearest candidate is within the corroboration margin of the threshold (the others
    never reach the guards). Cold: the text features memo is cleared before each lookup,
    so the query and every candidate are analysed from scratch (the worst case)."""
    import numpy as np

    from paracache.core import Candidate, Core
    from paracache.guards import same_question
    from paracache.guards.check import _asks, _both_add
    from paracache.guards.pairs import _pair_model, _pair_words
    from paracache.schema import Layout

    guards = Guards()
    core = Core(Layout.build("cost", "m:1", dims=4), Settings(min_similarity=threshold),
                accept=guards.accept, corroborate=guards.corroborate, contest=guards.contest)
    _pair_model()  # loaded once per process, not per lookup
    same_question("warm up", "warm up", 0.9)
    scope = Scope()
    floor = threshold - DEFAULT_CORROBORATION_MARGIN
    stored = [r["text"] for r in fill]
    fields = [{k.encode(): str(v).encode()
               for k, v in core.prepare_store(r["text"], r["intent"], scope).mapping.items()}
              for r in fill]
    mat = np.asarray([vec.vector(t) for t in stored], dtype=np.float32)
    timings, reached = [], 0
    for row in ask[:2000]:
        q = np.asarray(vec.vector(row["text"]), dtype=np.float32)
        sims = mat @ q
        top = np.argsort(-sims)[:top_k]
        if sims[top[0]] < floor:
            continue  # nothing near the threshold: the guards do not run
        reached += 1
        req = core.prepare_lookup(row["text"], scope)
        cands = [Candidate(key=f"k:{i}", similarity=float(sims[i]), fields=fields[i])
                 for i in top]
        features.cache_clear()
        _pair_words.cache_clear()
        _both_add.cache_clear()
        _asks.cache_clear()
        t0 = time.thread_time()  # CPU time: robust to other processes on the machine
        core._choose(req, cands)
        timings.append((time.thread_time() - t0) * 1e6)
    timings.sort()
    return {"mean_us": statistics.fmean(timings), "p50_us": timings[len(timings) // 2],
            "p99_us": timings[int(len(timings) * 0.99)], "lookups": reached,
            "candidates_per_lookup": float(top_k)}


# --------------------------------------------------------------------------- report


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def pct_ci(k: int, n: int) -> str:
    """A rate with its 95 % Wilson interval: ``1.2 % (0.2-6.7)``."""
    lo, hi = wilson_interval(k, n)
    return f"{pct(k / n) if n else 'n/a'} ({100 * lo:.1f}-{100 * hi:.1f})"


def render(res: dict[str, Any], command: str) -> str:
    b = res["banking"]
    lines = [
        "## Quality",
        "",
        f"`{command}` ({res['seconds']:.0f} s on {res['machine']}, load average "
        f"{res['load']:.1f} at the end: the machine is shared). Same Redis (embedded "
        "redis-server 8.2 + RediSearch 2.10), same embedder (all-MiniLM-L6-v2 int8 ONNX, "
        "each text embedded once, normalised as paracache embeds it) for every cache.",
        "",
        f"**Banking77** (CC BY 4.0): {b['stored']:,} questions stored, {b['asked']:,} other "
        f"questions asked (split by seed {SEED}); a hit is correct when the stored question "
        "has the asker's intent.",
        "",
        "Rates with their 95 % Wilson intervals in brackets.",
        "",
        "| cache | threshold | hit rate | precision of hits | correct / 100 | wrong / 100 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in b["rows"]:
        lines.append(
            f"| {row['name']} | {row['threshold']} | {pct_ci(row['hits'], row['n'])} | "
            f"{pct_ci(row['correct'], row['hits'])} | {row['correct_per_100']:.1f} | "
            f"{row['wrong_per_100']:.1f} |"
        )
    t = res["traps"]
    lines += [
        "",
        f"**Near-miss traps** (`benchmarks/data/traps.jsonl`, {t['cases']} cases written for "
        "this benchmark: negation, numbers, identifiers, amounts, dates, names, scope "
        "words, opposite actions; each with a true paraphrase). Each case isolated.",
        "",
        "| cache | false hits on traps | true paraphrases caught |",
        "|---|---:|---:|",
    ]
    for name, row in t["rows"].items():
        lines.append(
            f"| {name} | {pct_ci(row['false_hits_k'], row['n'])} | "
            f"{pct_ci(row['paraphrases_k'], row['n'])} |"
        )
    h = res.get("heldout")
    if h:
        lines += [
            "",
            f"**Held-out traps** (`benchmarks/data/traps_heldout.jsonl`, {h['cases']} cases "
            "of the same kinds in other domains (travel, telecom, health, utilities...), "
            "written before the corroboration margin and the pleasantry stripping were "
            "designed and never used to tune them). Each case isolated.",
            "",
            "| cache | false hits on traps | true paraphrases caught |",
            "|---|---:|---:|",
        ]
        for name, row in h["rows"].items():
            lines.append(
                f"| {name} | {pct_ci(row['false_hits_k'], row['n'])} | "
                f"{pct_ci(row['paraphrases_k'], row['n'])} |"
            )
    w = res.get("rewordings")
    if w:
        names = list(w["rows"])
        lines += [
            "",
            "**Near-verbatim rewordings** (`benchmarks/rewordings.py`) of Banking77's questions "
            "and the traps' and "
            "held-out traps' stored questions: " + REWORDING_NOTE.split(": ", 1)[1],
            "",
            "| rule | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for key in w["rows"][names[0]]:
            cells = [ci(*w["rows"][n][key]) if w["rows"][n][key][1] else ""
                     for n in names]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    g = res["guard_cost"]
    lines += [
        "",
        f"Guard cost (CPU time of the core's choice with the default guards, cold: query and "
        f"candidates analysed from scratch) over {g['lookups']} Banking77 lookups that "
        f"reached the guards at {g['threshold']:.2f} ({g['candidates_per_lookup']:.0f} "
        f"nearest candidates each): mean {g['mean_us']:.0f} µs, p50 {g['p50_us']:.0f} µs, p99 "
        f"{g['p99_us']:.0f} µs. Lookups with no candidate within the corroboration margin of the "
        "threshold skip them.",
        "",
    ]
    lines += res["notes"]
    return "\n".join(lines).rstrip() + "\n"


def write_section(path: Path, section: str, heading: str = "## Quality") -> None:
    """Replace (or append) the ``heading`` section of ``path``, keeping the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = text.find(heading)
    if start == -1:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end == -1 else text[end:])
    path.write_text(text, encoding="utf-8")


def run_generalisation(rows: list[dict[str, Any]], write: Path | None,
                       json_path: Path | None = None) -> None:
    """Issue 14's table on tuning and held-out data: the defaults, and the defaults with
    issue 14's switchable additions off (no typo correction, no learned check, no
    neighbour check, the old 0.05 corroboration margin; the WordNet opposites stay on)."""
    vec = SharedVectors()
    texts = [r["text"] for r in rows]
    for split in SPLITS:
        texts += [c[k] for c in load(NEARMISS[split])
                  for k in ("stored", "trap", "paraphrase", "typo")]
        texts += [p[k] for p in load(DUPLICATES[split]) for k in ("q1", "q2")]
        texts += pair_texts(split_rewordings(rows, split))
    vec.remember(texts)
    server = EmbeddedRedis().start()
    try:
        missed: dict[str, list[list[str]]] = {"defaults": [], "additions off": []}
        gen = {
            "defaults": generalisation(server.url, vec, rows, {}, missed["defaults"]),
            "additions off": generalisation(server.url, vec, rows, {
                "guards": Guards(learned=False, neighbours=False), "correct_typos": False,
                "corroboration_margin": 0.05}, missed["additions off"]),
        }
    finally:
        server.close()
    fill, ask = split_clusters(intent_halves(rows)["heldout"], SEED, 0.5)
    cost = guard_overhead(list(fill), list(ask), vec, DEFAULT_MIN_SIMILARITY)
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    text = render_generalisation(gen, cost, command)
    print(text)
    if json_path:
        with json_path.open("w") as fh:
            json.dump({"command": command, "splits": SPLITS, "counts": gen,
                       "guard_cost": cost, "rewordings_missed": missed}, fh, indent=1,
                      default=str)
    if write:
        write_section(write, text, "## Issue 14: tuning and held-out data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--traps", type=Path, default=TRAPS)
    ap.add_argument("--heldout", type=Path, default=HELDOUT,
                    help="held-out trap cases (a second table)")
    ap.add_argument("--write", type=Path, default=None, help="update this RESULTS.md")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample (quick runs)")
    ap.add_argument("--generalise-only", action="store_true",
                    help="only issue 14's tuning / held-out table (a few minutes)")
    ap.add_argument("--nearmiss", type=Path, action="append", default=[],
                    help="with --generalise-only: near-miss cases (JSONL, as "
                    "benchmarks/data/nearmiss_*.jsonl) for another column; repeatable, one "
                    "--duplicates and one --label each")
    ap.add_argument("--duplicates", type=Path, action="append", default=[],
                    help="question pairs (JSONL, as benchmarks/data/duplicates_*.jsonl) for "
                    "the column of the --nearmiss given in the same position")
    ap.add_argument("--label", action="append", default=[],
                    help="the name of that column, e.g. 'held-out 3'")
    args = ap.parse_args()
    if not len(args.nearmiss) == len(args.duplicates) == len(args.label):
        ap.error("give one --nearmiss, one --duplicates and one --label per extra column")
    for i, (nm, dp, label) in enumerate(zip(args.nearmiss, args.duplicates, args.label,
                                            strict=True)):
        NEARMISS[f"extra{i}"], DUPLICATES[f"extra{i}"], SPLITS[f"extra{i}"] = nm, dp, label
    t0 = time.perf_counter()
    rows = load(require(args.data))
    if args.limit:
        rows = random.Random(SEED).sample(rows, args.limit)
    if args.generalise_only:
        run_generalisation(rows, args.write, args.json)
        return
    traps = load(args.traps)
    heldout = load(args.heldout) if args.heldout and args.heldout.exists() else []
    fill, ask = split_clusters(rows, SEED, 0.5)
    reworded = rewording_pairs([r["text"] for r in rows] + [c["stored"] for c in traps + heldout])
    vec = SharedVectors()
    vec.remember([r["text"] for r in rows] + [c[k] for c in traps + heldout
                                               for k in ("stored", "trap", "paraphrase")]
                 + pair_texts(reworded))
    server = EmbeddedRedis().start()
    try:
        url = server.url
        report = calibrate(rows, kind="clusters", redis_url=url, vectorizer=vec, seed=SEED,
                           target_precision=0.97, progress=True)
        default = DEFAULT_MIN_SIMILARITY
        ours = report.at(default)
        ours_off = report.at(default, guards=False)
        banking_rows = []
        for name, r, thr in (
            ("paracache, guards on (default)", ours, default),
            ("paracache, guards off", ours_off, default),
        ):
            banking_rows.append({
                "name": name, "threshold": f"min_similarity {thr:.2f}",
                "n": report.queries, "hits": r.correct + r.wrong, "correct": r.correct,
                "hit_rate": r.hit_rate, "precision": r.precision,
                "correct_per_100": 100 * r.correct / report.queries,
                "wrong_per_100": 100 * r.wrong / report.queries,
            })
        for t in (0.89, 0.88, 0.85):
            r = report.at(t)
            banking_rows.append({
                "name": "paracache, guards on", "threshold": f"min_similarity {t:.2f}",
                "n": report.queries, "hits": r.correct + r.wrong, "correct": r.correct,
                "hit_rate": r.hit_rate, "precision": r.precision,
                "correct_per_100": 100 * r.correct / report.queries,
                "wrong_per_100": 100 * r.wrong / report.queries,
            })
        target = ours.precision
        rvl = run_redisvl(url, vec, fill, ask)
        rvl_d = matched_distance(rvl["nearest"], target)
        lc = run_langchain(url, vec, fill, ask)
        lc_d = rvl_d  # both are top-1 by cosine distance: the same matched threshold
        for name, runs, default_d, matched_d in (
            ("langchain-redis RedisSemanticCache", lc, LANGCHAIN_DEFAULT, lc_d),
            ("RedisVL SemanticCache", rvl, REDISVL_DEFAULT, rvl_d),
        ):
            for label, d, res_ in (("default", default_d, runs["default"]),
                                   ("matched precision", matched_d, runs["ask"](matched_d))):
                s = score(res_, 1 - d)
                banking_rows.append({"name": f"{name} ({label})",
                                     "threshold": f"distance {d:.2f}", **s})
        rvl["done"]()
        lc["done"]()
        trap_settings = {"paracache": default, "redisvl": rvl_d, "langchain": lc_d}
        trap_res = trap_runs(url, vec, traps, trap_settings)
        heldout_res = trap_runs(url, vec, heldout, trap_settings) if heldout else {}
        rewording_res: dict[str, dict[str, list[int]]] = {}
        rewording_missed: dict[str, list[list[str]]] = {}
        for label, options in ((f"paracache, guards on, min_similarity {default:.2f} "
                                "(default)", {}),
                               (f"paracache, guards off, min_similarity {default:.2f}",
                                {"guards": None})):
            index = SemanticIndex(url, namespace=f"bench-reworded-{len(rewording_res)}",
                                  vectorizer=vec, **options)
            try:
                rewording_missed[label] = []
                rewording_res[label] = rewording_runs(index, reworded, "quality",
                                                      rewording_missed[label])
            finally:
                index.clear()
                index.close()
    finally:
        server.close()
    cost = guard_overhead(fill, ask, vec, DEFAULT_MIN_SIMILARITY)
    cost["threshold"] = DEFAULT_MIN_SIMILARITY
    res = {
        "seconds": time.perf_counter() - t0,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load": os.getloadavg()[0],
        "banking": {"stored": report.stored, "asked": report.queries, "rows": banking_rows},
        "traps": {"cases": len(traps), "rows": trap_res},
        "heldout": {"cases": len(heldout), "rows": heldout_res} if heldout else None,
        "rewordings": {"rows": rewording_res, "missed": rewording_missed},
        "guard_cost": cost,
        "notes": [
            "Notes: paracache's rows with guards on include candidates below the threshold "
            "that the guards vouch for (`Guards.vouches`: a typo'd repeat down to "
            f"{DEFAULT_CORROBORATION_MARGIN:.2f} below, a shared specific detail down to "
            f"{DETAIL_MARGIN:.2f}, the learned pair check down to {LEARNED_MARGIN:.2f}) and "
            "that pass every guard; the Banking77 "
            "rows come from `paracache.calibrate`, which models them per threshold (the "
            "neighbours guard too), each stored question with an answer of its own. "
            "Every cache gets the "
            "same vectors of the text paracache embeds (normalised, pleasantries stripped). "
            "RedisVL's default distance 0.10 is cosine similarity 0.90, paracache's "
            "default threshold, so without guards the two serve the same answers. On Banking77 "
            "the guards add a few hits at about the same precision (the vouched-for "
            "candidates; its wrong "
            "hits are neighbouring intents, card_arrival vs card_delivery_estimate, not "
            "conflicting details). langchain-redis "
            "reports no similarity for a hit: its matched threshold is RedisVL's (both serve the "
            "top-1 by cosine distance). langchain-redis filters `llm_string` after a top-1 "
            "search, so for the traps it runs one case at a time on a cleared cache; RedisVL "
            "uses a tag filter per case, paracache a scope field per case.",
        ],
    }
    command = " ".join(["python benchmarks/quality.py", *sys.argv[1:]])  # as it ran (--limit...)
    text = render(res, command)
    print(text)
    print(report.format(), file=sys.stderr)
    if args.json:
        with args.json.open("w") as fh:
            json.dump(res | {"sweep": report.as_dict()}, fh, indent=1, default=str)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
