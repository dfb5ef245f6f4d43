"""What the LlamaIndex wrappers share: events, scope fingerprints, JSON payloads."""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any, TypeVar

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatResponse,
    CompletionResponse,
)
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import LLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.schema import (
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    RelatedNodeInfo,
    TextNode,
)

from ..index import SemanticIndex
from ..replay import replay_chunks
from ..scope import canonical_json, digest, endpoints_of
from ..values import Verdict

logger = logging.getLogger("paracache")

dispatcher = get_dispatcher("paracache.llama_index")

_R = TypeVar("_R", ChatResponse, CompletionResponse)

#: LLM attributes that name the model, in order of preference.
MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "engine")
#: LLM sampling settings copied into the scope. Besides these, only the class, ``metadata``,
#: :data:`SETTINGS_KEYS`, :data:`ENDPOINT_KEYS` and the system/query-wrapper prompts are
#: read: ``to_dict()`` carries the API key.
PARAM_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_new_tokens",
    "num_output",
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "reasoning_effort",
    "stop",
)
#: An LLM's settings kept in a dict (or a config object) that reaches the provider with
#: every call: ``additional_kwargs`` (OpenAI, Anthropic, Ollama...), ``generate_kwargs``
#: (HuggingFace, LlamaCPP), ``generation_config`` (Gemini)... Their data goes into the
#: scope's digest (secret-named keys dropped); an empty one digests as an absent one.
SETTINGS_KEYS = (
    "additional_kwargs",
    "generate_kwargs",
    "generation_config",
    "model_kwargs",
    "sampling_params",
    "response_format",
    "logprobs",
    "top_logprobs",
    "stop_sequences",
)
#: LLM attributes naming the server the requests go to (OpenAI's and OpenAILike's
#: ``api_base``, Ollama's and Anthropic's ``base_url``, Azure's ``azure_endpoint``...): two
#: OpenAI-compatible servers may serve different models under one model name. Their
#: :func:`paracache.scope.normalize_endpoint` goes into the scope's digest.
ENDPOINT_KEYS = ("api_base", "base_url", "azure_endpoint", "endpoint", "api_url", "model_url")
#: :data:`SETTINGS_KEYS` whose :data:`PARAM_KEYS` also go into the scope's params (for
#: ``max_temperature`` and display): LlamaIndex's LLMs send them last, so they win.
NESTED_KEYS = ("additional_kwargs", "generate_kwargs")
_MIRRORED = (
    "system_prompt",
    "messages_to_prompt",
    "completion_to_prompt",
    "output_parser",
    "pydantic_program_mode",
    "query_wrapper_prompt",
    "callback_manager",
)
#: ``as_query_engine`` kwargs that change how an answer is delivered, not what it says.
_NOT_ANSWER_KWARGS = frozenset({"streaming", "use_async", "verbose", "callback_manager"})
_SECRET_PARTS = ("secret", "password", "passwd", "credential", "auth", "cookie", "header")


# --------------------------------------------------------------------------- events


class CacheHitEvent(BaseEvent):
    """Emitted when paracache answers a query (``source="query_engine"``) or an LLM call."""

    source: str
    query: str
    layer: str
    similarity: float
    entry_id: str
    tenant: str
    latency_ms: float

    @classmethod
    def class_name(cls) -> str:
        """Event name, as LlamaIndex handlers see it."""
        return "CacheHitEvent"


class CacheMissEvent(BaseEvent):
    """Emitted when paracache cannot answer (``outcome``: miss, unreadable, bypass or error)."""

    source: str
    query: str
    outcome: str
    reason: str
    similarity: float | None = None
    tenant: str
    latency_ms: float

    @classmethod
    def class_name(cls) -> str:
        """Event name, as LlamaIndex handlers see it."""
        return "CacheMissEvent"


def _emit(source: str, query: str, tenant: str, verdict: Verdict) -> None:
    try:
        if verdict.hit is not None:
            dispatcher.event(
                CacheHitEvent(
                    source=source,
                    query=query,
                    layer=verdict.hit.layer,
                    similarity=verdict.hit.similarity,
                    entry_id=verdict.hit.entry_id,
                    tenant=tenant,
                    latency_ms=verdict.latency_ms,
                )
            )
        else:
            dispatcher.event(
                CacheMissEvent(
                    source=source,
                    query=query,
                    outcome=verdict.outcome,
                    reason=verdict.reason,
                    similarity=verdict.similarity,
                    tenant=tenant,
                    latency_ms=verdict.latency_ms,
                )
            )
    except Exception as exc:  # a handler must never break a query
        logger.warning("paracache: instrumentation handler raised: %r", exc)


# --------------------------------------------------------------------------- fingerprints


def _is_secret(name: str) -> bool:
    n = name.lower()
    return (
        n.endswith(("api_key", "apikey", "private_key", "access_key", "_token"))
        or n == "token"
        or any(part in n for part in _SECRET_PARTS)
    )


def _attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


class Unreadable(Exception):
    """Something that decides an answer (a retriever's filters) could not be read: the
    query is not cached (fail closed: better a miss than another user's answer)."""


def _read(obj: Any, name: str) -> Any:
    """An attribute that decides the answer: ``None`` if ``obj`` has none; any other
    error while reading it raises :class:`Unreadable`."""
    try:
        return getattr(obj, name, None)
    except Exception as exc:
        raise Unreadable(f"{type(obj).__name__}.{name}: {exc!r}") from exc


def _fingerprint(value: Any, depth: int = 0, strict: bool = False) -> Any:
    """JSON data standing for ``value`` in a scope digest. Secret-named keys are dropped
    and unknown objects reduced to their type name, so no credential enters a digest.
    ``strict`` (a retriever's filters): what cannot be told apart by its data (an unknown
    object, a model that will not dump, nesting past 8 levels) raises :class:`Unreadable`
    instead of standing for every value of its type."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return type(value).__name__
    if depth > 8:
        if strict:
            raise Unreadable(f"nested too deeply: {type(value).__name__}")
        return type(value).__name__
    if isinstance(value, enum.Enum):
        return _fingerprint(value.value, depth + 1)
    if isinstance(value, BasePromptTemplate):
        return _prompt_fingerprint(value, None)
    if isinstance(value, LLM):
        return list(llm_scope(value))
    if isinstance(value, BaseEmbedding):
        return [type(value).__name__, _attr(value, "model_name")]
    if isinstance(value, Mapping):
        return {
            str(k): _fingerprint(v, depth + 1, strict)
            for k, v in value.items()
            if not _is_secret(str(k))
        }
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v, depth + 1, strict) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_fingerprint(v, depth + 1, strict) for v in value), key=canonical_json)
    if isinstance(value, BaseModel):
        try:
            dumped = value.model_dump()
        except Exception as exc:
            if strict:
                raise Unreadable(f"{type(value).__name__} will not dump: {exc!r}") from exc
            return type(value).__name__
        return [type(value).__name__, _fingerprint(dumped, depth + 1, strict)]
    if isinstance(value, type):
        return value.__qualname__
    if strict:
        raise Unreadable(f"cannot fingerprint a {type(value).__name__}")
    return type(value).__name__


def _prompt_fingerprint(prompt: BasePromptTemplate, llm: Any) -> Any:
    try:
        template = prompt.get_template(llm=llm)
    except Exception:
        template = ""
    return [
        type(prompt).__name__,
        template,
        _fingerprint(prompt.kwargs, 1),
        _fingerprint(prompt.template_var_mappings, 1),
    ]


class WrapsLLM:
    """Marks paracache's own LLM wrappers (:class:`paracache.llama_index.CachedLLM`):
    their scope is the wrapped model's (``.llm``). A plain mixin, so this module need
    not import the wrapper's."""


def llm_scope(llm: Any) -> tuple[str, dict[str, Any], str]:
    """``(model, sampling params, digest of its other settings)`` of a LlamaIndex LLM.

    Only whitelisted attributes are read (:data:`MODEL_KEYS`, :data:`PARAM_KEYS`,
    :data:`SETTINGS_KEYS`, :data:`ENDPOINT_KEYS` (normalised), the class, ``metadata``,
    the system and query-wrapper prompts): never ``to_dict()``.

    Example:
        >>> from llama_index.core.llms import MockLLM
        >>> llm_scope(MockLLM(max_tokens=8))[:2]
        ('MockLLM', {'max_tokens': 8})
    """
    if isinstance(llm, WrapsLLM):
        llm = getattr(llm, "llm")  # noqa: B009 - the wrapped model
    try:
        meta: dict[str, Any] = llm.metadata.model_dump(mode="json")
    except Exception:
        meta = {}
    model = next((v for k in MODEL_KEYS if isinstance(v := _attr(llm, k), str) and v), "")
    if not model:
        name = meta.get("model_name")
        model = name if isinstance(name, str) and name not in ("", "unknown") else ""
    model = model or type(llm).__name__
    params: dict[str, Any] = {}
    for key in PARAM_KEYS:
        value = _attr(llm, key)
        if isinstance(value, (str, int, float, bool)) and not (
            isinstance(value, float) and not math.isfinite(value)
        ):
            params[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            params[key] = list(value)
    for key in NESTED_KEYS:  # sent with every request, over the LLM's own settings
        nested = _attr(llm, key)
        if isinstance(nested, Mapping):
            for name in PARAM_KEYS:
                value = nested.get(name)
                if isinstance(value, (str, int, float, bool)) and not (
                    isinstance(value, float) and not math.isfinite(value)
                ):
                    params[name] = value
    wrapper = _attr(llm, "query_wrapper_prompt")
    parts: list[Any] = [
        type(llm).__module__,
        type(llm).__qualname__,
        _fingerprint(meta),
        _attr(llm, "system_prompt") if isinstance(_attr(llm, "system_prompt"), str) else None,
        _fingerprint(wrapper) if isinstance(wrapper, BasePromptTemplate) else None,
    ]
    settings = {
        key: _fingerprint(value)
        for key in SETTINGS_KEYS
        if (value := _attr(llm, key)) is not None and value != {} and value != []
    }
    if settings:  # only then: an LLM without any keeps the digest it had
        parts.append(settings)
    endpoints = endpoints_of(llm, ENDPOINT_KEYS)
    if endpoints:  # likewise: an LLM with no endpoint (MockLLM) keeps its digest
        parts.append(["endpoint", endpoints])
    context = digest("li-llm/v1", *parts)
    return model, params, context


# --------------------------------------------------------------------------- JSON payloads

_DROP: Any = object()


def _json_part(value: Any) -> Any:
    """``value`` without its non-JSON parts (``_DROP`` if nothing is left)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, Mapping):
        out = {}
        for k, raw in value.items():
            if isinstance(k, str) and (v := _json_part(raw)) is not _DROP:
                out[k] = v
        return out
    if isinstance(value, (list, tuple)):
        return [v for raw in value if (v := _json_part(raw)) is not _DROP]
    return _DROP


def _json_dict(value: Any) -> dict[str, Any]:
    part = _json_part(value) if isinstance(value, Mapping) else {}
    return part if isinstance(part, dict) else {}


def _dump_response(text: str, nodes: Sequence[NodeWithScore], metadata: Any, streamed: bool) -> str:
    items = []
    for nws in nodes:
        node = nws.node
        score = nws.score if nws.score is None or math.isfinite(nws.score) else None
        items.append(
            {
                "id": node.node_id,
                "text": node.get_content(metadata_mode=MetadataMode.NONE),
                "metadata": _json_dict(node.metadata),
                "score": score,
                "ref_doc_id": node.ref_doc_id,
                "excluded_embed": list(node.excluded_embed_metadata_keys),
                "excluded_llm": list(node.excluded_llm_metadata_keys),
                "start": _char_index(_attr(node, "start_char_idx")),
                "end": _char_index(_attr(node, "end_char_idx")),
                "relationships": _dump_relationships(node.relationships),
            }
        )
    payload = {
        "v": 1,
        "kind": "stream" if streamed else "text",
        "response": text,
        "source_nodes": items,
        "metadata": _json_dict(metadata),
    }
    return json.dumps(payload, ensure_ascii=False, allow_nan=False)


def _char_index(value: Any) -> int | None:
    """A node's start or end character offset (``None`` if it has none)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dump_relationships(relationships: Mapping[Any, Any]) -> dict[str, Any]:
    """A node's relationships (source, previous, next, parent, children) as JSON; one
    that will not dump is left out."""
    out: dict[str, Any] = {}
    for rel, info in relationships.items():
        try:
            key = str(NodeRelationship(rel).value)
            if isinstance(info, list):
                out[key] = [_json_dict(i.model_dump(mode="json")) for i in info]
            else:
                out[key] = _json_dict(info.model_dump(mode="json"))
        except Exception:  # an odd relationship is left out, the answer kept
            continue
    return out


def _load_relationships(data: Any) -> dict[NodeRelationship, Any]:
    """:func:`_dump_relationships`'s output as node relationships (what cannot be read
    is left out; entries written before they were stored have none)."""
    out: dict[NodeRelationship, Any] = {}
    if not isinstance(data, Mapping):
        return out
    for key, value in data.items():
        try:
            rel = NodeRelationship(key)
            if isinstance(value, list):
                out[rel] = [RelatedNodeInfo.model_validate(v) for v in value]
            else:
                out[rel] = RelatedNodeInfo.model_validate(value)
        except Exception:
            continue
    return out


def _load_response(payload: str) -> tuple[str, list[NodeWithScore], dict[str, Any], bool]:
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data["response"], str):
        raise ValueError("not a paracache LlamaIndex entry")
    nodes = []
    for item in data["source_nodes"]:
        relationships = _load_relationships(item.get("relationships"))
        if item.get("ref_doc_id") and NodeRelationship.SOURCE not in relationships:
            relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=item["ref_doc_id"])
        node = TextNode(
            id_=item["id"],
            text=item["text"],
            metadata=item["metadata"],
            excluded_embed_metadata_keys=item["excluded_embed"],
            excluded_llm_metadata_keys=item["excluded_llm"],
            relationships=relationships,
            start_char_idx=_char_index(item.get("start")),
            end_char_idx=_char_index(item.get("end")),
        )
        nodes.append(NodeWithScore(node=node, score=item["score"]))
    return data["response"], nodes, dict(data["metadata"]), data["kind"] == "stream"


def response_text(payload: str) -> str:
    """The answer text of a stored query-engine response (what a judge compares);
    anything else as it is.

    Example:
        >>> response_text(_dump_response("Reset it in Settings.", [], {}, False))
        'Reset it in Settings.'
    """
    try:
        return _load_response(payload)[0]
    except Exception:  # not a query-engine entry: judge the stored text itself
        return payload


def _text_gen(text: str) -> Generator[str, None, None]:
    """A cached answer replayed as a stream of word chunks (:mod:`paracache.replay`)."""
    yield from replay_chunks(text)


async def _atext_gen(text: str) -> AsyncGenerator[str, None]:
    """Async :func:`_text_gen`."""
    for piece in replay_chunks(text):
        yield piece


def _resolve_index(
    index: SemanticIndex | None,
    redis_url: str | None,
    namespace: str | None,
    options: Mapping[str, Any],
) -> SemanticIndex:
    if index is None:
        return SemanticIndex(redis_url, namespace=namespace or "llama_index", **options)
    if not isinstance(index, SemanticIndex):
        raise TypeError(f"index must be a SemanticIndex, got {type(index).__name__}")
    if redis_url is not None or namespace is not None or options:
        raise ValueError(
            "give either index= or the options to build one (redis_url, namespace, ...), not both"
        )
    return index
