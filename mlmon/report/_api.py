"""The report's Python API: :func:`build`, :func:`render` and :func:`write`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from mlmon._files import atomic_write
from mlmon.report._info import MAX_POINTS, ReportInfo
from mlmon.report._log import Source, lines_of, read
from mlmon.report._page import Page

__all__ = ["build", "build_text", "render", "write", "write_text"]


def check_max_points(max_points: int) -> None:
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 10:
        raise ValueError(f"max_points must be an int >= 10, got {max_points!r}")



def build_text(lines: Iterable[str], label: str, model: str | None, instance: str | Sequence[str] | None, max_points: int) -> tuple[str, ReportInfo]:
    check_max_points(max_points)
    log = read(lines, label, model, instance)
    page = Page(log, label, max_points)
    text = page.html()
    assert log.model is not None
    info = ReportInfo(
        output=None,
        size=len(text.encode("utf-8")),
        model=log.model,
        models=tuple(log.models),
        instances=tuple(page.instances()),
        snapshots=sum(log.instances.values()) + (sum(page.fleet.log.instances.values()) if page.fleet else 0),
        start=page.start,
        end=page.end,
        malformed=log.malformed,
        newer=sum(log.newer.values()),
        newer_versions=tuple(sorted(log.newer)),
        duplicates=log.duplicates,
        sections=tuple(page.sections),
        omitted=tuple(page.omitted),
        notes=tuple(page.notes),
        fleet=tuple(log.fleet),
    )
    return text, info


def build(
    source: Source,
    model: str | None = None,
    instance: str | Sequence[str] | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> tuple[str, ReportInfo]:
    """Like :func:`render`, and also return the :class:`ReportInfo` (with ``output=None``).

    >>> page, info = build(['{"mlmon": 1, "model": "m", "timestamp": 0, "samples": []}', "{oops"])
    >>> info.model, info.snapshots, info.malformed
    ('m', 1, 1)
    """
    lines, label = lines_of(source)
    return build_text(lines, label, model, instance, max_points)


def render(
    path_or_lines: Source,
    model: str | None = None,
    instance: str | Sequence[str] | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> str:
    """The HTML report of a JSON-lines log, as one self-contained string.

    Args:
        path_or_lines: the log written by :class:`~mlmon.emitters.JsonlEmitter`: a path, or an
            iterable of its lines.
        model: the model to report on; default the first model in the log (the page lists the
            others).
        instance: show only this instance (or these instances); default all, one series each.
        max_points: at most this many points per series in a chart (min and max per bucket
            are kept, so spikes stay visible).

    Returns:
        The HTML page.

    Raises:
        ReportError: the log is empty, holds only malformed lines or lines of a newer format
            version, or lacks the model or instance asked for.
        OSError: the file cannot be read.

    >>> line = ('{"mlmon": 1, "model": "fraud", "instance": "h:1", "timestamp": 1700000000,'
    ...         ' "samples": [["mlmon_calls_per_second", {}, 12.5]]}')
    >>> page = render([line, '{"truncated": '])
    >>> 'data-series="calls/s"' in page, "Skipped 1 malformed line" in page
    (True, True)
    """
    return build(path_or_lines, model, instance, max_points=max_points)[0]


def write(
    path: Source,
    out_path: str | os.PathLike[str],
    model: str | None = None,
    instance: str | Sequence[str] | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> ReportInfo:
    """Render the report of ``path`` (see :func:`render`) into the file ``out_path``.

    The file is replaced atomically: a reader never sees half a page, and a failed run leaves an
    earlier report in place.

    Returns:
        A :class:`ReportInfo`: what was drawn and what was skipped.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> info = write(['{"mlmon": 1, "model": "m", "timestamp": 0, "samples": []}'],
    ...              os.path.join(d, "r.html"))
    >>> info.model, os.path.getsize(info.output) == info.size
    ('m', True)
    """
    text, info = build(path, model, instance, max_points=max_points)
    return write_text(text, Path(out_path), info)


def write_text(text: str, out: Path, info: ReportInfo) -> ReportInfo:
    size = atomic_write(out, text)
    return attrs.evolve(info, output=str(out), size=size)

