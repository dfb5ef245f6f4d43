"""How long ``SemanticIndex.close()`` takes when Redis hangs (fixes11, item 2).

Starts nothing: give it a Redis you may stop (a stock server of your own, e.g.
``/work/shared/tools/stock-redis 7790``) and its process id. It stores an entry, makes an
unsent hit, stops the server with ``SIGSTOP`` (the port keeps taking connections), times
``close()``, and resumes the server.

    python benchmarks/close_when_hung.py redis://127.0.0.1:7790 PID plain|learn|learn-busy

``learn``: with ``max_error_rate=0.02``; ``learn-busy``: also 5 lookups and stores after
the server stopped. Prints the time and the errors counted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid

from paracache import Scope, SemanticIndex


def main(url: str, pid: int, mode: str) -> None:
    options = {"max_error_rate": 0.02} if "learn" in mode else {}
    cache = SemanticIndex(url, namespace="hung-" + uuid.uuid4().hex[:6], **options)
    scope = Scope(model="m")
    cache.store("What is the refund window?", "30 days", scope)
    for i in range(3):
        cache.lookup("What is the refund window?", scope)
        cache.lookup(f"How do I reset password {i}?", scope)
    os.kill(pid, signal.SIGSTOP)
    try:
        if "busy" in mode:
            for i in range(5):
                cache.lookup(f"What is the refund period {i}?", scope)
                cache.store(f"What is the refund period {i}?", "30 days", scope)
        t0 = time.monotonic()
        cache.close()
        took = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"{mode}: close() took {took:.2f} s; errors {cache.stats().errors_by_kind}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "plain")
