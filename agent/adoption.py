"""Containers found again after a restart of the agent (by their labels), followed again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agent.following import Following
from agent.launches import LABEL_SHUTDOWN_PORT, SAFE_ID
from agent.records import Tracked
from octotui.protocol import LABEL_AGENT, LABEL_COMMAND, LABEL_CONTAINER, LABEL_TEST

log = logging.getLogger("octotui.agent.containers")


class Adoption(Following):
    """Finds this agent's containers by their labels and follows them again."""

    async def adopt(self) -> list[str]:
        """Find this agent's containers by their labels and follow them again; their container ids."""
        found: list[str] = []
        for agent_id in sorted(self.known_agent_ids):
            for item in await self.find_labelled(**{LABEL_AGENT: agent_id}):
                labels = item.get("Labels") or {}
                cid = labels.get(LABEL_CONTAINER, "")
                if not SAFE_ID.match(cid) or not self._ours(labels):
                    continue
                with self._lock:
                    known = self.records.by_id.get(cid)
                    if known is not None and not known.terminal:
                        continue
                    tracked = Tracked(cid, labels.get(LABEL_TEST, ""), labels.get(LABEL_COMMAND) or None, "running")
                    self.records.by_id[cid] = tracked
                await self._adopt_one(item, tracked)
                found.append(cid)
        # what a previous start cached: the containers it placed files for hold links of their own
        await asyncio.to_thread(self._prune_files)
        return found

    async def _adopt_one(self, item: dict[str, Any], tracked: Tracked) -> None:
        labels = item.get("Labels") or {}
        tracked.docker_id = item["Id"]
        tracked.network_mode = (item.get("HostConfig") or {}).get("NetworkMode") or "host"
        with contextlib.suppress(ValueError, TypeError):
            tracked.shutdown_port = int(labels.get(LABEL_SHUTDOWN_PORT, ""))
        state = item.get("State", "")
        if state == "created":
            with contextlib.suppress(Exception):
                await self._api().start(item["Id"])
                state = "running"
        tracked.state = "running"
        log.info("container %s found again (docker state %s)", tracked.container_id, state)
        self._follow(tracked)  # replays the log from the start, so the figures are whole again
