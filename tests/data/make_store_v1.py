"""Made tests/data/store-v1.sqlite with the code of 3656da1 (schema version 1).

PYTHONPATH=<a worktree of 3656da1> python make_store_v1.py OUTDIR, then VACUUM the file.
"""

import asyncio
import sys
import time
from pathlib import Path

import httpx

import octotui.server.app as appmod
from octotui.server.app import create_app
from octotui.server.settings import ServerSettings

assert "/tmp/octotui-base" in appmod.__file__, appmod.__file__

PLAN = (
    '<?xml version="1.0"?><jmeterTestPlan version="1.2"><hashTree><TestPlan testname="t"/></hashTree></jmeterTestPlan>'
)
ADMIN = "admin-secret"


def H(t):
    return {"Authorization": f"Bearer {t}"}


async def main(out: Path) -> None:
    settings = ServerSettings(data_dir=out, admin_token=ADMIN, flush_interval=0.05, late_after=30, offline_after=60)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/api/v1", headers=H(ADMIN)) as h,
    ):
        p = (await h.post("/providers", json={"name": "paris-fleet"})).json()
        r = (
            await h.post(
                "/agents/register",
                json={
                    "name": "gen-1",
                    "location": "paris",
                    "version": "0.9",
                    "cpu_count": 4,
                    "memory_total": 8 * 1024**3,
                    "platform": "linux",
                },
                headers=H(p["token"]),
            )
        ).json()
        aid, tok = r["agent_id"], r["agent_token"]
        host = {
            "ts": time.time(),
            "cpu_percent": 5,
            "cpu_per_core": [5, 5],
            "memory_percent": 20,
            "memory_total": 8 * 1024**3,
            "memory_used": 1024**3,
        }

        async def beat(containers=()):
            rr = await h.post(
                f"/agents/{aid}/heartbeat",
                json={"host": host, "docker": {"available": True, "version": "24"}, "containers": list(containers)},
                headers=H(tok),
            )
            assert rr.status_code == 200, rr.text

        await beat()
        t = (
            await h.post(
                "/tests",
                json={
                    "name": "ended-test",
                    "plan": PLAN,
                    "provider": "paris-fleet",
                    "containers": 1,
                    "users": 3,
                    "duration": 10,
                },
            )
        ).json()
        cmds = (await h.get(f"/agents/{aid}/commands", params={"timeout": 0}, headers=H(tok))).json()
        c = cmds[0]
        assert (
            await h.post(f"/agents/{aid}/commands/{c['id']}/ack", json={"ok": True}, headers=H(tok))
        ).status_code == 204
        fig = {"samples": 120, "errors": 2, "rate": 12.0, "avg_ms": 30.0, "min_ms": 1, "max_ms": 90, "active": 3}
        rep = {"container_id": c["container_id"], "test_id": c["test_id"], "command_id": c["id"]}
        await beat([{**rep, "state": "running", "docker_id": "dock-1", "figures": fig}])
        final = {
            "samples": 120,
            "errors": 2,
            "avg_ms": 30.0,
            "min_ms": 1,
            "max_ms": 90,
            "p90_ms": 60,
            "p95_ms": 70,
            "p99_ms": 88,
            "duration_s": 10.0,
            "throughput": 12.0,
            "histogram": {"10": 100, "20": 20},
        }
        await beat([{**rep, "state": "finished", "exit_code": 0, "figures": fig, "final": final}])
        # a second test, pending, its launch queued (not polled)
        t2 = (
            await h.post(
                "/tests", json={"name": "queued-test", "plan": PLAN, "provider": "paris-fleet", "containers": 1}
            )
        ).json()
        (await h.post("/tokens", json={"name": "ci-reader", "role": "read-only"})).json()
        await asyncio.sleep(0.3)
        tests = (await h.get("/tests")).json()
        print([(x["name"], x["state"], x["results"]["samples"] if x["results"] else None) for x in tests])
        print("audit", len((await h.get("/audit")).json()))
        print("agent", aid, "provider", p["id"], "tests", t["id"], t2["id"])


asyncio.run(main(Path(sys.argv[1])))
