"""``--file PATH[:split][:header]`` of ``octotui launch`` and ``run``: the files a test brings.

Each path is checked before any connection (it exists, is a regular file, its suffix is one of
``:split``, ``:header``, ``:split:header``, no two files share a base name), uploaded once the server
is reached (``POST /files?name=BASENAME``, streamed from disk), and named in ``TestCreate.files``.
A launch the server then refuses leaves nothing behind: the files uploaded for it are deleted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from octotui.client import Client, ClientError, ServerUnreachable
from octotui.commands import output as o
from octotui.commands.session import Usage
from octotui.protocol import TestCreate, TestFile

SUFFIXES = {(): "", ("split",): ":split", ("header",): ":header", ("split", "header"): ":split:header"}
_ALLOWED = "only :split, :header or :split:header may follow the path"


@dataclass(frozen=True)
class LocalFile:
    """One ``--file``: a readable regular file, and how the test takes it."""

    path: Path
    split: bool = False
    header: bool = False


def parse(value: str) -> LocalFile:
    """``PATH[:split][:header]`` checked on this machine; :class:`Usage` saying what is wrong."""
    rest, flags = value, list[str]()
    while ":" in rest and rest.rsplit(":", 1)[1] in ("split", "header"):
        rest, flag = rest.rsplit(":", 1)
        flags.insert(0, flag)
    if tuple(flags) not in SUFFIXES:
        raise Usage(f"--file {value!r}: {':' + ':'.join(flags)!r} is not a suffix it takes ({_ALLOWED})")
    path = Path(rest)
    if not rest:
        raise Usage(f"--file {value!r}: no path")
    if not path.exists():
        head, _, tail = rest.rpartition(":")
        if head and Path(head).exists():  # e.g. data.csv:splt — a typo in the suffix, not in the path
            raise Usage(f"--file {value!r}: unknown suffix ':{tail}' ({_ALLOWED})")
        raise Usage(f"--file {value!r}: file not found: {path}")
    if path.is_dir():
        raise Usage(f"--file {value!r}: {path} is a directory (name each file, one --file each)")
    if not path.is_file():
        raise Usage(f"--file {value!r}: {path} is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise Usage(f"--file {value!r}: cannot read {path}: {exc.strerror or exc}") from None
    return LocalFile(path, split="split" in flags, header="header" in flags)


def parse_all(values: list[str] | None) -> list[LocalFile]:
    """Every ``--file``, checked; two with the same base name are refused (each is placed beside
    the plan under its name)."""
    out: list[LocalFile] = []
    seen: dict[str, Path] = {}
    for value in values or []:
        f = parse(value)
        if f.path.name in seen:
            raise Usage(
                f"--file {value!r}: another file is named {f.path.name!r} ({seen[f.path.name]}): each is placed"
                " beside the plan under its name, so names must differ"
            )
        seen[f.path.name] = f.path
        out.append(f)
    return out


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1024 * 1024 else f"{n / 1024**2:,.1f} MiB"


async def upload(client: Client, spec: TestCreate, local: list[LocalFile]) -> tuple[TestCreate, list[str]]:
    """Upload ``local`` (saying so on stderr); the launch naming them, and the ids uploaded. When
    one is refused, those uploaded before it are deleted and the refusal raised."""
    uploaded: list[str] = []
    refs: list[TestFile] = []
    try:
        for f in local:
            try:
                info = await client.upload_file(f.path)
            except ServerUnreachable:
                raise
            except ClientError as exc:
                if exc.status in (413, 422):  # over the server's limit, a name it cannot take
                    raise Usage(f"--file {f.path}: the server refused it: {exc.message} (HTTP {exc.status})") from None
                raise
            except OSError as exc:  # it changed since it was checked
                raise Usage(f"--file {f.path}: cannot read it: {exc.strerror or exc}") from None
            uploaded.append(info.id)
            refs.append(TestFile(id=info.id, split=f.split, header=f.header))
            how = "split" + (" with its header" if f.header else "") if f.split else "copied"
            lines = f", {o.plural(info.lines, 'line')}" if info.lines is not None else ", binary"
            print(f"uploaded {info.name} ({_size(info.size)}{lines}) as {info.id}: {how}", file=sys.stderr)
    except Exception:
        await forget(client, uploaded)
        raise
    return spec.model_copy(update={"files": [*spec.files, *refs]}), uploaded


async def forget(client: Client, file_ids: list[str]) -> None:
    """Delete files uploaded for a launch that did not happen; one that cannot be is named on
    stderr (the server refuses while a test not ended brings it: then the launch did happen)."""
    deleted = 0
    for file_id in file_ids:
        try:
            await client.delete_file(file_id)
            deleted += 1
        except ClientError:
            print(
                f"note: uploaded file {file_id} stays on the server (DELETE /api/v1/files/{file_id})", file=sys.stderr
            )
    if deleted:
        print(f"deleted again the {o.plural(deleted, 'file')} uploaded for this launch", file=sys.stderr)
