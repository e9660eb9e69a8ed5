"""A real small disk for the tests: a 2 MiB tmpfs the test mounts, and a way to fill it up."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE = "2m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of 2 MiB at tmp_path/disk, unmounted however the test ends.

    Mounting needs root (or CAP_SYS_ADMIN); elsewhere the test is skipped and says why.
    """
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = mounted.stderr.strip() or f"mount exited with {mounted.returncode}"
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {reason}")
    try:
        yield folder
    finally:
        # Lazy: a file a failed test left open must not leave the mount behind.
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write one file in `folder` until the disk is full (but for `leave` bytes); returns it."""
    filler = folder / "filler"
    with open(filler, "ab", buffering=0) as handle:
        while (room := free_bytes(folder) - leave) > 0:
            try:
                handle.write(b"\xff" * min(room, 1 << 16))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize
