"""The recycle engine: restart an ECS service's tasks one at a time.

The engine knows nothing about Lambda. It takes its boto3 clients, a clock and
a small ``Runtime`` (run a step, sleep, wait until a condition holds, how much
time is left). The same code runs in a plain invocation, in a durable
execution (each step checkpointed) and in tests on a virtual clock.

Determinism rule (it matters for the durable runtime, which replays the code
from the top on every invocation): every AWS call and every clock read happens
inside ``runtime.step`` or inside a ``wait_until`` check, and control flow only
depends on what those return.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from config import RecycleRequest, RecycleSettings
from errors import (
    AwsCallFailed,
    LockHeld,
    LockLost,
    PreflightError,
    RecycleError,
    ReplacementFailed,
    ReplacementTimeout,
    RestoreFailed,
    ServiceNotFound,
    TimeBudgetExhausted,
)

T = TypeVar("T")

TOOL_NAME = "ecs-task-recycle"
LOCK_TAG_KEY = "ecs-task-recycle:lock"
STOP_REASON = "Stopped by ecs-task-recycle (one-at-a-time restart)"
SCALABLE_DIMENSION = "ecs:service:DesiredCount"
SUSPENDED_FLAGS = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")

# Page and batch limits of the ECS API.
DESCRIBE_TASKS_BATCH = 100
# How much longer than the slowest replacement seen so far the next one may take.
ESTIMATE_SAFETY_FACTOR = 1.5
# Used for the first replacement when no surge measured a start time.
INITIAL_REPLACEMENT_ESTIMATE_SECONDS = 120.0
RESTORE_ATTEMPTS = 3


# --------------------------------------------------------------------------- #
# The seams: clock and runtime
# --------------------------------------------------------------------------- #


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Runtime(Protocol):
    """How the engine runs steps and waits. See LocalRuntime for the plain one."""

    def step(self, name: str, fn: Callable[[], T]) -> T: ...

    def sleep(self, name: str, seconds: int) -> None: ...

    def wait_until(
        self,
        name: str,
        check: Callable[[dict[str, Any]], dict[str, Any]],
        initial: dict[str, Any],
        poll_seconds: float,
    ) -> dict[str, Any]:
        """Call check(state) until the state it returns has a true "done". check raises to abort."""

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
        check: Callable[[dict[str, Any]], dict[str, Any]],
        initial: dict[str, Any],
        poll_seconds: float,
    ) -> dict[str, Any]:
        state = check(initial)
        while not state.get("done"):
            self.clock.sleep(poll_seconds)
            state = check(state)
        return state

    def remaining_seconds(self) -> float | None:
        return self._remaining()

    def log(self, level: int, message: str, **fields: Any) -> None:
        self.logger.log(level, message, extra=fields)


# --------------------------------------------------------------------------- #
# Snapshot and lock
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Snapshot:
    """What the service looked like before the run changed anything."""

    desired_count: int
    surge: bool
    has_target: bool = False
    min_capacity: int = 0
    max_capacity: int = 0
    suspended: tuple[bool, bool, bool] = (False, False, False)

    def suspended_state(self) -> dict[str, bool]:
        return dict(zip(SUSPENDED_FLAGS, self.suspended, strict=True))


@dataclass(frozen=True)
class Lock:
    """The lock tag on the service: owner, expiry and the snapshot to restore.

    ECS tag values allow letters, digits, spaces and ``+ - = . _ : / @`` only,
    so the value is ``key=value`` pairs rather than JSON. It stays readable in
    the console, which is where an operator will look at 3 a.m.
    """

    owner: str
    expires_at: int
    snapshot: Snapshot
    # The surge's UpdateService succeeded: a repair then knows one task is ours to remove.
    landed: bool = False

    def to_tag_value(self) -> str:
        s = self.snapshot
        flags = "".join("1" if flag else "0" for flag in s.suspended)
        parts = [
            "v=1",
            f"owner={_tag_safe(self.owner)}",
            f"exp={self.expires_at}",
            f"desired={s.desired_count}",
            f"surge={int(s.surge)}",
            f"target={int(s.has_target)}",
        ]
        if s.has_target:
            parts += [f"min={s.min_capacity}", f"max={s.max_capacity}", f"susp={flags}"]
        if self.landed:
            parts.append("landed=1")
        return " ".join(parts)

    @classmethod
    def from_tag_value(cls, value: str) -> Lock:
        try:
            fields = dict(part.split("=", 1) for part in value.split())
            has_target = fields.get("target") == "1"
            flags = fields.get("susp", "000")
            snapshot = Snapshot(
                desired_count=int(fields["desired"]),
                surge=fields.get("surge") == "1",
                has_target=has_target,
                min_capacity=int(fields["min"]) if has_target else 0,
                max_capacity=int(fields["max"]) if has_target else 0,
                suspended=(flags[0] == "1", flags[1] == "1", flags[2] == "1"),
            )
            return cls(
                owner=fields["owner"],
                expires_at=int(fields["exp"]),
                snapshot=snapshot,
                landed=fields.get("landed") == "1",
            )
        except (KeyError, ValueError, IndexError) as e:
            raise PreflightError(
                f"the service carries a {LOCK_TAG_KEY} tag that cannot be read ({value!r}); "
                "check the service by hand, then remove the tag"
            ) from e


def _lock_tag(service: dict[str, Any]) -> str | None:
    return next((t["value"] for t in service.get("tags", []) if t.get("key") == LOCK_TAG_KEY), None)


def _tag_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "+-=._:/@" else "-" for ch in text)[:64]


# --------------------------------------------------------------------------- #
# The report
# --------------------------------------------------------------------------- #


@dataclass
class TaskResult:
    index: int
    old_task_arn: str
    new_task_arn: str | None
    seconds: float
    note: str | None = None


@dataclass
class RecycleReport:
    status: str
    cluster: str
    service: str
    region: str | None = None
    account: str | None = None
    original_desired_count: int | None = None
    task_total: int = 0
    tasks_recycled: list[TaskResult] = field(default_factory=list)
    tasks_skipped: list[TaskResult] = field(default_factory=list)
    tasks_remaining: list[str] = field(default_factory=list)
    restored: bool | None = None
    restore_actions: list[str] = field(default_factory=list)
    external_changes: list[str] = field(default_factory=list)
    started_at: str | None = None
    duration_seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    plan: dict[str, Any] | None = None
    notification: dict[str, Any] | None = None
    request_id: str | None = None
    log_group: str | None = None
    log_stream: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.plan is None:
            del data["plan"]
        return data


# --------------------------------------------------------------------------- #
# The engine
# --------------------------------------------------------------------------- #


@dataclass
class _State:
    """What the run has learned so far; rebuilt identically on a durable replay."""

    service_arn: str = ""
    cluster_arn: str = ""
    original_tasks: list[str] = field(default_factory=list)
    known_arns: set[str] = field(default_factory=set)
    start_seconds_seen: list[float] = field(default_factory=list)
    min_start_seconds: float | None = None
    snapshot: Snapshot | None = None
    locked: bool = False
    surged: bool = False
    surge_landed: bool = False
    target_touched: bool = False


class Recycler:
    """Restart every task of one service, one at a time, and put the service back."""

    def __init__(
        self,
        ecs: Any,
        autoscaling: Any,
        clock: Clock,
        runtime: Runtime,
        settings: RecycleSettings | None = None,
        elbv2: Any = None,
        owner_id: str = "local",
        lock_ttl_seconds: float | None = None,
        preflight_check: Callable[[dict[str, Any]], None] | None = None,
        out_of_time_hint: str = "use the long-running (durable) function, which has no 15-minute limit",
    ) -> None:
        self.ecs = ecs
        self.autoscaling = autoscaling
        self.elbv2 = elbv2
        self.clock = clock
        self.runtime = runtime
        self.settings = settings or RecycleSettings()
        self.owner_id = owner_id
        # How long the lock outlives its last renewal. None: the runtime's budget.
        self.lock_ttl_seconds = lock_ttl_seconds
        # The host's own admission rule, given the pre-flight result before anything is changed
        # (the durable run bounds its worst-case duration here). Raises PreflightError to refuse.
        self.preflight_check = preflight_check
        # What the operator can do when the host's time runs out (differs per host).
        self.out_of_time_hint = out_of_time_hint

    # ------------------------------------------------------------------ run

    def run(self, request: RecycleRequest) -> RecycleReport:
        """Recycle the service. Raises nothing for an outcome: the report says it."""
        self.request = request
        self.state = _State()
        cluster, service = request.cluster_name, request.service_name
        report = RecycleReport(status="failed", cluster=cluster, service=service)
        started = self.runtime.step("start", self.clock.now)
        report.started_at = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
        self._log(logging.INFO, f"Starting task recycle for {cluster}/{service}")
        try:
            self._run(request, report)
        except Exception as e:  # noqa: BLE001 - every failure must end in a report, never escape unrestored
            # Not `finally`: a durable suspension is a BaseException and must not restore.
            self._fail(report, e)
        finished = self.runtime.step("finish", self.clock.now)
        report.duration_seconds = round(finished - started, 1)
        if report.status == "succeeded":
            self._log(logging.INFO, "Task recycle completed successfully", tasks_recycled=len(report.tasks_recycled))
        return report

    def _run(self, request: RecycleRequest, report: RecycleReport) -> None:
        preflight = self.runtime.step("preflight", self._preflight)
        if self.preflight_check is not None:
            self.preflight_check(preflight)
        if preflight.get("stale_lock") and not request.dry_run:
            self._repair_stale_lock(preflight, report)
            preflight = self.runtime.step("preflight after repair", self._preflight)
        self._absorb_preflight(preflight, report)
        self._log(
            logging.INFO,
            f"Original desired count: {report.original_desired_count}, tasks: {report.task_total}",
            desired_count=report.original_desired_count,
            task_total=report.task_total,
        )
        if request.dry_run:
            report.plan = self._plan(preflight)
            report.status = "dry_run"
            report.tasks_remaining = list(self.state.original_tasks)
            return
        if not self.state.original_tasks:
            report.status = "succeeded"
            self._log(logging.INFO, "No running tasks: nothing to recycle")
            return

        self.state.snapshot = self._snapshot(preflight, request.maintain_service_state)
        self.runtime.step("lock", self._acquire_lock)
        self.state.locked = True
        try:
            if request.maintain_service_state:
                self._surge()
            self._recycle_all(report)
        except Exception as e:  # noqa: BLE001 - compensation: whatever failed, the restore below runs
            self._fail(report, e)
            if isinstance(e, LockLost):
                # Another run owns the service now; restoring from our snapshot would undo its work.
                self.state.locked = False
                report.restored = False
            if not report.tasks_remaining:
                done = {t.old_task_arn for t in report.tasks_recycled + report.tasks_skipped}
                report.tasks_remaining = [a for a in self.state.original_tasks if a not in done]
        self._restore(report)
        if report.error is None:
            report.status = "succeeded"

    def _fail(self, report: RecycleReport, error: Exception) -> None:
        if report.error is not None:
            return
        report.error = str(error)
        report.error_type = type(error).__name__
        report.status = "incomplete" if isinstance(error, TimeBudgetExhausted) else "failed"
        level = logging.ERROR if isinstance(error, RecycleError) else logging.CRITICAL
        self._log(level, f"Task recycle stopped: {error}", error_type=report.error_type)

    def _log(self, level: int, message: str, **fields: Any) -> None:
        request = self.request
        self.runtime.log(level, message, cluster=request.cluster_name, service=request.service_name, **fields)

    # ------------------------------------------------------------ pre-flight

    def _preflight(self) -> dict[str, Any]:
        """Read everything the run needs, change nothing. JSON-serialisable result."""
        request = self.request
        service = self._describe_service(include_tags=True)
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
        if len(deployments) > 1 or any(d.get("rolloutState") == "IN_PROGRESS" for d in deployments):
            raise PreflightError(
                f"a deployment is in progress ({len(deployments)} deployments); wait for it to finish before recycling"
            )
        tasks = self._describe_tasks(self._list_task_arns())
        running = sorted(
            (t for t in tasks if t.get("lastStatus") == "RUNNING" and t.get("desiredStatus") == "RUNNING"),
            key=lambda t: (str(t.get("startedAt", "")), t["taskArn"]),
        )
        service_arn = service["serviceArn"]
        lock_value = _lock_tag(service)
        lock = Lock.from_tag_value(lock_value) if lock_value else None
        now = self.clock.now()
        if lock and lock.expires_at > now and lock.owner != _tag_safe(self.owner_id):
            raise LockHeld(
                f"another run ({lock.owner}) holds the lock on {request.service_name} until "
                f"{datetime.fromtimestamp(lock.expires_at, UTC).isoformat(timespec='seconds')}"
            )
        return {
            "service_arn": service_arn,
            "cluster_arn": service.get("clusterArn", ""),
            "desired_count": int(service.get("desiredCount", 0)),
            "running_count": int(service.get("runningCount", 0)),
            "task_definition": service.get("taskDefinition"),
            "all_task_arns": sorted(t["taskArn"] for t in tasks),
            "running_task_arns": [t["taskArn"] for t in running],
            "health_checked": self._has_health_checks(service.get("taskDefinition")),
            "target_groups": [
                {"arn": lb["targetGroupArn"], "port": lb.get("containerPort")}
                for lb in service.get("loadBalancers", [])
                if lb.get("targetGroupArn")
            ],
            "scalable_target": self._describe_scalable_target(),
            "stale_lock": lock_value if lock else None,
        }

    def _absorb_preflight(self, preflight: dict[str, Any], report: RecycleReport) -> None:
        self.state.service_arn = preflight["service_arn"]
        self.state.cluster_arn = preflight["cluster_arn"]
        self.state.original_tasks = list(preflight["running_task_arns"])
        self.state.known_arns = set(preflight["all_task_arns"])
        self.health_checked = bool(preflight["health_checked"])
        self.target_groups = list(preflight["target_groups"])
        arn_parts = self.state.service_arn.split(":")
        report.region = arn_parts[3] if len(arn_parts) > 4 else None
        report.account = arn_parts[4] if len(arn_parts) > 4 else None
        report.original_desired_count = preflight["desired_count"]
        report.task_total = len(self.state.original_tasks)

    def _plan(self, preflight: dict[str, Any]) -> dict[str, Any]:
        n = len(self.state.original_tasks)
        start = INITIAL_REPLACEMENT_ESTIMATE_SECONDS
        target = preflight["scalable_target"]
        surge = None
        if self.request.maintain_service_state and n:
            surge = {
                "desired_count": f"{preflight['desired_count']} -> {preflight['desired_count'] + 1}",
                "suspend": ["DynamicScalingInSuspended", "ScheduledScalingSuspended"] if target else [],
                "raise_max_capacity": bool(target and preflight["desired_count"] + 1 > target["MaxCapacity"]),
            }
        return {
            "tasks_to_stop": list(self.state.original_tasks),
            "surge": surge,
            "stale_lock_to_repair": preflight.get("stale_lock"),
            "estimated_seconds": round((n + (1 if surge else 0)) * start + n * self.request.wait_time),
            "estimate_basis": f"{start:.0f}s per replacement (not yet measured) plus wait_time",
        }

    def _snapshot(self, preflight: dict[str, Any], surge: bool) -> Snapshot:
        target = preflight["scalable_target"]
        if not target:
            return Snapshot(desired_count=preflight["desired_count"], surge=surge)
        suspended = target.get("SuspendedState", {})
        return Snapshot(
            desired_count=preflight["desired_count"],
            surge=surge,
            has_target=True,
            min_capacity=int(target["MinCapacity"]),
            max_capacity=int(target["MaxCapacity"]),
            suspended=(
                bool(suspended.get(SUSPENDED_FLAGS[0], False)),
                bool(suspended.get(SUSPENDED_FLAGS[1], False)),
                bool(suspended.get(SUSPENDED_FLAGS[2], False)),
            ),
        )

    # ---------------------------------------------------------------- lock

    def _lock_expiry(self) -> int:
        ttl = self.lock_ttl_seconds
        if ttl is None:
            remaining = self.runtime.remaining_seconds()
            # Plain Lambda: the lock dies shortly after the invocation could.
            ttl = (remaining if remaining is not None else 900.0) + 60.0
        return int(self.clock.now() + ttl)

    def _write_lock(self, landed: bool) -> Lock:
        assert self.state.snapshot is not None
        lock = Lock(_tag_safe(self.owner_id), self._lock_expiry(), self.state.snapshot, landed)
        self._call(
            self.ecs.tag_resource,
            resourceArn=self.state.service_arn,
            tags=[{"key": LOCK_TAG_KEY, "value": lock.to_tag_value()}],
        )
        return lock

    def _lock_holder(self) -> str:
        """The owner named by the lock tag on the service now, or "" when there is none."""
        value = _lock_tag(self._describe_service(include_tags=True))
        return Lock.from_tag_value(value).owner if value else ""

    def _acquire_lock(self) -> None:
        lock = self._write_lock(landed=False)
        # Tags have no compare-and-swap: read back, and the last writer wins.
        holder = self._lock_holder()
        if holder != lock.owner:
            raise LockHeld(f"another run ({holder or 'unknown'}) took the lock on {self.request.service_name} first")

    def renew_lock(self) -> None:
        """Push the lock's expiry forward; long runs call this as they progress.

        If the lock is no longer ours (this run was paused past its expiry and
        another run repaired the service and took over), stop without touching
        the service again: it is the other run's now.
        """
        holder = self._lock_holder()
        if holder != _tag_safe(self.owner_id):
            raise LockLost(
                f"this run's lock on {self.request.service_name} is gone (now held by {holder or 'nobody'}); "
                "another run has taken over the service, so this one stops without restoring it"
            )
        self._write_lock(landed=self.state.surge_landed)

    def _repair_stale_lock(self, preflight: dict[str, Any], report: RecycleReport) -> None:
        lock = Lock.from_tag_value(preflight["stale_lock"])
        self._log(
            logging.WARNING,
            f"Found an expired lock from run {lock.owner}; restoring from it first",
            lock_owner=lock.owner,
        )
        self.state.service_arn = preflight["service_arn"]
        self.state.snapshot = lock.snapshot
        self.state.surged = lock.snapshot.surge
        self.state.surge_landed = lock.landed
        self.state.locked = True
        # Re-registering the snapshot's own values is harmless if the run never got to touch the target.
        self.state.target_touched = lock.snapshot.has_target
        repair = RecycleReport(status="repair", cluster=report.cluster, service=report.service)
        self._restore(repair, stage="repair")
        if repair.restored is False:
            raise RestoreFailed(f"could not repair the expired lock of run {lock.owner}: {repair.error}")
        report.restore_actions += [f"repaired expired lock of {lock.owner}: {a}" for a in repair.restore_actions]
        report.external_changes += repair.external_changes
        self.state = _State()

    # ---------------------------------------------------------------- surge

    def _surge(self) -> None:
        snapshot = self.state.snapshot
        assert snapshot is not None
        if snapshot.has_target:
            self.state.target_touched = True
            self.runtime.step("suspend autoscaling", self._suspend_autoscaling)
        self.state.surged = True
        surge_started = self.runtime.step("surge", self._apply_surge)
        self.state.surge_landed = True
        self._log(logging.INFO, f"Desired count raised to {snapshot.desired_count + 1}; waiting for the extra task")
        state = self._wait_for_new_task("surge task", surge_started)
        self._learn(state["seconds"])
        self.state.known_arns.add(state["new_task_arn"])
        self._after_replacement(0)

    def _suspend_autoscaling(self) -> None:
        s = self.state.snapshot
        assert s is not None
        suspended = s.suspended_state()
        suspended["DynamicScalingInSuspended"] = True
        suspended["ScheduledScalingSuspended"] = True
        self._call(
            self.autoscaling.register_scalable_target,
            ServiceNamespace="ecs",
            ResourceId=self._resource_id(),
            ScalableDimension=SCALABLE_DIMENSION,
            # Raise Max first so the surged count is not clamped back.
            MaxCapacity=max(s.max_capacity, s.desired_count + 1),
            SuspendedState=suspended,
        )

    def _apply_surge(self) -> float:
        s = self.state.snapshot
        assert s is not None
        self._call(
            self.ecs.update_service,
            cluster=self.request.cluster_name,
            service=self.request.service_name,
            desiredCount=s.desired_count + 1,
        )
        self.state.surge_landed = True
        surged_at = self.clock.now()
        # Record that the surge landed, so a repair after a kill knows which task is ours.
        self._write_lock(landed=True)
        return surged_at

    # -------------------------------------------------------------- recycle

    def _recycle_all(self, report: RecycleReport) -> None:
        total = len(self.state.original_tasks)
        for index, task_arn in enumerate(self.state.original_tasks, start=1):
            decision = self.runtime.step(f"stop task {index}", functools.partial(self._stop_one, task_arn, index))
            if decision["action"] == "out_of_time":
                report.tasks_remaining = self.state.original_tasks[index - 1 :]
                raise TimeBudgetExhausted(
                    f"{len(report.tasks_recycled)} of {total} tasks recycled; the time budget "
                    f"({decision['remaining']:.0f}s left, next task needs about {decision['needed']:.0f}s) "
                    f"does not fit task {index}. {len(report.tasks_remaining)} tasks remain: run again, or "
                    f"{self.out_of_time_hint}"
                )
            if decision["action"] == "skipped":
                report.tasks_skipped.append(TaskResult(index, task_arn, None, 0.0, decision["note"]))
                self._log(
                    logging.WARNING,
                    f"Task {index} was already stopped by someone else; skipping",
                    task_arn=task_arn,
                    note=decision["note"],
                )
                continue
            self._log(logging.INFO, f"Recycling task {index}/{total}: {task_arn}", task_arn=task_arn)
            try:
                state = self._wait_for_new_task(f"replacement {index}", decision["stopped_at"])
            except Exception:
                report.tasks_remaining = self.state.original_tasks[index:]
                raise
            self._learn(state["seconds"])
            self.state.known_arns.add(state["new_task_arn"])
            report.tasks_recycled.append(TaskResult(index, task_arn, state["new_task_arn"], round(state["seconds"], 1)))
            self._after_replacement(index)
            if self.request.wait_time:
                self.runtime.sleep(f"wait after task {index}", self.request.wait_time)
            self._log(
                logging.INFO,
                f"Task {index} recycled, waiting {self.request.wait_time}s",
                task_arn=task_arn,
                new_task_arn=state["new_task_arn"],
                seconds=round(state["seconds"], 1),
            )

    def _after_replacement(self, index: int) -> None:
        """Runs without a host deadline keep their lock alive as they make progress."""
        if self.lock_ttl_seconds is not None:
            self.runtime.step(f"renew lock {index}", self.renew_lock)

    def _stop_one(self, task_arn: str, index: int) -> dict[str, Any]:
        remaining = self.runtime.remaining_seconds()
        needed = self._estimate() + self.request.wait_time + self.settings.restore_reserve_seconds
        if remaining is not None and remaining < needed:
            return {"action": "out_of_time", "remaining": remaining, "needed": needed}
        response = self._call(self.ecs.stop_task, cluster=self.request.cluster_name, task=task_arn, reason=STOP_REASON)
        task = response.get("task", {})
        reason = task.get("stoppedReason") or ""
        if reason and reason != STOP_REASON:
            return {"action": "skipped", "note": f"already stopped: {reason}"}
        return {"action": "stopped", "stopped_at": self.clock.now()}

    def _estimate(self) -> float:
        if not self.state.start_seconds_seen:
            return INITIAL_REPLACEMENT_ESTIMATE_SECONDS
        return max(self.state.start_seconds_seen) * ESTIMATE_SAFETY_FACTOR

    def _learn(self, seconds: float) -> None:
        self.state.start_seconds_seen.append(seconds)
        fastest = self.state.min_start_seconds
        self.state.min_start_seconds = seconds if fastest is None else min(fastest, seconds)

    # ------------------------------------------------------- replacement wait

    def _wait_for_new_task(self, name: str, since: float) -> dict[str, Any]:
        """Wait for a task this service did not have before, up and serving.

        ``services_stable`` alone is not enough: right after StopTask the old
        task is still RUNNING while it drains, so the counts can match before
        the replacement has even started. We track the new task by identity.
        """
        poll = self.settings.poll_interval_seconds
        # Replacements have taken at least this long so far; polling earlier only costs API calls.
        if self.state.min_start_seconds is not None and self.state.min_start_seconds > 2 * poll:
            self.runtime.sleep(f"{name} head start", int(self.state.min_start_seconds - poll))
        initial = {"done": False, "since": since, "failures": 0, "failed_arns": [], "candidate": None}
        return self.runtime.wait_until(name, lambda state: self._check_new_task(state), initial, poll)

    def _check_new_task(self, state: dict[str, Any]) -> dict[str, Any]:
        state = dict(state)
        now = self.clock.now()
        elapsed = now - state["since"]
        service = self._describe_service()
        new_arns = [a for a in self._list_task_arns() if a not in self.state.known_arns]
        new_tasks = self._describe_tasks(new_arns) if new_arns else []
        failed = [t for t in new_tasks if _failed_replacement(t)]
        failed += [
            t
            for t in self._newly_failed(service, state)
            if _failed_replacement(t) and _created_at(t) >= state["since"] - 1
        ]
        for task in failed:
            if task["taskArn"] in state["failed_arns"]:
                continue
            state["failed_arns"] = [*state["failed_arns"], task["taskArn"]]
            state["failures"] += 1
            reason = task.get("stoppedReason") or task.get("stopCode") or "no reason given"
            self._log(
                logging.WARNING,
                f"Replacement task failed to start: {reason}",
                task_arn=task["taskArn"],
                failures=state["failures"],
            )
            if state["failures"] >= self.settings.max_failed_replacements:
                raise ReplacementFailed(
                    f"{state['failures']} replacement tasks stopped before becoming healthy; "
                    f"last stoppedReason: {reason}"
                )
        serving = [t for t in new_tasks if t not in failed and self._is_serving(t)]
        if serving and self._is_stable(service):
            return {**state, "done": True, "new_task_arn": serving[0]["taskArn"], "seconds": elapsed}
        state["candidate"] = serving[0]["taskArn"] if serving else (new_arns[0] if new_arns else None)
        if elapsed >= self.settings.replacement_timeout_seconds:
            raise ReplacementTimeout(
                f"no healthy replacement within {self.settings.replacement_timeout_seconds}s "
                f"(candidate: {state['candidate'] or 'none started'})"
            )
        remaining = self.runtime.remaining_seconds()
        if (
            remaining is not None
            and remaining - self.settings.poll_interval_seconds < self.settings.restore_reserve_seconds
        ):
            raise TimeBudgetExhausted(
                "the time budget ran out while waiting for a replacement; stopping here so the restore still fits"
            )
        return state

    def _newly_failed(self, service: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        """Failed starts that vanished between two polls: the deployment's failedTasks counter moved."""
        failed_count = sum(int(d.get("failedTasks", 0)) for d in service.get("deployments", []))
        previous = state.get("failed_count_seen")
        state["failed_count_seen"] = failed_count
        if previous is None or failed_count <= previous:
            return []
        stopped = [
            a
            for a in self._list_task_arns(desired_status="STOPPED")
            if a not in self.state.known_arns and a not in state["failed_arns"]
        ]
        return self._describe_tasks(stopped) if stopped else []

    def _is_serving(self, task: dict[str, Any]) -> bool:
        if task.get("lastStatus") != "RUNNING" or task.get("desiredStatus") != "RUNNING":
            return False
        if self.health_checked and task.get("healthStatus") != "HEALTHY":
            return False
        return all(self._healthy_in_target_group(task, tg) for tg in self.target_groups)

    def _healthy_in_target_group(self, task: dict[str, Any], target_group: dict[str, Any]) -> bool:
        if self.elbv2 is None:
            return True
        target_id = _task_ip(task)
        kwargs: dict[str, Any] = {"TargetGroupArn": target_group["arn"]}
        if target_id:
            target: dict[str, Any] = {"Id": target_id}
            if target_group.get("port"):
                target["Port"] = int(target_group["port"])
            kwargs["Targets"] = [target]
        descriptions = self._call(self.elbv2.describe_target_health, **kwargs).get("TargetHealthDescriptions", [])
        states = [d.get("TargetHealth", {}).get("State") for d in descriptions]
        # Bridge/host networking has no task IP: then every registered target must be healthy.
        return bool(states) and all(s == "healthy" for s in states)

    @staticmethod
    def _is_stable(service: dict[str, Any]) -> bool:
        deployments = service.get("deployments", [])
        return len(deployments) == 1 and service.get("runningCount") == service.get("desiredCount")

    # -------------------------------------------------------------- restore

    def _restore(self, report: RecycleReport, stage: str = "restore") -> None:
        """Put desired count and the scalable target back, then drop the lock.

        Order matters: desired count first, then the scalable target. Restoring
        MaxCapacity while the service is still surged would clamp it at once.
        """
        snapshot = self.state.snapshot
        if snapshot is None or not self.state.locked:
            return
        problems: list[str] = []
        desired_restored = False
        if self.state.surged:
            plan = self.runtime.step(f"{stage} desired count plan", lambda: self._retrying(self._plan_desired_restore))
            if isinstance(plan, str):
                problems.append(plan)
            else:
                target = int(plan["target"])
                applied = (
                    self.runtime.step(
                        f"{stage} desired count", lambda: self._retrying(lambda: self._set_desired(target))
                    )
                    if target != plan["current"]
                    else {}
                )
                if isinstance(applied, str):
                    problems.append(applied)
                else:
                    desired_restored = True
                    report.restore_actions += plan["actions"]
                    report.external_changes += plan["external"]
        if snapshot.has_target and self.state.target_touched:
            outcome = self.runtime.step(f"{stage} scalable target", lambda: self._retrying(self._restore_target))
            if isinstance(outcome, str):
                problems.append(outcome)
            else:
                report.restore_actions += outcome["actions"]
        if problems:
            report.restored = False
            message = (
                "RESTORE FAILED, the service needs attention: "
                + "; ".join(problems)
                + f". The {LOCK_TAG_KEY} tag is left on the service so the next run repairs it."
            )
            self._log(logging.CRITICAL, message)
            error = RestoreFailed(message)
            report.error = f"{report.error}; {message}" if report.error else message
            report.error_type = report.error_type or type(error).__name__
            report.status = "failed"
            if desired_restored:
                # The surge is undone; the lock must not make the repair remove another task.
                self.runtime.step(f"{stage} mark surge undone", self._mark_surge_undone)
            return
        outcome = self.runtime.step(f"{stage} unlock", lambda: self._retrying(self._remove_lock))
        if isinstance(outcome, str):
            report.restore_actions.append(f"could not remove the lock tag ({outcome}); it expires on its own")
        report.restored = True
        self.state.locked = False
        self._log(logging.INFO, "Service restored", actions=report.restore_actions)

    def _mark_surge_undone(self) -> None:
        snapshot = self.state.snapshot
        assert snapshot is not None
        self.state.snapshot = replace(snapshot, surge=False)
        self.state.surged = self.state.surge_landed = False
        try:
            self._write_lock(landed=False)
        except AwsCallFailed as e:
            self._log(logging.CRITICAL, f"Could not record in the lock that the surge was undone: {e}")

    def _retrying(self, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
        """Run one restore action, retrying on AWS errors. Returns the error text if it never succeeds."""
        last = ""
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            try:
                return fn()
            except AwsCallFailed as e:
                last = str(e)
                self._log(logging.ERROR, f"Restore call failed (attempt {attempt}/{RESTORE_ATTEMPTS}): {e}")
                if attempt < RESTORE_ATTEMPTS:
                    self.clock.sleep(2.0 * attempt)
        return last

    def _plan_desired_restore(self) -> dict[str, Any]:
        """Decide the desired count to go back to. Read-only, so it is safe to repeat.

        The decision is taken once (and checkpointed by a durable runtime) before
        anything is written: re-deciding after an UpdateService that landed would
        find the original count and remove a second task.
        """
        snapshot = self.state.snapshot
        assert snapshot is not None
        current = int(self._describe_service().get("desiredCount", 0))
        surged = snapshot.desired_count + 1
        actions: list[str] = []
        external: list[str] = []
        if current == surged:
            target = snapshot.desired_count
        elif current == snapshot.desired_count and not self.state.surge_landed:
            # Repairing a killed run whose UpdateService may never have landed: nothing of ours to remove.
            target = current
        else:
            target = max(current - 1, 0)
            external.append(
                f"desiredCount was changed by another actor during the run (expected {surged}, found {current}); "
                f"removed only the one task this run added ({current} -> {target}) and kept their change"
            )
        if target != current:
            actions.append(f"desiredCount {current} -> {target}")
        return {"current": current, "target": target, "actions": actions, "external": external}

    def _set_desired(self, target: int) -> dict[str, Any]:
        """Set an absolute desired count: repeating it is harmless."""
        self._call(
            self.ecs.update_service,
            cluster=self.request.cluster_name,
            service=self.request.service_name,
            desiredCount=target,
        )
        return {}

    def _restore_target(self) -> dict[str, Any]:
        s = self.state.snapshot
        assert s is not None
        self._call(
            self.autoscaling.register_scalable_target,
            ServiceNamespace="ecs",
            ResourceId=self._resource_id(),
            ScalableDimension=SCALABLE_DIMENSION,
            MinCapacity=s.min_capacity,
            MaxCapacity=s.max_capacity,
            SuspendedState=s.suspended_state(),
        )
        flags = ", ".join(f"{k}={v}" for k, v in s.suspended_state().items())
        return {"actions": [f"scalable target Min={s.min_capacity} Max={s.max_capacity} {flags}"]}

    def _remove_lock(self) -> dict[str, Any]:
        self._call(self.ecs.untag_resource, resourceArn=self.state.service_arn, tagKeys=[LOCK_TAG_KEY])
        return {}

    # ------------------------------------------------------------- AWS reads

    def _call(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        with _aws_errors(getattr(operation, "__name__", "AWS call")):
            return operation(**kwargs)

    def _describe_service(self, include_tags: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cluster": self.request.cluster_name, "services": [self.request.service_name]}
        if include_tags:
            kwargs["include"] = ["TAGS"]
        try:
            response = self._call(self.ecs.describe_services, **kwargs)
        except AwsCallFailed as e:
            if _error_code(e.__cause__) == "ClusterNotFoundException":
                raise ServiceNotFound(f"cluster not found: {self.request.cluster_name}") from e.__cause__
            raise
        services = response.get("services", [])
        if not services:
            reasons = ", ".join(f.get("reason", "?") for f in response.get("failures", [])) or "MISSING"
            raise ServiceNotFound(
                f"service not found: {self.request.service_name} in cluster {self.request.cluster_name} ({reasons})"
            )
        return dict(services[0])

    def _list_task_arns(self, desired_status: str = "RUNNING") -> list[str]:
        arns: list[str] = []
        paginator = self.ecs.get_paginator("list_tasks")
        pages = paginator.paginate(
            cluster=self.request.cluster_name, serviceName=self.request.service_name, desiredStatus=desired_status
        )
        with _aws_errors("ListTasks"):
            for page in pages:
                arns.extend(page.get("taskArns", []))
        return arns

    def _describe_tasks(self, arns: Iterable[str]) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        for batch in _batches(list(arns), DESCRIBE_TASKS_BATCH):
            response = self._call(self.ecs.describe_tasks, cluster=self.request.cluster_name, tasks=batch)
            tasks.extend(response.get("tasks", []))
        return tasks

    def _has_health_checks(self, task_definition: str | None) -> bool:
        if not task_definition:
            return False
        response = self._call(self.ecs.describe_task_definition, taskDefinition=task_definition)
        containers = response.get("taskDefinition", {}).get("containerDefinitions", [])
        return any(c.get("healthCheck") for c in containers)

    def _describe_scalable_target(self) -> dict[str, Any] | None:
        paginator = self.autoscaling.get_paginator("describe_scalable_targets")
        with _aws_errors("DescribeScalableTargets"):
            for page in paginator.paginate(
                ServiceNamespace="ecs", ResourceIds=[self._resource_id()], ScalableDimension=SCALABLE_DIMENSION
            ):
                for target in page.get("ScalableTargets", []):
                    return {
                        "MinCapacity": int(target["MinCapacity"]),
                        "MaxCapacity": int(target["MaxCapacity"]),
                        "SuspendedState": {
                            k: bool(target.get("SuspendedState", {}).get(k, False)) for k in SUSPENDED_FLAGS
                        },
                    }
        return None

    def _resource_id(self) -> str:
        return f"service/{self.request.cluster_name}/{self.request.service_name}"


@contextmanager
def _aws_errors(operation: str) -> Iterator[None]:
    """Turn botocore's errors into AwsCallFailed, naming the call and the AWS error code."""
    try:
        yield
    except ClientError as e:
        message = e.response.get("Error", {}).get("Message", "")
        detail = f"{_error_code(e)}: {message}" if message else _error_code(e)
        raise AwsCallFailed(f"{e.operation_name} failed: {detail}") from e
    except BotoCoreError as e:
        raise AwsCallFailed(f"{operation} failed: {e}") from e


def _error_code(error: BaseException | None) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _failed_replacement(task: dict[str, Any]) -> bool:
    """A replacement that ECS gave up on: it failed to start, crashed, or failed its health checks.

    A new task stopped by scale-in (or by this tool) is not a failure.
    """
    if task.get("desiredStatus") != "STOPPED" and task.get("lastStatus") != "STOPPED":
        return False
    if task.get("stoppedReason") == STOP_REASON:
        return False
    reason = str(task.get("stoppedReason") or "").lower()
    return task.get("stopCode") in ("TaskFailedToStart", "EssentialContainerExited") or "health check" in reason


def _created_at(task: dict[str, Any]) -> float:
    created = task.get("createdAt")
    return created.timestamp() if isinstance(created, datetime) else float("inf")


def _task_ip(task: dict[str, Any]) -> str | None:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return str(detail.get("value"))
    return None
