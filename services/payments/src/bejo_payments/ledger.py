"""The payment's ledger read model. Postings are made by the aggregate's commands
(`domain.Payment.pay/settle/refund`) and written in the same conditional write as the status change
they belong to, so a posting is never missed or doubled."""

from __future__ import annotations

from typing import Any

from . import domain


def lines(payment: domain.Payment) -> list[dict[str, Any]]:
    """One line per leg, oldest posting first: the read model of GET .../ledger."""
    return [
        {"account": leg.account, "amount": leg.amount, "kind": posting.kind, "at": posting.at}
        for posting in payment.ledger
        for leg in posting.legs
    ]
