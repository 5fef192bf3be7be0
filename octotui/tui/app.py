"""The dashboard app: wiring only. The poll worker and the embedded-children supervisor post
messages, handlers set reactives (see :class:`~octotui.tui.dashboard.DashboardApp`), screens watch
the reactives and ask the :class:`~octotui.tui.actions.Actions` object for changes."""

from __future__ import annotations

import importlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on
from textual.app import SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import ModalScreen, Screen
from textual.theme import Theme
from textual.timer import Timer
from textual.widgets import Input, TextArea
from textual.worker import Worker

from octotui.client import Client
from octotui.embedded import Embedded
from octotui.protocol import TERMINAL_CONTAINER_STATES, TERMINAL_TEST_STATES, Test
from octotui.tui import messages
from octotui.tui.actions import Actions
from octotui.tui.commandline import WRITES, State, parse, resolve_agent, resolve_provider, resolve_test
from octotui.tui.dashboard import DashboardApp
from octotui.tui.format import plural
from octotui.tui.poller import Poller
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
from octotui.tui.state import Connection, TestLabels
from octotui.tui.supervisor import EXIT_NOTICE_S, Supervisor
from octotui.tui.usage import ContainerUsage, UsageRevision
from octotui.tui.widgets.status_bar import StatusBar
from octotui.tui.widgets.tables import ContainerMarks, ProvidersTable

#: The dashboard's colours, chosen so that each still means one thing once a 16-colour terminal
#: (``TERM=xterm-16color``, tmux) rounds it to its nearest ANSI colour: accent (headers, key hints)
#: to cyan, primary to bright blue, warning to bright yellow, success to bright green, and only
#: error to red. Textual's default theme rounds accent and warning to bright red, the colour of
#: failures. tests/test_tui_fleet.py checks the rounding.
THEME = Theme(
    name="octotui",
    primary="#3A7BD5",
    secondary="#5A8DEE",
    accent="#2BB5C8",
    warning="#E8B84D",
    error="#E5534B",
    success="#4EBF71",
    foreground="#E0E0E0",
    dark=True,
)


class KeyFence(Message, bubble=True):
    """Sent after a key or paste to what it went to: it follows the key up through the same
    queues, so its arrival at the app says the key was handled everywhere it went (its widget, the
    screen's bindings, the app's); sent to a new screen, that the screen is mounted and focused."""

    def __init__(self, turn: int, *, lap: bool = False) -> None:
        super().__init__()
        self.turn = turn
        #: Sent by the app to itself once the first came back: what the key's handling asked the
        #: app to do later (a focus(), a call_later) is in its queue before it, so done first.
        self.lap = lap


#: How long a key may take to be handled before the ones typed after it go on anyway (its widget
#: was removed before its fence came through, say): a safety net, not a pace.
FENCE_TIMEOUT_S = 5.0
#: How long the keys after one wait for the work that key started (a request to the server).
WORK_WAIT_S = 10.0


#: What the status bar says while the server refuses the dashboard's token (401).
TOKEN_REFUSED = "token refused: restart with a valid --token"


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


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's resolved settings (see :mod:`octotui.tui.cli`)."""

    server: str | None = None
    token: str | None = None
    read_only: bool = False
    data_dir: Path | None = None
    ca_bundle: str | None = None
    refresh: float = 1.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DashboardSettings:
        data_dir = values.get("data_dir")
        return cls(
            server=values.get("server") or None,
            token=values.get("token") or None,
            read_only=bool(values.get("read_only")),
            data_dir=Path(data_dir) if data_dir else None,
            ca_bundle=values.get("ca_bundle") or None,
            refresh=float(values.get("refresh") or 1.0),
        )


class OctoApp(DashboardApp):
    """The octotui dashboard on one control server, reached through ``client``."""

    TITLE = "octotui"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    #: Toasts sit over the tables: short-lived, so they do not hide data for long.
    NOTIFICATION_TIMEOUT = 3.0
    BINDINGS: ClassVar = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        # A priority binding opens the line at once: the keys typed fast after ":" (a paste, tmux
        # send-keys) then all go to it, not to the table below. Off where ":" is typed (inputs).
        Binding("colon", "command_line", "Cmd", key_display=":", priority=True),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]

    def __init__(
        self,
        client: Client,
        *,
        server_label: str,
        read_only: bool = False,
        refresh: float = 1.0,
        embedded: bool = False,
    ) -> None:
        super().__init__()
        self.register_theme(THEME)
        self.theme = THEME.name
        self.server_label = server_label
        self.embedded = embedded
        self.last_launch = {}
        self.refresh_s = refresh
        self.forced_read_only = read_only
        self.set_reactive(OctoApp.read_only, read_only)
        self.set_reactive(OctoApp.connection, Connection(refresh=refresh))
        self.poller = Poller(client, refresh, self.post_message)
        self.actions = Actions(self, client, self.poller)
        #: Watches the embedded server and agent, when this dashboard started them (:meth:`supervise`).
        self.supervisor: Supervisor | None = None
        #: Why the embedded server is down, for the status bar ("" while it runs).
        self._down = ""
        self._token_refused = False
        #: The open test's containers' CPU and memory, kept while its screen is open.
        self._usage: ContainerUsage | None = None
        #: Keys and pastes that came while an earlier one was still being handled (see on_event).
        self._held: deque[events.Key | events.Paste] = deque()
        #: The fence awaited (its number), 0 when none: keys wait while one is out.
        self._turn = 0
        self._turns = 0
        #: The screen whose mounting a fence has seen through.
        self._settled: Screen[Any] | None = None
        self._fence_timer: Timer | None = None
        #: The workers the key in turn started, and until when its followers wait for them.
        self._work: list[Worker[Any]] = []
        self._work_deadline = 0.0
        self._before: tuple[set[Worker[Any]], Screen[Any]] | None = None

    @property
    def client(self) -> Client:
        """The client of the server this dashboard shows."""
        return self.actions.client

    def supervise(self, embedded: Embedded, token: str) -> None:
        """Watch ``embedded``'s children (started by this process): when one exits, say so with
        its log, and start it again (see :mod:`octotui.tui.supervisor`); ``token`` is the one the
        dashboard uses on that server."""
        self.supervisor = Supervisor(embedded, token, self.actions.provider_tokens, self.post_message)

    # --- lifecycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.run_worker(self.poller.run(), group="poll", name="poll", exit_on_error=False)
        if self.supervisor is not None:
            self.run_worker(self.supervisor.run(), group="children", exit_on_error=False)

    async def on_unmount(self) -> None:
        await self.client.aclose()
        if self.poller.client is not self.client:
            await self.poller.client.aclose()

    # --- keys in turn ---------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        """Each key (or paste) is handled to its end before the next one is given out. Textual
        hands a key to the focused widget's queue and goes on with the next at once: a key that
        opens a dialog (``l``, ``?``, ``E``…) acts when it has bubbled back up to its binding, by
        which time the keys typed after it (a burst: tmux send-keys, a paste, a slow ssh link) went
        to the screen below, and a dialog pushed is not mounted or focused before its first
        keys come. Here the keys after one wait until a :class:`KeyFence` sent behind it came back,
        and, when the screen changed, one sent through the new screen."""
        if isinstance(event, events.Key | events.Paste) and not event.is_forwarded:
            if self._turn or self._held:
                self._held.append(event)
                return
            await self._give(event)
            return
        await super().on_event(event)

    async def _give(self, event: events.Key | events.Paste) -> None:
        if not self._screen_stack:
            await super().on_event(event)
            return
        target: MessagePump = self.focused or self.screen
        self._before = (set(self.workers), self.screen)
        await super().on_event(event)
        self._fence(target)

    def _fence(self, target: MessagePump) -> None:
        self._turns += 1
        self._turn = turn = self._turns
        fence = KeyFence(turn)
        fence.set_sender(target)  # not the parent: a message sent by its parent stops there
        if not target.post_message(fence):  # closed already: nothing more will come through it
            self.post_message(KeyFence(turn))
        if self._fence_timer is not None:
            self._fence_timer.stop()
        self._fence_timer = self.set_timer(FENCE_TIMEOUT_S, lambda: self._fence_timeout(turn))

    def _fence_timeout(self, turn: int) -> None:
        if self._turn == turn:
            self.log.warning("key fence timed out", turn=turn)
            self.post_message(KeyFence(turn))

    async def on_key_fence(self, message: KeyFence) -> None:
        message.stop()
        if message.turn != self._turn:
            return
        if not message.lap:
            if self._fence_timer is not None:
                self._fence_timer.stop()
                self._fence_timer = None
            self.post_message(KeyFence(message.turn, lap=True))
            return
        if self._before is not None:
            # The work the key started (a plan read before a dialog opens: E): the keys after it
            # wait for it too, up to WORK_WAIT_S.
            before, screen = self._before
            self._before = None
            self._work = [w for w in self.workers if w not in before and w.node in (screen, self)]
        work = [w for w in self._work if not w.is_finished]
        if work:
            self._work_deadline = self._work_deadline or time.monotonic() + WORK_WAIT_S
            if time.monotonic() < self._work_deadline:
                self.set_timer(0.02, lambda: self.post_message(KeyFence(message.turn, lap=True)))
                return
        self._work, self._work_deadline = [], 0.0
        self._turn = 0
        if self._screen_stack and self.screen is not self._settled:
            # A screen opened (or one came back): its first keys wait for its mount and focus.
            self._settled = self.screen
            self._fence(self.screen)
            return
        while self._held and not self._turn:
            await self._give(self._held.popleft())

    # --- what the embedded-children supervisor reports ----------------------------------------

    def on_embedded_notice(self, message: messages.EmbeddedNotice) -> None:
        self.notify(message.text, title=message.title, severity="error", timeout=EXIT_NOTICE_S)

    def on_embedded_down(self, message: messages.EmbeddedDown) -> None:
        self._set_down(message.note)

    def on_embedded_restarted(self, message: messages.EmbeddedRestarted) -> None:
        if message.client is not None:
            self.actions.use(message.client)
            self.server_label = f"{message.url} (embedded)"
            for screen in self.screen_stack:
                for bar in screen.query(StatusBar):
                    bar.server_label = self.server_label
        if self._down:
            self._set_down("")
        self.notify(f"Embedded {message.which} started again ({message.url})", title="Embedded mode")
        self.poller.wake()

    def _set_down(self, note: str) -> None:
        self._down = note
        self.connection = replace(self.connection, note=note)

    # --- what the poll worker reports ---------------------------------------------------------

    def on_info_updated(self, message: messages.InfoUpdated) -> None:
        self.info = message.info
        self.read_only = self.forced_read_only or message.info.role == "read-only"

    def on_agents_updated(self, message: messages.AgentsUpdated) -> None:
        self.agents_hint = (message.agents, message.changed)
        self.agents = message.agents

    def on_providers_updated(self, message: messages.ProvidersUpdated) -> None:
        self.providers = message.providers

    def on_tests_updated(self, message: messages.TestsUpdated) -> None:
        self.tests = message.tests

    def on_agent_metrics_updated(self, message: messages.AgentMetricsUpdated) -> None:
        if message.metrics.agent_id == self.poller.agent_id:
            self.agent_metrics = message.metrics

    def on_test_detail_updated(self, message: messages.TestDetailUpdated) -> None:
        if message.test.id == self.poller.test_id:
            self.test_detail = (message.test, message.series)
            usage = self._usage
            if usage is None or usage.test_id != message.test.id:
                usage = self._usage = ContainerUsage(message.test.id)
            if usage.add(message.test):
                revision = self.container_usage.revision + 1 if self.container_usage else 1
                self.container_usage = UsageRevision(revision, usage)

    def on_test_labels_updated(self, message: messages.TestLabelsUpdated) -> None:
        if message.test_id == self.poller.test_id:
            # Equal values fire no watcher: the tables hear of new figures only.
            self.test_labels = TestLabels(message.test_id, message.labels, message.errors)

    def on_audit_updated(self, message: messages.AuditUpdated) -> None:
        if self.poller.audit:
            self.audit = (message.entries, message.error)

    def on_server_reached(self, message: messages.ServerReached) -> None:
        self.connection = Connection("ok", last_update=message.at, refresh=self.refresh_s, note=self._down)
        if message.recovered:
            self.notify("Server reachable again", title="Connection")
        self._token_refused = False

    def on_server_unreachable(self, message: messages.ServerUnreachable) -> None:
        self.connection = Connection(
            "unreachable",
            message.reason,
            last_update=self.connection.last_update,
            retry_at=time.time() + message.retry_in,
            refresh=self.refresh_s,
            note=self._down,
        )

    def on_server_refused(self, message: messages.ServerRefused) -> None:
        token = message.status == 401
        self.connection = Connection(
            "refused",
            TOKEN_REFUSED if token else message.message,
            last_update=self.connection.last_update,
            retry_at=time.time() + message.retry_in,
            refresh=self.refresh_s,
            note=self._down,
        )
        if token and not self._token_refused:
            self.notify(
                f"The server refused this dashboard's token: {message.message}. Restart"
                f" octotui with a valid --token (or OCTOTUI_TOKEN). Trying again every {message.retry_in:.0f} s,"
                " in case the token is made again.",
                title="Token refused",
                severity="error",
                timeout=EXIT_NOTICE_S,
            )
        self._token_refused = token

    def watch_read_only(self) -> None:
        self.refresh_bindings()

    # --- what screens ask to follow -----------------------------------------------------------

    def on_detail_opened(self, message: messages.DetailOpened) -> None:
        self._follow(message.what, message.key)
        self.poller.wake()

    def on_detail_closed(self, message: messages.DetailClosed) -> None:
        following = {"agent": self.poller.agent_id, "test": self.poller.test_id, "audit": ""}[message.what]
        if following == message.key:
            self._follow(message.what, None)

    def _follow(self, what: messages.Detail, key: str | None) -> None:
        """Fetch ``what`` of ``key`` on every round from now on (None: stop), forgetting the last one's."""
        if what == "agent":
            self.poller.agent_id = key
            self.agent_metrics = None
        elif what == "test":
            self.poller.test_id = key
            self.test_detail = None
            self.test_labels = None
            self._usage = None
            self.container_usage = None
        else:
            self.poller.audit = key is not None
            self.audit = None

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


def create_app(settings: DashboardSettings, client: Client, *, embedded: bool = False) -> OctoApp:
    """Build the dashboard; the CLI and the tests share this factory."""
    label = settings.server or client.base_url
    return OctoApp(
        client, server_label=label, read_only=settings.read_only, refresh=settings.refresh, embedded=embedded
    )
