"""SNAP over real HTTP as banks send it: the B2B access token, header names in any case, the digest
over the bytes as sent, mandatory headers and fields, the answer's X-TIMESTAMP and virtualAccountData,
hostile bodies, and the OpenAPI document agreeing with what is sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import orjson
import pytest
from payments_harness import Payments, StartPayments, access_token, callback

from bejo_payments import snap
from bejo_payments.access import TOKEN_PATH, AccessTokens
from bejo_payments.callbacks import CALLBACK_PATH
from bejo_payments.sandbox import payment_notification, signed_headers, token_request

pytestmark = pytest.mark.integration


async def post_raw(p: Payments, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, Any]:
    async with p.http.post(p.base_url + path, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def signed_notification(
    p: Payments, va: str, amount: int, external_id: str, token: str | None = None
) -> tuple[bytes, dict[str, str]]:
    token = token or await access_token(p)
    now = datetime.now(UTC)
    body = orjson.dumps(payment_notification(va, amount, p.settings.va_prefix, now, external_id))
    headers = signed_headers(
        secret=p.settings.snap_client_secrets[p.settings.sandbox_partner_id],
        partner_id=p.settings.sandbox_partner_id,
        token=token,
        body=body,
        timestamp=snap.format_timestamp(now),
        external_id=external_id,
    )
    return body, headers


async def test_header_names_in_any_case_are_read(start_payments: StartPayments) -> None:
    """HTTP/2, Envoy and Go clients send `x-timestamp` or `X-Timestamp`: a genuine callback pays."""
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        body, headers = await signed_notification(p, payment["va_number"], payment["invoice"]["total"], "90001")
        lowered = {name.lower(): value for name, value in headers.items()}
        status, answer, _ = await post_raw(p, CALLBACK_PATH, body, lowered)
        assert (status, answer["responseCode"]) == (200, "2002500"), answer
        # Token requests too.
        token_body, token_headers = token_request(
            p.settings.sandbox_partner_id, p.settings.sandbox_private_key, snap.format_timestamp(datetime.now(UTC))
        )
        titled = {name.title(): value for name, value in token_headers.items()}
        status, answer, _ = await post_raw(p, TOKEN_PATH, token_body, titled)
        assert (status, answer["responseCode"]) == (200, "2007300"), answer


async def test_a_body_signed_as_sent_with_escaped_slash_and_1_50_is_accepted(start_payments: StartPayments) -> None:
    """The digest is over the received bytes minus the whitespace outside strings: PHP's `\\/` and a
    number written `1.50` stay as sent. The test signs by hand, not with the service's own code."""
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 200_000)]))
        va, total = payment["va_number"], payment["invoice"]["total"]
        prefix = p.settings.va_prefix.rjust(8)
        customer = va[len(p.settings.va_prefix) :]
        pretty = (
            "{\n"
            f'  "partnerServiceId": "{prefix}",\n'
            f'  "customerNo": "{customer}",\n'
            f'  "virtualAccountNo": "{prefix}{customer}",\n'
            '  "paymentRequestId": "req 1",\n'
            f'  "paidAmount": {{ "value": "{total}.00", "currency": "IDR" }},\n'
            '  "additionalInfo": { "channel": "https:\\/\\/bank.example\\/va", "rate": 1.50 }\n'
            "}"
        ).encode()
        # Whitespace outside strings removed by hand; the space inside "req 1" and the padding stay.
        minified = (
            f'{{"partnerServiceId":"{prefix}","customerNo":"{customer}","virtualAccountNo":"{prefix}{customer}",'
            f'"paymentRequestId":"req 1","paidAmount":{{"value":"{total}.00","currency":"IDR"}},'
            '"additionalInfo":{"channel":"https:\\/\\/bank.example\\/va","rate":1.50}}'
        ).encode()
        token = await access_token(p)
        stamp = snap.format_timestamp(datetime.now(UTC))
        to_sign = f"POST:{CALLBACK_PATH}:{token}:{hashlib.sha256(minified).hexdigest()}:{stamp}"
        secret = p.settings.snap_client_secrets[p.settings.sandbox_partner_id].encode()
        signature = base64.b64encode(hmac.new(secret, to_sign.encode(), hashlib.sha512).digest()).decode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "X-TIMESTAMP": stamp,
            "X-SIGNATURE": signature,
            "X-PARTNER-ID": p.settings.sandbox_partner_id,
            "X-EXTERNAL-ID": "90002",
            "CHANNEL-ID": "95231",
        }
        assert snap.minify(pretty) == minified
        status, answer, _ = await post_raw(p, CALLBACK_PATH, pretty, headers)
        assert (status, answer["responseCode"]) == (200, "2002500"), answer


async def test_access_token_is_issued_only_for_a_valid_rsa_signature(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        partner, key = p.settings.sandbox_partner_id, p.settings.sandbox_private_key
        now = datetime.now(UTC)
        body, good = token_request(partner, key, snap.format_timestamp(now))
        status, answer, headers = await post_raw(p, TOKEN_PATH, body, good)
        assert status == 200 and answer["responseCode"] == "2007300", answer
        assert answer["tokenType"] == "Bearer" and answer["expiresIn"] == "900" and len(answer["accessToken"]) >= 32
        snap.parse_timestamp(headers["X-TIMESTAMP"])

        _, stale = token_request(partner, key, snap.format_timestamp(now - timedelta(minutes=6)))
        _, other_client = token_request("SOMEBANK", key, snap.format_timestamp(now))
        tampered = {**good, "X-TIMESTAMP": snap.format_timestamp(now + timedelta(seconds=1))}
        refusals = {
            "signature of another timestamp": await post_raw(p, TOKEN_PATH, body, tampered),
            "stale timestamp": await post_raw(p, TOKEN_PATH, body, stale),
            "unregistered client": await post_raw(p, TOKEN_PATH, body, other_client),
            "no signature": await post_raw(p, TOKEN_PATH, body, {k: v for k, v in good.items() if k != "X-SIGNATURE"}),
            "wrong grant": await post_raw(p, TOKEN_PATH, b'{"grantType":"password"}', good),
            "no grant": await post_raw(p, TOKEN_PATH, b"{}", good),
            "not JSON": await post_raw(p, TOKEN_PATH, b"{", good),
        }
        assert {case: (s, a["responseCode"]) for case, (s, a, _) in refusals.items()} == {
            "signature of another timestamp": (401, "4017300"),
            "stale timestamp": (401, "4017300"),
            "unregistered client": (401, "4017300"),
            "no signature": (400, "4007302"),
            "wrong grant": (400, "4007301"),
            "no grant": (400, "4007302"),
            "not JSON": (400, "4007300"),
        }


async def test_callbacks_need_a_live_token_of_their_partner_in_the_header_and_the_signature(
    start_payments: StartPayments,
) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 300_000)]))
        va, total = payment["va_number"], payment["invoice"]["total"]
        token = await access_token(p)

        # Signed with one token, sent with another: the signature does not match.
        other = await access_token(p)
        body, headers = await signed_notification(p, va, total, "90003", token=token)
        status, answer, _ = await post_raw(p, CALLBACK_PATH, body, {**headers, "Authorization": f"Bearer {other}"})
        assert (status, answer["responseCode"]) == (401, "4012500")
        status, answer, _ = await post_raw(p, CALLBACK_PATH, body, {**headers, "Authorization": f"Basic {token}"})
        assert (status, answer["responseCode"]) == (401, "4012501")

        # An expired token is no token (the service's clock moved past its 900 s).
        tokens = AccessTokens(p.settings, p.service.repo)  # the service's own check, on its database
        assert await tokens.holder(token, datetime.now(UTC)) == p.settings.sandbox_partner_id
        assert await tokens.holder(token, datetime.now(UTC) + timedelta(seconds=901)) is None
        assert await tokens.holder("never-issued", datetime.now(UTC)) is None
        assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "awaiting_payment"


@pytest.mark.parametrize("header", ["CHANNEL-ID", "X-PARTNER-ID", "X-EXTERNAL-ID", "Authorization"])
async def test_a_callback_without_a_mandatory_header_is_4002502_naming_it(
    start_payments: StartPayments, header: str
) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        body, headers = await signed_notification(p, payment["va_number"], payment["invoice"]["total"], "90004")
        status, answer, _ = await post_raw(p, CALLBACK_PATH, body, {k: v for k, v in headers.items() if k != header})
        assert (status, answer["responseCode"]) == (400, "4002502")
        assert header in answer["responseMessage"] and answer["code"] == "missing_mandatory_field"


async def test_mandatory_body_fields_and_the_virtual_account_number_are_checked(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        va, total = payment["va_number"], payment["invoice"]["total"]
        good = payment_notification(va, total, p.settings.va_prefix, datetime.now(UTC), "r-1")
        cases: dict[str, tuple[dict[str, Any], str, str]] = {
            "no paymentRequestId": (
                {k: v for k, v in good.items() if k != "paymentRequestId"},
                "4002502",
                "paymentRequestId",
            ),
            "no customerNo": ({k: v for k, v in good.items() if k != "customerNo"}, "4002502", "customerNo"),
            "no paidAmount": ({k: v for k, v in good.items() if k != "paidAmount"}, "4002502", "paidAmount"),
            "VA is not prefix + customer": ({**good, "customerNo": "999999999999"}, "4002501", "virtualAccountNo"),
            "prefix not 8 characters": (
                {**good, "partnerServiceId": p.settings.va_prefix},
                "4002501",
                "partnerServiceId",
            ),
            "amount without cents": (
                {**good, "paidAmount": {"value": str(total), "currency": "IDR"}},
                "4002501",
                "value",
            ),
            "another currency": (
                {**good, "paidAmount": {"value": f"{total}.00", "currency": "USD"}},
                "4002501",
                "currency",
            ),
        }
        token = await access_token(p)
        for n, (case, (fields, code, named)) in enumerate(cases.items()):
            body = orjson.dumps(fields)
            stamp = snap.format_timestamp(datetime.now(UTC))
            headers = signed_headers(
                secret=p.settings.snap_client_secrets[p.settings.sandbox_partner_id],
                partner_id=p.settings.sandbox_partner_id,
                token=token,
                body=body,
                timestamp=stamp,
                external_id=f"9100{n}",
            )
            status, answer, _ = await post_raw(p, CALLBACK_PATH, body, headers)
            assert (status, answer["responseCode"]) == (400, code), (case, answer)
            assert named in answer["responseMessage"], (case, answer)
        assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "awaiting_payment"


async def test_the_answer_carries_x_timestamp_and_the_full_virtual_account_data(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        va, total = payment["va_number"], payment["invoice"]["total"]
        body, headers = await signed_notification(p, va, total, "90005")
        status, answer, response_headers = await post_raw(p, CALLBACK_PATH, body, headers)
        assert status == 200
        snap.parse_timestamp(response_headers["X-TIMESTAMP"])
        sent = orjson.loads(body)
        assert answer["virtualAccountData"] == {
            "partnerServiceId": sent["partnerServiceId"],
            "customerNo": sent["customerNo"],
            "virtualAccountNo": sent["virtualAccountNo"],
            "paymentRequestId": sent["paymentRequestId"],
            "paidAmount": sent["paidAmount"],
            "trxDateTime": sent["trxDateTime"],
            "totalAmount": {"value": f"{total}.00", "currency": "IDR"},
            "paymentFlagStatus": "00",
        }
        # A refusal echoes it too, flagged as refused.
        status, answer = await callback(p, va, total)
        assert (status, answer["responseCode"]) == (404, "4042514")
        assert answer["virtualAccountData"]["paymentFlagStatus"] == "01"


@pytest.mark.parametrize("depth", [1_000, 5_000])
async def test_a_deeply_nested_body_is_a_clear_400_not_a_500(start_payments: StartPayments, depth: int) -> None:
    """Needs no authentication to send: it must be refused plainly, before anything walks it."""
    async with start_payments() as p:
        body = b"[" * depth + b"]" * depth
        nested_object = b'{"a":' * depth + b"1" + b"}" * depth
        headers = {
            "Authorization": "Bearer x",
            "X-TIMESTAMP": snap.format_timestamp(datetime.now(UTC)),
            "X-SIGNATURE": "x",
            "X-PARTNER-ID": "SANDBOXBANK",
            "X-EXTERNAL-ID": "1",
            "CHANNEL-ID": "95231",
        }
        for hostile in (body, nested_object):
            status, answer, _ = await post_raw(p, CALLBACK_PATH, hostile, headers)
            assert status == 400 and answer["responseCode"] == "4002500", answer
            assert answer["status"] == 400 and answer["code"] == "snap_bad_request"
            status, answer, _ = await post_raw(p, TOKEN_PATH, hostile, headers)
            assert status == 400, answer


async def test_the_served_openapi_declares_what_the_snap_operations_send(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        document = await p.get("/openapi.json", {})
        operation = document["paths"][CALLBACK_PATH]["post"]
        headers = {param["name"] for param in operation["parameters"] if param["in"] == "header"}
        assert headers == {"X-TIMESTAMP", "X-SIGNATURE", "X-PARTNER-ID", "X-EXTERNAL-ID", "CHANNEL-ID"}
        assert operation["security"] == [{"snapAccessToken": []}]
        assert document["components"]["securitySchemes"]["snapAccessToken"]["scheme"] == "bearer"
        body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body_schema == {"$ref": "#/components/schemas/SnapNotification"}
        assert "422" not in operation["responses"]
        token_operation = document["paths"][TOKEN_PATH]["post"]
        assert {param["name"] for param in token_operation["parameters"]} == {
            "X-TIMESTAMP",
            "X-CLIENT-KEY",
            "X-SIGNATURE",
        }

        # What is sent matches what is declared: content type and schema, for a refusal and a success.
        resolver_root = {"components": document["components"]}

        def check(path: str, status: int, content_type: str, answer: Any) -> None:
            declared = document["paths"][path]["post"]["responses"][str(status)]["content"]
            assert list(declared) == [content_type]
            schema = {**declared[content_type]["schema"], **resolver_root}
            jsonschema.validate(answer, schema)

        async with p.http.post(p.base_url + CALLBACK_PATH, data=b"{}") as response:
            assert response.status == 400
            check(CALLBACK_PATH, 400, response.content_type, await response.json())
        async with p.http.post(p.base_url + TOKEN_PATH, data=b"{}") as response:
            assert response.status == 400
            check(TOKEN_PATH, 400, response.content_type, await response.json())
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        status, answer = await callback(p, payment["va_number"], payment["invoice"]["total"])
        assert status == 200
        check(CALLBACK_PATH, 200, "application/json", answer)
        status, answer = await callback(p, payment["va_number"], payment["invoice"]["total"])
        check(CALLBACK_PATH, 404, "application/json", answer)
