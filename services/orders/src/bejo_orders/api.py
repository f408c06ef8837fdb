"""HTTP routes of the orders service."""

from __future__ import annotations

from bejo_kit.api import Router

router = Router(tag="orders")
