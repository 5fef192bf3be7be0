"""Fleet care (issue 15 part 4) through the real app with agents speaking the wire protocol:
version skew at registration, two identities on one machine, drain and undrain, and the README's
upgrade procedure (drain, wait, replace the agent keeping its identity, undrain) over a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.host import machine_id
from octotui.protocol import VERSION
from octotui.server.domain.fleet import version_key
from tests.support.admin import create_provider
from tests.support.app import Env
from tests.support.labelkit import serving
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until
from tests.support.wire import PLAN, ack, bearer, fleet, poll, report, spec

# --- versions ------------------------------------------------------------------------------------


def test_versions_compare_by_their_numbers_not_as_text() -> None:
    key = version_key
    assert key("0.10.0") > key("0.9.1") > key("0.9")  # type: ignore[operator]
    assert key("1.0") == key("1.0.0") == key("v1.0.0+build7")
    assert key("1.0.0rc1") < key("1.0.0") < key("1.0.0.post1")  # type: ignore[operator]
    assert key("dev") is None and key("") is None
    assert key("1\ufffd") is None and key("2.0 beta") is None and key("1+") is None  # no version: not compared


async def test_an_agent_newer_than_the_server_is_refused_naming_both_versions(env: Env) -> None:
    p = await env.provider()
    newer = ".".join(str(n + 1) if i == 0 else "0" for i, n in enumerate(version_key(VERSION)[0]))  # type: ignore[index]
    before = await env.snapshot()
    for version in (newer, "99.0.0rc1", f"{VERSION}.1"):
        r = await env.http.post(
            "/agents/register",
            json={"name": "gen-z", "location": "paris", "version": version},
            headers=bearer(p["token"]),
        )
        assert r.status_code == 409, r.text
        assert f"agent version {version} is newer than this server's version {VERSION}" in r.json()["detail"]
    assert await env.snapshot() == before


async def test_older_agents_are_outdated_and_others_not(env: Env) -> None:
    p = await env.provider()
    ids = {}
    for name, version in (("old", "0.0.1"), ("same", VERSION), ("rc", f"{VERSION}rc1"), ("odd", "dev-build")):
        ids[name], _ = await env.register(p["token"], name=name, version=version)
    agents = {a["name"]: a for a in (await env.http.get("/agents")).json()}
    assert {n: agents[n]["outdated"] for n in ids} == {"old": True, "same": False, "rc": True, "odd": False}


# --- machines ------------------------------------------------------------------------------------


async def test_two_identities_on_one_machine_are_both_flagged_until_one_is_gone(env: Env) -> None:
    p = await env.provider()
    a, _ = await env.register(p["token"], name="gen-a", instance="i-1", machine_id="m0123")
    b, _ = await env.register(p["token"], name="gen-b", instance="i-2", machine_id="m0123")
    c, _ = await env.register(p["token"], name="gen-c", instance="i-3", machine_id="m9999")
    old, _ = await env.register(p["token"], name="gen-d", instance="i-4")  # older agent: no machine id

    async def flags() -> dict[str, bool]:
        return {x["id"]: x["duplicate_machine"] for x in (await env.http.get("/agents")).json()}

    assert await flags() == {a: True, b: True, c: False, old: False}
    assert (await env.http.delete(f"/agents/{b}")).status_code == 204
    assert await flags() == {a: False, c: False, old: False}


def test_the_agent_reads_its_machine_id_from_the_first_file_that_has_one(tmp_path: Path) -> None:
    systemd, dbus = tmp_path / "machine-id", tmp_path / "dbus-machine-id"
    dbus.write_text("0f1e2d3c4b5a69788796a5b4c3d2e1f0\n")
    assert machine_id((systemd, dbus)) == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    systemd.write_text("uninitialized garbage\n")  # not an id: the next file
    assert machine_id((systemd, dbus)) == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    systemd.write_text("a1b2c3\n")
    assert machine_id((systemd, dbus)) == "a1b2c3"
    assert machine_id((tmp_path / "none",)) is None


# --- drain and undrain ---------------------------------------------------------------------------


async def test_draining_an_unknown_agent_is_a_404_and_changes_nothing(env: Env) -> None:
    await fleet(env, "gen-a")
    before = await env.snapshot()
    for action in ("drain", "undrain"):
        r = await env.http.post(f"/agents/a-000000000000/{action}")
        assert r.status_code == 404 and "no agent with id 'a-000000000000'" in r.json()["detail"]
    assert await env.snapshot() == before
    assert not [e for e in (await env.http.get("/audit")).json() if e["action"] in ("agent.drain", "agent.undrain")]


async def test_a_drained_agent_gets_no_new_containers_and_a_launch_with_only_drained_ones_is_refused(env: Env) -> None:
    (a, a_tok), (b, _) = await fleet(env, "gen-a", "gen-b")
    r = await env.http.post(f"/agents/{a}/drain")
    assert r.status_code == 200 and r.json()["drained"] is True
    again = await env.http.post(f"/agents/{a}/drain")  # idempotent
    assert again.status_code == 200 and again.json()["drained"] is True
    dry = (await env.http.post("/tests", json=spec(containers=3, dry_run=True))).json()
    assert [(i["agent_name"], i["containers"]) for i in dry["items"]] == [("gen-b", 3)]
    made = await env.http.post("/tests", json=spec(containers=2))
    assert made.status_code == 201
    assert {c["agent_name"] for c in made.json()["containers"]} == {"gen-b"}
    assert await poll(env, a, a_tok) == []
    # both drained: a clear refusal naming them, nothing made
    assert (await env.http.post(f"/agents/{b}/drain")).status_code == 200
    before = await env.snapshot()
    for dry_run in (True, False):
        refused = await env.http.post("/tests", json=spec(containers=1, dry_run=dry_run))
        assert refused.status_code == 409, refused.text
        assert "every online agent of the provider is drained: gen-a (drained), gen-b (drained)" in refused.text
    assert await env.snapshot() == before
    actions = [(e["action"], e["target"], e["detail"]) for e in (await env.http.get("/audit")).json()]
    assert actions[:3] == [
        ("agent.drain", b, "name=gen-b"),
        ("test.create", made.json()["id"], "name=checkout provider=local containers=2"),
        ("agent.drain", a, "name=gen-a (already so)"),
    ]
    assert (await env.http.post(f"/agents/{a}/undrain")).json()["drained"] is False
    again = await env.http.post("/tests", json=spec(containers=1))
    assert again.status_code == 201 and again.json()["containers"][0]["agent_name"] == "gen-a"


async def test_a_drained_agents_running_containers_finish(env: Env) -> None:
    ((a, tok),) = await fleet(env, "gen-a")
    made = (await env.http.post("/tests", json=spec(containers=1))).json()
    (cmd,) = await poll(env, a, tok)
    await ack(env, a, tok, cmd["id"])
    await env.beat(a, tok, containers=[report(cmd, "running")])
    assert (await env.http.post(f"/agents/{a}/drain")).status_code == 200
    assert [c["kind"] for c in await poll(env, a, tok)] == []  # no stop: it runs on
    await env.beat(a, tok, containers=[report(cmd, "finished", exit_code=0)])
    t = (await env.http.get(f"/tests/{made['id']}")).json()
    assert t["state"] == "finished" and t["containers"][0]["state"] == "finished"


# --- the upgrade procedure (README) --------------------------------------------------------------


async def test_upgrade_drain_replace_keeping_the_identity_then_undrain(tmp_path: Path) -> None:
    data = tmp_path / "server"
    async with serving(data) as env:
        p = await env.provider()
        register = {"instance": "state-dir-1", "machine_id": "m42"}
        old_id, token = await env.register(p["token"], name="gen-a", version="0.0.1", **register)
        await env.beat(old_id, token)
        assert (await env.http.get(f"/agents/{old_id}")).json()["outdated"] is True
        assert (await env.http.post(f"/agents/{old_id}/drain")).status_code == 200
    async with serving(data) as env:  # a server restart keeps it drained
        # the agent replaced by a new version keeping its state dir: the same identity, still drained
        new_id, token = await env.register(p["token"], name="gen-a", version=VERSION, **register)
        await env.beat(new_id, token)
        agent = (await env.http.get(f"/agents/{new_id}")).json()
        assert new_id == old_id and agent["drained"] is True and agent["outdated"] is False
        assert agent["duplicate_machine"] is False and agent["version"] == VERSION
        refused = await env.http.post("/tests", json=spec(containers=1))
        assert refused.status_code == 409 and "gen-a (drained)" in refused.text
        assert (await env.http.post(f"/agents/{new_id}/undrain")).json()["drained"] is False
        made = await env.http.post("/tests", json=spec(containers=1))
        assert made.status_code == 201 and made.json()["containers"][0]["agent"] == new_id


@pytest.mark.docker
def test_a_real_agent_replaced_on_its_state_dir_keeps_its_identity_and_drain(  # type: ignore[no-untyped-def]
    server, agents, tmp_path
) -> None:
    """Real agent processes: the one drained is stopped and another started on its state dir (the
    upgrade's replacement) — same id, still drained, nothing placed on it until undrained; a second
    identity on this machine (another state dir) flags both as one machine."""
    api = server.client()
    provider = create_provider(api, "lab")
    first = AgentProcess(server.url, provider["token"], tmp_path / "gen-a", name="gen-a")
    agents.append(first.start())

    def online(name: str) -> dict[str, Any] | None:
        found = [a for a in api.get("/agents").json() if a["name"] == name and a["status"] == "online"]
        return found[0] if found and (found[0].get("docker") or {}).get("available") else None

    agent_id = wait_until(lambda: online("gen-a"), timeout=40, what="gen-a online")["id"]
    assert api.post(f"/agents/{agent_id}/drain").json()["drained"] is True
    first.stop()
    agents.append(AgentProcess(server.url, provider["token"], tmp_path / "gen-a", name="gen-a").start())
    again = wait_until(lambda: online("gen-a"), timeout=40, what="the replaced gen-a online")
    assert again["id"] == agent_id and again["drained"] is True and again["outdated"] is False
    dry = {"name": "t", "plan": PLAN, "provider": "lab", "containers": 1, "dry_run": True}
    refused = api.post("/tests", json=dry)
    assert refused.status_code == 409 and "gen-a (drained)" in refused.text
    agents.append(AgentProcess(server.url, provider["token"], tmp_path / "gen-b", name="gen-b").start())
    wait_until(lambda: online("gen-b"), timeout=40, what="gen-b online")
    listed = {a["name"]: a for a in api.get("/agents").json()}
    assert machine_id() is not None, "this machine has an id (/etc/machine-id)"
    assert listed["gen-a"]["duplicate_machine"] is True and listed["gen-b"]["duplicate_machine"] is True
    placed = api.post("/tests", json=dry).json()
    assert [i["agent_name"] for i in placed["items"]] == ["gen-b"]  # the drained one skipped
    assert placed["skipped"] == ["gen-a (drained)"]  # and the dry run says why
    assert api.post(f"/agents/{agent_id}/undrain").json()["drained"] is False
    placed = api.post("/tests", json={**dry, "containers": 2}).json()
    assert sorted(i["agent_name"] for i in placed["items"]) == ["gen-a", "gen-b"] and placed["skipped"] == []
