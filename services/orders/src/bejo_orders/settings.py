"""Configuration of the orders service (environment variables prefixed ORDERS_, plus the shared ones)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from bejo_contracts.common import MAX_CART_LINES
from bejo_kit.settings import KitSettings

from .redflags import RedFlagSettings
from .rules import Caps


class OrdersSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", extra="ignore", populate_by_name=True)

    service_name: str = "orders"
    http_port: int = 8082

    # Value caps in whole rupiah (DOMAIN.md); a checkout over a cap is refused before reserving.
    va_cap: int = Field(200_000_000, ge=1)
    kkpd_cap: int = Field(50_000_000, ge=1)
    kkpd_per_supplier_cap: int = Field(50_000_000, ge=1)

    # The PPK must approve or reject within this many working days (Mon-Fri, WIB) of the reservation.
    approval_working_days: int = Field(3, ge=0)
    # When set, a plain timeout in seconds replaces the working-day rule (tests, demos).
    approval_timeout_seconds: float | None = Field(None, gt=0)
    # How often each replica sweeps for overdue reservations.
    expiry_sweep_interval: float = Field(5.0, gt=0)

    # At most MAX_CART_LINES: the request model refuses longer carts, and the bound keeps totals in int64.
    max_lines: int = Field(100, ge=1, le=MAX_CART_LINES)
    # OCDS: the ocid prefix registered for this publisher (`ocds-` and 6 characters), the
    # publisher's name, the data's license and the publication policy (URIs).
    ocds_ocid_prefix: str = Field("ocds-b3j0id", pattern=r"^ocds-[a-z0-9]{6}$")
    ocds_publisher: str = "bejo"
    ocds_license: str = "https://creativecommons.org/licenses/by/4.0/"
    # None: the policy served at <public_url>/api/v1/ocds/policy
    ocds_publication_policy: str | None = None
    # The gateway's public base URL: OCDS links and URIs point there, not at this service.
    public_url: str = Field(
        "http://127.0.0.1:8080", validation_alias=AliasChoices("ORDERS_PUBLIC_URL", "BEJO_PUBLIC_URL", "public_url")
    )
    redflags: RedFlagSettings = Field(default_factory=RedFlagSettings)

    @property
    def caps(self) -> Caps:
        return Caps(va=self.va_cap, kkpd=self.kkpd_cap, kkpd_per_supplier=self.kkpd_per_supplier_cap)
