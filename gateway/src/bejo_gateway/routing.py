"""Which upstream serves a path, which headers cross the hop, who the client is. Pure functions.

Paths are forwarded unchanged; a prefix matches whole segments only (`/api/v1/orders` serves
`/api/v1/orders` and `/api/v1/orders/…`, never `/api/v1/ordersx`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

# The binding agreement between the gateway and the services (see the briefing).
ROUTES: tuple[tuple[str, str], ...] = (
    ("/api/v1/providers", "catalog"),
    ("/api/v1/products", "catalog"),
    ("/api/v1/categories", "catalog"),
    ("/api/v1/promotions", "catalog"),
    ("/api/v1/catalog", "catalog"),
    ("/api/v1/orders", "orders"),
    ("/api/v1/ocds", "orders"),
    ("/api/v1/redflags", "orders"),
    ("/api/v1/payments", "payments"),
    ("/api/v1/sandbox", "payments"),
    ("/api/v1/notifications", "notifications"),
    ("/api/v1/webhooks", "notifications"),
)
UPSTREAMS: tuple[str, ...] = ("catalog", "orders", "payments", "notifications")

_API_PREFIX = "/api/v1/"
# First segment after /api/v1/ -> upstream: one dict look-up per request instead of a scan.
_BY_SEGMENT: dict[str, str] = {prefix.removeprefix(_API_PREFIX): upstream for prefix, upstream in ROUTES}


# SNAP fixes the B2B access-token path for every partner, outside /api/v1.
SNAP_PATHS: dict[str, str] = {"/v1.0/access-token/b2b": "payments"}


def upstream_for(path: str) -> str | None:
    """The upstream serving `path`, or None when no prefix matches."""
    if not path.startswith(_API_PREFIX):
        return SNAP_PATHS.get(path)
    rest = path[len(_API_PREFIX) :]
    segment, _, _ = rest.partition("/")
    return _BY_SEGMENT.get(segment)


# RFC 9110 §7.6.1 hop-by-hop fields, plus framing the gateway redoes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway on the way up; a client's own values are replaced, never trusted.
_REPLACED_UPSTREAM = frozenset(
    {"host", "content-length", "x-request-id", "x-correlation-id", "x-forwarded-for", "x-forwarded-proto",
     "x-forwarded-host", "forwarded", "x-real-ip", "expect"}
)  # fmt: skip
# Set by the gateway on the way down (framing, its own id, CORS and rate-limit policy).
_REPLACED_DOWNSTREAM = frozenset(
    {"content-length", "x-request-id", "access-control-allow-origin", "access-control-allow-credentials",
     "access-control-expose-headers", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "server", "date"}
)  # fmt: skip


def _connection_listed(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    """Fields a sender declared hop-by-hop in its Connection header."""
    listed: set[str] = set()
    for value in headers.getall("Connection", ()):
        listed.update(token.strip().lower() for token in value.split(",") if token.strip())
    return listed


def upstream_request_headers(
    incoming: CIMultiDictProxy[str] | CIMultiDict[str],
    *,
    request_id: str,
    correlation_id: str,
    forwarded_for: str,
    scheme: str,
    host: str | None,
) -> CIMultiDict[str]:
    """The client's end-to-end headers, plus the ids and X-Forwarded-* the services rely on."""
    drop = HOP_BY_HOP | _REPLACED_UPSTREAM | _connection_listed(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        if name.lower() not in drop:
            out.add(name, value)
    out["X-Request-ID"] = request_id
    out["X-Correlation-ID"] = correlation_id
    out["X-Forwarded-For"] = forwarded_for
    out["X-Forwarded-Proto"] = scheme
    if host:
        out["X-Forwarded-Host"] = host
    return out


def client_response_headers(upstream: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The upstream's end-to-end headers; framing, ids, CORS and rate-limit headers are the gateway's."""
    drop = HOP_BY_HOP | _REPLACED_DOWNSTREAM | _connection_listed(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`10.0.0.0/8`, `127.0.0.1` or `::1` → networks; a bad entry is a configuration error."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's IP: the peer, unless the peer is a trusted proxy, then the right-most untrusted
    address of X-Forwarded-For (entries left of it could be forged by the client)."""
    address = peer or "unknown"
    if not proxies or not forwarded_for or not _trusted(address, proxies):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, proxies):
            return hop
        address = hop
    return address


def forwarded_for_chain(peer: str | None, incoming: str | None, proxies: Sequence[Network]) -> str:
    """X-Forwarded-For to send up: the trusted chain extended with the peer, or just the peer."""
    peer = peer or "unknown"
    if incoming and proxies and _trusted(peer, proxies):
        return f"{incoming}, {peer}"
    return peer


_REQUEST_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")


def acceptable_request_id(value: str | None) -> bool:
    """A client's X-Request-ID is kept when it is short and plain (it ends up in every log line)."""
    return value is not None and 0 < len(value) <= 128 and all(c in _REQUEST_ID_CHARS for c in value)


def suspicious_path(path: str, raw_path: str) -> bool:
    """Dot segments or encoded slashes could make the gateway and a service read a path differently."""
    lowered = raw_path.split("?", 1)[0].lower()
    if "%2f" in lowered or "%5c" in lowered or "%2e" in lowered:
        return True
    return any(segment in (".", "..") for segment in path.split("/"))


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding value admits gzip (`gzip;q=0` refuses it)."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False
