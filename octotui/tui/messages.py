"""Past-tense messages posted by the app's poll worker; the app turns them into reactive values."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from octotui.protocol import Agent, AgentMetrics, AuditEntry, Provider, ServerInfo, Test, TestSeries


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
