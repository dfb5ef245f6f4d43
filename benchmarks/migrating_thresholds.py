"""A peer's distance against paracache's similarity, on the same pairs of questions.

RedisVL's SemanticCache (and langchain-redis's RedisSemanticCache, LiteLLM's
redis-semantic cache, both built on it) and paracache index the same offline model
in the same Redis; for each pair this prints RedisVL's ``vector_distance``, ``1 - d``
and paracache's similarity (with pleasantries and typos corrected, the default, and
kept), and what each answers at a threshold a migrating user might carry over.

    REDIS_URL=redis://127.0.0.1:7670 python benchmarks/migrating_thresholds.py
"""

from __future__ import annotations

import os

from redisvl.extensions.cache.llm import SemanticCache as RedisVLCache

from paracache import SemanticIndex
from paracache.vectorizers import default_vectorizer

PAIRS = [
    ("What's your refund policy?", "What is your policy on refunds?"),
    ("What's your refund policy?", "How do I cancel my order?"),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
]


def main() -> None:
    url = os.environ["REDIS_URL"]
    model = default_vectorizer()
    peer = RedisVLCache(name="mig-probe", redis_url=url, vectorizer=model, overwrite=True)
    plain = SemanticIndex(url, namespace="mig-plain", strip_pleasantries=False, correct_typos=False)
    normal = SemanticIndex(url, namespace="mig-normal")
    careless = SemanticIndex(url, namespace="mig-careless", min_similarity=0.1)
    try:
        for stored, asked in PAIRS:
            for cache in (plain, normal, careless):
                cache.clear()
            peer.clear()
            peer.store(prompt=stored, response="A")
            for cache in (plain, normal, careless):
                cache.store(stored, "A")
            found = peer.check(prompt=asked, distance_threshold=2.0)
            d = float(found[0]["vector_distance"])
            v_plain = plain.lookup_verdict(asked, min_similarity=0.0)
            v_normal = normal.lookup_verdict(asked, min_similarity=0.0)
            print(f"{stored!r} / {asked!r}")
            print(f"  RedisVL vector_distance {d:.4f}   1 - d {1 - d:.4f}")
            print(
                f"  paracache similarity {v_normal.similarity:.4f} "
                f"(pleasantries and typos kept: {v_plain.similarity:.4f})"
            )
            print(
                f"  RedisVL hit at distance_threshold=0.1: {d <= 0.1}; "
                f"at 0.2 (langchain-redis): {d <= 0.2}"
            )
            print(
                f"  paracache hit at default (0.90): {normal.lookup(asked) is not None}; "
                f"at min_similarity=0.8: {normal.lookup(asked, min_similarity=0.8) is not None}; "
                f"at min_similarity=0.1 (a distance mistaken for a similarity): "
                f"{careless.lookup(asked) is not None}"
            )
    finally:
        for cache in (plain, normal, careless):
            cache.clear()
            cache.close()
        peer.delete()


if __name__ == "__main__":
    main()
