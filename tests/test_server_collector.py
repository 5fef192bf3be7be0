"""The server's garbage collection policy: collections by time, and host samples the collector never walks."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from octotui.protocol import HostSample
from octotui.server.collector import Collector
from octotui.server.hub import HostWindows


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection made while the test runs; the collector's state restored after."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    enabled = gc.isenabled()
    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)
        if enabled:
            gc.enable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collector_takes_over_and_gives_back(collections: list[int]) -> None:
    gc.enable()
    collector = Collector(young_every=0.5, full_every=60)
    collector.start()
    assert not gc.isenabled()
    collections.clear()
    collector.tick()
    assert collections == []  # nothing due yet
    time.sleep(0.6)
    collector.tick()
    assert collections == [1]  # generations 0 and 1 together
    collector.tick()
    assert collections == [1]  # not due again yet
    collector.stop()
    assert gc.isenabled()


def test_full_collection_backs_off_while_it_finds_nothing(collections: list[int]) -> None:
    collector = Collector(young_every=0.001, full_every=0.01, full_most=0.04)
    collector.start()
    try:
        gc.collect()  # nothing left for the first full walk to find
        collections.clear()
        waits = []
        for _ in range(3):
            time.sleep(collector.full_wait + 0.005)
            collector.tick()
            waits.append(collector.full_wait)
        assert collections.count(2) == 3
        assert waits == [0.02, 0.04, 0.04]
        cycle = _Cycle()
        gc.collect(1)  # now in the old generation, where only a full walk finds it once it is garbage
        del cycle
        time.sleep(collector.full_wait + 0.005)
        collector.tick()
        assert collector.full_wait == 0.01
    finally:
        collector.stop()


def _sample(ts: float) -> HostSample:
    return HostSample(
        ts=ts, cpu_percent=ts / 10, cpu_per_core=[1.5, 2.5, 3.5], memory_percent=40.0, memory_used=123_456_789_012,
        memory_total=2**40, swap_percent=0.0, disk_percent=3.0, disk_read_bps=1.0, disk_write_bps=2.0,
        net_sent_bps=3.0, net_recv_bps=4.0, load1=0.1, load5=0.2, load15=0.3,
    )  # fmt: skip


def test_host_samples_are_kept_exactly_and_out_of_the_collectors_reach() -> None:
    windows = HostWindows(3)
    windows.add("a", [_sample(1.0), _sample(2.0)])
    windows.add("a", [_sample(2.0), _sample(3.0), _sample(4.0)])  # 2.0 again: skipped
    assert [s.ts for s in windows.get("a")] == [2.0, 3.0, 4.0]
    assert [s.ts for s in windows.get("a", seconds=1)] == [3.0, 4.0]
    assert windows.get("a")[-1] == _sample(4.0)
    assert windows.mean_cpu("a", count=2) == pytest.approx(0.35)
    assert windows.get("b") == [] and windows.mean_cpu("b") is None
    # 5,000 agents keep 3 million samples: not one of them may be an object the collector walks.
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(row) in tracked for row in windows._windows["a"])
