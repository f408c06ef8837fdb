"""Tokens for the people in the tests, signed with the settings' (test) key."""

from __future__ import annotations

from bejo_kit.auth import mint_token
from bejo_kit.settings import KitSettings


def token(
    role: str,
    sub: str,
    *,
    pemda: str = "35.15",
    satker: str | None = None,
    provider_id: str | None = None,
    name: str | None = None,
    settings: KitSettings | None = None,
) -> str:
    return mint_token(
        settings or KitSettings(),
        sub=sub,
        role=role,
        pemda=pemda,
        satker=satker,
        provider_id=provider_id,
        name=name,
    )


def bearer(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}
