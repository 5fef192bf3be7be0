"""What an export of one test says, read once from the server's state (:func:`gather`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from xml.parsers import expat

from octotui.protocol import (
    OTHER_LABEL,
    Comparison,
    ErrorFigures,
    LabelFigures,
    Test,
    TestSeriesPoint,
)
from octotui.protocol.monitors import Alarm, MonitorSeries
from octotui.server.domain import alarms, clock, compare, labels, series, views
from octotui.server.domain.lifecycle import TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.labelbook import merge_errors, merge_labels
from octotui.server.records import TestRec
from octotui.server.timeline import GeneratorTimeline, Packed, Point

#: Points of one line of a chart in the report at most (a chart is ~500 pixels wide): longer
#: timelines are thinned, runs of points merged as their buckets are (``Packed.thinned``).
CHART_POINTS = 300

#: The name of the row merged over every label (JMeter's Aggregate Report calls it TOTAL too).
TOTAL = "TOTAL"


@dataclass(frozen=True, slots=True)
class Generator:
    """One agent that ran containers of the test, with its containers and its health in the test."""

    agent_id: str
    name: str
    location: str
    status: str  # online / late / offline / gone (deleted since)
    containers: list[tuple[str, str, int | None, str | None]]  # (id, state, exit code, error)
    #: Host CPU % and memory % over the test: from its CPU/memory kept with the test (one point a
    #: second while it ran a container of the test, older ones merged); for a test run before they
    #: were kept, from the host samples still in memory.
    cpu_mean: float | None = None
    cpu_max: float | None = None
    memory_max: float | None = None  # host memory %
    host_samples: int = 0
    kept: bool = False  # the figures come from the series kept with the test


@dataclass(frozen=True, slots=True)
class Line:
    """One kept timeline: a label's or a generator's (named by its agent), as the store holds it;
    the report draws it thinned (:meth:`points`), the other exports never read it."""

    name: str
    timeline: Packed

    def points(self) -> list[Point]:
        """At most CHART_POINTS points (``LabelTimeline`` or ``GeneratorTimeline`` fields)."""
        return self.timeline.thinned(CHART_POINTS)


@dataclass(frozen=True, slots=True)
class ExportData:
    """One test as its exports show it. ``live``: the test has not ended, the figures are those of now."""

    test: Test
    plan_name: str
    labels: list[LabelFigures]
    total: LabelFigures
    errors: list[ErrorFigures]
    series: list[TestSeriesPoint]
    generators: list[Generator]
    live: bool
    generated_at: float
    stopped: bool = False
    notes: list[str] = field(default_factory=list)
    #: Against a baseline, when one was asked for (``?baseline=ID``), and that test's name.
    comparison: Comparison | None = None
    baseline_name: str = ""
    #: Each label's series and each generator's CPU/memory over the test, as kept with it.
    label_series: list[Line] = field(default_factory=list)
    generator_series: list[Line] = field(default_factory=list)
    #: The monitors the test named (ids; none: no Monitors section), each metric of theirs kept
    #: with the test (thinned to CHART_POINTS points), and the alarms raised during it.
    monitors: list[str] = field(default_factory=list)
    monitor_series: list[MonitorSeries] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """What the test came to: ``live`` while it runs, else its state (``stopped`` when an
        operator stopped it). Pass/fail criteria are issue 15's: until then, no other verdict."""
        if self.live:
            return "live"
        if self.stopped and self.test.state == "finished":
            return "stopped"
        return self.test.state


def thinned(points: list[tuple[float, float]], limit: int = CHART_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points: runs of neighbours merged into their mean time and value."""
    points = [(ts, v) for ts, v in points if math.isfinite(ts) and math.isfinite(v)]
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / limit)
    runs = [points[i : i + size] for i in range(0, len(points), size)]
    return [(sum(p[0] for p in run) / len(run), sum(p[1] for p in run) / len(run)) for run in runs]


def plan_name(plan: str) -> str:
    """The ``testname`` of the plan's ``<TestPlan>`` element ('' when it has none)."""
    found: list[str] = []
    parser = expat.ParserCreate()

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "TestPlan" and not found:
            found.append(attrs.get("testname", ""))

    parser.StartElementHandler = start
    try:
        parser.Parse(plan, True)
    except expat.ExpatError:
        return ""
    return found[0] if found else ""


def total_of(figures: list[dict[str, bytes]]) -> LabelFigures:
    """Every label of every container merged into one row named :data:`TOTAL`: exact percentiles
    over all samples (histograms add), throughput over the test's span of samples."""
    rows = merge_labels({TOTAL: blob} for book in figures for blob in book.values())
    return rows[0] if rows else LabelFigures(label=TOTAL)


def _figures(cpu: list[float], mem: list[float]) -> tuple[float | None, float | None, float | None]:
    """CPU % mean and max, memory % max."""
    if not cpu:
        return None, None, round(max(mem), 1) if mem else None
    return round(sum(cpu) / len(cpu), 1), round(max(cpu), 1), round(max(mem), 1) if mem else None


def _generators(
    s: ServerState, t: TestRec, test: Test, kept: list[tuple[str, str, GeneratorTimeline]]
) -> list[Generator]:
    by_agent: dict[str, list[tuple[str, str, int | None, str | None]]] = {}
    for c in test.containers:
        by_agent.setdefault(c.agent, []).append((c.id, c.state, c.exit_code, c.error))
    series = {agent_id: (name, line) for agent_id, name, line in kept}
    end = t.ended_at if t.ended_at is not None else clock.now()
    out = []
    for agent_id, containers in by_agent.items():
        a = s.agents.get(agent_id)
        g = series.get(agent_id)
        if g is not None and len(g[1]):
            # Kept with the test: the mean over time (each point weighted by the intervals it
            # stands for), the maxima of the points (of merged points, of their means).
            points = [(cpu, mem, n) for _, cpu, mem, n in g[1].points() if math.isfinite(cpu) and math.isfinite(mem)]
            weight = sum(n for _, _, n in points)
            mean = round(sum(cpu * n for cpu, _, n in points) / weight, 1) if weight else None
            status = views.agent_out(s, a).status if a is not None else "gone"
            out.append(
                Generator(
                    agent_id,
                    a.name if a is not None else g[0],
                    a.location if a is not None else "",
                    status,
                    containers,
                    mean,
                    round(max(p[0] for p in points), 1) if points else None,
                    round(max(p[1] for p in points), 1) if points else None,
                    host_samples=int(weight),
                    kept=True,
                )
            )
            continue
        if a is None:
            out.append(Generator(agent_id, "", "", "gone", containers))
            continue
        status = views.agent_out(s, a).status
        start = t.started_at if t.started_at is not None else t.created_at
        during = [h for h in s.hosts.get(agent_id) if start <= h.ts <= end]
        cpu = [h.cpu_percent for h in during if math.isfinite(h.cpu_percent)]
        mem = [h.memory_percent for h in during if math.isfinite(h.memory_percent)]
        out.append(
            Generator(agent_id, a.name, a.location, status, containers, *_figures(cpu, mem), host_samples=len(during))
        )
    return sorted(out, key=lambda g: (g.name, g.agent_id))


async def gather(s: ServerState, t: TestRec, baseline_id: str | None = None) -> ExportData:
    """Read everything the exports of ``t`` show (labels from memory or the store, as
    ``GET /tests/{id}/labels`` reads them; the series as ``GET /tests/{id}/series`` answers it);
    with ``baseline_id``, its comparison with that test (default tolerances)."""
    comparison = None if baseline_id is None else await compare.compare(s, t.id, baseline_id, {})
    books = await labels.books(s, t)
    figures = [book.figures for book in books]
    test = views.test_out(s, t)
    notes = []
    merged = merge_labels(figures)
    if any(x.label == OTHER_LABEL for x in merged):
        notes.append(f"the plan made more labels than a container reports: the excess is counted as {OTHER_LABEL!r}")
    kept = await series.generator_lines(s, t)
    watched = await alarms.of_test(s, t.id) if t.id in s.monitors.of_test else None
    return ExportData(
        test=test,
        plan_name=plan_name(t.plan),
        labels=merged,
        total=total_of(figures),
        errors=merge_errors(book.errors for book in books),
        series=await series.points(s, t),
        generators=_generators(s, t, test, kept),
        live=t.state not in TEST_TERMINAL,
        generated_at=clock.now(),
        stopped=t.stop_requested,
        notes=notes,
        comparison=comparison,
        baseline_name=s.tests[baseline_id].name if baseline_id is not None else "",
        label_series=[Line(name, line) for name, line in await series.label_lines(s, t)],
        generator_series=[Line(name or aid, line) for aid, name, line in kept],
        monitors=watched.monitors if watched else [],
        monitor_series=[x.model_copy(update={"points": thinned(x.points)}) for x in watched.series] if watched else [],
        alarms=sorted(watched.alarms, key=lambda a: (a.started_at, a.id)) if watched else [],
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(test: Test, suffix: str) -> str:
    """A file name safe on any system and in a ``Content-Disposition`` header: the test's name in
    ASCII letters, digits, ``.``, ``_`` and ``-`` (anything else becomes ``_``), then its id."""
    stem = _UNSAFE.sub("_", test.name).strip("._-")[:80] or "test"
    ident = _UNSAFE.sub("_", test.id)[:64]
    return f"{stem}-{ident}{suffix}"
