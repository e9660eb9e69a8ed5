"""Reading a file's bytes safely: regular files only (never a directory, FIFO or device), within
the size cap, and every way reading can fail turned into a DocumentRefused with the reason."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import DocumentRefused
from . import limits


def read_bytes(path: Path, max_bytes: int = limits.MAX_FILE_BYTES) -> bytes:
    """The file's bytes. O_NONBLOCK so a FIFO put in a file's place cannot hang the reader; the
    type and size are checked on the opened descriptor, so a swap after a check changes nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DocumentRefused(_why(e)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DocumentRefused("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise DocumentRefused("is not a regular file (a pipe, socket or device); it was not read")
        if info.st_size > max_bytes:
            raise DocumentRefused(
                f"is {limits.size_text(info.st_size)}; cove indexes files up to {limits.size_text(max_bytes)}"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise DocumentRefused(_why(e)) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while being read
        raise DocumentRefused(f"is larger than {limits.size_text(max_bytes)}; cove indexes files up to that")
    return data


def _why(e: OSError) -> str:
    reasons = {
        errno.EACCES: "cannot be read: permission denied; check the file's permissions",
        errno.EPERM: "cannot be read: permission denied; check the file's permissions",
        errno.ENOENT: "no longer exists",
        errno.ELOOP: "is a symbolic link loop",
        errno.EISDIR: "is a directory, not a file",
        errno.ENXIO: "is not a regular file (a pipe, socket or device); it was not read",
    }
    return reasons.get(e.errno or 0, f"cannot be read: {e.strerror or e}")
