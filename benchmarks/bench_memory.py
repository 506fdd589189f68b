"""RSS growth of a tracked predict over millions of calls, after warm-up.

Run: ``python benchmarks/bench_memory.py [--calls 5000000]``

Each contender runs in a fresh subprocess so allocations of one do not hide in another's arenas.
The last column is RSS growth after glibc's ``malloc_trim(0)`` (where available): memory freed by
Python but kept by the C allocator shows in "growth" and not in that column; live data shows in both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, json, sys, psutil
    import mlmon
    calls, form = int(sys.argv[1]), sys.argv[2]
    proc = psutil.Process()
    mon = mlmon.Monitor("mem", window=300.0, flush_interval=10.0)
    if form == "scalar":
        f = mon.track(lambda x: x * 0.5)
        arg = 0.5
    else:
        import numpy as np
        f = mon.track(lambda x: x * 0.5)
        arg = np.ones(32)
    warm = min(500_000, calls // 10)
    for _ in range(warm):
        f(arg)
    mon.flush(); gc.collect()
    before = proc.memory_info().rss
    for _ in range(calls):
        f(arg)
    mon.flush(); gc.collect()
    after = proc.memory_info().rss
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = proc.memory_info().rss
    except (OSError, AttributeError):
        trimmed = None
    print(json.dumps({"before": before, "after": after, "trimmed": trimmed,
                      "calls": mon.snapshot().get("mlmon_calls_total")}))
    mon.close()
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=5_000_000)
    args = ap.parse_args()
    print("| form | calls after warm-up | RSS before | RSS after | growth | growth after malloc_trim(0) |")
    print("|---|---:|---:|---:|---:|---:|")
    for form in ("scalar", "array32"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.calls), form],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        growth = (r["after"] - r["before"]) / 2**20
        trimmed = "–" if r["trimmed"] is None else f"{(r['trimmed'] - r['before']) / 2**20:+.2f} MiB"
        print(f"| {form} output | {args.calls:,} | {r['before'] / 2**20:.1f} MiB | "
              f"{r['after'] / 2**20:.1f} MiB | {growth:+.2f} MiB | {trimmed} |")


if __name__ == "__main__":
    main()
