"""Configuration of the payments service (environment variables prefixed PAYMENTS_, plus the shared ones)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings

from . import snap
from .sandbox_keys import SANDBOX_PRIVATE_KEY, SANDBOX_PUBLIC_KEY

SANDBOX_PARTNER = "SANDBOXBANK"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"


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

    # SNAP partners (banks), by client id = X-CLIENT-KEY = X-PARTNER-ID: the client secret of the
    # HMAC on service calls, and the RSA public key (PEM) the partner registered for the B2B
    # access-token request. The defaults are the sandbox bank's, published; refused in production.
    snap_client_secrets: dict[str, str] = Field(default_factory=lambda: {SANDBOX_PARTNER: SANDBOX_CLIENT_SECRET})
    snap_public_keys: dict[str, str] = Field(default_factory=lambda: {SANDBOX_PARTNER: SANDBOX_PUBLIC_KEY})
    # Lifetime of a B2B access token, and the allowed clock difference of X-TIMESTAMP.
    snap_token_ttl_seconds: int = Field(900, gt=0, le=3600)
    snap_timestamp_window_seconds: float = Field(300.0, gt=0)

    # Sandbox bank: off unless configured; its HTTP endpoint exists only then.
    sandbox_enabled: bool = False
    sandbox_partner_id: str = SANDBOX_PARTNER
    # The sandbox bank's RSA private key (PEM), to sign its access-token requests.
    sandbox_private_key: str = SANDBOX_PRIVATE_KEY
    # Where the sandbox bank sends its callbacks (and asks for its access token: the same origin,
    # path /v1.0/access-token/b2b). None: the address of this server's own listening socket, never
    # the request's Host header, which the caller chooses.
    sandbox_callback_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    @field_validator("snap_public_keys")
    @classmethod
    def _keys_are_rsa_public_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for partner, pem in keys.items():
            try:
                snap.load_public_key(pem)
            except ValueError as exc:
                raise ValueError(f"partner {partner!r}: not an RSA public key in PEM form ({exc})") from None
        return keys

    @model_validator(mode="after")
    def _every_partner_has_a_key(self) -> PaymentsSettings:
        keyless = sorted(set(self.snap_client_secrets) - set(self.snap_public_keys))
        if keyless:
            raise ValueError(f"PAYMENTS_SNAP_PUBLIC_KEYS has no key for {keyless}: they could never get a token")
        return self

    @model_validator(mode="after")
    def _no_published_secrets_in_production(self) -> PaymentsSettings:
        if self.environment != "production":
            return self
        if self.sandbox_enabled:
            raise ValueError("PAYMENTS_SANDBOX_ENABLED must not be set in production")
        published = sorted(p for p, secret in self.snap_client_secrets.items() if secret == SANDBOX_CLIENT_SECRET)
        if published:
            raise ValueError(
                f"PAYMENTS_SNAP_CLIENT_SECRETS holds the published sandbox secret for {published} (BEJO_ENV=production)"
            )
        keys = sorted(p for p, key in self.snap_public_keys.items() if key.strip() == SANDBOX_PUBLIC_KEY.strip())
        if keys:
            raise ValueError(
                f"PAYMENTS_SNAP_PUBLIC_KEYS holds the sandbox bank's key for {keys}, whose private key is published"
            )
        return self

    @model_validator(mode="after")
    def _sandbox_partner_is_registered(self) -> PaymentsSettings:
        if self.sandbox_enabled and self.sandbox_partner_id not in self.snap_client_secrets:
            raise ValueError("PAYMENTS_SANDBOX_PARTNER_ID has no entry in PAYMENTS_SNAP_CLIENT_SECRETS")
        return self
