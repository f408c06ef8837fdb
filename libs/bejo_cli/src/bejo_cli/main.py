"""`bejo` command: `token`, `dlq list|replay`, plus subcommands that installed services plug in
through the `bejo.commands` entry-point group (for example `bejo seed` from the catalog)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

import orjson

from bejo_kit.auth import ROLES, mint_token
from bejo_kit.dlq import list_parked, replay_parked
from bejo_kit.settings import KitSettings


def _token(args: argparse.Namespace) -> int:
    try:
        token = mint_token(
            KitSettings(),
            sub=args.sub,
            role=args.role,
            pemda=args.pemda,
            name=args.name,
            satker=args.satker,
            provider_id=args.provider_id,
            ttl_seconds=args.ttl,
        )
    except ValueError as exc:
        print(f"bejo token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _dlq_list(args: argparse.Namespace) -> int:
    settings = KitSettings()
    parked = asyncio.run(list_parked(settings.amqp_url, args.queue, args.limit, settings.bus_namespace))
    if args.json:
        print(orjson.dumps([p.as_dict() for p in parked]).decode())
        return 0
    if not parked:
        print("no parked messages")
        return 0
    for p in parked:
        print(f"{p.queue}\t{p.message_id}\t{p.type}\tattempts={p.attempts}\tparked_at={p.parked_at}")
        print(f"  error: {p.last_error}")
    print(f"{len(parked)} parked message(s)")
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    settings = KitSettings()
    moved = asyncio.run(replay_parked(settings.amqp_url, args.queue, args.id, namespace=settings.bus_namespace))
    for p in moved:
        print(f"replayed {p.message_id} ({p.type}) to {p.queue}")
    print(f"{len(moved)} message(s) replayed")
    if args.id and not moved:
        print(f"bejo dlq replay: no parked message with id {args.id}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bejo", description="bejo platform tools")
    sub = parser.add_subparsers(dest="command", required=True)

    token = sub.add_parser("token", help="print a signed JWT for local use")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--pemda", default="35", help="pemda code, e.g. 35 (province) or 35.15 (Kab. Sidoarjo)")
    token.add_argument("--name", help="display name (default: the sub)")
    group = token.add_mutually_exclusive_group()
    group.add_argument("--satker", help="work unit id, for pp, ppk and bendahara")
    group.add_argument("--provider-id", help="provider id, for penyedia")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    token.set_defaults(func=_token)

    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq.add_parser("list", help="show parked messages (they stay parked)")
    dlq_list.add_argument("--queue", help="work queue name, e.g. orders.catalog-events (default: all)")
    dlq_list.add_argument("--limit", type=int, default=100, help="at most this many per queue")
    dlq_list.add_argument("--json", action="store_true")
    dlq_list.set_defaults(func=_dlq_list)
    dlq_replay = dlq.add_parser("replay", help="send parked messages back to their work queue")
    dlq_replay.add_argument("--queue", help="work queue name (default: all)")
    dlq_replay.add_argument("--id", help="only the message with this event id")
    dlq_replay.set_defaults(func=_dlq_replay)

    for ep in entry_points(group="bejo.commands"):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
