"""Run benchmarks: `python -m bench` runs the whole report (rows 1-8 of docs/benchmarks.md) and
writes docs/benchmarks.md; `python -m bench kit catalog` runs those only and prints their table.

Each benchmark's own lines and every log line go to .state/bench/bench-<time>.log; the terminal
shows progress and the table. Each benchmark has a time budget (`BUDGETS`), so the run is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bejo_kit.logging import configure_logging
from bench import document, rows
from bench.report import REPORT, Figure, Profile, record

REPO = Path(__file__).resolve().parent.parent
# In the order of the report's rows; seconds each may take before it is cut off.
BUDGETS: dict[str, float] = {
    "gateway": 150,  # row 1
    "orders": 180,  # row 2
    "kit": 120,  # row 3
    "catalog": 300,  # rows 4, 5, and the catalog index cost of row 7
    "payments": 60,  # row 6
    "notifications": 120,  # row 6
    "footprint": 60,  # row 7
    "harbolnas": 180,  # row 8: setup, 45 s of load, sagas in flight finishing
}
ORDER = list(BUDGETS)
ROWS = {"gateway": "1", "orders": "2", "kit": "3", "catalog": "4", "payments": "6", "notifications": "6",
        "footprint": "7", "harbolnas": "8"}  # fmt: skip
# Run only when named: they need something the default run does not set up, or are not in the report.
ON_REQUEST = ["seeded_checkout", "store"]


def child(name: str, result: Path) -> int:
    """Run one benchmark in this (child) process and leave its figures in `result` (JSON)."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # Services run in this process by the benchmarks log as JSON at WARNING, into the log file.
    configure_logging("bench", os.environ.get("LOG_LEVEL", "WARNING"), True)
    module = importlib.import_module(f"bench.{name}")
    try:
        asyncio.run(module.run())  # Ctrl-C / SIGINT from the parent cancels it: cleanup runs
    except (KeyboardInterrupt, asyncio.CancelledError):
        traceback.print_exc()  # stopped by the parent at its budget: the parent reports the cut
    except Exception as exc:  # noqa: BLE001 - reported in the table, the traceback in the log
        traceback.print_exc()
        record(ROWS.get(name, "-"), f"{name} benchmark", f"failed: {type(exc).__name__}: {exc}"[:300], met=False)
    finally:
        result.write_text(json.dumps(dataclasses.asdict(REPORT)))
    return 0


def run_bounded(name: str, budget: float, log: Path) -> str | None:
    """The benchmark in a child process with output to `log`; stopped after `budget` seconds
    (SIGINT: its clean-up runs; then the whole process group is killed). Returns what went wrong."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench", "--child", name, str(result)],
                cwd=REPO, stdout=out, stderr=out, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        failure = None
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            failure = f"cut off after {budget:.0f} s"
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Whatever the benchmark started in its process group (nginx, services) goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if result.exists():
            found = json.loads(result.read_text())
            REPORT.figures.extend(Figure(**f) for f in found["figures"])
            REPORT.profiles.extend(Profile(**p) for p in found["profiles"])
            REPORT.artefacts.extend(found["artefacts"])
        elif failure is None:
            failure = f"exited with status {proc.returncode} without figures"
        return failure


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or ORDER
    unknown = [n for n in names if n not in ORDER + ON_REQUEST]
    if unknown:
        known = ", ".join(ORDER + ON_REQUEST)
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return 2
    full = names == ORDER
    write = "--write" in argv or (full and "--no-write" not in argv)
    logs = REPO / ".state" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    log = logs / f"bench-{started_at:%Y%m%dT%H%M%SZ}.log"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("LOG_JSON", "true")  # log records stay apart from the benchmarks' own lines
    os.environ.setdefault("BENCH_LOAD_SECONDS", "45")
    os.environ.setdefault("BENCH_NOTIFY_EVENTS", "200")
    say(f"bench: {', '.join(names)}; details and logs in {log.relative_to(REPO)}")
    began = time.perf_counter()
    for name in names:
        budget = float(os.environ.get(f"BENCH_BUDGET_{name.upper()}", BUDGETS.get(name, 600.0)))
        say(f"== {name} (at most {budget:.0f} s) ...")
        with log.open("a") as out:
            out.write(f"\n===== {name} =====\n")
        offset = log.stat().st_size
        t0 = time.perf_counter()
        failure = run_bounded(name, budget, log)
        elapsed = time.perf_counter() - t0
        with log.open("rb") as out:
            out.seek(offset)
            lines = out.read().decode(errors="replace").splitlines()
        # The benchmark's own lines, not JSON log records.
        REPORT.details[name] = [line for line in lines if line.strip() and not line.lstrip().startswith("{")][:200]
        if name in rows.FROM_OUTPUT:
            try:
                rows.FROM_OUTPUT[name](REPORT.details[name])
            except (ValueError, TypeError, ZeroDivisionError) as exc:
                record(ROWS.get(name, "-"), f"{name} figures", f"unreadable output: {exc}", met=False)
        if failure:
            record(ROWS.get(name, "-"), f"{name} benchmark", failure, met=False)
            say(f"   {name}: {failure} (see the log)")
        say(f"   done in {elapsed:.0f} s")
    total = time.perf_counter() - began
    say("")
    say(document.table_text(REPORT.figures))
    say(f"\nwhole run: {total / 60:.1f} min")
    if write:
        path = document.write(REPO, REPORT, started_at, total, log)
        say(f"wrote {path.relative_to(REPO)}")
    missed = [f for f in REPORT.figures if f.met is False]
    if missed:
        say(f"{len(missed)} figure(s) missed their goal: " + "; ".join(f"{f.row} {f.name}" for f in missed))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(sys.argv[2], Path(sys.argv[3])))
    raise SystemExit(main(sys.argv[1:]))
