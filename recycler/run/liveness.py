"""A run that lives in one process (the plain function, the CLI): it renews its lock on a heartbeat while it
waits, and an operator's interrupt (the CLI's Ctrl-C) stops it as a cancel does.

The host's runtime is wrapped for the run (``LiveRuntime``): its pauses and polls are cut into heartbeats
(recycler.run.budget.HEARTBEAT_SECONDS), between which the lock is renewed once its last write is that old
(recycler.lock.lease.LockHolder.beat), so a live run's lock stays fresh and a dead one's goes stale within
its short lease. A pause ends as soon as the run is interrupted: a run that will stop no further task has
nothing to pause for. A poll is cut short once, when the interrupt comes during it, so the run acts on it
within a poll. A durable execution has none of this: it cannot beat while suspended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recycler.model.runtime import Clock, Runtime, S, T, poll_until
from recycler.run.budget import HEARTBEAT_SECONDS


def _never() -> str | None:
    return None


@dataclass(frozen=True)
class Liveness:
    """What a run in one process gets: its heartbeat, and what says it was interrupted (the reason, or None)."""

    heartbeat_seconds: float = HEARTBEAT_SECONDS
    interrupted: Callable[[], str | None] = _never


class LiveRuntime:
    """The host's in-process runtime, its waits cut into heartbeats and ended early by an interrupt."""

    def __init__(self, host: Runtime, clock: Clock, liveness: Liveness, beat: Callable[[], None]) -> None:
        self.host = host
        self.clock = clock
        self.liveness = liveness
        # Renews the lock when a heartbeat is due (the run's holder, which a repair replaces).
        self.beat = beat

    def step(self, name: str, fn: Callable[[], T]) -> T:
        return self.host.step(name, fn)

    def remaining_seconds(self) -> float | None:
        return self.host.remaining_seconds()

    def log(self, level: int, message: str, **fields: Any) -> None:
        self.host.log(level, message, **fields)

    def sleep(self, name: str, seconds: int) -> None:
        """A pause (a head start, wait_time): beating, and over once the run is interrupted.

        The beat comes before each slice, not after the last: what follows a pause beats or writes anyway."""
        end = self.clock.now() + seconds
        while not self.liveness.interrupted() and (left := end - self.clock.now()) > 0:
            self.beat()
            self.clock.sleep(min(left, self.liveness.heartbeat_seconds))

    def wait_until(
        self,
        name: str,
        check: Callable[[S], S],
        initial: S,
        poll_seconds: float,
    ) -> S:
        return poll_until(check, initial, lambda: self._poll_pause(poll_seconds))

    def _poll_pause(self, seconds: float) -> None:
        """The pause between two polls, beating; an interrupt that comes during it ends it, so the next poll
        sees it at once (later polls pause in full: the replacements in flight still have to serve)."""
        before = self.liveness.interrupted()
        end = self.clock.now() + seconds
        while (left := end - self.clock.now()) > 0:
            self.clock.sleep(min(left, self.liveness.heartbeat_seconds))
            self.beat()
            if self.liveness.interrupted() != before:
                return
