"""`cove serve` keeping collections with watched folders in sync by itself: file events from
`watchfiles` start a sync of the collections they touch, and a periodic re-scan catches what
events miss (network shares, a server that was down). A sync of unchanged files reads nothing."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import watchfiles

from .index import index_path
from .service import KnowledgeBase

log = logging.getLogger("cove.knowledge")

#: A full re-scan of every watched collection this often, events or not.
RESCAN_S = 300.0
#: How long file events are gathered before a sync starts (an editor saves in several writes).
DEBOUNCE_MS = 1000


class Watcher:
    """A thread that syncs collections when their folders change; `stop()` ends it promptly."""

    def __init__(
        self,
        open_kb: Callable[[], KnowledgeBase],
        home: Path,
        *,
        rescan_s: float = RESCAN_S,
        debounce_ms: int = DEBOUNCE_MS,
        poll: bool | None = None,
    ) -> None:
        self._open_kb = open_kb
        self._home = home
        self.rescan_s = rescan_s
        self.debounce_ms = debounce_ms
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: dict[str, str] = {}  # collection -> the last error logged for it
        self.syncs = 0  # syncs run (for tests and /metrics-style curiosity)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cove-kb-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------

    def _kb(self) -> KnowledgeBase | None:
        """The knowledge base once one exists: a server whose user never made one creates none."""
        return self._open_kb() if index_path(self._home).exists() else None

    def _roots(self) -> dict[str, list[str]]:
        kb = self._kb()
        if kb is None:
            return {}
        roots: dict[str, list[str]] = {}
        for col in kb.index.collections():
            for root in col.roots:
                if os.path.exists(root.path):
                    roots.setdefault(root.path, []).append(col.name)
        return roots

    def _loop(self) -> None:
        last_scan = 0.0
        while not self._stop.is_set():
            try:
                roots = self._roots()
                if time.monotonic() - last_scan >= self.rescan_s:
                    self._sync(sorted({n for names in roots.values() for n in names}))
                    last_scan = time.monotonic()
                if not roots:
                    self._stop.wait(min(self.rescan_s, 5.0))
                    continue
                last_scan = self._watch(roots, last_scan)
            except Exception:  # the watcher must outlive any one failure; it is logged
                log.exception("knowledge watcher: error; trying again shortly")
                self._stop.wait(5.0)

    def _watch(self, roots: dict[str, list[str]], last_scan: float) -> float:
        """Sync on events until the set of watched folders changes or a re-scan is due."""
        timeout_ms = int(min(self.rescan_s, 5.0) * 1000)
        for changes in watchfiles.watch(
            *roots,
            stop_event=self._stop,
            debounce=self.debounce_ms,
            rust_timeout=timeout_ms,
            yield_on_timeout=True,
            raise_interrupt=False,
            force_polling=self.poll,
        ):
            if changes:
                self._sync(_touched(roots, {path for _, path in changes}))
            if self._roots() != roots:
                break  # a folder was added or removed: watch the new set
            if time.monotonic() - last_scan >= self.rescan_s:
                self._sync(sorted({n for names in roots.values() for n in names}))
                last_scan = time.monotonic()
        return last_scan

    def _sync(self, names: list[str]) -> None:
        kb = self._kb()
        if kb is None:
            return
        for name in names:
            if self._stop.is_set():
                return
            try:
                report = kb.sync(name, cancel=self._stop)
            except Exception as exc:  # a missing embedding model, say: logged once, not every time
                message = str(exc)
                if self._failed.get(name) != message:
                    log.warning("knowledge: collection '%s' could not be synced: %s", name, message)
                self._failed[name] = message
                continue
            self.syncs += 1
            self._failed.pop(name, None)
            changed = len(report.added) + len(report.updated) + len(report.renamed) + len(report.removed)
            if changed or report.refused:
                log.info(
                    "knowledge: '%s' synced: %d added, %d updated, %d renamed, %d removed, %d refused",
                    name, len(report.added), len(report.updated), len(report.renamed), len(report.removed),
                    len(report.refused),
                )  # fmt: skip


def _touched(roots: dict[str, list[str]], paths: set[str]) -> list[str]:
    names: set[str] = set()
    for root, owners in roots.items():
        prefix = root.rstrip(os.sep) + os.sep
        if any(p == root or p.startswith(prefix) for p in paths):
            names.update(owners)
    return sorted(names)


@contextlib.asynccontextmanager
async def watching(cove: Any) -> AsyncIterator[None]:
    """The server's lifespan: the watcher runs while the server does."""
    watcher = Watcher(lambda: cove.knowledge, cove.settings.home)
    watcher.start()
    try:
        yield
    finally:
        watcher.stop()
