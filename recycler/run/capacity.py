"""Capacity: the surge, the autoscaling suspension, and the restore that undoes exactly them.

The restore is a state machine recorded in the lock item (recycler.lock.record.Phase):
each phase is written before the change it announces, so a run killed anywhere
is resumed by the next run's repair from the right place, and nothing is
undone twice. Desired count goes back first: restoring MaxCapacity while the
service may still be surged would clamp it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NotRequired, TypedDict

from recycler.aws.gateway import ScalableTarget, retrying
from recycler.lock.lease import LockHolder
from recycler.lock.record import LockRecord, Phase, Snapshot
from recycler.model.errors import LockCorrupt, RestoreFailed
from recycler.model.report import RecycleReport, RestoredTarget
from recycler.model.runtime import NoResult, iso_seconds
from recycler.model.states import DESIRED_PENDING, Status
from recycler.run.context import RunContext

# The suspension flags a surge switches on, as the report names them when it switches them off again.
_FLAG_WORDS = {"DynamicScalingInSuspended": "scale-in", "ScheduledScalingSuspended": "scheduled scaling"}


@dataclass(frozen=True)
class DesiredRestore:
    """The desired count a restore goes to, decided once from the lock's phase, and what the report says of it."""

    current: int
    target: int
    actions: list[str]
    external: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesiredRestore:
        return cls(int(data["current"]), int(data["target"]), list(data["actions"]), list(data["external"]))


class TargetRestoreJson(TypedDict):
    """TargetRestore as its step's checkpoint holds it."""

    actions: list[str]
    external: list[str]
    restored_target: NotRequired[RestoredTarget]


@dataclass(frozen=True)
class TargetRestore:
    """What undoing a run's changes does to the scalable target: the restore step's result, and the repair's plan."""

    actions: list[str]
    external: list[str]
    # The target as the restore leaves it (the report's restored_target); None when there is nothing to say.
    restored_target: ScalableTarget | None = None
    # The RegisterScalableTarget to make (its flags, and MaxCapacity when it changes); never in the step's result.
    register_flags: dict[str, bool] | None = None
    register_max: int | None = None

    def restored_target_dict(self) -> RestoredTarget | None:
        """As the report gives it."""
        target = self.restored_target
        if target is None:
            return None
        return {
            "min_capacity": target.min_capacity,
            "max_capacity": target.max_capacity,
            "suspended": dict(target.suspended),
        }

    def to_dict(self) -> TargetRestoreJson:
        data: TargetRestoreJson = {"actions": self.actions, "external": self.external}
        restored = self.restored_target_dict()
        if restored is not None:
            data["restored_target"] = restored
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetRestore:
        restored = data.get("restored_target")
        target = (
            ScalableTarget(int(restored["min_capacity"]), int(restored["max_capacity"]), dict(restored["suspended"]))
            if restored is not None
            else None
        )
        return cls(list(data["actions"]), list(data["external"]), target)


class Capacity:
    def __init__(self, context: RunContext, holder: LockHolder) -> None:
        self.gateway = context.gateway
        self.holder = holder
        self.runtime = context.runtime
        self.clock = context.clock
        self.log = context.log
        # The surge's UpdateService returned success (the item may still say "surging" if recording it failed).
        self.surge_landed = False

    @property
    def snapshot(self) -> Snapshot:
        snapshot = self.holder.current.snapshot
        assert snapshot is not None
        return snapshot

    def _backoff(self, seconds: float) -> None:
        """A restore action's wait before it tries again: the lock's heartbeat goes on (a live run's), so the lease
        cannot run out while the run retries. Never between a lock write's own attempts: a beat would move the
        version that write is conditional on."""
        self.clock.sleep(seconds)
        self.holder.beat()

    # ---------------------------------------------------------------- surge

    def surge(self) -> float:
        """Hold off scale-in, widen Max if needed, raise desiredCount; returns when the surge was applied."""
        self.holder.write("mark surging", phase=Phase.SURGING)
        s = self.snapshot
        if s.changes_target():
            self.runtime.step("suspend autoscaling", self._suspend_autoscaling)
        surge_started = self.runtime.step("surge", self._apply_surge)
        self.surge_landed = True
        self.holder.write("mark surged", phase=Phase.SURGED)
        self.log(logging.INFO, f"Desired count raised to {s.desired_count + s.surge_size}; waiting for the extra task")
        return float(surge_started)

    def _suspend_autoscaling(self) -> None:
        s = self.snapshot
        suspended = s.suspended_state()
        for flag in s.flags_to_suspend():
            suspended[flag] = True
        # With a widened Max (raised first so the surged count is not clamped back) when the surge needs one.
        self._register_target(suspended, s.widened_max())

    def _apply_surge(self) -> float:
        s = self.snapshot
        self._set_desired(s.desired_count + s.surge_size)
        return self.clock.now()

    # -------------------------------------------------------------- restore

    def restore(self, report: RecycleReport, stage: str = "restore") -> None:
        """Walk the lock's phases to the end: desired count, then the scalable target, then release.

        Raises LockLost if another run took the service over meanwhile: it restores from its own lock.
        """
        problem: str | None = None
        while problem is None and self.holder.current.phase not in (Phase.TARGET_RESTORED, Phase.RELEASED):
            phase = self.holder.current.phase
            if phase in DESIRED_PENDING:
                problem = self._restore_desired(report, stage)
            elif phase == Phase.DESIRED_RESTORED:
                problem = self._restore_target(report, stage)
            else:  # acquired: nothing was changed
                problem = self.holder.record_phase(f"{stage} mark target restored", phase=Phase.TARGET_RESTORED)
        if problem is not None:
            self._restore_failed(report, problem)
            return
        report.restored = True
        self.log(logging.INFO, "Service restored", actions=report.restore_actions)
        unreleased = self.holder.release(f"{stage} unlock")
        if unreleased is not None:
            message = (
                f"the service is restored, but the lock could not be released ({unreleased}); it expires at "
                f"{iso_seconds(self.holder.current.expires_at)}, and the next run then finds nothing left to undo"
            )
            self.log(logging.ERROR, message)
            _add_error(report, message)

    def _restore_failed(self, report: RecycleReport, problem: str) -> None:
        lock = self.holder.current
        report.restored = False
        message = (
            f"RESTORE FAILED, the service needs attention: {problem}. The lock is left in the lock table "
            f"(phase {lock.phase}, expires {iso_seconds(lock.expires_at)}) so the next run after that repairs it."
        )
        self.log(logging.CRITICAL, message)
        _add_error(report, message)

    def _restore_desired(self, report: RecycleReport, stage: str) -> str | None:
        decision = self.runtime.step(
            f"{stage} desired count plan",
            lambda: retrying(lambda: self._plan_desired_restore().to_dict(), self._backoff, self.log),
        )
        if isinstance(decision, str):
            return decision
        plan = DesiredRestore.from_dict(decision)
        current, target = plan.current, plan.target
        if target != current:
            problem = self.holder.record_phase(
                f"{stage} mark restoring", phase=Phase.RESTORING, restore_from=current, restore_to=target
            )
            if problem is not None:
                return problem
            applied = self.runtime.step(
                f"{stage} desired count",
                lambda: retrying(lambda: self._set_desired(target), self._backoff, self.log),
            )
            if isinstance(applied, str):
                return applied
        report.restore_actions += plan.actions
        report.external_changes += plan.external
        return self.holder.record_phase(
            f"{stage} mark desired restored", phase=Phase.DESIRED_RESTORED, restore_from=None, restore_to=None
        )

    def _plan_desired_restore(self) -> DesiredRestore:
        """Decide the desired count to go back to, from the recorded phase. Read-only, so safe to repeat.

        The decision is taken once (and recorded in the lock as "restoring"
        from/to) before anything is written: re-deciding after an UpdateService
        that landed would find the original count and remove a second task.
        """
        current = int(self.gateway.describe_service().get("desiredCount", 0))
        return desired_restore_plan(self.holder.current, current, self.surge_landed)

    def _set_desired(self, target: int) -> NoResult:
        """Set an absolute desired count: repeating it is harmless. The step's result is empty."""
        self.gateway.set_desired_count(target)
        return {}

    def _restore_target(self, report: RecycleReport, stage: str) -> str | None:
        outcome = self.runtime.step(
            f"{stage} scalable target",
            lambda: retrying(lambda: self._undo_target_changes().to_dict(), self._backoff, self.log),
        )
        if isinstance(outcome, str):
            return outcome
        restore = TargetRestore.from_dict(outcome)
        report.restore_actions += restore.actions
        report.external_changes += restore.external
        report.restored_target = restore.restored_target_dict() or report.restored_target
        return self.holder.record_phase(f"{stage} mark target restored", phase=Phase.TARGET_RESTORED)

    def _undo_target_changes(self) -> TargetRestore:
        """Undo what this run changed on the scalable target, and only that (see target_restore_plan).

        Running this again after it landed changes nothing.
        """
        s = self.snapshot
        if not s.changes_target():
            return TargetRestore([], [])
        outcome = target_restore_plan(s, self.gateway.scalable_target())
        if outcome.register_flags is not None:
            self._register_target(outcome.register_flags, outcome.register_max)
        return outcome

    def _register_target(self, suspended: dict[str, bool], max_capacity: int | None) -> None:
        """RegisterScalableTarget on an existing target changes only the fields given (MinCapacity is never sent)."""
        self.gateway.register_scalable_target(suspended, max_capacity)


def desired_restore_plan(lock: LockRecord, current: int, surge_landed: bool = False) -> DesiredRestore:
    """The desired count a restore from this lock's phase goes to, given the service's count now.

    The repair and a dry run's plan of it decide alike: the plan shows what the repair will do.
    ``surge_landed``: this very run saw its surge's UpdateService succeed.
    """
    target, external = lock.desired_restore(current, surge_landed)
    if target == 0 < current:
        # Every run that surged found at least one task wanted, so no restore goes to 0 (and none records a
        # restore to 0, which the lock's checks refuse): others scaled in to the surge, and they keep a task.
        target = 1
        external.append(
            f"desiredCount would have gone {current} -> 0; a restore never takes a running service to 0, "
            "so it is left at 1"
        )
    if not 0 <= target <= current:
        # A restore only ever takes away what a surge added: never below zero, never above now.
        raise LockCorrupt(
            f"the lock of {lock.owner} would set desiredCount {current} -> {target}, outside 0..{current}: "
            "refusing to apply it. Check the service by hand, then delete the lock item"
        )
    actions = [f"desiredCount {current} -> {target}"] if target != current else []
    return DesiredRestore(current, target, actions, external)


def target_restore_plan(s: Snapshot, target: ScalableTarget | None) -> TargetRestore:
    """What undoing a run's changes does to the scalable target as it is now; ``register`` is the call to make.

    The run switched on the suspension flags that were off, and may have
    raised MaxCapacity for the surge. Those go back; whatever another actor
    changed meanwhile (Min, Max, flags the run did not touch) is kept and
    reported. The repair and a dry run's plan of it decide alike.
    """
    if not s.changes_target():
        return TargetRestore([], [])
    if target is None:
        return TargetRestore([], ["the scalable target was deregistered during the run; nothing to undo"])
    now_min, now_max = target.min_capacity, target.max_capacity
    flags = dict(target.suspended)
    for flag in s.flags_to_suspend():
        flags[flag] = False
    widened = s.widened_max()
    new_max = s.max_capacity if widened is not None and now_max == widened else now_max
    external: list[str] = []
    if now_min != s.min_capacity:
        external.append(
            f"MinCapacity was changed by another actor during the run ({s.min_capacity} -> {now_min}); kept"
        )
    if now_max not in (s.max_capacity, widened):
        external.append(
            f"MaxCapacity was changed by another actor during the run ({s.max_capacity} -> {now_max}); kept"
        )
    if now_min > new_max:
        external.append(f"MinCapacity {now_min} is above MaxCapacity {new_max}: MaxCapacity left at {now_max}")
        new_max = now_max
    restored_target = ScalableTarget(now_min, new_max, flags)
    if flags == target.suspended and new_max == now_max:
        return TargetRestore([], external, restored_target)
    resumed = [_FLAG_WORDS[flag] for flag in s.flags_to_suspend() if target.suspended.get(flag)]
    changes = [f"MaxCapacity {now_max} -> {new_max}"] if new_max != now_max else []
    if resumed:
        changes.append(f"{' and '.join(resumed)} resumed")
    action = "scalable target: " + "; ".join(changes)
    return TargetRestore(
        [action], external, restored_target, register_flags=flags, register_max=new_max if new_max != now_max else None
    )


def _add_error(report: RecycleReport, message: str) -> None:
    """A restore problem joins whatever stopped the run; the run is failed either way."""
    report.error = f"{report.error}; {message}" if report.error else message
    report.error_type = report.error_type or RestoreFailed.__name__
    report.status = Status.FAILED
