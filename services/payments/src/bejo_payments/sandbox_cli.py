"""`bejo sandbox pay VA AMOUNT`: the sandbox bank pays a virtual account: it gets a SNAP access token,
then sends its signed callback."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from .callbacks import CALLBACK_PATH
from .sandbox import AccessTokenRefused, send_payment_callback
from .settings import PaymentsSettings


def _pay(args: argparse.Namespace) -> int:
    settings = PaymentsSettings()
    partner = args.partner_id or settings.sandbox_partner_id
    secret = settings.snap_client_secrets.get(partner)
    if secret is None:
        print(
            f"bejo sandbox pay: no client secret for partner {partner!r} in PAYMENTS_SNAP_CLIENT_SECRETS",
            file=sys.stderr,
        )
        return 2
    if args.amount < 1:
        print("bejo sandbox pay: AMOUNT must be a positive whole number of rupiah", file=sys.stderr)
        return 2
    url = args.callback_url or settings.sandbox_callback_url or f"http://127.0.0.1:{settings.http_port}{CALLBACK_PATH}"
    try:
        result = asyncio.run(
            send_payment_callback(
                callback_url=url,
                va_number=args.va,
                amount=args.amount,
                partner_id=partner,
                secret=secret,
                private_key=settings.sandbox_private_key,
                va_prefix=settings.va_prefix,
                token_url=args.token_url,
                external_id=args.external_id,
            )
        )
    except AccessTokenRefused as exc:
        print(f"bejo sandbox pay: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps({"http_status": result.http_status, "external_id": result.external_id, **result.body}).decode())
    return 0 if result.http_status == 200 else 1


def register(subparsers: Any) -> None:
    sandbox = subparsers.add_parser("sandbox", help="sandbox bank (local and test only)")
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    pay = commands.add_parser(
        "pay", help="pay a virtual account: gets a SNAP access token, then sends the bank's signed callback"
    )
    pay.add_argument("va", metavar="VA", help="virtual account number")
    pay.add_argument("amount", metavar="AMOUNT", type=int, help="whole rupiah transferred")
    pay.add_argument(
        "--callback-url", help=f"default: PAYMENTS_SANDBOX_CALLBACK_URL or http://127.0.0.1:<port>{CALLBACK_PATH}"
    )
    pay.add_argument("--token-url", help="SNAP access-token URL (default: /v1.0/access-token/b2b beside the callback)")
    pay.add_argument("--partner-id", help="X-PARTNER-ID (default: PAYMENTS_SANDBOX_PARTNER_ID)")
    pay.add_argument("--external-id", help="X-EXTERNAL-ID (default: random; reuse one to send a duplicate)")
    pay.set_defaults(func=_pay)
