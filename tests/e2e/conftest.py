"""Fixtures of the e2e tests live in e2e_harness.py, importable by the tests under that unique name."""

from e2e_harness import *  # noqa: F403
