"""The figures of one `make bench` run: each benchmark module records its headline figures here
(`record`), its detail lines go to the log, and `python -m bench` prints one table and writes
docs/benchmarks.md from them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Figure:
    row: str  # the row number: "1".."8"
    name: str  # what was measured
    value: str  # the figure, formatted with its unit
    baseline: str = ""  # the baseline in the same run, formatted
    ratio: float | None = None  # figure / baseline where the goal is a ratio
    goal: str = ""
    met: bool | None = None  # None: no goal, or not measured
    note: str = ""


@dataclass
class Profile:
    row: str
    title: str  # what was profiled
    text: str  # pyinstrument's text rendering of the hot path


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)  # module -> its printed lines
    artefacts: list[str] = field(default_factory=list)  # files written next to the report


REPORT = Report()


def record(
    row: str,
    name: str,
    value: str,
    *,
    baseline: str = "",
    ratio: float | None = None,
    goal: str = "",
    met: bool | None = None,
    note: str = "",
) -> Figure:
    figure = Figure(row, name, value, baseline, ratio, goal, met, note)
    REPORT.figures.append(figure)
    return figure


def profile(row: str, title: str, text: str) -> None:
    REPORT.profiles.append(Profile(row, title, text))


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "-"}[met]
