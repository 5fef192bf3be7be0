"""Keys in turn: the app hands out the next key (or paste) only once the previous one was handled
everywhere it went, and a screen it opened is mounted and focused (see :class:`KeysInTurn`)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from textual import events
from textual.app import App
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker


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


class KeysInTurn(App[int]):
    """An app whose keys are handled one after the other (the dashboard's base, before its state)."""

    def __init__(self) -> None:
        super().__init__()
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
