"""``octotui`` console script: the dashboard by default, ``octotui server`` for the server alone,
``octotui token`` for operator tokens, and the scripting subcommands (``octotui agents``,
``octotui run`` …, :mod:`octotui.commands`), which never import Textual."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

#: Subcommands of :mod:`octotui.commands` (kept here so that routing imports nothing).
COMMANDS = frozenset(
    {"providers", "agents", "tests", "test", "launch", "stop", "run", "export", "compare", "drain", "undrain"}
)
#: Options of the dashboard that take a value (their value is never a command name).
_VALUED = frozenset({"--server", "--token", "--data-dir", "--ca-bundle", "--refresh"})


def _command(args: list[str]) -> int | None:
    """Where the subcommand's name is in ``args`` (options may come before it), or None."""
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            return i if arg in COMMANDS else None
    return None


def _without_httpx_cli() -> None:
    """Keep httpx from importing its own command line (click, rich, pygments), which it does
    whenever click is installed: about 40 % of httpx's import time, measured. An empty module in
    its place makes httpx's ``from ._main import main`` raise ImportError, which httpx handles; only
    httpx's own ``httpx`` console script would miss it, and it never runs in this process."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "server":
        from octotui.server.cli import main as server_main

        return server_main(args[1:])
    if args and args[0] == "token":
        from octotui.tokens_cli import main as token_main

        return token_main(args[1:])
    if args in (["--version"], ["-V"]):
        # The installed distribution's version (the same as the contract's VERSION: tested), read
        # from its metadata: importing the contract's models for it took ~0.5 s.
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("octotui")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from octotui.protocol import VERSION as found
        print(f"octotui {found}")
        return 0
    if _command(args) is not None or args in (["--help"], ["-h"]):
        _without_httpx_cli()  # a one-shot command must start fast (DESIGN.md: agents --json < 0.3 s)
        from octotui.commands import main as commands_main

        return commands_main(args)
    from octotui.tui.cli import main as dashboard_main

    return dashboard_main(args)


if __name__ == "__main__":
    sys.exit(main())
