"""Generated fault schedules: whatever goes wrong, the service ends as it was and capacity holds.

hypothesis draws a schedule of faults (failed starts, never-healthy tasks,
API errors on any call, autoscaling actions, a Lambda kill) and timings. After
the run (and, if it was killed, after the repairing run), the invariants must
hold.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from support.bed import CLUSTER, SERVICE, Bed

from dev import simulator
from dev.simulator import Behaviour, LambdaKilled
from recycler.aws.gateway import ServiceGateway
from recycler.hosts import control
from recycler.model.request import parse_event, utc_text
from recycler.model.settings import RecycleSettings

OPERATIONS = [
    "stop_task",
    "update_service",
    "describe_services",
    "list_tasks",
    "describe_tasks",
    "tag_resource",
    "untag_resource",
    "register_scalable_target",
    "describe_scalable_targets",
    # The lock table.
    "get_item",
    "put_item",
    "update_item",
    # Task protection, read before each batch's stops, and the alarm gate's read.
    "get_task_protection",
    "get_alarms_by_alarm_names",
]
api_fault = st.tuples(
    st.sampled_from(OPERATIONS),
    st.sampled_from(["ThrottlingException", "AccessDeniedException", "ServerException"]),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=4),
    # The call takes effect and only its answer is lost.
    st.booleans(),
)
autoscale_event = st.tuples(
    st.integers(min_value=1, max_value=600),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from(["dynamic", "scheduled"]),
)

schedule = st.fixed_dictionaries(
    {
        "tasks": st.integers(min_value=1, max_value=6),
        "start": st.integers(min_value=5, max_value=90),
        "drain": st.integers(min_value=0, max_value=120),
        "target": st.sampled_from([None, "roomy", "at_max", "min_eq_max"]),
        "maintain": st.booleans(),
        "wait_time": st.sampled_from([0, 10, 30]),
        "fail_at": st.none()
        | st.tuples(st.integers(min_value=0, max_value=400), st.integers(min_value=1, max_value=5)),
        "unhealthy_at": st.none() | st.integers(min_value=0, max_value=400),
        "api_faults": st.lists(api_fault, max_size=3),
        "autoscale": st.lists(autoscale_event, max_size=2),
        "kill_at": st.none() | st.integers(min_value=1, max_value=600),
        "batch_size": st.integers(min_value=1, max_value=3),
        # How many originals started only ten minutes ago (left alone with min_task_age_seconds 3600).
        "young": st.integers(min_value=0, max_value=2),
        # Task scale-in protection switched on: (which original, seconds into the run).
        "protect": st.lists(
            st.tuples(st.integers(min_value=0, max_value=5), st.integers(min_value=0, max_value=400)), max_size=2
        ),
        # The gating alarm goes into ALARM this many seconds in (None: it stays OK).
        "alarm_at": st.none() | st.integers(min_value=0, max_value=500),
        # An operator cancels this many seconds in (None: nobody does).
        "cancel_at": st.none() | st.integers(min_value=0, max_value=500),
        # How long the alarms are watched after the last batch.
        "alarm_watch": st.sampled_from([0, 0, 120]),
        # started_before, this many seconds before the run (None: no cut-off); the originals are 10 minutes
        # to 3 days old, so it may leave none, some or all of them alone.
        "cut_off": st.none() | st.integers(min_value=0, max_value=3 * 86_400),
        # A checkpoint's hold, during which an alarm, a cancel, a kill or the time budget may come.
        "checkpoint": st.none() | st.tuples(st.integers(min_value=1, max_value=100), st.sampled_from([0, 60, 300])),
    }
)


def _cut_off_epoch(cut_off: str) -> float:
    started_before = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "started_before": cut_off})
    assert started_before.started_before is not None
    return started_before.started_before


def _run_schedule(bed: Bed, plan: dict[str, Any]) -> None:
    n = plan["tasks"]
    behaviour = Behaviour(start_seconds=plan["start"], drain_seconds=plan["drain"])
    target = {None: None, "roomy": (1, n + 5), "at_max": (1, n), "min_eq_max": (n, n)}[plan["target"]]
    bed.add_service(tasks=n, target=target, behaviour=behaviour)
    originals_seen = set(bed.snapshots[SERVICE]["tasks"])
    by_age = sorted(bed.sim.tasks(CLUSTER, SERVICE), key=lambda t: t.task_arn)
    for task in by_age[: plan["young"]]:
        bed.sim.set_started(task, bed.clock.now() - 600)
    for which, at in plan["protect"]:

        def protect(arn: str = by_age[which % n].task_arn) -> None:
            bed.sim.protect(arn, 3600)

        bed.sim.at(at, "task protects itself", protect)
    external: list[int] = []

    if plan["fail_at"]:
        at, count = plan["fail_at"]
        bed.sim.at(at, "failed starts", lambda: setattr(behaviour, "fail_next_starts", count))
    if plan["unhealthy_at"] is not None:
        bed.sim.at(plan["unhealthy_at"], "unhealthy", lambda: setattr(behaviour, "never_healthy", True))
    for at, delta, kind in plan["autoscale"]:

        def act(delta: int = delta, kind: str = kind) -> None:
            before = bed.desired()
            if bed.sim.autoscale(CLUSTER, SERVICE, max(0, before + delta), kind):
                external.append(bed.desired() - before)

        bed.sim.at(at, "autoscaling", act)
    for operation, code, after, times, applied in plan["api_faults"]:
        bed.sim.fail(operation, code, times=times, after_calls=after, applied=applied)
    if plan["kill_at"] is not None:
        bed.clock.kill_at = bed.clock.now() + plan["kill_at"]

    alarm = bed.add_alarm("web-5xx")
    gate_closed: list[float] = []  # when the alarm fired, or a cancel was accepted
    if plan["alarm_at"] is not None:

        def fire() -> None:
            bed.sim.set_alarm(alarm, "ALARM", "simulated errors")
            gate_closed.append(bed.clock.now())

        bed.sim.at(plan["alarm_at"], "alarm fires", fire)
    if plan["cancel_at"] is not None:

        def cancel() -> None:
            request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE})
            reads = ServiceGateway(bed.ecs, bed.autoscaling, bed.elbv2, request)
            if control.cancel(reads, bed.store, bed.clock, "hypothesis").to_dict()["state"] == "running":
                gate_closed.append(bed.clock.now())

        bed.sim.at(plan["cancel_at"], "operator cancels", cancel)
    stop_times = bed.record_stop_times()
    cut_off = None if plan.get("cut_off") is None else utc_text(bed.clock.now() - plan["cut_off"])
    started = {t.task_arn: t.started_at.timestamp() for t in bed.sim.tasks(CLUSTER, SERVICE)}
    late = set() if cut_off is None else {a for a, at in started.items() if at >= _cut_off_epoch(cut_off)}

    event = {
        "alarm_names": [alarm],
        "maintain_service_state": plan["maintain"],
        "wait_time": plan["wait_time"],
        "batch_size": plan["batch_size"],
        "min_task_age_seconds": 3600 if plan["young"] else 0,
        **({"started_before": cut_off} if cut_off else {}),
        **(
            {"checkpoint_percentages": [plan["checkpoint"][0]], "checkpoint_delay_seconds": plan["checkpoint"][1]}
            if plan.get("checkpoint")
            else {}
        ),
    }
    tuned = RecycleSettings(
        replacement_timeout_seconds=300, max_failed_replacements=2, alarm_watch_seconds=plan["alarm_watch"]
    )
    key = f"{CLUSTER}:{SERVICE}"
    scaled_in = any(d < 0 for _, d, _ in plan["autoscale"])
    # Without the surge, a batch's stops take capacity down by at most batch_size, from where the run found it.
    drop = 0 if plan["maintain"] else plan["batch_size"]
    try:
        first = bed.run(owner="run-1", settings=tuned, **event)
        # THEN (first run) every task it found is in exactly one of its report's lists
        bed.assert_every_original_in_exactly_one_list(first)
    except LambdaKilled:
        pass
    bed.clock.kill_at = None
    # THEN (first run) serving capacity never dropped below N, less the batch without the surge
    if not scaled_in:
        assert bed.sim.observed.min_serving[key] >= n - drop
    # AND once the alarm fired or a cancel was accepted, no further task was stopped
    if gate_closed:
        assert all(at < min(gate_closed) for at in stop_times.values()), (gate_closed, stop_times)

    # A killed run (or one whose restore kept failing) leaves its lock; the next run repairs it.
    if bed.held():
        bed.sim.faults.clear()
        behaviour.fail_next_starts = 0
        behaviour.never_healthy = False
        bed.sim.set_alarm(alarm, "OK", "recovered")
        gate_closed.clear()
        bed.clock.sleep(1100)
        bed.sim.reconcile()  # let what happened meanwhile (autoscaling) happen before we look
        originals_seen |= {t.task_arn for t in bed.sim.tasks(CLUSTER, SERVICE) if t.desired_status == "RUNNING"}
        # The repairing run starts from whatever the service serves now (a dead run's unhealthy
        # replacement may still be there): from here on, the same floor applies to it.
        serving_now = sum(1 for t in bed.sim.tasks(CLUSTER, SERVICE) if bed.sim.is_serving(t))
        bed.sim.observed.min_serving[key] = serving_now
        repairing = bed.run(owner="run-2", settings=tuned, **event)
        bed.assert_every_original_in_exactly_one_list(repairing)
        if not scaled_in:
            assert bed.sim.observed.min_serving[key] >= min(n, serving_now) - drop

    # THEN: the scalable target equals the snapshot, desired = snapshot + others' changes, no lock left
    bed.snapshots[SERVICE]["tasks"] = sorted(originals_seen)
    bed.assert_restored(external_delta=sum(external))
    # AND no task was stopped twice, none that a run had started itself, none while it was protected,
    # none that started at or after the cut-off
    bed.assert_each_original_stopped_at_most_once()
    assert not late & set(bed.sim.observed.stops), late & set(bed.sim.observed.stops)
    assert bed.sim.observed.stopped_while_protected == []
    # AND live tasks never above N + batch_size (unless others scaled out)
    if not any(d > 0 for d in external):
        assert bed.sim.observed.max_live[key] <= n + plan["batch_size"]


@settings(
    max_examples=int(os.environ.get("INVARIANT_EXAMPLES", "40")),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=schedule)
# Found with 600 examples: a restore that failed to record its progress, autoscaling scaling out in the
# gap through the Max the surge had widened, and the repair's restore of Max clamping it back.
@example(
    plan={
        "maintain": True,
        "start": 38,
        "drain": 37,
        "fail_at": None,
        "alarm_at": None,
        "young": 0,
        "autoscale": [(569, 0, "dynamic"), (178, 1, "dynamic")],
        "tasks": 2,
        "api_faults": [("get_item", "ServerException", 6, 4, False)],
        "protect": [(1, 280)],
        "batch_size": 2,
        "wait_time": 0,
        "target": "at_max",
        "cancel_at": 131,
        "kill_at": 280,
        "unhealthy_at": None,
        "alarm_watch": 0,
        "cut_off": None,
    }
)
# Found on 2026-12-04: "autoscaling" without a scalable target landed in the one call between the restore's
# read and its UpdateService, and the absolute write undid it. Application Auto Scaling acts only through a
# target (the simulator now says so); an operator's update-service in that window is a documented limit.
@example(
    plan={
        "cut_off": 354,
        "wait_time": 10,
        "cancel_at": None,
        "maintain": True,
        "young": 0,
        "protect": [(2, 358)],
        "target": None,
        "start": 54,
        "batch_size": 1,
        "autoscale": [(422, -1, "dynamic"), (2, -1, "dynamic")],
        "api_faults": [("get_item", "AccessDeniedException", 2, 2, False)],
        "drain": 95,
        "kill_at": 468,
        "tasks": 2,
        "unhealthy_at": None,
        "alarm_watch": 0,
        "alarm_at": None,
        "fail_at": (267, 4),
    }
)
def test_any_fault_schedule_leaves_the_service_as_it_was(plan: dict[str, Any]) -> None:
    clock = simulator.VirtualClock()
    with simulator.simulated_aws(clock) as (sim, session):
        config = simulator.sim_client_config()
        ecs = session.client("ecs", config=config)
        autoscaling = session.client("application-autoscaling", config=config)
        elbv2 = session.client("elbv2", config=config)
        bed = Bed(sim, clock, session, ecs, autoscaling, elbv2, sim.count_client_calls(ecs, autoscaling))
        _run_schedule(bed, plan)
