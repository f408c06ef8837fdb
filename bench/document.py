"""docs/benchmarks.md from one run's figures: machine, date, commit, the table, the profiles of
missed goals, the standing findings (bench/findings.md), and each benchmark's detail lines."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

from bench.report import Figure, Report, verdict

GOALS = {
    "1": "gateway, with auth, RBAC, rate limit and routing: ≥ 0.5x nginx (same worker count)",
    "2": "checkout saga placed→approved, 1 and 2 replicas: ≥ 100 orders/s, 0 oversell",
    "3": "outbox relay: ≥ 0.8x raw aio-pika confirmed publish",
    "4": "catalog search p95: ≤ 50 ms at 30k products, ≤ 100 ms at 300k",
    "5": "e-catalog feed full sync: 30k in ≤ 10 s",
    "6": "paying SNAP callbacks/s ≥ 0.3x forged rejects/s; webhook deliveries/s ≥ 0.3x raw signed POSTs/s",
    "7": "per-service idle RSS ≤ 80 MB (catalog: index cost per 10k products), cold start ≤ 2 s",
    "8": "the Harbolnas load scenario (no goal: what one machine carries)",
}


def _ratio(f: Figure) -> str:
    return f"{f.ratio:.2f}x" if f.ratio is not None else ""


def by_row(figures: list[Figure]) -> list[Figure]:
    """In the report's row order, each benchmark's figures in the order it recorded them."""
    return sorted(figures, key=lambda f: int(f.row) if f.row.isdigit() else 99)


def table_text(figures: list[Figure]) -> str:
    figures = by_row(figures)
    rows = [("#", "benchmark", "figure", "baseline (same run)", "ratio", "goal", "")]
    rows += [(f.row, f.name, f.value, f.baseline, _ratio(f), f.goal, verdict(f.met)) for f in figures]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell[:60].ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> list[str]:
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    nginx_version = (
        subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        if os.path.exists(nginx)
        else "not installed"
    )
    wrk = _command("wrk", "--version").splitlines()[0][:30] if shutil.which("wrk") else "not installed"
    return [
        f"- CPU: {cpu or platform.processor()}, {os.cpu_count()} cores; memory {mem_kb / 1024 / 1024:.1f} GiB",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- {nginx_version.replace('nginx version: ', '')}; wrk {wrk.replace('wrk ', '')}",
        # Everything else running shows here: figures taken at a load above the core count are noisy.
        "- load average when the report was written: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
    ]


def write(repo: Path, report: Report, started_at: datetime, seconds: float, log: Path) -> Path:
    commit = _command("git", "-C", str(repo), "rev-parse", "--short", "HEAD") or "unknown"
    dirty = _command("git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`): every row of the table below is measured in one",
        "run, each against its baseline in the same run. Figures depend on the machine and on what else",
        "runs on it; the ratios travel better than the absolute numbers.",
        "",
        f"- Run: {started_at:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes; commit `{commit}`"
        + (" (with uncommitted changes)" if dirty else ""),
        *machine(),
        f"- Details and logs of the run: `{log.relative_to(repo)}` (not committed)",
        "",
        "## Goals",
        "",
        *[f"{row}. {goal}" for row, goal in GOALS.items()],
        "",
        "## Figures",
        "",
        "| # | benchmark | figure | baseline (same run) | ratio | goal | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in by_row(report.figures):
        name = f.name + (f" ({f.note})" if f.note else "")
        lines.append(
            f"| {f.row} | {_md(name)} | {_md(f.value)} | {_md(f.baseline)} | {_ratio(f)} | {_md(f.goal)} "
            f"| {verdict(f.met)} |"
        )
    findings = repo / "bench" / "findings.md"
    if findings.exists():
        lines += ["", findings.read_text().strip()]
    plots = [a for a in report.artefacts if a.endswith(".png")]
    if plots:
        lines += ["", "## The Harbolnas scenario's queues", ""]
        lines += [f"![queue depths during the Harbolnas scenario]({Path(a).name})" for a in plots]
    if report.profiles:
        lines += ["", "## Profiles of this run", ""]
        lines += ["Taken by the benchmarks themselves (pyinstrument) when a figure missed its goal.", ""]
        for p in report.profiles:
            lines += [f"### Row {p.row}: {p.title}", "", "```", _trim(p.text), "```", ""]
    lines += ["", "## Each benchmark's output", ""]
    for name, detail in report.details.items():
        lines += [f"### {name}", "", "```", *detail, "```", ""]
    path = repo / "docs" / "benchmarks.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _trim(text: str, limit: int = 60) -> str:
    """The profile's tree without the banner, at most `limit` lines."""
    body = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(body) if re.match(r"^\d+(\.\d+)?%? ", line)), 0)
    return "\n".join(body[start : start + limit])
