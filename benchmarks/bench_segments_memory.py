"""Memory a segment costs: a monitor's window state with 32 segments against none (tracemalloc).

Run: ``PYTHONPATH=. python benchmarks/bench_segments_memory.py`` (20 numeric features against a
reference, binary task, 64,000 rows in 64 batches, one segment per row).
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pandas as pd

import mlmon

rng = np.random.default_rng(1)
cols = [f"f{i}" for i in range(20)]
X = pd.DataFrame(rng.normal(size=(64000, 20)), columns=cols)
ref = mlmon.Reference.from_data(X, feature_names=cols)


def build(segs: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mon = mlmon.Monitor(
        f"m{segs}", task=mlmon.BinaryClassification(threshold=0.5), reference=ref, emitters=[],
        max_segments=32, max_pending=1000,
    )  # fmt: skip
    seg = np.array([f"s{i}" for i in rng.integers(0, max(segs, 1), 64000)])
    for lo in range(0, 64000, 1000):
        sl = slice(lo, lo + 1000)
        if segs:
            with mon.track(features=X.iloc[sl], segment=seg[sl]) as call:
                call.outputs(rng.uniform(size=1000))
        else:
            with mon.track(features=X.iloc[sl]) as call:
                call.outputs(rng.uniform(size=1000))
    mon.snapshot()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    mon.close()
    return (after - before) / 2**20


if __name__ == "__main__":
    base = build(0)
    s32 = build(32)
    print("| monitor | traced memory after the drain |")
    print("|---|---:|")
    print(f"| no segments | {base:.1f} MiB |")
    print(f"| 32 segments | {s32:.1f} MiB |")
    print(f"| per segment | {(s32 - base) / 32 * 1024:.0f} KiB |")
