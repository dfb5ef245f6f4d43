"""A cache built in a parent process, then ``os.fork()`` (gunicorn ``--preload``,
``multiprocessing`` with fork): the child's lookups, stores and error bound work.

Real forks on the session's real Redis. A child ends with ``os._exit`` (as
``multiprocessing`` children do): onnxruntime, once loaded in the parent, cannot run
its own teardown in a forked child (see README, "Forking servers").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redisvl.utils.vectorize import BaseVectorizer

from paracache import SemanticIndex
from paracache.learning import stream_key
from paracache.singleflight import SingleFlight
from paracache.vectorizers import MiniLMVectorizer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_MODEL = MiniLMVectorizer()


class _Remote(BaseVectorizer):  # type: ignore[misc]
    """An embedder of the kind a user brings (an API client): not paracache's own
    model, so a lookup runs it on paracache's embedding threads, under embed_timeout."""

    @property
    def type(self) -> str:
        return "remote"

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        vector: list[float] = _MODEL.embed(content)
        return vector


def _in_child(body: Callable[[], dict[str, Any]], timeout: float = 30.0) -> dict[str, Any]:
    """``body()`` in a forked child; its JSON result (or the error it raised)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read)
            try:
                result = body()
            except BaseException as exc:
                result = {"error": repr(exc)}
            os.write(write, json.dumps(result).encode())
        except BaseException:
            code = 1
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish")
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    assert data, f"the child wrote nothing (status {status})"
    out: dict[str, Any] = json.loads(data)
    return out


def test_a_forked_child_embeds_with_a_user_embedder(make_index: Any) -> None:
    """The embedding threads of the parent do not exist in the child: the child makes
    its own, instead of waiting embed_timeout for a thread that never runs (every
    lookup of every worker a 5 s miss)."""
    cache: SemanticIndex = make_index(vectorizer=_Remote(model="remote-minilm"), embed_timeout=3.0)
    cache.store("What is your refund policy?", "30 days.")
    for prompt in ("Tell me your refund policy", "What is the refund policy?"):
        assert cache.lookup(prompt) is not None  # on the embedding threads

    def child() -> dict[str, Any]:
        took = []
        hits = []
        for prompt in ("Please tell me your refund policy", "What's the policy on refunds?"):
            started = time.monotonic()
            hit = cache.lookup(prompt)
            took.append(time.monotonic() - started)
            hits.append(None if hit is None else hit.layer)
        return {"took": took, "hits": hits, "errors": cache.stats().errors_by_kind}

    out = _in_child(child)
    assert out.get("errors") == {}, out
    assert out["hits"] == ["semantic", "semantic"], out
    assert max(out["took"]) < 2.0, out


def test_a_forked_child_runs_the_error_bound(make_index: Any, redis_url: str) -> None:
    """The learner's threads (the outbox sender, the label worker) do not survive a
    fork: the child starts its own, so its lookups are counted in the label stream
    (the error bound learns from every worker, not only the parent)."""
    cache: SemanticIndex = make_index(max_error_rate=0.05)
    cache.store("What is your refund policy?", "30 days.")
    cache.lookup("What's your refund policy?")
    assert cache.learner is not None
    cache.learner.wait_idle(timeout=10.0)
    client = redis.Redis.from_url(redis_url)
    stream = stream_key(cache.namespace)

    def child() -> dict[str, Any]:
        before = client.xlen(stream)
        for n in range(3):
            cache.lookup(f"Do you ship parcel number {n} to Mars?")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and client.xlen(stream) == before:
            time.sleep(0.05)
        return {"before": before, "after": client.xlen(stream)}

    out = _in_child(child)
    assert "error" not in out, out
    assert out["after"] > out["before"], out


def test_a_forked_child_does_not_wait_on_the_parents_flight(make_index: Any) -> None:
    """A miss the parent was leading at the fork: its answer reaches the child through
    Redis (as another process's would), not after waiting out ``wait`` on the parent's
    in-process flight, which nothing in the child can settle."""
    cache: SemanticIndex = make_index()
    flights = SingleFlight(cache, wait=6.0)
    prompt = "Which warehouse ships orders to Iceland?"
    claim = flights.claim(prompt)
    assert claim.leader

    def child() -> dict[str, Any]:
        started = time.monotonic()
        theirs = flights.claim(prompt)
        return {"took": time.monotonic() - started, "payload": theirs.payload}

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, json.dumps(child()).encode())
        finally:
            os._exit(0)
    os.close(write)
    time.sleep(0.5)  # the parent's model call
    cache.store(prompt, "Reykjavik.")
    claim.done("Reykjavik.")
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as fh:
        out = json.loads(fh.read())
    assert out["payload"] == "Reykjavik.", out
    assert out["took"] < 3.0, out


_PRELOAD = """
import os, sys
from paracache import SemanticIndex
cache = SemanticIndex(sys.argv[1], namespace=sys.argv[2], timeout=1.0)  # no embedding yet
pid = os.fork()
if pid == 0:  # a gunicorn worker: serves, then leaves through sys.exit
    cache.store("What is your refund policy?", "30 days.")
    hit = cache.lookup("Tell me your refund policy")
    sys.exit(0 if hit is not None else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_preloaded_cache_whose_model_loads_in_the_worker_exits_cleanly(
    redis_url: str, namespace: str
) -> None:
    """The README's advice for forking servers: build the cache before the fork, embed
    first in the worker; the worker then serves and exits through ``sys.exit`` (an
    onnxruntime loaded before the fork would hang or abort there)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _PRELOAD, redis_url, namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr
