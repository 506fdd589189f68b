"""Output monitoring: the distribution of a model's outputs over the rolling window.

Per window: count, mean, variance and standard deviation, quantiles (within 1% relative error,
from :class:`~mlmon.stats.LogHistogram`), the share of each predicted class for classifiers,
and for binary classifiers the precision, recall, F1, accuracy and ROC AUC expected from the
scores, with 95% bands (see :func:`estimated_performance` and docs/quality.md): from the scores
calibrated on the reference when the :class:`~mlmon.reference.Reference` carries a
:class:`~mlmon.reference.Calibration`, else from the raw scores taken as probabilities. Outputs
that cannot be read are counted in ``mlmon_output_invalid_total``, never raised.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon._component import CallBatch, Triple
from mlmon._values import split_by
from mlmon.reference import Calibration, Reference, bin_index
from mlmon.stats.binary import ScoreBins, auc_se, band, binned_auc, expected_binary
from mlmon.stats.loghist import LogHistogram
from mlmon.stats.moments import Moments
from mlmon.tasks import (
    BinaryClassification,
    MappedOutputs,
    MulticlassClassification,
    Task,
    map_scores,
)
from mlmon.window import RollingWindow

__all__ = [
    "ESTIMATED",
    "OUT_OF_RANGE_LIMIT",
    "QUANTILES",
    "SCORE_EDGES",
    "VALUE_EDGES",
    "OutputComponent",
    "estimated_performance",
    "map_calls",
    "mapped_outputs",
]

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
"""The quantiles emitted for outputs and label delays."""

SCORE_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
"""Bin edges of ``mlmon_output_bin_total`` for classifiers: ten bins of width 0.1 on [0, 1]
(the last one closed). Bin ``"00"`` counts scores below 0, ``"01"`` .. ``"10"`` the ten bins,
``"11"`` scores above 1."""

VALUE_EDGES: tuple[float, ...] = (
    *(-(10.0**k) for k in range(6, -4, -1)),
    0.0,
    *(10.0**k for k in range(-3, 7)),
)
"""Bin edges of ``mlmon_output_bin_total`` for regression and task-less scores: a signed log
scale, ``-1e6, -1e5, .., -1e-3, 0, 1e-3, .., 1e6`` (21 edges, 20 bins, 22 cells with bin
``"00"`` below -1e6 and ``"21"`` above 1e6)."""

ESTIMATED: tuple[str, ...] = ("precision", "recall", "f1", "accuracy", "roc_auc")
"""The estimated binary metrics: ``mlmon_estimated_<name>`` with ``_lower``/``_upper`` bands."""

OUT_OF_RANGE_LIMIT = 0.01
"""``mlmon_estimate_unreliable`` is 1 when more than this share of the window's scores lie
outside the reference's score range (where the calibration is extrapolated)."""

UNCALIBRATED_AUC_EDGES: tuple[float, ...] = tuple(i / 1000 for i in range(1001))
"""Score bins of the ROC AUC estimated from uncalibrated scores: 1,000 bins on [0, 1]."""

log = logging.getLogger("mlmon")

_NUMBER_TYPES = frozenset({float, int, np.float64, np.float32, np.int64, np.int32})
_EMPTY = np.empty(0)
_EMPTY_CLASSES = np.empty(0, dtype=np.int64)
_EMPTY_VALID = np.empty(0, dtype=np.bool_)


def map_calls(
    task: Task | None, outputs: Sequence[Any], rows: Sequence[int]
) -> tuple[MappedOutputs, list[int]]:
    """Map the outputs of many calls at once.

    Calls whose outputs are None (not recorded) contribute no rows and no invalid count.

    Returns:
        The calls' mapped rows concatenated in call order, and each call's number of mapped
        rows (0 when its outputs were None or unusable).
    """
    try:
        arr = None
        if all(o.__class__ in _NUMBER_TYPES for o in outputs):
            arr = np.fromiter(outputs, dtype=np.float64, count=len(outputs))
        elif not _scores_only(task) and all(o.__class__ is str for o in outputs):
            arr = np.array(outputs, dtype=str)
        if arr is not None:
            # Single-row calls with scalar outputs, the common case: one array, one mapping.
            mapped = map_scores(arr) if _scores_only(task) else task.map_outputs(arr)  # type: ignore[union-attr]
            return mapped, [1] * len(outputs)
    except Exception:
        pass  # one value numpy cannot read (an int beyond float range): map call by call
    parts: list[MappedOutputs] = []
    lengths: list[int] = []
    for out, n in zip(outputs, rows, strict=True):
        if out is None:
            lengths.append(0)
            continue
        try:
            m = map_scores(out) if _scores_only(task) else task.map_outputs(out, n)  # type: ignore[union-attr]
        except Exception:  # an output this task cannot read costs only itself
            m = MappedOutputs(_EMPTY, None if _scores_only(task) else _EMPTY_CLASSES, _EMPTY_VALID, max(1, int(n)))
        parts.append(m)
        lengths.append(int(m.values.size))
    if not parts:
        empty = map_scores(np.empty(0))
        if not _scores_only(task):
            empty = empty._replace(classes=np.empty(0, dtype=np.int64))
        return empty, lengths
    classes = None
    if not _scores_only(task):
        classes = np.concatenate([p.classes for p in parts if p.classes is not None])
    mapped = MappedOutputs(
        np.concatenate([p.values for p in parts]),
        classes,
        np.concatenate([p.valid for p in parts]),
        sum(p.invalid for p in parts),
    )
    return mapped, lengths


def mapped_outputs(task: Task | None, batch: CallBatch) -> tuple[MappedOutputs, list[int]]:
    """:func:`map_calls` of a drained batch, computed once per batch and task however many
    parts read it."""
    return batch.memo(("mapped_outputs", id(task)), lambda: map_calls(task, batch.outputs, batch.rows))


def _banded(name: str, value: tuple[float, float], labels: dict[str, str]) -> Iterator[Triple]:
    """``mlmon_estimated_<name>`` and its ``_lower``/``_upper`` band."""
    v, lo, hi = band(*value)
    yield (f"mlmon_estimated_{name}", v, labels)
    yield (f"mlmon_estimated_{name}_lower", lo, labels)
    yield (f"mlmon_estimated_{name}_upper", hi, labels)


def _reliability(outside: float, n: float) -> Iterator[Triple]:
    share = outside / n if n else 0.0
    yield ("mlmon_estimate_out_of_range_ratio", share, {})
    yield ("mlmon_estimate_unreliable", 1 if share > OUT_OF_RANGE_LIMIT else 0, {})


def _scores_only(task: Task | None) -> bool:
    return not isinstance(task, (BinaryClassification, MulticlassClassification))


def estimated_performance(
    n_pos: float, sum_pos: float, sum_neg: float
) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 expected if scores are calibrated probabilities.

    A row with score ``p`` is positive with probability ``p``. Over the rows predicted
    positive (``p >= threshold``) the expected true positives are ``sum_pos = Σ p`` and false
    positives ``n_pos - sum_pos``; over the rows predicted negative the expected false
    negatives are ``sum_neg = Σ p``. Each ratio is None when its denominator is 0.

    >>> estimated_performance(n_pos=2, sum_pos=1.6, sum_neg=0.4)
    (0.8, 0.8, 0.8)
    """
    precision = sum_pos / n_pos if n_pos > 0 else None
    recall = sum_pos / (sum_pos + sum_neg) if sum_pos + sum_neg > 0 else None
    f1_den = sum_pos + n_pos + sum_neg  # 2 E[TP] + E[FP] + E[FN]
    f1 = 2.0 * sum_pos / f1_den if f1_den > 0 else None
    return precision, recall, f1


class _OutputSlice:
    """Output statistics of one window slice."""

    __slots__ = ("auc", "classes", "count", "est", "hist", "moments", "rows")

    def __init__(self, n_classes: int, est_shape: tuple[int, ...] | None = None, auc_cells: int = 0) -> None:
        self.rows = 0  # prediction rows of the calls (valid or not, recorded or not)
        self.count = 0  # valid outputs
        self.moments = Moments()
        self.hist = LogHistogram()
        self.classes = np.zeros(n_classes, dtype=np.int64) if n_classes else None
        # Estimate sums over the (calibrated) probabilities p: binary (8,), see _N_PP...; a
        # calibrated multiclass task (k, 7), one row per class, see _C_*.
        self.est = np.zeros(est_shape) if est_shape is not None else None
        # Σp and Σ(1 - p) per raw-score bin (per class, one after the other), for the ROC AUC.
        self.auc = ScoreBins(auc_cells) if est_shape is not None else None

    def merge(self, other: object) -> None:
        assert isinstance(other, _OutputSlice)
        self.rows += other.rows
        self.count += other.count
        self.moments.merge(other.moments)
        self.hist.merge(other.hist)
        if self.classes is not None and other.classes is not None:
            self.classes += other.classes
        if self.est is not None and other.est is not None:
            self.est += other.est
        if self.auc is not None and other.auc is not None:
            self.auc.merge(other.auc)

    def reset(self) -> None:
        self.rows = self.count = 0
        self.moments.reset()
        self.hist.reset()
        if self.classes is not None:
            self.classes[:] = 0
        if self.est is not None:
            self.est[:] = 0.0
        if self.auc is not None:
            self.auc.reset()


# Cells of _OutputSlice.est: rows predicted positive, Σp and Σp(1-p) over them; rows predicted
# negative, Σp and Σp(1-p) over them; uncalibrated scores outside [0, 1] (which make the
# estimate meaningless); scores outside the reference's range (calibration extrapolated).
_N_PP, _A, _VA, _N_PN, _B, _VB, _RAW_OUT, _REF_OUT = range(8)
_EST_CELLS = 8
# Multiclass, per class c (one-vs-rest): rows predicted c, Σp_c and Σp_c(1-p_c) over them; rows
# predicted another class, Σp_c and Σp_c(1-p_c) over them; and (row 0 only) rows with a score
# outside the reference's range of its class.
_C_CELLS = 7


class OutputComponent:
    """The distribution of model outputs over a rolling window (a monitor component).

    Args:
        task: how to read outputs; None reads them as numeric scores (scalars, 1-D arrays,
            ``(n, 1)`` columns; other shapes are invalid).
        window: seconds the window covers.
        slices: slices of the window.
        now: the monitor's monotonic clock at creation.

    Samples: ``mlmon_output_count`` (always), ``mlmon_output_mean``, ``_variance``
    (population, ddof=0), ``_stddev`` and ``mlmon_output{quantile}`` when the window holds a
    score; ``mlmon_output_class_ratio{class}`` for classifiers when it holds a prediction;
    ``mlmon_estimated_precision``/``_recall``/``_f1`` for binary classifiers whose window
    scores all lie in [0, 1] or whose reference carries a calibration, with
    ``mlmon_estimated_accuracy``, ``mlmon_estimated_roc_auc``, the ``_lower``/``_upper`` band of
    each, and (calibrated) ``mlmon_estimate_out_of_range_ratio`` and
    ``mlmon_estimate_unreliable``; ``mlmon_output_invalid_total`` (always); once a finite score was
    seen, ``mlmon_output_bin_total{bin}``, cumulative counts over :data:`SCORE_EDGES`
    (classifiers) or :data:`VALUE_EDGES` (regression, no task), which summed over processes are
    the fleet's output histogram.

    >>> from mlmon._component import CallBatch
    >>> comp = OutputComponent(BinaryClassification(threshold=0.5), window=60.0, now=0.0)
    >>> comp.ingest(CallBatch(now=1.0, wall=0.0, outputs=[0.9, [0.2, "bad"]], rows=[1, 2]))
    >>> values = {(n, tuple(sorted(l.items()))): v for n, v, l in comp.samples(2.0)}
    >>> values[("mlmon_output_count", ())], values[("mlmon_output_invalid_total", ())]
    (2, 1)
    >>> values[("mlmon_output_class_ratio", (("class", "1"),))]
    0.5
    """

    def __init__(
        self,
        task: Task | None,
        window: float,
        slices: int = 10,
        now: float = 0.0,
        *,
        reference: Reference | None = None,
    ) -> None:
        self.task = task
        if isinstance(task, (BinaryClassification, MulticlassClassification)):
            self._names: tuple[str, ...] = task.class_names
        else:
            self._names = ()
        n, binary = len(self._names), isinstance(task, BinaryClassification)
        self.calibration: Calibration | None = None
        self.class_calibration: tuple[Calibration, ...] | None = None
        est_shape: tuple[int, ...] | None = None
        if reference is not None and binary and reference.class_calibration is not None:
            raise ValueError(
                "reference.class_calibration (per class, multiclass) does not fit a binary task: "
                "build the reference with 1-D scores and 0/1 labels"
            )
        if reference is not None and not binary and reference.calibration is not None and n:
            raise ValueError(
                "reference.calibration (binary scores) does not fit a multiclass task: build the "
                "reference with probability rows (n, k) and class-index labels"
            )
        if binary:
            self.calibration = reference.calibration if reference is not None else None
            est_shape = (_EST_CELLS,)
            if self.calibration is not None:
                self._cal_x = np.asarray(self.calibration.x)
                self._cal_y = np.asarray(self.calibration.y)
                edges = [np.asarray(self.calibration.edges)]
            else:
                edges = [np.asarray(UNCALIBRATED_AUC_EDGES)]
        elif isinstance(task, MulticlassClassification) and reference is not None:
            self.class_calibration = reference.class_calibration
            if self.class_calibration is not None:
                if len(self.class_calibration) != n:
                    raise ValueError(
                        f"reference.class_calibration has {len(self.class_calibration)} classes, "
                        f"the task {n} ({list(self._names)})"
                    )
                est_shape = (n, _C_CELLS)
                edges = [np.asarray(c.edges) for c in self.class_calibration]
        if est_shape is not None:
            self._auc_edges = edges
            self._auc_offsets = np.cumsum([0] + [e.size + 1 for e in edges])
        cells = int(self._auc_offsets[-1]) if est_shape is not None else 0
        self._window: RollingWindow[_OutputSlice] = RollingWindow(
            lambda: _OutputSlice(n, est_shape, cells), window, slices, now
        )
        self.invalid_total = 0
        # Cumulative counts of the finite scores per cell of fixed edges (mlmon_output_bin_total):
        # summed over processes they are the fleet's output histogram.
        self._edges = np.array(SCORE_EDGES if n else VALUE_EDGES, dtype=np.float64)
        self.bin_totals = np.zeros(self._edges.size + 1, dtype=np.int64)
        self._warned_strings = False

    def observe(self, mapped: MappedOutputs, rows: int, now: float) -> None:
        """Add mapped outputs (and the calls' prediction rows) to the slice at ``now``."""
        self.invalid_total += mapped.invalid
        sl = self._window.current(now)
        sl.rows += rows
        valid = mapped.valid
        n_valid = int(np.count_nonzero(valid))
        if n_valid == 0:
            return
        sl.count += n_valid
        values = mapped.values
        with np.errstate(over="ignore", invalid="ignore"):
            finite = bool(np.isfinite(values.sum()))  # one pass; a NaN, an inf or an overflow: mask
        scores = values if finite else values[np.isfinite(values)]
        if scores.size:
            sl.moments.update_many(scores)
            sl.hist.add_many(scores)
            self.bin_totals += np.bincount(
                bin_index(scores, self._edges), minlength=self.bin_totals.size
            )
        classes = mapped.classes
        if sl.classes is not None and classes is not None:
            sl.classes += np.bincount(classes[valid], minlength=sl.classes.size)
        if sl.est is not None and sl.auc is not None and classes is not None and self.class_calibration is None:
            self._estimate(sl.est, sl.auc, mapped.values[valid], classes[valid] == 1)

    def _estimate(
        self, est: npt.NDArray[np.float64], bins: ScoreBins, raw: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]
    ) -> None:
        """Add valid binary scores (and their predicted class) to a slice's estimate."""
        cal = self.calibration
        if cal is not None:
            lo, hi = cal.score_range
            est[_REF_OUT] += np.count_nonzero((raw < lo) | (raw > hi))
            p = np.interp(raw, self._cal_x, self._cal_y)
        else:
            est[_RAW_OUT] += np.count_nonzero((raw < 0.0) | (raw > 1.0))
            p = np.clip(raw, 0.0, 1.0)
        pp, pn = split_by(positive, p)
        est[_N_PP] += pp.size
        est[_A] += pp.sum()
        est[_VA] += np.dot(pp, 1.0 - pp)
        est[_N_PN] += pn.size
        est[_B] += pn.sum()
        est[_VB] += np.dot(pn, 1.0 - pn)
        bins.add(bin_index(raw, self._auc_edges[0]), p)

    def _estimate_classes(
        self, est: npt.NDArray[np.float64], bins: ScoreBins, raw: npt.NDArray[np.float64]
    ) -> None:
        """Add probability rows ``(n, k)`` (finite) to a slice's multiclass estimate: each column
        calibrated one-vs-rest, the calibrated rows normalised to sum to 1."""
        cals = self.class_calibration
        assert cals is not None
        pred = np.argmax(raw, axis=1)
        p = np.empty_like(raw)
        out = np.zeros(raw.shape[0], dtype=np.bool_)
        for c, cal in enumerate(cals):
            col = raw[:, c]
            lo, hi = cal.score_range
            out |= (col < lo) | (col > hi)
            p[:, c] = cal.apply(col)
        total = p.sum(axis=1, keepdims=True)
        k = raw.shape[1]
        p = np.divide(p, total, out=np.full_like(p, 1.0 / k), where=total > 0)
        est[0, _C_CELLS - 1] += np.count_nonzero(out)
        for c in range(k):
            pc = p[:, c]
            is_c = pred == c
            a, b = split_by(is_c, pc)
            est[c, :6] += (a.size, a.sum(), np.dot(a, 1.0 - a), b.size, b.sum(), np.dot(b, 1.0 - b))
            bins.add(self._auc_offsets[c] + bin_index(raw[:, c], self._auc_edges[c]), pc)

    def _probability_rows(self, batch: CallBatch) -> npt.NDArray[np.float64]:
        """The finite probability rows ``(n, k)`` of a batch's outputs (other outputs skipped)."""
        k = len(self._names)
        parts = []
        for out, n in zip(batch.outputs, batch.rows, strict=True):
            if out is None or isinstance(out, (str, bytes)):
                continue
            try:
                arr = np.asarray(out, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                continue
            if arr.ndim == 1 and arr.size == k and n == 1:
                arr = arr.reshape(1, k)
            if arr.ndim == 2 and arr.shape[1] == k:
                parts.append(arr[np.isfinite(arr).all(axis=1)])
        return np.concatenate(parts) if parts else np.empty((0, k))

    def ingest(self, batch: CallBatch) -> None:
        """Map and add the outputs of drained calls; bad outputs are counted, never raised."""
        mapped, _ = mapped_outputs(self.task, batch)
        self.observe(mapped, int(sum(batch.rows)), batch.now)
        if self.class_calibration is not None:
            sl = self._window.current(batch.now)
            rows = self._probability_rows(batch)
            if rows.shape[0] and sl.est is not None and sl.auc is not None:
                self._estimate_classes(sl.est, sl.auc, rows)
        if mapped.invalid and not self._warned_strings:
            text = next((o for o in batch.outputs if isinstance(o, str)), None)
            if text is not None:
                # The usual cause: string class outputs ("spam") with a task that expects scores
                # or other class labels. Said once, not per call.
                self._warned_strings = True
                log.warning(
                    "mlmon: outputs such as %r are counted invalid: the task %r cannot read them "
                    "(for string classes, pass them: BinaryClassification(classes=[...]))",
                    text[:40], self.task,
                )

    def rows(self, now: float) -> tuple[int, float]:
        """Prediction rows in the window, and the seconds the window covers."""
        return self._window.merged(now).rows, self._window.covered(now)

    def samples(self, now: float) -> Iterator[Triple]:
        """Window-scoped output statistics and the invalid counter."""
        m = self._window.merged(now)
        yield ("mlmon_output_count", m.count, {})
        mo = m.moments
        if mo.count:
            yield ("mlmon_output_mean", mo.mean, {})
            yield ("mlmon_output_variance", mo.variance, {})
            yield ("mlmon_output_stddev", math.sqrt(mo.variance), {})
            for q in QUANTILES:
                yield ("mlmon_output", m.hist.quantile(q), {"quantile": str(q)})
        if m.classes is not None:
            total = int(m.classes.sum())
            if total:
                for name, c in zip(self._names, m.classes.tolist(), strict=True):
                    yield ("mlmon_output_class_ratio", c / total, {"class": name})
        if m.est is not None and m.auc is not None and m.count:
            if self.class_calibration is not None:
                yield from self._class_estimates(m.est, m.auc)
            else:
                yield from self._estimates(m.est, m.auc)
        yield ("mlmon_output_invalid_total", self.invalid_total, {})
        counts = self.bin_totals.tolist()
        for i, c in enumerate(counts if any(counts) else ()):
            yield ("mlmon_output_bin_total", c, {"bin": f"{i:02d}"})

    def _estimates(self, est: npt.NDArray[np.float64], bins: ScoreBins) -> Iterator[Triple]:
        e = est.tolist()
        if self.calibration is None and e[_RAW_OUT]:
            return  # raw scores that are not probabilities: no estimate (docs/quality.md)
        values = expected_binary(e[_N_PP], e[_A], e[_VA], e[_N_PN], e[_B], e[_VB])
        auc, _ = binned_auc(bins.pos, bins.neg)
        if auc is not None:
            positives = e[_A] + e[_B]
            values["roc_auc"] = (auc, auc_se(auc, positives, e[_N_PP] + e[_N_PN] - positives))
        for name in ESTIMATED:
            if name in values:
                yield from _banded(name, values[name], {})
        if self.calibration is not None:
            yield from _reliability(e[_REF_OUT], e[_N_PP] + e[_N_PN])

    def _class_estimates(self, est: npt.NDArray[np.float64], bins: ScoreBins) -> Iterator[Triple]:
        """Per class (one-vs-rest), macro and micro averages, accuracy and the flag."""
        rows = est.tolist()
        n = rows[0][0] + rows[0][3]
        if not n:
            return
        per: dict[str, list[tuple[float, float]]] = {name: [] for name in ("precision", "recall", "f1", "roc_auc")}
        correct = var = 0.0
        for c, (r, name) in enumerate(zip(rows, self._names, strict=True)):
            values = expected_binary(*r[:6])
            correct += r[1]
            var += r[2]
            lo, hi = int(self._auc_offsets[c]), int(self._auc_offsets[c + 1])
            auc, _ = binned_auc(bins.pos[lo:hi], bins.neg[lo:hi])
            if auc is not None:
                positives = r[1] + r[4]
                values["roc_auc"] = (auc, auc_se(auc, positives, n - positives))
            for metric, got in per.items():
                if metric in values:
                    got.append(values[metric])
                    yield from _banded(metric, values[metric], {"class": name})
        for metric, got in per.items():
            if got:
                k = len(got)
                mean = sum(v for v, _ in got) / k
                se = math.sqrt(sum(s * s for _, s in got)) / k  # classes taken as independent
                yield from _banded(metric, (mean, se), {"average": "macro"})
        # Single-label multiclass: micro precision, recall and F1 all equal the accuracy.
        micro = (correct / n, math.sqrt(max(var, 0.0)) / n)
        for metric in ("precision", "recall", "f1"):
            yield from _banded(metric, micro, {"average": "micro"})
        yield from _banded("accuracy", micro, {})
        yield from _reliability(rows[0][_C_CELLS - 1], n)

    def reset(self) -> None:
        """Forget everything (after a fork)."""
        self._window.reset()
        self.invalid_total = 0
        self.bin_totals[:] = 0
