"""What the screens see of the app: the values it holds in reactives (set from its workers'
messages), a few values of the session, and the :class:`~octotui.tui.actions.Actions` it owns.

Screens reach it typed with ``getters.app(DashboardApp)``; which message sets which value is the
wiring of :class:`octotui.tui.app.OctoApp`, which screens never import.
"""

from __future__ import annotations

from textual.app import App
from textual.reactive import var

from octotui.protocol import Agent, AgentMetrics, AuditEntry, Provider, ServerInfo, Test, TestSeries
from octotui.tui.actions import Actions
from octotui.tui.state import Connection, TestLabels
from octotui.tui.usage import UsageRevision


class DashboardApp(App[int]):
    """The dashboard's state, as its screens read it (attributes down)."""

    info: var[ServerInfo | None] = var(None)
    agents: var[list[Agent]] = var(list)
    providers: var[list[Provider]] = var(list)
    tests: var[list[Test]] = var(list)
    connection: var[Connection] = var(Connection)
    agent_metrics: var[AgentMetrics | None] = var(None)
    test_detail: var[tuple[Test, TestSeries] | None] = var(None)
    #: The open test's per-label figures and errors; set only when they changed.
    test_labels: var[TestLabels | None] = var(None)
    #: Each container's CPU and memory over time, for the open test (a new value when it grew).
    container_usage: var[UsageRevision | None] = var(None)
    read_only: var[bool] = var(False)
    audit: var[tuple[list[AuditEntry], str] | None] = var(None)

    #: What screens may ask of the server.
    actions: Actions
    #: Where the dashboard is connected, as the status bar shows it.
    server_label: str
    #: True when this dashboard owns the server and the local agent (they stop when it quits).
    embedded: bool
    #: The last launch's fields (plan path, counts, properties, image), for the next dialog.
    last_launch: dict[str, str]
    #: The agents list last set and the ids that changed in it (None: any may have).
    agents_hint: tuple[list[Agent], frozenset[str] | None] = ([], None)

    def agents_changed_in(self, agents: list[Agent]) -> frozenset[str] | None:
        """The ids of the agents that changed when ``agents`` was set (None: unknown, any)."""
        hinted, changed = self.agents_hint
        return changed if hinted is agents else None
