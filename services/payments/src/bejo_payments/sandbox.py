"""The sandbox bank's side of a VA payment, as a SNAP bank does it: get a B2B access token (RSA-signed
request), then build the payment notification, sign it with the token and the client secret, POST it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from . import snap
from .access import TOKEN_PATH
from .callbacks import CALLBACK_PATH

CHANNEL_ID = "95231"  # SNAP's channel id of VA payment notifications


@dataclass(frozen=True)
class CallbackResult:
    http_status: int
    body: dict[str, Any]
    external_id: str


class AccessTokenRefused(RuntimeError):
    def __init__(self, http_status: int, body: Any) -> None:
        super().__init__(f"the access-token request was refused: HTTP {http_status} {body}")
        self.http_status = http_status
        self.body = body


def token_url_for(callback_url: str) -> str:
    """The access-token endpoint beside a callback URL (same scheme, host and port)."""
    parts = urlsplit(callback_url)
    return f"{parts.scheme}://{parts.netloc}{TOKEN_PATH}"


def token_request(client_id: str, private_key: str, timestamp: str) -> tuple[bytes, dict[str, str]]:
    """Body and headers of `POST /v1.0/access-token/b2b`."""
    headers = {
        "Content-Type": "application/json",
        "X-TIMESTAMP": timestamp,
        "X-CLIENT-KEY": client_id,
        "X-SIGNATURE": snap.sign_token_request(private_key, client_id, timestamp),
    }
    return orjson.dumps({"grantType": "client_credentials"}), headers


async def obtain_access_token(
    session: aiohttp.ClientSession, token_url: str, client_id: str, private_key: str, now: datetime | None = None
) -> str:
    body, headers = token_request(client_id, private_key, snap.format_timestamp(now or datetime.now(UTC)))
    async with session.post(token_url, data=body, headers=headers) as response:
        answer = await response.json(content_type=None)
        if response.status != 200 or not isinstance(answer, dict) or "accessToken" not in answer:
            raise AccessTokenRefused(response.status, answer)
        return str(answer["accessToken"])


def payment_notification(
    va_number: str, amount: int, partner_service_id: str, paid_at: datetime, request_id: str
) -> dict[str, Any]:
    """The body of a SNAP `transfer-va/payment` notification for `amount` whole rupiah. Deterministic,
    so a resend (same external id, same moment) carries the same bytes, as a bank's retry does.
    virtualAccountNo is partnerServiceId (the prefix, left-padded to 8) + customerNo, spaces and all."""
    padded = partner_service_id.rjust(8)
    customer_no = va_number[len(partner_service_id) :]
    return {
        "partnerServiceId": padded,
        "customerNo": customer_no,
        "virtualAccountNo": padded + customer_no,
        "paymentRequestId": request_id,
        "paidAmount": {"value": f"{amount}.00", "currency": "IDR"},
        "trxDateTime": snap.format_timestamp(paid_at),
    }


def signed_headers(
    *, secret: str, partner_id: str, token: str, body: bytes, timestamp: str, external_id: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "X-TIMESTAMP": timestamp,
        "X-SIGNATURE": snap.sign(secret, "POST", CALLBACK_PATH, token, body, timestamp),
        "X-PARTNER-ID": partner_id,
        "X-EXTERNAL-ID": external_id,
        "CHANNEL-ID": CHANNEL_ID,
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
    private_key: str,
    va_prefix: str,
    token_url: str | None = None,
    token: str | None = None,
    external_id: str | None = None,
    now: datetime | None = None,
) -> CallbackResult:
    """Get an access token (unless one is given), POST a signed payment notification, return the answer."""
    moment = now or datetime.now(UTC)
    external_id = external_id or new_external_id()
    body = orjson.dumps(payment_notification(va_number, amount, va_prefix, moment, external_id))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        if token is None:
            token = await obtain_access_token(
                session, token_url or token_url_for(callback_url), partner_id, private_key
            )
        headers = signed_headers(
            secret=secret,
            partner_id=partner_id,
            token=token,
            body=body,
            timestamp=snap.format_timestamp(moment),
            external_id=external_id,
        )
        async with session.post(callback_url, data=body, headers=headers) as response:
            answer = await response.json(content_type=None)
            return CallbackResult(
                response.status, answer if isinstance(answer, dict) else {"body": answer}, external_id
            )
