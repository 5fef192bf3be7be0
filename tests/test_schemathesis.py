"""Schemathesis against the real server process on loopback: generated valid and invalid requests
for every operation of the published OpenAPI document, with an admin token. No 5xx, every answer
fits the documented schema and status codes, invalid data is refused. Bounded: a few examples
per operation, so the whole run stays well under a minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import ServerProcess

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

EXAMPLES = 30  # per operation and generation mode


@pytest.fixture
def world(tmp_path: Path) -> ServerProcess:
    proc = ServerProcess(tmp_path / "server", "--log-level", "warning").start()
    with proc.client() as http:
        p = http.post("/providers", json={"name": "local"}).json()
        http.post("/tokens", json={"name": "watcher", "role": "read-only"})
        r = http.post("/agents/register", json={"name": "h1", "location": "paris"},
                      headers={"Authorization": f"Bearer {p['token']}"})  # fmt: skip
        assert r.status_code == 200
    yield proc
    proc.stop()


def test_schemathesis_finds_no_5xx_and_no_schema_violation(world: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{world.url}/api/v1/openapi.json")
    auth = {"Authorization": f"Bearer {world.admin_token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:  # type: ignore[no-untyped-def]
                if case.path.endswith("/commands"):
                    case.query = {**(case.query or {}), "timeout": 0}
                # Semantic rules beyond the schema are intended: an invalid JMX plan, a provider
                # that does not exist are refused (422/404) though the JSON fits the schema.
                case.call_and_validate(base_url=world.url, headers=auth, excluded_checks=[positive_data_acceptance])

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make invalid (no body, no constrained parameter)
            except (Exception, BaseExceptionGroup) as exc:  # one report per operation and mode, then on to the next
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
