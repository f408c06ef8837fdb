"""In-memory read model of the catalog, one per replica: products, providers, their promotions,
and an inverted index for keyword search.

Why in memory: search needs Indonesian-aware tokens (reduplication, number+unit splits), prefix
matches and relevance over name, provider name and description, which no portable Mongo index
gives (the embedded server has no text index at all). Why it stays correct with several replicas:
it is loaded at start-up, takes the replica's own writes at once, and every replica tails the
change feed, which carries every replica's writes, so a change on one replica reaches the others
within the feed's sequencing and tail intervals (see docs/catalog.md).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bejo_contracts.pemda import covers
from bejo_contracts.pricing import PromotionTerms

from . import categories
from .domain import Offer, delivers_to, is_orderable, offer, tokenize

SortOrder = Literal["relevance", "price_asc", "price_desc", "newest"]

# How much a match in each field counts towards relevance.
NAME_WEIGHT, PROVIDER_WEIGHT, DESCRIPTION_WEIGHT = 3.0, 1.5, 1.0
PREFIX_FACTOR = 0.5  # `kop` finds `kopi`, ranked below an exact word match
MIN_PREFIX = 2
MAX_PREFIX_EXPANSION = 500


@dataclass
class IndexedProduct:
    doc: dict[str, Any]  # stored product state, without outbox/bookkeeping fields
    promotions: list[PromotionTerms]
    tokens: dict[str, float] = field(default_factory=dict)
    created: float = 0.0  # creation time as a timestamp, for sorting

    def __post_init__(self) -> None:
        self.created = self.doc["created_at"].timestamp()

    @property
    def id(self) -> str:
        return str(self.doc["_id"])

    def offer(self, now: datetime) -> Offer:
        if not self.promotions:
            price = int(self.doc["price"])
            return Offer(price, price, None, False)
        return offer(self.doc["price"], self.promotions, now)


# A match with its sort key (the key ends with the product id, so no two are equal).
_Ranked = tuple[tuple[Any, ...], IndexedProduct]


@dataclass(frozen=True)
class SearchQuery:
    q: str | None = None
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    provider_id: str | None = None
    region: str | None = None
    in_stock: bool | None = None
    sort: SortOrder | None = None
    limit: int = 20
    after: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class SearchPage:
    items: list[tuple[IndexedProduct, Offer]]
    next_key: tuple[Any, ...] | None
    sort: SortOrder


class CatalogIndex:
    def __init__(self) -> None:
        self.providers: dict[str, dict[str, Any]] = {}
        self.products: dict[str, IndexedProduct] = {}
        self._postings: dict[str, dict[str, float]] = {}
        self._sorted_tokens: list[str] = []
        self._tokens_dirty = False
        self._by_provider: dict[str, set[str]] = {}
        self._by_category: dict[str, set[str]] = {}
        # Browsing without keywords walks pre-sorted orders and stops after a page; rebuilt
        # lazily when a product is added or its price changes (not on stock changes).
        self._orders: dict[str, tuple[list[tuple[Any, ...]], list[str]]] = {}
        self._promoted: set[str] = set()  # products with promotions: their price order is computed per query
        # Effective-price orders of promoted products, valid until the next promotion window
        # boundary or the next change to a promoted product.
        self._promoted_orders: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
        self._promoted_valid_until: datetime | None = None

    # -- updates --------------------------------------------------------------------------

    def put_provider(self, provider: dict[str, Any]) -> None:
        """Insert or replace a provider; a new or renamed provider re-indexes its products."""
        current = self.providers.get(provider["_id"])
        if current is not None and current.get("version", 0) > provider.get("version", 0):
            return
        renamed = current is None or current["name"] != provider["name"]
        self.providers[provider["_id"]] = provider
        if renamed:
            for product_id in list(self._by_provider.get(provider["_id"], ())):
                indexed = self.products[product_id]
                self.put_product(indexed.doc, indexed.promotions)

    def put_product(self, doc: dict[str, Any], promotions: list[PromotionTerms]) -> bool:
        """Insert or replace a product unless a newer version is already known. Equal versions are
        applied: a provider's standing or a promotion changes the public document, not the version."""
        product_id = doc["_id"]
        current = self.products.get(product_id)
        if current is not None and current.doc["version"] > doc["version"]:
            return False
        if current is not None:
            # Promotions are never changed or removed, so a product's set only grows: an entry
            # computed before a promotion existed (another replica's, say) must not drop it.
            known = {t.promotion_id for t in promotions}
            promotions = [*promotions, *(t for t in current.promotions if t.promotion_id not in known)]
            self._unindex(current)
        if current is None or current.doc["price"] != doc["price"]:
            self._orders.clear()
        if promotions or product_id in self._promoted:
            self._promoted_orders.clear()
        if promotions:
            self._promoted.add(product_id)
        else:
            self._promoted.discard(product_id)
        indexed = IndexedProduct(doc, promotions, self._token_weights(doc))
        self.products[product_id] = indexed
        for token, weight in indexed.tokens.items():
            postings = self._postings.get(token)
            if postings is None:
                self._postings[token] = postings = {}
                self._tokens_dirty = True
            postings[product_id] = weight
        self._by_provider.setdefault(doc["provider_id"], set()).add(product_id)
        self._by_category.setdefault(doc["category"], set()).add(product_id)
        return True

    def set_stock(self, product_id: str, stock: int, version: int) -> None:
        indexed = self.products.get(product_id)
        if indexed is not None and indexed.doc["version"] < version:
            indexed.doc = {**indexed.doc, "stock": stock, "version": version}

    def _unindex(self, indexed: IndexedProduct) -> None:
        for token in indexed.tokens:
            postings = self._postings.get(token)
            if postings is not None:
                postings.pop(indexed.id, None)
                if not postings:
                    del self._postings[token]
                    self._tokens_dirty = True
        self._by_provider.get(indexed.doc["provider_id"], set()).discard(indexed.id)
        self._by_category.get(indexed.doc["category"], set()).discard(indexed.id)

    def _token_weights(self, doc: dict[str, Any]) -> dict[str, float]:
        weights: dict[str, float] = {}
        provider = self.providers.get(doc["provider_id"])
        fields = [
            (doc.get("description") or "", DESCRIPTION_WEIGHT),
            (provider["name"] if provider else "", PROVIDER_WEIGHT),
            (doc["name"], NAME_WEIGHT),
        ]
        for text, weight in fields:
            for token in tokenize(text):
                weights[token] = max(weights.get(token, 0.0), weight)
        return weights

    # -- reads ----------------------------------------------------------------------------

    def is_visible(self, indexed: IndexedProduct) -> bool:
        provider = self.providers.get(indexed.doc["provider_id"])
        return provider is not None and is_orderable(indexed.doc["status"], provider["status"])

    def _matches(self, text: str) -> dict[str, float] | None:
        """Product id → relevance for a free-text query; every word must match (AND)."""
        words = tokenize(text)
        if not words:
            return None
        if self._tokens_dirty:
            self._sorted_tokens = sorted(self._postings)
            self._tokens_dirty = False
        result: dict[str, float] | None = None
        for word in sorted(words, key=lambda w: len(self._postings.get(w, ())), reverse=False):
            scores: dict[str, float] = dict(self._postings.get(word, {}))
            if len(word) >= MIN_PREFIX:
                start = bisect.bisect_left(self._sorted_tokens, word)
                for token in self._sorted_tokens[start : start + MAX_PREFIX_EXPANSION]:
                    if not token.startswith(word):
                        break
                    if token == word:
                        continue
                    for product_id, weight in self._postings.get(token, {}).items():
                        partial = weight * PREFIX_FACTOR
                        if partial > scores.get(product_id, 0.0):
                            scores[product_id] = partial
            if result is None:
                result = scores
            else:
                result = {pid: score + scores[pid] for pid, score in result.items() if pid in scores}
            if not result:
                return {}
        return result or {}

    def search(self, query: SearchQuery, now: datetime) -> SearchPage:
        sort: SortOrder = query.sort or ("relevance" if query.q else "newest")
        wanted = categories.with_descendants(query.category) if query.category is not None else None
        if not query.q and sort != "relevance":
            return self._browse(query, sort, wanted, now)
        scores = self._matches(query.q) if query.q else None
        pools: list[Collection[str]] = []
        if scores is not None:
            pools.append(scores)
        if query.provider_id is not None:
            pools.append(self._by_provider.get(query.provider_id, set()))
        if wanted is not None:
            pools.append(set().union(*(self._by_category.get(c, set()) for c in wanted)))
        candidates: Collection[str] = min(pools, key=len) if pools else self.products.keys()
        # The effective price (working out promotions) is needed per match only to sort or filter by
        # price; otherwise the matches are ranked first and checked in rank order until a page is full.
        if sort in ("price_asc", "price_desc") or query.min_price is not None or query.max_price is not None:
            return self._ranked_by_price(query, sort, candidates, scores, wanted, now)
        # Keys built inline (no call per match): a prefix such as `kop` matches tens of thousands.
        found = self.products
        keyed: list[tuple[tuple[Any, ...], IndexedProduct]]
        if sort == "relevance":
            score = scores or {}
            keyed = [
                ((-score.get(pid, 0.0), -p.created, pid), p) for pid in candidates if (p := found.get(pid)) is not None
            ]
        else:
            keyed = [((-p.created, pid), p) for pid in candidates if (p := found.get(pid)) is not None]
        if query.after is not None:
            after = query.after
            keyed = [entry for entry in keyed if entry[0] > after]
        # Most matches are orderable and within the filters: rank a few pages' worth first, and all of
        # them only when too many of those are filtered out.
        wanted_count = query.limit + 1
        page: list[tuple[tuple[Any, ...], IndexedProduct]] = []
        shortlist = heapq.nsmallest(4 * wanted_count, keyed)
        for key, indexed in _then_the_rest(shortlist, keyed):
            if self._admits(indexed, query, scores, wanted):
                page.append((key, indexed))
                if len(page) == wanted_count:
                    break
        return self._page(page, query.limit, sort, now)

    def _ranked_by_price(
        self,
        query: SearchQuery,
        sort: SortOrder,
        candidates: Collection[str],
        scores: dict[str, float] | None,
        wanted: set[str] | None,
        now: datetime,
    ) -> SearchPage:
        ranked: list[tuple[tuple[Any, ...], IndexedProduct]] = []
        for product_id in candidates:
            indexed = self.products.get(product_id)
            if indexed is None or not self._admits(indexed, query, scores, wanted):
                continue
            # Most products have no promotion: their list price is the effective price.
            price = indexed.offer(now).unit_price if indexed.promotions else int(indexed.doc["price"])
            if query.min_price is not None and price < query.min_price:
                continue
            if query.max_price is not None and price > query.max_price:
                continue
            key = _sort_key(sort, indexed, price, scores)
            if query.after is not None and key <= query.after:
                continue
            ranked.append((key, indexed))
        return self._page(heapq.nsmallest(query.limit + 1, ranked, key=lambda entry: entry[0]), query.limit, sort, now)

    def _admits(
        self, indexed: IndexedProduct, query: SearchQuery, scores: dict[str, float] | None, wanted: set[str] | None
    ) -> bool:
        """Orderable, and within every filter of the query but the price."""
        doc = indexed.doc
        provider = self.providers.get(doc["provider_id"])
        return not (
            provider is None
            or not is_orderable(doc["status"], provider["status"])
            or (scores is not None and indexed.id not in scores)
            or (query.provider_id is not None and doc["provider_id"] != query.provider_id)
            or (wanted is not None and doc["category"] not in wanted)
            or (query.region is not None and not delivers_to(doc["regions"], query.region))
            or (query.in_stock and doc["stock"] <= 0)
        )

    @staticmethod
    def _page(
        ranked: list[tuple[tuple[Any, ...], IndexedProduct]], limit: int, sort: SortOrder, now: datetime
    ) -> SearchPage:
        """The first `limit` of the ranked matches (one more tells whether a next page exists), priced."""
        more = len(ranked) > limit
        page = ranked[:limit]
        return SearchPage(
            [(indexed, indexed.offer(now)) for _, indexed in page], page[-1][0] if more and page else None, sort
        )

    def _ordered(self, sort: SortOrder) -> tuple[list[tuple[Any, ...]], list[str]]:
        cached = self._orders.get(sort)
        if cached is None:
            pairs = sorted(
                (_sort_key(sort, indexed, int(indexed.doc["price"]), None), product_id)
                for product_id, indexed in self.products.items()
            )
            cached = self._orders[sort] = ([key for key, _ in pairs], [pid for _, pid in pairs])
        return cached

    def _browse(self, query: SearchQuery, sort: SortOrder, wanted: set[str] | None, now: datetime) -> SearchPage:
        """No keywords: walk the sort order from the cursor and stop once a page is full. Products
        with promotions are ordered by their effective price now and merged in."""
        keys, ids = self._ordered(sort)
        by_price = sort in ("price_asc", "price_desc")
        start = bisect.bisect_right(keys, query.after) if query.after is not None else 0

        def listed() -> Iterator[tuple[tuple[Any, ...], str]]:
            for i in range(start, len(ids)):
                if not (by_price and ids[i] in self._promoted):
                    yield keys[i], ids[i]

        if by_price:
            # A price range starts the walk at its bound instead of the beginning.
            bound = (
                (query.min_price, "") if sort == "price_asc" else (-query.max_price if query.max_price else None, "")
            )
            if bound[0] is not None:
                start = max(start, bisect.bisect_left(keys, bound))
        stream: Iterable[tuple[tuple[Any, ...], str]] = listed()
        if by_price:
            promoted = self._promoted_order(sort, now)
            first = bisect.bisect_right(promoted, (query.after, "\uffff")) if query.after is not None else 0
            stream = heapq.merge(stream, promoted[first:])
        page: list[tuple[tuple[Any, ...], IndexedProduct, Offer]] = []
        for key, product_id in stream:
            indexed = self.products.get(product_id)
            if indexed is None or not self._passes(indexed, query, wanted):
                continue
            current = indexed.offer(now)
            if query.min_price is not None and current.unit_price < query.min_price:
                continue
            if query.max_price is not None and current.unit_price > query.max_price:
                continue
            page.append((key, indexed, current))
            if len(page) > query.limit:
                break
        more = len(page) > query.limit
        page = page[: query.limit]
        return SearchPage([(i, o) for _, i, o in page], page[-1][0] if more and page else None, sort)

    def _promoted_order(self, sort: SortOrder, now: datetime) -> list[tuple[tuple[Any, ...], str]]:
        if self._promoted_valid_until is None or now >= self._promoted_valid_until:
            self._promoted_orders.clear()
        cached = self._promoted_orders.get(sort)
        if cached is not None:
            return cached
        boundary: datetime | None = None
        order = []
        for product_id in self._promoted:
            indexed = self.products[product_id]
            order.append((_sort_key(sort, indexed, indexed.offer(now).unit_price, None), product_id))
            for terms in indexed.promotions:
                for moment in (terms.starts_at, terms.ends_at):
                    if moment > now and (boundary is None or moment < boundary):
                        boundary = moment
        order.sort()
        if not self._promoted_orders:
            self._promoted_valid_until = boundary or datetime.max.replace(tzinfo=now.tzinfo)
        self._promoted_orders[sort] = order
        return order

    def _passes(self, indexed: IndexedProduct, query: SearchQuery, wanted: set[str] | None) -> bool:
        doc = indexed.doc
        provider = self.providers.get(doc["provider_id"])
        return not (
            provider is None
            or not is_orderable(doc["status"], provider["status"])
            or (query.provider_id is not None and doc["provider_id"] != query.provider_id)
            or (wanted is not None and doc["category"] not in wanted)
            or (query.region is not None and not delivers_to(doc["regions"], query.region))
            or (query.in_stock and doc["stock"] <= 0)
        )

    def stats(self, pemda: str | None) -> dict[str, Any]:
        """Verified providers and the active products they offer, per provider pemda."""
        per_pemda: dict[str, list[int]] = {}
        for provider in self.providers.values():
            if provider["status"] != "verified" or (pemda and not covers(pemda, provider["pemda_code"])):
                continue
            active = sum(
                1 for pid in self._by_provider.get(provider["_id"], ()) if self.products[pid].doc["status"] == "active"
            )
            counts = per_pemda.setdefault(provider["pemda_code"], [0, 0])
            counts[0] += 1
            counts[1] += active
        return {
            "providers": sum(c[0] for c in per_pemda.values()),
            "products": sum(c[1] for c in per_pemda.values()),
            "by_pemda": [{"pemda": code, "providers": c[0], "products": c[1]} for code, c in sorted(per_pemda.items())],
        }


def _then_the_rest(shortlist: list[_Ranked], everything: list[_Ranked]) -> Iterator[_Ranked]:
    """The shortlist (the smallest keys, in order), then the rest of everything in order, sorted only
    if the shortlist runs out."""
    yield from shortlist
    if len(everything) > len(shortlist):
        yield from sorted(everything)[len(shortlist) :]


def _sort_key(sort: SortOrder, indexed: IndexedProduct, price: int, scores: dict[str, float] | None) -> tuple[Any, ...]:
    if sort == "price_asc":
        return (price, indexed.id)
    if sort == "price_desc":
        return (-price, indexed.id)
    created = indexed.created
    if sort == "newest":
        return (-created, indexed.id)
    score = scores.get(indexed.id, 0.0) if scores else 0.0
    return (-score, -created, indexed.id)
