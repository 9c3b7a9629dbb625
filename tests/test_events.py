"""EventBridge events: each run says on the default bus that it started, each batch it completed, and how it ended.

Read back as a team would route them: a rule on moto's default bus, matching the tool's source, to an SQS queue.
What must hold: the source is the tool's (never aws.*), each outcome has its detail-type, once; the detail says
the service, the run, its counts, percentage and error; a dry run puts nothing; and a PutEvents that fails is
logged and changes nothing about the run.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError
from support.bed import CLUSTER, SERVICE, Bed
from support.eventbridge import detail_types, subscribe
from support.handoff import FakeDurableAlias
from support.logs import log_lines

from dev.simulator import REGION, FakeLambdaContext
from recycler.hosts import plain as invocation
from recycler.hosts.config import parse_config
from recycler.model.errors import ConfigError
from recycler.model.report import RecycleReport
from recycler.model.runtime import LocalRuntime
from recycler.run import events as run_events

T = TypeVar("T")
STARTED = "ECS Task Recycle Started"
BATCH = "ECS Task Recycle Batch Completed"


def test_a_succeeded_run_puts_started_each_batch_and_succeeded(bed: Bed) -> None:
    # GIVEN a rule on the default bus for the tool's events, and a service of 3 tasks
    read = subscribe(bed.session)
    arn = bed.add_service(tasks=3, target=(1, 6))

    # WHEN it is recycled in two batches (2, then 1)
    report = bed.run(batch_size=2)

    # THEN the rule saw Started, a Batch Completed per batch, then Succeeded, all from the tool's own source
    assert report.status == "succeeded"
    events = read()
    assert detail_types(events) == [STARTED, BATCH, BATCH, "ECS Task Recycle Succeeded"]
    for event in events:
        assert event["source"] == "ecs-task-recycle" and not event["source"].startswith("aws.")
        assert (event["region"], event["resources"]) == (REGION, [arn])
        detail = event["detail"]
        assert (detail["cluster"], detail["service"], detail["run_id"]) == (CLUSTER, SERVICE, "run-1")
        assert detail["counts"]["total"] == 3 and detail["error"] is None
    started, first, second, done = (e["detail"] for e in events)
    # AND the counts and percentage follow the run
    assert started["status"] == "running" and started["counts"]["recycled"] == 0 and started["percent_complete"] == 0
    assert (first["batch"], first["counts"]["recycled"], first["percent_complete"]) == (1, 2, 66.7)
    assert (second["batch"], second["counts"]["recycled"], second["percent_complete"]) == (2, 3, 100.0)
    assert done["status"] == "succeeded" and done["percent_complete"] == 100.0
    assert done["counts"] == {"recycled": 3, "total": 3, "skipped": 0, "failed": 0}


def test_a_cancelled_run_ends_with_cancelled_and_its_error(bed: Bed) -> None:
    # GIVEN a run of 4 tasks, one at a time, cancelled by its tag after the second batch
    read = subscribe(bed.session)
    bed.add_service(tasks=4, target=(1, 8))
    bed.sim.at(70, "operator cancels", lambda: _cancel(bed))

    report = bed.run(wait_time=10)

    # THEN the last event is Cancelled, with the report's counts and its error; nothing follows it
    assert report.status == "cancelled"
    events = read()
    types = detail_types(events)
    assert types[0] == STARTED and types[-1] == "ECS Task Recycle Cancelled" and set(types[1:-1]) <= {BATCH}
    done = events[-1]["detail"]
    assert done["status"] == "cancelled" and done["error"] == report.error and "ops" in done["error"]
    assert done["error_type"] == "RecycleCancelled"
    assert done["counts"]["recycled"] == len(report.tasks_recycled) < 4
    assert done["percent_complete"] == round(100 * len(report.tasks_recycled) / 4, 1)


def test_a_refused_run_puts_only_refused(bed: Bed) -> None:
    # GIVEN another live run holding the service's lock
    read = subscribe(bed.session)
    arn = bed.add_service(tasks=2)
    bed.plant_lock(bed.expired_lock_item(owner="other-run", expires_at=int(bed.clock.now()) + 600))

    # WHEN a run starts
    report = bed.run()

    # THEN it is refused, and so is its only event: it never started
    assert report.status == "refused"
    (event,) = read()
    assert event["detail-type"] == "ECS Task Recycle Refused" and event["resources"] == [arn]
    assert event["detail"]["status"] == "refused" and event["detail"]["error_type"] == "LockHeld"
    assert "other-run" in event["detail"]["error"]


def test_a_dry_run_puts_nothing(bed: Bed) -> None:
    read = subscribe(bed.session)
    bed.add_service(tasks=2)
    assert bed.run(dry_run=True).status == "dry_run"
    assert read() == []


def test_a_bad_event_is_put_as_refused_naming_the_field(bed: Bed) -> None:
    # GIVEN a scheduled invocation whose event has a bad field
    read = subscribe(bed.session)
    bed.add_service(tasks=1)
    handler = invocation.build_handler(clock=bed.clock, config=parse_config({}))
    with pytest.raises(ConfigError, match="wait_time"):
        handler({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": -1}, FakeLambdaContext(bed.clock))
    # THEN the refusal is on the bus as any refused run's, naming the field
    (event,) = read()
    assert event["detail-type"] == "ECS Task Recycle Refused"
    detail = event["detail"]
    assert (detail["cluster"], detail["service"], detail["status"]) == (CLUSTER, SERVICE, "refused")
    assert "wait_time" in detail["error"] and detail["counts"]["total"] is None


def test_a_hand_off_puts_only_handed_off_naming_the_execution(bed: Bed, durable_alias: FakeDurableAlias) -> None:
    # GIVEN a plan too long for a 15-minute invocation
    read = subscribe(bed.session)
    bed.add_service(tasks=40, target=(1, 50))
    handler = invocation.build_handler(clock=bed.clock, config=parse_config({}))

    # WHEN the plain function hands it to the durable one
    result = handler({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 30}, FakeLambdaContext(bed.clock))

    # THEN its one event is Handed Off, naming the durable execution; the durable run puts its own
    assert result["status"] == "handed_off"
    (event,) = read()
    assert event["detail-type"] == "ECS Task Recycle Handed Off"
    detail = event["detail"]
    assert detail["status"] == "handed_off" and detail["execution_name"] == result["handed_off"]["execution_name"]
    assert detail["counts"]["total"] == 40 and detail["counts"]["recycled"] == 0


class FailingEvents:
    """An EventBridge client that refuses every PutEvents, one way or another."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.calls = 0

    def put_events(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.how == "access denied":
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform PutEvents"}}
            raise ClientError(error, "PutEvents")  # type: ignore[arg-type]
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}


@pytest.mark.parametrize("how", ["access denied", "failed entry"])
def test_a_failed_put_events_is_logged_and_changes_nothing(
    bed: Bed, captured_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # GIVEN an EventBridge that refuses every event
    failing = FailingEvents(how)
    bed.events = failing
    bed.add_service(tasks=2, target=(1, 4))

    # WHEN a run recycles the service
    report = bed.run()

    # THEN the run is as it would have been: succeeded, both tasks recycled, restored, no error
    assert report.status == "succeeded" and report.error is None and report.restored is True
    assert len(report.tasks_recycled) == 2
    bed.assert_restored()
    # AND every event was tried (started, 2 batches, succeeded), each failure logged at WARNING
    assert failing.calls == 4
    warnings = [line for line in log_lines(captured_logs) if "was not published" in line.get("message", "")]
    assert len(warnings) == 4 and {line["level"] for line in warnings} == {"WARNING"}


def test_the_detail_is_masked_and_says_nothing_from_the_configuration() -> None:
    # GIVEN a report whose error quotes a registered secret
    from recycler.observability import logs

    logs.register_secret("s3cr3t-token-value")
    report = RecycleReport(status="failed", cluster="c", service="s", task_total=0)  # type: ignore[arg-type]
    report.error = "AccessDenied for token s3cr3t-token-value"
    # THEN the event's detail masks it, and a service with nothing to recycle is complete
    event = run_events.final_event(report, "run-9")
    assert event is not None and "s3cr3t-token-value" not in event.detail
    assert run_events.detail(report, "run-9", "failed")["percent_complete"] == 100.0


def _cancel(bed: Bed) -> None:
    from recycler.aws.gateway import ServiceGateway
    from recycler.hosts import control
    from recycler.model.request import parse_event

    reads = ServiceGateway(
        bed.ecs, bed.autoscaling, bed.elbv2, parse_event({"cluster_name": CLUSTER, "service_name": SERVICE})
    )
    control.cancel(reads, bed.store, bed.clock, "ops")


def test_the_readme_shows_one_example_of_each_detail_type_with_the_keys_the_code_puts() -> None:
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### EventBridge events\n", 1)[1].split("\n### ", 1)[0]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", section, flags=re.DOTALL)]
    examples = {b["detail-type"]: b for b in blocks if isinstance(b.get("detail-type"), str)}
    # One example per detail-type, each from the tool's source
    assert sorted(examples) == sorted(run_events.DetailType) and len(examples) == len(blocks) - 1
    report = RecycleReport(status="succeeded", cluster="c", service="s")  # type: ignore[arg-type]
    common = set(run_events.detail(report, "r", "running"))
    added = {
        run_events.DetailType.BATCH_COMPLETED: {"batch"},
        run_events.DetailType.CHECKPOINT_REACHED: {"batch", "checkpoint_percent"},
        run_events.DetailType.HANDED_OFF: {"execution_name"},
    }
    for detail_type, example in examples.items():
        assert example["source"] == run_events.SOURCE
        assert set(example["detail"]) == common | added.get(detail_type, set()), detail_type
        assert set(example["detail"]["counts"]) == {"recycled", "total", "skipped", "failed"}


def test_a_checkpoint_puts_checkpoint_reached_with_its_percentage() -> None:
    # The checkpoints' caller comes with checkpoint_percentages; the event is ready for it.
    import json
    import logging

    from dev.simulator import VirtualClock
    from recycler.aws.eventbus import EventBus
    from recycler.model.report import TaskResult
    from recycler.model.runtime import LocalRuntime

    class Recording:
        def __init__(self) -> None:
            self.entries: list[dict[str, Any]] = []

        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
            self.entries.extend(Entries)
            return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}

    client = Recording()
    clock = VirtualClock()
    events = run_events.RunEvents(EventBus(client), LocalRuntime(clock, lambda: None, logging.getLogger()), "run-4")
    events.service_arn = "arn:aws:ecs:us-east-1:123456789012:service/c/s"
    report = RecycleReport(status="failed", cluster="c", service="s", task_total=4)  # type: ignore[arg-type]
    report.tasks_recycled = [TaskResult(i, f"old-{i}", f"new-{i}", 40.0, batch=i) for i in (1, 2)]

    events.checkpoint_reached(report, batch=2, checkpoint_percent=50)

    (entry,) = client.entries
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "ecs-task-recycle",
        "ECS Task Recycle Checkpoint Reached",
        "default",
    )
    assert entry["Resources"] == [events.service_arn]
    detail = json.loads(entry["Detail"])
    assert (detail["status"], detail["batch"], detail["checkpoint_percent"], detail["percent_complete"]) == (
        "running",
        2,
        50,
        50.0,
    )


def test_the_templates_notification_rule_matches_what_the_runs_put() -> None:
    from pathlib import Path

    from support import iam

    template = iam.load_template(Path(__file__).resolve().parent.parent / "cloudformation.yaml")
    pattern = template["Resources"]["NotificationRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == [run_events.SOURCE]
    # The final states only, each one the runs put
    assert set(pattern["detail-type"]) <= {str(t) for t in run_events.FINAL.values()}


FLEET_REPORT: dict[str, Any] = {
    "fleet": True,
    "status": "failed",
    "cluster": CLUSTER,
    "region": REGION,
    "started_at": "2026-11-28T21:00:00+00:00",
    "duration_seconds": 600.0,
    "selection": {"service_tags": {"recycle": "weekly"}},
    "max_parallel_services": 2,
    "on_service_failure": "continue",
    "totals": {"services": {"succeeded": 2, "failed": 1}, "tasks_recycled": 8, "task_total": 9},
    "services": [
        {"service": "web", "status": "succeeded"},
        {"service": "api", "status": "succeeded"},
        {"service": "worker", "status": "failed", "error": "ReplacementFailed: CannotPullContainerError"},
    ],
    "not_started": ["reports"],
    "error": "1 service failed: worker",
    "error_type": None,
}


def _fleet_runtime(bed: Bed) -> StepRecording:
    return StepRecording(bed.clock, lambda: None, logging.getLogger("ecs-task-recycle"))


class StepRecording(LocalRuntime):
    """The plain runtime, recording the names of the steps it runs."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.steps: list[str] = []

    def step(self, name: str, fn: Callable[[], T]) -> T:
        self.steps.append(name)
        return fn()


def test_a_fleet_puts_one_started_and_one_final_event_of_its_own(bed: Bed) -> None:
    from recycler.aws.eventbus import EventBus

    # GIVEN a rule on the default bus for the tool's events
    read = subscribe(bed.session)
    runtime = _fleet_runtime(bed)
    bus = EventBus(bed.events)
    starting = {**FLEET_REPORT, "status": "succeeded", "services": [], "totals": {"services": {}}, "error": None}
    starting["not_started"] = ["web", "api", "worker", "reports"]

    # WHEN the fleet starts, then ends with one of its services failed
    run_events.fleet_started(bus, runtime, starting, run_id="fleet-run-1")
    run_events.fleet_finished(bus, runtime, FLEET_REPORT, run_id="fleet-run-1")

    # THEN the rule saw the fleet's Started then its Failed, each from the tool's source, each in its own step
    events = read()
    assert detail_types(events) == [STARTED, "ECS Task Recycle Failed"]
    assert runtime.steps == ["fleet event started", "fleet event final"]
    started, done = (e["detail"] for e in events)
    assert all(e["source"] == "ecs-task-recycle" for e in events)
    assert started == {
        "fleet": True,
        "cluster": CLUSTER,
        "run_id": "fleet-run-1",
        "status": "running",
        "counts": {"services": {}, "tasks_recycled": 0, "task_total": 0},
        "services": ["web", "api", "worker", "reports"],
        "error": None,
    }
    # AND the final one says the fleet's status, its counts by outcome, its services and its error
    assert done == {
        "fleet": True,
        "cluster": CLUSTER,
        "run_id": "fleet-run-1",
        "status": "failed",
        "counts": {"services": {"succeeded": 2, "failed": 1}, "tasks_recycled": 8, "task_total": 9},
        "services": ["web", "api", "worker", "reports"],
        "error": "1 service failed: worker",
    }


@pytest.mark.parametrize(
    ("status", "detail_type"),
    [
        ("succeeded", "ECS Task Recycle Succeeded"),
        ("incomplete", "ECS Task Recycle Incomplete"),
        ("cancelled", "ECS Task Recycle Cancelled"),
        ("refused", "ECS Task Recycle Refused"),
        ("handed_off", "ECS Task Recycle Handed Off"),
        ("dry_run", None),
    ],
)
def test_each_fleet_outcome_has_its_final_detail_type_and_a_dry_run_none(
    bed: Bed, status: str, detail_type: str | None
) -> None:
    from recycler.aws.eventbus import EventBus

    read = subscribe(bed.session)
    fleet = {**FLEET_REPORT, "status": status}
    run_events.fleet_started(EventBus(bed.events), _fleet_runtime(bed), fleet)
    run_events.fleet_finished(EventBus(bed.events), _fleet_runtime(bed), fleet)
    events = read()
    if detail_type is None:
        assert events == []
    else:
        assert detail_types(events) == [STARTED, detail_type]
        assert events[-1]["detail"]["status"] == status


@pytest.mark.parametrize("how", ["access denied", "failed entry"])
def test_a_fleet_event_that_fails_is_logged_at_warning_and_never_raised(
    bed: Bed, captured_logs: io.StringIO, how: str
) -> None:
    from recycler.aws.eventbus import EventBus

    failing = FailingEvents(how)
    run_events.fleet_started(EventBus(failing), _fleet_runtime(bed), FLEET_REPORT)
    run_events.fleet_finished(EventBus(failing), _fleet_runtime(bed), FLEET_REPORT)
    assert failing.calls == 2
    warnings = [line for line in log_lines(captured_logs) if "was not published" in line.get("message", "")]
    assert [line["level"] for line in warnings] == ["WARNING", "WARNING"]


def test_a_fleet_without_a_bus_puts_nothing_and_its_detail_is_masked(bed: Bed) -> None:
    from recycler.observability import logs

    runtime = _fleet_runtime(bed)
    run_events.fleet_started(None, runtime, FLEET_REPORT)
    run_events.fleet_finished(None, runtime, FLEET_REPORT)
    assert runtime.steps == []
    logs.register_secret("fleet-event-s3cr3t")
    event = run_events.fleet_final_event({**FLEET_REPORT, "error": "denied for fleet-event-s3cr3t"}, "r")
    assert event is not None and "fleet-event-s3cr3t" not in event.detail


def test_a_malformed_fleet_report_still_puts_its_event_and_never_raises(bed: Bed) -> None:
    from recycler.aws.eventbus import EventBus

    read = subscribe(bed.session)
    broken = {**FLEET_REPORT, "totals": {"services": {"failed": "two"}, "tasks_recycled": None}, "services": None}
    run_events.fleet_finished(EventBus(bed.events), _fleet_runtime(bed), broken)
    (event,) = read()
    assert event["detail"]["counts"] == {"services": {"failed": 0}, "tasks_recycled": 0, "task_total": 0}
    assert event["detail"]["services"] == ["reports"]
