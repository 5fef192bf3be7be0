"""In-memory records of the server's state. The store persists their durable fields only."""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from octotui.protocol import (
    AgentStatus,
    CommandKind,
    ContainerState,
    CriterionResult,
    DockerInfo,
    FinalResults,
    HostSample,
    JMeterFigures,
    LaunchSpec,
    TestResults,
    TestState,
    Verdict,
)

#: One label's cumulative figures: samples, errors, sum of elapsed ms, histogram (bucket -> count).
Cumulative = tuple[int, int, float, dict[int, int]]


@dataclass(slots=True)
class ProviderRec:
    id: str
    name: str
    #: SHA-256 of the registration token: the token itself is only in the answer that made it.
    token_hash: str
    created_at: float


@dataclass(slots=True)
class AgentRec:
    id: str
    provider_id: str
    name: str
    location: str
    version: str
    registered_at: float
    cpu_count: int
    memory_total: int
    platform: str
    token_hash: str
    last_seen: float | None = None
    #: The random id of the agent's state dir (None from older agents): its identity.
    instance: str | None = None
    #: Deleted while its containers ran: they are being stopped; forgotten once they all ended.
    retiring: bool = False
    #: Taken out of service by an operator: no new containers (``domain/fleet.py``).
    drained: bool = False
    #: The machine's own id as the agent reports it (None from older agents).
    machine_id: str | None = None
    # --- live only, never persisted ---
    status: AgentStatus = "offline"
    health_ref: float = 0.0  # last heartbeat, or the server's start if later (grace after a restart)
    host: HostSample | None = None
    docker: DockerInfo | None = None
    #: Why it is saturated now (``domain/saturation.py``), None when it is not.
    saturated: str | None = None
    #: Where saturation last looked at its samples (agent clock), and how things stood there.
    watch: SaturationWatch | None = None


@dataclass(slots=True)
class SaturationWatch:
    """An agent's samples as saturation has read them so far."""

    last_ts: float = float("-inf")  # the newest sample read
    saturated: bool = False  # at that sample
    cpu_since: float | None = None  # start of the run of samples at or over the CPU threshold


@dataclass(slots=True)
class Spell:
    """How long one agent was saturated during one test, and its peaks while it was."""

    agent_id: str
    seconds: float = 0.0
    cpu: float = 0.0
    memory: float = 0.0
    swap_bps: float = 0.0
    retransmit_percent: float = 0.0
    text: str = ""  # its line in the test's warnings


@dataclass(slots=True)
class ContainerRec:
    id: str
    test_id: str
    agent_id: str
    index: int
    state: ContainerState
    shutdown_port: int
    docker_id: str | None = None
    exit_code: int | None = None
    error: str | None = None
    final: FinalResults | None = None
    figures: JMeterFigures | None = None
    updated_at: float = 0.0
    # --- live only ---
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    pull_progress: float | None = None
    missing: int = 0  # consecutive complete heartbeats that did not mention it
    #: When a stop was first asked for it (its agent has not confirmed it ended since).
    stopping_since: float | None = None


@dataclass(slots=True)
class FileRec:
    """An uploaded file (its bytes: ``DATA_DIR/files/<id>``); ``lines`` None for a binary file."""

    id: str
    name: str
    size: int
    sha256: str
    created_at: float
    lines: int | None


@dataclass(slots=True)
class Share:
    """One container's share of a split file: the file's first ``head`` bytes (its header line,
    0 without one), then its bytes ``start`` to ``end``; ``size`` and ``sha256`` of exactly that."""

    head: int
    start: int
    end: int
    size: int
    sha256: str


@dataclass(slots=True)
class FileUse:
    """A file a test brings: copied whole to every container, or split (``shares``: one per container
    index, computed at launch)."""

    file_id: str
    split: bool = False
    header: bool = False
    shares: list[Share] = field(default_factory=list)


@dataclass(slots=True)
class TestRec:
    id: str
    name: str
    provider_id: str
    provider_name: str
    locations: list[str]
    image: str
    properties: dict[str, str]
    plan: str
    state: TestState
    created_at: float
    reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    stop_requested: bool = False
    results: TestResults | None = None  # final results once ended
    container_ids: list[str] = field(default_factory=list)
    #: The files it brings, in the order of its launch (stored in ``test_files``).
    files: list[FileUse] = field(default_factory=list)
    #: Its pass/fail criteria as evaluated so far (``domain/criteria.py``), ``passed``/``failed``
    #: once decided, and why its results may be wrong (saturated generators, unknown labels).
    criteria: list[CriterionResult] = field(default_factory=list)
    verdict: Verdict | None = None
    warnings: list[str] = field(default_factory=list)
    # --- live only ---
    #: Held criteria: since when each (by position) has been broken, the longest it was.
    broken_since: dict[int, float] = field(default_factory=dict)
    broken_most: dict[int, float] = field(default_factory=dict)
    #: Cumulative per-label figures a second apart (time, {label: (samples, errors, sum ms,
    #: histogram)}): the figures of the last seconds are the difference of two of them.
    window: deque[tuple[float, dict[str, Cumulative]]] = field(default_factory=deque)
    #: Saturated generators while it ran, by agent id.
    spells: dict[str, Spell] = field(default_factory=dict)

    @property
    def planned_duration(self) -> float | None:
        """Seconds the test is planned to run (its ``duration`` property), None when it has none."""
        try:
            duration = float(self.properties.get("duration", ""))
        except ValueError:
            return None
        return duration if math.isfinite(duration) and duration > 0 else None


@dataclass(slots=True)
class CommandRec:
    id: str
    agent_id: str
    kind: CommandKind
    container_id: str
    test_id: str
    created_at: float
    launch: LaunchSpec | None = None
    grace_s: float = 20.0
    delivered_at: float | None = None  # live only: when a poll last handed it out


class LaunchKeys:
    """Idempotency keys of launches: a key seen again answers with the test it made, never a second.

    Each key is stored with its test (in the same transaction) and loaded at start, so a retry
    after a crash and restart (the usual case of a lost answer) finds it; kept ``ttl`` seconds.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep
        #: key -> (fingerprint of the request, id of the test made; None while it is being made)
        self._seen: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def load(self, rows: list[tuple[str, str, str, float]]) -> None:
        """Take the stored keys: (key, fingerprint, test id, created_at), oldest first."""
        for key, fingerprint, test_id, _ in rows:
            self._seen[key] = (fingerprint, test_id)

    def get(self, key: str) -> tuple[str, str | None] | None:
        return self._seen.get(key)

    def begin(self, key: str, fingerprint: str) -> None:
        self._seen[key] = (fingerprint, None)
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)

    def done(self, key: str, fingerprint: str, test_id: str) -> None:
        self._seen[key] = (fingerprint, test_id)

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def forget_test(self, test_id: str) -> None:
        """Forget every key that made ``test_id`` (it was deleted: a retry starts a new test)."""
        for key in [k for k, (_, made) in self._seen.items() if made == test_id]:
            del self._seen[key]


class ChangeLog:
    """The revision of each record's last visible change, oldest first, for the change feed.

    A record is keyed by its kind and id. ``epoch`` names this server's run: revisions restart
    with the process, so a client holding another epoch must take the full state again. Removed
    records stay in the log (the client must learn they are gone) until ``keep_removed`` newer
    removals push them out; ``floor`` then says how far back the log still answers exactly.
    """

    def __init__(self, keep_removed: int = 10_000) -> None:
        self.epoch = secrets.token_hex(8)
        self.revision = 0
        self.floor = 0
        self.keep_removed = keep_removed
        self._log: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._removed: deque[tuple[int, tuple[str, str]]] = deque()

    def touch(self, kind: str, key: str) -> None:
        """Record that ``kind`` ``key`` changed (or appeared) now."""
        self.revision += 1
        k = (kind, key)
        self._log[k] = self.revision
        self._log.move_to_end(k)

    def remove(self, kind: str, key: str) -> None:
        """Record that ``kind`` ``key`` is gone."""
        self.touch(kind, key)
        self._removed.append((self.revision, (kind, key)))
        while len(self._removed) > self.keep_removed:
            rev, k = self._removed.popleft()
            if self._log.get(k) == rev:
                del self._log[k]
            self.floor = rev

    def answers(self, since: int) -> bool:
        """True when the changes after ``since`` are all still known."""
        return self.floor <= since <= self.revision

    def since(self, revision: int) -> list[tuple[str, str]]:
        """The records changed after ``revision``, oldest change first."""
        out: list[tuple[str, str]] = []
        for k, rev in reversed(self._log.items()):
            if rev <= revision:
                break
            out.append(k)
        out.reverse()
        return out
