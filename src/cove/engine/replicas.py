"""A remote model's replicas: which one serves a request (least busy, conversation affinity),
which are healthy (taken out on a failure or a failed health check, put back when it passes)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

#: How many conversations' replicas are remembered (least recently used forgotten first).
AFFINITY_SIZE = 4096

T = TypeVar("T")


@dataclass(eq=False)
class Replica(Generic[T]):
    """One upstream and how it is doing; `target` is what requests are sent with (a client)."""

    index: int
    name: str
    target: T
    active: int = 0
    served: int = 0
    healthy: bool = True
    why: str = ""
    failures: int = 0
    out_since: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "healthy": self.healthy,
            "active": self.active,
            "served": self.served,
            "why": self.why,
        }


#: Checks one replica: None when healthy, else why not (one line).
Probe = Callable[[Replica[T]], str | None]


class ReplicaSet(Generic[T]):
    """Thread-safe. `pick` a replica, `hold` it while a request runs, report `failed` ones."""

    def __init__(
        self,
        replicas: list[Replica[T]],
        probe: Probe[T],
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = replicas
        self._probe = probe
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        #: conversation key → index of the replica that served it last (its prompt cache is there).
        self._affinity: OrderedDict[str, int] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pick(self, key: str | None, tried: set[int]) -> Replica[T] | None:
        """The replica for a request: the conversation's own while it is healthy, else the
        least busy healthy one not yet tried (None when there is none)."""
        with self._lock:
            healthy = [r for r in self.replicas if r.healthy and r.index not in tried]
            if not healthy:
                return None
            pinned = self._affinity.get(key) if key is not None else None
            chosen = next((r for r in healthy if r.index == pinned), None)
            if chosen is None:
                chosen = min(healthy, key=lambda r: (r.active, r.served, r.index))
            if key is not None:
                self._affinity[key] = chosen.index
                self._affinity.move_to_end(key)
                while len(self._affinity) > AFFINITY_SIZE:
                    self._affinity.popitem(last=False)
            chosen.active += 1  # counted at once, so concurrent picks spread
            return chosen

    def done(self, replica: Replica[T]) -> None:
        """A request on `replica` (from `pick`) has ended, however it ended."""
        with self._lock:
            replica.active -= 1
            replica.served += 1

    @contextmanager
    def hold(self, key: str | None, tried: set[int]) -> Iterator[Replica[T] | None]:
        replica = self.pick(key, tried)
        try:
            yield replica
        finally:
            if replica is not None:
                self.done(replica)

    def failed(self, replica: Replica[T], why: str) -> None:
        """Take it out: requests go to the others until its health check passes."""
        with self._lock:
            replica.failures += 1
            replica.why = why
            if replica.healthy:
                replica.healthy = False
                replica.out_since = self._clock()
                log.warning("replica %s taken out: %s", replica.name, why)

    def recovered(self, replica: Replica[T]) -> None:
        with self._lock:
            if not replica.healthy:
                log.warning("replica %s is back", replica.name)
            replica.healthy, replica.why, replica.out_since = True, "", None

    def check(self, only_unhealthy: bool = False) -> None:
        """Probe every replica (or those out) now, outside the lock: a slow one delays nobody."""
        for replica in list(self.replicas):
            if only_unhealthy and replica.healthy:
                continue
            if not replica.lock.acquire(blocking=False):
                continue  # a probe of it is already under way
            try:
                why = self._probe(replica)
            except Exception as exc:  # a probe must never end the checking thread
                why = f"its health check failed: {exc}"
            finally:
                replica.lock.release()
            if why is None:
                self.recovered(replica)
            else:
                self.failed(replica, why)

    @property
    def any_healthy(self) -> bool:
        with self._lock:
            return any(r.healthy for r in self.replicas)

    def start(self) -> None:
        """Check every replica each `interval_s` seconds, in a thread of its own."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="cove-replicas", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def describe(self) -> list[dict[str, object]]:
        with self._lock:
            return [r.describe() for r in self.replicas]
