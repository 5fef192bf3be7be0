"""Containers reported to this replica that it has no record of: before one is called a stray (and
stopped), its test is read from the tables on demand. Another replica may have launched it a moment
ago (its change not read here yet: a failover, a balancer moving the agent); the agent reports a
container only once its launch command reached it, so the launch is committed by then and one read
tells a container of another replica's launch (taken into memory) from a true stray."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octotui.server.replica.core import Replica

log = logging.getLogger("octotui.server")

#: Reads under way at once at most (more unknown containers wait for a later heartbeat).
MAX_READS = 64
#: Containers found unknown by a read, remembered (stopped at once when reported again).
MAX_KNOWN_STRAYS = 10_000


class Strays:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._strays: OrderedDict[str, None] = OrderedDict()

    @property
    def reading(self) -> int:
        """Reads under way now."""
        return len(self._reading)

    def stray(self, container_id: str, test_id: str, agent_id: str) -> bool:
        """True once a read found no record of ``container_id`` on ``agent_id``; else False, and a read
        of its test started (on the event loop, from a heartbeat: the read runs on the reader's thread)."""
        if container_id in self._strays:
            return True
        if container_id not in self._reading and len(self._reading) < MAX_READS:
            read = self._read(container_id, test_id, agent_id)
            self._reading[container_id] = asyncio.get_running_loop().create_task(read)
        return False

    async def _read(self, container_id: str, test_id: str, agent_id: str) -> None:
        try:
            await self.replica.fetch_test(test_id)
            c = self.replica.s.containers.get(container_id)
            if c is None or c.agent_id != agent_id:
                self._strays[container_id] = None
                while len(self._strays) > MAX_KNOWN_STRAYS:
                    self._strays.popitem(last=False)
        except Exception as exc:  # unreadable now: not a stray yet, read again at its next report
            log.warning("replica: container %s of test %s not read (%s): not stopped", container_id, test_id, exc)
        finally:
            self._reading.pop(container_id, None)
