"""Kit and contract rules that keep bad input and bad settings out (pure: no broker, no database)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError
from pymongo.errors import BulkWriteError

from bejo_contracts.common import MAX_CART_LINES, MAX_QUANTITY, MAX_RUPIAH, PositiveQuantity, Rupiah
from bejo_kit import metrics
from bejo_kit.api import MAX_BODY_DEPTH, Header, Router, openapi_document, unsafe_values
from bejo_kit.inbox import duplicate_keys_only
from bejo_kit.settings import DEFAULT_JWT_SECRET, KitSettings

STRONG_SECRET = "x" * 40


# -- money and quantities ------------------------------------------------------------------------


def test_the_biggest_cart_stays_far_inside_int64() -> None:
    """The bounds are what keeps totals storable: the largest cart at the highest price, plus
    PPN, and summed over two such orders, is still below BSON's int64 ceiling."""
    assert MAX_CART_LINES * MAX_QUANTITY * MAX_RUPIAH * 2 < 2**63


class Priced(BaseModel):
    price: Rupiah
    quantity: PositiveQuantity


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"price": 2**63, "quantity": 1}, "price"),
        ({"price": MAX_RUPIAH + 1, "quantity": 1}, "price"),
        ({"price": -1, "quantity": 1}, "price"),
        ({"price": 1, "quantity": 0}, "quantity"),
        ({"price": 1, "quantity": 2**63}, "quantity"),
        ({"price": 1, "quantity": MAX_QUANTITY + 1}, "quantity"),
        ({"price": 1, "quantity": 1.8446744073709552e19}, "quantity"),  # 2**64 as JSON decodes it
    ],
)
def test_money_and_quantities_are_bounded(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Priced.model_validate(values)
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]
    assert Priced(price=MAX_RUPIAH, quantity=MAX_QUANTITY).price == MAX_RUPIAH


# -- text ----------------------------------------------------------------------------------------


def test_control_characters_are_found_by_field_path() -> None:
    body = {
        "name": "Kopi\x00 Dampit",
        "description": "baris satu\nbaris dua\ttab\r\n",  # whitespace controls are text
        "lines": [{"note": "ok"}, {"note": "bel\x07"}],
        "address": {"street": "Jl. \x1b[31mMerah"},
        "price": 5,
        "ket\x00": "x",
        "c1": "\x85",
    }
    errors = unsafe_values(body)
    assert [e["field"] for e in errors] == ["name", "lines.1.note", "address.street", "ket\x00", "c1"]
    assert errors[0]["type"] == "control_character"
    assert "U+0000" in errors[0]["message"]
    assert unsafe_values({"name": "Kertas A4 80gsm — 5 rim, ½ harga"}) == []


def test_nesting_is_bounded() -> None:
    deep: Any = "x"
    for _ in range(5000):  # deeper than Python's recursion limit: the check must not recurse
        deep = [deep]
    [error] = unsafe_values({"a": deep})
    assert error["type"] == "too_deep" and error["field"] == "a" + ".0" * (MAX_BODY_DEPTH - 1)
    assert unsafe_values({"a": {"b": [1, {"c": "d"}]}}) == []


# -- settings ------------------------------------------------------------------------------------


def test_production_refuses_the_default_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET is the development default"):
        KitSettings(environment="production")
    with pytest.raises(ValidationError, match="shorter than 32 bytes"):
        KitSettings(environment="production", jwt_secret="rahasia")
    assert KitSettings(environment="production", jwt_secret=STRONG_SECRET).jwt_secret == STRONG_SECRET
    # Tokens verified by the identity provider's keys: the shared secret is not used.
    assert KitSettings(environment="production", jwt_jwks_url="https://sso.example.go.id/jwks").environment
    # Elsewhere the default stays, so `make run` and the tests need no secret.
    assert KitSettings(environment="local").jwt_secret == DEFAULT_JWT_SECRET


def test_production_refusal_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEJO_ENV", "production")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("JWT_JWKS_URL", raising=False)
    with pytest.raises(ValidationError, match="refusing to start with BEJO_ENV=production"):
        KitSettings()
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    assert KitSettings().environment == "production"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("prefetch", 0),  # 0 is "unlimited" to the broker
        ("outbox_batch_size", 0),  # 0 is "no limit" to Mongo and "take nothing" to the relay
        ("outbox_poll_interval", 0),
        ("retry_delays_ms", [200, 0]),
        ("retry_delays_ms", [-5]),
        ("bus_queue_expires_ms", 0),
        ("queue_depth_interval", 0),
        ("shutdown_grace_seconds", -1),
    ],
)
def test_counts_and_intervals_are_bounded(name: str, value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        KitSettings(**{name: value})
    assert refused.value.errors()[0]["loc"][0] == name


# -- duplicate keys ------------------------------------------------------------------------------


def _bulk_error(*codes: int) -> BulkWriteError:
    return BulkWriteError({"writeErrors": [{"index": i, "code": c, "errmsg": "x"} for i, c in enumerate(codes)]})


def test_bulk_errors_are_duplicates_only_when_every_write_error_is_one() -> None:
    assert duplicate_keys_only(_bulk_error(11000, 11000))
    assert not duplicate_keys_only(_bulk_error(11000, 121))  # a validation failure is a real error
    assert not duplicate_keys_only(_bulk_error())


# -- metrics -------------------------------------------------------------------------------------


def test_failure_counters_have_series_before_the_first_failure() -> None:
    metrics.prepare_queue("hardening.queue")
    metrics.prepare_outbox("hardening_collection")
    for name in ("bejo_messages_parked_total", "bejo_messages_retried_total", "bejo_messages_duplicate_total"):
        assert REGISTRY.get_sample_value(name, {"queue": "hardening.queue"}) == 0.0, name
    for name in ("bejo_outbox_publish_failures_total", "bejo_outbox_published_total", "bejo_outbox_backlog"):
        assert REGISTRY.get_sample_value(name, {"collection": "hardening_collection"}) == 0.0, name


# -- OpenAPI -------------------------------------------------------------------------------------


class Cart(BaseModel):
    note: str


def test_openapi_declares_headers_and_every_status_the_kit_returns() -> None:
    router = Router(tag="shop")
    key = Header("Idempotency-Key", "the client's id of this checkout", required=True, max_length=200)

    @router.post("/api/v1/carts", body=Cart, response=Cart, status=201, roles=("pp",), headers=(key,))
    async def checkout(req: Any) -> None:
        """Check out"""

    @router.get("/api/v1/carts/{id}", response=Cart)
    async def show(req: Any) -> None:
        """Show a cart (public)"""

    app = web.Application()
    router.install(app)
    doc = openapi_document(app, title="shop")
    validate(doc)
    post = doc["paths"]["/api/v1/carts"]["post"]
    assert {"name": "Idempotency-Key", "in": "header", "required": True}.items() <= post["parameters"][0].items()
    assert post["parameters"][0]["schema"] == {"type": "string", "minLength": 1, "maxLength": 200}
    assert {"201", "400", "401", "403", "413", "415", "422"} <= post["responses"].keys()
    get = doc["paths"]["/api/v1/carts/{id}"]["get"]
    # No body: no 413/415. Public, but a token that is sent is verified: 401.
    assert {"200", "400", "401", "422"} <= get["responses"].keys()
    assert not {"413", "415", "403"} & get["responses"].keys()
