"""The fault suite's own platform, apart from the servers of `make infra` that other runs share:

- a RabbitMQ node and a Mongo-wire server started by `scripts/infra.sh` on other ports, with their
  data and pid files in a directory of their own (`BEJO_STATE_DIR`), so stopping or restarting them
  touches nothing else;
- every service and the gateway as real OS processes (the commands `make run` starts), so a
  SIGKILL is a real one;
- an SMTP sink, and a tap: a durable queue bound to every event on the events exchange that
  records each event and, when asked, publishes a share of them again with the same message id and
  CloudEvent id, i.e. duplicate deliveries into every consumer from outside the services.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from bejo_contracts.topology import EVENTS_EXCHANGE

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
SERVICES = ("catalog", "orders", "payments", "notifications")
PROCESSES = (*SERVICES, "gateway")


def log(message: str) -> None:
    """Progress on stdout (the suite runs with -s): a fault run takes minutes."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Ports:
    """AMQP and Mongo ports of the suite's own servers; the gateway on `http`, the services on the
    next four ports, the SMTP sink on the one after. Never the ports of `make infra`/`make run`."""

    amqp: int = 5673
    mongo: int = 27018
    http: int = 9080

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            amqp=int(os.environ.get("FAULTS_AMQP_PORT", "5673")),
            mongo=int(os.environ.get("FAULTS_MONGO_PORT", "27018")),
            http=int(os.environ.get("FAULTS_HTTP_PORT", "9080")),
        )

    def of(self, process: str) -> int:
        return self.http if process == "gateway" else self.http + 1 + SERVICES.index(process)

    @property
    def smtp(self) -> int:
        return self.http + 1 + len(SERVICES)

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp}/"

    @property
    def mongodb_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo}/"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def all(self) -> list[int]:
        return [self.amqp, self.mongo, *(self.of(p) for p in PROCESSES), self.smtp]


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _gone(pid: int) -> bool:
    """True once the process is gone, reaped too: scripts/infra.sh takes a zombie that still has
    its pid for a running server (init reaps the servers it adopted about a second late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Infra:
    """The suite's RabbitMQ node and Mongo-wire server, driven through scripts/infra.sh."""

    def __init__(self, ports: Ports, state_dir: Path) -> None:
        self.ports = ports
        self.state = state_dir
        self.env = {
            **os.environ,
            "AMQP_URL": ports.amqp_url,
            "MONGODB_URL": ports.mongodb_url,
            "BEJO_STATE_DIR": str(state_dir),
        }

    async def script(self, *args: str, within: float = 240) -> str:
        process = await asyncio.create_subprocess_exec(
            str(REPO / "scripts" / "infra.sh"),
            *args,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), within)
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"scripts/infra.sh {' '.join(args)} failed ({process.returncode}):\n{text}")
        return text

    async def up(self) -> None:
        await self.script("up")

    async def down(self) -> None:
        await self.script("down")

    async def rabbitmqctl(self, *args: str) -> str:
        return await self.script("rabbitmqctl", *args)

    async def _stop(self, pid_file: str, grace: float) -> None:
        """SIGTERM, and SIGKILL if the server is still there after `grace` seconds."""
        pid = int((self.state / pid_file).read_text().strip())
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        while not _gone(pid):
            if time.monotonic() - started > grace:
                log(f"{pid_file}: pid {pid} still running {grace:.0f}s after SIGTERM; SIGKILL")
                os.kill(pid, signal.SIGKILL)
                grace = float("inf")
            await asyncio.sleep(0.2)
        log(f"{pid_file}: pid {pid} stopped in {time.monotonic() - started:.1f}s")

    async def restart_broker(self) -> None:
        """Stop the whole node (SIGTERM to beam is RabbitMQ's graceful stop), then boot it again."""
        await self._stop("rabbitmq.pid", grace=30)
        started = time.monotonic()
        await self.up()
        log(f"RabbitMQ up again in {time.monotonic() - started:.1f}s")

    async def restart_mongo(self) -> None:
        await self._stop("ferretdb.pid", grace=10)
        started = time.monotonic()
        await self.up()
        log(f"Mongo-wire server up again in {time.monotonic() - started:.1f}s")

    async def queue_depths(self) -> dict[str, int]:
        """Messages per queue, ready and unacknowledged (exact, unlike the management API's samples)."""
        out = await self.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages")
        depths: dict[str, int] = {}
        for line in out.splitlines():
            name, _, count = line.rpartition("\t")
            if name and count.strip().isdigit():
                depths[name.strip()] = int(count)
        return depths


class Processes:
    """Every service and the gateway as OS processes, as `make run` starts them."""

    def __init__(self, ports: Ports, env: dict[str, str], log_dir: Path) -> None:
        self.ports = ports
        self.log_dir = log_dir
        self.env = {
            **env,
            "BEJO_ENV": "local",
            "LOG_JSON": "true",
            "LOG_LEVEL": "INFO",
            "PAYMENTS_SANDBOX_ENABLED": "true",
            # The sandbox bank calls back through the front door, as a bank would.
            "PAYMENTS_SANDBOX_CALLBACK_URL": f"{ports.gateway_url}/api/v1/payments/callbacks/snap",
            # Re-drive settlements interrupted by a kill within seconds rather than 5 minutes.
            "PAYMENTS_RESCAN_INTERVAL_SECONDS": "5",
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "NOTIFICATIONS_SMTP_PORT": str(ports.smtp),
            "GATEWAY_HTTP_PORT": str(ports.http),
            "GATEWAY_RATE_LIMIT_PER_SECOND": "1000",
            "GATEWAY_RATE_LIMIT_BURST": "1000",
        }
        for service in SERVICES:
            self.env[f"{service.upper()}_HTTP_PORT"] = str(ports.of(service))
            self.env[f"GATEWAY_{service.upper()}_URLS"] = f"http://127.0.0.1:{ports.of(service)}"
        self.env.pop("BUS_NAMESPACE", None)
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self.kills: Counter[str] = Counter()

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.log_file(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start(self, name: str) -> None:
        log_file = self._logs.get(name) or open(self.log_file(name), "ab")  # noqa: SIM115 - closed in stop_all
        self._logs[name] = log_file
        self._running[name] = subprocess.Popen(
            [str(BIN / f"bejo-{name}")], env=self.env, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.log_dir
        )

    async def ready(self, name: str, within: float = 90) -> None:
        """Wait for /readyz (Mongo and the bus up, consumers on); the gateway's /healthz."""
        url = f"http://127.0.0.1:{self.ports.of(name)}/{'healthz' if name == 'gateway' else 'readyz'}"
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self._running[name].poll() is not None:
                    raise AssertionError(f"{name} exited while starting:\n{self.tail(name)}")
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready at {url} after {within}s:\n{self.tail(name)}")
                await asyncio.sleep(0.2)

    async def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)
        await asyncio.gather(*(self.ready(name) for name in SERVICES))
        self.start("gateway")
        await self.ready("gateway")

    async def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, in-flight messages stay unacked, outbox entries unpublished."""
        process = self._running[name]
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        self.kills[name] += 1

    async def restart(self, name: str) -> None:
        self.start(name)
        await self.ready(name)

    def assert_alive(self) -> None:
        for name, process in self._running.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited unexpectedly ({process.returncode}):\n{self.tail(name)}")

    async def stop_all(self) -> None:
        for process in self._running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self._running.items():
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), 30)
            except TimeoutError:
                log(f"{name} ignored SIGTERM for 30s; SIGKILL")
                process.kill()
                await asyncio.to_thread(process.wait)
        for log_file in self._logs.values():
            log_file.close()


COPY_HEADER = "x-bejo-fault-copy"


class EventTap:
    """Records every event on the bus (by CloudEvent id) and, while `duplicate_every` is set, publishes
    every n-th event of each type again: same body, message id and headers, same routing key, so every
    queue bound to it receives it twice. Copies go out at once or up to 2 s late, in turn, so some
    race the original in the consumer and some arrive after it was handled."""

    QUEUE = "faults.tap"
    DELAYS = (0.0, 0.3, 2.0)

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.events: dict[str, dict[str, Any]] = {}
        self.deliveries = 0
        self.duplicate_every = 0
        self.copies: Counter[str] = Counter()
        self.copy_failures = 0
        self._seen_by_type: Counter[str] = Counter()
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.amqp_url, client_properties={"connection_name": "faults/tap"}
        )
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=200)
        self._exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self.QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(self._exchange, routing_key="bejo.#")
        await queue.consume(self._on_message)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._connection is not None:
            await self._connection.close()

    async def ready_counts(self, queues: list[str]) -> dict[str, int]:
        """Messages ready in each queue (a passive declare: cheap, but blind to unacked ones)."""
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            return {
                q: (await channel.declare_queue(q, passive=True)).declaration_result.message_count or 0 for q in queues
            }
        finally:
            await channel.close()

    @property
    def copying(self) -> bool:
        """Copies still waiting for their delay."""
        return bool(self._tasks)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if e["type"] == event_type]

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = orjson.loads(message.body)
            self.deliveries += 1
            is_copy = bool((message.headers or {}).get(COPY_HEADER))
            if envelope["id"] not in self.events and not is_copy:
                self.events[envelope["id"]] = envelope
                self._seen_by_type[envelope["type"]] += 1
                if self.duplicate_every and self._seen_by_type[envelope["type"]] % self.duplicate_every == 1:
                    delay = self.DELAYS[sum(self.copies.values()) % len(self.DELAYS)]
                    task = asyncio.create_task(self._copy(message, delay))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            await message.ack()
        except Exception as exc:  # noqa: BLE001 - the tap must not stop; a redelivery is recorded once
            log(f"tap: {type(exc).__name__}: {exc}")

    async def _copy(self, message: AbstractIncomingMessage, delay: float) -> None:
        await asyncio.sleep(delay)
        copy = aio_pika.Message(
            body=message.body,
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            headers={**(message.headers or {}), COPY_HEADER: True},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            assert self._exchange is not None and message.routing_key is not None
            await self._exchange.publish(copy, routing_key=message.routing_key)
            self.copies[message.routing_key] += 1
        except Exception as exc:  # noqa: BLE001 - a copy lost is one duplicate fewer, nothing more
            self.copy_failures += 1
            log(f"tap: copy of {message.message_id} failed: {exc}")
