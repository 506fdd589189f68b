"""``python -m mlmon report``: one self-contained HTML page from a :class:`JsonlEmitter` log.

The page is a dashboard of the whole log: summary cards, an alert timeline, service health,
resources, model outputs, quality, features, a drift heat map and outcomes (all from the overall
series), and small multiples per segment when the log has segment series. Charts are inline SVG
(:mod:`mlmon._svg`), styles are inline CSS, and there is no script at all: the file opens
offline, can be mailed or attached to an incident ticket, and a Content-Security-Policy forbids
it from loading anything.

Reading is forgiving and says what it skipped: malformed or truncated lines, lines from a newer
mlmon (``"mlmon": 2`` and up) and duplicate snapshots are skipped and counted, in the page and on
the command line. Only a log with nothing usable in it is an error (:class:`ReportError`).
See ``docs/report.md``.

>>> import io, mlmon
>>> from mlmon.emitters import JsonlEmitter
>>> log = io.StringIO()
>>> mon = mlmon.Monitor("doc_report", emitters=[JsonlEmitter(log)])
>>> mon.close()
>>> page = render(log.getvalue().splitlines())
>>> page.startswith("<!DOCTYPE html>"), "doc_report" in page
(True, True)
"""

from __future__ import annotations

from mlmon.report._api import build, render, write
from mlmon.report._cli import main
from mlmon.report._info import MAX_POINTS, ReportError, ReportInfo
from mlmon.snapshot import FORMAT_VERSION

__all__ = ["FORMAT_VERSION", "MAX_POINTS", "ReportError", "ReportInfo", "build", "main", "render", "write"]
