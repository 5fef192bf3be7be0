"""The agent's parts that need neither a server nor a Docker engine: host sampling, settings,
identity file, command log, backoff, launch arguments, and an agent with no engine at all."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import time
from pathlib import Path

import certifi
import psutil
import pytest

from agent.cgroups import Cgroups
from agent.containers import DockerRuntime
from agent.host import HostSampler
from agent.launches import jmeter_args
from agent.pacing import BACKOFF_CAP, backoff_delay
from agent.records import LaunchError
from agent.settings import parse_settings
from agent.state import CommandLog, Identity
from octotui.protocol import Command, CommandAck, LaunchSpec

PLAN = "<jmeterTestPlan/>"


# --- host sampling ---------------------------------------------------------------------------


def test_host_sample_has_real_figures(tmp_path: Path) -> None:
    sampler = HostSampler(tmp_path)
    # some loopback traffic, so the network counters move
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            client.sendall(b"x" * 200_000)
            received = 0
            while received < 200_000:
                received += len(peer.recv(65536))
            peer.close()
    time.sleep(0.2)
    sample = sampler.sample()
    assert len(sample.cpu_per_core) == psutil.cpu_count() == sampler.cpu_count
    assert 0 <= sample.cpu_percent <= 100 and all(0 <= c <= 100 for c in sample.cpu_per_core)
    assert 0 < sample.memory_percent < 100
    assert 0 < sample.memory_used < sample.memory_total == sampler.memory_total
    assert 0 < sample.disk_percent <= 100
    assert sample.net_sent_bps > 0 and sample.net_recv_bps > 0
    assert min(sample.disk_read_bps, sample.disk_write_bps, sample.load1, sample.swap_percent) >= 0
    assert abs(sample.ts - time.time()) < 5


def test_sampling_is_cheap() -> None:
    sampler = HostSampler()
    started = time.process_time()
    for _ in range(100):
        sampler.sample()
    per_sample = (time.process_time() - started) / 100
    # 1 % of a core at 1 s sampling is 10 ms: stay far below (measured ~0.4 ms)
    assert per_sample < 0.005, f"{per_sample * 1000:.2f} ms of CPU per sample"


def test_sampler_on_a_missing_state_dir_measures_its_nearest_parent(tmp_path: Path) -> None:
    sampler = HostSampler(tmp_path / "not" / "yet" / "there")
    assert sampler.disk_path == str(tmp_path)
    assert sampler.sample().disk_percent > 0


# --- settings --------------------------------------------------------------------------------


def test_flags_over_environment_over_defaults(tmp_path: Path) -> None:
    env = {"OCTOTUI_SERVER": "http://10.0.0.1:8427/", "OCTOTUI_TOKEN": "env-token", "OCTOTUI_LOCATION": "lyon",
           "OCTOTUI_STATE_DIR": str(tmp_path / "env-state"), "OCTOTUI_INTERVAL": "2.5"}  # fmt: skip
    settings = parse_settings(["--location", "paris"], env)
    assert settings.server == "http://10.0.0.1:8427"
    assert (settings.token, settings.location, settings.interval) == ("env-token", "paris", 2.5)
    assert settings.state_dir == tmp_path / "env-state"
    assert settings.work_dir == tmp_path / "env-state" / "work"
    assert settings.network_mode == "host" and settings.log_level == "info" and settings.verify is True
    assert settings.name == socket.gethostname().split(".")[0]
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(certifi.where()).read_text())
    settings = parse_settings(
        ["--server", "https://ctl.example:8443", "--name", "gen 1", "--work-dir", str(tmp_path / "w"),
         "--ca-bundle", str(bundle), "--network-mode", "bridge", "--log-level", "debug"], env,
    )  # fmt: skip
    assert settings.server == "https://ctl.example:8443" and settings.name == "gen 1"
    assert settings.work_dir == tmp_path / "w" and isinstance(settings.verify, ssl.SSLContext)
    assert settings.network_mode == "bridge" and settings.log_level == "debug"


def test_defaults_without_environment() -> None:
    settings = parse_settings(["--server", "http://127.0.0.1:8427"], {})
    assert settings.location == "default" and settings.token is None and settings.interval == 1.0
    assert settings.state_dir == Path("~/.local/share/octotui-agent").expanduser()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--server (or OCTOTUI_SERVER) is required"),
        (["--server", "ftp://x"], {}, "not an http(s) URL"),
        (["--server", "localhost:8427"], {}, "not an http(s) URL"),
        ([], {"OCTOTUI_SERVER": "nonsense"}, "not an http(s) URL"),
        (["--server", "http://h", "--interval", "0"], {}, "between 0.1 and 3600"),
        (["--server", "http://h", "--interval", "fast"], {}, "not a number"),
        (["--server", "http://h"], {"OCTOTUI_INTERVAL": "-1"}, "between 0.1 and 3600"),
        (["--server", "http://h", "--location", "pa/ris"], {}, "--location"),
        (["--server", "http://h", "--location", ""], {}, "--location"),
        (["--server", "http://h", "--name", "x" * 65], {}, "--name"),
        (["--server", "http://h", "--ca-bundle", "/no/such/ca.pem"], {}, "no such file"),
        (["--server", "http://h", "--log-level", "loud"], {}, "invalid choice"),
        (["--server", "http://h", "--network-mode", "a b"], {}, "not a docker network mode"),
        (["--server", "http://h", "--bogus"], {}, "unrecognized arguments"),
    ],
)
def test_bad_settings_exit_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv, env)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


# --- identity, command log, backoff ----------------------------------------------------------


def test_identity_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    identity = Identity("a-1", "secret-token", "http://127.0.0.1:8427", heartbeat_interval=1.0, poll_timeout=30.0)
    identity.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "agent_id": "a-1", "agent_token": "secret-token", "server": "http://127.0.0.1:8427",
        "heartbeat_interval": 1.0, "poll_timeout": 30.0,
    }  # fmt: skip
    assert Identity.load(path) == identity
    assert Identity.load(tmp_path / "absent.json") is None


@pytest.mark.parametrize("content", ["", "{", "[]", '{"agent_id": "a"}', '{"agent_id": 1, "agent_token": null}'])
def test_unreadable_identity_is_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "identity.json"
    path.write_text(content)
    assert Identity.load(path) is None


def test_command_log_survives_a_restart_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "commands.json"
    log = CommandLog(path)
    log.add("cmd-1", CommandAck(ok=True))
    log.add("cmd-2", CommandAck(ok=False, error="no Docker engine on this agent"))
    again = CommandLog(path)
    assert again.get("cmd-1") == CommandAck(ok=True)
    assert again.get("cmd-2") == CommandAck(ok=False, error="no Docker engine on this agent")
    assert again.get("cmd-3") is None
    for index in range(2100):
        again.add(f"bulk-{index}", CommandAck(ok=True))
    assert again.get("cmd-1") is None and again.get("bulk-2099") is not None
    path.write_text("garbage")
    assert CommandLog(path).get("bulk-2099") is None


def test_backoff_grows_with_jitter_and_caps_near_60_s() -> None:
    assert all(0.5 <= backoff_delay(0) <= 1.0 for _ in range(50))
    assert all(2.0 <= backoff_delay(2) <= 4.0 for _ in range(50))
    late = [backoff_delay(attempt) for attempt in range(6, 200) for _ in range(3)]
    assert max(late) <= BACKOFF_CAP and min(late) >= BACKOFF_CAP / 2
    assert len({round(d, 3) for d in late}) > 10, "jittered"


# --- launches without an engine --------------------------------------------------------------


def test_jmeter_args_pin_the_shutdown_port_and_ask_for_csv() -> None:
    spec = LaunchSpec(test_id="t", container_id="c", image="i", plan=PLAN, properties={"users": "3", "a.b": "x y"})
    args = jmeter_args(spec, 4500)
    assert args[:7] == ["-n", "-t", "/plan/plan.jmx", "-l", "/results/results.jtl", "-j", "/results/jmeter.log"]
    assert "-Jjmeter.save.saveservice.output_format=csv" in args
    assert "-Jjmeter.save.saveservice.print_field_names=true" in args
    assert "-Jjmeterengine.nongui.port=4500" in args and "-Jjmeterengine.nongui.maxport=4500" in args
    assert "-Jsummariser.interval=5" in args
    assert args[-2:] == ["-Jusers=3", "-Ja.b=x y"]


async def test_agent_without_engine_keeps_going_and_refuses_launches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    runtime = DockerRuntime(tmp_path / "work", "a-none")
    info, changed = await runtime.check_engine()
    assert not info.available and changed, "the first check always counts as a change (it is logged)"
    assert (await runtime.check_engine())[1] is False
    assert "no Docker engine answers at unix://" in (info.error or "")
    launch = LaunchSpec(test_id="t", container_id="c-1", image="any:image", plan=PLAN)
    command = Command(id="cmd-1", kind="launch", container_id="c-1", test_id="t", launch=launch)
    with pytest.raises(LaunchError, match="no Docker engine on this agent"):
        await runtime.launch(command)
    reports = await runtime.reports()
    assert [(r.container_id, r.state) for r in reports] == [("c-1", "failed")]
    assert "no Docker engine" in (reports[0].error or "")
    assert not (tmp_path / "work" / "c-1" / "plan").exists()
    assert await runtime.stop("c-1", 1.0) == "already failed"
    await runtime.aclose()


def test_cgroup_reader_finds_nothing_for_unknown_ids(tmp_path: Path) -> None:
    assert Cgroups().find("0" * 64) is None
    assert Cgroups(tmp_path).find("abc") is None
