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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from recycler.aws import aws_errors, error_code
from recycler.errors import (
    AwsCallFailed,
    ConfigError,
    LockCorrupt,
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
from recycler.lock import (
    LOCK_TABLE_ENV,
    RELEASED_RETENTION_SECONDS,
    SUSPENDED_FLAGS,
    DynamoLockStore,
    LockRecord,
    Phase,
    Progress,
    Snapshot,
    lock_key,
)
from recycler.request import RecycleRequest
from recycler.settings import RecycleSettings

T = TypeVar("T")

TOOL_NAME = "ecs-task-recycle"
# Older versions kept the lock in this service tag. It is never read as a lock now, only reported.
LEGACY_LOCK_TAG_KEY = "ecs-task-recycle:lock"
STOP_REASON = "Stopped by ecs-task-recycle (one-at-a-time restart)"
SCALABLE_DIMENSION = "ecs:service:DesiredCount"

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
    # The scalable target as the restore left it: {min_capacity, max_capacity, suspended: {flag: bool}}.
    restored_target: dict[str, Any] | None = None
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
    # The run's lock item as last written: its phase says what the restore has left to do.
    lock: LockRecord | None = None
    # The surge's UpdateService returned success (the item may still say "surging" if recording it failed).
    surge_landed: bool = False


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
        lock_store: DynamoLockStore | None = None,
    ) -> None:
        self.ecs = ecs
        self.autoscaling = autoscaling
        self.elbv2 = elbv2
        self.clock = clock
        self.runtime = runtime
        self.settings = settings or RecycleSettings()
        self.owner_id = owner_id
        # The lock table. Only a dry run may go without one.
        self.lock_store = lock_store
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
        if self.lock_store is None and not request.dry_run:
            raise ConfigError(LOCK_TABLE_ENV, "a recycle needs the lock table (only a dry run works without one)")
        preflight = self.runtime.step("preflight", self._preflight)
        if self.preflight_check is not None:
            self.preflight_check(preflight)
        stale = _stale_lock(preflight)
        if stale is not None and not request.dry_run:
            self._repair_stale_lock(stale, report)
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

        self._acquire_lock(preflight)
        try:
            if request.maintain_service_state:
                self._surge()
            self._recycle_all(report)
        except Exception as e:  # noqa: BLE001 - compensation: whatever failed, the restore below runs
            self._fail(report, e)
            if isinstance(e, LockLost):
                # Another run owns the service now; restoring from our snapshot would undo its work.
                self.state.lock = None
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
        """Read everything the run needs, change nothing. JSON-serialisable result.

        The lock item is read before the service's desired count and scalable
        target: any run that takes the lock after this read changes its version,
        so our acquire (a compare-and-swap on what we read here) fails. A
        snapshot can therefore never contain another run's surge.
        """
        request = self.request
        located = self._describe_service()
        self._check_arn_matches(located)
        key = lock_key(str(located.get("clusterArn", "")), str(located.get("serviceName", request.service_name)))
        lock = self.runtime_read_lock(key)
        now = self.clock.now()
        if lock is not None and lock.is_live(now):
            raise LockHeld(
                f"another run ({lock.owner}) holds the lock on {request.service_name} until "
                f"{datetime.fromtimestamp(lock.expires_at, UTC).isoformat(timespec='seconds')}"
            )
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
        return {
            "service_arn": service["serviceArn"],
            "cluster_arn": service.get("clusterArn", ""),
            "lock_key": key,
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
            "lock": lock.to_dict() if lock is not None else None,
            "legacy_lock_tag": any(t.get("key") == LEGACY_LOCK_TAG_KEY for t in service.get("tags", [])),
        }

    def runtime_read_lock(self, key: str) -> LockRecord | None:
        return self.lock_store.read(key) if self.lock_store is not None else None

    def _check_arn_matches(self, service: dict[str, Any]) -> None:
        """An ARN in the event must name the region and account the session reaches, not just the names."""
        actual = str(service.get("serviceArn", "")).split(":")
        if len(actual) < 6:
            return
        for field_name, (region, account) in self.request.arn_fields().items():
            for what, given, reached in (("region", region, actual[3]), ("account", account, actual[4])):
                if given != reached:
                    raise ConfigError(field_name, f"the ARN's {what} is {given}, but the session reaches {reached}")

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
        if preflight.get("legacy_lock_tag"):
            note = (
                f"the service carries a {LEGACY_LOCK_TAG_KEY} tag from an older version of this tool; it is not "
                "trusted or used (the lock lives in the lock table): remove it once you have checked the service"
            )
            report.external_changes.append(note)
            self._log(logging.WARNING, note)

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
        stale = _stale_lock(preflight)
        return {
            "tasks_to_stop": list(self.state.original_tasks),
            "surge": surge,
            "stale_lock_to_repair": (
                {"owner": stale.owner, "phase": stale.phase, "expired_at": stale.expires_at} if stale else None
            ),
            "lock_table": self.lock_store.table_name if self.lock_store else None,
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

    @property
    def _store(self) -> DynamoLockStore:
        assert self.lock_store is not None  # _run refuses a mutating run without one
        return self.lock_store

    def _acquire_lock(self, preflight: dict[str, Any]) -> None:
        seen = LockRecord.from_dict(preflight["lock"]) if preflight.get("lock") else None

        def acquire() -> dict[str, Any]:
            now = self.clock.now()
            record = LockRecord(
                key=preflight["lock_key"],
                owner=self.owner_id,
                version=(seen.version if seen else 0) + 1,
                expires_at=self._lock_expiry(),
                phase=Phase.ACQUIRED,
                started_at=int(now),
                snapshot=self._snapshot(preflight, self.request.maintain_service_state),
                progress=Progress(total=len(self.state.original_tasks), updated_at=int(now)),
            )
            return self._store.acquire(record, seen).to_dict()

        self.state.lock = LockRecord.from_dict(self.runtime.step("lock", acquire))

    def _write_lock(self, name: str, **changes: Any) -> LockRecord:
        """Record a change in the lock item before making it, and push its expiry forward.

        The write is conditional on owner and version: if the lock is no longer
        ours (this run was paused past its expiry and another run repaired the
        service and took over), it fails with LockLost and the run stops without
        touching the service again.
        """
        self.state.lock = LockRecord.from_dict(self.runtime.step(name, self._lock_writer(changes)))
        return self.state.lock

    def _lock_writer(self, changes: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        current = self.state.lock
        assert current is not None

        def write() -> dict[str, Any]:
            return self._store.write(current, expires_at=self._lock_expiry(), **changes).to_dict()

        return write

    def _repair_stale_lock(self, stale: LockRecord, report: RecycleReport) -> None:
        """Take the expired lock over and finish its restore from the phase it recorded, then release it."""
        self._log(
            logging.WARNING,
            f"Found an expired lock from run {stale.owner} (phase {stale.phase}); restoring from it first",
            lock_owner=stale.owner,
            lock_phase=stale.phase,
        )
        taken = self.runtime.step(
            "take over expired lock",
            lambda: self._store.take_over(stale, self.owner_id, self._lock_expiry(), self.clock.now()).to_dict(),
        )
        self.state.lock = LockRecord.from_dict(taken)
        repair = RecycleReport(status="repair", cluster=report.cluster, service=report.service)
        self._restore(repair, stage="repair")
        report.restore_actions += [f"repaired expired lock of {stale.owner}: {a}" for a in repair.restore_actions]
        report.external_changes += repair.external_changes
        if repair.restored is not True or repair.error:
            raise RestoreFailed(f"could not repair the expired lock of run {stale.owner}: {repair.error}")
        self.state = _State()

    # ---------------------------------------------------------------- surge

    def _surge(self) -> None:
        lock = self._write_lock("mark surging", phase=Phase.SURGING)
        snapshot = lock.snapshot
        assert snapshot is not None
        if snapshot.changes_target():
            self.runtime.step("suspend autoscaling", self._suspend_autoscaling)
        surge_started = self.runtime.step("surge", self._apply_surge)
        self.state.surge_landed = True
        self._write_lock("mark surged", phase=Phase.SURGED)
        self._log(
            logging.INFO,
            f"Desired count raised to {snapshot.desired_count + snapshot.surge_size}; waiting for the extra task",
        )
        state = self._wait_for_new_task("surge task", surge_started)
        self._learn(state["seconds"])
        self.state.known_arns.add(state["new_task_arn"])
        self._after_replacement(0)

    def _suspend_autoscaling(self) -> None:
        s = self._snapshot_of_lock()
        suspended = s.suspended_state()
        for flag in s.flags_to_suspend():
            suspended[flag] = True
        kwargs: dict[str, Any] = {"SuspendedState": suspended}
        widened = s.widened_max()
        if widened is not None:
            # Raise Max first so the surged count is not clamped back.
            kwargs["MaxCapacity"] = widened
        self._register_target(**kwargs)

    def _apply_surge(self) -> float:
        s = self._snapshot_of_lock()
        self._set_desired(s.desired_count + s.surge_size)
        return self.clock.now()

    def _snapshot_of_lock(self) -> Snapshot:
        lock = self.state.lock
        assert lock is not None and lock.snapshot is not None
        return lock.snapshot

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
            self._write_lock(f"renew lock {index}")

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
        """Walk the lock's phases to the end: desired count, then the scalable target, then release.

        Each phase is recorded in the lock item before the change it announces,
        so a run killed anywhere in here is resumed from the right place by the
        next run's repair, and nothing is undone twice. The scalable target is
        never restored while the service may still be surged: restoring
        MaxCapacity then would clamp the service at once.
        """
        if self.state.lock is None:
            return
        problem: str | None = None
        try:
            while problem is None and self.state.lock.phase not in (Phase.TARGET_RESTORED, Phase.RELEASED):
                phase = self.state.lock.phase
                if phase in Phase.DESIRED_PENDING:
                    problem = self._restore_desired(report, stage)
                elif phase == Phase.DESIRED_RESTORED:
                    problem = self._restore_target(report, stage)
                else:  # acquired: nothing was changed
                    problem = self._record(f"{stage} mark target restored", phase=Phase.TARGET_RESTORED)
        except LockLost as e:
            # Another run took the service over meanwhile: it restores from its own lock.
            self._fail(report, e)
            report.restored = False
            self.state.lock = None
            return
        if problem is not None:
            self._restore_failed(report, problem)
            return
        report.restored = True
        self._log(logging.INFO, "Service restored", actions=report.restore_actions)
        released = self.runtime.step(f"{stage} unlock", lambda: self._retrying(self._release))
        if isinstance(released, str):
            message = (
                f"the service is restored, but the lock could not be released ({released}); it expires at "
                f"{_iso(self.state.lock.expires_at)}, and the next run then finds nothing left to undo"
            )
            self._log(logging.ERROR, message)
            report.error = f"{report.error}; {message}" if report.error else message
            report.error_type = report.error_type or RestoreFailed.__name__
            report.status = "failed"
            return
        self.state.lock = LockRecord.from_dict(released)

    def _restore_failed(self, report: RecycleReport, problem: str) -> None:
        lock = self.state.lock
        assert lock is not None
        report.restored = False
        message = (
            f"RESTORE FAILED, the service needs attention: {problem}. The lock is left in the lock table "
            f"(phase {lock.phase}, expires {_iso(lock.expires_at)}) so the next run after that repairs it."
        )
        self._log(logging.CRITICAL, message)
        report.error = f"{report.error}; {message}" if report.error else message
        report.error_type = report.error_type or RestoreFailed.__name__
        report.status = "failed"

    def _record(self, name: str, **changes: Any) -> str | None:
        """Write a phase to the lock item, retrying; the error text if it never lands."""
        write = self._lock_writer(changes)
        written = self.runtime.step(name, lambda: self._retrying(write))
        if isinstance(written, str):
            return f"could not record the restore's progress in the lock table ({written}); nothing more was changed"
        self.state.lock = LockRecord.from_dict(written)
        return None

    def _restore_desired(self, report: RecycleReport, stage: str) -> str | None:
        decision = self.runtime.step(f"{stage} desired count plan", lambda: self._retrying(self._plan_desired_restore))
        if isinstance(decision, str):
            return decision
        current, target = int(decision["current"]), int(decision["target"])
        if target != current:
            problem = self._record(
                f"{stage} mark restoring", phase=Phase.RESTORING, restore_from=current, restore_to=target
            )
            if problem is not None:
                return problem
            applied = self.runtime.step(
                f"{stage} desired count", lambda: self._retrying(lambda: self._set_desired(target))
            )
            if isinstance(applied, str):
                return applied
        report.restore_actions += decision["actions"]
        report.external_changes += decision["external"]
        return self._record(
            f"{stage} mark desired restored", phase=Phase.DESIRED_RESTORED, restore_from=None, restore_to=None
        )

    def _plan_desired_restore(self) -> dict[str, Any]:
        """Decide the desired count to go back to, from the recorded phase. Read-only, so safe to repeat.

        The decision is taken once (and recorded in the lock as "restoring"
        from/to) before anything is written: re-deciding after an UpdateService
        that landed would find the original count and remove a second task.
        """
        lock = self.state.lock
        assert lock is not None and lock.snapshot is not None
        s = lock.snapshot
        current = int(self._describe_service().get("desiredCount", 0))
        surged = s.desired_count + s.surge_size
        external: list[str] = []
        if lock.phase == Phase.RESTORING:
            assert lock.restore_from is not None and lock.restore_to is not None
            if current in (lock.restore_from, lock.restore_to):
                target = lock.restore_to
            else:
                target = current
                external.append(
                    f"desiredCount became {current} while the restore from {lock.restore_from} to "
                    f"{lock.restore_to} was under way; left as it is"
                )
        elif lock.phase == Phase.SURGING and not self.state.surge_landed:
            # A run that died around its surge: the UpdateService may or may not have landed.
            if current in (surged, s.desired_count):
                target = s.desired_count
            else:
                target = current
                external.append(
                    f"desiredCount is {current}, neither {s.desired_count} nor the surged {surged}: another actor "
                    f"changed it, and whether the surge landed cannot be told, so it is left as it is (at most "
                    f"{s.surge_size} above what they set)"
                )
        else:
            target = max(current - s.surge_size, 0)
            if current != surged:
                external.append(
                    f"desiredCount was changed by another actor during the run (expected {surged}, found "
                    f"{current}); removed only the {s.surge_size} task(s) this run added ({current} -> {target}) "
                    "and kept their change"
                )
        if not 0 <= target <= current:
            # A restore only ever takes away what a surge added: never below zero, never above now.
            raise LockCorrupt(
                f"the lock of {lock.owner} would set desiredCount {current} -> {target}, outside 0..{current}: "
                "refusing to apply it. Check the service by hand, then delete the lock item"
            )
        actions = [f"desiredCount {current} -> {target}"] if target != current else []
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

    def _restore_target(self, report: RecycleReport, stage: str) -> str | None:
        outcome = self.runtime.step(f"{stage} scalable target", lambda: self._retrying(self._undo_target_changes))
        if isinstance(outcome, str):
            return outcome
        report.restore_actions += outcome["actions"]
        report.external_changes += outcome["external"]
        report.restored_target = outcome.get("restored_target") or report.restored_target
        return self._record(f"{stage} mark target restored", phase=Phase.TARGET_RESTORED)

    def _undo_target_changes(self) -> dict[str, Any]:
        """Undo what this run changed on the scalable target, and only that.

        The run switched on the suspension flags that were off, and may have
        raised MaxCapacity for the surge. Those go back; whatever another actor
        changed meanwhile (Min, Max, flags the run did not touch) is kept and
        reported. Running this again after it landed changes nothing.
        """
        s = self._snapshot_of_lock()
        if not s.changes_target():
            return {"actions": [], "external": []}
        current = self._describe_scalable_target()
        if current is None:
            return {"actions": [], "external": ["the scalable target was deregistered during the run; nothing to undo"]}
        now_min, now_max = int(current["MinCapacity"]), int(current["MaxCapacity"])
        flags = dict(current["SuspendedState"])
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
        restored_target = {"min_capacity": now_min, "max_capacity": new_max, "suspended": flags}
        if flags == current["SuspendedState"] and new_max == now_max:
            return {"actions": [], "external": external, "restored_target": restored_target}
        kwargs: dict[str, Any] = {"SuspendedState": flags}
        if new_max != now_max:
            kwargs["MaxCapacity"] = new_max
        self._register_target(**kwargs)
        resumed = [flag for flag in s.flags_to_suspend() if current["SuspendedState"].get(flag)]
        action = f"scalable target Min={now_min} Max={new_max}"
        if new_max != now_max:
            action += f" (MaxCapacity {now_max} -> {new_max})"
        if resumed:
            action += "; resumed " + ", ".join(resumed).replace("Suspended", "")
        return {"actions": [action], "external": external, "restored_target": restored_target}

    def _register_target(self, **kwargs: Any) -> None:
        """RegisterScalableTarget on an existing target changes only the fields given (MinCapacity is never sent)."""
        self._call(
            self.autoscaling.register_scalable_target,
            ServiceNamespace="ecs",
            ResourceId=self._resource_id(),
            ScalableDimension=SCALABLE_DIMENSION,
            **kwargs,
        )

    def _release(self) -> dict[str, Any]:
        current = self.state.lock
        assert current is not None
        released = self._store.write(
            current,
            phase=Phase.RELEASED,
            expires_at=int(self.clock.now()) + RELEASED_RETENTION_SECONDS,
            restore_from=None,
            restore_to=None,
        )
        return released.to_dict()

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

    # ------------------------------------------------------------- AWS reads

    def _call(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        with aws_errors(getattr(operation, "__name__", "AWS call")):
            return operation(**kwargs)

    def _describe_service(self, include_tags: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cluster": self.request.cluster_name, "services": [self.request.service_name]}
        if include_tags:
            kwargs["include"] = ["TAGS"]
        try:
            response = self._call(self.ecs.describe_services, **kwargs)
        except AwsCallFailed as e:
            if error_code(e.__cause__) == "ClusterNotFoundException":
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
        with aws_errors("ListTasks"):
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
        with aws_errors("DescribeScalableTargets"):
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


def _stale_lock(preflight: dict[str, Any]) -> LockRecord | None:
    """The expired, unreleased lock the pre-flight found: a run died holding it, and its restore is owed."""
    raw = preflight.get("lock")
    if not raw:
        return None
    lock = LockRecord.from_dict(raw)
    return lock if lock.phase != Phase.RELEASED else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


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
