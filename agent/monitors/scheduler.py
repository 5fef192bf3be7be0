"""Runs the monitors the server assigns this agent, and keeps what they collected until it is sent.

Each monitor is its own task looping at its interval (collections never wait for the heartbeat, a
hanging target never delays it); at most ``concurrency`` collections run at once, each cut at the
assignment's ``timeout``. Unsent samples stay in a bounded buffer per monitor (the oldest dropped
first, counted) until a heartbeat carrying them is answered (:meth:`take`, then :meth:`delivered`).
The kinds' libraries are imported by their modules, loaded only when a monitor of the kind runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from agent.monitors.base import CollectError, Collector, describe
from octotui.protocol.monitors import (
    MAX_MONITOR_METRICS,
    MAX_MONITORS_PER_AGENT,
    MonitorAssignment,
    MonitorReport,
    MonitorSample,
)

log = logging.getLogger("octotui.agent.monitors")

#: kind → (module, class); the module is imported when the first monitor of its kind runs.
KINDS = {
    "prometheus": ("agent.monitors.prometheus", "PrometheusCollector"),
    "http": ("agent.monitors.httpprobe", "HttpProbe"),
    "nginx": ("agent.monitors.status_pages", "NginxCollector"),
    "apache": ("agent.monitors.status_pages", "ApacheCollector"),
    "postgresql": ("agent.monitors.postgresql", "PostgresqlCollector"),
    "linux-ssh": ("agent.monitors.linux_ssh", "LinuxSshCollector"),
}
#: Samples kept per monitor while the server is not reached (a report carries at most 720).
MAX_BUFFERED = 720
#: Values one heartbeat carries at most (~40 bytes each in JSON: ~2 MB; the server takes 9 MiB bodies).
VALUES_PER_BEAT = 50_000


def make_collector(assignment: MonitorAssignment) -> Collector:
    module, name = KINDS[assignment.kind]
    cls: type[Collector] = getattr(importlib.import_module(module), name)
    return cls(assignment)


async def collect_once(collector: Collector) -> dict[str, float] | str:
    """One collection cut at its assignment's ``timeout`` s: its values, or the report's error in words (the
    collector's connections are then forgotten, the next collection opens new ones)."""
    timeout = collector.assignment.timeout
    try:
        return await asyncio.wait_for(collector.collect(), timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            error = f"timed out after {timeout:g} s"
        elif isinstance(exc, CollectError):
            error = str(exc)
        else:
            error = describe(exc, timeout)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(collector.reset(), 5)
    return error


@dataclass
class _Monitor:
    assignment: MonitorAssignment
    buffer: deque[tuple[int, MonitorSample]] = field(default_factory=lambda: deque(maxlen=MAX_BUFFERED))
    seq: int = 0
    state: str | None = None  # None until the first collection ended
    error: str | None = None
    dropped_metrics: int = 0
    dropped_samples: int = 0
    version: str | None = None
    collector: Collector | None = None
    task: asyncio.Task[None] | None = None
    collections: int = 0


class MonitorScheduler:
    """The monitors this agent runs: :meth:`apply` the server's assignments, :meth:`take` reports."""

    def __init__(
        self, concurrency: int = 16, buffer: int = MAX_BUFFERED, values_per_beat: int = VALUES_PER_BEAT
    ) -> None:
        self.values_per_beat = values_per_beat
        self._turn = 0
        #: The revision of the assignments held, 0 for none: always sent, so the server knows this
        #: agent runs monitors (one sending none is older than monitors and is given none).
        self.revision = 0
        self.monitors: dict[str, _Monitor] = {}
        self.concurrency = concurrency
        self.buffer = buffer
        self._limit: asyncio.Semaphore | None = None

    # --- assignments ----------------------------------------------------------------------------

    def apply(self, assignments: list[MonitorAssignment] | None, revision: int | None) -> None:
        """Run exactly ``assignments`` from now on (None: keep what runs). A changed assignment
        restarts its monitor (new collector), keeping its unsent samples; a removed one drops them."""
        if assignments is None:
            return
        if len(assignments) > MAX_MONITORS_PER_AGENT:
            log.warning("%d monitors assigned: running the first %d", len(assignments), MAX_MONITORS_PER_AGENT)
            assignments = assignments[:MAX_MONITORS_PER_AGENT]
        self.revision = revision or 0
        wanted = {a.id: a for a in assignments}
        for monitor_id in list(self.monitors):
            current = self.monitors[monitor_id]
            if monitor_id not in wanted:
                self._stop(current)
                del self.monitors[monitor_id]
                log.info("monitor %s stopped", monitor_id)
            elif current.assignment != wanted[monitor_id]:
                self._stop(current)
                kept = current.buffer
                fresh = self.monitors[monitor_id] = _Monitor(wanted[monitor_id], buffer=kept, seq=current.seq)
                self._start(fresh)
                log.info("monitor %s changed: restarted", monitor_id)
        for monitor_id, assignment in wanted.items():
            if monitor_id not in self.monitors:
                monitor = self.monitors[monitor_id] = _Monitor(assignment, buffer=deque(maxlen=self.buffer))
                self._start(monitor)
                log.info("monitor %s (%s) started, every %g s", monitor_id, assignment.kind, assignment.interval)

    def _start(self, monitor: _Monitor) -> None:
        monitor.task = asyncio.create_task(self._run(monitor), name=f"monitor {monitor.assignment.id}")

    def _stop(self, monitor: _Monitor) -> None:
        if monitor.task is not None:
            monitor.task.cancel()

    # --- collections ----------------------------------------------------------------------------

    async def _run(self, monitor: _Monitor) -> None:
        interval = monitor.assignment.interval
        try:
            # spread monitors started together over their first second or interval
            await asyncio.sleep(random.uniform(0, min(interval, 1.0)))
            next_at = time.monotonic()
            while True:
                if self._limit is None:
                    self._limit = asyncio.Semaphore(self.concurrency)
                async with self._limit:
                    await self._collect(monitor)
                next_at += interval
                now = time.monotonic()
                if next_at < now:  # fell behind (a slow target, a suspended machine): no burst
                    next_at = now + interval
                await asyncio.sleep(next_at - now)
        finally:
            collector, monitor.collector = monitor.collector, None
            if collector is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(collector.aclose()), 5)

    async def _collect(self, monitor: _Monitor) -> None:
        try:
            if monitor.collector is None:
                monitor.collector = make_collector(monitor.assignment)
        except CollectError as exc:  # e.g. a bad target or selector: said at each interval
            self._failed(monitor, str(exc))
            return
        outcome = await collect_once(monitor.collector)
        if isinstance(outcome, str):
            self._failed(monitor, outcome)
        else:
            self._collected(monitor, outcome)

    def _failed(self, monitor: _Monitor, error: str) -> None:
        monitor.collections += 1
        if monitor.state != "error" or monitor.error != error:
            log.warning("monitor %s (%s): %s", monitor.assignment.id, monitor.assignment.kind, error)
        monitor.state, monitor.error = "error", error

    def _collected(self, monitor: _Monitor, values: dict[str, float]) -> None:
        monitor.collections += 1
        assert monitor.collector is not None
        chosen = monitor.assignment.metrics
        dropped = monitor.collector.dropped
        if chosen and monitor.assignment.kind != "prometheus":  # prometheus selects by label itself
            kept = {k: v for k, v in values.items() if k in chosen}
            dropped += len(values) - len(kept)
            values = kept
        values = {k: float(v) for k, v in values.items() if math.isfinite(v)}  # JSON has no NaN
        if len(values) > MAX_MONITOR_METRICS:
            dropped += len(values) - MAX_MONITOR_METRICS
            values = dict(list(values.items())[:MAX_MONITOR_METRICS])
        if monitor.state != "ok":
            log.info("monitor %s (%s): ok, %d metric(s)", monitor.assignment.id, monitor.assignment.kind, len(values))
        monitor.state, monitor.error = "ok", None
        monitor.dropped_metrics, monitor.version = dropped, monitor.collector.version
        if len(monitor.buffer) == monitor.buffer.maxlen:
            monitor.dropped_samples += 1
            if monitor.dropped_samples == 1 or monitor.dropped_samples % 100 == 0:
                log.warning("monitor %s: %d unsent sample(s) dropped (the server is not reached)",
                            monitor.assignment.id, monitor.dropped_samples)  # fmt: skip
        monitor.seq += 1
        monitor.buffer.append((monitor.seq, MonitorSample(ts=time.time(), values=values)))

    # --- reports --------------------------------------------------------------------------------

    def take(self, marks: dict[str, int]) -> list[MonitorReport]:
        """Reports of every monitor that collected at least once: its state and its unsent samples,
        oldest first, up to :data:`VALUES_PER_BEAT` values in all (the rest go in the next beats,
        the monitor served first turning each beat); they stay buffered until :meth:`delivered`
        with ``marks``."""
        reports = []
        budget = self.values_per_beat
        ids = list(self.monitors)
        self._turn = (self._turn + 1) % max(1, len(ids))
        for monitor_id in ids[self._turn :] + ids[: self._turn]:
            monitor = self.monitors[monitor_id]
            if monitor.state is None:
                continue
            samples: list[MonitorSample] = []
            mark = 0
            for seq, sample in monitor.buffer:
                if len(sample.values) > budget and samples:
                    break
                budget -= len(sample.values)
                samples.append(sample)
                mark = seq
                if budget <= 0:
                    break
            marks[monitor_id] = mark
            state: Literal["ok", "error"] = "ok" if monitor.state == "ok" else "error"
            reports.append(
                MonitorReport(
                    id=monitor_id,
                    state=state,
                    error=monitor.error,
                    samples=samples,
                    dropped_metrics=monitor.dropped_metrics,
                    version=monitor.version,
                )
            )
        return reports

    def delivered(self, marks: dict[str, int]) -> None:
        """The heartbeat built with ``marks`` was answered: its samples are the server's now."""
        for monitor_id, mark in marks.items():
            monitor = self.monitors.get(monitor_id)
            if monitor is None:
                continue
            while monitor.buffer and monitor.buffer[0][0] <= mark:
                monitor.buffer.popleft()
            monitor.dropped_samples = 0

    async def aclose(self) -> None:
        tasks = [m.task for m in self.monitors.values() if m.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self.monitors.clear()
