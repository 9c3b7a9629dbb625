"""The recycle, orchestrated: pre-flight, lock, surge, recycle, restore, report.

The engine takes its host's setup (boto3 clients, a clock and a Runtime, recycler.run.context) and
policy (recycler.run.ports), so the same algorithm runs in a plain invocation, a durable execution and a
test on a virtual clock. Each part has a module of its own: the AWS calls
(recycler.aws.gateway), the pre-flight and plan (recycler.run.preflight), the lock
(recycler.lock.record, recycler.lock.store, recycler.lock.lease), the surge and the
restore (recycler.run.capacity), and the replacement watch (recycler.run.watch).
"""

from __future__ import annotations

import logging

from recycler.lock.history import RunEntry, RunHistory
from recycler.lock.lease import Lease, LockHolder
from recycler.lock.record import LOCK_TABLE_ENV, LockRecord
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
from recycler.model.progress import LiveProgress
from recycler.model.report import RecycleReport, TaskResult
from recycler.model.request import RecycleRequest
from recycler.model.runtime import iso_seconds
from recycler.model.states import Status
from recycler.observability import logs
from recycler.run.batches import BatchRunner
from recycler.run.budget import plan_fits, run_lock_ttl
from recycler.run.capacity import Capacity
from recycler.run.context import EngineSetup, RunContext
from recycler.run.events import RunEvents
from recycler.run.gates import CANCEL_TAG_KEY, CancelRequest, Gates, StopReason, remove_cancel_tag, stop_error
from recycler.run.liveness import LiveRuntime
from recycler.run.ports import HandOffDecision, RunPolicy
from recycler.run.preflight import Preflight, PreflightOutcome, legacy_tag_note, preflight_step
from recycler.run.rehearsal import Rehearsal, Rehearsed
from recycler.run.second_start import SecondStart
from recycler.run.selection import Selection
from recycler.run.watch import ReplacementWatch


class Recycler:
    """Restart every task of one service, one at a time, and put the service back."""

    def __init__(self, setup: EngineSetup, policy: RunPolicy | None = None) -> None:
        self.setup = setup
        self.policy = policy or RunPolicy()
        # The latest run, whose selection a test may read.
        self.last_run: Run | None = None

    def run(self, request: RecycleRequest) -> RecycleReport:
        """Recycle the service. Raises nothing for an outcome: the report says it."""
        # Bound once: every line of the run, whichever module or host writes it, names the service.
        with logs.bound(cluster=request.cluster_name, service=request.service_name):
            return self._run_reported(request)

    def _run_reported(self, request: RecycleRequest) -> RecycleReport:
        setup = self.setup
        gateway = setup.clients.gateway(request)
        cluster, service = request.cluster_name, request.service_name
        report = RecycleReport(status=Status.FAILED, cluster=cluster, service=service, region=setup.clients.region)
        started = setup.runtime.step("start", setup.clock.now)
        report.started_at = iso_seconds(started)
        run = self.last_run = Run(RunContext(setup, request, gateway, started), self.policy)
        run.log(logging.INFO, f"Starting task recycle for {cluster}/{service}")
        try:
            run.run(report)
        except Exception as e:  # noqa: BLE001 - every failure must end in a report, never escape unrestored
            # Not `finally`: a durable suspension is a BaseException and must not restore.
            run.fail(report, e)
        run.account(report)
        finished = setup.runtime.step("finish", setup.clock.now)
        report.duration_seconds = round(finished - started, 1)
        run.record_history(report, finished)
        run.events.finished(report)
        if report.status == Status.SUCCEEDED and report.task_total:
            run.log(logging.INFO, "Task recycle completed successfully", tasks_recycled=len(report.tasks_recycled))
        return report


class Run:
    """One run of the engine, from its pre-flight to its restore: what it learns on the way lives here."""

    def __init__(self, context: RunContext, policy: RunPolicy) -> None:
        liveness = policy.liveness
        if liveness is not None:
            # A run in one process beats while it waits; its holder is this run's, whichever a repair left.
            context = context.with_runtime(LiveRuntime(context.runtime, context.clock, liveness, self._beat))
        self.context = context
        self.policy = policy
        self.request = context.request
        self.gateway = context.gateway
        self.runtime = context.runtime
        self.log = context.log
        self.holder, self.capacity = self._fresh_hold()
        self.events = RunEvents(context.setup.clients.bus(), context.runtime, context.owner_id)
        # A selection is this run's only once its pre-flight makes one (the report accounts for it).
        self.selection: Selection | None = None
        # The service's lock key, once this run has written its lock (taken it, or taken a stale one over): only
        # such a run leaves a history item, so a refused run or a dry run still writes nothing at all.
        self.lock_key: str | None = None

    def run(self, report: RecycleReport) -> None:
        request = self.request
        if request.dry_run:
            self._rehearse(report)
            return
        if self.context.lock_store is None:
            raise ConfigError(LOCK_TABLE_ENV, "a recycle needs the lock table (only a dry run works without one)")
        try:
            preflight = self._preflight("preflight", report)
        except LockHeld as held:
            second = SecondStart(self.request, self.policy.hand_off, report, self.log)
            if second.already_handed_off() or second.already_running(held):
                return
            raise
        selection = self._selection()
        if self.policy.admission is not None:
            self.policy.admission(preflight, selection)
        if self._handed_off(preflight, selection, report):
            return
        if preflight.stale_lock is not None:
            # Undoing what a dead run left is safe whatever the alarms say; recycling is what they gate.
            self._repair(preflight.stale_lock, report)
            preflight = self._preflight("preflight after repair", report)
            selection = self._selection()
        watch = self._describe(preflight, selection, self._gate(preflight), report)
        if not selection.chosen:
            report.status = Status.SUCCEEDED
            left = len(preflight.running_tasks)
            why = f"all {left} running tasks are left alone" if left else "the service runs no task"
            self.log(logging.INFO, f"Nothing to recycle: {why}")
            return
        interrupt = watch.gates.interrupt() if watch.gates is not None else None
        if interrupt is not None:
            # Interrupted before anything changed: there is nothing to restore.
            raise stop_error(interrupt)
        surge_size = min(request.batch_size, len(selection.chosen))
        snapshot = preflight.snapshot(request.maintain_service_state, surge_size)
        self.holder.acquire(preflight.lock_key, preflight.lock, snapshot, len(selection.chosen), request.run_key)
        self.lock_key = preflight.lock_key
        self.events.started(report)
        batches = BatchRunner(self.context, self.policy, selection, watch, self.holder, self.events)
        try:
            self._cancel_tag_at_start(preflight, report)
            if request.maintain_service_state:
                self._surge(report, batches, watch)
            batches.run(report)
        except Exception as e:  # noqa: BLE001 - compensation: whatever failed, the restore below runs
            self._stopped(report, e)
        self._restore(report)
        if report.status == Status.CANCELLED:
            self.runtime.step("remove cancel tag", lambda: remove_cancel_tag(self.gateway, preflight.service_arn))
        if report.error is None:
            report.status = Status.SUCCEEDED

    # ------------------------------------------------------------ the parts

    def _rehearse(self, report: RecycleReport) -> None:
        """A dry run: every check the run would make before changing anything, each refusal listed, none raised."""
        rehearsal = Rehearsal(self.context, self.policy)
        result = Rehearsed.from_dict(self.runtime.step("dry run", lambda: rehearsal.run().to_dict()))
        report.status = Status.DRY_RUN
        report.plan, report.would_refuse = result.plan, result.would_refuse
        found = result.found
        if found is not None:
            report.found(found["service_arn"], found["desired_count"])
            report.task_total = found["task_total"]
        report.tasks_skipped += [TaskResult(0, arn, None, 0.0, note) for arn, note in result.left_alone]
        report.external_changes += result.notes
        for entry in report.would_refuse:
            self.log(logging.WARNING, f"The run would be refused: {entry['problem']}", check=entry["check"])

    def _gate(self, preflight: Preflight) -> Gates:
        """The alarms that gate this run must all exist and be quiet before anything changes."""
        names = preflight.gating_alarms(self.request)
        liveness = self.policy.liveness
        gates = Gates(self.context, names, preflight.cancel_tag, liveness.interrupted if liveness else None)
        if names:
            self.runtime.step("check alarms", gates.refuse_unless_alarms_are_quiet)
        return gates

    def _handed_off(self, preflight: Preflight, selection: Selection, report: RecycleReport) -> bool:
        """A plan too long for this invocation goes to the durable function, before anything is changed."""
        hand_off = self.policy.hand_off
        if hand_off is None:
            return False
        request, settings, remaining = self.request, self.context.settings, self.runtime.remaining_seconds

        def decide() -> HandOffDecision:
            return hand_off.decide(plan_fits(preflight, selection, request, settings, remaining()))

        decision = HandOffDecision.from_dict(self.runtime.step("hand-off decision", lambda: decide().to_dict()))
        if not decision.would_hand_off:
            return False
        # A firing or missing alarm refuses the run here, rather than in a durable execution started for nothing.
        self._gate(preflight)
        report.handed_off = self.runtime.step("hand off", lambda: hand_off.start(self.context.started).to_dict())
        report.status = Status.HANDED_OFF
        self.log(
            logging.INFO,
            f"The plan takes about {decision.estimated_seconds}s, more than the {decision.available_seconds}s "
            f"this invocation has: handed off to the durable function as {report.handed_off['execution_name']}",
        )
        return True

    def _cancel_tag_at_start(self, preflight: Preflight, report: RecycleReport) -> None:
        """A cancel tag older than this run was left by one that ended: remove it, say so, carry on."""
        if preflight.cancel_tag is None:
            return
        cancel = CancelRequest.from_tag_value(preflight.cancel_tag)
        if cancel.applies_to(self.context.started, self.context.owner_id):
            raise stop_error(StopReason("cancel", cancel.describe()))
        self.runtime.step("remove stale cancel tag", lambda: remove_cancel_tag(self.gateway, preflight.service_arn))
        note = f"removed a stale {CANCEL_TAG_KEY} tag ({cancel.describe()}), left from a run that had already ended"
        report.external_changes.append(note)
        self.log(logging.WARNING, note)

    def _fresh_hold(self) -> tuple[LockHolder, Capacity]:
        """A new hold on the lock, and the capacity changes made under it (again after a repair)."""
        context, fixed, remaining = self.context, self.policy.lock_ttl_seconds, self.runtime.remaining_seconds
        liveness = self.policy.liveness
        lease = Lease(lambda: run_lock_ttl(fixed, remaining()), liveness.heartbeat_seconds if liveness else None)
        holder = LockHolder(context.lock_store, context.runtime, context.clock, context.owner_id, lease, context.log)
        return holder, Capacity(context, holder)

    def _beat(self) -> None:
        self.holder.beat()

    def _preflight(self, name: str, report: RecycleReport) -> Preflight:
        """Read the service, and count what this run would recycle (the report knows it from here on)."""
        context = self.context
        checked = self.runtime.step(
            name, lambda: preflight_step(self.gateway, context.lock_store, context.clock).to_dict()
        )
        outcome, request = PreflightOutcome.from_dict(checked), self.request
        refused = outcome.refused
        if refused is not None:
            report.found(refused.service_arn, refused.desired_count)
            self.events.service_arn = refused.service_arn
            counted: int | None = refused.running_count
            holder = refused.lock_holder
            if holder:
                report.held_by(holder)
                # The live counts include the holder's surge: its snapshot has the service as it was.
                counted = report.original_desired_count
            if not request.min_task_age_seconds and request.max_tasks is None and request.started_before is None:
                # Every running task would have been recycled: the count is known without listing them.
                report.task_total = counted
            raise refused.exception()
        preflight = outcome.preflight
        assert preflight is not None  # an outcome is a refusal or a pre-flight
        self.selection = preflight.select(request)
        report.found(preflight.service_arn, preflight.desired_count)
        self.events.service_arn = preflight.service_arn
        report.task_total = len(self.selection.chosen)
        return preflight

    def _selection(self) -> Selection:
        assert self.selection is not None  # made by the pre-flight that just returned
        return self.selection

    def _describe(
        self, preflight: Preflight, selection: Selection, gates: Gates, report: RecycleReport
    ) -> ReplacementWatch:
        for arn, note in selection.left_alone:
            report.tasks_skipped.append(TaskResult(0, arn, None, 0.0, note))
        if preflight.legacy_lock_tag:
            report.external_changes.append(legacy_tag_note())
            self.log(logging.WARNING, legacy_tag_note())
        self.log(
            logging.INFO,
            f"Original desired count: {report.original_desired_count}, tasks: {len(preflight.running_tasks)}",
            desired_count=report.original_desired_count,
            task_total=len(preflight.running_tasks),
        )
        left_alone = len(selection.left_alone) + len(selection.beyond_max)
        if left_alone:
            self.log(
                logging.INFO,
                f"Recycling {report.task_total} of them in {len(selection.batches)} batches; {left_alone} left "
                f"alone ({selection.after_started_before} started at or after started_before, "
                f"{len(selection.left_alone) - selection.after_started_before} younger than min_task_age_seconds, "
                f"{len(selection.beyond_max)} beyond max_tasks)",
            )
        self.context.tell(LiveProgress(recycled=0, total=report.task_total, batch=0, batches=len(selection.batches)))
        return ReplacementWatch(self.context, preflight, gates)

    def _repair(self, stale: LockRecord, report: RecycleReport) -> None:
        """Take the expired lock over and finish its restore from the phase it recorded, then release it."""
        self.log(
            logging.WARNING,
            f"Found an expired lock from run {stale.owner} (phase {stale.phase}); restoring from it first",
            lock_owner=stale.owner,
            lock_phase=stale.phase,
        )
        self.holder.take_over(stale)
        self.lock_key = stale.key
        repair = RecycleReport(status=Status.REPAIR, cluster=report.cluster, service=report.service)
        self.capacity.restore(repair, stage="repair")
        report.restore_actions += [f"repaired expired lock of {stale.owner}: {a}" for a in repair.restore_actions]
        report.external_changes += repair.external_changes
        if repair.restored is not True or repair.error:
            raise RestoreFailed(f"could not repair the expired lock of run {stale.owner}: {repair.error}")
        self.holder, self.capacity = self._fresh_hold()

    def _surge(self, report: RecycleReport, batches: BatchRunner, watch: ReplacementWatch) -> None:
        surge_started = self.capacity.surge()
        try:
            surged = watch.wait("surge task", surge_started, self.capacity.snapshot.surge_size)
        except TimeBudgetExhausted as e:
            raise batches.resumable(e, len(batches.selection.chosen)) from e
        watch.served(surged)
        report.failed_replacements += int(surged.failures)
        self.holder.write("renew lock 0")

    def _restore(self, report: RecycleReport) -> None:
        if self.holder.record is None:
            return
        try:
            self.capacity.restore(report)
        except LockLost as e:
            # Another run took the service over meanwhile: it restores from its own lock.
            self.fail(report, e)
            report.restored = False

    # ------------------------------------------------------------- outcomes

    def _stopped(self, report: RecycleReport, error: Exception) -> None:
        """The run stopped early: say why, and which tasks it did not get to."""
        self.fail(report, error)
        if isinstance(error, ReplacementFailed):
            # The wait gave up when this many had failed.
            report.failed_replacements += self.context.settings.max_failed_replacements
        if isinstance(error, LockLost):
            # Another run owns the service now; restoring from our snapshot would undo its work.
            self.holder.record = None
            report.restored = False

    def record_history(self, report: RecycleReport, ended: float) -> None:
        """One history item for a run that wrote its lock. A step, so a durable replay does not write it twice; a
        failed write is logged and never changes the outcome."""
        store, key = self.context.lock_store, self.lock_key
        if store is None or key is None:
            return
        entry = RunEntry.of(report, self.context.owner_id, self.policy.requested_by, self.context.started, ended)

        def record() -> dict[str, str]:
            try:
                RunHistory(store.dynamodb, store.table_name).record(key, entry)
            except RecycleError as e:
                self.log(logging.WARNING, f"The run's history item was not written: {e}", error_type=type(e).__name__)
                return {"history": "not written"}
            return {"history": "written"}

        self.runtime.step("history", record)

    def account(self, report: RecycleReport) -> None:
        """Every task the pre-flight found, in exactly one of the report's lists: those in none remain."""
        selection = self.selection
        if selection is not None and report.status not in (Status.DRY_RUN, Status.HANDED_OFF):
            report.account_for(selection.left_alone, (*selection.chosen, *selection.beyond_max))

    def fail(self, report: RecycleReport, error: Exception) -> None:
        if report.error is not None:
            return
        report.error = str(error)
        report.error_type = type(error).__name__
        if isinstance(error, LockHeld) and error.holder and report.lock_holder is None:
            report.held_by(error.holder)
        report.status = outcome_of(error)
        level = logging.ERROR if isinstance(error, RecycleError) else logging.CRITICAL
        self.log(level, f"Task recycle stopped: {error}", error_type=report.error_type)
