"""What the agent knows of each container it launched or adopted (:class:`Tracked`), and the ended
ones kept on disk until the server has seen them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cgroups import CgroupFiles
from agent.jmeter import FiguresTracker
from agent.jtlfollow import JtlFollower
from agent.labels import LabelTable
from agent.state import write_json
from octotui.protocol import TERMINAL_CONTAINER_STATES, ContainerReport

log = logging.getLogger("octotui.agent.containers")

#: The error of a container stopped before JMeter ran (its launch refused or cut short).
STOPPED_BEFORE_START = "stopped before it started"
#: A container's error text is cut to this many characters.
ERROR_TEXT_MAX = 2000
#: An ended container's report goes out in this many successful heartbeats before the agent forgets it.
_DELIVERIES = 3


class LaunchError(Exception):
    """A launch that cannot happen; the message is the reason sent back in the command's ack."""


def message(exc: BaseException) -> str:
    """``exc``'s text, or its type's name when it has none."""
    return str(exc) or type(exc).__name__


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
    #: What a stop cancels while the container is prepared: its image pull, its files' download.
    pull_task: asyncio.Task[None] | None = None
    #: The SHA-256 of the files its launch brings: the agent's cache keeps them while it lives.
    files: list[str] = field(default_factory=list)
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    cgroup: CgroupFiles | None = None
    cgroup_checked: bool = False
    last_cpu: tuple[int, float] | None = None  # (cpu ns, monotonic s)
    deliveries: int = 0
    finishing: bool = False
    #: Follows the container's JTL into per-label figures (None until its launch or adoption); for
    #: an ended container read back from disk after an agent restart, its figures, read no more.
    jtl: JtlFollower | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_CONTAINER_STATES

    def report(self, marks: dict[str, int] | None = None, full: bool = False) -> ContainerReport:
        """This container's report; its labels are those the server has not acknowledged (all of
        them when ``full``). ``marks`` gets the epoch to acknowledge once the report is delivered."""
        labels = None
        if self.jtl is not None:
            labels = self.jtl.everything() if full else self.jtl.pending()
            if labels is not None and marks is not None:
                marks[self.container_id] = labels.mark
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
            labels=labels.labels if labels is not None else None,
            errors=labels.errors if labels is not None else None,
            labels_folded=labels.folded if labels is not None else False,
        )


async def stoppable(tracked: Tracked, step: Coroutine[Any, Any, None], what: str) -> None:
    """Run ``step`` of a launch as ``tracked.pull_task``, which a stop cancels at once (closing its
    streams); :class:`LaunchError` (:data:`STOPPED_BEFORE_START`) when a stop did."""
    task = tracked.pull_task = asyncio.create_task(step, name=f"{what}-{tracked.container_id}")
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if tracked.stop_requested and not (current is not None and current.cancelling()):
            log.info("container %s: %s cancelled by a stop", tracked.container_id, what)
            raise LaunchError(STOPPED_BEFORE_START) from None
        raise
    finally:
        tracked.pull_task = None


def jtl_path(work_dir: Path, container_id: str) -> Path:
    """Where the JTL of container ``container_id`` is written (``WORK/C/results/results.jtl``)."""
    return work_dir / container_id / "results" / "results.jtl"


def load_ended(path: Path | None, work_dir: Path | None = None) -> dict[str, Tracked]:
    """The ended containers kept in ``path`` by :func:`save_ended` (none when it is absent or unreadable).

    Their labels come back as a follower that reads no more, all pending: the server may not have
    had them (the agent stopped before an answer), and a report carries them within its budget.
    """
    found: dict[str, Tracked] = {}
    if path is None or not path.exists():
        return found
    try:
        for item in json.loads(path.read_text()):
            report = ContainerReport.model_validate(item)
            tracked = Tracked(report.container_id, report.test_id, report.command_id, report.state)
            tracked.docker_id, tracked.final, tracked.exit_code = report.docker_id, report.final, report.exit_code
            tracked.error = report.error
            tracked.tracker.figures = report.figures
            if report.labels is not None:
                table = LabelTable.restore(report.labels, report.errors or [], report.labels_folded)
                where = jtl_path(work_dir, report.container_id) if work_dir else Path("results.jtl")
                tracked.jtl = JtlFollower.restored(where, table)
            found[report.container_id] = tracked
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
    return found


def save_ended(path: Path, reports: list[ContainerReport]) -> None:
    """Keep the reports of ended containers in ``path`` (logged, not raised, when it cannot be written)."""
    try:
        write_json(path, [report.model_dump(mode="json") for report in reports], tmp=path.with_suffix(".tmp"))
    except OSError as exc:
        log.warning("cannot save %s: %s", path, exc)


class ContainerRecords:
    """The records of one agent's containers by container id.

    The event loop and the threads that touch files both read and write them: hold ``lock``. The
    ended ones are kept in ``path`` until the server has seen them (restarts included).
    """

    def __init__(self, path: Path | None, work_dir: Path | None = None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.by_id: dict[str, Tracked] = load_ended(path, work_dir)

    def get(self, container_id: str) -> Tracked | None:
        with self.lock:
            return self.by_id.get(container_id)

    def all(self) -> list[Tracked]:
        with self.lock:
            return list(self.by_id.values())

    def save(self) -> None:
        """Write the ended ones to ``path`` (in a thread)."""
        if self.path is None:
            return
        with self.lock:
            # every label, not only the unacknowledged: after a restart they are all sent again
            reports = [t.report(full=True) for t in self.by_id.values() if t.terminal]
        save_ended(self.path, reports)

    def delivered(self, container_ids: Iterable[str], marks: dict[str, int] | None = None) -> None:
        """These reports reached the server; ended ones are forgotten after a few deliveries (writes a file).

        ``marks`` are the label epochs the reports were built at (see :meth:`Tracked.report`).
        """
        dropped = False
        with self.lock:
            for cid in container_ids:
                tracked = self.by_id.get(cid)
                if tracked is not None and tracked.jtl is not None and marks and cid in marks:
                    tracked.jtl.acknowledge(marks[cid])
                if tracked is not None and tracked.terminal:
                    tracked.deliveries += 1
                    if tracked.deliveries >= _DELIVERIES:
                        del self.by_id[cid]
                        dropped = True
        if dropped:
            self.save()

    def resend_labels(self, container_ids: Iterable[str]) -> list[str]:
        """The server wants every label of these containers again; the ids it will get them for
        (those the agent still knows with a JTL)."""
        found = []
        with self.lock:
            for cid in container_ids:
                tracked = self.by_id.get(cid)
                if tracked is not None and tracked.jtl is not None:
                    tracked.jtl.resend()
                    found.append(cid)
        return found
