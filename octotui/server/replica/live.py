"""Live data (agents' last heartbeat, latest host sample, containers' live figures) exchanged between
replicas: never written per heartbeat, each replica publishes what changed through it in ONE
statement per :data:`LIVE_EVERY` seconds (an UNLOGGED table, one row per replica and slot) and takes
what is newer than its own from the others'."""

from __future__ import annotations

import json
import time
import zlib
from typing import TYPE_CHECKING, Any

from octotui.protocol import DockerInfo, HostSample, JMeterFigures
from octotui.server.replica.reader import Reader

if TYPE_CHECKING:
    from octotui.server.domain.state import ServerState


class Live:
    """This replica's side of the exchange: what it published last, and what it took from the others."""

    def __init__(self, s: ServerState, reader: Reader, replica_id: str) -> None:
        self.s = s
        self.reader = reader
        self.id = replica_id
        self._seq = 0
        self._seen: dict[str, int] = {}
        self._published: dict[str, float] = {}
        self._live_containers: dict[str, set[str]] = {}
        #: last_seen of agents as taken from another replica: those are not published again here.
        self._remote_seen: dict[str, float] = {}

    async def exchange(self) -> None:
        """Publish what came through this replica since the last time; take the others' news."""
        data = self.gather()
        if data is not None:
            self._seq += 1
            await self.reader._run(self.reader.publish, self.id, self._seq, data)
        rows = await self.reader._run(self.reader.live, self.id)
        for replica, seq, blob in rows:
            if seq > self._seen.get(replica, 0):
                self._seen[replica] = seq
                self.take(json.loads(zlib.decompress(blob)))

    def gather(self) -> bytes | None:
        """The live data of agents that heartbeat through this replica since the last publication."""
        s = self.s
        agents_out: dict[str, Any] = {}
        containers_out: dict[str, Any] = {}
        for a in s.agents.values():
            seen = a.last_seen
            if seen is None or seen <= self._published.get(a.id, 0.0) or seen == self._remote_seen.get(a.id):
                continue
            self._published[a.id] = seen
            agents_out[a.id] = [
                seen,
                a.host.model_dump(mode="json") if a.host else None,
                a.docker.model_dump(mode="json") if a.docker else None,
            ]
            # Its live containers, and once more those that ended since (their last report's figures).
            live = set(s.live.get(a.id, ()))
            ended = self._live_containers.get(a.id, set()) - live
            self._live_containers[a.id] = live
            for cid in live | ended:
                if (c := s.containers.get(cid)) is not None:
                    containers_out[cid] = [c.updated_at, c.cpu_percent, c.memory_bytes, c.pull_progress, c.docker_id,
                                           c.figures.model_dump(mode="json") if c.figures else None]  # fmt: skip
        if not agents_out:
            return None
        return zlib.compress(json.dumps({"agents": agents_out, "containers": containers_out}).encode(), 1)

    def take(self, data: dict[str, Any]) -> None:
        """Another replica's live data into memory (what is newer than this one's)."""
        from octotui.server.domain import agents, lifecycle

        s = self.s
        now = time.time()
        for agent_id, (seen, host, docker) in data.get("agents", {}).items():
            a = s.agents.get(agent_id)
            if a is None or (a.last_seen is not None and a.last_seen >= seen):
                continue
            a.last_seen = seen
            a.health_ref = max(a.health_ref, seen)
            self._remote_seen[agent_id] = seen
            if host is not None:
                a.host = HostSample.model_validate(host)
                s.hosts.add(agent_id, [a.host])
            if docker is not None:
                a.docker = DockerInfo.model_validate(docker)
            a.status = agents.status(s, a, now)
            s.feed.touch("agent", agent_id)
        for cid, (updated, cpu, mem, pull, docker_id, figures) in data.get("containers", {}).items():
            c = s.containers.get(cid)
            if c is None or c.updated_at > updated:
                continue
            c.cpu_percent, c.memory_bytes, c.pull_progress = cpu, mem, pull
            c.docker_id = docker_id or c.docker_id
            if figures is not None:
                c.figures = JMeterFigures.model_validate(figures)
            c.updated_at = updated
            lifecycle.touch_container(s, c)
