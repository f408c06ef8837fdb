"""Declarative routes: pydantic models in, pydantic models out, OpenAPI 3.1 generated from them.

    router = Router(tag="orders")

    @router.post("/api/v1/orders", body=PlaceOrder, response=Checkout, status=201, roles=("pp",))
    async def place_order(req: ApiRequest[PlaceOrder, None]) -> Checkout: ...

The wrapper parses and validates the body and query (422 naming each bad field), verifies the
token and the role (401/403), and renders the result as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from .auth import Principal, TokenVerifier, bearer_token
from .errors import BadRequest, Unauthorized, UnsupportedMediaType, ValidationProblem

B = TypeVar("B", bound=BaseModel | None)
Q = TypeVar("Q", bound=BaseModel | None)

TOKEN_VERIFIER = web.AppKey("token_verifier", TokenVerifier)
ENDPOINTS = web.AppKey("endpoints", list["Endpoint"])


@dataclass
class ApiRequest(Generic[B, Q]):
    request: web.Request
    body: B
    query: Q
    principal: Principal | None

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def user(self) -> Principal:
        """The caller, on routes that require a token."""
        if self.principal is None:
            raise Unauthorized("a bearer token is required", code="missing_token")
        return self.principal

    @property
    def app(self) -> web.Application:
        return self.request.app


@dataclass
class Reply:
    """A response with a status or headers other than the route's defaults."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[ApiRequest[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Header:
    """A request header a route reads, declared in the OpenAPI document (the handler checks it)."""

    name: str
    description: str
    required: bool = False
    max_length: int | None = None

    def parameter(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return {
            "name": self.name,
            "in": "header",
            "required": self.required,
            "description": self.description,
            "schema": schema,
        }


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    summary: str
    roles: tuple[str, ...] | None  # None: public (a token is verified if one is sent)
    tag: str
    responses: dict[int, str]
    headers: tuple[Header, ...] = ()


def validation_errors(exc: ValidationError, location: str | None = None) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or (location or "body")
        errors.append({"field": loc, "message": err["msg"], "type": err["type"]})
    return errors


# C0 controls other than tab, line feed and carriage return, DEL and the C1 range: no name, address
# or reason holds them, and NUL cuts strings short in C-based stores, logs and mail headers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# No request model nests deeper than a few levels; anything far deeper is refused before pydantic,
# the handlers, BSON or a JSON renderer recurse over it.
MAX_BODY_DEPTH = 32


def unsafe_values(value: Any, path: str = "") -> list[dict[str, Any]]:
    """One error per string (or object key) of a parsed JSON value that holds a control character,
    or for nesting deeper than MAX_BODY_DEPTH.

    Iterative: a deeply nested body must not exhaust the interpreter's recursion limit."""
    errors: list[dict[str, Any]] = []
    pending: list[tuple[str, Any, int]] = [(path, value, 0)]
    while pending:
        where, item, depth = pending.pop()
        if isinstance(item, str):
            if found := _CONTROL.search(item):
                message = f"must not contain control characters (found U+{ord(found.group()):04X})"
                errors.append({"field": where or "body", "message": message, "type": "control_character"})
        elif isinstance(item, dict | list) and depth >= MAX_BODY_DEPTH:
            message = f"nested deeper than {MAX_BODY_DEPTH} levels"
            errors.append({"field": where or "body", "message": message, "type": "too_deep"})
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                inner = f"{where}.{key}" if where else str(key)
                pending += [(inner, child, depth + 1), (inner, str(key), depth + 1)]
        elif isinstance(item, list):
            pending += [
                (f"{where}.{i}" if where else str(i), child, depth + 1) for i, child in reversed(list(enumerate(item)))
            ]
    return errors


def _refuse_unsafe_values(value: Any, where: str) -> None:
    if errors := unsafe_values(value):
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise ValidationProblem(f"invalid {where}: {fields}", errors)


def _validation_problem(exc: ValidationError, where: str) -> ValidationProblem:
    errors = validation_errors(exc, where)
    fields = ", ".join(e["field"] for e in errors)
    return ValidationProblem(f"invalid {where}: {fields}", errors)


async def parse_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_type not in ("application/json", "application/merge-patch+json"):
        raise UnsupportedMediaType(
            f"send a JSON body with Content-Type: application/json (got {request.content_type!r})"
        )
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise ValidationProblem.field("body", "the body must be a JSON object", "object_type")
    _refuse_unsafe_values(data, "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_problem(exc, "body") from None


def parse_query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    _refuse_unsafe_values(dict(request.query), "query")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _validation_problem(exc, "query") from None


async def authenticate(request: web.Request) -> Principal | None:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return None
    return await request.app[TOKEN_VERIFIER].verify(token)


class UndeclaredResponse(TypeError):
    """A handler returned what its route does not declare: a bug in the service, caught before the
    OpenAPI document and the wire disagree."""


def render(result: Any, endpoint: Endpoint) -> web.StreamResponse:
    """The handler's result as a response, held to the route's declared `response=` model and statuses."""
    if isinstance(result, web.StreamResponse):
        return result
    status, headers = endpoint.status, {}
    if isinstance(result, Reply):
        status, headers, result = result.status, result.headers, result.body
        if status != endpoint.status and status not in endpoint.responses:
            raise UndeclaredResponse(f"{endpoint.method} {endpoint.path} answered {status}, which it does not declare")
    if result is None:
        return web.Response(status=204 if status == 200 else status, headers=headers)
    # by alias, as the OpenAPI document describes the models
    body = _declared(result, endpoint).model_dump_json(by_alias=True).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _declared(result: Any, endpoint: Endpoint) -> BaseModel:
    model = endpoint.response
    if model is None:
        raise UndeclaredResponse(f"{endpoint.method} {endpoint.path} returns a body but declares no response model")
    if isinstance(result, model):
        return result
    if isinstance(result, BaseModel):
        raise UndeclaredResponse(
            f"{endpoint.method} {endpoint.path} returned {type(result).__name__}, declared {model.__name__}"
        )
    try:
        return model.model_validate(result)
    except ValidationError as exc:
        raise UndeclaredResponse(
            f"{endpoint.method} {endpoint.path} returned a body that is not a {model.__name__}: {exc}"
        ) from None


class Router:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        summary: str = "",
        roles: tuple[str, ...] | None = None,
        responses: dict[int, str] | None = None,
        headers: tuple[Header, ...] = (),
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method.upper(),
                    path,
                    handler,
                    body,
                    query,
                    response,
                    status,
                    summary or (handler.__doc__ or "").strip().split("\n")[0],
                    roles,
                    self.tag,
                    responses or {},
                    headers,
                )
            )
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def install(self, app: web.Application) -> None:
        if ENDPOINTS not in app:
            app[ENDPOINTS] = []
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))
            app[ENDPOINTS].append(endpoint)


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        _refuse_unsafe_values(dict(request.match_info), "path")
        principal = await authenticate(request)
        if endpoint.roles is not None:
            if principal is None:
                raise Unauthorized("a bearer token is required", code="missing_token")
            principal.require_role(*endpoint.roles)
        query = parse_query(request, endpoint.query) if endpoint.query else None
        body = await parse_body(request, endpoint.body) if endpoint.body else None
        result = await endpoint.handler(ApiRequest(request, body, query, principal))
        return render(result, endpoint)

    handle.__name__ = endpoint.handler.__name__
    return handle


# -- OpenAPI 3.1 ------------------------------------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "stable machine-readable error name"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}, "type": {"type": "string"}},
            },
        },
    },
}
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def openapi_document(
    app: web.Application, *, title: str, version: str = "1.0.0", description: str = ""
) -> dict[str, Any]:
    endpoints: list[Endpoint] = app.get(ENDPOINTS, [])
    models: set[type[BaseModel]] = set()
    for ep in endpoints:
        models.update(m for m in (ep.body, ep.response) if m is not None)
    keyed: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (m, "validation") for m in sorted(models, key=lambda m: m.__name__)
    ]
    refs, defs = models_json_schema(keyed, ref_template="#/components/schemas/{model}") if keyed else ({}, {})
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return dict(refs[(model, "validation")])

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        path = _PATH_PARAM.sub(r"{\1}", ep.path)
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PATH_PARAM.findall(ep.path)
        ]
        params += [header.parameter() for header in ep.headers]
        if ep.query is not None:
            query_schema = ep.query.model_json_schema()
            required = set(query_schema.get("required", []))
            for name, prop in query_schema.get("properties", {}).items():
                param = {"name": name, "in": "query", "required": name in required, "schema": prop}
                if "description" in prop:
                    param["description"] = prop["description"]
                params.append(param)
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": "OK"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": ref(ep.response)}}
        responses[str(ep.status)] = ok
        declared = {400: "Malformed request", 422: "Invalid input"}
        if ep.body is not None:
            declared[413] = "The body is larger than the service accepts"
            declared[415] = "The body is not JSON (Content-Type: application/json)"
        for status, text in {**declared, **ep.responses}.items():
            responses[str(status)] = {"description": text, "content": problem}
        # A public route still verifies a token that is sent, so 401 is possible there too.
        responses["401"] = {"description": "Missing or invalid token", "content": problem}
        if ep.roles is not None:
            responses["403"] = {"description": f"Requires role: {', '.join(ep.roles)}", "content": problem}
        operation: dict[str, Any] = {
            "operationId": f"{ep.tag}_{ep.handler.__name__}",
            "summary": ep.summary,
            "tags": [ep.tag],
            "parameters": params,
            "responses": responses,
        }
        if ep.roles is not None:
            operation["security"] = [{"bearerAuth": []}]
            operation["x-roles"] = list(ep.roles)
        if ep.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(ep.body)}}}
        paths.setdefault(path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
