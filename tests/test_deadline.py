"""The watchdog deadline: it stops a runaway loop, hits only the thread that ran late, and never
lands after its call has returned."""

from __future__ import annotations

import threading
import time

import pytest

from cove.deadline import run_within


class Late(BaseException):
    pass


def spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def forever() -> None:
    while True:
        pass


def test_a_loop_with_no_calls_is_stopped() -> None:
    started = time.monotonic()
    with pytest.raises(Late):
        run_within(0.1, forever, Late)
    assert time.monotonic() - started < 5


def test_a_call_that_ends_as_the_deadline_passes_never_lets_it_land_later() -> None:
    """Deadlines and finishes race on purpose; whatever wins, nothing is raised after return."""
    outcomes = {"returned": 0, "late": 0}
    # Deadlines around the call's 0.4 ms make the race; 0 is always late and 1 s always in time,
    # so both outcomes happen however loaded the machine is.
    deadlines = (0.0, 0.0002, 0.0004, 0.0006, 0.0008, 1.0)
    for i in range(400):
        try:
            run_within(deadlines[i % len(deadlines)], lambda: spin(0.0004), Late)
            outcomes["returned"] += 1
        except Late:
            outcomes["late"] += 1
        total = 0
        for k in range(2000):  # a stray exception would land here and fail the test
            total += k
        assert total == 1999000
    assert outcomes["late"] > 0 and outcomes["returned"] > 0


def test_only_the_late_thread_is_stopped() -> None:
    errors: list[BaseException] = []

    def quick() -> None:
        try:
            for _ in range(50):
                run_within(5.0, lambda: spin(0.002), Late)
        except BaseException as exc:
            errors.append(exc)

    other = threading.Thread(target=quick)
    other.start()
    with pytest.raises(Late):
        run_within(0.2, forever, Late)
    other.join(timeout=30)
    assert not other.is_alive() and errors == []
