"""Summarise a py-spy ``--format raw`` file: where the samples' time goes (self and inclusive)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def top(path: Path, n: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        own[frames[-1]] += k
        for frame in set(frames):
            inclusive[frame] += k
    out = [f"{total} samples", "", "self:"]
    out += [f"  {100 * v / total:5.1f} %  {f}" for f, v in own.most_common(n)]
    out += ["", "inclusive:"]
    out += [f"  {100 * v / total:5.1f} %  {f}" for f, v in inclusive.most_common(n)]
    return "\n".join(out)


if __name__ == "__main__":
    print(top(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
