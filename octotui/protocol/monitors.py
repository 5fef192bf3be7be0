"""Monitors of the servers under test: what an operator attaches to an agent, what the agent is
told to run (with the credentials, sent only to that agent), what it reports, and the alarms.

A monitor belongs to one agent: the one inside the network that reaches the target. Its target is
reached only from that agent, never from the server. Credentials are write-only: accepted on
create and update, never returned (:class:`Monitor` says only which fields are set).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from octotui.protocol.base import Model
from octotui.protocol.text import Ident, Line, Lines, Name, ReportLine, ReportText

MonitorKind = Literal["prometheus", "http", "nginx", "apache", "postgresql", "linux-ssh"]
#: ``always``: runs whenever its agent is online; ``tests``: only while a test that names it runs.
MonitorMode = Literal["always", "tests"]
Severity = Literal["warning", "critical"]
#: ``pending``: not reported yet; ``ok``: the last collection worked; ``error``: it failed (``error``
#: says how: ``unreachable: connection refused``, ``authentication failed``, ``timed out after 5 s``,
#: ``malformed: …``, ``too large: …``); ``idle``: a ``tests`` monitor with no test running;
#: ``offline``: its agent is offline.
MonitorState = Literal["pending", "ok", "error", "idle", "offline"]

MAX_MONITOR_METRICS = 200
MAX_THRESHOLDS = 50
MAX_MONITORS_PER_AGENT = 200
#: Metric names as the source names them (``node_load1``), optionally with a Prometheus label
#: selector (``node_cpu_seconds_total{mode="idle"}``).
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class Threshold(Model):
    """``metric`` raises an alarm of ``severity`` when it is above ``above`` or below ``below``
    (both: outside the range) for ``for`` seconds (0: at once); cleared when back in bounds."""

    model_config = {"extra": "forbid", "populate_by_name": True}
    metric: MetricName
    severity: Severity = "warning"
    above: float | None = None
    below: float | None = None
    for_s: float = Field(default=0.0, ge=0, le=86_400, alias="for")


class MonitorCredentials(Model):
    """Write-only: a user and a password, or a user and a private key (PEM/OpenSSH text)."""

    username: Line | None = Field(default=None, max_length=256)
    password: str | None = Field(default=None, max_length=1024)
    private_key: Lines | None = Field(default=None, max_length=32_768)
    passphrase: str | None = Field(default=None, max_length=1024)


class MonitorCreate(Model):
    name: Name
    agent: Ident  # the agent that runs it
    kind: MonitorKind
    #: A URL (prometheus, http, nginx, apache), ``host:port[/database]`` (postgresql) or
    #: ``host[:port]`` (linux-ssh).
    target: Line = Field(min_length=1, max_length=2048)
    interval: float = Field(default=10.0, ge=1, le=3600)
    timeout: float | None = Field(default=None, gt=0, le=300)  # default: min(interval, 10)
    credentials: MonitorCredentials | None = None
    #: Metrics to keep; empty: the kind's defaults (for prometheus: every metric, up to the limit).
    metrics: list[MetricName] = Field(default_factory=list, max_length=MAX_MONITOR_METRICS)
    thresholds: list[Threshold] = Field(default_factory=list, max_length=MAX_THRESHOLDS)
    mode: MonitorMode = "always"
    #: http: a regular expression the body must match (the ``match`` metric is 1 or 0).
    match: Line | None = Field(default=None, max_length=1024)
    #: http/prometheus/nginx/apache over HTTPS: skip the certificate check (the expiry is still read).
    insecure: bool = False


class MonitorUpdate(Model):
    """``PATCH``: only the fields given change; ``credentials: null`` removes them."""

    name: Name | None = None
    agent: Ident | None = None
    target: Line | None = Field(default=None, min_length=1, max_length=2048)
    interval: float | None = Field(default=None, ge=1, le=3600)
    timeout: float | None = Field(default=None, gt=0, le=300)
    credentials: MonitorCredentials | None = None
    metrics: list[MetricName] | None = Field(default=None, max_length=MAX_MONITOR_METRICS)
    thresholds: list[Threshold] | None = Field(default=None, max_length=MAX_THRESHOLDS)
    mode: MonitorMode | None = None
    match: Line | None = Field(default=None, max_length=1024)
    insecure: bool | None = None


class Monitor(Model):
    """A monitor as the API shows it: never its credentials, only which fields are set."""

    id: str
    name: str
    agent: str
    agent_name: str = ""
    kind: MonitorKind
    target: str
    interval: float
    timeout: float | None = None
    metrics: list[str] = Field(default_factory=list)
    thresholds: list[Threshold] = Field(default_factory=list)
    mode: MonitorMode = "always"
    match: str | None = None
    insecure: bool = False
    credentials_set: list[str] = Field(default_factory=list)  # e.g. ["username", "password"]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    state: MonitorState = "pending"
    error: str | None = None
    last_ts: float | None = None
    last_values: dict[str, float] = Field(default_factory=dict)
    alarms: int = 0  # alarms raised and not cleared


class MonitorSample(Model):
    ts: float  # agent clock, epoch seconds
    values: dict[str, float] = Field(default_factory=dict, max_length=MAX_MONITOR_METRICS)


class MonitorMetrics(Model):
    """Answer of ``GET /monitors/{id}/metrics``: its recent samples, oldest first."""

    monitor_id: str
    samples: list[MonitorSample] = Field(default_factory=list)


class Alarm(Model):
    id: int
    monitor: str  # monitor id
    monitor_name: str = ""
    metric: str
    severity: Severity
    started_at: datetime
    ended_at: datetime | None = None  # None: still raised
    value: float | None = None  # the value that raised it (the latest while raised)
    threshold: str = ""  # e.g. "above 4 for 30 s"
    test_id: str | None = None  # the test running when it was raised, if any


# --- the agent's side (heartbeats) -----------------------------------------------------------


class MonitorAssignment(Model):
    """A monitor the server tells an agent to run, with its credentials (only to that agent)."""

    id: Ident
    kind: MonitorKind
    target: str
    interval: float
    timeout: float
    metrics: list[str] = Field(default_factory=list)
    credentials: MonitorCredentials | None = None
    match: str | None = None
    insecure: bool = False


class MonitorReport(Model):
    """What an agent collected for one monitor since its last answered heartbeat."""

    id: Ident
    state: Literal["ok", "error"]
    error: ReportText | None = None
    samples: list[MonitorSample] = Field(default_factory=list, max_length=720)
    #: The source named more metrics than kept (the limit, or the ``metrics`` chosen).
    dropped_metrics: int = 0
    version: ReportLine | None = None  # what the target says it runs, when it says


# --- kept with a test --------------------------------------------------------------------------


class MonitorSeries(Model):
    """One metric of one monitor during a test: ``(ts, value)`` points, oldest first (a long test's
    older points are means of neighbours, so the whole test fits a bounded count)."""

    monitor: str  # monitor id
    monitor_name: str = ""
    metric: str
    points: list[tuple[float, float]] = Field(default_factory=list)


class TestMonitors(Model):
    """Answer of ``GET /tests/{id}/monitors``: the monitors a test names, their series, its alarms."""

    test_id: str
    monitors: list[str] = Field(default_factory=list)  # monitor ids
    stop_on_critical: bool = False
    series: list[MonitorSeries] = Field(default_factory=list)
    alarms: list[Alarm] = Field(default_factory=list)
