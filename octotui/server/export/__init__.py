"""Exports of one test (issue 12, part 5): the per-label statistics CSV (:mod:`.stats_csv`), a JUnit
XML for CI (:mod:`.junit`) and a self-contained HTML report (:mod:`.report`).

Each is built from what :func:`.data.gather` reads once: the test, its labels merged over its
containers (plus a TOTAL merged over every label), its error counts, its timeline and its
generators. Nothing here depends on the number of samples: a test of a million samples and one of a
thousand cost the same to export. No HTTP here: the router is ``http/routes/exports.py``.
"""

from __future__ import annotations

from octotui.server.export.data import ExportData, gather

__all__ = ["ExportData", "gather"]
