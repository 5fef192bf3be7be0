"""What the dashboard's keys, its ":" command line, its command palette and its marked rows ask of
the app: the screens they open, the changes they ask (through :class:`~octotui.tui.actions.Actions`,
confirmed first). Mixed into :class:`~octotui.tui.app.OctoApp`, which holds the bindings."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from textual import on
from textual.app import SystemCommand
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, TextArea

from octotui.protocol import TERMINAL_CONTAINER_STATES, TERMINAL_TEST_STATES, Test
from octotui.tui.commandline import WRITES, State, parse, resolve_agent, resolve_provider, resolve_test
from octotui.tui.dashboard import DashboardApp
from octotui.tui.format import plural
from octotui.tui.rows import test_state
from octotui.tui.screens.agent import AgentScreen
from octotui.tui.screens.audit import AuditScreen
from octotui.tui.screens.command import CommandScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.distribution import DistributionScreen
from octotui.tui.screens.help import HelpScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.main import MainScreen
from octotui.tui.screens.provider import ProviderScreen
from octotui.tui.screens.quit import QuitScreen, active_tests
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.tables import ContainerMarks, ProvidersTable

#: Where ``:monitors`` finds its screen (a class ``MonitorsScreen`` taking no argument).
MONITORS_MODULE = "octotui.tui.screens.monitors"


def monitors_screen() -> Screen[Any] | None:
    """The monitors screen, when this build has one (``octotui/tui/screens/monitors.py``, written
    apart from the rest): the one hook ``:monitors`` goes through."""
    try:
        monitors = importlib.import_module(MONITORS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != MONITORS_MODULE:
            raise  # the module is there but broken: say so, never "not available"
        return None
    screen_class = getattr(monitors, "MonitorsScreen", None)
    return screen_class() if screen_class is not None else None


class AppCommands(DashboardApp):
    """The app's actions (keys and palette), the ":" command line and the marked containers' stop."""

    # --- actions and commands -----------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_distribution(self) -> None:
        if not isinstance(self.screen, DistributionScreen):
            self.push_screen(DistributionScreen())

    def action_audit(self) -> None:
        if not isinstance(self.screen, AuditScreen):
            self.push_screen(AuditScreen())

    def action_launch(self) -> None:
        if self.read_only:
            self.notify("read-only: launching is disabled", severity="warning")
            return
        self.push_screen(LaunchScreen())

    def action_home(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    async def action_quit(self) -> None:
        """Quit; while tests run (and changes are allowed), ask what to do with them first."""
        if isinstance(self.screen, QuitScreen):
            return
        running = active_tests(self.tests)
        if not running or self.read_only:
            self.exit(0)
            return
        self.push_screen(QuitScreen(running, embedded=self.embedded))

    def _main(self) -> MainScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def action_stop_selected(self) -> None:
        """Stop the test under the cursor (the test screen's own test), asking first."""
        screen = self.screen
        if isinstance(screen, TestScreen):
            screen.action_stop_test()
            return
        main = self._main()
        if main is not None:
            self.action_home()
            main.action_stop()

    def action_new_provider(self) -> None:
        """The new-provider prompt."""
        main = self._main()
        if main is not None:
            self.action_home()
            main.post_message(ProvidersTable.ProviderAction("new", None))

    def action_install_lines(self) -> None:
        """The install dialog of the selected provider (else the first one)."""
        main = self._main()
        selected = main.query_one(ProvidersTable).selected_key if main is not None else None
        provider_id = selected or (self.providers[0].id if self.providers else None)
        if provider_id is None:
            self.notify("No provider yet: create one first", severity="warning")
            return
        self.push_screen(ProviderScreen(provider_id))

    # --- the ":" command line ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "command_line":
            # Not over a dialog (its keys are the dialog's), nor where ":" is typed into a field.
            return not isinstance(self.screen, ModalScreen) and not isinstance(self.focused, Input | TextArea)
        return True

    def action_command_line(self) -> None:
        """Open the command line."""
        self.push_screen(CommandScreen(self._command_state, self.command), self._command_done)

    def _command_done(self, outcome: Callable[[], object] | None) -> None:
        if outcome is not None:
            # (some are coroutines, e.g. quitting: call_later awaits those)
            self.call_later(outcome)

    def _command_state(self) -> State:
        return State(self.agents, self.tests, self.providers)

    def command(self, line: str) -> str | Callable[[], object]:
        """What the command ``line`` does, to run once the command line closed; or why it cannot
        (unknown, a name that matches nothing, a change in read-only mode): said in the line."""
        parsed = parse(line)
        if isinstance(parsed, str):
            return parsed
        command, argument = parsed.command, parsed.argument
        if command in WRITES and self.read_only:
            what = {"drain": "draining agents", "undrain": "undraining agents", "stop": "stopping tests"}[command]
            return f"read-only: {what} is disabled"
        if command in ("agents", "tests", "providers"):
            return lambda: self._show_table(command)
        if command == "monitors":
            screen = monitors_screen()
            if screen is None:
                return "monitors: not available in this build"
            return lambda: self.push_screen(screen)
        if command == "help":
            return self.action_help
        if command == "q":
            return self.action_quit
        if command in ("agent", "drain", "undrain"):
            agent = resolve_agent(argument, self.agents)
            if isinstance(agent, str):
                return agent
            if command == "agent":
                return lambda: self.push_screen(AgentScreen(agent.id))
            if command == "drain" and agent.drained:
                return f"{agent.name} is already drained"
            if command == "undrain" and not agent.drained:
                return f"{agent.name} is not drained"
            return lambda: self._fleet(command, agent.id)
        if command == "provider":
            provider = resolve_provider(argument, self.providers)
            if isinstance(provider, str):
                return provider
            return lambda: self.push_screen(ProviderScreen(provider.id))
        test = resolve_test(argument, self.tests)
        if isinstance(test, str):
            return test
        if command == "test":
            return lambda: self.push_screen(TestScreen(test.id))
        if test.state in TERMINAL_TEST_STATES:
            return f"{test.name} has already {test_state(test)}"
        return lambda: self._stop_test(test)

    def _show_table(self, which: str) -> None:
        main = self._main()
        if main is not None:
            self.action_home()
            main.action_focus_table(which)

    def _fleet(self, action: str, agent_id: str) -> None:
        main = self._main()
        if main is not None:
            main.ask_fleet(action, [agent_id])

    def _stop_test(self, test: Test) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.actions.stop_test(test.id, test.name)

        question = f"Stop test {test.name} and its {plural(len(test.containers), 'container')}?"
        self.push_screen(ConfirmScreen(question), confirmed)

    # --- several containers at once (marked in a containers table) -----------------------------

    @on(ContainerMarks.StopContainers)
    def _stop_containers(self, event: ContainerMarks.StopContainers) -> None:
        if self.read_only:
            self.notify("read-only: stopping containers is disabled", severity="warning")
            return
        where = {c.id: (t, c) for t in self.tests for c in t.containers}
        chosen = {
            cid: (test.id, f"#{c.index} {c.agent_name or c.agent[:8]} of {test.name}")
            for cid in event.container_ids
            if cid in where
            for test, c in [where[cid]]
            if c.state not in TERMINAL_CONTAINER_STATES
        }
        if not chosen:
            self.notify("No running container marked or selected (space marks one)", severity="warning")
            return
        table = event.table

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.actions.stop_containers(chosen)
                table.clear_marks()

        tests = {t for t, _ in chosen.values()}
        question = f"Stop {plural(len(chosen), 'container')}"
        question += f" of {plural(len(tests), 'test')}?" if len(tests) > 1 else "?"
        question += " Their results so far are kept."
        self.push_screen(ConfirmScreen(question), confirmed)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Agents and providers", "Back to the main screen", self.action_home)
        if not self.read_only:
            yield SystemCommand("Launch a test", "Pick a JMX plan and start containers", self.action_launch)
            yield SystemCommand(
                "Stop the selected test", "Stop it and its containers (asks first)", self.action_stop_selected
            )
            yield SystemCommand("New provider", "Create a group of machines", self.action_new_provider)
        yield SystemCommand(
            "Install lines", "The command lines that add a machine to a provider", self.action_install_lines
        )
        yield SystemCommand("Container distribution", "Where each test's containers run", self.action_distribution)
        yield SystemCommand("Audit log", "Who changed what, when, from where", self.action_audit)
        yield SystemCommand("Help", "Every key of every screen", self.action_help)
