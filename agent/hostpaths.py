"""Where the agent's own paths are on the host, for the bind mounts the host's Docker engine makes.

An agent running in a container (the agent image) asks the host's engine to bind-mount its work
folders into JMeter containers. The engine resolves those paths on the HOST, so a work folder the
agent sees at ``/var/lib/octotui-agent/work/C`` must be given as the host folder mounted there
(``-v /srv/agent:/var/lib/octotui-agent`` gives ``/srv/agent/work/C``). Outside a container, paths
are the host's already and nothing is mapped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.engine import Engine

log = logging.getLogger("octotui.agent.containers")

#: Docker bind-mounts each container's ``hostname`` file from ``.../containers/<ID>/hostname``.
_OWN_ID = re.compile(r"/containers/([0-9a-f]{64})/hostname")


class NotOnAVolume(Exception):
    """A path of the agent's container that no volume or bind mount holds: the host's engine cannot reach it."""


def own_container_id(mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The id of the Docker container this process runs in, or None when it runs on the host."""
    try:
        text = mountinfo.read_text(errors="replace")
    except OSError:
        return None
    found = _OWN_ID.search(text)
    return found.group(1) if found else None


class HostPaths:
    """Maps paths of the agent's container to host paths, by the container's mounts (longest first).

    ``mounts`` is None outside a container: every path is then the host's own.
    """

    def __init__(self, mounts: list[tuple[str, str]] | None, container_id: str | None = None) -> None:
        self.container_id = container_id
        self.mounts = None if mounts is None else sorted(mounts, key=lambda m: len(m[0]), reverse=True)

    @classmethod
    async def discover(cls, engine: Engine, mountinfo: Path = Path("/proc/self/mountinfo")) -> HostPaths:
        """Find the agent's own container and its mounts through the engine."""
        container_id = own_container_id(mountinfo)
        if container_id is None:
            return cls(None)
        try:
            attrs = await engine.inspect(container_id)
        except Exception as exc:  # e.g. a container of another engine than the one the agent drives
            log.info("running in container %s, which the engine does not know (%s): paths kept as they are",
                     container_id[:12], exc)  # fmt: skip
            return cls(None)
        mounts = [
            (str(m["Destination"]), str(m["Source"]))
            for m in attrs.get("Mounts") or []
            if m.get("Destination") and m.get("Source")
        ]
        log.info("running in container %s: work folders are bind-mounted by their host paths", container_id[:12])
        return cls(mounts, container_id)

    def to_host(self, path: Path) -> Path:
        """The host path of ``path``; raises :class:`NotOnAVolume` when no mount of the container holds it."""
        if self.mounts is None:
            return path
        inside = PurePosixPath(path)
        for destination, source in self.mounts:
            dest = PurePosixPath(destination)
            if inside == dest or dest in inside.parents:
                return Path(source) / inside.relative_to(dest)
        raise NotOnAVolume(str(path))
