"""The dashboard's tables: their columns, their keys and the messages those keys post.

Their rows are made by the screens (see :mod:`octotui.tui.rows`): a table knows cells, never the
wire contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.binding import Binding
from textual.message import Message

from octotui.tui.widgets.keyed_table import Column, KeyedTable

#: Provider actions that change something: hidden in read-only mode.
PROVIDER_WRITE_ACTIONS = frozenset({"new", "rename", "delete", "rotate"})


class ProvidersTable(KeyedTable):
    """Providers: name, agents (online / registered), locations; keys for what can be done to one.

    The keys only say what was asked (:class:`ProviderAction`): the screen does it.
    """

    BINDINGS: ClassVar = [
        Binding("i", "provider('install')", "Install"),
        Binding("n", "provider('new')", "New"),
        Binding("r", "provider('rename')", "Rename"),
        Binding("delete", "provider('delete')", "Delete", key_display="del"),
        Binding("k", "provider('rotate')", "Rotate token"),
    ]

    @dataclass
    class ProviderAction(Message):
        """A key asked for ``action`` (install, new, rename, delete, rotate) on ``provider_id``."""

        action: str
        provider_id: str | None

    def action_provider(self, action: str) -> None:
        self.post_message(self.ProviderAction(action, self.selected_key))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "provider" and parameters and parameters[0] in PROVIDER_WRITE_ACTIONS:
            return not getattr(self.app, "read_only", False)
        return True

    COLUMNS = (
        Column("name", "Provider", 16),
        Column("agents", "Agents", 7, "right"),
        Column("online", "Online", 6, "right"),
        Column("locations", "Locations", 38),
    )


class AgentsTable(KeyedTable):
    """Agents: state (colour and word), identity, live CPU/memory as bars, last seen, version, docker.

    Rows can be marked (space); ``D``/``U`` ask to drain/undrain the marked agents, else the
    selected one (:class:`FleetAction`), ``del`` to remove the selected one (:class:`RemoveAgent`):
    the screen does it.
    """

    MARKABLE = True
    # Rare: kept out of the footer, where they would push the everyday keys off an 80-column screen.
    BINDINGS: ClassVar = [
        Binding("delete", "remove_agent", "Remove agent", key_display="del", show=False),
        Binding("D", "fleet('drain')", "Drain", key_display="D", show=False),
        Binding("U", "fleet('undrain')", "Undrain", key_display="U", show=False),
    ]

    @dataclass
    class RemoveAgent(Message):
        """``del`` asked to remove ``agent_id`` from the server."""

        agent_id: str | None

    @dataclass
    class FleetAction(Message):
        """``D`` or ``U`` asked to ``action`` (drain, undrain) these agents (marked, else selected)."""

        action: str
        agent_ids: list[str]

    def action_remove_agent(self) -> None:
        self.post_message(self.RemoveAgent(self.selected_key))

    def action_fleet(self, action: str) -> None:
        self.post_message(self.FleetAction(action, self.marked_or_selected()))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "remove_agent" and getattr(self.app, "read_only", False))

    # Fits 80 columns (79 inside the scrollbar) with the cells' padding; Name takes what a wider
    # terminal leaves. CPU and Mem: a 3-cell bar, then the figure.
    COLUMNS = (
        Column("status", "Status", 9),
        Column("name", "Name", 11, stretch=True, max_width=32),
        Column("provider", "Prov.", 7),
        Column("location", "Loc.", 7),
        Column("cpu", "CPU%", 8, "right"),
        Column("mem", "Mem%", 8, "right"),
        Column("seen", "Seen", 5, "right"),
        Column("version", "Ver.", 5),
        Column("docker", "Dkr", 3),
    )


class TestsTable(KeyedTable):
    """Tests: name, state, containers (live/total), hits/s, errors, elapsed.

    ``del`` asks to delete the selected test (:class:`DeleteTest`): the screen does it.
    """

    __test__ = False
    BINDINGS: ClassVar = [Binding("delete", "delete_test", "Delete test", key_display="del", show=False)]

    @dataclass
    class DeleteTest(Message):
        """``del`` asked to delete ``test_id`` (an ended test) from the server."""

        __test__ = False
        test_id: str | None

    def action_delete_test(self) -> None:
        self.post_message(self.DeleteTest(self.selected_key))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "delete_test" and getattr(self.app, "read_only", False))

    # The last column: the criteria's verdict and the warnings, as far as the width allows.
    COLUMNS = (
        Column("name", "Test", 14),
        Column("state", "State", 8),
        Column("containers", "Cont.", 5, "right"),
        Column("rate", "Hits/s", 7, "right"),
        Column("errors", "Errors", 6, "right"),
        Column("elapsed", "Elapsed", 7, "right"),
        Column("provider", "Provider", 8),
        Column("check", "Verdict", 7, stretch=True),
    )


class ContainerMarks(KeyedTable):
    """A table of containers (keys: container ids) whose rows can be marked and stopped together."""

    MARKABLE = True
    BINDINGS: ClassVar = [Binding("X", "stop_marked", "Stop marked", key_display="X", show=False)]

    @dataclass
    class StopContainers(Message):
        """``X`` asked to stop these containers (the marked ones, else the selected one)."""

        container_ids: list[str]
        table: KeyedTable

        @property
        def control(self) -> KeyedTable:
            return self.table

    def action_stop_marked(self) -> None:
        self.post_message(self.StopContainers(self.marked_or_selected(), self))


class ContainersTable(ContainerMarks):
    """A test's containers: agent, state, CPU, memory, hits/s, errors, pull progress or error."""

    COLUMNS = (
        Column("agent", "Agent", 12),
        Column("location", "Location", 8),
        Column("state", "State", 8),
        Column("cpu", "CPU%", 5, "right"),
        Column("mem", "Mem", 6, "right"),
        Column("rate", "Hits/s", 7, "right"),
        Column("errors", "Err", 5, "right"),
        Column("info", "Pull / error", 10, stretch=True),
    )


class AgentContainersTable(ContainerMarks):
    """Containers placed on one agent, whatever their test."""

    COLUMNS = (
        Column("test", "Test", 16),
        Column("index", "#", 3, "right"),
        Column("state", "State", 8),
        Column("cpu", "CPU%", 5, "right"),
        Column("mem", "Mem", 6, "right"),
        Column("rate", "Hits/s", 7, "right"),
        Column("info", "Pull / error", 16, stretch=True),
    )


class AuditTable(KeyedTable):
    """The audit log: when, who (token name) with which role, what, on what, from where."""

    COLUMNS = (
        Column("when", "When", 11),
        Column("who", "Who", 10),
        Column("role", "Role", 9),
        Column("action", "Action", 15),
        Column("address", "From", 9),
        Column("what", "What", 11, stretch=True),
    )


class LabelsTable(KeyedTable):
    """A test's figures per label (sampler or transaction), as JMeter's aggregate report has them."""

    COLUMNS = (
        Column("label", "Label", 14, stretch=True, max_width=48),
        Column("samples", "Samples", 7, "right"),
        Column("errors", "Err%", 5, "right"),
        Column("avg", "Avg", 5, "right"),
        Column("p90", "p90", 5, "right"),
        Column("p95", "p95", 5, "right"),
        Column("p99", "p99", 5, "right"),
        Column("max", "Max", 5, "right"),
        Column("rate", "Hits/s", 6, "right"),
    )


class ErrorsTable(KeyedTable):
    """A test's failed samples per label, response code and message, the most frequent first."""

    COLUMNS = (
        Column("label", "Label", 14),
        Column("code", "Code", 12),
        Column("message", "Message", 16, stretch=True, max_width=80),
        Column("count", "Count", 7, "right"),
    )


class ComparisonTable(KeyedTable):
    """A test's labels against a baseline's, each figure as ``this/baseline``; regressions first."""

    COLUMNS = (
        Column("label", "Label", 14, stretch=True, max_width=48),
        Column("avg", "Avg this/base", 13, "right"),
        Column("p95", "p95", 11, "right"),
        Column("errors", "Err%", 11, "right"),
        Column("rate", "Hits/s", 11, "right"),
    )
