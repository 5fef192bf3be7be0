"""The dashboard's text formatters, in one module: counts, durations, sizes, bars."""

from __future__ import annotations

from datetime import UTC, datetime

from octotui.tui import format as fmt


def test_plural() -> None:
    assert [fmt.plural(n, "container") for n in (0, 1, 2)] == ["0 containers", "1 container", "2 containers"]


def test_duration() -> None:
    assert [fmt.duration(s) for s in (None, 0, 59.9, 60, 3599, 3600, 7500, 86400 * 3)] == [
        "never",
        "0s",
        "59s",
        "1m00",
        "59m59",
        "1h00",
        "2h05",
        "3d",
    ]


def test_sizes() -> None:
    assert [fmt.size(n) for n in (512, 1536, 3.2 * 2**30, 2**50)] == ["512B", "1.5K", "3.2G", "1024.0T"]
    assert fmt.rate(2048) == "2.0K/s"
    assert [fmt.human_size(n) for n in (1, 1023, 1024, 1372, 4 * 2**20, 2**20 - 1)] == [
        "1 byte",
        "1023 bytes",
        "1 KiB",
        "1.3 KiB",
        "4 MiB",
        "1 MiB",
    ]


def test_age_percent_and_bar() -> None:
    when = datetime.fromtimestamp(1000, tz=UTC)
    assert fmt.age_seconds(when, now=1042.5) == 42.5
    assert fmt.age_seconds(when, now=900) == 0.0
    assert fmt.age_seconds(None) is None
    assert (fmt.percent(None), fmt.percent(12.345)) == ("-", "12.3")
    assert fmt.bar(0.5, 4) == "██··"
    assert fmt.bar(2.0, 3) == "███"
    assert fmt.bar(1 / 16, 2) == "▏·"
