"""``octotui run`` after the launch, when the server goes away: through HAProxy with no replica behind
it (503) and the server killed and started again, it keeps following and ends as the test does; a
server lost longer than ``--follow-timeout`` is exit 4 ("launched, outcome unknown") naming the test,
never exit 2 (which says nothing was launched)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import pytest

from tests.support.clikit import launched
from tests.support.haproxy import HAProxy
from tests.support.labelkit import cumulative, samples
from tests.support.online import beating_every
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wireagent import WireAgent

ROWS = samples("home", 0.0, [100] * 20)


class Cli:
    """``octotui run`` as a subprocess, its stderr read line by line as it comes."""

    def __init__(self, url: str, token: str, env: dict[str, str], argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "octotui", *argv, "--server", url, "--token", token],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.err: list[str] = []
        self.out: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(pipe, into), daemon=True)
                        for pipe, into in ((self.proc.stderr, self.err), (self.proc.stdout, self.out))]  # fmt: skip
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[str] | None, into: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            into.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.err) + list(self.out))

    def end(self) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        return self.proc.returncode, "".join(self.out), "".join(self.err)


def beating(agent: WireAgent, report: dict[str, object]) -> contextlib.AbstractContextManager[None]:
    """``agent`` reports ``report`` every 0.5 s meanwhile, as a real one does, whether or not the
    server answers (so that it stays online across the server's restart)."""

    def beat() -> None:
        with contextlib.suppress(Exception):
            agent.beat(report)

    return beating_every(beat)


def finish(agent: WireAgent, report: dict[str, object]) -> None:
    labels, errors = cumulative(ROWS)
    figures = {"samples": len(ROWS), "errors": 0, "rate": 10.0, "avg_ms": 100.0, "min_ms": 100, "max_ms": 100,
               "active": 0}  # fmt: skip
    seen = {**report, "labels": labels, "errors": errors, "figures": figures}
    agent.beat(seen)
    agent.beat({**seen, "state": "finished", "exit_code": 0})


def test_run_follows_through_503s_and_a_server_killed_and_restarted(
    cli_env: dict[str, str],
    server: ServerProcess,
    wire_agent: WireAgent,
    plan_file: Path,
    haproxy: Callable[[Sequence[int]], HAProxy],
) -> None:
    proxy = haproxy([server.port])
    proxy.wait_for("replica1", "UP")
    argv = ["run", str(plan_file), "--provider", "lab", "--containers", "1"]
    cli = Cli(proxy.url, server.admin_token, cli_env, argv)
    try:
        report = wait_until(lambda: launched(wire_agent), timeout=30, what="the launch")
        wire_agent.beat(report)
        with beating(wire_agent, report):
            proxy.command("disable server replicas/replica1")  # HAProxy answers 503 at once (finding 5)
            wait_until(lambda: cli.said("HTTP 503); retrying in"), timeout=20, what="run retrying a 503")
            server.restart(signal.SIGKILL)  # meanwhile the server itself dies and comes back
            proxy.command("enable server replicas/replica1")
            proxy.wait_for("replica1", "UP")
            wait_until(lambda: cli.said("the server answers again"), timeout=30, what="run following again")
        finish(wire_agent, report)
    except BaseException:
        cli.proc.kill()
        raise
    code, out, err = cli.end()
    assert code == 0, err
    assert f"test {report['test_id']}: " in err and "(giving up in " in err
    assert ": finished" in out.splitlines()[0], out


@pytest.mark.parametrize("command", [["run"], ["launch", "--wait"]], ids=["run", "launch-wait"])
def test_a_server_lost_past_follow_timeout_exits_4_naming_the_launched_test(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, command: list[str]
) -> None:
    argv = [*command, str(plan_file), "--provider", "lab", "--containers", "1", "--follow-timeout", "2"]
    cli = Cli(server.url, server.admin_token, cli_env, argv)
    try:
        report = wait_until(lambda: launched(wire_agent), timeout=30, what="the launch")
        wait_until(lambda: cli.said("launched test"), timeout=30, what="the CLI following the test")
        server.stop(signal.SIGKILL)  # its container never said it runs: launch --wait waits on too
    except BaseException:
        cli.proc.kill()
        raise
    code, out, err = cli.end()
    test_id = report["test_id"]
    assert code == 4, err
    assert out == "" if command == ["run"] else out.startswith(f"launched test {test_id} "), out
    last = err.splitlines()[-1]
    assert last.startswith(f"octotui {command[0]}: lost the server while following test {test_id} for 2 s: "), last
    assert f"may still be running: its outcome is unknown (see octotui test {test_id})" in last
    assert "retrying in" in err


def test_a_bad_follow_timeout_exits_2_and_launches_nothing(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    for bad in ("-1", "nan", "soon"):
        argv = ["run", str(plan_file), "--provider", "lab", "--containers", "1", "--follow-timeout", bad]
        cli = Cli(server.url, server.admin_token, cli_env, argv)
        code, _, err = cli.end()
        assert code == 2, (bad, err)
        assert "--follow-timeout" in err, err
    with server.client() as api:
        assert api.get("/tests").json() == []


def test_a_launch_answered_503_is_sent_again_and_starts_one_test(
    cli_env: dict[str, str],
    server: ServerProcess,
    wire_agent: WireAgent,
    plan_file: Path,
    haproxy: Callable[[Sequence[int]], HAProxy],
) -> None:
    proxy = haproxy([server.port])
    proxy.wait_for("replica1", "UP")
    proxy.command("disable server replicas/replica1")  # the launch itself meets HAProxy's 503
    cli = Cli(
        proxy.url, server.admin_token, cli_env, ["launch", str(plan_file), "--provider", "lab", "--containers", "1"]
    )
    try:
        wait_until(lambda: cli.said("with the same Idempotency-Key"), timeout=30, what="the launch sent again")
        proxy.command("enable server replicas/replica1")
    except BaseException:
        cli.proc.kill()
        raise
    code, out, err = cli.end()
    assert code == 0, err
    with server.client() as api:
        (made,) = api.get("/tests").json()
    assert out.startswith(f"launched test {made['id']} "), out
