"""The agent's Docker runtime: launch JMeter containers, follow them, stop them, clean up after them.

It runs on the agent's event loop: the engine is reached through :mod:`agent.engine` (async), and
what touches files (cgroup counters, results, the state file) runs in threads. Containers carry
labels (``LABEL_*`` of the protocol), so that after any restart the agent finds its own again; the
work folder of container ``C`` is ``WORK/C`` with ``plan/`` (mounted read-only at ``/plan``) and
``results/`` (mounted at ``/results``, kept after the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cgroups import CgroupFiles, Cgroups
from agent.engine import Engine, EngineError, NotFound
from agent.hostpaths import HostPaths, NotOnAVolume
from agent.jmeter import FiguresTracker, first_failure, is_error_line, read_jtl
from octotui.protocol import (
    LABEL_AGENT,
    LABEL_COMMAND,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_TEST,
    RESERVED_PROPERTY_PREFIXES,
    TERMINAL_CONTAINER_STATES,
    Command,
    ContainerReport,
    DockerInfo,
    LaunchSpec,
    reserved_property,
)

log = logging.getLogger("octotui.agent.containers")

#: The agent's own label: the UDP port JMeter listens on for StopTestNow.
LABEL_SHUTDOWN_PORT = "io.octotui.shutdown-port"
#: The agent's own label: the random instance id of the state dir that launched the container. An
#: agent adopts only containers of its own instance (two agents handed one id never share them).
LABEL_INSTANCE = "io.octotui.instance"
#: Prefixes of the JMeter properties the agent sets itself (its results, its stop and its live
#: figures depend on them): the contract's list, which the server refuses with 422. A launch that
#: still sets one (from an older server) is refused here too.
RESERVED_PROPERTIES: tuple[str, ...] = RESERVED_PROPERTY_PREFIXES
#: The error of a container stopped before JMeter ran (its launch refused or cut short).
STOPPED_BEFORE_START = "stopped before it started"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SAFE_PLAN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range, so clients' sockets never take them
#: A terminal report goes out in this many successful heartbeats before the agent forgets it.
_DELIVERIES = 3
_ERROR_TEXT_MAX = 2000
#: Stops of containers not known yet (their launch still to come) remembered at most.
_EARLY_STOPS = 2000


def reserved_properties(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that :data:`RESERVED_PROPERTIES` keeps for the agent, sorted."""
    return sorted(name for name in names if reserved_property(name) is not None)


class LaunchError(Exception):
    """A launch that cannot happen; the message is the reason sent back in the command's ack."""


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# --- tracked containers ----------------------------------------------------------------------


@dataclass
class Tracked:
    """What the agent knows of one container it launched or adopted."""

    container_id: str
    test_id: str
    command_id: str | None
    state: str
    network_mode: str = "host"
    docker_id: str | None = None
    shutdown_port: int | None = None
    memory_limit: int = 0
    tracker: FiguresTracker = field(default_factory=FiguresTracker)
    final: Any = None  # FinalResults | None
    exit_code: int | None = None
    error: str | None = None
    pull_progress: float | None = None
    stop_requested: bool = False
    #: When a repeated stop may force ``docker stop`` (monotonic s): the first stop's grace has passed.
    stop_deadline: float | None = None
    pull_task: asyncio.Task[None] | None = None
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    cgroup: CgroupFiles | None = None
    cgroup_checked: bool = False
    last_cpu: tuple[int, float] | None = None  # (cpu ns, monotonic s)
    deliveries: int = 0
    finishing: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_CONTAINER_STATES

    def report(self) -> ContainerReport:
        return ContainerReport(
            container_id=self.container_id,
            test_id=self.test_id,
            command_id=self.command_id,
            docker_id=self.docker_id,
            state=self.state,
            cpu_percent=round(self.cpu_percent, 1),
            memory_bytes=self.memory_bytes,
            memory_limit=self.memory_limit,
            figures=self.tracker.figures,
            final=self.final,
            exit_code=self.exit_code,
            error=self.error,
            pull_progress=self.pull_progress,
        )


def jmeter_args(spec: LaunchSpec, port: int) -> list[str]:
    """The arguments given to the image's ``jmeter`` entrypoint for one launch."""
    args = [
        "-n",
        "-t", f"/plan/{spec.plan_name}",
        "-l", "/results/results.jtl",
        "-j", "/results/jmeter.log",
        "-Jjmeter.save.saveservice.output_format=csv",
        "-Jjmeter.save.saveservice.print_field_names=true",
        f"-Jjmeterengine.nongui.port={port}",
        f"-Jjmeterengine.nongui.maxport={port}",
        "-Jsummariser.interval=5",
    ]  # fmt: skip
    args += [f"-J{key}={value}" for key, value in spec.properties.items()]
    return args


def _write_plan(plan_dir: Path, results_dir: Path, spec: LaunchSpec) -> None:
    plan_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    results_dir.chmod(0o777)  # the image may run JMeter as another user
    (plan_dir / spec.plan_name).write_text(spec.plan, encoding="utf-8")


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
        # the state of tracked containers is also read and written by the threads that touch files
        self._lock = threading.RLock()
        self._tracked: dict[str, Tracked] = {}
        self._host_paths: HostPaths | None = None  # found at the first launch (it needs the engine)
        self._tasks: set[asyncio.Task[None]] = set()  # log followers, stop fallbacks
        self._closed = False
        #: Seconds past a stop's grace after which a repeated stop forces ``docker stop`` again.
        self.stop_margin_s = 15.0
        # stops that came before their container's launch: the launch is then refused
        self._early_stops: OrderedDict[str, None] = OrderedDict()
        self._stops_file = state_file.with_name("stops.json") if state_file is not None else None
        self._load_terminal_reports()
        self._load_early_stops()

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
            self.info = DockerInfo(available=False, error=_message(exc))
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
        await self._close_engine()

    # --- state persisted across restarts -----------------------------------------------------

    def _load_terminal_reports(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            items = json.loads(self.state_file.read_text())
            for item in items:
                report = ContainerReport.model_validate(item)
                tracked = Tracked(report.container_id, report.test_id, report.command_id, report.state)
                tracked.docker_id, tracked.final, tracked.exit_code = report.docker_id, report.final, report.exit_code
                tracked.error = report.error
                tracked.tracker.figures = report.figures
                self._tracked[report.container_id] = tracked
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.state_file, exc)

    def _save_terminal_reports(self) -> None:
        if self.state_file is None:
            return
        with self._lock:
            items = [t.report().model_dump(mode="json") for t in self._tracked.values() if t.terminal]
        tmp = self.state_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(items))
            tmp.replace(self.state_file)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.state_file, exc)

    def _load_early_stops(self) -> None:
        if self._stops_file is None or not self._stops_file.exists():
            return
        try:
            self._early_stops = OrderedDict.fromkeys(str(cid) for cid in json.loads(self._stops_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self._stops_file, exc)

    def _save_early_stops(self) -> None:
        if self._stops_file is None:
            return
        with self._lock:
            items = list(self._early_stops)
        tmp = self._stops_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(items))
            tmp.replace(self._stops_file)
        except OSError as exc:
            log.warning("cannot save %s: %s", self._stops_file, exc)

    # --- reports -----------------------------------------------------------------------------

    def tracked(self, container_id: str) -> Tracked | None:
        """The agent's record of one container (None when unknown)."""
        with self._lock:
            return self._tracked.get(container_id)

    async def reports(self) -> list[ContainerReport]:
        """Every container's state with fresh CPU/memory; the full list for a heartbeat."""
        with self._lock:
            items = list(self._tracked.values())
        live = [t for t in items if t.state in ("running", "stopping") and t.docker_id]
        if live:
            # a container's cgroup is looked for once, by its main process when the engine tells it
            pids = {t.container_id: await self._pid(t) for t in live if t.cgroup is None and not t.cgroup_checked}
            via_api = await asyncio.to_thread(self._sample_cgroups, live, pids)
            if via_api and self._engine is not None:
                await asyncio.gather(*(self._sample_api(t) for t in via_api))
        with self._lock:
            return [t.report() for t in items]

    def delivered(self, container_ids: Iterable[str]) -> None:
        """These reports reached the server; terminal ones are forgotten after a few deliveries (writes a file)."""
        dropped = False
        with self._lock:
            for cid in container_ids:
                tracked = self._tracked.get(cid)
                if tracked is not None and tracked.terminal:
                    tracked.deliveries += 1
                    if tracked.deliveries >= _DELIVERIES:
                        del self._tracked[cid]
                        dropped = True
        if dropped:
            self._save_terminal_reports()

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
                self._update_usage(tracked, cpu_ns, memory, limit)
        return missed

    async def _pid(self, tracked: Tracked) -> int | None:
        assert tracked.docker_id is not None
        try:
            return int((await self._api().inspect(tracked.docker_id))["State"]["Pid"]) or None
        except Exception:
            return None

    async def _sample_api(self, tracked: Tracked) -> None:
        assert tracked.docker_id is not None
        try:
            stats = await self._api().stats(tracked.docker_id)
            cpu_ns = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
            memory = stats.get("memory_stats", {})
            extra = memory.get("stats", {})
            usage = int(memory.get("usage", 0)) - int(extra.get("total_inactive_file", extra.get("inactive_file", 0)))
            self._update_usage(tracked, cpu_ns, max(usage, 0), int(memory.get("limit", 0)))
        except Exception as exc:
            log.debug("stats of %s: %s", tracked.container_id, exc)

    @staticmethod
    def _update_usage(tracked: Tracked, cpu_ns: int, memory: int, limit: int) -> None:
        now = time.monotonic()
        if tracked.last_cpu is not None and now > tracked.last_cpu[1]:
            delta = (cpu_ns - tracked.last_cpu[0]) / 1e9 / (now - tracked.last_cpu[1])
            tracked.cpu_percent = max(delta * 100.0, 0.0)
        tracked.last_cpu = (cpu_ns, now)
        tracked.memory_bytes = memory
        if limit and not tracked.memory_limit:
            tracked.memory_limit = limit

    # --- launch ------------------------------------------------------------------------------

    async def find_labelled(self, **labels: str) -> list[dict[str, Any]]:
        """Managed containers (any state) carrying all ``labels`` (the engine's list entries)."""
        return await self._api().containers([LABEL_MANAGED, *(f"{key}={value}" for key, value in labels.items())])

    async def launch(self, command: Command) -> Tracked:
        """Start the container of a launch command; idempotent by command id and container id.

        Raises :class:`LaunchError` with the reason when it cannot; the container is then reported
        ``failed`` with that reason too.
        """
        spec = command.launch
        if spec is None:
            raise LaunchError("launch command without a launch spec")
        cid = command.container_id
        if not _SAFE_ID.match(cid) or spec.container_id != cid:
            raise LaunchError(f"invalid container id {cid!r}")
        if not _SAFE_PLAN.match(spec.plan_name):
            raise LaunchError(f"invalid plan name {spec.plan_name!r}: a plain file name is expected")
        reserved = reserved_properties(spec.properties)
        if reserved:
            raise LaunchError(f"properties set by the agent itself cannot be overridden: {', '.join(reserved)}")
        with self._lock:
            known = self._tracked.get(cid)
            if known is not None:
                return known
            # a launch naming a mode other than the default wins; else this agent's --network-mode
            mode = spec.network_mode if spec.network_mode not in ("", "host") else self.network_mode
            stopped = cid in self._early_stops
            tracked = Tracked(cid, command.test_id, command.id, "failed" if stopped else "starting", network_mode=mode)
            if stopped:
                tracked.stop_requested, tracked.error = True, STOPPED_BEFORE_START
            self._tracked[cid] = tracked
        if stopped:
            log.info("container %s: not started, its stop came before its launch", cid)
            await asyncio.to_thread(self._save_terminal_reports)
            raise LaunchError(STOPPED_BEFORE_START)
        try:
            await self._launch(tracked, spec)
        except Exception as exc:
            reason = _message(exc)
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
        await asyncio.to_thread(_write_plan, plan_dir, results_dir, spec)
        # On the host network the port is the host's: the server's hint cannot know what else runs
        # here (another server's agents, other programs), so the agent picks a port it sees free.
        mode = spec.network_mode if spec.network_mode not in ("", "host") else self.network_mode
        host_network = mode == "host"
        port = await self._free_port() if host_network or not spec.shutdown_port else spec.shutdown_port
        tracked.shutdown_port = port
        await self._ensure_image(tracked, spec.image)
        self._check_stop(tracked)
        tracked.state = "starting"
        labels = {
            LABEL_MANAGED: "true",
            LABEL_TEST: tracked.test_id,
            LABEL_CONTAINER: tracked.container_id,
            LABEL_AGENT: self.agent_id,
            LABEL_COMMAND: tracked.command_id or "",
            LABEL_SHUTDOWN_PORT: str(port),
        }
        if self.instance:
            labels[LABEL_INSTANCE] = self.instance
        host_config: dict[str, Any] = {
            "Binds": [f"{plan_source}:/plan:ro", f"{results_source}:/results:rw"],
            "NetworkMode": tracked.network_mode,
        }
        if spec.cpu_limit:
            host_config["NanoCpus"] = int(spec.cpu_limit * 1e9)
        if spec.memory_limit:
            host_config["Memory"] = spec.memory_limit
            tracked.memory_limit = spec.memory_limit
        config = {
            "Image": spec.image,
            "Cmd": jmeter_args(spec, port),
            "Labels": labels,
            "HostConfig": host_config,
            "Tty": False,  # the log stream is then multiplexed (stdout, stderr), which engine.logs unwraps
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False, "OpenStdin": False,
        }  # fmt: skip
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
            tracked.state, tracked.error, tracked.pull_progress = "failed", reason[:_ERROR_TEXT_MAX], None
        log.warning("container %s failed: %s", tracked.container_id, reason)
        await asyncio.to_thread(self._forget_plan, tracked)

    def _forget_plan(self, tracked: Tracked) -> None:
        shutil.rmtree(self.work_dir / tracked.container_id / "plan", ignore_errors=True)
        self._save_terminal_reports()

    async def _ensure_image(self, tracked: Tracked, image: str) -> None:
        api = self._api()
        try:
            await api.inspect_image(image)
            return
        except NotFound:
            pass
        tracked.state, tracked.pull_progress = "pulling", 0.0
        log.info("container %s: pulling %s", tracked.container_id, image)
        # the pull runs as a task of its own, so that a stop cancels it at once (and closes the stream)
        pull = tracked.pull_task = asyncio.create_task(self._pull(tracked, api, image), name=f"pull-{image}")
        try:
            await pull
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if tracked.stop_requested and not (task is not None and task.cancelling()):
                log.info("container %s: pull of %s cancelled by a stop", tracked.container_id, image)
                raise LaunchError(STOPPED_BEFORE_START) from None
            raise
        finally:
            tracked.pull_task = None
        tracked.pull_progress = 1.0
        try:
            await api.inspect_image(image)
        except NotFound as exc:
            raise LaunchError(f"pull of {image} failed: the image is still missing after the pull") from exc

    async def _pull(self, tracked: Tracked, api: Engine, image: str) -> None:
        layers: dict[str, tuple[int, int]] = {}
        try:
            async for event in api.pull(image):
                if "error" in event:
                    raise LaunchError(f"pull of {image} failed: {event['error']}")
                layer, detail, status = event.get("id"), event.get("progressDetail") or {}, event.get("status", "")
                if layer and detail.get("total"):
                    layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
                elif layer and status in ("Download complete", "Pull complete", "Already exists") and layer in layers:
                    layers[layer] = (layers[layer][1], layers[layer][1])
                if layers:
                    done = sum(c for c, _ in layers.values()) / max(sum(t for _, t in layers.values()), 1)
                    tracked.pull_progress = min(max(done, tracked.pull_progress or 0.0), 1.0)
        except EngineError as exc:
            raise LaunchError(f"pull of {image} failed: {_message(exc)}") from exc

    async def _free_port(self) -> int:
        taken: set[int] = set()
        with contextlib.suppress(EngineError):
            for item in await self.find_labelled():
                with contextlib.suppress(ValueError, TypeError):
                    taken.add(int((item.get("Labels") or {}).get(LABEL_SHUTDOWN_PORT, "")))
        with self._lock:
            taken |= {t.shutdown_port for t in self._tracked.values() if t.shutdown_port}
        for _ in range(200):
            port = random.randint(*_PORT_RANGE)
            if port in taken:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("0.0.0.0", port))
                except OSError:
                    continue
            return port
        raise LaunchError("no free UDP port for JMeter's shutdown listener")

    # --- following ---------------------------------------------------------------------------

    def _follow(self, tracked: Tracked) -> None:
        self._spawn(self._follow_logs(tracked), f"follow-{tracked.container_id}")

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
                await self._end(tracked, None, f"docker engine unavailable: {_message(exc)}")
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
                    log.warning("cannot remove container %s: %s", tracked.container_id, _message(exc))
                elif exit_code != 0 and not tracked.stop_requested:
                    reason = f"container vanished (removed outside the agent, exit code {exit_code})"
        await asyncio.to_thread(self._finish, tracked, exit_code, reason)

    def _finish(self, tracked: Tracked, exit_code: int | None, reason: str | None) -> None:
        """The file side of an end (in a thread): the JTL's figures, JMeter's errors, the state file."""
        root = self.work_dir / tracked.container_id
        final = read_jtl(root / "results" / "results.jtl")
        error = reason
        state = "failed"
        if reason is None:
            if exit_code == 0:
                state = "finished"
                error = self._failed_run(tracked, root, final)
                if error:
                    state = "failed"
            elif tracked.stop_requested:
                state = "finished"
                error = f"stopped by docker stop (exit code {exit_code}): JMeter did not stop gracefully"
            else:
                error = self._jmeter_errors(tracked, root) or f"JMeter exited with code {exit_code}"
        shutil.rmtree(root / "plan", ignore_errors=True)
        with self._lock:
            tracked.final = final
            tracked.exit_code = exit_code
            tracked.error = error[:_ERROR_TEXT_MAX] if error else None
            tracked.state = state
            tracked.cpu_percent = 0.0
            tracked.finishing = False
        if state == "finished":
            log.info("container %s finished (exit %s, %s samples)", tracked.container_id, exit_code,
                     final.samples if final else 0)  # fmt: skip
        else:
            log.warning("container %s failed: %s", tracked.container_id, error)
        self._save_terminal_reports()

    @classmethod
    def _failed_run(cls, tracked: Tracked, root: Path, final: Any) -> str | None:
        """Why a run that exited 0 failed all the same, or None.

        JMeter 2.13 exits 0 when it cannot load its plan (``Error in NonGUIDriver``) or parse its
        arguments (``Error: Unable to parse first argument for option -J``); a run with no sample
        did not run the plan (a plan of 0 threads too: a load test that sent nothing is not a
        success, unless a stop came before the first sample); and a run whose every sample failed
        (target refused) ran no load at all.
        """
        errors = cls._jmeter_errors(tracked, root)
        if errors and "Error in NonGUIDriver" in errors:
            return errors
        if final is None or final.samples == 0:
            if errors:
                return errors
            return None if tracked.stop_requested else "JMeter recorded no samples"
        if final is not None and final.samples > 0 and final.errors == final.samples:
            first = first_failure(root / "results" / "results.jtl")
            if tracked.stop_requested and first and "InterruptedIOException" in first:
                # the first sample to end was cut by the stop: every sample was in flight when it
                # came (a JVM that started late), which says nothing of the target
                return None
            text = f"every sample failed ({final.errors} of {final.samples})"
            return text + (f": {first}" if first else "") + (f"\n{errors}" if errors else "")
        return None

    @staticmethod
    def _jmeter_errors(tracked: Tracked, root: Path) -> str | None:
        lines: list[str] = []
        log_path = root / "results" / "jmeter.log"
        with contextlib.suppress(OSError), log_path.open(encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if is_error_line(line)][-10:]
        if not lines:
            lines = list(tracked.tracker.errors)[-10:]
        return "\n".join(lines) if lines else None

    async def _fail_all(self, reason: str) -> None:
        with self._lock:
            changed = [t for t in self._tracked.values() if not t.terminal]
            for tracked in changed:
                tracked.state, tracked.error = "failed", reason
        for tracked in changed:
            log.warning("container %s failed: %s", tracked.container_id, reason)
        if changed:
            await asyncio.to_thread(self._save_terminal_reports)

    # --- stop --------------------------------------------------------------------------------

    async def stop(self, container_id: str, grace_s: float) -> str:
        """Ask JMeter to stop (UDP ``StopTestNow``), ``docker stop`` it after ``grace_s``; returns what happened.

        Returns at once; the wait and the fallback run in a task of their own.
        """
        with self._lock:
            tracked = self._tracked.get(container_id)
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
        sent = await self._send_stop(tracked)
        self._spawn(self._stop_after(tracked, grace_s if sent else 0.0), f"stop-{container_id}")
        return "StopTestNow sent" if sent else "docker stop"

    async def _stop_early(self, container_id: str) -> str:
        """A stop of a container not known (yet): remember it, so that its launch, if it comes, does not start it."""
        with self._lock:
            if container_id in self._early_stops or not _SAFE_ID.match(container_id):
                return "not running on this agent"
            self._early_stops[container_id] = None
            while len(self._early_stops) > _EARLY_STOPS:
                self._early_stops.popitem(last=False)
        log.info("container %s: stop before its launch, remembered", container_id)
        await asyncio.to_thread(self._save_early_stops)
        return "not running on this agent"

    async def _send_stop(self, tracked: Tracked) -> bool:
        if not tracked.shutdown_port:
            return False
        host = "127.0.0.1"
        if tracked.network_mode != "host":
            try:
                assert tracked.docker_id is not None
                networks = (await self._api().inspect(tracked.docker_id))["NetworkSettings"]["Networks"]
                host = next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")
            except Exception:
                host = ""
            if not host:
                return False
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a datagram to a local address: sent at once or refused
                sock.sendto(b"StopTestNow", (host, tracked.shutdown_port))
        except OSError as exc:
            log.debug("StopTestNow to %s:%s failed: %s", host, tracked.shutdown_port, exc)
            return False
        return True

    async def _stop_after(self, tracked: Tracked, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        resend_at = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if tracked.terminal or tracked.finishing or self._closed:
                return
            if time.monotonic() >= resend_at:
                # JMeter opens its shutdown listener only once its plan is loaded: a JVM still
                # starting (a busy machine) misses the first datagram, so say it again each second.
                await self._send_stop(tracked)
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
            log.warning("docker stop of %s failed: %s", tracked.container_id, _message(exc))

    # --- adoption after a restart ------------------------------------------------------------

    async def adopt(self) -> list[str]:
        """Find this agent's containers by their labels and follow them again; their container ids."""
        found: list[str] = []
        for agent_id in sorted(self.known_agent_ids):
            for item in await self.find_labelled(**{LABEL_AGENT: agent_id}):
                labels = item.get("Labels") or {}
                cid = labels.get(LABEL_CONTAINER, "")
                if not _SAFE_ID.match(cid) or not self._ours(labels):
                    continue
                with self._lock:
                    known = self._tracked.get(cid)
                    if known is not None and not known.terminal:
                        continue
                    tracked = Tracked(cid, labels.get(LABEL_TEST, ""), labels.get(LABEL_COMMAND) or None, "running")
                    self._tracked[cid] = tracked
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
