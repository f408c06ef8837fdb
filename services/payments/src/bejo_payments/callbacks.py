"""SNAP bank payment notifications: authenticate the signed callback (see `snap`), apply it once per
X-EXTERNAL-ID and day, and answer in SNAP's own body format rather than problem+json."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from bejo_kit.concurrency import retry_on_conflict

from . import domain, snap
from .service import PaymentsService


@dataclass(frozen=True)
class CallbackReply:
    http_status: int
    body: dict[str, Any]


class SnapCallbacks:
    def __init__(self, service: PaymentsService) -> None:
        self.service = service

    async def handle(self, headers: dict[str, str], body: bytes, now: datetime) -> CallbackReply:
        """Authenticate a SNAP payment notification, then apply it once per X-EXTERNAL-ID and day."""
        for name in ("X-TIMESTAMP", "X-SIGNATURE", "X-PARTNER-ID", "X-EXTERNAL-ID"):
            if not headers.get(name):
                return reply(snap.MISSING_MANDATORY_FIELD, name)
        try:
            timestamp = snap.parse_timestamp(headers["X-TIMESTAMP"])
        except ValueError:
            return reply(snap.INVALID_FIELD_FORMAT, "X-TIMESTAMP")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return reply(snap.BAD_REQUEST, "body is not JSON")
        if not snap.within_window(timestamp, now, self.service.settings.snap_timestamp_window_seconds):
            return reply(snap.STALE_TIMESTAMP)
        partner = headers["X-PARTNER-ID"]
        secret = self.service.settings.snap_client_secrets.get(partner)
        if secret is None or not snap.verify(
            secret,
            headers["X-SIGNATURE"],
            "POST",
            "/api/v1/payments/callbacks/snap",
            self.service.settings.snap_callback_token,
            body,
            headers["X-TIMESTAMP"],
        ):
            return reply(snap.UNAUTHORIZED_SIGNATURE)
        external_id = headers["X-EXTERNAL-ID"]
        if not snap.valid_external_id(external_id):
            return reply(snap.INVALID_FIELD_FORMAT, "X-EXTERNAL-ID")
        # Authenticated from here on: every answer is stored and a duplicate gets it back.
        key = snap.idempotency_key(partner, timestamp, external_id)
        digest = snap.body_digest(body)
        record = await self.service.repo.callback_record(key, digest, now)
        if record["body_sha256"] != digest:
            return reply(snap.DUPLICATE_EXTERNAL_ID)
        if "response" not in record:
            # Duplicates in flight together (on any replica) each apply it, as of the first receipt:
            # one pays, the others see it paid by this key (`repeat`), so all reach the same answer.
            outcome = await self._apply_notification(payload, external_id, key, record["at"])
            record = await self.service.repo.answer_callback(key, outcome.http_status, outcome.body)
        return CallbackReply(record["http_status"], record["response"])

    async def _apply_notification(self, payload: Any, external_id: str, key: str, at: datetime) -> CallbackReply:
        if not isinstance(payload, dict):
            return reply(snap.BAD_REQUEST, "body must be a JSON object")
        va_number = payload.get("virtualAccountNo")
        amount_field = payload.get("paidAmount")
        if not isinstance(va_number, str) or not va_number.strip():
            return reply(snap.MISSING_MANDATORY_FIELD, "virtualAccountNo")
        if not isinstance(amount_field, dict) or not isinstance(amount_field.get("value"), str):
            return reply(snap.MISSING_MANDATORY_FIELD, "paidAmount.value")
        if amount_field.get("currency") != "IDR":
            return reply(snap.INVALID_FIELD_FORMAT, "paidAmount.currency must be IDR")
        try:
            paid = Decimal(amount_field["value"])
        except InvalidOperation:
            return reply(snap.INVALID_FIELD_FORMAT, "paidAmount.value")
        va_number = va_number.strip()
        echo: dict[str, Any] = {"virtualAccountData": {"virtualAccountNo": va_number, "paidAmount": amount_field}}
        if not paid.is_finite() or paid != paid.to_integral_value():
            return reply(snap.INVALID_AMOUNT, "whole rupiah only", **echo)
        payment_id = await self.service.repo.payment_of_va(va_number)
        if payment_id is None:
            return reply(snap.UNKNOWN_BILL, **echo)

        async def apply() -> domain.CallbackOutcome:
            doc = await self.service.repo.get(payment_id)
            if doc is None:
                return "unknown_va"
            outcome = domain.decide_callback(
                status=doc["status"],
                current_va=doc["va_number"],
                va_expires_at=doc["va_expires_at"],
                total=doc["invoice"]["total"],
                va_number=va_number,
                paid_amount=int(paid),
                now=at,
                paid_via=doc.get("paid_via"),
                via=key,
            )
            if outcome == "pay":
                await self.service.mark_paid(doc, reference=external_id, via=key, now=at)
            return outcome

        outcome = await retry_on_conflict(apply)
        if outcome not in ("pay", "repeat"):
            return reply(CALLBACK_CODES[outcome], **echo)
        await self.service.settle_quietly(payment_id)
        return reply(snap.SUCCESS, **echo)


CALLBACK_CODES: dict[str, snap.Code] = {
    "unknown_va": snap.UNKNOWN_BILL,
    "expired": snap.EXPIRED_BILL,
    "paid_bill": snap.PAID_BILL,
    "wrong_amount": snap.INVALID_AMOUNT,
    "cancelled": snap.TRANSACTION_CANCELLED,
}


def reply(code: snap.Code, detail: str | None = None, **extra: Any) -> CallbackReply:
    return CallbackReply(code.http_status, code.body(detail, **extra))
