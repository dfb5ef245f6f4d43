"""What the README promises a new user, run as written against the real index and embedder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from paracache import Scope
from paracache.langchain import CachedChatModel, SemanticCache

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
