"""Fixtures for the notifications tests: a real SMTP sink, the service, a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from notifications_harness import Receiver, Service, start_service
from support import serve

from bejo_notifications.smtp_sink import SmtpSink


@pytest.fixture
async def smtp_sink(tmp_path: Path) -> AsyncIterator[SmtpSink]:
    async with SmtpSink(tmp_path / "mail") as sink:
        yield sink


@pytest.fixture
async def service(amqp_url: str, mongodb_url: str, unique: str, smtp_sink: SmtpSink) -> AsyncIterator[Service]:
    async for running in start_service(amqp_url, mongodb_url, unique, smtp_sink.port):
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver(secret="receiver-secret-0123456789")
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with serve(app) as url:
        hook.url = url + "/hook"
        yield hook
