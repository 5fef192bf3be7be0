"""Operator tokens and the audit log: the API contract, the ``octotui token`` CLI, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from octotui.client import Client, ClientError
from tests.support.app import ADMIN, Starter
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wire import PLAN, bearer


async def test_create_list_revoke_contract(start_server: Starter) -> None:
    env = await start_server()
    r = await env.http.post("/tokens", json={"name": "night-shift", "role": "read-only"})
    assert r.status_code == 201
    created = r.json()
    assert set(created) == {"name", "role", "token"} and created["role"] == "read-only" and len(created["token"]) > 30
    listed = (await env.http.get("/tokens")).json()
    assert [(t["name"], t["role"]) for t in listed] == [("admin", "admin"), ("night-shift", "read-only")]
    assert all("token" not in t for t in listed), "a listing never shows secrets"
    assert created["token"] not in (await env.http.get("/tokens")).text
    ro = bearer(created["token"])
    assert (await env.http.get("/info", headers=ro)).json()["role"] == "read-only"
    assert (await env.http.delete("/tokens/night-shift")).status_code == 204
    assert (await env.http.get("/info", headers=ro)).status_code == 401
    assert [t["name"] for t in (await env.http.get("/tokens")).json()] == ["admin"]


async def test_only_hashes_are_stored(start_server: Starter) -> None:
    env = await start_server()
    secret = (await env.http.post("/tokens", json={"name": "ops", "role": "admin"})).json()["token"]
    p = (await env.http.post("/providers", json={"name": "local"})).json()
    _, agent_token = await env.register(p["token"])
    raw = env.settings.db_path.read_bytes() + env.settings.db_path.with_suffix(".db-wal").read_bytes()
    assert secret.encode() not in raw and agent_token.encode() not in raw


async def test_no_token_the_server_makes_reads_as_a_command_line_option(start_server: Starter) -> None:
    """`--token TOKEN` reads a leading "-" as an option: 1 plain random token in 64 started so."""
    env = await start_server()
    made = []
    for n in range(40):
        made.append((await env.http.post("/tokens", json={"name": f"t{n}", "role": "read-only"})).json()["token"])
        p = (await env.http.post("/providers", json={"name": f"p{n}"})).json()
        made.append(p["token"])
        made.append((await env.http.post(f"/providers/{p['id']}/rotate-token")).json()["token"])
        made.append((await env.register(made[-1], name=f"h{n}"))[1])
    assert len(set(made)) == len(made) == 160
    assert all(token.startswith("octo_") and len(token) > 40 for token in made), made


def test_a_generated_admin_token_has_the_same_form(tmp_path: Path) -> None:
    from octotui.server.cli import admin_token

    token = admin_token(tmp_path, None)
    assert token.startswith("octo_") and (tmp_path / "admin.token").read_text().strip() == token
    assert admin_token(tmp_path, None) == token, "generated once, then read back"


async def test_bad_token_requests_are_refused_and_change_nothing(start_server: Starter) -> None:
    env = await start_server()
    await env.http.post("/tokens", json={"name": "ops", "role": "admin"})
    before = (await env.http.get("/tokens")).json(), (await env.http.get("/audit")).json()
    cases = [
        ("POST", "/tokens", {"name": "ops", "role": "read-only"}, 409, "already exists"),
        ("POST", "/tokens", {"name": "admin", "role": "read-only"}, 409, "already exists"),
        ("POST", "/tokens", {"name": "x", "role": "provider"}, 422, ""),
        ("POST", "/tokens", {"name": "x", "role": "agent"}, 422, ""),
        ("POST", "/tokens", {"name": "bad name!", "role": "admin"}, 422, ""),
        ("POST", "/tokens", {"name": "", "role": "admin"}, 422, ""),
        ("POST", "/tokens", {"role": "admin"}, 422, ""),
        ("DELETE", "/tokens/nope", None, 404, "no token named 'nope'"),
        ("DELETE", "/tokens/admin", None, 409, "cannot be revoked"),
    ]
    for method, path, body, status, text in cases:
        r = await env.http.request(method, path, json=body)
        assert r.status_code == status, (method, path, body, r.text)
        assert text in str(r.json()["detail"])
    assert ((await env.http.get("/tokens")).json(), (await env.http.get("/audit")).json()) == before


async def test_audit_says_who_what_when_from_where(start_server: Starter) -> None:
    env = await start_server()
    ops = (await env.http.post("/tokens", json={"name": "ops", "role": "admin"})).json()["token"]
    p = (await env.http.post("/providers", json={"name": "local"}, headers=bearer(ops))).json()
    agent_id, token = await env.register(p["token"], name="h1")
    for _ in range(3):
        await env.beat(agent_id, token)  # heartbeats are not audited
    r = await env.http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1})
    test_id = r.json()["id"]
    await env.http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1,
                                        "dry_run": True})  # fmt: skip
    await env.http.post(f"/tests/{test_id}/stop")
    ro = bearer(await env.ctl.add_operator_token("read-only", "watcher"))
    assert (await env.http.post("/providers", json={"name": "x"}, headers=ro)).status_code == 403  # refused: none
    entries = (await env.http.get("/audit", headers=ro)).json()
    got = [(e["actor"], e["role"], e["action"], e["target"]) for e in entries]
    assert got == [
        ("admin", "admin", "test.stop", test_id),
        ("admin", "admin", "test.create", test_id),
        ("provider:local", "provider", "agent.register", agent_id),
        ("ops", "admin", "provider.create", p["id"]),
        ("admin", "admin", "token.create", "ops"),
    ]
    assert all(e["address"] == "127.0.0.1" and e["ts"] for e in entries)
    assert "location=paris" in entries[2]["detail"] and "role=admin" in entries[4]["detail"]
    assert ops not in (await env.http.get("/audit")).text, "secrets never reach the audit log"
    # Paging: newest first, before = the last id seen.
    first = (await env.http.get("/audit", params={"limit": 2})).json()
    rest = (await env.http.get("/audit", params={"limit": 10, "before": first[-1]["id"]})).json()
    assert [e["id"] for e in first + rest] == [e["id"] for e in entries]
    for params in ({"limit": 0}, {"limit": 100000}, {"before": "x"}, {"limit": "many"}):
        r = await env.http.get("/audit", params=params)
        assert r.status_code == 422, params


async def test_client_methods(start_server: Starter) -> None:
    env = await start_server()
    transport = env.http._transport  # the app's ASGI transport
    async with Client("http://test", ADMIN, transport=transport) as client:  # type: ignore[arg-type]
        created = await client.create_token("ro", "read-only")
        assert [t.name for t in await client.tokens()] == ["admin", "ro"]
        await client.revoke_token("ro")
        try:
            await client.revoke_token("ro")
        except ClientError as exc:
            assert exc.status == 404 and "no token named" in exc.message
        else:
            raise AssertionError("revoking twice must fail")
        assert [e.action for e in await client.audit()] == ["token.revoke", "token.create"]
    async with Client("http://test", created.token, transport=transport) as client:  # type: ignore[arg-type]
        try:
            await client.tokens()
        except ClientError as exc:
            assert exc.status == 401
        else:
            raise AssertionError("a revoked token must be refused")


# --- the CLI -------------------------------------------------------------------------------------


def octotui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCTOTUI_")}
    return subprocess.run(
        [sys.executable, "-m", "octotui", "token", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def test_cli_through_a_server(server: ServerProcess) -> None:
    flags = ("--server", server.url, f"--token={server.admin_token}")
    r = octotui("create", "--role", "read-only", "--name", "wall", *flags)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert "shown this once" in r.stderr and len(secret) > 30
    with server.client() as http:
        assert http.get("/info", headers=bearer(secret)).json()["role"] == "read-only"
    r = octotui("list", env={"OCTOTUI_SERVER": server.url, "OCTOTUI_TOKEN": server.admin_token})
    assert r.returncode == 0 and "wall" in r.stdout and "read-only" in r.stdout and secret not in r.stdout
    r = octotui("create", "--role", "read-only", "--name", "wall", *flags)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = octotui("list", "--server", server.url, f"--token={secret}")
    assert r.returncode == 0, "read-only tokens may list"
    r = octotui("revoke", "wall", "--server", server.url, f"--token={secret}")
    assert r.returncode == 1 and "read-only token" in r.stderr
    r = octotui("revoke", "wall", *flags)
    assert r.returncode == 0, r.stderr
    with server.client() as http:
        assert http.get("/info", headers=bearer(secret)).status_code == 401
    assert secret not in server.log_path.read_text(), "secrets are never logged"
    r = octotui("list", "--server", server.url, "--token=wrong")
    assert r.returncode == 1 and "invalid or revoked token" in r.stderr
    r = octotui("list", "--server", server.url)
    assert r.returncode == 1 and "admin token" in r.stderr


def test_cli_on_the_data_dir_while_the_server_runs(server: ServerProcess, tmp_path: Path) -> None:
    d = ("--data-dir", str(server.data_dir))
    r = octotui("create", "--role", "admin", "--name", "ops", *d)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    with server.client() as http:
        # The running server notices the change in its file within a second.
        wait_until(lambda: http.get("/info", headers=bearer(secret)).status_code == 200, 5, what="token taken")
        assert [t["name"] for t in http.get("/tokens").json()] == ["admin", "ops"]
        r = octotui("revoke", "ops", *d)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: http.get("/info", headers=bearer(secret)).status_code == 401, 5, what="token revoked")
        actions = [(e["actor"].split(":")[0], e["action"]) for e in http.get("/audit").json()]
        assert actions == [("local", "token.revoke"), ("local", "token.create")]
    r = octotui("list", *d)
    assert r.returncode == 0 and "admin" in r.stdout and "ops" not in r.stdout


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    r = octotui("list", "--data-dir", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "no server state" in r.stderr
    r = octotui("create", "--role", "read-only", "--name", "bad name", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "--name" in r.stderr
    r = octotui("create", "--role", "root", "--name", "x", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = octotui("revoke")
    assert r.returncode == 2
    r = octotui("list", "--server", "http://127.0.0.1:9", "--token=x")
    assert r.returncode == 1 and "127.0.0.1:9" in r.stderr
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "octotui.db").exists()


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 10], ids=["empty", "not-sqlite"])
def test_cli_refuses_a_database_it_cannot_use_and_leaves_it_untouched(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "octotui.db"
    db.write_bytes(content)
    r = octotui("create", "--role", "read-only", "--name", "x", "--data-dir", str(tmp_path))
    assert r.returncode == 1 and str(db) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert db.read_bytes() == content
