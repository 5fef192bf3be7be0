"""The scripting subcommands (``octotui agents``, ``launch``, ``run`` …) against a real server process.

Fast tests use a real ``octotui server``, a real agent process where a launch must be refused, and
the hand-spoken wire agent where a test must run without Docker. The ``run`` tests use a real agent,
a real JMeter container and the loopback HTTP target.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from octotui.cli import main
from octotui.protocol import Agent, Provider, Test
from tests.support.admin import create_provider, online_agent
from tests.support.processes import ROOT, AgentProcess, ServerProcess, free_port
from tests.support.waiting import wait_until
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent

HTTP_GET = ROOT / "examples" / "http-get.jmx"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No settings from the user's machine: config and data dirs in tmp, no OCTOTUI_* variables."""
    for name in list(os.environ):
        if name.startswith("OCTOTUI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return dict(os.environ)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``octotui ARGV`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def remote(server: ServerProcess) -> list[str]:
    return ["--server", server.url, "--token", server.admin_token]


def narrow(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


@pytest.fixture
def wire_agent(server: ServerProcess) -> Iterator[WireAgent]:
    """Provider ``lab`` with one wire-level agent in it, online."""
    with server.client() as api:
        token = create_provider(api, "lab")["token"]
    agent = WireAgent(server, token, "gen1")
    agent.beat()
    yield agent
    agent.close()


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.jmx"
    path.write_text(PLAN)
    return path


# --- listings: --json is the contract's models; tables fit 80 columns


def test_json_parses_into_the_contract_and_tables_fit(
    env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, capsys: Any
) -> None:
    code, out, err = cli(capsys, "launch", str(plan_file), "--provider", "lab", "--containers", "1",
                         "-J", "host=127.0.0.1", "--json", *remote(server))  # fmt: skip
    assert code == 0, err
    launched = Test.model_validate_json(out)
    assert launched.name == "shop" and launched.properties == {"host": "127.0.0.1"}
    wire_agent.beat(wire_agent.take_launch())

    code, out, _ = cli(capsys, "providers", "--json", *remote(server))
    assert code == 0 and [p.name for p in TypeAdapter(list[Provider]).validate_json(out)] == ["lab"]
    code, out, _ = cli(capsys, "agents", "--json", *remote(server))
    (agent,) = TypeAdapter(list[Agent]).validate_json(out)
    assert code == 0 and agent.name == "gen1" and agent.status == "online"
    code, out, _ = cli(capsys, "tests", "--json", *remote(server))
    assert code == 0 and [t.id for t in TypeAdapter(list[Test]).validate_json(out)] == [launched.id]
    code, out, _ = cli(capsys, "test", launched.id, "--json", *remote(server))
    assert code == 0 and Test.model_validate_json(out).state == "running"
    assert set(json.loads(out)) == set(Test.model_fields), "every key, defaults too: scripts read stable keys"

    for command in (["providers"], ["agents"], ["tests"], ["test", launched.id]):
        code, out, err = cli(capsys, *command, *remote(server))
        assert code == 0, err
        assert narrow(out), out
    assert "gen1" in cli(capsys, "agents", *remote(server))[1]
    assert launched.id in cli(capsys, "tests", *remote(server))[1]

    code, out, err = cli(capsys, "stop", launched.id, "--json", *remote(server))
    assert code == 0, err
    assert Test.model_validate_json(out).state in ("stopping", "finished")


def test_settings_come_from_the_config_file_env_and_flags(
    env: dict[str, str], server: ServerProcess, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    config = tmp_path / "config" / "octotui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[dashboard]\nserver = "{server.url}"\ntoken = "{server.admin_token}"\nrefresh = 2\n')
    assert cli(capsys, "agents", "--json")[:2] == (0, "[]\n"), "the dashboard's [dashboard] table applies"
    monkeypatch.setenv("OCTOTUI_TOKEN", "wrong")
    code, _, err = cli(capsys, "agents", "--json")
    assert code == 2 and "refused the token" in err, "the environment wins over the file"
    assert cli(capsys, "agents", "--json", "--token", server.admin_token)[0] == 0, "a flag wins over both"
    code, _, _ = cli(capsys, "--token", server.admin_token, "agents", "--json")
    assert code == 0, "connection flags before the command name work too"


def test_a_running_embedded_server_of_the_data_dir_is_used(
    env: dict[str, str], server: ServerProcess, capsys: Any
) -> None:
    """No --server: the server a dashboard runs on the data dir answers, none is started."""
    code, out, err = cli(capsys, "providers", "--json", "--data-dir", str(server.data_dir),
                         "--token", server.admin_token)  # fmt: skip
    assert code == 0 and out == "[]\n", err
    assert "starting an embedded server" not in err


def test_no_server_named_starts_the_embedded_one_and_stops_it(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "embedded"
    done = subprocess.run(
        [sys.executable, "-m", "octotui", "providers", "--json", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p.name for p in TypeAdapter(list[Provider]).validate_json(done.stdout)] == ["local"]
    assert "starting an embedded server" in done.stderr
    assert not (data / "server.url").exists(), "the embedded server stopped with the command"


# --- bad input: exit 2, a clear message on stderr, nothing launched


def test_each_bad_input_exits_2_and_launches_nothing(
    env: dict[str, str], server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, capsys: Any
) -> None:
    api = server.client()
    token = create_provider(api, "lab")["token"]
    agents.append(AgentProcess(server.url, token, tmp_path / "gen-a", "paris", "gen-a", "--interval", "1").start())
    wait_until(lambda: online_agent(api, "gen-a"), timeout=30, what="gen-a online")
    bad_plan = tmp_path / "bad.jmx"
    bad_plan.write_text("<jmeterTestPlan><oops")
    good = [str(HTTP_GET), "--provider", "lab", "--containers", "1"]
    cases: list[tuple[list[str], str]] = [
        (["launch", str(tmp_path / "missing.jmx"), "--provider", "lab", "--containers", "1"], "plan file not found"),
        (["run", *good, "-J", "foo"], "-J 'foo': expected key=value"),
        (["launch", *good, "-J", "=x"], "property name is empty"),
        (["run", str(HTTP_GET), "--provider", "nowhere", "--containers", "1"], "no provider with id or name 'nowhere'"),
        (["run", str(bad_plan), "--provider", "lab", "--containers", "1"], "plan"),  # the server's own 422
        (["launch", *good, "--containers", "0"], "containers"),
    ]
    for argv, message in cases:
        code, out, err = cli(capsys, *argv, *remote(server))
        assert code == 2, (argv, out, err)
        assert message in err and err.startswith(f"octotui {argv[0]}: "), (argv, err)
    code, _, err = cli(capsys, "run", *good, "--server", f"http://127.0.0.1:{free_port()}", "--token", "t")
    assert code == 2 and "cannot reach the server" in err, err
    code, _, err = cli(capsys, "launch", *good, "--server", server.url, "--token", "octo_wrong")
    assert code == 2 and "refused the token" in err and "HTTP 401" in err, err
    assert api.get("/tests").json() == [], "nothing was launched"
    api.close()


def test_unsupported_commands_say_so(env: dict[str, str], capsys: Any) -> None:
    code, _, err = cli(capsys, "drain", "gen-a")
    assert code == 2 and "not supported yet" in err and "drain" in err
    code, _, err = cli(capsys, "agents", "--server", "ftp://x", "--token", "t")
    assert code == 2 and "not an http(s) URL" in err


def test_launch_without_wait_needs_a_server_that_outlives_it(
    env: dict[str, str], plan_file: Path, tmp_path: Path, capsys: Any
) -> None:
    code, _, err = cli(capsys, "launch", str(plan_file), "--provider", "local", "--containers", "1",
                       "--data-dir", str(tmp_path / "nothing-runs-here"))  # fmt: skip
    assert code == 2 and "would stop the test" in err
    assert not (tmp_path / "nothing-runs-here").exists(), "no embedded server was started"


def test_help_lists_every_command_with_examples(env: dict[str, str], capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in ("providers", "agents", "tests", "test", "launch", "stop", "run", "export", "server", "token"):
        assert f"  {name} " in text or f"  octotui {name} " in text, name
    assert "examples:" in text and "reserved for pass/fail criteria" in text
    for name in ("providers", "agents", "tests", "test", "launch", "stop", "run", "export"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "examples:\n  octotui " in capsys.readouterr().out, name


def test_a_command_that_only_talks_to_the_server_never_imports_textual(
    env: dict[str, str], server: ServerProcess
) -> None:
    probe = (
        "import sys; from octotui.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')), code, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe, "agents", "--json", *remote(server)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert done.stderr.strip().endswith("[] 0"), done.stderr
    assert json.loads(done.stdout) == []


def test_ctrl_c_stops_the_test_and_exits_130(
    env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "octotui", "run", str(plan_file), "--provider", "lab", "--containers", "1",
         *remote(server)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        report = wait_until(wire_agent.take_launch, timeout=30, what="the launch")
        wire_agent.beat(report)
        with server.client() as api:
            wait_until(lambda: api.get("/tests").json()[0]["state"] == "running", timeout=20, what="running")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 130, err
            (test,) = api.get("/tests").json()
        assert f"stopped test {test['id']}" in err
        assert test["state"] in ("stopping", "finished")
        assert out == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# --- octotui run on a real agent and a real JMeter container: 0 with a summary, 3 when every sample fails


def _agent(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path) -> None:
    api = server.client()
    token = create_provider(api, "lab")["token"]
    agents.append(AgentProcess(server.url, token, tmp_path / "gen-a", "paris", "gen-a", "--interval", "1").start())
    wait_until(lambda: online_agent(api, "gen-a", docker=True), timeout=40, what="gen-a online with Docker")
    api.close()


def _run(server: ServerProcess, env: dict[str, str], jmeter_image: str, port: int, *extra: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "octotui", "run", str(HTTP_GET), "--provider", "lab", "--containers", "1",
         "--users", "1", "--duration", "4", "--image", jmeter_image, "-J", "host=127.0.0.1",
         "-J", f"port={port}", "-J", "path=/", *extra, *remote(server)],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_run_exits_0_with_a_summary_then_3_when_every_sample_fails(
    env: dict[str, str], server: ServerProcess, agents: list[AgentProcess], tmp_path: Path,
    jmeter_image: str, http_target: Any, docker_client: Any,
) -> None:  # fmt: skip
    _agent(server, agents, tmp_path)
    done = _run(server, env, jmeter_image, http_target.port)
    assert done.returncode == 0, done.stderr
    assert "launched test" in done.stderr and "samples" in done.stderr, "plain progress lines off a terminal"
    lines = done.stdout.splitlines()
    assert ": finished" in lines[0], done.stdout
    samples = int(next(x for x in lines if x.startswith("samples ")).split()[1].replace(",", ""))
    assert samples > 0 and http_target.hits >= samples
    assert "p95" in done.stdout and "per label" in done.stdout and "GET /" in done.stdout
    assert narrow(done.stdout), done.stdout

    test_id = lines[0].split()[1]
    jtl = tmp_path / "merged.jtl"
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    if httpx.get(f"{server.url}/api/v1/tests/{test_id}/export/jtl", headers=auth).status_code != 404:
        # The merged JTL export exists on this server: streamed to a file once the agent uploaded it.
        export = [sys.executable, "-m", "octotui", "export", test_id, "--format", "jtl", "-o", str(jtl),
                  *remote(server)]  # fmt: skip
        wait_until(lambda: subprocess.run(export, env=env, timeout=60).returncode == 0, timeout=60,
                   interval=1, what="the merged JTL (the agent uploads it once JMeter ended)")  # fmt: skip
        assert len(jtl.read_text().splitlines()) == samples + 1, "the header, then one row per sample"

    refused = _run(server, env, jmeter_image, free_port(), "--json")
    assert refused.returncode == 3, refused.stderr
    summary = json.loads(refused.stdout)
    assert summary["test"]["state"] == "failed" and "failed" in refused.stderr
    assert summary["labels"] and summary["labels"][0]["errors"] == summary["labels"][0]["samples"] > 0
    wait_until(lambda: not docker_client.containers.list(all=True, filters={"label": "io.octotui.managed"}),
               timeout=30, what="containers removed")  # fmt: skip


def test_export_streams_to_a_file_whole(
    env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, tmp_path: Path,
    capsys: Any,
) -> None:  # fmt: skip
    with server.client() as api:
        made = api.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1})
        test_id = made.json()["id"]
        if httpx.get(f"{server.url}/api/v1/tests/{test_id}/export/stats.csv",
                     headers={"Authorization": f"Bearer {server.admin_token}"}).status_code == 404:  # fmt: skip
            pytest.skip("this server has no export routes yet")
    target = tmp_path / "stats.csv"
    code, out, err = cli(capsys, "export", test_id, "--format", "csv", "-o", str(target), *remote(server))
    assert code == 0, err
    assert target.read_text().startswith("Label,") and f"test {test_id}" in err
    assert not list(tmp_path.glob("*.part"))
    code, out, err = cli(capsys, "export", test_id, "--format", "csv", "-o", "-", *remote(server))
    assert code == 0 and out == target.read_bytes().decode(), "the same bytes on stdout"
    code, _, err = cli(capsys, "export", "t-nope", "--format", "junit", "-o", str(tmp_path / "x.xml"),
                       *remote(server))  # fmt: skip
    assert code == 2 and "no test" in err and not (tmp_path / "x.xml").exists()
