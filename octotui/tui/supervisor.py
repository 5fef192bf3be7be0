"""Watching the embedded server and agent that this dashboard started (see :mod:`octotui.embedded`).

When one exits, the supervisor says so with its log and starts it again, at most
:data:`MAX_RESTARTS` times: a child that keeps dying is left down, with its log named, rather than
restarted in a loop. Like the poller, it is one long-lived coroutine run by a worker of the app, and
it reports only by messages (:mod:`octotui.tui.messages`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from textual.message import Message

from octotui.client import Client
from octotui.embedded import Embedded, EmbeddedError
from octotui.tui import messages

#: How many times the embedded server or agent is started again after it exited.
MAX_RESTARTS = 5
#: How long the notices about an embedded child that exited stay up.
EXIT_NOTICE_S = 30.0
#: How often the children are looked at.
CHECK_EVERY_S = 1.0


class Supervisor:
    """Restarts ``embedded``'s exited children; ``token`` is the one the dashboard uses on that
    server, ``provider_tokens`` the registration tokens it holds (a restarted agent registers with
    the latest one of its provider)."""

    def __init__(
        self, embedded: Embedded, token: str, provider_tokens: Mapping[str, str], post: Callable[[Message], object]
    ) -> None:
        self.embedded = embedded
        self.token = token
        self.provider_tokens = provider_tokens
        self.post = post
        self.restarts = 0
        #: Why the children are down ("" while they run).
        self.down = ""
        self._url = embedded.url

    async def run(self) -> None:
        """Loop forever; cancelled when the app exits."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            await self.check()

    async def check(self) -> None:
        """Say which children exited, and start them again unless they exited too often."""
        exited = self.embedded.exited()
        if not exited or (self.down and self.restarts >= MAX_RESTARTS):
            return
        for child in exited:
            self.post(messages.EmbeddedNotice(f"Embedded {child.name} exited", child.describe()))
        server = any(c.name == "server" for c in exited)
        if self.restarts >= MAX_RESTARTS:
            what = "server" if server else "agent"
            self._set_down(f"embedded {what} exited {self.restarts + 1} times: not restarted · q quits")
            return
        if server:
            self._set_down("embedded server exited: starting it again…")
        self.restarts += 1
        await self.restart(" and ".join(c.name for c in exited))

    async def restart(self, which: str) -> None:
        """Start the exited children again (in a thread: it waits for the server to answer)."""
        embedded = self.embedded
        embedded.provider_token = self.provider_tokens.get(embedded.provider_id) or embedded.provider_token
        try:
            await asyncio.to_thread(embedded.restart)
        except (EmbeddedError, OSError) as exc:
            self.restarts = MAX_RESTARTS
            self._set_down(f"embedded {which} could not be started again · q quits")
            self.post(messages.EmbeddedNotice(f"Embedded {which}", str(exc)))
            return
        client = None
        if embedded.url != self._url:
            # Its old port was taken: the server listens elsewhere, and the dashboard follows it.
            self._url = embedded.url
            client = Client(embedded.url, self.token)
        self.down = ""
        self.post(messages.EmbeddedRestarted(which, embedded.url, client))

    def _set_down(self, note: str) -> None:
        self.down = note
        self.post(messages.EmbeddedDown(note))
