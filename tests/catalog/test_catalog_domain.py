"""Pure catalog rules: no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bejo_catalog import categories, domain
from bejo_catalog.domain import RequestedLine, RuleViolation
from bejo_catalog.search import CatalogIndex, SearchQuery
from bejo_cli.samples import provider_body
from bejo_contracts.errors import IllegalTransition
from bejo_contracts.pricing import PromotionTerms

NOW = datetime(2026, 12, 12, 5, 0, tzinfo=UTC)  # 12:00 WIB on Harbolnas


@pytest.mark.parametrize("npwp", ["01.234.567.8-901.000", "012345678901000", "3515012345678901"])
def test_npwp_formats_accepted(npwp: str) -> None:
    assert domain.normalize_npwp(npwp) == npwp


@pytest.mark.parametrize("npwp", ["01.234.567.8-901", "0123456789", "01.234.567.8-901.00a", ""])
def test_npwp_malformed(npwp: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        domain.normalize_npwp(npwp)
    assert exc.value.field == "npwp"


def test_phone_normalised_and_checked() -> None:
    assert domain.normalize_phone("+62 31-555-0100") == "+62315550100"
    assert domain.normalize_phone("081234567890") == "081234567890"
    with pytest.raises(RuleViolation):
        domain.normalize_phone("+1 555 0100")


def test_price_never_above_het() -> None:
    domain.check_price(120000, 120000)
    domain.check_price(1, None)
    with pytest.raises(RuleViolation, match="exceeds the HET"):
        domain.check_price(120001, 120000)
    with pytest.raises(RuleViolation) as exc:
        domain.check_price(0, None)
    assert exc.value.field == "price"


def test_provider_transitions() -> None:
    assert domain.transition("pending", "verified") == "verified"
    assert domain.transition("verified", "suspended") == "suspended"
    assert domain.transition("suspended", "verified") == "verified"
    for current, target in [("verified", "verified"), ("suspended", "suspended"), ("pending", "pending")]:
        with pytest.raises(IllegalTransition):
            domain.transition(current, target)  # type: ignore[arg-type]


def test_pemda_scope_and_delivery_regions() -> None:
    assert domain.delivers_to(["35"], "35.15")
    assert not domain.delivers_to(["35.78"], "35.15")


def promotion(kind: str, value: int, start: timedelta, end: timedelta, free: bool = False) -> PromotionTerms:
    return PromotionTerms(
        promotion_id=f"{kind}-{value}",
        discount_kind=kind,  # type: ignore[arg-type]
        discount_value=value,
        free_shipping=free,
        starts_at=NOW + start,
        ends_at=NOW + end,
    )


def test_offer_takes_the_best_running_promotion_at_the_given_time() -> None:
    hour = timedelta(hours=1)
    promotions = [
        promotion("percent", 10, -hour, hour),
        promotion("fixed", 15000, -hour, hour),
        promotion("percent", 50, hour, 2 * hour),  # not started
        promotion("none", 0, -2 * hour, -hour, free=True),  # over
    ]
    best = domain.offer(100000, promotions, NOW)
    assert (best.unit_price, best.promotion_id, best.free_shipping) == (85000, "fixed-15000", False)
    later = domain.offer(100000, promotions, NOW + hour)  # the window end is exclusive, the start inclusive
    assert (later.unit_price, later.promotion_id) == (50000, "percent-50")


def stored_promotion(
    promotion_id: str, provider_id: str, scope: str, start: timedelta, end: timedelta, *ids: str
) -> dict[str, Any]:
    return {
        "_id": promotion_id,
        "provider_id": provider_id,
        "name": promotion_id,
        "scope": scope,
        "product_ids": list(ids),
        "discount_kind": "percent",
        "discount_value": 10,
        "free_shipping": False,
        "starts_at": NOW + start,
        "ends_at": NOW + end,
    }


def test_promotion_filter_by_provider_product_and_window() -> None:
    hour = timedelta(hours=1)
    stored = [
        stored_promotion("all", "p1", "provider", -hour, hour),
        stored_promotion("named", "p1", "products", hour, 2 * hour, "a"),  # starts later: still covers
        stored_promotion("other", "p1", "products", -hour, hour, "b"),
        stored_promotion("ended", "p1", "provider", -2 * hour, -hour),
        stored_promotion("elsewhere", "p2", "provider", -hour, hour),
    ]
    assert [t.promotion_id for t in domain.terms_for(stored, "a", "p1", NOW)] == ["all", "named"]
    grouped = domain.by_provider(stored)
    assert [p["_id"] for p in grouped["p2"]] == ["elsewhere"] and len(grouped["p1"]) == 4
    assert [p["_id"] for p in stored if domain.is_running(p, NOW)] == ["all", "other", "elsewhere"]
    assert domain.is_running(stored[1], NOW + hour) and not domain.is_running(stored[0], NOW + hour)


def test_wall_clock_time_is_jakarta() -> None:
    assert domain.as_aware(datetime(2026, 12, 12, 0, 0)) == datetime(2026, 12, 11, 17, 0, tzinfo=UTC)
    aware = datetime(2026, 12, 12, tzinfo=UTC)
    assert domain.as_aware(aware) is aware


def test_promotion_rules() -> None:
    start, end = NOW, NOW + timedelta(days=1)
    domain.check_promotion("percent", 100, False, start, end)
    with pytest.raises(RuleViolation, match="whole percent"):
        domain.check_promotion("percent", 101, False, start, end)
    with pytest.raises(RuleViolation) as exc:
        domain.check_promotion("none", 0, False, start, end)
    assert exc.value.field == "free_shipping"
    with pytest.raises(RuleViolation) as exc:
        domain.check_promotion("fixed", 1000, False, end, start)
    assert exc.value.field == "ends_at"


NOW = datetime(2026, 12, 12, 9, 0, tzinfo=UTC)
STAMPS = {"version": 1, "created_at": NOW, "updated_at": NOW}
PRODUCT = {
    "_id": "p1",
    "provider_id": "prv",
    "name": "Kopi",
    "category": "makanan-minuman.kopi-teh",
    "unit": "pak",
    "price": 95_000,
    "status": "active",
    "stock": 5,
    "min_order_qty": 2,
    **STAMPS,
}
PROVIDER = {
    **provider_body(name="CV Uji"),
    "_id": "prv",
    "status": "verified",
    **STAMPS,
}


@pytest.mark.parametrize(
    ("product", "provider", "quantity", "held", "code"),
    [
        (None, PROVIDER, 2, False, "not_found"),
        ({**PRODUCT, "provider_id": "other"}, PROVIDER, 2, False, "not_found"),
        (PRODUCT, {**PROVIDER, "status": "suspended"}, 2, False, "provider_suspended"),
        (PRODUCT, {**PROVIDER, "status": "pending"}, 2, False, "provider_not_verified"),
        ({**PRODUCT, "status": "inactive"}, PROVIDER, 2, False, "inactive"),
        (PRODUCT, PROVIDER, 1, False, "below_min_qty"),
        (PRODUCT, PROVIDER, 6, False, "out_of_stock"),
        ({**PRODUCT, "stock": 0}, PROVIDER, 2, True, None),  # already taken by this order
        (PRODUCT, PROVIDER, 5, False, None),
    ],
)
def test_line_checks(
    product: dict[str, Any] | None, provider: dict[str, Any], quantity: int, held: bool, code: str | None
) -> None:
    rejection = domain.check_line(
        RequestedLine("p1", quantity),
        domain.Product.model_validate(product) if product else None,
        domain.Provider.model_validate(provider),
        "prv",
        held,
    )
    assert (rejection.code if rejection else None) == code


def test_merge_lines_adds_quantities_per_product() -> None:
    lines = [RequestedLine("a", 1), RequestedLine("b", 2), RequestedLine("a", 3)]
    assert domain.merge_lines(lines) == [RequestedLine("a", 4), RequestedLine("b", 2)]


def test_tokenize_is_indonesian_friendly() -> None:
    assert domain.tokenize("Buku-buku Tulis SiDU, 58 lbr!") == ["buku", "tulis", "sidu", "58", "lbr"]
    assert domain.tokenize("Kopi 1kg dan Gula") == ["kopi", "1kg", "1", "kg", "gula"]
    assert domain.tokenize("Kué Lapis") == ["kue", "lapis"]


def indexed_catalog() -> CatalogIndex:
    index = CatalogIndex()
    index.put_provider({"_id": "prv", "name": "UD Sumber Kopi", "status": "verified", "pemda_code": "35.07"})
    for n, (name, price, category) in enumerate(
        [
            ("Kopi Bubuk Robusta 250 gr", 30000, "makanan-minuman.kopi-teh"),
            ("Kertas HVS A4", 50000, "alat-tulis-kantor.kertas"),
            ("Teh Celup Melati", 12000, "makanan-minuman.kopi-teh"),
        ]
    ):
        index.put_product(
            {
                "_id": f"p{n}",
                "provider_id": "prv",
                "name": name,
                "description": "",
                "category": category,
                "price": price,
                "stock": n,
                "regions": ["35"],
                "status": "active",
                "version": 1,
                "created_at": NOW + timedelta(minutes=n),
            },
            [],
        )
    return index


def test_search_ranks_name_matches_above_provider_matches_and_pages_by_key() -> None:
    index = indexed_catalog()
    found = index.search(SearchQuery(q="kopi"), NOW)
    # every product matches through the provider name; the one with kopi in its name ranks first
    assert [p.id for p, _ in found.items] == ["p0", "p2", "p1"]
    first = index.search(SearchQuery(sort="price_asc", limit=2), NOW)
    assert [p.id for p, _ in first.items] == ["p2", "p0"] and first.next_key is not None
    rest = index.search(SearchQuery(sort="price_asc", limit=2, after=first.next_key), NOW)
    assert [p.id for p, _ in rest.items] == ["p1"] and rest.next_key is None


def test_search_filters() -> None:
    index = indexed_catalog()

    def ids(**kw: object) -> list[str]:
        return [p.id for p, _ in index.search(SearchQuery(sort="price_asc", **kw), NOW).items]  # type: ignore[arg-type]

    assert ids(category="makanan-minuman") == ["p2", "p0"]
    assert ids(in_stock=True) == ["p2", "p1"]
    assert ids(q="rob") == ["p0"]  # prefix
    assert ids(q="kopi kertas") == ["p1"]  # every word must match (provider name carries kopi)
    assert ids(region="35.78") == ["p2", "p0", "p1"]
    index.put_provider({"_id": "prv", "name": "UD Sumber Kopi", "status": "suspended", "pemda_code": "35.07"})
    assert ids() == []


def test_an_older_version_never_replaces_a_newer_one() -> None:
    index = indexed_catalog()
    newer = {**index.products["p0"].doc, "version": 3, "name": "Kopi Luwak"}
    assert index.put_product(newer, [])
    assert not index.put_product({**newer, "version": 2, "name": "Kopi Lama"}, [])
    assert index.products["p0"].doc["name"] == "Kopi Luwak"
    assert [p.id for p, _ in index.search(SearchQuery(q="luwak"), NOW).items] == ["p0"]
    assert index.search(SearchQuery(q="robusta"), NOW).items == []


def test_category_tree_is_two_levels_with_known_parents() -> None:
    assert len(categories.LEAVES) >= 25
    for category in categories.CATEGORIES:
        assert category.parent_id is None or categories.BY_ID[category.parent_id].parent_id is None
    assert "makanan-minuman.kopi-teh" in categories.with_descendants("makanan-minuman")


def test_browsing_orders_promoted_products_by_their_effective_price() -> None:
    index = indexed_catalog()  # list prices: p0 30000, p1 50000, p2 12000
    half_price = promotion("percent", 50, -timedelta(hours=1), timedelta(hours=1))
    index.put_product(index.products["p1"].doc, [half_price])  # 25000 while it runs

    def walk(sort: str, at: datetime) -> list[tuple[str, int]]:
        seen, after = [], None
        while True:
            page = index.search(SearchQuery(sort=sort, limit=1, after=after), at)  # type: ignore[arg-type]
            seen += [(p.id, offer.unit_price) for p, offer in page.items]
            if page.next_key is None:
                return seen
            after = page.next_key

    assert walk("price_asc", NOW) == [("p2", 12000), ("p1", 25000), ("p0", 30000)]
    assert walk("price_desc", NOW) == [("p0", 30000), ("p1", 25000), ("p2", 12000)]
    assert walk("price_asc", NOW + timedelta(hours=2)) == [("p2", 12000), ("p0", 30000), ("p1", 50000)]
    assert walk("newest", NOW) == [("p2", 12000), ("p1", 25000), ("p0", 30000)]
    cheap = index.search(SearchQuery(sort="price_desc", max_price=26000), NOW)
    assert [p.id for p, _ in cheap.items] == ["p1", "p2"]


def test_aggregates_round_trip_their_documents_and_keep_holds_out_of_writes() -> None:
    product = domain.Product.model_validate({**PRODUCT, "holds": ["ord-1"], "outbox": [{"id": "e"}]})
    assert product.held_by("ord-1") and not product.held_by("ord-2")
    assert product.document() == {**PRODUCT, "description": "", "het": None, "images": [], "regions": []}
    changed = product.changed({"price": 90_000}, NOW)
    assert (changed.price, changed.version, product.price) == (90_000, 2, 95_000)


def test_a_provider_changes_status_only_along_its_state_machine() -> None:
    provider = domain.Provider.model_validate(PROVIDER)
    suspended = provider.with_status("suspended", "izin kedaluwarsa", NOW)
    assert (suspended.status, suspended.status_reason, suspended.version) == ("suspended", "izin kedaluwarsa", 2)
    with pytest.raises(IllegalTransition):
        suspended.with_status("pending", None, NOW)


def test_keyword_pages_skip_filtered_matches_beyond_the_shortlist() -> None:
    """Most matches fail the filter (another region, no stock): paging by cursor still returns every
    admitted match once, in rank order (the shortlist of a few pages runs out, the rest is sorted)."""
    index = CatalogIndex()
    index.put_provider({"_id": "prv", "name": "UD Kopi", "status": "verified", "pemda_code": "35.07"})
    expected = []
    for n in range(300):
        region, stock = ("35.15", 1) if n % 37 == 0 else ("35.07", 1 if n % 2 else 0)
        index.put_product(
            {
                "_id": f"p{n:03d}",
                "provider_id": "prv",
                "name": f"Kopi Dampit {n}",
                "description": "",
                "category": "makanan-minuman.kopi-teh",
                "price": 30_000,
                "stock": stock,
                "regions": [region],
                "status": "active",
                "version": 1,
                "created_at": NOW + timedelta(minutes=n),
            },
            [],
        )
        if region == "35.15":
            expected.append(f"p{n:03d}")
    expected.reverse()  # equal scores: the newest first
    seen: list[str] = []
    after = None
    while True:
        page = index.search(SearchQuery(q="kopi", region="35.15", in_stock=True, limit=2, after=after), NOW)
        seen += [indexed.id for indexed, _ in page.items]
        if page.next_key is None:
            break
        after = page.next_key
    assert seen == expected and len(seen) == 9
