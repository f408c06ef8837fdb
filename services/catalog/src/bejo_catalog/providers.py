"""Providers (penyedia): registration, visibility, and verification/suspension by an admin."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from bejo_contracts import Actor
from bejo_contracts.catalog import (
    ProductUpserted,
    ProviderEvent,
    ProviderRegistered,
    ProviderStatus,
    ProviderSuspended,
    ProviderVerified,
)
from bejo_contracts.pemda import subtree_regex
from bejo_kit.auth import Principal
from bejo_kit.concurrency import WriteConflict
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.mongo import Document, utcnow

from . import domain
from .context import CatalogContext, actor_of, problem, user_retry
from .domain import Provider, RuleViolation
from .feed import provider_from_document
from .repository import fed, fed_document, public_provider


def provider_event_fields(provider: Provider, actor: Actor) -> dict[str, Any]:
    return {
        "provider_id": provider.id,
        "name": provider.name,
        "legal_entity": provider.legal_entity,
        "pemda_code": provider.pemda_code,
        "email": provider.email,
        "pkp": provider.pkp,
        "status": provider.status,
        "actor": actor,
    }


def sees_in_full(principal: Principal | None, provider: Provider) -> bool:
    """The provider itself and the admins/auditors overseeing its pemda."""
    return principal is not None and (
        principal.provider_id == provider.id or principal.oversees_pemda(provider.pemda_code)
    )


def may_see_provider(principal: Principal | None, provider: Provider) -> bool:
    return provider.status == "verified" or sees_in_full(principal, provider)


def provider_view(principal: Principal | None, provider: Provider) -> Document:
    """The NPWP only for the provider itself and overseeing admins/auditors."""
    document = provider.document()
    return document if sees_in_full(principal, provider) else provider_from_document(public_provider(document))


def index_entry(provider: Provider) -> Document:
    """What the search model keeps of a provider: its public document."""
    return provider_from_document(public_provider(provider.document()))


class Providers:
    def __init__(self, ctx: CatalogContext) -> None:
        self.ctx = ctx

    async def register(self, principal: Principal, fields: dict[str, Any]) -> Provider:
        """A penyedia registers the provider its token names (`provider_id` claim)."""
        ctx = self.ctx
        provider_id = principal.provider_id
        if provider_id is None or not domain.PROVIDER_ID_PATTERN.match(provider_id):
            raise ValidationProblem.field("provider_id", "the token's provider_id must be 1-64 letters, digits, . _ -")
        try:
            name = domain.check_name("name", fields["name"])
            npwp = domain.normalize_npwp(fields["npwp"])
            phone = domain.normalize_phone(fields["phone"])
            pemda = domain.check_pemda("pemda_code", fields["pemda_code"])
        except RuleViolation as exc:
            raise problem(exc) from None
        now = utcnow()
        provider = Provider(
            id=provider_id,
            name=name,
            legal_entity=fields["legal_entity"],
            nib=fields["nib"],
            npwp=npwp,
            pkp=fields["pkp"],
            pemda_code=pemda,
            address=fields["address"].strip(),
            email=fields["email"].strip().lower(),
            phone=phone,
            status="pending",
            version=1,
            registered_by=principal.sub,
            created_at=now,
            updated_at=now,
        )
        event = ProviderRegistered(**provider_event_fields(provider, actor_of(principal)))
        try:
            await ctx.outbox.insert_one(ctx.store.providers, fed_document(provider.document()), [ctx.envelope(event)])
        except DuplicateKeyError:
            raise Conflict(f"provider {provider_id} is already registered", code="already_registered") from None
        ctx.index.put_provider(index_entry(provider))
        ctx.fed()
        return provider

    async def get(self, principal: Principal | None, provider_id: str) -> Document:
        provider = await self.ctx.store.provider(provider_id)
        if provider is None or not may_see_provider(principal, provider):
            raise NotFound(f"no provider {provider_id}")
        return provider_view(principal, provider)

    async def list_page(
        self, principal: Principal | None, pemda_code: str | None, status: str | None, after: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        filter_: Document = {}
        if pemda_code:
            filter_["pemda_code"] = {"$regex": subtree_regex(pemda_code)}
        if status:
            filter_["status"] = status
        page: list[Document] = []
        while len(page) <= limit:
            batch = await self.ctx.store.list_providers(filter_, after, 2 * limit)
            providers = [Provider.model_validate(doc) for doc in batch]
            page += [provider_view(principal, p) for p in providers if may_see_provider(principal, p)]
            if len(batch) < 2 * limit:
                break
            after = batch[-1]["_id"]
        more = len(page) > limit
        page = page[:limit]
        return page, page[-1]["_id"] if more else None

    async def change_status(
        self, principal: Principal, provider_id: str, target: ProviderStatus, reason: str | None
    ) -> Provider:
        ctx = self.ctx

        async def attempt() -> Provider:
            provider = await ctx.store.provider(provider_id)
            if provider is None or not principal.oversees_pemda(provider.pemda_code):
                raise NotFound(f"no provider {provider_id}")
            now = utcnow()
            updated = provider.with_status(target, reason, now)
            fields = provider_event_fields(updated, actor_of(principal))
            event: ProviderEvent = (
                ProviderVerified(**fields, reason=reason)
                if target == "verified"
                else ProviderSuspended(**fields, reason=reason or "")
            )
            # Every product's public standing changes with its provider: orders keeps a copy.
            promotions = await ctx.store.promotions_of(provider_id)
            envelopes = [ctx.envelope(event)] + [
                ctx.envelope(
                    ProductUpserted(
                        product=domain.snapshot(
                            product, updated, domain.terms_for(promotions, product.id, provider_id, now), now
                        )
                    )
                )
                for product in await ctx.store.products_of(provider_id)
            ]
            written = await ctx.outbox.update_one(
                ctx.store.providers,
                {"_id": provider_id, "version": provider.version},
                fed({"$set": {"status": target, "status_reason": reason, "updated_at": now}, "$inc": {"version": 1}}),
                envelopes,
            )
            if not written:
                raise WriteConflict(provider_id)
            return updated

        updated = await user_retry(attempt, "provider")
        ctx.index.put_provider(index_entry(updated))
        ctx.fed()
        return updated
