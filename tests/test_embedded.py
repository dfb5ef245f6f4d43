"""Tests for paracache.embedded against a real redis-server (no mocks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from paracache.embedded import (
    EmbeddedRedis,
    EmbeddedRedisError,
    embedded_url,
    shared_embedded,
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis().start()
    try:
        yield srv
    finally:
        srv.close()


def _client(srv: EmbeddedRedis, *, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=srv.port,
        password=password,
        socket_connect_timeout=1,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),  # redis-py retries auth/connection errors with backoff
    )


def test_password_required(server: EmbeddedRedis) -> None:
    assert redis.Redis.from_url(server.url).ping()
    assert _client(server, password=server.password).ping()
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)) as info:
        _client(server).ping()
    assert isinstance(info.value, redis.AuthenticationError) or "NOAUTH" in str(info.value)
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        _client(server, password="wrong").ping()


def test_loopback_only(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("protected-mode")["protected-mode"] == "yes"
    assert server.url.startswith("redis://:") and "@127.0.0.1:" in server.url


def test_search_module_loaded(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.url)
    assert isinstance(client.execute_command("FT._LIST"), list)
    names = {m[b"name"] for m in client.execute_command("MODULE", "LIST")}
    assert b"search" in names


def test_stop_and_restart_same_port_and_password(tmp_path: Path) -> None:
    srv = EmbeddedRedis(password="p@ss:w/rd %?", startup_timeout=5)
    try:
        srv.start()
        url, port = srv.url, srv.port
        assert redis.Redis.from_url(url).ping()
        srv.stop()
        srv.stop()  # idempotent
        assert not srv.is_running()
        with pytest.raises(redis.ConnectionError):
            _client(srv, password=srv.password).ping()
        assert srv.start() is srv
        assert srv.start() is srv  # idempotent
        assert (srv.url, srv.port) == (url, port)
        assert redis.Redis.from_url(url).ping()
    finally:
        srv.close()


def test_persist_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with EmbeddedRedis(data_dir=data_dir, persist=True) as srv:
        redis.Redis.from_url(srv.url).set("k", "v")
        srv.stop()
        srv.start()
        assert redis.Redis.from_url(srv.url).get("k") == b"v"
    # close() never removes a user-supplied directory
    assert data_dir.is_dir()


def test_close_removes_own_temp_dir() -> None:
    srv = EmbeddedRedis().start()
    data_dir = srv.data_dir
    assert data_dir.is_dir()
    srv.stop()
    assert data_dir.is_dir()  # stop() keeps it for a restart
    srv.close()
    srv.close()  # idempotent
    assert not data_dir.exists()
    assert srv.closed


def test_pause_blocks_then_resumes(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    server.pause(0.3)
    t0 = time.monotonic()
    client.set("paused", "1")
    assert time.monotonic() - t0 >= 0.2


def test_auto_port_retries_when_taken() -> None:
    srv = EmbeddedRedis()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", srv.port))
        blocker.listen(1)
        taken = srv.port
        srv.start()
        assert srv.port != taken
        assert redis.Redis.from_url(srv.url).ping()
    finally:
        blocker.close()
        srv.close()


def test_explicit_port_taken_reports_log(server: EmbeddedRedis) -> None:
    srv = EmbeddedRedis(port=server.port)
    try:
        with pytest.raises(EmbeddedRedisError, match=r"(?i)address already in use"):
            srv.start()
        assert not srv.is_running()
    finally:
        srv.close()


def test_shared_instance() -> None:
    url = embedded_url()
    assert embedded_url() == url
    assert shared_embedded().unix_url == url  # the socket, by default
    assert redis.Redis.from_url(url).ping()
    assert redis.Redis.from_url(shared_embedded().url).ping()  # and loopback TCP


def test_unix_socket_is_private(server: EmbeddedRedis) -> None:
    """The socket lives in the server's private directory, owner-only, and asks for
    the password like the TCP port."""
    import stat

    url = server.unix_url
    assert url is not None and url.startswith("unix://")
    path = server.data_dir / "redis.sock"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(server.data_dir.stat().st_mode) & 0o077 == 0
    assert redis.Redis.from_url(url).ping()
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis(unix_socket_path=str(path)).ping()


def test_no_socket_when_the_path_is_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    srv = EmbeddedRedis(data_dir=deep)
    try:
        srv.start()
        assert srv.unix_url is None and not (deep / "redis.sock").exists()
        assert redis.Redis.from_url(srv.url).ping()
    finally:
        srv.close()


def test_bad_server_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bogus = tmp_path / "no-such-redis-server"
    monkeypatch.setenv("PARACACHE_REDIS_SERVER", str(bogus))
    with pytest.raises(EmbeddedRedisError, match="no-such-redis-server"):
        EmbeddedRedis()


def test_bad_module_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "fake-search.so"
    fake.write_bytes(b"not a shared object")
    monkeypatch.setenv("PARACACHE_REDISEARCH_MODULE", str(fake))
    srv = EmbeddedRedis(startup_timeout=5)
    try:
        with pytest.raises(EmbeddedRedisError, match=r"fake-search\.so"):
            srv.start()
    finally:
        srv.close()


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an orphan may wait for a reaper)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from paracache.embedded import EmbeddedRedis
        srv = EmbeddedRedis(data_dir=sys.argv[1]).start()
        print(srv.url, srv._state.proc.pid, flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        url, pid = parent.stdout.readline().split()
        assert redis.Redis.from_url(url).ping()
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _alive(int(pid)):
            break
        time.sleep(0.05)
    else:
        os.kill(int(pid), signal.SIGKILL)
        pytest.fail("redis-server outlived its parent")


def test_a_forked_child_never_stops_its_parents_server() -> None:
    """close()/stop()/kill() in a forked child (a web server's worker, multiprocessing)
    leave the parent's server running and its directory in place."""
    srv = EmbeddedRedis().start()
    try:
        pid = os.fork()
        if pid == 0:  # the child: tear down what it inherited, then leave at once
            code = 0
            try:
                srv.stop()
                srv.kill()
                srv.close()
                code = 0 if srv.data_dir.exists() else 3
            except BaseException:
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert srv.is_running() and srv.data_dir.is_dir()
        assert _client(srv, password=srv.password).ping()
    finally:
        srv.close()


def test_one_server_per_directory(tmp_path: Path) -> None:
    """Two processes given the same directory never run two servers on one append-only
    file: the second finds the first's (embedded_url) or is told clearly."""
    from paracache.embedded import EmbeddedDirInUse

    first = EmbeddedRedis(data_dir=tmp_path, persist=True).start()
    try:
        script = textwrap.dedent(
            """
            import sys, redis
            from paracache.embedded import EmbeddedDirInUse, EmbeddedRedis, embedded_url
            try:
                EmbeddedRedis(data_dir=sys.argv[1], persist=True).start()
                print("started a second server")
            except EmbeddedDirInUse as exc:
                print("in use:", "another process" in str(exc))
            url = embedded_url(sys.argv[1])
            redis.Redis.from_url(url).set("written-by", "second process")
            print("connected")
            """
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert out.stdout.split("\n")[:2] == ["in use: True", "connected"], out.stderr
        assert _client(first, password=first.password).get("written-by") == b"second process"
        with pytest.raises(EmbeddedDirInUse):  # this process, another object: the same
            EmbeddedRedis(data_dir=tmp_path, persist=True).start()
    finally:
        first.close()
    again = EmbeddedRedis(data_dir=tmp_path, persist=True).start()  # the lock went with it
    again.close()
