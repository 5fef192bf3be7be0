"""Reads while PostgreSQL is stopped under an ``octotui server --database`` process: the files are
listed from memory (a warning, once), a read that needs the store (the audit log, the alarms) answers
503 saying the store cannot be READ now (a write's 503 says it cannot be written), and the log says
so once, not once a request."""

from __future__ import annotations

from pathlib import Path

from tests.support.postgres import Cluster
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until

READ_REFUSED = "the server's store cannot be read now, try again shortly (PostgreSQL at "
WRITE_REFUSED = "the server's store cannot be written, nothing was changed (PostgreSQL at "


def test_reads_while_postgresql_is_stopped_come_from_memory_or_say_the_store_cannot_be_read(
    tmp_path: Path, dedicated_postgres: Cluster
) -> None:
    dsn = dedicated_postgres.dsn(dedicated_postgres.create_database())
    server = ServerProcess(tmp_path / "s", "--database", dsn).start()
    try:
        with server.client() as http:
            info = http.post("/files", params={"name": "users.csv"}, content=b"u\n1\n2\n").raise_for_status().json()
            assert http.post("/providers", json={"name": "lab"}).status_code == 201
            dedicated_postgres.stop()
            for _ in range(4):  # a dashboard asking again and again
                assert http.get("/files").json() == [info]
                assert http.get(f"/files/{info['id']}").json() == info
                for path in ("/audit", "/alarms"):
                    answer = http.get(path)
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["detail"].startswith(READ_REFUSED), answer.text
            written = http.post("/providers", json={"name": "lab-2"})
            assert written.status_code == 503 and written.json()["detail"].startswith(WRITE_REFUSED), written.text
            log = server.log_path.read_text()
            assert log.count("store read failed on GET") == 1, log[-3000:]
            assert log.count("store write failed on POST /api/v1/providers") == 1, log[-3000:]
            assert log.count("files listed from memory, maybe stale") == 1, log[-3000:]
            assert dedicated_postgres.password not in log

            dedicated_postgres.start_same_port()
            wait_until(lambda: http.get("/audit").status_code == 200, timeout=30, what="the audit read again")
            assert [e["action"] for e in http.get("/audit").json()][:2] == ["provider.create", "file.upload"]
    finally:
        server.stop()
