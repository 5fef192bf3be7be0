"""The main screen: providers, agents (filterable, sortable) and tests."""

from __future__ import annotations

from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.scalar import Scalar
from textual.widgets import DataTable, Footer, Input, Label

from octotui.protocol import TERMINAL_TEST_STATES, Agent, Provider, ServerInfo, Test
from octotui.tui.format import plural
from octotui.tui.forms import check_name
from octotui.tui.rows import AgentRows, provider_rows, test_rows, test_state
from octotui.tui.screens.agent import AgentScreen
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.monitors import AlarmBadge
from octotui.tui.screens.prompt import PromptScreen
from octotui.tui.screens.provider import ProviderScreen, rotation_question
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.keyed_table import KeyedTable
from octotui.tui.widgets.tables import AgentsTable, ProvidersTable, TestsTable

#: Keys of this screen that change something, and what a read-only dashboard says of them.
READ_ONLY_KEYS = {"l": "launching", "s": "stopping tests", "n": "changing providers"}
#: The providers table's keys that change the selected provider.
PROVIDER_KEYS = frozenset({"r", "delete", "k"})
#: The most rows the providers table shows before it scrolls.
PROVIDER_ROWS = 4
#: The agents table keeps at least this many lines (header included), whatever the tests need.
AGENT_LINES = 4


def table_heights(screen_height: int, providers: int, agents: int, tests: int) -> tuple[int, int]:
    """Lines (header included) for the providers and tests tables on a screen ``screen_height``
    high: each gets the rows it has, up to a cap; the agents table takes what is left (1fr), and
    never less than :data:`AGENT_LINES`. The tests' cap is two fifths of the room, or more when the
    agents need less than the rest."""
    # status bar, footer, and the margins above the agents and tests tables
    room = max(0, screen_height - 4)
    top = min(1 + max(1, providers), 1 + PROVIDER_ROWS)
    room -= top
    want = 1 + max(1, tests)
    cap = max(3, room * 2 // 5, room - (1 + max(1, agents)))
    return top, max(2, min(want, cap, room - AGENT_LINES))


def marks_text(count: int, what: str, keys: str) -> str:
    """The line under the tables while rows are marked."""
    return f"{plural(count, what)} marked · {keys} · esc unmarks"


class MainScreen(DashboardScreen):
    """Providers, agents and tests at a glance; enter opens the row's detail."""

    BINDINGS: ClassVar = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("l", "launch", "Launch"),
        Binding("s", "stop", "Stop test"),
        Binding("d", "distribution", "Distribution"),
        Binding("u", "audit", "Audit"),
        # The providers table's own "n" shows in the footer when it has focus; this one makes n
        # work from the other tables too.
        Binding("n", "new_provider", "New provider", show=False),
        Binding("a", "focus_table('agents')", "Agents", show=False),
        Binding("t", "focus_table('tests')", "Tests", show=False),
        Binding("p", "focus_table('providers')", "Providers", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield ProvidersTable(id="providers")
        yield AgentsTable(id="agents")
        yield TestsTable(id="tests")
        yield Label("", id="marks-bar", markup=False)
        with Horizontal(id="filter-bar"):
            yield Label("filter:", id="filter-label")
            yield Input(placeholder="agents by name, provider, location, status · esc clears", id="filter")
        # The ":" command line's key in the palette's place (ctrl+p still opens the palette).
        yield Footer(show_command_palette=False)

    def __init__(self) -> None:
        super().__init__()
        self._agent_rows = AgentRows()

    def on_mount(self) -> None:
        self.query_one("#filter-bar").display = False
        self.query_one("#marks-bar").display = False
        self.watch(self.app, "agents", self._agents_arrived)
        self.watch(self.app, "providers", self._providers_changed)
        self.watch(self.app, "tests", self._tests_changed)
        self.query_one(AgentsTable).focus()
        # While monitors' alarms are raised: "2 ALARMS" in the status bar (:monitors lists them).
        self.query_one("#status").mount(AlarmBadge(), after="#sb-state")  # the state stays first

    @property
    def needle(self) -> str:
        return self.query_one("#filter", Input).value

    def _late_after(self) -> float:
        info: ServerInfo | None = self.app.info
        return info.late_after if info else 10.0

    def resync(self) -> None:
        self._agents_changed(self.app.agents)
        self._tests_changed(self.app.tests)

    def stale_changed(self, stale: bool) -> None:
        self._agents_changed(self.app.agents)
        self._tests_changed(self.app.tests)

    def _agents_arrived(self, agents: list[Agent]) -> None:
        self._agents_changed(agents, self.app.agents_changed_in(agents))

    def _agents_changed(self, agents: list[Agent], changed: frozenset[str] | None = None) -> None:
        if not self.feeding:
            return
        self._show_agents(agents, self.needle, changed)
        self.query_one(ProvidersTable).sync(provider_rows(self.app.providers, agents))
        self._fit()

    def _providers_changed(self, providers: list[Provider]) -> None:
        if not self.feeding:
            return
        self.query_one(ProvidersTable).sync(provider_rows(providers, self.app.agents))
        self._fit()

    def _tests_changed(self, tests: list[Test]) -> None:
        if not self.feeding:
            return
        self.query_one(TestsTable).sync(*test_rows(tests, stale=self.stale))
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Give the providers and tests tables the lines their rows need (up to a cap each); the
        agents table takes the rest (see :func:`table_heights`)."""
        providers, tests = self.query_one(ProvidersTable), self.query_one(TestsTable)
        agents = self.query_one(AgentsTable)
        # The marks and filter lines, when shown, are taken from the room too.
        bars = sum(1 for bar in ("#marks-bar", "#filter-bar") if self.query_one(bar).display)
        top, bottom = table_heights(self.size.height - bars, providers.row_count, agents.row_count, tests.row_count)
        if providers.styles.height != Scalar.from_number(top):
            providers.styles.height = top
        if tests.styles.height != Scalar.from_number(bottom):
            tests.styles.height = bottom

    def _show_agents(self, agents: list[Agent], needle: str, changed: frozenset[str] | None = None) -> None:
        table = self.query_one(AgentsTable)
        late_after = self._late_after()
        table.sync(
            self._agent_rows.rows(agents, late_after, needle, stale=self.stale, changed=changed, shown=table.row_cells)
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in ("launch", "stop", "new_provider") and self.app.read_only)

    def on_key(self, event: events.Key) -> None:
        # A key hidden in read-only mode reaches here unhandled: say why it does nothing.
        if not self.app.read_only:
            return
        what = READ_ONLY_KEYS.get(event.key)
        if what is None and event.key in PROVIDER_KEYS and isinstance(self.focused, ProvidersTable):
            what = "changing providers"
        if what is None and event.key == "delete" and isinstance(self.focused, AgentsTable):
            what = "removing agents"
        if what is None and event.key == "delete" and isinstance(self.focused, TestsTable):
            what = "deleting tests"
        if what is not None:
            event.stop()
            self.notify(f"read-only: {what} is disabled", severity="warning")

    # --- filter -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one("#filter-bar").display = True
        self.query_one("#filter", Input).focus()
        self._fit()

    def action_clear_filter(self) -> None:
        """Escape: clear the marks, if any; else clear the filter."""
        if self.query_one(AgentsTable).clear_marks():
            return
        field = self.query_one("#filter", Input)
        field.value = ""
        self.query_one("#filter-bar").display = False
        self.query_one(AgentsTable).focus()
        self._fit()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._show_agents(self.app.agents, event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        if not self.needle:
            self.query_one("#filter-bar").display = False
            self._fit()
        self.query_one(AgentsTable).focus()

    # --- marks and what is done to the marked agents -------------------------------------------

    @on(KeyedTable.MarksChanged, "#agents")
    def _marks_changed(self, event: KeyedTable.MarksChanged) -> None:
        bar = self.query_one("#marks-bar", Label)
        bar.display = bool(event.marks)
        if event.marks:
            bar.update(marks_text(len(event.marks), "agent", "D drain · U undrain"))
        self._fit()

    @on(AgentsTable.FleetAction)
    def _fleet(self, event: AgentsTable.FleetAction) -> None:
        if self.app.read_only:
            self.notify(f"read-only: {event.action}ing agents is disabled", severity="warning")
            return
        self.ask_fleet(event.action, event.agent_ids)

    def ask_fleet(self, action: str, agent_ids: list[str]) -> None:
        """Ask, then drain or undrain these agents (the command line and ``D``/``U`` come here)."""
        agents = {a.id: a for a in self.app.agents}
        chosen = {i: agents[i].name for i in agent_ids if i in agents}
        if not chosen:
            self.notify("Select or mark agents first (a focuses the agents table, space marks)", severity="warning")
            return
        verb = "Drain" if action == "drain" else "Undrain"
        names = ", ".join(list(chosen.values())[:5]) + (", …" if len(chosen) > 5 else "")
        question = f"{verb} {plural(len(chosen), 'agent')} ({names})?"
        they = "They take" if len(chosen) > 1 else "It takes"
        if action == "drain":
            question += f" {they} no new containers; the running ones finish."
        else:
            question += f" {they} new containers again."
        table = self.query_one(AgentsTable)

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.actions.fleet("drain" if action == "drain" else "undrain", chosen)
                table.clear_marks()

        self.app.push_screen(ConfirmScreen(question), answered)

    # --- navigation and actions ---------------------------------------------------------------

    def action_focus_table(self, which: str) -> None:
        self.query_one(f"#{which}").focus()

    async def action_launch(self) -> None:
        await self.app.run_action("launch")

    def action_new_provider(self) -> None:
        self.post_message(ProvidersTable.ProviderAction("new", None))

    async def action_distribution(self) -> None:
        await self.app.run_action("distribution")

    async def action_audit(self) -> None:
        await self.app.run_action("audit")

    @on(DataTable.RowSelected, "#agents")
    def _open_agent(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(AgentScreen(str(event.row_key.value)))

    @on(DataTable.RowSelected, "#tests")
    def _open_test(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(TestScreen(str(event.row_key.value)))

    @on(DataTable.RowSelected, "#providers")
    def _open_provider(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(ProviderScreen(str(event.row_key.value)))

    @on(AgentsTable.RemoveAgent)
    def _remove_agent(self, event: AgentsTable.RemoveAgent) -> None:
        agent = next((a for a in self.app.agents if a.id == event.agent_id), None)
        if agent is None:
            self.notify("Select an agent first (a focuses the agents table)", severity="warning")
            return
        if agent.status == "online":
            # Its token revoked, it would register again at once, under a new id.
            self.notify(f"{agent.name} is online: stop its agent first, then remove it", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                # The operator was told its live containers are marked lost: that is the server's force.
                self.app.actions.remove_agent(agent.id, agent.name, force=bool(agent.containers))

        question = f"Remove agent {agent.name} ({agent.status}, {agent.provider_name}/{agent.location})?"
        question += " Its token is revoked; the records of its tests stay."
        if agent.containers:
            question += f" Its live containers ({agent.containers}) are marked lost."
        self.app.push_screen(ConfirmScreen(question), answered)

    @on(ProvidersTable.ProviderAction)
    def _provider_action(self, event: ProvidersTable.ProviderAction) -> None:
        actions = self.app.actions
        if event.action == "new":
            prompt = PromptScreen("Name of the new provider", check=check_name, submit=actions.submit_new_provider)
            self.app.push_screen(prompt)
            return
        provider = next((p for p in self.app.providers if p.id == event.provider_id), None)
        if provider is None:
            self.notify("Select a provider first (p focuses the providers table)", severity="warning")
            return
        if event.action == "install":
            self.app.push_screen(ProviderScreen(provider.id))
        elif event.action == "rename":

            async def rename(name: str) -> str | None:
                return await actions.submit_rename_provider(provider.id, provider.name, name)

            self.app.push_screen(
                PromptScreen(f"Rename provider {provider.name}", provider.name, check=check_name, submit=rename)
            )
        elif event.action == "delete":

            def deleted(yes: bool | None) -> None:
                if yes:
                    actions.delete_provider(provider.id, provider.name)

            question = f"Delete provider {provider.name}?"
            if provider.agents == 1:
                question += " Its agent is removed and its token revoked."
            elif provider.agents:
                question += f" Its {provider.agents} agents are removed and their tokens revoked."
            self.app.push_screen(ConfirmScreen(question), deleted)
        elif event.action == "rotate":

            def rotated(yes: bool | None) -> None:
                if yes:
                    actions.rotate_provider_token(provider.id, provider.name)

            self.app.push_screen(ConfirmScreen(rotation_question(provider.name)), rotated)

    def action_stop(self) -> None:
        test_id = self.query_one(TestsTable).selected_key
        test = next((t for t in self.app.tests if t.id == test_id), None)
        if test is None:
            self.notify("Select a test first (t focuses the tests table)", severity="warning")
            return
        if test.state in TERMINAL_TEST_STATES:
            self.notify(f"{test.name} has already {test_state(test)}", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.actions.stop_test(test.id, test.name)

        question = f"Stop test {test.name} and its {plural(len(test.containers), 'container')}?"
        self.app.push_screen(ConfirmScreen(question), confirmed)

    @on(TestsTable.DeleteTest)
    def _delete_test(self, event: TestsTable.DeleteTest) -> None:
        test = next((t for t in self.app.tests if t.id == event.test_id), None)
        if test is None:
            self.notify("Select a test first (t focuses the tests table)", severity="warning")
            return
        if test.state not in TERMINAL_TEST_STATES:
            self.notify(f"{test.name} is {test.state}: stop it first (s), then delete it", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.actions.delete_test(test.id, test.name)

        question = f"Delete test {test.name} ({test_state(test)}) with its results, timeline and files?"
        self.app.push_screen(ConfirmScreen(question + " It cannot be undone."), confirmed)
