"""The replicas' live exchange of labels and monitors' samples (``octotui/server/replica/live.py``),
encoded and taken without PostgreSQL: what one replica publishes, another takes, bounded."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import pytest

from octotui.protocol import LabelStats
from octotui.server.domain.state import ServerState
from octotui.server.labelbook import LabelBook, from_lists, to_lists
from octotui.server.monitorbook import MonitorRec
from octotui.server.records import ContainerRec
from octotui.server.replica import live
from octotui.server.replica.reader import Reader
from octotui.server.settings import ServerSettings
from octotui.server.store import Store
from tests.support.wireagent import label_stats


def _replica(tmp_path: Path, name: str) -> live.Live:
    s = ServerState(ServerSettings(data_dir=tmp_path / name), Store(tmp_path / name / "octotui.db"))
    s.containers["c1"] = ContainerRec("c1", "t1", "g1", 0, "running", 4445)
    s.monitors.by_id["m1"] = MonitorRec("m1", "node", "g1", "prometheus", {"interval": 5, "thresholds": []}, None,
                                        0.0, 0.0)  # fmt: skip
    return live.Live(s, Reader(tmp_path / name / "r.db"), name)


def _report(ex: live.Live, count: int) -> None:
    """Labels of container c1 reported to ``ex``'s replica (as ``domain/labels.py`` ``take`` does)."""
    book = ex.s.labels.setdefault("c1", LabelBook())
    book.outgoing = book.outgoing if book.outgoing is not None else set()
    book.take([LabelStats.model_validate(label_stats(f"l{i}", [10.0 + i, 20.0])) for i in range(count)], None)
    ex.labels_out.add("c1")


def test_labels_and_monitor_samples_published_by_one_replica_are_taken_by_another(tmp_path: Path) -> None:
    a, b = _replica(tmp_path, "a"), _replica(tmp_path, "b")
    _report(a, 3)
    now = time.time()
    a.s.monitors.by_id["m1"].add(now - 1, {"load1": 1.0})
    a.s.monitors.by_id["m1"].add(now, {"load1": 9.0})
    data = a.gather()
    assert data is not None
    b.take(live.decode(live.encode(data)))
    assert b.s.labels["c1"].figures == a.s.labels["c1"].figures
    assert b.s.labels["c1"].outgoing is None and b.s.labels_unsaved == set()  # stored by a, published by a
    assert b.s.monitors.by_id["m1"].samples() == [(now - 1, {"load1": 1.0}), (now, {"load1": 9.0})]
    # Published once: nothing new, nothing sent again; b sends back none of what it took.
    assert a.gather() is None
    assert b.gather() is None


def test_a_publication_holds_at_most_max_label_rows_and_the_rest_go_in_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "MAX_LABEL_ROWS", 4)
    a = _replica(tmp_path, "a")
    _report(a, 6)
    first, second = a.gather(), a.gather()
    assert first is not None and second is not None
    assert len(first["labels"]["c1"]) == 4 and len(second["labels"]["c1"]) == 2
    assert {r[0] for r in first["labels"]["c1"] + second["labels"]["c1"]} == {f"l{i}" for i in range(6)}
    assert a.gather() is None


def test_a_label_row_that_does_not_decode_is_left_out_and_the_others_taken(tmp_path: Path) -> None:
    a, b = _replica(tmp_path, "a"), _replica(tmp_path, "b")
    _report(a, 2)
    data = a.gather()
    assert data is not None
    stored = json.loads(zlib.decompress(live.encode(data)))
    rows = sorted(stored["labels"]["c1"])
    rows[0][1] = [rows[0][1][0], [1, 1], [5]]  # two buckets, one count
    stored["labels"]["c1"] = rows
    b.take(live.decode(zlib.compress(json.dumps(stored).encode())))
    assert set(b.s.labels["c1"].figures) == {"l1"}
    assert b.s.labels["c1"].figures["l1"] == a.s.labels["c1"].figures["l1"]


def test_packed_figures_round_trip_and_bad_numbers_are_refused() -> None:
    book = LabelBook()
    book.take([LabelStats.model_validate(label_stats("home", [1.0, 5.0, 250.0, 9000.0]))], None)
    blob = book.figures["home"]
    assert from_lists(to_lists(blob)) == blob
    head, gaps, counts = to_lists(blob)
    with pytest.raises(ValueError, match="differ in number"):
        from_lists([head, gaps, counts[:-1]])
    with pytest.raises(ValueError):
        from_lists([head, gaps, [2**70] * len(counts)])
    with pytest.raises(ValueError):
        from_lists([head[:3], gaps, counts])
