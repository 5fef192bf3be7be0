"""The base of the agent's Docker runtime: the engine, the records of the containers, the tasks
that follow them, the reports a heartbeat carries.

The runtime is assembled in :mod:`agent.containers` from this base and the modules of its other
responsibilities: :mod:`agent.following` (logs, JTL, the end of a run), :mod:`agent.stopping`,
:mod:`agent.adoption` (containers found again after a restart), :mod:`agent.testfiles` (the files
a launch brings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from agent.cgroups import Cgroups
from agent.engine import Engine
from agent.hostpaths import HostPaths
from agent.launches import LABEL_INSTANCE
from agent.records import ContainerRecords, LaunchError, Tracked, message
from agent.state import RememberedStops
from agent.testfiles import TestFiles
from agent.usage import UsageSampler
from octotui.protocol import LABEL_MANAGED, ContainerReport, DockerInfo

log = logging.getLogger("octotui.agent.containers")


class DockerBase:
    """The containers of one agent on one Docker engine (``DOCKER_HOST`` or the local socket).

    Its coroutines run on one event loop; :meth:`aclose` ends the tasks that follow containers.
    """

    def __init__(
        self,
        work_dir: Path,
        agent_id: str,
        state_file: Path | None = None,
        network_mode: str = "host",
        cgroups: Cgroups | None = None,
        instance: str | None = None,
        files: TestFiles | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.agent_id = agent_id
        self.instance = instance
        self.known_agent_ids = {agent_id}
        self.network_mode = network_mode
        self.state_file = state_file
        self.cgroups = cgroups or Cgroups()
        self.info = DockerInfo(available=False, error="not checked yet")
        #: Fetches the files launches bring (None: launches with files are refused).
        self.files = files
        #: Called when a JTL shows a label it had not shown before (the runtime beats at once).
        self.on_new_label: Callable[[], None] | None = None
        self._checked = False
        self._engine: Engine | None = None
        self.records = ContainerRecords(state_file, work_dir)
        self._lock = self.records.lock  # the records' lock: the threads that touch files hold it too
        self._usage = UsageSampler(self.cgroups, self._lock)
        self._host_paths: HostPaths | None = None  # found at the first launch (it needs the engine)
        self._tasks: set[asyncio.Task[None]] = set()  # log followers, stop fallbacks
        self._closed = False
        #: Seconds past a stop's grace after which a repeated stop forces ``docker stop`` again.
        self.stop_margin_s = 15.0
        # stops that came before their container's launch: the launch is then refused
        self._early_stops = RememberedStops(state_file.with_name("stops.json") if state_file is not None else None)

    # --- engine ------------------------------------------------------------------------------

    def set_agent_id(self, agent_id: str) -> None:
        """A re-registration gave a new id: label new containers with it, keep finding the old ones."""
        with self._lock:
            self.agent_id = agent_id
            self.known_agent_ids.add(agent_id)

    async def check_engine(self) -> tuple[DockerInfo, bool]:
        """Ping the engine; (its info, whether availability changed since the last check, or it is the first)."""
        first = not self._checked
        self._checked = True
        was = self.info.available
        try:
            if self._engine is None:
                self._engine = Engine()
            await self._engine.ping()
            if not was or self.info.version is None:
                version = (await self._engine.version()).get("Version")
                self.info = DockerInfo(available=True, version=version)
        except Exception as exc:  # EngineError, or a DOCKER_HOST the agent cannot use (ValueError)
            await self._close_engine()
            self.info = DockerInfo(available=False, error=message(exc))
            if was:
                await self._fail_all(f"docker engine unavailable: {self.info.error}")
        return self.info, first or self.info.available != was

    async def _close_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.aclose()

    def _api(self) -> Engine:
        if self._engine is None:
            raise LaunchError(f"no Docker engine on this agent: {self.info.error or 'not available'}")
        return self._engine

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop following and release the engine connections; containers keep running (they belong to their test)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self._close_followers)
        await self._close_engine()

    def _close_followers(self) -> None:
        for tracked in self.records.all():
            if tracked.jtl is not None:
                tracked.jtl.close()

    # --- reports -----------------------------------------------------------------------------

    def tracked(self, container_id: str) -> Tracked | None:
        """The agent's record of one container (None when unknown)."""
        return self.records.get(container_id)

    async def reports(self, marks: dict[str, int] | None = None) -> list[ContainerReport]:
        """Every container's state with fresh CPU/memory; the full list for a heartbeat.

        Each carries the labels the server has not acknowledged; pass ``marks`` to :meth:`delivered`
        once the heartbeat was answered, so that they are not sent again until they change.
        """
        items = self.records.all()
        live = [t for t in items if t.state in ("running", "stopping") and t.docker_id]
        await self._usage.sample(live, self._engine)
        with self._lock:
            return [t.report(marks) for t in items]

    def delivered(self, container_ids: Iterable[str], marks: dict[str, int] | None = None) -> None:
        """These reports reached the server; ended ones are forgotten after a few deliveries (writes a file)."""
        self.records.delivered(container_ids, marks)

    def resend_labels(self, container_ids: Iterable[str]) -> list[str]:
        """The server wants every label of these containers in the next reports (see :meth:`LabelTable.resend`)."""
        return self.records.resend_labels(container_ids)

    async def find_labelled(self, **labels: str) -> list[dict[str, Any]]:
        """Managed containers (any state) carrying all ``labels`` (the engine's list entries)."""
        return await self._api().containers([LABEL_MANAGED, *(f"{key}={value}" for key, value in labels.items())])

    def _ours(self, labels: dict[str, str]) -> bool:
        """Whether a container's labels say this instance launched it (no instance label: an older agent's)."""
        other = labels.get(LABEL_INSTANCE)
        return not other or not self.instance or other == self.instance

    async def _fail_all(self, reason: str) -> None:
        with self._lock:
            changed = [t for t in self.records.by_id.values() if not t.terminal]
            for tracked in changed:
                tracked.state, tracked.error = "failed", reason
        for tracked in changed:
            log.warning("container %s failed: %s", tracked.container_id, reason)
        if changed:
            await asyncio.to_thread(self.records.save)
            await asyncio.to_thread(self._prune_files)

    def _prune_files(self) -> None:
        """Free the cached files no live container needs any more (in a thread)."""
        if self.files is not None:
            removed = self.files.prune(self.records.all())
            if removed:
                log.info("cached file(s) no longer needed, removed: %s", ", ".join(sha[:12] for sha in removed))
