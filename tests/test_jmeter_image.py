"""The locally built JMeter image (``scripts/jmeter-image.sh``) really runs plans on the host network.

These pin down the facts the agent relies on: summariser lines in ``docker logs``, a CSV JTL with a
header, a graceful stop by a UDP ``StopTestNow`` on a pinned shutdown port (exit 0, final summary),
and that JMeter 2.13 exits 0 even when it cannot load a plan, so only its output tells failure apart.
"""

from __future__ import annotations

import csv
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.httptarget import HttpTarget
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.jmeter, pytest.mark.xdist_group("jmeter")]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CSV_JTL = ["-Jjmeter.save.saveservice.output_format=csv", "-Jjmeter.save.saveservice.print_field_names=true"]
# JMeter reports when more than 5 s passed since its last report: any interval up to 6 gives one every ~6 s.
SUMMARISER = ["-Jsummariser.interval=5"]
FINAL_SUMMARY = re.compile(r"^summary =\s+(\d+) in ", re.MULTILINE)
LABEL = "octotui.test-image"


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing holds right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as http_target:
        yield http_target


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A plan folder holding the examples and an empty results folder, as the agent mounts them."""
    plan = tmp_path / "plan"
    shutil.copytree(EXAMPLES, plan)
    (tmp_path / "results").mkdir()
    return tmp_path


@pytest.fixture
def run_jmeter(docker_client: Any, jmeter_image: str, workdir: Path) -> Iterator[Any]:
    """Starts detached JMeter containers on the host network; removes every one of them afterwards."""
    started: list[Any] = []

    def start(*args: str) -> Any:
        container = docker_client.containers.run(
            jmeter_image,
            command=list(args),
            detach=True,
            network_mode="host",
            labels={LABEL: "1"},
            volumes={
                str(workdir / "plan"): {"bind": "/plan", "mode": "ro"},
                str(workdir / "results"): {"bind": "/results", "mode": "rw"},
            },
        )
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove(force=True)


def _logs(container: Any) -> str:
    return str(container.logs(stdout=True, stderr=True).decode("utf-8", "replace"))


def _exit_code(container: Any, timeout: float) -> int:
    return int(container.wait(timeout=timeout)["StatusCode"])


def _read_jtl(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_plan_runs_to_its_end_with_summaries_and_csv(run_jmeter: Any, target: HttpTarget, workdir: Path) -> None:
    stop_port = free_udp_port()
    container = run_jmeter(
        "-n", "-t", "/plan/http-get.jmx", "-l", "/results/results.jtl",
        "-Jusers=3", "-Jrampup=1", "-Jduration=7", "-Jthink_ms=10",
        "-Jhost=127.0.0.1", f"-Jport={target.port}", "-Jpath=/hello",
        f"-Jjmeterengine.nongui.port={stop_port}", f"-Jjmeterengine.nongui.maxport={stop_port}",
        *SUMMARISER, *CSV_JTL,
    )  # fmt: skip

    code = _exit_code(container, timeout=90)
    logs = _logs(container)

    assert code == 0, logs
    assert "Created the tree successfully using /plan/http-get.jmx" in logs
    assert f"Waiting for possible shutdown message on port {stop_port}" in logs
    assert re.search(r"^summary \+\s+\d+ in .* Active: \d+ Started: \d+ Finished: \d+$", logs, re.MULTILINE), logs
    assert "... end of run" in logs
    finals = FINAL_SUMMARY.findall(logs)
    assert finals, logs

    rows = _read_jtl(workdir / "results" / "results.jtl")
    header = (workdir / "results" / "results.jtl").read_text().splitlines()[0]
    assert header.startswith("timeStamp,elapsed,label,responseCode,responseMessage,threadName"), header
    assert rows, "the JTL holds samples"
    assert int(finals[-1]) == len(rows), "the final summary counts every sample in the JTL"
    assert {row["responseCode"] for row in rows} == {"200"}
    assert {row["success"] for row in rows} == {"true"}
    assert target.paths.get("/hello", 0) >= len(rows) > 0, "every sample hit the local target"


def test_stop_test_now_on_the_pinned_port_ends_with_the_final_summary(run_jmeter: Any, target: HttpTarget) -> None:
    stop_port = free_udp_port()
    container = run_jmeter(
        "-n", "-t", "/plan/http-get.jmx", "-l", "/results/results.jtl",
        "-Jusers=2", "-Jduration=300", "-Jthink_ms=10", f"-Jport={target.port}",
        f"-Jjmeterengine.nongui.port={stop_port}", f"-Jjmeterengine.nongui.maxport={stop_port}",
        *SUMMARISER, *CSV_JTL,
    )  # fmt: skip
    wait_until(
        lambda: f"Waiting for possible shutdown message on port {stop_port}" in _logs(container) and target.hits > 0,
        timeout=60,
        what="JMeter listening on its shutdown port and hitting the target",
    )

    sent = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # UDP may drop a datagram: repeat until JMeter says it got one (a repeat is harmless).
        for _ in range(10):
            sock.sendto(b"StopTestNow", ("127.0.0.1", stop_port))
            if "StopTestNow received" in _logs(container):
                break
            time.sleep(1)
    code = _exit_code(container, timeout=60)
    elapsed = time.monotonic() - sent
    logs = _logs(container)

    assert code == 0, logs
    assert "Command: StopTestNow received from /127.0.0.1" in logs
    after_stop = logs.split("StopTestNow received", 1)[1]
    assert FINAL_SUMMARY.search(after_stop), logs
    assert "... end of run" in after_stop
    assert elapsed < 30, f"JMeter took {elapsed:.1f} s to stop"


def test_invalid_plan_exits_zero_but_says_why(run_jmeter: Any) -> None:
    """JMeter 2.13's exit code does not tell a plan it could not load: its output does."""
    container = run_jmeter("-n", "-t", "/plan/invalid.jmx", "-l", "/results/results.jtl")
    code = _exit_code(container, timeout=60)
    logs = _logs(container)

    assert code == 0, logs
    assert "Error in NonGUIDriver" in logs
    assert "Problem loading XML from:'/plan/invalid.jmx'" in logs
    assert "Created the tree successfully" not in logs
    assert "summary" not in logs


def test_missing_plan_exits_zero_but_says_why(run_jmeter: Any) -> None:
    container = run_jmeter("-n", "-t", "/plan/no-such-plan.jmx")
    code = _exit_code(container, timeout=60)
    logs = _logs(container)

    assert code == 0, logs
    assert "Could not open /plan/no-such-plan.jmx" in logs
    assert "Created the tree successfully" not in logs
