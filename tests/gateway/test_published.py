"""What the gateway serves itself: merged OpenAPI, the docs page, AsyncAPI and the transparency stats."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate
from support import bearer, token

from bejo_gateway import asyncapi

CATALOG_FIGURES = {
    "providers": 3,
    "products": 41,
    "by_pemda": [{"pemda": "35.15", "providers": 2, "products": 40}, {"pemda": "35.78", "providers": 1,
                                                                      "products": 1}],
}  # fmt: skip
ORDER_FIGURES = {
    "orders": 3,
    "transaction_value": 7_845_000,
    "participating_pemda": 2,
    "by_pemda": [
        {"pemda": "35.15", "orders": 2, "transaction_value": 5_230_000},
        {"pemda": "35.07", "orders": 1, "transaction_value": 2_615_000},
    ],
    "by_period": [{"period": "2026-01", "orders": 3, "transaction_value": 7_845_000}],
}


async def test_merged_openapi_is_valid_and_says_what_is_missing(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(down=("payments",))
    async with http.get(stack.gateway + "/api/v1/openapi.json") as answer:
        assert answer.status == 200
        document = await answer.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert {"/api/v1/catalog/documented", "/api/v1/orders/documented", "/api/v1/stats"} <= set(document["paths"])
    assert document["x-upstreams"]["payments"]["status"] == "unavailable"
    assert "payments" in document["info"]["description"]
    stats_operation = document["paths"]["/api/v1/stats"]["get"]
    assert {p["name"] for p in stats_operation["parameters"]} == {"pemda", "from", "to"}
    async with http.get(stack.gateway + "/api/v1/docs") as answer:
        assert answer.status == 200 and answer.content_type == "text/html"
        page = await answer.text()
    assert "openapi.json" in page and "<script" in page and "http" not in page.split("<script", 1)[1].split('"')[0]


async def test_asyncapi_is_served(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    async with http.get(stack.gateway + "/api/v1/asyncapi.json") as answer:
        assert answer.status == 200
        assert await answer.read() == asyncapi.render()


async def test_stats_add_up_across_services(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    stack.upstreams["catalog"].figures = CATALOG_FIGURES
    stack.upstreams["orders"].figures = ORDER_FIGURES
    url = stack.gateway + "/api/v1/stats?pemda=35&from=2026-01-01&to=2026-01-31"
    async with http.get(url) as answer:  # public: no token
        assert answer.status == 200, await answer.text()
        stats = await answer.json()
    assert stack.upstreams["catalog"].last()["query"] == {"pemda": "35"}
    assert stack.upstreams["orders"].last()["query"] == {"pemda": "35", "from": "2026-01-01", "to": "2026-01-31"}
    assert stats["transaction_value"] == 7_845_000 == sum(r["transaction_value"] for r in stats["by_pemda"])
    assert stats["orders"] == 3 == sum(r["orders"] for r in stats["by_pemda"])
    assert stats["providers"] == 3 == sum(r["providers"] for r in stats["by_pemda"])
    assert stats["products"] == 41 == sum(r["products"] for r in stats["by_pemda"])
    assert stats["participating_pemda"] == 2
    assert [r["pemda"] for r in stats["by_pemda"]] == ["35.07", "35.15", "35.78"]
    assert stats["filters"] == {"pemda": "35", "from": "2026-01-01", "to": "2026-01-31"}
    assert "generated_at" in stats


async def test_stats_refuse_bad_queries(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    for query, field in [("from=2026-02-30", "from"), ("to=soon", "to"), ("pemda=jatim", "pemda"),
                         ("from=2026-03-01&to=2026-01-01", "query")]:  # fmt: skip
        async with http.get(stack.gateway + "/api/v1/stats?" + query) as answer:
            assert answer.status == 422, query
            problem = await answer.json()
        assert field in [e["field"] for e in problem["errors"]], problem
    assert stack.upstreams["orders"].seen == []


async def test_stats_name_the_service_that_is_down(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(down=("orders",))
    stack.upstreams["catalog"].figures = CATALOG_FIGURES
    async with http.get(stack.gateway + "/api/v1/stats", headers=bearer(token("auditor", "a-1"))) as answer:
        assert answer.status == 503
        problem = await answer.json()
    assert problem["upstream"] == "orders" and "orders" in problem["detail"]


async def test_stats_reject_an_upstream_answer_of_the_wrong_shape(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    stack.upstreams["catalog"].figures = {"providers": "many"}
    stack.upstreams["orders"].figures = ORDER_FIGURES
    async with http.get(stack.gateway + "/api/v1/stats") as answer:
        assert answer.status == 502
        assert (await answer.json())["upstream"] == "catalog"
