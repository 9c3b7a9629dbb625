"""What a dry run says the run would do: the repair a crashed run left owed, then the recycle, and how long."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

from recycler.model.report import ReportPlan
from recycler.model.request import RecycleRequest
from recycler.model.settings import RecycleSettings
from recycler.run.budget import plan_seconds
from recycler.run.ports import HandOffDecision
from recycler.run.preflight import INITIAL_REPLACEMENT_ESTIMATE_SECONDS, Preflight
from recycler.run.selection import Selection, checkpoint_batches


@dataclass(frozen=True)
class RepairPlan:
    """What the run's repair of a crashed run will do first (recycler.run.rehearsal)."""

    owner: str
    phase: str
    started_at: str
    expired_at: str
    # "from -> to", or None when it stays.
    desired_count: str | None
    scalable_target: str | None
    actions: list[str]
    external_changes: list[str]
    then: str


@dataclass(frozen=True)
class LeftAlone:
    """How many of the service's tasks the run leaves alone, and why."""

    started_at_or_after_started_before: int
    younger_than_min_task_age: int
    beyond_max_tasks: int
    protected: str = "checked just before each batch is stopped"


@dataclass(frozen=True)
class Surge:
    """The surge before the first batch: the desired count "from -> to", the flags suspended, whether Max rises."""

    desired_count: str
    suspend: list[str]
    raise_max_capacity: bool


@dataclass(frozen=True)
class CheckpointPlan:
    """One checkpoint of the plan: reached after batch ``after_batch``, held ``hold_seconds``."""

    percent: int
    after_batch: int
    hold_seconds: int


@dataclass(frozen=True)
class Plan:
    """What a dry run says the run would do: first the repair a crashed run left owed, then the recycle."""

    stale_lock_to_repair: RepairPlan | None
    tasks_to_stop: tuple[str, ...]
    batches: int
    batch_size: int
    left_alone: LeftAlone
    surge: Surge | None
    lock_table: str | None
    # The CloudWatch alarms that would gate the run (checked just before it starts).
    alarms: tuple[str, ...]
    # Whether a plain invocation would hand the run to the durable function, and why.
    hand_off: HandOffDecision | None
    estimated_seconds: int
    estimate_basis: str
    # The run's name among the service's runs: a second start under it while it runs answers already_running.
    run_key: str | None = None
    # Each checkpoint: its percentage, the batch that reaches it, and how long the run holds there.
    checkpoints: tuple[CheckpointPlan, ...] = ()

    def to_dict(self) -> ReportPlan:
        """The report's plan (asdict keeps the field order, and alarms a tuple, as the report always had them).

        ReportPlan and its parts have these dataclasses' fields (tests/test_typed_edges.py checks)."""
        checkpoints = [asdict(checkpoint) for checkpoint in self.checkpoints]
        return cast(ReportPlan, {**asdict(self), "tasks_to_stop": list(self.tasks_to_stop), "checkpoints": checkpoints})


def make_plan(
    preflight: Preflight,
    request: RecycleRequest,
    settings: RecycleSettings,
    selection: Selection,
    lock_table: str | None,
    hand_off: HandOffDecision | None,
    repair: RepairPlan | None = None,
) -> Plan:
    """``preflight`` as the service will be once ``repair`` (recycler.run.rehearsal) has been made."""
    batches = len(selection.batches)
    surge_size = min(request.batch_size, len(selection.chosen))
    start = preflight.fastest_start_seconds or INITIAL_REPLACEMENT_ESTIMATE_SECONDS
    target = preflight.scalable_target
    surge = None
    if request.maintain_service_state and batches:
        surged = preflight.desired_count + surge_size
        surge = Surge(
            desired_count=f"{preflight.desired_count} -> {surged}",
            suspend=["DynamicScalingInSuspended", "ScheduledScalingSuspended"] if target else [],
            raise_max_capacity=bool(target and surged > target.max_capacity),
        )
    return Plan(
        stale_lock_to_repair=repair,
        tasks_to_stop=selection.chosen,
        batches=batches,
        batch_size=request.batch_size,
        left_alone=LeftAlone(
            started_at_or_after_started_before=selection.after_started_before,
            younger_than_min_task_age=len(selection.left_alone) - selection.after_started_before,
            beyond_max_tasks=len(selection.beyond_max),
        ),
        surge=surge,
        lock_table=lock_table,
        alarms=preflight.gating_alarms(request),
        hand_off=hand_off,
        estimated_seconds=round(plan_seconds(preflight, selection, request, settings)),
        estimate_basis=f"{start:.0f}s per batch of replacements (the fastest start among the service's tasks), "
        f"a poll, and wait_time; {batches} batches of up to {request.batch_size}",
        run_key=request.run_key,
        checkpoints=tuple(
            CheckpointPlan(percent, batch, request.checkpoint_delay_seconds)
            for batch, percent in checkpoint_batches(selection, request.checkpoint_percentages).items()
        ),
    )
