"""Where a worker's time goes: py-spy's collapsed stacks summed per function.

    .venv/bin/python -m bench.profile_summary bench/results/profile/worker-*.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def summarise(paths: list[Path], top: int) -> None:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [_label(f) for f in stack.split(";") if f]
            for frame in set(frames):
                inclusive[frame] += count
            if frames:
                own[frames[-1]] += count
    print(f"{total} samples")
    print("\ninclusive (the function and what it calls):")
    for frame, count in inclusive.most_common(top):
        print(f"  {count / total:6.1%}  {frame}")
    print("\nself (time in the function's own code):")
    for frame, count in own.most_common(top):
        print(f"  {count / total:6.1%}  {frame}")


def _label(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    summarise(args.paths, args.top)


if __name__ == "__main__":
    main()
