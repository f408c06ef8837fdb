"""Pure rules of the notifications service: who hears about what, formatting, webhook signing,
retry timing and URL safety. No I/O and no clock: callers pass `now`, random draws and resolved
addresses in, so every rule is unit-tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from bejo_contracts import Envelope, parse_data
from bejo_contracts.common import WIB
from bejo_contracts.pemda import covers

Locale = Literal["id", "en"]
LOCALES: tuple[Locale, ...] = ("id", "en")
# The recipient's part in an event; templates word the message for it.
RecipientRole = Literal["pp", "ppk", "bendahara", "provider", "owner"]
Channel = Literal["inapp", "email"]

_MONTHS: dict[Locale, tuple[str, ...]] = {
    "id": (
        "Januari",
        "Februari",
        "Maret",
        "April",
        "Mei",
        "Juni",
        "Juli",
        "Agustus",
        "September",
        "Oktober",
        "November",
        "Desember",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


# -- formatting ----------------------------------------------------------------------------------


def format_rupiah(amount: int) -> str:
    """`2614000` → `Rp 2.614.000` (dots group thousands, as written in Indonesia; whole rupiah only)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amounts are integer rupiah, got {type(amount).__name__}")
    grouped = f"{abs(amount):,}".replace(",", ".")
    return f"-Rp {grouped}" if amount < 0 else f"Rp {grouped}"


def format_wib(moment: datetime, locale: Locale = "id") -> str:
    """An instant as Jakarta wall-clock time: `27 November 2026 14:05 WIB`."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    local = moment.astimezone(WIB)
    month = _MONTHS[locale][local.month - 1]
    return f"{local.day} {month} {local.year} {local.hour:02d}:{local.minute:02d} WIB"


# -- recipients ----------------------------------------------------------------------------------


def user_recipient(sub: str) -> str:
    return f"user:{sub}"


def satker_role_recipient(role: str, pemda: str, satker: str) -> str:
    """Everyone holding `role` in a satker, e.g. its bendahara. Satker codes are unique only within
    their pemda (every kabupaten has a `dinkes`), so the key names both."""
    return f"role:{role}@pemda:{pemda}@satker:{satker}"


def provider_recipient(provider_id: str) -> str:
    """Every penyedia user acting for the provider."""
    return f"provider:{provider_id}"


BUYER_ROLES = frozenset({"pp", "ppk", "bendahara"})


def recipients_of_user(sub: str, role: str, pemda: str, satker: str | None, provider_id: str | None) -> list[str]:
    """The recipient keys a verified token answers to: its own sub plus the audiences it belongs to."""
    keys = [user_recipient(sub)]
    if role in BUYER_ROLES and satker:
        keys.append(satker_role_recipient(role, pemda, satker))
    if role == "penyedia" and provider_id:
        keys.append(provider_recipient(provider_id))
    return keys


@dataclass(frozen=True)
class Recipient:
    key: str
    role: RecipientRole

    @property
    def is_user(self) -> bool:
        return self.key.startswith("user:")

    @property
    def sub(self) -> str | None:
        return self.key.removeprefix("user:") if self.is_user else None


@dataclass(frozen=True)
class Route:
    template: str
    audience: tuple[RecipientRole, ...]


_EVERYONE_ON_ORDER: tuple[RecipientRole, ...] = ("pp", "ppk", "provider")

# Event type → template and the parties told. Events not listed notify nobody (they may still feed
# webhooks). A new order is announced when its stock is reserved: only then can the PPK approve it.
ROUTES: dict[str, Route] = {
    "bejo.orders.order.placed.v1": Route("order_placed", ("pp",)),
    "bejo.orders.order.reserved.v1": Route("order_reserved", ("ppk", "provider")),
    "bejo.orders.order.approved.v1": Route("order_approved", ("pp", "provider")),
    "bejo.orders.order.rejected.v1": Route("order_rejected", _EVERYONE_ON_ORDER),
    "bejo.orders.order.accepted.v1": Route("order_accepted", ("pp",)),
    "bejo.orders.order.shipped.v1": Route("order_shipped", ("pp", "ppk")),
    "bejo.orders.order.received.v1": Route("order_received", ("pp", "provider")),
    "bejo.orders.order.paid.v1": Route("order_paid", ("provider",)),
    "bejo.orders.order.cancelled.v1": Route("order_cancelled", _EVERYONE_ON_ORDER),
    "bejo.orders.order.expired.v1": Route("order_expired", _EVERYONE_ON_ORDER),
    "bejo.orders.order.refunded.v1": Route("order_refunded", _EVERYONE_ON_ORDER),
    "bejo.payments.invoice.issued.v1": Route("invoice_issued", ("bendahara",)),
    "bejo.payments.va.issued.v1": Route("va_issued", ("bendahara",)),
    "bejo.payments.va.expired.v1": Route("va_expired", ("bendahara",)),
    "bejo.payments.payment.succeeded.v1": Route("payment_succeeded", ("bendahara",)),
    "bejo.payments.settlement.completed.v1": Route("settlement_completed", ("provider",)),
    "bejo.payments.refund.completed.v1": Route("refund_completed", ("bendahara",)),
    "bejo.catalog.provider.verified.v1": Route("provider_verified", ("provider",)),
    "bejo.catalog.provider.suspended.v1": Route("provider_suspended", ("provider",)),
    "bejo.notifications.webhook.disabled.v1": Route("webhook_disabled", ("owner",)),
}


def recipients_for(event_type: str, data: Mapping[str, Any]) -> list[Recipient]:
    """Who is told about an event, one entry per distinct recipient (the first role named wins)."""
    route = ROUTES.get(event_type)
    if route is None:
        return []
    found: dict[str, Recipient] = {}
    for role in route.audience:
        key = _recipient_key(role, data)
        if key is not None and key not in found:
            found[key] = Recipient(key, role)
    return list(found.values())


def _recipient_key(role: RecipientRole, data: Mapping[str, Any]) -> str | None:
    def field(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    if role == "pp" and (sub := field("pp_id")):
        return user_recipient(sub)
    if role == "ppk" and (sub := field("ppk_id")):
        return user_recipient(sub)
    if role == "owner" and (sub := field("owner_sub")):
        return user_recipient(sub)
    if role == "provider" and (provider_id := field("provider_id")):
        return provider_recipient(provider_id)
    if role == "bendahara" and (satker := field("satker")) and (pemda := field("pemda")):
        return satker_role_recipient("bendahara", pemda, satker)
    return None


def derived_key(*parts: str) -> str:
    """A stable, URL-safe id for a fact made of several parts (dedup keys)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def notification_id(event_id: str, recipient: str) -> str:
    return derived_key(event_id, recipient, "inapp")


def email_id(event_id: str, address: str) -> str:
    return derived_key(event_id, address.lower(), "email")


def delivery_id(event_id: str, webhook_id: str) -> str:
    return derived_key(event_id, webhook_id, "webhook")


def member_key(sub: str) -> str:
    """A field name standing for a user inside an audience document (subs may hold dots or `$`)."""
    return derived_key(sub)[:20]


# -- webhook subscriptions -----------------------------------------------------------------------

_WORD = r"(?:\*|#|[a-z0-9_]+)"
_PATTERN = re.compile(rf"^{_WORD}(?:\.{_WORD})*$")


def is_valid_pattern(pattern: str) -> bool:
    """AMQP topic syntax: dot-separated words; `*` is exactly one word, `#` zero or more."""
    return bool(_PATTERN.fullmatch(pattern))


def topic_matches(pattern: str, event_type: str) -> bool:
    """Dynamic programming over (pattern word, event word), not backtracking: a pattern such as
    `#.#.#.…` costs len(pattern) x len(event) steps, never exponential time or deep recursion."""
    parts, words = pattern.split("."), event_type.split(".")
    # matched[j]: the pattern words so far match the first j event words
    matched = [True] + [False] * len(words)
    for part in parts:
        if part == "#":
            for j in range(1, len(words) + 1):
                matched[j] = matched[j] or matched[j - 1]
        else:
            matched = [False] + [matched[j] and part in ("*", words[j]) for j in range(len(words))]
    return matched[len(words)]


def matches_any(patterns: Iterable[str], event_type: str) -> bool:
    return any(topic_matches(p, event_type) for p in patterns)


def event_provider_id(data: Mapping[str, Any]) -> str | None:
    """The provider an event is about, where it names one (products carry it inside the snapshot)."""
    provider_id = data.get("provider_id")
    if provider_id is None and isinstance(product := data.get("product"), Mapping):
        provider_id = product.get("provider_id")
    return provider_id if isinstance(provider_id, str) else None


@dataclass(frozen=True)
class EventScope:
    """Whose event it is: the pemda it belongs to and the provider it is about (None: none)."""

    pemda: str | None
    provider_id: str | None


NO_SCOPE = EventScope(None, None)


def event_scope(envelope: Envelope) -> EventScope:
    """The scope its contract gives the event. An unknown or malformed event has none, so it
    reaches no pemda- or provider-limited subscriber."""
    try:
        data = parse_data(envelope)
    except (KeyError, ValidationError):
        return NO_SCOPE
    return EventScope(data.pemda_scope(), event_provider_id(envelope.data))


def subscription_may_see(owner_role: str, owner_pemda: str, owner_provider_id: str | None, scope: EventScope) -> bool:
    """Penyedia get their own provider's events only; an admin gets the events of the pemdas they
    oversee, and never an event of no pemda."""
    if owner_role == "penyedia":
        return owner_provider_id is not None and scope.provider_id == owner_provider_id
    if owner_role == "admin":
        return scope.pemda is not None and covers(owner_pemda, scope.pemda)
    return False


# -- webhook deliveries --------------------------------------------------------------------------

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `timestamp.body` with the subscription's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped, and
    spread by `jitter` ∈ [0, 1) over the upper half so that failed receivers are not hit in lockstep."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a draw from [0, 1)")
    ceiling: float = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + ceiling / 2 * jitter


def is_retryable_status(status: int) -> bool:
    """Server errors, timeouts and throttling may pass; other answers will not change on retry."""
    return status >= 500 or status in (408, 429)


def should_disable(consecutive_failures: int, limit: int) -> bool:
    return consecutive_failures >= limit


# -- URL safety (SSRF) ---------------------------------------------------------------------------


class UnsafeUrl(ValueError):
    """The webhook URL may not be used; the message says why."""


@dataclass(frozen=True)
class WebhookTarget:
    scheme: str
    host: str
    port: int


def parse_webhook_url(url: str, environment: str) -> WebhookTarget:
    """Shape checks. In production only https; elsewhere http too (local receivers, tests)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    allowed = ("https",) if environment == "production" else ("http", "https")
    if parts.scheme not in allowed:
        raise UnsafeUrl(f"scheme must be {' or '.join(allowed)}")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the URL are not accepted; use the signing secret")
    if parts.fragment:
        raise UnsafeUrl("a fragment is meaningless in a webhook URL")
    return WebhookTarget(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def is_public_address(address: str) -> bool:
    """Globally routable unicast only: no private, loopback, link-local, shared, reserved or multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_resolved_addresses(host: str, addresses: Iterable[str], environment: str) -> None:
    """In production every address the host resolves to must be public (one private answer is
    enough to reach the inside); elsewhere loopback and private receivers are fine."""
    found = list(addresses)
    if not found:
        raise UnsafeUrl(f"host {host!r} does not resolve")
    if environment != "production":
        return
    blocked = [a for a in found if not is_public_address(a)]
    if blocked:
        raise UnsafeUrl(f"host {host!r} resolves to non-public address {blocked[0]}")
