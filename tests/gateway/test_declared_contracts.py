"""The published documents declare what the services and the gateway really send and require
(built from the real apps' routes; no server needed)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from bejo_catalog.app import build as build_catalog
from bejo_contracts import Envelope
from bejo_contracts.catalog import StockReleased
from bejo_gateway import asyncapi
from bejo_gateway.openapi import GATEWAY_RESPONSES, gateway_document, merge
from bejo_kit.api import openapi_document
from bejo_notifications.app import build as build_notifications
from bejo_orders.app import build as build_orders

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    documents = {"gateway": gateway_document()}
    for name, build in (("catalog", build_catalog), ("orders", build_orders), ("notifications", build_notifications)):
        documents[name] = openapi_document(build(), title=name)
    document = merge(documents, {"payments": "left out of this test"})
    validate(document)
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_checkout_declares_its_required_idempotency_key(merged: dict[str, Any]) -> None:
    checkout = merged["paths"]["/api/v1/orders"]["post"]
    [key] = [p for p in checkout["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    assert key["schema"]["maxLength"] == 200
    [if_match] = [
        p for p in merged["paths"]["/api/v1/products/{product_id}"]["patch"]["parameters"] if p["in"] == "header"
    ]
    assert if_match["name"] == "If-Match" and if_match["required"] is False


def test_every_operation_declares_the_gateways_answers_and_bodies_their_media_type(merged: dict[str, Any]) -> None:
    found = operations(merged)
    assert len(found) > 30
    for path, method, op in found:
        responses = op["responses"]
        assert set(GATEWAY_RESPONSES) | {"401"} <= responses.keys(), (method, path)
        for status in GATEWAY_RESPONSES:
            assert "application/problem+json" in responses[status]["content"], (method, path, status)
        if "requestBody" in op:
            assert {"413", "415"} <= responses.keys(), (method, path)


def test_money_and_quantity_fields_are_bounded_in_the_schemas(merged: dict[str, Any]) -> None:
    schemas = merged["components"]["schemas"]
    for model, field in [
        ("ProductIn", "price"),
        ("ProductIn", "stock"),
        ("ProductIn", "min_order_qty"),
        ("PromotionIn", "discount_value"),
        ("CartLineIn", "quantity"),
    ]:
        assert "maximum" in schemas[model]["properties"][field], (model, field)
    het = schemas["ProductIn"]["properties"]["het"]["anyOf"][0]
    assert het["maximum"] < 2**63
    assert schemas["PlaceOrder"]["properties"]["lines"]["maxItems"] == 100


def test_the_asyncapi_envelope_requires_id_and_specversion_1_0() -> None:
    document = asyncapi.build()
    envelope = document["components"]["schemas"]["Envelope"]
    assert {"id", "specversion", "source", "type", "time", "data"} <= set(envelope["required"])
    assert envelope["properties"]["specversion"]["const"] == "1.0"
    message = document["components"]["messages"]["StockReleased"]["payload"]
    schema = {"components": document["components"], **message}
    sent = Envelope.wrap(StockReleased(order_id="ORD-1", pemda="35.15"), source="bejo/catalog").model_dump(mode="json")
    jsonschema.validate(sent, schema)
    for broken in ({k: v for k, v in sent.items() if k != "id"}, {**sent, "specversion": "0.3"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
    with pytest.raises(ValueError, match=r"1\.0"):
        Envelope.model_validate({**sent, "specversion": "0.3"})
