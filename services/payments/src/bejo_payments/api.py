"""HTTP routes of the payments service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, cast

import aiohttp
import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bejo_kit.api import ENDPOINTS, ApiRequest, Endpoint, Handler, Router
from bejo_kit.errors import Problem
from bejo_kit.mongo import utcnow

from . import domain, snap
from .access import TOKEN_PATH, AccessTokens
from .callbacks import CALLBACK_PATH, SnapCallbacks, SnapNotification
from .sandbox import AccessTokenRefused, send_payment_callback
from .service import PaymentsService
from .settings import PaymentsSettings

router = Router(tag="payments")
sandbox_router = Router(tag="sandbox")
SERVICE = web.AppKey("payments_service", PaymentsService)
CALLBACKS = web.AppKey("payments_callbacks", SnapCallbacks)
TOKENS = web.AppKey("payments_access_tokens", AccessTokens)
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
    virtualAccountData: dict[str, Any] | None = Field(
        None,
        description="the notification's partnerServiceId, customerNo, virtualAccountNo, paymentRequestId, "
        "paidAmount and trxDateTime, the bill's totalAmount, and paymentFlagStatus (00 accepted, 01 refused)",
    )


class SnapRefusal(BaseModel):
    """A refusal by a SNAP endpoint: SNAP's responseCode and responseMessage for the bank, plus the
    RFC 9457 problem members. Sent as application/json, as SNAP requires."""

    responseCode: str = Field(pattern=r"^[0-9]{7}$", examples=["4002502"])
    responseMessage: str = Field(examples=["Invalid Mandatory Field [X-PARTNER-ID]"])
    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="stable machine-readable name", examples=["missing_mandatory_field"])
    virtualAccountData: dict[str, Any] | None = None


class TokenRequest(BaseModel):
    grantType: Literal["client_credentials"]
    additionalInfo: dict[str, Any] | None = None


class TokenResponse(BaseModel):
    responseCode: str = Field(examples=["2007300"])
    responseMessage: str = Field(examples=["Successful"])
    accessToken: str
    tokenType: Literal["Bearer"]
    expiresIn: str = Field(description="lifetime in seconds", examples=["900"])


class SandboxPay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(
        ge=1, le=10**13, description="whole rupiah the simulated customer transfers", examples=[1_110_000]
    )


class SandboxPayResult(BaseModel):
    http_status: int
    external_id: str
    response: dict[str, Any]


def payment_out(payment: domain.Payment) -> PaymentOut:
    return PaymentOut.model_validate(payment.model_dump(include=set(PaymentOut.model_fields)))


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


# -- SNAP: plain routes, not the Router: the kit would verify a bank's `Authorization` (its SNAP
# access token) as our JWT, and SNAP answers with its own body rather than problem+json.


def snap_response(answer: snap.Reply, now: datetime) -> web.Response:
    return web.json_response(
        answer.body, status=answer.http_status, headers={"X-TIMESTAMP": snap.format_timestamp(now)}
    )


async def snap_callback(request: web.Request) -> web.Response:
    """Bank payment notification (SNAP), authenticated by its B2B access token and X-SIGNATURE"""
    now = utcnow()
    answer = await request.app[CALLBACKS].handle(request.headers, await request.read(), now)
    return snap_response(answer, now)


async def snap_access_token(request: web.Request) -> web.Response:
    """SNAP B2B access token for a bank: X-SIGNATURE is SHA256withRSA of `client_id|X-TIMESTAMP`"""
    now = utcnow()
    answer = await request.app[TOKENS].issue(request.headers, await request.read(), now)
    return snap_response(answer, now)


def _header(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
        "example": example,
    }


TIMESTAMP_HEADER = _header("X-TIMESTAMP", "ISO-8601 with its offset, within 5 minutes", "2026-11-27T10:00:00+07:00")
SNAP_HEADERS: dict[str, list[dict[str, Any]]] = {
    CALLBACK_PATH: [
        TIMESTAMP_HEADER,
        _header("X-SIGNATURE", "base64 HMAC-SHA512 of the string to sign (docs/payments.md)", "mMjMgn4N...=="),
        _header("X-PARTNER-ID", "the bank's client id, the one its access token was issued to", "SANDBOXBANK"),
        _header("X-EXTERNAL-ID", "unique per partner and day; the idempotency key", "41807553358950093184"),
        _header("CHANNEL-ID", "SNAP channel id", "95231"),
    ],
    TOKEN_PATH: [
        TIMESTAMP_HEADER,
        _header("X-CLIENT-KEY", "the bank's client id", "SANDBOXBANK"),
        _header(
            "X-SIGNATURE", "base64 SHA256withRSA of `client_id|X-TIMESTAMP`, checked with its registered key", "Zm9v"
        ),
    ],
}
SNAP_SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": f"SNAP B2B access token from POST {TOKEN_PATH} (not a bejo JWT)",
}


def snap_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """What the kit's generator cannot say about the SNAP operations: their headers, the B2B token
    they carry, and their refusals, which are application/json SNAP bodies (SnapRefusal), not
    problem+json. No 422: a bad field is a SNAP 400."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schema = SnapRefusal.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas["SnapRefusal"] = schema
    document["components"].setdefault("securitySchemes", {})["snapAccessToken"] = SNAP_SECURITY_SCHEME
    refusal = {"application/json": {"schema": {"$ref": "#/components/schemas/SnapRefusal"}}}
    for path, headers in SNAP_HEADERS.items():
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        operation["parameters"] = [*headers, *operation.get("parameters", [])]
        operation["responses"].pop("422", None)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                response["content"] = refusal
            response["headers"] = {"X-TIMESTAMP": {"schema": {"type": "string"}, "description": "time of the answer"}}
        if path == CALLBACK_PATH:
            operation["security"] = [{"snapAccessToken": []}]
    return document


@web.middleware
async def snap_openapi_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if request.path != "/openapi.json" or not isinstance(response, web.Response) or response.body is None:
        return response
    document = snap_openapi(orjson.loads(cast(bytes, response.body)))
    return web.Response(body=orjson.dumps(document), status=response.status, content_type="application/json")


def _snap_endpoint(
    path: str,
    handler: Handler,
    body: type[BaseModel],
    response: type[BaseModel],
    summary: str,
    responses: dict[int, str],
) -> Endpoint:
    return Endpoint(
        method="POST",
        path=path,
        handler=handler,  # read for its name only, by the OpenAPI generator
        body=body,
        query=None,
        response=response,
        status=200,
        summary=summary,
        roles=None,
        tag="payments",
        responses=responses,
    )


def install_snap(app: web.Application) -> None:
    app.router.add_post(CALLBACK_PATH, snap_callback)
    app.router.add_post(TOKEN_PATH, snap_access_token)
    app[ENDPOINTS].extend(
        [
            _snap_endpoint(
                TOKEN_PATH,
                cast(Handler, snap_access_token),
                TokenRequest,
                TokenResponse,
                "SNAP B2B access token for a bank (RSA-signed request); see docs/payments.md",
                {
                    400: "4007300 not JSON, 4007301 bad X-TIMESTAMP or grantType, 4007302 header or grantType missing",
                    401: "4017300 unknown client, bad signature or stale X-TIMESTAMP",
                },
            ),
            _snap_endpoint(
                CALLBACK_PATH,
                cast(Handler, snap_callback),
                SnapNotification,
                SnapResponse,
                "Bank payment notification (SNAP), with its B2B token and X-SIGNATURE; see docs/payments.md",
                {
                    400: "4002500 not JSON or nested too deep, 4002501 bad field format, "
                    "4002502 mandatory field missing",
                    401: "4012500 invalid signature, 4012501 invalid access token, 4012502 stale X-TIMESTAMP",
                    404: "4042504 cancelled, 4042512 unknown VA, 4042513 wrong amount, 4042514 paid bill, "
                    "4042519 expired VA",
                    409: "4092500 X-EXTERNAL-ID reused today with another body",
                },
            ),
        ]
    )
    app.middlewares.append(snap_openapi_middleware)


def callback_url(req: ApiRequest[Any, Any], settings: PaymentsSettings) -> str:
    """Where the sandbox bank calls back: the configured URL, else this server's own listening socket
    (never the request's Host header: whoever sends the request chooses that)."""
    if settings.sandbox_callback_url:
        return settings.sandbox_callback_url
    transport = req.request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        return f"http://127.0.0.1:{settings.http_port}{CALLBACK_PATH}"
    host, port = sockname[0], sockname[1]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{CALLBACK_PATH}"


class CallbackUndeliverable(Problem):
    status = 502
    code = "callback_undeliverable"
    title = "Callback not delivered"


@sandbox_router.post(
    "/api/v1/sandbox/va/{va}/pay",
    body=SandboxPay,
    response=SandboxPayResult,
    roles=("admin",),
    responses={
        404: "No such route (sandbox mode off), or a VA path the gateway refuses (encoded slash, dot segment)",
        502: "The sandbox bank could not reach the callback URL (nothing was paid)",
    },
)
async def sandbox_pay(req: ApiRequest[SandboxPay, None]) -> SandboxPayResult:
    """Sandbox bank only: pay a VA, i.e. get a SNAP access token and send the bank's signed callback."""
    settings = req.app[SETTINGS]
    url = callback_url(req, settings)
    try:
        result = await send_payment_callback(
            callback_url=url,
            va_number=req.path("va"),
            amount=req.body.amount,
            partner_id=settings.sandbox_partner_id,
            secret=settings.snap_client_secrets[settings.sandbox_partner_id],
            private_key=settings.sandbox_private_key,
            va_prefix=settings.va_prefix,
        )
    except (aiohttp.ClientError, TimeoutError, AccessTokenRefused) as exc:
        raise CallbackUndeliverable(f"the sandbox bank could not call {url}: {exc}", callback_url=url) from exc
    return SandboxPayResult(http_status=result.http_status, external_id=result.external_id, response=result.body)
