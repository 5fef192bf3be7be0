"""The dashboard's tables' rows, made from the wire models: one :class:`Cell` tuple per row key.

Screens build rows here and hand them to the tables (attributes down): the table widgets know
cells and keys, never the contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from octotui.protocol import (
    OTHER_ERROR,
    OTHER_LABEL,
    TERMINAL_CONTAINER_STATES,
    Agent,
    AuditEntry,
    Comparison,
    ContainerRecord,
    ErrorFigures,
    LabelDelta,
    LabelFigures,
    Provider,
    Test,
)
from octotui.tui import format as fmt
from octotui.tui.widgets.keyed_table import Cell

#: One table row: its cells, in the table's column order.
Row = tuple[Cell, ...]

STATUS_STYLE = {"online": "success", "late": "warning", "offline": "error"}
TEST_STATE_STYLE = {
    "pending": "secondary",
    "starting": "warning",
    "running": "success",
    "stopping": "warning",
    "finished": "foreground-muted",
    "stopped": "foreground-muted",
    "failed": "error",
}
CONTAINER_STATE_STYLE = {
    **TEST_STATE_STYLE,
    "pulling": "warning",
    "lost": "error",
}


def provider_rows(providers: Sequence[Provider], agents: Sequence[Agent]) -> dict[str, Row]:
    """Providers: name, agents (registered), online agents, locations."""
    online: dict[str, int] = {}
    for agent in agents:
        if agent.status == "online":
            online[agent.provider] = online.get(agent.provider, 0) + 1
    rows: dict[str, Row] = {}
    for p in providers:
        up = online.get(p.id, 0)
        rows[p.id] = (
            Cell(p.name),
            Cell(str(p.agents), sort=p.agents),
            Cell(str(up), "success" if up else None, sort=up),
            Cell(", ".join(p.locations) or "-"),
        )
    return rows


def _seen(agent: Agent, late_after: float, now: float, stale: bool = False) -> Cell:
    # "now" while heartbeats are on time: an age ticking every second on every row would repaint
    # the whole column each tick for no information.
    if stale:
        return Cell("stale", "warning", sort=float("inf"))
    age = fmt.age_seconds(agent.last_seen, now)
    if age is None:
        return Cell("never", "foreground-muted", sort=float("inf"))
    if age < late_after:
        return Cell("now", sort=0.0)
    return Cell(fmt.duration(age), STATUS_STYLE.get(agent.status), sort=age)


#: How the Status column sorts its words: trouble first when sorted descending.
STATUS_ORDER = ("online", "drained", "outdated", "saturated", "no docker", "late", "retiring", "offline")


def agent_state(agent: Agent) -> tuple[str, str | None]:
    """The one word the Status column shows for ``agent``, and its theme colour: its health first
    (offline, late, retiring), then what degrades its results (saturated, no docker), then what an
    operator must act on (outdated), then drained (taken out of service on purpose: not trouble)."""
    if agent.retiring:
        return "retiring", "warning"
    if agent.status != "online":
        return agent.status, STATUS_STYLE.get(agent.status)
    if agent.saturated:
        return "saturated", "warning"
    if agent.docker is not None and not agent.docker.available:
        return "no docker", "warning"
    if agent.outdated:
        return "outdated", "warning"
    if agent.drained:
        return "drained", "accent"
    return "online", "success"


def agent_flags(agent: Agent) -> list[str]:
    """Every state of ``agent`` besides its status, in words (the agent screen's title says them)."""
    flags = []
    if agent.drained:
        flags.append("drained: takes no new containers")
    if agent.outdated:
        flags.append("outdated: older than the server, upgrade it")
    if agent.duplicate_machine:
        flags.append("same machine as another agent")
    if agent.saturated:
        flags.append(f"saturated: {agent.saturated}")
    return flags


def _usage_cell(value: float | None) -> Cell:
    """A CPU or memory percentage: a bar, then the figure; in the warning colour from 90 %."""
    if value is None:
        return Cell("-", sort=None)
    # "100" rather than "100.0": the figure keeps to the 4 cells the column has beside the bar
    text = fmt.percent(value) if value < 99.95 else "100"
    return Cell(text, "warning" if value >= 90 else None, sort=value, bar=value / 100)


def agent_cells(agent: Agent, late_after: float, now: float, stale: bool = False) -> tuple[Cell, ...]:
    """The agents table's row for one agent (``stale``: the server cannot be reached)."""
    host = agent.host
    cpu = host.cpu_percent if host else None
    mem = host.memory_percent if host else None
    docker = agent.docker
    if docker is None:
        docker_cell = Cell("?", "foreground-muted")
    elif docker.available:
        docker_cell = Cell("yes", "success")
    else:
        docker_cell = Cell("no", "warning")
    # Deleted with force while busy (retiring): it hands in its containers' results, then leaves.
    state, style = agent_state(agent)
    # Same-named agents are distinct identities (an operator may have cloned a machine or forgotten
    # --name); two identities on one machine count it twice in figures and placement: say both.
    # Short, so that the name still shows at 80 columns; the agent screen's title says which.
    same = [w for w, flag in (("name", agent.duplicate_name), ("host", agent.duplicate_machine)) if flag]
    name = Cell(f"{agent.name} (dup {'+'.join(same)})", "warning", sort=agent.name) if same else Cell(agent.name)
    return (
        Cell(state, style, sort=STATUS_ORDER.index(state)),
        name,
        Cell(agent.provider_name or agent.provider[:8]),
        Cell(agent.location),
        _usage_cell(cpu),
        _usage_cell(mem),
        _seen(agent, late_after, now, stale),
        Cell(agent.version or "-", "warning" if agent.outdated else None),
        docker_cell,
    )


#: The index of the Seen cell in an agents table's row.
SEEN = 6


class AgentRows:
    """The agents table's rows, remade only for the agents that changed when it can tell."""

    def __init__(self) -> None:
        self._made_with: tuple[float, str, bool] | None = None

    def rows(
        self,
        agents: Iterable[Agent],
        late_after: float,
        needle: str = "",
        *,
        stale: bool = False,
        changed: frozenset[str] | None = None,
        shown: Callable[[str], Row | None] = lambda key: None,
    ) -> dict[str, Row]:
        """The rows of the agents whose name, provider, location or status contains ``needle``.

        ``stale``: the server cannot be reached, so every Seen cell says the figures are old.
        ``changed``: only these agents changed since the last call (None: any may have), so the
        others keep the row the table ``shown``, unless their Seen cell is an age that ticks.
        """
        now = time.time()
        needle = needle.strip().lower()
        settings = (late_after, needle, stale)
        if settings != self._made_with:
            changed = None
        self._made_with = settings
        rows: dict[str, Row] = {}
        for agent in agents:
            if changed is not None and agent.id not in changed:
                old = shown(agent.id)
                if old is not None and old[SEEN].text == "now":
                    rows[agent.id] = old
                    continue
            if needle:
                haystack = " ".join((agent.name, agent.provider_name, agent.location, agent.status, agent.version))
                if needle not in haystack.lower():
                    continue
            rows[agent.id] = agent_cells(agent, late_after, now, stale)
        return rows


def _elapsed(test: Test, now: float, stale: bool = False) -> Cell:
    if test.started_at is None:
        return Cell("-", sort=0.0)
    if stale and test.ended_at is None:
        # The server is out of reach: whether it still runs is unknown, so no clock runs on.
        return Cell("stale", "warning", sort=float("inf"))
    end = test.ended_at.timestamp() if test.ended_at else now
    seconds = max(0.0, end - test.started_at.timestamp())
    return Cell(fmt.duration(seconds), sort=seconds)


def test_state(test: Test) -> str:
    """A test's state in words: ``stopped`` for one an operator stopped (the server says ``finished``)."""
    return "stopped" if test.stopped and test.state == "finished" else test.state


def live_containers(test: Test) -> int:
    """Containers of ``test`` that still run or are on their way."""
    return sum(1 for c in test.containers if c.state not in TERMINAL_CONTAINER_STATES)


def test_rows(tests: Sequence[Test], *, stale: bool = False) -> tuple[dict[str, Row], dict[str, float]]:
    """Tests: name, state, containers (live/total), hits/s, errors, elapsed, provider; and their
    default order, newest first. ``stale``: the server cannot be reached, so no elapsed time runs on."""
    now = time.time()
    rows: dict[str, Row] = {}
    for t in tests:
        r = t.results
        rows[t.id] = (
            Cell(t.name),
            Cell(test_state(t), TEST_STATE_STYLE.get(test_state(t))),
            Cell(f"{live_containers(t)}/{len(t.containers)}", sort=len(t.containers)),
            Cell(f"{r.throughput:.1f}", sort=r.throughput),
            Cell(str(r.errors), "error" if r.errors else None, sort=r.errors),
            _elapsed(t, now, stale),
            Cell(t.provider_name or t.provider[:8]),
            check_cell(t),
        )
    return rows, {t.id: -t.created_at.timestamp() for t in tests}


def check_cell(test: Test) -> Cell:
    """The verdict of a test's criteria and its warnings: ``passed``, ``failed: p95<500ms``, ``⚠ 2:
    results may be skewed…``; failed in the error colour, warnings in the warning colour."""
    parts: list[str] = []
    style: str | None = None
    if test.verdict == "failed":
        failed = [c.expr for c in test.criteria if c.passed is False]
        parts.append("failed" + (f": {', '.join(failed)}" if failed else ""))
        style = "error"
    elif test.verdict == "passed":
        parts.append("passed")
        style = "success"
    if test.warnings:
        parts.append(f"⚠ {len(test.warnings)}: " + "; ".join(test.warnings))
        style = style if style == "error" else "warning"
    order = (2 if test.verdict == "failed" else 0) + (1 if test.warnings else 0)
    return Cell(" · ".join(parts) or "-", style, sort=order)


def _live_figures(c: ContainerRecord) -> tuple[Cell, Cell, Cell]:
    """CPU, memory and hits/s of a container: "-" once it has ended, as nothing of it runs."""
    if c.state in TERMINAL_CONTAINER_STATES:
        return Cell("-"), Cell("-"), Cell("-")
    f = c.figures
    return (
        Cell(fmt.percent(c.cpu_percent), sort=c.cpu_percent),
        Cell(fmt.size(c.memory_bytes), sort=c.memory_bytes),
        Cell(f"{f.rate:.1f}" if f else "-", sort=f.rate if f else None),
    )


def _progress(c: ContainerRecord) -> Cell:
    if c.state == "pulling" or (c.pull_progress is not None and c.pull_progress < 1):
        p = c.pull_progress or 0.0
        return Cell(f"{fmt.bar(p, 5)}{p * 100:3.0f}%", "warning", sort=p)
    if c.error:
        return Cell(c.error.splitlines()[0] if c.error.strip() else c.error, "error")
    return Cell("")


def container_rows(containers: Iterable[ContainerRecord]) -> dict[str, Row]:
    """A test's containers: agent, location, state, CPU, memory, hits/s, errors, pull progress or error."""
    rows: dict[str, Row] = {}
    for c in containers:
        f = c.figures
        rows[c.id] = (
            Cell(f"#{c.index} {c.agent_name or c.agent[:8]}", sort=(c.agent_name, c.index)),
            Cell(c.location or "-"),
            Cell(c.state, CONTAINER_STATE_STYLE.get(c.state)),
            *_live_figures(c),
            Cell(str(f.errors) if f else "-", "error" if f and f.errors else None, sort=f.errors if f else None),
            _progress(c),
        )
    return rows


def agent_container_rows(tests: Iterable[Test], agent_id: str) -> dict[str, Row]:
    """The containers placed on one agent, whatever their test."""
    rows: dict[str, Row] = {}
    for t in tests:
        for c in t.containers:
            if c.agent != agent_id:
                continue
            rows[c.id] = (
                Cell(t.name),
                Cell(str(c.index), sort=c.index),
                Cell(c.state, CONTAINER_STATE_STYLE.get(c.state)),
                *_live_figures(c),
                _progress(c),
            )
    return rows


def audit_what(entry: AuditEntry) -> str:
    """What an audit entry changed, and how: its target, then its detail when that says more."""
    if entry.detail and entry.target and entry.target not in entry.detail:
        return f"{entry.target}: {entry.detail}"
    return entry.detail or entry.target


def audit_rows(entries: Iterable[AuditEntry]) -> dict[str, Row]:
    """The audit log: when, who, role, action, from where, what."""
    rows: dict[str, Row] = {}
    today = time.strftime("%Y-%m-%d")
    for e in entries:
        local = e.ts.astimezone()
        when = local.strftime("%H:%M:%S") if local.strftime("%Y-%m-%d") == today else local.strftime("%m-%d %H:%M")
        rows[str(e.id)] = (
            Cell(when, sort=e.ts.timestamp()),
            Cell(e.actor),
            Cell(e.role, "warning" if e.role == "admin" else None),
            Cell(e.action),
            Cell(e.address or "-"),
            Cell(audit_what(e)),
        )
    return rows


#: Error rates (percent) from which a label's Err% cell turns to the theme's error colour; any
#: error at all turns it to the warning colour.
ERROR_PERCENT_BAD = 5.0


def error_style(percent: float) -> str | None:
    """The theme colour of an error rate: none at 0, warning above, error from 5 %."""
    if percent >= ERROR_PERCENT_BAD:
        return "error"
    return "warning" if percent > 0 else None


def _matches(needle: str, *texts: str) -> bool:
    return not needle or any(needle in text.lower() for text in texts)


def label_rows(labels: Iterable[LabelFigures], needle: str = "") -> tuple[dict[str, Row], dict[str, float]]:
    """A test's labels: label, samples, error %, average, 90th/95th/99th percentile, max, hits/s;
    only those whose name contains ``needle``; and their default order, the server's."""
    needle = needle.strip().lower()
    rows: dict[str, Row] = {}
    order: dict[str, float] = {}
    for index, f in enumerate(labels):
        if not _matches(needle, f.label):
            continue
        rows[f.label] = (
            # The fold of the labels past the agent's bound is not a request of the plan.
            Cell(f.label, "foreground-muted" if f.label == OTHER_LABEL else None),
            Cell(fmt.count(f.samples), sort=f.samples),
            Cell(fmt.error_percent(f.error_percent), error_style(f.error_percent), sort=f.error_percent),
            Cell(fmt.ms(f.avg_ms), sort=f.avg_ms),
            Cell(fmt.ms(f.p90_ms), sort=f.p90_ms),
            Cell(fmt.ms(f.p95_ms), sort=f.p95_ms),
            Cell(fmt.ms(f.p99_ms), sort=f.p99_ms),
            Cell(fmt.ms(f.max_ms), sort=f.max_ms),
            Cell(fmt.hits(f.throughput), sort=f.throughput),
        )
        order[f.label] = index
    return rows, order


#: How JMeter names a failure without an HTTP answer (a timeout, a refused connection).
NON_HTTP_CODE = "Non HTTP response code: "
NON_HTTP_MESSAGE = "Non HTTP response message: "


def short_code(code: str) -> str:
    """A response code for a narrow column: JMeter's ``Non HTTP response code:
    java.net.SocketTimeoutException`` as ``SocketTimeoutException``."""
    if code.startswith(NON_HTTP_CODE):
        return code.removeprefix(NON_HTTP_CODE).rsplit(".", 1)[-1]
    return code


def error_key(e: ErrorFigures) -> str:
    """The errors table's row key of one label, code and message."""
    return "\x1f".join((e.label, e.code, e.message))


def error_rows(errors: Iterable[ErrorFigures], needle: str = "") -> tuple[dict[str, Row], dict[str, float]]:
    """A test's errors: label, response code, message, count; only those whose label, code or message
    contains ``needle``; and their default order, the most frequent first."""
    needle = needle.strip().lower()
    rows: dict[str, Row] = {}
    order: dict[str, float] = {}
    for e in errors:
        if not _matches(needle, e.label, e.code, e.message):
            continue
        key = error_key(e)
        muted = "foreground-muted" if e.message == OTHER_ERROR else None
        rows[key] = (
            Cell(e.label, "foreground-muted" if e.label == OTHER_LABEL else None),
            Cell(short_code(e.code), "error", sort=e.code),
            # One line per row: the selected error is shown whole under the table.
            Cell(" ".join(e.message.removeprefix(NON_HTTP_MESSAGE).split()), muted),
            Cell(fmt.count(e.count), sort=e.count),
        )
        order[key] = -e.count
    return rows, order


# --- a test against its baseline --------------------------------------------------------------


def _pair(value: float | None, baseline: float | None, show: Callable[[float], str]) -> str:
    """``now/before``, ``-`` for a side without the label."""
    return f"{'-' if value is None else show(value)}/{'-' if baseline is None else show(baseline)}"


def comparison_rows(comparison: Comparison) -> tuple[dict[str, Row], dict[str, float]]:
    """Each label against the baseline: average, 95th, error % and hits/s as ``this/baseline``;
    regressions in the error colour and first, then the server's order."""
    rows: dict[str, Row] = {}
    order: dict[str, float] = {}
    for index, d in enumerate(comparison.labels):
        style = "error" if d.regression else None
        rows[d.label] = (
            Cell(d.label, style),
            Cell(_pair(d.avg_ms, d.baseline_avg_ms, fmt.ms), style, sort=d.avg_ms or 0.0),
            Cell(_pair(d.p95_ms, d.baseline_p95_ms, fmt.ms), style, sort=d.p95_ms or 0.0),
            Cell(
                _pair(d.error_percent, d.baseline_error_percent, fmt.error_percent), style, sort=d.error_percent or 0.0
            ),
            Cell(_pair(d.throughput, d.baseline_throughput, fmt.hits), style, sort=d.throughput or 0.0),
        )
        order[d.label] = index - (len(comparison.labels) if d.regression else 0)
    return rows, order


def comparison_line(delta: LabelDelta | None) -> str:
    """The line under the baseline pane: the selected label's verdict and the server's reasons."""
    if delta is None:
        return ""
    if delta.regression:
        return f"{delta.label}: regression: " + "; ".join(delta.reasons)
    return f"{delta.label}: within the tolerances"
