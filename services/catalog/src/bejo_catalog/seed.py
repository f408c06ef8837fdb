"""`bejo seed`: realistic synthetic catalog data at the scale of Jatim Bejo (30 Nov 2021):
1,659 providers across the province and 24 regencies/cities, 29,477 products, some promotions.

Repeatable: a fixed random seed gives the same providers, products and ids every time (promotion
windows are placed around the time of seeding, so some run now). Written in bulk into an empty
catalog database only, with the change-feed entries 1..N of what it wrote (so the documents carry
no feed marker and the sequencer has nothing to do for them).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aio_pika.exceptions import PublishError

from bejo_contracts.catalog import ProductUpserted
from bejo_contracts.common import WIB
from bejo_contracts.pricing import PromotionTerms
from bejo_kit.bus import Bus
from bejo_kit.mongo import Document, create_client, database, utcnow

from . import domain
from .feed import Change, Feed, entry_document, product_document
from .repository import HOLDS, CatalogStore, public_provider
from .seed_tables import LEGAL, NAME_WORDS_1, NAME_WORDS_2, PEMDAS, PRODUCTS, STREETS, TOWN
from .settings import CatalogSettings

DEFAULT_PROVIDERS = 1659
DEFAULT_PRODUCTS = 29477
DEFAULT_PROMOTIONS = 160
DEFAULT_RANDOM_SEED = 20211130


@dataclass
class SeedData:
    providers: list[Document]
    products: list[Document]
    promotions: list[Document]


def _weighted(rng: random.Random, pairs: list[tuple[Any, int]]) -> Any:
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs])[0]


def _round(value: float, step: int) -> int:
    return max(step, round(value / step) * step)


def generate(providers: int, products: int, promotions: int, random_seed: int, now: datetime) -> SeedData:
    """Pure: the same arguments give the same data."""
    rng = random.Random(random_seed)
    launch = datetime(2020, 11, 2, 1, 0, tzinfo=UTC)  # Jatim Bejo launched in November 2020
    span = (datetime(2021, 11, 30, tzinfo=UTC) - launch).total_seconds()
    pemda_weights = [(code, weight) for code, _, weight in PEMDAS]

    # `providers` and `products` count what the public sees, as the program's figures do ("sudah
    # tayang"): verified providers, and active products of verified providers. Pending and
    # suspended providers (about 7%) and inactive or unlisted products come on top of them.
    statuses = (
        ["verified"] * providers + ["pending"] * round(providers * 5 / 93) + ["suspended"] * round(providers * 2 / 93)
    )
    rng.shuffle(statuses)
    provider_docs = []
    for n, status in enumerate(statuses, start=1):
        pemda = _weighted(rng, pemda_weights)
        town = TOWN[pemda]
        entity = _weighted(rng, LEGAL)
        name = f"{entity} {rng.choice(NAME_WORDS_1)} {rng.choice(NAME_WORDS_2)}"
        if rng.random() < 0.3:
            name += f" {town}"
        created = launch + timedelta(seconds=rng.random() * span)
        slug = "".join(ch for ch in name.lower() if ch.isalnum())[:24]
        digits = "".join(str(rng.randrange(10)) for _ in range(15))
        provider_docs.append(
            {
                "_id": f"prv-{n:05d}",
                "name": name,
                "legal_entity": entity,
                "nib": "".join(str(rng.randrange(10)) for _ in range(13)),
                "npwp": f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}.{digits[8]}-{digits[9:12]}.{digits[12:]}",
                "pkp": rng.random() < 0.55,
                "pemda_code": pemda,
                "address": f"{rng.choice(STREETS)} No. {rng.randint(1, 250)}, {town}",
                "email": f"{slug}{n}@contoh.id",
                "phone": f"+6231{rng.randint(5000000, 8999999)}",
                "status": status,
                "status_reason": {
                    "verified": "Dokumen NIB dan NPWP sesuai",
                    "suspended": "Dokumen izin kedaluwarsa",
                }.get(status),
                "version": 1 if status == "pending" else 2,
                "registered_by": f"user-prv-{n:05d}",
                "created_at": created,
                "updated_at": created,
            }
        )

    leaves = [(leaf, weight) for leaf, (weight, _) in PRODUCTS.items()]
    product_docs = []
    # Providers differ in size: a few large shops, many small UMKM.
    provider_weights = [rng.paretovariate(1.3) for _ in provider_docs]
    listed = 0
    n = 0
    while listed < products:
        n += 1
        provider = rng.choices(provider_docs, weights=provider_weights)[0]
        category = _weighted(rng, leaves)
        template = PRODUCTS[category][1]
        base = rng.choice(template.names)
        name = f"{base} {rng.choice(template.variants)}"
        low, high = template.price
        price = _round(low * (high / low) ** rng.random(), 500 if high > 20000 else 100)
        het = _round(price * rng.uniform(1.05, 1.3), 500) if rng.random() < 0.6 else None
        created = max(provider["created_at"], launch + timedelta(seconds=rng.random() * span))
        town = TOWN[provider["pemda_code"]]
        product_docs.append(
            {
                "_id": f"prd-{n:06d}",
                "provider_id": provider["_id"],
                "name": name,
                "description": f"{name}. Produk {provider['name']} dari {town}, siap kirim untuk kebutuhan dinas.",
                "category": category,
                "unit": template.unit,
                "price": price,
                "het": het,
                "stock": 0 if rng.random() < 0.05 else rng.randint(1, 500),
                "min_order_qty": rng.choice(template.min_qty),
                "images": [f"https://cdn.bejo.example/produk/prd-{n:06d}.jpg"],
                "regions": ["35"] if rng.random() < 0.2 else [provider["pemda_code"]],
                "status": (product_status := "inactive" if rng.random() < 0.03 else "active"),
                "version": 1,
                "created_at": created,
                "updated_at": created,
                HOLDS: [],
            }
        )
        listed += product_status == "active" and provider["status"] == "verified"

    by_provider: dict[str, list[str]] = {}
    for product in product_docs:
        by_provider.setdefault(product["provider_id"], []).append(product["_id"])
    sellers = [p for p in provider_docs if p["_id"] in by_provider]
    harbolnas = datetime(now.year, 12, 12, tzinfo=WIB)
    promotion_docs = []
    for n in range(1, min(promotions, len(sellers)) + 1):
        provider = rng.choice(sellers)
        if rng.random() < 0.5:  # Harbolnas 12.12, the whole day in WIB
            starts, ends, name = harbolnas, harbolnas + timedelta(days=1), "Harbolnas 12.12"
        else:  # running around the time of seeding, so the demo shows discounts
            starts = now - timedelta(days=rng.randint(0, 5))
            ends = now + timedelta(days=rng.randint(3, 30))
            name = rng.choice(["Promo Akhir Tahun", "Diskon UMKM Jatim", "Gratis Ongkir Se-Jatim", "Promo Gajian"])
        kind = _weighted(rng, [("percent", 6), ("fixed", 2), ("none", 2)])
        value = {"percent": rng.choice([5, 10, 12, 15, 20, 25]), "fixed": rng.choice([1000, 2500, 5000]), "none": 0}[
            kind
        ]
        scope = "provider" if rng.random() < 0.4 else "products"
        own = by_provider[provider["_id"]]
        promotion_docs.append(
            {
                "_id": f"promo-{n:05d}",
                "provider_id": provider["_id"],
                "name": name,
                "scope": scope,
                "product_ids": [] if scope == "provider" else rng.sample(own, k=min(len(own), rng.randint(1, 5))),
                "discount_kind": kind,
                "discount_value": value,
                "free_shipping": kind == "none" or rng.random() < 0.3,
                "starts_at": starts.astimezone(UTC),
                "ends_at": ends.astimezone(UTC),
                "created_by": f"user-{provider['_id']}",
                "created_at": now,
            }
        )
    return SeedData(provider_docs, product_docs, promotion_docs)


def products_with_terms(data: SeedData, now: datetime) -> Iterator[tuple[Document, Document, list[PromotionTerms]]]:
    """Each product with its provider and the promotions that apply to it now or later."""
    providers = {p["_id"]: p for p in data.providers}
    promotions_of = domain.by_provider(data.promotions)
    for product in data.products:
        provider = providers[product["provider_id"]]
        yield (
            product,
            provider,
            domain.terms_for(promotions_of.get(provider["_id"], []), product["_id"], provider["_id"], now),
        )


def feed_entries(data: SeedData, now: datetime) -> list[Document]:
    """The change feed for freshly seeded data: every provider, then every product."""
    changes = [Change("provider", p["_id"], p["version"], public_provider(p)) for p in data.providers] + [
        Change("product", product["_id"], product["version"], product_document(product, provider, terms))
        for product, provider, terms in products_with_terms(data, now)
    ]
    return [entry_document(seq, change, now) for seq, change in enumerate(changes, start=1)]


async def announce(
    settings: CatalogSettings, data: SeedData, now: datetime, report: Callable[[str], None], window: int = 500
) -> int:
    """Publish `ProductUpserted` for every seeded product, so that services keeping a copy of the
    catalog (orders' product read model) learn of them. The seed writes in bulk, past the outbox,
    so it announces with broker confirms itself. Returns how many were unroutable (nobody bound yet)."""
    bus = Bus(settings)
    await bus.connect()
    unroutable = 0
    try:
        started = time.perf_counter()
        envelopes = [
            bus.envelope(
                ProductUpserted(
                    product=domain.snapshot(
                        domain.Product.model_validate(product), domain.Provider.model_validate(provider), terms, now
                    )
                )
            )
            for product, provider, terms in products_with_terms(data, now)
        ]
        for start in range(0, len(envelopes), window):
            errors = await bus.publish_many(envelopes[start : start + window])
            unroutable += sum(1 for e in errors if isinstance(e, PublishError))
            failed = [e for e in errors if e is not None and not isinstance(e, PublishError)]
            if failed:
                raise failed[0]
            done = start + min(window, len(envelopes) - start)
            if done % (window * 10) == 0 or done == len(envelopes):
                report(f"  announced: {done:,}/{len(envelopes):,} ({time.perf_counter() - started:.1f}s)")
    finally:
        await bus.close()
    return unroutable


async def seed(
    settings: CatalogSettings,
    *,
    providers: int = DEFAULT_PROVIDERS,
    products: int = DEFAULT_PRODUCTS,
    promotions: int = DEFAULT_PROMOTIONS,
    random_seed: int = DEFAULT_RANDOM_SEED,
    report: Callable[[str], None] = print,
    batch: int = 1000,
    announce_products: bool = True,
) -> SeedData | None:
    """Write the data set into an empty catalog database; returns None (writing nothing) otherwise."""
    client = create_client(settings)
    try:
        store = CatalogStore(database(client, settings))
        if not await store.is_empty() or await Feed(store).head() > 0:
            report(
                f"catalog database {settings.database_name!r} already holds data; nothing written "
                "(seed an empty database, e.g. CATALOG_MONGODB_DATABASE=<new name>)"
            )
            return None
        started = time.perf_counter()
        now = utcnow()

        def progress(what: str, done: int, total: int) -> None:
            report(f"  {what}: {done:,}/{total:,} ({time.perf_counter() - started:.1f}s)")

        data = generate(providers, products, promotions, random_seed, now)
        entries = feed_entries(data, now)
        report(
            f"seeding {settings.database_name!r}: {len(data.providers):,} providers, {len(data.products):,} products, "
            f"{len(data.promotions):,} promotions, {len(entries):,} feed entries (random seed {random_seed})"
        )
        await store.providers.insert_many(data.providers, ordered=False)
        progress("providers", len(data.providers), len(data.providers))
        if data.promotions:
            await store.promotions.insert_many(data.promotions, ordered=False)
        progress("promotions", len(data.promotions), len(data.promotions))
        for name, docs, collection in (
            ("products", data.products, store.products),
            ("feed entries", entries, store.feed),
        ):
            for start in range(0, len(docs), batch * 4):
                chunk = docs[start : start + batch * 4]
                await collection.insert_many(chunk, ordered=False)
                progress(name, start + len(chunk), len(docs))
        if announce_products:
            unroutable = await announce(settings, data, now, report)
            if unroutable:
                report(
                    f"warning: {unroutable:,} product announcements reached no queue: the orders service was "
                    "never started on this broker, so it cannot take orders for seeded products yet. "
                    "Start the services first (make run), then seed."
                )
        report(f"done in {time.perf_counter() - started:.1f}s")
        return data
    finally:
        await client.close()


def _command(args: argparse.Namespace) -> int:
    if args.history:
        # A year of purchases through the sagas; it seeds the catalog first when it is empty.
        from bejo_cli.history import command

        return command(args)
    settings = CatalogSettings()
    result = asyncio.run(
        seed(
            settings,
            providers=args.providers,
            products=args.products,
            promotions=args.promotions,
            random_seed=args.random_seed,
            announce_products=not args.no_announce,
        )
    )
    return 0 if result is not None else 1


def register(subparsers: Any) -> None:
    """Plug `bejo seed` into the `bejo` command (entry point group `bejo.commands`)."""
    parser = subparsers.add_parser("seed", help="load realistic synthetic catalog data into an empty catalog")
    parser.add_argument("--providers", type=int, default=DEFAULT_PROVIDERS, help="how many providers (default 1659)")
    parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS, help="how many products (default 29477)")
    parser.add_argument("--promotions", type=int, default=DEFAULT_PROMOTIONS, help="how many promotions")
    parser.add_argument("--random-seed", type=int, default=DEFAULT_RANDOM_SEED, help="same seed, same data")
    parser.add_argument(
        "--no-announce", action="store_true", help="do not publish product events for the seeded products"
    )
    try:
        from bejo_cli.history import add_arguments
    except ImportError:  # the bejo command without the CLI's history module: catalog only
        pass
    else:
        add_arguments(parser)
    parser.set_defaults(func=_command, history=False)
