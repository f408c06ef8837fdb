"""HTTP routes of the payments service."""

from __future__ import annotations

from bejo_kit.api import Router

router = Router(tag="payments")
