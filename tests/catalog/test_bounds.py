"""Numbers past any real price or stock, control characters and dropped connections get a clear
answer (422 naming the field) or none at all, never a 500 or an "unhandled error" (real servers)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from catalog_harness import Catalog, penyedia, product_body
from support import wait_until

from bejo_contracts.common import MAX_QUANTITY, MAX_RUPIAH
from bejo_kit import http as kit_http

pytestmark = pytest.mark.integration

HUGE = [2**63, 2**63 - 1, 2**64, MAX_RUPIAH * 1000]


def fields_of(problem: dict[str, Any]) -> list[str]:
    return [str(e["field"]) for e in problem["errors"]]


async def test_huge_money_and_quantities_are_422_naming_the_field(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    for field in ("price", "stock", "min_order_qty", "het"):
        for value in HUGE:
            status, problem = await catalog.call(
                "POST", "/api/v1/products", json=product_body(**{field: value}), headers=penyedia("prv-a")
            )
            assert status == 422, (field, value, problem)
            assert fields_of(problem) == [field], (field, value, problem)
    product = await catalog.product("prv-a", price=MAX_RUPIAH, stock=MAX_QUANTITY, het=None)  # the bounds themselves
    for field in ("price", "stock", "min_order_qty", "het"):
        status, problem = await catalog.call(
            "PATCH", f"/api/v1/products/{product['id']}", json={field: 2**63}, headers=penyedia("prv-a")
        )
        assert status == 422 and fields_of(problem) == [field], (field, problem)
    status, problem = await catalog.call(
        "POST",
        "/api/v1/promotions",
        json={
            "name": "Harbolnas",
            "scope": "provider",
            "discount_kind": "fixed",
            "discount_value": 2**63,
            "starts_at": "2026-12-12T00:00:00+07:00",
            "ends_at": "2026-12-13T00:00:00+07:00",
        },
        headers=penyedia("prv-a"),
    )
    assert status == 422 and fields_of(problem) == ["discount_value"], problem
    for param in ("min_price", "max_price"):
        status, problem = await catalog.call("GET", "/api/v1/products", params={param: str(2**63)})
        assert status == 422 and fields_of(problem) == [param], problem
    status, problem = await catalog.call(
        "PATCH",
        f"/api/v1/products/{product['id']}",
        json={"stock": 1},
        headers={**penyedia("prv-a"), "If-Match": '"9' + "9" * 30 + '"'},
    )
    assert status == 422 and fields_of(problem) == ["If-Match"], problem
    # Nothing above changed the product.
    status, unchanged = await catalog.call("GET", f"/api/v1/products/{product['id']}", headers=penyedia("prv-a"))
    assert (unchanged["version"], unchanged["price"], unchanged["stock"]) == (1, MAX_RUPIAH, MAX_QUANTITY)


@pytest.mark.parametrize("text", ["Kopi\x00Dampit", "Kopi \x1b[2J", "Kopi\x7f", "Kopi\u0085"])
async def test_control_characters_in_text_are_422(catalog: Catalog, text: str) -> None:
    await catalog.provider("prv-a")
    status, problem = await catalog.call(
        "POST", "/api/v1/products", json=product_body(name=text), headers=penyedia("prv-a")
    )
    assert status == 422 and fields_of(problem) == ["name"], problem
    assert problem["errors"][0]["type"] == "control_character"
    status, problem = await catalog.call(
        "POST", "/api/v1/providers", json={"name": text, "colour": "x"}, headers=penyedia("prv-b")
    )
    assert status == 422 and "name" in fields_of(problem), problem
    status, problem = await catalog.call("GET", "/api/v1/products", params={"q": text})
    assert status == 422 and fields_of(problem) == ["q"], problem
    # Tabs and line breaks are text, in a description.
    status, _ = await catalog.call(
        "POST",
        "/api/v1/products",
        json=product_body(description="Baris 1\nBaris 2\tdan tab"),
        headers=penyedia("prv-a"),
    )
    assert status == 201


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def exception(self, event: str, **kw: Any) -> None:
        self.lines.append(("exception", event))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event))


async def test_a_connection_dropped_mid_body_is_not_an_unhandled_error(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(kit_http, "log", recorder)
    await catalog.provider("prv-a")
    address = urlsplit(catalog.api.base)
    token = penyedia("prv-a")["Authorization"]
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(
        b"POST /api/v1/products HTTP/1.1\r\nHost: catalog\r\nContent-Type: application/json\r\n"
        + f"Authorization: {token}\r\nContent-Length: 100000\r\n\r\n".encode()
        + b'{"name": "Kopi Robusta'
    )
    await writer.drain()
    writer.close()  # as the gateway does when the body passes its limit
    await writer.wait_closed()

    await wait_until(lambda: bool(recorder.lines))
    assert recorder.lines == [("info", "client closed the connection")]
    # The service carries on.
    assert (await catalog.call("GET", "/api/v1/products"))[0] == 200
