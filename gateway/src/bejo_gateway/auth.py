"""Token verification at the front door: the kit's TokenVerifier (HS256 locally, RS256 through
JWKS), behind a small cache of tokens already verified.

The cache is keyed by the exact token string and never outlives the token's own `exp`, so it
answers exactly what verifying again would (a token's signature does not change); it saves the
HMAC/RSA check and claim parsing on every request of a busy client.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import orjson

from bejo_kit.auth import Principal, TokenVerifier
from bejo_kit.errors import Unauthorized
from bejo_kit.settings import KitSettings


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", code="malformed_authorization")
    return token


def _expiry(token: str) -> float:
    """`exp` of a token that has just been verified (so its payload is trusted)."""
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return float(claims["exp"])


class Authenticator:
    def __init__(
        self,
        settings: KitSettings,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self._verifier = verifier or TokenVerifier(settings)
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def principal(self, authorization: str | None) -> Principal | None:
        """The caller, None when no Authorization header was sent; 401 for a header or token that fails."""
        if authorization is None:
            return None
        token = bearer_token(authorization)
        cached = self._cache.get(token)
        if cached is not None:
            if cached[1] > self._clock():
                return cached[0]
            del self._cache[token]
        principal = await self._verifier.verify(token)
        if len(self._cache) >= self._cache_size:
            # Drop the oldest tenth rather than one at a time.
            for stale in list(self._cache)[: max(1, self._cache_size // 10)]:
                del self._cache[stale]
        self._cache[token] = (principal, _expiry(token))
        return principal
