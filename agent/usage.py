"""CPU and memory of the running containers: from their cgroup files where the agent can read them
(~25 µs a file), else from the engine's stats API (1-2 s per container).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from agent.cgroups import Cgroups
from agent.engine import Engine
from agent.records import Tracked

log = logging.getLogger("octotui.agent.containers")


def update_usage(tracked: Tracked, cpu_ns: int, memory: int, limit: int) -> None:
    """Take one reading of a container's counters: CPU % since the previous one, memory, limit."""
    now = time.monotonic()
    if tracked.last_cpu is not None and now > tracked.last_cpu[1]:
        delta = (cpu_ns - tracked.last_cpu[0]) / 1e9 / (now - tracked.last_cpu[1])
        tracked.cpu_percent = max(delta * 100.0, 0.0)
    tracked.last_cpu = (cpu_ns, now)
    tracked.memory_bytes = memory
    if limit and not tracked.memory_limit:
        tracked.memory_limit = limit


class UsageSampler:
    """Samples the live containers' usage into their records; ``lock`` guards the records."""

    def __init__(self, cgroups: Cgroups, lock: threading.RLock) -> None:
        self.cgroups = cgroups
        self._lock = lock

    async def sample(self, live: list[Tracked], engine: Engine | None) -> None:
        """Read every container of ``live`` (each has a docker id)."""
        if not live:
            return
        # a container's cgroup is looked for once, by its main process when the engine tells it
        pids = {t.container_id: await self._pid(engine, t) for t in live if t.cgroup is None and not t.cgroup_checked}
        via_api = await asyncio.to_thread(self._sample_cgroups, live, pids)
        if via_api and engine is not None:
            await asyncio.gather(*(self._sample_api(engine, t) for t in via_api))

    def _sample_cgroups(self, live: list[Tracked], pids: dict[str, int | None]) -> list[Tracked]:
        """Sample from the cgroup files (in a thread); the containers whose files cannot be read."""
        missed = []
        for tracked in live:
            assert tracked.docker_id is not None
            if tracked.cgroup is None and not tracked.cgroup_checked:
                tracked.cgroup_checked = True
                tracked.cgroup = self.cgroups.find(tracked.docker_id, pids.get(tracked.container_id))
            if tracked.cgroup is None:
                missed.append(tracked)
                continue
            try:
                cpu_ns, memory, limit = self.cgroups.read(tracked.cgroup)
            except (OSError, ValueError):
                tracked.cgroup = None
                missed.append(tracked)
                continue
            with self._lock:
                update_usage(tracked, cpu_ns, memory, limit)
        return missed

    @staticmethod
    async def _pid(engine: Engine | None, tracked: Tracked) -> int | None:
        assert tracked.docker_id is not None
        if engine is None:
            return None
        try:
            return int((await engine.inspect(tracked.docker_id))["State"]["Pid"]) or None
        except Exception:
            return None

    @staticmethod
    async def _sample_api(engine: Engine, tracked: Tracked) -> None:
        assert tracked.docker_id is not None
        try:
            stats = await engine.stats(tracked.docker_id)
            cpu_ns = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
            memory = stats.get("memory_stats", {})
            extra = memory.get("stats", {})
            usage = int(memory.get("usage", 0)) - int(extra.get("total_inactive_file", extra.get("inactive_file", 0)))
            update_usage(tracked, cpu_ns, max(usage, 0), int(memory.get("limit", 0)))
        except Exception as exc:
            log.debug("stats of %s: %s", tracked.container_id, exc)
