"""LangChain adapter: ``SemanticCache``, a ``BaseCache`` over :class:`paracache.SemanticIndex`.

It only translates. LangChain hands a cache two strings: ``prompt`` (for chat models,
the JSON of all messages) and ``llm_string`` (the model's class, settings and call
parameters). The adapter embeds only the last human message's text; the system
prompt, earlier turns, tools, response format and the full ``llm_string`` become the
entry's scope, so a hit needs the same conversation context and model settings.
Generations are stored as plain JSON (no pickle, no ``langchain_core.load.loads`` of
Redis data) and rebuilt as fresh objects on every hit.

Example:
    >>> from langchain_core.globals import set_llm_cache
    >>> from paracache.langchain import SemanticCache
    >>> set_llm_cache(SemanticCache())      # embedded Redis + offline embeddings  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation

from .index import SemanticIndex
from .langchain_chat import CachedChatModel
from .scope import Scope, digest
from .singleflight import Claim, SingleFlight
from .values import Verdict, check_similarity, distance_like

__all__ = [
    "CachedChatModel",
    "SemanticCache",
    "generations_text",
    "parse_llm_string",
    "split_prompt",
]

logger = logging.getLogger("paracache")

#: ``llm_string`` keys that name the model, in order of preference.
MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "azure_deployment", "repo_id")
#: Sampling parameters copied into the scope (for TTL rules, clearing and display).
#: Everything else in ``llm_string`` still scopes through its digest. Keys holding
#: secrets are never read.
PARAM_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_new_tokens",
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "reasoning_effort",
    "stop",
)

#: ``llm_string`` keys holding settings sent with the request, which win over the model's
#: own (``extra_body`` is merged into the HTTP body last): their :data:`PARAM_KEYS` are read.
NESTED_KEYS = ("model_kwargs", "extra_body")


#: CPython 3.11 can raise SystemError ("AST constructor recursion depth mismatch") when
#: threads build ASTs at once (cpython gh-106905); ``ast.literal_eval`` builds one.
_AST_LOCK = threading.Lock()
_FLIGHTS_LOCK = threading.Lock()


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def parse_llm_string(llm_string: str) -> tuple[str, dict[str, Any]]:
    """Best-effort ``(model, sampling params)`` from LangChain's ``llm_string``.

    Never fails: an unparseable string gives ``("", {})`` (its digest still scopes).
    Memoised per ``llm_string`` (the last :data:`PARSED_LLM_STRINGS` of them): a model's
    string is parsed once, not on every lookup.

    Example:
        >>> parse_llm_string("[('_type', 'openai-chat'), ('model_name', 'gpt-4o'), "
        ...                  "('temperature', 0.2), ('openai_api_key', 'sk-...')]")
        ('gpt-4o', {'temperature': 0.2})
    """
    model, params = _parse_llm_string(llm_string)
    return model, {k: list(v) if isinstance(v, list) else v for k, v in params}


#: How many distinct ``llm_string`` values :func:`parse_llm_string` remembers.
PARSED_LLM_STRINGS = 256


@functools.lru_cache(maxsize=PARSED_LLM_STRINGS)
def _parse_llm_string(llm_string: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """:func:`parse_llm_string`, memoised (its params as a tuple: shared, not mutated)."""
    settings: dict[str, Any] = {}
    rest = llm_string
    try:
        obj, end = json.JSONDecoder().raw_decode(llm_string)
        if isinstance(obj, dict):
            kwargs = obj.get("kwargs")
            if isinstance(kwargs, dict):
                settings.update(kwargs)
            ident = obj.get("id")
            if isinstance(ident, list) and ident and isinstance(ident[-1], str):
                settings.setdefault("_type", ident[-1])
            rest = llm_string[end:]
            rest = rest[3:] if rest.startswith("---") else ""
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can
        pass
    if rest.startswith("["):
        try:
            with _AST_LOCK:
                pairs = ast.literal_eval(rest)
            if isinstance(pairs, list):
                for pair in pairs:
                    if isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str):
                        settings[pair[0]] = pair[1]
        except (ValueError, SyntaxError, MemoryError, RecursionError, SystemError):
            pass  # SystemError: CPython's AST checks on some deeply nested input
    for key in NESTED_KEYS:  # what these send overrides the model's own settings
        nested = settings.get(key)
        if isinstance(nested, dict):
            settings.update({k: nested[k] for k in PARAM_KEYS if k in nested})
    model = next(
        (settings[k] for k in MODEL_KEYS if isinstance(settings.get(k), str) and settings[k]),
        "",
    )
    if not model and isinstance(settings.get("_type"), str):
        model = settings["_type"]
    params: dict[str, Any] = {}
    for key in PARAM_KEYS:
        value = settings.get(key)
        if value is None:
            continue
        if _is_scalar(value) and not (isinstance(value, float) and not math.isfinite(value)):
            params[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            params[key] = list(value)
    return model, tuple(params.items())


def _content_text(content: Any) -> tuple[str, list[Any]]:
    """A message content's text, and whatever else it holds (images, files...)."""
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    other: list[Any] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                texts.append(block)
            elif (
                isinstance(block, dict)
                and block.get("type") == "text"
                and isinstance(block.get("text"), str)
            ):
                texts.append(block["text"])
            else:
                other.append(block)
    else:
        other.append(content)
    return "\n".join(texts), other


def split_prompt(prompt: str) -> tuple[str, str, bool]:
    """Split LangChain's ``prompt`` into ``(text to match, context digest, semantic)``.

    For a chat prompt the text is the last human message's text; everything else
    (system prompt, earlier turns, non-text content) goes into the context digest.
    If the last message is not from the human (e.g. a tool result), only the exact
    layer may answer. A plain-LLM prompt is matched as it is.

    Example:
        >>> text, ctx, semantic = split_prompt('[{"lc": 1, "type": "constructor", '
        ...     '"id": ["langchain", "schema", "messages", "HumanMessage"], '
        ...     '"kwargs": {"content": "Hi there", "type": "human"}}]')
        >>> text, semantic
        ('Hi there', True)
    """
    if not prompt.startswith("[{"):
        return prompt, "", True
    try:
        messages = json.loads(prompt)
    except (ValueError, RecursionError):  # a plain LLM's prompt is the user's text
        return prompt, "", True
    if not (
        isinstance(messages, list)
        and messages
        and all(isinstance(m, dict) and isinstance(m.get("kwargs"), dict) for m in messages)
    ):
        return prompt, "", True
    last = messages[-1]["kwargs"]
    if last.get("type") != "human":
        return "", digest("chat/v1", messages), False
    text, other = _content_text(last.get("content"))
    rest = {k: v for k, v in last.items() if k != "content"}
    return text, digest("chat/v1", messages[:-1], rest, other), True


def _dump_generations(generations: Sequence[Generation]) -> tuple[str, int]:
    """Serialise generations as plain JSON; also the tokens they cost, if known."""
    items: list[dict[str, Any]] = []
    tokens = 0
    for gen in generations:
        if not isinstance(gen, Generation):
            raise TypeError(f"return_val must hold Generation objects, got {type(gen).__name__}")
        if isinstance(gen, ChatGeneration):
            usage = getattr(gen.message, "usage_metadata", None) or {}
            tokens += int(usage.get("total_tokens", 0) or 0)
            items.append(
                {
                    "kind": "chat",
                    "message": message_to_dict(gen.message),
                    "generation_info": gen.generation_info,
                }
            )
        else:
            items.append(
                {
                    "kind": "text",
                    "text": gen.text,
                    "generation_info": gen.generation_info,
                }
            )
    payload = json.dumps({"v": 1, "generations": items}, ensure_ascii=False)
    try:
        payload.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates survive as \ud800 escapes, exactly
        payload = json.dumps({"v": 1, "generations": items})
    return payload, tokens


def generations_text(payload: str) -> str:
    """The text of the generations stored by this adapter (what a judge compares), with
    their tool calls (names and arguments as JSON, not their ids: a tool-calling answer
    has no text, and two calls with other arguments are different answers); anything
    else is returned as it is.

    Example:
        >>> generations_text(_dump_generations([Generation(text="Yes.")])[0])
        'Yes.'
        >>> from langchain_core.messages import AIMessage
        >>> call = {"name": "activate", "args": {"card": "new"}, "id": "call-1"}
        >>> message = AIMessage(content="", tool_calls=[call])
        >>> generations_text(_dump_generations([ChatGeneration(message=message)])[0])
        '[{"args": {"card": "new"}, "name": "activate"}]'
    """
    try:
        generations = _load_generations(payload)
    except (ValueError, KeyError, TypeError):
        return payload
    return "\n".join(_judged_text(g) for g in generations)


def _judged_text(generation: Generation) -> str:
    """A generation's text and, if it has any, its tool calls spelled as JSON."""
    message = getattr(generation, "message", None)
    calls = [
        {"name": call.get("name"), "args": call.get("args")}
        for call in [
            *(getattr(message, "tool_calls", None) or []),
            *(getattr(message, "invalid_tool_calls", None) or []),
        ]
    ]
    if not calls:
        return generation.text
    spelled = json.dumps(calls, sort_keys=True, ensure_ascii=False, default=str)
    return f"{generation.text}\n{spelled}" if generation.text else spelled


def _check_bound_threshold(index: Any, min_similarity: Any) -> None:
    """An adapter's own threshold on an index with the error bound would be every
    lookup's threshold: the learned one would never apply. Refused (``ValueError``)."""
    if min_similarity is not None and getattr(index, "learner", None) is not None:
        raise ValueError(
            "min_similarity= here would fix every lookup's threshold, so the index's "
            "max_error_rate would never apply: give min_similarity to the SemanticIndex "
            "(its static threshold while a scope is cold)"
        )


def _load_generations(payload: str) -> list[Generation]:
    """Rebuild fresh generations from :func:`_dump_generations` output."""
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ValueError("not a paracache LangChain entry")
    out: list[Generation] = []
    for item in data["generations"]:
        if item["kind"] == "chat":
            message = messages_from_dict([item["message"]])[0]
            if getattr(message, "id", None) is not None:
                message = message.model_copy(update={"id": None})
            out.append(ChatGeneration(message=message, generation_info=item["generation_info"]))
        elif item["kind"] == "text":
            out.append(Generation(text=item["text"], generation_info=item["generation_info"]))
        else:
            raise ValueError(f"unknown generation kind {item['kind']!r}")
    return out


#: Scopes an adapter keeps parsed (one per model setup and conversation context).
_SCOPES_KEPT = 256


def _peer_option_error(name: str, value: Any) -> TypeError | None:
    """What a peer cache's constructor argument is called here (langchain-redis, RedisVL,
    LiteLLM, GPTCache), as the error to raise, or ``None`` for any other name."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "distance_threshold":
        hint = "give min_similarity= instead"
        if number and 0 <= value <= 1:
            hint = f"give min_similarity={1 - value:g} (1 - distance_threshold) instead"
        elif number and 1 < value <= 2:
            hint = "a distance above 1 is a similarity below 0, which has no equivalent"
        return TypeError(
            "distance_threshold is a cosine distance (langchain-redis, RedisVL: lower is "
            f"stricter); paracache takes a cosine similarity (higher is stricter): {hint}"
        )
    if name == "similarity_threshold":
        hint = f"min_similarity={value:g}" if number else "min_similarity="
        return TypeError(
            f"similarity_threshold is called min_similarity here: give {hint} (LiteLLM's "
            "means the same; GPTCache's does not, see docs/migrating.md)"
        )
    if name in ("name", "prefix", "index_name"):
        return TypeError(
            f"{name}= has no equivalent: paracache names its index and keys itself "
            "(paracache:{namespace}:...); give namespace= to keep caches apart"
        )
    if name == "filterable_fields":
        return TypeError(
            "filterable_fields= has no equivalent: give fields={...} (scope fields, an exact "
            "pre-filter on every lookup) or tenant="
        )
    if name in ("embeddings", "embedding"):
        return TypeError(
            f"{name}= is called vectorizer= here and takes a RedisVL vectorizer: wrap a "
            "LangChain Embeddings as redisvl.utils.vectorize.CustomVectorizer("
            "embed=emb.embed_query, embed_many=emb.embed_documents)"
        )
    return None


class SemanticCache(BaseCache):
    """A LangChain LLM cache answering paraphrases from Redis, scoped and fail-open.

    Args:
        index: A :class:`paracache.SemanticIndex` to share (e.g. with LlamaIndex).
            Otherwise one is built from ``redis_url``, ``namespace`` and ``**options``.
        redis_url: Redis URL (default: env ``PARACACHE_REDIS_URL``/``REDIS_URL``, else
            an embedded Redis).
        namespace: Isolates a whole cache (default ``"langchain"``).
        tenant: Bound to this instance: entries it writes and reads are this tenant's,
            and :meth:`clear` deletes only theirs, the empty tenant ``""`` too. ``None``
            (the default): no tenant (the entries are the empty tenant's), and
            :meth:`clear` may delete every tenant's.
        corpus_version: Bump after re-indexing whatever grounds the answers.
        fields: Further user scope fields.
        min_similarity: Semantic threshold (cosine similarity, higher is stricter).
            With ``max_error_rate``: the static threshold the bound starts from (while
            a scope is cold); refused with an ``index`` that has the bound, whose
            learned threshold it would override.
        max_error_rate: δ, the share of lookups that may be answered wrongly, in (0, 1)
            (``None``: the static rules). The cache labels its misses with the answers
            LangChain passes to ``update`` and learns per scope where serving stays
            under δ; see ``SemanticIndex(max_error_rate=...)``. Give it here or on
            ``index=``, not both.
        on_verdict: Called with each lookup's :class:`paracache.Verdict`.
        **options: Any other :class:`paracache.SemanticIndex` option (``ttl``,
            ``ttl_policy``, ``vectorizer``, ``dtype``...).

    Example:
        >>> from langchain_core.globals import set_llm_cache
        >>> cache = SemanticCache(namespace="support", tenant="acme", ttl=3600)  # doctest: +SKIP
        >>> set_llm_cache(cache)                                                # doctest: +SKIP
        >>> # or on one model: ChatOpenAI(model="gpt-4o-mini", cache=cache)
    """

    def __init__(
        self,
        index: SemanticIndex | None = None,
        *,
        redis_url: str | None = None,
        namespace: str | None = None,
        tenant: str | None = None,
        corpus_version: str = "",
        fields: Mapping[str, Any] | None = None,
        min_similarity: float | None = None,
        max_error_rate: float | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
        **options: Any,
    ) -> None:
        for option, value in options.items():
            error = _peer_option_error(option, value)
            if error is not None:
                raise error
        if max_error_rate is not None:
            if index is not None:
                raise ValueError("give max_error_rate= to the SemanticIndex passed as index=")
            options["max_error_rate"] = max_error_rate
            if min_similarity is not None:  # the static threshold the bound starts from
                options["min_similarity"], min_similarity = min_similarity, None
        elif index is not None:
            _check_bound_threshold(index, min_similarity)
        if index is not None:
            if not isinstance(index, SemanticIndex):
                raise TypeError(f"index must be a SemanticIndex, got {type(index).__name__}")
            if redis_url is not None or namespace is not None or options:
                raise ValueError(
                    "give either index= or the options to build one "
                    "(redis_url, namespace, ...), not both"
                )
        else:
            index = SemanticIndex(redis_url, namespace=namespace or "langchain", **options)
        if on_verdict is not None and not callable(on_verdict):
            raise TypeError("on_verdict must be callable")
        self.index = index
        if index.learner is not None:  # judges compare the answers' text, not their JSON
            index.learner.add_answer_text(generations_text)
        # Checked here: a bad threshold would otherwise raise out of every lookup.
        self.min_similarity = None if min_similarity is None else check_similarity(min_similarity)
        if self.min_similarity is not None and (hint := distance_like(self.min_similarity)):
            logger.warning("paracache: %s", hint)
        self.on_verdict = on_verdict
        # Validated once here, so a bad tenant fails at construction, not per call.
        self._base = Scope(
            tenant="" if tenant is None else tenant,
            corpus_version=corpus_version,
            fields=fields or {},
        )
        #: (llm_string, context) -> scope: what every call would parse and digest again.
        self._scopes: dict[tuple[str, str], Scope] = {}
        self._flights: SingleFlight | None = None
        #: Whether :meth:`clear` keeps to this tenant: a tenant was given (``""`` is a
        #: tenant like any other: ``tenant=user.tenant`` with an empty one).
        self._bound = tenant is not None

    @property
    def tenant(self) -> str:
        """The tenant this instance reads and writes as."""
        return self._base.tenant

    def __copy__(self) -> SemanticCache:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SemanticCache:
        """Shared: a deep copy of a model with ``cache=`` (``model_copy(deep=True)``) uses
        the same cache, as it would the same connection pool."""
        return self

    def for_tenant(self, tenant: str) -> SemanticCache:
        """The same cache (same index and connections) bound to another tenant: its
        :meth:`clear` deletes only that tenant's entries, the empty tenant's too.

        Example:
            >>> acme = cache.for_tenant("acme")  # doctest: +SKIP
        """
        if not isinstance(tenant, str):  # None would be the constructor's "no tenant"
            raise TypeError(f"tenant must be a str, got {type(tenant).__name__}")
        clone = SemanticCache(
            self.index,
            min_similarity=self.min_similarity,
            on_verdict=self.on_verdict,
            tenant=tenant,
            corpus_version=self._base.corpus_version,
            fields=self._base.fields,
        )
        clone._flights = self.flights  # the scope (tenant) is part of each flight's key
        return clone

    def _request(self, prompt: str, llm_string: str) -> tuple[str, Scope, bool]:
        if not isinstance(prompt, str) or not isinstance(llm_string, str):
            raise TypeError("prompt and llm_string must be str")
        text, context, semantic = split_prompt(prompt)
        key = (llm_string, context)
        scope = self._scopes.get(key)
        if scope is None:  # parsed once per model and context (a scope is frozen)
            model, params = parse_llm_string(llm_string)
            scope = self._base.replace(
                model=model, params=params, context=digest("lc/v1", llm_string, context)
            )
            if len(self._scopes) >= _SCOPES_KEPT:
                self._scopes.clear()
            self._scopes[key] = scope
        return text, scope, semantic

    def _to_generations(self, verdict: Verdict) -> list[Generation] | None:
        if self.on_verdict is not None:
            try:
                self.on_verdict(verdict)
            except Exception as exc:
                logger.warning("paracache: on_verdict callback raised: %r", exc)
        if verdict.hit is None:
            return None
        try:
            return _load_generations(verdict.hit.response)
        except (ValueError, KeyError, TypeError) as exc:
            self.index.core.recorder.error("corrupt_entry")
            logger.warning(
                "paracache: unreadable LangChain entry %s: %r", verdict.hit.entry_id, exc
            )
            return None

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Look up generations for ``prompt`` under ``llm_string``; ``None`` on a miss."""
        return self.decode(self.lookup_verdict(prompt, llm_string))

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup`, without blocking the event loop."""
        return self.decode(await self.alookup_verdict(prompt, llm_string))

    def lookup_verdict(self, prompt: str, llm_string: str) -> Verdict:
        """The lookup's full :class:`paracache.Verdict` (:meth:`decode` turns a hit into
        generations).

        Example:
            >>> verdict = cache.lookup_verdict(prompt, llm_string)  # doctest: +SKIP
            >>> verdict.outcome, cache.decode(verdict)               # doctest: +SKIP
        """
        text, scope, semantic = self._request(prompt, llm_string)
        return self.index.lookup_verdict(
            text, scope, min_similarity=self.min_similarity, semantic=semantic
        )

    async def alookup_verdict(self, prompt: str, llm_string: str) -> Verdict:
        """Async :meth:`lookup_verdict`."""
        text, scope, semantic = self._request(prompt, llm_string)
        return await self.index.alookup_verdict(
            text, scope, min_similarity=self.min_similarity, semantic=semantic
        )

    def decode(self, verdict: Verdict) -> list[Generation] | None:
        """A verdict's generations (fresh objects), ``None`` on a miss or an unreadable
        entry; calls ``on_verdict`` first."""
        return self._to_generations(verdict)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store generations for ``prompt`` under ``llm_string``."""
        self.store_generations(prompt, llm_string, return_val)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Async :meth:`update`."""
        await self.astore_generations(prompt, llm_string, return_val)

    def store_generations(
        self, prompt: str, llm_string: str, generations: Sequence[Generation]
    ) -> str:
        """:meth:`update`, returning the stored payload (for :meth:`load`), which is
        returned even when Redis dropped the write."""
        text, scope, semantic = self._request(prompt, llm_string)
        payload, tokens = _dump_generations(generations)
        self.index.store(
            text,
            payload,
            scope,
            tokens=tokens,
            semantic=semantic,
            metadata={"source": "langchain"},
        )
        return payload

    async def astore_generations(
        self, prompt: str, llm_string: str, generations: Sequence[Generation]
    ) -> str:
        """Async :meth:`store_generations`."""
        text, scope, semantic = self._request(prompt, llm_string)
        payload, tokens = _dump_generations(generations)
        await self.index.astore(
            text,
            payload,
            scope,
            tokens=tokens,
            semantic=semantic,
            metadata={"source": "langchain"},
        )
        return payload

    @staticmethod
    def load(payload: str) -> list[Generation]:
        """Fresh generations from a stored payload (``ValueError`` if it is not one)."""
        return _load_generations(payload)

    @property
    def flights(self) -> SingleFlight:
        """The single-flight coordinator of this cache's misses (shared by every
        :class:`CachedChatModel` over it and by :meth:`for_tenant` clones); assign a
        :class:`paracache.singleflight.SingleFlight` to change its ``wait``."""
        if self._flights is None:
            with _FLIGHTS_LOCK:
                if self._flights is None:
                    self._flights = SingleFlight(self.index)
        return self._flights

    @flights.setter
    def flights(self, value: SingleFlight) -> None:
        if not isinstance(value, SingleFlight) or value.index is not self.index:
            raise TypeError("flights must be a SingleFlight over this cache's index")
        self._flights = value

    def claim(self, prompt: str, llm_string: str) -> Claim:
        """Join the single flight of this request after a miss (see
        :mod:`paracache.singleflight`); may wait for another caller's answer."""
        text, scope, _ = self._request(prompt, llm_string)
        return self.flights.claim(text, scope)

    async def aclaim(self, prompt: str, llm_string: str) -> Claim:
        """Async :meth:`claim`."""
        text, scope, _ = self._request(prompt, llm_string)
        return await self.flights.aclaim(text, scope)

    @contextlib.contextmanager
    def flight(self, prompt: str, llm_string: str, *, join: bool = True) -> Iterator[Claim]:
        """:meth:`claim` (if ``join``) as :meth:`SingleFlight.flight
        <paracache.singleflight.SingleFlight.flight>`: settled however the block is left."""
        if not join:
            yield Claim()  # nothing claimed: nothing to settle
            return
        text, scope, _ = self._request(prompt, llm_string)
        with self.flights.flight(text, scope) as claim:
            yield claim

    @contextlib.asynccontextmanager
    async def aflight(
        self, prompt: str, llm_string: str, *, join: bool = True
    ) -> AsyncIterator[Claim]:
        """Async :meth:`flight` (a cancelled task settles too)."""
        if not join:
            yield Claim()
            return
        text, scope, _ = self._request(prompt, llm_string)
        async with self.flights.aflight(text, scope) as claim:
            yield claim

    def _clear_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - {"tenant", "model", "corpus_version"}
        if unknown:
            raise TypeError(f"clear() got unexpected arguments {sorted(unknown)}")
        if self._bound:  # a tenant-bound cache clears only its own tenant's entries
            if kwargs.get("tenant", self.tenant) != self.tenant:
                raise ValueError("this cache is bound to another tenant")
            kwargs["tenant"] = self.tenant
        return kwargs

    def clear(self, **kwargs: Any) -> None:
        """Clear the cache: all of it, or by ``tenant=``, ``model=``, ``corpus_version=``.

        A tenant-bound instance (given a ``tenant``, ``""`` too, or made by
        :meth:`for_tenant`) only ever clears its own tenant's entries.
        """
        self.index.clear(**self._clear_args(kwargs))

    async def aclear(self, **kwargs: Any) -> None:
        """Async :meth:`clear`."""
        await self.index.aclear(**self._clear_args(kwargs))
