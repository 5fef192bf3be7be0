"""Validation at the contract's edge, through the real server app (httpx.ASGITransport + lifespan).

Every refusal is a 422 whose detail names the field and the problem, and changes nothing: the
listings read the same before and after, ``/tests`` and ``/changes`` still answer, no command
reaches an agent, nothing is audited. Bodies go out as ``json.dumps`` writes them (ASCII, lone
surrogates as ``\\udc80`` escapes), the way a hostile or broken client can send them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from octotui.protocol import RESERVED_PROPERTY_PREFIXES, TestCreate, image_problem, property_problem
from tests.support.app import Env, Starter
from tests.support.wire import PLAN, bearer, fleet, poll, report, spec

LONE = "\udc80"
DIGEST = "sha256:" + "0123456789abcdef" * 4


async def send(env: Env, method: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return await env.http.request(method, path, content=json.dumps(body).encode(), headers=headers)


async def world(env: Env) -> tuple[Any, ...]:
    """What an operator and the agents can see; every read must answer 200."""
    listings = await env.snapshot()
    changes = await env.http.get("/changes")
    assert changes.status_code == 200, changes.text
    audit = await env.http.get("/audit")
    assert audit.status_code == 200, audit.text
    return (*listings, len(audit.json()))


async def refused(env: Env, path: str, body: dict[str, Any], loc: list[str | int], *words: str, token: str = "") -> str:
    """POST ``body``: 422 naming ``loc`` with ``words`` in the message, and nothing changed."""
    before = await world(env)
    r = await send(env, "POST", path, body, token or None)
    assert r.status_code == 422, (body, r.status_code, r.text)
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", *loc]], detail
    message: str = detail[0]["msg"]
    for word in words:
        assert word in message, (word, message)
    assert await world(env) == before
    return message


@dataclass
class Fleet(Env):
    """The server with two online agents of provider "local" in paris (id, token)."""

    agents: list[tuple[str, str]] = field(default_factory=list)

    async def no_commands(self) -> None:
        for agent_id, token in self.agents:
            assert await poll(self, agent_id, token) == []


@pytest.fixture
async def env(start_server: Starter) -> Fleet:
    base = await start_server()
    agents = await fleet(base, "gen-a", "gen-b")
    return Fleet(base.app, base.http, base.settings, base.provider_tokens, agents)


# --- Lone surrogates, NUL and control characters: refused in every string an operator sends -------


async def test_a_lone_surrogate_in_a_property_value_is_refused_and_poisons_nothing(env: Fleet) -> None:
    # Before: a 500, the test kept in memory with its launch queued, /tests and /changes 500.
    await refused(env, "/tests", spec(properties={"host": "a" + LONE}), ["properties"],
                  "property 'host'", r"lone surrogate (\udc80) at position 1")  # fmt: skip
    await env.no_commands()
    assert not env.ctl.tests and not env.ctl.containers


async def test_a_lone_surrogate_in_a_test_or_provider_or_token_name(env: Fleet) -> None:
    await refused(env, "/tests", spec(name="ab" + LONE), ["name"], r"lone surrogate (\udc80) at position 2")
    await refused(env, "/tests", spec(provider="lo" + LONE), ["provider"], r"lone surrogate (\udc80)")
    await refused(env, "/providers", {"name": "p" + LONE}, ["name"], r"lone surrogate (\udc80) at position 1")
    await refused(env, "/tokens", {"name": LONE, "role": "admin"}, ["name"], r"lone surrogate (\udc80)")
    await refused(env, "/tests", spec(locations=["paris", "ly" + LONE]), ["locations", 1], "lone surrogate")
    pid = (await env.http.get("/providers")).json()[0]["id"]
    before = await world(env)
    r = await send(env, "PATCH", f"/providers/{pid}", {"name": "x" + LONE})
    assert r.status_code == 422 and "lone surrogate" in r.json()["detail"][0]["msg"], r.text
    assert await world(env) == before


async def test_nul_and_control_characters(env: Fleet) -> None:
    await refused(env, "/tests", spec(properties={"host": "a\x00b"}), ["properties"],
                  r"value of property 'host' contains a NUL character (\u0000) at position 1")  # fmt: skip
    await refused(env, "/tests", spec(properties={"host": "a\nb"}), ["properties"],
                  r"control character (\u000a) at position 1: it must be one line")  # fmt: skip
    await refused(env, "/tests", spec(name="ab\x1b[2J"), ["name"], r"control character (\u001b) at position 2")
    await refused(env, "/providers", {"name": "lab\x00"}, ["name"], r"NUL character (\u0000) at position 3")
    # a plan may hold tab, line feed and carriage return, nothing else below space
    plan = PLAN.replace("<hashTree>", "\n\t<hashTree>\r\n  \x01")
    await refused(env, "/tests", spec(plan=plan), ["plan"], r"control character (\u0001)", "(line 3, column 3)")
    await refused(env, "/tests", spec(plan=PLAN + "\n" + LONE), ["plan"], "lone surrogate", "(line 2, column 1)")
    r = await send(env, "POST", "/tests", spec(plan=PLAN.replace("<hashTree>", "\n\t<hashTree>\r\n"), dry_run=True))
    assert r.status_code == 200, r.text


# --- -J property names JMeter accepts, values it can be given, and the agent's own refused --------


async def test_an_empty_property_name_is_refused(env: Fleet) -> None:
    # Before: accepted; JMeter said "Unable to parse first argument for option -J", exited 0
    # and the test read finished with 0 samples.
    await refused(env, "/tests", spec(properties={"": "1"}), ["properties"], "a property name is empty")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("a=b", "contains '=' at position 1"),
        ("a b", "contains whitespace at position 1"),
        ("a\tb", r"control character (\u0009)"),
        ("x" * 129, "longer than 128 characters"),
    ],
)
async def test_names_jmeter_cannot_take(env: Fleet, name: str, words: str) -> None:
    await refused(env, "/tests", spec(properties={name: "1"}), ["properties"], "property name", words)


@pytest.mark.parametrize(
    "name",
    [
        "jmeter.save.saveservice.output_format",  # would lose the percentiles (XML JTL)
        "jmeter.save.saveservice.print_field_names",
        "jmeterengine.nongui.port",  # the port the agent stops JMeter through
        "jmeterengine.nongui.maxport",
        "summariser.interval",  # the live figures
        "summariser.name",
    ],
)
async def test_properties_the_agent_sets_itself_are_refused_by_name(env: Fleet, name: str) -> None:
    message = await refused(env, "/tests", spec(properties={"ok": "1", name: "xml"}), ["properties"], name)
    assert "set by the agent itself" in message and any(p in message for p in RESERVED_PROPERTY_PREFIXES)


async def test_too_many_or_too_long(env: Fleet) -> None:
    many = {f"p{i}": "1" for i in range(101)}
    await refused(env, "/tests", spec(properties=many), ["properties"], "101 properties: at most 100")
    await refused(env, "/tests", spec(properties={"a": "x" * 4097}), ["properties"], "longer than 4096")


async def test_a_field_and_a_different_property_for_one_setting_conflict(env: Fleet) -> None:
    # Before: the field won without a word and users=7 was dropped.
    message = await refused(env, "/tests", spec(users=5, properties={"users": "7"}), [], "users='7'", "users=5")
    assert "set users in one place" in message
    await refused(env, "/tests", spec(duration=60, properties={"duration": "30"}), [], "duration")
    # the same value twice is not a conflict; a property alone, or a field alone, is fine
    for body in (spec(users=5, properties={"users": "5"}), spec(properties={"rampup": "3"}), spec(rampup=3)):
        r = await send(env, "POST", "/tests", {**body, "dry_run": True})
        assert r.status_code == 200, (body, r.text)


async def test_good_properties_reach_the_launch_unchanged(env: Fleet) -> None:
    props = {"host": "127.0.0.1", "url": "http://h/?a=b&c=d", "label": "caf\u00e9 \u2615", "my-prop_1.x": ""}
    r = await send(env, "POST", "/tests", spec(containers=1, users=3, properties=props))
    assert r.status_code == 201, r.text
    assert r.json()["properties"] == {**props, "users": "3"}
    launches = [c["launch"]["properties"] for a, t in env.agents for c in await poll(env, a, t)]
    assert launches == [{**props, "users": "3"}]


# --- Image names checked against Docker's reference grammar ---------------------------------------


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("a;b $(id)", "not a Docker image reference"),
        ("../../x", "not a Docker image reference"),
        ("Justb4/JMeter", "a repository name is lowercase"),
        ("JMETER", "a repository name is lowercase"),
        ("", "is empty"),
        ("justb4/jmeter@sha256:abc", "a digest is sha256: and 64 lowercase hex digits"),
        ("justb4//jmeter", "not a Docker image reference"),
        ("justb4/jmeter:", "not a Docker image reference"),
        ("justb4/jmeter:-x", "not a Docker image reference"),
        ("justb4/jmeter:" + "t" * 129, "not a Docker image reference"),
        ("-x", "not a Docker image reference"),
        ("reg:port/x", "not a Docker image reference"),
        ("a" * 256, "longer than 255"),
    ],
)
async def test_bad_image_names_are_refused(env: Fleet, image: str, words: str) -> None:
    await refused(env, "/tests", spec(image=image), ["image"], words)


@pytest.mark.parametrize(
    "image",
    [
        "octotui-jmeter:local",
        "registry.example.com:5000/team/jmeter:5.6",
        f"ghcr.io/a/b@{DIGEST}",
        "justb/jmeter",
        "127.0.0.1:9/octotui-missing:none",
        "localhost/a__b.c-d--e/f:Tag_1.0-rc",
        f"[::1]:5000/x:y@{DIGEST}",
    ],
)
async def test_good_image_names_are_launched_as_given(env: Fleet, image: str) -> None:
    r = await send(env, "POST", "/tests", spec(image=image, containers=1))
    assert r.status_code == 201, r.text
    assert r.json()["image"] == image
    assert (await env.http.get("/tests")).json()[0]["image"] == image


# --- Counts from operators are JSON integers: no booleans, strings or fractions -------------------


@pytest.mark.parametrize("field", ["containers", "users", "duration", "rampup"])
@pytest.mark.parametrize("value", [True, "5", 2.5, 5.0])
async def test_a_count_that_is_not_an_integer_is_refused(env: Fleet, field: str, value: Any) -> None:
    await refused(env, "/tests", spec(**{field: value}), [field], "valid integer")


async def test_dry_run_is_a_boolean(env: Fleet) -> None:
    await refused(env, "/tests", spec(dry_run="true"), ["dry_run"], "valid boolean")
    await refused(env, "/tests", spec(dry_run=1), ["dry_run"], "valid boolean")


async def test_the_client_model_refuses_them_too() -> None:
    with pytest.raises(ValueError, match="valid integer"):
        TestCreate.model_validate(spec(containers=True))
    assert TestCreate.model_validate(spec(containers=3)).containers == 3


# --- What agents report is never refused for an odd error text: it is stored with U+FFFD ----------


async def test_registration_scrubs_platform_and_version_and_refuses_a_bad_name(start_server: Starter) -> None:
    env = await start_server()
    p = await env.provider("lab")
    token = env.provider_tokens[p["id"]]
    r = await send(env, "POST", "/agents/register", {"name": "gen" + LONE, "location": "paris"}, token)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"], r.text
    assert "lone surrogate" in r.json()["detail"][0]["msg"]
    r = await send(env, "POST", "/agents/register", {"name": "gen", "location": "paris", "instance": "i\x00"}, token)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "instance"], r.text
    assert (await env.http.get("/agents")).json() == []
    body = {"name": "gen", "location": "paris", "platform": "Linux\x00 6" + LONE + "\x1b[31m", "version": "1\n"}
    r = await send(env, "POST", "/agents/register", body, token)
    assert r.status_code == 200, r.text
    [agent] = (await env.http.get("/agents")).json()
    assert agent["platform"] == "Linux\ufffd 6\ufffd\ufffd[31m" and agent["version"] == "1\ufffd"


async def test_a_heartbeat_with_a_weird_error_text_is_taken_and_listings_still_answer(env: Fleet) -> None:
    # Before: the surrogate reached the store and the listings (500 for everyone).
    r = await send(env, "POST", "/tests", spec(containers=2))
    assert r.status_code == 201, r.text
    test_id = r.json()["id"]
    for agent_id, token in env.agents:
        [cmd] = await poll(env, agent_id, token)
        error = "open /x/\udcff: no such file\x00\x1b[2J\x9b\r\nline 2\t."
        body = {
            "host": {"ts": time.time(), "cpu_percent": 1.0, "memory_percent": 2.0},
            "docker": {"available": False, "error": "engine " + LONE, "version": "v\x01"},
            "containers": [report(cmd, "failed", error=error, exit_code=1)],
        }
        r = await send(env, "POST", f"/agents/{agent_id}/heartbeat", body, token)
        assert r.status_code == 200, r.text
        r = await send(env, "POST", f"/agents/{agent_id}/commands/{cmd['id']}/ack", {"ok": False, "error": LONE},
                       token)  # fmt: skip
        assert r.status_code == 204, r.text
    await world(env)
    test = (await env.http.get(f"/tests/{test_id}")).json()
    assert test["state"] == "failed"
    errors = {c["error"] for c in test["containers"]}
    assert errors == {"open /x/\ufffd: no such file\ufffd\ufffd[2J\ufffd\r\nline 2\t."}
    agent = (await env.http.get(f"/agents/{env.agents[0][0]}")).json()
    assert agent["docker"] == {"available": False, "version": "v\ufffd", "error": "engine \ufffd"}


async def test_ids_in_a_heartbeat_are_ids(env: Fleet) -> None:
    agent_id, token = env.agents[0]
    before = await world(env)
    for bad in ("c" + LONE, "", "c 1", "c\x00"):
        body = {"host": {"ts": time.time(), "cpu_percent": 1.0, "memory_percent": 2.0},
                "containers": [{"container_id": bad, "test_id": "t-1", "state": "running"}]}  # fmt: skip
        r = await send(env, "POST", f"/agents/{agent_id}/heartbeat", body, token)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "containers", 0, "container_id"]
    assert await world(env) == before


# --- The checks themselves, for the agent and the dashboard that import them ----------------------


def test_property_problem_and_image_problem() -> None:
    assert property_problem("users", "10") is None
    assert property_problem("jmeter.save.saveservice.output_format", "csv") is not None
    assert property_problem("JMETER.save.saveservice.output_format", "csv") is None  # another Java property
    assert image_problem("justb4/jmeter:5.5") is None
    assert image_problem("Justb4/jmeter") is None  # like Docker: a capitalised first part is a registry
