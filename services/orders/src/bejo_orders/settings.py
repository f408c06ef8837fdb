"""Configuration of the orders service (environment variables prefixed ORDERS_, plus the shared ones)."""

from __future__ import annotations

from datetime import date

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bejo_contracts.common import MAX_CART_LINES
from bejo_kit.settings import KitSettings

from .rules import Caps


class RedFlagSettings(BaseSettings):
    """Thresholds of the indicators (environment variables prefixed ORDERS_REDFLAG_)."""

    model_config = SettingsConfigDict(env_prefix="ORDERS_REDFLAG_", extra="ignore")

    # split purchases: orders of one satker to one provider, each within `split_near_cap` of a cap
    # (between that fraction of the cap and the cap), at least `split_min_orders` of them within
    # `split_window_hours`, together over the cap. The toko daring per-transaction cap is checked
    # besides the payment method's cap.
    split_window_hours: float = Field(7 * 24, gt=0)
    split_near_cap: float = Field(0.8, gt=0, lt=1)
    split_min_orders: int = Field(2, ge=2)
    toko_daring_cap: int = Field(50_000_000, ge=1)
    # supplier concentration: one provider over this share of a satker's or pemda's paid spend in
    # the period, once the satker or pemda has at least `concentration_min_orders` paid orders
    concentration_share: float = Field(0.5, gt=0, lt=1)
    concentration_min_orders: int = Field(5, ge=2)
    # price outliers: a unit price over `price_factor` x the median of its category's ordered unit
    # prices in the period, once the category has at least `price_min_samples` order lines
    price_factor: float = Field(3.0, gt=1)
    price_min_samples: int = Field(5, ge=3)
    # off-hours approvals: Surat Pesanan or BAST signed on a day that is not a working day (0 =
    # Monday, WIB), on a listed holiday, or outside working hours when they are set
    working_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    holidays: list[date] = Field(default_factory=list)
    work_start_hour: int | None = Field(None, ge=0, le=23)
    work_end_hour: int | None = Field(None, ge=1, le=24)
    # at most this many orders are examined per request (newest first); the summary says when cut
    max_orders: int = Field(50_000, ge=1)


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
