"""Value types shared by several event families."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["pp", "ppk", "bendahara", "penyedia", "admin", "auditor"]
PaymentMethod = Literal["va", "kkpd"]

# Western Indonesia Time (Asia/Jakarta): a fixed UTC+7 with no daylight saving, so no tz database is needed.
WIB = timezone(timedelta(hours=7), "WIB")


class Actor(BaseModel):
    """Who caused a change: the token's subject, role and display name, or the system itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sub: str
    role: Role | Literal["system"]
    name: str | None = None


SYSTEM = Actor(sub="system", role="system", name="bejo")
