"""Defects the API fuzzing found, pinned where they live (the fuzzing finds them again only by chance)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from bejo_orders.rules import wib_day_bounds


def test_the_first_and_last_representable_days_leave_the_period_open() -> None:
    # GET /orders/stats?from=0001-01-01 was a 500: 0001-01-01 00:00 WIB is in year 0 in UTC.
    assert wib_day_bounds(date.min, date.max) == (None, None)
    assert wib_day_bounds(date(1, 1, 2), date(9999, 12, 30)) == (
        datetime(1, 1, 1, 17, tzinfo=UTC),
        datetime(9999, 12, 30, 17, tzinfo=UTC),
    )


def test_a_wib_day_is_bounded_in_utc() -> None:
    assert wib_day_bounds(date(2026, 1, 1), date(2026, 1, 31)) == (
        datetime(2025, 12, 31, 17, tzinfo=UTC),
        datetime(2026, 1, 31, 17, tzinfo=UTC),
    )
    assert wib_day_bounds(None, None) == (None, None)
