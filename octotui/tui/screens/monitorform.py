"""The form that adds or edits a monitor (admins): its agent picked from the agents, credentials in
masked inputs that start empty (the server never sends them back) and are cleared once sent,
thresholds typed as lines (``node_load1 critical above 4 for 30s``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, TextArea

from octotui.client import ClientError
from octotui.protocol import Agent, Monitor, MonitorCreate, MonitorCredentials, MonitorUpdate
from octotui.tui.dashboard import DashboardApp
from octotui.tui.monitorlines import (
    KINDS,
    TARGET_HINTS,
    first_error,
    parse_thresholds,
    split_metrics,
    threshold_text,
    to_float,
)


def agent_options(agents: Sequence[Agent]) -> list[tuple[str, str]]:
    return [(f"{a.name} · {a.location} · {a.status}", a.id) for a in sorted(agents, key=lambda a: a.name)]


class MonitorForm(ModalScreen[str | None]):
    """Adds a monitor (``monitor`` None) or edits one; dismisses with what was done, None on escape.

    The credential fields are masked, start empty (the server never sends them) and are cleared
    once sent: on edit, left empty they keep what the server holds.
    """

    DEFAULT_CSS = """
    MonitorForm #dialog { width: 78; height: 22; border: round $accent; padding: 0 1; background: $surface; }
    MonitorForm .row { height: 1; }
    MonitorForm .row Label { width: 13; }
    MonitorForm .row Input, MonitorForm .row Select { width: 1fr; }
    MonitorForm #thresholds { height: 4; }
    MonitorForm #form-error { color: $error; height: auto; }
    MonitorForm .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
    ]

    def __init__(self, agents: Sequence[Agent], monitor: Monitor | None = None) -> None:
        super().__init__()
        self.agents = list(agents)
        self.monitor = monitor
        self.busy = False

    def compose(self) -> ComposeResult:
        m = self.monitor
        options = agent_options(self.agents)
        if m is not None and m.agent not in {value for _, value in options}:
            options.append((f"{m.agent_name or m.agent} (not listed)", m.agent))

        def row(label: str, widget: Any) -> Horizontal:
            return Horizontal(Label(label), widget, classes="row")

        title = f"Edit monitor {m.name}" if m else "New monitor"
        creds = "Credentials, masked, sent once, never shown back"
        if m and m.credentials_set:
            creds = f"Credentials set: {', '.join(m.credentials_set)} (left empty: kept; never shown back)"
        with VerticalScroll(id="dialog"):
            yield Label(f"[b]{title}[/b] · ctrl+s saves · escape cancels", classes="title")
            yield row("Name", Input(m.name if m else "", id="name", compact=True))
            agent = Select(options, prompt="pick the agent that reaches the target", id="agent", compact=True)
            if m is not None:
                agent = Select(options, value=m.agent, id="agent", compact=True)
            elif len(options) == 1:
                agent = Select(options, value=options[0][1], id="agent", compact=True)
            yield row("Agent", agent)
            kind = [(k, k) for k in KINDS]
            yield row("Kind", Select(kind, value=m.kind if m else "prometheus", id="kind", compact=True,
                                     allow_blank=False, disabled=m is not None))  # fmt: skip
            placeholder = TARGET_HINTS[m.kind if m else "prometheus"]
            yield row("Target", Input(m.target if m else "", placeholder=placeholder, id="target", compact=True))
            yield row("Interval (s)", Input(f"{m.interval:g}" if m else "10", id="interval", compact=True))
            modes = [("always", "always"), ("tests", "only during the tests that name it")]
            yield row("Runs", Select([(b, a) for a, b in modes], value=m.mode if m else "always", id="mode",
                                     compact=True, allow_blank=False))  # fmt: skip
            yield Label(creds, classes="hint", markup=False)
            yield row("Username", Input("", id="username", compact=True, password=True))
            yield row("Password", Input("", id="password", compact=True, password=True))
            yield row("Key file", Input("", placeholder="path of a private key (ssh)", id="key-file", compact=True))
            yield row("Passphrase", Input("", id="passphrase", compact=True, password=True))
            metrics = ", ".join(m.metrics) if m else ""
            yield row("Metrics", Input(metrics, placeholder="names to keep, comma-separated (empty: defaults)",
                                       id="metrics", compact=True))  # fmt: skip
            yield Label("Thresholds, one a line: node_load1 critical above 4 for 30s", classes="hint")
            lines = "\n".join(threshold_text(t) for t in m.thresholds) if m else ""
            yield TextArea(lines, id="thresholds", compact=True, show_line_numbers=False)
            yield Label("", id="form-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Select.Changed, "#kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#target", Input).placeholder = TARGET_HINTS.get(event.value, "")

    def _value(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    def credentials(self) -> tuple[MonitorCredentials | None, str | None]:
        """What the credential fields hold (None: nothing typed), or why they cannot be sent."""
        username = self.query_one("#username", Input).value
        password = self.query_one("#password", Input).value
        passphrase = self.query_one("#passphrase", Input).value
        key_path = self._value("#key-file")
        key: str | None = None
        if key_path:
            path = Path(key_path).expanduser()
            try:
                if path.stat().st_size > 32_768:
                    return None, f"key file {key_path}: larger than 32 KiB, not a private key"
                key = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                return None, f"key file {key_path}: {getattr(exc, 'strerror', None) or exc}"
        if not (username or password or passphrase or key):
            return None, None
        try:
            made = MonitorCredentials(
                username=username or None, password=password or None, private_key=key, passphrase=passphrase or None
            )
        except ValidationError as exc:
            return None, "credentials: " + first_error(exc)
        return made, None

    def read(self) -> MonitorCreate | MonitorUpdate | str:
        """The form as the server takes it, or why it cannot be sent."""
        thresholds, problem = parse_thresholds(self.query_one("#thresholds", TextArea).text)
        if problem:
            return problem
        credentials, problem = self.credentials()
        if problem:
            return problem
        interval = to_float(self._value("#interval"))
        if interval is None:
            return "interval: a number of seconds, e.g. 10"
        agent = self.query_one("#agent", Select).value
        if not isinstance(agent, str):
            return "agent: pick the agent that reaches the target"
        fields: dict[str, Any] = {
            "name": self._value("#name"),
            "agent": agent,
            "target": self._value("#target"),
            "interval": interval,
            "mode": self.query_one("#mode", Select).value,
            "metrics": split_metrics(self.query_one("#metrics", Input).value),
            "thresholds": thresholds,
        }
        if not fields["name"]:
            return "name: type one, e.g. db-host"
        if not fields["target"]:
            return f"target: e.g. {TARGET_HINTS[str(self.query_one('#kind', Select).value)]}"
        if credentials is not None:
            fields["credentials"] = credentials
        try:
            if self.monitor is None:
                return MonitorCreate(kind=self.query_one("#kind", Select).value, **fields)
            return MonitorUpdate(**fields)
        except ValidationError as exc:
            return first_error(exc)

    def _clear_secrets(self) -> None:
        for selector in ("#username", "#password", "#passphrase", "#key-file"):
            self.query_one(selector, Input).value = ""

    async def action_submit(self) -> None:
        if self.busy:
            return
        error = self.query_one("#form-error", Label)
        spec = self.read()
        if isinstance(spec, str):
            error.update(f"✗ {spec}")
            return
        self.busy = True
        error.update("sending…")
        actions = self.app.actions if isinstance(self.app, DashboardApp) else None
        try:
            if actions is None:
                raise ClientError("no server")
            if isinstance(spec, MonitorCreate):
                made = await actions.create_monitor(spec)
                done = f"Monitor {made.name} added"
            else:
                assert self.monitor is not None
                made = await actions.update_monitor(self.monitor.id, spec)
                done = f"Monitor {made.name} saved"
        except ClientError as exc:
            error.update(f"✗ {exc.message}")
            return
        finally:
            self.busy = False
            del spec  # the credentials it held go with it
        if made.credentials_set:
            done += f" (credentials kept by the server, never shown: {', '.join(made.credentials_set)})"
        self._clear_secrets()
        self.dismiss(done)

    def action_cancel(self) -> None:
        self._clear_secrets()
        self.dismiss(None)
