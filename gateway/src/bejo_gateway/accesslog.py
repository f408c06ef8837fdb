"""One JSON line per request, written in batches.

The access log is the hottest log of the gateway: a write(2) per request costs about as much as
the proxying itself on a small machine. Lines are rendered with orjson (same fields and shape as
the kit's structlog JSON lines) and flushed every `interval` seconds or every 64 KiB, so at most
that interval of lines is lost if the process is killed outright; a clean shutdown flushes.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson

_FLUSH_BYTES = 64 * 1024


class AccessLog:
    def __init__(self, service: str, *, stream: BinaryIO | None = None, interval: float = 0.1) -> None:
        self._service = service
        self._stream = stream
        self._interval = interval
        self._buffer = bytearray()
        self._scheduled: asyncio.TimerHandle | None = None

    def write(self, fields: dict[str, Any]) -> None:
        line = {
            "event": "access",
            "service": self._service,
            "level": "info",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **fields,
        }
        self._buffer += orjson.dumps(line)
        self._buffer += b"\n"
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()
        elif self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._buffer:
            stream = self._stream or sys.stderr.buffer
            stream.write(bytes(self._buffer))
            stream.flush()
            self._buffer.clear()
