"""Helpers shared by the test modules, imported one way: ``from tests.support.<module> import …``.

- ``processes``: real ``octotui server`` / ``octotui-agent`` children, free ports, CI-or-skip.
- ``waiting``: the bounded waits (``wait_until`` for sync code, ``wait_until_async``, ``wait_until_pilot``).
- ``fixtures``: the Docker engine, the JMeter image, a server, the agents list, the session sweep.
- ``app`` / ``wire``: the real server app in process and the agent protocol spoken by hand.
- ``labelkit``: per-label samples made by hand, what agents report and the server must answer for
  them, a launched two-container test; ``rawhttp``: the app behind uvicorn and raw-socket requests.
- ``tui``: the dashboard against a real server; ``images``: the stand-in JMeter image.
- ``faultkit``, ``faultproxy``, ``tlskit``, ``httptarget``, ``tinyproxy``: the fault suite's lab,
  a fault-injecting relay, throwaway TLS material, a local HTTP target, a real HTTP proxy.

Modules that define fixtures are registered in ``tests/conftest.py`` (``pytest_plugins``).
"""
