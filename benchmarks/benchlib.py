"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def timed(cmd: list[str]) -> dict:
    """Runs ``cmd``; returns its wall time, its last stdout line, and the CPU use of others."""
    busy0, total0 = cpu_ticks()
    own0 = os.times()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    busy1, total1 = cpu_ticks()
    own1 = os.times()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    ticks = os.sysconf("SC_CLK_TCK")
    own = (own1.children_user + own1.children_system) - (own0.children_user + own0.children_system)
    cpus = (total1 - total0) / ticks / wall if wall > 0 else 1.0
    others = max(0.0, ((busy1 - busy0) / ticks - own) / wall) if cpus else 0.0
    return {"wall_s": wall, "other_cpu": round(others, 3), "stdout": proc.stdout.strip()}


def emit(result: dict, output: str = "") -> None:
    """Prints ``result`` as JSON and, with ``output``, writes it there too."""
    text = json.dumps(result, indent=1)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")
    print(text)
