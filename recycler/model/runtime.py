"""The engine's seams: a clock, and a runtime that runs steps, sleeps and waits.

The engine knows nothing about Lambda. The same code runs in a plain
invocation (LocalRuntime, with a time budget), in a durable execution
(recycler.hosts.durable.DurableRuntime, every step checkpointed) and in tests on a
virtual clock. Determinism rule, which the durable runtime's replays need:
every AWS call and every clock read happens inside ``step`` or inside a
``wait_until`` check, and control flow only depends on what those return.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, Self, TypedDict, TypeVar

T = TypeVar("T")

TOOL_NAME = "ecs-task-recycle"


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None: ...


def iso_seconds(epoch: float) -> str:
    """Epoch seconds as the ISO 8601 UTC time the report, the lock's status and the messages show."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class SystemClock:
    def __init__(self, nap: Callable[[float], None] | None = None) -> None:
        # How to sleep: time.sleep, or the CLI's, which a signal wakes (recycler.hosts.cli.Interrupts.sleep), so
        # that a run acts on an interrupt within a poll instead of after its sleep.
        self._nap = nap

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            (self._nap or time.sleep)(seconds)


class NoResult(TypedDict):
    """The result of a step that only acts: {} in its checkpoint, as it always was."""


class PollState(Protocol):
    """A wait's state between polls. A durable checkpoint holds it as its to_dict() JSON, so that JSON must
    stay readable by from_dict: a replay of an older execution rebuilds the state from it."""

    done: bool

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...


S = TypeVar("S", bound=PollState)


class Runtime(Protocol):
    """How the engine runs steps and waits. See LocalRuntime for the plain one."""

    def step(self, name: str, fn: Callable[[], T]) -> T: ...

    def sleep(self, name: str, seconds: int) -> None: ...

    def wait_until(
        self,
        name: str,
        check: Callable[[S], S],
        initial: S,
        poll_seconds: float,
    ) -> S:
        """Call check(state) until the state it returns is done. check raises to abort."""

    def remaining_seconds(self) -> float | None:
        """Seconds left before the host kills the run, or None when unbounded."""

    def log(self, level: int, message: str, **fields: Any) -> None: ...


class LocalRuntime:
    """A plain, in-process run: steps are calls, sleeps and waits use the clock."""

    def __init__(
        self,
        clock: Clock,
        remaining_seconds: Callable[[], float | None] = lambda: None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.clock = clock
        self._remaining = remaining_seconds
        self.logger = logger or logging.getLogger(TOOL_NAME)

    def step(self, name: str, fn: Callable[[], T]) -> T:
        return fn()

    def sleep(self, name: str, seconds: int) -> None:
        self.clock.sleep(seconds)

    def wait_until(
        self,
        name: str,
        check: Callable[[S], S],
        initial: S,
        poll_seconds: float,
    ) -> S:
        return poll_until(check, initial, lambda: self.clock.sleep(poll_seconds))

    def remaining_seconds(self) -> float | None:
        return self._remaining()

    def log(self, level: int, message: str, **fields: Any) -> None:
        self.logger.log(level, message, extra=fields)


def poll_until(check: Callable[[S], S], initial: S, pause: Callable[[], None]) -> S:
    """An in-process wait: check, pause, check again, until the state is done (check raises to abort)."""
    state = check(initial)
    while not state.done:
        pause()
        state = check(state)
    return state
