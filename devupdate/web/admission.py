"""Admission control: at most so many requests of a class at work at once, a bounded number
waiting for a slot for a bounded time, and everyone beyond refused at once — an answer "retry
later" in microseconds instead of a queue that grows until every client times out.

A :class:`Gate` counts one class. It is used two ways:

- by the server's event loop (:mod:`devupdate.web.worker`), before a request is handed to a
  thread: :meth:`Gate.try_take` or a place in the loop's own queue (:meth:`Gate.join_queue`),
  so waiting requests hold no thread and a refusal needs none;
- by the application itself (:meth:`Gate.enter`, blocking up to the wait) when no such loop
  admitted the request: another WSGI server, a test client, a body too large for the loop.

Features tell the loop which requests are gated with :func:`register`: a classifier gets the
method, path and a header lookup of a request whose head has arrived and returns a :class:`Claim`
(the gate, and how to refuse), or ``None`` when the request is not gated. A class with no free slot
and no place in its queue (:meth:`Gate.full`) is refused on the head, before the body is read; a
queue place is refused too when, by the recent time a slot is held, it would take more than half
its wait (:data:`HEADROOM`) to get a slot, so "retry later" is said at once instead of after the wait. Pure: no web
framework, no settings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: why a request was refused: no place left in the queue (or none it would leave within its wait),
#: or its wait ran out
FULL, TIMEOUT = "full", "timeout"
#: weight of the newest slot in the recent service time
SMOOTHING = 0.1
#: the share of the wait a queue place is expected to take at most: the recent service time lags a
#: rising load, and a place taken on a hopeful estimate is answered only when its wait runs out
HEADROOM = 0.5


@dataclass(frozen=True)
class Capacity:
    """``in_flight`` requests at work at once, ``queue`` more waiting at most ``wait`` seconds each
    (a ``queue`` of 0 or a ``wait`` of 0: nobody waits)."""

    in_flight: int
    queue: int
    wait: float

    def __post_init__(self) -> None:
        if self.in_flight < 1 or self.queue < 0 or self.wait < 0:
            raise ValueError(f"not a capacity: {self}")

    @property
    def queues(self) -> bool:
        return self.queue > 0 and self.wait > 0


class Busy(Exception):
    """No slot: ``reason`` is :data:`FULL` or :data:`TIMEOUT`, ``waited`` the seconds spent waiting."""

    def __init__(self, reason: str, waited: float):
        super().__init__(f"busy ({reason} after {waited:.3f} s)")
        self.reason, self.waited = reason, waited


class Gate:
    """The slots of one class (thread-safe)."""

    def __init__(self, name: str, capacity: Capacity):
        self.name, self.capacity = name, capacity
        self._cond = threading.Condition()
        self.running = 0
        self.waiting = 0
        #: seconds a slot was held, on average of the recent ones (0: none yet)
        self.service = 0.0

    def _late(self) -> bool:
        """Whether one more waiter would, by the recent service time, wait longer than its share of
        the wait: it is turned away at once instead of after the wait (the queue holds what the slots
        can serve within that share, never more than ``capacity.queue``)."""
        return self.service * (self.waiting + 1) > HEADROOM * self.capacity.wait * self.capacity.in_flight

    def held(self, seconds: float) -> None:
        """A slot was held ``seconds`` (for the recent service time)."""
        with self._cond:
            self.service = seconds if not self.service else self.service + SMOOTHING * (seconds - self.service)

    def full(self) -> bool:
        """No slot free and no place in the queue (for a request whose head has arrived: it can be
        turned away before its body is read)."""
        with self._cond:
            return self.running >= self.capacity.in_flight and not (
                self.capacity.queues and self.waiting < self.capacity.queue and not self._late())

    def try_take(self) -> bool:
        """A slot now, if one is free; never waits."""
        with self._cond:
            if self.running < self.capacity.in_flight:
                self.running += 1
                return True
            return False

    def join_queue(self) -> bool:
        """A place among the waiting, if the queue has one (the caller waits, then takes or leaves)."""
        with self._cond:
            if self.capacity.queues and self.waiting < self.capacity.queue and not self._late():
                self.waiting += 1
                return True
            return False

    def leave_queue(self) -> None:
        with self._cond:
            self.waiting -= 1

    def release(self) -> None:
        with self._cond:
            if self.running <= 0:
                raise RuntimeError(f"gate {self.name}: released more slots than were taken")
            self.running -= 1
            self._cond.notify()

    def enter(self) -> float:
        """Take a slot, waiting for one at most ``capacity.wait`` seconds; the seconds waited, or
        :class:`Busy`. The caller :meth:`release` s the slot when done."""
        started = time.monotonic()
        with self._cond:
            if self.running < self.capacity.in_flight and not self.waiting:
                self.running += 1
                return 0.0
            if not self.capacity.queues or self.waiting >= self.capacity.queue or self._late():
                raise Busy(FULL, 0.0)
            self.waiting += 1
            deadline = started + self.capacity.wait
            try:
                while self.running >= self.capacity.in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Busy(TIMEOUT, time.monotonic() - started)
                    self._cond.wait(remaining)
                self.running += 1
                return time.monotonic() - started
            finally:
                self.waiting -= 1


class Slot:
    """A slot taken of ``gate`` for one request, released once by whoever is first: the application
    as soon as its answer is ready, else the server when the request is done."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self._lock = threading.Lock()
        self.held = True
        self.taken = time.monotonic()

    def release(self) -> None:
        with self._lock:
            if not self.held:
                return
            self.held = False
        self.gate.release()
        self.gate.held(time.monotonic() - self.taken)


@dataclass(frozen=True)
class Claim:
    """A gated request: its ``gate``; ``refuse(reason, waited, close)`` → the whole HTTP response
    that turns it away (with ``Connection: close`` when ``close``); ``admitted(waited)`` is told
    when it got a slot (for metrics)."""

    gate: Gate
    refuse: Callable[[str, float, bool], bytes]
    admitted: Callable[[float], None] = lambda waited: None


#: a request's method, path and a header lookup (``header("SOAPAction")`` → the value or ``None``)
#: → its claim
Classifier = Callable[[str, str, Callable[[str], str | None]], Claim | None]
_classifiers: dict[str, Classifier] = {}

#: the :class:`Slot` in the WSGI environ of a request the event loop already admitted (the
#: application takes no second slot, and releases this one when its answer is ready)
ADMITTED = "devupdate.admitted"


def register(name: str, classifier: Classifier) -> None:
    """``name`` (the feature) → its classifier; registering again replaces it (a new app)."""
    _classifiers[name] = classifier


def claim(method: str, path: str, header: Callable[[str], str | None]) -> Claim | None:
    """The first claim a registered classifier makes on the request, or ``None``."""
    for classifier in list(_classifiers.values()):
        found = classifier(method, path, header)
        if found is not None:
            return found
    return None
