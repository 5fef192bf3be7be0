"""Test files (issue 12, part 4, server side) through the real app, agents speaking the wire
protocol: uploads streamed to disk (checksummed, lines counted), bad uploads and launches that change
nothing, shares of a split file (each line in exactly one, the header on each), the agents' routes
(only the agent running the container), deletion rules, a restart; and a 100 MiB upload to a real
server process whose memory stays far below the file's size."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.app import Env, Starter
from tests.support.labelkit import serving
from tests.support.processes import ServerProcess
from tests.support.wire import ack, bearer, fleet, poll, report, spec

RAW = {"Content-Type": "application/octet-stream"}


async def upload(env: Env, name: str, data: bytes, status: int = 201) -> dict[str, Any]:
    r = await env.http.post("/files", params={"name": name}, content=data, headers=RAW)
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def on_disk(env: Env) -> list[str]:
    """Every name in the files folder (temporary ones too)."""
    folder = env.settings.files_dir
    return sorted(os.listdir(folder)) if folder.exists() else []


async def launches(env: Env, agents: list[tuple[str, str]]) -> dict[int, tuple[str, str, dict[str, Any]]]:
    """Each container's launch, by index: (agent id, agent token, launch spec), acknowledged."""
    out = {}
    for agent_id, token in agents:
        for cmd in await poll(env, agent_id, token):
            await ack(env, agent_id, token, cmd["id"])
            out[cmd["launch"]["index"]] = (agent_id, token, cmd)
    return out


async def fetch(env: Env, path: str, token: str) -> httpx.Response:
    return await env.http.get(path, headers=bearer(token))


CSV = b"user,password\r\n" + b"".join(b"user%d,secret%d\r\n" % (i, i) for i in range(10))


# --- Uploads are streamed to disk, checksummed, their lines counted; bad ones change nothing. --------


async def test_text_and_binary_files_are_kept_as_sent(env: Env) -> None:
    text = await upload(env, "users.csv", CSV)
    assert text["name"] == "users.csv" and text["size"] == len(CSV) and text["lines"] == 11
    assert text["sha256"] == hashlib.sha256(CSV).hexdigest()
    no_newline = await upload(env, "ids.txt", "é1\né2\né3".encode())
    assert no_newline["lines"] == 3
    empty = await upload(env, "empty.csv", b"")
    assert empty["lines"] == 0
    binary = await upload(env, "blob.bin", b"abc\x00def\n")
    assert binary["lines"] is None
    latin1 = await upload(env, "latin.csv", "caf\xe9\n".encode("latin-1"))
    assert latin1["lines"] is None
    cut = await upload(env, "cut.csv", "ab\né".encode()[:-1])  # a UTF-8 sequence cut at the end
    assert cut["lines"] is None
    assert on_disk(env) == sorted(x["id"] for x in (text, no_newline, empty, binary, latin1, cut))
    assert (env.settings.files_dir / text["id"]).read_bytes() == CSV
    listed = (await env.http.get("/files")).json()
    assert [x["name"] for x in listed] == ["users.csv", "ids.txt", "empty.csv", "blob.bin", "latin.csv", "cut.csv"]
    assert (await env.http.get(f"/files/{text['id']}")).json() == text
    assert (await env.http.get("/files/f-000000000000")).status_code == 404
    audit = (await env.http.get("/audit")).json()
    assert any(e["action"] == "file.upload" and e["target"] == text["id"] for e in audit)


async def test_bad_uploads_change_nothing(start_server: Starter) -> None:
    env = await start_server(max_file_bytes=1000)
    await fleet(env, "gen-1")
    before = (await env.snapshot(), (await env.http.get("/audit")).json())
    for name in ("a/b.csv", "../x.csv", "..", "", "a\\b.csv", "bad\x00name", "x" * 300):
        r = await env.http.post("/files", params={"name": name}, content=b"a\n", headers=RAW)
        assert r.status_code == 422, (name, r.text)
    r = await env.http.post("/files", params={"name": "a/b.csv"}, content=b"a\n", headers=RAW)
    assert "not a path" in r.json()["detail"]
    # Over the limit: declared (the gate refuses before reading) and streamed (chunked, counted).
    r = await env.http.post("/files", params={"name": "big.csv"}, content=b"x" * 1001, headers=RAW)
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"] and "--max-file-bytes" in r.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 400

    r = await env.http.post("/files", params={"name": "big.csv"}, content=chunks(), headers=RAW)
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"], r.text
    r = await env.http.post("/files", content=b"a\n", headers=RAW)  # no name
    assert r.status_code == 422
    assert (await env.http.get("/files")).json() == []
    assert on_disk(env) == []
    assert (await env.snapshot(), (await env.http.get("/audit")).json()) == before
    # At the limit exactly, it is taken.
    assert (await upload(env, "exact.csv", b"z" * 1000))["size"] == 1000


# --- A split file: one share per container, each data line in exactly one, the header on each. -------


async def test_split_with_header_and_copied_file(env: Env) -> None:
    agents = await fleet(env, "gen-1", "gen-2")
    users = await upload(env, "users.csv", CSV)
    blob = await upload(env, "blob.bin", bytes(range(256)) * 10)
    files = [{"id": users["id"], "split": True, "header": True}, {"id": blob["id"]}]
    r = await env.http.post("/tests", json=spec(containers=3, files=files))
    assert r.status_code == 201, r.text
    test = r.json()
    assert test["files"] == [
        {"id": users["id"], "split": True, "header": True},
        {"id": blob["id"], "split": False, "header": False},
    ]
    by_index = await launches(env, agents)
    assert sorted(by_index) == [0, 1, 2]
    header, lines = CSV.split(b"\r\n", 1)[0] + b"\r\n", CSV.split(b"\r\n")[1:-1]
    seen: list[bytes] = []
    sizes = []
    for _, (agent_id, token, cmd) in sorted(by_index.items()):
        share, copy = cmd["launch"]["files"]
        assert share["name"] == "users.csv" and copy["name"] == "blob.bin"
        assert copy["path"] == f"/agents/{agent_id}/files/{blob['id']}"
        assert (copy["size"], copy["sha256"]) == (blob["size"], blob["sha256"])
        r = await fetch(env, share["path"], token)
        assert r.status_code == 200, r.text
        body = r.content
        assert int(r.headers["content-length"]) == len(body) == share["size"]
        assert hashlib.sha256(body).hexdigest() == share["sha256"]
        assert body.startswith(header)
        rows = body[len(header) :].split(b"\r\n")
        assert rows[-1] == b""
        seen += rows[:-1]
        sizes.append(len(rows) - 1)
        r = await fetch(env, copy["path"], token)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == blob["sha256"]
        assert int(r.headers["content-length"]) == blob["size"]
    assert seen == lines  # each line once, in order
    assert sizes == [4, 3, 3]  # as even as possible, the first ones one longer

    # Only the agent running that container index may fetch its share.
    (a1, t1), (a2, t2) = agents
    mine = next(i for i, (aid, _, _) in by_index.items() if aid == a1)
    other = next(i for i, (aid, _, _) in by_index.items() if aid == a2)
    path = by_index[mine][2]["launch"]["files"][0]["path"]
    assert (await fetch(env, path, t2)).status_code == 403  # another agent's token
    as_other = path.replace(f"/agents/{a1}/", f"/agents/{a2}/")
    r = await fetch(env, as_other, t2)
    assert r.status_code == 403 and f"no live container {mine}" in r.json()["detail"]
    assert (await env.http.get(path)).status_code == 403  # an operator is not an agent
    theirs = by_index[other][2]["launch"]["files"][0]["path"]
    assert (await fetch(env, theirs.replace(f"/agents/{a2}/", f"/agents/{a1}/"), t1)).status_code == 403
    assert (await fetch(env, path.replace("/shares/", "/shares/9"), t1)).status_code == 404

    # An agent with no container of the test may not fetch the copied file either.
    (idle, idle_token) = (await fleet(env, "idle"))[0]
    r = await fetch(env, f"/agents/{idle}/files/{blob['id']}", idle_token)
    assert r.status_code == 403
    # Once its containers ended, an agent may fetch nothing more.
    for agent_id, token, cmd in by_index.values():
        await env.beat(agent_id, token, containers=[report(cmd, "finished", exit_code=0)], complete=False)
    assert (await env.http.get(f"/tests/{test['id']}")).json()["state"] == "finished"
    assert (await fetch(env, path, t1)).status_code == 403
    assert (await fetch(env, by_index[mine][2]["launch"]["files"][1]["path"], t1)).status_code == 403


async def test_a_large_split_without_header_cuts_lines_exactly(env: Env) -> None:
    """Many short lines over several read chunks, no header, a last line without newline."""
    agents = await fleet(env, "gen-1", "gen-2")
    lines = [b"%d;%s" % (i, b"v" * (i % 13)) for i in range(300_007)]
    data = b"\n".join(lines)  # no newline after the last line
    info = await upload(env, "rows.csv", data)
    assert info["lines"] == len(lines)
    r = await env.http.post("/tests", json=spec(containers=5, files=[{"id": info["id"], "split": True}]))
    assert r.status_code == 201, r.text
    got = b""
    for index, (_, token, cmd) in sorted((await launches(env, agents)).items()):
        (share,) = cmd["launch"]["files"]
        body = (await fetch(env, share["path"], token)).content
        assert len(body) == share["size"] and hashlib.sha256(body).hexdigest() == share["sha256"]
        assert body.count(b"\n") + (0 if body.endswith(b"\n") else 1) == 60_002 - (index >= 2)
        got += body
    assert got == data


# --- Launches naming files: every bad one refused with a clear 422, nothing launched. ----------------


async def test_bad_file_choices_launch_nothing(env: Env) -> None:
    agents = await fleet(env, "gen-1", "gen-2")
    users = await upload(env, "users.csv", CSV)  # 1 header + 10 data lines
    blob = await upload(env, "blob.bin", b"\x00\x01\x02")
    again = await upload(env, "users.csv", b"other\n")
    before = await env.snapshot()
    cases = [
        ([{"id": "f-000000000000"}], "unknown file id 'f-000000000000'"),
        ([{"id": blob["id"], "split": True}], "binary"),
        ([{"id": users["id"], "split": True, "header": True}], "10 data line(s) after its header line for 11"),
        ([{"id": users["id"]}, {"id": again["id"]}], "two files named 'users.csv'"),
        ([{"id": users["id"], "split": "yes"}], None),
    ]
    for files, words in cases:
        r = await env.http.post("/tests", json=spec(containers=11, files=files))
        assert r.status_code == 422, (files, r.text)
        if words:
            assert words in r.json()["detail"], r.text
    r = await env.http.post("/tests", json=spec(containers=12, files=[{"id": users["id"], "split": True}]))
    assert r.status_code == 422 and "11 data line(s) for 12 containers" in r.json()["detail"]
    r = await env.http.post("/tests", json=spec(files=[{"id": users["id"]}] * 21))
    assert r.status_code == 422
    assert await env.snapshot() == before
    for agent_id, token in agents:
        assert await poll(env, agent_id, token) == []
    # Exactly enough lines: taken.
    r = await env.http.post("/tests", json=spec(containers=10, files=[{"id": users["id"], "split": True,
                                                                         "header": True}]))  # fmt: skip
    assert r.status_code == 201, r.text


# --- Files are kept until an operator deletes them; a test's links go with the test. -----------------


async def test_delete_rules_and_restart(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        agents = await fleet(env, "gen-1", "gen-2")
        users = await upload(env, "users.csv", CSV)
        test = (await env.http.post("/tests", json=spec(files=[{"id": users["id"], "split": True}]))).json()
        by_index = await launches(env, agents)
        before = (await env.http.get("/files")).json()
        r = await env.http.delete(f"/files/{users['id']}")
        assert r.status_code == 409 and test["id"] in r.json()["detail"], r.text
        assert (await env.http.get("/files")).json() == before
        assert (env.settings.files_dir / users["id"]).exists()
    # A restart keeps the files, the test's links and its shares: agents fetch as before.
    async with serving(tmp_path / "d") as env:
        assert (await env.http.get("/files")).json() == before
        assert (await env.http.get(f"/tests/{test['id']}")).json()["files"] == test["files"]
        _, token, cmd = by_index[0]
        (share,) = cmd["launch"]["files"]
        body = (await fetch(env, share["path"], token)).content
        assert hashlib.sha256(body).hexdigest() == share["sha256"]
        for agent_id, token, cmd in by_index.values():
            await env.beat(agent_id, token, containers=[report(cmd, "finished", exit_code=0)], complete=False)
        assert (await env.http.get(f"/tests/{test['id']}")).json()["state"] == "finished"
        # Deleting the ended test drops its links, never the file.
        assert (await env.http.delete(f"/tests/{test['id']}")).status_code == 204
        assert (await env.http.get("/files")).json() == before
        db = env.settings.db_path
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM test_files").fetchone() == (0,)
    async with serving(tmp_path / "d") as env:
        # No live test uses it any more: it can be deleted, bytes and all.
        assert (await env.http.delete(f"/files/{users['id']}")).status_code == 204
        assert (await env.http.get("/files")).json() == []
        assert on_disk(env) == []
        assert (await env.http.delete(f"/files/{users['id']}")).status_code == 404
        audit = (await env.http.get("/audit")).json()
        assert any(e["action"] == "file.delete" and e["target"] == users["id"] for e in audit)


def _vm(pid: int, key: str) -> int:
    """A figure of /proc/PID/status in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


def test_a_100_mib_upload_is_streamed_by_a_real_server(tmp_path: Path) -> None:
    """100 MiB of CSV to a real ``octotui server`` process: kept exactly (size, SHA-256, lines),
    the server's resident memory growing far less than the file (it is never whole in memory)."""
    server = ServerProcess(tmp_path / "srv").start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        block = b"".join(b"user%06d,%s\n" % (i, b"p" * (i % 40)) for i in range(16_000))
        count = (100 * 1024 * 1024) // len(block) + 1
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            for _ in range(count):
                digest.update(block)
                yield block

        size = len(block) * count
        with server.client() as api:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
            rss_before = _vm(pid, "VmRSS")
            r = api.post("/files", params={"name": "big.csv"}, content=body(), headers=RAW, timeout=120)
            assert r.status_code == 201, r.text
            peak = _vm(pid, "VmHWM")
            info = r.json()
            assert size >= 100 * 1024 * 1024
            assert info["size"] == size and info["sha256"] == digest.hexdigest()
            assert info["lines"] == 16_000 * count
            assert (server.data_dir / "files" / info["id"]).stat().st_size == size
            grew = peak - rss_before
            print(f"100 MiB upload: RSS before {rss_before / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
            assert grew < 30 * 1024 * 1024, f"server RSS grew by {grew / 2**20:.1f} MiB for {size / 2**20:.0f} MiB"
            # Over its limit (--max-file-bytes, default 1 GiB): refused from the declared size.
            head = (
                f"POST /api/v1/files?name=huge.csv HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Authorization: Bearer {server.admin_token}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {2**30 + 1}\r\n\r\n"
            )
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(head.encode())
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 413") and b"--max-file-bytes" in answer, answer
    finally:
        server.stop()
