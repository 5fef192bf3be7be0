"""``octotui`` (the dashboard): on a named server, or embedded with its own server and agent."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from octotui.client import Client
from octotui.config import (
    DASHBOARD_OPTIONS,
    DASHBOARD_SECTION,
    ConfigError,
    Option,
    add_options,
    connection_problem,
    resolve,
    user_data_dir,
)
from octotui.embedded import Embedded, EmbeddedError
from octotui.protocol import VERSION
from octotui.tui.app import DashboardSettings, create_app

#: Declared in octotui/config.py, shared with the scripting subcommands (octotui/commands/).
OPTIONS: list[Option] = DASHBOARD_OPTIONS


def parse(argv: Sequence[str]) -> DashboardSettings:
    """Resolve flags, ``OCTOTUI_*`` variables and the ``[dashboard]`` config table."""
    parser = argparse.ArgumentParser(
        prog="octotui",
        description=(
            "Dashboard of octotui: agents, providers, JMeter tests. `octotui server` runs the server alone;"
            " `octotui token create|list|revoke` manages operator tokens."
        ),
    )
    parser.add_argument("--version", action="version", version=f"octotui {VERSION}")
    add_options(parser, OPTIONS)
    args = parser.parse_args(list(argv))
    try:
        values = resolve(args, OPTIONS, DASHBOARD_SECTION)
    except ConfigError as exc:
        parser.error(str(exc))
    settings = DashboardSettings.from_mapping(values)
    if settings.refresh <= 0:
        parser.error(f"--refresh must be > 0, got {settings.refresh}")
    problem = connection_problem(settings.server, settings.token, settings.ca_bundle)
    if problem:
        parser.error(problem)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the dashboard; returns the exit code."""
    settings = parse(sys.argv[1:] if argv is None else argv)
    verify: str | bool = settings.ca_bundle or True
    if settings.server:
        client = Client(settings.server, settings.token, verify=verify)
        create_app(settings, client).run()
        return 0
    data_dir = (settings.data_dir or user_data_dir()).expanduser()
    try:
        with Embedded(data_dir) as embedded:
            print(f"octotui: embedded server {embedded.url}, state in {data_dir}", file=sys.stderr)
            token = settings.token or embedded.admin_token
            client = Client(embedded.url, token)
            app = create_app(settings, client, embedded=True)
            app.supervise(embedded, token)
            app.actions.provider_tokens[embedded.provider_id] = embedded.provider_token
            app.server_label = f"{embedded.url} (embedded)"
            app.run()
    except EmbeddedError as exc:
        print(f"octotui: {exc}", file=sys.stderr)
        return 1
    return 0
