"""The agent's Docker runtime: launch JMeter containers, follow them, stop them, clean up after them.

It runs on the agent's event loop: the engine is reached through :mod:`agent.engine` (async), and
what touches files (cgroup counters, results, the state file) runs in threads. Containers carry
labels (``LABEL_*`` of the protocol), so that after any restart the agent finds its own again; the
work folder of container ``C`` is ``WORK/C`` with ``plan/`` (mounted read-only at ``/plan``) and
``results/`` (mounted at ``/results``, kept after the end until the server has stored the JTL:
:mod:`agent.uploads`).

This module is the lifecycle (launch, stop, adopt, follow, end); the records are
:mod:`agent.records`, what a launch is made of :mod:`agent.launches` and :mod:`agent.images`,
CPU/memory :mod:`agent.usage`, how a run ended :mod:`agent.verdicts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from agent.cgroups import Cgroups
from agent.engine import Engine, EngineError, NotFound
from agent.hostpaths import HostPaths, NotOnAVolume
from agent.images import ensure_image
from agent.jtlfollow import JtlFollower
from agent.launches import (
    LABEL_INSTANCE,
    LABEL_SHUTDOWN_PORT,
    SAFE_ID,
    checked_spec,
    container_config,
    free_port,
    send_stop_now,
    write_plan,
)
from agent.records import (
    ERROR_TEXT_MAX,
    STOPPED_BEFORE_START,
    ContainerRecords,
    LaunchError,
    Tracked,
    jtl_path,
    message,
)
from agent.state import RememberedStops
from agent.usage import UsageSampler
from agent.verdicts import judge
from octotui.protocol import (
    LABEL_AGENT,
    LABEL_COMMAND,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_TEST,
    Command,
    ContainerReport,
    DockerInfo,
    LaunchSpec,
)

log = logging.getLogger("octotui.agent.containers")

#: Seconds between two reads of a running container's JTL (JMeter flushes every row: a sample
#: reaches the next heartbeat within this).
JTL_READ_INTERVAL_S = 1.0


class DockerRuntime:
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
    ) -> None:
        self.work_dir = work_dir
        self.agent_id = agent_id
        self.instance = instance
        self.known_agent_ids = {agent_id}
        self.network_mode = network_mode
        self.state_file = state_file
        self.cgroups = cgroups or Cgroups()
        self.info = DockerInfo(available=False, error="not checked yet")
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

    # --- launch ------------------------------------------------------------------------------

    async def find_labelled(self, **labels: str) -> list[dict[str, Any]]:
        """Managed containers (any state) carrying all ``labels`` (the engine's list entries)."""
        return await self._api().containers([LABEL_MANAGED, *(f"{key}={value}" for key, value in labels.items())])

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

    @staticmethod
    def _check_stop(tracked: Tracked) -> None:
        """Between the steps of a launch: a stop that came meanwhile ends it here."""
        if tracked.stop_requested:
            raise LaunchError(STOPPED_BEFORE_START)

    def _ours(self, labels: dict[str, str]) -> bool:
        """Whether a container's labels say this instance launched it (no instance label: an older agent's)."""
        other = labels.get(LABEL_INSTANCE)
        return not other or not self.instance or other == self.instance

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

    async def _free_port(self) -> int:
        taken: set[int] = set()
        with contextlib.suppress(EngineError):
            for item in await self.find_labelled():
                with contextlib.suppress(ValueError, TypeError):
                    taken.add(int((item.get("Labels") or {}).get(LABEL_SHUTDOWN_PORT, "")))
        with self._lock:
            taken |= {t.shutdown_port for t in self.records.by_id.values() if t.shutdown_port}
        return free_port(taken)

    # --- following ---------------------------------------------------------------------------

    def _follow(self, tracked: Tracked) -> None:
        self._spawn(self._follow_logs(tracked), f"follow-{tracked.container_id}")
        if tracked.jtl is None:
            tracked.jtl = JtlFollower(jtl_path(self.work_dir, tracked.container_id))
        self._spawn(self._follow_jtl(tracked, tracked.jtl), f"jtl-{tracked.container_id}")

    async def _follow_jtl(self, tracked: Tracked, follower: JtlFollower) -> None:
        """Read the JTL's new rows every second while JMeter runs; :meth:`_finish` reads the rest."""
        failed = False
        while not (tracked.terminal or tracked.finishing or self._closed):
            try:
                await asyncio.to_thread(follower.read)
                failed = False
            except Exception as exc:  # an unreadable file: figures stall, the run goes on
                if not failed:
                    log.warning("cannot read the JTL of %s: %s", tracked.container_id, message(exc))
                failed = True
            await asyncio.sleep(JTL_READ_INTERVAL_S)

    async def _follow_logs(self, tracked: Tracked) -> None:
        assert tracked.docker_id is not None
        since: int | None = None
        for _ in range(100):  # one pass per broken stream; a container's life ends it
            try:
                pending = b""
                async for chunk in self._api().logs(tracked.docker_id, since=since):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._feed(tracked, line.decode("utf-8", errors="replace"))
                if pending:
                    self._feed(tracked, pending.decode("utf-8", errors="replace"))
            except Exception as exc:  # the engine went away, or its client was closed under the stream
                log.debug("log stream of %s broke: %s", tracked.container_id, exc)
            if self._closed:
                return
            since = int(time.time())
            try:
                state = (await self._api().inspect(tracked.docker_id))["State"]
            except NotFound:
                await self._end(tracked, None, "container vanished (removed outside the agent)")
                return
            except Exception as exc:
                await self._end(tracked, None, f"docker engine unavailable: {message(exc)}")
                return
            if not state.get("Running") and state.get("Status") != "created":
                await self._end(tracked, int(state.get("ExitCode", -1)), None)
                return
            await asyncio.sleep(1)
        await self._end(tracked, None, "lost the container's log stream")

    def _feed(self, tracked: Tracked, line: str) -> None:
        with self._lock:
            tracked.tracker.feed(line)
            if tracked.tracker.shutdown_port:
                tracked.shutdown_port = tracked.tracker.shutdown_port

    async def _end(self, tracked: Tracked, exit_code: int | None, reason: str | None) -> None:
        """JMeter exited (or the container is gone): results, state, clean-up."""
        with self._lock:
            if tracked.terminal or tracked.finishing or self._closed:
                return
            tracked.finishing = True
        if reason is None and tracked.docker_id and self._engine is not None:
            try:
                await self._engine.remove(tracked.docker_id)
            except EngineError as exc:
                # NotFound, or 409 "removal already in progress": someone else removed it (docker rm -f
                # kills, then removes), which is not JMeter's own end
                removed_elsewhere = isinstance(exc, NotFound) or "already in progress" in str(exc)
                if not removed_elsewhere:
                    log.warning("cannot remove container %s: %s", tracked.container_id, message(exc))
                elif exit_code != 0 and not tracked.stop_requested:
                    reason = f"container vanished (removed outside the agent, exit code {exit_code})"
        await asyncio.to_thread(self._finish, tracked, exit_code, reason)

    def _finish(self, tracked: Tracked, exit_code: int | None, reason: str | None) -> None:
        """The file side of an end (in a thread): the JTL's figures, JMeter's errors, the state file."""
        root = self.work_dir / tracked.container_id
        if tracked.jtl is not None:
            try:
                tracked.jtl.read(final=True)  # the rows written since the last read: the final figures
            except Exception as exc:
                log.warning("cannot read the JTL of %s: %s", tracked.container_id, message(exc))
        verdict = judge(tracked, root, exit_code, reason)
        shutil.rmtree(root / "plan", ignore_errors=True)
        with self._lock:
            tracked.final = verdict.final
            tracked.exit_code = exit_code
            tracked.error = verdict.error
            tracked.state = verdict.state
            tracked.cpu_percent = 0.0
            tracked.finishing = False
        if verdict.state == "finished":
            log.info("container %s finished (exit %s, %s samples)", tracked.container_id, exit_code,
                     verdict.final.samples if verdict.final else 0)  # fmt: skip
        else:
            log.warning("container %s failed: %s", tracked.container_id, verdict.error)
        self.records.save()

    async def _fail_all(self, reason: str) -> None:
        with self._lock:
            changed = [t for t in self.records.by_id.values() if not t.terminal]
            for tracked in changed:
                tracked.state, tracked.error = "failed", reason
        for tracked in changed:
            log.warning("container %s failed: %s", tracked.container_id, reason)
        if changed:
            await asyncio.to_thread(self.records.save)

    # --- stop --------------------------------------------------------------------------------

    async def stop(self, container_id: str, grace_s: float) -> str:
        """Ask JMeter to stop (UDP ``StopTestNow``), ``docker stop`` it after ``grace_s``; returns what happened.

        Returns at once; the wait and the fallback run in a task of their own.
        """
        with self._lock:
            tracked = self.records.by_id.get(container_id)
        if tracked is None:
            return await self._stop_early(container_id)
        with self._lock:
            if tracked.terminal:
                return f"already {tracked.state}"
            if tracked.state == "stopping":
                # asked again (heartbeat answers repeat it until it ends): nothing to do, unless the
                # first stop's grace is long past and the container still runs (its fallback was lost)
                if tracked.stop_deadline is None or time.monotonic() < tracked.stop_deadline or tracked.finishing:
                    return "already stopping"
                tracked.stop_deadline = time.monotonic() + self.stop_margin_s
                forced = True
            else:
                forced = False
                tracked.stop_requested = True
                if tracked.state in ("pulling", "starting") or not tracked.docker_id:
                    pull = tracked.pull_task
                    if pull is not None:
                        pull.cancel()
                    return "stopping before start"
                tracked.state = "stopping"
                tracked.stop_deadline = time.monotonic() + grace_s + self.stop_margin_s
        if forced:
            log.warning("container %s still runs long after its stop: docker stop", container_id)
            self._spawn(self._stop_after(tracked, 0.0), f"stop-{container_id}-again")
            return "docker stop (repeated)"
        log.info("container %s stopping", container_id)
        sent = await send_stop_now(self._engine, tracked)
        self._spawn(self._stop_after(tracked, grace_s if sent else 0.0), f"stop-{container_id}")
        return "StopTestNow sent" if sent else "docker stop"

    async def _stop_early(self, container_id: str) -> str:
        """A stop of a container not known (yet): remember it, so that its launch, if it comes, does not start it."""
        if not SAFE_ID.match(container_id) or not self._early_stops.add(container_id):
            return "not running on this agent"
        log.info("container %s: stop before its launch, remembered", container_id)
        await asyncio.to_thread(self._early_stops.save)
        return "not running on this agent"

    async def _stop_after(self, tracked: Tracked, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        resend_at = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if tracked.terminal or tracked.finishing or self._closed:
                return
            if time.monotonic() >= resend_at:
                # JMeter opens its shutdown listener only once its plan is loaded: a JVM still
                # starting (a busy machine) misses the first datagram, so say it again each second.
                await send_stop_now(self._engine, tracked)
                resend_at = time.monotonic() + 1.0
            await asyncio.sleep(0.2)
        if tracked.terminal or tracked.finishing or not tracked.docker_id or self._closed:
            return
        log.info("container %s did not stop in %.0f s: docker stop", tracked.container_id, grace_s)
        try:
            await self._api().stop(tracked.docker_id, timeout_s=10)
        except NotFound:
            pass
        except Exception as exc:
            log.warning("docker stop of %s failed: %s", tracked.container_id, message(exc))

    # --- adoption after a restart ------------------------------------------------------------

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
