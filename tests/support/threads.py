"""Threads on the virtual clock: a fleet's services run at once on the simulator, one thread at a time.

moto is not thread-safe, and a virtual clock that each thread advanced on its own would add up waits that
overlap. ``CooperativeClock`` hands one baton between the threads of ``CooperativeExecutor``: the thread that
has it runs until it sleeps; time then moves to the earliest wake-up among the sleepers, and that one runs.
A job a free worker is about to pick up starts before time moves on. A kill (``kill_at``) is sticky: every
service thread raises LambdaKilled at its next sleep, as a killed Lambda's threads all die with it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dev.simulator import EPOCH_2026, LambdaKilled, VirtualClock


class CooperativeClock(VirtualClock):
    def __init__(self, start: float = EPOCH_2026) -> None:
        super().__init__(start)
        self._cond = threading.Condition()
        self._holder: int | None = None
        self._sleepers: list[tuple[float, int, int]] = []
        self._order = itertools.count()
        self._participants: set[int] = set()
        self._executors: list[CooperativeExecutor] = []
        self.killed = False
        # The most threads ever awake between two sleeps (must stay 1).
        self.most_running = 0

    def sleep(self, seconds: float) -> None:
        me = threading.get_ident()
        if me not in self._participants:
            super().sleep(seconds)
            return
        with self._cond:
            self._turn(me, self.t + max(seconds, 0.0))
            self.slept += max(seconds, 0.0)
            if self.killed or (self.kill_at is not None and self.t >= self.kill_at):
                self.kill_at, self.killed = None, True
                raise LambdaKilled(f"killed at virtual t={self.t - self.start:.0f}s")

    def enter(self) -> None:
        with self._cond:
            me = threading.get_ident()
            self._participants.add(me)
            self._turn(me, self.t)

    def leave(self) -> None:
        with self._cond:
            self._participants.discard(threading.get_ident())
            self._holder = None
            self._dispatch()

    def arrived(self) -> None:
        with self._cond:
            self._dispatch()

    def _turn(self, me: int, wake: float) -> None:
        heapq.heappush(self._sleepers, (wake, next(self._order), me))
        if self._holder == me:
            self._holder = None
        self._dispatch()
        self._cond.wait_for(lambda: self._holder == me)

    def _dispatch(self) -> None:
        if self._holder is not None or not self._sleepers:
            return
        if any(executor.starting() for executor in self._executors):
            return
        wake, _, thread = heapq.heappop(self._sleepers)
        self.t = max(self.t, wake)
        self._holder = thread
        self._cond.notify_all()


class CooperativeExecutor(ThreadPoolExecutor):
    """A thread pool whose jobs take turns on a CooperativeClock."""

    def __init__(self, clock: CooperativeClock, max_workers: int) -> None:
        super().__init__(max_workers)
        self.clock = clock
        self.workers = max_workers
        self._lock = threading.Lock()
        self._pending: list[Future[Any]] = []
        self._active = 0
        clock._executors.append(self)

    def starting(self) -> bool:
        """Whether a job is about to be picked up by a free worker (time must wait for it)."""
        with self._lock:
            pending = sum(1 for f in self._pending if not f.cancelled())
            return min(pending, self.workers - self._active) > 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        holder: list[Future[Any]] = []

        def job() -> Any:
            with self._lock:
                self._pending.remove(holder[0])
                self._active += 1
            self.clock.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self._active -= 1
                self.clock.leave()

        with self._lock:
            future = super().submit(job)
            holder.append(future)
            self._pending.append(future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._pending = [f for f in self._pending if not f.cancelled()]
        self.clock.arrived()
        super().shutdown(wait, cancel_futures=cancel_futures)
        if self in self.clock._executors:
            self.clock._executors.remove(self)
