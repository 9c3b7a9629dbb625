"""Run durable_function under the SDK's DurableFunctionTestRunner, on the simulated cluster's clock.

The runner "skips" time: when a durable wait (or a step retry, or the next
poll of a wait-for-condition) is armed, its clock jumps to the wake-up time
and the timer fires at once. The simulated ECS scheduler has its own
``VirtualClock``, which only moves when something sleeps on it. Here the two
are one: the runner's clock reads and advances the simulator's clock, so a
60 s durable wait is 60 s in which the simulated tasks start and drain, as
real time passes while a real execution is suspended.

Used by tests/test_durable.py, tests/test_lock.py and dev/bench.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest import mock

from aws_durable_execution_sdk_python import exceptions as sdk_exceptions
from aws_durable_execution_sdk_python import state as sdk_state
from aws_durable_execution_sdk_python import suspend as sdk_suspend
from aws_durable_execution_sdk_python.concurrency import executor as sdk_executor
from aws_durable_execution_sdk_python_testing import runner as runner_module
from aws_durable_execution_sdk_python_testing.client import InMemoryServiceClient
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

from dev.simulator import EcsSimulator, VirtualClock


class SimulatedTimeClock:
    """The runner's clock (``now``/``arm``) on the simulator's VirtualClock.

    With ``concurrent`` (a fleet's branches in one invocation), time stands still while the handler runs,
    as in a discrete-event simulation: a wake armed then waits (the runner re-arms it every few
    milliseconds of real time) until the invocation has suspended, and only then does time jump to the
    earliest wake. Without it, a branch's wait would move time under the branches still running, and
    waits that overlap would add up.
    """

    # Real seconds between the runner's re-arms while a handler is running.
    REARM_SECONDS = 0.5

    def __init__(self, world: VirtualClock, concurrent: bool = False) -> None:
        self.world = world
        self.concurrent = concurrent
        self.running = 0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.fromtimestamp(self.world.t, UTC)

    def arm(self, wake: datetime) -> float:
        """Jump to the wake-up time and fire now (the runner's SkipClock, on simulated time)."""
        with self._lock:
            if self.concurrent and self.running:
                return self.REARM_SECONDS
            gap = wake.timestamp() - self.world.t
            if gap > 0:
                # Not world.sleep(): a kill_at would go off in the runner's scheduler thread.
                self.world.t += gap
                self.world.slept += gap
        return 0.0

    def running_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def counted(event: Any, context: Any) -> Any:
            with self._lock:
                self.running += 1
            try:
                return handler(event, context)
            finally:
                with self._lock:
                    self.running -= 1

        return counted


def _sdk_on_simulated_time(world: VirtualClock) -> contextlib.ExitStack:
    """The SDK's own reads of the time (the map's resume times, a suspension's timestamp) on the simulator's."""

    class SimulatedDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(world.t, tz or UTC)

    simulated_time = SimpleNamespace(time=lambda: world.t)
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(sdk_executor, "time", simulated_time))
    stack.enter_context(mock.patch.object(sdk_exceptions, "time", simulated_time))
    simulated_datetime = SimpleNamespace(datetime=SimulatedDatetime, UTC=UTC)
    stack.enter_context(mock.patch.object(sdk_suspend, "datetime", simulated_datetime))
    return stack


@contextlib.contextmanager
def durable_runner(
    world: VirtualClock, handler: Callable[..., Any], concurrent: bool = False
) -> Iterator[DurableFunctionTestRunner]:
    """A DurableFunctionTestRunner whose skipped time is the simulator's time.

    ``concurrent`` is for a fleet whose branches run at once and are timed (the benchmark): time stands still
    while the handler runs (see SimulatedTimeClock).
    """
    clock = SimulatedTimeClock(world, concurrent)
    if concurrent:
        handler = clock.running_handler(handler)
    with contextlib.ExitStack() as stack:
        if concurrent:
            stack.enter_context(_sdk_on_simulated_time(world))
        with mock.patch.object(runner_module, "SkipClock", lambda: clock):
            runner = DurableFunctionTestRunner(handler=handler)
        try:
            yield runner
        finally:
            runner.close()


# The SDK's checkpoint thread polls for its stop signal every 100 ms, so each invocation
# ends up to 100 ms after its handler returned. Real time, not simulated: tests and the
# benchmark shorten it (the benchmark then counts the full 100 ms per invocation).
SDK_SHUTDOWN_POLL_SECONDS = sdk_state._STOP_SIGNAL_POLL_SECONDS


@contextlib.contextmanager
def fast_checkpoint_shutdown() -> Iterator[None]:
    with mock.patch.object(sdk_state, "_STOP_SIGNAL_POLL_SECONDS", 0.001):
        yield


@dataclass
class Invocation:
    seconds: float  # real time spent in the handler (replay, engine, simulated AWS, checkpoints)
    api_calls: int  # ECS / Application Auto Scaling calls the simulator served
    checkpoints: int  # CheckpointDurableExecution calls


@dataclass
class Meter:
    """What each invocation of the durable handler did."""

    invocations: list[Invocation] = field(default_factory=list)
    _checkpoints: int = 0

    def wrap(self, handler: Callable[..., Any], sim: EcsSimulator) -> Callable[..., Any]:
        def metered(event: Any, context: Any) -> Any:
            calls, checkpoints = sum(sim.calls.values()), self._checkpoints
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                self.invocations.append(
                    Invocation(
                        time.perf_counter() - started,
                        sum(sim.calls.values()) - calls,
                        self._checkpoints - checkpoints,
                    )
                )

        return metered

    @contextlib.contextmanager
    def counting_checkpoints(self) -> Iterator[None]:
        original = InMemoryServiceClient.checkpoint

        def checkpoint(client: InMemoryServiceClient, *args: Any, **kwargs: Any) -> Any:
            self._checkpoints += 1
            return original(client, *args, **kwargs)

        with mock.patch.object(InMemoryServiceClient, "checkpoint", checkpoint):
            yield
