"""The logic behind the bench's verdicts: ratios, targets, medians and ranges, recorded runs.

No timing here: these are pure functions over figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from armada_jobservice.bench.records import load_runs, record, render
from armada_jobservice.bench.report import Figure, Report, Spread, from_rounds, table
from armada_jobservice.bench.targets import TARGETS, target

NAN = float("nan")


@pytest.mark.parametrize(
    ("value", "baseline", "kwargs", "ratio", "met"),
    [
        (90.0, 100.0, {"min_ratio": 0.85}, 0.9, True),
        (80.0, 100.0, {"min_ratio": 0.85}, 0.8, False),
        (125.0, 100.0, {"max_ratio": 1.25}, 1.25, True),
        (126.0, 100.0, {"max_ratio": 1.25}, 1.26, False),
        (150.0, 111.0, {"max_value": 160.0}, 150 / 111, True),
        (161.0, 111.0, {"max_value": 160.0}, 161 / 111, False),
        (5.0, 1.0, {}, 5.0, None),
        # No usable baseline or value: no ratio, so no verdict either way.
        (90.0, None, {"min_ratio": 0.85}, None, None),
        (90.0, 0.0, {"min_ratio": 0.85}, None, None),
        (90.0, NAN, {"max_ratio": 3.0}, None, None),
        (NAN, 100.0, {"max_ratio": 3.0}, None, None),
        (NAN, None, {"max_value": 160.0}, None, None),
    ],
)
def test_ratio_and_verdict(
    value: float, baseline: float | None, kwargs: dict[str, float], ratio: float | None, met: bool
) -> None:
    """A figure's ratio is value / baseline, and ``met`` compares it with its target."""
    fig = Figure("s", "f", value, "u", baseline, **kwargs)  # type: ignore[arg-type]
    if ratio is None:
        assert fig.ratio is None
    else:
        assert fig.ratio == pytest.approx(ratio)
    assert fig.met is met


def test_a_missed_target_is_shown_as_no() -> None:
    """The table says NO for a miss and yes for a hit."""
    rows = table(
        [
            Figure("3", "cpu", 130.0, "us", 100.0, "client", **target("ingest_cpu_per_event")),
            Figure("3", "cpu2", 110.0, "us", 100.0, "client", **target("ingest_cpu_per_event")),
        ]
    )
    assert "| NO " in rows.splitlines()[2] + " "
    assert "| yes" in rows.splitlines()[3]


@pytest.mark.parametrize(
    ("values", "median", "low", "high", "rounds"),
    [
        ([3.0, 1.0, 2.0], 2.0, 1.0, 3.0, 3),
        ([4.0, 1.0], 2.5, 1.0, 4.0, 2),
        ([7.0], 7.0, 7.0, 7.0, 1),
    ],
)
def test_spread_is_the_median_and_range_of_rounds(
    values: list[float], median: float, low: float, high: float, rounds: int
) -> None:
    """Every figure is a median over rounds, shown with the lowest and highest round."""
    s = Spread.of(values)
    assert (s.median, s.low, s.high, s.rounds) == (median, low, high, rounds)
    assert s.range == ((low, high) if rounds > 1 else None)


def test_no_round_is_no_value() -> None:
    """Without a single successful round the figure is NaN, never zero."""
    s = Spread.of([])
    assert math.isnan(s.median)
    assert s.rounds == 0
    fig = from_rounds("3", "rate", [], "events/s", [10.0, 12.0], "client", min_ratio=0.8)
    assert math.isnan(fig.value)
    assert fig.met is None


def test_from_rounds_keeps_both_ranges() -> None:
    """Value and baseline keep their own range; the ratio is of the medians."""
    fig = from_rounds("1", "polls", [90.0, 100.0, 95.0], "c", [100.0, 110.0, 105.0], "bare")
    assert fig.value == 95.0
    assert fig.baseline == 105.0
    assert fig.value_range == (90.0, 100.0)
    assert fig.baseline_range == (100.0, 110.0)
    assert fig.rounds == 3
    assert "95.0 (90.0-100)" in table([fig])


def test_targets_are_the_issues() -> None:
    """The targets fixed in code are those the issues set; a change here needs a new issue."""
    assert TARGETS["polls_per_cpu_s"].min_ratio == 0.85
    assert TARGETS["ingest_events_per_s"].min_ratio == 0.8
    assert TARGETS["ingest_cpu_per_event"].max_ratio == 1.25
    assert TARGETS["streaming_p99"].max_ratio == 3.0
    assert TARGETS["bytes_per_job"].max_value == 160.0
    assert all(t.set_by for t in TARGETS.values())


def test_a_targets_key_names_the_target_and_its_variant() -> None:
    """Figures under one target are told apart by their variant."""
    assert target("ingest_cpu_per_event", "many job sets")["target_key"] == (
        "ingest_cpu_per_event (many job sets)"
    )
    assert target("bytes_per_job")["target_key"] == "bytes_per_job"


def test_a_figure_survives_its_json_form() -> None:
    """What ``bench report`` reads back is the figure that was written."""
    fig = from_rounds("3", "cpu", [1.0, 2.0], "us", [1.5, 1.7], "client", max_ratio=1.25)
    back = Figure.from_json(json.loads(json.dumps(fig.as_json())))
    assert back == fig


def _run(mode: str, started: str, value: float, errors: list[str]) -> dict[str, object]:
    report = Report(command=f"armada-jobservice bench --{mode}", mode=mode, errors=errors)
    report.info.update(started=started, load_before=[0.5, 0.5, 0.5], cpus=2)
    report.add(Figure("3 ingestion", "cpu", value, "us", 100.0, "client", max_ratio=1.25))
    report.add(Figure("2 first polls", "rate", 900.0, "calls/s"))
    return report.as_json()


def test_report_renders_every_recorded_run(tmp_path: Path) -> None:
    """``bench report`` shows every recorded run, oldest first, misses and errors included."""
    record(_run("quick", "2026-12-05T10:00:00Z", 110.0, []), tmp_path)
    record(_run("full", "2026-12-05T11:00:00Z", 140.0, ["scenario 3 failed: boom"]), tmp_path)
    runs = load_runs(tmp_path)
    assert len(runs) == 2
    text = render(runs, "armada-jobservice bench report runs")
    assert "2 recorded run(s)" in text
    assert text.index("## Run 1") < text.index("## Run 2")
    summary = text.split("## Run 1")[0]
    assert "| 1.1 | yes |" in summary
    assert "| 1.4 | NO |" in summary
    assert "scenario 3 failed: boom" in text
    assert "do not edit by hand" in text


def test_report_of_no_runs_says_so() -> None:
    """An empty folder renders a page that says there is nothing recorded."""
    assert "0 recorded run(s)" in render([], "armada-jobservice bench report runs")
