"""``octotui launch|run --monitor/--stop-on-critical`` and ``octotui test`` on a running test's
percentiles, against a real server process and the hand-spoken wire agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from octotui.cli import main
from tests.support.clikit import cli, remote
from tests.support.monitorkit import prom_body
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wire import figures
from tests.support.wireagent import WireAgent, label_stats

CRITICAL = [{"metric": "node_load1", "severity": "critical", "above": 4, "for": 10}]


def _response_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("response time"))


def test_a_running_tests_percentiles_agree_with_its_criteria(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, capsys: Any
) -> None:
    launch = ["launch", str(plan_file), "--provider", "lab", "--containers", "1", *remote(server)]
    code, out, err = cli(capsys, *launch, "--criteria", "p95<500ms", "--criteria", "errors<5%", "--json")
    assert code == 0, err
    test_id = json.loads(out)["id"]
    report = wire_agent.take_launch()
    times = [17.0] * 19 + [90.0]
    wire_agent.beat({**report, "figures": figures(20, 1.0, 24.3), "labels": [label_stats("home", times)]})

    def judged() -> bool:
        with server.client() as api:
            return api.get(f"/tests/{test_id}").json()["criteria"][0]["actual"] is not None

    wait_until(judged, timeout=15, what="the p95 criterion judged on the live figures")
    code, out, err = cli(capsys, "test", test_id, *remote(server))
    assert code == 0, err
    assert "so far: p95 17 ms" in out, out
    line = _response_line(out)
    assert "p95 - " not in line and "p95 17.0 so far" in line, out
    assert "p99 -" in line and "at the end" in out, "p99 is not known yet, and the output says why"
    assert all(len(x) <= 80 for x in out.splitlines()), out


def test_launch_names_monitors_and_an_unknown_one_launches_nothing(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, capsys: Any
) -> None:
    with server.client() as api:
        node = api.post("/monitors", json=prom_body(wire_agent.id, mode="tests", thresholds=CRITICAL))
        assert node.status_code == 201, node.text
        db = api.post("/monitors", json=prom_body(wire_agent.id, name="db", mode="tests"))
        assert db.status_code == 201, db.text
    launch = ["launch", str(plan_file), "--provider", "lab", "--containers", "1", "--json", *remote(server)]

    with pytest.raises(SystemExit):
        main(["launch", "--help"])
    out = capsys.readouterr().out
    assert "--monitor ID|NAME" in out and "--stop-on-critical" in out and "--monitor db-host,node" in out

    def tests() -> list[str]:
        with server.client() as api:
            return [t["id"] for t in api.get("/tests").json()]

    for bad, says in (
        (["--monitor", "node,nope"], "no monitor"),  # the server's 422, as it words it
        (["--monitor", "nope"], "no monitor"),
        (["--monitor", "node,,db"], "--monitor: an empty monitor"),
        (["--monitor", ""], "--monitor: an empty monitor"),
        (["--stop-on-critical"], "--stop-on-critical needs at least one --monitor"),
        (["--monitor", "db", "--stop-on-critical"], "stop_on_critical needs a named monitor with a critical"),
    ):
        code, out, err = cli(capsys, *launch, *bad)
        assert (code, out) == (2, ""), (bad, out, err)
        assert says in err and err.startswith("octotui launch: "), (bad, err)
        assert tests() == [], f"{bad}: nothing launched"

    code, out, err = cli(capsys, *launch, "--monitor", "node", "--monitor", f"{db.json()['id']},node",
                         "--stop-on-critical")  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["monitors"] == [node.json()["id"], db.json()["id"]] and made["stop_on_critical"] is True
    code, out, err = cli(capsys, *launch, "--monitor", "db")
    assert code == 0, err
    assert json.loads(out)["monitors"] == [db.json()["id"]] and json.loads(out)["stop_on_critical"] is False
