"""Spool files of uploads an earlier run did not finish (the server killed mid-upload) are removed
at the start; every other file is kept."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import ServerProcess


def test_an_earlier_runs_cut_uploads_are_removed_at_the_start_and_nothing_else(tmp_path: Path) -> None:
    data = tmp_path / "server"
    files, results = data / "files", data / "results" / "t-old"
    files.mkdir(parents=True)
    results.mkdir(parents=True)
    cut_file = files / ".f-0123456789ab.7966a788.part"
    cut_jtl = results / ".c-0123456789ab.1a2b3c4d.part"
    cut_fetch = files / ".f-0123456789ab.5e6f7a8b.fetch"
    kept = [files / "f-notaspool", files / ".hidden", files / "shop.part", results / "c-1.jtl.gz"]
    for path in (cut_file, cut_jtl, cut_fetch, *kept):
        path.write_bytes(b"x" * 1000)

    server = ServerProcess(data).start()
    try:
        assert not cut_file.exists() and not cut_jtl.exists() and not cut_fetch.exists()
        assert all(path.exists() for path in kept), [p for p in kept if not p.exists()]
        with server.client() as http:
            assert http.get("/files").json() == []
            assert all(path.exists() for path in kept), [p for p in kept if not p.exists()]
            uploaded = http.post("/files", params={"name": "users.csv"}, content=b"u\n1\n")
            assert uploaded.status_code == 201, uploaded.text
            assert [f["name"] for f in http.get("/files").json()] == ["users.csv"]
        log = server.log_path.read_text()
        assert log.count("removed 3 spool file(s) of uploads an earlier run did not finish") == 1, log[-2000:]
    finally:
        server.stop()
