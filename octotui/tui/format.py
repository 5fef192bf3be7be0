"""Small text formatters shared by the screens and widgets: ages, durations, sizes, rates, counts,
server addresses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit


def age_seconds(when: datetime | None, now: float | None = None) -> float | None:
    """Seconds elapsed since ``when`` (None when never)."""
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, now - when.timestamp())


def duration(seconds: float | None) -> str:
    """Compact human duration: ``42s``, ``3m``, ``2h05``, ``3d``."""
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}"
    return f"{s // 86400}d"


def size(n: float) -> str:
    """Bytes with a binary unit: ``512B``, ``1.5K``, ``3.2G``."""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


def rate(bps: float) -> str:
    """Bytes per second."""
    return size(bps) + "/s"


def percent(value: float | None) -> str:
    """One decimal percentage without the sign, or a dash."""
    return "-" if value is None else f"{value:.1f}"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (eighth blocks for precision)."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
    return ("█" * full + partial).ljust(width, "·")[:width]


def plural(n: int, word: str) -> str:
    """``1 container``, ``2 containers``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def human_size(n: int) -> str:
    """Bytes in words, for messages: ``512 bytes``, ``1.3 KiB``, ``28.6 MiB``, ``4 MiB``."""
    if n < 1024:
        return plural(n, "byte")
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if round(value, 1) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def ms(value: float) -> str:
    """A response time in at most 5 cells: ``4.2`` (under 10 ms), ``734``, ``12034``, ``182s``."""
    if value < 10:
        return f"{value:.1f}"
    if value < 100_000:
        return f"{value:.0f}"
    return f"{value / 1000:.0f}s"


def count(n: int) -> str:
    """A count in at most 6 cells: ``999999``, ``12.3M``, ``4.1G``."""
    if n < 1_000_000:
        return str(n)
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e9:.1f}G"


def hits(rate: float) -> str:
    """Samples per second in at most 6 cells: ``12.5``, ``4210``, ``210k``."""
    if rate < 100:
        return f"{rate:.1f}"
    if rate < 1_000_000:
        return f"{rate:.0f}"
    return f"{rate / 1000:.0f}k"


def error_percent(value: float) -> str:
    """An error rate in percent: ``0``, ``<0.1`` (a few errors must not read as none), ``12.5``."""
    if value <= 0:
        return "0"
    if value < 0.1:
        return "<0.1"
    return f"{value:.1f}"


def host_port(url: str) -> str:
    """A server URL as ``host:port`` (``host`` alone when the scheme's default port is implied),
    short enough for the status bar; the URL itself when it has no host."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return netloc or url


def replica_label(servers: Sequence[str], current: str) -> str:
    """The replica in use among several, as the status bar shows it: ``host:port (1/2)``."""
    index = servers.index(current) + 1 if current in servers else 0
    return f"{host_port(current)} ({index}/{len(servers)})"
