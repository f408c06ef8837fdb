"""SNAP B2B access tokens (`POST /v1.0/access-token/b2b`): a bank proves who it is with an RSA
signature of `client_id|X-TIMESTAMP` and gets a short-lived bearer token, which its service calls
(payment notifications) then carry and sign."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

import orjson

from . import snap
from .repository import PaymentsRepository
from .settings import PaymentsSettings

TOKEN_PATH = "/v1.0/access-token/b2b"


class AccessTokens:
    def __init__(self, settings: PaymentsSettings, repo: PaymentsRepository) -> None:
        self.settings = settings
        self.repo = repo
        self._keys = {partner: snap.load_public_key(pem) for partner, pem in settings.snap_public_keys.items()}

    async def issue(self, headers: Mapping[str, str], body: bytes, now: datetime) -> snap.Reply:
        """Check the request's signature with the partner's registered key, then hand out a token."""
        for name in ("X-CLIENT-KEY", "X-TIMESTAMP", "X-SIGNATURE"):
            if not headers.get(name):
                return snap.reply(snap.TOKEN_MISSING_MANDATORY_FIELD, name)
        client_id, signature, stamp = headers["X-CLIENT-KEY"], headers["X-SIGNATURE"], headers["X-TIMESTAMP"]
        try:
            timestamp = snap.parse_timestamp(stamp)
        except ValueError:
            return snap.reply(snap.TOKEN_INVALID_FIELD_FORMAT, "X-TIMESTAMP")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return snap.reply(snap.TOKEN_BAD_REQUEST, "body is not JSON")
        if not isinstance(payload, dict) or "grantType" not in payload:
            return snap.reply(snap.TOKEN_MISSING_MANDATORY_FIELD, "grantType")
        if payload["grantType"] != "client_credentials":
            return snap.reply(snap.TOKEN_INVALID_FIELD_FORMAT, "grantType must be client_credentials")
        if not snap.within_window(timestamp, now, self.settings.snap_timestamp_window_seconds):
            return snap.reply(snap.TOKEN_UNAUTHORIZED, "X-TIMESTAMP outside the allowed window")
        key = self._keys.get(client_id)
        if key is None or not snap.verify_token_request(key, signature, client_id, stamp):
            return snap.reply(snap.TOKEN_UNAUTHORIZED, "Signature")
        token = secrets.token_urlsafe(32)
        ttl = self.settings.snap_token_ttl_seconds
        await self.repo.store_access_token(snap.token_digest(token), client_id, now, now + timedelta(seconds=ttl))
        return snap.reply(snap.TOKEN_SUCCESS, accessToken=token, tokenType="Bearer", expiresIn=str(ttl))

    async def holder(self, token: str, now: datetime) -> str | None:
        """The partner a token was issued to, while it is valid; None for an unknown or expired one."""
        record = await self.repo.access_token(snap.token_digest(token))
        if record is None or record["expires_at"] <= now:
            return None
        return str(record["client_id"])
