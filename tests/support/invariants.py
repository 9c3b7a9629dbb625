"""What every run must leave true, read straight from the simulated backend and the lock table.

``Bed`` inherits these; they read the bed's simulator, snapshots and lock-table inspector.
"""

from __future__ import annotations

import re
from typing import Any

from dev import simulator
from dev.simulator import EcsSimulator
from recycler.lock.record import LockRecord, Phase
from recycler.lock.store import DynamoLockStore, lock_key
from recycler.model.report import RecycleReport

from .names import CLUSTER, SERVICE

# The calls that change ECS, Application Auto Scaling or the lock table, as a client names them (bed.calls
# counts the engine's clients): the one list every "changed nothing" assertion derives from.
MUTATING = frozenset(
    {
        "UpdateService",
        "StopTask",
        "TagResource",
        "UntagResource",
        "RegisterScalableTarget",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
    }
)
# The same calls as the simulator records them at the backend (bed.sim.calls), whichever client made them:
# also the clients the handler builds for itself.
SIM_MUTATING = frozenset(re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower() for op in MUTATING)


class Invariants:
    """The bed's reads and assertions; the bed supplies the simulator, the snapshots and the inspector."""

    sim: EcsSimulator
    snapshots: dict[str, Any]
    inspector: DynamoLockStore
    found: set[str] | None

    def desired(self, service: str = SERVICE) -> int:
        return int(self.sim.service(CLUSTER, service).desired_count)

    def lock_key(self, service: str = SERVICE) -> str:
        return lock_key(self.sim.backend().clusters[CLUSTER].arn, service)

    def lock(self, service: str = SERVICE) -> LockRecord | None:
        """The service's lock item, read straight from the table (not counted as an engine call)."""
        with self.sim.unobserved():
            return self.inspector.read(self.lock_key(service))

    def held(self, service: str = SERVICE) -> bool:
        """A run holds the service, or died holding it: the item is there and not released."""
        record = self.lock(service)
        return record is not None and record.phase != Phase.RELEASED

    def assert_restored(self, service: str = SERVICE, external_delta: int = 0) -> None:
        """After any run: scalable target equals the snapshot, desired = snapshot + others' change, no lock held."""
        snap = self.snapshots[service]
        assert self.sim.scalable_target(CLUSTER, service) == snap["target"]
        # Others may have scaled in past our surge; the restore never goes below zero.
        expected = max(0, snap["desired"] + external_delta)
        target = snap["target"]
        if target is not None:
            # The restore re-registers the target last, and Application Auto Scaling then clamps the
            # desired count into [Min, Max] at once: a scale-out that only our widened Max allowed goes.
            expected = min(max(expected, target["MinCapacity"]), target["MaxCapacity"])
        actual = self.desired(service)
        # Others scaled in to the surge or below it: the restore keeps one task rather than take a running service
        # to 0 (recycler.run.capacity).
        assert actual == expected or (snap["desired"] + external_delta <= 0 and actual == 1), (actual, expected)
        assert not self.held(service), self.lock(service)

    def service_state(self, service: str = SERVICE) -> dict[str, Any]:
        """The service as the simulated backend holds it: what a run that changed nothing leaves as it found it."""
        found: Any = self.sim.service(CLUSTER, service)
        tasks = self.sim.tasks(CLUSTER, service)
        return {
            "desired": found.desired_count,
            "task_definition": found.task_definition,
            "tags": sorted((t["key"], t["value"]) for t in found.tags or []),
            "scalable_target": self.sim.scalable_target(CLUSTER, service),
            "live_tasks": sorted(t.task_arn for t in tasks if t.desired_status == "RUNNING"),
            "serving_tasks": sorted(t.task_arn for t in tasks if self.sim.is_serving(t)),
        }

    def lock_items(self, table: str = simulator.LOCK_TABLE) -> list[dict[str, Any]]:
        with self.sim.unobserved():
            return list(self.inspector.dynamodb.scan(TableName=table)["Items"])

    def assert_nothing_changed(self, before: dict[str, Any], service: str = SERVICE) -> None:
        """No mutating call reached the backend, through any client (the handler's own too), no lock item was
        written, and the service is as it was."""
        changed = {op: n for op, n in self.sim.calls.items() if op in SIM_MUTATING}
        assert changed == {}
        assert self.lock_items() == []
        assert self.service_state(service) == before

    def assert_capacity_held(self, service: str = SERVICE) -> None:
        """With maintain_service_state: serving never below N, live never above N+1."""
        n = self.snapshots[service]["desired"]
        key = f"{CLUSTER}:{service}"
        assert self.sim.observed.min_serving[key] >= n
        assert self.sim.observed.max_live[key] <= n + 1

    def assert_each_original_stopped_at_most_once(self, service: str = SERVICE) -> None:
        originals = set(self.snapshots[service]["tasks"])
        for arn, count in self.sim.observed.stops.items():
            assert count == 1, f"{arn} was stopped {count} times"
            assert arn in originals, f"the run stopped {arn}, which it did not find at the start"

    def assert_every_original_in_exactly_one_list(
        self, report: RecycleReport, originals: set[str] | None = None
    ) -> None:
        """Each task the run found is in exactly one of the report's lists: recycled, skipped, remaining, or
        stopped and not replaced. ``originals`` defaults to what the last run's pre-flight found; a run that
        stopped before it chose its tasks (a refusal, a failed read) lists none, and a dry run changes nothing."""
        listed = report.listed_arns()
        twice = sorted({arn for arn in listed if listed.count(arn) > 1})
        assert twice == [], f"in more than one list (or twice in one): {twice}"
        found = self.found if originals is None else originals
        if report.status == "dry_run":
            return
        if found is None or report.status == "handed_off":
            assert listed == [], report
            return
        assert set(listed) == found, (
            f"in no list: {sorted(found - set(listed))}; not an original: {sorted(set(listed) - found)}"
        )

    def originals_stopped(self, service: str = SERVICE) -> set[str]:
        return set(self.sim.observed.stops) & set(self.snapshots[service]["tasks"])
