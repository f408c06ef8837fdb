"""Risky defaults and exposure of the payments service: published sandbox secrets refused in
production, the sandbox bank's pay route for admins only and never steered by the Host header, the
buyer scope by pemda and satker, and a bank reaching payments through the real gateway."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from payments_harness import PEMDA, StartPayments, access_token, callback
from support import bearer, serve, token

from bejo_gateway.app import build as build_gateway
from bejo_gateway.settings import GatewaySettings
from bejo_payments.access import TOKEN_PATH
from bejo_payments.callbacks import CALLBACK_PATH
from bejo_payments.sandbox import send_payment_callback
from bejo_payments.sandbox_keys import SANDBOX_PUBLIC_KEY
from bejo_payments.settings import PaymentsSettings

pytestmark = pytest.mark.integration

# A non-default JWT secret, so that only the payments checks are under test here.
PRODUCTION = {"environment": "production", "jwt_secret": "x" * 48}
A_BANK_SECRETS = {"BANKJATIM": "a-secret-only-the-bank-and-we-know"}
A_BANK_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def test_production_refuses_the_published_sandbox_client_secret() -> None:
    with pytest.raises(ValueError, match="PAYMENTS_SNAP_CLIENT_SECRETS"):
        PaymentsSettings(**PRODUCTION)
    with pytest.raises(ValueError, match="PAYMENTS_SNAP_CLIENT_SECRETS"):
        PaymentsSettings(
            **PRODUCTION,
            snap_client_secrets={**A_BANK_SECRETS, "SANDBOXBANK": "sandbox-client-secret"},
            snap_public_keys={"BANKJATIM": A_BANK_KEY, "SANDBOXBANK": A_BANK_KEY},
        )
    production = PaymentsSettings(
        **PRODUCTION, snap_client_secrets=A_BANK_SECRETS, snap_public_keys={"BANKJATIM": A_BANK_KEY}
    )
    assert production.environment == "production"


def test_production_refuses_the_sandbox_banks_public_key_whose_private_key_is_published() -> None:
    with pytest.raises(ValueError, match="PAYMENTS_SNAP_PUBLIC_KEYS"):
        PaymentsSettings(
            **PRODUCTION, snap_client_secrets=A_BANK_SECRETS, snap_public_keys={"BANKJATIM": SANDBOX_PUBLIC_KEY}
        )


def test_partner_keys_must_be_rsa_public_keys_and_every_partner_needs_one() -> None:
    with pytest.raises(ValueError, match="not an RSA public key"):
        PaymentsSettings(snap_public_keys={"SANDBOXBANK": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"})
    with pytest.raises(ValueError, match="no key for"):
        PaymentsSettings(snap_client_secrets={"SANDBOXBANK": "s", "OTHER": "t"})


def test_development_defaults_still_start() -> None:
    settings = PaymentsSettings(environment="local", sandbox_enabled=True)
    assert settings.sandbox_partner_id in settings.snap_public_keys


async def test_the_sandbox_pay_route_is_for_admins_only(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        path = f"/api/v1/sandbox/va/{payment['va_number']}/pay"
        amount = {"amount": payment["invoice"]["total"]}
        problem = await p.post(path, {}, amount, status=401)
        assert problem["code"] == "missing_token"
        for role in ("bendahara", "pp", "penyedia", "auditor"):
            who = bearer(token(role, f"{role}-1", pemda=PEMDA, satker=p.satker, provider_id=p.provider_id))
            problem = await p.post(path, who, amount, status=403)
            assert problem["code"] == "role_required" or problem["status"] == 403, problem
        assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "awaiting_payment"
        paid = await p.post(path, p.admin(), amount)
        assert paid["response"]["responseCode"] == "2002500"


async def test_the_sandbox_callback_url_never_comes_from_the_host_header(start_payments: StartPayments) -> None:
    """A Host header naming another server must not send the signed callback (and its token
    request) there; the callback goes to this server's own socket, and pays."""
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        path = f"/api/v1/sandbox/va/{payment['va_number']}/pay"
        headers = {**p.admin(), "Host": "attacker.invalid:9"}
        paid = await p.post(path, headers, {"amount": payment["invoice"]["total"]})
        assert paid["http_status"] == 200 and paid["response"]["responseCode"] == "2002500", paid


async def test_the_sandbox_uses_the_configured_callback_url(start_payments: StartPayments) -> None:
    async with start_payments(sandbox_callback_url="http://127.0.0.1:9/api/v1/payments/callbacks/snap") as p:
        payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
        path = f"/api/v1/sandbox/va/{payment['va_number']}/pay"
        # Nothing listens on port 9 here: the configured URL was used, and the failure is a 502 problem.
        problem = await p.post(path, p.admin(), {"amount": payment["invoice"]["total"]}, status=502)
        assert problem["code"] == "callback_undeliverable"
        assert problem["callback_url"] == "http://127.0.0.1:9/api/v1/payments/callbacks/snap"
        assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "awaiting_payment"


async def test_buyers_see_payments_of_their_own_satker_in_their_own_pemda_only(start_payments: StartPayments) -> None:
    """Satker codes are unique only within a pemda: another pemda's satker of the same code sees nothing."""
    async with start_payments() as p:
        order = p.received(lines=[(1, 100_000)])
        payment = await p.invoiced(order)
        path = f"/api/v1/payments/{payment['id']}"
        for role in ("pp", "ppk", "bendahara"):
            own = bearer(token(role, f"{role}-1", pemda=PEMDA, satker=p.satker))
            namesake = bearer(token(role, f"{role}-2", pemda="36.03", satker=p.satker))
            assert (await p.get(path, own))["id"] == payment["id"]
            assert (await p.get(path, namesake, status=404))["code"] == "payment_not_found"
            assert (await p.get(f"/api/v1/payments?order_id={order.order_id}", namesake))["items"] == []
        namesake_bendahara = bearer(token("bendahara", "b-2", pemda="36.03", satker=p.satker))
        await p.post(f"{path}/va", namesake_bendahara, status=404)


async def test_a_bank_pays_through_the_gateway_with_its_snap_token(start_payments: StartPayments) -> None:
    """The gateway routes SNAP's fixed token path and passes the bank's `Authorization: Bearer
    <SNAP token>` through unread (it is not a bejo JWT); payments authenticates the call."""
    async with start_payments() as p:
        settings = GatewaySettings(
            payments_urls=[p.base_url],
            rate_limit_per_second=1000,
            rate_limit_burst=1000,
            environment="test",
            log_level="WARNING",
        )
        async with serve(build_gateway(settings)) as gateway, aiohttp.ClientSession() as http:
            payment = await p.invoiced(p.received(lines=[(1, 100_000)]))
            bank: dict[str, Any] = {
                "callback_url": gateway + CALLBACK_PATH,
                "va_number": payment["va_number"],
                "amount": payment["invoice"]["total"],
                "partner_id": p.settings.sandbox_partner_id,
                "secret": p.settings.snap_client_secrets[p.settings.sandbox_partner_id],
                "private_key": p.settings.sandbox_private_key,
                "va_prefix": p.settings.va_prefix,
            }
            result = await send_payment_callback(**bank)  # token from gateway + /v1.0/access-token/b2b
            assert (result.http_status, result.body["responseCode"]) == (200, "2002500"), result
            assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "settled"

            # A forged token is refused by payments, in SNAP's words, not by the gateway as a bad JWT.
            status, body = await callback(
                p, payment["va_number"], 1, callback_url=gateway + CALLBACK_PATH, token="forged"
            )
            assert (status, body["responseCode"]) == (401, "4012501")
            # Both SNAP operations are in the gateway's merged document.
            async with http.get(gateway + "/api/v1/openapi.json") as response:
                paths = (await response.json())["paths"]
            assert TOKEN_PATH in paths and CALLBACK_PATH in paths
            assert await access_token(p)  # the service's own endpoint still answers directly
