"""Providers, agents, their heartbeats and commands: what an agent and the server say."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from octotui.protocol.base import VERSION, AgentStatus, CommandKind, ContainerState, Model
from octotui.protocol.monitors import MAX_MONITORS_PER_AGENT, MonitorAssignment, MonitorReport
from octotui.protocol.text import _IDENT, Ident, Location, Name, ReportLine, ReportText

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
    #: What saturation of a load generator shows besides CPU and memory (0 from older agents):
    #: bytes swapped in and out per second, TCP segments retransmitted and sent per second (their
    #: ratio is the retransmit rate), TCP connections established now.
    swap_in_bps: float = 0.0
    swap_out_bps: float = 0.0
    tcp_retransmits_per_s: float = 0.0
    tcp_segments_out_per_s: float = 0.0
    tcp_established: int = 0


class DockerInfo(Model):
    available: bool = False
    version: ReportLine | None = None
    error: ReportText | None = None  # why the engine is not usable


class RegisterRequest(Model):
    """Sent once with a provider token; the answer is the agent's own identity."""

    name: Name  # usually the hostname
    location: Location
    version: ReportLine = Field(default=VERSION, max_length=128)
    cpu_count: int = Field(default=1, ge=1)
    memory_total: int = Field(default=0, ge=0)
    platform: ReportLine = Field(default="", max_length=256)
    #: Set when the agent already has an identity and re-registers (e.g. after its token was lost).
    previous_agent_id: Ident | None = None
    #: A random id kept in the agent's state dir: the identity belongs to that dir, not to the name
    #: (two machines with one host name are two agents). None from agents older than this field.
    instance: Annotated[str, StringConstraints(max_length=64, pattern=_IDENT)] | None = None
    #: The machine's own id (``/etc/machine-id``), so that two identities on one machine are seen.
    machine_id: Annotated[str, StringConstraints(max_length=64, pattern=_IDENT)] | None = None


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


#: Labels one container reports at most; the excess is folded into :data:`OTHER_LABEL` (a plan
#: naming samples after URLs with ids would otherwise grow without bound).
MAX_LABELS = 200
OTHER_LABEL = "(other labels)"
#: Distinct (response code, message) pairs kept per label; the rest counted as :data:`OTHER_ERROR`.
MAX_ERRORS_PER_LABEL = 20
OTHER_ERROR = "(other errors)"


class LabelStats(Model):
    """One label's figures in one container's JTL, cumulative since the container started.

    Mergeable across containers exactly: counts and sums add, min/max combine, histograms add.
    """

    label: ReportLine
    samples: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    sum_ms: float = Field(default=0.0, ge=0)  # of elapsed times, for an exact merged average
    min_ms: float | None = None
    max_ms: float | None = None
    bytes_received: int = Field(default=0, ge=0)
    bytes_sent: int = Field(default=0, ge=0)
    #: First and last sample times (epoch seconds): the label's throughput over its own span.
    first_ts: float | None = None
    last_ts: float | None = None
    #: Response-time histogram (bucket -> count, see :func:`rt_bucket`).
    histogram: dict[int, int] = Field(default_factory=dict)


class ErrorCount(Model):
    """Failed samples of one label with one response code and message (cumulative)."""

    label: ReportLine
    code: ReportLine
    message: ReportText
    count: int = Field(ge=0)


class ContainerReport(Model):
    """The agent's view of one container it runs, sent in every heartbeat."""

    container_id: Ident  # octotui's id (label), not docker's
    test_id: Ident
    command_id: Ident | None = None
    docker_id: Ident | None = None
    state: ContainerState
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    memory_limit: int = 0
    figures: JMeterFigures | None = None
    final: FinalResults | None = None
    exit_code: int | None = None
    error: ReportText | None = None  # JMeter's own error lines or docker's message
    pull_progress: float | None = None  # 0..1 while pulling
    #: Per-label figures from the JTL: only the labels that changed since the last heartbeat the
    #: server answered (each with its cumulative figures, so a lost heartbeat loses nothing).
    #: None from agents older than this field.
    labels: list[LabelStats] | None = Field(default=None, max_length=MAX_LABELS + 1)
    #: Error counts per label, code and message, changed since the last answered heartbeat.
    errors: list[ErrorCount] | None = Field(default=None, max_length=(MAX_LABELS + 1) * (MAX_ERRORS_PER_LABEL + 1))
    #: The plan made more than MAX_LABELS labels: the excess is counted under OTHER_LABEL.
    labels_folded: bool = False


class Heartbeat(Model):
    host: HostSample  # the latest reading
    #: Earlier readings taken since the previous heartbeat, oldest first (1 s sampling, 5 s beats).
    samples: list[HostSample] = Field(default_factory=list, max_length=600)
    docker: DockerInfo = Field(default_factory=DockerInfo)
    containers: list[ContainerReport] = Field(default_factory=list)
    #: True when ``containers`` is the agent's complete list (it always is after a restart);
    #: the server reconciles only complete reports.
    complete: bool = True
    #: Monitors of the servers under test this agent runs (see ``protocol.monitors``), and the
    #: revision of the assignments it holds: 0 when it holds none (it always sends one). None: the
    #: agent is older than monitors; the server then sends it no assignment (no credential either)
    #: and shows its monitors in error ("agent NAME is too old to run monitors (version X)").
    monitors: list[MonitorReport] = Field(default_factory=list, max_length=MAX_MONITORS_PER_AGENT)
    monitor_revision: int | None = None


class HeartbeatResponse(Model):
    ok: bool = True
    #: Container ids the server wants stopped (strays of ended tests, found by reconciliation).
    stop: list[str] = Field(default_factory=list)
    #: Container ids whose every label and error count the server wants in the next heartbeat
    #: (it holds none for them: e.g. it restarted since they were last sent). Agents older than
    #: this field ignore it.
    labels_wanted: list[str] = Field(default_factory=list)
    #: The monitors this agent is to run, sent only when they differ from ``monitor_revision`` of
    #: the heartbeat, never when that was None (None here: keep what you run). An empty list: run none.
    monitors: list[MonitorAssignment] | None = None
    monitor_revision: int | None = None


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
    #: Other agents of the same provider carry the same name (each has its own identity).
    duplicate_name: bool = False
    #: Deleted with force while it ran containers: stopping them and handing in their results, then
    #: forgotten. Takes no new containers.
    retiring: bool = False
    #: Taken out of service by an operator (``POST /agents/{id}/drain``): no new containers, the
    #: running ones finish. Undone by ``/undrain``.
    drained: bool = False
    #: Reports an older version than the server's (upgrade it: drain, replace, undrain).
    outdated: bool = False
    #: Another identity reports the same machine id (two agents on one machine).
    duplicate_machine: bool = False
    #: Why its results may be skewed right now (``CPU 97 % for 45 s``), None when it is not saturated.
    saturated: str | None = None


class AgentMetrics(Model):
    agent_id: str
    samples: list[HostSample]


# --- commands (long poll) --------------------------------------------------------------------


class LaunchFile(Model):
    """A file a launch brings: the agent fetches it over its own connection and places it beside the
    plan (``/plan/NAME`` in the container) before JMeter starts."""

    name: str  # a plain file name (FileName), never a path
    path: str  # the API path (under /api/v1) the agent GETs with its own token
    size: int = Field(ge=0)
    sha256: str  # of exactly the bytes served at ``path`` (a split file's share, header included)


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
    #: Files the test brings (CSV data sets, other resources); empty from servers older than this.
    files: list[LaunchFile] = Field(default_factory=list)


class Command(Model):
    id: str  # a redelivered command keeps its id: agents never act twice on one id
    kind: CommandKind
    container_id: str
    test_id: str
    launch: LaunchSpec | None = None
    #: For "stop": seconds to wait for JMeter's graceful stop before ``docker stop``.
    grace_s: float = 20.0


class CommandAck(Model):
    ok: bool
    error: ReportText | None = None
