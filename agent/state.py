"""What the agent keeps in its state dir across restarts: its identity, its instance id, the
outcomes of the commands it ran and the stops that came before their container's launch.

Everything here touches files: call it from a thread when on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

from octotui.protocol import CommandAck

log = logging.getLogger("octotui.agent")

_REMEMBERED_COMMANDS = 2000
#: Stops of containers not known yet (their launch still to come) remembered at most.
_REMEMBERED_STOPS = 2000
_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def write_json(path: Path, data: object, tmp: Path | None = None) -> None:
    """Replace ``path`` with ``data`` as JSON, through a temporary file (``tmp``, else ``path.tmp``)."""
    tmp = tmp or path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


@dataclass
class Identity:
    """What registration gave this agent, kept in ``STATE_DIR/identity.json`` (mode 0600)."""

    agent_id: str
    agent_token: str
    server: str
    heartbeat_interval: float = 5.0
    poll_timeout: float = 25.0

    @classmethod
    def load(cls, path: Path) -> Identity | None:
        """The stored identity, or None when there is none (or it is unreadable, which is logged)."""
        try:
            data = json.loads(path.read_text())
            return cls(
                agent_id=str(data["agent_id"]),
                agent_token=str(data["agent_token"]),
                server=str(data["server"]),
                heartbeat_interval=float(data.get("heartbeat_interval", 5.0)),
                poll_timeout=float(data.get("poll_timeout", 25.0)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable identity file %s: %s", path, exc)
            return None

    def save(self, path: Path) -> None:
        """Write atomically, readable by the owner only (it holds the agent's token)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.chmod(tmp, 0o600)
        tmp.replace(path)


def load_instance(path: Path) -> str:
    """This state dir's instance id (made once, random, and kept in ``path``); raises OSError when it cannot be kept.

    The server tells agents apart by it: two agents of one name (the default is the host name)
    with two state dirs are two agents, and a copied state dir is the same one.
    """
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if _INSTANCE.match(stored):
        return stored
    if stored:
        log.warning("replacing the unreadable instance id in %s", path)
    instance = secrets.token_hex(16)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(instance + "\n")
    tmp.replace(path)
    return instance


def check_writable(path: Path) -> None:
    """Raise OSError (naming the path) unless ``path`` can be written as :meth:`Identity.save` writes it.

    Checked before the provider token is presented: the server replaces the agent's token when it
    registers, so an identity that cannot be saved then is a token lost.
    """
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    probe = path.with_name(path.name + ".tmp")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b" " * 4096)  # about an identity's size: a full disk says so here
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


class CommandLog:
    """Outcomes of executed commands by id, persisted, so a redelivered command is only acknowledged again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._acks: OrderedDict[str, CommandAck] = OrderedDict()
        try:
            for cid, ack in json.loads(path.read_text()).items():
                self._acks[cid] = CommandAck.model_validate(ack)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable command log %s: %s", path, exc)

    def get(self, command_id: str) -> CommandAck | None:
        return self._acks.get(command_id)

    def add(self, command_id: str, ack: CommandAck) -> None:
        self._acks[command_id] = ack
        while len(self._acks) > _REMEMBERED_COMMANDS:
            self._acks.popitem(last=False)
        try:
            write_json(self.path, {cid: a.model_dump() for cid, a in self._acks.items()})
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)


class RememberedStops:
    """Stops of containers not known yet, kept in ``path`` (bounded): their launch, if it comes, is refused."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()  # added to on the event loop, saved from a thread
        self._ids: OrderedDict[str, None] = OrderedDict()
        if path is None or not path.exists():
            return
        try:
            self._ids = OrderedDict.fromkeys(str(cid) for cid in json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)

    def __contains__(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._ids

    def add(self, container_id: str) -> bool:
        """Remember one more stop; False when it was remembered already."""
        with self._lock:
            if container_id in self._ids:
                return False
            self._ids[container_id] = None
            while len(self._ids) > _REMEMBERED_STOPS:
                self._ids.popitem(last=False)
            return True

    def save(self) -> None:
        """Write the file (logged, not raised, when it cannot be)."""
        if self.path is None:
            return
        with self._lock:
            items = list(self._ids)
        try:
            write_json(self.path, items, tmp=self.path.with_suffix(".tmp"))
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)
