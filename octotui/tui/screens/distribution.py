"""Where containers run: per provider and location, which agent runs how many of which test."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Label

from octotui.protocol import TERMINAL_CONTAINER_STATES, Agent, Test
from octotui.tui import format as fmt
from octotui.tui.rows import STATUS_STYLE
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.widgets.keyed_table import Cell, Column, KeyedTable


def balance(counts: Sequence[int]) -> Cell:
    """How evenly containers spread over a group's agents: ``even`` when they differ by 1 at most."""
    if not counts or not any(counts):
        return Cell("idle", "foreground-muted", sort=0)
    spread = max(counts) - min(counts)
    if spread <= 1:
        return Cell("even", "success", sort=spread)
    return Cell(f"uneven ±{spread}", "warning", sort=spread)


def distribution_rows(agents: Sequence[Agent], tests: Sequence[Test]) -> dict[str, tuple[Cell, ...]]:
    """One row per provider/location group (its balance), then one per agent in it."""
    names = {t.id: t.name for t in tests}
    per_agent: dict[str, Counter[str]] = defaultdict(Counter)
    for test in tests:
        for c in test.containers:
            if c.state not in TERMINAL_CONTAINER_STATES:
                per_agent[c.agent][names[test.id]] += 1
    groups: dict[tuple[str, str], list[Agent]] = defaultdict(list)
    for agent in agents:
        groups[(agent.provider_name or agent.provider, agent.location)].append(agent)
    top = max((sum(c.values()) for c in per_agent.values()), default=0) or 1
    rows: dict[str, tuple[Cell, ...]] = {}
    for (provider, location), members in sorted(groups.items()):
        usable = [a for a in members if a.status == "online" and a.docker is not None and a.docker.available]
        counts = [sum(per_agent[a.id].values()) for a in usable]
        total = sum(sum(per_agent[a.id].values()) for a in members)
        group_sort = f"{provider}/{location}"
        rows[f"group:{provider}/{location}"] = (
            Cell(f"{provider}/{location}", "accent", sort=group_sort),
            Cell(f"{len(usable)}/{len(members)} usable", sort=group_sort),
            Cell(str(total), sort=group_sort),
            balance(counts),
            Cell(""),
        )
        for agent in sorted(members, key=lambda a: a.name):
            mine = per_agent[agent.id]
            count = sum(mine.values())
            by_test = " ".join(f"{name}:{n}" for name, n in sorted(mine.items())) or "-"
            rows[agent.id] = (
                Cell(f"  {agent.name}", sort=f"{group_sort}/{agent.name}"),
                Cell(agent.status, STATUS_STYLE.get(agent.status), sort=group_sort),
                Cell(str(count), sort=group_sort),
                Cell(fmt.bar(count / top, 8), "primary", sort=group_sort),
                Cell(by_test),
            )
    return rows


class DistributionTable(KeyedTable):
    """Groups and their agents; the bar is each agent's share of the busiest agent's load."""

    COLUMNS = (
        Column("where", "Where · agent", 24),
        Column("status", "Status", 11),
        Column("count", "Cont.", 5, "right"),
        Column("balance", "Balance", 10),
        Column("tests", "Tests (name:count)", 18),
    )
    BINDINGS: ClassVar = []

    def on_mount(self) -> None:
        self.sort_column = "where"  # keeps every agent under its group as rows come and go


class DistributionScreen(DashboardScreen):
    """Container distribution over providers, locations and agents, with a balance indicator."""

    BINDINGS: ClassVar = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("Containers of live tests per provider/location and agent", id="dist-title")
        yield DistributionTable(id="distribution")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "agents", self._changed)
        self.watch(self.app, "tests", self._changed)
        self.query_one(DistributionTable).focus()

    def resync(self) -> None:
        self._changed()

    def _changed(self) -> None:
        if not self.feeding:
            return
        self.query_one(DistributionTable).sync(distribution_rows(self.app.agents, self.app.tests))

    def action_back(self) -> None:
        self.dismiss()
