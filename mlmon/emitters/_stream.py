"""Writing to a caller's stream without ever blocking past a deadline.

A ``TextIO`` that is a pipe or a socket (``python app.py | slow-consumer``, a log shipper that
stopped reading) blocks a plain ``write`` for as long as the reader sleeps. :class:`StreamWriter`
writes such streams through their file descriptor instead: it waits for room with ``select``
up to the deadline and writes only what fits without blocking (at most ``PIPE_BUF`` bytes per
write on a pipe, ``MSG_DONTWAIT`` on a socket). The file's open flags are never changed: the
descriptor may be shared with other processes (a shell's stdout).

Output stays whole lines: text that was only partly written is kept (``pending``, at most one
emit's text) and completed first at the next write, so the reader never sees a line cut and
glued to another; text that could not start is dropped and counted. Other streams (regular
files, terminals, ``io.StringIO``) are written as before, with ``write`` and ``flush``.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import time
from typing import TextIO

__all__ = ["StreamWriter"]

_PIPE_CHUNK = getattr(select, "PIPE_BUF", 512)


class StreamWriter:
    """Text to one stream at a time, bounded by a deadline on pipes and sockets.

    >>> import io
    >>> w = StreamWriter()
    >>> out = io.StringIO()
    >>> w.write(out, "one line\\n", 1.0)
    >>> out.getvalue(), w.dropped
    ('one line\\n', 0)
    """

    def __init__(self) -> None:
        self.dropped = 0  # writes (lines or tables) dropped because the reader did not keep up
        self._pending = b""
        self._pending_fd = -1
        self._sock: socket.socket | None = None
        self._sock_fd = -1

    @staticmethod
    def _raw_fd(stream: TextIO) -> int | None:
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError):
            return None
        return fd if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None

    def _socket_for(self, fd: int) -> socket.socket | None:
        if self._sock_fd != fd:
            self.close()
            try:
                self._sock = socket.socket(fileno=os.dup(fd))
            except OSError:
                return None
            self._sock_fd = fd
        return self._sock

    def _write_some(self, fd: int, data: memoryview, deadline: float) -> int:
        """Bytes of ``data`` written before ``deadline`` without blocking."""
        is_sock = stat.S_ISSOCK(os.fstat(fd).st_mode)
        sock = self._socket_for(fd) if is_sock else None
        pos = 0
        while pos < len(data):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                break
            try:
                if sock is not None:
                    pos += sock.send(data[pos : pos + 65536], socket.MSG_DONTWAIT)
                else:
                    # A pipe that select() calls writable takes PIPE_BUF bytes without blocking.
                    pos += os.write(fd, data[pos : pos + _PIPE_CHUNK])
            except (BlockingIOError, InterruptedError):
                continue
        return pos

    def write(self, stream: TextIO, text: str, timeout: float) -> None:
        """Write ``text``; raise TimeoutError (after counting) when the reader is too slow."""
        fd = self._raw_fd(stream)
        if fd is None:
            try:
                stream.write(text)
            except UnicodeEncodeError:
                enc = getattr(stream, "encoding", None) or "utf-8"
                stream.write(text.encode(enc, "backslashreplace").decode(enc))
            stream.flush()
            return
        deadline = time.monotonic() + timeout
        if self._pending and self._pending_fd == fd:
            done = self._write_some(fd, memoryview(self._pending), deadline)
            self._pending = self._pending[done:]
            if self._pending:
                self.dropped += 1
                raise TimeoutError(
                    f"stream not read for {timeout:g}s: {len(self._pending)} bytes of an earlier "
                    "write still pending; this one dropped"
                )
        enc = getattr(stream, "encoding", None) or "utf-8"
        data = text.encode(enc, "backslashreplace")
        done = self._write_some(fd, memoryview(data), deadline)
        if done == len(data):
            return
        if done == 0:
            self.dropped += 1
            raise TimeoutError(f"stream not read for {timeout:g}s: write dropped")
        self._pending, self._pending_fd = data[done:], fd
        raise TimeoutError(
            f"stream not read for {timeout:g}s: {len(data) - done} bytes kept to finish the line"
        )

    def close(self) -> None:
        """Release the duplicated socket descriptor, if any (never the caller's stream)."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._sock_fd = None, -1
