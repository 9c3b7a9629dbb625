"""The recycle itself: batch after batch, stop the tasks, wait for their replacements, pause.

Before each batch, one step checks that the time left still fits one more
batch and the restore, skips the tasks that protected themselves (ECS task
scale-in protection, one GetTaskProtection call per batch), and stops the
others. The batch is done when every task it stopped has a healthy
replacement, tracked by identity (recycler.run.watch); then comes wait_time.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from recycler.lock.lease import LockHolder
from recycler.lock.record import Progress
from recycler.model.errors import ReplacementFailed, TimeBudgetExhausted, clip
from recycler.model.progress import LiveProgress
from recycler.model.report import RecycleReport, TaskResult
from recycler.model.request import DEFAULT_WAIT_TIME
from recycler.run.budget import next_batch_seconds
from recycler.run.context import RunContext
from recycler.run.events import RunEvents
from recycler.run.gates import StopReason, stop_error
from recycler.run.hold import Hold
from recycler.run.ports import RunPolicy
from recycler.run.selection import Selection, checkpoint_batches
from recycler.run.watch import STOP_REASON, ReplacementWatch, WatchState


@dataclass(frozen=True)
class Skipped:
    """A task of the batch that was not stopped by this run, and why."""

    arn: str
    note: str


@dataclass(frozen=True)
class BatchDecision:
    """What the step before a batch decided: the time is out, a cancel or an alarm stops the run (reason),
    or the batch's tasks were stopped (and some skipped). A step's result, so JSON both ways."""

    action: Literal["out_of_time", "stop", "stopped"]
    remaining: float = 0.0
    needed: float = 0.0
    reason: StopReason | None = None
    stopped: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    stopped_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        if self.action == "out_of_time":
            return {"action": self.action, "remaining": self.remaining, "needed": self.needed}
        if self.action == "stop":
            return {"action": self.action, "reason": self.reason.to_dict() if self.reason else None}
        skipped = [{"arn": s.arn, "note": s.note} for s in self.skipped]
        return {"action": self.action, "stopped": self.stopped, "skipped": skipped, "stopped_at": self.stopped_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchDecision:
        reason = data.get("reason")
        return cls(
            action=data["action"],
            remaining=data.get("remaining", 0.0),
            needed=data.get("needed", 0.0),
            reason=StopReason.from_dict(reason) if reason else None,
            stopped=list(data.get("stopped", [])),
            skipped=[Skipped(s["arn"], s["note"]) for s in data.get("skipped", [])],
            stopped_at=data.get("stopped_at", 0.0),
        )


class CarryOnEvent(TypedDict):
    """The event that carries on a run the time budget stopped: the request's fields that differ from the default."""

    cluster_name: str
    service_name: str
    maintain_service_state: NotRequired[bool]
    wait_time: NotRequired[int]
    batch_size: NotRequired[int]
    alarm_names: NotRequired[list[str]]
    use_service_alarms: NotRequired[bool]
    hand_off: NotRequired[bool]
    min_task_age_seconds: NotRequired[int]
    started_before: NotRequired[str]
    max_tasks: NotRequired[int]
    checkpoint_percentages: NotRequired[list[int]]
    checkpoint_delay_seconds: NotRequired[int]


class BatchRunner:
    def __init__(
        self,
        context: RunContext,
        policy: RunPolicy,
        selection: Selection,
        watch: ReplacementWatch,
        holder: LockHolder,
        events: RunEvents,
    ) -> None:
        self.context = context
        self.request = context.request
        self.settings = context.settings
        self.selection = selection
        self.gateway = context.gateway
        self.watch = watch
        self.holder = holder
        self.runtime = context.runtime
        self.clock = context.clock
        self.log = context.log
        # Alarms and cancel: the watch's own, checked again before each batch.
        self.gates = watch.gates
        self.started = context.started
        self.policy = policy
        # Each batch's event, once its replacements serve.
        self.events = events
        # The batch after which each checkpoint is reached, and its percentage.
        self.checkpoints = checkpoint_batches(selection, context.request.checkpoint_percentages)

    def run(self, report: RecycleReport) -> None:
        done = 0
        for number, batch in enumerate(self.selection.batches, start=1):
            first = done + 1
            step = functools.partial(self._stop_batch_step, batch, first)
            decision = BatchDecision.from_dict(self.runtime.step(f"stop batch {number}", step))
            if decision.action == "out_of_time":
                self._leave(report, done)
                raise TimeBudgetExhausted(self._out_of_time(decision, number, done))
            if decision.reason is not None:
                self._leave(report, done)
                raise stop_error(decision.reason)
            for skipped in decision.skipped:
                index = first + batch.index(skipped.arn)
                report.tasks_skipped.append(TaskResult(index, skipped.arn, None, 0.0, skipped.note, number))
                self.log(logging.WARNING, f"Task {index} skipped: {skipped.note}", task_arn=skipped.arn)
            stopped = decision.stopped
            if stopped:
                try:
                    new = self.watch.wait(f"replacements {number}", decision.stopped_at, len(stopped))
                except TimeBudgetExhausted as e:
                    self._not_replaced(report, batch, first, number, stopped, e)
                    self._leave(report, done)
                    raise self.resumable(e, len(self.selection.chosen) - done - len(stopped)) from e
                except Exception as e:
                    self._not_replaced(report, batch, first, number, stopped, e)
                    self._leave(report, done)
                    raise
                self._record_batch(report, batch, first, number, stopped, new)
                self._tell(report, number)
            done += len(batch)
            self.events.batch_completed(report, number)
            halt = new.stop if stopped else None
            if stopped and halt is None and self.request.wait_time:
                self.runtime.sleep(f"wait after batch {number}", self.request.wait_time)
            # After the pause, just before the next batch's stops: the renewal is the fence. A run paused
            # past its lock's expiry, and taken over meanwhile, stops here (LockLost) and stops no task.
            self.holder.write(f"renew lock {number}", progress=self._progress(report, number))
            if halt is not None:
                # An alarm fired or a cancel came while this batch's replacements started: they serve now.
                self._leave(report, done)
                raise stop_error(halt)
            if number in self.checkpoints:
                self._checkpoint(report, number, done)
        self._leave(report, done)
        Hold(self.context, self.gates, self.holder).alarm_watch()

    def _leave(self, report: RecycleReport, done: int) -> None:
        """What the run did not recycle: the chosen tasks it did not get to, and those beyond max_tasks.

        Not those of the batch under way that it skipped or stopped: they are listed once, where they are."""
        listed = set(report.listed_arns())
        unreached = [a for a in self.selection.chosen[done:] if a not in listed]
        report.tasks_remaining = unreached + list(self.selection.beyond_max)

    @staticmethod
    def _not_replaced(
        report: RecycleReport,
        batch: tuple[str, ...],
        first: int,
        number: int,
        stopped: list[str],
        error: Exception,
    ) -> None:
        """The batch's stopped tasks whose replacements had not all served when the wait ended: ECS still owes
        them a replacement. A failed start's stoppedReason says why; otherwise the error does."""
        reason = error.stopped_reason if isinstance(error, ReplacementFailed) else None
        note = f"its replacement stopped: {reason}" if reason else f"no replacement served: {clip(str(error), 300)}"
        for arn in stopped:
            report.tasks_stopped_not_replaced.append(TaskResult(first + batch.index(arn), arn, None, 0.0, note, number))

    def _checkpoint(self, report: RecycleReport, number: int, done: int) -> None:
        """A checkpoint reached: say so, then hold with the gates watched; what stops the hold stops the run."""
        percent, seconds = self.checkpoints[number], self.request.checkpoint_delay_seconds
        self.events.checkpoint_reached(report, number, percent)
        self.log(logging.INFO, f"Checkpoint {percent}% reached after batch {number}: holding {seconds}s")
        self.context.tell(LiveProgress(event=f"checkpoint {percent}%: holding {seconds}s"))
        try:
            Hold(self.context, self.gates, self.holder).hold(f"checkpoint {percent}", seconds, f"checkpoint {percent}%")
        except TimeBudgetExhausted as e:
            self._leave(report, done)
            raise self.resumable(e, len(self.selection.chosen) - done) from e
        except Exception:
            self._leave(report, done)
            raise

    def _record_batch(
        self,
        report: RecycleReport,
        batch: tuple[str, ...],
        first: int,
        number: int,
        stopped: list[str],
        new: WatchState,
    ) -> None:
        """Each stopped task and its replacement (paired in the order they served), logged before the wait."""
        self.watch.served(new)
        report.failed_replacements += int(new.failures)
        for old_arn, new_arn in zip(stopped, new.new_task_arns, strict=True):
            index, seconds = first + batch.index(old_arn), round(new.seconds, 1)
            report.tasks_recycled.append(TaskResult(index, old_arn, new_arn, seconds, batch=number))
            self.log(
                logging.INFO,
                f"Task {index} recycled, waiting {self.request.wait_time}s",
                task_arn=old_arn,
                new_task_arn=new_arn,
                seconds=seconds,
                batch=number,
            )

    def _tell(self, report: RecycleReport, number: int) -> None:
        """How far the run is, and when it should end: each batch left as long as the slowest so far, plus its pause."""
        left = len(self.selection.batches) - number
        eta = left * (self.watch.estimate() + self.request.wait_time)
        self.context.tell(
            LiveProgress(
                recycled=len(report.tasks_recycled), total=len(self.selection.chosen), batch=number, eta_seconds=eta
            )
        )

    def _progress(self, report: RecycleReport, batch: int) -> Progress:
        return Progress(
            recycled=len(report.tasks_recycled),
            total=len(self.selection.chosen),
            batch=batch,
            updated_at=int(self.clock.now()),
        )

    def _stop_batch_step(self, batch: tuple[str, ...], first: int) -> dict[str, Any]:
        """The decision's JSON: the step's checkpointed result, from which a replay rebuilds the decision."""
        return self._stop_batch(batch, first).to_dict()

    def _stop_batch(self, batch: tuple[str, ...], first: int) -> BatchDecision:
        """If the time left fits one more batch, and no cancel or alarm says stop: skip the protected
        tasks, stop the others. One step."""
        remaining = self.runtime.remaining_seconds()
        last = first - 1 + len(batch) == len(self.selection.chosen)
        alarms = last and self.gates is not None and bool(self.gates.alarm_names)
        number = self.selection.batches.index(batch) + 1
        hold = self.request.checkpoint_delay_seconds if number in self.checkpoints else 0
        needed = next_batch_seconds(self.policy.batch_fit, self.watch.estimate(), self.request, self.settings, alarms)
        needed += hold
        if remaining is not None and remaining < needed:
            return BatchDecision("out_of_time", remaining=remaining, needed=needed)
        if self.gates is not None:
            stop = self.gates.stop_reason(self.gateway.describe_service(include_tags=True))
            if stop is not None:
                return BatchDecision("stop", reason=stop)
        protected = self.gateway.task_protection(list(batch))
        stopped: list[str] = []
        skipped: list[Skipped] = []
        for offset, arn in enumerate(batch):
            if arn in protected:
                skipped.append(Skipped(arn, f"protected (task scale-in protection) until {protected[arn]}"))
                continue
            self.log(logging.INFO, f"Recycling task {first + offset}/{len(self.selection.chosen)}: {arn}", task_arn=arn)
            reason = self.gateway.stop_task(arn, STOP_REASON)
            if reason and reason != STOP_REASON:
                skipped.append(Skipped(arn, f"stopped by someone else: {reason}"))
                continue
            stopped.append(arn)
        return BatchDecision("stopped", stopped=stopped, skipped=skipped, stopped_at=self.clock.now())

    def _out_of_time(self, decision: BatchDecision, number: int, done: int) -> str:
        remaining = len(self.selection.chosen) - done
        # The count of tasks recycled is the report's (and the summary's): said once, not again here.
        return (
            f"the time budget ({decision.remaining:.0f}s left, the next batch needs about "
            f"{decision.needed:.0f}s) does not fit batch {number}. {self._carry_on(remaining)}"
        )

    def resumable(self, error: TimeBudgetExhausted, unreached: int) -> TimeBudgetExhausted:
        """The time ran out during a wait (a batch's or the surge's): the same error, with the event that carries on."""
        return TimeBudgetExhausted(f"{error}. {self._carry_on(unreached)}")

    def _carry_on(self, unreached: int) -> str:
        resume = json.dumps(self._resume_event(unreached))
        return f"{unreached} tasks remain: carry on with the event {resume}, or {self.policy.out_of_time_hint}"

    def _resume_event(self, unreached: int) -> CarryOnEvent:
        """The event that carries on where this run stopped: what it replaced started at or after started_before."""
        request = self.request
        event: CarryOnEvent = {"cluster_name": request.cluster, "service_name": request.service}
        if not request.maintain_service_state:
            event["maintain_service_state"] = False
        if request.wait_time != DEFAULT_WAIT_TIME:
            event["wait_time"] = request.wait_time
        if request.batch_size != 1:
            event["batch_size"] = request.batch_size
        # The gates this run had: a re-invocation must not lose them.
        if request.alarm_names:
            event["alarm_names"] = list(request.alarm_names)
        if not request.use_service_alarms:
            event["use_service_alarms"] = False
        if not request.hand_off:
            event["hand_off"] = False
        if request.min_task_age_seconds:
            event["min_task_age_seconds"] = request.min_task_age_seconds
        if request.checkpoint_percentages:
            # Of the tasks the carry-on recycles: its own share, as a new refresh would count it.
            event["checkpoint_percentages"] = list(request.checkpoint_percentages)
            event["checkpoint_delay_seconds"] = request.checkpoint_delay_seconds
        # Every task this run (or an earlier one of the chain) started, started at or after this.
        event["started_before"] = request.carry_on_started_before(self.started)
        if request.max_tasks is not None:
            # The tasks this run did not get to; those beyond max_tasks were never its business.
            event["max_tasks"] = max(1, unreached)
        return event
