"""SNAP (Bank Indonesia Standar Nasional Open API Pembayaran) symmetric signatures and response codes.

Pure functions, no I/O. The string to sign of a service call is

    METHOD ":" path ":" token ":" lowerhex(sha256(minified body)) ":" X-TIMESTAMP

and X-SIGNATURE is base64(HMAC-SHA512(client secret, string to sign)).

Minifying: the body bytes are parsed as JSON and dumped again with no whitespace between tokens
(separators "," and ":"), object keys in their original order, non-ASCII characters kept as
UTF-8 (not \\u-escaped), then UTF-8 encoded. The sender signs the minified form of what it sends; the
receiver minifies the exact bytes it received, so whitespace the sender added does not matter but any
change of a value does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bejo_contracts.common import WIB

_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")


def minify(body: bytes) -> bytes:
    """Raises ValueError if the body is not JSON."""
    parsed = json.loads(body)
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


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


# -- response codes: HTTP status (3) + service code (2) + case code (2) -------------------------

SERVICE_VA_PAYMENT = "25"  # SNAP service code of the VA payment notification


@dataclass(frozen=True)
class Code:
    http_status: int
    case: str
    message: str

    @property
    def code(self) -> str:
        return f"{self.http_status}{SERVICE_VA_PAYMENT}{self.case}"

    def body(self, detail: str | None = None, **extra: Any) -> dict[str, Any]:
        message = f"{self.message} [{detail}]" if detail else self.message
        return {"responseCode": self.code, "responseMessage": message, **extra}


SUCCESS = Code(200, "00", "Successful")
BAD_REQUEST = Code(400, "00", "Bad Request")
INVALID_FIELD_FORMAT = Code(400, "01", "Invalid Field Format")
MISSING_MANDATORY_FIELD = Code(400, "02", "Invalid Mandatory Field")
UNAUTHORIZED_SIGNATURE = Code(401, "00", "Unauthorized. Invalid Signature")
STALE_TIMESTAMP = Code(401, "02", "Unauthorized. X-TIMESTAMP outside the allowed window")
TRANSACTION_CANCELLED = Code(404, "04", "Transaction Cancelled")
UNKNOWN_BILL = Code(404, "12", "Invalid Bill/Virtual Account")
INVALID_AMOUNT = Code(404, "13", "Invalid Amount")
PAID_BILL = Code(404, "14", "Paid Bill")
EXPIRED_BILL = Code(404, "19", "Invalid Bill/Virtual Account (expired)")
DUPLICATE_EXTERNAL_ID = Code(409, "00", "Conflict. X-EXTERNAL-ID already used today with another body")
