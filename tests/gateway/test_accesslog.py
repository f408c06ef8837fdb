"""The batched access log writes one complete JSON line per request."""

from __future__ import annotations

import io

import orjson

from bejo_gateway.accesslog import AccessLog


async def test_lines_are_buffered_then_flushed_whole() -> None:
    stream = io.BytesIO()
    log = AccessLog("gateway", stream=stream, interval=60)
    log.write({"method": "GET", "path": "/api/v1/orders", "status": 200, "duration_ms": 1.5, "upstream": "orders",
               "sub": "pp-1", "request_id": "r1"})  # fmt: skip
    log.write({"method": "POST", "path": "/api/v1/orders", "status": 403, "request_id": "r2"})
    assert stream.getvalue() == b""  # nothing written per request
    log.flush()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["request_id"], line["status"]) for line in lines] == [("r1", 200), ("r2", 403)]
    assert lines[0]["event"] == "access" and lines[0]["service"] == "gateway" and lines[0]["sub"] == "pp-1"
    assert lines[0]["timestamp"].endswith("Z")


async def test_a_large_backlog_is_flushed_without_waiting() -> None:
    stream = io.BytesIO()
    log = AccessLog("gateway", stream=stream, interval=60)
    for i in range(2000):
        log.write({"path": "/api/v1/products/" + "x" * 40, "request_id": str(i)})
    assert stream.getvalue().count(b"\n") >= 1000
    log.flush()
    assert stream.getvalue().count(b"\n") == 2000
