"""The whole platform (every service and the gateway, on the real RabbitMQ and Mongo-wire server)
on an event loop of its own thread, so that blocking clients such as schemathesis (requests) can
call it; and a small world of two pemda, three satker, three providers and their orders, built
through the public API only.

The platform is `support.platform.start_platform`; each test module starts its own (own databases
and bus namespace), so the fuzzer's writes can never reach the world the BOLA matrix reads.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import support
from aiohttp import web
from support.platform import Platform, start_platform

T = TypeVar("T")

# Two pemda in two provinces: Kab. Sidoarjo (Jawa Timur) and Kab. Tangerang (Banten).
PEMDA_A = "35.15"
PEMDA_B = "36.03"
PROVINCE_A = "35"
# Satker codes: two in pemda A, and in pemda B one spelled like A's first (satker codes are only
# unique within their pemda, so a check on the satker alone would let B read A's business).
SATKER_A1 = "dinkes"
SATKER_A2 = "dispendik"
SATKER_B1 = "dinkes"


class LivePlatform:
    """A started platform plus the loop it runs on; `call`/`ok` block the calling thread."""

    def __init__(self, platform: Platform, loop: asyncio.AbstractEventLoop) -> None:
        self.platform = platform
        self.loop = loop
        self.gateway = platform.gateway

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        status, body = self.run(self.platform.call(method, path, token, json, headers))
        return int(status), body

    def ok(self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any) -> Any:
        return self.run(self.platform.ok(method, path, token, json, **kw))


@contextmanager
def live_platform(amqp_url: str, mongodb_url: str, mail_dir: Path) -> Iterator[LivePlatform]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="platform-loop", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    unique = "sec" + uuid.uuid4().hex[:8]
    starter = start_platform(amqp_url, mongodb_url, unique, mail_dir)
    try:
        platform = run(starter.__aenter__())
        try:
            yield LivePlatform(platform, loop)
        finally:
            run(starter.__aexit__(None, None, None))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


# -- the cast ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One principal: a name for test ids and its token (None: anonymous)."""

    key: str
    role: str
    pemda: str | None
    satker: str | None = None
    provider_id: str | None = None
    token: str | None = None

    def __str__(self) -> str:
        return self.key


def person(key: str, role: str, pemda: str, *, satker: str | None = None, provider_id: str | None = None) -> Person:
    sub = f"{key}"
    jwt = support.token(role, sub, pemda=pemda, satker=satker, provider_id=provider_id, name=key)
    return Person(key, role, pemda, satker, provider_id, jwt)


def cast_for(unique: str) -> dict[str, Person]:
    """Everyone the matrix asks, by key. Provider ids carry `unique` (they are global ids)."""
    p1, p2, p3 = f"p1-{unique}", f"p2-{unique}", f"p3-{unique}"
    people = [
        Person("anonymous", "anonymous", None),
        person("pp_a1", "pp", PEMDA_A, satker=SATKER_A1),
        person("pp_a1_other", "pp", PEMDA_A, satker=SATKER_A1),
        person("ppk_a1", "ppk", PEMDA_A, satker=SATKER_A1),
        person("ppk_a1_other", "ppk", PEMDA_A, satker=SATKER_A1),
        person("bdh_a1", "bendahara", PEMDA_A, satker=SATKER_A1),
        person("pp_a2", "pp", PEMDA_A, satker=SATKER_A2),
        person("ppk_a2", "ppk", PEMDA_A, satker=SATKER_A2),
        person("bdh_a2", "bendahara", PEMDA_A, satker=SATKER_A2),
        person("pp_b1", "pp", PEMDA_B, satker=SATKER_B1),
        person("ppk_b1", "ppk", PEMDA_B, satker=SATKER_B1),
        person("bdh_b1", "bendahara", PEMDA_B, satker=SATKER_B1),
        person("seller_p1", "penyedia", PEMDA_A, provider_id=p1),
        person("seller_p2", "penyedia", PEMDA_B, provider_id=p2),
        person("seller_p3", "penyedia", PEMDA_A, provider_id=p3),
        person("admin_a", "admin", PEMDA_A),
        person("admin_prov_a", "admin", PROVINCE_A),
        person("admin_b", "admin", PEMDA_B),
        person("auditor_a", "auditor", PEMDA_A),
        person("auditor_prov_a", "auditor", PROVINCE_A),
        person("auditor_b", "auditor", PEMDA_B),
    ]
    return {p.key: p for p in people}


# -- the world --------------------------------------------------------------------------------------


@dataclass
class World:
    """Ids of what was built, by name: providers p1 (A, verified), p2 (B, verified), p3 (A, pending);
    products x1 (p1), x2 (p2), x1_off (p1, deactivated); orders o1 (A1 from p1, received, invoiced),
    o2 (A2 from p2, reserved), o3 (B1 from p2, received, invoiced), o4 (A1 from p1, reserved);
    payments pay_o1, pay_o3; webhooks wh_admin_a, wh_p1, wh_admin_b, wh_p2; notification n_ppk_a1
    (order o1 awaiting ppk_a1's approval) and n_bdh_a1 (invoice of o1 to satker A1's bendahara)."""

    people: dict[str, Person]
    ids: dict[str, str] = field(default_factory=dict)
    # Bodies the webhook receivers got, by the subscription's name.
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def token(self, key: str) -> str | None:
        return self.people[key].token


def _provider_body(name: str, pemda: str) -> dict[str, Any]:
    return {
        "name": name,
        "legal_entity": "CV",
        "nib": "1234567890123",
        "npwp": "01.234.567.8-901.000",
        "pkp": True,
        "pemda_code": pemda,
        "address": "Jl. Raya Porong 1",
        "email": "cv@example.id",
        "phone": "+62315550100",
    }


def _order_body(product_id: str, ppk: str) -> dict[str, Any]:
    return {
        "lines": [{"product_id": product_id, "quantity": 1}],
        "delivery_address": "Jl. Pahlawan 1",
        "rup_code": "RUP-2026-0001",
        "ppk_id": ppk,
        "payment_method": "va",
    }


async def _receiver(received: list[dict[str, Any]]) -> web.Application:
    app = web.Application()

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app.router.add_post("/hook", take)
    return app


async def build_world(platform: Platform, unique: str, receivers: list[Any]) -> World:
    """Everything through the gateway, as clients would; `receivers` collects the webhook receivers'
    servers (context managers) for the caller to close."""
    world = World(cast_for(unique))
    tok = world.token
    ids = world.ids

    async def ok(method: str, path: str, who: str | None, body: Any = None, **kw: Any) -> Any:
        return await platform.ok(method, path, tok(who) if who else None, body, **kw)

    # Webhooks first, so that they hear everything that follows.
    for name, who, patterns in (
        ("wh_admin_a", "admin_a", ["bejo.#"]),
        ("wh_admin_b", "admin_b", ["bejo.#"]),
        ("wh_p1", "seller_p1", ["bejo.#"]),
        ("wh_p2", "seller_p2", ["bejo.#"]),
    ):
        world.received[name] = []
        server = support.serve(await _receiver(world.received[name]))
        base = await server.__aenter__()
        receivers.append(server)
        body = {"url": f"{base}/hook", "secret": "s" * 32, "event_types": patterns}
        ids[name] = (await ok("POST", "/api/v1/webhooks", who, body))["id"]

    # Providers: p1 in A verified by A's admin, p2 in B by B's, p3 in A left pending.
    for key, seller, pemda, admin in (
        ("p1", "seller_p1", PEMDA_A, "admin_a"),
        ("p2", "seller_p2", PEMDA_B, "admin_b"),
        ("p3", "seller_p3", PEMDA_A, None),
    ):
        provider_id = world.people[seller].provider_id
        assert provider_id is not None
        ids[key] = provider_id
        await ok("POST", "/api/v1/providers", seller, _provider_body(f"CV {key.upper()} {unique}", pemda))
        if admin:
            await ok("POST", f"/api/v1/providers/{provider_id}/verify", admin, {"reason": "dokumen lengkap"})

    categories = (await ok("GET", "/api/v1/categories", None))["items"]
    category = next(c["id"] for c in categories if c["parent_id"])

    def product(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "description": "uji keamanan",
            "category": category,
            "unit": "pak",
            "price": 50_000,
            "het": 60_000,
            "stock": 100,
            "regions": [PEMDA_A, PEMDA_B],
        }

    ids["x1"] = (await ok("POST", "/api/v1/products", "seller_p1", product("Kopi Dampit")))["id"]
    ids["x2"] = (await ok("POST", "/api/v1/products", "seller_p2", product("Teh Tangerang")))["id"]
    ids["x1_off"] = (await ok("POST", "/api/v1/products", "seller_p1", product("Gula Aren")))["id"]
    await ok("DELETE", f"/api/v1/products/{ids['x1_off']}", "seller_p1")

    # The PPK registers an e-mail address so notices reach them; the bendahara too.
    for who in ("ppk_a1", "bdh_a1"):
        await ok("PUT", "/api/v1/notifications/contact", who, {"email": f"{who}@example.id"})

    async def place(pp: str, ppk: str, product_id: str) -> str:
        async def attempt() -> str | None:
            status, body = await platform.call(
                "POST",
                "/api/v1/orders",
                tok(pp),
                _order_body(product_id, ppk),
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            return str(body["orders"][0]["id"]) if status == 201 else None

        # The orders service learns of a product from catalog events: retry until it has.
        order_id: str = await support.wait_until(attempt, within=30, interval=0.3)
        return order_id

    ids["o1"] = await place("pp_a1", "ppk_a1", ids["x1"])
    ids["o2"] = await place("pp_a2", "ppk_a2", ids["x2"])
    ids["o3"] = await place("pp_b1", "ppk_b1", ids["x2"])
    ids["o4"] = await place("pp_a1", "ppk_a1", ids["x1"])

    async def status_is(order: str, who: str, wanted: str) -> bool:
        return bool((await ok("GET", f"/api/v1/orders/{ids[order]}", who))["status"] == wanted)

    for order, who in (("o1", "pp_a1"), ("o2", "pp_a2"), ("o3", "pp_b1"), ("o4", "pp_a1")):
        await support.wait_until(lambda o=order, w=who: status_is(o, w, "reserved"), within=30, interval=0.2)

    # o1 and o3 go through to an invoice: approve, accept, ship, receive.
    for order, ppk, seller in (("o1", "ppk_a1", "seller_p1"), ("o3", "ppk_b1", "seller_p2")):
        path = f"/api/v1/orders/{ids[order]}"
        await ok("POST", f"{path}/approve", ppk)
        await ok("POST", f"{path}/accept", seller)
        await ok("POST", f"{path}/ship", seller, {"tracking_note": "JNE 1"})
        await ok("POST", f"{path}/receive", ppk)

    async def payment(order: str, who: str) -> str | None:
        items = (await ok("GET", f"/api/v1/payments?order_id={ids[order]}", who))["items"]
        return str(items[0]["id"]) if items and items[0].get("va_number") else None

    ids["pay_o1"] = await support.wait_until(lambda: payment("o1", "bdh_a1"), within=30, interval=0.2)
    ids["pay_o3"] = await support.wait_until(lambda: payment("o3", "bdh_b1"), within=30, interval=0.2)

    async def notice(who: str, kind_part: str, subject: str) -> str | None:
        items = (await ok("GET", "/api/v1/notifications?limit=100", who))["items"]
        found = [n["id"] for n in items if kind_part in n["kind"] and n.get("subject_id") == subject]
        return str(found[0]) if found else None

    ids["n_ppk_a1"] = await support.wait_until(lambda: notice("ppk_a1", "reserved", ids["o1"]), within=30)

    async def finished_delivery(hook: str, who: str) -> str | None:
        items = (await ok("GET", f"/api/v1/webhooks/{ids[hook]}/deliveries?limit=100", who))["items"]
        done = [d["id"] for d in items if d["status"] != "pending"]
        return str(done[0]) if done else None

    for hook, who in (
        ("wh_admin_a", "admin_a"),
        ("wh_admin_b", "admin_b"),
        ("wh_p1", "seller_p1"),
        ("wh_p2", "seller_p2"),
    ):
        ids[f"{hook}_delivery"] = await support.wait_until(lambda h=hook, w=who: finished_delivery(h, w), within=30)
    return world


async def notification_kinds(platform: Platform, token: str | None) -> list[dict[str, Any]]:
    page = await platform.ok("GET", "/api/v1/notifications?limit=100", token)
    return list(page["items"])
