"""The server's one entry point for the HTTP layer (and tests): the state, and each operation
delegated to the domain module that owns its rule (``domain/``). No HTTP here.

State lives in memory (loaded from the store at start) and the store is written on changes only:
providers and agents at once, test and container changes coalesced by a flush every
``flush_interval``; a heartbeat that changes no state writes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from octotui.protocol import (
    Agent,
    Changes,
    CommandAck,
    Comparison,
    ErrorFigures,
    FileInfo,
    Heartbeat,
    HeartbeatResponse,
    LabelFigures,
    Placement,
    Provider,
    RegisterRequest,
    RegisterResponse,
    Test,
    TestCreate,
    TestSeriesPoint,
    TokenCreated,
    TokenInfo,
)
from octotui.server import export
from octotui.server.auth import Principal
from octotui.server.domain import (
    agents,
    clock,
    commands,
    compare,
    deletion,
    files,
    jtl,
    labels,
    launch,
    loading,
    operators,
    persistence,
    providers,
    reconcile,
    series,
    stopping,
    ticks,
    views,
)
from octotui.server.domain.state import ServerState, new_id
from octotui.server.export import ExportData
from octotui.server.records import AgentRec, FileRec, ProviderRec, Share, TestRec
from octotui.server.store import Snapshot
from octotui.server.tables import JtlRow


class Controller(ServerState):
    """Providers, agents, tests and containers, with the operations that move them."""

    # --- start-up, persistence and periodic work ----------------------------------------------

    def load(self, snap: Snapshot) -> None:
        """Take the state read from the store at start-up."""
        loading.load(self, snap)

    async def flush(self, all_labels: bool = False) -> None:
        """Write the tests, containers and commands changed since the last flush (and, with
        ``all_labels``, the changed per-label figures of running containers too)."""
        await persistence.flush(self, all_labels)

    @property
    def _dirty_containers(self) -> set[str]:
        """Containers changed since the last flush (tests mark one to force its write)."""
        return self.unsaved.containers

    async def save_last_seen(self) -> None:
        await persistence.save_last_seen(self)

    async def final_write(self) -> dict[str, int]:
        """Everything not written yet, at shutdown: never raises for an unavailable store, says what
        it could not write (and returns those counts)."""
        return await persistence.final_write(self)

    def sweep_health(self, now: float) -> None:
        ticks.sweep_health(self, now)

    def tick(self) -> None:
        """Recompute agent health, mark containers of offline agents lost, sample live tests."""
        ticks.tick(self)

    async def run_background(self, stop: asyncio.Event) -> None:
        await ticks.run_background(self, stop)

    # --- operator tokens and audit -------------------------------------------------------------

    async def add_operator_token(self, role: str, name: str | None = None) -> str:
        """Create an operator token (``admin`` or ``read-only``) and return its secret."""
        return (await operators.create(self, name or new_id("token"), role)).token

    async def create_token(self, name: str, role: str) -> TokenCreated:
        return await operators.create(self, name, role)

    def token_list(self) -> list[TokenInfo]:
        return operators.listed(self)

    async def revoke_token(self, name: str) -> None:
        await operators.revoke(self, name)

    async def audit(self, who: Principal, action: str, target: str, detail: str = "", address: str = "") -> None:
        await operators.audit(self, who, action, target, detail, address)

    # --- providers -----------------------------------------------------------------------------

    def sorted_providers(self) -> list[ProviderRec]:
        return providers.listed(self)

    def provider_out(self, p: ProviderRec, token: str = "") -> Provider:
        return views.provider_out(self, p, token)

    async def create_provider(self, name: str) -> tuple[ProviderRec, str]:
        return await providers.create(self, name)

    async def rename_provider(self, provider_id: str, name: str) -> ProviderRec:
        return await providers.rename(self, provider_id, name)

    async def rotate_provider_token(self, provider_id: str) -> tuple[ProviderRec, str]:
        return await providers.rotate_token(self, provider_id)

    async def delete_provider(self, provider_id: str) -> None:
        await providers.delete(self, provider_id)

    # --- agents --------------------------------------------------------------------------------

    def agent_out(self, a: AgentRec) -> Agent:
        return views.agent_out(self, a)

    async def register(self, provider_id: str, req: RegisterRequest) -> RegisterResponse:
        return await agents.register(self, provider_id, req)

    async def delete_agent(self, agent_id: str, force: bool = False) -> bool:
        return await agents.delete(self, agent_id, force)

    def heartbeat(self, agent_id: str, hb: Heartbeat) -> HeartbeatResponse:
        """Take one heartbeat. Synchronous and store-free: it runs on the hot path."""
        return reconcile.heartbeat(self, agent_id, hb)

    def ack(self, agent_id: str, command_id: str, answer: CommandAck) -> None:
        commands.ack(self, agent_id, command_id, answer)

    # --- tests ---------------------------------------------------------------------------------

    def test_out(self, t: TestRec, with_containers: bool = True) -> Test:
        return views.test_out(self, t, with_containers)

    def listed_tests(self, ended: int | None) -> list[Test]:
        """Every test, oldest first; with ``ended``, every live test and only the newest ended ones."""
        return [views.test_out(self, t) for t in views.listed_tests(self, ended)]

    def changes(self, since: int | None, epoch: str | None, ended: int | None) -> Changes:
        """What changed after revision ``since`` of ``epoch`` (or everything): see :func:`views.changes`."""
        ticks.sweep_health(self, clock.now())  # statuses are ages: bring them up to date first
        return views.changes(self, since, epoch, ended)

    async def create_test(self, spec: TestCreate, idempotency_key: str | None = None) -> tuple[Test | Placement, bool]:
        """Validate, place and (unless a dry run) queue one launch per container; True with the
        test an earlier launch with the same ``idempotency_key`` made (its answer was lost)."""
        return await launch.create_test(self, spec, idempotency_key)

    async def test_labels(self, test_id: str) -> list[LabelFigures]:
        """Each label of a test merged over its containers (live while it runs, final after)."""
        return await labels.figures(self, self.get_test(test_id))

    async def test_errors(self, test_id: str) -> list[ErrorFigures]:
        """A test's error counts per label, code and message, most frequent first."""
        return await labels.errors(self, self.get_test(test_id))

    async def test_export(self, test_id: str, baseline_id: str | None = None) -> ExportData:
        """What a test's exports (statistics CSV, JUnit XML, HTML report) show, read once; with
        ``baseline_id``, its comparison with that test too."""
        return await export.gather(self, self.get_test(test_id), baseline_id)

    async def test_series(self, test_id: str) -> list[TestSeriesPoint]:
        """A test's whole timeline (older points merged), also after a restart."""
        return await series.points(self, self.get_test(test_id))

    def test_plan(self, test_id: str) -> str:
        """The JMX plan a test was launched with."""
        return self.get_test(test_id).plan

    async def delete_test(self, test_id: str) -> TestRec:
        """Delete an ended test with its containers, labels, timeline and JTLs (409 unless ended)."""
        return await deletion.delete_test(self, test_id)

    async def receive_jtl(
        self, agent_id: str, container_id: str, checksum: str | None, size: int | None, body: AsyncIterator[bytes]
    ) -> JtlRow:
        """Take a container's gzip-compressed JTL from its agent (streamed to disk, checked, recorded)."""
        return await jtl.receive(self, agent_id, container_id, checksum, size, body)

    async def merged_jtl(self, test_id: str) -> jtl.Merged:
        """An ended test's JTLs as one (header once, container by container), streamed."""
        return await jtl.merged(self, test_id)

    async def compare(self, test_id: str, baseline_id: str, tolerances: dict[str, float | None]) -> Comparison:
        """Each label of a test against its baseline, regressions marked beyond ``tolerances``."""
        return await compare.compare(self, test_id, baseline_id, tolerances)

    # --- files ---------------------------------------------------------------------------------

    async def receive_file(self, name: str, size: int | None, body: AsyncIterator[bytes]) -> FileInfo:
        """Take an uploaded file (streamed to disk, hashed, lines counted, recorded)."""
        return files.info(await files.receive(self, name, size, body))

    def file_list(self) -> list[FileInfo]:
        return files.listed(self)

    def file_info(self, file_id: str) -> FileInfo:
        return files.info(files.get(self, file_id))

    async def delete_file(self, file_id: str) -> FileRec:
        """Delete an uploaded file (409 while a test not ended brings it)."""
        return await files.delete(self, file_id)

    def file_for_agent(self, agent_id: str, file_id: str) -> FileRec:
        """A file whole, for an agent running a live container of a test that brings it."""
        return files.served_copy(self, agent_id, file_id)

    def share_for_agent(self, agent_id: str, file_id: str, index: int, test_id: str) -> tuple[FileRec, Share]:
        """Share ``index`` of a file split by a test, for the agent running that container."""
        return files.served_share(self, agent_id, file_id, index, test_id)

    async def stop_test(self, test_id: str, by: str = "an operator") -> Test:
        t = self.get_test(test_id)
        if stopping.stop_test(self, t, by):
            await self.flush()
        return self.test_out(t)

    async def stop_one(self, test_id: str, container_id: str) -> Test:
        t = self.get_test(test_id)
        stopping.stop_container(self, stopping.container_of(self, t, container_id))
        await self.flush()
        return self.test_out(t)
