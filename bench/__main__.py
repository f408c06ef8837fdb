"""Run benchmarks: `python -m bench` runs all that exist, `python -m bench kit catalog` runs those."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time

import uvloop

ORDER = ["store", "kit", "catalog", "orders", "payments", "notifications", "gateway"]
# Run only when named: they need something the default run does not set up.
ON_REQUEST = ["seeded_checkout"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    unknown = [n for n in names if n not in ORDER + ON_REQUEST]
    if unknown:
        known = ", ".join(ORDER + ON_REQUEST)
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return 2
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== {name}: no benchmark yet, skipped")
                continue
            raise
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        asyncio.run(module.run())
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
