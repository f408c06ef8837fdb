"""JWT verification (HS256 shared secret locally, RS256 through JWKS in production) and minting.

The gateway and every service verify the same way, so a service reached directly is not open.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, cast, get_args

import jwt

from bejo_contracts.common import Role
from bejo_contracts.pemda import covers

from .errors import Forbidden, Unauthorized
from .settings import KitSettings

ROLES: tuple[str, ...] = get_args(Role)
BUYER_ROLES = frozenset({"pp", "ppk", "bendahara"})
OVERSIGHT_ROLES = frozenset({"admin", "auditor"})


@dataclass(frozen=True)
class Principal:
    sub: str
    name: str | None
    role: Role
    pemda: str
    satker: str | None = None
    provider_id: str | None = None
    token: str | None = None

    @classmethod
    def from_claims(cls, claims: dict[str, Any], token: str | None = None) -> Principal:
        missing = [c for c in ("sub", "role", "pemda") if not claims.get(c)]
        role = claims.get("role")
        if role and role not in ROLES:
            raise Unauthorized(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", code="invalid_token")
        if role in BUYER_ROLES and not claims.get("satker"):
            missing.append("satker")
        if role == "penyedia" and not claims.get("provider_id"):
            missing.append("provider_id")
        if missing:
            raise Unauthorized(
                f"token is missing claims: {', '.join(missing)}", code="missing_claims", missing_claims=missing
            )
        return cls(
            sub=str(claims["sub"]),
            name=claims.get("name"),
            role=cast(Role, role),  # checked against ROLES above
            pemda=str(claims["pemda"]),
            satker=claims.get("satker"),
            provider_id=claims.get("provider_id"),
            token=token,
        )

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(
                f"role {self.role!r} may not do this; requires one of: {', '.join(roles)}",
                code="role_required",
                required_roles=list(roles),
            )

    def oversees_pemda(self, pemda_code: str) -> bool:
        """An admin or auditor sees their pemda and the pemdas below it (province `35` sees `35.15`)."""
        return self.role in OVERSIGHT_ROLES and covers(self.pemda, pemda_code)


class TokenVerifier:
    def __init__(self, settings: KitSettings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True) if settings.jwt_jwks_url else None

    async def verify(self, token: str) -> Principal:
        if self._jwks is not None:
            try:
                # PyJWKClient fetches over blocking HTTP on a cache miss; keep it off the event loop.
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from None
            return self._decode(token, signing_key.key, ["RS256"])
        return self._decode(token, self._settings.jwt_secret, ["HS256"])

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", code="token_expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token audience is not accepted", code="invalid_audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token issuer is not accepted", code="invalid_issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(
                f"token is missing claims: {exc.claim}", code="missing_claims", missing_claims=[exc.claim]
            ) from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("token algorithm is not accepted", code="invalid_algorithm") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature does not verify", code="invalid_signature") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from None
        return Principal.from_claims(claims, token)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'", code="invalid_token")
    return token.strip()


def mint_token(
    settings: KitSettings,
    *,
    sub: str,
    role: str,
    pemda: str,
    name: str | None = None,
    satker: str | None = None,
    provider_id: str | None = None,
    ttl_seconds: int = 8 * 3600,
) -> str:
    """An HS256 token for local use and tests, signed with the shared secret."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "name": name or sub,
        "role": role,
        "pemda": pemda,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if satker:
        claims["satker"] = satker
    if provider_id:
        claims["provider_id"] = provider_id
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
