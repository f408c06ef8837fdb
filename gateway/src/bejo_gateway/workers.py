"""Several gateway processes on one port: the parent forks `workers` children, each a whole gateway
listening with SO_REUSEPORT, and the kernel balances connections between them.

One Python process tops out at one core; the gateway holds no state that must be shared between
requests (token cache, rate-limit buckets and metrics are per process), so processes scale it.
The parent only supervises: SIGTERM/SIGINT are passed on to the children, and if one child dies
the others are stopped and the parent exits non-zero, so the orchestrator restarts the whole set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType


def serve_workers(count: int, serve: Callable[[], None]) -> int:
    """Fork `count` processes running `serve()`; the exit status for the parent."""
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the child: serve until signalled, never return into the parent's code
            code = 0
            try:
                serve()
            except BaseException:  # noqa: BLE001 - report, then leave with a failure status
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    alive = set(children)
    while alive:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(raw)
        if not stopping:
            # A worker died on its own: stop the rest rather than serve on with fewer.
            status = 1
            print(f"gateway worker {pid} exited with status {code}; stopping the others", file=sys.stderr)
            stop(signal.SIGTERM, None)
    return status
