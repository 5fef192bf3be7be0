"""Everything the dashboard's screens ask of the server, in one object that the app owns.

Screens never hold the client: they call these methods. A change sent "in the background" runs in
a worker of the app (it outlives the screen that asked), says its outcome in a notification (the
server's reason on refusal), and wakes the poll worker so that its effect shows at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import httpx
from textual.app import App

from octotui.client import Client, ClientError, ServerUnreachable
from octotui.protocol import (
    Alarm,
    Comparison,
    FileInfo,
    Monitor,
    MonitorCreate,
    MonitorUpdate,
    Placement,
    Provider,
    Test,
    TestCreate,
    TestFile,
    TestSeries,
)
from octotui.protocol.monitors import MonitorMetrics, TestMonitors  # not re-exported by the package
from octotui.tui.format import human_size
from octotui.tui.forms import FileChoice, rerun_spec
from octotui.tui.poller import Poller

#: What to do after making a provider: its registration token is shown in this dashboard only.
CREATED_HINT = "i on it shows the lines that install agents, with its token (shown here only)"


def not_sent(exc: ServerUnreachable) -> bool:
    """True when the request never left: no connection could be made."""
    return isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


class Actions:
    """The client calls of the screens; ``app`` runs the background ones and shows their outcome."""

    def __init__(self, app: App[Any], client: Client, poller: Poller) -> None:
        self._app = app
        self.client = client
        self.poller = poller
        #: Registration tokens by provider id, as made or rotated by this dashboard: the server
        #: stores them hashed and shows each only in the answer that made it.
        self.provider_tokens: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        """The address this dashboard reaches the server at: every replica's, comma-separated, when
        it was given several (what an agent's ``--server`` takes, to fail over as the dashboard does)."""
        return ",".join(self.client.servers)

    def use(self, client: Client) -> None:
        """Talk to ``client`` from now on (the embedded server came back on another port)."""
        self.client = client
        self.poller.use(client)

    # --- launching (the launch dialog shows the outcome itself) --------------------------------

    async def plan_test(self, spec: TestCreate) -> Placement:
        """Dry run on the server; raises :class:`ClientError` with the server's message."""
        return await self.client.plan_test(spec)

    async def create_test(self, spec: TestCreate, idempotency_key: str | None = None) -> Test:
        """Launch a test; raises :class:`ClientError` with the server's message.

        ``idempotency_key``: the same launch sent again with it answers with the test the first
        one made (its answer was lost) instead of starting a second.
        """
        test = await self.client.create_test(spec, idempotency_key)
        self.poller.wake()
        return test

    async def upload_files(self, files: tuple[FileChoice, ...], say: Callable[[str], object]) -> list[TestFile]:
        """Upload each of ``files`` (streamed from disk), ``say`` telling which one is on its way: the
        ``TestCreate.files`` entries that bring them. On any failure, or when cancelled, the files
        already uploaded are deleted again (in the background) and the error is raised."""
        uploaded: list[FileInfo] = []
        try:
            for i, choice in enumerate(files, 1):
                say(f"uploading {choice.path.name} ({human_size(choice.size)}, {i}/{len(files)})…")
                uploaded.append(await self.client.upload_file(choice.path))
        except BaseException:
            self.drop_files([f.id for f in uploaded])
            raise
        return [TestFile(id=f.id, split=c.split, header=c.header) for f, c in zip(uploaded, files, strict=True)]

    def drop_files(self, file_ids: list[str]) -> None:
        """Delete files uploaded for a launch that did not happen, in a worker of the app (it
        outlives the dialog); a failure is notified, since the file then stays on the server."""
        if file_ids:
            self._app.run_worker(self._drop(file_ids), group="actions", exit_on_error=False)

    async def _drop(self, file_ids: list[str]) -> None:
        for file_id in file_ids:
            try:
                await self.client.delete_file(file_id)
            except ClientError as exc:
                self._app.notify(f"{file_id}: {exc.message}", title="Cannot delete an uploaded file", severity="error")

    async def compare(self, test_id: str, baseline_id: str) -> Comparison:
        """Each label of ``test_id`` against ``baseline_id``; raises :class:`ClientError`."""
        return await self.client.compare(test_id, baseline_id)

    async def test_series(self, test_id: str, *, label: str | None = None, generators: bool = False) -> TestSeries:
        """A test's whole series, with one ``label``'s or the load ``generators``' CPU and memory;
        raises :class:`ClientError`."""
        return await self.client.test_series(test_id, label=label, generators=generators)

    async def test_plan(self, test_id: str) -> str:
        """The plan a test was launched with, read back from the server; raises :class:`ClientError`."""
        return await self.client.plan(test_id)

    def rerun_test(self, test: Test) -> None:
        """Launch ``test`` again as it was (its plan read back from the server), as a new test with
        a new idempotency key; the outcome is notified."""
        self._app.run_worker(self._rerun(test), group="actions", exit_on_error=False)

    async def _rerun(self, test: Test) -> None:
        try:
            plan = await self.client.plan(test.id)
            made = await self.client.create_test(rerun_spec(test, plan), f"rerun-{uuid.uuid4().hex}")
        except ClientError as exc:
            why = f"the server refused: {exc.message}" if exc.status == 403 else exc.message
            self._app.notify(why, title=f"Cannot re-run {test.name}", severity="error")
            return
        finally:
            self.poller.wake()
        self._app.notify(f"{made.name}: {len(made.containers)} container(s) queued", title="Test re-run")

    # --- changes whose outcome is notified -----------------------------------------------------

    def stop_test(self, test_id: str, name: str) -> None:
        """Ask the server to stop a test."""
        self._background(lambda: self.client.stop_test(test_id), f"Cannot stop {name}", f"Stopping {name}", "Test")

    def stop_container(self, test_id: str, container_id: str, label: str) -> None:
        """Ask the server to stop one container of a test."""
        self._background(
            lambda: self.client.stop_container(test_id, container_id),
            f"Cannot stop {label}",
            f"Stopping {label}",
            "Container",
        )

    def delete_test(self, test_id: str, name: str) -> None:
        """Delete an ended test with its results; a test still running is refused (409), said so."""
        self._app.run_worker(self._delete(test_id, name), group="actions", exit_on_error=False)

    async def _delete(self, test_id: str, name: str) -> str | None:
        """None when deleted (and notified), else why not (notified too)."""
        try:
            await self.client.delete_test(test_id)
        except ClientError as exc:
            if exc.status == 409:
                why = f"{name} is still running: stop it first (s), then delete it ({exc.message})"
            else:
                why = f"the server refused: {exc.message}" if exc.status == 403 else exc.message
            self._app.notify(why, title=f"Cannot delete {name}", severity="error")
            return why
        finally:
            self.poller.wake()
        self._app.notify(f"Test {name} deleted, with its results", title="Test")
        return None

    def create_provider(self, name: str) -> None:
        """Create a provider named ``name``."""
        self._background(
            lambda: self._keeping_token(self.client.create_provider(name)),
            f"Cannot create provider {name}",
            f"Provider {name} created: {CREATED_HINT}",
            "Provider",
        )

    def rename_provider(self, provider_id: str, old: str, new: str) -> None:
        """Rename a provider."""
        self._background(
            lambda: self.client.rename_provider(provider_id, new),
            f"Cannot rename {old}",
            f"Provider {old} renamed to {new}",
            "Provider",
        )

    def remove_agent(self, agent_id: str, name: str, *, force: bool = False) -> None:
        """Remove an agent that is not online (``force``: even with live containers, marked lost)."""
        self._background(
            lambda: self.client.delete_agent(agent_id, force=force),
            f"Cannot remove {name}",
            f"Agent {name} removed",
            "Agent",
        )

    def delete_provider(self, provider_id: str, name: str) -> None:
        """Delete a provider."""
        self._background(
            lambda: self.client.delete_provider(provider_id),
            f"Cannot delete {name}",
            f"Provider {name} deleted",
            "Provider",
        )

    def rotate_provider_token(self, provider_id: str, name: str) -> None:
        """Give a provider a new registration token; agents already registered keep theirs."""
        self._background(
            lambda: self._keeping_token(self.client.rotate_provider_token(provider_id)),
            f"Cannot rotate the token of {name}",
            f"New registration token for {name} (i shows it); registered agents are not affected",
            "Provider",
        )

    # --- several at once (marks) ----------------------------------------------------------------

    def fleet(self, action: Literal["drain", "undrain"], agents: dict[str, str]) -> None:
        """Drain (no new containers; the running ones finish) or undrain each agent of ``agents``
        (id -> name); one notification says which were done and why any was refused."""
        call = self.client.drain if action == "drain" else self.client.undrain
        calls = {name: call(agent_id) for agent_id, name in agents.items()}
        done = "drained" if action == "drain" else "undrained"
        self._app.run_worker(self._several(calls, done, f"Cannot {action}", "Fleet"), group="actions",
                             exit_on_error=False)  # fmt: skip

    def stop_containers(self, containers: dict[str, tuple[str, str]]) -> None:
        """Stop each container of ``containers`` (id -> (test id, label)); one notification."""
        calls = {label: self.client.stop_container(test_id, cid) for cid, (test_id, label) in containers.items()}
        self._app.run_worker(self._several(calls, "stopping", "Cannot stop", "Containers"), group="actions",
                             exit_on_error=False)  # fmt: skip

    async def _several(self, calls: Mapping[str, Awaitable[object]], done: str, failed: str, title: str) -> None:
        names = list(calls)
        results = await asyncio.gather(*(self.attempt(c) for c in calls.values()))
        refused = [f"{n}: {why}" for n, why in zip(names, results, strict=True) if why is not None]
        took = [n for n, why in zip(names, results, strict=True) if why is None]
        if took:
            self._app.notify(f"{len(took)} {done}: {', '.join(took)}", title=title)
        if refused:
            self._app.notify("; ".join(refused), title=f"{failed} {len(refused)} of {len(names)}", severity="error")

    def _background(self, call: Callable[[], Awaitable[object]], failed: str, done: str, title: str) -> None:
        self._app.run_worker(self._change(call, failed, done, title), group="actions", exit_on_error=False)

    async def _change(self, call: Callable[[], Awaitable[object]], failed: str, done: str, title: str) -> None:
        why = await self.attempt(call())
        if why is not None:
            self._app.notify(why, title=failed, severity="error")
        else:
            self._app.notify(done, title=title)

    # --- changes asked by a dialog that shows the refusal itself -------------------------------

    async def attempt(self, call: Awaitable[object]) -> str | None:
        """Run one change on the server: None when done, else the server's reason in words."""
        try:
            await call
        except ClientError as exc:
            return f"the server refused: {exc.message}" if exc.status == 403 else exc.message
        finally:
            self.poller.wake()
        return None

    async def submit_new_provider(self, name: str) -> str | None:
        """Create a provider: None when created (and notified), else why not."""
        why = await self.attempt(self._keeping_token(self.client.create_provider(name)))
        if why is None:
            self._app.notify(f"Provider {name} created: {CREATED_HINT}", title="Provider")
        return why

    async def submit_rename_provider(self, provider_id: str, old: str, new: str) -> str | None:
        """Rename a provider: None when renamed (and notified), else why not."""
        if new == old:
            return None
        why = await self.attempt(self.client.rename_provider(provider_id, new))
        if why is None:
            self._app.notify(f"Provider {old} renamed to {new}", title="Provider")
        return why

    async def submit_rotation(self, provider_id: str) -> str | None:
        """Give a provider a new registration token (kept in :attr:`provider_tokens`): None when
        done, else why not."""
        return await self.attempt(self._keeping_token(self.client.rotate_provider_token(provider_id)))

    async def _keeping_token(self, call: Awaitable[Provider]) -> Provider:
        provider = await call
        if provider.token:
            self.provider_tokens[provider.id] = provider.token
        return provider

    # --- monitors (their screens fetch after a poll round and show a refusal themselves) --------

    async def monitors(self) -> list[Monitor]:
        """Every monitor, with its state, last values and raised alarms; raises :class:`ClientError`."""
        return await self.client.monitors()

    async def monitor(self, monitor_id: str) -> Monitor:
        """One monitor; raises :class:`ClientError` (404 once it was deleted)."""
        return await self.client.monitor(monitor_id)

    async def monitor_metrics(self, monitor_id: str, seconds: float | None = None) -> MonitorMetrics:
        """A monitor's samples of the last ``seconds``, oldest first; raises :class:`ClientError`."""
        return await self.client.monitor_metrics(monitor_id, seconds=seconds)

    async def alarms(self, *, monitor: str | None = None, active: bool | None = None, limit: int = 1000) -> list[Alarm]:
        """Alarms, newest first (of one ``monitor``; only raised ones: ``active``); raises :class:`ClientError`."""
        return await self.client.alarms(monitor=monitor, active=active, limit=limit)

    async def test_monitors(self, test_id: str) -> TestMonitors:
        """The series and alarms of the monitors a test names; raises :class:`ClientError`."""
        return await self.client.test_monitors(test_id)

    async def create_monitor(self, spec: MonitorCreate) -> Monitor:
        """Add a monitor (its credentials are sent once, never shown again); raises :class:`ClientError`."""
        try:
            return await self.client.create_monitor(spec)
        finally:
            self.poller.wake()

    async def update_monitor(self, monitor_id: str, change: MonitorUpdate) -> Monitor:
        """Change the fields set in ``change``; raises :class:`ClientError`."""
        try:
            return await self.client.update_monitor(monitor_id, change)
        finally:
            self.poller.wake()

    async def delete_monitor(self, monitor_id: str) -> None:
        """Delete a monitor and its alarms; raises :class:`ClientError`."""
        try:
            await self.client.delete_monitor(monitor_id)
        finally:
            self.poller.wake()

    # --- quitting ------------------------------------------------------------------------------

    async def stop_tests(self, test_ids: list[str]) -> str | None:
        """Ask the server to stop every test of ``test_ids``: None when it took at least one, else
        its reason for refusing them all."""
        results = await asyncio.gather(*(self.client.stop_test(i) for i in test_ids), return_exceptions=True)
        refused = [r for r in results if isinstance(r, ClientError)]
        return refused[0].message if refused and len(refused) == len(test_ids) else None

    async def tests(self) -> list[Test]:
        """Every test now; raises :class:`ClientError`."""
        return await self.client.tests()
