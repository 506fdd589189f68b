"""The feature layout: order, kinds and the reference cells every window histogram uses."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from mlmon.reference import CategoricalProfile, NumericProfile, Reference, check_feature_names

__all__ = ["F64", "I64", "FeatureSchema", "Obj"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]


class FeatureSchema:
    """The feature layout every accumulator and conversion of one monitor shares.

    Args:
        names: feature names, in the column order users pass positional rows in.
        categorical: the names of the categorical features.
        reference: the reference; when given, ``names``/``categorical`` come from it and the
            window histograms use its bins.

    >>> s = FeatureSchema(["age", "city"], categorical=["city"])
    >>> s.numeric_names, s.categorical_names
    (('age',), ('city',))
    """

    __slots__ = (
        "bin_inner",
        "bin_inner_max",
        "bin_keys",
        "bin_of",
        "bin_pos",
        "bin_take",
        "binned",
        "cat_cells",
        "cat_lut",
        "cat_offsets",
        "cat_pos",
        "cat_ref",
        "categorical_names",
        "edges",
        "hist_offsets",
        "hist_size",
        "index",
        "names",
        "num_pos",
        "num_ref_cells",
        "numeric_names",
        "output_edges",
        "output_ref",
        "reference",
    )

    def __init__(
        self,
        names: Sequence[str] | None = None,
        categorical: Iterable[str] = (),
        reference: Reference | None = None,
    ) -> None:
        self.reference = reference
        if reference is not None:
            names = reference.feature_names
            categorical = reference.categorical
        if names is None:
            raise ValueError("FeatureSchema needs feature names or a reference")
        self.names: tuple[str, ...] = check_feature_names(names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        cat = set()
        for c in categorical:
            if c not in self.index:
                raise ValueError(
                    f"categorical: {c!r} is not a feature name (names: {list(self.names)})"
                )
            cat.add(c)
        self.num_pos: npt.NDArray[np.intp] = np.array(
            [i for i, n in enumerate(self.names) if n not in cat], dtype=np.intp
        )
        self.cat_pos: npt.NDArray[np.intp] = np.array(
            [i for i, n in enumerate(self.names) if n in cat], dtype=np.intp
        )
        self.numeric_names = tuple(self.names[i] for i in self.num_pos)
        self.categorical_names = tuple(self.names[i] for i in self.cat_pos)

        # Numeric histogram cells, flat: feature j owns hist[hist_offsets[j] : hist_offsets[j + 1]].
        self.edges: list[F64 | None] = []
        self.num_ref_cells: list[I64 | None] = []  # the reference's counts on the same cells
        profiles = {} if reference is None else {p.name: p for p in reference.features}
        sizes = []
        for name in self.numeric_names:
            prof = profiles.get(name)
            if isinstance(prof, NumericProfile) and prof.count > 0:
                e = np.array(prof.edges, dtype=np.float64)
                self.edges.append(e)
                self.num_ref_cells.append(prof.cells())
                sizes.append(len(e) + 1)  # m bins + underflow + overflow
            else:
                self.edges.append(None)
                self.num_ref_cells.append(None)
                sizes.append(0)
        self.hist_offsets: npt.NDArray[np.intp] = np.concatenate(
            ([0], np.cumsum(sizes, dtype=np.intp))
        ).astype(np.intp)
        self.hist_size = int(self.hist_offsets[-1])
        # The numeric features that have reference bins, and per-row constants of the binning.
        self.binned: npt.NDArray[np.intp] = np.array(
            [j for j, e in enumerate(self.edges) if e is not None], dtype=np.intp
        )
        # Per binned feature, the m + 3 bounds of its m + 2 cells as "first position >= bound"
        # in the sorted batch: cell c holds positions [bound c, bound c + 1). -inf sorts before
        # the first bound, +inf and NaN at or after the last, the maximum before next(e[m]).
        self.bin_keys: list[F64] = [
            np.concatenate(
                ([np.nextafter(-np.inf, 0.0)], e[:-1], [np.nextafter(e[-1], np.inf)], [np.inf])
            )
            for e in self.edges
            if e is not None
        ]
        self.bin_pos: npt.NDArray[np.intp] = np.concatenate(
            ([0], np.cumsum([len(k) for k in self.bin_keys], dtype=np.intp))
        ).astype(np.intp)
        # Each numeric feature's position among the binned ones (-1: not binned), and the
        # inner bounds as a column (finite values: none below the first, all below the last).
        self.bin_of: list[int] = [-1] * len(self.edges)
        for k, j in enumerate(self.binned.tolist()):
            self.bin_of[j] = k
        self.bin_inner: list[F64] = [np.ascontiguousarray(keys[1:-1, None]) for keys in self.bin_keys]
        self.bin_inner_max = max((len(k) for k in self.bin_inner), default=0)
        # np.diff of all bounds, less the differences across two features: the flat histogram.
        self.bin_take: npt.NDArray[np.intp] = np.concatenate(
            [np.arange(a, b - 1) for a, b in itertools.pairwise(self.bin_pos)] or [np.empty(0)]
        ).astype(np.intp)

        # Categorical cells, flat: the kept reference categories, then "other".
        self.cat_lut: list[dict[str, int] | None] = []
        self.cat_ref: list[CategoricalProfile | None] = []
        cat_sizes = []
        for name in self.categorical_names:
            prof = profiles.get(name)
            if isinstance(prof, CategoricalProfile):
                self.cat_lut.append({c: k for k, c in enumerate(prof.categories)})
                self.cat_ref.append(prof)
                cat_sizes.append(len(prof.categories) + 1)
            else:
                self.cat_lut.append(None)
                self.cat_ref.append(None)
                cat_sizes.append(0)
        self.cat_offsets: npt.NDArray[np.intp] = np.concatenate(
            ([0], np.cumsum(cat_sizes, dtype=np.intp))
        ).astype(np.intp)
        self.cat_cells = int(self.cat_offsets[-1])

        self.output_ref: NumericProfile | None = None
        self.output_edges: F64 | None = None
        if reference is not None and reference.outputs is not None and reference.outputs.count > 0:
            self.output_ref = reference.outputs
            self.output_edges = np.array(reference.outputs.edges, dtype=np.float64)

    @property
    def n_numeric(self) -> int:
        """Number of numeric features."""
        return len(self.num_pos)

    @property
    def n_categorical(self) -> int:
        """Number of categorical features."""
        return len(self.cat_pos)

