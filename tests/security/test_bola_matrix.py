"""Broken object-level authorisation, as a matrix: every principal of the cast (each role, in its
own or another satker, provider and pemda, and anonymous) against every object of the world (orders,
payments, products, providers, webhook subscriptions, notifications, public OCDS releases), reading
and changing through the gateway. What a principal may not see or change is refused (401 without a
token, 403 or 404 with one) and left unchanged; what it may is allowed.

The expectation is computed from the access rules below, written from docs/domain.md and the
services' docs, not from the code under test. A changing call that is allowed may find the object in
a state where the action makes no sense: a 409 naming the state proves it passed authorisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from security_harness import (
    PEMDA_A,
    PEMDA_B,
    SATKER_A1,
    SATKER_A2,
    SATKER_B1,
    LivePlatform,
    Person,
    World,
    build_world,
    cast_for,
    live_platform,
)

from bejo_contracts.pemda import covers

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CAST = cast_for("x")  # keys and claims only (provider ids get the run's suffix in the world)
PEOPLE = list(CAST)
BUYERS = ("pp", "ppk", "bendahara")
OVERSIGHT = ("admin", "auditor")
DENIED = {401, 403, 404}
# 409 codes that mean: authorised, but not in this object's current state.
STATE_CODES = {
    "illegal_transition",
    "already_verified",
    "already_suspended",
    "va_still_valid",
    "wrong_method",
    "not_payable",
    "delivery_pending",
    "concurrent_update",
}


@dataclass(frozen=True)
class Obj:
    """What the rules need to know of an object: where it belongs and who is named on it."""

    pemda: str
    satker: str | None = None
    provider: str | None = None  # key of the provider in the world ("p1")
    pp: str | None = None
    ppk: str | None = None
    owner: str | None = None  # the one principal an object belongs to (webhooks, notifications)
    public: bool = False  # verified providers, active products of verified providers


ORDERS = {
    "o1": Obj(PEMDA_A, SATKER_A1, "p1", pp="pp_a1", ppk="ppk_a1"),  # received, invoiced
    "o2": Obj(PEMDA_A, SATKER_A2, "p2", pp="pp_a2", ppk="ppk_a2"),  # reserved, never approved
    "o3": Obj(PEMDA_B, SATKER_B1, "p2", pp="pp_b1", ppk="ppk_b1"),  # received, invoiced
    "o4": Obj(PEMDA_A, SATKER_A1, "p1", pp="pp_a1", ppk="ppk_a1"),  # reserved; the matrix acts on it
}
PAYMENTS = {"pay_o1": ORDERS["o1"], "pay_o3": ORDERS["o3"]}
PRODUCTS = {
    "x1": Obj(PEMDA_A, provider="p1", public=True),
    "x2": Obj(PEMDA_B, provider="p2", public=True),
    "x1_off": Obj(PEMDA_A, provider="p1"),
}
PROVIDERS = {
    "p1": Obj(PEMDA_A, provider="p1", public=True),
    "p2": Obj(PEMDA_B, provider="p2", public=True),
    "p3": Obj(PEMDA_A, provider="p3"),  # pending
}
WEBHOOKS = {
    "wh_admin_a": Obj(PEMDA_A, owner="admin_a"),
    "wh_admin_b": Obj(PEMDA_B, owner="admin_b"),
    "wh_p1": Obj(PEMDA_A, owner="seller_p1"),
    "wh_p2": Obj(PEMDA_B, owner="seller_p2"),
}
NOTIFICATIONS = {"n_ppk_a1": Obj(PEMDA_A, SATKER_A1, owner="ppk_a1")}
PROVIDER_OF = {"seller_p1": "p1", "seller_p2": "p2", "seller_p3": "p3"}


def provider_key(who: Person) -> str | None:
    return PROVIDER_OF.get(who.key)


def oversees(who: Person, obj: Obj) -> bool:
    return who.role in OVERSIGHT and who.pemda is not None and covers(who.pemda, obj.pemda)


def sees_business(who: Person, obj: Obj) -> bool:
    """An order or its payment: the buyer satker (in its pemda), the provider, oversight above it."""
    if who.role in BUYERS:
        return bool(who.pemda == obj.pemda and who.satker == obj.satker)
    if who.role == "penyedia":
        return provider_key(who) == obj.provider
    return oversees(who, obj)


def sees_listing(who: Person, obj: Obj) -> bool:
    """A product or provider: public once verified/active, else its provider and oversight."""
    return obj.public or provider_key(who) == obj.provider or oversees(who, obj)


def sees(who: Person, obj: Obj) -> bool:
    return sees_business(who, obj) if obj.satker else sees_listing(who, obj)


ORDER_ACTIONS: dict[str, tuple[dict[str, Any] | None, Any]] = {
    "approve": (None, lambda who, o: who.key == o.ppk),
    "reject": ({"reason": "anggaran dialihkan"}, lambda who, o: who.key == o.ppk),
    "receive": (None, lambda who, o: who.key == o.ppk),
    "accept": (None, lambda who, o: provider_key(who) == o.provider),
    "ship": ({"tracking_note": "JNE 1"}, lambda who, o: provider_key(who) == o.provider),
    "cancel": (
        {"reason": "anggaran dialihkan"},
        lambda who, o: who.key in (o.pp, o.ppk) or provider_key(who) == o.provider,
    ),
}


@dataclass(frozen=True)
class Case:
    """One request of the matrix. `path` and `body` name world ids as `{key}`."""

    who: str
    method: str
    path: str
    allowed: bool
    body: dict[str, Any] | None = None
    owner_view: tuple[str, str] | None = None  # (who, path) whose answer a refused change must not alter

    @property
    def id(self) -> str:
        verb = "may" if self.allowed else "may-not"
        return f"{self.who}-{verb}-{self.method}-{self.path.removeprefix('/api/v1/')}"


def _auditor_of(obj: Obj) -> str:
    return "auditor_prov_a" if obj.pemda.startswith("35") else "auditor_b"


def cases() -> Iterator[Case]:
    for key in PEOPLE:
        who = CAST[key]
        # -- orders: reads and every transition
        for order, obj in ORDERS.items():
            visible = sees_business(who, obj)
            yield Case(key, "GET", f"/api/v1/orders/{{{order}}}", visible)
            yield Case(key, "GET", f"/api/v1/orders/{{{order}}}/history", visible)
        for order in ("o4", "o3"):
            obj = ORDERS[order]
            for action, (body, entitled) in ORDER_ACTIONS.items():
                allowed = sees_business(who, obj) and entitled(who, obj)
                view = (_auditor_of(obj), f"/api/v1/orders/{{{order}}}")
                yield Case(key, "POST", f"/api/v1/orders/{{{order}}}/{action}", allowed, body, view)
        # -- payments: reads and the treasurer's and admin's actions
        for payment, obj in PAYMENTS.items():
            visible = sees_business(who, obj)
            view = (_auditor_of(obj), f"/api/v1/payments/{{{payment}}}")
            yield Case(key, "GET", f"/api/v1/payments/{{{payment}}}", visible)
            yield Case(key, "GET", f"/api/v1/payments/{{{payment}}}/ledger", visible)
            treasurer = visible and who.role == "bendahara"
            yield Case(key, "POST", f"/api/v1/payments/{{{payment}}}/va", treasurer, None, view)
            charge = {"card_token": "tok_visa_ok"}
            yield Case(key, "POST", f"/api/v1/payments/{{{payment}}}/charge", treasurer, charge, view)
            admin = who.role == "admin" and oversees(who, obj)
            yield Case(key, "POST", f"/api/v1/payments/{{{payment}}}/refund", admin, {"reason": "uji"}, view)
        # -- products: reads, changes by their provider only
        for product, obj in PRODUCTS.items():
            yield Case(key, "GET", f"/api/v1/products/{{{product}}}", sees_listing(who, obj))
            owner = provider_key(who) == obj.provider
            view = (f"seller_{obj.provider}", f"/api/v1/products/{{{product}}}")
            yield Case(key, "PATCH", f"/api/v1/products/{{{product}}}", owner, {"stock": 100}, view)
            if product == "x1_off" or not owner:  # the owner deactivates only what is already off
                yield Case(key, "DELETE", f"/api/v1/products/{{{product}}}", owner, None, view)
        # -- providers: reads; verify/suspend by overseeing admins only
        for provider, obj in PROVIDERS.items():
            yield Case(key, "GET", f"/api/v1/providers/{{{provider}}}", sees_listing(who, obj))
            admin = who.role == "admin" and oversees(who, obj)
            view = (_auditor_of(obj), f"/api/v1/providers/{{{provider}}}")
            if provider != "p3" or not admin:  # p3 stays pending: nobody entitled verifies it here
                yield Case(key, "POST", f"/api/v1/providers/{{{provider}}}/verify", admin, {"reason": "uji"}, view)
            if not admin:  # an entitled suspension would take the provider out of the world
                yield Case(key, "POST", f"/api/v1/providers/{{{provider}}}/suspend", False, {"reason": "uji"}, view)
        # -- webhook subscriptions: their owner only (by subject), whatever the role or pemda
        for hook, obj in WEBHOOKS.items():
            mine = key == obj.owner
            view = (str(obj.owner), f"/api/v1/webhooks/{{{hook}}}")
            yield Case(key, "GET", f"/api/v1/webhooks/{{{hook}}}", mine)
            yield Case(key, "GET", f"/api/v1/webhooks/{{{hook}}}/deliveries", mine)
            delivery = f"/api/v1/webhooks/{{{hook}}}/deliveries/{{{hook}_delivery}}/redeliver"
            yield Case(key, "POST", delivery, mine, None, view)
            if not mine:
                yield Case(key, "DELETE", f"/api/v1/webhooks/{{{hook}}}", False, None, view)
        # -- notifications: their recipient only
        for note, obj in NOTIFICATIONS.items():
            yield Case(key, "POST", f"/api/v1/notifications/{{{note}}}/read", key == obj.owner)


CASES = list(cases())


def _params() -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CASES]


@pytest.fixture(scope="module")
def world(
    amqp_url: str, mongodb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LivePlatform, World]]:
    with live_platform(amqp_url, mongodb_url, tmp_path_factory.mktemp("mail")) as live:
        receivers: list[Any] = []
        try:
            built = live.run(build_world(live.platform, live.platform.unique, receivers))
            yield live, built
        finally:
            for server in receivers:
                live.run(server.__aexit__(None, None, None))


def _fill(text: str, world: World) -> str:
    return text.format(**world.ids)


@pytest.mark.parametrize("case", _params())
def test_object_access(world: tuple[LivePlatform, World], case: Case) -> None:
    live, built = world
    path = _fill(case.path, built)
    before = None
    if case.owner_view is not None and not case.allowed:
        viewer, view_path = case.owner_view
        before = live.ok("GET", _fill(view_path, built), built.token(viewer))
    status, body = live.call(case.method, path, built.token(case.who), case.body)
    if case.allowed:
        authorised_but_state = status == 409 and isinstance(body, dict) and body.get("code") in STATE_CODES
        assert 200 <= status < 300 or authorised_but_state, f"{case.who} {case.method} {path} -> {status}: {body}"
        return
    assert status in DENIED, f"{case.who} {case.method} {path} -> {status}: {body}"
    if case.who == "anonymous":  # no token: 401 on protected routes, 404 on public ones
        assert status in (401, 404), body
    if before is not None:
        viewer, view_path = case.owner_view  # type: ignore[misc]
        after = live.ok("GET", _fill(view_path, built), built.token(viewer))
        assert after == before, f"a refused {case.method} {path} by {case.who} changed the object"


# -- listings: what a principal gets never includes what it may not see ---------------------------------

LIST_QUERIES = [
    "",
    f"?pemda={PEMDA_A}",
    f"?pemda={PEMDA_B}",
    f"?satker={SATKER_A1}",
    "?provider_id={p1}",
    "?provider_id={p2}",
]


@pytest.mark.parametrize(
    "query", LIST_QUERIES, ids=["plain", "pemda-a", "pemda-b", "satker-a1", "provider-p1", "provider-p2"]
)
@pytest.mark.parametrize("key", [k for k in PEOPLE if CAST[k].role != "anonymous"])
def test_order_listing_is_scoped(world: tuple[LivePlatform, World], key: str, query: str) -> None:
    live, built = world
    who = CAST[key]
    status, page = live.call(
        "GET", "/api/v1/orders" + _fill(query, built) + ("&" if query else "?") + "limit=100", built.token(key)
    )
    assert status == 200, page
    listed = {order["id"] for order in page["items"]}
    leaked = {name for name, obj in ORDERS.items() if built.ids[name] in listed and not sees_business(who, obj)}
    assert not leaked, f"{key} listed orders it may not see: {sorted(leaked)}"
    if query == "":
        missing = {name for name, obj in ORDERS.items() if sees_business(who, obj) and built.ids[name] not in listed}
        assert not missing, f"{key} does not list its own orders: {sorted(missing)}"


@pytest.mark.parametrize(
    ("key", "payment"),
    [
        pytest.param(key, payment, id=f"{key}-{payment}")
        for key in PEOPLE
        if CAST[key].role != "anonymous"
        for payment in sorted(PAYMENTS)
    ],
)
def test_payment_lookup_by_order_is_scoped(world: tuple[LivePlatform, World], key: str, payment: str) -> None:
    live, built = world
    order_id = built.ids[payment.removeprefix("pay_")]
    status, page = live.call("GET", f"/api/v1/payments?order_id={order_id}", built.token(key))
    if CAST[key].role not in (*BUYERS, "penyedia", *OVERSIGHT):
        assert status in (403, 404), page
        return
    assert status == 200, page
    found = [p["id"] for p in page["items"]]
    assert found == ([built.ids[payment]] if sees_business(CAST[key], PAYMENTS[payment]) else []), found


@pytest.mark.parametrize("key", PEOPLE)
def test_provider_listing_hides_pending_and_tax_ids(world: tuple[LivePlatform, World], key: str) -> None:
    live, built = world
    who = CAST[key]
    page = live.ok("GET", "/api/v1/providers?limit=100", built.token(key))
    listed = {p["id"]: p for p in page["items"]}
    for name, obj in PROVIDERS.items():
        provider_id = built.ids[name]
        assert (provider_id in listed) == sees_listing(who, obj), f"{key} and provider {name}"
        if provider_id in listed:
            full = provider_key(who) == obj.provider or oversees(who, obj)
            assert (listed[provider_id].get("npwp") is not None) == full, f"{key} and the NPWP of {name}"


@pytest.mark.parametrize("key", PEOPLE)
def test_product_search_shows_no_inactive_product(world: tuple[LivePlatform, World], key: str) -> None:
    live, built = world
    page = live.ok("GET", f"/api/v1/products?provider_id={built.ids['p1']}&limit=100", built.token(key))
    found = {p["id"] for p in page["items"]}
    assert built.ids["x1"] in found and built.ids["x1_off"] not in found


@pytest.mark.parametrize("key", [k for k in PEOPLE if CAST[k].role in ("admin", "penyedia")])
def test_webhook_listing_is_the_callers_own(world: tuple[LivePlatform, World], key: str) -> None:
    live, built = world
    listed = {w["id"] for w in live.ok("GET", "/api/v1/webhooks", built.token(key))["items"]}
    others = {built.ids[name] for name, obj in WEBHOOKS.items() if obj.owner != key}
    assert not listed & others


@pytest.mark.parametrize("key", [k for k in PEOPLE if CAST[k].role in ("admin", "penyedia")])
def test_own_webhook_can_be_deleted(world: tuple[LivePlatform, World], key: str) -> None:
    live, built = world
    body = {"url": "http://127.0.0.1:9/hook", "secret": "s" * 32, "event_types": ["bejo.orders.#"]}
    hook = live.ok("POST", "/api/v1/webhooks", built.token(key), body)["id"]
    assert live.call("DELETE", f"/api/v1/webhooks/{hook}", built.token(key))[0] == 204
    assert live.call("GET", f"/api/v1/webhooks/{hook}", built.token(key))[0] == 404


def _subjects(world: World) -> dict[str, Obj]:
    """World ids that a notification or event can be about, with the object they belong to."""
    named: dict[str, Obj] = {}
    for name, obj in {**ORDERS, **PAYMENTS, **PROVIDERS, **PRODUCTS}.items():
        named[world.ids[name]] = obj
    return named


@pytest.mark.parametrize(
    "key",
    [pytest.param(key) for key in PEOPLE if CAST[key].role != "anonymous"],
)
def test_inbox_holds_only_what_the_reader_may_see(world: tuple[LivePlatform, World], key: str) -> None:
    live, built = world
    who = CAST[key]
    items = live.ok("GET", "/api/v1/notifications?limit=100", built.token(key))["items"]
    subjects = _subjects(built)
    leaked = [
        (n["kind"], n["subject_id"])
        for n in items
        if (obj := subjects.get(n.get("subject_id") or "")) is not None and not sees(who, obj)
    ]
    assert not leaked, f"{key} was notified about what it may not see: {leaked}"


@pytest.mark.parametrize("hook", sorted(WEBHOOKS))
def test_webhook_hears_only_what_its_owner_may_see(world: tuple[LivePlatform, World], hook: str) -> None:
    _, built = world
    owner = CAST[str(WEBHOOKS[hook].owner)]
    subjects = _subjects(built)
    leaked = sorted(
        {
            f"{event['type']} about {name}"
            for event in built.received[hook]
            for object_id, obj in subjects.items()
            if object_id in str(event["data"]) and not sees(owner, obj)
            for name in [next(n for n, i in built.ids.items() if i == object_id)]
        }
    )
    assert not leaked, f"{hook} ({owner.key}) received: {leaked}"


def test_ocds_publishes_approved_orders_of_the_pemda_only(world: tuple[LivePlatform, World]) -> None:
    live, built = world
    for pemda, published, unpublished in ((PEMDA_A, ["o1"], ["o2", "o3"]), (PEMDA_B, ["o3"], ["o1", "o2"])):
        package = live.ok("GET", f"/api/v1/ocds/releases?pemda={pemda}&limit=100")
        text = str(package["releases"])
        assert all(built.ids[o] in text for o in published), pemda
        assert not any(built.ids[o] in text for o in unpublished), pemda


def test_matrix_size() -> None:
    """The matrix covers each role against each object type, own and other satker, provider and pemda."""
    roles = {CAST[c.who].role for c in CASES}
    assert roles == {"anonymous", "pp", "ppk", "bendahara", "penyedia", "admin", "auditor"}
    print(f"\nBOLA matrix: {len(CASES)} object-access cases, {sum(c.allowed for c in CASES)} allowed")
