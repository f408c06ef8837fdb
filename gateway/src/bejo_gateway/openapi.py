"""The merged OpenAPI 3.1 document: every service's own document (generated from its pydantic
models) plus the gateway's endpoints, under one `paths` and one `components`.

Schema names that two services use for different shapes are prefixed with the service name
(`orders_Line`), and every `$ref` of that service is rewritten to match. A service that cannot be
reached is left out and named in `info.description` and `x-upstreams`; the document is cached for
a short time so a docs page reload does not fan out to every service.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from bejo_kit.api import Router, openapi_document

from .routing import upstream_for
from .stats import StatsQuery, TransparencyStats

Document = dict[str, Any]
_SCHEMA_REF = "#/components/schemas/"
# What the gateway itself may answer on any route, before or instead of the service.
GATEWAY_RESPONSES = {
    "429": "Too many requests from this client; try again after Retry-After seconds",
    "502": "The service gave no valid answer",
    "503": "The service is unavailable",
    "504": "The service did not answer in time",
}
_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": _SCHEMA_REF + "Problem"}}}


def _with_gateway_responses(item: dict[str, Any]) -> dict[str, Any]:
    """The path item with the gateway's own answers declared on each of its operations."""
    for operation in item.values():
        if isinstance(operation, dict) and isinstance(operation.get("responses"), dict):
            for status, text in GATEWAY_RESPONSES.items():
                operation["responses"].setdefault(status, {"description": text, "content": _PROBLEM_CONTENT})
    return item


def _gateway_router() -> Router:
    router = Router(tag="transparency")

    @router.get("/api/v1/stats", query=StatsQuery, response=TransparencyStats, responses={503: "A service is down"})
    async def transparency_stats(req: Any) -> None:
        """Transparency figures: transaction value, orders, providers, products, participating pemda.

        Orders are paid or completed orders, by the day they were paid (WIB). `providers` counts verified
        providers only (shops that are public and can take orders: the program's "penyedia yang sudah
        tayang"); pending and suspended registrations are not counted. `participating_pemda` counts
        regencies and cities with at least one order. Also by pemda, by month, the top providers and
        the categories sold. Public: no token."""

    return router


def gateway_document() -> Document:
    """The gateway's own endpoints, generated the same way the services generate theirs."""
    app = web.Application()
    _gateway_router().install(app)
    return openapi_document(app, title="bejo gateway")


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_SCHEMA_REF):
                name = value[len(_SCHEMA_REF) :]
                out[key] = _SCHEMA_REF + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _schemas(doc: Document) -> dict[str, Any]:
    return dict(doc.get("components", {}).get("schemas", {}))


def merge(
    documents: dict[str, Document], unavailable: dict[str, str], *, title: str = "bejo API", version: str = "1.0.0"
) -> Document:
    """Merge per-source documents (`gateway` first, then the services) into one."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    security_schemes: dict[str, Any] = {}
    tags: dict[str, dict[str, Any]] = {}
    unrouted: list[str] = []
    for source, original in documents.items():
        doc = copy.deepcopy(original)
        own = _schemas(doc)
        renames: dict[str, str] = {}
        # Renaming one schema changes the schemas that refer to it; repeat until nothing new collides.
        while True:
            rewritten = {renames.get(n, n): _rewrite_refs(s, renames) for n, s in own.items()}
            clashes = {
                original_name
                for original_name in own
                if original_name not in renames
                and original_name in schemas
                and schemas[original_name] != rewritten[original_name]
            }
            if not clashes:
                break
            renames.update({name: f"{source}_{name}" for name in clashes})
        schemas.update(rewritten)
        for path, rewritten_item in _rewrite_refs(doc.get("paths", {}), renames).items():
            item = _with_gateway_responses(rewritten_item)
            routed = upstream_for(path)
            if source != "gateway" and routed != source:
                unrouted.append(f"{source}: {path}")
                continue
            if path in paths:
                for method, operation in item.items():
                    paths[path].setdefault(method, operation)
            else:
                paths[path] = item
            for operation in item.values():
                for tag in operation.get("tags", []) if isinstance(operation, dict) else []:
                    tags.setdefault(tag, {"name": tag, "x-service": source})
        security_schemes.update(doc.get("components", {}).get("securitySchemes", {}))
    included = [s for s in documents if s != "gateway"]
    description = (
        "The public API of bejo, the government e-marketplace, as served by the gateway. "
        "Send `Authorization: Bearer <JWT>` except on public routes; errors are RFC 9457 problem+json "
        "with a stable `code`; every answer carries `X-Request-ID` and `RateLimit-*` headers. "
        "Events are described in the AsyncAPI document at /api/v1/asyncapi.json."
        f"\n\nServices included: {', '.join(included) or 'none'}."
    )
    if unavailable:
        description += " Left out because they could not be reached: " + ", ".join(
            f"{name} ({why})" for name, why in sorted(unavailable.items())
        )
    document: Document = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/", "description": "this gateway"}],
        "tags": [tags[name] for name in sorted(tags)],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": security_schemes},
        "x-upstreams": {
            **{name: {"status": "included"} for name in included},
            **{name: {"status": "unavailable", "detail": why} for name, why in unavailable.items()},
        },
    }
    if unrouted:
        document["x-unrouted-paths"] = sorted(unrouted)
    return document


class OpenApiAggregator:
    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        names: list[str],
        candidates: Callable[[str], list[str]],
        *,
        ttl_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        """`candidates(name)`: base URLs of the upstream's replicas in the order to ask them."""
        self._session = session
        self._names = names
        self._candidates = candidates
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._gateway = gateway_document()
        self._cached: tuple[float, bytes] | None = None
        self._lock = asyncio.Lock()

    async def document_bytes(self, render: Callable[[Document], bytes]) -> bytes:
        """The merged document, rendered; refreshed at most once per TTL however many ask at once."""
        async with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < self._ttl:
                return self._cached[1]
            rendered = render(await self.build())
            self._cached = (self._clock(), rendered)
            return rendered

    async def build(self) -> Document:
        names = self._names
        results = await asyncio.gather(*(self._fetch_any(name) for name in names))
        documents: dict[str, Document] = {"gateway": self._gateway}
        unavailable: dict[str, str] = {}
        for name, (doc, why) in zip(names, results, strict=True):
            if doc is None:
                unavailable[name] = why
            else:
                documents[name] = doc
        return merge(documents, unavailable)

    async def _fetch_any(self, name: str) -> tuple[Document | None, str]:
        """The document of the first replica that gives one (replicas run the same code)."""
        reasons: list[str] = []
        for base in self._candidates(name):
            doc, why = await self._fetch(base + "/openapi.json")
            if doc is not None:
                return doc, ""
            reasons.append(why)
        return None, "; ".join(dict.fromkeys(reasons))

    async def _fetch(self, url: str) -> tuple[Document | None, str]:
        try:
            async with self._session().get(url, timeout=aiohttp.ClientTimeout(total=self._timeout)) as answer:
                if answer.status != 200:
                    return None, f"HTTP {answer.status}"
                doc = await answer.json(content_type=None)
        except TimeoutError:
            return None, f"no answer within {self._timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, type(exc).__name__
        if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
            return None, "not an OpenAPI 3 document"
        return doc, ""
