"""Coarse role checks by route and method, done at the front door. Pure.

The services verify the token again and enforce object-level rules (whose order, which pemda);
the gateway only turns away requests no role of the caller could ever make, and lets anonymous
clients reach the public surface. Anything not listed needs a valid token (secure by default).

Patterns match whole segments: `{id}` is exactly one segment, a trailing `**` is zero or more.
The first rule that matches wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bejo_kit.auth import ROLES, Principal
from bejo_kit.errors import Forbidden, Unauthorized


class Access(Enum):
    PUBLIC = "public"  # no token needed; a token that is sent is still verified
    AUTHENTICATED = "authenticated"  # any valid token, any role
    ROLES = "roles"  # a valid token whose role is one of `roles`


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    pattern: str
    access: Access
    roles: tuple[str, ...] = ()
    # A bank's SNAP call: its Authorization carries a SNAP B2B token, not ours, so the gateway does
    # not read it; payments authenticates the call (token and signature).
    snap_partner: bool = False

    def __post_init__(self) -> None:
        unknown = [r for r in self.roles if r not in ROLES]
        if unknown:
            raise ValueError(f"rule {self.pattern}: unknown roles {unknown}")
        if (self.access is Access.ROLES) != bool(self.roles):
            raise ValueError(f"rule {self.pattern}: roles go with Access.ROLES only")

    @property
    def segments(self) -> tuple[str, ...]:
        return _split(self.pattern)


def _rule(methods: str, pattern: str, *roles: str, public: bool = False, snap_partner: bool = False) -> Rule:
    access = Access.PUBLIC if public or snap_partner else Access.ROLES if roles else Access.AUTHENTICATED
    return Rule(frozenset(methods.split()), pattern, access, roles, snap_partner)


READ = "GET HEAD"
ANY = "GET HEAD POST PUT PATCH DELETE OPTIONS"

# Written from the service specs (issues 3-6). Keep it coarse: a role listed here may still be
# refused by the service for a particular object.
RULES: tuple[Rule, ...] = (
    # catalog: browsing, search, the national e-catalog feed and the transparency figures are public
    _rule(READ, "/api/v1/categories/**", public=True),
    _rule(READ, "/api/v1/products/**", public=True),
    _rule(READ, "/api/v1/providers/**", public=True),
    _rule(READ, "/api/v1/promotions/**", public=True),
    _rule(READ, "/api/v1/catalog/feed", public=True),
    _rule(READ, "/api/v1/catalog/stats", public=True),
    _rule("POST", "/api/v1/providers", "penyedia", "admin"),
    _rule("POST", "/api/v1/providers/{id}/verify", "admin"),
    _rule("POST", "/api/v1/providers/{id}/suspend", "admin"),
    _rule("POST", "/api/v1/products", "penyedia"),
    _rule("PATCH PUT DELETE", "/api/v1/products/{id}", "penyedia"),
    _rule("POST", "/api/v1/promotions", "penyedia"),
    # orders: placing by the PP, approval and BAST by the PPK, fulfilment by the penyedia
    _rule(READ, "/api/v1/orders/stats", public=True),
    _rule(READ, "/api/v1/ocds/**", public=True),
    # red-flag indicators: for oversight only (the service scopes them to the caller's pemda)
    _rule(READ, "/api/v1/redflags/**", "admin", "auditor"),
    _rule("POST", "/api/v1/orders", "pp"),
    _rule("POST", "/api/v1/orders/{id}/approve", "ppk"),
    _rule("POST", "/api/v1/orders/{id}/reject", "ppk"),
    _rule("POST", "/api/v1/orders/{id}/receive", "ppk"),
    _rule("POST", "/api/v1/orders/{id}/accept", "penyedia"),
    _rule("POST", "/api/v1/orders/{id}/ship", "penyedia"),
    _rule("POST", "/api/v1/orders/{id}/cancel", "pp", "ppk", "penyedia", "admin"),
    _rule(READ, "/api/v1/orders/**"),
    # payments: the bank callback carries a SNAP signature instead of a token (payments verifies it)
    _rule("POST", "/api/v1/payments/callbacks/snap", snap_partner=True),
    _rule("POST", "/v1.0/access-token/b2b", snap_partner=True),
    _rule("POST", "/api/v1/payments/{id}/va", "bendahara"),
    _rule("POST", "/api/v1/payments/{id}/charge", "bendahara"),
    _rule("POST", "/api/v1/payments/{id}/refund", "admin"),
    _rule(READ, "/api/v1/payments/**"),
    # notifications: everyone has an inbox; webhooks are for admins and providers' systems
    _rule(ANY, "/api/v1/notifications/**"),
    _rule(ANY, "/api/v1/webhooks/**", "admin", "penyedia"),
)
# Whatever no rule lists: a token is required, the service decides the rest.
DEFAULT_RULE = Rule(frozenset(ANY.split()), "/**", Access.AUTHENTICATED)


def _split(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


def _matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if pattern and pattern[-1] == "**":
        head = pattern[:-1]
        return len(path) >= len(head) and all(p.startswith("{") or p == s for p, s in zip(head, path, strict=False))
    return len(pattern) == len(path) and all(p.startswith("{") or p == s for p, s in zip(pattern, path, strict=True))


class AccessTable:
    """The rules, indexed by their first segments so a request checks only a handful."""

    def __init__(self, rules: tuple[Rule, ...] = RULES, default: Rule = DEFAULT_RULE) -> None:
        self.default = default
        self._by_area: dict[str, list[tuple[Rule, tuple[str, ...]]]] = {}
        for rule in rules:
            segments = rule.segments
            self._by_area.setdefault(_area(segments), []).append((rule, segments))

    def rule_for(self, method: str, path: str) -> Rule:
        segments = _split(path)
        for rule, pattern in self._by_area.get(_area(segments), ()):
            if method in rule.methods and _matches(pattern, segments):
                return rule
        return self.default


def _area(segments: tuple[str, ...]) -> str:
    return "/".join(segments[:3])


def authorize(rule: Rule, principal: Principal | None) -> None:
    """Raise 401 when the rule needs a token and there is none, 403 when the role is not among the rule's."""
    if rule.access is Access.PUBLIC:
        return
    if principal is None:
        raise Unauthorized("a bearer token is required", code="missing_token")
    if rule.access is Access.ROLES and principal.role not in rule.roles:
        raise Forbidden(
            f"role {principal.role!r} may not do this; requires one of: {', '.join(rule.roles)}",
            code="role_required",
            required_roles=list(rule.roles),
        )
