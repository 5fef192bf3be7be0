"""How the agent's loops pace themselves against a server that may be away: jittered backoff, the
outage state (logged once per change, waking every loop when the server is back), and the hold of
long polls under a proxy's idle limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from agent.link import CertificateRefused, LinkError

log = logging.getLogger("octotui.agent")

BACKOFF_START = 1.0
BACKOFF_CAP = 60.0
#: Polls kept under a proxy's idle limit before one probes a longer hold.
_IDLE_PROBE_EVERY = 5


def backoff_delay(attempt: int, start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> float:
    """Jittered exponential backoff: between half and all of ``start * 2**attempt``, capped near ``cap``."""
    ceiling = min(cap, start * (2 ** min(attempt, 16)))
    return random.uniform(ceiling / 2, ceiling)


class Reachability:
    """Whether the server answers, shared by the agent's loops; each change is logged once."""

    def __init__(self, server: str) -> None:
        self.server = server
        #: None until the first call, then whether the last one got an answer.
        self.reachable: bool | None = None
        #: The server's offline threshold (s), learnt from /info.
        self.offline_after = 30.0
        self._logged = False
        self._since: float | None = None
        self._back = asyncio.Event()

    def reached(self) -> None:
        """The server answered."""
        if self.reachable is False:
            log.info("reconnected to %s", self.server)
            # wake the other loops out of their backoff: the server is back, no need to wait more
            self._back.set()
            self._back = asyncio.Event()
        self.reachable = True
        self._logged = False
        self._since = None

    def unreached(self, exc: LinkError, delay: float) -> None:
        """A call failed with ``exc``; the caller tries again in ``delay`` s."""
        if self._since is None:
            self._since = time.monotonic()
        # a certificate failure says what to do itself; anything else is an outage
        message = (
            "%s: retrying in %.0f s"
            if isinstance(exc, CertificateRefused)
            else "server unreachable (%s): retrying in %.0f s"
        )
        if not self._logged:
            log.warning(message, exc, delay)
            self._logged = True
        else:
            log.debug(message, exc, delay)
        self.reachable = False

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if another loop reaches the server again meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._back.wait(), timeout=delay)

    def beat_retry_delay(self, attempt: int, heartbeat_interval: float) -> float:
        """How long a failed heartbeat waits before the next try.

        While the outage is younger than the server's offline threshold, the agent keeps its
        heartbeat rate (jittered), so that a short drop does not make it go offline with its
        containers; a longer outage backs off exponentially.
        """
        delay = backoff_delay(attempt)
        if self._since is None or time.monotonic() - self._since < self.offline_after:
            delay = min(delay, heartbeat_interval * random.uniform(0.5, 1.0))
        return delay


class IdleLimit:
    """How long to hold a long poll when a proxy on the way closes idle connections.

    A poll it cuts while held open says so, and later polls then stay under that idle limit instead
    of escalating a backoff meant for outages. Every few polls one is held a little longer, to
    notice a limit that grew or went away.
    """

    def __init__(self) -> None:
        self.cap: float | None = None
        self._under_cap = 0

    def wait(self, poll_timeout: float) -> float:
        """How long the next poll asks the server to hold it."""
        wait = poll_timeout * random.uniform(0.7, 1.0)
        if self.cap is not None:
            if self._under_cap >= _IDLE_PROBE_EVERY:
                self.cap, self._under_cap = self.cap * 2, 0
                if self.cap >= poll_timeout:
                    self.cap = None
            if self.cap is not None:
                wait = min(wait, self.cap)
        return wait

    def cut(self, held: float) -> bool:
        """A poll was cut after ``held`` s: keep later ones under 70 % of that; True when it is news."""
        noticed = self.cap is None
        self.cap, self._under_cap = max(0.5, held * 0.7), 0
        return noticed

    def answered(self) -> None:
        """A poll got its answer."""
        if self.cap is not None:
            self._under_cap += 1
