"""Every cap a parser honours, in one place: file size, archive entries, decompression ratio,
pages, text produced and time. A file past any of them is refused with the cap in the message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import DocumentRefused

T = TypeVar("T")

#: Largest file read at all (a 1 GB log or a disk image is refused before a byte is read).
MAX_FILE_BYTES = 100 * 1024 * 1024
#: Entries a ZIP-based document (DOCX, PPTX, EPUB) may hold; a real one has tens to a few thousand.
MAX_ZIP_ENTRIES = 10_000
#: Total uncompressed bytes of a ZIP-based document's entries.
MAX_ZIP_UNCOMPRESSED = 500 * 1024 * 1024
#: Uncompressed over compressed size of the whole archive; text compresses ~5-10x, bombs 1000x+.
MAX_ZIP_RATIO = 100
#: Pages a PDF may declare (or slides a PPTX may hold).
MAX_PAGES = 5_000
#: Characters of text one document may produce (about 10,000 pages of prose).
MAX_TEXT_CHARS = 50_000_000
#: Seconds one document's parse may take (OCR included), checked between pages and elements.
MAX_SECONDS = 300.0
#: Seconds OCR may add to one PDF's parse (with `--ocr`): a scanned page takes Tesseract a second
#: or more, so a whole scanned book gets this long; pages past it are listed as not read.
MAX_OCR_SECONDS = 3600.0
#: Seconds Tesseract may spend on one page image.
OCR_SECONDS_PER_PAGE = 60.0
#: Uncompressed bytes of one XML or HTML part of a ZIP-based document: the part is parsed into a
#: tree in memory, about ten times its size.
MAX_XML_ENTRY = 64 * 1024 * 1024
#: Messages one mbox file may hold.
MAX_MESSAGES = 50_000


def size_text(n: int) -> str:
    """A byte count as a person reads it (`1.0 GB`)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # unreachable; keeps mypy's return check happy


@dataclass
class Deadline:
    """The time cap of one parse: `check()` between pages or elements refuses when it has passed."""

    seconds: float = field(default_factory=lambda: MAX_SECONDS)  # read when made: tests lower it
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def check(self) -> None:
        if self.left() <= 0:
            raise DocumentRefused(
                f"took longer than {self.seconds:g} s to read; split the file or convert it to text"
            )


class _TimeUp(BaseException):
    """Raised inside a parse that ran past its time cap; a BaseException so that a parser
    library's own `except Exception` cannot swallow it."""


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    """Raises `exception` in that thread at its next bytecode (None clears a pending one).

    Its own function objects with their own argument types: other code in the process may have
    set types on the shared `ctypes.pythonapi` attribute."""
    import ctypes

    function = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
    function.restype = ctypes.c_int
    if exception is None:
        function.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
        function(thread_id, None)  # NULL: clear
    else:
        function.argtypes = [ctypes.c_ulong, ctypes.py_object]
        function(thread_id, exception)


class _Watchdog:
    """One daemon thread for every parse in the process (a thread per parse cost more than
    parsing a small text file): it raises _TimeUp in a parsing thread whose time is up."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.armed: dict[int, tuple[int, float]] = {}  # token -> (thread id, monotonic deadline)
        self.fired: set[int] = set()
        self.tokens = 0
        self.thread: threading.Thread | None = None

    def arm(self, seconds: float) -> int:
        with self.lock:
            self.tokens += 1
            self.armed[self.tokens] = (threading.get_ident(), time.monotonic() + seconds)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._watch, name="cove-parse-watchdog", daemon=True)
                self.thread.start()
            self.lock.notify()
            return self.tokens

    def disarm(self, token: int) -> bool:
        """Whether it fired; a raise still pending in this thread is dropped (it finished)."""
        with self.lock:
            self.armed.pop(token, None)
            if token not in self.fired:
                return False
            self.fired.discard(token)
            _raise_in(threading.get_ident(), None)
            return True

    def _watch(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                for token, (thread_id, deadline) in list(self.armed.items()):
                    if deadline <= now:
                        del self.armed[token]
                        self.fired.add(token)
                        _raise_in(thread_id, _TimeUp)
                upcoming = min((deadline for _, deadline in self.armed.values()), default=None)
                self.lock.wait(None if upcoming is None else max(0.0, upcoming - now))


_watchdog = _Watchdog()


def time_capped(run: Callable[[], T], seconds: float) -> T:
    """`run()`, stopped when it takes longer than `seconds`: a watchdog raises inside the
    parsing thread (any thread, not only the main one), so even one page that pypdf loops on
    cannot hold a sync; the cooperative `Deadline.check()` calls end most parses earlier."""
    token = _watchdog.arm(max(seconds, 0.0))
    try:
        try:
            return run()
        finally:
            _watchdog.disarm(token)
    except _TimeUp:
        raise DocumentRefused(
            f"took longer than {seconds:g} s to read; split the file or convert it to text"
        ) from None
