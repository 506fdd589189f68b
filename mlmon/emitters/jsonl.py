"""One JSON object per flush, to a file (size-bounded, rotated) or a stream."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TextIO

import attrs

from mlmon.emitters._net import _check_seconds
from mlmon.emitters._stream import StreamWriter
from mlmon.naming import identity_problem, series_problem
from mlmon.snapshot import Snapshot

__all__ = ["JsonlEmitter"]


class JsonlEmitter:
    """Appends each snapshot as one JSON line (:meth:`Snapshot.to_json`).

    Args:
        target: a file path (opened for append) or a text stream.
        max_bytes: with a path, rotate when the file would grow past this size.
        backups: rotated files kept (``path.1`` newest .. ``path.N``); older ones are deleted.
        timeout: with a stream that is a pipe or a socket, the longest one emit may wait for
            the reader, seconds; a line that could not be written in time is dropped and
            counted (``mlmon_dropped_total{buffer=name}``), one that was partly written is
            finished first at the next emit, so readers only ever see whole lines.
        name: the ``emitter`` label.

    A series whose name or label values cannot be encoded (an unpaired surrogate, NUL, more
    than 1024 characters) is left out of the line and counted in
    ``mlmon_dropped_total{buffer="<name>_series"}``.

    The file can never grow past ``max_bytes`` plus one line, and disk use stays under
    ``(backups + 1) * max_bytes``. Each line is flushed when written, so a reader (``tail -f``,
    ``python -m mlmon report``) always sees whole lines.

    >>> import io, json, mlmon
    >>> out = io.StringIO()
    >>> mon = mlmon.Monitor("doc_jsonl", emitters=[JsonlEmitter(out)])
    >>> _ = mon.flush()
    >>> json.loads(out.getvalue())["model"]
    'doc_jsonl'
    >>> mon.close()
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | TextIO,
        max_bytes: int = 10 * 2**20,
        backups: int = 3,
        name: str = "jsonl",
        *,
        timeout: float = 1.0,
    ) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ValueError(f"max_bytes must be an int >= 1024, got {max_bytes!r}")
        if not isinstance(backups, int) or backups < 0:
            raise ValueError(f"backups must be an int >= 0, got {backups!r}")
        _check_seconds(timeout=timeout)
        self.timeout = float(timeout)
        self._writer = StreamWriter()
        self._bad_series = 0
        self.name = name
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._stream: TextIO | None
        if isinstance(target, (str, os.PathLike)):
            self.path: Path | None = Path(target)
            self._stream = None
        elif hasattr(target, "write"):
            self.path = None
            self._stream = target
        else:
            raise TypeError(f"target must be a path or a text stream, got {target!r}")
        self._file: TextIO | None = None
        self._size = 0

    def _open(self) -> TextIO:
        assert self.path is not None
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        assert self.path is not None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            dst = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, dst)

    def _clean(self, snapshot: Snapshot) -> Snapshot:
        if identity_problem(snapshot.model, snapshot.version, snapshot.instance):
            self._bad_series += len(snapshot.samples)
            raise ValueError("snapshot identity cannot be encoded; every series skipped")
        samples = snapshot.samples
        good = [s for s in samples if not series_problem(s.name, s.labels, s.value)]
        if len(good) == len(samples):
            return snapshot
        self._bad_series += len(samples) - len(good)
        return attrs.evolve(snapshot, samples=tuple(good))

    def emit(self, snapshot: Snapshot) -> None:
        """Append one line; raises (after counting) when the stream's reader is too slow."""
        with self._lock:
            line = self._clean(snapshot).to_json() + "\n"
            if self._stream is not None:
                self._writer.write(self._stream, line, self.timeout)
                return
            f = self._open()
            n = len(line.encode("utf-8"))
            if self._size and self._size + n > self.max_bytes:
                self._rotate()
                f = self._open()
            f.write(line)
            f.flush()
            self._size += n

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Lines the stream's reader did not take in time (``mlmon_dropped_total{buffer=name}``)
        and series left out (``buffer="<name>_series"``)."""
        return [
            ("mlmon_dropped_total", float(self._writer.dropped), {"buffer": self.name}),
            ("mlmon_dropped_total", float(self._bad_series), {"buffer": f"{self.name}_series"}),
        ]

    def close(self) -> None:
        """Close the file (a stream is the caller's and stays open)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._writer.close()

    def after_fork(self) -> None:
        """A forked child reopens the file itself (appends stay whole lines)."""
        self._file = None
        self._lock = threading.Lock()
        self._writer = StreamWriter()  # a partial line pending is the parent's to finish
        self._bad_series = 0
