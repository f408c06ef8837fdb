"""The upstream adapter: one pooled keep-alive ClientSession for every service, streamed relaying.

Bodies are relayed as bytes and never parsed. Small bodies with a known length (≤ 64 KiB) are
relayed in one piece, which is cheaper and lets a request be replayed on a retry; larger ones
and those of unknown length are streamed chunk by chunk in both directions.

An upstream may have several replicas: requests go round-robin over them, a failed attempt goes
on to the next one (see `forward`), and a replica that refuses connections is passed over for a
few seconds (`ReplicaSet`, passive health) so it does not cost every other request an attempt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
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
# Of those, the ones raised before a connection existed: the request was never sent anywhere.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


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


@dataclass
class Replica:
    url: str
    down_until: float = 0.0


class ReplicaSet:
    """The replicas of one upstream: round-robin over those not marked down; those marked down
    come last, soonest-back first, so with every replica down each is still tried (and a
    recovered one is found at once) rather than refusing without asking."""

    def __init__(self, name: str, urls: list[str], down_seconds: float, clock: Callable[[], float]) -> None:
        if not urls:
            raise ValueError(f"upstream {name} has no replica")
        self.name = name
        self.replicas = [Replica(url) for url in urls]
        self._down_seconds = down_seconds
        self._clock = clock
        self._next = 0

    def order(self) -> list[Replica]:
        """Replicas in the order to try them for one request (the first one takes its turn)."""
        now = self._clock()
        count = len(self.replicas)
        if count == 1:
            return self.replicas
        rotated = [self.replicas[(self._next + i) % count] for i in range(count)]
        up = [r for r in rotated if r.down_until <= now]
        down = sorted((r for r in rotated if r.down_until > now), key=lambda r: r.down_until)
        # The next request starts after the replica this one starts with, so a down replica's turns
        # are shared out evenly instead of falling to the replica after it.
        first = up[0] if up else down[0]
        self._next = (self.replicas.index(first) + 1) % count
        return up + down

    def mark_down(self, replica: Replica) -> None:
        now = self._clock()
        if replica.down_until <= now and self._down_seconds > 0:
            log.warning("upstream replica marked down", upstream=self.name, url=replica.url, seconds=self._down_seconds)
        replica.down_until = now + self._down_seconds

    def mark_up(self, replica: Replica) -> None:
        if replica.down_until:
            log.info("upstream replica back", upstream=self.name, url=replica.url)
            replica.down_until = 0.0

    def urls_in_order(self) -> list[str]:
        return [r.url for r in self.order()]


class Upstreams:
    def __init__(self, settings: GatewaySettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.urls = settings.upstream_urls()
        self.replicas = {
            name: ReplicaSet(name, urls, settings.upstream_down_seconds, clock) for name, urls in self.urls.items()
        }
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def candidates(self, upstream: str) -> list[str]:
        """Base URLs of `upstream`'s replicas in the order one request should try them."""
        return self.replicas[upstream].urls_in_order()

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
        replicas = self.replicas[upstream]
        order = replicas.order()
        attempts = 1 + (self._settings.upstream_retries if replayable else 0)
        idempotent = method in IDEMPOTENT
        attempt = 0
        while True:
            replica = order[attempt % len(order)]
            attempt += 1
            url = replica.url + request.raw_path
            try:
                answer = await self.session.request(method, url, headers=headers, data=data, allow_redirects=False)
                replicas.mark_up(replica)
                break
            except _CONNECTION_ERRORS as exc:
                if counter is not None and counter.too_large:
                    raise too_large(limit) from None
                metrics.upstream_error(upstream, "connect")
                never_sent = isinstance(exc, _NOT_CONNECTED)
                if never_sent:
                    replicas.mark_down(replica)
                # Go on to the next replica if the request was never sent (whatever its method) or is
                # idempotent; a replica that refused is not asked twice for the same request (with one
                # replica, a reset keep-alive connection is worth one more try on a fresh one).
                if attempt < attempts and (never_sent or idempotent) and not (never_sent and attempt >= len(order)):
                    log.info("retrying upstream", upstream=upstream, method=method, url=url, error=repr(exc))
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
