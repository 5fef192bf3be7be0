"""In-memory records of the server's state. The store persists their durable fields only."""

from __future__ import annotations

from dataclasses import dataclass, field

from octotui.protocol import DockerInfo, FinalResults, HostSample, JMeterFigures, LaunchSpec, TestResults


@dataclass(slots=True)
class ProviderRec:
    id: str
    name: str
    token: str  # registration token, kept as-is: admins must read it to install agents
    created_at: float


@dataclass(slots=True)
class AgentRec:
    id: str
    provider_id: str
    name: str
    location: str
    version: str
    registered_at: float
    cpu_count: int
    memory_total: int
    platform: str
    token_hash: str
    last_seen: float | None = None
    # --- live only, never persisted ---
    status: str = "offline"
    health_ref: float = 0.0  # last heartbeat, or the server's start if later (grace after a restart)
    host: HostSample | None = None
    docker: DockerInfo | None = None


@dataclass(slots=True)
class ContainerRec:
    id: str
    test_id: str
    agent_id: str
    index: int
    state: str
    shutdown_port: int
    docker_id: str | None = None
    exit_code: int | None = None
    error: str | None = None
    final: FinalResults | None = None
    figures: JMeterFigures | None = None
    updated_at: float = 0.0
    # --- live only ---
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    pull_progress: float | None = None
    missing: int = 0  # consecutive complete heartbeats that did not mention it


@dataclass(slots=True)
class TestRec:
    id: str
    name: str
    provider_id: str
    provider_name: str
    locations: list[str]
    image: str
    properties: dict[str, str]
    plan: str
    state: str
    created_at: float
    reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    stop_requested: bool = False
    results: TestResults | None = None  # final results once ended
    container_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CommandRec:
    id: str
    agent_id: str
    kind: str
    container_id: str
    test_id: str
    created_at: float
    launch: LaunchSpec | None = None
    grace_s: float = 20.0
    delivered_at: float | None = None  # live only: when a poll last handed it out
