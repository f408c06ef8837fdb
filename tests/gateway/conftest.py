"""Fixtures of the gateway tests live in gateway_harness.py, importable by the tests under that unique name."""

from gateway_harness import *  # noqa: F403
