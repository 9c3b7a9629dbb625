"""A fleet as one durable execution: the SDK's context.map over the services under DurableFunctionTestRunner,
on the simulated cluster (the runner's skipped time is the simulator's)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.bed import CLUSTER, Bed
from support.eventbridge import subscribe
from support.fleet import NAMES, add_services, surged_counts

import durable_function
from dev.durable_support import durable_runner, fast_checkpoint_shutdown
from dev.simulator import LambdaKilled
from recycler.hosts import durable as durable_runtime
from recycler.hosts import execution_name
from recycler.hosts.config import parse_config
from recycler.model.report import NotificationResult
from recycler.run import budget

CONFIG = parse_config({"recycle": {"poll_interval_seconds": 5, "max_failed_replacements": 2}})


@pytest.fixture
def run_fleet(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Any, list[dict[str, Any]]]]]:
    """Run one durable fleet; returns the runner's result and what the notifier was given."""
    reports: list[dict[str, Any]] = []
    real_notify = durable_runtime.notify

    def recording_notify(report: dict[str, Any], *args: Any, **kwargs: Any) -> NotificationResult:
        reports.append(json.loads(json.dumps(report)))
        return real_notify(report, *args, **kwargs)

    monkeypatch.setattr(durable_runtime, "notify", recording_notify)

    # The branches call moto from the map's threads: one call at a time.
    bed.sim.serialize_calls()

    def run(**event: Any) -> tuple[Any, list[dict[str, Any]]]:
        handler = durable_runtime.build_handler(clock=bed.clock, session=bed.session, config=CONFIG)

        def dying(raw: Any, context: Any) -> Any:
            try:
                return handler(raw, context)
            except LambdaKilled as e:
                # The invocation died: Lambda invokes the execution again, which replays it.
                raise RuntimeError(str(e)) from e

        payload = {"cluster_name": CLUSTER, "services": NAMES, "wait_time": 5, **event}
        name = execution_name.durable_fleet_execution_name(CLUSTER, services=NAMES)
        with fast_checkpoint_shutdown(), durable_runner(bed.clock, dying) as runner:
            result = runner.run(input=json.dumps(payload), execution_name=name, execution_timeout=3600)
        return result, reports

    yield run


def test_three_services_two_at_once_each_recycled_and_restored(bed: Bed, run_fleet: Callable[..., Any]) -> None:
    add_services(bed)
    counts = surged_counts(bed)
    read_events = subscribe(bed.session)
    result, reports = run_fleet(max_parallel_services=2)
    assert result.status.name == "SUCCEEDED", result.error
    data = json.loads(result.result)
    assert data["fleet"] is True and data["status"] == "succeeded"
    assert data["totals"] == {"services": {"succeeded": 3}, "tasks_recycled": 6, "task_total": 6}
    assert [s["service"] for s in data["services"]] == NAMES and data["not_started"] == []
    for name in NAMES:
        bed.assert_restored(name)
    assert max(counts) == 2
    # One email, the fleet's.
    assert len(reports) == 1 and reports[0]["fleet"] is True
    fleet_events = [e for e in read_events() if e["detail"].get("fleet") is True]
    assert [e["detail-type"] for e in fleet_events] == ["ECS Task Recycle Started", "ECS Task Recycle Succeeded"]


def test_a_failing_service_with_continue_the_others_go_on(bed: Bed, run_fleet: Callable[..., Any]) -> None:
    add_services(bed, failing="svc-b")
    result, reports = run_fleet(max_parallel_services=2)
    # The execution fails, after every restore and the one email, with the fleet's summary.
    assert result.status.name == "FAILED" and "Fleet task recycle FAILED" in result.error.message
    data = reports[0]
    assert data["status"] == "failed", data
    outcomes = {s["service"]: s["status"] for s in data["services"]}
    assert outcomes == {"svc-a": "succeeded", "svc-b": "failed", "svc-c": "succeeded"}
    assert data["not_started"] == [] and len(reports) == 1
    for name in NAMES:
        bed.assert_restored(name)


def test_with_stop_no_service_is_admitted_after_a_failure(bed: Bed, run_fleet: Callable[..., Any]) -> None:
    add_services(bed, failing="svc-a")
    before = bed.service_state("svc-c")
    result, reports = run_fleet(max_parallel_services=2, on_service_failure="stop")
    assert result.status.name == "FAILED" and len(reports) == 1
    data = reports[0]
    assert data["status"] == "failed", data
    outcomes = {s["service"]: s["status"] for s in data["services"]}
    # svc-b was in flight when svc-a failed: it finishes and restores; svc-c never starts.
    assert outcomes == {"svc-a": "failed", "svc-b": "succeeded"}
    assert data["not_started"] == ["svc-c"] and "on_service_failure stop" in data["error"]
    bed.assert_restored("svc-a")
    bed.assert_restored("svc-b")
    assert bed.service_state("svc-c") == before and bed.lock("svc-c") is None


def test_a_crash_in_the_middle_of_a_step_replays_and_recycles_each_service_once(
    bed: Bed, run_fleet: Callable[..., Any]
) -> None:
    add_services(bed)
    stops: dict[str, int] = {}
    real = bed.sim._stop_task
    crashed: list[str] = []

    def crashing(backend: Any, original: Any, *args: Any, **kwargs: Any) -> Any:
        task = real(backend, original, *args, **kwargs)
        stops[task.task_arn] = stops.get(task.task_arn, 0) + 1
        if not crashed and "svc-b" in str(task.group or ""):
            # The task is stopped, but the step that stopped it never checkpoints.
            crashed.append(task.task_arn)
            raise LambdaKilled("killed in the middle of a step")
        return task

    bed.sim._stop_task = crashing  # type: ignore[method-assign]
    result, reports = run_fleet(max_parallel_services=2)
    assert crashed, "the crash never happened"
    assert result.status.name == "SUCCEEDED", result.error
    data = json.loads(result.result)
    assert data["totals"] == {"services": {"succeeded": 3}, "tasks_recycled": 6, "task_total": 6}
    # Each original stopped (at most re-sent once, by the replayed step), no replacement stopped.
    assert len(stops) == 6 and all(count == 1 for arn, count in stops.items() if arn not in crashed)
    assert len(reports) == 1
    for name in NAMES:
        bed.assert_restored(name)


def test_one_execution_name_per_fleet_run(capsys: pytest.CaptureFixture[str]) -> None:
    name = execution_name.durable_fleet_execution_name
    assert name("prod", services=["web", "api"], run_key="d1") == name("prod", services=["api", "web"], run_key="d1")
    assert name("prod", services=["web", "api"]) != name("prod", services=["web"])
    assert name("prod", services=["web"], run_key="d1") != name("prod", services=["web"], run_key="d2")
    assert name("prod", service_tags={"recycle": "weekly"}) != name("prod", service_tags={"recycle": "daily"})
    assert len(name("p" * 255, services=["web"], run_key="k" * 20)) <= execution_name.EXECUTION_NAME_MAX
    assert durable_function.main(["--cluster", "prod", "--services", "web", "api", "--run-key", "d1"]) == 0
    assert capsys.readouterr().out.strip() == name("prod", services=["web", "api"], run_key="d1")


def test_an_alarm_firing_mid_fleet_admits_no_new_service_and_restores_all(
    bed: Bed, run_fleet: Callable[..., Any]
) -> None:
    add_services(bed)
    alarm = bed.add_alarm("fleet-5xx")
    bed.sim.at(60, "alarm fires", lambda: bed.sim.set_alarm(alarm, "ALARM", "errors"))
    result, reports = run_fleet(alarm_names=[alarm], max_parallel_services=2)
    assert result.status.name == "FAILED" and len(reports) == 1
    data = reports[0]
    assert data["status"] == "failed" and data["not_started"] == ["svc-c"]
    assert "fleet-5xx" in data["error"]
    for name in NAMES:
        bed.assert_restored(name)


def test_a_fleet_beyond_the_execution_timeout_is_refused_before_any_change(
    bed: Bed, run_fleet: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 40 min ExecutionTimeout and three services of 4 tasks (a durable worst case of about 1060 s each):
    # each alone fits, the three one after another not
    monkeypatch.setenv(budget.EXECUTION_TIMEOUT_ENV, "2400")
    add_services(bed, tasks=4)
    states = {name: bed.service_state(name) for name in NAMES}
    result, reports = run_fleet(max_parallel_services=1)
    assert result.status.name == "FAILED"
    message = result.error.message
    assert "Nothing was changed" in message and "3 services, 1 at once" in message
    assert not bed.sim.calls.keys() & {"update_service", "stop_task", "register_scalable_target"}
    assert {name: bed.service_state(name) for name in NAMES} == states
    # Mailed as refused, every service not started.
    assert len(reports) == 1 and reports[0]["status"] == "refused" and reports[0]["not_started"] == NAMES
    reports.clear()
    # Three at once fit.
    result, _ = run_fleet(max_parallel_services=3)
    assert result.status.name == "SUCCEEDED", result.error


def test_a_durable_fleet_dry_run_plans_each_service_and_changes_nothing(
    bed: Bed, run_fleet: Callable[..., Any]
) -> None:
    add_services(bed)
    states = {name: bed.service_state(name) for name in NAMES}
    result, _ = run_fleet(max_parallel_services=2, dry_run=True)
    assert result.status.name == "SUCCEEDED", result.error
    data = json.loads(result.result)
    assert data["fleet"] is True and data["status"] == "dry_run"
    assert [s["service"] for s in data["services"]] == NAMES and data["plan"]["estimated_seconds"] > 0
    assert {name: bed.service_state(name) for name in NAMES} == states
    assert not bed.sim.calls.keys() & {"update_service", "stop_task", "register_scalable_target"}


def test_a_large_fleet_result_is_shortened_to_fit() -> None:
    recycled = [{"index": i, "old_task_arn": "a" * 90, "new_task_arn": "b" * 90, "seconds": 40.0} for i in range(900)]
    services = [
        {"service": f"svc-{n}", "status": "succeeded", "tasks_recycled": recycled, "restored": True} for n in range(20)
    ]
    short = budget.bounded_fleet_result({"fleet": True, "status": "succeeded", "services": services})
    assert len(json.dumps(short)) < budget.MAX_RESULT_BYTES and "truncated" in short
    assert [s["service"] for s in short["services"]] == [f"svc-{n}" for n in range(20)]
    assert all(s["status"] == "succeeded" for s in short["services"])
    assert budget.bounded_fleet_result({"fleet": True}) == {"fleet": True}


def test_a_cancel_arriving_between_two_services_admits_no_further_service(
    bed: Bed, run_fleet: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recycler.hosts import durable_fleet, plain

    add_services(bed)
    before = bed.service_state("svc-b")
    answers: list[dict[str, Any]] = []
    real_run = durable_fleet.run

    def run_then_cancel(host: Any, request: Any, *args: Any) -> Any:
        result = real_run(host, request, *args)
        if request.service_name == "svc-a" and not request.dry_run and not answers:
            # svc-a has ended and released its lock; svc-b is not admitted yet: the operator cancels the fleet.
            cancel = plain.build_handler(clock=bed.clock, config=CONFIG)
            answers.append(cancel({"cluster_name": CLUSTER, "services": NAMES, "action": "cancel"}, None))
        return result

    monkeypatch.setattr(durable_fleet, "run", run_then_cancel)
    result, reports = run_fleet(max_parallel_services=1)
    # A cancel honoured is no failure of the execution (as for one service): the report says cancelled.
    assert result.status.name == "SUCCEEDED", result.error
    (answer,) = answers
    assert answer["fleet_cancel"].startswith("requested: fleet run durable:")
    data = reports[0]
    assert data["status"] == "cancelled" and data["not_started"] == ["svc-b", "svc-c"]
    assert [s["status"] for s in data["services"]] == ["succeeded"] and "cancelled by" in data["error"]
    bed.assert_restored("svc-a")
    assert bed.service_state("svc-b") == before and bed.lock("svc-b") is None


def test_status_and_cancel_of_a_durable_fleet_answer_per_service_and_for_the_fleet_run(
    bed: Bed, run_fleet: Callable[..., Any]
) -> None:
    add_services(bed)
    result, _ = run_fleet(max_parallel_services=2)
    assert result.status.name == "SUCCEEDED", result.error
    status, _ = run_fleet(action="status")
    answer = json.loads(status.result)
    assert answer["fleet"] is True and [a["state"] for a in answer["services"]] == ["idle"] * 3
    assert [a["last_run"]["status"] for a in answer["services"]] == ["succeeded"] * 3
    assert answer["fleet_run"]["status"] == "succeeded" and answer["fleet_run"]["ended_at"]
    # The fleet run has ended: a cancel finds none going, and each service is idle.
    cancel, _ = run_fleet(action="cancel")
    cancelled = json.loads(cancel.result)
    assert cancelled["fleet_cancel"].startswith("no fleet run")
    assert [a["state"] for a in cancelled["services"]] == ["idle"] * 3
