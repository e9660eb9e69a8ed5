"""Which models' engines crashed, and when each may be started again: back-off and broken marks.

A crash at load is the model file's doing (llama.cpp asserts on values it reads there): after
`BROKEN_AFTER` of them the model stays off until its file changes, instead of one process started
and killed per request. A crash after a good load may be the request's doing: the first restart
is at once (a model killed once must come back on the next request), later ones back off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import EngineBackingOff, ModelBroken
from .base import LoadSpec

#: Load crashes of one file that mark it broken.
BROKEN_AFTER = 2
#: The first back-off, doubled for each further crash in a row, up to the cap.
BACKOFF_S = 1.0
BACKOFF_CAP_S = 60.0

Stamp = tuple[object, ...]


def file_stamp(spec: LoadSpec) -> Stamp:
    """What says the model file is the same one: its digest, and the size and mtime on disk."""
    try:
        stat = os.stat(spec.model_path)
    except OSError:
        return (spec.digest, None)
    return (spec.digest, stat.st_size, stat.st_mtime_ns)


@dataclass
class Record:
    stamp: Stamp
    at: float  # when the last crash was seen
    why: str
    loading: int = 0  # load crashes of this file
    running: int = 0  # crashes after a good load, in a row

    def wait_s(self) -> float:
        """How long after the last crash a start is refused."""
        if self.loading:
            return min(BACKOFF_S * 2 ** (self.loading - 1), BACKOFF_CAP_S)
        if self.running <= 1:
            return 0.0
        return min(BACKOFF_S * 2 ** (self.running - 2), BACKOFF_CAP_S)


class CrashLog:
    """Thread-safe; keyed by the load spec's key (file, context, template, adapter, embedding)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._records: dict[tuple[object, ...], Record] = {}
        self._lock = threading.Lock()

    def check(self, spec: LoadSpec) -> None:
        """Raise ModelBroken or EngineBackingOff when `spec` may not be started now."""
        with self._lock:
            record = self._current(spec)
            if record is None:
                return
            if record.loading >= BROKEN_AFTER:
                raise ModelBroken(
                    f"{spec.name}: the engine crashed loading this model file ({record.why}); "
                    "it stays off until the file changes or cove restarts"
                )
            left = record.at + record.wait_s() - self._clock()
            if left > 0:
                what = "loading it" if record.loading else f"{record.running} times in a row"
                raise EngineBackingOff(
                    f"{spec.name}: its engine crashed {what} ({record.why}); "
                    f"it is started again in {left:.1f} s, retry then"
                )

    def crashed_loading(self, spec: LoadSpec, why: str) -> None:
        with self._lock:
            record = self._record(spec, why)
            record.loading += 1

    def crashed_running(self, spec: LoadSpec, why: str) -> None:
        with self._lock:
            record = self._record(spec, why)
            record.running += 1

    def loaded(self, spec: LoadSpec) -> None:
        """The file loaded after all (a load crash can be the machine's, as an OOM kill is)."""
        with self._lock:
            record = self._records.get(spec.key)
            if record is not None:
                record.loading = 0

    def served(self, spec: LoadSpec) -> None:
        """A request ended with its engine alive: the next crash restarts at once again."""
        with self._lock:
            record = self._records.get(spec.key)
            if record is not None and not record.loading:
                del self._records[spec.key]

    def _current(self, spec: LoadSpec) -> Record | None:
        """The record for this very file; a changed file starts with a clean slate."""
        record = self._records.get(spec.key)
        if record is not None and record.stamp != file_stamp(spec):
            del self._records[spec.key]
            return None
        return record

    def _record(self, spec: LoadSpec, why: str) -> Record:
        record = self._current(spec)
        if record is None:
            record = self._records[spec.key] = Record(file_stamp(spec), self._clock(), why)
        record.at, record.why = self._clock(), why
        return record
