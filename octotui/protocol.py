"""The wire contract shared by the control server, the agent and the dashboard client.

This module imports nothing of octotui's own: the agent ships with it and nothing else.
Every route lives under ``/api/v1``. Additive changes only (new optional fields with defaults);
renaming or removing a field breaks agents already installed in the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

VERSION = "0.1.0"
API_PREFIX = "/api/v1"

#: Labels the agent puts on every container it starts, so it finds its own after any restart.
LABEL_MANAGED = "io.octotui.managed"
LABEL_TEST = "io.octotui.test"
LABEL_CONTAINER = "io.octotui.container"
LABEL_AGENT = "io.octotui.agent"
LABEL_COMMAND = "io.octotui.command"

# --- text at the contract's edge --------------------------------------------------------------
#
# JSON may spell a lone surrogate ("\udc80") that Python keeps in a str but that no UTF-8 encoder
# (the store, a log, an answer) can write afterwards, and NUL or control characters that mean
# nothing in a name and reach terminals, argv and files. Every string a request carries is one of:
#   Line        one line typed by an operator: lone surrogates and every control character refused;
#   Lines       a document (the plan): as Line, but tab, line feed and carriage return allowed (and
#               what XML 1.0 allows besides: DEL and C1), U+FFFE/U+FFFF refused like XML does;
#   ReportText  free text an agent reports (OS, Docker and JMeter errors): never refused, lone
#               surrogates and control characters but tab/LF/CR become U+FFFD (a heartbeat must not
#               be lost to an odd error message, and escapes must not reach the dashboard's terminal);
#   ReportLine  the same for one-line agent facts (version, platform): every control becomes U+FFFD;
#   Ident       an id the server or Docker made (letters, digits, ``.``, ``_``, ``:``, ``-``).
# The checks run before pydantic's own: its constrained strings refuse a surrogate only with
# "unable to parse raw data as a unicode string", its plain ones not at all.

_SURROGATES = "\ud800-\udfff"
_NOT_IN_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_SURROGATES}]")
_NOT_IN_LINES = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff{_SURROGATES}]")
_NOT_IN_REPORT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SURROGATES}]")


def _escape(char: str) -> str:
    """A character as JSON escapes it, so a message about it stays printable and encodable."""
    return f"\\u{ord(char):04x}"


def text_problem(value: str, *, multiline: bool = False) -> tuple[str, str] | None:
    """``(error type, sentence)`` for the first character ``value`` may not hold, or None.

    Positions count characters from 0; a multi-line text adds its line and column (from 1).
    """
    found = (_NOT_IN_LINES if multiline else _NOT_IN_LINE).search(value)
    if found is None:
        return None
    char, at = found.group(), found.start()
    where = f"at position {at}"
    if multiline:
        line_start = value.rfind("\n", 0, at) + 1
        line = value.count("\n", 0, at) + 1
        where += f" (line {line}, column {at - line_start + 1})"
    if "\ud800" <= char <= "\udfff":
        return "text_surrogate", f"contains a lone surrogate ({_escape(char)}) {where}: not valid Unicode text"
    if char == "\x00":
        return "text_nul", f"contains a NUL character ({_escape(char)}) {where}"
    if char in "\ufffe\uffff":
        return "text_noncharacter", f"contains the non-character {_escape(char)} {where}"
    allowed = "only tab, line feed and carriage return may appear in it" if multiline else "it must be one line"
    return "text_control", f"contains a control character ({_escape(char)}) {where}: {allowed}"


def _refuse(problem: tuple[str, str] | None) -> None:
    if problem is not None:
        raise PydanticCustomError(problem[0], "{problem}", {"problem": problem[1]})


def _line(value: object) -> object:
    if isinstance(value, str):
        _refuse(text_problem(value))
    return value


def _lines(value: object) -> object:
    if isinstance(value, str):
        _refuse(text_problem(value, multiline=True))
    return value


def _scrub_report(value: object) -> object:
    if isinstance(value, str) and _NOT_IN_REPORT.search(value):
        return _NOT_IN_REPORT.sub("\ufffd", value)
    return value


def _scrub_line(value: object) -> object:
    if isinstance(value, str) and _NOT_IN_LINE.search(value):
        return _NOT_IN_LINE.sub("\ufffd", value)
    return value


Line = Annotated[str, BeforeValidator(_line)]
Lines = Annotated[str, BeforeValidator(_lines)]
ReportText = Annotated[str, BeforeValidator(_scrub_report)]
ReportLine = Annotated[str, BeforeValidator(_scrub_line)]
_IDENT = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
#: No Python check here (heartbeats carry several per container): the pattern refuses what _line would.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_IDENT)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$"),
    BeforeValidator(_line),
]
Location = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    BeforeValidator(_line),
]

# --- JMeter properties (-Jname=value) ----------------------------------------------------------

#: Properties the agent sets itself on every JMeter it starts (``agent/containers.py``
#: ``jmeter_args``), by prefix: the JTL format and field names its result parser reads, the
#: shutdown port it stops JMeter through, the summariser whose ``summary`` lines are the live
#: figures. A test may not override any of them (refused with 422): JMeter would take the later
#: ``-J`` silently and the results or the stop would be lost.
RESERVED_PROPERTY_PREFIXES: tuple[str, ...] = ("jmeter.save.saveservice.", "jmeterengine.nongui.", "summariser.")
#: Properties that a field of :class:`TestCreate` sets too; a test may set each in one place only
#: (the same value in both is accepted, a different one refused).
FIELD_PROPERTIES: tuple[str, ...] = ("users", "duration", "rampup")
MAX_PROPERTIES = 100
MAX_PROPERTY_NAME = 128
MAX_PROPERTY_VALUE = 4096  # x MAX_PROPERTIES stays far under Linux's 2 MiB of arguments
_PROPERTY_NAME_REFUSED = re.compile(r"[=\s]")


def reserved_property(name: str) -> str | None:
    """The reserved prefix ``name`` falls under (see :data:`RESERVED_PROPERTY_PREFIXES`), or None."""
    return next((prefix for prefix in RESERVED_PROPERTY_PREFIXES if name.startswith(prefix)), None)


def property_problem(name: str, value: str) -> str | None:
    """Why ``-J{name}={value}`` may not be passed to JMeter, or None.

    A name is what JMeter's ``-J`` takes: not empty (JMeter then stops with "Unable to parse first
    argument for option -J" and exits 0: a test that ran nothing would read finished), no ``=``
    (the first one ends the name), no whitespace or control character, not reserved. A value is
    one line (no control character: argv cannot carry NUL, and the rest means nothing to JMeter);
    ``=`` is fine in it (``url=http://host/?a=b``).
    """
    shown = repr(name if len(name) <= 60 else name[:60] + "…")
    if (problem := text_problem(name)) is not None:
        return f"property name {shown} {problem[1]}"
    if not name:
        return "a property name is empty (JMeter refuses -J=value and runs nothing)"
    if len(name) > MAX_PROPERTY_NAME:
        return f"property name {shown} is longer than {MAX_PROPERTY_NAME} characters"
    if (bad := _PROPERTY_NAME_REFUSED.search(name)) is not None:
        what = "'='" if bad.group() == "=" else "whitespace"
        return f"property name {shown} contains {what} at position {bad.start()}: JMeter's -Jname=value cannot carry it"
    if (prefix := reserved_property(name)) is not None:
        return f"property {shown} is set by the agent itself (every {prefix}* property is reserved)"
    if (problem := text_problem(value)) is not None:
        return f"the value of property {shown} {problem[1]}"
    if len(value) > MAX_PROPERTY_VALUE:
        return f"the value of property {shown} is longer than {MAX_PROPERTY_VALUE} characters"
    return None


def _properties(value: object) -> object:
    if not isinstance(value, dict):
        return value  # pydantic says what it should be
    if len(value) > MAX_PROPERTIES:
        raise PydanticCustomError(
            "properties_too_many", "{problem}", {"problem": f"{len(value)} properties: at most {MAX_PROPERTIES}"}
        )
    for name, item in value.items():
        if isinstance(name, str) and isinstance(item, str) and (problem := property_problem(name, item)):
            raise PydanticCustomError("property_invalid", "{problem}", {"problem": problem})
    return value


#: ``-J`` properties of a test, checked as a whole so that a name is never echoed raw in an
#: error's location (a name holding a lone surrogate could not be written in the answer).
Properties = Annotated[
    dict[str, str],
    BeforeValidator(_properties),
    Field(
        json_schema_extra={
            "maxProperties": MAX_PROPERTIES,
            "propertyNames": {"minLength": 1, "maxLength": MAX_PROPERTY_NAME, "pattern": r"^[^=\s]+$"},
            "additionalProperties": {"type": "string", "maxLength": MAX_PROPERTY_VALUE},
        }
    ),
]


# --- Docker image references -------------------------------------------------------------------
# Written from the grammar of distribution/reference (reference.go's comment):
#   reference   := name [ ":" tag ] [ "@" digest ]
#   name        := [ domain "/" ] path-component [ "/" path-component ]*
#   domain      := host [ ":" port ]   host := domain-component [ "." domain-component ]* | "[" IPv6 "]"
#   path-component := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator := [_.] | "__" | "-"+
#   tag         := [\w][\w.-]{0,127}          (Go's \w: ASCII letters, digits, _)
# and digests as Docker pulls them: sha256 with 64 lowercase hex digits (sha512: 128).

_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_IMAGE_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
_IMAGE = rf"({_IMAGE_NAME})(?::{_TAG})?(?:@(?:{_DIGEST}))?"
IMAGE_REFERENCE = re.compile(_IMAGE, re.ASCII)
IMAGE_NAME_MAX = 255  # distribution/reference's NameTotalLengthMax (registry and path, not the tag)
_IMAGE_FORM = "[registry[:port]/]name[:tag][@sha256:<64 hex digits>], e.g. justb4/jmeter:5.5"


def image_problem(image: str) -> str | None:
    """Why ``image`` is not a Docker image reference, or None."""
    if not image:
        return "is empty: leave the image out (null) for the server's default"
    if (space := re.search(r"\s", image)) is not None:
        return f"contains whitespace at position {space.start()}: not a Docker image reference ({_IMAGE_FORM})"
    found = IMAGE_REFERENCE.fullmatch(image)
    if found is None:
        hint = ""
        if IMAGE_REFERENCE.fullmatch(image.lower()) is not None:
            hint = " (a repository name is lowercase: only the registry host and the tag may have capitals)"
        elif "@" in image:
            hint = " (a digest is sha256: and 64 lowercase hex digits)"
        return f"{image!r} is not a Docker image reference{hint}: expected {_IMAGE_FORM}"
    if len(found.group(1)) > IMAGE_NAME_MAX:
        return f"has a name longer than {IMAGE_NAME_MAX} characters (registry and repository)"
    return None


def _image(value: str) -> str:
    if (problem := image_problem(value)) is not None:
        raise PydanticCustomError("image_reference", "{problem}", {"problem": problem})
    return value


#: A Docker image reference, checked against Docker's grammar (the schema's pattern is the same).
Image = Annotated[
    str,
    AfterValidator(_image),
    BeforeValidator(_line),
    Field(max_length=512, json_schema_extra={"pattern": f"^{_IMAGE.replace('(', '(?:', 1)}$"}),
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
TERMINAL_CONTAINER_STATES: frozenset[ContainerState] = frozenset({"finished", "failed", "lost"})
TERMINAL_TEST_STATES: frozenset[TestState] = frozenset({"finished", "failed"})
#: What a command asks of an agent.
CommandKind = Literal["launch", "stop"]
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


class HeartbeatResponse(Model):
    ok: bool = True
    #: Container ids the server wants stopped (strays of ended tests, found by reconciliation).
    stop: list[str] = Field(default_factory=list)
    #: Container ids whose every label and error count the server wants in the next heartbeat
    #: (it holds none for them: e.g. it restarted since they were last sent). Agents older than
    #: this field ignore it.
    labels_wanted: list[str] = Field(default_factory=list)


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
    kind: CommandKind
    container_id: str
    test_id: str
    launch: LaunchSpec | None = None
    #: For "stop": seconds to wait for JMeter's graceful stop before ``docker stop``.
    grace_s: float = 20.0


class CommandAck(Model):
    ok: bool
    error: ReportText | None = None


# --- tests -----------------------------------------------------------------------------------


class TestCreate(Model):
    """``POST /api/v1/tests``. Counts are strict JSON integers (``true``, ``"5"``, ``2.5`` refused);
    every string is checked as :data:`Line` (the plan as :data:`Lines`), the image against Docker's
    grammar, the properties by :func:`property_problem`."""

    name: Name
    plan: Lines = Field(min_length=1)
    provider: Line = Field(min_length=1, max_length=64)  # provider id or name
    containers: int = Field(strict=True, ge=1, le=1000)
    locations: list[Location] | None = Field(default=None, max_length=100)
    image: Image | None = None
    properties: Properties = Field(default_factory=dict)
    users: int | None = Field(default=None, strict=True, ge=1, le=100_000)  # per container, sets -Jusers
    duration: int | None = Field(default=None, strict=True, ge=1, le=7 * 24 * 3600)  # seconds, sets -Jduration
    rampup: int | None = Field(default=None, strict=True, ge=0, le=24 * 3600)  # seconds, sets -Jrampup
    dry_run: bool = Field(default=False, strict=True)

    @model_validator(mode="after")
    def _one_place_per_setting(self) -> TestCreate:
        """``users`` (``duration``, ``rampup``) as a field and as a different property is refused:
        the server used to let the field win without a word, so the operator's property was lost."""
        for key in FIELD_PROPERTIES:
            field = getattr(self, key)
            if field is not None and key in self.properties and self.properties[key] != str(field):
                shown = repr(self.properties[key][:40])
                raise PydanticCustomError(
                    "property_conflict",
                    "{problem}",
                    {"problem": f"property {key}={shown} contradicts {key}={field}: set {key} in one place"},
                )
        return self


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
    #: Ended because an operator stopped it (``state`` then reads ``finished``; the dashboard
    #: shows ``stopped``).
    stopped: bool = False


class LabelFigures(Model):
    """``GET /api/v1/tests/{id}/labels``: one label merged over the test's containers (live while it
    runs, final after)."""

    label: str
    samples: int = 0
    errors: int = 0
    error_percent: float = 0.0
    avg_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    throughput: float = 0.0  # samples/s over the label's span
    received_kbps: float = 0.0  # KiB/s
    sent_kbps: float = 0.0


class ErrorFigures(Model):
    """``GET /api/v1/tests/{id}/errors``: failed samples per label, code and message over the test."""

    label: str
    code: str
    message: str
    count: int


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
    BeforeValidator(_line),
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
