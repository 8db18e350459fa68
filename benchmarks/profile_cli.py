"""Where a cf-launch command's time goes: Python start-up and imports, each child process
(by command), and the rest (Python). Runs one command in this process, in place of
``cf-launch``, with ``subprocess`` wrapped to time every child; prints a table on stderr.

    python -X importtime benchmarks/profile_cli.py [cf-launch arguments] 2> profile.txt

Used inside the Apptainer test host (see docs/benchmarks.md) to show the floor of a goal.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

BEGAN = time.perf_counter()
CHILDREN: dict[str, list[float]] = defaultdict(list)
_real_run = subprocess.run


def _label(argv: Any) -> str:
    parts = [str(a).rsplit("/", 1)[-1] for a in (argv if isinstance(argv, list) else [argv])]
    words = [p for p in parts if not p.startswith("-")]
    if words[:1] in (["apptainer"], ["singularity"]):
        return " ".join(words[:3])
    if words[:1] == ["nsenter"]:
        return "nsenter " + " ".join(words[1:3])
    return " ".join(words[:2])


def _timed_run(*args: Any, **kwargs: Any) -> Any:
    began = time.perf_counter()
    try:
        return _real_run(*args, **kwargs)
    finally:
        argv = args[0] if args else kwargs.get("args")
        CHILDREN[_label(argv)].append(time.perf_counter() - began)


def _report() -> None:
    total = time.perf_counter() - BEGAN
    child = sum(sum(v) for v in CHILDREN.values())
    lines = ["| part | calls | ms |", "| --- | --- | --- |"]
    for label, times in sorted(CHILDREN.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| `{label}` | {len(times)} | {sum(times) * 1000:.0f} |")
    lines.append(f"| child processes, all | {sum(len(v) for v in CHILDREN.values())} | "
                 f"{child * 1000:.0f} |")
    lines.append(f"| Python (imports, plugins, hooks, files) | | {(total - child) * 1000:.0f} |")
    lines.append(f"| total in the process (after interpreter start-up) | | {total * 1000:.0f} |")
    print("\n".join(lines), file=sys.stderr)


def main() -> None:
    subprocess.run = _timed_run  # type: ignore[assignment]
    atexit.register(_report)
    from coldfront_launch.cli import main as cli_main
    sys.argv = ["cf-launch", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
