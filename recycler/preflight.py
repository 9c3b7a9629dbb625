"""The pre-flight: everything a run reads before it changes anything, its refusals, and the dry-run plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recycler import errors
from recycler.aws import SUSPENDED_FLAGS, ScalableTarget, ServiceReads
from recycler.errors import ConfigError, LockHeld, PreflightError, RecycleError
from recycler.gates import CANCEL_TAG_KEY, service_alarm_names
from recycler.lock import LockRecord, Phase, Snapshot
from recycler.lock_store import DynamoLockStore, lock_key
from recycler.request import RecycleRequest
from recycler.runtime import Clock, iso_seconds
from recycler.selection import Selection, TaskInfo, oldest_first
from recycler.settings import RecycleSettings

# Older versions kept the lock in this service tag. It is never read as a lock now, only reported.
LEGACY_LOCK_TAG_KEY = "ecs-task-recycle:lock"
# Used for the first replacement when no surge measured a start time.
INITIAL_REPLACEMENT_ESTIMATE_SECONDS = 120.0


@dataclass(frozen=True)
class TargetGroup:
    arn: str
    port: int | None


@dataclass(frozen=True)
class Preflight:
    """What the service looked like before the run, and whether a run may touch it. JSON for checkpoints."""

    service_arn: str
    cluster_arn: str
    lock_key: str
    desired_count: int
    running_count: int
    task_definition: str | None
    # The service's running originals (RUNNING, desired RUNNING), oldest first.
    running_tasks: tuple[TaskInfo, ...]
    # Its other tasks (starting or draining): never recycled, never taken for a replacement.
    other_task_arns: tuple[str, ...]
    health_checked: bool
    target_groups: tuple[TargetGroup, ...]
    scalable_target: ScalableTarget | None
    lock: LockRecord | None
    legacy_lock_tag: bool
    # When the pre-flight read the service (ages are measured from here).
    read_at: float
    # The service's deployment alarms, when ECS applies them to its deployments.
    service_alarm_names: tuple[str, ...] = ()
    # The ecs-task-recycle:cancel tag's value, if the service carries one.
    cancel_tag: str | None = None
    # The quickest any running task went from created to started: the first poll after a stop waits this long.
    fastest_start_seconds: float | None = None

    def gating_alarms(self, request: RecycleRequest) -> tuple[str, ...]:
        """The event's alarms and, unless use_service_alarms is false, the service's own deployment alarms."""
        names = request.alarm_names + (self.service_alarm_names if request.use_service_alarms else ())
        return tuple(dict.fromkeys(names))

    @property
    def running_task_arns(self) -> tuple[str, ...]:
        return tuple(t.arn for t in self.running_tasks)

    @property
    def all_task_arns(self) -> tuple[str, ...]:
        return self.running_task_arns + self.other_task_arns

    @property
    def stale_lock(self) -> LockRecord | None:
        """The expired, unreleased lock found: a run died holding it, and its restore is owed."""
        return self.lock if self.lock is not None and self.lock.phase != Phase.RELEASED else None

    def snapshot(self, surge: bool, surge_size: int = 1) -> Snapshot:
        target = self.scalable_target
        if target is None:
            return Snapshot(desired_count=self.desired_count, surge=surge, surge_size=surge_size)
        flags = tuple(bool(target.suspended.get(flag, False)) for flag in SUSPENDED_FLAGS)
        return Snapshot(
            desired_count=self.desired_count,
            surge=surge,
            has_target=True,
            min_capacity=target.min_capacity,
            max_capacity=target.max_capacity,
            suspended=(flags[0], flags[1], flags[2]),
            surge_size=surge_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            # Compact: a 5,000-task pre-flight must fit a 256 KB checkpoint.
            "running_tasks": [[t.arn, t.started_at, t.zone] for t in self.running_tasks],
            "other_task_arns": list(self.other_task_arns),
            "service_alarm_names": list(self.service_alarm_names),
            "target_groups": [{"arn": g.arn, "port": g.port} for g in self.target_groups],
            "scalable_target": self.scalable_target.to_dict() if self.scalable_target else None,
            "lock": self.lock.to_dict() if self.lock else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preflight:
        target, lock = data.get("scalable_target"), data.get("lock")
        return cls(
            **{
                **data,
                "running_tasks": tuple(TaskInfo(*entry) for entry in data["running_tasks"]),
                "other_task_arns": tuple(data["other_task_arns"]),
                "service_alarm_names": tuple(data.get("service_alarm_names") or ()),
                "target_groups": tuple(TargetGroup(g["arn"], g.get("port")) for g in data["target_groups"]),
                "scalable_target": ScalableTarget.from_dict(target) if target else None,
                "lock": LockRecord.from_dict(lock) if lock else None,
            }
        )


def preflight_step(reads: ServiceReads, store: DynamoLockStore | None, clock: Clock) -> dict[str, Any]:
    """The pre-flight as one step's JSON: the Preflight, or its refusal with what the service showed.

    A refusal after the service was found still knows its task count; the report gives it (a durable
    replay rebuilds the refusal from this result, so the count is there on every path).
    """
    seen: dict[str, Any] = {}
    try:
        return {"preflight": read_preflight(reads, store, clock, seen).to_dict()}
    except (PreflightError, ConfigError) as e:
        if not seen:
            raise
        field = e.field if isinstance(e, ConfigError) else None
        problem = e.problem if isinstance(e, ConfigError) else str(e)
        return {"refused": {"error": type(e).__name__, "field": field, "problem": problem, **seen}}


def refusal(refused: dict[str, Any]) -> RecycleError:
    """The error a pre-flight step's refusal stands for."""
    if refused["error"] == ConfigError.__name__:
        return ConfigError(str(refused["field"]), str(refused["problem"]))
    kind = getattr(errors, str(refused["error"]), PreflightError)
    return (kind if isinstance(kind, type) and issubclass(kind, PreflightError) else PreflightError)(refused["problem"])


def read_preflight(
    reads: ServiceReads, store: DynamoLockStore | None, clock: Clock, seen: dict[str, Any] | None = None
) -> Preflight:
    """Read everything the run needs, change nothing; refuse a service the run may not touch.

    ``seen`` gets the service's ARN and counts as soon as it is found, for a refusal to report.

    The lock item is read before the service's desired count and scalable
    target: any run that takes the lock after this read changes its version,
    so our acquire (a compare-and-swap on what we read here) fails. A snapshot
    can therefore never contain another run's surge.
    """
    request = reads.request
    located = reads.describe_service()
    if seen is not None:
        seen.update(
            service_arn=str(located.get("serviceArn", "")),
            desired_count=int(located.get("desiredCount", 0)),
            running_count=int(located.get("runningCount", 0)),
        )
    check_arn_matches(request, located)
    key = lock_key(str(located.get("clusterArn", "")), str(located.get("serviceName", request.service_name)))
    lock = store.read(key) if store is not None else None
    if lock is not None and lock.is_live(clock.now()):
        raise LockHeld(
            f"another run ({lock.owner}) holds the lock on {request.service_name} until {iso_seconds(lock.expires_at)}"
        )
    service = reads.describe_service(include_tags=True)
    _refuse_untouchable(request, service)
    if lock is not None:
        lock.refuse_unsafe_repair(int(service.get("desiredCount", 0)), int(service.get("runningCount", 0)))
    tasks = reads.describe_tasks(reads.list_task_arns())
    running = oldest_first(
        [
            TaskInfo(t["taskArn"], _epoch(t.get("startedAt")), t.get("availabilityZone"))
            for t in tasks
            if t.get("lastStatus") == "RUNNING" and t.get("desiredStatus") == "RUNNING"
        ]
    )
    running_arns = {t.arn for t in running}
    return Preflight(
        service_arn=service["serviceArn"],
        cluster_arn=service.get("clusterArn", ""),
        lock_key=key,
        desired_count=int(service.get("desiredCount", 0)),
        running_count=int(service.get("runningCount", 0)),
        task_definition=service.get("taskDefinition"),
        running_tasks=tuple(running),
        other_task_arns=tuple(sorted(t["taskArn"] for t in tasks if t["taskArn"] not in running_arns)),
        health_checked=reads.has_health_checks(service.get("taskDefinition")),
        target_groups=tuple(
            TargetGroup(lb["targetGroupArn"], lb.get("containerPort"))
            for lb in service.get("loadBalancers", [])
            if lb.get("targetGroupArn")
        ),
        scalable_target=reads.scalable_target(),
        lock=lock,
        legacy_lock_tag=any(t.get("key") == LEGACY_LOCK_TAG_KEY for t in service.get("tags", [])),
        read_at=clock.now(),
        service_alarm_names=service_alarm_names(service),
        cancel_tag=next((t.get("value") for t in service.get("tags", []) if t.get("key") == CANCEL_TAG_KEY), None),
        fastest_start_seconds=_fastest_start(tasks),
    )


def _fastest_start(tasks: list[dict[str, Any]]) -> float | None:
    """The quickest created-to-started time among the tasks, at most the first replacement's estimate.

    A task that sat in PROVISIONING for hours says nothing about the next start: the cap keeps
    one odd task from delaying the first poll.
    """
    starts = [
        started - created
        for t in tasks
        if (started := _epoch(t.get("startedAt"))) is not None
        and (created := _epoch(t.get("createdAt"))) is not None
        and started > created
    ]
    fastest = min(starts, default=None)
    return None if fastest is None else min(fastest, INITIAL_REPLACEMENT_ESTIMATE_SECONDS)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _refuse_untouchable(request: RecycleRequest, service: dict[str, Any]) -> None:
    if service.get("status") != "ACTIVE":
        raise PreflightError(f"service {request.service_name} is {service.get('status')}, not ACTIVE")
    if service.get("schedulingStrategy") == "DAEMON":
        raise PreflightError("DAEMON services run one task per instance and have no desired count to surge")
    controller = (service.get("deploymentController") or {}).get("type", "ECS")
    if controller != "ECS":
        raise PreflightError(
            f"service {request.service_name} uses the {controller} deployment controller; its tasks belong "
            "to task sets that this tool does not manage (only ECS rolling-update services are supported)"
        )
    deployments = service.get("deployments", [])
    if len(deployments) > 1:
        raise PreflightError(
            f"a deployment is in progress ({len(deployments)} deployments at once); "
            "wait for it to finish before recycling"
        )
    if any(d.get("rolloutState") == "IN_PROGRESS" for d in deployments):
        raise PreflightError(
            "a deployment is in progress (its rolloutState is IN_PROGRESS); wait for it to finish before recycling"
        )


def check_arn_matches(request: RecycleRequest, service: dict[str, Any]) -> None:
    """An ARN in the event must name the region and account the session reaches, not just the names."""
    actual = str(service.get("serviceArn", "")).split(":")
    if len(actual) < 6:
        return
    for field_name, (region, account) in request.arn_fields().items():
        for what, given, reached in (("region", region, actual[3]), ("account", account, actual[4])):
            if given != reached:
                raise ConfigError(field_name, f"the ARN's {what} is {given}, but the session reaches {reached}")


def legacy_tag_note() -> str:
    return (
        f"the service carries a {LEGACY_LOCK_TAG_KEY} tag from an older version of this tool; it is not "
        "trusted or used (the lock lives in the lock table): remove it once you have checked the service"
    )


@dataclass(frozen=True)
class Plan:
    """What a dry run says the run would do."""

    tasks_to_stop: tuple[str, ...]
    batches: int
    batch_size: int
    left_alone: dict[str, Any]
    surge: dict[str, Any] | None
    stale_lock_to_repair: dict[str, Any] | None
    lock_table: str | None
    # The CloudWatch alarms that would gate the run (checked just before it starts).
    alarms: tuple[str, ...]
    # Whether a plain invocation would hand the run to the durable function, and why.
    hand_off: dict[str, Any] | None
    estimated_seconds: int
    estimate_basis: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "tasks_to_stop": list(self.tasks_to_stop),
        }


def plan_seconds(
    preflight: Preflight, selection: Selection, request: RecycleRequest, settings: RecycleSettings
) -> float:
    """How long the plan should take: each batch (and the surge) as long as the service's tasks have taken
    to start, plus a poll, wait_time after each batch, and the alarm watch after the last."""
    batches = len(selection.batches)
    surges = 1 if request.maintain_service_state and batches else 0
    start = preflight.fastest_start_seconds or INITIAL_REPLACEMENT_ESTIMATE_SECONDS
    return (
        (batches + surges) * (start + settings.poll_interval_seconds)
        + batches * request.wait_time
        + alarm_watch_seconds(preflight, request, settings, batches)
    )


def alarm_watch_seconds(preflight: Preflight, request: RecycleRequest, settings: RecycleSettings, batches: int) -> int:
    """How long the run watches its alarms after the last batch: only when it recycles and has alarms."""
    return settings.alarm_watch_seconds if batches and preflight.gating_alarms(request) else 0


def make_plan(
    preflight: Preflight,
    request: RecycleRequest,
    settings: RecycleSettings,
    selection: Selection,
    lock_table: str | None,
    hand_off: dict[str, Any] | None,
) -> Plan:
    batches = len(selection.batches)
    surge_size = min(request.batch_size, len(selection.chosen))
    start = preflight.fastest_start_seconds or INITIAL_REPLACEMENT_ESTIMATE_SECONDS
    target = preflight.scalable_target
    surge = None
    if request.maintain_service_state and batches:
        surged = preflight.desired_count + surge_size
        surge = {
            "desired_count": f"{preflight.desired_count} -> {surged}",
            "suspend": ["DynamicScalingInSuspended", "ScheduledScalingSuspended"] if target else [],
            "raise_max_capacity": bool(target and surged > target.max_capacity),
        }
    stale = preflight.stale_lock
    return Plan(
        tasks_to_stop=selection.chosen,
        batches=batches,
        batch_size=request.batch_size,
        left_alone={
            "younger_than_min_task_age": len(selection.too_young),
            "beyond_max_tasks": len(selection.beyond_max),
            "protected": "checked just before each batch is stopped",
        },
        surge=surge,
        stale_lock_to_repair={"owner": stale.owner, "phase": stale.phase, "expired_at": stale.expires_at}
        if stale
        else None,
        lock_table=lock_table,
        alarms=preflight.gating_alarms(request),
        hand_off=hand_off,
        estimated_seconds=round(plan_seconds(preflight, selection, request, settings)),
        estimate_basis=f"{start:.0f}s per batch of replacements (the fastest start among the service's tasks), "
        f"a poll, and wait_time; {batches} batches of up to {request.batch_size}",
    )
