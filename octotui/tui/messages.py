"""Messages the app handles: past-tense ones from its poll worker and its embedded-children
supervisor (turned into reactive values and notices), and the requests of its screens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.message import Message

from octotui.client import Client
from octotui.protocol import (
    Agent,
    AgentMetrics,
    AuditEntry,
    ErrorFigures,
    LabelFigures,
    Provider,
    ServerInfo,
    Test,
    TestSeries,
)


@dataclass
class InfoUpdated(Message):
    """The server described itself (thresholds, default image, the token's role)."""

    info: ServerInfo


@dataclass
class AgentsUpdated(Message):
    """A fresh list of every agent arrived; ``changed``: the ids of those that changed (None: any)."""

    agents: list[Agent]
    changed: frozenset[str] | None = None


@dataclass
class ProvidersUpdated(Message):
    """A fresh list of every provider arrived."""

    providers: list[Provider]


@dataclass
class TestsUpdated(Message):
    """A fresh list of every test arrived; ``changed``: the ids of those that changed (None: any)."""

    __test__ = False
    tests: list[Test]
    changed: frozenset[str] | None = None


@dataclass
class AgentMetricsUpdated(Message):
    """New host samples of the agent whose detail screen is open."""

    metrics: AgentMetrics


@dataclass
class TestDetailUpdated(Message):
    """The test whose detail screen is open, and its live series."""

    __test__ = False
    test: Test
    series: TestSeries


@dataclass
class TestLabelsUpdated(Message):
    """The open test's figures per label and its errors; None: the server has none (it answered
    404, as servers older than per-label figures do)."""

    __test__ = False
    test_id: str
    labels: list[LabelFigures] | None
    errors: list[ErrorFigures] | None


@dataclass
class AuditUpdated(Message):
    """The latest entries of the server's audit log (newest first), or why it cannot be read."""

    entries: list[AuditEntry]
    error: str = ""


@dataclass
class ServerReached(Message):
    """A poll round succeeded; ``recovered`` when the server was unreachable before."""

    at: float
    recovered: bool


@dataclass
class ServerUnreachable(Message):
    """A poll round got no answer; the worker tries again after ``retry_in`` seconds."""

    reason: str
    retry_in: float


@dataclass
class ServerRefused(Message):
    """The server answered a poll with an error (bad token, bug): shown, retried later."""

    message: str
    status: int | None
    retry_in: float


# --- the embedded children (see :mod:`octotui.tui.supervisor`) ---------------------------------


@dataclass
class EmbeddedNotice(Message):
    """Something happened to an embedded child that the user must read (an exit, a failed start)."""

    title: str
    text: str


@dataclass
class EmbeddedDown(Message):
    """The embedded server or agent is down: ``note`` says so in the status bar."""

    note: str


@dataclass
class EmbeddedRestarted(Message):
    """The exited children (``which``) run again at ``url``; ``client``: a new client for that
    address when the server had to take another port (None: the same address)."""

    which: str
    url: str
    client: Client | None


@dataclass
class ReplicaSwitched(Message):
    """The client moved to another of the servers it was given (``url``; see
    :attr:`~octotui.client.Client.on_switch`)."""

    url: str


# --- what screens ask for ----------------------------------------------------------------------

#: What a detail screen needs fetched on every round, besides the lists.
Detail = Literal["agent", "test", "audit"]


@dataclass
class DetailOpened(Message):
    """A screen showing ``what`` (of ``key``: an agent or test id) opened: fetch it every round."""

    what: Detail
    key: str = ""


@dataclass
class DetailClosed(Message):
    """The screen showing ``what`` of ``key`` closed: stop fetching it, unless another screen took over."""

    what: Detail
    key: str = ""
