"""scripts/apt-mirror.sh: the image scripts debootstrap from the mirror this machine's apt uses, read
from both source formats, and fail saying why when there is none (never a hard-coded host)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.processes import ROOT

SCRIPT = ROOT / "scripts" / "apt-mirror.sh"
DEBIAN_SOURCES = """\
Types: deb
URIs: http://127.0.0.1:9/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://127.0.0.1:9/debian-security
Suites: bookworm-security
Components: main
"""


def mirror(apt: Path, suite: str = "bookworm") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'. "{SCRIPT}" && debian_mirror "$1" "$2"', "-", suite, str(apt)],
        capture_output=True,
        text=True,
        timeout=20,
    )


def apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    return apt


def test_deb822_sources_give_the_suites_mirror_not_security_nor_others(tmp_path: Path) -> None:
    other = "Types: deb\nURIs: https://127.0.0.2/node_20.x\nSuites: nodistro\nComponents: main\n"
    apt = apt_dir(
        tmp_path, {"sources.list.d/nodesource.sources": other, "sources.list.d/debian.sources": DEBIAN_SOURCES}
    )
    done = mirror(apt)
    assert (done.returncode, done.stdout) == (0, "http://127.0.0.1:9/debian\n"), done.stderr


def test_one_line_sources_with_options(tmp_path: Path) -> None:
    text = (
        "# deb http://127.0.0.3/debian bookworm main\n"
        "deb-src http://127.0.0.4/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://127.0.0.5/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://127.0.0.6/mirror/debian/ bookworm main contrib\n"
    )
    apt = apt_dir(tmp_path, {"sources.list": text})
    done = mirror(apt)
    assert (done.returncode, done.stdout) == (0, "http://127.0.0.6/mirror/debian/\n"), done.stderr


def test_a_source_of_the_suite_comes_first_then_any_debian_path(tmp_path: Path) -> None:
    apt = apt_dir(
        tmp_path,
        {
            "sources.list.d/a.list": "deb http://127.0.0.7/debian trixie main\n",
            "sources.list.d/b.sources": "Types: deb\nURIs: http://127.0.0.8/snapshot/20250520\nSuites: bookworm\n",
        },
    )
    assert mirror(apt).stdout == "http://127.0.0.8/snapshot/20250520\n"
    assert mirror(apt, "bullseye").stdout == "http://127.0.0.7/debian\n", "no source of the suite: a /debian path"


def test_no_mirror_fails_saying_why(tmp_path: Path) -> None:
    disabled = DEBIAN_SOURCES.replace(
        "Types: deb\nURIs: http://127.0.0.1:9/debian\n", "Types: deb\nEnabled: no\nURIs: http://127.0.0.1:9/debian\n"
    )
    for files in (
        {},
        {"sources.list.d/debian.sources": disabled},
        {
            "sources.list.d/debian.sources.disabled": DEBIAN_SOURCES,
            "sources.list": "deb-src http://127.0.0.4/debian bookworm main\n",
        },
    ):
        apt = apt_dir(tmp_path / str(len(files)) / str(hash(tuple(files))), files)
        done = mirror(apt)
        assert done.returncode == 1 and done.stdout == "", (files, done.stdout)
        assert "no Debian mirror in" in done.stderr and "OCTOTUI_DEBIAN_MIRROR" in done.stderr


def test_the_image_scripts_name_no_mirror_host() -> None:
    for name in ("jmeter-image.sh", "agent-image.sh", "apt-mirror.sh"):
        text = (ROOT / "scripts" / name).read_text()
        assert "debian.org" not in text, name
        assert "debian_mirror" in text, name
