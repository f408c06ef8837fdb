"""Queries: one order, listings scoped to the caller, transparency stats and OCDS releases.

They state what they want; the Mongo filters are the repository's."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from bejo_contracts.pemda import covers
from bejo_kit.auth import BUYER_ROLES, Principal
from bejo_kit.errors import NotFound, ValidationProblem
from bejo_kit.paging import decode_cursor, encode_cursor

from . import domain, ocds, rules
from .domain import Order
from .repository import Repository
from .settings import OrdersSettings
from .transitions import caller_of
from .views import ListQuery, OcdsQuery, OrderList, OrderView, Stats, StatsQuery


class Queries:
    def __init__(self, repo: Repository, settings: OrdersSettings) -> None:
        self.repo = repo
        self.settings = settings

    async def get_visible(self, order_id: str, principal: Principal) -> Order:
        order = await self.repo.get_order(order_id)
        if order is None or not domain.can_see(order, caller_of(principal)):
            raise NotFound(f"no order {order_id}", code="order_not_found")
        return order

    async def list_orders(self, principal: Principal, query: ListQuery) -> OrderList:
        nothing = OrderList(items=[], next_cursor=None)
        pemda = within = None
        satker, provider_id = query.satker, query.provider_id
        if principal.role in BUYER_ROLES:
            if satker and satker != principal.satker:
                return nothing
            pemda, satker = principal.pemda, principal.satker
        elif principal.role == "penyedia":
            if provider_id and provider_id != principal.provider_id:
                return nothing
            provider_id = principal.provider_id
        else:
            within = query.pemda or principal.pemda
            if not covers(principal.pemda, within):
                return nothing
        orders = await self.repo.list_orders(
            pemda=pemda,
            within=within,
            satker=satker,
            provider_id=provider_id,
            status=query.status,
            created=rules.wib_day_bounds(query.from_, query.to),
            after=cursor_position(query.cursor, "a next_cursor"),
            limit=query.limit + 1,
        )
        page = orders[: query.limit]
        next_cursor = None
        if len(orders) > query.limit:
            last = page[-1]
            next_cursor = encode_cursor({"at": last.created_at.isoformat(), "id": last.id})
        return OrderList(items=[OrderView.of(o) for o in page], next_cursor=next_cursor)

    async def stats(self, query: StatsQuery) -> Stats:
        by_pemda: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_period: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_provider: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        names: dict[str, str] = {}
        paid = await self.repo.paid_orders(within=query.pemda, paid=rules.wib_day_bounds(query.from_, query.to))
        categories = await self.repo.product_categories(
            sorted({line["product_id"] for doc in paid for line in doc.get("lines", [])})
        )
        for doc in paid:
            paid_at: datetime = doc["paid_at"]
            names[doc["provider_id"]] = doc["provider_name"]
            for bucket in (
                by_pemda[doc["pemda"]],
                by_period[rules.period_of(paid_at)],
                by_provider[doc["provider_id"]],
            ):
                bucket[0] += 1
                bucket[1] += int(doc["total"])
            # the top level of the category tree ("makanan-minuman.kopi-teh" -> "makanan-minuman")
            values: dict[str, int] = defaultdict(int)
            for line in doc.get("lines", []):
                top = categories.get(line["product_id"], "lainnya").split(".")[0]
                values[top] += int(line["quantity"]) * int(line["unit_price"])
            for top, value in values.items():
                by_category[top][0] += 1
                by_category[top][1] += value
        top_providers = sorted(by_provider.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]
        return Stats.model_validate(
            {
                "orders": sum(v[0] for v in by_pemda.values()),
                "transaction_value": sum(v[1] for v in by_pemda.values()),
                "participating_pemda": len(by_pemda),
                "by_pemda": [
                    {"pemda": k, "orders": v[0], "transaction_value": v[1]} for k, v in sorted(by_pemda.items())
                ],
                "by_period": [
                    {"period": k, "orders": v[0], "transaction_value": v[1]} for k, v in sorted(by_period.items())
                ],
                "top_providers": [
                    {"provider_id": k, "provider_name": names[k], "orders": v[0], "transaction_value": v[1]}
                    for k, v in top_providers
                ],
                "by_category": [
                    {"category": k, "orders": v[0], "transaction_value": v[1]}
                    for k, v in sorted(by_category.items(), key=lambda kv: (-kv[1][1], kv[0]))
                ],
            }
        )

    async def ocds_releases(self, query: OcdsQuery) -> tuple[list[dict[str, Any]], str | None]:
        """Every release of the orders approved at some point, most recently changed order first, and
        the next cursor (a page holds `limit` orders, each with all its releases)."""
        orders = await self.repo.recently_changed(
            ocds.PUBLISHED_STATUSES,
            within=query.pemda,
            after=cursor_position(query.cursor, "links.next"),
            limit=query.limit + 1,
        )
        page = orders[: query.limit]
        next_cursor = None
        if len(orders) > query.limit:
            next_cursor = encode_cursor({"at": page[-1].updated_at.isoformat(), "id": page[-1].id})
        product_ids = sorted({line.product_id for o in page for line in o.lines})
        snapshots = await self.repo.get_products(product_ids) if product_ids else {}
        categories = {pid: snap.category_id for pid, snap in snapshots.items() if snap is not None}
        pub = self.publication()
        return [r for o in page for r in ocds.releases(o, pub, categories)], next_cursor

    def publication(self) -> ocds.Publication:
        s = self.settings
        public = s.public_url.rstrip("/")
        return ocds.Publication(
            ocid_prefix=s.ocds_ocid_prefix,
            public_url=public,
            publisher=s.ocds_publisher,
            license=s.ocds_license,
            publication_policy=s.ocds_publication_policy or f"{public}/api/v1/ocds/policy",
        )


def cursor_position(cursor: str | None, hint: str) -> tuple[datetime, str] | None:
    """The (time, id) of the last row of the previous page, from an opaque cursor."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position["at"]), str(position["id"])
    except (KeyError, TypeError, ValueError):
        raise ValidationProblem.field("cursor", f"malformed cursor; pass back {hint}") from None
