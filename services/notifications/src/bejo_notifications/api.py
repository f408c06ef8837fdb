"""HTTP routes of the notifications service."""

from __future__ import annotations

from bejo_kit.api import Router

router = Router(tag="notifications")
