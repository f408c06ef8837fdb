"""Fixtures of the payments tests live in payments_harness.py, importable by the tests under that unique name."""

from payments_harness import *  # noqa: F403
