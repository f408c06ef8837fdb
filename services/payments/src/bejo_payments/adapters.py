"""The payment provider (bank / card acquirer) behind the payments service, and the sandbox bank.

A real adapter calls the bank's SNAP APIs (create VA, card authorisation). The sandbox bank answers
locally and, when told to pay a VA, sends the bank's signed callback over real HTTP (see sandbox.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class VirtualAccount:
    number: str
    expires_at: datetime


@dataclass(frozen=True)
class CardAuthorisation:
    approved: bool
    reference: str  # authorisation code when approved
    reason: str | None = None  # why it was declined


class PaymentProvider(Protocol):
    async def issue_virtual_account(self, payment_id: str, amount: int, expires_at: datetime) -> VirtualAccount:
        """Open a VA that accepts exactly `amount` until `expires_at`."""
        ...

    async def authorise_card(self, payment_id: str, amount: int, card_token: str) -> CardAuthorisation:
        """Charge a KKPD card. `payment_id` is the idempotency key: a repeated call returns the first result."""
        ...


class SandboxBank:
    """Issues random VA numbers under a prefix and approves KKPD charges up to the card cap."""

    def __init__(self, va_prefix: str, card_limit: int) -> None:
        self._prefix = va_prefix
        self._card_limit = card_limit
        self._authorisations: dict[str, CardAuthorisation] = {}

    async def issue_virtual_account(self, payment_id: str, amount: int, expires_at: datetime) -> VirtualAccount:
        digits = 16 - len(self._prefix)
        return VirtualAccount(
            number=self._prefix + f"{secrets.randbelow(10**digits):0{digits}d}", expires_at=expires_at
        )

    async def authorise_card(self, payment_id: str, amount: int, card_token: str) -> CardAuthorisation:
        if payment_id in self._authorisations:
            return self._authorisations[payment_id]
        if amount > self._card_limit:
            result = CardAuthorisation(False, "", f"amount {amount} exceeds the card limit of {self._card_limit}")
        else:
            result = CardAuthorisation(True, f"AUTH-{secrets.token_hex(6).upper()}")
        self._authorisations[payment_id] = result
        return result
