"""JMeter summariser lines of 2.13 and 5.x, shutdown-port lines, error lines and the JTL reader."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from agent.jmeter import (
    FiguresTracker,
    Summary,
    is_error_line,
    parse_shutdown_port,
    parse_summary,
    read_jtl,
)
from octotui.protocol import histogram_percentile, rt_bucket

V213_PLUS = (
    "summary +   6068 in     5s = 1294.4/s Avg:     3 Min:     0 Max:    48 Err:     0 (0.00%) "
    "Active: 0 Started: 5 Finished: 5"
)
V5_PLUS = (
    "summary +  46699 in 00:00:27 = 1713.4/s Avg:    15 Min:     2 Max:   177 Err:     0 (0.00%) "
    "Active: 1 Started: 1 Finished: 0"
)


def test_jmeter_213_interval_line() -> None:
    assert parse_summary(V213_PLUS) == Summary(
        kind="+", samples=6068, seconds=5.0, rate=1294.4, avg_ms=3, min_ms=0, max_ms=48,
        errors=0, error_percent=0.0, active=0, started=5, finished=5,
    )  # fmt: skip


def test_jmeter_213_fractional_seconds() -> None:
    line = "summary +      3 in   0.3s =   10.1/s Avg:   100 Min:    90 Max:   110 Err:     1 (33.33%)"
    summary = parse_summary(line)
    assert summary is not None
    assert summary.seconds == pytest.approx(0.3)
    assert (summary.samples, summary.errors, summary.error_percent) == (3, 1, 33.33)
    assert summary.active is None and summary.started is None


def test_jmeter_5_interval_line() -> None:
    summary = parse_summary(V5_PLUS)
    assert summary is not None
    assert (summary.kind, summary.samples, summary.seconds, summary.rate) == ("+", 46699, 27.0, 1713.4)
    assert (summary.avg_ms, summary.min_ms, summary.max_ms) == (15, 2, 177)
    assert (summary.active, summary.started, summary.finished) == (1, 1, 0)


def test_jmeter_5_cumulative_line_with_hours_and_log_prefix() -> None:
    line = (
        "2024-05-01 10:00:00,123 INFO o.a.j.r.Summariser: summary = 123456 in 01:02:03 =   33.2/s "
        "Avg:   250 Min:     1 Max:  9000 Err:    12 (0.01%)"
    )
    summary = parse_summary(line)
    assert summary is not None
    assert summary.kind == "="
    assert summary.seconds == 3723.0
    assert summary.errors == 12 and summary.active is None


def test_jmeter_213_log_prefix() -> None:
    line = "2016/01/01 12:00:05 INFO  - jmeter.reporters.Summariser: " + V213_PLUS
    summary = parse_summary(line)
    assert summary is not None and summary.samples == 6068


@pytest.mark.parametrize(
    "line",
    [
        "",
        "summary",
        "summary + abc in 5s = 1/s",
        "summary +   6068 in     5s = 1294.4/s Avg:     3",  # truncated
        "summary *   6068 in     5s = 1294.4/s Avg:     3 Min:     0 Max:    48 Err:     0 (0.00%)",
        "Creating summariser <summary>",
        "Created the tree successfully using /plan/plan.jmx",
        "Starting the test @ Thu May 01 10:00:00 UTC 2024 (1714557600000)",
        "\x00\xff garbage \u2603 summary + in = /s",
        "summary +   12 in 5 = 2.4/s Avg: 3 Min: 0 Max: 48 Err: 0 (0.00%)",  # no unit, no h:m:s
    ],
)
def test_garbage_is_not_a_summary(line: str) -> None:
    assert parse_summary(line) is None


def test_odd_rates_parse_as_numbers() -> None:
    line = "summary +      0 in 00:00:05 =    0.0/s Avg:     0 Min: 9223372036854775807 Max: -9223372036854775808 Err:     0 (0.00%) Active: 2 Started: 2 Finished: 0"  # noqa: E501
    summary = parse_summary(line)
    assert summary is not None and summary.samples == 0 and summary.active == 2
    infinity = "summary +      1 in 00:00:00 = Infinity/s Avg:     5 Min:     5 Max:     5 Err:     0 (0.00%)"
    parsed = parse_summary(infinity)
    assert parsed is not None and parsed.rate == 0.0
    comma = "summary +     10 in     5s =    2,0/s Avg:     5 Min:     5 Max:     5 Err:     0 (0,00%)"
    parsed = parse_summary(comma)
    assert parsed is not None and parsed.rate == 2.0


def test_shutdown_port_lines_of_both_versions() -> None:
    assert parse_shutdown_port("Waiting for possible shutdown message on port 4445") == 4445
    assert (
        parse_shutdown_port("Waiting for possible Shutdown/StopTestNow/HeapDump/ThreadDump message on port 4460")
        == 4460
    )
    assert parse_shutdown_port("2024-01-01 INFO o.a.j.JMeter: Waiting for possible shutdown message on port 1") == 1
    assert parse_shutdown_port("Waiting for possible shutdown message on port 99999") is None
    assert parse_shutdown_port("Waiting for possible shutdown message on port") is None
    assert parse_shutdown_port(V5_PLUS) is None


def test_error_lines() -> None:
    assert is_error_line("2024-05-01 10:00:00,123 ERROR o.a.j.JMeter: Error in NonGUIDriver")
    assert is_error_line("2016/01/01 12:00:05 ERROR - jmeter.JMeter: boom")
    assert is_error_line("Error in NonGUIDriver java.lang.IllegalArgumentException: Problem loading XML")
    assert is_error_line("An error occurred: Unknown arg: -x")
    assert is_error_line("java.lang.OutOfMemoryError: Java heap space")
    assert not is_error_line(V213_PLUS)
    assert not is_error_line("2024-05-01 10:00:00,123 INFO o.a.j.JMeter: no errors here")
    assert not is_error_line("\tat org.apache.jmeter.JMeter.start(JMeter.java:500)")


def test_tracker_builds_cumulative_from_intervals_then_trusts_totals() -> None:
    tracker = FiguresTracker()
    assert not tracker.feed("Creating summariser <summary>")
    assert tracker.figures is None
    assert not tracker.feed("Waiting for possible shutdown message on port 4447")
    assert tracker.shutdown_port == 4447
    assert tracker.feed(
        "summary +    100 in     5s =   20.0/s Avg:    10 Min:     2 Max:    30 Err:     1 (1.00%) "
        "Active: 5 Started: 5 Finished: 0"
    )
    fig = tracker.figures
    assert fig is not None
    assert (fig.samples, fig.errors, fig.rate, fig.avg_ms, fig.min_ms, fig.max_ms) == (100, 1, 20.0, 10, 2, 30)
    assert (fig.active, fig.started, fig.interval_samples) == (5, 5, 100)
    tracker.feed(
        "summary +    300 in     5s =   60.0/s Avg:    30 Min:     1 Max:    50 Err:     2 (0.67%) "
        "Active: 4 Started: 5 Finished: 1"
    )
    fig = tracker.figures
    assert fig is not None
    assert (fig.samples, fig.errors, fig.rate, fig.min_ms, fig.max_ms) == (400, 3, 60.0, 1, 50)
    assert fig.avg_ms == pytest.approx(25.0)
    assert fig.error_percent == pytest.approx(0.75)
    assert (fig.active, fig.finished, fig.interval_samples, fig.interval_avg_ms, fig.interval_errors) == (
        4,
        1,
        300,
        30,
        2,
    )
    tracker.feed("summary =    401 in    10s =   40.1/s Avg:    25 Min:     1 Max:    50 Err:     3 (0.75%)")
    fig = tracker.figures
    assert fig is not None
    assert fig.samples == 401 and fig.rate == 60.0, "cumulative from JMeter, rate from the last interval"
    assert fig.active == 4, "a line without Active keeps the last thread counts"


def test_tracker_uses_cumulative_rate_without_interval_lines() -> None:
    tracker = FiguresTracker()
    tracker.feed("summary =    500 in 00:00:10 =   50.0/s Avg:     8 Min:     1 Max:    20 Err:     0 (0.00%)")
    assert tracker.figures is not None and tracker.figures.rate == 50.0


def test_tracker_collects_error_lines_bounded() -> None:
    tracker = FiguresTracker(max_errors=3)
    for index in range(10):
        tracker.feed(f"2024-01-01 ERROR o.a.j.JMeter: failure {index}")
    tracker.feed("plain output")
    assert list(tracker.errors) == [f"2024-01-01 ERROR o.a.j.JMeter: failure {i}" for i in (7, 8, 9)]


def _hist(values: list[int]) -> dict[int, int]:
    return dict(Counter(rt_bucket(v) for v in values))


def test_histogram_percentile_is_nearest_rank_below_a_second() -> None:
    values = list(range(1, 101))
    assert histogram_percentile(_hist(values), 90) == 90
    assert histogram_percentile(_hist(values), 99) == 99
    assert histogram_percentile(_hist([5]), 99) == 5
    assert histogram_percentile(_hist([1, 2, 3, 4]), 50) == 2
    assert histogram_percentile(_hist([1, 2, 3, 4]), 0) == 1
    assert histogram_percentile({}, 95) == 0.0


def test_histogram_percentile_within_half_a_percent_above_a_second() -> None:
    values = [1000 + 37 * i for i in range(5000)]  # 1 s .. 186 s
    for percent in (50, 90, 95, 99):
        exact = sorted(values)[max(1, math.ceil(percent / 100 * len(values))) - 1]
        got = histogram_percentile(_hist(values), percent)
        assert exact * 0.995 <= got <= exact, (percent, exact, got)


def test_merged_histograms_give_the_percentile_of_all_samples() -> None:
    fast, slow = list(range(1, 901)), list(range(500, 600)) * 9  # 900 fast samples, 900 slow
    merged = Counter(_hist(fast))
    merged.update(_hist(slow))
    everything = sorted(fast + slow)
    for percent in (90, 95, 99):
        exact = everything[math.ceil(percent / 100 * len(everything)) - 1]
        assert histogram_percentile(merged, percent) == exact


HEADER = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes,Latency"


def _jtl(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "results.jtl"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_jtl_aggregate(tmp_path: Path) -> None:
    rows = [f'{1000 + i * 100},{i + 1},"GET, home",200,OK,tg 1-1,text,true,100,1' for i in range(100)]
    rows[3] = rows[3].replace(",true,", ",false,")
    rows[7] = rows[7].replace(",true,", ",FALSE,")
    results = read_jtl(_jtl(tmp_path, rows))
    assert results is not None
    assert (results.samples, results.errors) == (100, 2)
    assert results.error_percent == pytest.approx(2.0)
    assert (results.min_ms, results.max_ms, results.avg_ms) == (1, 100, pytest.approx(50.5))
    assert (results.p90_ms, results.p95_ms, results.p99_ms) == (90, 95, 99)
    # first start 1000 ms, last end 1000 + 99*100 + 100 = 11000 ms: 10 s
    assert results.duration_s == pytest.approx(10.0)
    assert results.throughput == pytest.approx(10.0)


def test_jtl_skips_garbage_and_truncated_rows(tmp_path: Path) -> None:
    rows = [
        "1000,10,a,200,OK,t,text,true,1,1",
        "not,a,row",
        "abc,10,a,200,OK,t,text,true,1,1",
        "2000,x,a,200,OK,t,text,true,1,1",
        "2000,10,a,200,OK,t,text,maybe,1,1",
        "",
        "3000,30,a,200,OK,t,te",  # a killed JMeter leaves a cut last line
    ]
    results = read_jtl(_jtl(tmp_path, rows))
    assert results is not None and results.samples == 1 and results.avg_ms == 10


def test_jtl_columns_in_any_order(tmp_path: Path) -> None:
    results = read_jtl(_jtl(tmp_path, ["true,2000,5", "false,1000,15"], header="success,timeStamp,elapsed"))
    assert results is not None
    assert (results.samples, results.errors, results.min_ms, results.max_ms) == (2, 1, 5, 15)
    assert results.duration_s == pytest.approx(1.005)


def test_jtl_missing_empty_or_without_header(tmp_path: Path) -> None:
    assert read_jtl(tmp_path / "absent.jtl") is None
    empty = tmp_path / "empty.jtl"
    empty.write_text("")
    assert read_jtl(empty) is None
    headless = tmp_path / "headless.jtl"
    headless.write_text("1000,10,a,200,OK,t,text,true,1,1\n")
    assert read_jtl(headless) is None, "JMeter 2.13's default (no header) is refused, not misread"
    xml = tmp_path / "xml.jtl"
    xml.write_text('<?xml version="1.0"?>\n<testResults version="1.2">\n')
    assert read_jtl(xml) is None
    only_header = _jtl(tmp_path, [])
    results = read_jtl(only_header)
    assert results is not None and results.samples == 0 and results.throughput == 0.0


def test_jtl_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "bin.jtl"
    path.write_bytes(HEADER.encode() + b"\n\xff\xfe\x00\x01,\x02\n1000,7,a,200,OK,t,text,true,1,1\n")
    results = read_jtl(path)
    assert results is not None and results.samples == 1 and results.avg_ms == 7
