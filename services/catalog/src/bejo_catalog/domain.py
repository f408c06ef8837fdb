"""Catalog rules: validation, provider state machine, visibility, pricing, reservation decisions,
search tokenization. Pure: no I/O, no clock (callers pass `now`)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bejo_contracts import pemda
from bejo_contracts.catalog import LineRejection, ProductSnapshot, ProviderStatus, RejectionCode
from bejo_contracts.common import WIB
from bejo_contracts.errors import IllegalTransition
from bejo_contracts.pricing import PromotionTerms, best_offer

NIB_PATTERN = re.compile(r"^\d{13}$")
NPWP_FORMATTED = re.compile(r"^\d{2}\.\d{3}\.\d{3}\.\d-\d{3}\.\d{3}$")
NPWP_DIGITS = re.compile(r"^\d{15,16}$")
PEMDA_PATTERN = re.compile(r"^\d{2}(\.\d{2})?$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
# Indonesian numbers: +62 or 0, then 8-13 digits (spaces and dashes allowed between groups).
PHONE_PATTERN = re.compile(r"^(\+62|0)\d{8,13}$")
PROVIDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LEGAL_ENTITIES = ("PT", "CV", "UD", "Koperasi", "Firma", "PT Perorangan")
LegalEntity = Literal["PT", "CV", "UD", "Koperasi", "Firma", "PT Perorangan"]

NAME_MAX = 200


class RuleViolation(ValueError):
    """Input that breaks a catalog rule; `field` names what the client must fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- validation -------------------------------------------------------------------------------


def normalize_npwp(value: str) -> str:
    """Accepts `01.234.567.8-901.000` or 15/16 plain digits (NIK-based NPWP since 2024)."""
    value = value.strip()
    if NPWP_FORMATTED.match(value) or NPWP_DIGITS.match(value):
        return value
    raise RuleViolation("npwp", "must look like 01.234.567.8-901.000 or be 15 or 16 digits")


def normalize_phone(value: str) -> str:
    compact = re.sub(r"[\s-]", "", value)
    if not PHONE_PATTERN.match(compact):
        raise RuleViolation("phone", "must be an Indonesian number such as +62315550100 or 0315550100")
    return compact


def check_pemda(field: str, code: str) -> str:
    if not PEMDA_PATTERN.match(code):
        raise RuleViolation(field, "must be a Kemendagri code such as 35 or 35.15")
    return code


def check_name(field: str, value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= NAME_MAX:
        raise RuleViolation(field, f"must be 1 to {NAME_MAX} characters (got {len(value)})")
    return value


def check_price(price: int, het: int | None) -> None:
    if price < 1:
        raise RuleViolation("price", "must be a positive whole number of rupiah")
    if het is not None:
        if het < 1:
            raise RuleViolation("het", "must be a positive whole number of rupiah")
        if price > het:
            raise RuleViolation("price", f"{price} exceeds the HET ceiling of {het}")


def check_promotion(kind: str, value: int, free_shipping: bool, starts_at: datetime, ends_at: datetime) -> None:
    if kind == "percent" and not 1 <= value <= 100:
        raise RuleViolation("discount_value", "a percent discount is a whole percent from 1 to 100")
    if kind == "fixed" and value < 1:
        raise RuleViolation("discount_value", "a fixed discount is at least 1 rupiah")
    if kind == "none":
        if value != 0:
            raise RuleViolation("discount_value", "must be 0 when discount_kind is none")
        if not free_shipping:
            raise RuleViolation("free_shipping", "a promotion without a discount must grant free shipping")
    if ends_at <= starts_at:
        raise RuleViolation("ends_at", "must be after starts_at")


def as_aware(value: datetime) -> datetime:
    """Times without an offset are read as Asia/Jakarta (WIB) wall-clock time."""
    return value.replace(tzinfo=WIB) if value.tzinfo is None else value


def delivers_to(regions: Iterable[str], region: str) -> bool:
    """A product delivering to `35` (the whole province) also delivers to `35.15`."""
    return any(pemda.covers(r, region) for r in regions)


# -- providers --------------------------------------------------------------------------------

_TRANSITIONS: dict[ProviderStatus, set[ProviderStatus]] = {
    "pending": {"verified", "suspended"},
    "verified": {"suspended"},
    "suspended": {"verified"},
}


def transition(current: ProviderStatus, target: ProviderStatus) -> ProviderStatus:
    if target not in _TRANSITIONS[current]:
        raise IllegalTransition(f"a {current} provider cannot become {target}", current_status=current)
    return target


# -- aggregates -------------------------------------------------------------------------------


class _Stored(BaseModel):
    """An aggregate as stored: `_id` is its id; bookkeeping fields (outbox, feed marks) are ignored
    on load and never written back from here."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    id: str = Field(alias="_id")
    version: int
    created_at: datetime
    updated_at: datetime

    def document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class Provider(_Stored):
    """A penyedia (UMKM shop): registered pending, verified or suspended by an admin of its pemda."""

    name: str
    legal_entity: str
    nib: str
    npwp: str
    pkp: bool  # a PKP charges PPN on its invoices
    pemda_code: str
    address: str
    email: str
    phone: str
    status: ProviderStatus
    status_reason: str | None = None
    registered_by: str | None = None

    def with_status(self, target: ProviderStatus, reason: str | None, now: datetime) -> Provider:
        transition(self.status, target)
        return self.model_copy(
            update={"status": target, "status_reason": reason, "updated_at": now, "version": self.version + 1}
        )


class Product(_Stored):
    """A product a provider lists. `stock` is what is left to reserve; `holds` names the orders whose
    reserved units are taken out of it and not yet committed or given back."""

    provider_id: str
    name: str
    description: str = ""
    category: str
    unit: str
    price: int
    het: int | None = None
    stock: int
    min_order_qty: int = 1
    images: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    status: Literal["active", "inactive"]
    holds: list[str] = Field(default_factory=list)

    def held_by(self, order_id: str) -> bool:
        return order_id in self.holds

    def document(self) -> dict[str, Any]:
        # `holds` is written only by the reservation's conditional updates, never from a loaded copy.
        return self.model_dump(by_alias=True, exclude={"holds"})

    def changed(self, changes: dict[str, Any], now: datetime) -> Product:
        """The product after an owner's change (already validated), at the next version."""
        return self.model_copy(update={**changes, "updated_at": now, "version": self.version + 1})


# -- products and prices ----------------------------------------------------------------------


def is_orderable(product_status: str, provider_status: str) -> bool:
    return product_status == "active" and provider_status == "verified"


@dataclass(frozen=True)
class Offer:
    list_price: int
    unit_price: int
    promotion_id: str | None
    free_shipping: bool


def offer(price: int, promotions: list[PromotionTerms], at: datetime) -> Offer:
    unit_price, best, free_shipping = best_offer(price, promotions, at)
    return Offer(price, unit_price, best.promotion_id if best else None, free_shipping)


def covers(promotion: dict[str, Any], product_id: str, provider_id: str, now: datetime) -> bool:
    """The one promotion filter: a stored promotion of the product's provider, for the whole
    provider or naming the product, that has not ended (running now or starting later)."""
    if promotion["provider_id"] != provider_id or promotion["ends_at"] <= now:
        return False
    return promotion["scope"] == "provider" or product_id in promotion["product_ids"]


def is_running(promotion: dict[str, Any], now: datetime) -> bool:
    return bool(promotion["starts_at"] <= now < promotion["ends_at"])


def by_provider(promotions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Promotions grouped by provider, so matching a product scans only its provider's."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for promotion in promotions:
        grouped.setdefault(promotion["provider_id"], []).append(promotion)
    return grouped


def terms_of(promotion: dict[str, Any]) -> PromotionTerms:
    return PromotionTerms(
        promotion_id=promotion["_id"],
        name=promotion["name"],
        discount_kind=promotion["discount_kind"],
        discount_value=promotion["discount_value"],
        free_shipping=promotion["free_shipping"],
        starts_at=promotion["starts_at"],
        ends_at=promotion["ends_at"],
    )


def terms_for(
    promotions: Iterable[dict[str, Any]], product_id: str, provider_id: str, now: datetime
) -> list[PromotionTerms]:
    """The terms of the stored promotions that cover a product (see `covers`)."""
    return [terms_of(p) for p in promotions if covers(p, product_id, provider_id, now)]


def snapshot(product: Product, provider: Provider, promotions: list[PromotionTerms], at: datetime) -> ProductSnapshot:
    return ProductSnapshot(
        product_id=product.id,
        provider_id=provider.id,
        provider_name=provider.name,
        provider_pkp=provider.pkp,
        provider_pemda_code=provider.pemda_code,
        name=product.name,
        category_id=product.category,
        unit=product.unit,
        price=product.price,
        het=product.het,
        min_order_qty=product.min_order_qty,
        regions=product.regions,
        status=product.status,
        orderable=is_orderable(product.status, provider.status),
        promotions=promotions,
        version=product.version,
        updated_at=product.updated_at,
        as_of=at,
    )


# -- reservation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestedLine:
    product_id: str
    quantity: int


def merge_lines(lines: Iterable[RequestedLine]) -> list[RequestedLine]:
    """One line per product (quantities added), in first-seen order."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return [RequestedLine(pid, qty) for pid, qty in totals.items()]


def check_line(
    line: RequestedLine,
    product: Product | None,
    provider: Provider | None,
    order_provider_id: str,
    already_held: bool,
) -> LineRejection | None:
    """Why a line cannot be reserved, or None. Stock is checked against the current level; the
    conditional decrement that follows is what really guards against overselling."""

    def reject(code: RejectionCode, message: str) -> LineRejection:
        return LineRejection(product_id=line.product_id, code=code, message=message)

    if product is None or product.provider_id != order_provider_id or provider is None:
        return reject("not_found", "no such product from this provider")
    if provider.status == "suspended":
        return reject("provider_suspended", f"provider {provider.name} is suspended")
    if provider.status != "verified":
        return reject("provider_not_verified", f"provider {provider.name} is not verified yet")
    if product.status != "active":
        return reject("inactive", "the product is no longer offered")
    if line.quantity < product.min_order_qty:
        return reject("below_min_qty", f"order at least {product.min_order_qty} {product.unit}")
    if not already_held and product.stock < line.quantity:
        return reject("out_of_stock", f"{product.stock} {product.unit} left, {line.quantity} requested")
    return None


# -- search tokenization ----------------------------------------------------------------------

_STOPWORDS = frozenset({"dan", "atau", "yang", "untuk", "dengan", "di", "ke", "dari", "the", "of", "and"})
_NON_WORD = re.compile(r"[^0-9a-z]+")
_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)")
_REDUPLICATION = re.compile(r"\b([a-z]+)-\1\b")


def tokenize(text: str) -> list[str]:
    """Lower-case, accents and punctuation stripped; `buku-buku` → `buku` (Indonesian plural by
    reduplication); `1kg` also yields `1` and `kg`. Stop words dropped; order kept, no repeats."""
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    folded = _REDUPLICATION.sub(r"\1", folded)
    tokens: list[str] = []
    seen: set[str] = set()
    for word in _NON_WORD.split(folded):
        if not word or word in _STOPWORDS:
            continue
        parts = [word, *_DIGIT_LETTER.split(word)] if _DIGIT_LETTER.search(word) else [word]
        for part in parts:
            if part and part not in seen:
                seen.add(part)
                tokens.append(part)
    return tokens
