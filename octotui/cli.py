"""``octotui`` console script: the dashboard by default, ``octotui server`` for the server alone,
``octotui token`` for operator tokens."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "server":
        from octotui.server.cli import main as server_main

        return server_main(args[1:])
    if args and args[0] == "token":
        from octotui.tokens_cli import main as token_main

        return token_main(args[1:])
    from octotui.tui.cli import main as dashboard_main

    return dashboard_main(args)


if __name__ == "__main__":
    sys.exit(main())
