"""Tests, their containers and results, the change feed, operator tokens, audit and errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from octotui.protocol.agents import Agent, FinalResults, JMeterFigures, Provider
from octotui.protocol.base import ContainerState, Model, Role, TestState
from octotui.protocol.text import FIELD_PROPERTIES, Ident, Image, Line, Lines, Location, Name, Properties, _line

# --- tests -----------------------------------------------------------------------------------


MAX_TEST_FILES = 20
MAX_CRITERIA = 50


class FileInfo(Model):
    """Answer of ``POST /api/v1/files?name=NAME`` (the file as the raw body) and of ``GET /files``."""

    id: str
    name: str
    size: int
    sha256: str
    created_at: datetime | None = None
    #: Lines of text, when the file is text (UTF-8) — what a split divides; None for binary files.
    lines: int | None = None


class TestFile(Model):
    """A file a test brings: copied whole to every container, or ``split`` evenly between them
    (each reads its own share; with ``header`` the first line is kept on every share)."""

    id: Ident
    split: bool = Field(default=False, strict=True)
    header: bool = Field(default=False, strict=True)


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
    files: list[TestFile] = Field(default_factory=list, max_length=MAX_TEST_FILES)
    #: Pass/fail criteria evaluated by the server (``p95<500ms``, ``errors<1%``, ``hits/s>100``,
    #: ``avg of login>200ms for 30s``); an unparsable one is a 422 naming its position.
    criteria: list[Line] = Field(default_factory=list, max_length=MAX_CRITERIA)
    #: Monitors (ids or names) of mode ``tests`` that run with this test; their samples and alarms
    #: are kept with it. ``always`` monitors named here are kept with it too.
    monitors: list[Line] = Field(default_factory=list, max_length=50)
    #: Stop the test (as failed) when one of its monitors raises a critical alarm.
    stop_on_critical: bool = Field(default=False, strict=True)

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
    #: Agents that would have fitted and get nothing, with why: ``gen-b (drained)``.
    skipped: list[str] = Field(default_factory=list)


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


Verdict = Literal["passed", "failed"]


class CriterionResult(Model):
    """One pass/fail criterion of a test and how it stands."""

    expr: str  # as given, e.g. "avg of login>200ms for 30s"
    metric: str  # p50/p90/p95/p99/avg/min/max (ms), errors (%), hits/s
    label: str | None = None  # None: the whole test
    op: Literal["<", "<=", ">", ">="]
    threshold: float  # in the metric's unit (ms, %, hits/s)
    #: Held for this many seconds during the test (the test is stopped as failed when it breaks
    #: for that long); None: decided on the final figures.
    for_s: float | None = None
    actual: float | None = None  # the figure it was decided on (or the latest, while running)
    passed: bool | None = None  # None: not decided yet
    detail: str = ""  # e.g. "p95 612 ms, over 500 ms by 112 ms (22 %)"; unknown labels say so


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
    files: list[TestFile] = Field(default_factory=list)
    #: The criteria as evaluated by the server, in the order given.
    criteria: list[CriterionResult] = Field(default_factory=list)
    #: ``passed`` or ``failed`` once the criteria are decided (at the end, or earlier when a held
    #: criterion failed and stopped the test); None without criteria or while undecided.
    verdict: Verdict | None = None
    monitors: list[str] = Field(default_factory=list)  # monitor ids kept with it
    stop_on_critical: bool = False
    #: Why its results may be wrong (``results may be skewed: gen-b saturated for 45 s (CPU 97 %)``).
    warnings: list[str] = Field(default_factory=list)


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


class LabelDelta(Model):
    """One label of a test against the same label of its baseline (``None``: absent from that run)."""

    label: str
    samples: int | None = None
    baseline_samples: int | None = None
    avg_ms: float | None = None
    baseline_avg_ms: float | None = None
    p95_ms: float | None = None
    baseline_p95_ms: float | None = None
    error_percent: float | None = None
    baseline_error_percent: float | None = None
    throughput: float | None = None
    baseline_throughput: float | None = None
    #: Worse than the baseline beyond the comparison's tolerances; ``reasons`` says how.
    regression: bool = False
    reasons: list[str] = Field(default_factory=list)


class Comparison(Model):
    """``GET /api/v1/tests/{id}/compare/{baseline_id}``: per-label deltas against an earlier test."""

    test_id: str
    baseline_id: str
    labels: list[LabelDelta] = Field(default_factory=list)
    regressions: int = 0
    #: The tolerances used, e.g. ``{"avg_ms": 10.0, "p95_ms": 10.0, "error_percent": 1.0, "throughput": 10.0}``.
    tolerances: dict[str, float] = Field(default_factory=dict)


class TestSeriesPoint(Model):
    ts: float
    rate: float
    avg_ms: float
    errors: int
    active: int
    #: Per interval (0/None from servers older than these): errors per second, 95th percentile
    #: of the interval's samples, bytes received and sent per second.
    error_rate: float = 0.0
    p95_ms: float | None = None
    received_bps: float = 0.0
    sent_bps: float = 0.0


class LabelSeriesPoint(Model):
    """One interval of one label: what the test's point holds, for that label alone."""

    ts: float
    rate: float = 0.0
    error_rate: float = 0.0
    avg_ms: float = 0.0
    p95_ms: float | None = None
    received_bps: float = 0.0
    sent_bps: float = 0.0


class LabelSeries(Model):
    label: str
    points: list[LabelSeriesPoint] = Field(default_factory=list)


class GeneratorPoint(Model):
    ts: float
    cpu_percent: float
    memory_percent: float


class GeneratorSeries(Model):
    """A load generator's (agent's) CPU and memory during a test, kept with the test."""

    agent_id: str
    agent_name: str = ""
    points: list[GeneratorPoint] = Field(default_factory=list)


class TestSeries(Model):
    test_id: str
    points: list[TestSeriesPoint]
    #: Per-label series (when asked for with ``?labels=true`` or ``?label=NAME``).
    labels: list[LabelSeries] = Field(default_factory=list)
    #: The generators' CPU and memory over the test.
    generators: list[GeneratorSeries] = Field(default_factory=list)


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
