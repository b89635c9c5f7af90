"""Run every benchmark in turn, each in its own process (so one's threads and caches don't colour the next).

    .venv/bin/python benchmarks/run_all.py            # or: make bench

Each script prints its table and writes JSON under benchmarks/results/. Benchmarks are not tests: run them
on a quiet machine and copy the numbers, with the machine, into benchmarks/README.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    failed = []
    for script in scripts:
        print(f"\n== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
