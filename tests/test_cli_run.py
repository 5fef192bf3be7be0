"""``octotui run --criteria`` and ``drain|undrain`` as a CI job runs them: the real CLI as a subprocess
against a real server process, whose tests a wire-level agent makes end with chosen figures, so that
each exit code is seen: 0 passed, 1 criteria failed, 2 bad input (nothing launched), 3 the test failed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from octotui.protocol import Agent, Test
from tests.support.admin import create_provider
from tests.support.clikit import launched
from tests.support.labelkit import Sample, cumulative, samples
from tests.support.processes import ServerProcess, free_port
from tests.support.waiting import wait_until
from tests.support.wireagent import WireAgent


def octotui(server: ServerProcess, cli_env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "octotui", *argv, "--server", server.url, "--token", server.admin_token],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env,
    )  # fmt: skip


def done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@contextlib.contextmanager
def online(agent: WireAgent, hot_report: dict[str, Any] | None = None) -> Iterator[None]:
    """``agent`` beats every 0.5 s meanwhile (running nothing, or ``hot_report`` from a saturated
    machine): the ``server`` fixture calls an agent late after 3 s without a heartbeat, less than a
    loaded machine may take to start a CLI process."""
    stop = threading.Event()

    def once() -> None:
        if hot_report is None:
            agent.beat()
        else:
            hot(agent, hot_report)

    def beat() -> None:
        while not stop.wait(0.5):
            once()

    once()  # online now, before the caller goes on
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def hot(agent: WireAgent, report: dict[str, Any]) -> None:
    """A heartbeat of ``report`` from a machine at 95 % of its memory: saturated at once."""
    host = {"ts": time.time(), "cpu_percent": 40.0, "memory_percent": 95.0, "memory_total": 2**33}
    body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": [report]}
    answer = agent.http.post(f"/agents/{agent.id}/heartbeat", json=body, headers=agent.auth)
    assert answer.status_code == 200, answer.text


def _saturated(server: ServerProcess, agent: WireAgent, report: dict[str, Any]) -> list[str]:
    """A hot heartbeat, then the test's warnings (empty until the server's sweep flagged it)."""
    hot(agent, report)
    with server.client() as api:
        warnings: list[str] = api.get(f"/tests/{report['test_id']}").json()["warnings"]
    return warnings


def run_to_the_end(
    server: ServerProcess, cli_env: dict[str, str], agent: WireAgent, plan: Path, rows: list[Sample], *argv: str,
    saturate: Callable[[], None] | None = None, end: dict[str, Any] | None = None,
) -> tuple[int, str, str]:  # fmt: skip
    """``octotui run PLAN … ARGV`` while ``agent`` runs its container: reports ``rows`` (saturated
    first when asked, ``saturate`` called then), then finishes; the CLI's exit code, stdout and stderr."""
    proc = octotui(server, cli_env, "run", str(plan), "--provider", "lab", "--containers", "1", *argv)
    try:
        report = wait_until(lambda: launched(agent), timeout=30, what="the launch")
        agent.beat(report)
        if saturate:
            wait_until(lambda: _saturated(server, agent, report), timeout=15, what="the test's saturation warning")
            with online(agent, report):
                saturate()
        labels, errors = cumulative(rows)
        ms = [r[2] for r in rows]
        failed = sum(1 for r in rows if not r[3])
        figures = {"samples": len(rows), "errors": failed, "rate": 10.0, "avg_ms": sum(ms) / len(ms) if ms else 0.0,
                   "min_ms": min(ms, default=0), "max_ms": max(ms, default=0), "active": 0}  # fmt: skip
        seen = {**report, "labels": labels, "errors": errors, "figures": figures}
        agent.beat(seen)
        agent.beat({**seen, **(end or {"state": "finished", "exit_code": 0})})
    except BaseException:
        proc.kill()
        raise
    return done(proc)


FAST = samples("home", 0.0, [100] * 20) + samples("login", 0.0, [150] * 10)
SLOW = samples("home", 0.0, [700] * 20) + samples("login", 0.0, [150] * 10, fail_every=5)


def agents_table(server: ServerProcess, cli_env: dict[str, str]) -> str:
    code, out, err = done(octotui(server, cli_env, "agents"))
    assert code == 0, err
    return out


def test_criteria_met_exit_0_with_each_result_and_the_saturation_warning(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    shown: list[str] = []  # octotui agents while the generator is saturated
    code, out, err = run_to_the_end(server, cli_env, wire_agent, plan_file, FAST, "--criteria", "p95<500ms",
                                    "--criteria", "errors<1%", "--criteria", "avg of login<=200ms",
                                    saturate=lambda: shown.append(agents_table(server, cli_env)))  # fmt: skip
    assert code == 0, err
    assert "verdict: passed" in out, out
    lines = out.splitlines()
    for expr in ("p95<500ms", "errors<1%", "avg of login<=200ms"):
        assert any(line.startswith(f"pass  {expr}: ") for line in lines), (expr, out)
    assert "warning: results may be skewed: gen1 saturated for" in out and "memory 95 %" in out
    assert "online saturated" in shown[0] and "gen1: saturated, results may be skewed (memory 95 %)" in shown[0]
    assert "launched test" in err and "criteria" in err, "the progress line counts the criteria"
    assert all(len(line) <= 80 for line in lines), out


def test_criteria_failed_exit_1_saying_which_and_by_how_much(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    code, out, err = run_to_the_end(server, cli_env, wire_agent, plan_file, SLOW, "--criteria", "p95<500ms",
                                    "--criteria", "errors<1%", "--criteria", "max of login<1s", "--json")  # fmt: skip
    assert code == 1, err
    summary = json.loads(out)
    test = Test.model_validate(summary["test"])
    assert test.verdict == "failed"
    assert [c.passed for c in test.criteria] == [False, False, True]
    p95, errors, _ = test.criteria
    assert p95.actual is not None and p95.actual > 500 and "over 500 ms by" in p95.detail
    assert errors.actual is not None and errors.actual > 1
    first = err.splitlines()[-1]
    assert first.startswith(f"octotui run: test {test.id} failed its criteria: ")
    assert f"p95<500ms ({p95.detail}); errors<1% ({errors.detail})" in first, "the server's detail of each"
    assert "max of login" not in first, "only the failed ones"

    shown = subprocess.run(
        [sys.executable, "-m", "octotui", "test", test.id, "--server", server.url, "--token", server.admin_token],
        capture_output=True, text=True, timeout=60, env=cli_env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "verdict: failed (2 of 3 criteria failed)" in shown.stdout
    assert "FAIL  p95<500ms: " in shown.stdout and "pass  max of login<1s: " in shown.stdout


def test_a_failed_test_exits_3_whatever_its_criteria(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    code, out, err = run_to_the_end(server, cli_env, wire_agent, plan_file, [], "--criteria", "errors<1%")
    assert code == 3, err
    assert "failed: no samples" in err.splitlines()[-1]
    assert ": finished" in out.splitlines()[0]

    crashed = {"state": "failed", "exit_code": 1, "error": "JMeter exited with 1"}
    code, out, err = run_to_the_end(
        server, cli_env, wire_agent, plan_file, FAST, "--criteria", "errors<1%", end=crashed
    )
    assert code == 3, err
    assert "verdict: passed" in out and ": failed" in out.splitlines()[0], "judged, yet the test itself failed"
    assert "1 of 1 containers failed" in err.splitlines()[-1] and "JMeter exited with 1" in err


def test_each_bad_input_exits_2_and_launches_nothing(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, tmp_path: Path
) -> None:
    good = [str(plan_file), "--provider", "lab", "--containers", "1"]
    cases: list[tuple[list[str], str]] = [
        (
            ["run", *good, "--criteria", "p95<500ms", "--criteria", "p95<<500"],
            "criterion 2, position 5: ",
        ),  # the server's 422, naming which and where
        (["launch", *good, "--criteria", "median<3ms"], "criterion 1, position 1"),
        (["run", str(tmp_path / "missing.jmx"), "--provider", "lab", "--containers", "1"], "plan file not found"),
        (["run", *good, "-J", "host"], "-J 'host': expected key=value"),
        (["run", *good, "--file", str(tmp_path / "users.csv")], "file not found"),
    ]
    for argv, message in cases:
        code, out, err = done(octotui(server, cli_env, *argv))
        assert code == 2, (argv, out, err)
        assert err.startswith(f"octotui {argv[0]}: ") and message in err, (argv, err)
        assert out == "", (argv, out)
    unreachable = subprocess.run(
        [sys.executable, "-m", "octotui", "run", *good, "--criteria", "p95<500ms",
         "--server", f"http://127.0.0.1:{free_port()}", "--token", "t"],
        capture_output=True, text=True, timeout=60, env=cli_env,
    )  # fmt: skip
    assert unreachable.returncode == 2 and "cannot reach the server" in unreachable.stderr
    with server.client() as api:
        assert api.get("/tests").json() == [], "nothing was launched"
    assert (
        wire_agent.http.get(f"/agents/{wire_agent.id}/commands", params={"timeout": 0}, headers=wire_agent.auth).json()
        == []
    )


def test_drain_and_undrain_by_name_or_id_an_unknown_one_exits_2(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    code, out, err = done(octotui(server, cli_env, "drain", "gen1"))
    assert code == 0, err
    assert out.startswith(f"agent gen1 ({wire_agent.id}) drained: no new containers")
    code, out, _ = done(octotui(server, cli_env, "agents", "--json"))
    (agent,) = TypeAdapter(list[Agent]).validate_json(out)
    assert code == 0 and agent.drained
    with server.client() as api:  # an agent of an older version, as one not upgraded yet would register
        token = create_provider(api, "legacy")["token"]
        old = api.post("/agents/register", json={"name": "gen0", "location": "paris", "version": "0.0.9"},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert old.status_code == 200, old.text
    code, out, _ = done(octotui(server, cli_env, "agents"))
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line}
    assert " drained" in rows["gen1"] and " outdated" in rows["gen0"], out
    assert "gen1: drained, gets no new containers (octotui undrain gen1)" in out
    assert "gen0: outdated, version 0.0.9 is older than the server's" in out
    with online(wire_agent):
        code, _, err = done(
            octotui(server, cli_env, "launch", str(plan_file), "--provider", "lab", "--containers", "1")
        )
    assert code == 2 and "is drained: gen1 (drained); undrain one" in err, err

    code, out, err = done(octotui(server, cli_env, "undrain", wire_agent.id, "--json"))
    assert code == 0, err
    assert Agent.model_validate_json(out).drained is False

    code, out, err = done(octotui(server, cli_env, "drain", "nobody"))
    assert code == 2 and out == ""
    assert err.startswith("octotui drain: no agent named 'nobody'") and "(HTTP 404)" in err, err
    with server.client() as api:
        assert api.get("/tests").json() == []
        assert not any(a["drained"] for a in api.get("/agents").json())
