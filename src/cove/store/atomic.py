"""Atomic file writes: temp file in the same folder, fsync, rename, so a crash leaves the old version."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ..errors import DiskFull


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: on POSIX the directory entry needs its own fsync."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise disk_error(exc, path.name) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def disk_error(exc: OSError, what: str) -> Exception:
    """Turn 'no space left' into the one-line DiskFull error; leave other OS errors alone."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"disk full while writing {what}: free some space and try again")
    return exc
