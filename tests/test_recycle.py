"""The engine on the simulated cluster: invariants on the happy path and on every failure path.

Each test states what must hold of the service afterwards (capacity, restore,
stops), not which calls were made in which order.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from support.bed import CLUSTER, SERVICE, Bed
from support.invariants import MUTATING
from support.logs import log_lines

from dev.simulator import Behaviour, LambdaKilled
from recycler.lock.record import LockRecord, Phase, Progress, Snapshot
from recycler.model.request import parse_event
from recycler.model.settings import RecycleSettings
from recycler.run.watch import STOP_REASON

# --------------------------------------------------------------------------- happy paths


def test_recycles_every_task_at_full_capacity_and_restores(bed: Bed, captured_logs: Any) -> None:
    # GIVEN a 5-task service with a scalable target
    bed.add_service(tasks=5, target=(2, 10))
    originals = set(bed.snapshots[SERVICE]["tasks"])

    # WHEN it is recycled
    report = bed.run()

    # THEN every original task was replaced once, capacity never dipped, and the service is as it was
    assert report.status == "succeeded", report.error
    assert {t.old_task_arn for t in report.tasks_recycled} == originals
    assert not {t.new_task_arn for t in report.tasks_recycled} & originals
    assert all(t.seconds > 0 for t in report.tasks_recycled)
    bed.assert_capacity_held()
    bed.assert_restored()
    bed.assert_each_original_stopped_at_most_once()
    assert bed.originals_stopped() == originals
    live = {t.task_arn for t in bed.sim.tasks(CLUSTER, SERVICE) if t.desired_status == "RUNNING"}
    assert not live & originals
    assert report.restored is True
    assert report.original_desired_count == 5 and report.task_total == 5
    assert report.region == "us-east-1" and report.account == "123456789012"

    # AND the log keeps the seed's key messages, one JSON object per line, cluster and service on each
    lines = log_lines(captured_logs)
    messages = [line["message"] for line in lines]
    assert f"Starting task recycle for {CLUSTER}/{SERVICE}" in messages
    assert "Original desired count: 5, tasks: 5" in messages
    assert any(m.startswith("Recycling task 1/5: arn:aws:ecs:") for m in messages)
    assert "Task 5 recycled, waiting 30s" in messages
    assert "Task recycle completed successfully" in messages
    engine_lines = [line for line in lines if line["logger"] == "ecs-task-recycle"]
    assert engine_lines
    assert all(line.get("cluster") == CLUSTER and line.get("service") == SERVICE for line in engine_lines)


def test_stopped_task_draining_is_not_mistaken_for_a_replacement(bed: Bed) -> None:
    # GIVEN tasks that drain for much longer than a replacement takes to start
    bed.add_service(tasks=3, behaviour=Behaviour(start_seconds=20, drain_seconds=120))

    # WHEN it is recycled
    report = bed.run(wait_time=0)

    # THEN each step waited for a new task and for the old one to finish draining
    assert report.status == "succeeded", report.error
    assert all(t.seconds >= 120 for t in report.tasks_recycled)
    bed.assert_capacity_held()
    bed.assert_restored()


def test_service_given_by_arn_works(bed: Bed) -> None:
    arn = bed.add_service(tasks=2)
    engine, _ = bed.engine()
    report = engine.run(
        parse_event(
            {
                "cluster_name": f"arn:aws:ecs:us-east-1:123456789012:cluster/{CLUSTER}",
                "service_name": arn,
                "wait_time": 0,
            }
        )
    )
    assert report.status == "succeeded", report.error
    assert report.cluster == CLUSTER and report.service == SERVICE
    bed.assert_restored()


def test_zero_tasks_is_success_with_nothing_changed(bed: Bed) -> None:
    bed.add_service(tasks=0, target=(0, 4))
    report = bed.run()
    assert report.status == "succeeded"
    assert report.task_total == 0 and report.tasks_recycled == []
    assert not MUTATING & set(bed.calls)
    bed.assert_restored()


def test_without_maintain_service_state_nothing_surges(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(1, 4))
    report = bed.run(maintain_service_state=False, wait_time=0)
    assert report.status == "succeeded", report.error
    key = f"{CLUSTER}:{SERVICE}"
    assert bed.sim.observed.max_live[key] <= 4
    assert bed.sim.observed.min_serving[key] >= 3  # one at a time
    assert bed.originals_stopped() == set(bed.snapshots[SERVICE]["tasks"])
    assert "RegisterScalableTarget" not in bed.calls
    bed.assert_restored()


def test_max_capacity_is_raised_for_the_surge_and_put_back(bed: Bed) -> None:
    # GIVEN a service already at MaxCapacity (N+1 would be clamped)
    bed.add_service(tasks=3, target=(3, 3))
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    bed.assert_capacity_held()
    bed.assert_restored()


def test_suspended_flags_already_set_stay_set(bed: Bed) -> None:
    flags = {"DynamicScalingInSuspended": False, "DynamicScalingOutSuspended": True, "ScheduledScalingSuspended": True}
    bed.add_service(tasks=2, target=(1, 5), suspended=flags)
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    target = bed.sim.scalable_target(CLUSTER, SERVICE)
    assert target is not None and target["SuspendedState"] == flags
    bed.assert_restored()


def test_load_balanced_service_waits_for_target_health(bed: Bed) -> None:
    bed.add_service(tasks=3, load_balancer=True)
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    assert bed.calls.get("DescribeTargetHealth", 0) >= 3
    bed.assert_capacity_held()
    bed.assert_restored()


def test_more_than_100_tasks_are_all_listed(bed: Bed) -> None:
    # GIVEN 120 tasks (ListTasks pages at 100, DescribeTasks takes 100 at most)
    bed.add_service(tasks=120, target=(100, 130))

    # WHEN recycled within one plain invocation
    report = bed.run()

    # THEN every task was seen; what did not fit the budget is reported, and the service is restored
    assert report.task_total == 120
    assert bed.calls["ListTasks"] >= 2
    assert report.status == "incomplete"
    assert len(report.tasks_recycled) + len(report.tasks_remaining) == 120
    assert "durable" in (report.error or "")
    bed.assert_capacity_held()
    bed.assert_restored()
    bed.assert_each_original_stopped_at_most_once()


# --------------------------------------------------------------------------- refusals


def test_missing_service_is_a_clear_refusal(bed: Bed) -> None:
    bed.add_service(tasks=1)
    report = bed.run(service="nope")
    assert report.status == "failed"
    assert "service not found" in (report.error or "")
    assert not MUTATING & set(bed.calls)


def test_missing_cluster_is_a_clear_refusal(bed: Bed) -> None:
    bed.add_service(tasks=1)
    engine, _ = bed.engine()
    report = engine.run(parse_event({"cluster_name": "other", "service_name": SERVICE}))
    assert report.status == "failed"
    assert "not found" in (report.error or "")
    assert not MUTATING & set(bed.calls)


def _not_found(bed: Bed, cluster: str = CLUSTER, service: str = SERVICE, sts: Any = None) -> str:
    engine, _ = bed.engine(sts=sts)
    report = engine.run(parse_event({"cluster_name": cluster, "service_name": service}))
    assert report.status == "failed" and report.error_type == "ServiceNotFound", report.error
    assert not MUTATING & set(bed.calls)
    return report.error or ""


@pytest.mark.parametrize(
    ("cluster", "service", "said"),
    [("prod", SERVICE, "cluster not found: prod"), (CLUSTER, "api", "service not found: api")],
)
def test_a_not_found_names_the_region_and_the_account_searched(bed: Bed, cluster: str, service: str, said: str) -> None:
    # GIVEN a service in us-east-1 of account 123456789012, and a run asked for a cluster or service that is not
    # there (what a run in the wrong region or account sees)
    bed.add_service(tasks=1)
    # WHEN it runs, THEN the refusal says where it looked
    error = _not_found(bed, cluster, service)
    assert said in error and "region us-east-1" in error and "account 123456789012" in error, error


class _BrokenSts:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def get_caller_identity(self) -> dict[str, Any]:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetCallerIdentity"),
        EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com"),
    ],
    ids=["denied", "unreachable"],
)
def test_a_not_found_says_account_unknown_when_the_account_cannot_be_read(bed: Bed, error: Exception) -> None:
    # GIVEN a run asked for a cluster that is not there, and STS that cannot answer
    bed.add_service(tasks=1)
    sts = _BrokenSts(error)
    # WHEN it runs, THEN the error is still the not-found, naming the region, after one try at the account
    error_text = _not_found(bed, "prod", sts=sts)
    assert "cluster not found: prod" in error_text and "region us-east-1" in error_text
    assert "account unknown" in error_text and sts.calls == 1


def test_a_run_that_finds_its_service_never_asks_for_the_account(bed: Bed) -> None:
    bed.add_service(tasks=2)
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    assert "GetCallerIdentity" not in bed.calls and report.account == "123456789012"


def test_deployment_in_progress_is_refused(bed: Bed) -> None:
    bed.add_service(tasks=2)
    deployments = bed.sim.service(CLUSTER, SERVICE).deployments
    deployments.append({**deployments[0], "id": "ecs-svc/2", "status": "ACTIVE"})
    report = bed.run()
    assert report.status == "failed" and "deployment is in progress" in (report.error or "")
    assert not MUTATING & set(bed.calls)


def test_inactive_service_is_refused(bed: Bed) -> None:
    bed.add_service(tasks=2)
    bed.sim.service(CLUSTER, SERVICE).status = "DRAINING"
    report = bed.run()
    assert report.status == "failed" and "not ACTIVE" in (report.error or "")
    assert not MUTATING & set(bed.calls)


def test_blue_green_service_is_refused(bed: Bed) -> None:
    bed.add_service(tasks=2)
    bed.sim.service(CLUSTER, SERVICE).deployment_controller = {"type": "CODE_DEPLOY"}
    report = bed.run()
    assert report.status == "failed" and "CODE_DEPLOY" in (report.error or "")
    assert not MUTATING & set(bed.calls)


def _other_runs_lock(bed: Bed, owner: str, expires_in: float, phase: Phase = Phase.SURGED) -> LockRecord:
    now = int(bed.clock.now())
    return LockRecord(
        key=bed.lock_key(),
        owner=owner,
        version=7,
        expires_at=now + int(expires_in),
        phase=phase,
        started_at=now - 60,
        snapshot=Snapshot(desired_count=bed.snapshots[SERVICE]["desired"], surge=True),
        progress=Progress(total=bed.snapshots[SERVICE]["desired"], updated_at=now - 60),
    )


def test_unexpired_lock_of_another_run_is_refused(bed: Bed) -> None:
    bed.add_service(tasks=2, target=(1, 4))
    lock = _other_runs_lock(bed, "other-run", 600)
    bed.plant_lock(lock)
    report = bed.run()
    assert report.status == "refused" and report.error_type == "LockHeld" and "other-run" in (report.error or "")
    assert bed.calls.keys().isdisjoint(MUTATING)
    assert bed.lock() == lock


def test_dry_run_returns_a_plan_and_mutates_nothing(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 3))
    report = bed.run(dry_run=True)
    assert report.status == "dry_run"
    assert report.plan is not None
    assert sorted(report.plan["tasks_to_stop"]) == bed.snapshots[SERVICE]["tasks"]
    surge = report.plan["surge"]
    assert surge is not None and surge["raise_max_capacity"] is True
    assert report.plan["estimated_seconds"] > 0
    assert not MUTATING & set(bed.calls)
    bed.assert_restored()


# --------------------------------------------------------------------------- failure paths


def test_replacements_that_fail_to_start_abort_with_the_reason_and_restore(bed: Bed) -> None:
    behaviour = Behaviour()
    bed.add_service(tasks=4, target=(2, 8), behaviour=behaviour)
    # The surge succeeds, then every replacement fails to start.
    bed.sim.at(45, "image pull breaks", lambda: setattr(behaviour, "fail_next_starts", 99))
    report = bed.run(settings=RecycleSettings(max_failed_replacements=3))
    assert report.status == "failed"
    assert report.error_type == "ReplacementFailed"
    assert "CannotPullContainerError" in (report.error or "")
    bed.assert_capacity_held()
    bed.assert_restored()
    bed.assert_each_original_stopped_at_most_once()
    # one task was stopped and its replacement never came: it is neither recycled nor remaining
    assert len(report.tasks_recycled) + 1 + len(report.tasks_remaining) == 4


def test_replacement_that_never_becomes_healthy_times_out_and_restores(bed: Bed) -> None:
    behaviour = Behaviour()
    bed.add_service(tasks=3, target=(1, 5), behaviour=behaviour)
    bed.sim.at(45, "bad config", lambda: setattr(behaviour, "never_healthy", True))
    report = bed.run(settings=RecycleSettings(replacement_timeout_seconds=120))
    assert report.status == "failed" and report.error_type == "ReplacementTimeout"
    bed.assert_capacity_held()
    bed.assert_restored()


def test_surge_task_that_never_becomes_healthy_restores_without_stopping_anything(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 5), behaviour=Behaviour(never_healthy=False))
    bed.sim.behaviour(CLUSTER, SERVICE).never_healthy = True
    report = bed.run(settings=RecycleSettings(replacement_timeout_seconds=60))
    assert report.status == "failed" and report.error_type == "ReplacementTimeout"
    assert bed.sim.observed.stops == {}
    bed.assert_restored()


def test_throttling_is_retried_and_does_not_fail_the_run(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 5))
    bed.sim.fail("stop_task", "ThrottlingException", times=1)
    bed.sim.fail("describe_services", "ThrottlingException", times=2, after_calls=5)
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    bed.assert_capacity_held()
    bed.assert_restored()


def test_access_denied_midway_aborts_and_restores(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(2, 6))
    bed.sim.fail("stop_task", "AccessDeniedException", times=1, after_calls=2)
    report = bed.run(wait_time=0)
    assert report.status == "failed" and "AccessDenied" in (report.error or "")
    assert len(report.tasks_recycled) == 2
    bed.assert_capacity_held()
    bed.assert_restored()


def test_restore_that_keeps_failing_is_loud_and_leaves_the_lock_for_the_next_run(bed: Bed) -> None:
    # GIVEN a restore call that fails on every retry
    bed.add_service(tasks=2, target=(1, 4))
    bed.sim.fail("register_scalable_target", "AccessDeniedException", times=10, after_calls=1)
    report = bed.run(wait_time=0)

    # THEN the run reports the failed restore and keeps the lock (with the snapshot) on the service
    assert report.status == "failed" and report.restored is False
    assert "RESTORE FAILED" in (report.error or "")
    assert bed.held()

    # AND once the permission is back and the lock has expired, the next run repairs it first
    bed.sim.faults.clear()
    bed.clock.sleep(2000)
    report = bed.run(owner="run-2", wait_time=0)
    assert report.status == "succeeded", report.error
    assert any("repaired expired lock" in a for a in report.restore_actions)
    bed.assert_restored()


def test_restore_call_that_landed_but_reported_an_error_removes_only_one_task(bed: Bed) -> None:
    # GIVEN the restore's UpdateService takes effect but its response is lost (the retry must not repeat the -1)
    bed.add_service(tasks=3, target=(1, 6))
    bed.sim.fail("update_service", "ServerException", times=3, after_calls=1, applied=True, status=500)

    report = bed.run(wait_time=0)

    # THEN the service is back at exactly N, not N-1
    assert report.status == "succeeded", report.error
    bed.assert_restored()


def test_run_that_lost_its_lock_stops_without_touching_the_service_again(bed: Bed) -> None:
    # GIVEN a long-running run (lock renewed after each task) that stalls past its lock's expiry,
    # and another run that meanwhile repairs the service and takes the lock
    bed.add_service(tasks=3, target=(1, 6), behaviour=Behaviour(start_seconds=40))

    def another_run_takes_over() -> None:
        bed.plant_lock(_other_runs_lock(bed, "run-2", 900))

    bed.sim.at(100, "takeover", another_run_takes_over)
    engine, _ = bed.engine(owner="run-1", timeout=None, lock_ttl=60)
    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 0}))

    # THEN run-1 reports the loss and leaves desired count and the other run's lock alone
    assert report.status == "failed" and report.error_type == "LockLost"
    assert report.restored is False
    assert bed.desired() == 4  # still surged: restoring it is now run-2's job, from its own lock
    lock = bed.lock()
    assert lock is not None and lock.owner == "run-2"
    bed.assert_each_original_stopped_at_most_once()


def test_run_killed_midway_is_repaired_by_the_next_run(bed: Bed) -> None:
    # GIVEN a run that Lambda kills in the middle (the clock raises, as the timeout would)
    bed.add_service(tasks=4, target=(2, 4))
    bed.clock.kill_at = bed.clock.now() + 150
    with pytest.raises(LambdaKilled):
        bed.run(owner="run-1")
    lock = bed.lock()
    assert lock is not None and lock.phase == Phase.SURGED
    assert bed.desired() == 5

    # WHEN another run starts while the lock is fresh, it refuses
    report = bed.run(owner="run-2")
    assert report.status == "refused" and report.error_type == "LockHeld"

    # WHEN a run starts after the lock expired, it restores from the lock, then recycles
    bed.clock.sleep(1000)
    bed.adopt_live_tasks_as_originals()
    report = bed.run(owner="run-3", wait_time=0)
    assert report.status == "succeeded", report.error
    bed.assert_restored()
    bed.assert_each_original_stopped_at_most_once()
    bed.assert_capacity_held()


def test_time_budget_stops_cleanly_before_the_next_task(bed: Bed) -> None:
    bed.add_service(tasks=6, target=(2, 8))
    engine, context = bed.engine(timeout=400)

    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE}))
    assert report.status == "incomplete"
    assert 0 < len(report.tasks_recycled) < 6
    assert len(report.tasks_recycled) + len(report.tasks_remaining) == 6
    assert "durable" in (report.error or "")
    assert context is not None and context.get_remaining_time_in_millis() > 0
    bed.assert_restored()
    bed.assert_capacity_held()


# --------------------------------------------------------------------------- other actors


def test_scale_out_mid_run_is_kept_and_only_our_task_removed(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 10))
    bed.sim.at(100, "traffic spike", lambda: bed.sim.autoscale(CLUSTER, SERVICE, bed.desired() + 2))
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    assert report.external_changes and "another actor" in report.external_changes[0]
    bed.assert_restored(external_delta=2)
    assert bed.sim.observed.min_serving[f"{CLUSTER}:{SERVICE}"] >= 3


def test_scale_in_and_scheduled_actions_are_held_off_during_the_run(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(1, 10))
    applied: list[bool] = []
    bed.sim.at(60, "scale in", lambda: applied.append(bed.sim.autoscale(CLUSTER, SERVICE, 2)))
    bed.sim.at(90, "night schedule", lambda: applied.append(bed.sim.autoscale(CLUSTER, SERVICE, 1, "scheduled")))
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    assert applied == [False, False]
    bed.assert_capacity_held()
    bed.assert_restored()


def test_operator_scale_down_mid_run_is_respected(bed: Bed) -> None:
    bed.add_service(tasks=4)
    bed.sim.at(100, "operator", lambda: bed.sim.set_desired(CLUSTER, SERVICE, 3))
    report = bed.run(wait_time=0)
    assert report.status in ("succeeded", "failed")
    assert bed.desired() == 2  # their 5 -> 3, minus the one this run added
    assert not bed.held()
    bed.assert_each_original_stopped_at_most_once()


def test_task_stopped_by_someone_else_is_skipped_not_stopped_twice(bed: Bed) -> None:
    bed.add_service(tasks=3)
    victim = bed.snapshots[SERVICE]["tasks"][-1]

    def someone_stops_it() -> None:
        bed.sim.backend().stop_task(CLUSTER, victim, "Task failed ELB health checks")

    bed.sim.at(45, "health check kill", someone_stops_it)
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    assert bed.sim.observed.stops.get(victim, 0) == 0
    skipped = {t.old_task_arn for t in report.tasks_skipped}
    recycled = {t.old_task_arn for t in report.tasks_recycled}
    assert skipped | recycled == set(bed.snapshots[SERVICE]["tasks"])
    bed.assert_restored()


def test_stop_reason_names_the_tool(bed: Bed) -> None:
    bed.add_service(tasks=1)
    bed.run(wait_time=0)
    originals = set(bed.snapshots[SERVICE]["tasks"])
    stopped = [t for t in bed.sim.tasks(CLUSTER, SERVICE) if t.task_arn in originals]
    assert stopped and all(t.stopped_reason == STOP_REASON for t in stopped)
    assert "ecs-task-recycle" in STOP_REASON
