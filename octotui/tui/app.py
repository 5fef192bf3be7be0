"""The dashboard app: wiring only. The poll worker and the embedded-children supervisor post
messages, handlers set reactives (see :class:`~octotui.tui.dashboard.DashboardApp`), screens watch
the reactives and ask the :class:`~octotui.tui.actions.Actions` object for changes. Keys are handled
one at a time (:mod:`octotui.tui.keyturns`); what keys, the ":" line and marks ask is
:mod:`octotui.tui.appcommands`'."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from textual.binding import Binding
from textual.theme import Theme

from octotui.client import Client
from octotui.embedded import Embedded
from octotui.tui import format as fmt
from octotui.tui import messages
from octotui.tui.actions import Actions
from octotui.tui.appcommands import AppCommands
from octotui.tui.keyturns import KeysInTurn
from octotui.tui.poller import Poller
from octotui.tui.screens.main import MainScreen
from octotui.tui.state import Connection, TestLabels
from octotui.tui.supervisor import EXIT_NOTICE_S, Supervisor
from octotui.tui.usage import ContainerUsage, UsageRevision
from octotui.tui.widgets.status_bar import StatusBar

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


#: What the status bar says while the server refuses the dashboard's token (401).
TOKEN_REFUSED = "token refused: restart with a valid --token"


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


class OctoApp(KeysInTurn, AppCommands):
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
        #: The replica in use when several server URLs were given ("" with one): the status bar
        #: names it, and a switch is announced (the client calls back, :meth:`on_replica_switched`).
        self._replica = ""
        if client is not None and len(client.servers) > 1:
            self._replica = client.base_url
            self.server_label = fmt.replica_label(client.servers, self._replica)
            client.on_switch = lambda url: self.post_message(messages.ReplicaSwitched(url))

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

    # --- what the embedded-children supervisor reports ----------------------------------------

    def on_embedded_notice(self, message: messages.EmbeddedNotice) -> None:
        self.notify(message.text, title=message.title, severity="error", timeout=EXIT_NOTICE_S)

    def on_embedded_down(self, message: messages.EmbeddedDown) -> None:
        self._set_down(message.note)

    def on_embedded_restarted(self, message: messages.EmbeddedRestarted) -> None:
        if message.client is not None:
            self.actions.use(message.client)
            self._set_server_label(f"{message.url} (embedded)")
        if self._down:
            self._set_down("")
        self.notify(f"Embedded {message.which} started again ({message.url})", title="Embedded mode")
        self.poller.wake()

    def _set_server_label(self, label: str) -> None:
        self.server_label = label
        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.server_label = label

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

    def on_replica_switched(self, message: messages.ReplicaSwitched) -> None:
        old, self._replica = self._replica, message.url
        if not old or old == message.url:
            return
        servers = self.client.servers
        self._set_server_label(fmt.replica_label(servers, message.url))
        back = message.url == servers[0]
        self.notify(
            f"{fmt.host_port(old)} → {fmt.host_port(message.url)}"
            + (" (the first is healthy again)" if back else f" ({fmt.host_port(old)} did not answer)"),
            title="Back on the first replica" if back else "Switched replica",
            severity="information" if back else "warning",
            markup=False,  # an IPv6 address is bracketed
        )

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


def create_app(settings: DashboardSettings, client: Client, *, embedded: bool = False) -> OctoApp:
    """Build the dashboard; the CLI and the tests share this factory."""
    label = settings.server or client.base_url
    return OctoApp(
        client, server_label=label, read_only=settings.read_only, refresh=settings.refresh, embedded=embedded
    )
