"""Figures of the benchmarks that print their results (kit, orders, payments, notifications): read
from their printed lines, so those modules stay runnable alone with the same output."""

from __future__ import annotations

import re
from collections.abc import Callable

from bench.report import record


def _number(pattern: str, lines: list[str]) -> float | None:
    for line in lines:
        found = re.search(pattern, line)
        if found:
            return float(found.group(1).replace(",", ""))
    return None


def kit(lines: list[str]) -> None:
    raw = _number(r"raw aio-pika.*?([\d.]+) msg/s", lines)
    for label, pattern in (("settled writes", r"settled writes\s+([\d.]+) msg/s"),
                           ("sweep after a crash", r"sweep \(lease \+ publish\)\s*([\d.]+) msg/s")):  # fmt: skip
        rate = _number(pattern, lines)
        if raw and rate is not None:
            record(
                "3",
                f"outbox relay, {label}",
                f"{rate:,.0f} msg/s",
                baseline=f"raw aio-pika confirmed publish: {raw:,.0f} msg/s",
                ratio=rate / raw,
                goal="≥ 0.8x" if label == "settled writes" else "",
                met=rate / raw >= 0.8 if label == "settled writes" else None,
            )


def orders(lines: list[str]) -> None:
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        header = re.match(r"-- (\d+) replica", line)
        if header:
            sections.append((header.group(1), []))
        elif sections:
            sections[-1][1].append(line)
    for replicas, part in sections:
        placed = _number(r"POST /orders \(baseline\)\s+([\d.]+) orders/s", part)
        approved = _number(r"placed -> approved\s+([\d.]+) orders/s", part)
        p50 = _number(r"placed -> approved.*?p50\s+([\d.]+) ms", part)
        oversell = _number(r"oversell = (\d+)", part)
        if approved is None or placed is None:
            continue
        sold = "not measured (cut off)" if oversell is None else f"{oversell:.0f}"
        record(
            "2",
            f"checkout saga placed -> approved, {replicas} replica(s)",
            f"{approved:.1f} orders/s (p50 {p50 or 0:.0f} ms), oversell {sold}",
            baseline=f"POST-only placement: {placed:.1f} orders/s",
            ratio=approved / placed,
            goal="≥ 100 orders/s, 0 oversell",
            met=approved >= 100 and oversell == 0,
        )


def payments(lines: list[str]) -> None:
    forged = _number(r"^baseline\s+\d+ callbacks\s+([\d.]+)/s", lines)
    paying = _number(r"^pay\s+\d+ callbacks\s+([\d.]+)/s", lines)
    if forged and paying is not None:
        record(
            "6",
            "paying SNAP callbacks",
            f"{paying:,.0f}/s",
            baseline=f"forged-signature rejects: {forged:,.0f}/s",
            ratio=paying / forged,
            goal="≥ 0.3x",
            met=paying / forged >= 0.3,
        )


def notifications(lines: list[str]) -> None:
    rate = _number(r"webhook delivery throughput\s+([\d.]+) deliveries/s", lines)
    raw = _number(r"raw signed aiohttp POSTs \(baseline\)\s+([\d.]+) req/s", lines)
    if rate is not None and raw:
        record(
            "6",
            "webhook deliveries",
            f"{rate:,.0f}/s",
            baseline=f"raw signed POSTs: {raw:,.0f}/s",
            ratio=rate / raw,
            goal="≥ 0.3x",
            met=rate / raw >= 0.3,
        )


FROM_OUTPUT: dict[str, Callable[[list[str]], None]] = {
    "kit": kit,
    "orders": orders,
    "payments": payments,
    "notifications": notifications,
}
