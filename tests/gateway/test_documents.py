"""Stats composition, OpenAPI merging and the AsyncAPI document (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel, create_model

from bejo_contracts import all_models, topology
from bejo_gateway import asyncapi
from bejo_gateway.openapi import gateway_document, merge
from bejo_gateway.stats import CatalogStats, OrderStats, StatsQuery, compose, parse_query
from bejo_kit.api import Router, openapi_document
from bejo_kit.errors import ValidationProblem

ROOT = Path(__file__).resolve().parents[2]


def test_stats_merge_both_services_by_pemda() -> None:
    catalog = CatalogStats.model_validate(
        {
            "providers": 5,
            "products": 40,
            "by_pemda": [{"pemda": "35.15", "providers": 3, "products": 30}, {"pemda": "35.78", "providers": 2,
                                                                              "products": 10}],
        }
    )  # fmt: skip
    orders = OrderStats.model_validate(
        {
            "orders": 7,
            "transaction_value": 18_200_000,
            "participating_pemda": 2,
            "by_pemda": [
                {"pemda": "35.15", "orders": 4, "transaction_value": 10_000_000},
                {"pemda": "35.07", "orders": 3, "transaction_value": 8_200_000},
            ],
            "by_period": [
                {"period": "2026-02", "orders": 5, "transaction_value": 12_000_000},
                {"period": "2026-01", "orders": 2, "transaction_value": 6_200_000},
            ],
        }
    )
    now = datetime(2026, 3, 1, tzinfo=UTC)
    stats = compose(catalog, orders, StatsQuery(pemda="35"), now)
    assert (stats.transaction_value, stats.orders, stats.providers, stats.products, stats.participating_pemda) == (
        18_200_000, 7, 5, 40, 2,
    )  # fmt: skip
    assert [row.model_dump() for row in stats.by_pemda] == [
        {"pemda": "35.07", "orders": 3, "transaction_value": 8_200_000, "providers": 0, "products": 0},
        {"pemda": "35.15", "orders": 4, "transaction_value": 10_000_000, "providers": 3, "products": 30},
        {"pemda": "35.78", "orders": 0, "transaction_value": 0, "providers": 2, "products": 10},
    ]
    assert [p.period for p in stats.by_period] == ["2026-01", "2026-02"]
    assert sum(r.transaction_value for r in stats.by_pemda) == stats.transaction_value
    assert stats.model_dump(mode="json", by_alias=True)["filters"] == {"pemda": "35", "from": None, "to": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "query"),
        ({"pemda": "Jawa Timur"}, "pemda"),
        ({"pemdas": "35"}, "pemdas"),
    ],
)
def test_stats_query_is_validated(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationProblem) as refused:
        parse_query(params)
    assert refused.value.status == 422
    assert field in [e["field"] for e in refused.value.extra["errors"]]


def test_stats_query_accepts_the_documented_forms() -> None:
    query = parse_query({"pemda": "35.15", "from": "2026-01-01", "to": "2026-01-31"})
    assert (query.pemda, query.from_, query.to) == ("35.15", date(2026, 1, 1), date(2026, 1, 31))
    assert query.upstream_params(dates=True) == {"pemda": "35.15", "from": "2026-01-01", "to": "2026-01-31"}
    assert query.upstream_params(dates=False) == {"pemda": "35.15"}


def _catalog_line() -> type[BaseModel]:
    class Line(BaseModel):
        product_id: str
        quantity: int

    return Line


def _orders_line() -> type[BaseModel]:
    class Line(BaseModel):
        product_id: str
        unit_price: int

    return Line


def _service_document(tag: str, path: str, line: type[BaseModel], wrapper_name: str) -> dict[str, Any]:
    """A real kit-generated document whose schema `Line` means something else in each service."""
    holder = create_model(wrapper_name, lines=(list[line], ...))  # type: ignore[valid-type]
    router = Router(tag=tag)

    @router.post(path, body=holder, response=holder, roles=("pp",))
    async def handler(req: Any) -> None:
        """Do the thing"""

    app = web.Application()
    router.install(app)
    return openapi_document(app, title=tag)


def test_openapi_merge_prefixes_colliding_schemas_and_stays_valid() -> None:
    catalog = _service_document("catalog", "/api/v1/products/check", _catalog_line(), "Basket")
    orders = _service_document("orders", "/api/v1/orders/check", _orders_line(), "Cart")
    stray = {"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {"/api/v1/orders/x": {}}}
    merged = merge({"gateway": gateway_document(), "catalog": catalog, "orders": orders, "payments": stray},
                   {"notifications": "ConnectionRefusedError"})  # fmt: skip
    validate(merged)
    schemas = merged["components"]["schemas"]
    assert schemas["Line"]["properties"].keys() == {"product_id", "quantity"}
    assert schemas["orders_Line"]["properties"].keys() == {"product_id", "unit_price"}
    assert schemas["Cart"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/orders_Line"}
    assert schemas["Basket"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
    assert "Problem" in schemas and not any(k.endswith("_Problem") for k in schemas)  # identical: shared
    assert set(merged["paths"]) == {"/api/v1/products/check", "/api/v1/orders/check", "/api/v1/stats"}
    assert merged["x-upstreams"]["notifications"]["status"] == "unavailable"
    assert "notifications" in merged["info"]["description"]
    assert merged["x-unrouted-paths"] == ["payments: /api/v1/orders/x"]


def test_asyncapi_document_covers_every_event_and_queue() -> None:
    doc = asyncapi.build()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == set(all_models())
    refs = _refs(doc)
    for ref in refs:  # every reference resolves
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    receives = [op for op in doc["operations"].values() if op["action"] == "receive"]
    for spec in (s for specs in topology.QUEUES.values() for s in specs):
        assert any(op["x-queue"] == spec.name for op in receives), spec.name
    placed = doc["channels"]["bejo_orders_order_placed_v1"]
    assert placed["bindings"]["amqp"]["exchange"]["name"] == topology.EVENTS_EXCHANGE
    sync = doc["channels"]["bejo_catalog_sync_product_v1"]
    assert sync["bindings"]["amqp"]["exchange"]["name"] == topology.CATALOG_SYNC_EXCHANGE


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("bejo.#", "bejo.orders.order.placed.v1", True),
        ("bejo.payments.#", "bejo.payments.va.issued.v1", True),
        ("bejo.catalog.stock.*.v1", "bejo.catalog.stock.reserved.v1", True),
        ("bejo.catalog.stock.*.v1", "bejo.catalog.stock.reserved.extra.v1", False),
        ("bejo.orders.order.placed.v1", "bejo.orders.order.placed.v1", True),
        ("bejo.orders.order.placed.v1", "bejo.orders.order.shipped.v1", False),
        ("#", "a", True),
        ("a.#.z", "a.z", True),
    ],
)
def test_topic_matching(pattern: str, key: str, matches: bool) -> None:
    assert asyncapi.topic_matches(pattern, key) is matches


def test_committed_asyncapi_document_is_current() -> None:
    committed = (ROOT / "docs" / "asyncapi.json").read_bytes()
    assert orjson.loads(committed) == orjson.loads(asyncapi.render()), (
        "docs/asyncapi.json is stale: run `.venv/bin/python -m bejo_gateway.asyncapi > docs/asyncapi.json`"
    )
    assert committed == asyncapi.render()
