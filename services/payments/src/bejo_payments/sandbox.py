"""The sandbox bank's side of a VA payment: build the SNAP payment notification, sign it, POST it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from . import snap

CALLBACK_PATH = "/api/v1/payments/callbacks/snap"


@dataclass(frozen=True)
class CallbackResult:
    http_status: int
    body: dict[str, Any]
    external_id: str


def payment_notification(
    va_number: str, amount: int, partner_service_id: str, paid_at: datetime, request_id: str
) -> dict[str, Any]:
    """The body of a SNAP `transfer-va/payment` notification for `amount` whole rupiah. Deterministic,
    so a resend (same external id, same moment) carries the same bytes, as a bank's retry does."""
    return {
        "partnerServiceId": partner_service_id.rjust(8),
        "customerNo": va_number[len(partner_service_id) :],
        "virtualAccountNo": va_number,
        "paymentRequestId": request_id,
        "paidAmount": {"value": f"{amount}.00", "currency": "IDR"},
        "trxDateTime": snap.format_timestamp(paid_at),
    }


def signed_headers(
    *, secret: str, partner_id: str, token: str, body: bytes, timestamp: str, external_id: str
) -> dict[str, str]:
    # The token is not sent: it is agreed out of band and only enters the string to sign.
    return {
        "Content-Type": "application/json",
        "X-TIMESTAMP": timestamp,
        "X-SIGNATURE": snap.sign(secret, "POST", CALLBACK_PATH, token, body, timestamp),
        "X-PARTNER-ID": partner_id,
        "X-EXTERNAL-ID": external_id,
    }


def new_external_id() -> str:
    return f"{secrets.randbelow(10**20):020d}"


async def send_payment_callback(
    *,
    callback_url: str,
    va_number: str,
    amount: int,
    partner_id: str,
    secret: str,
    token: str,
    va_prefix: str,
    external_id: str | None = None,
    now: datetime | None = None,
) -> CallbackResult:
    """POST a signed payment notification and return the service's answer."""
    moment = now or datetime.now(UTC)
    external_id = external_id or new_external_id()
    body = orjson.dumps(payment_notification(va_number, amount, va_prefix, moment, external_id))
    headers = signed_headers(
        secret=secret,
        partner_id=partner_id,
        token=token,
        body=body,
        timestamp=snap.format_timestamp(moment),
        external_id=external_id,
    )
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.post(callback_url, data=body, headers=headers) as response,
    ):
        answer = await response.json(content_type=None)
        return CallbackResult(response.status, answer if isinstance(answer, dict) else {"body": answer}, external_id)
