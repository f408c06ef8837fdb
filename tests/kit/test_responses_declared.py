"""Handlers are held to their route's declared response model and statuses, so the OpenAPI document
cannot drift from what is sent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field

from bejo_kit.api import Endpoint, Reply, UndeclaredResponse, render


class Entry(BaseModel):
    from_status: str = Field(alias="from", serialization_alias="from")
    count: int


class Other(BaseModel):
    count: int


async def _handler(_: Any) -> None:
    return None


def endpoint(response: type[BaseModel] | None = Entry, **responses: str) -> Endpoint:
    return Endpoint(
        "GET",
        "/things",
        _handler,
        None,
        None,
        response,
        200,
        "",
        None,
        "test",
        {int(k[1:]): v for k, v in responses.items()},
    )


def sent(result: Any, ep: Endpoint) -> tuple[int, dict[str, Any]]:
    response = render(result, ep)
    return response.status, orjson.loads(response.body)  # type: ignore[attr-defined]


def test_a_declared_model_or_a_conforming_dict_is_sent_by_alias() -> None:
    assert sent(Entry(**{"from": "placed", "count": 1}), endpoint()) == (200, {"from": "placed", "count": 1})
    assert sent({"from": "placed", "count": "2"}, endpoint()) == (200, {"from": "placed", "count": 2})


def test_a_body_that_is_not_the_declared_model_is_refused() -> None:
    with pytest.raises(UndeclaredResponse, match="not a Entry"):
        render({"count": 1}, endpoint())
    with pytest.raises(UndeclaredResponse, match="returned Other, declared Entry"):
        render(Other(count=1), endpoint())
    with pytest.raises(UndeclaredResponse, match="declares no response model"):
        render({"count": 1}, endpoint(response=None))


def test_a_status_must_be_declared() -> None:
    body = Entry(**{"from": "placed", "count": 1})
    with pytest.raises(UndeclaredResponse, match="answered 202"):
        render(Reply(body, status=202), endpoint())
    assert sent(Reply(body, status=202), endpoint(s202="Accepted"))[0] == 202
    assert render(None, endpoint()).status == 204
