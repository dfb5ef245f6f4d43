"""LlamaIndexEmbedding: a LlamaIndex embedding model over a paracache vectorizer."""

from __future__ import annotations

import logging
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field

from ..policy import Normalizer
from ..vectorizers import default_vectorizer, vectorizer_id

logger = logging.getLogger("paracache")

# --------------------------------------------------------------------------- embedding


class LlamaIndexEmbedding(BaseEmbedding):
    """A LlamaIndex embed model over a paracache (RedisVL) vectorizer, offline by default.

    Documents are embedded as they are. Queries are first passed through
    ``query_normalizer`` (default: paracache's :class:`~paracache.policy.Normalizer`,
    which for the uncased MiniLM changes little beyond trimming edge punctuation), so a
    :class:`SemanticCacheQueryEngine` can hand the retriever the query embedding it has
    already computed. Pass ``query_normalizer=None`` to embed queries verbatim (the
    cache then re-embeds on a miss unless the query is already normalised).

    Example:
        >>> from llama_index.core import VectorStoreIndex, Document
        >>> docs = [Document(text="Refunds within 30 days.")]
        >>> vindex = VectorStoreIndex.from_documents(docs, embed_model=LlamaIndexEmbedding())
    """

    vectorizer: Any = Field(default=None, exclude=True)
    query_normalizer: Normalizer | None = Field(default=None, exclude=True)

    def __init__(
        self,
        vectorizer: Any = None,
        *,
        query_normalizer: Normalizer | bool | None = True,
        **kwargs: Any,
    ) -> None:
        vec = default_vectorizer() if vectorizer is None else vectorizer
        if query_normalizer is True:
            query_normalizer = Normalizer()
        elif query_normalizer is False:
            query_normalizer = None
        kwargs.setdefault("model_name", vectorizer_id(vec))
        kwargs.update(vectorizer=vec, query_normalizer=query_normalizer)
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name for this class."""
        return "ParacacheEmbedding"

    def query_text(self, query: str) -> str:
        """The text actually embedded for ``query``.

        Example:
            >>> LlamaIndexEmbedding().query_text("  What's NEW?")  # doctest: +SKIP
            "what's new"
        """
        return self.query_normalizer(query) if self.query_normalizer else query

    def _get_query_embedding(self, query: str) -> Embedding:
        return list(self.vectorizer.embed(self.query_text(query)))

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return list(await self.vectorizer.aembed(self.query_text(query)))

    def _get_text_embedding(self, text: str) -> Embedding:
        return list(self.vectorizer.embed(text))

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return list(await self.vectorizer.aembed(text))

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return [list(v) for v in self.vectorizer.embed_many(texts, batch_size=32)]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return [list(v) for v in await self.vectorizer.aembed_many(texts, batch_size=32)]
