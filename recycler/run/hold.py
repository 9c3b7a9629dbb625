"""A hold: the run waits with its gates watched and its lock renewed, and no task stopped meanwhile.

Two holds: the alarm watch after the last batch (``alarm_watch_seconds``), and a checkpoint
(``checkpoint_percentages``, ``checkpoint_delay_seconds``), as EC2 instance refresh has them. An alarm that
fires, or is deleted, stops the run as failed; a cancel (or the CLI's Ctrl-C) stops it as cancelled at once:
no replacement is in flight during a hold, so the restore follows. The lock is renewed at least once per
replacement timeout (and on the heartbeat, for a run in one process), and a hold the time budget cannot
finish stops where it is, so the restore still fits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recycler.lock.lease import LockHolder
from recycler.model.errors import TimeBudgetExhausted
from recycler.run.budget import restore_still_fits
from recycler.run.context import RunContext
from recycler.run.gates import Gates, stop_error


@dataclass
class AlarmWatch:
    """A hold's state between polls: whether this stretch is held to its end."""

    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlarmWatch:
        return cls(done=bool(data.get("done")))


class Hold:
    """Holds of one run: each a named wait, in stretches no longer than a replacement's timeout."""

    def __init__(self, context: RunContext, gates: Gates | None, holder: LockHolder) -> None:
        self.context = context
        self.gates = gates
        self.holder = holder

    def hold(self, name: str, seconds: int, what: str) -> None:
        """Wait ``seconds`` (``name`` the steps' names, ``what`` the hold as an error says it), watching the gates."""
        context, gates = self.context, self.gates
        runtime, clock, settings = context.runtime, context.clock, context.settings
        since = runtime.step(f"{name} start", clock.now)

        def watcher(until: float) -> Callable[[AlarmWatch], AlarmWatch]:
            def check(state: AlarmWatch) -> AlarmWatch:
                if gates is not None:
                    reason = gates.stop_reason(context.gateway.describe_service(include_tags=True))
                    if reason is not None:
                        raise stop_error(reason)
                held = clock.now() - since
                if not restore_still_fits(runtime.remaining_seconds(), settings):
                    raise TimeBudgetExhausted(f"the time budget ran out {held:.0f}s into the {seconds}s {what}")
                return AlarmWatch(done=held >= until)

            return check

        stretch = settings.replacement_timeout_seconds
        for part in range(1, math.ceil(seconds / stretch) + 1):
            if part > 1:
                self.holder.write(f"renew lock during {name} {part}")
            until = min(seconds, part * stretch)
            runtime.wait_until(f"{name} {part}", watcher(until), AlarmWatch(), settings.poll_interval_seconds)

    def alarm_watch(self) -> None:
        """After the last batch, keep watching the alarms for alarm_watch_seconds: one that fires fails the run."""
        seconds, names = self.context.settings.alarm_watch_seconds, self.gates.alarm_names if self.gates else ()
        if not names or not seconds:
            return
        self.context.log(logging.INFO, f"Watching {len(names)} alarms for {seconds}s after the last task")
        try:
            self.hold("alarm watch", seconds, "alarm watch")
        except TimeBudgetExhausted as e:
            raise TimeBudgetExhausted(
                f"every task was recycled, but {e}: the alarms were not watched to the end"
            ) from e
