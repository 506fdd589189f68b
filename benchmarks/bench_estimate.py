"""Performance estimated before labels: mlmon against NannyML's CBPE on NannyML's public
synthetic binary datasets, per 5,000-row chunk, and the cost of the estimate in a snapshot.

For each dataset, on the same analysis chunks (the 50,000 analysis rows in 10 chunks of 5,000):
the mean absolute error of the estimated precision, recall, F1, accuracy and ROC AUC against the
realized value (scikit-learn on the chunk's labels). mlmon runs through its public API: a
``Reference`` built from the reference period's scores and labels, and one ``Monitor`` per chunk
fed the chunk's scores through ``@mon.track``. CBPE is fitted on the same reference period.

nannyml is not a dependency of mlmon: it runs in its own Python environment, given by
``--nannyml-python`` (default: ``$NANNYML_PYTHON``), e.g. one made with
``python -m venv venv-nannyml && venv-nannyml/bin/pip install nannyml``. That interpreter
loads the datasets (shipped inside nannyml), runs CBPE and computes the realized metrics; this
one runs mlmon.

    PYTHONPATH=. python benchmarks/bench_estimate.py --nannyml-python venv-nannyml/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("precision", "recall", "f1", "accuracy", "roc_auc")
DATASETS = {
    "car_loan": "load_synthetic_car_loan_dataset",
    "binary": "load_synthetic_binary_classification_dataset",
    "multiclass": "load_synthetic_multiclass_classification_dataset",
}
CHUNK = 5000


# --------------------------------------------------------------------------- nannyml side


def nannyml_side(dataset: str, out_dir: str) -> None:
    """Run in the nannyml environment: dump the data, CBPE's estimates and realized values."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    import nannyml as nml  # type: ignore[import-not-found]
    from sklearn.metrics import (  # type: ignore[import-not-found]
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    if dataset == "multiclass":
        multiclass_side(nml, out_dir)
        return
    ref, ana, tgt = getattr(nml, DATASETS[dataset])()
    target = next(c for c in tgt.columns if c != "id")
    ana = ana.merge(tgt, on="id")
    p_ref = ref["y_pred_proba"].to_numpy(float)
    pred_ref = ref["y_pred"].to_numpy(int)
    # The datasets' y_pred is y_pred_proba >= a threshold: recover it (checked below).
    threshold = float(p_ref[pred_ref == 1].min())
    assert np.array_equal(pred_ref, (p_ref >= threshold).astype(int)), "y_pred is not a threshold"
    cbpe = nml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true=target,
        metrics=list(METRICS),
        chunk_size=CHUNK,
    )
    cbpe.fit(ref)
    df = cbpe.estimate(ana).filter(period="analysis").to_df()
    chunks: list[dict[str, Any]] = []
    for i in range(len(df)):
        start, end = int(df[("chunk", "start_index")].iloc[i]), int(df[("chunk", "end_index")].iloc[i]) + 1
        part = ana.iloc[start:end]
        y, s, yp = part[target].to_numpy(int), part["y_pred_proba"].to_numpy(float), part["y_pred"].to_numpy(int)
        realized = {
            "precision": precision_score(y, yp),
            "recall": recall_score(y, yp),
            "f1": f1_score(y, yp),
            "accuracy": accuracy_score(y, yp),
            "roc_auc": roc_auc_score(y, s),
        }
        cbpe_values = {m: float(df[(m, "value")].iloc[i]) for m in METRICS}
        cbpe_bands = {
            m: (float(df[(m, "lower_confidence_boundary")].iloc[i]), float(df[(m, "upper_confidence_boundary")].iloc[i]))
            for m in METRICS
        }
        chunks.append({"start": start, "end": end, "realized": realized, "cbpe": cbpe_values, "cbpe_band": cbpe_bands})
    np.savez(
        Path(out_dir) / "data.npz",
        ref_scores=p_ref,
        ref_labels=ref[target].to_numpy(int),
        ana_scores=ana["y_pred_proba"].to_numpy(float),
    )
    (Path(out_dir) / "result.json").write_text(json.dumps({"threshold": threshold, "chunks": chunks}))


def multiclass_side(nml: Any, out_dir: str) -> None:
    """The multiclass dataset: macro-averaged metrics (CBPE's), one-vs-rest macro ROC AUC."""
    from sklearn.metrics import (  # type: ignore[import-not-found]
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    ref, ana, tgt = nml.load_synthetic_multiclass_classification_dataset()
    ana = ana.merge(tgt, on="id") if "y_true" not in ana.columns else ana
    columns = [c for c in ref.columns if c.startswith("y_pred_proba_")]
    classes = [c[len("y_pred_proba_") :] for c in columns]
    proba_ref, proba_ana = ref[columns].to_numpy(float), ana[columns].to_numpy(float)
    assert np.array_equal(np.array(classes)[proba_ref.argmax(axis=1)], ref["y_pred"].to_numpy()), "y_pred is not the argmax"
    cbpe = nml.CBPE(
        problem_type="classification_multiclass",
        y_pred_proba=dict(zip(classes, columns, strict=True)),
        y_pred="y_pred",
        y_true="y_true",
        metrics=list(METRICS),
        chunk_size=CHUNK,
    )
    cbpe.fit(ref)
    df = cbpe.estimate(ana).filter(period="analysis").to_df()
    index = {c: i for i, c in enumerate(classes)}
    y_ana = np.array([index[v] for v in ana["y_true"]])
    chunks: list[dict[str, Any]] = []
    for i in range(len(df)):
        start, end = int(df[("chunk", "start_index")].iloc[i]), int(df[("chunk", "end_index")].iloc[i]) + 1
        y, p = y_ana[start:end], proba_ana[start:end]
        yp = p.argmax(axis=1)
        realized = {
            "precision": precision_score(y, yp, average="macro"),
            "recall": recall_score(y, yp, average="macro"),
            "f1": f1_score(y, yp, average="macro"),
            "accuracy": accuracy_score(y, yp),
            "roc_auc": roc_auc_score(y, p, multi_class="ovr", average="macro"),
        }
        chunks.append({
            "start": start, "end": end, "realized": realized,
            "cbpe": {m: float(df[(m, "value")].iloc[i]) for m in METRICS},
            "cbpe_band": {m: (float(df[(m, "lower_confidence_boundary")].iloc[i]),
                              float(df[(m, "upper_confidence_boundary")].iloc[i])) for m in METRICS},
        })  # fmt: skip
    np.savez(
        Path(out_dir) / "data.npz",
        ref_scores=proba_ref,
        ref_labels=np.array([index[v] for v in ref["y_true"]]),
        ana_scores=proba_ana,
    )
    (Path(out_dir) / "result.json").write_text(json.dumps({"classes": classes, "chunks": chunks}))


# --------------------------------------------------------------------------- mlmon side


def mlmon_estimates(ref: Any, task: Any, scores: np.ndarray) -> dict[str, float]:
    """Estimates of a monitor fed one chunk of scores, through the public API (multiclass: the
    macro averages, and the accuracy)."""
    import mlmon
    from mlmon.testing import FakeClock

    mon = mlmon.Monitor("bench_estimate", task=task, reference=ref, clock=FakeClock(), window=3600.0)
    try:
        predict = mon.track(lambda X: X)
        for block in np.array_split(scores, 50):  # requests of 100 rows
            predict(block)
        snap = mon.snapshot()
        return {
            x.name: x.value
            for x in snap.samples
            if x.name.startswith("mlmon_estimate") and x.labels in ((), (("average", "macro"),))
        }
    finally:
        mon.close()


def snapshot_cost(ref: Any, scores: np.ndarray, repeats: int) -> tuple[float, float, float]:
    """Median seconds of a snapshot at 100,000 predictions in the window, with a calibrated
    reference; of the estimate's share of it (merging its accumulators over the window's
    slices and computing the metrics); and of one drain of 1,000 scores' estimate update."""
    import mlmon
    from mlmon.outputs import OutputComponent
    from mlmon.stats.binary import ScoreBins
    from mlmon.testing import FakeClock

    clock = FakeClock()
    mon = mlmon.Monitor("bench_estimate_cost", task=mlmon.BinaryClassification(), reference=ref,
                        clock=clock, window=600.0)  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.choice(scores, size=100_000)
    try:
        predict = mon.track(lambda X: X)
        for k, block in enumerate(np.array_split(x, 100)):  # 100 requests of 1,000 rows over 10 slices
            clock.advance(5.0 if k else 0.0)
            predict(block)
        mon.snapshot()
        snap_times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            mon.snapshot()
            snap_times.append(time.perf_counter() - t0)
    finally:
        mon.close()
    # The estimate's own share: the same window in an output part, timed on its estimate cells.
    task = mlmon.BinaryClassification()
    comp = OutputComponent(task, window=600.0, slices=10, now=0.0, reference=ref)
    for k, block in enumerate(np.array_split(x, 100)):
        comp.observe(task.map_outputs(block), block.size, now=5.0 * k)
    ring = comp._window._ring
    cells = ring[0].auc.pos.size if ring[0].auc is not None else 0
    est_times, drain_times = [], []
    block = x[:1000]
    mapped = task.map_outputs(block)
    assert mapped.classes is not None
    for _ in range(repeats):
        t0 = time.perf_counter()
        est, bins = np.zeros(8), ScoreBins(cells)
        for sl in ring:
            assert sl.est is not None and sl.auc is not None
            est += sl.est
            bins.merge(sl.auc)
        samples = list(comp._estimates(est, bins))
        est_times.append(time.perf_counter() - t0)
        assert len(samples) == 17
        sl = ring[0]
        assert sl.est is not None and sl.auc is not None
        t0 = time.perf_counter()
        comp._estimate(sl.est, sl.auc, block, mapped.classes == 1)
        drain_times.append(time.perf_counter() - t0)
    return statistics.median(snap_times), statistics.median(est_times), statistics.median(drain_times)


def run(nannyml_python: str, datasets: list[str], repeats: int) -> None:
    from mlmon import BinaryClassification, MulticlassClassification
    from mlmon.reference import Reference

    print("## Estimated performance before labels: mean absolute error per 5,000-row chunk\n")
    print("Against the realized value on the chunk's labels; lower is better. "
          "Band: share of chunks whose realized value lies in the 95% band.\n")  # fmt: skip
    print("| dataset | metric | mlmon MAE | CBPE MAE | mlmon / CBPE | mlmon band hits | CBPE band hits "
          "| mlmon MAE, reference without labels |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    last_ref = None
    last_scores = None
    for dataset in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, NML_DISABLE_USAGE_LOGGING="1")
            env.pop("PYTHONPATH", None)
            subprocess.run([nannyml_python, __file__, "--nannyml-side", dataset, tmp], check=True, env=env, timeout=900)
            data = np.load(Path(tmp) / "data.npz")
            result = json.loads((Path(tmp) / "result.json").read_text())
        ref_scores, ref_labels, ana = data["ref_scores"], data["ref_labels"], data["ana_scores"]
        ref = Reference.from_data(np.zeros((len(ref_labels), 1)), feature_names=["x"], outputs=ref_scores, labels=ref_labels)
        if dataset == "multiclass":
            task: Any = MulticlassClassification(classes=result["classes"])
        else:
            task = BinaryClassification(threshold=result["threshold"])
            last_ref, last_scores = ref, ref_scores
        # What mlmon did before calibration: the raw scores taken as probabilities (binary only:
        # without a calibration a multiclass task has no estimate).
        raw_ref = Reference.from_data(np.zeros((len(ref_labels), 1)), feature_names=["x"],
                                      outputs=ref_scores if ref_scores.ndim == 1 else ref_scores.max(axis=1))  # fmt: skip
        errors: dict[str, list[float]] = {m: [] for m in METRICS}
        raw_errors: dict[str, list[float]] = {m: [] for m in METRICS}
        cbpe_errors: dict[str, list[float]] = {m: [] for m in METRICS}
        hits = dict.fromkeys(METRICS, 0)
        cbpe_hits = dict.fromkeys(METRICS, 0)
        chunks = result["chunks"]
        for c in chunks:
            est = mlmon_estimates(ref, task, ana[c["start"] : c["end"]])
            raw = mlmon_estimates(raw_ref, task, ana[c["start"] : c["end"]]) if dataset != "multiclass" else {}
            for m in METRICS:
                truth = c["realized"][m]
                errors[m].append(abs(est[f"mlmon_estimated_{m}"] - truth))
                if f"mlmon_estimated_{m}" in raw:
                    raw_errors[m].append(abs(raw[f"mlmon_estimated_{m}"] - truth))
                cbpe_errors[m].append(abs(c["cbpe"][m] - truth))
                hits[m] += est[f"mlmon_estimated_{m}_lower"] <= truth <= est[f"mlmon_estimated_{m}_upper"]
                lo, hi = c["cbpe_band"][m]
                cbpe_hits[m] += lo <= truth <= hi
        for m in METRICS:
            a, b = float(np.mean(errors[m])), float(np.mean(cbpe_errors[m]))
            before = f"{np.mean(raw_errors[m]):.5f}" if raw_errors[m] else "no estimate"
            print(f"| {dataset} | {m} | {a:.5f} | {b:.5f} | {a / b:.3f} | {hits[m]}/{len(chunks)} "
                  f"| {cbpe_hits[m]}/{len(chunks)} | {before} |")  # fmt: skip
    if last_ref is not None and last_scores is not None:
        snap, est, drain = snapshot_cost(last_ref, last_scores, repeats)
        print(f"\n## Cost at 100,000 predictions in the window (median of {repeats})\n")
        print("| what | time |")
        print("|---|---:|")
        print(f"| snapshot of the whole monitor (calibrated binary task) | {snap * 1e3:.3f} ms |")
        print(f"| of which the estimate: merging its cells over 10 slices and computing the metrics | {est * 1e3:.3f} ms |")
        print(f"| estimate update per drained batch of 1,000 scores (background thread) | {drain * 1e3:.3f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nannyml-python", default=os.environ.get("NANNYML_PYTHON"),
                    help="a Python interpreter with nannyml installed (default: $NANNYML_PYTHON)")  # fmt: skip
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--nannyml-side", nargs=2, metavar=("DATASET", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nannyml_side:
        nannyml_side(*args.nannyml_side)
        return
    if not args.nannyml_python:
        sys.exit("give --nannyml-python (an interpreter with nannyml installed) or set NANNYML_PYTHON")
    run(args.nannyml_python, [d for d in args.datasets.split(",") if d], args.repeats)


if __name__ == "__main__":
    main()
