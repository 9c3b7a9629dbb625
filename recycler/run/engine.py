"""The recycle, orchestrated: pre-flight, lock, surge, recycle, restore, report.

The engine takes its boto3 clients, a clock and a Runtime (recycler.model.runtime),
so the same algorithm runs in a plain invocation, a durable execution and a
test on a virtual clock. Each part has a module of its own: the reads
(recycler.aws.gateway), the pre-flight and plan (recycler.run.preflight), the lock
(recycler.lock.record, recycler.lock.store, recycler.lock.lease), the surge and the
restore (recycler.run.capacity), and the replacement watch (recycler.run.watch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from recycler.aws.gateway import ServiceGateway
from recycler.lock.lease import LockHolder
from recycler.lock.record import LOCK_TABLE_ENV, LockRecord
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import (
    ConfigError,
    LockHeld,
    LockLost,
    RecycleError,
    ReplacementFailed,
    RestoreFailed,
    TimeBudgetExhausted,
    outcome_of,
)
from recycler.model.report import RecycleReport, TaskResult
from recycler.model.request import RecycleRequest
from recycler.model.runtime import Clock, Runtime, iso_seconds
from recycler.model.settings import RecycleSettings
from recycler.observability import logs
from recycler.run.batches import BatchRunner
from recycler.run.capacity import Capacity
from recycler.run.gates import CANCEL_TAG_KEY, CancelRequest, Gates, remove_cancel_tag, stop_error
from recycler.run.ports import HandOffPort
from recycler.run.preflight import Preflight, legacy_tag_note, preflight_step, refusal
from recycler.run.rehearsal import Rehearsal
from recycler.run.selection import select
from recycler.run.watch import ReplacementWatch


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
        preflight_check: Callable[[Preflight], None] | None = None,
        out_of_time_hint: str = "use the long-running (durable) function, which has no 15-minute limit",
        lock_store: DynamoLockStore | None = None,
        batch_seconds: Callable[[float], float] | None = None,
        cloudwatch: Any = None,
        hand_off: HandOffPort | None = None,
        sts: Any = None,
    ) -> None:
        self.clients = (ecs, autoscaling, elbv2)
        self.cloudwatch = cloudwatch
        # Asked only for the account a not-found error names.
        self.sts = sts
        # Set by the plain handler when the template gave it the durable alias.
        self.hand_off = hand_off
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
        # The time one more batch needs, given the replacement estimate (the durable host counts the worst case).
        self.batch_seconds = batch_seconds or self._plain_batch_seconds

    def _plain_batch_seconds(self, estimate: float) -> float:
        """One more batch must fit: the slowest replacement so far with a margin, wait_time, and the restore."""
        return estimate + self.request.wait_time + self.settings.restore_reserve_seconds

    # ------------------------------------------------------------------ run

    def run(self, request: RecycleRequest) -> RecycleReport:
        """Recycle the service. Raises nothing for an outcome: the report says it."""
        # Bound once: every line of the run, whichever module or host writes it, names the service.
        with logs.bound(cluster=request.cluster_name, service=request.service_name):
            return self._run_reported(request)

    def _run_reported(self, request: RecycleRequest) -> RecycleReport:
        self.request = request
        # A selection is this run's only once its pre-flight makes one (the report accounts for it).
        vars(self).pop("selection", None)
        self.reads = ServiceGateway(*self.clients, request=request, cloudwatch=self.cloudwatch, sts=self.sts)
        self._fresh_hold()
        cluster, service = request.cluster_name, request.service_name
        # The region the session reaches, until the service's own ARN says it (a first call may fail).
        region = getattr(getattr(self.clients[0], "meta", None), "region_name", None)
        report = RecycleReport(status="failed", cluster=cluster, service=service, region=region)
        self.started = started = self.runtime.step("start", self.clock.now)
        report.started_at = iso_seconds(started)
        self._log(logging.INFO, f"Starting task recycle for {cluster}/{service}")
        try:
            self._run(request, report)
        except Exception as e:  # noqa: BLE001 - every failure must end in a report, never escape unrestored
            # Not `finally`: a durable suspension is a BaseException and must not restore.
            self._fail(report, e)
        self._account(report)
        finished = self.runtime.step("finish", self.clock.now)
        report.duration_seconds = round(finished - started, 1)
        if report.status == "succeeded" and report.task_total:
            self._log(logging.INFO, "Task recycle completed successfully", tasks_recycled=len(report.tasks_recycled))
        return report

    def _run(self, request: RecycleRequest, report: RecycleReport) -> None:
        if request.dry_run:
            self._rehearse(report)
            return
        if self.lock_store is None:
            raise ConfigError(LOCK_TABLE_ENV, "a recycle needs the lock table (only a dry run works without one)")
        try:
            preflight = self._preflight("preflight", report)
        except LockHeld:
            if self._already_handed_off(report):
                return
            raise
        if self.preflight_check is not None:
            self.preflight_check(preflight)
        if self._handed_off(preflight, report):
            return
        if preflight.stale_lock is not None:
            # Undoing what a dead run left is safe whatever the alarms say; recycling is what they gate.
            self._repair(preflight.stale_lock, report)
            preflight = self._preflight("preflight after repair", report)
        self._gate(preflight)
        self._describe(preflight, report)
        if not self.originals:
            report.status = "succeeded"
            left = len(preflight.running_tasks)
            why = f"all {left} running tasks are left alone" if left else "the service runs no task"
            self._log(logging.INFO, f"Nothing to recycle: {why}")
            return
        surge_size = min(request.batch_size, len(self.originals))
        snapshot = preflight.snapshot(request.maintain_service_state, surge_size)
        self.holder.acquire(preflight.lock_key, preflight.lock, snapshot, len(self.originals))
        batches = self._batches()
        try:
            self._cancel_tag_at_start(preflight, report)
            if request.maintain_service_state:
                self._surge(report, batches)
            batches.run(report)
        except Exception as e:  # noqa: BLE001 - compensation: whatever failed, the restore below runs
            self._stopped(report, e)
        self._restore(report)
        if report.status == "cancelled":
            self.runtime.step("remove cancel tag", lambda: remove_cancel_tag(self.reads, preflight.service_arn))
        if report.error is None:
            report.status = "succeeded"

    # ------------------------------------------------------------ the parts

    def _rehearse(self, report: RecycleReport) -> None:
        """A dry run: every check the run would make before changing anything, each refusal listed, none raised."""
        rehearsal = Rehearsal(
            self.reads,
            self.lock_store,
            self.clock,
            self.settings,
            self.request,
            self.runtime.remaining_seconds,
            self.hand_off,
            self.preflight_check,
        )
        result = self.runtime.step("dry run", rehearsal.run)
        report.status = "dry_run"
        report.plan, report.would_refuse = result["plan"], result["would_refuse"]
        found = result["found"]
        if found is not None:
            report.found(found["service_arn"], found["desired_count"])
            report.task_total = found["task_total"]
        report.tasks_skipped += [TaskResult(0, arn, None, 0.0, note) for arn, note in result["left_alone"]]
        report.external_changes += result["notes"]
        for entry in report.would_refuse:
            self._log(logging.WARNING, f"The run would be refused: {entry['problem']}", check=entry["check"])

    def _gate(self, preflight: Preflight) -> None:
        """The alarms that gate this run must all exist and be quiet before anything changes."""
        request = self.request
        names = preflight.gating_alarms(request)
        self.gates = Gates(self.reads, names, self.started, self.owner_id, preflight.cancel_tag)
        if names:
            self.runtime.step("check alarms", self.gates.refuse_unless_alarms_are_quiet)

    def _handed_off(self, preflight: Preflight, report: RecycleReport) -> bool:
        """A plan too long for this invocation goes to the durable function, before anything is changed."""
        hand_off = self.hand_off
        if hand_off is None:
            return False
        decision = self.runtime.step("hand-off decision", lambda: hand_off.decide(preflight, self.selection))
        if not decision["would_hand_off"]:
            return False
        # A firing or missing alarm refuses the run here, rather than in a durable execution started for nothing.
        self._gate(preflight)
        report.handed_off = self.runtime.step("hand off", lambda: hand_off.start(self.started))
        report.status = "handed_off"
        self._log(
            logging.INFO,
            f"The plan takes about {decision['estimated_seconds']}s, more than the {decision['available_seconds']}s "
            f"this invocation has: handed off to the durable function as {report.handed_off['execution_name']}",
        )
        return True

    def _already_handed_off(self, report: RecycleReport) -> bool:
        """A retry of an invocation whose durable execution has started, and holds the lock: still a hand-off."""
        holder = report.lock_holder or {}
        if self.hand_off is None or self.request.dry_run or not self.hand_off.owns(holder.get("owner")):
            return False
        report.handed_off = self.hand_off.following(already_started=True)
        report.status, report.lock_holder = "handed_off", None
        self._log(logging.INFO, f"Already handed off: the durable execution {report.handed_off['execution_name']} runs")
        return True

    def _cancel_tag_at_start(self, preflight: Preflight, report: RecycleReport) -> None:
        """A cancel tag older than this run was left by one that ended: remove it, say so, carry on."""
        if preflight.cancel_tag is None:
            return
        cancel = CancelRequest.from_tag_value(preflight.cancel_tag)
        if cancel.applies_to(self.started, self.owner_id):
            raise stop_error({"kind": "cancel", "detail": cancel.describe()})
        self.runtime.step("remove stale cancel tag", lambda: remove_cancel_tag(self.reads, preflight.service_arn))
        note = f"removed a stale {CANCEL_TAG_KEY} tag ({cancel.describe()}), left from a run that had already ended"
        report.external_changes.append(note)
        self._log(logging.WARNING, note)

    def _fresh_hold(self) -> None:
        """A new hold on the lock, and the capacity changes made under it (again after a repair)."""
        log, store = self._log, self.lock_store
        self.holder = LockHolder(store, self.runtime, self.clock, self.owner_id, self.lock_ttl_seconds, log)
        self.capacity = Capacity(self.reads, self.holder, self.runtime, self.clock, log)

    def _preflight(self, name: str, report: RecycleReport) -> Preflight:
        """Read the service, and count what this run would recycle (the report knows it from here on)."""
        checked = self.runtime.step(name, lambda: preflight_step(self.reads, self.lock_store, self.clock))
        request = self.request
        if "refused" in checked:
            refused = checked["refused"]
            report.found(refused["service_arn"], refused["desired_count"])
            counted = refused["running_count"]
            holder = refused.get("lock_holder")
            if holder:
                report.held_by(holder)
                # The live counts include the holder's surge: its snapshot has the service as it was.
                counted = report.original_desired_count
            if not request.min_task_age_seconds and request.max_tasks is None and request.started_before is None:
                # Every running task would have been recycled: the count is known without listing them.
                report.task_total = counted
            raise refusal(refused)
        preflight = Preflight.from_dict(checked["preflight"])
        self.selection = select(
            preflight.running_tasks,
            preflight.read_at,
            request.batch_size,
            request.min_task_age_seconds,
            request.max_tasks,
            started_before=request.started_before,
        )
        self.originals = list(self.selection.chosen)
        report.found(preflight.service_arn, preflight.desired_count)
        report.task_total = len(self.originals)
        return preflight

    def _describe(self, preflight: Preflight, report: RecycleReport) -> None:
        for arn, note in self.selection.left_alone:
            report.tasks_skipped.append(TaskResult(0, arn, None, 0.0, note))
        self.watch = ReplacementWatch(
            self.reads, self.runtime, self.clock, self.settings, preflight, self._log, self.gates
        )
        if preflight.legacy_lock_tag:
            report.external_changes.append(legacy_tag_note())
            self._log(logging.WARNING, legacy_tag_note())
        self._log(
            logging.INFO,
            f"Original desired count: {report.original_desired_count}, tasks: {len(preflight.running_tasks)}",
            desired_count=report.original_desired_count,
            task_total=len(preflight.running_tasks),
        )
        selection = self.selection
        left_alone = len(selection.left_alone) + len(selection.beyond_max)
        if left_alone:
            self._log(
                logging.INFO,
                f"Recycling {report.task_total} of them in {len(selection.batches)} batches; {left_alone} left "
                f"alone ({selection.after_started_before} started at or after started_before, "
                f"{len(selection.left_alone) - selection.after_started_before} younger than min_task_age_seconds, "
                f"{len(selection.beyond_max)} beyond max_tasks)",
            )

    def _repair(self, stale: LockRecord, report: RecycleReport) -> None:
        """Take the expired lock over and finish its restore from the phase it recorded, then release it."""
        self._log(
            logging.WARNING,
            f"Found an expired lock from run {stale.owner} (phase {stale.phase}); restoring from it first",
            lock_owner=stale.owner,
            lock_phase=stale.phase,
        )
        self.holder.take_over(stale)
        repair = RecycleReport(status="repair", cluster=report.cluster, service=report.service)
        self.capacity.restore(repair, stage="repair")
        report.restore_actions += [f"repaired expired lock of {stale.owner}: {a}" for a in repair.restore_actions]
        report.external_changes += repair.external_changes
        if repair.restored is not True or repair.error:
            raise RestoreFailed(f"could not repair the expired lock of run {stale.owner}: {repair.error}")
        self._fresh_hold()

    def _surge(self, report: RecycleReport, batches: BatchRunner) -> None:
        surge_started = self.capacity.surge()
        try:
            surged = self.watch.wait("surge task", surge_started, self.capacity.snapshot.surge_size)
        except TimeBudgetExhausted as e:
            raise batches.resumable(e, len(self.originals)) from e
        self.watch.served(surged)
        report.failed_replacements += int(surged["failures"])
        self.holder.write("renew lock 0")

    def _batches(self) -> BatchRunner:
        return BatchRunner(
            self.request,
            self.settings,
            self.selection,
            self.reads,
            self.watch,
            self.holder,
            self.runtime,
            self.clock,
            self._log,
            gates=self.gates,
            started=self.started,
            batch_seconds=self.batch_seconds,
            out_of_time_hint=self.out_of_time_hint,
        )

    def _restore(self, report: RecycleReport) -> None:
        if self.holder.record is None:
            return
        try:
            self.capacity.restore(report)
        except LockLost as e:
            # Another run took the service over meanwhile: it restores from its own lock.
            self._fail(report, e)
            report.restored = False

    # ------------------------------------------------------------- outcomes

    def _stopped(self, report: RecycleReport, error: Exception) -> None:
        """The run stopped early: say why, and which tasks it did not get to."""
        self._fail(report, error)
        if isinstance(error, ReplacementFailed):
            # The wait gave up when this many had failed.
            report.failed_replacements += self.settings.max_failed_replacements
        if isinstance(error, LockLost):
            # Another run owns the service now; restoring from our snapshot would undo its work.
            self.holder.record = None
            report.restored = False

    def _account(self, report: RecycleReport) -> None:
        """Every task the pre-flight found, in exactly one of the report's lists: those in none remain."""
        selection = getattr(self, "selection", None)
        if selection is not None and report.status not in ("dry_run", "handed_off"):
            report.account_for(selection.left_alone, (*selection.chosen, *selection.beyond_max))

    def _fail(self, report: RecycleReport, error: Exception) -> None:
        if report.error is not None:
            return
        report.error = str(error)
        report.error_type = type(error).__name__
        if isinstance(error, LockHeld) and error.holder and report.lock_holder is None:
            report.held_by(error.holder)
        report.status = outcome_of(error)
        level = logging.ERROR if isinstance(error, RecycleError) else logging.CRITICAL
        self._log(level, f"Task recycle stopped: {error}", error_type=report.error_type)

    def _log(self, level: int, message: str, **fields: Any) -> None:
        self.runtime.log(level, message, **fields)
