"""Fixtures of the store conformance suite live in store_harness.py, importable by the tests under that unique name."""

from store_harness import *  # noqa: F403
