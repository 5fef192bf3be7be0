"""Fixtures for every test, registered from the shared helpers in ``tests/support/``.

Docker-dependent tests must run in CI (``CI=true``): there a missing engine or image fails the run
instead of skipping it. Elsewhere they skip with the reason, so a laptop without Docker can still
run the rest.
"""

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.app",
    "tests.support.clikit",
    "tests.support.faultkit",
    "tests.support.haproxy",
    "tests.support.httptarget",
    "tests.support.images",
    "tests.support.peers",
    "tests.support.postgres",
    "tests.support.tinyproxy",
]
