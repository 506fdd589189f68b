"""Files written whole or not at all."""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> int:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a reader (Prometheus, a dashboard import, another process) never sees half a file.

    Returns the number of bytes written. The temporary file is removed if anything fails.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> atomic_write(p, "{}")
    2
    >>> p.read_text()
    '{}'
    """
    target = os.fspath(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(raw)
