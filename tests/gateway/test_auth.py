"""Tokens, roles and rate limits at the front door, against real upstream apps."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from support import bearer, serve, token

from bejo_gateway.auth import Authenticator
from bejo_kit.auth import Principal, TokenVerifier
from bejo_kit.settings import KitSettings

KIT = KitSettings()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "pp-1",
        "name": "Bu Sari",
        "role": "pp",
        "pemda": "35.15",
        "satker": "dinkes",
        "iss": KIT.jwt_issuer,
        "aud": KIT.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = KIT.jwt_secret) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        import orjson

        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


BAD_TOKENS = {
    "expired": (f"Bearer {hs256(claims(exp=int(time.time()) - 60))}", "token_expired"),
    "alg none": (f"Bearer {unsigned(claims())}", "invalid_algorithm"),
    "wrong key": (f"Bearer {hs256(claims(), secret='somebody-elses-secret-of-32-bytes!')}", "invalid_signature"),
    "wrong issuer": (f"Bearer {hs256(claims(iss='evil-idp'))}", "invalid_issuer"),
    "wrong audience": (f"Bearer {hs256(claims(aud='other-app'))}", "invalid_audience"),
    "missing role": (f"Bearer {hs256(claims(role=None))}", "missing_claims"),
    "missing satker": (f"Bearer {hs256(claims(satker=None))}", "missing_claims"),
    "missing exp": (f"Bearer {hs256(claims(exp=None))}", "missing_claims"),
    "not a jwt": ("Bearer not.a.jwt", "invalid_token"),
    "basic scheme": ("Basic cHA6cHA=", "malformed_authorization"),
    "empty bearer": ("Bearer ", "malformed_authorization"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_each_bad_token_is_refused_with_its_own_code(case: str, start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    header, code = BAD_TOKENS[case]
    # Even a public route refuses a token that is sent and does not verify.
    for path in ("/api/v1/orders", "/api/v1/products"):
        async with http.get(stack.gateway + path, headers={"Authorization": header}) as answer:
            assert answer.status == 401
            assert answer.content_type == "application/problem+json"
            problem = await answer.json()
    assert problem["code"] == code, problem
    assert problem["request_id"] == answer.headers["X-Request-ID"]
    assert stack.upstreams["orders"].seen == [] and stack.upstreams["catalog"].seen == []


async def test_anonymous_browsing_and_the_rest_of_the_public_surface(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    for method, path, upstream in [
        ("GET", "/api/v1/products?q=kopi&sort=price_asc", "catalog"),
        ("GET", "/api/v1/categories", "catalog"),
        ("GET", "/api/v1/providers/pv-1", "catalog"),
        ("GET", "/api/v1/catalog/feed?after=0", "catalog"),
        ("GET", "/api/v1/ocds/releases", "orders"),
        ("POST", "/api/v1/payments/callbacks/snap", "payments"),
    ]:
        async with http.request(method, stack.gateway + path, data=b"{}") as answer:
            assert answer.status == 200, (path, await answer.text())
            assert (await answer.json())["upstream"] == upstream
    assert stack.upstreams["catalog"].seen[0]["query"] == {"q": "kopi", "sort": "price_asc"}


async def test_missing_token_then_wrong_role_then_right_role(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    url = stack.gateway + "/api/v1/providers/pv-1/verify"
    async with http.post(url) as answer:
        assert answer.status == 401
        assert (await answer.json())["code"] == "missing_token"
    pp = token("pp", "pp-1", satker="dinkes")
    async with http.post(url, headers=bearer(pp)) as answer:
        assert answer.status == 403
        problem = await answer.json()
    assert problem["code"] == "role_required"
    assert problem["required_roles"] == ["admin"]
    assert "admin" in problem["detail"]
    assert stack.upstreams["catalog"].seen == []
    admin = token("admin", "admin-1", pemda="35")
    async with http.post(url, headers=bearer(admin), json={"reason": "ok"}) as answer:
        assert answer.status == 200
    # The token travels on so the service verifies it too.
    assert stack.upstreams["catalog"].last()["headers"]["Authorization"] == [f"Bearer {admin}"]


async def test_rate_limit_per_subject_gives_429_with_retry_after(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(rate_limit_per_second=0.5, rate_limit_burst=3)
    busy = bearer(token("ppk", "ppk-1", satker="dinkes"))
    remaining = []
    for _ in range(3):
        async with http.get(stack.gateway + "/api/v1/orders", headers=busy) as answer:
            assert answer.status == 200
            assert answer.headers["RateLimit-Limit"] == "3"
            remaining.append(answer.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    async with http.get(stack.gateway + "/api/v1/orders", headers=busy) as answer:
        assert answer.status == 429
        problem = await answer.json()
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.headers["RateLimit-Remaining"] == "0"
        assert int(answer.headers["RateLimit-Reset"]) >= 1
    assert problem["code"] == "rate_limited"
    assert len(stack.upstreams["orders"].seen) == 3
    # Another subject has a bucket of its own.
    async with http.get(stack.gateway + "/api/v1/orders", headers=bearer(token("pp", "pp-9", satker="x"))) as answer:
        assert answer.status == 200


async def test_anonymous_clients_are_limited_by_ip_and_spoofed_forwarded_for_is_ignored(
    start_gateway: Any, http: Any
) -> None:
    stack = await start_gateway(rate_limit_per_second=0.5, rate_limit_burst=2)
    statuses = []
    for i in range(3):
        async with http.get(stack.gateway + "/api/v1/products", headers={"X-Forwarded-For": f"9.9.9.{i}"}) as answer:
            statuses.append(answer.status)
    assert statuses == [200, 200, 429]
    # The spoofed header was replaced by the real peer on the way up.
    assert stack.upstreams["catalog"].last()["headers"]["X-Forwarded-For"] == ["127.0.0.1"]


async def test_behind_a_trusted_proxy_each_client_ip_has_its_bucket(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(rate_limit_per_second=0.5, rate_limit_burst=1, trusted_proxies=["127.0.0.1"])
    for client in ("198.51.100.1", "198.51.100.2"):
        async with http.get(stack.gateway + "/api/v1/products", headers={"X-Forwarded-For": client}) as answer:
            assert answer.status == 200
    async with http.get(stack.gateway + "/api/v1/products", headers={"X-Forwarded-For": "198.51.100.1"}) as answer:
        assert answer.status == 429
    assert stack.upstreams["catalog"].last()["headers"]["X-Forwarded-For"] == ["198.51.100.2, 127.0.0.1"]


async def test_bad_tokens_are_charged_to_the_client_ip(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(rate_limit_per_second=0.5, rate_limit_burst=2)
    statuses = []
    for _ in range(3):
        async with http.get(stack.gateway + "/api/v1/orders", headers={"Authorization": "Bearer guess"}) as answer:
            statuses.append(answer.status)
    assert statuses == [401, 401, 429]


# -- RS256 through a JWKS URL (a real identity provider's set-up) ------------------------------


@pytest.fixture
async def identity_provider() -> AsyncIterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    async with serve(app) as url:
        yield f"{url}/.well-known/jwks.json", key


async def test_rs256_through_jwks(
    identity_provider: tuple[str, rsa.RSAPrivateKey], start_gateway: Any, http: Any
) -> None:
    jwks_url, key = identity_provider
    stack = await start_gateway(jwt_jwks_url=jwks_url)
    good = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "k1"})
    async with http.get(stack.gateway + "/api/v1/orders", headers=bearer(good)) as answer:
        assert answer.status == 200
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other_key, algorithm="RS256", headers={"kid": "k1"})
    async with http.get(stack.gateway + "/api/v1/orders", headers=bearer(forged)) as answer:
        assert answer.status == 401
        assert (await answer.json())["code"] == "invalid_signature"
    # The shared HS256 secret is not accepted once a real identity provider is configured.
    async with http.get(stack.gateway + "/api/v1/orders", headers=bearer(hs256(claims()))) as answer:
        assert answer.status == 401


class CountingVerifier(TokenVerifier):
    def __init__(self, settings: KitSettings) -> None:
        super().__init__(settings)
        self.calls = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        return await super().verify(token)


async def test_verified_tokens_are_cached_no_longer_than_their_expiry() -> None:
    now = [time.time()]
    verifier = CountingVerifier(KIT)
    authenticator = Authenticator(KIT, clock=lambda: now[0], verifier=verifier)
    jwt_ = hs256(claims(exp=int(now[0]) + 100))
    first = await authenticator.principal(f"Bearer {jwt_}")
    second = await authenticator.principal(f"Bearer {jwt_}")
    assert first == second and first is not None and first.sub == "pp-1"
    assert verifier.calls == 1
    now[0] += 101  # past the token's exp: the cache must not answer any more
    await authenticator.principal(f"Bearer {jwt_}")
    assert verifier.calls == 2
    assert await authenticator.principal(None) is None
