"""The launch dialog's fields: inputs that run their keys in the order typed and keep a whole paste,
the validators that check them as they are typed, and the answer under them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from textual import events
from textual.validation import ValidationResult, Validator
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Static

from octotui.tui.forms import check_plan_path, parse_count


@runtime_checkable
class PasteTarget(Protocol):
    """A screen that takes the rest of a paste into the fields after the one pasted into."""

    def paste_on(self, source: Input, parts: list[str]) -> None: ...


if TYPE_CHECKING:
    _Field = Widget
else:  # a mixin, not a Widget: a second Widget base would stand in the CSS names and component classes
    _Field = object


class KeysInOrder(_Field):
    """A field that runs its own keys (backspace, arrows, home/end, ctrl+u, space on a checkbox…)
    when it takes them, in the order typed. Textual runs a widget's bindings once the key has
    bubbled up to the app, by which time the characters typed after it were inserted (a backspace
    then deleted the wrong one) or a Tab had moved the focus (the key then acted on another field)."""

    async def _on_key(self, event: events.Key) -> None:
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()  # not again by the widget's own handler
                return


class FormCheckbox(KeysInOrder, Checkbox):
    """The dialog's checkbox, with its keys in order (see :class:`KeysInOrder`)."""


class FormInput(KeysInOrder, Input):
    """A field of the dialog that keeps every character of a paste: a tab (or a line break) in it
    goes on in the next field, as typed tabs do; in ``multi`` fields (the criteria) a line break
    separates entries instead (``;``). Textual's own Input keeps the first line of a paste only."""

    def __init__(self, *args: object, multi: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.multi = multi

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()  # not Input's own, which drops all but the first line
        text = event.text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
        split = text.split("\t") if self.multi else re.split(r"[\t\n]", text)
        parts = [re.sub(r"\n+", "; ", part) for part in split]
        self._insert(parts[0])
        if len(parts) > 1 and isinstance(self.screen, PasteTarget):
            self.screen.paste_on(self, parts[1:])

    def _insert(self, text: str) -> None:
        if self.selection.is_empty:
            self.insert_text_at_cursor(text)
        else:
            self.replace(text, *self.selection)


class PlanFile(Validator):
    """Validates a plan path as it is typed: exists, is a file, readable, not too large."""

    def __init__(self, max_bytes: int | None = None, server_label: str | None = None) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        #: What the field reads when the plan is an earlier test's, from the server: no path to check.
        self.server_label = server_label

    def validate(self, value: str) -> ValidationResult:
        if self.server_label is not None and value.strip() == self.server_label:
            return self.success()
        problem = check_plan_path(value, self.max_bytes)
        return self.failure(problem, value) if problem else self.success()


class WholeNumber(Validator):
    """A count field of the dialog, checked as it is typed (see :data:`~octotui.tui.forms.LIMITS`)."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        _, problem = parse_count(value, self.field)
        return self.failure(problem, value) if problem else self.success()


class Answer(Static):
    """The dialog's answer under the fields (a placement, a refusal). The form scrolls and is no tab
    stop: at 80x24 the answer lies below the fields, so it is brought into view once laid out at its
    new height (``scroll_visible`` on update alone scrolled to its old height)."""

    shown = False

    def on_resize(self) -> None:
        if self.shown:
            self.scroll_visible(animate=False)
