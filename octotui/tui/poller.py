"""The one loop that fetches everything the dashboard shows and posts it as messages.

Agents, providers and tests come from the server's change feed (``GET /changes``): only what
changed since the previous round, folded into a :class:`~octotui.client.Mirror`, and only changed
lists are posted. A server without the feed (404) gets the full listings every round instead.

One long-lived coroutine, run by one worker the app owns: it fetches, posts, then sleeps (or is
woken early). It never raises: a lost server becomes a :class:`~octotui.tui.messages.ServerUnreachable`
message and a retry with backoff, so the app survives any network failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import Callable

from textual.message import Message

from octotui.client import Client, ClientError, Mirror
from octotui.client import ServerUnreachable as Unreachable
from octotui.protocol import AgentMetrics, HostSample
from octotui.tui import messages

log = logging.getLogger(__name__)

#: How far back the agent detail screen's charts reach.
METRICS_WINDOW_S = 300.0
#: Backoff cap while the server is unreachable: short, so the dashboard recovers quickly.
MAX_RETRY_S = 5.0
#: Retry period while the server refuses the token (401): retrying cannot help until the token is
#: made again, so only slowly, in case it is.
TOKEN_RETRY_S = 30.0
#: How often the server's own description (thresholds, role) is fetched again.
INFO_EVERY_S = 30.0
#: Freezing the long-lived heap keeps full collections short as DataTable caches grow (DESIGN.md).
GC_FREEZE_EVERY_S = 30.0


#: The dashboard follows every live test and this many of the newest ended ones: the history can
#: grow for months, and the whole of it every second would grow the poll with it.
ENDED_TESTS_SHOWN = 100
#: After an action the dashboard polls every HURRY_PERIOD_S for HURRY_S seconds.
HURRY_S = 3.0
HURRY_PERIOD_S = 0.25


class Poller:
    """Fetches agents, providers, tests and server info every ``refresh`` seconds.

    ``agent_id`` / ``test_id`` name what an open detail screen needs besides; set them and call
    :meth:`wake` to fetch at once.
    """

    def __init__(self, client: Client, refresh: float, post: Callable[[Message], object]) -> None:
        self.client = client
        self.refresh = refresh
        self.post = post
        self.agent_id: str | None = None
        self.test_id: str | None = None
        self.audit = False
        self._wake = asyncio.Event()
        self._hurry_until = 0.0
        self._samples: deque[HostSample] = deque(maxlen=int(METRICS_WINDOW_S * 2))
        self._samples_of: str | None = None
        self._info_at = 0.0
        self._lost = True
        self.rounds = 0
        #: The server's state as the change feed keeps it; ``feed`` False: the server has none.
        self.mirror = Mirror(ended=ENDED_TESTS_SHOWN)
        self.feed: bool | None = None
        self._next_client: Client | None = None

    def use(self, client: Client) -> None:
        """Talk to ``client`` from the next round on (the embedded server moved to another port);
        the old client is closed between rounds, never under a request in flight."""
        self._next_client = client
        self.wake()

    def wake(self) -> None:
        """Fetch now instead of at the end of the current sleep, then quickly for a few seconds:
        after an action (launch, stop) its effect shows as soon as the server has it, not a
        whole refresh period later."""
        self._hurry_until = time.monotonic() + HURRY_S
        self._wake.set()

    async def run(self) -> None:
        """Loop forever; cancelled when the app exits."""
        retry = self.refresh
        last_freeze = time.monotonic()
        while True:
            if self._next_client is not None:
                old, self.client, self._next_client = self.client, self._next_client, None
                await old.aclose()
            started = time.monotonic()
            slow = False
            try:
                await self.round()
            except Unreachable as exc:
                self._lost = True
                self.post(messages.ServerUnreachable(exc.message, retry))
                delay, retry = retry, min(retry * 2, MAX_RETRY_S)
            except ClientError as exc:
                self._lost = True
                slow = exc.status == 401  # the token: retrying soon cannot help
                delay, retry = (TOKEN_RETRY_S, retry) if slow else (retry, min(retry * 2, MAX_RETRY_S))
                self.post(messages.ServerRefused(exc.message, exc.status, delay))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must show, not kill the dashboard
                log.exception("poll round failed")
                self.post(messages.ServerRefused(f"{type(exc).__name__}: {exc}", None, retry))
                delay, retry = retry, min(retry * 2, MAX_RETRY_S)
            else:
                # A fixed rate, not a fixed pause: a slow round must not stretch the period.
                delay, retry = max(0.0, self.refresh - (time.monotonic() - started)), self.refresh
            if time.monotonic() - last_freeze > GC_FREEZE_EVERY_S:
                gc.freeze()
                last_freeze = time.monotonic()
            if time.monotonic() < self._hurry_until and not slow:
                delay = min(delay, HURRY_PERIOD_S)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def round(self) -> None:
        """One fetch of everything; raises :class:`ClientError` on any failure."""
        now = time.monotonic()
        if self._lost or now - self._info_at > INFO_EVERY_S:
            self.post(messages.InfoUpdated(await self.client.info()))
            self._info_at = now
            if self._lost and self.feed is False:
                self.feed = None  # the server may have been upgraded meanwhile: ask again
        if self.feed is not False and await self._follow_feed():
            self.feed = True
        else:
            agents, providers, tests = await asyncio.gather(
                self.client.agents(), self.client.providers(), self.client.tests(ended=ENDED_TESTS_SHOWN)
            )
            self.post(messages.ProvidersUpdated(providers))
            self.post(messages.AgentsUpdated(agents))
            self.post(messages.TestsUpdated(tests))
        agent_id, test_id = self.agent_id, self.test_id
        if agent_id is not None:
            self.post(messages.AgentMetricsUpdated(await self._metrics(agent_id)))
        if test_id is not None:
            held = self.mirror.test(test_id) if self.feed else None
            # Per-label figures and errors at the detail's cadence, for the open test only; a server
            # without them answers 404, which the client turns into None (shown as "none kept").
            client = self.client
            try:
                if held is not None:
                    test = held
                    series, labels, errors = await asyncio.gather(
                        client.test_series(test_id), client.labels(test_id), client.errors(test_id)
                    )
                else:
                    test, series, labels, errors = await asyncio.gather(
                        client.test(test_id),
                        client.test_series(test_id),
                        client.labels(test_id),
                        client.errors(test_id),
                    )
            except Unreachable:
                raise
            except ClientError as exc:
                # The open test was deleted (by this dashboard or another): the rest of the round
                # still counts; its screen hears of it from the tests list.
                if exc.status != 404:
                    raise
            else:
                self.post(messages.TestDetailUpdated(test, series))
                self.post(messages.TestLabelsUpdated(test_id, labels, errors))
        if self.audit:
            self.post(await self._audit())
        recovered = self._lost and self.rounds > 0
        self._lost = False
        self.rounds += 1
        self.post(messages.ServerReached(time.time(), recovered))

    async def _follow_feed(self) -> bool:
        """Take what changed since the last round and post only that; False when the server has
        no change feed (an older server: 404), so the round fetches the full listings instead."""
        mirror = self.mirror
        try:
            changes = await self.client.changes(mirror.revision, mirror.epoch, ENDED_TESTS_SHOWN)
        except Unreachable:
            raise
        except ClientError as exc:
            if exc.status not in (404, 405):
                raise
            log.info("the server has no change feed (%s): polling the full listings", exc.status)
            self.feed = False
            return False
        applied = mirror.apply(changes)
        full = applied.full
        if full or applied.providers:
            self.post(messages.ProvidersUpdated(mirror.providers))
        if full or applied.agents:
            self.post(messages.AgentsUpdated(mirror.agents, None if full else frozenset(applied.agents)))
        if full or applied.tests:
            self.post(messages.TestsUpdated(mirror.tests, None if full else frozenset(applied.tests)))
        return True

    async def _audit(self) -> messages.AuditUpdated:
        # A server without an audit log (or one that refuses this token) must not stop the
        # rest of the dashboard: the audit screen says why instead.
        fetch = getattr(self.client, "audit", None)
        if fetch is None:
            return messages.AuditUpdated([], "this dashboard's client has no audit call yet")
        try:
            return messages.AuditUpdated(list(await fetch()))
        except Unreachable:
            raise
        except ClientError as exc:
            return messages.AuditUpdated([], exc.message)

    async def _metrics(self, agent_id: str) -> AgentMetrics:
        # The whole window once, then only the last few seconds merged in: a full window of
        # samples every second would be most of the dashboard's traffic.
        if self._samples_of != agent_id or not self._samples:
            self._samples.clear()
            self._samples_of = agent_id
            fresh = await self.client.agent_metrics(agent_id, seconds=METRICS_WINDOW_S)
        else:
            fresh = await self.client.agent_metrics(agent_id, seconds=max(5.0, self.refresh * 5))
        last = self._samples[-1].ts if self._samples else float("-inf")
        self._samples.extend(s for s in fresh.samples if s.ts > last)
        horizon = (self._samples[-1].ts if self._samples else 0.0) - METRICS_WINDOW_S
        while self._samples and self._samples[0].ts < horizon:
            self._samples.popleft()
        return AgentMetrics(agent_id=agent_id, samples=list(self._samples))
