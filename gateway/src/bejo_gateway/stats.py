"""Transparency figures: catalog's (providers, products) and orders' (orders, transaction value,
participating pemda) composed into one public answer, in the form of the Jatim Bejo seed figures.

`compose` is pure; `fetch_stats` asks both services at once. Composed figures are kept for
`CACHE_SECONDS` per query (and concurrent asks for one query share one computation): counting a
year of orders takes the orders service seconds on the embedded store, and a public dashboard asks
the same few questions over and over. An answer says when it was computed (`generated_at`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Self, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bejo_kit.errors import ValidationProblem

from .proxy import BadGateway, GatewayTimeout, upstream_unavailable

PEMDA_PATTERN = r"^\d{2}(\.\d{2}){0,3}$"
REGENCY_OR_CITY = re.compile(r"^\d{2}\.\d{2}$")  # a kabupaten or kota: province code, one level down


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    pemda: str | None = Field(
        None,
        pattern=PEMDA_PATTERN,
        description="Kemendagri pemda code; a province code also counts its regencies and cities",
        examples=["35", "35.15"],
    )
    from_: date | None = Field(
        None, alias="from", description="first day counted (ISO date, WIB), inclusive", examples=["2026-01-01"]
    )
    to: date | None = Field(None, description="last day counted (ISO date, WIB), inclusive", examples=["2026-12-31"])

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("`from` must not be after `to`")
        return self

    def upstream_params(self, *, dates: bool) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.pemda:
            params["pemda"] = self.pemda
        if dates and self.from_:
            params["from"] = self.from_.isoformat()
        if dates and self.to:
            params["to"] = self.to.isoformat()
        return params


# -- what the services answer (the agreed shapes; extra fields are ignored) --------------------


class _Upstream(BaseModel):
    model_config = ConfigDict(extra="ignore")


U = TypeVar("U", bound=_Upstream)


class CatalogPemda(_Upstream):
    pemda: str
    providers: int = Field(ge=0)
    products: int = Field(ge=0)


class CatalogStats(_Upstream):
    providers: int = Field(ge=0)
    products: int = Field(ge=0)
    by_pemda: list[CatalogPemda]


class OrdersPemda(_Upstream):
    pemda: str
    orders: int = Field(ge=0)
    transaction_value: int = Field(ge=0)


class OrdersPeriod(_Upstream):
    period: str
    orders: int = Field(ge=0)
    transaction_value: int = Field(ge=0)


class OrdersProvider(_Upstream):
    provider_id: str
    provider_name: str
    orders: int = Field(ge=0)
    transaction_value: int = Field(ge=0)


class OrdersCategory(_Upstream):
    category: str
    orders: int = Field(ge=0)
    transaction_value: int = Field(ge=0)


class OrderStats(_Upstream):
    orders: int = Field(ge=0)
    transaction_value: int = Field(ge=0)
    participating_pemda: int = Field(ge=0)
    by_pemda: list[OrdersPemda]
    by_period: list[OrdersPeriod]
    # breakdowns an older orders service does not give: none then
    top_providers: list[OrdersProvider] = []
    by_category: list[OrdersCategory] = []


# -- what the gateway answers ----------------------------------------------------------------


class PemdaFigures(BaseModel):
    pemda: str = Field(description="Kemendagri pemda code", examples=["35.15"])
    orders: int = Field(description="paid or completed orders", examples=[412])
    transaction_value: int = Field(description="sum of their totals, integer rupiah", examples=[1_071_540_000])
    providers: int = Field(description="verified providers based in this pemda", examples=[61])
    products: int = Field(description="active products of those providers", examples=[1204])


class PeriodFigures(BaseModel):
    period: str = Field(description="calendar month, WIB", examples=["2026-03"])
    orders: int
    transaction_value: int = Field(description="integer rupiah")


class ProviderFigures(BaseModel):
    provider_id: str = Field(examples=["prv-00042"])
    provider_name: str = Field(examples=["CV Sumber Rejeki"])
    orders: int = Field(description="paid or completed orders", examples=[87])
    transaction_value: int = Field(description="sum of their totals, integer rupiah", examples=[226_000_000])


class CategoryFigures(BaseModel):
    category: str = Field(
        description="top-level category id (names at GET /api/v1/categories)", examples=["makanan-minuman"]
    )
    orders: int = Field(description="paid or completed orders with a line in the category", examples=[5120])
    transaction_value: int = Field(description="sum of those lines (quantity x unit price), integer rupiah")


class StatsFilters(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pemda: str | None
    from_: date | None = Field(alias="from")
    to: date | None


class TransparencyStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    transaction_value: int = Field(
        description="sum of paid and completed orders' totals, integer rupiah", examples=[35_800_000_000]
    )
    orders: int = Field(description="paid and completed orders", examples=[13_701])
    providers: int = Field(
        description=(
            "verified providers: those whose shops are public and can take orders (the program's "
            '"penyedia yang sudah tayang"); pending and suspended registrations are not counted'
        ),
        examples=[1_659],
    )
    products: int = Field(description="products listed (active, of verified providers)", examples=[29_477])
    participating_pemda: int = Field(
        description="regencies and cities (pemkab/pemkot; the province itself is not counted) with at least one "
        "paid or completed order",
        examples=[24],
    )
    by_pemda: list[PemdaFigures]
    by_period: list[PeriodFigures]
    top_providers: list[ProviderFigures] = Field(description="the 10 providers with the most value, largest first")
    by_category: list[CategoryFigures] = Field(description="top-level categories sold, largest value first")
    filters: StatsFilters
    generated_at: datetime


def compose(catalog: CatalogStats, orders: OrderStats, query: StatsQuery, now: datetime) -> TransparencyStats:
    """One row per pemda known to either service; a pemda missing from one side counts zero there."""
    rows: dict[str, dict[str, Any]] = {}

    def row(pemda: str) -> dict[str, Any]:
        return rows.setdefault(
            pemda, {"pemda": pemda, "orders": 0, "transaction_value": 0, "providers": 0, "products": 0}
        )

    for c in catalog.by_pemda:
        row(c.pemda)["providers"] += c.providers
        row(c.pemda)["products"] += c.products
    for o in orders.by_pemda:
        row(o.pemda)["orders"] += o.orders
        row(o.pemda)["transaction_value"] += o.transaction_value
    return TransparencyStats(
        transaction_value=orders.transaction_value,
        orders=orders.orders,
        providers=catalog.providers,
        products=catalog.products,
        participating_pemda=sum(1 for o in orders.by_pemda if o.orders > 0 and REGENCY_OR_CITY.match(o.pemda)),
        by_pemda=[PemdaFigures(**rows[k]) for k in sorted(rows)],
        by_period=[
            PeriodFigures(period=p.period, orders=p.orders, transaction_value=p.transaction_value)
            for p in sorted(orders.by_period, key=lambda p: p.period)
        ],
        top_providers=[ProviderFigures(**p.model_dump()) for p in orders.top_providers],
        by_category=[CategoryFigures(**c.model_dump()) for c in orders.by_category],
        filters=StatsFilters(pemda=query.pemda, from_=query.from_, to=query.to),
        generated_at=now,
    )


def parse_query(params: dict[str, str]) -> StatsQuery:
    try:
        return StatsQuery.model_validate(params)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "query"
            errors.append({"field": field, "message": err["msg"], "type": err["type"]})
        raise ValidationProblem(f"invalid query: {', '.join(e['field'] for e in errors)}", errors) from None


async def _ask(
    session: aiohttp.ClientSession,
    upstream: str,
    bases: list[str],
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    model: type[U],
    timeout_seconds: float,
) -> U:
    """GET `path` from the first of the upstream's replicas (`bases`, in order) that can be reached."""
    for index, base in enumerate(bases, start=1):
        try:
            async with session.get(
                base + path, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
            ) as answer:
                body = await answer.read()
                status = answer.status
                content_type = answer.headers.get("Content-Type", "")
            break
        except TimeoutError:
            raise GatewayTimeout(f"the {upstream} service did not answer in time", upstream=upstream) from None
        except (aiohttp.ClientConnectionError, OSError):
            if index == len(bases):
                raise upstream_unavailable(upstream) from None
    else:
        raise upstream_unavailable(upstream)
    if status == 422 and "json" in content_type:
        # The service refused our (already validated) filters: pass its words on.
        problem = orjson.loads(body)
        raise ValidationProblem(str(problem.get("detail", "invalid query")), problem.get("errors", []))
    if status in (502, 503, 504):
        raise upstream_unavailable(upstream)
    if status != 200:
        raise BadGateway(f"the {upstream} service did not give its figures (HTTP {status})", upstream=upstream)
    try:
        return model.model_validate_json(body)
    except ValidationError:
        raise BadGateway(f"the {upstream} service answered figures in an unexpected shape", upstream=upstream) from None


CACHE_SECONDS = 30.0
CACHE_ENTRIES = 256
CacheKey = tuple[tuple[str, ...], tuple[str, ...], str | None, date | None, date | None]
_cache: dict[CacheKey, tuple[float, asyncio.Task[TransparencyStats]]] = {}


async def fetch_stats(
    session: aiohttp.ClientSession,
    candidates: Callable[[str], list[str]],
    query: StatsQuery,
    headers: dict[str, str],
    timeout_seconds: float,
    now: datetime,
) -> TransparencyStats:
    """The figures of `query`, computed at most once per `CACHE_SECONDS` for the same upstreams;
    a failed computation is not kept. The computation is a task of its own, so a client that goes
    away does not cancel it for the others waiting."""
    catalog, orders = candidates("catalog"), candidates("orders")
    key: CacheKey = (tuple(sorted(catalog)), tuple(sorted(orders)), query.pemda, query.from_, query.to)
    moment = time.monotonic()
    held = _cache.get(key)
    if held is None or held[0] <= moment:
        if len(_cache) >= CACHE_ENTRIES:
            stale = [k for k, (until, _) in _cache.items() if until <= moment]
            for k in stale or list(_cache)[: CACHE_ENTRIES // 4]:
                _cache.pop(k, None)
        task = asyncio.create_task(
            _fetch_stats(session, lambda name: catalog if name == "catalog" else orders, query, headers,
                         timeout_seconds, now)
        )  # fmt: skip

        def forget_failure(done: asyncio.Task[TransparencyStats]) -> None:
            failed = done.cancelled() or done.exception() is not None  # (marks the exception retrieved)
            if failed and _cache.get(key, (0.0, None))[1] is done:
                _cache.pop(key, None)

        task.add_done_callback(forget_failure)
        held = (moment + CACHE_SECONDS, task)
        _cache[key] = held
    return await asyncio.shield(held[1])


async def _fetch_stats(
    session: aiohttp.ClientSession,
    candidates: Callable[[str], list[str]],
    query: StatsQuery,
    headers: dict[str, str],
    timeout_seconds: float,
    now: datetime,
) -> TransparencyStats:
    """`candidates(upstream)`: base URLs of its replicas in the order to ask them."""
    catalog, orders = await asyncio.gather(
        _ask(
            session,
            "catalog",
            candidates("catalog"),
            "/api/v1/catalog/stats",
            query.upstream_params(dates=False),
            headers,
            CatalogStats,
            timeout_seconds,
        ),
        _ask(
            session,
            "orders",
            candidates("orders"),
            "/api/v1/orders/stats",
            query.upstream_params(dates=True),
            headers,
            OrderStats,
            timeout_seconds,
        ),
        return_exceptions=True,
    )
    # Both are awaited to the end so neither is left running; the first failure is reported.
    if isinstance(catalog, BaseException):
        raise catalog
    if isinstance(orders, BaseException):
        raise orders
    return compose(catalog, orders, query, now)
