"""The durable function end to end: DurableFunctionTestRunner on the simulated cluster.

Each test runs the real handler (``durable_runtime.build_handler``) as a
durable execution: every wait suspends it, and every resumption replays it
from the top against its checkpoints. The runner's skipped time is the
simulator's virtual time (tests/durable_support.py), so the simulated tasks
start and drain while the execution is suspended.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_durable_execution_sdk_python.exceptions import ExecutionError, StepError, WaitForConditionError
from aws_durable_execution_sdk_python.lambda_service import OperationStatus, OperationType
from aws_durable_execution_sdk_python.serdes import SerDesContext
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestResult, StepOperation
from support.bed import CLUSTER, SERVICE, Bed
from support.eventbridge import detail_types, subscribe
from support.logs import log_lines

import durable_function
from dev.durable_support import Meter, durable_runner, fast_checkpoint_shutdown
from dev.simulator import Behaviour
from recycler.hosts import durable as durable_runtime
from recycler.hosts import execution_name
from recycler.hosts.config import AppConfig, parse_config
from recycler.hosts.environment import Environment
from recycler.lock.record import Phase
from recycler.model.errors import ConfigError, LockHeld, PreflightError, TimeBudgetExhausted
from recycler.model.report import NotificationResult
from recycler.model.request import parse_event
from recycler.run import budget as durable_bounds

NAME = execution_name.durable_execution_name(CLUSTER, SERVICE)


@dataclass
class Outcome:
    result: DurableFunctionTestResult
    reports: list[dict[str, Any]]  # what the notifier was given, once per execution
    meter: Meter
    lock_margins: list[float] = field(default_factory=list)  # lock expiry minus now, after each invocation

    @property
    def report(self) -> dict[str, Any]:
        assert len(self.reports) == 1, f"notified {len(self.reports)} times"
        return self.reports[0]

    def names(self) -> list[str]:
        return [op.name or "" for op in self.result.operations]

    def step(self, name: str) -> StepOperation:
        return self.result.get_step(name)


@pytest.fixture
def durable(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Outcome]]:
    """Run one durable recycle of the bed's service; returns what happened."""
    reports: list[dict[str, Any]] = []
    real_notify = durable_runtime.notify

    def recording_notify(report: dict[str, Any], *args: Any, **kwargs: Any) -> NotificationResult:
        reports.append(json.loads(json.dumps(report)))
        return real_notify(report, *args, **kwargs)

    monkeypatch.setattr(durable_runtime, "notify", recording_notify)

    def run(
        recycle: dict[str, Any] | None = None,
        execution_timeout: int = 60,
        runners: list[Any] | None = None,
        **event: Any,
    ) -> Outcome:
        config: AppConfig = parse_config({"recycle": {"poll_interval_seconds": 5, **(recycle or {})}})
        meter = Meter()
        outcome = Outcome(None, reports, meter)  # type: ignore[arg-type]
        handler = durable_runtime.build_handler(clock=bed.clock, session=bed.session, config=config)

        def watched(raw: Any, context: Any) -> Any:
            try:
                return handler(raw, context)
            finally:
                lock = bed.lock() if bed.snapshots else None
                if lock is not None and lock.phase != Phase.RELEASED:
                    outcome.lock_margins.append(lock.expires_at - bed.clock.now())

        payload = json.dumps({"cluster_name": CLUSTER, "service_name": SERVICE, **event})
        with (
            fast_checkpoint_shutdown(),
            meter.counting_checkpoints(),
            durable_runner(bed.clock, meter.wrap(watched, bed.sim)) as runner,
        ):
            if runners is not None:
                runners.append(runner)
            outcome.result = runner.run(input=payload, execution_name=NAME, execution_timeout=execution_timeout)
        return outcome

    yield run


def _failed_with(outcome: Outcome, *fragments: str) -> str:
    assert outcome.result.status.name == "FAILED", outcome.result
    assert outcome.result.error is not None
    message = outcome.result.error.message or ""
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------- #
# A large service, to the end
# --------------------------------------------------------------------------- #


def test_200_tasks_recycle_with_each_task_stopped_once_across_replays(
    bed: Bed, durable: Callable[..., Outcome]
) -> None:
    # GIVEN 200 tasks that take 40 s to start: about 5.6 h with wait_time 60, far beyond one plain.
    # (replacement_timeout_seconds 300 keeps the worst case, 23 h, under the default 24 h ExecutionTimeout.)
    bed.add_service(tasks=200, target=(1, 250))

    # WHEN the durable function recycles it
    outcome = durable(recycle={"replacement_timeout_seconds": 300}, execution_timeout=240, wait_time=60)

    # THEN the execution succeeds with the same report as the plain path
    assert outcome.result.status.name == "SUCCEEDED", outcome.result.error
    result = json.loads(outcome.result.result or "{}")
    assert result["status"] == "succeeded" and result["restored"] is True
    assert len(result["tasks_recycled"]) == 200 and result["task_total"] == 200
    # An execution spans many log streams: the report points at the execution instead.
    assert result["request_id"] and result["log_stream"] is None
    assert outcome.report == {**result, "notification": None}

    # ... over hundreds of invocations, each replaying the run from the top
    # (each task suspends at least twice: its replacement's head start and wait_time)
    assert len(outcome.meter.invocations) > 2 * 200
    # ... yet every original task was stopped exactly once, and by one StopTask call each
    bed.assert_each_original_stopped_at_most_once()
    assert bed.originals_stopped() == set(bed.snapshots[SERVICE]["tasks"])
    assert bed.sim.calls["stop_task"] == 200
    # ... at full capacity throughout, and the service is put back
    bed.assert_capacity_held()
    bed.assert_restored()

    # The waits were durable waits and the replacements durable wait-for-conditions, in virtual time
    # close to the inherent minimum (surge start, then start + wait_time per task).
    assert outcome.result.get_wait("wait after batch 200").operation_type is OperationType.WAIT
    assert outcome.step("replacements 200").sub_type == "WaitForCondition"
    assert 40 + 200 * (40 + 60) <= result["duration_seconds"] <= 1.05 * (40 + 200 * (40 + 60))

    # The lock was renewed as the run progressed, so it never looked abandoned.
    assert "renew lock 200" in outcome.names()
    # Every operation has its own name (the SDK numbers operations by position, and checks names on replay).
    assert len(set(outcome.names())) == len(outcome.names())
    assert outcome.lock_margins and min(outcome.lock_margins) > 0
    # ... and would have expired within the lock TTL had the run died at any point.
    ttl = durable_bounds.lock_ttl_seconds(
        parse_config({"recycle": {"replacement_timeout_seconds": 300}}).recycle,
        parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 60}),
    )
    assert max(outcome.lock_margins) <= ttl


# --------------------------------------------------------------------------- #
# Failures: restore first, then a FAILED execution that says why
# --------------------------------------------------------------------------- #


def test_replacement_never_healthy_restores_then_fails_the_execution(bed: Bed, durable: Callable[..., Outcome]) -> None:
    # GIVEN a release that never becomes healthy, from just after the surge
    bed.add_service(tasks=3, target=(1, 6), behaviour=Behaviour())
    bed.sim.at(45, "broken release", lambda: setattr(bed.sim.behaviour(CLUSTER, SERVICE), "never_healthy", True))

    # WHEN the durable function recycles it
    outcome = durable(recycle={"replacement_timeout_seconds": 60})

    # THEN it restored the service, notified, and the execution FAILED with the reason
    _failed_with(outcome, "FAILED", "no healthy replacement within 60s", "service restored", "desiredCount 4 -> 3")
    report = outcome.report
    assert report["status"] == "failed" and report["error_type"] == "ReplacementTimeout"
    # Task 1's replacement started before the release broke; task 2's never became healthy.
    assert len(report["tasks_recycled"]) == 1 and len(report["tasks_remaining"]) == 1
    assert report["restored"] is True
    assert outcome.step("replacements 2").status is OperationStatus.FAILED
    assert outcome.step("restore desired count").status is OperationStatus.SUCCEEDED
    assert outcome.step("notify").status is OperationStatus.SUCCEEDED
    bed.assert_restored()
    bed.assert_capacity_held()


def test_a_step_that_fails_after_its_retries_restores(bed: Bed, durable: Callable[..., Outcome]) -> None:
    # GIVEN StopTask denied from the second task on (botocore does not retry AccessDenied)
    bed.add_service(tasks=4, target=(1, 8))
    bed.sim.fail("stop_task", "AccessDeniedException", times=10, after_calls=1)

    outcome = durable()

    # THEN the step was tried three times, then the run restored and the execution FAILED
    step = outcome.step("stop batch 2")
    assert step.status is OperationStatus.FAILED and step.attempt == durable_bounds.STEP_ATTEMPTS
    assert bed.sim.calls["stop_task"] == 1 + durable_bounds.STEP_ATTEMPTS
    _failed_with(outcome, "StopTask failed: AccessDeniedException", "service restored")
    report = outcome.report
    assert report["error_type"] == "AwsCallFailed" and report["restored"] is True
    assert len(report["tasks_recycled"]) == 1 and len(report["tasks_remaining"]) == 3
    bed.assert_restored()
    bed.assert_capacity_held()


def test_a_refusal_is_not_retried(bed: Bed, durable: Callable[..., Outcome]) -> None:
    # GIVEN a service that is not there
    outcome = durable()

    step = outcome.step("preflight")
    assert step.status is OperationStatus.FAILED and step.attempt == 1
    _failed_with(outcome, "cluster not found")
    assert outcome.report["error_type"] == "ServiceNotFound"
    # AND it says where it looked, with the durable invocation's own clients
    assert "searched region us-east-1, account 123456789012" in outcome.report["error"]


# --------------------------------------------------------------------------- #
# Refusals before anything changes
# --------------------------------------------------------------------------- #


def test_an_estimate_beyond_the_execution_timeout_is_refused_before_any_change(
    bed: Bed, durable: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 1 h ExecutionTimeout and 40 tasks, one at a time (about 2.3 h by the plan's estimate)
    monkeypatch.setenv(durable_bounds.EXECUTION_TIMEOUT_ENV, "3600")
    bed.add_service(tasks=40, target=(1, 50))

    outcome = durable()

    # THEN it is refused before anything changed, with the real task count and what would fit
    message = _failed_with(outcome, "Nothing was changed", "ExecutionTimeout (3600s)", "DurableExecutionTimeout")
    assert "40 tasks in 40 batches" in message and "raise batch_size" in message
    assert "lock" not in outcome.names() and "surge" not in outcome.names()
    assert not bed.sim.calls.keys() & {"update_service", "stop_task", "put_item", "register_scalable_target"}
    bed.assert_restored()


def test_a_batch_that_no_longer_fits_the_execution_stops_restores_and_says_how_to_carry_on(
    bed: Bed, durable: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 1 h ExecutionTimeout, and 15 tasks admitted by the estimate that turn out slow (5 min each)
    monkeypatch.setenv(durable_bounds.EXECUTION_TIMEOUT_ENV, "3600")
    bed.add_service(tasks=15, target=(1, 20), behaviour=Behaviour(start_seconds=300))

    outcome = durable()

    # THEN before the batch whose worst case no longer fits, it stops, restores, and reports incomplete
    report = outcome.report
    assert report["status"] == "incomplete" and report["restored"] is True, report["error"]
    assert 0 < len(report["tasks_recycled"]) < 15
    assert len(report["tasks_recycled"]) + len(report["tasks_remaining"]) == 15
    # AND its error is the event that carries on, skipping what this run replaced
    resume = json.loads(report["error"].split("carry on with the event ", 1)[1].split("}", 1)[0] + "}")
    assert resume["cluster_name"] == CLUSTER and resume["started_before"] == report["started_at"].replace("+00:00", "Z")
    assert "min_task_age_seconds" not in resume
    bed.assert_restored()
    bed.assert_capacity_held()


def test_each_event_is_put_once_across_replays(bed: Bed, durable: Callable[..., Outcome]) -> None:
    # GIVEN a rule on the default bus, and 3 tasks recycled one at a time with pauses, over many invocations
    read = subscribe(bed.session)
    bed.add_service(tasks=3, target=(1, 6))
    outcome = durable(wait_time=60)
    assert outcome.report["status"] == "succeeded" and len(outcome.meter.invocations) > 1
    # THEN each event was put once, although each replay runs the engine's code again
    started, batch = "ECS Task Recycle Started", "ECS Task Recycle Batch Completed"
    assert detail_types(read()) == [started, batch, batch, batch, "ECS Task Recycle Succeeded"]


def test_an_invalid_event_fails_before_any_aws_call_and_is_mailed_as_refused(
    bed: Bed, durable: Callable[..., Outcome]
) -> None:
    # GIVEN an execution (a schedule may start it) whose event has an unknown field
    bed.add_service(tasks=2)
    outcome = durable(wait_tme=30)
    # THEN it fails naming the field, before any AWS call, and the refusal is mailed once, as refused
    _failed_with(outcome, "wait_tme: unknown field")
    assert bed.sim.calls == {}
    assert outcome.report["status"] == "refused" and "wait_tme" in outcome.report["error"]
    assert (outcome.report["cluster"], outcome.report["service"]) == (CLUSTER, SERVICE)


def test_a_second_start_for_the_same_service_does_not_start_a_second_recycle(
    bed: Bed, durable: Callable[..., Outcome]
) -> None:
    """Lambda runs one execution per DurableExecutionName; the local runner does not dedupe names.

    So this starts a second execution with the same name while the first is
    mid-recycle, as a start without a name (a schedule) would: the lock
    refuses it before it changes anything, and the first run finishes as if
    it had been alone.
    """
    bed.add_service(tasks=3, target=(1, 6))
    second: dict[str, Any] = {}
    runners: list[Any] = []

    def start_again() -> None:
        # Runs inside the first execution (t=60 s: surged, task 1 stopped, lock held).
        runner = runners[0]
        payload = json.dumps({"cluster_name": CLUSTER, "service_name": SERVICE})
        second["result"] = runner.run(input=payload, execution_name=NAME, execution_timeout=30)

    bed.sim.at(60, "second start", start_again)
    first = durable(runners=runners)

    duplicate: DurableFunctionTestResult = second["result"]
    assert duplicate.status.name == "FAILED" and duplicate.error is not None
    assert "holds the lock" in (duplicate.error.message or "")
    assert [op.name for op in duplicate.operations] == [
        "execution budget",
        "start",
        "preflight",
        "finish",
        "event final",
        "notify",
        "metrics",
    ]
    assert first.result.status.name == "SUCCEEDED"
    assert [r["status"] for r in first.reports] == ["refused", "succeeded"]
    assert first.reports[0]["error_type"] == LockHeld.__name__
    bed.assert_each_original_stopped_at_most_once()
    assert bed.sim.calls["stop_task"] == 3
    bed.assert_restored()


# --------------------------------------------------------------------------- #
# Replays, logs, names
# --------------------------------------------------------------------------- #


def test_each_log_line_is_written_once_across_replays(
    bed: Bed, durable: Callable[..., Outcome], captured_logs: io.StringIO
) -> None:
    bed.add_service(tasks=3)
    outcome = durable()
    assert outcome.result.status.name == "SUCCEEDED"
    assert len(outcome.meter.invocations) > 5

    lines = [line for line in log_lines(captured_logs) if line["logger"] == "ecs-task-recycle"]
    messages = [line["message"] for line in lines]
    for index in (1, 2, 3):
        assert sum(m.startswith(f"Recycling task {index}/3") for m in messages) == 1
    assert messages.count("Task recycle report") == 1
    assert all(line.get("cluster") == CLUSTER and line.get("service") == SERVICE for line in lines)
    assert all("execution_arn" in line for line in lines)


def test_plain_events_are_rejected_by_the_durable_handler() -> None:
    # Lambda hands a durable function its checkpoint state, never the bare event.
    with pytest.raises(ExecutionError, match="Unexpected payload"):
        durable_function.lambda_handler({"cluster_name": CLUSTER, "service_name": SERVICE}, None)


def test_step_results_are_json_compressed_when_large() -> None:
    context = SerDesContext()
    small = {"action": "stopped", "stopped_at": 1767225641.5}
    assert durable_runtime.SERDES.serialize(small, context) == json.dumps(small, separators=(",", ":"))
    # 5,000 tasks, the most one ECS service runs: the pre-flight result still fits a 256 KB checkpoint.
    arns = [f"arn:aws:ecs:eu-west-1:123456789012:task/{CLUSTER}/{uuid.uuid4().hex}" for _ in range(5000)]
    preflight = {"all_task_arns": sorted(arns), "running_task_arns": arns, "desired_count": 5000}
    data = durable_runtime.SERDES.serialize(preflight, context)
    assert len(data) < 256 * 1024 < len(json.dumps(preflight))
    assert durable_runtime.SERDES.deserialize(data, context) == preflight


def test_a_large_report_is_shortened_for_the_execution_result() -> None:
    recycled = [{"index": i, "old_task_arn": "a" * 90, "new_task_arn": "b" * 90, "seconds": 40.0} for i in range(3000)]
    report = {"status": "succeeded", "tasks_recycled": recycled, "tasks_skipped": [], "tasks_remaining": []}
    short = durable_bounds.bounded_result(report)
    assert len(json.dumps(short)) < durable_bounds.MAX_RESULT_BYTES
    assert short["tasks_recycled_count"] == 3000 and len(short["tasks_recycled"]) == durable_bounds.RESULT_SAMPLE
    assert durable_bounds.bounded_result({"status": "succeeded"}) == {"status": "succeeded"}


def test_engine_errors_come_back_with_their_own_type() -> None:
    step = StepError("the Lambda time budget ran out", error_type="recycler.model.errors.TimeBudgetExhausted")
    assert type(durable_runtime._engine_error(step)) is TimeBudgetExhausted
    check = WaitForConditionError("boom", error_type="recycler.model.errors.ConfigError")
    assert durable_runtime._engine_error(check) is check
    other = StepError("bug", error_type="KeyError")
    assert durable_runtime._engine_error(other) is other


def test_execution_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(durable_bounds.EXECUTION_TIMEOUT_ENV, raising=False)
    assert Environment.from_env().execution_timeout_seconds == 86_400
    monkeypatch.setenv(durable_bounds.EXECUTION_TIMEOUT_ENV, "172800")
    assert Environment.from_env().execution_timeout_seconds == 172_800
    for bad in ("1d", "0", "31622401"):
        monkeypatch.setenv(durable_bounds.EXECUTION_TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError) as caught:
            _ = Environment.from_env().execution_timeout_seconds
        assert caught.value.field == durable_bounds.EXECUTION_TIMEOUT_ENV


def test_batch_bounds_and_lock_ttl() -> None:
    request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 30})
    settings = parse_config({}).recycle
    # One batch may take replacement_timeout_seconds plus a poll, wait_time and the per-batch allowance ...
    worst = durable_bounds.batch_worst_case_seconds(request, settings)
    assert worst == settings.replacement_timeout_seconds + settings.poll_interval_seconds + 30 + (
        durable_bounds.PER_TASK_OVERHEAD_SECONDS
    )

    # ... and before each batch, that and the restore must fit, however fast replacements have been
    def needed(estimate: float) -> float:
        return durable_bounds.durable_batch_seconds(estimate, request, settings)

    assert needed(10.0) == worst + settings.restore_reserve_seconds
    assert needed(5000.0) == 5000.0 + 30 + settings.restore_reserve_seconds
    # The estimate grows by one batch of replacements and one wait per batch.
    one, two = (durable_bounds.estimated_seconds(n, request, settings) for n in (1, 2))
    assert two - one == durable_bounds.INITIAL_REPLACEMENT_ESTIMATE_SECONDS + settings.poll_interval_seconds + 30 + (
        durable_bounds.PER_TASK_OVERHEAD_SECONDS
    )
    # The lock outlives the longest stretch between renewals: the surge plus the first batch.
    ttl = durable_bounds.lock_ttl_seconds(settings, request)
    assert ttl > 2 * (settings.replacement_timeout_seconds + settings.poll_interval_seconds)


def test_the_plain_functions_time_budget_error_names_the_durable_function(bed: Bed) -> None:
    bed.add_service(tasks=8)
    report = bed.run(timeout=300)
    assert report.status == "incomplete"
    assert report.error and "durable" in report.error
    bed.assert_restored()


def test_a_thousand_tasks_in_batches_of_ten_are_admitted_at_the_template_defaults() -> None:
    # GIVEN 1,000 running tasks, batch_size 10, replacement_timeout_seconds 600, a fresh 24 h execution
    from recycler.run.preflight import Preflight
    from recycler.run.selection import TaskInfo

    tasks = tuple(TaskInfo(f"arn:aws:ecs:us-east-1:123456789012:task/c/{i:04d}", 1.0e9 + i, "a") for i in range(1000))
    preflight = Preflight(
        service_arn="arn:aws:ecs:us-east-1:123456789012:service/c/s",
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/c",
        lock_key="k",
        desired_count=1000,
        running_count=1000,
        task_definition=None,
        running_tasks=tasks,
        other_task_arns=(),
        health_checked=True,
        target_groups=(),
        scalable_target=None,
        lock=None,
        legacy_lock_tag=False,
        read_at=2.0e9,
    )
    settings = parse_config({}).recycle
    timeout = durable_bounds.DEFAULT_EXECUTION_TIMEOUT_SECONDS
    batched = parse_event({"cluster_name": "c", "service_name": "s", "batch_size": 10})
    # WHEN the durable run admits it THEN it fits (about 100 batches), where one at a time does not
    durable_bounds.check_duration_bound(preflight, preflight.select(batched), batched, settings, timeout - 60, timeout)
    one_by_one = parse_event({"cluster_name": "c", "service_name": "s"})
    with pytest.raises(PreflightError, match=r"1000 tasks in 1000 batches of up to 1 .*Nothing was changed"):
        durable_bounds.check_duration_bound(
            preflight, preflight.select(one_by_one), one_by_one, settings, timeout - 60, timeout
        )
    # AND the batches that fit are refused once checkpoints hold longer than the execution has left
    held = parse_event(
        {
            "cluster_name": "c",
            "service_name": "s",
            "batch_size": 10,
            "checkpoint_percentages": [25, 50, 75],
            "checkpoint_delay_seconds": 86_400 // 3,
        }
    )
    with pytest.raises(PreflightError, match=r"Nothing was changed"):
        durable_bounds.check_duration_bound(preflight, preflight.select(held), held, settings, timeout - 60, timeout)


def test_a_cancel_stops_a_durable_run_gracefully(bed: Bed, durable: Callable[..., Outcome]) -> None:
    from recycler.aws.gateway import ServiceGateway
    from recycler.hosts import control

    # GIVEN a durable recycle of six tasks, and an operator who cancels it 150 s in
    bed.add_service(tasks=6, target=(2, 10))
    reads = ServiceGateway(
        bed.ecs, bed.autoscaling, bed.elbv2, parse_event({"cluster_name": CLUSTER, "service_name": SERVICE})
    )
    asked: list[control.CancelAnswer] = []
    bed.sim.at(150, "cancel", lambda: asked.append(control.cancel(reads, bed.store, bed.clock, "ops").to_dict()))

    outcome = durable(wait_time=10)

    # THEN the execution succeeded as cancelled: it stopped no further task, restored, and removed the tag
    assert asked and asked[0]["state"] == "running"
    assert outcome.result.status.name == "SUCCEEDED", outcome.result.error
    report = outcome.report
    assert report["status"] == "cancelled" and 0 < len(report["tasks_recycled"]) < 6
    assert len(report["tasks_recycled"]) + len(report["tasks_remaining"]) == 6
    assert not any(t["key"] == "ecs-task-recycle:cancel" for t in bed.sim.service(CLUSTER, SERVICE).tags or [])
    bed.assert_restored()
    bed.assert_capacity_held()
    bed.assert_each_original_stopped_at_most_once()


# --------------------------------------------------------------------------- #
# Carrying on: the durable function and the hand-off keep the chain's cut-off
# --------------------------------------------------------------------------- #


def _carry_on(report: dict[str, Any]) -> dict[str, Any]:
    error = report["error"] or ""
    assert "carry on with the event " in error, error
    event = dict(json.loads(error.split("carry on with the event ", 1)[1].split("}", 1)[0] + "}"))
    return {k: v for k, v in event.items() if k not in ("cluster_name", "service_name")}


def _ages(bed: Bed, young: float, old: float) -> None:
    """Every other task started `young` seconds ago, the others `old` seconds ago."""
    for index, task in enumerate(sorted(bed.sim.tasks(CLUSTER, SERVICE), key=lambda t: t.task_arn)):
        bed.sim.set_started(task, bed.clock.now() - (old if index % 2 else young))


def _assert_chain_took_exactly_the_originals(bed: Bed, reports: list[dict[str, Any]]) -> None:
    originals = set(bed.snapshots[SERVICE]["tasks"])
    assert reports[-1]["status"] == "succeeded", reports[-1]["error"]
    recycled = [t["old_task_arn"] for r in reports for t in r["tasks_recycled"]]
    # THEN every original was recycled exactly once over the chain, each re-run taking what the runs before
    # it had not reached, and no task a run of the chain started was stopped: each was left alone, saying why
    assert sorted(recycled) == sorted(originals)
    done: set[str] = set()
    for report in reports:
        mine = {t["old_task_arn"] for t in report["tasks_recycled"]}
        assert mine == (originals - done) - set(report["tasks_remaining"])
        done |= mine
    for report in reports[1:]:
        for skipped in report["tasks_skipped"]:
            assert skipped["old_task_arn"] not in originals
            assert "at or after started_before" in (skipped["note"] or ""), skipped
    bed.assert_each_original_stopped_at_most_once()
    bed.assert_restored()


def test_a_durable_chain_with_tasks_younger_and_older_than_an_hour(
    bed: Bed, durable: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 1 h ExecutionTimeout, 10 slow tasks (5 min each): five started a minute ago, five two hours ago
    monkeypatch.setenv(durable_bounds.EXECUTION_TIMEOUT_ENV, "3600")
    bed.add_service(tasks=10, target=(1, 14), behaviour=Behaviour(start_seconds=300))
    _ages(bed, young=60, old=2 * 3600)

    # WHEN each incomplete execution is followed by a new one with the event it gives
    reports = [durable().reports[-1]]
    while reports[-1]["status"] == "incomplete" and len(reports) < 5:
        bed.clock.sleep(60)
        bed.sim.reconcile()
        reports.append(durable(**_carry_on(reports[-1])).reports[-1])

    # THEN the first stopped short, and the chain took exactly the originals, never a replacement
    assert reports[0]["status"] == "incomplete" and len(reports) > 1
    _assert_chain_took_exactly_the_originals(bed, reports)


def test_a_hand_off_keeps_the_chains_cut_off_into_the_durable_execution(
    bed: Bed, durable: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dev.simulator import FakeLambdaContext
    from recycler.aws import clients
    from recycler.hosts import plain
    from recycler.run.ports import HANDOFF_ENV

    # GIVEN 24 tasks, half started 30 minutes ago, half three hours ago, and a plain run that did 11
    bed.add_service(tasks=24, target=(2, 30))
    _ages(bed, young=1800, old=3 * 3600)
    first = bed.run(timeout=900).to_dict()
    assert first["status"] == "incomplete" and 0 < len(first["tasks_recycled"]) < 24
    bed.clock.sleep(120)
    bed.sim.reconcile()

    # WHEN the plain function, given the event that carries on, hands the rest to the durable function
    invokes: list[dict[str, Any]] = []

    class Alias:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            invokes.append(kwargs)
            return {"StatusCode": 202}

    alias = Alias()
    monkeypatch.setenv(HANDOFF_ENV, "arn:aws:lambda:us-east-1:123456789012:function:ecs-task-recycle-durable:live")
    real_create_client = clients.create_client
    monkeypatch.setattr(
        clients, "create_client", lambda s, name: alias if name == "lambda" else real_create_client(s, name)
    )
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, **_carry_on(first)}
    handler = plain.build_handler(clock=bed.clock, config=parse_config({}))
    handed = handler(event, FakeLambdaContext(bed.clock, 900, "req-9"))
    assert handed["status"] == "handed_off"
    (invoke,) = invokes
    payload = json.loads(invoke["Payload"])
    # THEN the execution gets the first run's cut-off, not the later start of the run that handed off
    assert payload["started_before"] == event["started_before"]
    outcome = durable(**{k: v for k, v in payload.items() if k not in ("cluster_name", "service_name")})

    # AND it recycled exactly the originals the first run had not reached
    _assert_chain_took_exactly_the_originals(bed, [first, outcome.reports[-1]])


# --------------------------------------------------------------------------- #
# History: one item per execution, whatever the replays
# --------------------------------------------------------------------------- #


def test_a_durable_run_writes_its_history_item_once_across_replays(bed: Bed, durable: Callable[..., Outcome]) -> None:
    # GIVEN a durable recycle of three tasks, replayed from the top at every resumption
    bed.add_service(tasks=3, target=(1, 6))
    outcome = durable(wait_time=10)
    assert outcome.result.status.name == "SUCCEEDED", outcome.result.error
    assert len(outcome.meter.invocations) > 3
    # THEN the history item was written by one PutItem (the other is the lock's acquire), as a step of its own
    assert bed.sim.calls["put_item"] == 2
    assert "history" in outcome.names()
    (item,) = [item for item in bed.lock_items() if "history_of" in item]
    assert item["status"]["S"] == "succeeded" and item["recycled"]["N"] == "3"
    bed.assert_restored()
