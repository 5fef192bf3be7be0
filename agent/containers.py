"""The agent's Docker runtime: launch JMeter containers, follow them, stop them, clean up after them.

It runs on the agent's event loop: the engine is reached through :mod:`agent.engine` (async), and
what touches files (cgroup counters, results, the state file) runs in threads. Containers carry
labels (``LABEL_*`` of the protocol), so that after any restart the agent finds its own again; the
work folder of container ``C`` is ``WORK/C`` with ``plan/`` (mounted read-only at ``/plan``) and
``results/`` (mounted at ``/results``, kept after the end until the server has stored the JTL:
:mod:`agent.uploads`). The files a launch brings are placed in ``plan/`` beside the plan.

This module is the launch; :class:`DockerRuntime` gathers the other parts of the lifecycle, each in
a module of its own: the engine, records and reports (:mod:`agent.dockerbase`), following and the
end of a run (:mod:`agent.following`), stops (:mod:`agent.stopping`), adoption after a restart
(:mod:`agent.adoption`). The records are :mod:`agent.records`, what a launch is made of
:mod:`agent.launches`, :mod:`agent.images` and :mod:`agent.testfiles`, CPU/memory
:mod:`agent.usage`, how a run ended :mod:`agent.verdicts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

from agent.adoption import Adoption
from agent.engine import EngineError
from agent.hostpaths import HostPaths, NotOnAVolume
from agent.images import ensure_image
from agent.jtlfollow import JtlFollower
from agent.launches import LABEL_SHUTDOWN_PORT, checked_spec, container_config, free_port, write_plan
from agent.records import ERROR_TEXT_MAX, STOPPED_BEFORE_START, LaunchError, Tracked, jtl_path, message, stoppable
from agent.stopping import Stopping
from agent.testfiles import checked_files
from octotui.protocol import LABEL_COMMAND, LABEL_CONTAINER, Command, LaunchFile, LaunchSpec

log = logging.getLogger("octotui.agent.containers")


class DockerRuntime(Adoption, Stopping):
    """The containers of one agent on one Docker engine: launch, follow, stop, adopt (see :class:`DockerBase`)."""

    async def launch(self, command: Command) -> Tracked:
        """Start the container of a launch command; idempotent by command id and container id.

        Raises :class:`LaunchError` with the reason when it cannot; the container is then reported
        ``failed`` with that reason too.
        """
        spec = checked_spec(command)
        cid = command.container_id
        with self._lock:
            known = self.records.by_id.get(cid)
            if known is not None:
                return known
            # a launch naming a mode other than the default wins; else this agent's --network-mode
            mode = spec.network_mode if spec.network_mode not in ("", "host") else self.network_mode
            stopped = cid in self._early_stops
            tracked = Tracked(cid, command.test_id, command.id, "failed" if stopped else "starting", network_mode=mode)
            if stopped:
                tracked.stop_requested, tracked.error = True, STOPPED_BEFORE_START
            self.records.by_id[cid] = tracked
        if stopped:
            log.info("container %s: not started, its stop came before its launch", cid)
            await asyncio.to_thread(self.records.save)
            raise LaunchError(STOPPED_BEFORE_START)
        try:
            await self._launch(tracked, spec)
        except Exception as exc:
            reason = message(exc)
            await self._fail_launch(tracked, reason)
            raise LaunchError(reason) from exc
        return tracked

    async def _launch(self, tracked: Tracked, spec: LaunchSpec) -> None:
        if not self.info.available:
            raise LaunchError(f"no Docker engine on this agent: {self.info.error or 'not available'}")
        api = self._api()
        existing = await self.find_labelled(**{LABEL_CONTAINER: tracked.container_id})
        if tracked.command_id:
            existing += await self.find_labelled(**{LABEL_COMMAND: tracked.command_id})
        existing = [item for item in existing if self._ours(item.get("Labels") or {})]
        self._check_stop(tracked)
        if existing:  # a redelivered launch after a restart: this container exists already
            log.info("container %s exists already, following it", tracked.container_id)
            await self._adopt_one(existing[0], tracked)
            return
        files = checked_files(spec)
        tracked.files = [item.sha256 for item in files]
        root = self.work_dir / tracked.container_id
        plan_dir, results_dir = root / "plan", root / "results"
        plan_source, results_source = await self._host_path(plan_dir), await self._host_path(results_dir)
        await asyncio.to_thread(write_plan, plan_dir, results_dir, spec)
        tracked.jtl = JtlFollower(jtl_path(self.work_dir, tracked.container_id))
        # On the host network the port is the host's: the server's hint cannot know what else runs
        # here (another server's agents, other programs), so the agent picks a port it sees free.
        mode = spec.network_mode if spec.network_mode not in ("", "host") else self.network_mode
        host_network = mode == "host"
        port = await self._free_port() if host_network or not spec.shutdown_port else spec.shutdown_port
        tracked.shutdown_port = port
        await ensure_image(api, tracked, spec.image)
        self._check_stop(tracked)
        tracked.state = "starting"
        if files:
            await self._place_files(tracked, files, plan_dir)
        config = container_config(tracked, spec, self.agent_id, self.instance, (plan_source, results_source))
        if spec.memory_limit:
            tracked.memory_limit = spec.memory_limit
        tracked.docker_id = await api.create(f"octotui-{tracked.container_id}", config)
        self._check_stop(tracked)  # created, not started: _fail_launch removes it
        await api.start(tracked.docker_id)
        # stopped while starting: JMeter's JVM has not even loaded the plan, kill and remove it
        self._check_stop(tracked)
        tracked.state = "running"
        log.info("container %s running (test %s, docker %s)", tracked.container_id, tracked.test_id,
                 tracked.docker_id[:12])  # fmt: skip
        self._follow(tracked)

    async def _place_files(self, tracked: Tracked, files: list[LaunchFile], plan_dir: Path) -> None:
        """The launch's files beside its plan, in a task a stop cancels at once (see :mod:`agent.testfiles`).

        The state stays ``starting`` and ``pull_progress`` shows the bytes fetched: the dashboard draws
        it as a bar beside ``starting``, after the image's own under ``pulling``.
        """
        if self.files is None:
            raise LaunchError("this agent cannot fetch the launch's files (no link to the server)")
        await stoppable(tracked, self.files.place(tracked, files, plan_dir), "download of its files")
        self._check_stop(tracked)

    @staticmethod
    def _check_stop(tracked: Tracked) -> None:
        """Between the steps of a launch: a stop that came meanwhile ends it here."""
        if tracked.stop_requested:
            raise LaunchError(STOPPED_BEFORE_START)

    async def _host_path(self, path: Path) -> Path:
        """``path`` as the host's engine sees it (the agent may run in a container of its own)."""
        if self._host_paths is None:
            self._host_paths = await HostPaths.discover(self._api())
        try:
            return self._host_paths.to_host(path)
        except NotOnAVolume:
            raise LaunchError(
                f"work folder {self.work_dir} is not on a volume of the agent's container: mount it at the same path"
            ) from None

    async def _fail_launch(self, tracked: Tracked, reason: str) -> None:
        if tracked.docker_id and self._engine is not None:
            with contextlib.suppress(Exception):
                await self._engine.remove(tracked.docker_id)
        with self._lock:
            tracked.state, tracked.error, tracked.pull_progress = "failed", reason[:ERROR_TEXT_MAX], None
        log.warning("container %s failed: %s", tracked.container_id, reason)
        await asyncio.to_thread(self._forget_plan, tracked)

    def _forget_plan(self, tracked: Tracked) -> None:
        shutil.rmtree(self.work_dir / tracked.container_id / "plan", ignore_errors=True)
        self.records.save()
        self._prune_files()

    async def _free_port(self) -> int:
        taken: set[int] = set()
        with contextlib.suppress(EngineError):
            for item in await self.find_labelled():
                with contextlib.suppress(ValueError, TypeError):
                    taken.add(int((item.get("Labels") or {}).get(LABEL_SHUTDOWN_PORT, "")))
        with self._lock:
            taken |= {t.shutdown_port for t in self.records.by_id.values() if t.shutdown_port}
        return free_port(taken)
