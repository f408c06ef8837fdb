"""Pure parts of the kit and contracts: no servers."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jwt
import orjson
import pytest
import structlog
from aiohttp import ClientSession, web
from openapi_spec_validator import validate
from pydantic import BaseModel, ConfigDict, Field

from bejo_contracts import SYSTEM, Envelope, all_models, parse_data
from bejo_contracts.catalog import ProviderRegistered
from bejo_contracts.errors import DomainError, IllegalTransition, NotPermitted
from bejo_contracts.pemda import covers, subtree_regex
from bejo_contracts.pricing import PromotionTerms, best_offer, discounted_price
from bejo_kit.api import ApiRequest, Router
from bejo_kit.auth import TokenVerifier, mint_token
from bejo_kit.concurrency import WriteConflict, retry_on_conflict
from bejo_kit.errors import Conflict, Unauthorized, ValidationProblem, problem_for
from bejo_kit.http import create_app
from bejo_kit.logging import configure_logging
from bejo_kit.outbox import with_events
from bejo_kit.paging import decode_cursor, encode_cursor
from bejo_kit.settings import KitSettings

SETTINGS = KitSettings()
NOW = datetime(2026, 12, 12, 3, 0, tzinfo=UTC)


def promo(kind: str, value: int, hours: int = 24, free_shipping: bool = False) -> PromotionTerms:
    return PromotionTerms(
        promotion_id=f"{kind}-{value}",
        discount_kind=kind,  # type: ignore[arg-type]
        discount_value=value,
        free_shipping=free_shipping,
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=hours),
    )


class TestPricing:
    def test_percent_discount_rounds_the_discount_down(self) -> None:
        # 12% of 95,999 is 11,519.88: the discount is 11,519, the price 84,480.
        assert discounted_price(95_999, promo("percent", 12)) == 84_480

    def test_fixed_discount_never_goes_below_zero(self) -> None:
        assert discounted_price(5_000, promo("fixed", 7_500)) == 0

    def test_best_single_promotion_wins_and_they_do_not_stack(self) -> None:
        price, best, free = best_offer(100_000, [promo("percent", 10), promo("fixed", 15_000, free_shipping=True)], NOW)
        assert (price, best and best.discount_kind, free) == (85_000, "fixed", True)

    def test_promotions_outside_their_window_do_not_apply(self) -> None:
        expired = promo("percent", 50, hours=-0)  # ends at NOW: the window is half-open
        assert best_offer(100_000, [expired], NOW) == (100_000, None, False)


class TestEnvelope:
    def test_wrap_carries_type_subject_and_ids(self) -> None:
        data = ProviderRegistered(
            provider_id="p-1",
            name="CV A",
            legal_entity="CV",
            pemda_code="35.15",
            email="a@example.id",
            pkp=True,
            status="pending",
            actor=SYSTEM,
        )
        env = Envelope.wrap(data, source="bejo/catalog", correlationid="c-1")
        assert (env.type, env.subject, env.correlationid, env.specversion) == (data.TYPE, "p-1", "c-1", "1.0")
        assert parse_data(Envelope.model_validate_json(env.model_dump_json())) == data

    def test_every_event_type_is_versioned_and_namespaced(self) -> None:
        for event_type in all_models():
            service, *_, version = event_type.split(".")[1:]
            assert event_type.startswith("bejo.") and version.startswith("v") and service


class TestAuth:
    async def test_minted_token_verifies(self) -> None:
        token = mint_token(SETTINGS, sub="u-1", role="pp", pemda="35.15", satker="dinkes")
        principal = await TokenVerifier(SETTINGS).verify(token)
        assert (principal.sub, principal.role, principal.satker) == ("u-1", "pp", "dinkes")

    @pytest.mark.parametrize(
        ("claims", "key", "alg", "code"),
        [
            ({"exp": -10}, None, "HS256", "token_expired"),
            ({}, "another-secret-that-is-long-enough-32b", "HS256", "invalid_signature"),
            ({"iss": "someone-else"}, None, "HS256", "invalid_issuer"),
            ({"aud": "other"}, None, "HS256", "invalid_audience"),
            ({"satker": None}, None, "HS256", "missing_claims"),
        ],
    )
    async def test_bad_tokens_are_refused_with_a_code(
        self, claims: dict[str, object], key: str | None, alg: str, code: str
    ) -> None:
        now = int(time.time())
        base = {
            "sub": "u",
            "role": "pp",
            "pemda": "35",
            "satker": "s",
            "iss": SETTINGS.jwt_issuer,
            "aud": SETTINGS.jwt_audience,
            "exp": now + 60,
        }
        payload = {
            k: v for k, v in {**base, **claims, "exp": now + int(claims.get("exp", 60))}.items() if v is not None
        }  # type: ignore[call-overload]
        token = jwt.encode(payload, key or SETTINGS.jwt_secret, algorithm=alg)
        with pytest.raises(Unauthorized) as raised:
            await TokenVerifier(SETTINGS).verify(token)
        assert raised.value.code == code

    async def test_alg_none_is_refused(self) -> None:
        token = jwt.encode({"sub": "u", "role": "admin", "pemda": "35"}, None, algorithm="none")
        with pytest.raises(Unauthorized):
            await TokenVerifier(SETTINGS).verify(token)


class TestPaging:
    def test_round_trip(self) -> None:
        assert decode_cursor(encode_cursor({"after": "x", "n": 3})) == {"after": "x", "n": 3}

    @pytest.mark.parametrize("cursor", ["%%%", "bm90LWpzb24", "WzEsMl0"])
    def test_malformed_cursor_names_the_field(self, cursor: str) -> None:
        with pytest.raises(ValidationProblem) as raised:
            decode_cursor(cursor)
        assert raised.value.extra["errors"][0]["field"] == "cursor"


class TestOptimisticWrites:
    async def test_a_lost_race_is_run_again_on_fresh_state(self) -> None:
        attempts = []

        async def operation() -> int:
            attempts.append(1)
            if len(attempts) < 3:
                raise WriteConflict("moved")
            return len(attempts)

        assert await retry_on_conflict(operation) == 3

    async def test_gives_up_after_the_last_attempt(self) -> None:
        async def always_conflicting() -> None:
            raise WriteConflict("moved")

        with pytest.raises(WriteConflict):
            await retry_on_conflict(always_conflicting, attempts=2)

    def test_events_ride_in_the_same_update(self) -> None:
        entries = [{"id": "e1"}]
        merged = with_events({"$set": {"status": "approved"}, "$inc": {"version": 1}}, entries)
        assert merged == {
            "$set": {"status": "approved", "outbox_pending": True},
            "$inc": {"version": 1},
            "$push": {"outbox": {"$each": entries}},
        }
        assert with_events({"$set": {"a": 1}}, []) == {"$set": {"a": 1}}
        with pytest.raises(ValueError, match="already writes the outbox"):
            with_events(merged, entries)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=20)
    price: int = Field(ge=0)


class ItemOut(BaseModel):
    id: str
    name: str
    price: int


async def test_api_router_validates_renders_problems_and_documents() -> None:
    router = Router(tag="items")

    @router.post("/api/v1/items", body=Item, response=ItemOut, status=201, roles=("penyedia",))
    async def create_item(req: ApiRequest[Item, None]) -> ItemOut:
        if req.body.name == "taken":
            raise Conflict("name already used", code="duplicate_name")
        return ItemOut(id="i-1", **req.body.model_dump())

    app = create_app()
    from bejo_kit.api import TOKEN_VERIFIER, openapi_document

    app[TOKEN_VERIFIER] = TokenVerifier(SETTINGS)
    router.install(app)
    from support import bearer, serve, token

    seller = bearer(token("penyedia", "s-1", provider_id="prov-1"))
    async with serve(app) as base, ClientSession() as http:
        async with http.post(f"{base}/api/v1/items", json={"name": "Kopi", "price": 1}) as r:
            assert r.status == 401 and (await r.json())["code"] == "missing_token"
        buyer = bearer(token("pp", "pp-1", satker="s"))
        async with http.post(f"{base}/api/v1/items", json={"name": "Kopi", "price": 1}, headers=buyer) as r:
            assert r.status == 403 and (await r.json())["required_roles"] == ["penyedia"]
        async with http.post(f"{base}/api/v1/items", json={"name": "", "price": -1}, headers=seller) as r:
            body = await r.json()
            assert r.status == 422 and r.content_type == "application/problem+json"
            assert {e["field"] for e in body["errors"]} == {"name", "price"}
        async with http.post(
            f"{base}/api/v1/items", data=b"{not json", headers={**seller, "Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and (await r.json())["code"] == "malformed_json"
        async with http.post(
            f"{base}/api/v1/items", data=b"name=x", headers={**seller, "Content-Type": "text/plain"}
        ) as r:
            assert r.status == 415
        async with http.post(f"{base}/api/v1/items", json={"name": "taken", "price": 1}, headers=seller) as r:
            assert r.status == 409 and (await r.json())["code"] == "duplicate_name"
        async with http.post(f"{base}/api/v1/items", json={"name": "Kopi", "price": 1}, headers=seller) as r:
            assert r.status == 201 and await r.json() == {"id": "i-1", "name": "Kopi", "price": 1}
            assert r.headers["X-Request-ID"]
        async with http.get(f"{base}/api/v1/nothing") as r:
            assert r.status == 404 and (await r.json())["code"] == "not_found"
    document = openapi_document(app, title="items")
    validate(document)
    operation = document["paths"]["/api/v1/items"]["post"]
    assert operation["x-roles"] == ["penyedia"] and "201" in operation["responses"]


@pytest.mark.parametrize(
    ("scope", "code", "expected"),
    [
        ("35", "35", True),
        ("35", "35.15", True),
        ("35", "35.15.2", True),
        ("35.15", "35.15", True),
        ("35", "351", False),
        ("35.15", "35", False),
        ("35.1", "35.15", False),
        ("3.5", "305", False),
    ],
)
def test_pemda_covers_its_subtree_and_the_regex_agrees(scope: str, code: str, expected: bool) -> None:
    assert covers(scope, code) is expected
    assert (re.search(subtree_regex(scope), code) is not None) is expected


def test_domain_errors_map_to_problems_in_one_place() -> None:
    problem = problem_for(IllegalTransition("cannot approve", current_status="approved", action="approve"))
    assert problem.status == 409
    assert problem.body() == {
        "type": "https://bejo.dev/problems/illegal_transition",
        "title": "Conflict",
        "status": 409,
        "detail": "cannot approve",
        "code": "illegal_transition",
        "current_status": "approved",
        "action": "approve",
    }
    assert problem_for(NotPermitted("not yours", code="not_order_pp")).status == 403
    assert problem_for(DomainError("broken rule", code="some_rule")).body()["code"] == "some_rule"


async def test_a_domain_error_raised_by_a_handler_is_a_problem_response() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise IllegalTransition("a paid payment cannot be cancelled", current_status="paid")

    app = create_app()
    app.router.add_post("/things/1/cancel", handler)
    from support import serve

    async with serve(app) as base, ClientSession() as http, http.post(f"{base}/things/1/cancel") as r:
        body = await r.json(content_type=None)
        assert r.status == 409 and r.content_type == "application/problem+json"
        assert body["code"] == "illegal_transition" and body["current_status"] == "paid"
        assert body["request_id"] == r.headers["X-Request-ID"]


class TestLogging:
    @pytest.fixture(autouse=True)
    def _restore_logging(self) -> Iterator[None]:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        yield
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()

    def test_a_stdlib_record_comes_out_as_one_json_line_with_the_service(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("catalog", "INFO", json=True)
        logging.getLogger("aio_pika.robust_connection").warning("connection lost: %s", "eof")
        logging.getLogger("pymongo.serverSelection").debug("below the configured level")
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1
        record = orjson.loads(lines[0])
        assert record["service"] == "catalog"
        assert record["event"] == "connection lost: eof"
        assert record["level"] == "warning" and record["logger"] == "aio_pika.robust_connection"

    def test_a_stdlib_traceback_stays_on_the_same_json_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("orders", "DEBUG", json=True)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("aiohttp.server").exception("handler crashed")
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1
        record = orjson.loads(lines[0])
        assert record["service"] == "orders" and "ValueError: boom" in record["exception"]
