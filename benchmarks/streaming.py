"""Streamed hits (issue 16): how soon the first chunk of a cached answer reaches the caller.

For each of ``--n`` paraphrased questions (each a semantic hit on an entry stored
beforehand), ``CachedChatModel.stream`` / ``astream`` is consumed and three instants are
taken: the call, the end of the cache lookup (the index's ``on_verdict`` hook, called as
the lookup's verdict is made) and the arrival of the first chunk. Reported: the time from
the lookup's end to the first chunk (target: <= 1 ms) and, for scale, the lookup itself
and the whole replay. Beside it, in the same process: the same questions streamed from
the wrapped fake model with no cache (GenericFakeChatModel, instant, so this is
LangChain's own streaming overhead).

Then ``--burst`` threads ask one new question at once, with and without single-flight.

    python benchmarks/streaming.py [--n 300] [--burst 8]

Embedded Redis (the default), the offline MiniLM embedder. Numbers depend on the
machine's load; on a shared machine read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.language_models import GenericFakeChatModel

from paracache import SemanticIndex, Verdict
from paracache.langchain import CachedChatModel, SemanticCache

ANSWER = (
    "You can request a refund within 30 days of purchase. Open the app, choose the order, "
    "tap Request refund and pick the reason; the money is back on your card in 3-5 days."
)
STORED = "How do I get a refund for order {i}?"
ASKED = "how can I get a refund for order {i}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"| {name} | {statistics.median(ms):.3f} | {_pct(ms, 0.95):.3f} | "
        f"{_pct(ms, 0.99):.3f} | {max(ms):.3f} |"
    )


class _Clock:
    def __init__(self) -> None:
        self.lookup_end = 0.0

    def __call__(self, verdict: Verdict) -> None:
        self.lookup_end = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--burst", type=int, default=8)
    args = parser.parse_args()

    clock = _Clock()
    index = SemanticIndex(namespace="bench-stream-" + uuid.uuid4().hex[:8], on_verdict=clock)
    cache = SemanticCache(index)
    model = GenericFakeChatModel(messages=iter(()))
    chat = CachedChatModel(llm=model, cache=cache)
    llm_string = model._get_llm_string(stop=None)
    from langchain_core.load import dumps
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration

    for i in range(args.n):
        prompt = dumps([HumanMessage(content=STORED.format(i=i))])
        cache.update(prompt, llm_string, [ChatGeneration(message=AIMessage(content=ANSWER))])

    gap: list[float] = []
    lookup: list[float] = []
    whole: list[float] = []
    layers: dict[str, int] = {}
    for i in range(args.n):
        t0 = time.perf_counter()
        first = None
        chunks = 0
        for chunk in chat.stream(ASKED.format(i=i)):
            if first is None:
                first = time.perf_counter()
                layer = chunk.response_metadata.get("paracache", {}).get("layer", "miss")
                layers[layer] = layers.get(layer, 0) + 1
            chunks += 1
        end = time.perf_counter()
        assert first is not None
        gap.append(first - clock.lookup_end)
        lookup.append(clock.lookup_end - t0)
        whole.append(end - t0)

    async def astream_all() -> list[float]:
        out = []
        for i in range(args.n):
            async for _chunk in chat.astream(ASKED.format(i=i)):
                out.append(time.perf_counter() - clock.lookup_end)
                break
        return out

    agap = asyncio.run(astream_all())

    base_first: list[float] = []
    for _ in range(args.n):
        model.messages = iter([ANSWER])
        t0 = time.perf_counter()
        for _chunk in model.stream("uncached question"):
            base_first.append(time.perf_counter() - t0)
            break

    print(f"{args.n} streamed questions, each a paraphrase of a stored one; layers: {layers}")
    print(f"chunks per replayed answer: {chunks}\n")
    print("| time (ms) | p50 | p95 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    print(_row("stream(): lookup end -> first chunk", gap))
    print(_row("astream(): lookup end -> first chunk", agap))
    print(_row("stream(): call -> lookup end", lookup))
    print(_row("stream(): call -> last chunk", whole))
    print(_row("no cache: GenericFakeChatModel.stream() call -> first chunk", base_first))
    within = sum(g <= 0.001 for g in gap) / len(gap)
    awithin = sum(g <= 0.001 for g in agap) / len(agap)
    print(f"\nfirst chunk within 1 ms of the lookup's end: stream {within:.1%}, "
          f"astream {awithin:.1%}")
    burst(index, args.burst)
    index.clear()
    index.close()


def burst(index: SemanticIndex, n: int) -> None:
    """``n`` threads ask the same new question at once, with and without single-flight,
    of a model that takes 0.3 s; model calls and wall time."""
    import threading

    class Slow(GenericFakeChatModel):
        calls: int = 0

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            time.sleep(0.3)
            self.messages = iter([ANSWER])
            return super()._generate(*args, **kwargs)

    print(f"\n{n} threads ask the same new question at once (model latency 0.3 s):\n")
    print("| single_flight | model calls | wall time (s) |")
    print("|---|---:|---:|")
    for on in (True, False):
        model = Slow(messages=iter(()))
        chat = CachedChatModel(llm=model, cache=SemanticCache(index), single_flight=on)
        barrier = threading.Barrier(n)
        question = f"Is there a fee for a burst test {uuid.uuid4().hex[:6]}?"

        def ask(
            chat: CachedChatModel = chat, question: str = question, barrier: Any = barrier
        ) -> None:
            barrier.wait()
            chat.invoke(question)

        threads = [threading.Thread(target=ask) for _ in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"| {on} | {model.calls} | {time.perf_counter() - t0:.2f} |")


if __name__ == "__main__":
    main()
