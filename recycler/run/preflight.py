"""The pre-flight: everything a run reads before it changes anything, and its refusals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from recycler.aws.gateway import SUSPENDED_FLAGS, ScalableTarget, ServiceGateway
from recycler.aws.services import service_alarm_names
from recycler.lock.record import LockRecord, Phase, Snapshot
from recycler.lock.store import DynamoLockStore, holder_facts, lock_key
from recycler.model import errors
from recycler.model.errors import ConfigError, LockCorrupt, LockHeld, LockHolderFacts, PreflightError, RecycleError
from recycler.model.request import RecycleRequest
from recycler.model.runtime import Clock, iso_seconds
from recycler.run.gates import CANCEL_TAG_KEY
from recycler.run.selection import Selection, TaskInfo, oldest_first, select
from recycler.run.service_checks import check_arn_matches, untouchable

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef, TaskTypeDef

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

    def select(self, request: RecycleRequest) -> Selection:
        """The tasks this run recycles, in batches, and those it leaves alone: made once per run."""
        return select(
            self.running_tasks,
            self.read_at,
            request.batch_size,
            request.min_task_age_seconds,
            request.max_tasks,
            started_before=request.started_before,
        )

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
        """The service as the lock records it before the surge; none of a service at desiredCount 0."""
        if self.desired_count < 1:
            # Its snapshot would say 0 tasks wanted, and no replacement would ever come for a stopped task.
            raise PreflightError(
                f"desiredCount is 0 while {len(self.running_tasks)} task(s) still run: the service is being "
                "scaled in, so there is nothing to recycle"
            )
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


@dataclass(frozen=True)
class Refusal:
    """A pre-flight that refused the service after finding it: the error, and what the service showed."""

    error: str
    field: str | None
    problem: str
    service_arn: str
    desired_count: int
    running_count: int
    # The lock's holder, when another run's lock refused this one.
    lock_holder: LockHolderFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        found = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "lock_holder"}
        return {**found, "lock_holder": self.lock_holder} if self.lock_holder else found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Refusal:
        return cls(**data)

    def exception(self) -> RecycleError:
        """The error this refusal stands for."""
        if self.error == ConfigError.__name__:
            return ConfigError(str(self.field), self.problem)
        if self.error == LockHeld.__name__:
            # With who holds it: a second start of the same run tells it from that.
            return LockHeld(self.problem, self.lock_holder)
        return errors.rebuilt(self.error, self.problem, PreflightError) or PreflightError(self.problem)


@dataclass(frozen=True)
class PreflightOutcome:
    """The pre-flight as one step's result: the Preflight, or its refusal (JSON: one key, preflight or refused)."""

    preflight: Preflight | None = None
    refused: Refusal | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.refused is not None:
            return {"refused": self.refused.to_dict()}
        assert self.preflight is not None
        return {"preflight": self.preflight.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreflightOutcome:
        if "refused" in data:
            return cls(refused=Refusal.from_dict(data["refused"]))
        return cls(preflight=Preflight.from_dict(data["preflight"]))


@dataclass(frozen=True)
class ServiceSeen:
    """The service as the pre-flight found it, before any check could refuse it."""

    service_arn: str
    desired_count: int
    running_count: int


def preflight_step(gateway: ServiceGateway, store: DynamoLockStore | None, clock: Clock) -> PreflightOutcome:
    """The pre-flight as one step (its JSON: PreflightOutcome.to_dict): the Preflight, or its refusal with what the
    service showed.

    A refusal after the service was found still knows its task count; the report gives it (a durable
    replay rebuilds the refusal from this result, so the count is there on every path).
    """
    seen: list[ServiceSeen] = []
    try:
        return PreflightOutcome(preflight=read_preflight(gateway, store, clock, seen))
    except (PreflightError, ConfigError) as e:
        if not seen:
            raise
        field = e.field if isinstance(e, ConfigError) else None
        problem = e.problem if isinstance(e, ConfigError) else str(e)
        holder = e.holder if isinstance(e, LockHeld) and e.holder else None
        refused = Refusal(type(e).__name__, field, problem, lock_holder=holder, **asdict(seen[0]))
        return PreflightOutcome(refused=refused)


def read_preflight(
    gateway: ServiceGateway,
    store: DynamoLockStore | None,
    clock: Clock,
    seen: list[ServiceSeen] | None = None,
    would_refuse: list[dict[str, str]] | None = None,
) -> Preflight:
    """Read everything the run needs, change nothing; refuse a service the run may not touch.

    ``seen`` gets the service's ARN and counts as soon as it is found, for a refusal to report.
    ``would_refuse``, given by a dry run, collects the refusals as ``{"check", "problem"}`` instead of
    raising the first, so that every check is made (a lock it cannot read is then left out).

    The lock item is read before the service's desired count and scalable
    target: any run that takes the lock after this read changes its version,
    so our acquire (a compare-and-swap on what we read here) fails. A snapshot
    can therefore never contain another run's surge.
    """
    request = gateway.request

    def refuse(check: str, error: RecycleError) -> None:
        if would_refuse is None:
            raise error
        would_refuse.append({"check": check, "problem": str(error)})

    # A long-form service ARN (each of a fleet's runs is given its own) names the lock's item: no call to find it.
    known_cluster = request.cluster_arn_from_service
    located = None if known_cluster else _located(gateway, seen)
    key = _lock_key_of(located, request) if located else lock_key(str(known_cluster), request.service_name)
    lock = _read_lock(store, key, refuse)
    service = _located(gateway, seen, include_tags=True) if known_cluster else None
    if lock is not None and lock.is_live(clock.now()):
        refuse(
            "lock",
            LockHeld(
                f"another run ({lock.owner}) holds the lock on {request.service_name} until "
                f"{iso_seconds(lock.expires_at)}",
                holder_facts(lock),
            ),
        )
    service = service or gateway.describe_service(include_tags=True)
    for check, error in untouchable(request, service):
        refuse(check, error)
    return _preflight_of(gateway, service, key, lock, clock)


def _located(gateway: ServiceGateway, seen: list[ServiceSeen] | None, include_tags: bool = False) -> ServiceTypeDef:
    """The service found (its ARN and counts kept for a refusal to report), in the session's region and account."""
    service = gateway.describe_service(include_tags=include_tags)
    if seen is not None:
        counts = int(service.get("desiredCount", 0)), int(service.get("runningCount", 0))
        seen.append(ServiceSeen(str(service.get("serviceArn", "")), *counts))
    check_arn_matches(gateway.request, service)
    return service


def _lock_key_of(service: ServiceTypeDef, request: RecycleRequest) -> str:
    return lock_key(str(service.get("clusterArn", "")), str(service.get("serviceName", request.service_name)))


def _preflight_of(
    gateway: ServiceGateway, service: ServiceTypeDef, key: str, lock: LockRecord | None, clock: Clock
) -> Preflight:
    """The service as read (with its tags), its tasks and the lock: what the run knows before it changes anything."""
    tasks = gateway.describe_tasks(gateway.list_task_arns())
    running = oldest_first(
        [
            TaskInfo(t["taskArn"], epoch(t.get("startedAt"), None), t.get("availabilityZone"))
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
        health_checked=gateway.has_health_checks(service.get("taskDefinition")),
        target_groups=tuple(
            TargetGroup(lb["targetGroupArn"], lb.get("containerPort"))
            for lb in service.get("loadBalancers", [])
            if lb.get("targetGroupArn")
        ),
        scalable_target=gateway.scalable_target(),
        lock=lock,
        legacy_lock_tag=any(t.get("key") == LEGACY_LOCK_TAG_KEY for t in service.get("tags", [])),
        read_at=clock.now(),
        service_alarm_names=service_alarm_names(service),
        cancel_tag=next((t.get("value") for t in service.get("tags", []) if t.get("key") == CANCEL_TAG_KEY), None),
        fastest_start_seconds=_fastest_start(tasks),
    )


def _read_lock(
    store: DynamoLockStore | None, key: str, refuse: Callable[[str, RecycleError], None]
) -> LockRecord | None:
    if store is None:
        return None
    try:
        return store.read(key)
    except RecycleError as e:
        # A dry run goes on without the lock; a run is refused here (refuse raises).
        refuse("lock" if isinstance(e, LockCorrupt) else "lock_table", e)
        return None


def _fastest_start(tasks: list[TaskTypeDef]) -> float | None:
    """The quickest created-to-started time among the tasks, at most the first replacement's estimate.

    A task that sat in PROVISIONING for hours says nothing about the next start: the cap keeps
    one odd task from delaying the first poll.
    """
    starts = [
        started - created
        for t in tasks
        if (started := epoch(t.get("startedAt"), None)) is not None
        and (created := epoch(t.get("createdAt"), None)) is not None
        and started > created
    ]
    fastest = min(starts, default=None)
    return None if fastest is None else min(fastest, INITIAL_REPLACEMENT_ESTIMATE_SECONDS)


@overload
def epoch(value: Any, missing: float = ...) -> float: ...
@overload
def epoch(value: Any, missing: None) -> float | None: ...
def epoch(value: Any, missing: float | None = float("-inf")) -> float | None:
    """A boto3 timestamp as epoch seconds; ``missing`` when there is none."""
    return value.timestamp() if isinstance(value, datetime) else missing


def legacy_tag_note() -> str:
    return (
        f"the service carries a {LEGACY_LOCK_TAG_KEY} tag from an older version of this tool; it is not "
        "trusted or used (the lock lives in the lock table): remove it once you have checked the service"
    )
