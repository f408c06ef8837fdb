"""HTTP routes of the payments service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bejo_kit.api import ENDPOINTS, ApiRequest, Endpoint, Handler, Router
from bejo_kit.mongo import Document, utcnow

from .callbacks import SnapCallbacks
from .sandbox import CALLBACK_PATH, send_payment_callback
from .service import PaymentsService
from .settings import PaymentsSettings

router = Router(tag="payments")
sandbox_router = Router(tag="sandbox")
SERVICE = web.AppKey("payments_service", PaymentsService)
CALLBACKS = web.AppKey("payments_callbacks", SnapCallbacks)
SETTINGS = web.AppKey("payments_settings", PaymentsSettings)

BUYERS_AND_OVERSIGHT = ("pp", "ppk", "bendahara", "penyedia", "admin", "auditor")


class InvoiceOut(BaseModel):
    number: str = Field(
        description="unique invoice number INV/<pemda>/<year>/<sequence>", examples=["INV/35.15/2026/000042"]
    )
    base: int = Field(description="sum of the order lines, integer rupiah", examples=[1_000_000])
    ppn: int = Field(description="PPN (VAT) when the provider is PKP, floored to the rupiah", examples=[110_000])
    pph22: int = Field(description="PPh 22 withheld from the provider, floored to the rupiah", examples=[5_000])
    total: int = Field(description="what the buyer pays: base + ppn", examples=[1_110_000])
    net_to_provider: int = Field(description="what the provider receives: base - pph22", examples=[995_000])


class PaymentOut(BaseModel):
    id: str = Field(examples=["pay-ord-123"])
    order_id: str
    status: Literal["awaiting_payment", "va_expired", "paid", "settled", "refunded", "cancelled"]
    method: Literal["va", "kkpd"]
    va_number: str | None = Field(None, description="the current virtual account (method va)")
    va_expires_at: datetime | None = None
    virtual_accounts: list[str] = Field(default_factory=list, description="every VA issued, oldest first")
    invoice: InvoiceOut
    pemda: str
    satker: str
    provider_id: str
    provider_name: str
    bast_number: str
    reference: str | None = Field(None, description="the bank's X-EXTERNAL-ID or the card authorisation code")
    paid_at: datetime | None = None
    settled_at: datetime | None = None
    refunded_at: datetime | None = None
    refund_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class PaymentList(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None = None


class LedgerEntry(BaseModel):
    account: str = Field(examples=["escrow", "satker:dinkes", "provider:prov-1", "tax:ppn", "tax:pph22"])
    amount: int = Field(description="signed integer rupiah; a payment's amounts sum to zero", examples=[-1_110_000])
    kind: Literal["payment_received", "settlement", "settlement_reversal", "refund"]
    at: datetime


class Ledger(BaseModel):
    items: list[LedgerEntry]


class ByOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=200, description="the order whose payment to show")


class ChargeCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card_token: str = Field(
        min_length=4,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the tokenised KKPD card (never the card number)",
        examples=["kkpd-tok-4821"],
    )


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=3, max_length=500, description="why the money goes back", examples=["order cancelled after payment"]
    )

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError("give a reason of at least 3 characters")
        return value.strip()


class SnapResponse(BaseModel):
    responseCode: str = Field(description="HTTP status + service code 25 + case code", examples=["2002500"])
    responseMessage: str = Field(examples=["Successful"])
    virtualAccountData: dict[str, Any] | None = None


class SandboxPay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(
        ge=1, le=10**13, description="whole rupiah the simulated customer transfers", examples=[1_110_000]
    )


class SandboxPayResult(BaseModel):
    http_status: int
    external_id: str
    response: dict[str, Any]


def payment_out(doc: Document) -> PaymentOut:
    return PaymentOut(id=doc["_id"], **{k: v for k, v in doc.items() if k in PaymentOut.model_fields and k != "id"})


def service_of(req: ApiRequest[Any, Any]) -> PaymentsService:
    return req.app[SERVICE]


@router.get("/api/v1/payments", query=ByOrder, response=PaymentList, roles=BUYERS_AND_OVERSIGHT)
async def list_payments(req: ApiRequest[None, ByOrder]) -> PaymentList:
    """The payment of an order (empty when there is none or it is outside your scope)."""
    docs = await service_of(req).for_order(req.query.order_id, req.user)
    return PaymentList(items=[payment_out(d) for d in docs])


@router.get(
    "/api/v1/payments/{id}",
    response=PaymentOut,
    roles=BUYERS_AND_OVERSIGHT,
    responses={404: "No such payment in your scope"},
)
async def get_payment(req: ApiRequest[None, None]) -> PaymentOut:
    """A payment with its invoice breakdown and status."""
    return payment_out(await service_of(req).visible(req.path("id"), req.user))


@router.get(
    "/api/v1/payments/{id}/ledger",
    response=Ledger,
    roles=BUYERS_AND_OVERSIGHT,
    responses={404: "No such payment in your scope"},
)
async def get_ledger(req: ApiRequest[None, None]) -> Ledger:
    """The payment's ledger entries, oldest posting first; their signed amounts sum to zero."""
    items = await service_of(req).ledger(req.path("id"), req.user)
    return Ledger(items=[LedgerEntry(**item) for item in items])


@router.post(
    "/api/v1/payments/{id}/va",
    response=PaymentOut,
    roles=("bendahara",),
    responses={404: "No such payment in your satker", 409: "Not a VA payment, VA still valid, or already paid"},
)
async def reissue_va(req: ApiRequest[None, None]) -> PaymentOut:
    """Issue a new virtual account after the previous one expired."""
    return payment_out(await service_of(req).reissue_va(req.path("id"), req.user))


@router.post(
    "/api/v1/payments/{id}/charge",
    body=ChargeCard,
    response=PaymentOut,
    roles=("bendahara",),
    responses={402: "Card declined", 404: "No such payment in your satker", 409: "Not a KKPD payment or not payable"},
)
async def charge(req: ApiRequest[ChargeCard, None]) -> PaymentOut:
    """Pay by KKPD card: the provider authorises the charge, the payment is paid and settled."""
    return payment_out(await service_of(req).charge(req.path("id"), req.body.card_token, req.user))


@router.post(
    "/api/v1/payments/{id}/refund",
    body=RefundRequest,
    response=PaymentOut,
    roles=("admin",),
    responses={404: "No such payment in your pemda", 409: "Not paid or settled"},
)
async def refund(req: ApiRequest[RefundRequest, None]) -> PaymentOut:
    """Refund a paid or settled payment: reversing ledger entries and a refund.completed event."""
    return payment_out(await service_of(req).refund(req.path("id"), req.body.reason, req.user))


async def snap_callback(request: web.Request) -> web.Response:
    """Bank payment notification (SNAP). No JWT: the X-SIGNATURE is the authentication."""
    result = await request.app[CALLBACKS].handle(dict(request.headers), await request.read(), utcnow())
    return web.json_response(result.body, status=result.http_status)


def install_callback(app: web.Application) -> None:
    # A plain route, not the Router: the kit would verify a bank's `Authorization` header as our JWT,
    # and SNAP answers with its own body rather than problem+json.
    app.router.add_post(CALLBACK_PATH, snap_callback)
    app[ENDPOINTS].append(
        Endpoint(
            method="POST",
            path=CALLBACK_PATH,
            handler=cast(Handler, snap_callback),  # read for its name only, by the OpenAPI generator
            body=None,
            query=None,
            response=SnapResponse,
            status=200,
            summary="Bank payment notification (SNAP), signed with X-SIGNATURE; see docs/payments.md",
            roles=None,
            tag="payments",
            responses={
                401: "4012500 invalid signature, 4012502 stale X-TIMESTAMP",
                404: "4042512 unknown VA, 4042513 wrong amount, 4042514 paid bill, 4042519 expired VA",
                409: "4092500 X-EXTERNAL-ID reused today with another body",
            },
        )
    )


@sandbox_router.post("/api/v1/sandbox/va/{va}/pay", body=SandboxPay, response=SandboxPayResult)
async def sandbox_pay(req: ApiRequest[SandboxPay, None]) -> SandboxPayResult:
    """Sandbox bank only: pay a VA, i.e. send the bank's signed callback to the payments service."""
    settings = req.app[SETTINGS]
    callback_url = settings.sandbox_callback_url or f"{req.request.url.origin()}{CALLBACK_PATH}"
    result = await send_payment_callback(
        callback_url=callback_url,
        va_number=req.path("va"),
        amount=req.body.amount,
        partner_id=settings.sandbox_partner_id,
        secret=settings.snap_client_secrets[settings.sandbox_partner_id],
        token=settings.snap_callback_token,
        va_prefix=settings.va_prefix,
    )
    return SandboxPayResult(http_status=result.http_status, external_id=result.external_id, response=result.body)
