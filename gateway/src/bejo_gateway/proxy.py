"""The upstream adapter: one pooled keep-alive ClientSession for every service, streamed relaying.

Bodies are relayed as bytes and never parsed. Small bodies with a known length (≤ 64 KiB) are
relayed in one piece, which is cheaper and lets a request be replayed on a retry; larger ones
and those of unknown length are streamed chunk by chunk in both directions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from bejo_kit.errors import PayloadTooLarge, Problem, ServiceUnavailable
from bejo_kit.logging import get_logger

from . import metrics
from .routing import client_response_headers
from .settings import GatewaySettings

log = get_logger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RELAY_IN_ONE_PIECE = 64 * 1024
_CHUNK = 64 * 1024
# Refused, reset or closed before an answer: nothing was processed, so an idempotent request may go again.
_CONNECTION_ERRORS = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


class GatewayTimeout(Problem):
    status = 504
    code = "upstream_timeout"
    title = "Upstream timed out"


class BadGateway(Problem):
    status = 502
    code = "bad_gateway"
    title = "Bad gateway"


def upstream_unavailable(upstream: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"the {upstream} service is unavailable; try again shortly", code="upstream_unavailable", upstream=upstream
    )


class _BodyCounter:
    """Streams a request body of unknown length, remembering whether it grew past the limit."""

    def __init__(self, content: aiohttp.StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self.received = 0
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._content.iter_chunked(_CHUNK):
            self.received += len(chunk)
            if self.received > self._limit:
                self.too_large = True
                raise _BodyTooLarge
            yield chunk


class _BodyTooLarge(Exception):
    pass


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body exceeds {limit} bytes", code="payload_too_large", max_bytes=limit)


class Upstreams:
    def __init__(self, settings: GatewaySettings) -> None:
        self.urls = settings.upstream_urls()
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstreams.start() has not run")
        return self._session

    async def start(self) -> None:
        s = self._settings
        connector = aiohttp.TCPConnector(
            limit=s.pool_size,
            limit_per_host=s.pool_size_per_upstream,
            keepalive_timeout=s.keepalive_seconds,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=s.upstream_timeout_seconds,
                connect=s.connect_timeout_seconds,
                sock_connect=s.connect_timeout_seconds,
            ),
            # Relay bytes as they are: no decompression, no cookies shared between users,
            # no headers the client did not send.
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self,
        request: web.Request,
        upstream: str,
        headers: CIMultiDict[str],
        gateway_headers: Mapping[str, str],
        compress: bool,
    ) -> web.StreamResponse:
        """Send `request` to `upstream` with `headers`; relay the answer with `gateway_headers` added."""
        limit = self._settings.max_body_bytes
        method = request.method
        url = self.urls[upstream] + request.raw_path
        data: Any = None
        replayable = True
        counter: _BodyCounter | None = None
        length = request.content_length
        if request.body_exists:
            if length is not None and length > limit:
                raise too_large(limit)
            if length is not None and length <= RELAY_IN_ONE_PIECE:
                data = await request.read()
            else:
                counter = _BodyCounter(request.content, limit)
                data = counter.chunks()
                replayable = False
                if length is not None:
                    headers["Content-Length"] = str(length)
        attempts = 1 + (self._settings.upstream_retries if method in IDEMPOTENT and replayable else 0)
        for attempt in range(1, attempts + 1):
            try:
                answer = await self.session.request(method, url, headers=headers, data=data, allow_redirects=False)
                break
            except _CONNECTION_ERRORS as exc:
                if counter is not None and counter.too_large:
                    raise too_large(limit) from None
                metrics.upstream_error(upstream, "connect")
                if attempt < attempts:
                    log.info("retrying upstream", upstream=upstream, method=method, error=repr(exc))
                    continue
                log.warning("upstream unavailable", upstream=upstream, url=url, error=repr(exc))
                raise upstream_unavailable(upstream) from None
            except TimeoutError:
                metrics.upstream_error(upstream, "timeout")
                raise GatewayTimeout(f"the {upstream} service did not answer in time", upstream=upstream) from None
            except aiohttp.ClientError as exc:
                if counter is not None and counter.too_large:
                    raise too_large(limit) from None
                metrics.upstream_error(upstream, "protocol")
                log.warning("bad upstream answer", upstream=upstream, url=url, error=repr(exc))
                raise BadGateway(f"the {upstream} service gave an invalid answer", upstream=upstream) from None
        return await self._relay(request, upstream, answer, gateway_headers, compress)

    async def _relay(
        self,
        request: web.Request,
        upstream: str,
        answer: aiohttp.ClientResponse,
        gateway_headers: Mapping[str, str],
        compress: bool,
    ) -> web.StreamResponse:
        headers = client_response_headers(answer.headers)
        headers.update(gateway_headers)
        compress = compress and "Content-Encoding" not in answer.headers
        length = answer.content_length
        stream: web.StreamResponse | None = None
        try:
            if length is not None and length <= RELAY_IN_ONE_PIECE:
                body = await answer.read()
                response = web.Response(status=answer.status, reason=answer.reason, body=body, headers=headers)
                if compress and len(body) >= self._settings.gzip_min_bytes and compressible(headers):
                    response.enable_compression(web.ContentCoding.gzip)
                return response
            stream = web.StreamResponse(status=answer.status, reason=answer.reason, headers=headers)
            if compress and compressible(headers):
                stream.enable_compression(web.ContentCoding.gzip)
            await stream.prepare(request)
            async for chunk in answer.content.iter_chunked(_CHUNK):
                await stream.write(chunk)
            await stream.write_eof()
            return stream
        except (TimeoutError, aiohttp.ClientError) as exc:
            metrics.upstream_error(upstream, "timeout" if isinstance(exc, TimeoutError) else "protocol")
            log.warning("upstream broke off its answer", upstream=upstream, error=repr(exc))
            answer.close()
            if stream is None or not stream.prepared:
                raise BadGateway(f"the {upstream} service broke off its answer", upstream=upstream) from None
            # The status line is out: cutting the connection is the only honest signal of a truncated body.
            if request.transport is not None:
                request.transport.close()
            return stream
        finally:
            answer.release()


_COMPRESSIBLE = ("application/json", "application/problem+json", "application/xml", "application/javascript")


def compressible(headers: Mapping[str, str]) -> bool:
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return content_type.startswith("text/") or content_type in _COMPRESSIBLE or content_type.endswith("+json")


async def probe(session: aiohttp.ClientSession, url: str, timeout_seconds: float) -> tuple[bool, str]:
    """GET `url` with a short timeout: (answered 2xx, what happened)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as answer:
            await answer.read()
            return 200 <= answer.status < 300, f"HTTP {answer.status}"
    except TimeoutError:
        return False, f"no answer within {timeout_seconds:g}s"
    except (aiohttp.ClientError, OSError) as exc:
        return False, type(exc).__name__
