"""One agent: live CPU and memory charts, per-core bars, host figures, docker, its containers."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Label, Static

from octotui.protocol import Agent, AgentMetrics, ContainerRecord, HostSample, Test
from octotui.tui import format as fmt
from octotui.tui import messages
from octotui.tui.rows import agent_container_rows, agent_flags, agent_state
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.charts import Chart, CoreBars
from octotui.tui.widgets.tables import AgentContainersTable


def host_figures(agent: Agent, sample: HostSample | None, now: float | None = None) -> str:
    """The figures panel: memory, swap, disk, network, load, docker engine; headed by their age
    when the agent is not online, as they are then its last, not its live, figures."""
    lines = []
    if agent.status != "online":
        lines.append(f"{agent.status}: last figures, {fmt.duration(fmt.age_seconds(agent.last_seen, now))} old")
    if sample is None:
        lines.append("no host sample yet")
    else:
        total = sample.memory_total or agent.memory_total
        lines += [
            f"mem  {fmt.size(sample.memory_used)} / {fmt.size(total)} ({sample.memory_percent:.0f}%)",
            f"swap {sample.swap_percent:.0f}%   disk {sample.disk_percent:.0f}% used",
            f"disk r {fmt.rate(sample.disk_read_bps)}  w {fmt.rate(sample.disk_write_bps)}",
            f"net  tx {fmt.rate(sample.net_sent_bps)}  rx {fmt.rate(sample.net_recv_bps)}",
            f"load {sample.load1:.2f} {sample.load5:.2f} {sample.load15:.2f}  ({agent.cpu_count} cpu)",
        ]
    docker = agent.docker
    if docker is None:
        lines.append("docker: not reported")
    elif docker.available:
        lines.append(f"docker: engine {docker.version or '?'} ready")
    else:
        lines.append(f"docker: unavailable ({docker.error or 'no engine'})")
    return "\n".join(lines)


class AgentScreen(DashboardScreen):
    """The detail of one agent; its samples are fetched by the app's worker while shown."""

    BINDINGS: ClassVar = [Binding("escape", "back", "Back")]

    def __init__(self, agent_id: str) -> None:
        super().__init__()
        self.agent_id = agent_id
        self._figures = ""
        self._title = ""

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("", id="agent-title", markup=False)
        with Horizontal(id="charts"):
            yield Chart("CPU", ceiling=100, unit=" %", id="cpu-chart")
            yield Chart("Mem", ceiling=100, unit=" %", id="mem-chart")
        with Horizontal(id="host"):
            yield CoreBars(id="cores")
            yield Static("", id="figures", markup=False)
        yield AgentContainersTable(id="agent-containers")
        # The row under the cursor in full: its error is cut in the table at 80 columns.
        yield Static("", id="agent-container-line", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        # The age of a late or offline agent's last figures ticks on with nothing new arriving.
        self.set_interval(1.0, self._tick_age)
        self.app.post_message(messages.DetailOpened("agent", self.agent_id))
        self.watch(self.app, "agents", self._agents_changed)
        self.watch(self.app, "agent_metrics", self._metrics_changed)
        self.watch(self.app, "tests", self._tests_changed)

    def on_unmount(self) -> None:
        self.app.post_message(messages.DetailClosed("agent", self.agent_id))

    def action_back(self) -> None:
        self.dismiss()

    @property
    def agent(self) -> Agent | None:
        return next((a for a in self.app.agents if a.id == self.agent_id), None)

    def resync(self) -> None:
        self._agents_changed(self.app.agents)
        self._metrics_changed(self.app.agent_metrics)
        self._tests_changed(self.app.tests)

    def _agents_changed(self, agents: list[Agent]) -> None:
        if not self.feeding:
            return
        agent = self.agent
        title = self.query_one("#agent-title", Label)
        if agent is None:
            title.update("This agent was deleted.")
            return
        # Its states first: on a narrow terminal the line is cut at the right.
        parts = [agent.name, agent.status, f"{agent.provider_name}/{agent.location}", *agent_flags(agent)]
        parts += [f"v{agent.version}", agent.platform or "?"]
        if agent.duplicate_name:
            parts.append("another agent of this provider has the same name (a distinct machine or state dir)")
        text = " · ".join(parts)
        if text != self._title:
            # Fixed-size widgets: a layout pass would repaint the whole screen on every tick.
            self._title = text
            title.update(text, layout=False)
            # drained, outdated, saturated: in the warning colour (offline stays the error's)
            state, _ = agent_state(agent)
            title.set_classes(f"-{agent.status}" if state in ("online", "late", "offline") else "-flagged")
        self._show_figures(agent, self._latest(agent))

    def _show_figures(self, agent: Agent, sample: HostSample | None) -> None:
        text = host_figures(agent, sample)
        if text != self._figures:
            self._figures = text
            self.query_one("#figures", Static).update(text, layout=False)
        latest = "" if agent.status == "online" else "last"
        for chart in self.query(Chart):
            if chart.latest != latest:
                chart.latest = latest
                chart.refresh()

    def _tick_age(self) -> None:
        agent = self.agent
        if agent is not None and agent.status != "online" and self.feeding:
            self._show_figures(agent, self._latest(agent))

    def _latest(self, agent: Agent) -> HostSample | None:
        """The agent's latest host sample: the newest fetched for this screen, else the listing's."""
        metrics = self.app.agent_metrics
        if metrics is not None and metrics.agent_id == self.agent_id and metrics.samples:
            return metrics.samples[-1]
        return agent.host

    def _metrics_changed(self, metrics: AgentMetrics | None) -> None:
        if metrics is None or metrics.agent_id != self.agent_id or not self.feeding:
            return
        samples = metrics.samples
        self.query_one("#cpu-chart", Chart).values = tuple(s.cpu_percent for s in samples)
        self.query_one("#mem-chart", Chart).values = tuple(s.memory_percent for s in samples)
        if samples:
            self.query_one(CoreBars).cores = tuple(samples[-1].cpu_per_core)
            agent = self.agent
            if agent is not None:
                self._show_figures(agent, samples[-1])

    def _tests_changed(self, tests: list[Test]) -> None:
        if not self.feeding:
            return
        self.query_one(AgentContainersTable).sync(agent_container_rows(tests, self.agent_id))
        self._show_container()

    def _selected(self) -> tuple[Test, ContainerRecord] | None:
        table = self.query_one(AgentContainersTable)
        key = table.selected_key if table.row_count else None
        for test in self.app.tests:
            for container in test.containers:
                if container.id == key:
                    return test, container
        return None

    def _show_container(self) -> None:
        line = self.query_one("#agent-container-line", Static)
        selected = self._selected()
        if selected is None:
            text = (
                "no container of any test on this agent" if not self.query_one(AgentContainersTable).row_count else ""
            )
        else:
            test, c = selected
            text = f"{test.name} #{c.index} · {c.state}"
            if c.error:
                text += f": {c.error.strip()}"
            text += " · enter opens the test"
        line.update(text)

    @on(DataTable.RowHighlighted, "#agent-containers")
    def _highlighted(self) -> None:
        self._show_container()

    @on(DataTable.RowSelected, "#agent-containers")
    def _open_test(self) -> None:
        selected = self._selected()
        if selected is not None:
            self.app.push_screen(TestScreen(selected[0].id))
