"""Where `bejo seed --history` runs the platform: the services' apps on ephemeral ports of this
process (under its travelling clock), and the check that the usual service processes are not
consuming meanwhile."""

from __future__ import annotations

from dataclasses import dataclass, field

import aio_pika
from aiohttp import web

from bejo_contracts.topology import QUEUES
from bejo_kit.bus import namespaced
from bejo_kit.settings import KitSettings


@dataclass
class Platform:
    """The services' apps on ephemeral ports of this process."""

    kit: KitSettings
    urls: dict[str, str] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)

    async def start(self, name: str, app: web.Application) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.runners.append(runner)
        self.urls[name] = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()


class Refused(Exception):
    """The seeder will not run here (production, or the services are running)."""


async def services_consuming(kit: KitSettings) -> list[str]:
    """Queues of the services that have consumers now (the usual service processes are up)."""
    busy = []
    connection = await aio_pika.connect(kit.amqp_url)
    async with connection:
        for specs in QUEUES.values():
            for spec in specs:
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(namespaced(kit, spec.name), passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    continue  # never declared: nobody consumes it
                result = queue.declaration_result
                if result is not None and result.consumer_count:
                    busy.append(spec.name)
                await channel.close()
    return busy
