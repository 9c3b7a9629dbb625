"""What a run returns: the report, as the handler returns it and the email shows it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from recycler.model.errors import LockHolderFacts
from recycler.model.states import Status

# The lists of TaskResult, rebuilt by from_dict.
_TASK_LISTS = ("tasks_recycled", "tasks_skipped", "tasks_stopped_not_replaced")


class RestoredTarget(TypedDict):
    """The scalable target as the restore left it."""

    min_capacity: int
    max_capacity: int
    suspended: dict[str, bool]


class PlannedRepair(TypedDict):
    """The plan's stale_lock_to_repair (recycler.run.plan.RepairPlan as JSON)."""

    owner: str
    phase: str
    started_at: str
    expired_at: str
    desired_count: str | None
    scalable_target: str | None
    actions: list[str]
    external_changes: list[str]
    then: str


class PlannedLeftAlone(TypedDict):
    """The plan's left_alone (recycler.run.plan.LeftAlone as JSON)."""

    started_at_or_after_started_before: int
    younger_than_min_task_age: int
    beyond_max_tasks: int
    protected: str


class PlannedSurge(TypedDict):
    """The plan's surge (recycler.run.plan.Surge as JSON)."""

    desired_count: str
    suspend: list[str]
    raise_max_capacity: bool


class PlannedCheckpoint(TypedDict):
    """One of the plan's checkpoints (recycler.run.plan.CheckpointPlan as JSON)."""

    percent: int
    after_batch: int
    hold_seconds: int


class PlannedHandOff(TypedDict):
    """The plan's hand_off (recycler.run.ports.HandOffDecision as JSON)."""

    would_hand_off: bool
    estimated_seconds: int
    available_seconds: int | None
    durable_alias: str
    execution_name: str


class ReportPlan(TypedDict):
    """A dry run's plan (recycler.run.plan.Plan as JSON): the repair owed, then the recycle, and how long."""

    stale_lock_to_repair: PlannedRepair | None
    tasks_to_stop: list[str]
    batches: int
    batch_size: int
    left_alone: PlannedLeftAlone
    surge: PlannedSurge | None
    lock_table: str | None
    # A tuple, as the report always had it (the JSON is a list all the same).
    alarms: tuple[str, ...]
    hand_off: PlannedHandOff | None
    estimated_seconds: int
    estimate_basis: str
    run_key: str | None
    checkpoints: list[PlannedCheckpoint]


class HandOffReport(TypedDict):
    """The report's handed_off (recycler.run.ports.HandedOff as JSON): the durable execution, how to follow it."""

    execution_name: str
    durable_alias: str
    already_started: bool
    follow: str
    # Only when this invocation started the execution.
    status_code: NotRequired[int | None]


class LockHolderReport(TypedDict):
    """The report's lock_holder: who holds the lock that refused the run (expires_at in ISO 8601 UTC)."""

    owner: str | None
    phase: str | None
    expires_at: str | None
    # Only when the run is already running (a second start under its run_key): its key and how far it is.
    run_key: NotRequired[str]
    recycled: NotRequired[int]
    total: NotRequired[int]


class NotificationResult(TypedDict):
    """What the notifier did (recycler.notification.notifier.notify); the detail never holds a password."""

    status: Literal["sent", "failed", "not_configured", "skipped"]
    detail: str
    recipients: int
    # Only when sent.
    message_id: NotRequired[str]


@dataclass
class TaskResult:
    index: int
    old_task_arn: str
    new_task_arn: str | None
    seconds: float
    # Why a task was skipped: younger than the minimum age, protected until T, stopped by someone else.
    note: str | None = None
    # The batch it was stopped in (None: it never was).
    batch: int | None = None


@dataclass
class RecycleReport:
    status: Status
    cluster: str
    service: str
    region: str | None = None
    account: str | None = None
    original_desired_count: int | None = None
    # How many tasks the run set out to recycle; None until the pre-flight has counted them.
    task_total: int | None = None
    tasks_recycled: list[TaskResult] = field(default_factory=list)
    tasks_skipped: list[TaskResult] = field(default_factory=list)
    tasks_remaining: list[str] = field(default_factory=list)
    # Originals the run stopped whose replacement never served (note: the replacement's stoppedReason, or
    # why the wait ended): ECS replaces them once the cause is fixed, so they are neither recycled nor remaining.
    tasks_stopped_not_replaced: list[TaskResult] = field(default_factory=list)
    # Replacements that stopped before serving (TaskFailedToStart and the like).
    failed_replacements: int = 0
    restored: bool | None = None
    restore_actions: list[str] = field(default_factory=list)
    restored_target: RestoredTarget | None = None
    external_changes: list[str] = field(default_factory=list)
    started_at: str | None = None
    duration_seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    plan: ReportPlan | None = None
    # A dry run's: each refusal the real run would meet, as {"check": ..., "problem": ...}.
    would_refuse: list[dict[str, str]] | None = None
    # When a plain invocation handed the run to the durable function: its execution name and how to follow it.
    handed_off: HandOffReport | None = None
    # A run refused because another holds the lock: the holder's owner, phase and expiry (ISO 8601 UTC).
    lock_holder: LockHolderReport | None = None
    notification: NotificationResult | None = None
    request_id: str | None = None
    log_group: str | None = None
    log_stream: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("plan", "would_refuse", "handed_off", "lock_holder"):
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecycleReport:
        """The report back from to_dict (after masking, which copies every string)."""
        values = dict(data)
        for key in _TASK_LISTS:
            values[key] = [TaskResult(**task) for task in values[key]]
        values["status"] = Status(values["status"])
        return cls(**values)

    def held_by(self, holder: LockHolderFacts) -> None:
        """The run that holds the lock; and the desired count its snapshot keeps (the live one has its surge)."""
        self.lock_holder = {
            "owner": holder.get("owner"),
            "phase": holder.get("phase"),
            "expires_at": holder.get("expires_at"),
        }
        counted = holder.get("snapshot_desired_count")
        if counted is not None:
            self.original_desired_count = int(counted)

    def found(self, service_arn: str, desired_count: int) -> None:
        """What the report knows once the service is found: its region, account and desired count."""
        arn_parts = service_arn.split(":")
        self.region = arn_parts[3] if len(arn_parts) > 4 else self.region
        self.account = arn_parts[4] if len(arn_parts) > 4 else None
        self.original_desired_count = desired_count

    def account_for(self, left_alone: Iterable[tuple[str, str]], selected: Iterable[str]) -> None:
        """Every original found in exactly one list: those left alone are skipped, the others not listed remain."""
        listed = set(self.listed_arns())
        self.tasks_skipped += [TaskResult(0, arn, None, 0.0, note) for arn, note in left_alone if arn not in listed]
        self.tasks_remaining += [arn for arn in selected if arn not in listed]

    def listed_arns(self) -> list[str]:
        """Every original the report names, in its four lists (one each, when the report is right)."""
        return (
            [t.old_task_arn for t in self.tasks_recycled]
            + [t.old_task_arn for t in self.tasks_skipped]
            + list(self.tasks_remaining)
            + [t.old_task_arn for t in self.tasks_stopped_not_replaced]
        )
