"""``octotui export ID --format jtl|csv|junit|html [--baseline ID] -o FILE``: a test's export,
streamed to a file (``--baseline``: the HTML report compares each label with that test).

The file is written whole or not at all: the bytes go to ``FILE.part``, renamed over ``FILE`` once
the server sent everything, so a CI step never picks up half a JTL. ``-o -`` streams to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import IO

from octotui.client import Client, ClientError
from octotui.commands.session import EXIT_OK, Target, Usage

#: ``--format`` -> the file name under ``GET /api/v1/tests/{id}/export/``.
FORMATS = {"jtl": "jtl", "csv": "stats.csv", "junit": "junit.xml", "html": "report.html"}


async def export(client: Client, args: argparse.Namespace, target: Target) -> int:
    name = FORMATS[args.format]
    params = {"baseline": args.baseline} if getattr(args, "baseline", None) else None
    if args.output == "-":
        written = await _fetch(client, args.id, name, sys.stdout.buffer, params)
        sys.stdout.buffer.flush()
        return EXIT_OK
    part = args.output + ".part"
    try:
        handle = await asyncio.to_thread(open, part, "wb")
    except OSError as exc:
        raise Usage(f"cannot write {args.output}: {exc.strerror or exc}") from None
    try:
        with handle:
            written = await _fetch(client, args.id, name, handle, params)
        os.replace(part, args.output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)  # nothing half-written is left behind
        raise
    if args.json:
        doc = {"test_id": args.id, "format": args.format, "file": args.output, "bytes": written}
        print(json.dumps(doc, indent=2))
    else:
        print(f"wrote {args.output} ({written:,} bytes, {args.format} export of test {args.id})", file=sys.stderr)
    return EXIT_OK


async def _fetch(
    client: Client, test_id: str, name: str, handle: IO[bytes], params: dict[str, str] | None = None
) -> int:
    try:
        return await client.export(test_id, name, handle.write, params)
    except ClientError as exc:
        if exc.status == 404 and exc.message == "Not Found":  # FastAPI's own: no such route
            raise Usage(f"this server has no {name} export (it predates exports)") from None
        raise
