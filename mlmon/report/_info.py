"""What a report is about and what went into it: :class:`ReportInfo`, :class:`ReportError`, limits."""

from __future__ import annotations

import attrs

from mlmon.report._format import duration, fmt_bytes
from mlmon.snapshot import FORMAT_VERSION

__all__ = ["FORMAT_VERSION", "MAX_POINTS", "ReportError", "ReportInfo"]

MAX_POINTS = 600
"""Default bound on the points drawn per series; longer series are downsampled (min/max kept)."""

class ReportError(ValueError):
    """The log holds nothing to report on: empty, only malformed or newer lines, unknown model.

    >>> from mlmon.report import render
    >>> try:
    ...     render(['{"mlmon": 2, "model": "m"}'])
    ... except ReportError as exc:
    ...     print(exc)
    the log was written by a newer mlmon (format version 2); this mlmon reads format version 1: upgrade mlmon to report on it
    """


@attrs.frozen(kw_only=True, slots=True)
class ReportInfo:
    """What :func:`write` produced, and what it skipped on the way.

    Attributes:
        output: the HTML file written (None from :func:`build`).
        size: bytes of HTML.
        model: the model the report is about.
        models: every model in the log, in order of first appearance.
        instances: the instances shown.
        snapshots: lines (snapshots) used.
        start, end: Unix time of the first and last snapshot used.
        malformed: lines skipped because they were not valid mlmon lines (bad JSON, truncated,
            missing or bad fields).
        newer: lines skipped because a newer mlmon wrote them (``"mlmon"`` above
            :data:`FORMAT_VERSION`).
        newer_versions: the format versions of those lines.
        duplicates: lines skipped because the very same line came before (a file read twice).
        sections: ids of the sections with data (``fleet``, ``service``, ``resources``, ``outputs``,
            ``quality``, ``features``, ``drift``, ``outcomes``, ``alerts``, and ``segments`` when
            the log holds segment-labelled samples).
        omitted: ids of the sections left out for lack of data (``segments`` never is: without
            segment samples there is no such section).
        notes: the warnings shown at the top of the page.
        fleet: the instances that are a fleet (their snapshots were merged by a fleet's leader,
            ``Monitor(fleet=Fleet(...))``), shown first, in the ``fleet`` section.
    """

    output: str | None
    size: int
    model: str
    models: tuple[str, ...]
    instances: tuple[str, ...]
    snapshots: int
    start: float
    end: float
    malformed: int
    newer: int
    newer_versions: tuple[int, ...]
    duplicates: int
    sections: tuple[str, ...]
    omitted: tuple[str, ...]
    notes: tuple[str, ...]
    fleet: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the command line.

        >>> info = ReportInfo(output="r.html", size=2048, model="fraud", models=("fraud",),
        ...     instances=("h:1",), snapshots=10, start=0.0, end=20.0, malformed=2, newer=0,
        ...     newer_versions=(), duplicates=0, sections=("service",), omitted=(), notes=())
        >>> info.summary()
        'wrote r.html (2 KiB): model fraud, 10 snapshots from 1 instance over 20 s; skipped 2 malformed lines'
        """
        where = f"wrote {self.output}" if self.output else "rendered"
        n = len(self.instances)
        text = (
            f"{where} ({fmt_bytes(self.size)}): model {self.model}, {self.snapshots} snapshot"
            f"{'' if self.snapshots == 1 else 's'} from {n} instance{'' if n == 1 else 's'} over "
            f"{duration(self.end - self.start)}"
        )
        skipped = []
        if self.malformed:
            skipped.append(f"{self.malformed} malformed line{'' if self.malformed == 1 else 's'}")
        if self.newer:
            versions = ", ".join(str(v) for v in self.newer_versions)
            skipped.append(f"{self.newer} line{'' if self.newer == 1 else 's'} of format version {versions}")
        if self.duplicates:
            skipped.append(f"{self.duplicates} duplicate snapshot{'' if self.duplicates == 1 else 's'}")
        return text + (f"; skipped {', '.join(skipped)}" if skipped else "")

