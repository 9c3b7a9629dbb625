"""Kill the run before and after every AWS call it makes, then let the next run repair it.

"Before" means the call never reached AWS; "after" means it took effect and the
process died before it could see the answer (a Lambda timeout, an OOM). Every
one of those points, the lock table's writes included, must end with the
service exactly as it was, and serving capacity never below N while surged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed

from dev import simulator
from dev.simulator import Behaviour, LambdaKilled

TASKS = 2
TARGETS: dict[str, tuple[int, int] | None] = {
    "no-target": None,
    "roomy": (1, TASKS + 5),
    "at-max": (1, TASKS),
    "min-equals-max": (TASKS, TASKS),
}
# Every kill point of every scenario is about 490 runs and 3 minutes: `SWEEP_STRIDE=1 make pytest`.
# CI takes every other point of the hardest scenario (surged at MaxCapacity, where a wrong restore
# order clamps the service) and every eighth of the others, each scenario from a different offset.
STRIDE = int(os.environ.get("SWEEP_STRIDE", "0"))
CI_STRIDES = {("at-max", True): 2}
CI_STRIDE = 8


@dataclass
class KillSwitch:
    """Counts the run's AWS calls; raises LambdaKilled before or after call number `at`."""

    at: int | None = None
    when: str = "before"
    calls: int = 0

    def before(self, **_: Any) -> None:
        self.calls += 1
        if self.when == "before" and self.calls == self.at:
            raise LambdaKilled(f"killed before call {self.calls}")

    def after(self, **_: Any) -> None:
        if self.when == "after" and self.calls == self.at:
            raise LambdaKilled(f"killed after call {self.calls}")


def _bed(sim: simulator.EcsSimulator, clock: simulator.VirtualClock, session: Any) -> Bed:
    config = simulator.sim_client_config()
    ecs, autoscaling, elbv2 = (session.client(n, config=config) for n in ("ecs", "application-autoscaling", "elbv2"))
    calls = sim.count_client_calls(ecs, autoscaling, elbv2)
    # Hundreds of runs of the same calls: the IAM cross-check learns nothing more from them.
    return Bed(sim, clock, session, ecs, autoscaling, elbv2, calls, record_calls=False)


@pytest.fixture
def world() -> Iterator[Bed]:
    clock = simulator.VirtualClock()
    with simulator.simulated_aws(clock) as (sim, session):
        yield _bed(sim, clock, session)


def _run_with_kill(bed: Bed, target: str, surge: bool, switch: KillSwitch) -> tuple[bool, Any]:
    behaviour = Behaviour(start_seconds=40, drain_seconds=30)
    bed.add_service(tasks=TASKS, target=TARGETS[target], behaviour=behaviour)
    clients = (bed.ecs, bed.autoscaling, bed.elbv2, bed.dynamodb)
    for client in clients:
        client.meta.events.register("before-call.*.*", switch.before)
        client.meta.events.register("after-call.*.*", switch.after)
    try:
        report = bed.run(owner="run-1", maintain_service_state=surge, wait_time=0)
        killed = False
    except LambdaKilled:
        report, killed = None, True
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", switch.before)
            client.meta.events.unregister("after-call.*.*", switch.after)
    return killed, report


def _calls_of_a_whole_run(target: str, surge: bool) -> int:
    clock = simulator.VirtualClock()
    with simulator.simulated_aws(clock) as (sim, session):
        bed = _bed(sim, clock, session)
        switch = KillSwitch()
        killed, report = _run_with_kill(bed, target, surge, switch)
        assert not killed and report.status == "succeeded", report.error
        return switch.calls


def _kill_points() -> list[Any]:
    points = []
    for index, (target, surge) in enumerate((t, s) for t in TARGETS for s in (True, False)):
        total = _calls_of_a_whole_run(target, surge)
        stride = STRIDE or CI_STRIDES.get((target, surge), CI_STRIDE)
        for at in range(1 + index % stride, total + 1, stride):
            for when in ("before", "after"):
                name = f"{target}-{'surge' if surge else 'no-surge'}-{when}-{at}of{total}"
                points.append(pytest.param(target, surge, at, when, id=name))
    return points


@pytest.mark.parametrize(("target", "surge", "at", "when"), _kill_points())
def test_a_kill_at_any_call_is_repaired_exactly(world: Bed, target: str, surge: bool, at: int, when: str) -> None:
    bed = world
    # GIVEN a run killed before or after its call number `at`
    killed, report = _run_with_kill(bed, target, surge, KillSwitch(at, when))
    originals = set(bed.snapshots[SERVICE]["tasks"])
    if not killed:
        # THEN a run that lived to report accounts for every task it found, once
        bed.assert_every_original_in_exactly_one_list(report)

    # WHEN the next run comes after the dead run's lock expired (a run that was not killed: right away)
    if killed:
        bed.clock.sleep(2000)
        bed.sim.reconcile()
        originals |= {t.task_arn for t in bed.sim.tasks(CLUSTER, SERVICE) if t.desired_status == "RUNNING"}
        report = bed.run(owner="run-2", maintain_service_state=surge, wait_time=0)
        assert report.status == "succeeded", report.error
        bed.assert_every_original_in_exactly_one_list(report)

    # THEN the service is exactly as it was: desired count, scalable target, no lock held
    bed.snapshots[SERVICE]["tasks"] = sorted(originals)
    bed.assert_restored()
    # AND no task was stopped twice, and capacity never dropped below N with the surge (N-1 without)
    bed.assert_each_original_stopped_at_most_once()
    floor = TASKS if surge else TASKS - 1
    assert bed.sim.observed.min_serving[f"{CLUSTER}:{SERVICE}"] >= floor
