"""The server's state in memory, shared by the domain modules (loaded from the store at start)."""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from octotui.server.auth import TokenIndex
from octotui.server.errors import NotFound
from octotui.server.hub import CommandHub, HostWindows
from octotui.server.labelbook import LabelBook
from octotui.server.monitorbook import MonitorBook
from octotui.server.records import (
    AgentRec,
    ChangeLog,
    CommandRec,
    ContainerRec,
    FileRec,
    LaunchKeys,
    ProviderRec,
    TestRec,
)
from octotui.server.secrets import Vault
from octotui.server.settings import ServerSettings
from octotui.server.store import Store
from octotui.server.timelines import ResultTimelines, TestTimelines

if TYPE_CHECKING:
    from octotui.server.replica import Replica


def new_id(prefix: str) -> str:
    """A new record id: ``prefix``, a dash and 12 random hex digits."""
    return f"{prefix}-{secrets.token_hex(6)}"


@dataclass
class Unsaved:
    """What changed since the last flush: the store is written in batches (``persistence.flush``)."""

    tests: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    new_commands: list[CommandRec] = field(default_factory=list)
    done_commands: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tests or self.containers or self.new_commands or self.done_commands)


class ServerState:
    """Providers, agents, tests and containers, with the indexes and windows kept beside them."""

    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.url = f"{settings.scheme}://{settings.host}:{settings.port}"
        self.tokens = TokenIndex(settings.admin_token)
        self.providers: dict[str, ProviderRec] = {}
        self.agents: dict[str, AgentRec] = {}
        self.tests: dict[str, TestRec] = {}
        self.containers: dict[str, ContainerRec] = {}
        #: Live (non-terminal) container ids per agent: heartbeats reconcile against these.
        self.live: dict[str, set[str]] = {}
        self.hosts = HostWindows(settings.samples_window)
        self.series = TestTimelines(settings.series_max_points, settings.series_fine_span)
        #: Tests' per-label and per-generator timelines (``domain/series.py``).
        self.timelines = ResultTimelines()
        self.commands = CommandHub(settings.redeliver_after)
        self.unsaved = Unsaved()
        #: Agents whose last heartbeat time changed since it was last saved.
        self.seen_unsaved: set[str] = set()
        #: Recently acknowledged command ids: an acknowledgement sent again is not an error.
        self.acked: OrderedDict[str, None] = OrderedDict()
        self.last_point = 0.0
        #: What changed when, for ``GET /changes``: every change of what a listing shows touches it.
        self.feed = ChangeLog()
        #: ``Idempotency-Key``s of launches, so that a retried launch never starts a test twice.
        self.launch_keys = LaunchKeys()
        #: While a heartbeat's reports are applied: the tests to bring up to date afterwards.
        self.held: set[str] | None = None
        #: Agents per (provider id, name): several of one name are flagged (each keeps its identity).
        self.names: dict[tuple[str, str], int] = {}
        #: Agents per machine id they report: two identities on one machine are flagged (``domain/fleet.py``).
        self.machines: dict[str, int] = {}
        #: Per-label figures of containers of tests not ended (``domain/labels.py``), by container id;
        #: the containers with labels not stored yet, and when live ones were last stored.
        self.labels: dict[str, LabelBook] = {}
        self.labels_unsaved: set[str] = set()
        self.labels_saved_at = 0.0
        #: When the timelines of running tests were last stored (``domain/series.py``).
        self.series_saved_at = 0.0
        #: Containers whose every label the server asks its agent for again, by agent id: those of
        #: tests not ended when it started (``domain/labels.py`` ``wanted``), with how often asked.
        self.labels_wanted: dict[str, dict[str, int]] = {}
        #: Uploaded files by id (``domain/files.py``); their bytes are under ``settings.files_dir``.
        self.files: dict[str, FileRec] = {}
        #: Launches one at a time: a launch's store write must not let another place on stale state.
        self.launching = asyncio.Lock()
        #: Monitors of the servers under test, their alarms and series (``domain/monitors.py``), and
        #: the key their credentials are encrypted with (a file beside the database, never in it).
        self.monitors = MonitorBook()
        self.vault = Vault(settings.secrets_key_path, settings.database)
        #: This server as one of several replicas on one PostgreSQL (``replica.py``); None alone.
        self.replica: Replica | None = None

    def get_provider(self, provider_id: str) -> ProviderRec:
        p = self.providers.get(provider_id)
        if p is None:
            raise NotFound(f"no provider with id {provider_id!r}")
        return p

    def get_agent(self, agent_id: str) -> AgentRec:
        a = self.agents.get(agent_id)
        if a is None:
            raise NotFound(f"no agent with id {agent_id!r}")
        return a

    def get_test(self, test_id: str) -> TestRec:
        t = self.tests.get(test_id)
        if t is None:
            raise NotFound(f"no test with id {test_id!r}")
        return t

    def containers_of(self, t: TestRec) -> list[ContainerRec]:
        """A test's container records, in its order."""
        return [self.containers[i] for i in t.container_ids if i in self.containers]
