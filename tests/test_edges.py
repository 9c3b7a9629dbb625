"""Edges a new user hit: messages that say what holds, counts that are true, and a region that is known.

Each of these failed before its fix.
"""

from __future__ import annotations

import pytest
from support.bed import CLUSTER, SERVICE, Bed

from dev.simulator import Behaviour
from recycler.hosts.plain import summarise


def test_a_single_deployment_still_rolling_out_is_named_as_such(bed: Bed) -> None:
    bed.add_service(tasks=2, behaviour=Behaviour(rollout_state="IN_PROGRESS"))
    report = bed.run()
    assert report.status == "failed"
    assert "its rolloutState is IN_PROGRESS" in (report.error or "")
    assert "1 deployments" not in (report.error or "")


def test_several_deployments_are_named_as_such(bed: Bed) -> None:
    bed.add_service(tasks=2)
    deployments = bed.sim.service(CLUSTER, SERVICE).deployments
    deployments.append({**deployments[0], "id": "ecs-svc/2", "status": "ACTIVE"})
    report = bed.run()
    assert "2 deployments at once" in (report.error or "")


def test_a_refused_run_gives_the_real_task_count(bed: Bed) -> None:
    # GIVEN a 7-task service with a deployment in progress
    bed.add_service(tasks=7, behaviour=Behaviour(rollout_state="IN_PROGRESS"))
    report = bed.run()
    # THEN the refusal, which comes before the tasks are listed, still gives the service's real count
    assert report.status == "failed" and report.error_type == "PreflightError"
    assert (report.task_total, report.original_desired_count, report.account) == (7, 7, "123456789012")
    assert "0 of 7 tasks recycled" in summarise(report.to_dict())


def test_a_refusal_before_the_service_is_found_gives_no_count(bed: Bed) -> None:
    bed.add_service(tasks=7)
    report = bed.run(service="missing")
    # THEN no count is made up: no "0 of 0"
    assert report.status == "failed" and report.task_total is None
    assert "tasks recycled" not in summarise(report.to_dict())


def test_a_refusal_with_a_selection_gives_the_desired_count_but_no_made_up_total(bed: Bed) -> None:
    bed.add_service(tasks=7, behaviour=Behaviour(rollout_state="IN_PROGRESS"))
    report = bed.run(max_tasks=2)
    assert report.status == "failed" and report.original_desired_count == 7 and report.task_total is None


def test_a_run_refused_after_counting_says_how_many_it_would_have_recycled(bed: Bed) -> None:
    # GIVEN a 7-task service gated by an alarm that is firing (checked after the tasks are counted)
    bed.add_service(tasks=7)
    alarm = bed.add_alarm("web-5xx")
    bed.sim.set_alarm(alarm, "ALARM", "errors")
    report = bed.run(alarm_names=[alarm])
    assert report.task_total == 7
    assert "0 of 7 tasks recycled" in summarise(report.to_dict())


def test_a_run_whose_first_call_fails_still_reports_its_region(bed: Bed) -> None:
    bed.add_service(tasks=2)
    report = bed.run(service="missing")
    assert report.status == "failed" and report.region == "us-east-1"
    assert report.task_total is None
    assert "tasks recycled" not in summarise(report.to_dict())


@pytest.mark.parametrize("batch_size", [1, 3])
def test_each_task_is_logged_recycled_when_its_replacement_serves_before_the_wait(
    bed: Bed, batch_size: int, captured_logs: object
) -> None:
    import io
    import logging

    from support.logs import log_lines

    assert isinstance(captured_logs, io.StringIO)
    # Every log line, with the virtual time it was logged at (the clock moves only when the run sleeps).
    logged_at: list[tuple[str, float]] = []

    class ClockTime(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged_at.append((record.getMessage(), bed.clock.now()))

    clock_handler = ClockTime()
    logging.getLogger().addHandler(clock_handler)
    bed.add_service(tasks=3)
    stopped_at = bed.record_stop_times()
    wait_time = 30
    try:
        report = bed.run(batch_size=batch_size, wait_time=wait_time)
    finally:
        logging.getLogger().removeHandler(clock_handler)
    assert report.status == "succeeded", report.error
    lines = log_lines(captured_logs)
    recycled = [
        line for line in lines if line["message"].startswith("Task ") and "recycled, waiting" in line["message"]
    ]
    assert len(recycled) == 3
    seconds = {t.old_task_arn: t.seconds for t in report.tasks_recycled}
    assert all(line["seconds"] == seconds[line["task_arn"]] for line in recycled)
    # The line comes at the moment the replacement served (stop time + seconds), not wait_time later.
    times = [at for message, at in logged_at if message.startswith("Task ") and "recycled, waiting" in message]
    assert len(times) == 3
    for line, at in zip(recycled, times, strict=True):
        served = stopped_at[line["task_arn"]] + seconds[line["task_arn"]]
        assert at == pytest.approx(served, abs=0.1), (line["message"], at - served)
        assert at < served + wait_time


def test_a_dry_run_lists_the_tasks_once(bed: Bed) -> None:
    bed.add_service(tasks=3)
    report = bed.run(dry_run=True)
    assert report.plan is not None and len(report.plan["tasks_to_stop"]) == 3
    assert report.tasks_remaining == []
