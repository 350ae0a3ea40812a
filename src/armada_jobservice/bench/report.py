"""Figures, their baselines and ratios: the printed table and its JSON twin."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Sequence
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
    #: (lowest, highest) over the rounds the value is the median of, if several.
    value_range: tuple[float, float] | None = None
    baseline_range: tuple[float, float] | None = None
    #: Rounds behind the value (a failed round is an error, never counted here).
    rounds: int = 1
    #: The name of the target in ``targets.TARGETS`` (with its variant), if any.
    target_key: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / baseline``, or None without a usable value and baseline."""
        if self.baseline is None or self.baseline == 0 or not math.isfinite(self.baseline):
            return None
        if not math.isfinite(self.value):
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
            if not math.isfinite(self.value):
                return None
            checks.append(self.value <= self.max_value)
        return all(checks) if checks else None

    def as_json(self) -> dict[str, Any]:
        """The figure with its derived ratio, target and verdict, as plain data."""
        data = dataclasses.asdict(self)
        data.update(ratio=self.ratio, target=self.target, met=self.met)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        """The figure ``as_json`` wrote (derived keys are computed again, not read)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in data.items() if k in names}
        for key in ("value_range", "baseline_range"):
            if kept.get(key) is not None:
                kept[key] = tuple(kept[key])
        return cls(**kept)


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


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of a figure over rounds, and its range."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """The spread of *values* (NaN throughout when there are none)."""
        got = sorted(values)
        if not got:
            nan = float("nan")
            return cls(nan, nan, nan, 0)
        return cls(statistics.median(got), got[0], got[-1], len(got))

    @property
    def range(self) -> tuple[float, float] | None:
        """(low, high), or None for fewer than two rounds."""
        return (self.low, self.high) if self.rounds > 1 else None


def from_rounds(
    scenario: str,
    name: str,
    values: Iterable[float],
    unit: str,
    baselines: Iterable[float] | None = None,
    baseline_name: str = "",
    **kwargs: Any,
) -> Figure:
    """A figure as the median of its rounds with their range, beside its baseline's."""
    v = Spread.of(values)
    b = None if baselines is None else Spread.of(baselines)
    return Figure(
        scenario,
        name,
        v.median,
        unit,
        None if b is None else b.median,
        baseline_name,
        value_range=v.range,
        baseline_range=None if b is None else b.range,
        rounds=v.rounds,
        **kwargs,
    )


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _fmt_range(span: tuple[float, float] | None) -> str:
    return "" if span is None else f" ({_fmt(span[0])}-{_fmt(span[1])})"


def table(figures: Sequence[Figure]) -> str:
    """The figures as a fixed-width text table (Markdown-compatible)."""
    header = ("scenario", "figure", "value", "unit", "baseline", "ratio", "target", "met")
    rows = [header]
    for f in figures:
        # A target that cannot be judged (a ratio to a baseline of 0) shows "-".
        verdict = {True: "yes", False: "NO", None: "-" if f.target else ""}[f.met]
        name = f.name if not f.baseline_name else f"{f.name} (vs {f.baseline_name})"
        rows.append(
            (
                f.scenario,
                name,
                _fmt(f.value) + _fmt_range(f.value_range),
                f.unit,
                _fmt(f.baseline) + _fmt_range(f.baseline_range),
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
