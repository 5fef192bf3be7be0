"""The launch dialog: a plan file and where to run it; the placement is previewed before launch.
Opened from an earlier test, it starts filled with that test's settings and its plan as the server
keeps it (the plan field then names that plan instead of a path).

What the fields accept, and how they become a ``TestCreate``, is :mod:`octotui.tui.forms`'s; the
field widgets (keys in order, whole pastes, checks as typed) are :mod:`~octotui.tui.screens.launchfields`'.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from octotui.client import ClientError, ServerUnreachable
from octotui.protocol import TestCreate, TestFile
from octotui.tui.actions import not_sent
from octotui.tui.dashboard import DashboardApp
from octotui.tui.format import human_size, plural
from octotui.tui.forms import (
    LIMITS,
    MAYBE_STARTED,
    REMEMBERED,
    FileChoice,
    Form,
    ServerPlan,
    criteria_problem,
    files_summary,
    parse_count,
    placement_text,
    plan_label,
    read_launch_form,
    read_plan,
    split_criteria,
)
from octotui.tui.screens.launchfields import Answer, FormCheckbox, FormInput, PlanFile, WholeNumber

#: The launch form's text fields, read into :func:`~octotui.tui.forms.read_launch_form`.
FIELDS = (
    "plan",
    "name",
    "locations",
    "containers",
    "users",
    "duration",
    "rampup",
    "properties",
    "image",
    "files",
    "criteria",
    "monitors",
)


class LaunchScreen(ModalScreen[str | None]):
    """Dismisses with the launched test's id, or None when cancelled."""

    # The criteria's note as the plan's, under its field (the app's stylesheet styles the plan's).
    CSS = """
    LaunchScreen #criteria-status { padding: 0 0 0 17; height: auto; color: $text-muted; }
    LaunchScreen #criteria-status.-bad { color: $error; }
    """
    BINDINGS: ClassVar = [
        # Priority: taken when the terminal delivers the key, not after the keys typed before it
        # reached their field. Textual's own tab binding waits for the key to bubble up from the
        # focused field, and the keys typed after it (tmux send-keys, a paste without brackets,
        # fast typing over ssh) went to the field being left meanwhile.
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+r", "preview", "Preview"),
        Binding("ctrl+l", "launch", "Launch"),
    ]

    def __init__(
        self,
        *,
        fields: dict[str, str] | None = None,
        provider: str | None = None,
        server_plan: ServerPlan | None = None,
    ) -> None:
        """``fields``, ``provider``, ``server_plan``: start filled with an earlier test's settings
        (see :func:`~octotui.tui.forms.prefill_fields`) instead of the last launch's."""
        super().__init__()
        self.fields = fields
        self.provider = provider
        self.server_plan = server_plan
        self._previewed: TestCreate | None = None
        #: The local files of the previewed launch: uploaded only when it is launched.
        self._previewed_files: tuple[FileChoice, ...] = ()
        self._count_problem = False
        #: A launch sent without an answer and its idempotency key: the same launch sent again
        #: goes with the same key, so the server answers with the test it may have made (and with
        #: the files uploaded for it, as sent: not uploaded twice).
        self._unanswered: tuple[TestCreate, tuple[FileChoice, ...], str, TestCreate] | None = None
        #: A launch is on its way: previews and launches wait for its answer (a new one would
        #: cancel it mid-request).
        self._launching = False

    app = getters.app(DashboardApp)

    def compose(self) -> ComposeResult:
        info = self.app.info
        providers = self.app.providers
        last = self.fields if self.fields is not None else self.app.last_launch
        options = [(p.name, p.id) for p in providers]
        default = next((p.id for p in providers if p.name == "local"), options[0][1] if options else Select.NULL)
        if last.get("provider") in {p.id for p in providers}:
            default = last["provider"]
        if self.provider in {p.id for p in providers}:
            default = str(self.provider)
        server_label = self.server_plan.label if self.server_plan else None

        def field(label: str, widget: Input | Select[str] | Checkbox) -> Horizontal:
            return Horizontal(Label(label), widget, classes="field")

        def text(name: str, value: str = "", **kwargs: object) -> Input:
            return FormInput(last.get(name, value), id=name, compact=True, **kwargs)  # type: ignore[arg-type]

        def count(name: str, value: str = "", **kwargs: object) -> Input:
            # Not type="integer": it drops what is not a digit, so "2.5" would become 25.
            return text(name, value, validators=[WholeNumber(name)], classes="count", **kwargs)

        with Vertical(id="dialog", classes="launch"):
            title = f"Launch a test like {self.server_plan.name}" if self.server_plan else "Launch a test"
            yield Label(title, classes="title", markup=False)
            with VerticalScroll(id="launch-form", can_focus=False):
                yield field(
                    "Plan file",
                    text(
                        "plan",
                        placeholder="path/to/plan.jmx",
                        validators=[PlanFile(info.max_plan_bytes if info else None, server_label)],
                        validate_on=["changed", "submitted"],
                    ),
                )
                yield Static("", id="plan-status", markup=False)
                name = (self.fields or {}).get("name", "")
                yield field(
                    "Name", FormInput(name, placeholder="defaults to the plan's file name", id="name", compact=True)
                )
                provider = Select(options, value=default, id="provider", compact=True, allow_blank=not options)
                yield field("Provider", provider)
                yield field("Locations", text("locations", placeholder="all, or paris,us-east"))
                yield field("Containers", count("containers", "1"))
                yield field("Users/container", count("users", "10", placeholder="threads per container"))
                yield field("Duration (s)", count("duration", "60"))
                yield field("Ramp-up (s)", count("rampup", placeholder="JMeter's default"))
                yield field("Properties", text("properties", placeholder="key=value, … (JMeter -J properties)"))
                yield field("Image", text("image", placeholder=info.default_image if info else "server default"))
                yield field("Files", text("files", placeholder="data.csv:split:header, other.txt"))
                yield field("Criteria", text("criteria", placeholder="e.g. p95<500ms; errors<1%", multi=True))
                yield Static("", id="criteria-status", markup=False)
                yield field("Monitors", text("monitors", placeholder="monitor names, comma-separated"))
                stop = last.get("stop_on_critical", "") == "yes"
                yield field(
                    "", FormCheckbox("stop the test on a critical alarm", stop, id="stop_on_critical", compact=True)
                )
                yield Answer("enter: preview the placement", id="preview", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Preview ^r", id="do-preview", compact=True)
                yield Button("Launch ^l", id="do-launch", variant="success", compact=True, disabled=True)
                yield Button("Cancel esc", id="do-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#criteria-status").display = False
        plan = self.query_one("#plan", Input)
        plan.focus()
        plan.cursor_position = len(plan.value)
        if self._from_server():
            self._plan_note(f"{self._plan_file()}: enter checks the plan", "")

    # --- reading the form ---------------------------------------------------------------------

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def read_form(self) -> Form:
        """The spec the fields describe (plan text read later), or the first problem."""
        info = self.app.info
        provider = self.query_one("#provider", Select).value
        chosen = None if provider is Select.NULL or provider is None else str(provider)
        fields = {name: self._value(name) for name in FIELDS}
        fields["stop_on_critical"] = "yes" if self.query_one("#stop_on_critical", Checkbox).value else ""
        return read_launch_form(fields, chosen, info.max_plan_bytes if info else None, self.server_plan)

    def _from_server(self) -> bool:
        """True while the plan field names the earlier test's plan (kept by the server)."""
        return self.server_plan is not None and self._value("plan").strip() == self.server_plan.label

    async def _with_plan(self, spec: TestCreate) -> TestCreate:
        if self.server_plan is not None and self._from_server():
            return spec.model_copy(update={"plan": self.server_plan.text})
        text = await asyncio.to_thread(read_plan, self._value("plan"))
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
        if self.server_plan is not None and self._from_server():
            return f"{self.server_plan.label}, {human_size(len(self.server_plan.text.encode()))}"
        return plan_label(self._value("plan"))

    def _plan_note(self, text: str, cls: str) -> None:
        status = self.query_one("#plan-status", Static)
        status.update(text)
        status.set_classes(cls)

    @on(Input.Changed, "#criteria")
    def _criteria_changed(self) -> None:
        self._criteria_note("", "")

    def _criteria_note(self, text: str, cls: str) -> None:
        status = self.query_one("#criteria-status", Static)
        status.update(text)
        status.set_classes(cls)
        status.display = bool(text)

    def _refused(self, message: str, criteria: list[str]) -> None:
        """A refusal naming the criteria shows on their field too (every value stays as typed)."""
        if (problem := criteria_problem(message, criteria)) is not None:
            self._criteria_note(f"✗ {problem}", "-bad")

    def paste_on(self, source: Input, parts: list[str]) -> None:
        """The rest of a paste into ``source`` after a tab or line break: each part in the next
        field, as tabs and typing would put it (replacing what it held); the last one keeps the focus."""
        chain = self.focus_chain
        at = chain.index(source) if source in chain else -1
        target: object = source
        for part in parts:
            at += 1
            if at >= len(chain):
                break
            target = chain[at]
            if isinstance(target, Input):
                target.value = part
                target.cursor_position = len(part)
            elif isinstance(target, Select):
                match = next((v for label, v in self._providers() if label.lower() == part.strip().lower()), None)
                if match is not None:
                    target.value = match
            elif isinstance(target, Checkbox):
                target.value = part.strip().lower() in ("y", "yes", "x", "true", "1", "on")
        if isinstance(target, Input) and target is not source:
            # Its focus event would select what was just pasted, and the next key replace it.
            target.select_on_focus = False
            self.set_focus(target)
            target.call_later(setattr, target, "select_on_focus", True)
        elif target is not source and isinstance(target, Select | Checkbox):
            self.set_focus(target)

    def _providers(self) -> list[tuple[str, str]]:
        return [(p.name, p.id) for p in self.app.providers]

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Input.Changed | Select.Changed | Checkbox.Changed) -> None:
        self._invalidate()
        if isinstance(event, Input.Changed) and event.input.has_class("count"):
            counts = (parse_count(self._value(f), f)[1] for f in LIMITS)
            problem = next((p for p in counts if p), None)
            if problem:
                self._say(f"✗ {problem}", "-bad", show=False)
            elif self._count_problem:
                self._say("enter: preview the placement", "", show=False)
            self._count_problem = problem is not None

    def _invalidate(self) -> None:
        if self._previewed is not None:
            form = self.read_form()
            if form.spec != self._previewed or form.files != self._previewed_files:
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

    def _say(self, text: str, cls: str, *, show: bool = True) -> None:
        """The dialog's answer, under the fields; ``show``: brought into view (not while typing)."""
        preview = self.query_one("#preview", Answer)
        preview.update(text)
        preview.set_classes(cls)
        preview.shown = show
        if show:
            preview.scroll_visible(animate=False)

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
            self._refused(form.problem or "", split_criteria(self._value("criteria")))
            return
        self._say("asking the server where the containers would go…", "")
        self._run_preview(form.spec, form.files)

    @work(group="launch", exclusive=True, exit_on_error=False)
    async def _run_preview(self, spec: TestCreate, files: tuple[FileChoice, ...]) -> None:
        plan = self._value("plan")
        try:
            placement = await self.app.actions.plan_test(await self._with_plan(spec))
        except (ClientError, OSError) as exc:
            self._previewed = None
            message = str(getattr(exc, "message", exc))
            self._say(f"✗ {message}", "-bad")
            self._refused(message, spec.criteria)
            if self._value("plan") == plan and message.startswith(("invalid plan", "the plan ")):
                self._plan_note(f"✗ {message}", "-bad")
        else:
            if self._value("plan") == plan:
                self._plan_note(f"✓ {self._plan_file()}: a JMeter plan", "-ok")
            self._previewed, self._previewed_files = spec, files
            notes = [f"⚠ {w}" for w in self.read_form().warnings]
            if files:  # uploaded at launch only: the server checks a split against the containers then
                notes.append(files_summary(files))
            text = "\n".join([placement_text(placement, spec.users), *notes, "ctrl+l launches it"])
            self._say(text, "-ok")
        self.query_one("#do-launch", Button).disabled = self._previewed is None

    def action_launch(self) -> None:
        if self._busy():
            return
        if self._previewed is None:
            self._say("preview first (enter): the placement is shown before anything starts", "-bad")
            return
        self._run_launch(self._previewed, self._previewed_files)

    @work(group="launch", exclusive=True, exit_on_error=False)
    async def _run_launch(self, spec: TestCreate, files: tuple[FileChoice, ...]) -> None:
        self._launching = True
        try:
            await self._launch(spec, files)
        finally:
            self._launching = False

    async def _sendable(self, spec: TestCreate, files: tuple[FileChoice, ...]) -> tuple[TestCreate, list[TestFile]]:
        """``spec`` with its plan read and ``files`` uploaded (the entries that bring them)."""
        sent = await self._with_plan(spec)
        uploaded = await self.app.actions.upload_files(files, lambda text: self._say(text, "")) if files else []
        return sent.model_copy(update={"files": [*sent.files, *uploaded]}), uploaded

    async def _launch(self, spec: TestCreate, files: tuple[FileChoice, ...]) -> None:
        self._say("launching…", "")
        # The same launch as one without an answer goes with its key (kept until an answer says
        # what became of it) and its files as uploaded: the server then answers with the test it
        # may have made.
        unanswered = self._unanswered
        uploaded: list[TestFile] = []
        if unanswered is not None and unanswered[:2] == (spec, files):
            key, sent = unanswered[2], unanswered[3]
        else:
            key = f"launch-{uuid.uuid4().hex}"
            try:
                sent, uploaded = await self._sendable(spec, files)
            except (ClientError, OSError) as exc:
                message = str(getattr(exc, "message", exc))
                self._say(f"✗ {message}: nothing was launched", "-bad")
                self.notify(message, title="Cannot upload the files", severity="error")
                return
            self._say("launching…", "")
        try:
            test = await self.app.actions.create_test(sent, idempotency_key=key)
        except ServerUnreachable as exc:
            if not_sent(exc):
                self.app.actions.drop_files([f.id for f in uploaded])
                text = f"✗ {exc.message}: nothing was sent"
                self._say(f"{text}\n{MAYBE_STARTED}" if unanswered else f"{text}, nothing was launched", "-bad")
                self.notify(exc.message, title="Server unreachable", severity="error")
                return
            # The server may have made the test before the answer was lost: launching again
            # could start it twice, so the placement must be previewed (and looked at) again;
            # the same launch then goes with the same key, which the server answers with its test.
            self._unanswered = (spec, files, key, sent)
            self._previewed = None
            self.query_one("#do-launch", Button).disabled = True
            self._say(f"✗ {exc.message}\n{MAYBE_STARTED}", "-bad")
            self.notify(MAYBE_STARTED, title="Launch: no answer", severity="warning")
            return
        except (ClientError, OSError) as exc:
            if isinstance(exc, ClientError) and exc.status != 409:
                self._unanswered = None  # a definite refusal: nothing was made with this key
            # Uploaded for this launch only (a launch sent again brings those of its first try).
            self.app.actions.drop_files([f.id for f in uploaded])
            title = "Launch refused" if isinstance(exc, ClientError) else "Cannot read the plan"
            self._say(f"✗ {getattr(exc, 'message', exc)}", "-bad")
            self._refused(str(getattr(exc, "message", exc)), spec.criteria)
            self.notify(str(getattr(exc, "message", exc)), title=title, severity="error")
            return
        self._unanswered = None
        remembered = [name for name in REMEMBERED if not (name == "plan" and self._from_server())]
        self.app.last_launch = {name: self._value(name) for name in remembered if name in FIELDS} | {
            "provider": str(self.query_one("#provider", Select).value),
            "stop_on_critical": "yes" if self.query_one("#stop_on_critical", Checkbox).value else "",
        }
        self.notify(f"{test.name}: {plural(len(test.containers), 'container')} queued", title="Test launched")
        self.dismiss(test.id)
