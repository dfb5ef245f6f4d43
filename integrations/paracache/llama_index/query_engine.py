"""SemanticCacheQueryEngine: a LlamaIndex query engine that answers paraphrases from the cache."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import AsyncGenerator, Generator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.llms import LLM
from llama_index.core.prompts.mixin import PromptDictType, PromptMixinType
from llama_index.core.schema import (
    QueryBundle,
)

from ..errors import CacheClosedError
from ..index import SemanticIndex
from ..scope import Scope, digest
from ..singleflight import Claim, SingleFlight
from ..values import Verdict, check_similarity, distance_like
from ..vectorizers import vectorizer_id
from ._shared import (
    _NOT_ANSWER_KWARGS,
    _atext_gen,
    _attr,
    _dump_response,
    _emit,
    _fingerprint,
    _load_response,
    _prompt_fingerprint,
    _read,
    _resolve_index,
    _text_gen,
    llm_scope,
    response_text,
)
from .embedding import LlamaIndexEmbedding

logger = logging.getLogger("paracache")

# --------------------------------------------------------------------------- query engine


@functools.cache
def _index_options() -> frozenset[str]:
    """The names of :class:`paracache.SemanticIndex`'s options."""
    return frozenset(inspect.signature(SemanticIndex.__init__).parameters) - {"self"}


@dataclasses.dataclass(frozen=True)
class _Plan:
    """One query's cache request: the text to match, its scope, how to answer."""

    text: str
    scope: Scope
    streaming: bool | None
    embed_model: Any


#: What a retriever's answer depends on besides the query, read from its private
#: attributes (``VectorIndexRetriever``'s, pinned by the tests): a value that cannot be
#: read, or filters that cannot be told apart by their data, mean the query is not cached.
RETRIEVER_ATTRS = (
    "_filters",
    "_vector_store_query_mode",
    "_alpha",
    "_doc_ids",
    "_sparse_top_k",
    "_hybrid_top_k",
    "_kwargs",
    "_embed_model",
)


#: The scope fields the query engine reads from the engine itself (:meth:`scope_for`).
DETECTED_FIELDS = frozenset(
    {"engine", "retriever", "similarity_top_k", "index_id", "synthesizer", "response_mode"}
)


class SemanticCacheQueryEngine(BaseQueryEngine):
    """A query engine answering paraphrased questions from Redis, else from ``query_engine``.

    Args:
        query_engine: The engine to wrap (any ``BaseQueryEngine``).
        index: A :class:`paracache.SemanticIndex` to share; otherwise one is built from
            ``redis_url``, ``namespace`` (default ``"llama_index"``) and ``**options``.
        tenant: Entries this instance reads and writes are this tenant's.
        corpus_version: Bump it (:meth:`bump_corpus_version`) after re-indexing.
        scope_fields: Further scope fields (JSON scalars), e.g. for engines this
            adapter cannot introspect; not one of :data:`DETECTED_FIELDS` (``ValueError``).
        min_similarity: Semantic threshold (cosine similarity; default: the index's,
            learned when the index has ``max_error_rate``: pass
            ``max_error_rate=0.02`` among the options, and each miss's fresh response
            labels the candidate it did not serve; given with ``max_error_rate``, it is
            the static threshold the bound starts from; refused with an ``index`` that
            has the bound, whose learned threshold it would override).
        engine_kwargs: The arguments the engine was built with, when it does not keep
            them (``from_index`` records its ``as_query_engine`` kwargs here).

    On a miss, the query embedding the cache computed is handed to the retriever only
    when that is exact: its embed model is a :class:`LlamaIndexEmbedding` over the same
    vectorizer that embeds this query as the cache's normalised text. Any error in the
    cache path falls back to the wrapped engine. The vector index's id is part of the
    scope: give a rebuilt index a fixed one (``set_index_id``) to keep its entries.

    Example:
        >>> inner = vindex.as_query_engine(llm=llm)  # doctest: +SKIP
        >>> engine = SemanticCacheQueryEngine.wrap(inner, tenant="acme")  # doctest: +SKIP
        >>> engine.query("How do I reset my password?")  # doctest: +SKIP
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        index: SemanticIndex | None = None,
        *,
        tenant: str | None = None,
        corpus_version: str = "",
        scope_fields: Mapping[str, Any] | None = None,
        min_similarity: float | None = None,
        engine_kwargs: Mapping[str, Any] | None = None,
        redis_url: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(query_engine, BaseQueryEngine):
            raise TypeError(f"query_engine must be a BaseQueryEngine, got {type(query_engine)}")
        if index is None and options.get("max_error_rate") is not None:
            if min_similarity is not None:  # the static threshold the bound starts from
                options["min_similarity"], min_similarity = min_similarity, None
        elif min_similarity is not None and getattr(index, "learner", None) is not None:
            raise ValueError(
                "min_similarity= here would fix every lookup's threshold, so the index's "
                "max_error_rate would never apply: give min_similarity to the SemanticIndex "
                "(its static threshold while a scope is cold)"
            )
        self.index = _resolve_index(index, redis_url, namespace, options)
        if self.index.learner is not None:  # judges compare answers, not their JSON
            self.index.learner.add_answer_text(response_text)
        # Checked here: a bad threshold would otherwise fail every lookup (logged, and
        # the engine answering), so the cache would silently never serve.
        self.min_similarity = None if min_similarity is None else check_similarity(min_similarity)
        if self.min_similarity is not None and (hint := distance_like(self.min_similarity)):
            logger.warning("paracache: %s", hint)
        taken = sorted(set(scope_fields or {}) & DETECTED_FIELDS)
        if taken:  # it would replace what the engine says of itself: another corpus's answers
            raise ValueError(
                f"scope_fields may not set {taken}: the engine's own value is in the scope "
                f"(rename the field; for a rebuilt index, give it a fixed id: set_index_id)"
            )
        self._engine = query_engine
        self._engine_kwargs = dict(engine_kwargs or {})
        self._base = Scope(
            tenant="" if tenant is None else tenant,  # Scope refuses any other non-str
            corpus_version=corpus_version,
            fields=scope_fields or {},
        )
        self._vid = vectorizer_id(self.index.vectorizer)
        self._ids_memo: tuple[tuple[int, int], str] | None = None
        self._flights = SingleFlight(self.index)
        super().__init__(callback_manager=query_engine.callback_manager)

    @classmethod
    def wrap(
        cls,
        query_engine: BaseQueryEngine,
        index: SemanticIndex | None = None,
        tenant: str | None = None,
        **options: Any,
    ) -> SemanticCacheQueryEngine:
        """Wrap an existing engine (``options`` as in the constructor).

        Example:
            >>> cached = SemanticCacheQueryEngine.wrap(engine, namespace="docs")  # doctest: +SKIP
        """
        return cls(query_engine, index, tenant=tenant, **options)

    @classmethod
    def from_index(
        cls,
        vector_index: Any,
        index: SemanticIndex | None = None,
        *,
        tenant: str | None = None,
        corpus_version: str = "",
        scope_fields: Mapping[str, Any] | None = None,
        min_similarity: float | None = None,
        cache_options: Mapping[str, Any] | None = None,
        redis_url: str | None = None,
        namespace: str | None = None,
        **as_query_engine_kwargs: Any,
    ) -> SemanticCacheQueryEngine:
        """``vector_index.as_query_engine(**kwargs)``, wrapped, with the kwargs recorded
        in the scope (the engine does not keep e.g. ``response_mode``). When no ``index``
        is given, one is built from ``redis_url``, ``namespace`` and ``cache_options``
        (any other :class:`paracache.SemanticIndex` option: ``ttl``, ``max_error_rate``...);
        such an option among the other keyword arguments is refused with a ``TypeError``,
        since ``as_query_engine`` would silently ignore it.

        Example:
            >>> engine = SemanticCacheQueryEngine.from_index(
            ...     vindex, similarity_top_k=3, response_mode="compact", llm=llm,
            ...     namespace="docs", cache_options={"ttl": 3600})  # doctest: +SKIP
        """
        misplaced = sorted(set(as_query_engine_kwargs) & _index_options())
        if misplaced:
            raise TypeError(
                f"from_index() got the cache option(s) {misplaced} among as_query_engine's "
                "keyword arguments, which would ignore them: pass them in cache_options={...}"
            )
        options = dict(cache_options or {})
        for name, value in (("redis_url", redis_url), ("namespace", namespace)):
            if value is not None:
                if name in options:
                    raise ValueError(f"{name} given both as an argument and in cache_options")
                options[name] = value
        engine = vector_index.as_query_engine(**as_query_engine_kwargs)
        return cls(
            engine,
            index,
            tenant=tenant,
            corpus_version=corpus_version,
            scope_fields=scope_fields,
            min_similarity=min_similarity,
            engine_kwargs=as_query_engine_kwargs,
            **options,
        )

    # ------------------------------------------------------------------ scope

    @property
    def query_engine(self) -> BaseQueryEngine:
        """The wrapped engine."""
        return self._engine

    @property
    def tenant(self) -> str:
        """The tenant this instance reads and writes as."""
        return self._base.tenant

    @property
    def corpus_version(self) -> str:
        """The corpus version in the scope; set it (or bump it) after re-indexing."""
        return self._base.corpus_version

    @corpus_version.setter
    def corpus_version(self, value: str) -> None:
        self._base = self._base.replace(corpus_version=value)

    def bump_corpus_version(self, new: str) -> None:
        """Stop serving answers cached for earlier corpus versions.

        Example:
            >>> engine.bump_corpus_version("2026-11-22")  # doctest: +SKIP
        """
        self.corpus_version = new

    def for_tenant(self, tenant: str) -> SemanticCacheQueryEngine:
        """A sibling bound to another tenant, sharing the index and the wrapped engine.

        Example:
            >>> acme = engine.for_tenant("acme")  # doctest: +SKIP
        """
        if not isinstance(tenant, str):  # None would be the constructor's "no tenant"
            raise TypeError(f"tenant must be a str, got {type(tenant).__name__}")
        sibling = SemanticCacheQueryEngine(
            self._engine,
            self.index,
            tenant=tenant,
            corpus_version=self.corpus_version,
            scope_fields=self._base.fields,
            min_similarity=self.min_similarity,
            engine_kwargs=self._engine_kwargs,
        )
        sibling._flights = self._flights  # the tenant is part of each flight's key
        return sibling

    def scope_for(self, query_bundle: QueryBundle) -> Scope:
        """The scope a query is cached under (what changes its answer).

        Example:
            >>> engine.scope_for(QueryBundle("hi")).fields["similarity_top_k"]  # doctest: +SKIP
            2
        """
        return self._plan(query_bundle).scope

    def _plan(self, qb: QueryBundle) -> _Plan:
        """Introspect the engine (best effort; RetrieverQueryEngine in full)."""
        engine, llm, embed_model, streaming = self._engine, None, None, None
        fields: dict[str, Any] = {"engine": type(engine).__name__}
        parts: dict[str, Any] = {"custom_embedding_strs": qb.custom_embedding_strs}
        retriever = _attr(engine, "_retriever")
        if retriever is not None:
            fields["retriever"] = type(retriever).__name__
            if isinstance(top_k := _attr(retriever, "_similarity_top_k"), int):
                fields["similarity_top_k"] = top_k
            if isinstance(index_id := _attr(_attr(retriever, "_index"), "index_id"), str):
                fields["index_id"] = index_id
            for name in RETRIEVER_ATTRS:  # an error reading one: not cached (fail closed)
                parts[name] = _fingerprint(_read(retriever, name), strict=name == "_filters")
            parts["node_ids"] = self._ids_digest(_read(retriever, "_node_ids"))
            embed_model = _attr(retriever, "_embed_model")
        synth = _attr(engine, "_response_synthesizer")
        if synth is not None:
            fields["synthesizer"] = type(synth).__name__
            llm = _attr(synth, "_llm")
            streaming = s if isinstance(s := _attr(synth, "_streaming"), bool) else None
            parts["output_cls"] = _fingerprint(_attr(synth, "_output_cls"))
        model, params, parts["llm"] = llm_scope(llm) if isinstance(llm, LLM) else ("", {}, "")
        parts["postprocessors"] = _fingerprint(_attr(engine, "_node_postprocessors"))
        parts["prompts"] = sorted(
            (key, _prompt_fingerprint(p, llm)) for key, p in self.get_prompts().items()
        )
        kwargs = {k: v for k, v in self._engine_kwargs.items() if k not in _NOT_ANSWER_KWARGS}
        parts["engine_kwargs"] = _fingerprint(kwargs)
        if "response_mode" in kwargs:
            fields["response_mode"] = str(_fingerprint(kwargs["response_mode"]))
        scope = self._base.replace(
            model=model,
            params=params,
            context=digest("li-qe/v1", parts),
            fields={**fields, **self._base.fields},
        )
        return _Plan(qb.query_str, scope, streaming, embed_model)

    def _ids_digest(self, ids: Any) -> Any:
        """The retriever's node ids (the index's, as built) digested once per list."""
        if not isinstance(ids, list):
            return _fingerprint(ids)
        key = (id(ids), len(ids))
        if self._ids_memo is None or self._ids_memo[0] != key:
            self._ids_memo = (key, digest("node-ids", [str(i) for i in ids]))
        return self._ids_memo[1]

    # ------------------------------------------------------------------ query paths

    def _start(self, qb: QueryBundle) -> _Plan | None:
        if qb.image_path is not None:
            return None  # the answer depends on more than the text
        try:
            return self._plan(qb)
        except Exception as exc:
            logger.warning("paracache: cannot scope this query, bypassing the cache: %r", exc)
            return None

    def _serve(self, plan: _Plan, verdict: Verdict, is_async: bool) -> RESPONSE_TYPE | None:
        _emit("query_engine", plan.text, self.tenant, verdict)
        hit = verdict.hit
        if hit is None:
            return None
        info = {
            "layer": hit.layer,
            "similarity": hit.similarity,
            "entry_id": hit.entry_id,
            "cached_query": hit.prompt,
        }
        return self._answer(plan, hit.response, info, is_async)

    def _answer(
        self, plan: _Plan, payload: str, info: dict[str, Any], is_async: bool
    ) -> RESPONSE_TYPE | None:
        """A stored answer as the engine's kind of response (``None`` if unreadable)."""
        try:
            text, nodes, metadata, streamed = _load_response(payload)
        except (ValueError, KeyError, TypeError) as exc:
            self.index.core.recorder.error("corrupt_entry")
            logger.warning("paracache: unreadable LlamaIndex entry %s: %r", info["entry_id"], exc)
            return None
        metadata["paracache"] = info
        # A streaming engine gets a stream (of word chunks); entries serve both kinds.
        if not (streamed if plan.streaming is None else plan.streaming):
            return Response(text, source_nodes=nodes, metadata=metadata)
        if is_async:
            return AsyncStreamingResponse(_atext_gen(text), source_nodes=nodes, metadata=metadata)
        return StreamingResponse(_text_gen(text), source_nodes=nodes, metadata=metadata)

    def _shared(self, plan: _Plan, claim: Claim, is_async: bool) -> RESPONSE_TYPE | None:
        """Another caller's answer to the same query, made while this one waited."""
        if claim.payload is None:
            return None
        info = {"layer": "in-flight", "similarity": None, "entry_id": None, "cached_query": None}
        return self._answer(plan, claim.payload, info, is_async)

    def _flight(self, plan: _Plan | None, verdict: Verdict | None) -> AbstractContextManager[Claim]:
        """The single flight of a query that missed (:meth:`SingleFlight.flight`)."""
        if plan is None or verdict is None or not verdict.missed:
            return self._flights.flight("", join=False)
        return self._flights.flight(plan.text, plan.scope)

    def _aflight(
        self, plan: _Plan | None, verdict: Verdict | None
    ) -> AbstractAsyncContextManager[Claim]:
        """Async :meth:`_flight`."""
        if plan is None or verdict is None or not verdict.missed:
            return self._flights.aflight("", join=False)
        return self._flights.aflight(plan.text, plan.scope)

    def _inner_bundle(self, qb: QueryBundle, plan: _Plan | None, verdict: Verdict | None) -> Any:
        """The query for the wrapped engine, with the cache's embedding when it is exact:
        after a miss the lookup has embedded (and memoised) the normalised query."""
        if plan is None or verdict is None or verdict.outcome != "miss" or not plan.text:
            return qb
        emb, settings = plan.embed_model, self.index.settings
        text = settings.normalizer(qb.query_str)
        if (
            qb.custom_embedding_strs is None
            and qb.embedding is None
            and isinstance(emb, LlamaIndexEmbedding)
            and vectorizer_id(emb.vectorizer) == self._vid
            and emb.query_text(qb.query_str) == text
            and settings.embed_text(text) == text  # the cache embeds no other text
            and len(text) <= settings.max_embed_chars
        ):
            try:
                return QueryBundle(qb.query_str, embedding=self.index.embed(qb.query_str))
            except Exception as exc:
                logger.debug("paracache: not reusing the query embedding: %r", exc)
        return qb

    def _entry(self, plan: _Plan, result: Any, text: str, streamed: bool) -> dict[str, Any]:
        return {
            "prompt": plan.text,
            "scope": plan.scope,
            "metadata": {"source": "llama_index"},
            "response": _dump_response(text, result.source_nodes, result.metadata, streamed),
        }

    def _capture(self, plan: _Plan, result: Any, claim: Claim) -> dict[str, Any] | None:
        """The entry for a complete answer, or ``None``. A stream is wrapped to be stored
        once consumed, and the claim handed to it: the stream settles it (or, dropped
        before it started, its finalizer does)."""
        if isinstance(result, Response) and isinstance(result.response, str):
            return self._entry(plan, result, result.response, False)
        if isinstance(result, StreamingResponse) and result.response_gen is not None:
            moved = claim.hand_off()
            result.response_gen = self._tee(plan, result, result.response_gen, moved)
            SingleFlight.settle_when_dropped(result.response_gen, moved)
        elif isinstance(result, AsyncStreamingResponse) and result.response_gen is not None:
            moved = claim.hand_off()
            result.response_gen = self._atee(plan, result, result.response_gen, moved)
            SingleFlight.settle_when_dropped(result.response_gen, moved)
        return None  # a stream, or anything else (e.g. a PydanticResponse): not cached now

    def _tee(
        self,
        plan: _Plan,
        result: StreamingResponse,
        gen: Generator[str, None, None],
        claim: Claim,
    ) -> Generator[str, None, None]:
        parts = []
        with claim:  # an abandoned or failing stream stores nothing and hands nothing on
            for token in gen:
                parts.append(token)
                yield token
            entry = self._entry(plan, result, "".join(parts), True)
            claim.stored(entry["response"])
            try:
                self.index.store(**entry)
            except CacheClosedError:
                raise  # a programming error, not Redis down: not fail-open
            except Exception as exc:
                logger.warning("paracache: could not store the streamed answer: %r", exc)

    async def _atee(
        self,
        plan: _Plan,
        result: AsyncStreamingResponse,
        gen: AsyncGenerator[str, None],
        claim: Claim,
    ) -> AsyncGenerator[str, None]:
        parts = []
        async with claim:
            async for token in gen:
                parts.append(token)
                yield token
            entry = self._entry(plan, result, "".join(parts), True)
            claim.stored(entry["response"])
            try:
                await self.index.astore(**entry)
            except CacheClosedError:
                raise  # a programming error, not Redis down: not fail-open
            except Exception as exc:
                logger.warning("paracache: could not store the streamed answer: %r", exc)

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        plan, verdict = self._start(query_bundle), None
        if plan is not None:
            try:
                verdict = self.index.lookup_verdict(
                    plan.text, plan.scope, min_similarity=self.min_similarity
                )
                if (served := self._serve(plan, verdict, is_async=False)) is not None:
                    return served
            except CacheClosedError:
                raise  # a programming error, not Redis down: not fail-open
            except Exception as exc:
                logger.warning("paracache: lookup failed, asking the engine: %r", exc)
        with self._flight(plan, verdict) as claim:
            if plan is not None and (served := self._shared(plan, claim, False)) is not None:
                return served
            qb = self._inner_bundle(query_bundle, plan, verdict)
            if type(self._engine).query is BaseQueryEngine.query:
                result = self._engine._query(qb)
            else:  # the engine overrides query() (e.g. CustomQueryEngine)
                result = self._engine.query(qb)
            if plan is not None and (entry := self._capture(plan, result, claim)) is not None:
                claim.stored(entry["response"])
                try:
                    self.index.store(**entry)
                except CacheClosedError:
                    raise  # a programming error, not Redis down: not fail-open
                except Exception as exc:
                    logger.warning("paracache: could not store the answer: %r", exc)
        return result

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        plan, verdict = self._start(query_bundle), None
        if plan is not None:
            try:
                verdict = await self.index.alookup_verdict(
                    plan.text, plan.scope, min_similarity=self.min_similarity
                )
                if (served := self._serve(plan, verdict, is_async=True)) is not None:
                    return served
            except CacheClosedError:
                raise  # a programming error, not Redis down: not fail-open
            except Exception as exc:
                logger.warning("paracache: lookup failed, asking the engine: %r", exc)
        async with self._aflight(plan, verdict) as claim:
            if plan is not None and (served := self._shared(plan, claim, True)) is not None:
                return served
            qb = self._inner_bundle(query_bundle, plan, verdict)
            if type(self._engine).aquery is BaseQueryEngine.aquery:
                result = await self._engine._aquery(qb)
            else:
                result = await self._engine.aquery(qb)
            if plan is not None and (entry := self._capture(plan, result, claim)) is not None:
                claim.stored(entry["response"])
                try:
                    await self.index.astore(**entry)
                except CacheClosedError:
                    raise  # a programming error, not Redis down: not fail-open
                except Exception as exc:
                    logger.warning("paracache: could not store the answer: %r", exc)
        return result

    # ------------------------------------------------------------------ prompts

    def _get_prompts(self) -> PromptDictType:
        return self._engine._get_prompts()

    def _get_prompt_modules(self) -> PromptMixinType:
        return self._engine._get_prompt_modules()

    def _update_prompts(self, prompts_dict: PromptDictType) -> None:
        self._engine._update_prompts(prompts_dict)

