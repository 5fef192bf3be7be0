"""Every key of every screen, on one page."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]Everywhere[/b] (read-only mode hides every key that changes something)
  ?          this help              escape   back / close
  ctrl+p     command palette        tab      next table
  o          cycle the sort column  home/end first / last row
  q          quit (asks first)      :        command line (tab completes)
[b]Main screen[/b]: enter opens the agent, test or provider under the cursor
  /          filter agents          space    mark a row (esc unmarks all)
  a / p / t  agents/providers/tests D / U    drain / undrain marked
  l          launch a test          s        stop the selected test
  d / u      distribution / audit   del      remove agent / ended test
[b]Providers table[/b] (p)
  i / enter  the lines that install an agent; c copies one
  n          new provider           r        rename
  del        delete (asks first)    k        new token (asks first)
[b]Test screen[/b]: c l e m b  containers, labels, errors, CPU+mem, baseline
  s / x      stop test / container  X        stop the marked containers
  R / E      re-run / edit a copy   del      delete it once ended
  /          filter labels, errors  tab      the summary: pgdn/end
[b]Monitors[/b] (:monitors): enter charts (m more), tab alarms; M in a test
  n / e      add / edit (ctrl+s)    del      delete (asks first)
[b]Launch dialog[/b]: plan, where, how many, how long, files, criteria
  enter      preview the placement  ctrl+l   launch it"""


class HelpScreen(ModalScreen[None]):
    """Keys of the dashboard; any of escape, q, ? closes it."""

    BINDINGS: ClassVar = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="help"):
            yield Static(HELP, id="help-text")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
