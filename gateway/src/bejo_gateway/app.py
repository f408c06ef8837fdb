"""Composition root of the gateway: the front door (ids, CORS, errors, access log, metrics), token
checks, rate limiting and coarse RBAC, then the proxy to the service owning the path.

Order for a proxied request: route (404) → token (401) → rate limit (429) → role (403) → upstream.
A request with a bad token is still charged to its client IP, so guessing tokens is rate limited.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bejo_kit.auth import Principal
from bejo_kit.errors import BadRequest, Forbidden, NotFound, Problem, TooManyRequests, Unauthorized
from bejo_kit.logging import get_logger
from bejo_kit.runtime import run_service

from . import asyncapi, dashboard, metrics
from .accesslog import AccessLog
from .auth import Authenticator
from .docs_page import DOCS_HTML
from .openapi import OpenApiAggregator
from .proxy import Upstreams, compressible, probe
from .ratelimit import RateLimiter, Verdict
from .rbac import Access, AccessTable, Rule, authorize
from .routing import (
    acceptable_request_id,
    accepts_gzip,
    client_address,
    forwarded_for_chain,
    parse_networks,
    suspicious_path,
    upstream_for,
    upstream_request_headers,
)
from .settings import GatewaySettings
from .stats import fetch_stats, parse_query
from .workers import serve_workers

log = get_logger("bejo_gateway")

PROBLEM_JSON = "application/problem+json"
PUBLIC = Rule(frozenset({"GET", "HEAD"}), "/api/v1/(gateway)", Access.PUBLIC)
CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOWED_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, If-None-Match, If-Match, X-Request-ID, X-Correlation-ID"
)
CORS_EXPOSED_HEADERS = (
    "X-Request-ID, ETag, Location, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}


@dataclass
class RequestState:
    request_id: str
    correlation_id: str
    upstream: str = "gateway"
    principal: Principal | None = None
    verdict: Verdict | None = None
    decorated: bool = False  # gateway headers already on the response (the proxy adds them before streaming)


STATE = web.RequestKey("gateway_state", RequestState)


class _HttpProblem(Problem):
    def __init__(self, status: int, title: str, detail: str, code: str) -> None:
        super().__init__(detail, code=code)
        self.status = status
        self.title = title


class Gateway:
    def __init__(self, settings: GatewaySettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.upstreams = Upstreams(settings)
        self.authenticator = Authenticator(settings)
        self.limiter = RateLimiter(
            settings.rate_limit_per_second, settings.rate_limit_burst, clock, settings.rate_limit_max_clients
        )
        self.access = AccessTable()
        self.proxies = parse_networks(settings.trusted_proxies)
        self.cors_origins = frozenset(settings.cors_origins)
        self.openapi = OpenApiAggregator(
            lambda: self.upstreams.session,
            list(self.upstreams.urls),
            self.upstreams.candidates,
            ttl_seconds=settings.openapi_cache_seconds,
            timeout_seconds=settings.probe_timeout_seconds,
            clock=clock,
        )
        self.asyncapi = asyncapi.render()
        self.access_log = AccessLog(settings.service_name) if settings.access_log else None

    # -- the front door (every request) ----------------------------------------------------------

    @web.middleware
    async def front_door(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        given = request.headers.get("X-Request-ID")
        request_id = given if given is not None and acceptable_request_id(given) else uuid.uuid4().hex
        correlation = request.headers.get("X-Correlation-ID")
        if correlation is None or not acceptable_request_id(correlation):
            correlation = request_id
        state = RequestState(request_id, correlation)
        request[STATE] = state
        origin = request.headers.get("Origin")
        status = 499  # the client went away before an answer
        try:
            if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
                response: web.StreamResponse = self._preflight(origin, state)
            else:
                try:
                    response = await handler(request)
                except Problem as problem:
                    response = self.problem(problem, state)
                except web.HTTPException as exc:
                    if exc.status < 400:
                        raise
                    response = self.problem(self._http_problem(request, exc), state)
                except Exception:
                    log.exception("unhandled error", method=request.method, path=request.path, request_id=request_id)
                    response = self.problem(
                        _HttpProblem(
                            500,
                            "Internal error",
                            "the gateway failed to handle this request; quote the request_id when reporting it",
                            "internal_error",
                        ),
                        state,
                    )
            if not response.prepared and not state.decorated:
                self._decorate(request, response, state, own_body=True)
            status = response.status
            return response
        finally:
            self._record(request, state, status, started)

    def gateway_headers(self, request: web.Request, state: RequestState) -> dict[str, str]:
        """Headers the gateway puts on every answer: the request id, the rate-limit state, CORS."""
        headers = {"X-Request-ID": state.request_id}
        if state.verdict is not None:
            headers.update(state.verdict.headers())
        origin = request.headers.get("Origin")
        if origin and origin in self.cors_origins:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
        return headers

    def _decorate(
        self, request: web.Request, response: web.StreamResponse, state: RequestState, own_body: bool
    ) -> None:
        response.headers.update(self.gateway_headers(request, state))
        if "Origin" in request.headers:
            response.headers.add("Vary", "Origin")
        state.decorated = True
        if (
            own_body
            and isinstance(response, web.Response)
            and response.body is not None
            and isinstance(response.body, bytes)
            and len(response.body) >= self.settings.gzip_min_bytes
            and "Content-Encoding" not in response.headers
            and compressible(response.headers)
            and accepts_gzip(request.headers.get("Accept-Encoding"))
        ):
            response.enable_compression(web.ContentCoding.gzip)

    def _preflight(self, origin: str, state: RequestState) -> web.StreamResponse:
        if origin not in self.cors_origins:
            return self.problem(
                Forbidden(f"origin {origin!r} is not allowed", code="cors_origin_not_allowed", origin=origin), state
            )
        state.decorated = True
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS,
                "Access-Control-Max-Age": str(self.settings.cors_max_age_seconds),
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                "X-Request-ID": state.request_id,
            },
        )

    def problem(self, problem: Problem, state: RequestState) -> web.Response:
        body = problem.body()
        body["request_id"] = state.request_id
        return web.Response(body=orjson.dumps(body), status=problem.status, content_type=PROBLEM_JSON)

    @staticmethod
    def _http_problem(request: web.Request, exc: web.HTTPException) -> Problem:
        code = _HTTP_CODES.get(exc.status, "http_error")
        if exc.status == 404:
            detail = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            detail = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            detail = f"the request body exceeds {request.app[GATEWAY].settings.max_body_bytes} bytes"
        else:
            detail = exc.reason
        return _HttpProblem(exc.status, exc.reason, detail, code)

    def _record(self, request: web.Request, state: RequestState, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        metrics.observe(state.upstream, status, elapsed, request.method, request.path)
        if self.access_log is not None:
            self.access_log.write(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "upstream": state.upstream,
                    "sub": state.principal.sub if state.principal else None,
                    "request_id": state.request_id,
                    "correlation_id": state.correlation_id,
                }
            )

    # -- admission: token, rate limit, role ------------------------------------------------------

    async def admit(self, request: web.Request, state: RequestState, rule: Rule) -> Principal | None:
        client = client_address(request.remote, request.headers.get("X-Forwarded-For"), self.proxies)
        try:
            authorization = None if rule.snap_partner else request.headers.get("Authorization")
            principal = await self.authenticator.principal(authorization)
        except Unauthorized:
            self._charge(f"ip:{client}", state, anonymous=True)
            raise
        state.principal = principal
        if principal is None:
            self._charge(f"ip:{client}", state, anonymous=True)
        else:
            self._charge(f"sub:{principal.sub}", state, anonymous=False)
        authorize(rule, principal)
        return principal

    def _charge(self, key: str, state: RequestState, *, anonymous: bool) -> None:
        verdict = self.limiter.take(key)
        state.verdict = verdict
        if not verdict.allowed:
            metrics.rate_limited(anonymous)
            raise TooManyRequests(
                f"too many requests; try again in {verdict.retry_after_seconds}s",
                code="rate_limited",
                retry_after_seconds=verdict.retry_after_seconds,
            )

    # -- handlers ----------------------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        state = request[STATE]
        if not request.raw_path.startswith("/"):
            # Absolute-form (`GET http://host/api/v1/...`) is for forward proxies; this is an origin.
            state.upstream = "none"
            raise BadRequest(
                "the request target must be a path (origin-form), not an absolute URL", code="absolute_form_target"
            )
        path = request.path
        upstream = upstream_for(path)
        if upstream is None:
            state.upstream = "none"
            raise NotFound(f"no route for {request.method} {path}", code="not_found")
        if suspicious_path(path, request.raw_path):
            state.upstream = "none"
            raise NotFound("paths with dot segments or encoded slashes are not served", code="not_found")
        state.upstream = upstream
        await self.admit(request, state, self.access.rule_for(request.method, path))
        headers = upstream_request_headers(
            request.headers,
            request_id=state.request_id,
            correlation_id=state.correlation_id,
            forwarded_for=forwarded_for_chain(request.remote, request.headers.get("X-Forwarded-For"), self.proxies),
            scheme=request.scheme,
            host=request.host,
        )
        gateway_headers = self.gateway_headers(request, state)
        if "Origin" in request.headers:
            gateway_headers["Vary"] = "Origin"
        state.decorated = True
        try:
            return await self.upstreams.forward(
                request,
                upstream,
                headers,
                gateway_headers,
                compress=accepts_gzip(request.headers.get("Accept-Encoding")),
            )
        except Problem:
            state.decorated = False  # nothing was relayed: the problem answer gets the gateway's headers too
            raise

    async def stats(self, request: web.Request) -> web.StreamResponse:
        state = request[STATE]
        await self.admit(request, state, PUBLIC)
        query = parse_query({key: request.query[key] for key in request.query})
        figures = await fetch_stats(
            self.upstreams.session,
            self.upstreams.candidates,
            query,
            {"X-Request-ID": state.request_id, "X-Correlation-ID": state.correlation_id},
            self.settings.upstream_timeout_seconds,
            datetime.now(UTC),
        )
        return web.Response(body=figures.model_dump_json(by_alias=True).encode(), content_type="application/json")

    async def openapi_json(self, request: web.Request) -> web.StreamResponse:
        await self.admit(request, request[STATE], PUBLIC)
        body = await self.openapi.document_bytes(orjson.dumps)
        return web.Response(body=body, content_type="application/json")

    async def asyncapi_json(self, request: web.Request) -> web.StreamResponse:
        await self.admit(request, request[STATE], PUBLIC)
        return web.Response(body=self.asyncapi, content_type="application/json")

    async def docs(self, request: web.Request) -> web.StreamResponse:
        await self.admit(request, request[STATE], PUBLIC)
        return web.Response(text=DOCS_HTML, content_type="text/html")

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """An upstream is up while any of its replicas answers its /healthz."""
        timeout = self.settings.probe_timeout_seconds
        replica_sets = list(self.upstreams.replicas.values())
        targets = [(rs, replica) for rs in replica_sets for replica in rs.replicas]
        results = await asyncio.gather(
            *(probe(self.upstreams.session, replica.url + "/healthz", timeout) for _, replica in targets)
        )
        by_upstream: dict[str, list[tuple[bool, str]]] = {rs.name: [] for rs in replica_sets}
        for (rs, replica), (ok, detail) in zip(targets, results, strict=True):
            by_upstream[rs.name].append((ok, detail))
            if ok:
                rs.mark_up(replica)  # found answering: no need to wait for its mark to expire
        upstreams = {}
        for name, answers in by_upstream.items():
            up_count = sum(1 for ok, _ in answers if ok)
            upstreams[name] = {
                "status": "up" if up_count else "down",
                "detail": "; ".join(dict.fromkeys(detail for _, detail in answers)),
                "replicas": len(answers),
                "replicas_up": up_count,
            }
        up = sum(1 for u in upstreams.values() if u["status"] == "up")
        ready = up == len(upstreams) if self.settings.ready_requires_all_upstreams else up > 0
        status = "ready" if up == len(upstreams) else ("degraded" if ready else "not_ready")
        return web.json_response({"status": status, "upstreams": upstreams}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.upstreams.start()
        yield
        await self.upstreams.close()
        if self.access_log is not None:
            self.access_log.flush()


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def build(settings: GatewaySettings | None = None) -> web.Application:
    settings = settings or GatewaySettings()
    gateway = Gateway(settings)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[gateway.front_door])
    app[GATEWAY] = gateway
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics)
    app.router.add_get("/api/v1/stats", gateway.stats)
    app.router.add_get("/api/v1/openapi.json", gateway.openapi_json)
    app.router.add_get("/api/v1/asyncapi.json", gateway.asyncapi_json)
    app.router.add_get("/api/v1/docs", gateway.docs)
    dashboard.install(app)  # the public dashboard at / (static files; reads the public API)
    app.router.add_route("*", "/api/v1/{tail:.*}", gateway.proxy)
    app.router.add_post("/v1.0/access-token/b2b", gateway.proxy)  # SNAP's fixed path (routing.SNAP_PATHS)
    app.cleanup_ctx.append(gateway.lifecycle)
    app.on_response_prepare.append(_plain_server_header)
    return app


async def _plain_server_header(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp would send `Python/3.x aiohttp/3.x`: versions help an attacker pick exploits.
    response.headers["Server"] = "bejo"


def main() -> None:
    settings = GatewaySettings()
    if settings.workers == 1:
        run_service(settings, lambda: build(settings))
        return
    raise SystemExit(
        serve_workers(settings.workers, lambda: run_service(settings, lambda: build(settings), reuse_port=True))
    )
