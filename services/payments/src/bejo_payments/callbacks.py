"""SNAP bank payment notifications: authenticate the signed callback (B2B access token plus the HMAC
of `snap`), apply it once per X-EXTERNAL-ID and day, and answer in SNAP's own body format."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bejo_kit.concurrency import retry_on_conflict

from . import domain, snap
from .access import AccessTokens
from .service import PaymentsService

CALLBACK_PATH = "/api/v1/payments/callbacks/snap"
MANDATORY_HEADERS = ("X-TIMESTAMP", "X-SIGNATURE", "X-PARTNER-ID", "X-EXTERNAL-ID", "CHANNEL-ID", "Authorization")
# Far deeper than any SNAP body (additionalInfo objects nest two or three levels); refused before
# anything walks it.
MAX_BODY_DEPTH = 16


class PaidAmount(BaseModel):
    model_config = ConfigDict(extra="allow")

    value: str = Field(pattern=r"^[0-9]{1,16}\.[0-9]{2}$", description="ISO 4217 amount with two decimals")
    currency: str = Field(pattern=r"^IDR$")


class SnapNotification(BaseModel):
    """The mandatory fields of a SNAP VA payment notification (`transfer-va/payment`); further
    fields a bank sends (trxDateTime, additionalInfo, ...) are accepted and echoed where SNAP says."""

    model_config = ConfigDict(extra="allow")

    partnerServiceId: str = Field(
        min_length=8, max_length=8, description="the bank's prefix, left-padded with spaces to 8 characters"
    )
    customerNo: str = Field(min_length=1, max_length=20, pattern=r"^[0-9]+$")
    virtualAccountNo: str = Field(min_length=1, max_length=28, description="partnerServiceId + customerNo")
    paymentRequestId: str = Field(min_length=1, max_length=128)
    paidAmount: PaidAmount
    trxDateTime: str | None = Field(None, max_length=25)

    @model_validator(mode="after")
    def _va_is_prefix_and_customer(self) -> SnapNotification:
        if self.partnerServiceId + self.customerNo != self.virtualAccountNo:
            raise ValueError("virtualAccountNo must be partnerServiceId + customerNo")
        return self


def notification_problem(exc: ValidationError) -> snap.Reply:
    """4002502 naming a missing field, else 4002501 naming a malformed one."""
    errors = exc.errors(include_url=False)
    missing = [e for e in errors if e["type"] == "missing"]
    first = (missing or errors)[0]
    field = ".".join(str(part) for part in first["loc"]) or "virtualAccountNo"
    if missing:
        return snap.reply(snap.MISSING_MANDATORY_FIELD, field)
    return snap.reply(snap.INVALID_FIELD_FORMAT, f"{field}: {first['msg']}")


class SnapCallbacks:
    def __init__(self, service: PaymentsService, tokens: AccessTokens) -> None:
        self.service = service
        self.tokens = tokens

    async def handle(self, headers: Mapping[str, str], body: bytes, now: datetime) -> snap.Reply:
        """Authenticate a SNAP payment notification, then apply it once per X-EXTERNAL-ID and day.
        `headers` must be case-insensitive (aiohttp's CIMultiDictProxy): HTTP/2 lowercases names."""
        settings = self.service.settings
        for name in MANDATORY_HEADERS:
            if not headers.get(name):
                return snap.reply(snap.MISSING_MANDATORY_FIELD, name)
        try:
            timestamp = snap.parse_timestamp(headers["X-TIMESTAMP"])
        except ValueError:
            return snap.reply(snap.INVALID_FIELD_FORMAT, "X-TIMESTAMP")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return snap.reply(snap.BAD_REQUEST, "body is not JSON")
        if snap.nesting_depth(payload) > MAX_BODY_DEPTH:
            return snap.reply(snap.BAD_REQUEST, f"body nests deeper than {MAX_BODY_DEPTH} levels")
        if not snap.within_window(timestamp, now, settings.snap_timestamp_window_seconds):
            return snap.reply(snap.STALE_TIMESTAMP)
        partner = headers["X-PARTNER-ID"]
        token = snap.bearer(headers["Authorization"])
        if token is None or await self.tokens.holder(token, now) != partner:
            return snap.reply(snap.INVALID_TOKEN)
        secret = settings.snap_client_secrets.get(partner)
        if secret is None or not snap.verify(
            secret, headers["X-SIGNATURE"], "POST", CALLBACK_PATH, token, body, headers["X-TIMESTAMP"]
        ):
            return snap.reply(snap.UNAUTHORIZED_SIGNATURE)
        external_id = headers["X-EXTERNAL-ID"]
        if not snap.valid_external_id(external_id):
            return snap.reply(snap.INVALID_FIELD_FORMAT, "X-EXTERNAL-ID")
        # Authenticated from here on: every answer is stored and a duplicate gets it back.
        key = snap.idempotency_key(partner, timestamp, external_id)
        digest = snap.body_digest(body)
        record = await self.service.repo.callback_record(key, digest, now)
        if record["body_sha256"] != digest:
            return snap.reply(snap.DUPLICATE_EXTERNAL_ID)
        if "response" not in record:
            # Duplicates in flight together (on any replica) each apply it, as of the first receipt:
            # one pays, the others see it paid by this key (`repeat`), so all reach the same answer.
            outcome = await self._apply_notification(payload, external_id, key, record["at"])
            record = await self.service.repo.answer_callback(key, outcome.http_status, outcome.body)
        return snap.Reply(record["http_status"], record["response"])

    async def _apply_notification(self, payload: Any, external_id: str, key: str, at: datetime) -> snap.Reply:
        if not isinstance(payload, dict):
            return snap.reply(snap.BAD_REQUEST, "body must be a JSON object")
        try:
            notification = SnapNotification.model_validate(payload)
        except ValidationError as exc:
            return notification_problem(exc)
        paid = Decimal(notification.paidAmount.value)
        va_number = notification.virtualAccountNo.strip()
        payment_id = await self.service.repo.payment_of_va(va_number)
        if payment_id is None:
            return snap.reply(snap.UNKNOWN_BILL, **echo(notification, None, accepted=False))
        if paid != paid.to_integral_value():
            return snap.reply(snap.INVALID_AMOUNT, "whole rupiah only", **echo(notification, None, accepted=False))
        total: int | None = None

        async def apply() -> domain.CallbackOutcome:
            nonlocal total
            payment = await self.service.repo.get(payment_id)
            if payment is None:
                return "unknown_va"
            total = payment.invoice.total
            outcome = payment.decide_callback(va_number, int(paid), at, via=key)
            if outcome == "pay":
                await self.service.mark_paid(payment, reference=external_id, via=key, now=at)
            return outcome

        outcome = await retry_on_conflict(apply)
        if outcome not in ("pay", "repeat"):
            return snap.reply(CALLBACK_CODES[outcome], **echo(notification, total, accepted=False))
        await self.service.settle_quietly(payment_id)
        return snap.reply(snap.SUCCESS, **echo(notification, total, accepted=True))


def echo(notification: SnapNotification, total: int | None, *, accepted: bool) -> dict[str, Any]:
    """`virtualAccountData` of SNAP's answer: the notification's own fields, the bill's total, and
    the payment flag (00 accepted, 01 refused)."""
    data: dict[str, Any] = {
        "partnerServiceId": notification.partnerServiceId,
        "customerNo": notification.customerNo,
        "virtualAccountNo": notification.virtualAccountNo,
        "paymentRequestId": notification.paymentRequestId,
        "paidAmount": notification.paidAmount.model_dump(),
    }
    if notification.trxDateTime is not None:
        data["trxDateTime"] = notification.trxDateTime
    if total is not None:
        data["totalAmount"] = {"value": f"{total}.00", "currency": "IDR"}
    data["paymentFlagStatus"] = "00" if accepted else "01"
    return {"virtualAccountData": data}


CALLBACK_CODES: dict[str, snap.Code] = {
    "unknown_va": snap.UNKNOWN_BILL,
    "expired": snap.EXPIRED_BILL,
    "paid_bill": snap.PAID_BILL,
    "wrong_amount": snap.INVALID_AMOUNT,
    "cancelled": snap.TRANSACTION_CANCELLED,
}
