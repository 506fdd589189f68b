"""Model quality: the feedback join and windowed quality metrics (a monitor part).

Data flow (see ``docs/quality.md``):

- At each drain the monitor hands over a :class:`~mlmon._component.CallBatch`. The outputs of
  every call are mapped once by the task (shared with the output part through
  :meth:`~mlmon._component.CallBatch.memo`), and each prediction with an id is stored in the
  :class:`~mlmon.feedback.FeedbackJoin` at the time its call finished.
- ``log_feedback(ids, labels)`` joins labels to stored predictions; each joined pair goes into
  the window slice of the label's arrival time, so quality metrics cover the labels received
  in the window, whatever the age of the predictions they judge.
- ``samples(now)`` merges the windows into metric values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon._component import CallBatch, Triple
from mlmon.feedback import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_ROW_BYTES,
    DEFAULT_TTL,
    FeedbackJoin,
    as_batch,
    id_keys,
    label_array,
)
from mlmon.outputs import QUANTILES, UNCALIBRATED_AUC_EDGES, mapped_outputs
from mlmon.reference import Reference, bin_index
from mlmon.stats.binary import ScoreBins, binned_auc, binned_average_precision
from mlmon.stats.confusion import ConfusionMatrix
from mlmon.stats.loghist import LogHistogram
from mlmon.stats.multiclass import RowMetrics, class_bins, default_top_k
from mlmon.stats.regression import RegressionErrors
from mlmon.stores.base import REASONS, PredictionStore, StoreJoined
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression, Task
from mlmon.window import RollingWindow

__all__ = ["CALIBRATION_BINS", "ROW_SUM_TOLERANCE", "QualityComponent", "decode_scores", "encode_scores"]

CALIBRATION_BINS = 10
"""Bins of width 0.1 on [0, 1] of the calibration curve (``mlmon_calibration_*{bin}``) and of
``mlmon_expected_calibration_error``."""

ROW_SUM_TOLERANCE = 0.01
"""A multiclass probability row is kept for top-k accuracy and the per-class AUCs when its
values are in [0, 1] and sum to 1 within this (else counted in
``mlmon_probability_rows_invalid_total``; its predicted class still counts)."""

_EPS = float(np.finfo(np.float64).eps)
_PENDING = 64  # single-label delays buffered before one histogram update


def encode_scores(
    classes: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Binary predictions as stored in the feedback join: ``class + f(score)``.

    ``f`` maps every finite score monotonically into (0, 0.75) (``0.25 + score / 4`` on [0, 1],
    exponential tails outside), so ``floor`` of the stored value is still the class index
    (what the confusion matrix reads, and what older mlmon stored) and :func:`decode_scores`
    gets the score back (within 1e-15 on [0, 1]; scores beyond about ±30 outside it lose
    their order).

    >>> enc = encode_scores(np.array([1, 0]), np.array([0.9, 0.2]))
    >>> enc.astype(np.int64).tolist(), [round(v, 12) for v in decode_scores(enc)[1].tolist()]
    ([1, 0], [0.9, 0.2])
    """
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        # Scores in [0, 1] are the rule: the exponential tails are computed for the values in
        # them only (each value by the same formula: results equal to the bit).
        f = 0.25 + 0.25 * s
        low = s < 0.0
        if low.any():
            f[low] = 0.25 * np.exp(s[low])
        high = s > 1.0
        if high.any():
            f[high] = 0.75 - 0.25 * np.exp(-(s[high] - 1.0))
        # A score so far out that f rounds to an end is kept as its class alone.
        out = ~((f > 0.0) & (f < 0.75))
    if out.any():
        f[out] = 0.0
    return classes.astype(np.float64) + f


def decode_scores(
    preds: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Inverse of :func:`encode_scores`: class indices and scores (NaN where the prediction
    was stored without a score)."""
    classes = np.floor(preds)
    f = preds - classes
    with np.errstate(divide="ignore", invalid="ignore"):
        # Scores in [0, 1] (f in [0.25, 0.5]) are the rule: the tails' logarithms are taken
        # of the values in them only (each value by the same formula as before).
        s = (f - 0.25) / 0.25
        low = f < 0.25
        if low.any():
            s[low] = np.log(f[low] / 0.25)
        high = f > 0.5
        if high.any():
            s[high] = 1.0 - np.log((0.75 - f[high]) / 0.25)
    none = ~(f > 0.0)
    if none.any():
        s[none] = np.nan
    return classes.astype(np.int64), s

_AVERAGES = ("macro", "micro")
_QUALITY = ("mlmon_precision", "mlmon_recall", "mlmon_f1")

MAX_CONFUSION_CLASSES = 32
"""Up to this many classes every cell of ``mlmon_confusion_total`` is emitted (zeros included,
at most 1,024 series); above it only the cells that ever counted a pair."""


class _LabelSlice:
    """Joined labels of one window slice: count, delays, and the task's error accumulators.

    Binary tasks also keep the score-based accumulators (when ``auc_edges`` is given): label
    counts per raw-score bin (ROC and PR AUC), the log-loss and Brier sums over scores in
    [0, 1], and the calibration curve's per-bin count, Σ score and Σ label.
    """

    __slots__ = (
        "bad_rows",
        "calib",
        "confusion",
        "count",
        "errors",
        "hist",
        "n_pending",
        "pending",
        "ranked",
        "scored",
        "sums",
        "timed",
    )

    def __init__(
        self,
        task: Task | None,
        timed: bool = True,
        auc_cells: int = 0,
        ranked: tuple[tuple[int, ...], int] | None = None,
    ) -> None:
        self.count = 0
        # The cumulative totals (``timed=False``) keep no delays: only counts and errors.
        self.timed = timed
        self.hist = LogHistogram()
        # Single labels' delays wait here (a fixed buffer); the histogram takes them in one batch.
        self.pending = np.zeros(_PENDING if timed else 0)
        self.n_pending = 0
        self.confusion: ConfusionMatrix | None = None
        self.errors: RegressionErrors | None = None
        self.scored: ScoreBins | None = None
        self.sums: npt.NDArray[np.float64] | None = None
        self.calib: npt.NDArray[np.float64] | None = None
        # Multiclass with probability rows (``ranked`` = (top-k values, bins per class)):
        # top-k hits and the per-class one-vs-rest score histograms.
        self.ranked: RowMetrics | None = None
        # Multiclass probability rows not kept (out of [0, 1], not summing to 1): counted in the
        # cumulative totals, which a fleet state carries.
        self.bad_rows = 0
        if isinstance(task, BinaryClassification):
            self.confusion = ConfusionMatrix(2)
            if auc_cells:
                self.scored = ScoreBins(auc_cells)
                # Labels with a score; with a score outside [0, 1]; Σ log loss; Σ squared error.
                self.sums = np.zeros(4)
                self.calib = np.zeros((3, CALIBRATION_BINS))  # count, Σ score, Σ label per bin
        elif isinstance(task, MulticlassClassification):
            self.confusion = ConfusionMatrix(len(task.classes))
            if ranked is not None:
                self.ranked = RowMetrics(len(task.classes), ranked[0], ranked[1])
        elif isinstance(task, Regression):
            self.errors = RegressionErrors()

    def add(
        self,
        preds: npt.NDArray[np.float64],
        labels: npt.NDArray[np.float64],
        delays: npt.NDArray[np.float64],
        edges: npt.NDArray[np.float64] | None = None,
    ) -> None:
        self.count += int(preds.size)
        if self.timed:
            self.hist.add_many(delays)
        if self.confusion is not None:
            self.confusion.update_many(labels.astype(np.int64), preds.astype(np.int64))
            if self.scored is not None and edges is not None:
                self._add_scores(preds, labels, edges)
        elif self.errors is not None:
            self.errors.update_many(preds, labels)

    def _add_scores(
        self, preds: npt.NDArray[np.float64], labels: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
    ) -> None:
        _, scores = decode_scores(preds)
        has = np.isfinite(scores)
        scored = int(np.count_nonzero(has))
        if not scored:
            return
        # Selections only when some rows are left out (the same values, no copies otherwise).
        s, y = (scores, labels) if scored == scores.size else (scores[has], labels[has])
        assert self.scored is not None and self.sums is not None and self.calib is not None
        self.scored.add(bin_index(s, edges), y)
        prob = (s >= 0.0) & (s <= 1.0)
        p, t = (s, y) if int(np.count_nonzero(prob)) == s.size else (s[prob], y[prob])
        q = np.clip(p, _EPS, 1.0 - _EPS)
        self.sums += (
            s.size,
            s.size - p.size,
            -float(np.dot(t, np.log(q)) + np.dot(1.0 - t, np.log1p(-q))),
            float(np.dot(p - t, p - t)),
        )
        b = np.minimum((p * CALIBRATION_BINS).astype(np.intp), CALIBRATION_BINS - 1)
        self.calib[0] += np.bincount(b, minlength=CALIBRATION_BINS)
        self.calib[1] += np.bincount(b, weights=p, minlength=CALIBRATION_BINS)
        self.calib[2] += np.bincount(b, weights=t, minlength=CALIBRATION_BINS)

    def add_rows(
        self,
        labels: npt.NDArray[np.float64],
        rows: npt.NDArray[np.float32],
        top: npt.NDArray[np.int64] | None,
        ks: tuple[int, ...],
    ) -> None:
        """Probability rows of joined pairs (NaN rows: none) into top-k and the AUCs."""
        r = self.ranked
        if r is None or rows.shape[0] != labels.size:
            return
        k = r.n_classes
        has = ~np.isnan(rows).any(axis=1) & (labels >= 0) & (labels < k)
        if top is None and rows.shape[1] != k:
            return
        if not has.all():
            rows, labels = rows[has], labels[has]
            top = None if top is None else top[has]
        if labels.size:
            # With top classes only, hits of a k above them are undercounted: never emitted.
            r.add(rows, labels.astype(np.int64), ks, top)

    def add_one(self, pred: float, label: float, delay: float) -> None:
        """One joined pair (a single label); its delay waits in the fixed buffer."""
        if self.timed:
            if self.n_pending == self.pending.size:
                self._flush()
            self.pending[self.n_pending] = delay
            self.n_pending += 1
        self.count += 1
        if self.confusion is not None:
            self.confusion.update(int(label), int(pred))
        elif self.errors is not None:
            self.errors.update(pred, label)

    def _flush(self) -> None:
        if self.n_pending:
            self.hist.add_many(self.pending[: self.n_pending])
            self.n_pending = 0

    def merge(self, other: object) -> None:
        assert isinstance(other, _LabelSlice)
        if self.ranked is not None and other.ranked is not None:
            self.ranked.check_merge(other.ranked)  # before anything changes
        other._flush()
        self._flush()
        self.count += other.count
        self.bad_rows += other.bad_rows
        self.hist.merge(other.hist)
        if self.confusion is not None and other.confusion is not None:
            self.confusion.merge(other.confusion)
        if self.errors is not None and other.errors is not None:
            self.errors.merge(other.errors)
        if self.scored is not None and other.scored is not None:
            self.scored.merge(other.scored)
        if self.sums is not None and other.sums is not None:
            self.sums += other.sums
        if self.calib is not None and other.calib is not None:
            self.calib += other.calib
        if self.ranked is not None and other.ranked is not None:
            self.ranked.merge(other.ranked)

    def reset(self) -> None:
        self.count = 0
        self.bad_rows = 0
        self.hist.reset()
        self.n_pending = 0
        if self.confusion is not None:
            self.confusion.reset()
        if self.errors is not None:
            self.errors.reset()
        if self.scored is not None:
            self.scored.reset()
        if self.sums is not None:
            self.sums[:] = 0.0
        if self.calib is not None:
            self.calib[:] = 0.0
        if self.ranked is not None:
            self.ranked.reset()


def _any_label(v: object) -> float:
    """Without a task any label but None and NaN is valid (encoded 0.0)."""
    if v is None:
        return math.nan
    try:
        return math.nan if math.isnan(v) else 0.0  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # a string, an int beyond float range
        return 0.0


class QualityComponent:
    """The feedback join and the quality metrics of one monitor.

    Args:
        task: the model's task, or None: then outputs are numeric scores, labels are joined
            and counted (coverage, delay) but no quality metric is computed.
        window: seconds the rolling windows cover.
        slices: slices per window.
        now: the monitor's monotonic clock at creation.
        max_pending: most predictions the feedback join keeps (see
            :class:`~mlmon.feedback.FeedbackJoin`).
        ttl: seconds a prediction stays joinable.
        rows: returns the prediction rows in the window and the seconds it covers (the
            output part's :meth:`~mlmon.outputs.OutputComponent.rows`), for label coverage;
            None emits no coverage.
        shared: a shared prediction store (:class:`~mlmon.stores.RedisStore`): predictions
            with ids of the caller's go there, labels are joined there by the background
            thread (:meth:`take_shared`), in whichever process they arrive. Predictions with
            generated ids (which other processes cannot know) stay in the in-process store.
        reference: binary tasks: when it carries a calibration, the ROC and PR AUC bin scores
            at its quantiles (else 1,000 bins on [0, 1]).
        max_row_bytes: multiclass: cap of the join's probability-row column (see
            :meth:`~mlmon.feedback.FeedbackJoin.row_layout`).
        top_k: multiclass: the ``k`` of ``mlmon_top_k_accuracy`` (default: the task's
            ``top_k`` if it has one, else 1, 3, 5), those below the number of classes.

    Quality metrics are over the labels received in the window, and absent (not 0, not NaN)
    when the window has none or their denominator is 0; ``mlmon_labels_window`` is always
    emitted. Binary metrics carry no ``class`` label; multiclass adds ``{class}`` per class and
    ``{average="macro"|"micro"}``.

    Not thread-safe: the monitor calls it under its drain lock, and drains before
    ``log_feedback`` so that a label for a call that just finished finds its prediction.

    >>> from mlmon._component import CallBatch
    >>> q = QualityComponent(BinaryClassification(), window=60.0, now=0.0)
    >>> q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[np.array([0.9, 0.2, 0.7])],
    ...                    ids=[["a", "b", "c"]], rows=[3]))
    >>> q.log_feedback(["a", "b", "c", "zzz"], [1, 0, 0, 1], now=5.0)
    >>> snap = {(n, tuple(l.items())): v for n, v, l in q.samples(6.0)}
    >>> snap[("mlmon_precision", ())], snap[("mlmon_recall", ())], snap[("mlmon_accuracy", ())]
    (0.5, 1.0, 0.6666666666666666)
    >>> snap[("mlmon_labels_total", ())], snap[("mlmon_labels_unmatched_total", ())]
    (3, 1)
    """

    def __init__(
        self,
        task: Task | None,
        window: float,
        slices: int = 10,
        now: float = 0.0,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        ttl: float = DEFAULT_TTL,
        rows: Callable[[float], tuple[int, float]] | None = None,
        shared: PredictionStore | None = None,
        reference: Reference | None = None,
        max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
        top_k: tuple[int, ...] | None = None,
    ) -> None:
        if task is not None and not isinstance(
            task, (BinaryClassification, MulticlassClassification, Regression)
        ):
            raise TypeError(f"task must be a task object from mlmon.tasks or None, got {task!r}")
        self.task = task
        self._rows = rows
        # Cumulative counts of every joined pair, never rotated out: summed over processes by
        # any backend, they rebuild the fleet's quality exactly.
        self._totals = _LabelSlice(task, timed=False)
        self._edges: npt.NDArray[np.float64] | None = None
        cells = 0
        if isinstance(task, BinaryClassification):
            cal = reference.calibration if reference is not None else None
            self._edges = np.asarray(cal.edges if cal is not None else UNCALIBRATED_AUC_EDGES)
            cells = self._edges.size + 1
        self.shared = shared
        self.shared_counts = dict.fromkeys(REASONS, 0)
        self.store = FeedbackJoin(max_pending=max_pending, ttl=ttl, max_row_bytes=max_row_bytes)
        # Multiclass: top-k accuracy and per-class AUCs from the joined probability rows.
        self._ks: tuple[int, ...] = ()
        ranked: tuple[tuple[int, ...], int] | None = None
        if isinstance(task, MulticlassClassification):
            n_classes = len(task.classes)
            want = top_k if top_k is not None else getattr(task, "top_k", None)
            if want is not None and not (
                isinstance(want, (tuple, list))
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in want)
            ):
                raise ValueError(f"top_k must be a tuple of ints >= 1, got {want!r}")
            self._ks = default_top_k(n_classes, want)
            ranked = (self._ks, class_bins(n_classes))
        self._labels: RollingWindow[_LabelSlice] = RollingWindow(
            lambda: _LabelSlice(task, True, cells, ranked), window, slices, now
        )
        self._map_label = task.map_label if task is not None else _any_label
        self.unjoinable = 0  # predictions whose ids did not match their outputs in length
        # Where joined pairs whose predictions had a segment go (the monitor's segment part):
        # (codes, preds, labels, delays, now, names of codes or None).
        self.on_segments: Callable[..., None] | None = None

    # -- drain side --------------------------------------------------------------------------
    def ingest(self, batch: CallBatch) -> None:
        """Store the predictions of the drained calls that have ids.

        Never raises on bad data: predictions without usable ids are not stored (counted).
        """
        now = batch.now
        mapped, lengths = mapped_outputs(self.task, batch)
        ids = batch.ids
        if not mapped.values.size or not any(i is not None for i in ids):
            return
        if mapped.classes is not None and isinstance(self.task, BinaryClassification):
            # The score rides along with the class (encode_scores): ROC AUC, log loss, ...
            preds = np.where(mapped.valid, encode_scores(mapped.classes, mapped.values), np.nan)
        elif mapped.classes is not None:
            preds = np.where(mapped.valid, mapped.classes, np.nan)
        else:
            preds = np.where(mapped.valid, mapped.values, np.nan)
        if len(batch.times) == len(lengths):
            made = np.repeat(np.asarray(batch.times, dtype=np.float64), lengths)
        elif len(batch.times):
            made = np.repeat(np.array([batch.time_of(i) for i in range(len(lengths))]), lengths)
        else:
            made = np.full(preds.size, now)
        codes = batch.segment_codes
        if codes is not None and codes.size != preds.size:
            codes = None
        if self.shared is not None:
            ids = self._record_shared(ids, lengths, preds, batch.wall - (now - made), codes)
            if not any(i is not None for i in ids):
                return
        keys, ok = self._keys(ids, lengths)
        rows = None
        if isinstance(self.task, MulticlassClassification) and mapped.classes is not None:
            rows = self._probability_rows(batch, lengths, mapped.values)
        self.store.record_keys(
            keys[ok], np.ones(int(ok.sum()), np.bool_), preds[ok], now, made[ok], None if codes is None else codes[ok],
            **({} if rows is None else {"rows": rows[ok]}),
        )

    def _probability_rows(
        self, batch: CallBatch, lengths: list[int], values: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float32] | None:
        """The calls' probability rows aligned with their mapped rows, float32 (NaN rows for
        outputs that were class labels, invalid, or not probabilities: counted in
        the totals' ``bad_rows``); None when no call returned probability rows."""
        if not np.isfinite(values).any():
            return None  # class-label outputs have no score: no rows at all
        assert isinstance(self.task, MulticlassClassification)
        k = len(self.task.classes)
        out = np.full((values.size, k), np.nan, dtype=np.float32)
        at = bad = 0
        for obj, n in zip(batch.outputs, lengths, strict=True):
            if n and obj is not None and not isinstance(obj, (str, bytes)):
                try:
                    arr: npt.NDArray[np.float64] | None = np.asarray(obj, dtype=np.float64)
                except Exception:  # outputs numpy cannot read as numbers have no row
                    arr = None
                if arr is not None:
                    if arr.ndim == 1 and n == 1 and arr.size == k:
                        arr = arr.reshape(1, k)
                    if arr.shape == (n, k):
                        with np.errstate(invalid="ignore"):
                            finite = np.isfinite(arr).all(axis=1)
                            ok = finite & (arr >= 0.0).all(axis=1) & (arr <= 1.0).all(axis=1)
                            ok &= np.abs(arr.sum(axis=1) - 1.0) <= ROW_SUM_TOLERANCE
                        bad += int(np.count_nonzero(finite & ~ok))
                        if ok.all():
                            out[at : at + n] = arr
                        else:
                            out[at : at + n][ok] = arr[ok]
            at += n
        self._totals.bad_rows += bad
        return out

    def _record_shared(
        self,
        ids: Any,
        lengths: list[int],
        preds: npt.NDArray[np.float64],
        made_wall: npt.NDArray[np.float64],
        codes: npt.NDArray[np.uint32] | None = None,
    ) -> list[Any]:
        """Hand the predictions with the caller's ids to the shared store; return the ids left
        for the in-process store (generated ``range`` ids), None elsewhere."""
        flat: list[Any] = []
        keep = np.zeros(len(lengths), dtype=np.bool_)
        left: list[Any] = []
        for k, (i, n) in enumerate(zip(ids, lengths, strict=True)):
            if i is None or i.__class__ is range:
                left.append(i)
                continue
            left.append(None)
            b = as_batch(i)
            if len(b) == n:
                flat.extend(b)
                keep[k] = True
            elif n:
                self.unjoinable += n
        if flat:
            # The rows of the kept calls, in one vectorised step.
            idx = np.flatnonzero(np.repeat(keep, lengths))
            assert self.shared is not None
            if codes is not None and hasattr(self.shared, "name_segments"):
                # A store that keeps segments (mlmon.stores.RedisStore): the code rides along.
                self.shared.record(flat, preds[idx], made_wall[idx], segments=codes[idx])
            else:
                self.shared.record(flat, preds[idx], made_wall[idx])
        return left

    def _keys(
        self, ids: Any, lengths: list[int]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Keys aligned with the mapped rows of all calls; ``ok`` is False where a row has no
        usable id (no ids, ids of the wrong length, an unhashable id)."""
        if all(i.__class__ is range for i in ids) and all(len(i) == n for i, n in zip(ids, lengths, strict=True)):
            # Generated ids (``with mon.track() as call``): integer ranges, keyed without a
            # Python-level pass per id.
            if all(n == 1 for n in lengths):
                keys = np.array([i.start for i in ids], dtype=np.int64)
            else:
                keys = np.concatenate([np.arange(i.start, i.stop, dtype=np.int64) for i in ids if len(i)])
            return keys, np.ones(keys.size, np.bool_)
        if all(n == 1 for n in lengths):
            # Single-row calls: one id each, keyed in one go.
            singles: list[Any] = []
            has = []
            for i in ids:
                b = None if i is None else as_batch(i)
                if b is not None and len(b) == 1:
                    singles.append(b[0])
                    has.append(True)
                    continue
                if b is not None:
                    self.unjoinable += 1
                singles.append(None)
                has.append(False)
            keys, ok = id_keys(singles)
            self.store.bad_ids += int(np.count_nonzero(~ok & np.array(has, dtype=np.bool_)))
            return keys, ok
        key_parts, ok_parts = [], []
        for i, n in zip(ids, lengths, strict=True):
            if n == 0:
                continue
            b = None if i is None else as_batch(i)
            if b is None or len(b) != n:
                if b is not None:
                    self.unjoinable += n
                key_parts.append(np.zeros(n, np.int64))
                ok_parts.append(np.zeros(n, np.bool_))
                continue
            k, ok = id_keys(b)
            self.store.bad_ids += int(n - np.count_nonzero(ok))
            key_parts.append(k)
            ok_parts.append(ok)
        return np.concatenate(key_parts), np.concatenate(ok_parts)

    # -- feedback and outcomes -----------------------------------------------------------------
    def log_feedback(self, ids: Any, labels: Any, now: float, wall: float | None = None) -> None:
        """Join true labels to stored predictions by id.

        Args:
            ids: one id, or a batch (list, tuple, numpy array, range, pandas Series).
            labels: one label, or a batch as long as ``ids``.
            now: the monitor's monotonic clock.
            wall: Unix time now (the shared store's clock); with a shared store, labels are
                handed to it and joined by the background thread.

        Raises:
            ValueError: when ``ids`` and ``labels`` differ in length. Nothing else: bad ids
                and labels are counted (see :class:`~mlmon.feedback.FeedbackJoin`).
        """
        id_batch, label_batch = as_batch(ids), as_batch(labels)
        if len(id_batch) != len(label_batch):
            raise ValueError(
                f"ids and labels must have the same length, got {len(id_batch)} ids "
                f"and {len(label_batch)} labels"
            )
        if self.shared is not None:
            codes = np.fromiter((self._label_code(v) for v in label_batch), np.float64, len(label_batch))
            self.shared.submit_labels(id_batch, codes, now if wall is None else wall)
            return
        if len(id_batch) == 1:
            code = self._label_code(label_batch[0])
            hit = self.store.join_one(id_batch[0], code, now)
            if hit is not None:
                segs = np.array([hit[2]], dtype=np.uint32) if hit[2] else None
                row = self.store.last_row
                self.add_joined(
                    np.array([hit[0]]), np.array([code]), np.array([hit[1]]), now, segs,
                    probabilities=None if row is None else row[0], top_classes=None if row is None else row[1],
                )
            return
        try:
            arr = label_array(label_batch)
            if self.task is None:
                codes = np.fromiter((_any_label(v) for v in arr.tolist()), np.float64, arr.size)
                valid = ~np.isnan(codes)
            else:
                codes, valid = self.task.map_labels(arr)
        except Exception:
            # One label numpy cannot read costs only itself: map them one by one.
            codes = np.fromiter((self._label_code(v) for v in label_batch), np.float64, len(label_batch))
            valid = ~np.isnan(codes)
        joined = self.store.join(id_batch, codes, valid, now)
        if joined.preds.size:
            self.add_joined(
                joined.preds, joined.labels, joined.delays, now, joined.segments,
                probabilities=joined.rows, top_classes=joined.row_classes,
            )

    def add_joined(
        self,
        preds: npt.NDArray[np.float64],
        labels: npt.NDArray[np.float64],
        delays: npt.NDArray[np.float64],
        now: float,
        segments: npt.NDArray[np.uint32] | None = None,
        names: Mapping[int, str] | None = None,
        *,
        probabilities: npt.NDArray[np.floating] | None = None,
        top_classes: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """Count joined (prediction, label) pairs, with their label delays, at ``now``: every
        join — in-process or through a shared store — ends here.

        The pairs go into the window slice of ``now`` and into the cumulative totals behind
        ``mlmon_confusion_total`` and ``mlmon_regression_*_total``; pairs whose prediction
        had a segment (``segments``: codes, 0 for none; ``names``: names of codes this process
        may not know) also go to that segment's quality.

        Multiclass: ``probabilities`` (aligned ``(n, k)`` rows, NaN rows for none; or with
        ``top_classes``, ``(n, m)`` class indices in rank order, each row's ``m`` highest
        probabilities) feed top-k accuracy and the per-class ROC and PR AUCs."""
        sl = self._labels.current(now)
        sl.add(preds, labels, delays, self._edges)
        if probabilities is not None and sl.ranked is not None:
            sl.add_rows(labels, np.asarray(probabilities, dtype=np.float32), top_classes, self._ks)
        self._totals.add(preds, labels, delays)
        if segments is not None and self.on_segments is not None and segments.any():
            self.on_segments(segments, preds, labels, delays, now, names)

    def take_shared(self, joined: StoreJoined, now: float) -> None:
        """Count what a shared store's sync joined (called by the monitor's background cycle)."""
        for reason, n in joined.counts.items():
            self.shared_counts[reason] = self.shared_counts.get(reason, 0) + int(n)
        if joined.preds.size:
            segs = getattr(joined, "segments", None)
            if segs is not None and segs.size != joined.preds.size:
                segs = None
            self.add_joined(
                joined.preds, joined.labels, joined.delays, now, segs, getattr(joined, "segment_names", None)
            )

    def _label_code(self, v: object) -> float:
        """One label's code, NaN (invalid) when the task cannot read it."""
        try:
            return float(self._map_label(v))
        except Exception:
            return math.nan

    # -- read side ---------------------------------------------------------------------------
    def samples(self, now: float) -> Iterator[Triple]:
        """Label and quality metrics at ``now``."""
        store, shared = self.store, self.shared_counts
        yield ("mlmon_labels_total", store.joined + shared["joined"], {})
        yield ("mlmon_labels_unmatched_total", store.unmatched + shared["unmatched"], {})
        yield ("mlmon_labels_expired_total", store.expired + shared["expired"], {})
        yield ("mlmon_labels_duplicate_total", store.duplicate + shared["duplicate"], {})
        yield ("mlmon_labels_evicted_total", store.evicted, {})
        yield ("mlmon_labels_invalid_total", store.invalid + shared["invalid"], {})
        yield ("mlmon_pending_predictions", store.pending(now), {})
        if isinstance(self.task, MulticlassClassification):
            yield ("mlmon_probability_rows_invalid_total", self._totals.bad_rows, {})
        m = self._labels.merged(now)
        rows, covered = self._rows(now) if self._rows is not None else (0, 0.0)
        if rows:
            # With a shared store, labels joined here may judge predictions made elsewhere: the
            # window's joined labels over its predictions, summed over processes, is the fleet's.
            labelled = m.count if self.shared is not None else store.labelled_since(now - covered)
            yield ("mlmon_label_coverage_ratio", min(labelled / rows, 1.0), {})
        yield from self._counters()
        yield ("mlmon_labels_window", m.count, {})
        if m.count:
            for q in QUANTILES:
                yield ("mlmon_label_delay_seconds", m.hist.quantile(q), {"quantile": str(q)})
            yield from self._quality(m)

    def segment_samples(self, now: float) -> Iterator[Triple]:
        """A segment's label and quality metrics: its joined labels (cumulative and in the
        window), their delays, and its quality. A segment part stores no prediction: the
        monitor's join hands it the pairs of its predictions (:meth:`add_joined`)."""
        m = self._labels.merged(now)
        yield ("mlmon_labels_total", self._totals.count, {})
        yield from self._counters()
        yield ("mlmon_labels_window", m.count, {})
        if m.count:
            for q in QUANTILES:
                yield ("mlmon_label_delay_seconds", m.hist.quantile(q), {"quantile": str(q)})
            yield from self._quality(m)

    def _counters(self) -> Iterator[Triple]:
        """The cumulative counters a backend sums over processes to rebuild fleet quality:
        the confusion matrix (classifiers) or the error sums (regression)."""
        totals = self._totals
        task = self.task
        cm = totals.confusion
        if cm is not None and isinstance(task, (BinaryClassification, MulticlassClassification)):
            names = task.class_names
            counts = cm.counts
            every = len(names) <= MAX_CONFUSION_CLASSES
            for i, actual in enumerate(names):
                row = counts[i].tolist()
                for j, predicted in enumerate(names):
                    if every or row[j]:
                        yield (
                            "mlmon_confusion_total",
                            row[j],
                            {"actual": actual, "predicted": predicted},
                        )
        errors = totals.errors
        if errors is not None:
            yield ("mlmon_regression_labels_total", errors.count, {})
            yield ("mlmon_regression_abs_error_sum_total", errors.sum_abs, {})
            yield ("mlmon_regression_squared_error_sum_total", errors.sum_sq, {})
            yield ("mlmon_regression_error_sum_total", errors.sum_error, {})

    def _quality(self, m: _LabelSlice) -> Iterator[Triple]:
        cm = m.confusion
        if cm is not None and isinstance(self.task, BinaryClassification):
            for name, v in zip(_QUALITY, (cm.precision(1), cm.recall(1), cm.f1(1)), strict=True):
                if v is not None:
                    yield (name, v, {})
        elif cm is not None and isinstance(self.task, MulticlassClassification):
            for name, per_class in zip(_QUALITY, cm.per_class(), strict=True):
                for cls, v in zip(self.task.class_names, per_class.tolist(), strict=True):
                    if not math.isnan(v):
                        yield (name, v, {"class": cls})
            for average, values in zip(_AVERAGES, (cm.macro(), cm.micro()), strict=True):
                for name, v in zip(_QUALITY, values, strict=True):
                    if v is not None:
                        yield (name, v, {"average": average})
        if cm is not None:
            acc = cm.accuracy()
            if acc is not None:
                yield ("mlmon_accuracy", acc, {})
            names = self.task.class_names if isinstance(self.task, (BinaryClassification, MulticlassClassification)) else ()
            support = cm.counts.sum(axis=1).tolist()
            every = len(names) <= MAX_CONFUSION_CLASSES
            for name, n in zip(names, support, strict=True):
                if every or n:
                    yield ("mlmon_label_support", n, {"class": name})
        yield from self._scored(m)
        yield from self._ranked(m)
        errors = m.errors
        if errors is not None:
            for name, v in (
                ("mlmon_mae", errors.mae()),
                ("mlmon_rmse", errors.rmse()),
                ("mlmon_mean_error", errors.mean_error()),
            ):
                if v is not None:
                    yield (name, v, {})

    def _scored(self, m: _LabelSlice) -> Iterator[Triple]:
        """Binary: the realized metrics of scores (docs/quality.md, "Scores and labels")."""
        if m.scored is None or m.sums is None or m.calib is None:
            return
        n, outside, log_loss, brier = m.sums.tolist()
        if not n:
            return
        auc, bound = binned_auc(m.scored.pos, m.scored.neg)
        if auc is not None:
            yield ("mlmon_roc_auc", auc, {})
            yield ("mlmon_roc_auc_error_bound", bound, {})
        ap = binned_average_precision(m.scored.pos, m.scored.neg)
        if ap is not None:
            yield ("mlmon_pr_auc", ap, {})
        if outside:
            return  # scores that are not probabilities: no log loss, Brier score or calibration
        yield ("mlmon_log_loss", log_loss / n, {})
        yield ("mlmon_brier_score", brier / n, {})
        count, sum_p, sum_y = m.calib.tolist()
        ece = 0.0
        for b in range(CALIBRATION_BINS):
            c = count[b]
            if c:
                label = {"bin": f"{b:02d}"}
                yield ("mlmon_calibration_rows", c, label)
                yield ("mlmon_calibration_predicted", sum_p[b] / c, label)
                yield ("mlmon_calibration_observed", sum_y[b] / c, label)
                ece += abs(sum_p[b] - sum_y[b])
        yield ("mlmon_expected_calibration_error", ece / n, {})

    def _ranked(self, m: _LabelSlice) -> Iterator[Triple]:
        """Multiclass: top-k accuracy and one-vs-rest ROC and PR AUC per class, with macro
        averages, over the window's labelled probability rows (docs/quality.md)."""
        r = m.ranked
        if r is None or not r.rows or not isinstance(self.task, MulticlassClassification):
            return
        for k, v in zip(self._ks, r.top_k(self._ks), strict=True):
            if v is not None:
                yield ("mlmon_top_k_accuracy", v, {"k": str(k)})
        if not r.has_histograms:
            return  # top classes only (above max_row_bytes): no AUCs
        auc, bound, ap = r.per_class()
        # Per class only where defined: classes the window's labels never name have no series.
        for name, a, e, p in zip(self.task.class_names, auc.tolist(), bound.tolist(), ap.tolist(), strict=True):
            label = {"class": name}
            if not math.isnan(a):
                yield ("mlmon_roc_auc", a, label)
                yield ("mlmon_roc_auc_error_bound", e, label)
            if not math.isnan(p):
                yield ("mlmon_pr_auc", p, label)
        macro = {"average": "macro"}
        has = ~np.isnan(auc)
        if has.any():
            # |mean(a) - mean(b)| <= mean|a - b|: the macro bound is the mean of the bounds.
            yield ("mlmon_roc_auc", float(auc[has].mean()), macro)
            yield ("mlmon_roc_auc_error_bound", float(bound[has].mean()), macro)
        has_ap = ~np.isnan(ap)
        if has_ap.any():
            yield ("mlmon_pr_auc", float(ap[has_ap].mean()), macro)

    def reset(self) -> None:
        """Forget everything: windows, stored predictions and counters (in a forked child)."""
        self.store.reset()
        self._labels.reset()
        self._totals.reset()
        self.unjoinable = 0
