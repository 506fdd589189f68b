"""The monitor component: feature inputs into the rolling window, and the emitted samples."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from mlmon._component import CallBatch, Triple
from mlmon._handover import handover
from mlmon.drift import (
    DriftConfig,
    DriftScores,
    decide,
    drift_scores,
    drift_scores_ordered,
    psi,
)
from mlmon.features.accumulator import FeatureAccumulator
from mlmon.features.infer import infer_schema
from mlmon.features.inputs import _add, _Builder, _scores, rows_hint
from mlmon.features.schema import F64, I64, FeatureSchema
from mlmon.reference import Reference
from mlmon.window import RollingWindow

__all__ = ["FeatureComponent"]

log = logging.getLogger("mlmon")

LOG_INTERVAL = 60.0
"""Seconds between two logged ingest failures (every failure is counted)."""

MAX_BIN_SERIES = 50
"""Most cells per feature (or output) for which ``mlmon_feature_bin_total`` and
``mlmon_feature_reference_ratio`` are emitted: a numeric feature has its reference bins plus
underflow and overflow (12 cells with the default 10 bins), a categorical one its kept
categories plus "other". A feature with more cells emits no bin series (its window drift
scores are unaffected): profile the reference with ``bins <= 48`` to rebuild its PSI
fleet-wide."""


_FEATURE_BINS = "mlmon_feature_bin_total"
_FEATURE_RATIO = "mlmon_feature_reference_ratio"


def _bin_label(i: int) -> str:
    return f"{i:02d}"


_F64 = np.dtype(np.float64)


@attrs.frozen
class BinGroup:
    """One feature's (or the outputs') cumulative cell counts beside the reference's cells:
    the ``counter`` series (``mlmon_feature_bin_total``) and the ``ratio`` series (the
    reference's proportion in the same cell), labelled ``bin`` (and ``feature``)."""

    counter: str
    ratio: str
    ref: I64  # the reference's cell counts (their sum is positive)
    counts: list[int]  # the window's cumulative counts on the same cells
    feature: str | None

    def labels(self) -> list[dict[str, str]]:
        """Each cell's labels, in order."""
        if self.feature is None:
            return [{"bin": _bin_label(i)} for i in range(len(self.counts))]
        return [{"bin": _bin_label(i), "feature": self.feature} for i in range(len(self.counts))]

    def ratios(self) -> list[float]:
        """The reference's proportion in each cell (``ref / ref.sum()``, as Python floats)."""
        total = float(self.ref.sum())
        return [r / total for r in self.ref.tolist()]

    def triples(self) -> list[Triple]:
        """The samples: for each cell, the counter then the ratio."""
        out: list[Triple] = []
        for labels, c, r in zip(self.labels(), self.counts, self.ratios(), strict=True):
            out.append((self.counter, float(c), labels))
            out.append((self.ratio, r, dict(labels)))
        return out

class _Empty:
    def merge(self, other: object, /) -> None:
        pass

    def reset(self) -> None:
        pass


class FeatureComponent:
    """Feature quality and drift over the rolling window, as a monitor component.

    Args:
        features: a :class:`~mlmon.reference.Reference` (quality, out-of-range, drift and
            output drift), feature names (quality only: missing, mean, variance, min, max), or
            None: quality only, with names and kinds read off the first features ingested
            (:func:`infer_schema`) and fixed from then on. A reference's
            :class:`~mlmon.features.schema.FeatureSchema` may be given instead of the
            reference: parts of one monitor share it.
        categorical: names of categorical features when ``features`` is a list of names.
        window: seconds the window covers.
        slices: slices of the window.
        now: monitor clock at creation.
        drift: drift decision settings (:class:`~mlmon.drift.DriftConfig` defaults when None).

    ``ingest`` never raises: unreadable calls count in :attr:`invalid_rows` (and as rows with
    every feature missing), unknown dict keys in :attr:`unknown_keys`, and a failure of mlmon's
    own code in :attr:`errors`.

    >>> import numpy as np
    >>> from mlmon._component import CallBatch
    >>> rng = np.random.default_rng(1)
    >>> ref = Reference.from_data(rng.normal(size=(5000, 2)), feature_names=["a", "b"])
    >>> comp = FeatureComponent(ref, window=60.0, slices=6, now=0.0)
    >>> X = rng.normal(size=(1000, 2)); X[:, 1] += 1.0   # feature b moved by 1 sigma
    >>> comp.ingest(CallBatch(now=1.0, wall=0.0, features=[X], rows=[1000]))
    >>> out = {(name, labels.get("feature")): v for name, v, labels in comp.samples(2.0)}
    >>> out[("mlmon_feature_drift_status", "a")], out[("mlmon_feature_drift_status", "b")]
    (0.0, 2.0)
    >>> out[("mlmon_feature_missing_ratio", "a")]
    0.0
    >>> comp.ingest(CallBatch(now=1.0, wall=0.0, features=[np.ones((3, 5))], rows=[3]))
    >>> comp.invalid_rows, out[("mlmon_feature_invalid_rows_total", None)] + 3
    (3, 3.0)
    """

    def __init__(
        self,
        features: Reference | FeatureSchema | Sequence[str] | None,
        *,
        categorical: Iterable[str] = (),
        window: float = 300.0,
        slices: int = 10,
        now: float = 0.0,
        drift: DriftConfig | None = None,
    ) -> None:
        schema: FeatureSchema | None
        if features is None:
            schema = None  # read off the first features ingested (see infer_schema)
        elif isinstance(features, Reference):
            schema = FeatureSchema(reference=features)
        elif isinstance(features, FeatureSchema):
            schema = features  # shared: a schema is never changed once made
        elif isinstance(features, (str, bytes)) or not isinstance(features, Iterable):
            raise TypeError(
                f"features must be a Reference, a sequence of names or None, got {features!r}"
            )
        else:
            schema = FeatureSchema(list(features), categorical=categorical)
        if drift is None:
            drift = DriftConfig()
        elif not isinstance(drift, DriftConfig):
            raise TypeError(f"drift must be a DriftConfig or None, got {drift!r}")
        RollingWindow(_Empty, window=window, slices=slices, now=now)  # validates window and slices
        self.drift = drift
        self._window_args = (float(window), slices, float(now))
        self._lock = threading.Lock()
        self.schema: FeatureSchema | None = None
        self._window: RollingWindow[FeatureAccumulator] | None = None
        if schema is not None:
            self._configure(schema)
        self.invalid_rows = 0
        """Rows of calls whose features could not be read (cumulative)."""
        self.unknown_keys = 0
        """Values given under names that are not features (cumulative)."""
        self.errors = 0
        """Failures of mlmon's own code while ingesting (cumulative)."""
        self._seen = False
        self._logged = -math.inf

    def _configure(self, schema: FeatureSchema) -> None:
        window, slices, now = self._window_args
        self.schema = schema
        self._window = RollingWindow(
            lambda: FeatureAccumulator(schema), window=window, slices=slices, now=now
        )
        # Cumulative cell counts on the reference's cells since start: numeric histograms,
        # categorical cells, output histogram (the flat layouts of FeatureAccumulator).
        self._cells_total: tuple[I64, I64, I64] = (
            np.zeros(schema.hist_size, dtype=np.int64),
            np.zeros(schema.cat_cells, dtype=np.int64),
            np.zeros(0 if schema.output_edges is None else len(schema.output_edges) + 1, np.int64),
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The monitored features, in order (empty until inferred, without a reference)."""
        return () if self.schema is None else self.schema.names

    def ingest(self, batch: CallBatch) -> None:
        """Add the features (and outputs, for output drift) of drained calls. Never raises."""
        try:
            self._ingest(batch)
        except Exception:
            self.errors += 1
            now = time.monotonic()
            if now - self._logged >= LOG_INTERVAL:
                self._logged = now
                log.warning(
                    "mlmon: feature ingest failed (%d failures so far; logged at most once "
                    "a minute)",
                    self.errors,
                    exc_info=True,
                )

    def _ingest(self, batch: CallBatch) -> None:
        rows = list(batch.rows)
        feats_list = list(batch.features)

        def hint(i: int) -> int:
            return rows_hint(rows[i]) if i < len(rows) else 1

        if any(f is not None for f in feats_list):
            self._seen = True
        if self.schema is None:
            for feats in feats_list:
                inferred = infer_schema(feats) if feats is not None else None
                if inferred is not None:
                    with self._lock:
                        self._configure(inferred)
                    break
        schema = self.schema
        if schema is None:
            # Nothing readable yet to name the features by: the calls with features are invalid.
            self.invalid_rows += sum(hint(i) for i, f in enumerate(feats_list) if f is not None)
            return
        window = self._window
        assert window is not None
        b = _Builder(schema)
        any_features = False
        # Single rows of an all-numeric schema, as 1-D numeric arrays, are stacked into one
        # block and reduced together: a Python-level conversion per row would cost more than
        # the predict call that produced it.
        n_feat = len(schema.names)
        stack_rows = schema.n_categorical == 0
        singles: list[npt.NDArray[Any]] = []
        given = [f for f in feats_list if f is not None]
        if stack_rows and given and all(
            type(f) is np.ndarray and f.shape == (n_feat,) and f.dtype is _F64 for f in given
        ):
            # The common case, every call one float64 row: no per-row checks below.
            singles, feats_list, any_features = given, [], True
        for i, feats in enumerate(feats_list):
            if feats is None:
                continue
            any_features = True
            if (
                stack_rows
                and type(feats) is np.ndarray
                and feats.ndim == 1
                and feats.shape[0] == n_feat
                and feats.dtype.kind in "biuf"
            ):
                singles.append(feats)
                continue
            _add(b, feats, max(hint(i), 1))  # all or nothing: a bad call counts its rows as invalid
        if singles:
            # One C-level copy: np.vstack would make each row 2-D in Python first.
            b.block(np.concatenate(singles).reshape(len(singles), n_feat))
        scores: list[F64] = []
        if schema.output_edges is not None:
            for out in batch.outputs:
                try:
                    s = _scores(out)
                except Exception:
                    s = None
                if s is not None and s.size:
                    scores.append(s)
        if not any_features and not scores:
            return
        parts = b.parts()
        handover()
        with self._lock:
            acc = window.current(batch.now)
            # The cumulative cells grow by what this batch adds to the slice's cells.
            before = (acc.hist.copy(), acc.cat_cells.copy(), acc.out_hist.copy())
            for x, c in parts:
                handover()
                acc.update_batch(x)
                if schema.n_categorical:
                    acc.update_categorical(c)
            acc.update_invalid(b.invalid)
            if scores:
                acc.update_outputs(np.concatenate(scores))
            for total, old, new in zip(
                self._cells_total, before, (acc.hist, acc.cat_cells, acc.out_hist), strict=True
            ):
                total += new - old
            self.invalid_rows += b.invalid
            self.unknown_keys += b.unknown

    def merged(self, now: float) -> FeatureAccumulator | None:
        """The window's accumulator at ``now`` (a fresh merge of every slice); None before
        the features are known."""
        with self._lock:
            return None if self._window is None else self._window.merged(now)

    def samples(self, now: float, bins: bool = True) -> list[Triple]:
        """``mlmon_feature_*`` and ``mlmon_output_drift_psi`` samples for the window at ``now``
        (``bins=False``: without the cumulative bin counters, as a segment's).

        A feature without a row in the window has no sample at all; statistics of values
        (mean, variance, min, max, ratios over values) need at least one valid value; drift
        scores and status need ``drift.min_rows`` valid values.
        """
        out: list[Triple] = []
        if self._seen or self.errors:
            # Cumulative counters, once features were ever given (zeros included).
            out.append(("mlmon_feature_invalid_rows_total", float(self.invalid_rows), {}))
            out.append(("mlmon_feature_unknown_keys_total", float(self.unknown_keys), {}))
            out.append(("mlmon_feature_errors_total", float(self.errors), {}))
        acc = self.merged(now)
        schema = self.schema
        if acc is None or schema is None:
            return out
        cfg = self.drift
        drift_of: list[tuple[str, DriftScores]] = []
        numeric_drift: list[tuple[str, I64, I64]] = []
        variance = acc.variance()

        def emit(name: str, value: float, feature: str) -> None:
            if math.isfinite(value):
                out.append((name, float(value), {"feature": feature}))

        for j, name in enumerate(schema.numeric_names):
            handover()
            n = int(acc.count[j])
            rows = n + int(acc.missing[j])
            if rows == 0:
                continue
            emit("mlmon_feature_missing_ratio", acc.missing[j] / rows, name)
            if n == 0:
                continue
            emit("mlmon_feature_mean", acc.mean[j], name)
            emit("mlmon_feature_variance", variance[j], name)
            emit("mlmon_feature_min", acc.min[j], name)
            emit("mlmon_feature_max", acc.max[j], name)
            if schema.edges[j] is None:
                continue
            cells = acc.cells(j)
            emit("mlmon_feature_out_of_range_ratio", (cells[0] + cells[-1]) / n, name)
            if n >= cfg.min_rows:
                ref_cells = schema.num_ref_cells[j]
                assert ref_cells is not None
                numeric_drift.append((name, ref_cells, cells))
        # Every numeric feature's scores at once (vectorised over features).
        scores = drift_scores_ordered(
            [r for _, r, _ in numeric_drift], [w for _, _, w in numeric_drift], cfg.epsilon
        )
        drift_of.extend(zip([name for name, _, _ in numeric_drift], scores, strict=True))

        for j, name in enumerate(schema.categorical_names):
            n = int(acc.cat_count[j])
            rows = n + int(acc.cat_missing[j])
            if rows == 0:
                continue
            emit("mlmon_feature_missing_ratio", acc.cat_missing[j] / rows, name)
            ref = schema.cat_ref[j]
            if n == 0 or ref is None:
                continue
            emit("mlmon_feature_unseen_ratio", acc.cat_unseen[j] / n, name)
            if n >= cfg.min_rows:
                drift_of.append(
                    (
                        name,
                        drift_scores(
                            ref.cells(), acc.category_cells(j), ordered=False, epsilon=cfg.epsilon
                        ),
                    )
                )

        handover()
        statuses = decide([s for _, s in drift_of], cfg)
        for (name, s), status in zip(drift_of, statuses, strict=True):
            emit("mlmon_feature_drift_psi", s.psi, name)
            emit("mlmon_feature_drift_js", s.js, name)
            emit("mlmon_feature_drift_ks", s.ks, name)
            emit("mlmon_feature_drift_wasserstein", s.wasserstein, name)
            emit("mlmon_feature_drift_pvalue", s.pvalue, name)
            if status is not None:
                emit("mlmon_feature_drift_status", float(status), name)

        if schema.output_ref is not None and acc.out_count >= cfg.min_rows:
            value = psi(schema.output_ref.cells(), acc.out_hist, cfg.epsilon)
            if math.isfinite(value):
                out.append(("mlmon_output_drift_psi", value, {}))
        if bins:  # last: a reader of the groups themselves (evaluate) keeps the same order
            out.extend(self._bin_samples())
        return out

    def bin_groups(self) -> list[BinGroup]:
        """The cumulative cell counts and the reference's cells they are compared with, one
        :class:`BinGroup` per feature (and for the outputs) with at most
        :data:`MAX_BIN_SERIES` cells and a count: summed over processes, they rebuild the
        fleet's PSI exactly (see docs/metrics.md). A feature's group appears with its first
        valid value. The samples are :meth:`BinGroup.triples` of each, in order."""
        schema = self.schema
        if not self._seen or schema is None:
            return []
        out: list[BinGroup] = []
        with self._lock:
            hist, cat, outs = (t.tolist() for t in self._cells_total)

        def add(counter: str, ratio: str, ref: I64, counts: list[int], feature: str | None) -> None:
            if len(counts) <= MAX_BIN_SERIES and any(counts):
                out.append(BinGroup(counter, ratio, ref, counts, feature))

        o = schema.hist_offsets
        for j, name in enumerate(schema.numeric_names):
            handover()
            ref_cells = schema.num_ref_cells[j]
            if ref_cells is not None and ref_cells.sum() > 0:
                add(_FEATURE_BINS, _FEATURE_RATIO, ref_cells, hist[o[j] : o[j + 1]], name)
        co = schema.cat_offsets
        for j, name in enumerate(schema.categorical_names):
            prof = schema.cat_ref[j]
            if prof is not None:
                cells = prof.cells()
                if cells.sum() > 0:
                    add(_FEATURE_BINS, _FEATURE_RATIO, cells, cat[co[j] : co[j + 1]], name)
        if schema.output_ref is not None:
            add("mlmon_output_reference_bin_total", "mlmon_output_reference_ratio", schema.output_ref.cells(), outs, None)
        return out

    def _bin_samples(self) -> list[Triple]:
        """The samples of :meth:`bin_groups`."""
        out: list[Triple] = []
        for group in self.bin_groups():
            out.extend(group.triples())
        return out

    def reset(self) -> None:
        """Forget the window (after a fork); cumulative counters restart too."""
        with self._lock:
            if self._window is not None:
                self._window.reset()
                for total in self._cells_total:
                    total[:] = 0
            self.invalid_rows = 0
            self.unknown_keys = 0
            self.errors = 0
            self._seen = False

