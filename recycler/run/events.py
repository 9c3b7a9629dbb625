"""The run's EventBridge events: started, each batch, each checkpoint, and how it ended; a fleet's own two.

Each is put in a runtime step of its own, so a durable replay does not publish it again. A dry run
publishes nothing: it changes nothing a rule could care about. A PutEvents that fails is logged at
WARNING and changes nothing else: the events tell about a run, they never steer it.

A fleet puts one Started and one final event of its own (``"fleet": true`` in the detail, the services'
counts and names), besides each service's run putting its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, cast

from recycler.aws.eventbus import BusEvent, EventBus
from recycler.model.report import RecycleReport
from recycler.model.runtime import TOOL_NAME, Runtime
from recycler.model.states import Status
from recycler.observability import logs

# Never aws.*: EventBridge reserves it for AWS services.
SOURCE = TOOL_NAME
RUNNING = "running"


class DetailType(StrEnum):
    STARTED = "ECS Task Recycle Started"
    BATCH_COMPLETED = "ECS Task Recycle Batch Completed"
    CHECKPOINT_REACHED = "ECS Task Recycle Checkpoint Reached"
    SUCCEEDED = "ECS Task Recycle Succeeded"
    FAILED = "ECS Task Recycle Failed"
    CANCELLED = "ECS Task Recycle Cancelled"
    INCOMPLETE = "ECS Task Recycle Incomplete"
    REFUSED = "ECS Task Recycle Refused"
    HANDED_OFF = "ECS Task Recycle Handed Off"


# The final event of each outcome; a dry run (and a repair's own report) has none.
FINAL: dict[Status, DetailType] = {
    Status.SUCCEEDED: DetailType.SUCCEEDED,
    Status.FAILED: DetailType.FAILED,
    Status.CANCELLED: DetailType.CANCELLED,
    Status.INCOMPLETE: DetailType.INCOMPLETE,
    Status.REFUSED: DetailType.REFUSED,
    Status.HANDED_OFF: DetailType.HANDED_OFF,
}


class EventCounts(TypedDict):
    recycled: int
    total: int | None
    skipped: int
    failed: int


class EventDetail(TypedDict):
    """An event's detail: what every event says, and what only some add."""

    cluster: str
    service: str
    run_id: str | None
    status: str
    counts: EventCounts
    percent_complete: float | None
    error: str | None
    error_type: str | None
    batch: NotRequired[int]
    checkpoint_percent: NotRequired[int]
    execution_name: NotRequired[str]


class DetailExtra(TypedDict, total=False):
    """What only some events add to the detail."""

    batch: int
    checkpoint_percent: int
    execution_name: str


def detail(report: RecycleReport, run_id: str | None, status: str, extra: DetailExtra | None = None) -> EventDetail:
    """What every event says: the service, the run, its counts and percentage, its status and error.

    From the report only (never from the configuration), masked like everything the run says."""
    total = report.task_total
    recycled = len(report.tasks_recycled)
    percent = None if total is None else (round(100.0 * recycled / total, 1) if total else 100.0)
    body: EventDetail = {
        "cluster": report.cluster,
        "service": report.service,
        "run_id": run_id,
        "status": status,
        "counts": {
            "recycled": recycled,
            "total": total,
            "skipped": len(report.tasks_skipped),
            "failed": len(report.tasks_stopped_not_replaced),
        },
        "percent_complete": percent,
        "error": report.error,
        "error_type": report.error_type,
        **(extra or {}),
    }
    return cast(EventDetail, logs.mask_data(body))


class RunEvents:
    """One run's events, on the bus its host gave (none: nothing is put)."""

    def __init__(self, bus: EventBus | None, runtime: Runtime, run_id: str) -> None:
        self.bus = bus
        self.runtime = runtime
        self.run_id = run_id
        # The events' resource, once the pre-flight has found the service.
        self.service_arn: str | None = None

    def started(self, report: RecycleReport) -> None:
        self._put("started", DetailType.STARTED, report)

    def batch_completed(self, report: RecycleReport, batch: int) -> None:
        self._put(f"batch {batch}", DetailType.BATCH_COMPLETED, report, {"batch": batch})

    def checkpoint_reached(self, report: RecycleReport, batch: int, checkpoint_percent: int) -> None:
        fields: DetailExtra = {"batch": batch, "checkpoint_percent": checkpoint_percent}
        self._put(f"checkpoint {checkpoint_percent}", DetailType.CHECKPOINT_REACHED, report, fields)

    def finished(self, report: RecycleReport) -> None:
        """The outcome's event, once the report is final; a dry run's none."""
        event = final_event(report, self.run_id, self.service_arn)
        if event is not None:
            self._publish("final", event)

    def _put(self, name: str, detail_type: DetailType, report: RecycleReport, extra: DetailExtra | None = None) -> None:
        self._publish(name, bus_event(detail_type, report, self.run_id, self.service_arn, RUNNING, extra))

    def _publish(self, name: str, event: BusEvent) -> None:
        bus = self.bus
        if bus is not None:
            self.runtime.step(f"event {name}", lambda: {"failed": publish(bus, event, self.runtime)})


def bus_event(
    detail_type: DetailType,
    report: RecycleReport,
    run_id: str | None,
    service_arn: str | None,
    status: str,
    extra: DetailExtra | None = None,
) -> BusEvent:
    body = json.dumps(detail(report, run_id, status, extra), sort_keys=True)
    return BusEvent(SOURCE, detail_type, body, (service_arn,) if service_arn else ())


def final_event(report: RecycleReport, run_id: str | None, service_arn: str | None = None) -> BusEvent | None:
    """The event of the report's outcome; None for a dry run."""
    detail_type = FINAL.get(report.status)
    if detail_type is None:
        return None
    extra: DetailExtra = {}
    if report.handed_off:
        extra["execution_name"] = report.handed_off["execution_name"]
    return bus_event(detail_type, report, run_id, service_arn, str(report.status), extra)


def publish(bus: EventBus, event: BusEvent, runtime: Runtime | None = None) -> str | None:
    """Put one event; a failure is logged at WARNING and returned, never raised."""
    failure = bus.put([event])
    if failure is not None:
        message = f"The {event.detail_type} event was not published: {failure}"
        if runtime is not None:
            runtime.log(logging.WARNING, message, detail_type=str(event.detail_type))
        else:
            logging.getLogger(TOOL_NAME).warning(message, extra={"detail_type": str(event.detail_type)})
    return failure


class FleetCounts(TypedDict):
    services: dict[str, int]  # by outcome, only those that occur
    tasks_recycled: int
    task_total: int


class FleetDetail(TypedDict):
    """A fleet event's detail: the fleet's status, its services' counts and names."""

    fleet: bool
    cluster: str
    run_id: str | None
    status: str
    counts: FleetCounts
    services: list[str]
    error: str | None


def fleet_detail(fleet: Mapping[str, Any], run_id: str | None, status: str) -> FleetDetail:
    """From the fleet report (FleetReport.to_dict()) only, masked like everything the run says."""
    totals = fleet.get("totals")
    totals = totals if isinstance(totals, Mapping) else {}
    by_outcome = totals.get("services")
    reports = [s for s in fleet.get("services") or [] if isinstance(s, Mapping)]
    names = [str(s.get("service")) for s in reports] + [str(n) for n in fleet.get("not_started") or []]
    selection = fleet.get("selection")
    if not names and isinstance(selection, Mapping):
        names = [str(n) for n in selection.get("services") or []]
    error = fleet.get("error")
    body: FleetDetail = {
        "fleet": True,
        "cluster": str(fleet.get("cluster")),
        "run_id": run_id,
        "status": status,
        "counts": {
            "services": {str(k): _count(v) for k, v in by_outcome.items()} if isinstance(by_outcome, Mapping) else {},
            "tasks_recycled": _count(totals.get("tasks_recycled")),
            "task_total": _count(totals.get("task_total")),
        },
        "services": names,
        "error": None if error is None else str(error),
    }
    return cast(FleetDetail, logs.mask_data(body))


def fleet_final_event(fleet: Mapping[str, Any], run_id: str | None = None) -> BusEvent | None:
    """The event of the fleet's outcome; None for a dry run (or a status this version does not know)."""
    status = str(fleet.get("status"))
    detail_type = FINAL.get(Status(status)) if status in tuple(Status) else None
    if detail_type is None:
        return None
    body = json.dumps(fleet_detail(fleet, run_id or _run_id(fleet), status), sort_keys=True)
    return BusEvent(SOURCE, detail_type, body)


def fleet_started(bus: EventBus | None, runtime: Runtime, fleet: Mapping[str, Any], run_id: str | None = None) -> None:
    """The fleet's Started, once it is about to start its first service; a dry run puts none."""
    if bus is None or fleet.get("status") == Status.DRY_RUN or fleet.get("dry_run") is True:
        return
    body = json.dumps(fleet_detail(fleet, run_id or _run_id(fleet), RUNNING), sort_keys=True)
    event = BusEvent(SOURCE, DetailType.STARTED, body)
    runtime.step("fleet event started", lambda: {"failed": publish(bus, event, runtime)})


def fleet_finished(bus: EventBus | None, runtime: Runtime, fleet: Mapping[str, Any], run_id: str | None = None) -> None:
    """The fleet's outcome's event, once its report is final; a dry run's none."""
    event = fleet_final_event(fleet, run_id)
    if bus is not None and event is not None:
        runtime.step("fleet event final", lambda: {"failed": publish(bus, event, runtime)})


def _count(value: Any) -> int:
    """A count from the report's JSON; anything else is 0, so a malformed report cannot make the event raise."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _run_id(fleet: Mapping[str, Any]) -> str | None:
    run_id = fleet.get("run_id")
    return run_id if isinstance(run_id, str) else None
