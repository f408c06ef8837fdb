"""aiohttp application factory shared by every service.

Gives each service: problem+json errors (never a stack trace to the client), request-id and
correlation-id binding, a latency histogram, /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure

from bejo_contracts.errors import DomainError

from . import context, metrics
from .errors import Problem, ServiceUnavailable, problem_for
from .logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[bool]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    body = problem.body()
    request_id = context.current().get(context.REQUEST_ID)
    if request_id:
        body["request_id"] = request_id
    return web.Response(body=orjson.dumps(body), status=problem.status, content_type=PROBLEM_JSON, headers=headers)


class _HttpStatusProblem(Problem):
    def __init__(self, status: int, title: str, detail: str, code: str) -> None:
        super().__init__(detail, code=code)
        self.status = status
        self.title = title


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}


@web.middleware
async def request_context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-ID") or context.new_id()
    correlation_id = request.headers.get("X-Correlation-ID") or request_id
    started = time.perf_counter()
    status = 500
    with context.bound(request_id=request_id, correlation_id=correlation_id, causation_id=request_id):
        try:
            response = await _render_errors(request, handler)
            status = response.status
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
            metrics.HTTP_LATENCY.labels(request.method, route, str(status)).observe(time.perf_counter() - started)


async def _render_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except DomainError as error:
        return problem_response(problem_for(error))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "http_error")
        detail = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 404:
            detail = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            detail = f"method {request.method} is not allowed on {request.path}"
        return problem_response(_HttpStatusProblem(exc.status, exc.reason, detail, code), headers=_allow_header(exc))
    except ConnectionFailure as exc:
        # The database is unreachable for a moment (a restart, a failover): nothing was decided, and
        # the same request will work again shortly, so say so rather than 500.
        log.warning("database unavailable", method=request.method, path=request.path, error=repr(exc))
        unavailable = ServiceUnavailable("the database is briefly unavailable; retry shortly", code="store_unavailable")
        return problem_response(unavailable, headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})
    except ConnectionResetError:
        if not _client_gone(request):
            log.exception("unhandled error", method=request.method, path=request.path)
            return problem_response(_INTERNAL)
        # The client (or the gateway's body limit) dropped the connection mid-request: nothing
        # failed here, and nobody is left to read an answer.
        log.info("client closed the connection", method=request.method, path=request.path)
        return problem_response(_CLIENT_GONE)
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return problem_response(_INTERNAL)


STORE_RETRY_AFTER_SECONDS = 2

_INTERNAL = _HttpStatusProblem(
    500,
    "Internal error",
    "the server failed to handle this request; quote the request_id when reporting it",
    "internal_error",
)
# 499 as in nginx: "client closed request"; recorded in the latency histogram, never seen by anyone.
_CLIENT_GONE = _HttpStatusProblem(
    499, "Client closed request", "the connection closed before the request was read", "client_closed_request"
)


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _allow_header(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow") if exc.headers else None
    return {"Allow": allow} if allow else None


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    results = {}
    for name, check in request.app[READINESS_CHECKS].items():
        try:
            results[name] = bool(await check())
        except Exception:  # noqa: BLE001 - a failing check means not ready
            results[name] = False
    ready = all(results.values())
    return json_response({"status": "ready" if ready else "not_ready", "checks": results}, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(*, client_max_size: int = 1024 * 1024, middlewares: list[Any] | None = None) -> web.Application:
    app = web.Application(
        client_max_size=client_max_size, middlewares=[request_context_middleware, *(middlewares or [])]
    )
    app[READINESS_CHECKS] = {}
    app.on_response_prepare.append(_server_header)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """Name no server software or version (aiohttp would send `Python/3.x aiohttp/3.y.z`)."""
    response.headers["Server"] = "bejo"


def add_readiness_check(app: web.Application, name: str, check: ReadinessCheck) -> None:
    app[READINESS_CHECKS][name] = check
