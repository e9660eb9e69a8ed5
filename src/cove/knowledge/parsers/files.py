"""Reading a file's bytes safely: regular files only (never a directory, FIFO or device), within
the size cap, and every way reading can fail turned into a DocumentRefused with the reason."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import DocumentRefused
from . import limits


def check_size(size: int, max_bytes: int | None = None) -> None:
    """Refuses a file of `size` bytes over the cap: a caller that already has its size (a sync
    that stat()ed it, an upload) can refuse it before hashing or storing a byte."""
    cap = limits.MAX_FILE_BYTES if max_bytes is None else max_bytes
    if size > cap:
        raise DocumentRefused(
            f"is {limits.size_text(size)}; cove indexes files up to {limits.size_text(cap)}"
        )


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes. O_NONBLOCK so a FIFO put in a file's place cannot hang the reader; the
    type and size are checked on the opened descriptor, so a swap after a check changes nothing."""
    cap = limits.MAX_FILE_BYTES if max_bytes is None else max_bytes
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
        check_size(info.st_size, cap)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise DocumentRefused(_why(e)) from None
    finally:
        os.close(fd)
    check_size(len(data), cap)  # it grew while being read
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
