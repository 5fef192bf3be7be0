"""The wire contract shared by the control server, the agent and the dashboard client.

This module imports nothing of octotui's own: the agent ships with it and nothing else.
Every route lives under ``/api/v1``. Additive changes only (new optional fields with defaults);
renaming or removing a field breaks agents already installed in the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

VERSION = "0.1.0"
API_PREFIX = "/api/v1"

#: Labels the agent puts on every container it starts, so it finds its own after any restart.
LABEL_MANAGED = "io.octotui.managed"
LABEL_TEST = "io.octotui.test"
LABEL_CONTAINER = "io.octotui.container"
LABEL_AGENT = "io.octotui.agent"
LABEL_COMMAND = "io.octotui.command"

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$"),
]
Location = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]

AgentStatus = Literal["online", "late", "offline"]
TestState = Literal["pending", "starting", "running", "stopping", "finished", "failed"]
ContainerState = Literal[
    "pending",  # placed, launch command queued, not yet acknowledged
    "pulling",  # the agent pulls the image
    "starting",  # docker create/start under way
    "running",
    "stopping",
    "finished",  # JMeter exited 0
    "failed",  # JMeter or docker failed; see ``error``
    "lost",  # its agent went offline or no longer reports it
]
TERMINAL_CONTAINER_STATES: frozenset[str] = frozenset({"finished", "failed", "lost"})
TERMINAL_TEST_STATES: frozenset[str] = frozenset({"finished", "failed"})
Role = Literal["admin", "read-only"]


class Model(BaseModel):
    """Base of every wire model: unknown fields are refused, so typos surface as 422."""

    model_config = ConfigDict(extra="forbid")


class Health(Model):
    status: Literal["ok"] = "ok"
    version: str = VERSION


class ServerInfo(Model):
    """What a client needs to know about the server it talks to (``GET /api/v1/info``)."""

    version: str = VERSION
    url: str = ""
    role: Role | None = None  # the role of the token that asked
    heartbeat_interval: float
    late_after: float  # seconds without heartbeat before an agent is "late"
    offline_after: float  # ... and "offline"
    default_image: str
    max_plan_bytes: int


# --- providers -------------------------------------------------------------------------------


class ProviderCreate(Model):
    name: Name


class ProviderRename(Model):
    name: Name


class Provider(Model):
    id: str
    name: str
    #: Registration token of the provider: only in the answer that made it (creation, rotation);
    #: the server keeps it hashed, so every other answer has an empty string.
    token: str = Field(
        default="", description="registration token: only in the answer of a creation or a rotation, else empty"
    )
    created_at: datetime
    agents: int = 0  # number of agents registered in it
    locations: list[str] = Field(default_factory=list)


# --- host samples and agents -----------------------------------------------------------------


class HostSample(Model):
    """One reading of a machine, taken by the agent with psutil."""

    ts: float  # unix time of the reading, agent clock
    cpu_percent: float
    cpu_per_core: list[float] = Field(default_factory=list)
    memory_percent: float
    memory_used: int = 0  # bytes
    memory_total: int = 0
    swap_percent: float = 0.0
    disk_percent: float = 0.0
    disk_read_bps: float = 0.0
    disk_write_bps: float = 0.0
    net_sent_bps: float = 0.0
    net_recv_bps: float = 0.0
    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0


class DockerInfo(Model):
    available: bool = False
    version: str | None = None
    error: str | None = None  # why the engine is not usable


class RegisterRequest(Model):
    """Sent once with a provider token; the answer is the agent's own identity."""

    name: Name  # usually the hostname
    location: Location
    version: str = VERSION
    cpu_count: int = Field(default=1, ge=1)
    memory_total: int = Field(default=0, ge=0)
    platform: str = ""
    #: Set when the agent already has an identity and re-registers (e.g. after its token was lost).
    previous_agent_id: str | None = None


class RegisterResponse(Model):
    agent_id: str
    agent_token: str
    provider: str  # provider id
    heartbeat_interval: float
    poll_timeout: float


class JMeterFigures(Model):
    """Figures from JMeter's summariser lines (``summary =`` cumulative, ``summary +`` last interval)."""

    samples: int = 0  # cumulative
    errors: int = 0  # cumulative
    error_percent: float = 0.0
    rate: float = 0.0  # hits/s over the last interval (summary +), else the cumulative rate
    avg_ms: float = 0.0  # cumulative average response time
    min_ms: float = 0.0
    max_ms: float = 0.0
    active: int = 0  # active threads
    started: int = 0
    finished: int = 0
    interval_samples: int = 0
    interval_avg_ms: float = 0.0
    interval_errors: int = 0


#: Response times below this many ms are counted exactly (JMeter's elapsed is whole ms); above,
#: in logarithmic buckets 0.5 % wide, so a histogram stays small (a few thousand buckets at most for
#: an hour) and percentiles merged over containers are exact below 1 s and within 0.5 % above.
EXACT_MS = 1000
_LOG_STEP = math.log1p(0.005)


def rt_bucket(ms: float) -> int:
    """The histogram bucket of a response time in ms."""
    if ms < EXACT_MS:
        return max(0, int(ms))
    return EXACT_MS + int(math.log(ms / EXACT_MS) / _LOG_STEP + 1e-9)


def rt_bucket_ms(bucket: int) -> float:
    """The lower bound, in ms, of a histogram bucket (the value reported for it)."""
    if bucket < EXACT_MS:
        return float(bucket)
    return round(EXACT_MS * math.exp((bucket - EXACT_MS) * _LOG_STEP), 1)


def histogram_percentile(histogram: Mapping[int, int], percent: float) -> float:
    """Nearest-rank percentile of a response-time histogram (0.0 when empty)."""
    total = sum(histogram.values())
    if total <= 0:
        return 0.0
    rank = max(1, math.ceil(percent / 100.0 * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return rt_bucket_ms(bucket)
    return rt_bucket_ms(max(histogram))


class FinalResults(Model):
    """Aggregate read from a container's (or a test's) JTL at the end."""

    samples: int = 0
    errors: int = 0
    error_percent: float = 0.0
    throughput: float = 0.0  # samples per second over the run
    avg_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    duration_s: float = 0.0
    #: Response-time histogram (bucket -> count, see :func:`rt_bucket`), so the server can merge
    #: containers into exact test percentiles. Absent from older agents.
    histogram: dict[int, int] | None = None


class ContainerReport(Model):
    """The agent's view of one container it runs, sent in every heartbeat."""

    container_id: str  # octotui's id (label), not docker's
    test_id: str
    command_id: str | None = None
    docker_id: str | None = None
    state: ContainerState
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    memory_limit: int = 0
    figures: JMeterFigures | None = None
    final: FinalResults | None = None
    exit_code: int | None = None
    error: str | None = None  # JMeter's own error lines or docker's message
    pull_progress: float | None = None  # 0..1 while pulling


class Heartbeat(Model):
    host: HostSample  # the latest reading
    #: Earlier readings taken since the previous heartbeat, oldest first (1 s sampling, 5 s beats).
    samples: list[HostSample] = Field(default_factory=list, max_length=600)
    docker: DockerInfo = Field(default_factory=DockerInfo)
    containers: list[ContainerReport] = Field(default_factory=list)
    #: True when ``containers`` is the agent's complete list (it always is after a restart);
    #: the server reconciles only complete reports.
    complete: bool = True


class HeartbeatResponse(Model):
    ok: bool = True
    #: Container ids the server wants stopped (strays of ended tests, found by reconciliation).
    stop: list[str] = Field(default_factory=list)


class Agent(Model):
    id: str
    name: str
    provider: str  # provider id
    provider_name: str = ""
    location: str
    status: AgentStatus
    last_seen: datetime | None = None
    version: str = ""
    registered_at: datetime | None = None
    cpu_count: int = 1
    memory_total: int = 0
    platform: str = ""
    host: HostSample | None = None
    docker: DockerInfo | None = None
    containers: int = 0  # containers of live tests currently placed on it


class AgentMetrics(Model):
    agent_id: str
    samples: list[HostSample]


# --- commands (long poll) --------------------------------------------------------------------


class LaunchSpec(Model):
    test_id: str
    container_id: str
    image: str
    plan: str  # JMX text
    plan_name: str = "plan.jmx"
    properties: dict[str, str] = Field(default_factory=dict)  # passed as -Jkey=value
    cpu_limit: float | None = None  # cores
    memory_limit: int | None = None  # bytes
    network_mode: str = "host"
    shutdown_port: int | None = None
    #: Set by the server: how many containers the test has and this one's index (0-based).
    index: int = 0
    count: int = 1


class Command(Model):
    id: str  # a redelivered command keeps its id: agents never act twice on one id
    kind: Literal["launch", "stop"]
    container_id: str
    test_id: str
    launch: LaunchSpec | None = None
    #: For "stop": seconds to wait for JMeter's graceful stop before ``docker stop``.
    grace_s: float = 20.0


class CommandAck(Model):
    ok: bool
    error: str | None = None


# --- tests -----------------------------------------------------------------------------------


class TestCreate(Model):
    name: Name
    plan: str = Field(min_length=1)
    provider: str = Field(min_length=1)  # provider id or name
    containers: int = Field(ge=1, le=1000)
    locations: list[Location] | None = None
    image: str | None = Field(default=None, min_length=1, max_length=256)
    properties: dict[str, str] = Field(default_factory=dict)
    users: int | None = Field(default=None, ge=1, le=100_000)  # per container, sets -Jusers
    duration: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)  # seconds, sets -Jduration
    rampup: int | None = Field(default=None, ge=0, le=24 * 3600)  # seconds, sets -Jrampup
    dry_run: bool = False


class PlacementItem(Model):
    agent: str  # agent id
    agent_name: str
    location: str
    containers: int


class Placement(Model):
    provider: str  # provider id
    provider_name: str
    containers: int
    items: list[PlacementItem]


class ContainerRecord(Model):
    id: str
    test_id: str
    agent: str  # agent id
    agent_name: str = ""
    location: str = ""
    state: ContainerState
    index: int = 0
    docker_id: str | None = None
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    figures: JMeterFigures | None = None
    final: FinalResults | None = None
    exit_code: int | None = None
    error: str | None = None
    pull_progress: float | None = None
    updated_at: datetime | None = None


class TestResults(Model):
    """Live aggregate of a test's containers while it runs; the final aggregate once it ended."""

    samples: int = 0
    errors: int = 0
    error_percent: float = 0.0
    throughput: float = 0.0  # hits/s
    avg_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    active: int = 0
    final: bool = False


class Test(Model):
    """Answer of ``POST /api/v1/tests`` (201) and ``GET /api/v1/tests/{id}``.

    A dry run (``"dry_run": true``) answers a :class:`Placement` instead and launches nothing.
    """

    __test__ = False  # not a pytest test class
    id: str
    name: str
    provider: str  # provider id
    provider_name: str = ""
    locations: list[str] = Field(default_factory=list)
    image: str
    properties: dict[str, str] = Field(default_factory=dict)
    state: TestState
    reason: str | None = None  # why it failed, or why it runs degraded
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    containers: list[ContainerRecord] = Field(default_factory=list)
    results: TestResults = Field(default_factory=TestResults)


class TestSeriesPoint(Model):
    ts: float
    rate: float
    avg_ms: float
    errors: int
    active: int


class TestSeries(Model):
    test_id: str
    points: list[TestSeriesPoint]


# --- change feed -----------------------------------------------------------------------------


class Changes(Model):
    """Answer of ``GET /api/v1/changes``: what changed after a revision, or the whole state.

    ``full`` is true when the answer is the whole state (no ``since``, another ``epoch``: the
    server restarted, or a revision it no longer knows): drop everything held before. Otherwise
    it holds the records changed after ``since`` and the ids of the records removed. Tests come
    without their containers (``containers`` empty): those come in :attr:`containers`, each with
    its ``test_id``, so a change of one container never resends its test's thousand others.
    Ask again with ``since=revision&epoch=epoch``.
    """

    epoch: str
    revision: int
    full: bool = True
    agents: list[Agent] = Field(default_factory=list)
    providers: list[Provider] = Field(default_factory=list)
    tests: list[Test] = Field(default_factory=list)
    containers: list[ContainerRecord] = Field(default_factory=list)
    removed_agents: list[str] = Field(default_factory=list)
    removed_providers: list[str] = Field(default_factory=list)
    removed_tests: list[str] = Field(default_factory=list)


# --- operator tokens and audit ---------------------------------------------------------------

TokenName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]


class TokenCreate(Model):
    """``POST /api/v1/tokens``: a named operator token; the name ``admin`` is the server's own."""

    name: TokenName
    role: Role


class TokenCreated(Model):
    """The answer to a token creation: the only time the secret is ever shown."""

    name: str
    role: Role
    token: str


class TokenInfo(Model):
    """An operator token as listed (``GET /api/v1/tokens``): never its secret."""

    name: str
    role: Role
    created_at: datetime | None = None  # None for the server's start-up admin token


class AuditEntry(Model):
    """One change made through the API (``GET /api/v1/audit``, newest first)."""

    id: int
    ts: datetime
    actor: str  # token name: an operator token's name, ``provider:NAME`` or ``agent:ID``
    role: str  # admin, read-only, provider, agent or local (the CLI on the data dir)
    action: str  # e.g. provider.create, agent.register, test.stop, token.revoke
    target: str  # what it changed (id or name)
    detail: str = ""
    address: str = ""  # the client's address


# --- errors ----------------------------------------------------------------------------------


class ErrorBody(Model):
    """Every 4xx/5xx answer carries ``detail``: a sentence for a human."""

    detail: str | list[dict[str, object]]
