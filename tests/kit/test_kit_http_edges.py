"""The kit's HTTP layer on a real server: hostile bodies, paths and headers get a 4xx problem."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel, ConfigDict
from pymongo import AsyncMongoClient
from support import serve
from yarl import URL

from bejo_kit.api import ApiRequest, Router
from bejo_kit.http import STORE_RETRY_AFTER_SECONDS, create_app

pytestmark = pytest.mark.integration


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    extra: dict[str, Any] = {}


@pytest.fixture
async def base() -> AsyncIterator[str]:
    router = Router(tag="notes")

    @router.post("/api/v1/notes/{id}", body=Note, response=Note)
    async def put_note(req: ApiRequest[Note, None]) -> Note:
        return req.body

    app = create_app()
    router.install(app)
    async with serve(app) as url:
        yield url


async def test_deeply_nested_bodies_are_refused_not_crashed(base: str) -> None:
    deep = "[" * 1000 + '"x"' + "]" * 1000  # within the parser's depth limit, past Python's recursion limit
    async with aiohttp.ClientSession() as http:
        for body in (f'{{"text": "a", "extra": {{"deep": {deep}}}}}', f'{{"text": {deep}}}'):
            async with http.post(
                f"{base}/api/v1/notes/n1", data=body, headers={"Content-Type": "application/json"}
            ) as reply:
                problem = await reply.json()
                assert reply.status == 422 and problem["errors"][0]["type"] == "too_deep", problem
        nested = "[" * 5000 + "]" * 5000  # past the JSON parser's depth limit
        async with http.post(
            f"{base}/api/v1/notes/n1", data=nested, headers={"Content-Type": "application/json"}
        ) as reply:
            assert reply.status == 400 and (await reply.json())["code"] == "malformed_json"


async def test_control_characters_in_the_path_and_a_wrong_media_type(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = URL(f"{base}/api/v1/notes/n%001", encoded=True)
        async with http.post(url, json={"text": "a"}) as reply:
            problem = await reply.json()
            assert reply.status == 422 and problem["errors"][0]["field"] == "id", problem
        async with http.post(f"{base}/api/v1/notes/n1", data="text=a") as reply:
            assert reply.status == 415
            assert reply.headers["Server"] == "bejo"  # no software or version named


async def test_no_server_version_on_any_answer(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/nowhere"):
            async with http.get(base + path) as reply:
                assert reply.headers["Server"] == "bejo", (path, reply.headers)


async def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    """A store restart or failover: the request may be retried, so it is no 500."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=300
    )
    router = Router(tag="notes")

    @router.get("/api/v1/notes/{id}", response=Note)
    async def get_note(req: ApiRequest[None, None]) -> Note:
        found = await client["notes"]["notes"].find_one({"_id": req.path("id")})
        return Note(text=str(found))

    app = create_app()
    router.install(app)
    try:
        async with serve(app) as url, aiohttp.ClientSession() as http, http.get(url + "/api/v1/notes/n1") as reply:
            body = await reply.json(content_type=None)
            assert reply.status == 503, body
            assert reply.headers["Retry-After"] == str(STORE_RETRY_AFTER_SECONDS)
            assert reply.content_type == "application/problem+json" and body["code"] == "store_unavailable"
    finally:
        await client.close()
