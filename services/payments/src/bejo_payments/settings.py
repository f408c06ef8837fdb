"""Configuration of the payments service (environment variables prefixed PAYMENTS_, plus the shared ones)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class PaymentsSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore", populate_by_name=True)

    service_name: str = "payments"
    http_port: int = 8083

    # Tax rates of PMK 58/2022 as exact decimals (never floats); amounts are floored to whole rupiah.
    ppn_rate: Decimal = Field(Decimal("0.11"), ge=0, lt=1)
    pph22_rate: Decimal = Field(Decimal("0.005"), ge=0, lt=1)

    # Virtual accounts: how long one stays payable, and the bank's prefix of the VA number.
    va_validity_seconds: float = Field(24 * 3600.0, gt=0)
    va_prefix: str = Field("8808", pattern=r"^[0-9]{1,8}$")
    # How often every replica sweeps for due VAs (an indexed query), and how often for payments left
    # `paid` by an interrupted settlement.
    expiry_check_interval_seconds: float = Field(1.0, gt=0)
    rescan_interval_seconds: float = Field(300.0, gt=0)
    # KKPD (KKP) card cap per supplier per transaction; the sandbox bank declines above it.
    kkpd_limit: int = Field(50_000_000, gt=0)

    # SNAP callbacks: client secret per partner (X-PARTNER-ID), the access token that stands in the
    # string to sign (static, agreed with the bank out of band; "" when none), the clock window.
    snap_client_secrets: dict[str, str] = Field(default_factory=lambda: {"SANDBOXBANK": "sandbox-client-secret"})
    snap_callback_token: str = ""
    snap_timestamp_window_seconds: float = Field(300.0, gt=0)

    # Sandbox bank: off unless configured; its HTTP endpoint exists only then.
    sandbox_enabled: bool = False
    sandbox_partner_id: str = "SANDBOXBANK"
    # Where the sandbox bank sends its callbacks; None: back to the server that received the pay request.
    sandbox_callback_url: str | None = None

    @model_validator(mode="after")
    def _sandbox_is_not_for_production(self) -> PaymentsSettings:
        if self.sandbox_enabled and self.environment == "production":
            raise ValueError("PAYMENTS_SANDBOX_ENABLED must not be set in production")
        if self.sandbox_enabled and self.sandbox_partner_id not in self.snap_client_secrets:
            raise ValueError("PAYMENTS_SANDBOX_PARTNER_ID has no entry in PAYMENTS_SNAP_CLIENT_SECRETS")
        return self
