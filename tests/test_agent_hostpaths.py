"""agent/hostpaths.py: an agent in a container gives the host's engine host paths to bind-mount.

Discovery through the real engine is tested by tests/test_agent_image.py (state dir mounted elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.hostpaths import HostPaths, NotOnAVolume, own_container_id

CID = "0123456789abcdef" * 4


def test_own_container_id_from_mountinfo(tmp_path: Path) -> None:
    inside = tmp_path / "mountinfo"
    inside.write_text(
        "1219 1200 0:55 / / rw master:1 - overlay overlay rw\n"
        f"1233 1219 254:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
    )
    assert own_container_id(inside) == CID
    host = tmp_path / "host"
    host.write_text("22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n")
    assert own_container_id(host) is None
    assert own_container_id(tmp_path / "missing") is None


def test_paths_map_through_the_longest_mount() -> None:
    paths = HostPaths([("/var/lib/octotui-agent", "/srv/agent"), ("/var/lib/octotui-agent/work", "/data/work"),
                       ("/var/run/docker.sock", "/run/docker.sock")], CID)  # fmt: skip
    assert paths.to_host(Path("/var/lib/octotui-agent/work/c-1/plan")) == Path("/data/work/c-1/plan")
    assert paths.to_host(Path("/var/lib/octotui-agent/x")) == Path("/srv/agent/x")
    assert paths.to_host(Path("/var/lib/octotui-agent")) == Path("/srv/agent")
    for outside in ("/var/lib/octotui-agent2/work", "/tmp/work", "/var/lib"):
        with pytest.raises(NotOnAVolume):
            paths.to_host(Path(outside))


def test_outside_a_container_paths_are_the_hosts() -> None:
    assert HostPaths(None).to_host(Path("/tmp/w/c-1/plan")) == Path("/tmp/w/c-1/plan")
