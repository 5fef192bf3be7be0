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
    """Agents: status (colour and word), identity, live CPU/memory, last seen, version, docker.

    ``del`` asks to remove the selected agent (:class:`RemoveAgent`): the screen does it.
    """

    # Rare: kept out of the footer, where it would push the everyday keys off an 80-column screen.
    BINDINGS: ClassVar = [Binding("delete", "remove_agent", "Remove agent", key_display="del", show=False)]

    @dataclass
    class RemoveAgent(Message):
        """``del`` asked to remove ``agent_id`` from the server."""

        agent_id: str | None

    def action_remove_agent(self) -> None:
        self.post_message(self.RemoveAgent(self.selected_key))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "remove_agent" and getattr(self.app, "read_only", False))

    COLUMNS = (
        Column("status", "Status", 7),
        Column("name", "Name", 12),
        Column("provider", "Provider", 8),
        Column("location", "Location", 8),
        Column("cpu", "CPU%", 5, "right"),
        Column("mem", "Mem%", 5, "right"),
        Column("seen", "Seen", 5, "right"),
        Column("version", "Version", 7),
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

    COLUMNS = (
        Column("name", "Test", 16),
        Column("state", "State", 8),
        Column("containers", "Cont.", 5, "right"),
        Column("rate", "Hits/s", 8, "right"),
        Column("errors", "Errors", 7, "right"),
        Column("elapsed", "Elapsed", 7, "right"),
        Column("provider", "Provider", 10),
    )


class ContainersTable(KeyedTable):
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


class AgentContainersTable(KeyedTable):
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
