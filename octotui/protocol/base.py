"""Constants, states and the base model of the wire contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

VERSION = "0.1.0"
API_PREFIX = "/api/v1"

#: Labels the agent puts on every container it starts, so it finds its own after any restart.
LABEL_MANAGED = "io.octotui.managed"
LABEL_TEST = "io.octotui.test"
LABEL_CONTAINER = "io.octotui.container"
LABEL_AGENT = "io.octotui.agent"
LABEL_COMMAND = "io.octotui.command"


AgentStatus = Literal["online", "late", "offline"]
TestState = Literal["pending", "starting", "running", "stopping", "finished", "failed"]
ContainerState = Literal[
    "pending",  # placed, launch command queued, not yet acknowledged
    "pulling",  # the agent pulls the image
    "starting",  # docker create/start under way
    "running",
    "stopping",
    "finished",  # JMeter exited 0
    "failed",  # JMeter or docker failed; see ``error``
    "lost",  # its agent went offline or no longer reports it
]
TERMINAL_CONTAINER_STATES: frozenset[ContainerState] = frozenset({"finished", "failed", "lost"})
TERMINAL_TEST_STATES: frozenset[TestState] = frozenset({"finished", "failed"})
#: What a command asks of an agent.
CommandKind = Literal["launch", "stop"]
Role = Literal["admin", "read-only"]


class Model(BaseModel):
    """Base of every wire model: unknown fields are refused, so typos surface as 422."""

    model_config = ConfigDict(extra="forbid")


class Health(Model):
    status: Literal["ok"] = "ok"
    version: str = VERSION


class ServerInfo(Model):
    """What a client needs to know about the server it talks to (``GET /api/v1/info``)."""

    version: str = VERSION
    url: str = ""
    role: Role | None = None  # the role of the token that asked
    heartbeat_interval: float
    late_after: float  # seconds without heartbeat before an agent is "late"
    offline_after: float  # ... and "offline"
    default_image: str
    max_plan_bytes: int
