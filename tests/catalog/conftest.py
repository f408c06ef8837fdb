"""Fixtures of the catalog tests live in catalog_harness.py, importable by the tests under that unique name."""

from catalog_harness import *  # noqa: F403
