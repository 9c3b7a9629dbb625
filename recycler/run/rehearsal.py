"""The dry run: every check the real run makes before it changes anything, made without raising.

A dry run changes nothing, not even the lock. Where the real run would refuse (the lock table, the
lock, the service, a deployment, the alarms, the time budget), the dry run notes the problem in
``would_refuse`` and goes on, so that one dry run lists every problem the run would meet, not only
the first. Each check is the real run's own function (read_preflight, alarm_problems, plan_fits,
the host's admission), so the two cannot disagree. After a crash, the plan starts with the repair
the run will make first, decided by the restore's own rules, and plans the recycle from the service
as that repair leaves it: its original desired count, not the surged one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypedDict

from recycler.lock.record import LOCK_TABLE_ENV, LockRecord, Phase
from recycler.model.errors import LockCorrupt, PreflightError, ServiceNotFound
from recycler.model.report import ReportPlan
from recycler.model.runtime import iso_seconds
from recycler.model.states import DESIRED_PENDING
from recycler.run.budget import PlanFit, plan_fits
from recycler.run.capacity import desired_restore_plan, target_restore_plan
from recycler.run.context import RunContext
from recycler.run.gates import alarm_problems
from recycler.run.plan import RepairPlan, make_plan
from recycler.run.ports import HANDOFF_ENV, HandOffDecision, RunPolicy
from recycler.run.preflight import Preflight, legacy_tag_note, read_preflight
from recycler.run.selection import Selection

NO_LOCK_TABLE = (
    f"{LOCK_TABLE_ENV}: no lock table is configured, and a recycle needs one. Deploy cloudformation.yaml (it "
    f"creates the table and sets {LOCK_TABLE_ENV}); for the CLI set {LOCK_TABLE_ENV} to the stack's "
    "LockTableName output, or recycle.lock_table_name in input.json"
)


def problem(check: str, text: str) -> dict[str, str]:
    """One entry of would_refuse: which check, and what the run would say."""
    return {"check": check, "problem": text}


class FoundService(TypedDict):
    """The service as the dry run found it, and how many tasks the run would recycle."""

    service_arn: str
    desired_count: int
    task_total: int


@dataclass(frozen=True)
class Rehearsed:
    """The dry run's findings (its step's result, through to_dict/from_dict): what the engine puts in the report."""

    would_refuse: list[dict[str, str]]
    # The report's plan, as JSON already; None when the service was not found.
    plan: ReportPlan | None = None
    found: FoundService | None = None
    left_alone: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "left_alone": [list(entry) for entry in self.left_alone]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rehearsed:
        left_alone = [(str(arn), str(note)) for arn, note in data["left_alone"]]
        return cls(data["would_refuse"], data["plan"], data["found"], left_alone, list(data["notes"]))


class Rehearsal:
    def __init__(self, context: RunContext, policy: RunPolicy) -> None:
        self.gateway = context.gateway
        self.store = context.lock_store
        self.clock = context.clock
        self.settings = context.settings
        self.request = context.request
        self.remaining_seconds = context.runtime.remaining_seconds
        self.hand_off = policy.hand_off
        # The host's admission (the durable run's ExecutionTimeout bound): raises PreflightError to refuse.
        self.admission = policy.admission

    def run(self) -> Rehearsed:
        """The dry run's findings (it runs as one step): the plan, would_refuse, and the report's facts."""
        request = self.request
        would_refuse = [problem("lock_table", NO_LOCK_TABLE)] if self.store is None else []
        try:
            found = read_preflight(self.gateway, self.store, self.clock, would_refuse=would_refuse)
        except ServiceNotFound as e:
            would_refuse.append(problem("service", str(e)))
            # The service's own deployment alarms are unknown; the event's are checked all the same.
            would_refuse += [problem("alarms", p) for p in alarm_problems(self.gateway, request.alarm_names)]
            return Rehearsed(would_refuse)
        repair, preflight = None, found
        held = any(entry["check"] == "lock" for entry in would_refuse)
        stale = found.lock if found.lock is not None and found.lock.is_stale(found.read_at) and not held else None
        if stale is not None:
            try:
                repair, preflight = self._repair(found, stale)
            except LockCorrupt as e:
                would_refuse.append(problem("lock", str(e)))
        # The real run checks them after the repair: undoing a crash is safe whatever the alarms say.
        would_refuse += [problem("alarms", p) for p in alarm_problems(self.gateway, preflight.gating_alarms(request))]
        selection = preflight.select(request)
        fit = plan_fits(preflight, selection, request, self.settings, self.remaining_seconds())
        hand_off = self.hand_off.decide(fit) if self.hand_off else None
        would_refuse += self._time_budget(preflight, selection, fit, hand_off)
        table = self.store.table_name if self.store else None
        plan = make_plan(preflight, request, self.settings, selection, table, hand_off, repair)
        return Rehearsed(
            would_refuse,
            plan.to_dict(),
            found={
                "service_arn": preflight.service_arn,
                "desired_count": preflight.desired_count,
                "task_total": len(selection.chosen),
            },
            left_alone=list(selection.left_alone),
            notes=[legacy_tag_note()] if preflight.legacy_lock_tag else [],
        )

    def _repair(self, found: Preflight, stale: LockRecord) -> tuple[RepairPlan, Preflight]:
        """What the run's repair of a crashed run will do first, and the service as the repair leaves it.

        Raises LockCorrupt where the repair would refuse the item.
        """
        snapshot = stale.snapshot
        assert snapshot is not None  # LockRecord.from_item: an unreleased item always has one
        desired, target = found.desired_count, found.scalable_target
        actions: list[str] = []
        external: list[str] = []
        desired_change = target_change = None
        if stale.phase in DESIRED_PENDING:
            decision = desired_restore_plan(stale, desired)
            actions += decision.actions
            external += decision.external
            if decision.target != desired:
                desired_change = f"{desired} -> {decision.target}"
            desired = decision.target
        if stale.phase in (*DESIRED_PENDING, Phase.DESIRED_RESTORED):
            outcome = target_restore_plan(snapshot, target)
            actions += outcome.actions
            external += outcome.external
            target_change = outcome.actions[0] if outcome.actions else None
            if outcome.restored_target is not None:
                target = outcome.restored_target
        removed = found.desired_count - desired
        then = "then the lock is released and the service read again, before anything is recycled"
        if removed > 0:
            then += (
                f"; ECS stops {removed} task(s) of its choosing as desiredCount goes down, so the run recycles "
                "the tasks running then, which may be fewer than tasks_to_stop lists"
            )
        repair = RepairPlan(
            owner=stale.owner,
            phase=stale.phase,
            started_at=iso_seconds(stale.started_at),
            expired_at=iso_seconds(stale.expires_at),
            desired_count=desired_change,
            scalable_target=target_change,
            actions=actions,
            external_changes=external,
            then=then,
        )
        return repair, replace(found, desired_count=desired, scalable_target=target)

    def _time_budget(
        self, preflight: Preflight, selection: Selection, fit: PlanFit, hand_off: HandOffDecision | None
    ) -> list[dict[str, str]]:
        """The host's admission, else: a plan this invocation cannot finish, with no hand-off to take it."""
        if self.admission is not None:
            try:
                self.admission(preflight, selection)
            except PreflightError as e:
                return [problem("time_budget", str(e))]
            return []
        if hand_off is not None and hand_off.would_hand_off:
            return []
        if fit.fits:
            return []
        why = (
            "the event's hand_off is false"
            if self.hand_off is not None
            else f"no hand-off to the durable function is configured ({HANDOFF_ENV} is not set)"
        )
        return [
            problem(
                "time_budget",
                f"the plan takes about {fit.estimated_seconds}s, more than the {fit.available_seconds}s "
                f"this invocation has for it (its remaining time less restore_reserve_seconds), and {why}: the run "
                "would stop when the time runs out, restore, and report incomplete. Use the durable function, or "
                "recycle fewer tasks at once (max_tasks) or more per batch (batch_size)",
            )
        ]
