"""The public dashboard at `/`, driven in headless Chromium (Debian's `chromium`, through Playwright):
the figures on screen are the public API's, in rupiah as Indonesians write them; English is one
click away; choosing a pemda asks the API for that pemda; a screenshot goes to docs/dashboard.png.

The catalog and orders services are stood in for by small servers that answer what the real ones
answered after a seeded history of 411 orders (recorded in dashboard_data.json by
scripts/record_dashboard_data.py); the gateway in front of them is the real one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bejo_gateway.app import build
from bejo_gateway.settings import GatewaySettings

HERE = Path(__file__).resolve().parent
DATA = orjson.loads((HERE / "dashboard_data.json").read_bytes())
SCREENSHOT = HERE.parents[1] / "docs" / "dashboard.png"


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: run `make chromium` (Debian's package, installed with apt)")
    return found


def rupiah(value: int) -> str:
    """Rp 2.614.000"""
    return "Rp " + f"{value:,}".replace(",", ".")


def rupiah_short(value: int, lang: str = "id") -> str:
    """Rp 35,8 M (miliar), Rp 2,6 jt (juta), Rp 950 rb (ribu); in English Rp 35.8 bn, Rp 2.6 m."""
    units = ("T", "M", "jt", "rb") if lang == "id" else ("tn", "bn", "m", "k")
    for size, unit in zip((10**12, 10**9, 10**6, 10**3), units, strict=True):
        if value >= size:
            n = value / size
            text = (f"{n:.1f}" if n < 100 else f"{n:.0f}").removesuffix(".0")
            return f"Rp {text.replace('.', ',') if lang == 'id' else text} {unit}"
    return rupiah(value)


def number(value: int) -> str:
    return f"{value:,}".replace(",", ".")


@dataclass
class Upstream:
    answers: dict[str, Any]
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, dict(request.query)))
        answer = self.answers.get(request.path)
        if answer is None:
            return web.json_response({"title": "Not Found", "status": 404}, status=404)
        return web.json_response(answer)


@dataclass
class Stack:
    gateway: str
    catalog: Upstream
    orders: Upstream


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    catalog = Upstream({"/api/v1/catalog/stats": DATA["catalog_stats"], "/api/v1/categories": DATA["categories"]})
    orders = Upstream({"/api/v1/orders/stats": DATA["orders_stats"], "/api/v1/ocds/releases": DATA["ocds"]})
    runners = []
    urls = []
    for upstream in (catalog, orders):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", upstream.handle)
        runner, url = await serve(app)
        runners.append(runner)
        urls.append(url)
    settings = GatewaySettings(catalog_urls=[urls[0]], orders_urls=[urls[1]], access_log=False, rate_limit_burst=1000)
    runner, gateway = await serve(build(settings))
    runners.append(runner)
    yield Stack(gateway, catalog, orders)
    for runner in reversed(runners):
        await runner.cleanup()


async def test_the_page_and_its_files_are_served_without_login(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.gateway + "/") as answer:
            assert answer.status == 200 and answer.content_type == "text/html"
            page = await answer.text()
            assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
            etag = answer.headers["ETag"]
        assert (
            "/static/vendor/uplot/uPlot.iife.min.js" in page
            and "http" not in page.split("<body", 1)[1].split("/api/v1/ocds")[0]
        )
        async with http.get(stack.gateway + "/", headers={"If-None-Match": etag}) as answer:
            assert answer.status == 304
        files = [("/static/dashboard.js", "text/javascript"), ("/static/vendor/uplot/uPlot.min.css", "text/css"),
                 ("/static/vendor/uplot/LICENSE", "application/octet-stream")]  # fmt: skip
        for path, kind in files:
            async with http.get(stack.gateway + path) as answer:
                assert answer.status == 200 and answer.content_type == kind, path
        for path in ("/static/nothing.js", "/static/../app.py", "/static/%2e%2e/app.py"):
            async with http.get(stack.gateway + path) as answer:
                assert answer.status == 404, path
                assert (await answer.json())["code"] == "not_found"


@pytest.mark.e2e
async def test_the_dashboard_shows_the_apis_figures_in_chromium(stack: Stack) -> None:
    from playwright.async_api import async_playwright

    async with aiohttp.ClientSession() as http, http.get(stack.gateway + "/api/v1/stats") as answer:
        stats = await answer.json()
    kab_kota = [r for r in stats["by_pemda"] if r["pemda"].count(".") == 1]

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900}, locale="id-ID")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(stack.gateway + "/")
            await page.wait_for_selector("body[data-loaded=true]")

            async def shown(figure: str) -> tuple[str, str]:
                node = page.locator(f"[data-figure={figure}]")
                return (await node.get_attribute("data-value") or "", (await node.inner_text()).strip())

            assert await shown("transaction_value") == (
                str(stats["transaction_value"]),
                rupiah_short(stats["transaction_value"]),
            )
            for name in ("orders", "providers", "products", "participating_pemda"):
                assert await shown(name) == (str(stats[name]), number(stats[name])), name
            assert await page.locator("#fig-value").get_attribute("title") == rupiah(stats["transaction_value"])

            # the 24 regencies/cities, ranked by value, with the API's figures
            ranked = sorted(kab_kota, key=lambda r: (-r["transaction_value"], r["pemda"]))
            rows = page.locator("#ranking tr")
            assert await rows.count() == len(ranked)
            first = rows.nth(0).locator("td")
            assert await rows.nth(0).get_attribute("data-pemda") == ranked[0]["pemda"]
            assert (await first.nth(2).inner_text(), await first.nth(3).inner_text()) == (
                rupiah(ranked[0]["transaction_value"]),
                number(ranked[0]["orders"]),
            )
            # categories and providers, largest first; the chart drew one bar per month
            assert (
                await page.locator("#categories li").first.get_attribute("data-category")
                == stats["by_category"][0]["category"]
            )
            assert await page.locator("#categories li").first.inner_text() != ""
            assert (await page.locator("#providers tr td").first.inner_text()) == stats["top_providers"][0][
                "provider_name"
            ]
            assert await page.locator("#chart canvas").count() == 1
            # recent completed orders name the buyer satker and the provider, and link to OCDS
            recent = page.locator("#recent tr")
            assert await recent.count() > 0
            ocid = await recent.nth(0).get_attribute("data-ocid")
            release = next(
                r for r in DATA["ocds"]["releases"] if r["ocid"] == ocid and "implementation" in r["contracts"][0]
            )
            cells = recent.nth(0).locator("td")
            assert await cells.nth(1).inner_text() == release["buyer"]["name"]
            assert await cells.nth(2).inner_text() == release["awards"][0]["suppliers"][0]["name"]
            assert await page.locator("#ocds").get_attribute("href") == "/api/v1/ocds/releases"
            await page.screenshot(path=str(SCREENSHOT), full_page=True)

            # English, one click away
            await page.click("#lang")
            assert await page.locator("html").get_attribute("lang") == "en"
            english = rupiah_short(stats["transaction_value"], "en")
            assert (await page.locator("[data-figure=transaction_value]").inner_text()) == english
            assert await page.locator("[data-t=orders]").first.inner_text() == "Orders"

            # a pemda and a period: the page asks the API for exactly that
            await page.select_option("#pemda", "35.15")
            await page.wait_for_function("() => location.search.includes('pemda=35.15')")
            await page.fill("#from", "2025-12-01")
            await page.dispatch_event("#from", "change")
            await page.wait_for_function("() => location.search.includes('from=2025-12-01')")
            await page.wait_for_selector("body[data-loaded=true]")
            assert ("/api/v1/orders/stats", {"pemda": "35.15", "from": "2025-12-01"}) in stack.orders.seen
            assert ("/api/v1/catalog/stats", {"pemda": "35.15"}) in stack.catalog.seen
            assert await page.locator("#ocds").get_attribute("href") == "/api/v1/ocds/releases?pemda=35.15"
            assert errors == []
        finally:
            await browser.close()


async def test_a_phone_sees_the_figures_without_sideways_scrolling(stack: Stack) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 375, "height": 740}, is_mobile=True)
            await page.goto(stack.gateway + "/?lang=en")
            await page.wait_for_selector("body[data-loaded=true]")
            width = await page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 375
            assert await page.locator("[data-t=value]").first.inner_text() == "Transaction value"
        finally:
            await browser.close()


async def test_the_figures_are_computed_once_per_30_seconds_and_failures_are_not_kept(stack: Stack) -> None:
    def asked() -> int:
        return sum(
            1 for path, query in stack.orders.seen if path == "/api/v1/orders/stats" and query == {"pemda": "35.78"}
        )

    async with aiohttp.ClientSession() as http:
        answers = stack.orders.answers
        figures = answers.pop("/api/v1/orders/stats")  # the orders service answers 404: a 502 here
        async with http.get(stack.gateway + "/api/v1/stats?pemda=35.78") as answer:
            assert answer.status == 502
        answers["/api/v1/orders/stats"] = figures
        for _ in range(3):
            async with http.get(stack.gateway + "/api/v1/stats?pemda=35.78") as answer:
                assert answer.status == 200
    assert asked() == 2  # once for the failure (not kept), once for the three answers
