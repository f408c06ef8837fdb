"""The one HTTP client of the tests: a base URL, tokens as bearer headers, bodies decoded once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from .identity import bearer


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # decoded JSON, text for other content types, None when there is no body
    headers: CIMultiDictProxy[str]


@dataclass
class Api:
    """Requests against one base URL (or any absolute URL), as a client of the gateway or a service."""

    http: aiohttp.ClientSession
    base: str = ""

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> Reply:
        sent = dict(headers or {})
        if token:
            sent.update(bearer(token))
        url = path if path.startswith("http") else self.base + path
        async with self.http.request(method, url, json=json, headers=sent, **kw) as response:
            return Reply(response.status, await decoded(response), response.headers)

    async def ok(self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any) -> Any:
        """The body of a 2xx reply; anything else fails the test with the status and body."""
        reply = await self.call(method, path, token, json, **kw)
        assert 200 <= reply.status < 300, f"{method} {path} -> {reply.status}: {reply.body}"
        return reply.body

    def at(self, base: str) -> Api:
        """The same client, against another base URL (another replica)."""
        return Api(self.http, base)


async def decoded(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    if not raw:
        return None
    if "json" in response.content_type:
        return await response.json(content_type=None)
    return raw.decode(response.charset or "utf-8", errors="replace")
