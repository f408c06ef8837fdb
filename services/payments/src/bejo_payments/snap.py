"""SNAP (Bank Indonesia Standar Nasional Open API Pembayaran) signatures, tokens and response codes.

Pure functions, no I/O.

B2B access token (`POST /v1.0/access-token/b2b`): the partner signs `client_id "|" X-TIMESTAMP`
with its RSA private key (SHA256withRSA, base64); we check it with the public key it registered.

Service calls: the string to sign is

    METHOD ":" path ":" access token ":" lowerhex(sha256(minified body)) ":" X-TIMESTAMP

and X-SIGNATURE is base64(HMAC-SHA512(client secret, string to sign)).

Minifying: the body exactly as sent, with only the whitespace outside strings removed. Values,
escapes (`\\/`, `\\u00e9`) and number formats (`1.50`) stay byte for byte: a parse-and-dump would
change them and refuse bodies their sender signed correctly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bejo_contracts.common import WIB

_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
# A JSON string (kept whole, escapes and all) or a run of JSON whitespace (dropped). Linear on valid
# JSON: every string is terminated, so each match ends where the next begins.
_STRING_OR_SPACE = re.compile(rb'("(?:[^"\\]|\\.)*")|[ \t\n\r]+', re.DOTALL)


def minify(body: bytes) -> bytes:
    """`body` without the whitespace between JSON tokens. Raises ValueError if it is not JSON."""
    orjson.loads(body)  # JSONDecodeError is a ValueError
    return _STRING_OR_SPACE.sub(lambda match: match.group(1) or b"", body)


def body_digest(body: bytes) -> str:
    return hashlib.sha256(minify(body)).hexdigest()


def string_to_sign(method: str, path: str, token: str, body: bytes, timestamp: str) -> str:
    return f"{method.upper()}:{path}:{token}:{body_digest(body)}:{timestamp}"


def sign(secret: str, method: str, path: str, token: str, body: bytes, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), string_to_sign(method, path, token, body, timestamp).encode(), hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def verify(secret: str, signature: str, method: str, path: str, token: str, body: bytes, timestamp: str) -> bool:
    try:
        expected = sign(secret, method, path, token, body, timestamp)
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


# -- B2B access token: asymmetric signature ------------------------------------------------------


def token_string_to_sign(client_id: str, timestamp: str) -> bytes:
    return f"{client_id}|{timestamp}".encode()


def sign_token_request(private_key_pem: str, client_id: str, timestamp: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the SNAP access-token signature needs an RSA private key")
    signature = key.sign(token_string_to_sign(client_id, timestamp), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def load_public_key(public_key_pem: str) -> rsa.RSAPublicKey:
    """Raises ValueError unless the PEM is an RSA public key."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a SNAP partner's public key must be RSA")
    return key


def verify_token_request(public_key: rsa.RSAPublicKey, signature: str, client_id: str, timestamp: str) -> bool:
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        public_key.verify(raw, token_string_to_sign(client_id, timestamp), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent or of another form."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def token_digest(token: str) -> str:
    """Tokens are stored by digest only: a read of the database does not yield usable tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- timestamps and ids ----------------------------------------------------------------------------


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in WIB with second precision, as SNAP sends it: 2026-11-27T19:43:50+07:00."""
    return moment.astimezone(WIB).replace(microsecond=0).isoformat()


def parse_timestamp(value: str) -> datetime:
    """An ISO-8601 timestamp that carries its UTC offset; raises ValueError otherwise."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("X-TIMESTAMP must carry a UTC offset, e.g. +07:00")
    return parsed


def within_window(timestamp: datetime, now: datetime, window_seconds: float) -> bool:
    return abs((now - timestamp).total_seconds()) <= window_seconds


def valid_external_id(value: str) -> bool:
    return bool(_EXTERNAL_ID.match(value))


def idempotency_key(partner_id: str, timestamp: datetime, external_id: str) -> str:
    """X-EXTERNAL-ID is unique per partner per day (the WIB calendar day of the signed timestamp)."""
    return f"{partner_id}:{timestamp.astimezone(WIB).date().isoformat()}:{external_id}"


def nesting_depth(value: Any) -> int:
    """How deep objects and arrays nest in a parsed JSON value (a scalar is 0). Iterative, so a
    hostile body cannot exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


# -- response codes: HTTP status (3) + service code (2) + case code (2) -------------------------

SERVICE_VA_PAYMENT = "25"  # SNAP service code of the VA payment notification
SERVICE_ACCESS_TOKEN = "73"  # SNAP service code of the B2B access token


@dataclass(frozen=True)
class Code:
    http_status: int
    case: str
    message: str
    name: str  # the stable machine-readable name, as the `code` of a problem
    service: str = SERVICE_VA_PAYMENT

    @property
    def code(self) -> str:
        return f"{self.http_status}{self.service}{self.case}"

    def body(self, detail: str | None = None, **extra: Any) -> dict[str, Any]:
        """SNAP's answer. A refusal also carries the RFC 9457 problem members, so it reads as a SNAP
        answer to a bank and as a problem to anything else."""
        message = f"{self.message} [{detail}]" if detail else self.message
        body: dict[str, Any] = {"responseCode": self.code, "responseMessage": message}
        if self.http_status >= 400:
            body.update(
                type=f"https://bejo.dev/problems/{self.name}",
                title=self.message,
                status=self.http_status,
                detail=message,
                code=self.name,
            )
        return {**body, **extra}


SUCCESS = Code(200, "00", "Successful", "successful")
BAD_REQUEST = Code(400, "00", "Bad Request", "snap_bad_request")
INVALID_FIELD_FORMAT = Code(400, "01", "Invalid Field Format", "invalid_field_format")
MISSING_MANDATORY_FIELD = Code(400, "02", "Invalid Mandatory Field", "missing_mandatory_field")
UNAUTHORIZED_SIGNATURE = Code(401, "00", "Unauthorized. Invalid Signature", "invalid_signature")
INVALID_TOKEN = Code(401, "01", "Invalid Token (B2B)", "invalid_access_token")
STALE_TIMESTAMP = Code(401, "02", "Unauthorized. X-TIMESTAMP outside the allowed window", "stale_timestamp")
TRANSACTION_CANCELLED = Code(404, "04", "Transaction Cancelled", "transaction_cancelled")
UNKNOWN_BILL = Code(404, "12", "Invalid Bill/Virtual Account", "unknown_bill")
INVALID_AMOUNT = Code(404, "13", "Invalid Amount", "invalid_amount")
PAID_BILL = Code(404, "14", "Paid Bill", "paid_bill")
EXPIRED_BILL = Code(404, "19", "Invalid Bill/Virtual Account (expired)", "expired_bill")
DUPLICATE_EXTERNAL_ID = Code(
    409, "00", "Conflict. X-EXTERNAL-ID already used today with another body", "duplicate_external_id"
)

TOKEN_SUCCESS = Code(200, "00", "Successful", "successful", SERVICE_ACCESS_TOKEN)
TOKEN_BAD_REQUEST = Code(400, "00", "Bad Request", "snap_bad_request", SERVICE_ACCESS_TOKEN)
TOKEN_INVALID_FIELD_FORMAT = Code(400, "01", "Invalid Field Format", "invalid_field_format", SERVICE_ACCESS_TOKEN)
TOKEN_MISSING_MANDATORY_FIELD = Code(
    400, "02", "Invalid Mandatory Field", "missing_mandatory_field", SERVICE_ACCESS_TOKEN
)
TOKEN_UNAUTHORIZED = Code(401, "00", "Unauthorized", "invalid_signature", SERVICE_ACCESS_TOKEN)


@dataclass(frozen=True)
class Reply:
    """An answer of a SNAP endpoint: its HTTP status and SNAP body."""

    http_status: int
    body: dict[str, Any]


def reply(code: Code, detail: str | None = None, **extra: Any) -> Reply:
    return Reply(code.http_status, code.body(detail, **extra))
