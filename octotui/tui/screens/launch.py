"""The launch dialog: a plan file and where to run it; the placement is previewed before launch."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import httpx
from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from octotui.client import ClientError, ServerUnreachable
from octotui.protocol import Placement, TestCreate
from octotui.tui.install import check_location
from octotui.tui.screens.prompt import check_name

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
        return f"{path} is {human_size(size)}; the server accepts at most {human_size(max_bytes)}"
    return None


def human_size(size: int) -> str:
    """``512 bytes``, ``1.3 KiB``, ``28.6 MiB``, ``4 MiB``."""
    if size < 1024:
        return plural(size, "byte")
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if round(value, 1) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


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
    warnings: tuple[str, ...] = ()


_PROPERTY_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
#: Properties that a field of the dialog sets too (the field wins on the server).
FIELD_PROPERTIES = {"users": "Users/container", "duration": "Duration", "rampup": "Ramp-up"}
#: The wire contract's limits, said in words.
LIMITS = {
    "containers": (1, 1000, "Containers", "at most 1000"),
    "users": (1, 100_000, "Users/container", "at most 100000"),
    "duration": (1, 7 * 24 * 3600, "Duration", "at most 7 days (604800 s)"),
    "rampup": (0, 24 * 3600, "Ramp-up", "at most 1 day (86400 s)"),
}


def parse_properties(text: str) -> tuple[dict[str, str], str | None]:
    """``key=value`` pairs separated by spaces or commas, or why the text is not that."""
    if ";" in text:
        return {}, "Properties: separate key=value pairs with spaces or commas, not ';'"
    properties: dict[str, str] = {}
    for pair in re.split(r"[\s,]+", text.strip()):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return {}, f"Properties: expected key=value, got {pair!r}"
        if not _PROPERTY_KEY.match(key):
            return {}, f"Properties: {key!r} is not a property name (letters, digits, '_', '.', '-')"
        if "=" in value:
            return {}, f"Properties: one '=' per pair, got {pair!r} (missing a space or comma?)"
        properties[key] = value
    return properties, None


def property_warnings(properties: dict[str, str], fields: dict[str, int | None]) -> list[str]:
    """Properties that a field of the dialog overrides."""
    warnings = []
    for key, label in FIELD_PROPERTIES.items():
        if key in properties and fields.get(key) is not None:
            warnings.append(f"{key}={properties[key]} in Properties is overridden by {label} ({fields[key]})")
    return warnings


def _count(text: str, field: str, required: bool) -> tuple[int | None, str | None]:
    low, high, what, limit = LIMITS[field]
    raw = text.strip()
    if not raw:
        return None, (f"{what} is required" if required else None)
    try:
        value = int(raw)
    except ValueError:
        return None, f"{what}: a whole number, got {raw!r}"
    if value < low:
        return None, f"{what}: at least {low}"
    if value > high:
        return None, f"{what}: {limit}"
    return value, None


class WholeNumber(Validator):
    """A count field of the dialog, checked as it is typed (see :data:`LIMITS`)."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        _, problem = _count(value, self.field, self.field == "containers")
        return self.failure(problem, value) if problem else self.success()


def plural(n: int, word: str) -> str:
    """``1 container``, ``2 containers``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


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
        self._count_problem = False
        #: A launch sent without an answer and its idempotency key: the same launch sent again
        #: goes with the same key, so the server answers with the test it may have made.
        self._unanswered: tuple[TestCreate, str] | None = None
        #: A launch is on its way: previews and launches wait for its answer (a new one would
        #: cancel it mid-request).
        self._launching = False

    @property
    def octo(self) -> OctoApp:
        return cast("OctoApp", self.app)

    def compose(self) -> ComposeResult:
        info = self.octo.info
        providers = self.octo.providers
        last = self.octo.last_launch
        options = [(p.name, p.id) for p in providers]
        default = next((p.id for p in providers if p.name == "local"), options[0][1] if options else Select.NULL)
        if last.get("provider") in {p.id for p in providers}:
            default = last["provider"]

        def field(label: str, widget: Input | Select[str]) -> Horizontal:
            return Horizontal(Label(label), widget, classes="field")

        def text(name: str, value: str = "", **kwargs: object) -> Input:
            return Input(last.get(name, value), id=name, compact=True, **kwargs)  # type: ignore[arg-type]

        def count(name: str, value: str = "", **kwargs: object) -> Input:
            # Not type="integer": it drops what is not a digit, so "2.5" would become 25.
            return text(name, value, validators=[WholeNumber(name)], classes="count", **kwargs)

        with Vertical(id="dialog", classes="launch"):
            yield Label("Launch a test", classes="title")
            with VerticalScroll(id="launch-form", can_focus=False):
                yield field(
                    "Plan file",
                    text(
                        "plan",
                        placeholder="path/to/plan.jmx",
                        validators=[PlanFile(info.max_plan_bytes if info else None)],
                        validate_on=["changed", "submitted"],
                    ),
                )
                yield Static("", id="plan-status", markup=False)
                yield field("Name", Input(placeholder="defaults to the plan's file name", id="name", compact=True))
                provider = Select(options, value=default, id="provider", compact=True, allow_blank=not options)
                yield field("Provider", provider)
                yield field("Locations", text("locations", placeholder="all, or paris,us-east"))
                yield field("Containers", count("containers", "1"))
                yield field("Users/container", count("users", "10", placeholder="threads per container"))
                yield field("Duration (s)", count("duration", "60"))
                yield field("Ramp-up (s)", count("rampup", placeholder="JMeter's default"))
                yield field("Properties", text("properties", placeholder="key=value, … (JMeter -J properties)"))
                yield field("Image", text("image", placeholder=info.default_image if info else "server default"))
                yield Static("enter: preview the placement", id="preview", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Preview ^r", id="do-preview", compact=True)
                yield Button("Launch ^l", id="do-launch", variant="success", compact=True, disabled=True)
                yield Button("Cancel esc", id="do-cancel", compact=True)

    def on_mount(self) -> None:
        plan = self.query_one("#plan", Input)
        plan.focus()
        plan.cursor_position = len(plan.value)

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
        containers, problem = _count(self._value("containers"), "containers", True)
        users, problem2 = _count(self._value("users"), "users", False)
        duration, problem3 = _count(self._value("duration"), "duration", False)
        rampup, problem4 = _count(self._value("rampup"), "rampup", False)
        problem = problem or problem2 or problem3 or problem4
        if problem:
            return Form(None, problem)
        name = self._value("name").strip() or Path(plan_path.strip()).expanduser().stem
        if problem := check_name(name):
            given = "" if self._value("name").strip() else f" (the plan's file name {name!r})"
            return Form(None, f"Name{given}: {problem}")
        locations = [x.strip() for x in self._value("locations").split(",") if x.strip()] or None
        for location in locations or ():
            if problem := check_location(location):
                return Form(None, f"Locations: {location!r}: {problem}")
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
                rampup=rampup,
                properties=properties,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return Form(None, f"{where.capitalize()}: {first['msg']}")
        warnings = property_warnings(properties, {"users": users, "duration": duration, "rampup": rampup})
        if rampup is not None and duration is not None and rampup > duration:
            warnings.append(f"Ramp-up ({rampup} s) is longer than Duration ({duration} s): not every user starts")
        return Form(spec, None, tuple(warnings))

    async def _with_plan(self, spec: TestCreate) -> TestCreate:
        raw = self._value("plan").strip()
        text = await asyncio.to_thread(_read_plan, raw)
        return spec.model_copy(update={"plan": text})

    # --- events -------------------------------------------------------------------------------

    @on(Input.Changed, "#plan")
    def _plan_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        if result is None or result.is_valid:
            # Only the server says whether the file is a JMeter plan: no tick before its answer.
            self._plan_note(f"{self._plan_file()}: enter checks the plan", "")
        else:
            self._plan_note("✗ " + "; ".join(result.failure_descriptions), "-bad")
        self._invalidate()

    def _plan_file(self) -> str:
        path = Path(self._value("plan").strip()).expanduser()
        return f"{path.name} ({human_size(path.stat().st_size)})" if path.is_file() else path.name

    def _plan_note(self, text: str, cls: str) -> None:
        status = self.query_one("#plan-status", Static)
        status.update(text)
        status.set_classes(cls)

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        self._invalidate()
        if isinstance(event, Input.Changed) and event.input.has_class("count"):
            counts = (_count(self._value(f), f, f == "containers")[1] for f in LIMITS)
            problem = next((p for p in counts if p), None)
            if problem:
                self._say(f"✗ {problem}", "-bad")
            elif self._count_problem:
                self._say("enter: preview the placement", "")
            self._count_problem = problem is not None

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

    def _busy(self) -> bool:
        if self._launching:
            self._say("launching… wait for the server's answer", "")
        return self._launching

    def action_preview(self) -> None:
        if self._busy():
            return
        form = self.read_form()
        if form.spec is None:
            self._say(form.problem or "check the form", "-bad")
            return
        self._say("asking the server where the containers would go…", "")
        self._run_preview(form.spec)

    @work(group="launch", exclusive=True, exit_on_error=False)
    async def _run_preview(self, spec: TestCreate) -> None:
        plan = self._value("plan")
        try:
            placement = await self.octo.plan_test(await self._with_plan(spec))
        except (ClientError, OSError) as exc:
            self._previewed = None
            message = str(getattr(exc, "message", exc))
            self._say(f"✗ {message}", "-bad")
            if self._value("plan") == plan and message.startswith(("invalid plan", "the plan ")):
                self._plan_note(f"✗ {message}", "-bad")
        else:
            if self._value("plan") == plan:
                self._plan_note(f"✓ {self._plan_file()}: a JMeter plan", "-ok")
            self._previewed = spec
            notes = [f"⚠ {w}" for w in self.read_form().warnings]
            text = "\n".join([placement_text(placement, spec.users), *notes, "ctrl+l launches it"])
            self._say(text, "-ok")
        self.query_one("#do-launch", Button).disabled = self._previewed is None

    def action_launch(self) -> None:
        if self._busy():
            return
        if self._previewed is None:
            self._say("preview first (enter): the placement is shown before anything starts", "-bad")
            return
        self._run_launch(self._previewed)

    @work(group="launch", exclusive=True, exit_on_error=False)
    async def _run_launch(self, spec: TestCreate) -> None:
        self._launching = True
        try:
            await self._launch(spec)
        finally:
            self._launching = False

    async def _launch(self, spec: TestCreate) -> None:
        self._say("launching…", "")
        # The same launch as one without an answer goes with its key (kept until an answer says
        # what became of it): the server then answers with the test it may have made.
        unanswered = self._unanswered
        key = unanswered[1] if unanswered is not None and unanswered[0] == spec else f"launch-{uuid.uuid4().hex}"
        try:
            test = await self.octo.create_test(await self._with_plan(spec), idempotency_key=key)
        except ServerUnreachable as exc:
            if not_sent(exc):
                text = f"✗ {exc.message}: nothing was sent"
                self._say(f"{text}\n{MAYBE_STARTED}" if unanswered else f"{text}, nothing was launched", "-bad")
                self.notify(exc.message, title="Server unreachable", severity="error")
                return
            # The server may have made the test before the answer was lost: launching again
            # could start it twice, so the placement must be previewed (and looked at) again;
            # the same launch then goes with the same key, which the server answers with its test.
            self._unanswered = (spec, key)
            self._previewed = None
            self.query_one("#do-launch", Button).disabled = True
            self._say(f"✗ {exc.message}\n{MAYBE_STARTED}", "-bad")
            self.notify(MAYBE_STARTED, title="Launch: no answer", severity="warning")
            return
        except (ClientError, OSError) as exc:
            if isinstance(exc, ClientError) and exc.status != 409:
                self._unanswered = None  # a definite refusal: nothing was made with this key
            title = "Launch refused" if isinstance(exc, ClientError) else "Cannot read the plan"
            self._say(f"✗ {getattr(exc, 'message', exc)}", "-bad")
            self.notify(str(getattr(exc, "message", exc)), title=title, severity="error")
            return
        self._unanswered = None
        self.octo.last_launch = {name: self._value(name) for name in REMEMBERED} | {
            "provider": str(self.query_one("#provider", Select).value)
        }
        self.notify(f"{test.name}: {plural(len(test.containers), 'container')} queued", title="Test launched")
        self.dismiss(test.id)


#: What a launch sent without an answer means.
MAYBE_STARTED = "The test may have started: look at the tests table (escape) before launching again."


def not_sent(exc: ServerUnreachable) -> bool:
    """True when the request never left: no connection could be made."""
    return isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


#: Fields whose values the next launch dialog of the session starts with.
REMEMBERED = ("plan", "locations", "containers", "users", "duration", "rampup", "properties", "image")


def placement_text(placement: Placement, users: int | None = None) -> str:
    """The total load, then one line per agent: where the containers would go."""
    head = f"{plural(placement.containers, 'container')} on {plural(len(placement.items), 'agent')}"
    head += f" of {placement.provider_name}"
    lines = [head]
    if users is not None:
        total = placement.containers * users
        per = f"{plural(placement.containers, 'container')} \N{MULTIPLICATION SIGN} {plural(users, 'user')}"
        lines.append(f"load: {per} = {plural(total, 'user')}")
    for item in placement.items[:4]:
        lines.append(f"  {item.agent_name} ({item.location}): {plural(item.containers, 'container')}")
    if len(placement.items) > 4:
        rest = sum(i.containers for i in placement.items[4:])
        lines.append(f"  … {plural(len(placement.items) - 4, 'more agent')}: {plural(rest, 'container')}")
    return "\n".join(lines)
