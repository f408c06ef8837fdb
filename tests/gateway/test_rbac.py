"""The coarse role table written from the service specs (pure)."""

from __future__ import annotations

import pytest

from bejo_gateway.rbac import Access, AccessTable, Rule, authorize
from bejo_kit.auth import Principal
from bejo_kit.errors import Forbidden, Unauthorized

TABLE = AccessTable()


def who(role: str) -> Principal:
    return Principal(sub=f"u-{role}", name=None, role=role, pemda="35.15", satker="s1", provider_id="p1")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/products"),
        ("GET", "/api/v1/products/p-1"),
        ("HEAD", "/api/v1/products/p-1"),
        ("GET", "/api/v1/categories"),
        ("GET", "/api/v1/providers"),
        ("GET", "/api/v1/providers/pv-1"),
        ("GET", "/api/v1/promotions"),
        ("GET", "/api/v1/catalog/feed"),
        ("GET", "/api/v1/catalog/stats"),
        ("GET", "/api/v1/orders/stats"),
        ("GET", "/api/v1/ocds/releases/o-1"),
        ("POST", "/api/v1/payments/callbacks/snap"),
    ],
)
def test_public_surface_needs_no_token(method: str, path: str) -> None:
    rule = TABLE.rule_for(method, path)
    assert rule.access is Access.PUBLIC
    authorize(rule, None)


@pytest.mark.parametrize(
    ("method", "path", "roles"),
    [
        ("POST", "/api/v1/orders", ("pp",)),
        ("POST", "/api/v1/orders/o-1/approve", ("ppk",)),
        ("POST", "/api/v1/orders/o-1/reject", ("ppk",)),
        ("POST", "/api/v1/orders/o-1/receive", ("ppk",)),
        ("POST", "/api/v1/orders/o-1/accept", ("penyedia",)),
        ("POST", "/api/v1/orders/o-1/ship", ("penyedia",)),
        ("POST", "/api/v1/orders/o-1/cancel", ("pp", "ppk", "penyedia", "admin")),
        ("POST", "/api/v1/providers", ("penyedia", "admin")),
        ("POST", "/api/v1/providers/pv-1/verify", ("admin",)),
        ("POST", "/api/v1/providers/pv-1/suspend", ("admin",)),
        ("POST", "/api/v1/products", ("penyedia",)),
        ("PATCH", "/api/v1/products/p-1", ("penyedia",)),
        ("DELETE", "/api/v1/products/p-1", ("penyedia",)),
        ("POST", "/api/v1/promotions", ("penyedia",)),
        ("POST", "/api/v1/payments/pay-1/va", ("bendahara",)),
        ("POST", "/api/v1/payments/pay-1/charge", ("bendahara",)),
        ("POST", "/api/v1/payments/pay-1/refund", ("admin",)),
        ("POST", "/api/v1/webhooks", ("admin", "penyedia")),
        ("DELETE", "/api/v1/webhooks/w-1", ("admin", "penyedia")),
    ],
)
def test_role_rules(method: str, path: str, roles: tuple[str, ...]) -> None:
    rule = TABLE.rule_for(method, path)
    assert rule.access is Access.ROLES
    assert rule.roles == roles
    for role in ("pp", "ppk", "bendahara", "penyedia", "admin", "auditor"):
        if role in roles:
            authorize(rule, who(role))
        else:
            with pytest.raises(Forbidden) as refused:
                authorize(rule, who(role))
            assert refused.value.extra["required_roles"] == list(roles)
            assert refused.value.code == "role_required"
    with pytest.raises(Unauthorized) as missing:
        authorize(rule, None)
    assert missing.value.code == "missing_token"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/o-1"),
        ("GET", "/api/v1/orders/o-1/history"),
        ("GET", "/api/v1/payments"),
        ("GET", "/api/v1/payments/pay-1/ledger"),
        ("GET", "/api/v1/notifications"),
        ("POST", "/api/v1/notifications/n-1/read"),
        # Not in the table: secure by default.
        ("PUT", "/api/v1/categories/c-1"),
        ("POST", "/api/v1/catalog/reindex"),
        ("POST", "/api/v1/sandbox/pay"),
    ],
)
def test_any_role_with_a_token(method: str, path: str) -> None:
    rule = TABLE.rule_for(method, path)
    assert rule.access is Access.AUTHENTICATED
    for role in ("pp", "auditor"):
        authorize(rule, who(role))
    with pytest.raises(Unauthorized):
        authorize(rule, None)


def test_more_specific_rules_win_over_the_wildcards_below_them() -> None:
    # /orders/stats is public although /orders/** needs a token; /products/{id} write needs penyedia.
    assert TABLE.rule_for("GET", "/api/v1/orders/stats").access is Access.PUBLIC
    assert TABLE.rule_for("GET", "/api/v1/orders/stats/extra").access is Access.AUTHENTICATED
    assert TABLE.rule_for("POST", "/api/v1/products/p-1/verify").access is Access.AUTHENTICATED


def test_rules_reject_unknown_roles() -> None:
    with pytest.raises(ValueError):
        Rule(frozenset({"GET"}), "/api/v1/x", Access.ROLES, ("superuser",))
    with pytest.raises(ValueError):
        Rule(frozenset({"GET"}), "/api/v1/x", Access.PUBLIC, ("admin",))
