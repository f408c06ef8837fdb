"""Value types shared by several event families."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["pp", "ppk", "bendahara", "penyedia", "admin", "auditor"]
PaymentMethod = Literal["va", "kkpd"]

# Upper bounds of money and quantities at the API. Far above any real e-catalog purchase, and small
# enough that no total the services compute from them (a full cart of the biggest lines at the
# highest price, plus tax) reaches BSON's int64 ceiling of 2**63 - 1: an unbounded integer there
# is an OverflowError when stored, i.e. a 500, instead of a 422 naming the field.
MAX_RUPIAH = 10_000_000_000  # Rp 10 miliar for one unit, one discount or one price filter
MAX_QUANTITY = 1_000_000  # units in one order line, in stock, or as a minimum order
MAX_CART_LINES = 100  # lines in one checkout (tests check the product stays below 2**62)

# Use these as they are: pydantic lets the annotation's `ge` win over a `Field(ge=...)` on the
# field, so a narrower lower bound needs a type of its own.
Rupiah = Annotated[int, Field(ge=0, le=MAX_RUPIAH)]
"""An amount of money in whole rupiah, 0..MAX_RUPIAH."""
PositiveRupiah = Annotated[int, Field(ge=1, le=MAX_RUPIAH)]
"""A price in whole rupiah, 1..MAX_RUPIAH."""
Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY)]
"""A count of units, 0..MAX_QUANTITY (a stock level)."""
PositiveQuantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
"""A count of units, 1..MAX_QUANTITY (an ordered quantity, a minimum order)."""

# Western Indonesia Time (Asia/Jakarta): a fixed UTC+7 with no daylight saving, so no tz database is needed.
WIB = timezone(timedelta(hours=7), "WIB")


class Actor(BaseModel):
    """Who caused a change: the token's subject, role and display name, or the system itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sub: str
    role: Role | Literal["system"]
    name: str | None = None


SYSTEM = Actor(sub="system", role="system", name="bejo")
