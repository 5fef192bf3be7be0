"""The scripting subcommands (``octotui agents``, ``launch``, ``run`` …) against a real server process.

Fast tests use a real ``octotui server``, a real agent process where a launch must be refused, and
the hand-spoken wire agent where a test must run without Docker. The ``run`` tests use a real agent,
a real JMeter container and the loopback HTTP target.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from octotui.cli import main
from octotui.protocol import Agent, Comparison, FileInfo, Provider, Test, TestFile
from tests.support.admin import create_provider, online_agent
from tests.support.clikit import cli, launched, remote
from tests.support.labelkit import Sample, cumulative, samples
from tests.support.processes import ROOT, AgentProcess, ServerProcess, free_port
from tests.support.tlskit import https_server, make_pki
from tests.support.waiting import wait_until
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent

HTTP_GET = ROOT / "examples" / "http-get.jmx"


def narrow(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


# --- listings: --json is the contract's models; tables fit 80 columns


def test_json_parses_into_the_contract_and_tables_fit(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, capsys: Any
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
    # Passed through as the server wrote it (rawjson.py), yet the very document the models print.
    assert json.loads(out) == Test.model_validate_json(out).model_dump(mode="json")

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
    cli_env: dict[str, str], server: ServerProcess, tmp_path: Path, capsys: Any, monkeypatch: Any
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


def test_json_listings_over_https_verify_with_the_ca_bundle(
    cli_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    """The --json listings skip the client (rawjson.py): their TLS is checked as the client's is."""
    pki = make_pki(tmp_path / "pki")
    with https_server(tmp_path, pki, "tls-admin") as url:
        code, out, err = cli(capsys, "tests", "--json", "--server", url, "--token", "tls-admin",
                             "--ca-bundle", str(pki.ca))  # fmt: skip
        assert (code, out) == (0, "[]\n"), err
        for bundle in (["--ca-bundle", str(pki.other_ca)], []):  # another CA; the system's CAs
            code, out, err = cli(capsys, "agents", "--json", "--server", url, "--token", "tls-admin", *bundle)
            assert code == 2 and out == "", err
            assert err.startswith(f"octotui agents: cannot reach the server: {url}: ")
            assert "certificate verify failed" in err


def test_json_listings_go_on_with_the_next_replica(cli_env: dict[str, str], server: ServerProcess, capsys: Any) -> None:
    """--server URL,URL: a replica that does not answer is followed by the next, as the client does."""
    dead = f"http://127.0.0.1:{free_port()}"
    for command in (["agents", "--json"], ["providers"]):  # the --json fast path, and the client
        code, out, err = cli(capsys, *command, "--server", f"{dead},{server.url}", "--token", server.admin_token)
        assert code == 0, err
    other = f"http://127.0.0.1:{free_port()}"
    code, out, err = cli(capsys, "tests", "--json", "--server", f"{dead},{other}", "--token", "t")
    assert code == 2 and out == ""
    assert err.startswith(f"octotui tests: cannot reach the server: {dead}: ") and f"; {other}: " in err, err


def test_a_running_embedded_server_of_the_data_dir_is_used(
    cli_env: dict[str, str], server: ServerProcess, capsys: Any
) -> None:
    """No --server: the server a dashboard runs on the data dir answers, none is started."""
    code, out, err = cli(capsys, "providers", "--json", "--data-dir", str(server.data_dir),
                         "--token", server.admin_token)  # fmt: skip
    assert code == 0 and out == "[]\n", err
    assert "starting an embedded server" not in err


def test_no_server_named_starts_the_embedded_one_and_stops_it(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "embedded"
    done = subprocess.run(
        [sys.executable, "-m", "octotui", "providers", "--json", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, env=cli_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p.name for p in TypeAdapter(list[Provider]).validate_json(done.stdout)] == ["local"]
    assert "starting an embedded server" in done.stderr
    assert not (data / "server.url").exists(), "the embedded server stopped with the command"


# --- bad input: exit 2, a clear message on stderr, nothing launched


def test_each_bad_input_exits_2_and_launches_nothing(
    cli_env: dict[str, str], server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, capsys: Any
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


def test_a_server_url_that_is_not_http_is_refused(cli_env: dict[str, str], capsys: Any) -> None:
    code, _, err = cli(capsys, "agents", "--server", "ftp://x", "--token", "t")
    assert code == 2 and "not an http(s) URL" in err


def test_launch_without_wait_needs_a_server_that_outlives_it(
    cli_env: dict[str, str], plan_file: Path, tmp_path: Path, capsys: Any
) -> None:
    code, _, err = cli(capsys, "launch", str(plan_file), "--provider", "local", "--containers", "1",
                       "--data-dir", str(tmp_path / "nothing-runs-here"))  # fmt: skip
    assert code == 2 and "would stop the test" in err
    assert not (tmp_path / "nothing-runs-here").exists(), "no embedded server was started"


SUBCOMMANDS = ("providers", "agents", "tests", "test", "launch", "stop", "run", "export", "compare", "drain", "undrain")


def test_help_lists_every_command_with_examples(cli_env: dict[str, str], capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in (*SUBCOMMANDS, "server", "token"):
        assert f"  {name} " in text or f"  octotui {name} " in text, name
    assert "examples:" in text and "run (launch --wait) failed a --criteria" in text
    assert "compare found a regression" in text and "--criteria 'errors<1%'" in text
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "examples:\n  octotui " in capsys.readouterr().out, name
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "'avg of login<200ms for 30s'" in capsys.readouterr().out, "run's help explains the criteria"


HEAVY = ("textual", "rich", "fastapi", "starlette", "uvicorn", "octotui.server", "octotui.tui")


@pytest.mark.parametrize("argv", [["agents", "--json"], ["tests"], ["drain", "nobody"]], ids=" ".join)
def test_a_command_that_only_talks_to_the_server_never_imports_textual_nor_the_server(
    cli_env: dict[str, str], server: ServerProcess, argv: list[str]
) -> None:
    """And the --json listings not even the contract's pydantic models (DESIGN.md: agents --json < 0.3 s)."""
    probe = (
        "import sys; from octotui.cli import main; code = main(sys.argv[1:]); "
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r}) or m in ('pydantic', 'octotui.protocol')),"
        " code, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv, *remote(server)],
                          capture_output=True, text=True, timeout=60, env=cli_env)  # fmt: skip
    found, code = done.stderr.strip().splitlines()[-1].rsplit(" ", 1)
    if argv == ["agents", "--json"]:
        assert (found, code) == ("[]", "0"), done.stderr
        assert json.loads(done.stdout) == []
    else:
        assert found == "['octotui.protocol', 'pydantic']", done.stderr
        assert code == ("0" if argv == ["tests"] else "2"), done.stderr


def test_ctrl_c_stops_the_test_and_exits_130(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "octotui", "run", str(plan_file), "--provider", "lab", "--containers", "1",
         *remote(server)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env,
    )  # fmt: skip
    try:
        report = wait_until(lambda: launched(wire_agent), timeout=30, what="the launch")
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


def _run(server: ServerProcess, cli_env: dict[str, str], jmeter_image: str, port: int, *extra: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "octotui", "run", str(HTTP_GET), "--provider", "lab", "--containers", "1",
         "--users", "1", "--duration", "4", "--image", jmeter_image, "-J", "host=127.0.0.1",
         "-J", f"port={port}", "-J", "path=/", *extra, *remote(server)],
        capture_output=True, text=True, timeout=180, env=cli_env,
    )  # fmt: skip


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_run_exits_0_with_a_summary_then_3_when_every_sample_fails(
    cli_env: dict[str, str], server: ServerProcess, agents: list[AgentProcess], tmp_path: Path,
    jmeter_image: str, http_target: Any, docker_client: Any,
) -> None:  # fmt: skip
    _agent(server, agents, tmp_path)
    done = _run(server, cli_env, jmeter_image, http_target.port)
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
        wait_until(lambda: subprocess.run(export, env=cli_env, timeout=60).returncode == 0, timeout=60,
                   interval=1, what="the merged JTL (the agent uploads it once JMeter ended)")  # fmt: skip
        assert len(jtl.read_text().splitlines()) == samples + 1, "the header, then one row per sample"

    refused = _run(server, cli_env, jmeter_image, free_port(), "--json")
    assert refused.returncode == 3, refused.stderr
    summary = json.loads(refused.stdout)
    assert summary["test"]["state"] == "failed" and "failed" in refused.stderr
    assert summary["labels"] and summary["labels"][0]["errors"] == summary["labels"][0]["samples"] > 0
    wait_until(lambda: not docker_client.containers.list(all=True, filters={"label": "io.octotui.managed"}),
               timeout=30, what="containers removed")  # fmt: skip


def test_export_streams_to_a_file_whole(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, tmp_path: Path,
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


# --- --file: uploaded (streamed from disk), named by the test; bad ones exit 2 and leave nothing


def test_files_are_uploaded_and_the_test_brings_them(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, plan_file: Path, tmp_path: Path,
    capsys: Any,
) -> None:  # fmt: skip
    users = tmp_path / "users.csv"
    users.write_text("login,password\n" + "".join(f"u{i},p{i}\n" for i in range(10)))
    logo = tmp_path / "logo.bin"
    logo.write_bytes(bytes(range(256)) * 64 * 1024 * 2)  # 32 MiB, binary: copied whole
    tracemalloc.start()
    try:
        code, out, err = cli(capsys, "launch", str(plan_file), "--provider", "lab", "--containers", "2",
                             "--file", f"{users}:split:header", "--file", str(logo), "--json",
                             *remote(server))  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert peak < 8 * 1024**2, f"a 32 MiB file is streamed from disk, not read whole: peak {peak:,} bytes"
    launched = Test.model_validate_json(out)
    with server.client() as api:
        kept = {f.name: f for f in TypeAdapter(list[FileInfo]).validate_json(api.get("/files").content)}
        again = Test.model_validate_json(api.get(f"/tests/{launched.id}").content)
    assert set(kept) == {"users.csv", "logo.bin"}
    assert kept["users.csv"].lines == 11 and kept["logo.bin"].lines is None
    assert kept["logo.bin"].size == logo.stat().st_size
    assert kept["logo.bin"].sha256 == hashlib.sha256(logo.read_bytes()).hexdigest()
    assert kept["users.csv"].sha256 == hashlib.sha256(users.read_bytes()).hexdigest()
    expected = [TestFile(id=kept["users.csv"].id, split=True, header=True), TestFile(id=kept["logo.bin"].id)]
    assert launched.files == again.files == expected
    assert (
        f"uploaded users.csv ({users.stat().st_size} bytes, 11 lines) as {kept['users.csv'].id}: split with its header"
        in err
    )
    assert f"uploaded logo.bin (32.0 MiB, binary) as {kept['logo.bin'].id}: copied" in err


def test_each_bad_file_exits_2_launches_nothing_and_leaves_no_file(
    cli_env: dict[str, str], tmp_path: Path, plan_file: Path, capsys: Any
) -> None:
    server = ServerProcess(tmp_path / "small", "--max-file-bytes", "4096").start()
    api = server.client()
    agent = WireAgent(server, create_provider(api, "lab")["token"])
    try:
        agent.beat()
        data = tmp_path / "data.csv"
        data.write_text("".join(f"{i}\n" for i in range(20)))
        one = tmp_path / "one.csv"
        one.write_text("only\n")
        (tmp_path / "other").mkdir()
        twin = tmp_path / "other" / "data.csv"
        twin.write_text("x\n")
        binary = tmp_path / "pic.bin"
        binary.write_bytes(b"\x00\xff" * 100)
        big = tmp_path / "big.csv"
        big.write_text("line\n" * 1000)  # 5,000 bytes: over the server's 4,096
        cases: list[tuple[list[str], str]] = [
            ([str(tmp_path / "missing.csv")], "file not found"),
            ([str(tmp_path / "other")], "is a directory"),
            ([f"{data}:splt"], "unknown suffix ':splt' (only :split, :header or :split:header"),
            ([f"{data}:header:split"], "':header:split' is not a suffix it takes"),
            ([str(data), str(twin)], "another file is named 'data.csv'"),
            ([str(big)], "limited to 4096 bytes (0.0 MiB) (the server's --max-file-bytes) (HTTP 413)"),
            ([f"{binary}:split"], "is binary (not UTF-8 text): copy it, it cannot be split (HTTP 422)"),
            ([f"{one}:split"], "has 1 data line(s) for 2 containers"),
            ([f"{data}:split:header", f"{one}:split"], "files[1]: file 'one.csv'"),  # the first one uploaded
        ]
        for i, (paths, message) in enumerate(cases):
            command = "run" if i % 2 else "launch"  # run would follow a launched test: none may be
            files = [arg for path in paths for arg in ("--file", path)]
            code, out, err = cli(capsys, command, str(plan_file), "--provider", "lab", "--containers", "2",
                                 *files, *remote(server))  # fmt: skip
            assert code == 2, (paths, out, err)
            assert message in err and f"octotui {command}: " in err, (paths, err)
            assert api.get("/files").json() == [], (paths, "no file left behind")
        code, _, err = cli(capsys, "launch", str(plan_file), "--provider", "nowhere", "--containers", "1",
                           "--file", str(data), *remote(server))  # fmt: skip
        assert code == 2 and "no provider with id or name 'nowhere'" in err
        assert "uploaded" not in err, "a launch refused without its files uploads none (dry run first)"
        assert "deleted again the 2 files uploaded for this launch" in cli(
            capsys, "launch", str(plan_file), "--provider", "lab", "--containers", "2",
            "--file", f"{data}:split", "--file", f"{one}:split", *remote(server),
        )[2]  # fmt: skip
        assert api.get("/tests").json() == [] and api.get("/files").json() == [], "nothing launched or kept"
    finally:
        agent.close()
        api.close()
        server.stop()


# --- compare: each label against a baseline; exit 1 on a regression, 0 without, 2 when refused


def _ended_test(server: ServerProcess, agent: WireAgent, name: str, rows: list[Sample]) -> str:
    """A one-container test on ``agent`` that reported ``rows`` and finished; its id."""
    with server.client() as api:
        made = api.post("/tests", json={"name": name, "plan": PLAN, "provider": "lab", "containers": 1})
        assert made.status_code == 201, made.text
        report = agent.take_launch()
        labels, errors = cumulative(rows)
        agent.beat({**report, "labels": labels, "errors": errors})
        agent.beat({**report, "state": "finished", "exit_code": 0})
        test = api.get(f"/tests/{made.json()['id']}").json()
    assert test["state"] == "finished", test
    return str(test["id"])


BEFORE = samples("home", 0.0, [100] * 20) + samples("login", 0.0, [200] * 10) + samples("gone", 0.0, [10] * 5)
AFTER = (
    samples("home", 0.0, [130] * 20)  # avg and p95 +30 %
    + samples("login", 0.0, [200] * 10, fail_every=2)  # 50 % errors
    + samples("a-label-named-at-great-length-to-be-cut-somewhere/checkout/confirm", 0.0, [10] * 5)
)


def test_a_regression_exits_1_with_its_reasons_none_exits_0(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, tmp_path: Path, capsys: Any
) -> None:
    base = _ended_test(server, wire_agent, "before", BEFORE)
    slow = _ended_test(server, wire_agent, "after", AFTER)

    code, out, err = cli(capsys, "compare", slow, base, *remote(server))
    assert code == 1, err
    assert narrow(out), out
    lines = out.splitlines()
    assert lines[0] == f"test {slow} 'after' against baseline {base} 'before'"
    assert "tolerances: avg +10 %, p95 +10 %, errors +1 point, throughput -10 %" in out
    table = lines[lines.index("   LABEL" + lines[3][8:]) + 1 :][:4]  # the mark, then the label
    rows = {line[3:].split()[0]: line for line in table}
    assert list(rows) == ["a-label-named-at-gr…", "gone", "home", "login"], "a long label cut to fit 80 columns"
    assert rows["home"].startswith("! ") and "100 → 130" in rows["home"] and "20 → 20" in rows["home"]
    assert rows["login"].startswith("! ") and "0.00 → 50.00" in rows["login"]
    assert rows["gone"].startswith("   ") and "5 → -" in rows["gone"] and "12.2 → -" in rows["gone"]
    assert "2 labels regressed (marked !):" in out
    assert "  home: avg +30 % (100 → 130 ms)" in lines and "  home: p95 +30 % (100 → 130 ms)" in lines
    assert "  login: errors +50.0 points (0.0 → 50.0 %)" in lines

    code, out, _ = cli(capsys, "compare", base, slow, *remote(server))
    assert code == 0 and "no regression (4 labels compared)" in out, out
    wide = ["--avg-tolerance", "50", "--p95-tolerance", "50", "--error-tolerance", "60",
            "--throughput-tolerance", "60"]  # fmt: skip
    code, out, _ = cli(capsys, "compare", slow, base, *wide, *remote(server))
    assert code == 0 and "tolerances: avg +50 %, p95 +50 %, errors +60 points, throughput -60 %" in out

    code, out, _ = cli(capsys, "compare", slow, base, "--json", "--error-tolerance", "60", *remote(server))
    found = Comparison.model_validate_json(out)
    assert code == 1 and found.regressions == 1 and found.tolerances["error_percent"] == 60.0
    assert [d.label for d in found.labels if d.regression] == ["home"]
    assert set(json.loads(out)) == set(Comparison.model_fields)

    code, _, err = cli(capsys, "compare", slow, slow, *remote(server))
    assert code == 2 and err.startswith("octotui compare: ") and "its own baseline" in err and "HTTP 422" in err
    code, _, err = cli(capsys, "compare", slow, "t-000000000000", *remote(server))
    assert code == 2 and "t-000000000000" in err and "HTTP 404" in err
    with pytest.raises(SystemExit) as exited:
        cli(capsys, "compare", slow, base, "--avg-tolerance", "-1", *remote(server))
    assert exited.value.code == 2 and "--avg-tolerance: invalid tolerance value: '-1'" in capsys.readouterr().err


def test_the_html_report_compares_with_a_baseline(
    cli_env: dict[str, str], server: ServerProcess, wire_agent: WireAgent, tmp_path: Path, capsys: Any
) -> None:
    base = _ended_test(server, wire_agent, "before", BEFORE)
    slow = _ended_test(server, wire_agent, "after", AFTER)
    report = tmp_path / "report.html"
    code, _, err = cli(capsys, "export", slow, "--format", "html", "--baseline", base, "-o", str(report),
                       *remote(server))  # fmt: skip
    assert code == 0, err
    page = report.read_text()
    assert 'id="comparison"' in page and f"Compared with before <code>{base}</code>" in page
    assert "avg +30 % (100 → 130 ms)" in page
    code, _, err = cli(capsys, "export", slow, "--format", "html", "-o", str(report), *remote(server))
    assert code == 0 and 'id="comparison"' not in report.read_text()
    code, _, err = cli(capsys, "export", slow, "--format", "csv", "--baseline", base, "-o", "-", *remote(server))
    assert code == 2 and "--baseline applies to --format html only" in err
    code, _, err = cli(capsys, "export", slow, "--format", "html", "--baseline", "t-000000000000",
                       "-o", str(tmp_path / "none.html"), *remote(server))  # fmt: skip
    assert code == 2 and "t-000000000000" in err and not (tmp_path / "none.html").exists()


def test_version_is_the_contracts_and_imports_no_model() -> None:
    """``octotui --version`` prints the contract's VERSION (the one agents and servers compare) from
    the installed metadata, without importing pydantic's models (~0.5 s before)."""
    from octotui.protocol import VERSION

    probe = (
        "import sys; from octotui.cli import main; code = main(['--version']); "
        "print(sorted(m for m in sys.modules if m in ('pydantic', 'octotui.protocol', 'httpx')), code, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout == f"octotui {VERSION}\n", done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[] 0", done.stderr
