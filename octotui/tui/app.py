"""The dashboard app: wiring only. The poll worker posts messages, handlers set reactives,
screens watch the reactives, widgets render them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen

from octotui.client import Client, ClientError
from octotui.protocol import (
    Agent,
    AgentMetrics,
    AuditEntry,
    Placement,
    Provider,
    ServerInfo,
    Test,
    TestCreate,
    TestSeries,
)
from octotui.tui import messages
from octotui.tui.poller import Poller
from octotui.tui.state import Connection

if TYPE_CHECKING:
    from octotui.embedded import Embedded

#: How many times the dashboard starts its embedded server or agent again after it exited: a
#: child that keeps dying is left down, with its log named, rather than restarted in a loop.
MAX_RESTARTS = 5
#: How long the notices about an embedded child that exited stay up.
EXIT_NOTICE_S = 30.0
#: What the status bar says while the server refuses the dashboard's token (401).
TOKEN_REFUSED = "token refused: restart with a valid --token"

#: What to do after making a provider: its registration token is shown in this dashboard only.
CREATED_HINT = "i on it shows the lines that install agents, with its token (shown here only)"


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


class OctoApp(App[int]):
    """The octotui dashboard on one control server, reached through ``client``."""

    TITLE = "octotui"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    #: Toasts sit over the tables: short-lived, so they do not hide data for long.
    NOTIFICATION_TIMEOUT = 3.0
    BINDINGS: ClassVar = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]

    info: var[ServerInfo | None] = var(None)
    agents: var[list[Agent]] = var(list)
    providers: var[list[Provider]] = var(list)
    tests: var[list[Test]] = var(list)
    connection: var[Connection] = var(Connection)
    agent_metrics: var[AgentMetrics | None] = var(None)
    test_detail: var[tuple[Test, TestSeries] | None] = var(None)
    read_only: var[bool] = var(False)
    audit: var[tuple[list[AuditEntry], str] | None] = var(None)

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
        self.client = client
        self.server_label = server_label
        #: True when this dashboard owns the server and the local agent (they stop when it quits).
        self.embedded = embedded
        #: The last launch's fields (plan path, counts, properties, image), for the next dialog.
        self.last_launch: dict[str, str] = {}
        self.refresh_s = refresh
        self.forced_read_only = read_only
        self.set_reactive(OctoApp.read_only, read_only)
        self.set_reactive(OctoApp.connection, Connection(refresh=refresh))
        self.poller = Poller(client, refresh, self.post_message)
        #: The agents list last set and the ids that changed in it (None: any may have).
        self.agents_hint: tuple[list[Agent], frozenset[str] | None] = ([], None)
        #: Registration tokens by provider id, as made or rotated by this dashboard: the server
        #: stores them hashed and shows each only in the answer that made it.
        self.provider_tokens: dict[str, str] = {}
        #: The embedded server and agent, when this dashboard started them (see :meth:`supervise`).
        self.supervised: Embedded | None = None
        self._children_token = ""
        self.restarts = 0
        self._restarting = False
        #: Why the embedded server is down, for the status bar ("" while it runs).
        self._down = ""
        self._token_refused = False

    def supervise(self, embedded: Embedded, token: str) -> None:
        """Watch ``embedded``'s children (started by this process): when one exits, say so with
        its log, and start it again (at most :data:`MAX_RESTARTS` times); ``token`` is the one the
        dashboard uses on that server."""
        self.supervised = embedded
        self._children_token = token

    # --- lifecycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        from octotui.tui.screens.main import MainScreen

        self.push_screen(MainScreen())
        self.poll()
        if self.supervised is not None:
            self.set_interval(1.0, self._check_children)

    def _check_children(self) -> None:
        children = self.supervised
        if children is None or self._restarting:
            return
        exited = children.exited()
        if not exited or (self._down and self.restarts >= MAX_RESTARTS):
            return
        for child in exited:
            title = f"Embedded {child.name} exited"
            self.notify(child.describe(), title=title, severity="error", timeout=EXIT_NOTICE_S)
        server = any(c.name == "server" for c in exited)
        if self.restarts >= MAX_RESTARTS:
            what = "server" if server else "agent"
            self._set_down(f"embedded {what} exited {self.restarts + 1} times: not restarted · q quits")
            return
        if server:
            self._set_down("embedded server exited: starting it again…")
        self._restarting = True
        self.restarts += 1
        self.restart_children(" and ".join(c.name for c in exited))

    def _set_down(self, note: str) -> None:
        self._down = note
        self.connection = replace(self.connection, note=note)

    @work(group="children", exit_on_error=False)
    async def restart_children(self, which: str) -> None:
        """Start the exited embedded children again (in a thread: it waits for the server)."""
        from octotui.embedded import EmbeddedError

        children = self.supervised
        assert children is not None
        try:
            await asyncio.to_thread(children.restart)
        except (EmbeddedError, OSError) as exc:
            self.restarts = MAX_RESTARTS
            self._set_down(f"embedded {which} could not be started again · q quits")
            self.notify(str(exc), title=f"Embedded {which}", severity="error", timeout=EXIT_NOTICE_S)
            return
        finally:
            self._restarting = False
        if children.url != self.client.base_url:
            # Its old port was taken: the server listens elsewhere, and the dashboard follows it.
            self.client = Client(children.url, self._children_token)
            self.poller.use(self.client)
            self.server_label = f"{children.url} (embedded)"
            self._relabel()
        if self._down:
            self._set_down("")
        self.notify(f"Embedded {which} started again ({children.url})", title="Embedded mode")
        self.poller.wake()

    def _relabel(self) -> None:
        from octotui.tui.widgets.status_bar import StatusBar

        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.server_label = self.server_label

    @work(group="poll", exit_on_error=False, name="poll")
    async def poll(self) -> None:
        """The one long-lived worker that talks to the server on a schedule."""
        await self.poller.run()

    async def on_unmount(self) -> None:
        await self.client.aclose()
        if self.poller.client is not self.client:
            await self.poller.client.aclose()

    # --- what the poll worker reports ---------------------------------------------------------

    def on_info_updated(self, message: messages.InfoUpdated) -> None:
        self.info = message.info
        self.read_only = self.forced_read_only or message.info.role == "read-only"

    def on_agents_updated(self, message: messages.AgentsUpdated) -> None:
        self.agents_hint = (message.agents, message.changed)
        self.agents = message.agents

    def agents_changed_in(self, agents: list[Agent]) -> frozenset[str] | None:
        """The ids of the agents that changed when ``agents`` was set (None: unknown, any)."""
        hinted, changed = self.agents_hint
        return changed if hinted is agents else None

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

    # --- what screens ask for -----------------------------------------------------------------

    def follow_agent(self, agent_id: str | None) -> None:
        """Fetch ``agent_id``'s host samples on every round (None: stop)."""
        self.poller.agent_id = agent_id
        self.agent_metrics = None
        if agent_id is not None:
            self.poller.wake()

    def follow_test(self, test_id: str | None) -> None:
        """Fetch ``test_id``'s detail and series on every round (None: stop)."""
        self.poller.test_id = test_id
        self.test_detail = None
        if test_id is not None:
            self.poller.wake()

    def follow_audit(self, on: bool) -> None:
        """Fetch the audit log on every round while the audit screen is shown."""
        self.poller.audit = on
        self.audit = None
        if on:
            self.poller.wake()

    async def plan_test(self, spec: TestCreate) -> Placement:
        """Dry run on the server; raises :class:`ClientError` with the server's message."""
        return await self.client.plan_test(spec)

    async def create_test(self, spec: TestCreate, idempotency_key: str | None = None) -> Test:
        """Launch a test; raises :class:`ClientError` with the server's message.

        ``idempotency_key``: the same launch sent again with it answers with the test the first
        one made (its answer was lost) instead of starting a second.
        """
        test = await self.client.create_test(spec, idempotency_key)
        self.poller.wake()
        return test

    @work(group="actions", exit_on_error=False)
    async def stop_test(self, test_id: str, name: str) -> None:
        """Ask the server to stop a test; the outcome is notified."""
        await self._change(self.client.stop_test(test_id), f"Cannot stop {name}", f"Stopping {name}", "Test")

    @work(group="actions", exit_on_error=False)
    async def stop_container(self, test_id: str, container_id: str, label: str) -> None:
        """Ask the server to stop one container of a test; the outcome is notified."""
        await self._change(
            self.client.stop_container(test_id, container_id), f"Cannot stop {label}", f"Stopping {label}", "Container"
        )

    async def _change(self, call: Awaitable[object], failed: str, done: str, title: str) -> bool:
        """Run one change on the server; say what happened, with the server's reason on refusal."""
        why = await self.attempt(call)
        if why is not None:
            self.notify(why, title=failed, severity="error")
            return False
        self.notify(done, title=title)
        return True

    async def attempt(self, call: Awaitable[object]) -> str | None:
        """Run one change on the server: None when done, else the server's reason in words."""
        try:
            await call
        except ClientError as exc:
            return f"the server refused: {exc.message}" if exc.status == 403 else exc.message
        finally:
            self.poller.wake()
        return None

    async def keeping_token(self, call: Awaitable[Provider]) -> Provider:
        """Await a provider creation or token rotation and keep the token it answers with."""
        provider = await call
        if provider.token:
            self.provider_tokens[provider.id] = provider.token
            if self.supervised is not None and provider.id == self.supervised.provider_id:
                self.supervised.provider_token = provider.token  # an agent started again registers with it
        return provider

    async def submit_new_provider(self, name: str) -> str | None:
        """Create a provider from a prompt that stays open on refusal: None when created, else why not."""
        why = await self.attempt(self.keeping_token(self.client.create_provider(name)))
        if why is None:
            self.notify(f"Provider {name} created: {CREATED_HINT}", title="Provider")
        return why

    async def submit_rename_provider(self, provider_id: str, old: str, new: str) -> str | None:
        """Rename a provider from a prompt that stays open on refusal: None when renamed, else why not."""
        if new == old:
            return None
        why = await self.attempt(self.client.rename_provider(provider_id, new))
        if why is None:
            self.notify(f"Provider {old} renamed to {new}", title="Provider")
        return why

    @work(group="actions", exit_on_error=False)
    async def create_provider(self, name: str) -> None:
        """Create a provider named ``name``; the outcome is notified."""
        await self._change(
            self.keeping_token(self.client.create_provider(name)),
            f"Cannot create provider {name}",
            f"Provider {name} created: {CREATED_HINT}",
            "Provider",
        )

    @work(group="actions", exit_on_error=False)
    async def rename_provider(self, provider_id: str, old: str, new: str) -> None:
        """Rename a provider; the outcome is notified."""
        await self._change(
            self.client.rename_provider(provider_id, new),
            f"Cannot rename {old}",
            f"Provider {old} renamed to {new}",
            "Provider",
        )

    @work(group="actions", exit_on_error=False)
    async def remove_agent(self, agent_id: str, name: str) -> None:
        """Remove an agent that is not online; the outcome is notified."""
        await self._change(
            self.client.delete_agent(agent_id), f"Cannot remove {name}", f"Agent {name} removed", "Agent"
        )

    @work(group="actions", exit_on_error=False)
    async def delete_provider(self, provider_id: str, name: str) -> None:
        """Delete a provider; the outcome is notified."""
        await self._change(
            self.client.delete_provider(provider_id), f"Cannot delete {name}", f"Provider {name} deleted", "Provider"
        )

    @work(group="actions", exit_on_error=False)
    async def rotate_provider_token(self, provider_id: str, name: str) -> None:
        """Give a provider a new registration token; agents already registered keep theirs."""
        await self._change(
            self.keeping_token(self.client.rotate_provider_token(provider_id)),
            f"Cannot rotate the token of {name}",
            f"New registration token for {name} (i shows it); registered agents are not affected",
            "Provider",
        )

    # --- actions and commands -----------------------------------------------------------------

    def action_help(self) -> None:
        from octotui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_distribution(self) -> None:
        from octotui.tui.screens.distribution import DistributionScreen

        if not isinstance(self.screen, DistributionScreen):
            self.push_screen(DistributionScreen())

    def action_audit(self) -> None:
        from octotui.tui.screens.audit import AuditScreen

        if not isinstance(self.screen, AuditScreen):
            self.push_screen(AuditScreen())

    def action_launch(self) -> None:
        from octotui.tui.screens.launch import LaunchScreen

        if self.read_only:
            self.notify("read-only: launching is disabled", severity="warning")
            return
        self.push_screen(LaunchScreen())

    def action_home(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    async def action_quit(self) -> None:
        """Quit; while tests run (and changes are allowed), ask what to do with them first."""
        from octotui.tui.screens.quit import QuitScreen, active_tests

        if isinstance(self.screen, QuitScreen):
            return
        running = active_tests(self.tests)
        if not running or self.read_only:
            self.exit(0)
            return
        self.push_screen(QuitScreen(running, embedded=self.embedded))

    def _main(self) -> Any:
        from octotui.tui.screens.main import MainScreen

        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def action_stop_selected(self) -> None:
        """Stop the test under the cursor (the test screen's own test), asking first."""
        from octotui.tui.screens.test import TestScreen

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
        from octotui.tui.widgets.tables import ProvidersTable

        main = self._main()
        if main is not None:
            self.action_home()
            main.post_message(ProvidersTable.ProviderAction("new", None))

    def action_install_lines(self) -> None:
        """The install dialog of the selected provider (else the first one)."""
        from octotui.tui.screens.provider import ProviderScreen
        from octotui.tui.widgets.tables import ProvidersTable

        main = self._main()
        selected = main.query_one(ProvidersTable).selected_key if main is not None else None
        provider_id = selected or (self.providers[0].id if self.providers else None)
        if provider_id is None:
            self.notify("No provider yet: create one first", severity="warning")
            return
        self.push_screen(ProviderScreen(provider_id))

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
