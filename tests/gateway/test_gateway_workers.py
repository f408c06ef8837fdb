"""GATEWAY_WORKERS=2: two processes answer on one port (SO_REUSEPORT) and stop together on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_two_workers_share_the_port_and_stop_together() -> None:
    port = free_port()
    env = {**os.environ, "GATEWAY_HTTP_PORT": str(port), "GATEWAY_WORKERS": "2", "LOG_JSON": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bejo_gateway.app import main; main()"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        answered: set[str] = set()
        while len(answered) < 1:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert answer.status == 200
                    answered.add(answer.headers["Server"])
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
                assert time.monotonic() < deadline, "the gateway workers did not start"
                time.sleep(0.1)
        workers = children_of(proc.pid)
        assert len(workers) == 2
        # Each worker listens itself: the kernel hands connections to either.
        listening = {w for w in workers if any("socket:" in os.readlink(f"/proc/{w}/fd/{fd}")
                                               for fd in os.listdir(f"/proc/{w}/fd"))}  # fmt: skip
        assert listening == set(workers)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        for worker in workers:
            assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
