"""Figures, their baselines and ratios: the printed table and its JSON twin."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure beside the baseline it is judged against."""

    scenario: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    #: Whether a larger value is the better one (throughput) or not (latency, memory).
    higher_is_better: bool = True
    #: The ratio (value / baseline) the issue asks for, if it sets one.
    min_ratio: float | None = None
    max_ratio: float | None = None
    #: An absolute ceiling, for figures judged without a ratio (bytes per job).
    max_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / baseline``, or None without a usable baseline."""
        if self.baseline is None or self.baseline == 0 or math.isnan(self.baseline):
            return None
        return self.value / self.baseline

    @property
    def target(self) -> str:
        """The target in words, or an empty string when there is none."""
        parts = []
        if self.min_ratio is not None:
            parts.append(f"ratio >= {self.min_ratio:g}")
        if self.max_ratio is not None:
            parts.append(f"ratio <= {self.max_ratio:g}")
        if self.max_value is not None:
            parts.append(f"<= {self.max_value:g} {self.unit}")
        return ", ".join(parts)

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None when there is no target or no ratio)."""
        checks: list[bool] = []
        ratio = self.ratio
        if self.min_ratio is not None:
            if ratio is None:
                return None
            checks.append(ratio >= self.min_ratio)
        if self.max_ratio is not None:
            if ratio is None:
                return None
            checks.append(ratio <= self.max_ratio)
        if self.max_value is not None:
            checks.append(self.value <= self.max_value)
        return all(checks) if checks else None

    def as_json(self) -> dict[str, Any]:
        """The figure with its derived ratio, target and verdict, as plain data."""
        data = dataclasses.asdict(self)
        data.update(ratio=self.ratio, target=self.target, met=self.met)
        return data


@dataclass(slots=True)
class Report:
    """Every figure of one run, with how the run was made."""

    command: str
    mode: str
    figures: list[Figure] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        """Record a figure and return it."""
        self.figures.append(figure)
        return figure

    def as_json(self) -> dict[str, Any]:
        """The whole run as plain data."""
        return {
            "command": self.command,
            "mode": self.mode,
            "info": self.info,
            "cpu_s": self.cpu_s,
            "errors": self.errors,
            "figures": [f.as_json() for f in self.figures],
        }

    def write_json(self, path: Path) -> None:
        """Write the JSON form to *path*."""
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: Sequence[Figure]) -> str:
    """The figures as a fixed-width text table (Markdown-compatible)."""
    header = ("scenario", "figure", "value", "unit", "baseline", "ratio", "target", "met")
    rows = [header]
    for f in figures:
        verdict = {True: "yes", False: "NO", None: ""}[f.met]
        name = f.name if not f.baseline_name else f"{f.name} (vs {f.baseline_name})"
        rows.append(
            (
                f.scenario,
                name,
                _fmt(f.value),
                f.unit,
                _fmt(f.baseline),
                _fmt(f.ratio),
                f.target,
                verdict,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
