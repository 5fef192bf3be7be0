"""The launch dialog: a plan file and where to run it; the placement is previewed before launch."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from octotui.client import ClientError
from octotui.protocol import Placement, TestCreate

if TYPE_CHECKING:
    from octotui.tui.app import OctoApp


def check_plan_path(text: str, max_bytes: int | None = None) -> str | None:
    """Why ``text`` cannot be used as a plan file, or None when it can."""
    raw = text.strip()
    if not raw:
        return "type the path of a JMeter plan (.jmx)"
    path = Path(raw).expanduser()
    if not path.exists():
        return f"no such file: {path}"
    if path.is_dir():
        return f"{path} is a directory, not a plan file"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty"
    if max_bytes and size > max_bytes:
        return f"{path} is {size} bytes; the server accepts at most {max_bytes}"
    return None


def _read_plan(raw: str) -> str:
    return Path(raw).expanduser().read_text(encoding="utf-8", errors="replace")


class PlanFile(Validator):
    """Validates a plan path as it is typed: exists, is a file, readable, not too large."""

    def __init__(self, max_bytes: int | None = None) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def validate(self, value: str) -> ValidationResult:
        problem = check_plan_path(value, self.max_bytes)
        return self.failure(problem, value) if problem else self.success()


@dataclass(frozen=True)
class Form:
    """The dialog's fields, read and checked (``problem`` names the first bad one)."""

    spec: TestCreate | None
    problem: str | None


def parse_properties(text: str) -> tuple[dict[str, str], str | None]:
    """``key=value`` pairs separated by spaces, or the first malformed one."""
    properties: dict[str, str] = {}
    for pair in text.split():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return {}, f"Properties: expected key=value, got {pair!r}"
        properties[key] = value
    return properties, None


def _positive(text: str, what: str, required: bool) -> tuple[int | None, str | None]:
    raw = text.strip()
    if not raw:
        return None, (f"{what} is required" if required else None)
    try:
        value = int(raw)
    except ValueError:
        return None, f"{what} must be a whole number, got {raw!r}"
    if value < 1:
        return None, f"{what} must be at least 1"
    return value, None


class LaunchScreen(ModalScreen[str | None]):
    """Dismisses with the launched test's id, or None when cancelled."""

    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+r", "preview", "Preview"),
        Binding("ctrl+l", "launch", "Launch"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._previewed: TestCreate | None = None

    @property
    def octo(self) -> OctoApp:
        return cast("OctoApp", self.app)

    def compose(self) -> ComposeResult:
        info = self.octo.info
        providers = self.octo.providers
        options = [(p.name, p.id) for p in providers]
        default = next((p.id for p in providers if p.name == "local"), options[0][1] if options else Select.NULL)
        with Vertical(id="dialog", classes="launch"):
            yield Label("Launch a test", classes="title")
            with Vertical(id="launch-form"):
                with Horizontal(classes="field"):
                    yield Label("Plan file")
                    yield Input(
                        placeholder="path/to/plan.jmx",
                        id="plan",
                        compact=True,
                        validators=[PlanFile(info.max_plan_bytes if info else None)],
                        validate_on=["changed", "submitted"],
                    )
                with Horizontal(classes="field"):
                    yield Label("Name")
                    yield Input(placeholder="defaults to the plan's file name", id="name", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Provider")
                    yield Select(options, value=default, id="provider", compact=True, allow_blank=not options)
                with Horizontal(classes="field"):
                    yield Label("Locations")
                    yield Input(placeholder="all, or paris,us-east", id="locations", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Containers")
                    yield Input("1", id="containers", type="integer", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Users")
                    yield Input("10", id="users", type="integer", compact=True, placeholder="per container")
                with Horizontal(classes="field"):
                    yield Label("Duration s")
                    yield Input("60", id="duration", type="integer", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Properties")
                    yield Input(placeholder="key=value … (JMeter -J properties)", id="properties", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Image")
                    yield Input(placeholder=info.default_image if info else "server default", id="image", compact=True)
            yield Static("", id="plan-status", markup=False)
            yield Static("enter: preview the placement", id="preview", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Preview ^r", id="do-preview", compact=True)
                yield Button("Launch ^l", id="do-launch", variant="success", compact=True, disabled=True)
                yield Button("Cancel esc", id="do-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#plan", Input).focus()

    # --- reading the form ---------------------------------------------------------------------

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def read_form(self) -> Form:
        """The spec the fields describe (plan text read later), or the first problem."""
        info = self.octo.info
        plan_path = self._value("plan")
        problem = check_plan_path(plan_path, info.max_plan_bytes if info else None)
        if problem:
            return Form(None, f"Plan file: {problem}")
        provider = self.query_one("#provider", Select).value
        if provider is Select.NULL or provider is None:
            return Form(None, "Provider: create a provider first")
        containers, problem = _positive(self._value("containers"), "Containers", True)
        users, problem2 = _positive(self._value("users"), "Users", False)
        duration, problem3 = _positive(self._value("duration"), "Duration", False)
        problem = problem or problem2 or problem3
        if problem:
            return Form(None, problem)
        name = self._value("name").strip() or Path(plan_path.strip()).expanduser().stem
        locations = [x.strip() for x in self._value("locations").split(",") if x.strip()] or None
        image = self._value("image").strip() or None
        properties, problem = parse_properties(self._value("properties"))
        if problem:
            return Form(None, problem)
        try:
            spec = TestCreate(
                name=name,
                plan="<pending/>",  # replaced by the file's text when sent
                provider=str(provider),
                containers=containers or 1,
                locations=locations,
                image=image,
                users=users,
                duration=duration,
                properties=properties,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return Form(None, f"{where.capitalize()}: {first['msg']}")
        return Form(spec, None)

    async def _with_plan(self, spec: TestCreate) -> TestCreate:
        raw = self._value("plan").strip()
        text = await asyncio.to_thread(_read_plan, raw)
        return spec.model_copy(update={"plan": text})

    # --- events -------------------------------------------------------------------------------

    @on(Input.Changed, "#plan")
    def _plan_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        status = self.query_one("#plan-status", Static)
        if result is None or result.is_valid:
            path = Path(event.value.strip()).expanduser()
            status.update(f"✓ {path.name} ({path.stat().st_size} bytes)" if path.is_file() else "")
            status.set_classes("-ok")
        else:
            status.update("✗ " + "; ".join(result.failure_descriptions))
            status.set_classes("-bad")
        self._invalidate()

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self._invalidate()

    def _invalidate(self) -> None:
        if self._previewed is not None:
            form = self.read_form()
            if form.spec != self._previewed:
                self._previewed = None
                self.query_one("#preview", Static).update("the form changed: enter previews again")
        self.query_one("#do-launch", Button).disabled = self._previewed is None

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_preview()

    @on(Button.Pressed, "#do-preview")
    def _preview_pressed(self) -> None:
        self.action_preview()

    @on(Button.Pressed, "#do-launch")
    def _launch_pressed(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#do-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _say(self, text: str, cls: str) -> None:
        preview = self.query_one("#preview", Static)
        preview.update(text)
        preview.set_classes(cls)

    def action_preview(self) -> None:
        form = self.read_form()
        if form.spec is None:
            self._say(form.problem or "check the form", "-bad")
            return
        self._say("asking the server where the containers would go…", "")
        self._run_preview(form.spec)

    @work(group="launch", exclusive=True, exit_on_error=False)
    async def _run_preview(self, spec: TestCreate) -> None:
        try:
            placement = await self.octo.plan_test(await self._with_plan(spec))
        except (ClientError, OSError) as exc:
            self._previewed = None
            self._say(f"✗ {getattr(exc, 'message', exc)}", "-bad")
        else:
            self._previewed = spec
            self._say(placement_text(placement) + "\nctrl+l launches it", "-ok")
        self.query_one("#do-launch", Button).disabled = self._previewed is None

    def action_launch(self) -> None:
        if self._previewed is None:
            self._say("preview first (enter): the placement is shown before anything starts", "-bad")
            return
        self._run_launch(self._previewed)

    @work(group="launch", exclusive=True, exit_on_error=False)
    async def _run_launch(self, spec: TestCreate) -> None:
        self._say("launching…", "")
        try:
            test = await self.octo.create_test(await self._with_plan(spec))
        except (ClientError, OSError) as exc:
            self._say(f"✗ {getattr(exc, 'message', exc)}", "-bad")
            self.notify(str(getattr(exc, "message", exc)), title="Launch refused", severity="error")
            return
        self.notify(f"{test.name}: {len(test.containers)} containers queued", title="Test launched")
        self.dismiss(test.id)


def placement_text(placement: Placement) -> str:
    """One line per agent: where the containers would go."""
    agents = len(placement.items)
    plural = "s" if agents != 1 else ""
    head = f"{placement.containers} containers on {agents} agent{plural} of {placement.provider_name}:"
    lines = [head]
    for item in placement.items[:4]:
        lines.append(f"  {item.agent_name} ({item.location}): {item.containers}")
    if len(placement.items) > 4:
        rest = sum(i.containers for i in placement.items[4:])
        lines.append(f"  … {len(placement.items) - 4} more agents: {rest}")
    return "\n".join(lines)
