"""A user migrating from langchain-redis, RedisVL, GPTCache or LiteLLM: their habits meet
clear errors, and their keys and indexes in the same Redis are left alone (real Redis)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from langchain_core.embeddings import Embeddings

from paracache import SemanticIndex
from paracache.langchain import SemanticCache
from paracache.vectorizers import default_vectorizer


class _LangChainEmbeddings(Embeddings):
    """A user's LangChain ``Embeddings`` (the real offline model behind it)."""

    def __init__(self) -> None:
        self.model = default_vectorizer()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.model.embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        vector: list[float] = self.model.embed(text)
        return vector


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("distance_threshold", 0.2, "min_similarity=0.8"),
        ("similarity_threshold", 0.8, "min_similarity=0.8"),
        ("name", "llmcache", "namespace="),
        ("prefix", "llmcache", "namespace="),
        ("filterable_fields", [{"name": "user", "type": "tag"}], "fields="),
        ("embeddings", None, "CustomVectorizer"),
    ],
)
def test_langchain_adapter_names_the_equivalent_of_a_peer_option(
    redis_url: str, option: str, value: Any, says: str
) -> None:
    if option == "embeddings":
        value = _LangChainEmbeddings()
    with pytest.raises(TypeError) as err:
        SemanticCache(redis_url=redis_url, **{option: value})
    assert says in str(err.value)
    assert option in str(err.value)


def test_distance_threshold_out_of_range_is_not_converted(redis_url: str) -> None:
    with pytest.raises(TypeError) as err:
        SemanticCache(redis_url=redis_url, distance_threshold=1.5)
    assert "1 - distance_threshold" not in str(err.value)  # -0.5 is no similarity
    assert "below 0" in str(err.value)


def test_langchain_embeddings_as_vectorizer_is_refused_clearly(redis_url: str) -> None:
    with pytest.raises(TypeError) as err:
        SemanticIndex(redis_url, namespace="mig-emb", vectorizer=_LangChainEmbeddings())
    assert "CustomVectorizer" in str(err.value)


def test_wrapped_langchain_embeddings_serve_a_paraphrase(redis_url: str) -> None:
    from redisvl.utils.vectorize import CustomVectorizer

    emb = _LangChainEmbeddings()
    wrapped = CustomVectorizer(embed=emb.embed_query, embed_many=emb.embed_documents)
    cache = SemanticIndex(redis_url, namespace="mig-wrapped", vectorizer=wrapped)
    try:
        cache.store("What's your refund policy?", "Refunds within 30 days.")
        hit = cache.lookup("What is your policy on refunds?")
        assert hit is not None and hit.layer == "semantic"
        assert hit.response == "Refunds within 30 days."
    finally:
        cache.clear()
        cache.close()


def test_a_peers_keys_and_index_in_the_same_redis_are_left_alone(redis_url: str) -> None:
    from redisvl.extensions.cache.llm import SemanticCache as RedisVLCache

    client = redis.Redis.from_url(redis_url)
    peer = RedisVLCache(name="llmcache", redis_url=redis_url, vectorizer=default_vectorizer())
    other = "redis:5d41402abc4b2a76b9719d911017c592:8495d7e4604f1562df754bd3acdceb69"
    try:
        peer.store(prompt="What's your refund policy?", response="Refunds within 30 days.")
        client.set(other, "a langchain-redis RedisCache entry")
        peer_keys = {k for k in client.scan_iter("llmcache:*")}
        assert peer_keys
        # paracache under the peer's own name: its own prefix and index, nothing shared
        cache = SemanticIndex(redis_url, namespace="llmcache")
        cache.store("What's your refund policy?", "30 days.")
        assert cache.lookup("What is your policy on refunds?") is not None
        assert cache.clear() == 1
        cache.repair()
        cache.close()
        assert {k for k in client.scan_iter("llmcache:*")} == peer_keys
        assert client.get(other) == b"a langchain-redis RedisCache entry"
        assert b"llmcache" in {
            bytes(n) if not isinstance(n, str) else n.encode()
            for n in client.execute_command("FT._LIST")
        }
        assert peer.check(prompt="What is your policy on refunds?")
    finally:
        peer.delete()
        client.delete(other)
        client.close()


def test_a_threshold_that_reads_like_a_distance_is_warned_about(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``min_similarity=0.1`` (a peer's ``distance_threshold`` copied across) serves almost
    anything in scope: accepted, with a warning saying what was probably meant."""
    import logging

    with caplog.at_level(logging.WARNING, logger="paracache"):
        index = SemanticIndex(redis_url=redis_url, namespace="t-distance-like", min_similarity=0.1)
        SemanticCache(index, min_similarity=0.2)
        SemanticIndex(redis_url=redis_url, namespace="t-distance-like", min_similarity=0.85)
    said = [r.getMessage() for r in caplog.records if "serves almost anything" in r.getMessage()]
    assert len(said) == 2
    assert "min_similarity=0.9" in said[0] and "min_similarity=0.8" in said[1]
    index.clear()
