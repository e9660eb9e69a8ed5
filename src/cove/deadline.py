"""A wall-clock deadline for pure-Python work (template renders), at no cost while it runs.

A line-level trace function can stop a runaway loop, but it makes every render about eight
times slower (6 ms instead of 0.7 ms for a 20-turn chat), and a render sits in front of every
request's first token. Instead one watchdog thread keeps the deadlines and, when one passes,
raises the caller's exception in the thread that is still running (CPython's
PyThreadState_SetAsyncExc). It lands at the next bytecode, so it stops any Python loop; work
inside one long C call (a huge string multiplication) must be bounded by other means.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
# The exception class as a bare pointer, so ctypes adds no reference of its own.
_set_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]


class _Watchdog:
    """Deadlines of running calls, earliest first; fires each that passes while still armed.

    An exception set for a thread lands at its next bytecode, wherever that is, so nothing
    here may be left half done by one: the armed calls are a dict (one pop decides who wins),
    and the locks are C locks entered with `with`, which no exception can interrupt half-way.
    A pending exception is never taken back (clearing one hangs CPython 3.11 under a trace
    function): a call that finished just as it fired lets it land in `_absorb` instead.
    """

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())  # guards the heap, wakes the thread
        self._firing = threading.Lock()  # held while an exception is being set
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, tuple[int, type[BaseException]]] = {}  # token -> (thread, exception)
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, error: type[BaseException]) -> int:
        token = next(self._tokens)
        self._armed[token] = (threading.get_ident(), error)
        with self._wake:
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cove-deadline", daemon=True)
                self._thread.start()
            self._wake.notify()
        return token

    def disarm(self, token: int) -> bool:
        """True when it was still armed; False when it fired (its exception is pending or landed)."""
        if self._armed.pop(token, None) is not None:
            return True
        with self._firing:  # the watchdog may be setting it right now: wait until it is set
            pass
        return False

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
            with self._firing:
                entry = self._armed.pop(token, None)
                if entry is not None:
                    _set_async_exc(entry[0], id(entry[1]))  # a class, alive as long as its module


_watchdog = _Watchdog()


def run_within(timeout_s: float, fn: Callable[[], T], error: type[BaseException]) -> T:
    """fn(), or `error` raised inside it once `timeout_s` has passed. Use a BaseException
    subclass, so that no `except Exception` on the way swallows it."""
    token = _watchdog.arm(time.monotonic() + timeout_s, error)
    try:
        return fn()
    finally:
        if not _watchdog.disarm(token):
            _absorb(error)


def _absorb(error: type[BaseException]) -> None:
    """Let a pending exception land here (at a backward jump) rather than in the caller's code."""
    try:
        for _ in range(10_000):
            pass
    except error:
        pass
