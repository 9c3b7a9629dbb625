"""A fleet as one durable execution: the SDK's own ``context.map`` over the selected services.

Each service is one map item, run in its own child context by the single-service pipeline
(recycler.hosts.pipeline.run) on a durable host of that child context, its email left to the fleet's
(recycler.hosts.fleet.MemberHost). ``max_concurrency`` is ``max_parallel_services``; the map never completes
early (an early completion abandons the branches in flight, which would then never restore their service).
A branch never raises: a failed service is its report. Under ``on_service_failure: stop`` (and after an alarm,
a cancel or a run out of time) each branch's first operation, a checkpointed ``admit`` step, keeps the
services not yet started from starting; the stop flag it reads is raised again, on replay, by reading a
stopping service's result back from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import CompletionConfig, MapConfig, StepConfig
from aws_durable_execution_sdk_python.exceptions import UnrecoverableError
from aws_durable_execution_sdk_python.retries import RetryPresets
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext

from recycler.aws.clients import Clients
from recycler.aws.eventbus import EventBus
from recycler.aws.gateway import ServiceGateway
from recycler.aws.services import SelectedService, fleet_selection
from recycler.hosts.checkpoints import SERDES
from recycler.hosts.config import AppConfig
from recycler.hosts.environment import Environment
from recycler.hosts.fleet import MemberHost, member
from recycler.hosts.pipeline import lock_table_name, raise_if_not_completed, register_secrets, run
from recycler.lock.fleet_record import CancelWatch, FleetRecord, fleet_record_key
from recycler.model.errors import AwsCallFailed, PreflightError
from recycler.model.fleet import FleetRequest
from recycler.model.fleet_report import FleetReport, fleet_answer, seconds_between, whole_service_estimate
from recycler.model.report import NotificationResult, RecycleReport
from recycler.model.request import RecycleRequest
from recycler.model.runtime import Runtime, iso_seconds
from recycler.model.states import Action, OnServiceFailure, Status
from recycler.observability import logs, metrics
from recycler.run.budget import bounded_fleet_result, bounded_result, selected_durable_seconds
from recycler.run.events import fleet_finished, fleet_started
from recycler.run.gates import alarm_problems

NOT_STARTED = "not_started"
ONCE = StepConfig(retry_strategy=RetryPresets.none(), serdes=SERDES)
_REPORT_FIELDS = {f.name for f in dataclasses.fields(RecycleReport)}

# The fleet's durable host: recycler.hosts.durable.DurableHost (a dataclass with its ``context``).
NotifyOnce = Callable[[DurableContext, Mapping[str, Any], AppConfig, Clients], NotificationResult]


class StopFlag:
    """'No further service starts': raised live by the branch whose run stops the fleet, and on replay by the
    item serdes reading that run's result back."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def stop_reason(request: FleetRequest, result: Mapping[str, Any]) -> tuple[Status, str] | None:
    """Whether this service's result stops the fleet (as the plain fleet's gate decides), and why."""
    name, status = result.get("service"), result.get("status")
    if result.get("error_type") == "AlarmTriggered" and request.template.alarm_names:
        return Status.FAILED, f"{name}: {result.get('error')}; no further service started"
    if status == Status.CANCELLED:
        return Status.CANCELLED, f"{name} was cancelled; no further service started"
    if status in (Status.FAILED, Status.REFUSED) and request.on_service_failure == OnServiceFailure.STOP:
        return Status.FAILED, f"{name} ended {status} (on_service_failure stop); no further service started"
    if status == Status.INCOMPLETE:
        return Status.INCOMPLETE, f"{name} ran out of time; no further service started"
    return None


class ResultSerDes(SerDes[Any]):
    """A branch's result as JSON; reading back one that stops the fleet raises the stop flag again."""

    def __init__(self, request: FleetRequest, flag: StopFlag) -> None:
        self.request, self.flag = request, flag

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(value, default=str)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        value = json.loads(data)
        if isinstance(value, dict) and stop_reason(self.request, value) is not None:
            self.flag.set()
        return value


@dataclasses.dataclass
class DurableFleet:
    """One durable fleet run: the request, the fleet's durable host, the config, and the stop flag."""

    request: FleetRequest
    host: Any  # recycler.hosts.durable.DurableHost
    config: AppConfig
    env: Environment
    selected: list[SelectedService]
    flag: StopFlag = dataclasses.field(default_factory=StopFlag)

    @functools.cached_property
    def record(self) -> FleetRecord | None:
        """The fleet's own item in the lock table, where a cancel of the whole fleet reaches it (None: no table,
        a dry run)."""
        table = lock_table_name(self.config, self.request.template, self.env.lock_table_name)
        if not table:
            return None
        clients, _ = self.host.connect(self.config)
        return FleetRecord(clients.lock_client(), table, fleet_record_key(self.request))

    @functools.cached_property
    def cancel_watch(self) -> CancelWatch | None:
        return None if self.record is None else CancelWatch(self.record, self.host.owner_id, self.host.clock)

    def before_branches(self) -> CancelWatch | None:
        """The cancel watch, made once here, before the map's threads share it (a cached property is not made
        under a lock: two branches could each make their own)."""
        return self.cancel_watch

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.selected]

    def branch_host(self, context: DurableContext, index: int) -> MemberHost:
        """The index-th service's host: a durable host on its own child context, without its own email."""
        return member(dataclasses.replace(self.host, context=context), index)

    def service_request(self, name: str) -> RecycleRequest:
        # By its ARN, as the selection read it: the ARN names the service's lock item (one call fewer each).
        arn = next((s.arn for s in self.selected if s.name == name and s.arn), name)
        return dataclasses.replace(self.request.for_service(arn), hand_off=False)


def run_durable_fleet(
    host: Any, request: FleetRequest, config: AppConfig, env: Environment, notify_once: NotifyOnce
) -> Mapping[str, Any]:
    """A fleet event on the durable host: select (a step), admit, map the services, then report once."""
    register_secrets(config)
    lock_table_name(config, request.template, env.lock_table_name)
    clients, region = host.connect(config)
    request.check_region(region)
    cluster = request.template.cluster_name
    selected = host.context.step(
        lambda _: [s.to_dict() for s in fleet_selection(clients.client("ecs"), cluster, request.names, request.tags)],
        name="fleet services",
        config=ONCE,
    )
    fleet = DurableFleet(request, host, config, env, [SelectedService.from_dict(s) for s in selected])
    with logs.bound(cluster=cluster, fleet=True, **host.log_fields):
        if request.template.action != Action.RECYCLE or request.template.dry_run:
            fleet_cancel = None
            if request.template.action == Action.CANCEL and fleet.record is not None:
                record = fleet.record
                # First the fleet (no further service is admitted), then the services in flight.
                fleet_cancel = host.context.step(
                    lambda _: record.request_cancel(host.requested_by, host.clock.now()).to_answer(),
                    name="fleet cancel",
                    config=ONCE,
                )
            answers = [
                run(fleet.branch_host(host.context, i), fleet.service_request(n), config, env)
                for i, n in enumerate(fleet.names)
            ]
            if request.template.action != Action.RECYCLE:
                answer = fleet_answer(cluster, answers, fleet_cancel)
                if request.template.action == Action.STATUS and fleet.record is not None:
                    latest = fleet.record.latest
                    answer["fleet_run"] = host.context.step(lambda _: latest(), name="fleet run", config=ONCE)
                return answer
            return _dry_report(fleet, answers)
        return _recycled(fleet, clients, notify_once)


def _new_report(fleet: DurableFleet) -> FleetReport:
    request = fleet.request
    return FleetReport(
        cluster=request.template.cluster_name,
        selection=request.selection(),
        max_parallel_services=request.max_parallel_services,
        on_service_failure=str(request.on_service_failure),
    )


def _dry_report(fleet: DurableFleet, answers: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    report = _new_report(fleet)
    report.services = [_report_of(a) for a in answers]
    plans = [s.plan["estimated_seconds"] if s.plan else 0 for s in report.services]
    report.estimated_seconds = whole_service_estimate(plans, fleet.request.max_parallel_services)
    report.settle()
    return bounded_fleet_result(report.to_dict())


def _admit_fleet(fleet: DurableFleet, remaining: float) -> None:
    """The fleet's worst case must fit the execution: each service's durable worst case, from what the selection
    read (its task count, its deployment alarms), whole, on max_parallel_services lanes. A service's own refusal
    (a held lock, a deployment in progress) is its run's to report: it does not refuse the fleet."""
    template, settings = fleet.request.template, fleet.config.recycle
    estimates = []
    for s in fleet.selected:
        alarms = bool(template.alarm_names or (template.use_service_alarms and s.alarm_names))
        estimates.append(math.ceil(selected_durable_seconds(s.tasks, alarms, template, settings)))
    needed = whole_service_estimate(estimates, fleet.request.max_parallel_services)
    if needed > remaining:
        raise PreflightError(
            f"the fleet of {len(fleet.names)} services, {fleet.request.max_parallel_services} at once, should take "
            f"about {needed}s, more than the {remaining:.0f}s left of this execution's ExecutionTimeout. Nothing "
            "was changed: raise max_parallel_services, select fewer services, or redeploy with a longer "
            "DurableExecutionTimeout"
        )


def _recycled(fleet: DurableFleet, clients: Clients, notify_once: NotifyOnce) -> Mapping[str, Any]:
    host = fleet.host
    runtime = host.policy(fleet.request.template, fleet.config, clients).runtime
    started = host.context.step(lambda _: host.clock.now(), name="fleet started", config=ONCE)
    report = _new_report(fleet)
    report.started_at = iso_seconds(started)
    bus = EventBus(clients.lock_session_client("events"))
    # Checkpointed: a replay must not refuse, on a later clock, a fleet already admitted.
    remaining = host.context.step(lambda _: runtime.remaining_seconds(), name="fleet budget", config=ONCE)
    try:
        _admit_fleet(fleet, remaining if remaining is not None else float("inf"))
    except PreflightError as e:
        # Refused as a whole before any service started: mailed as REFUSED, as a single durable refusal is.
        report.status, report.not_started = Status.REFUSED, list(fleet.names)
        report.error, report.error_type = str(e), type(e).__name__
        return _reported(fleet, report, started, clients, notify_once, bus, runtime)
    announce = dataclasses.replace(report, not_started=list(fleet.names))
    _record_step(fleet, "fleet record", lambda record: record.begin(host.owner_id, started))
    fleet_started(bus, runtime, logs.mask_data(announce.to_dict()), run_id=host.owner_id)
    _settle(fleet, report, _map_services(fleet))
    status = str(report.status)
    _record_step(fleet, "fleet record ended", lambda record: record.end(host.owner_id, host.clock.now(), status))
    return _reported(fleet, report, started, clients, notify_once, bus, runtime)


def _record_step(fleet: DurableFleet, name: str, write: Callable[[FleetRecord], None]) -> None:
    record = fleet.record
    if record is None:
        return

    def written(_: Any) -> dict[str, bool]:
        write(record)
        return {"written": True}

    fleet.host.context.step(written, name=name, config=ONCE)


def _settle(fleet: DurableFleet, report: FleetReport, results: Sequence[Mapping[str, Any]]) -> None:
    """The report from the branches' results: the services run, those never admitted, and why."""
    report.services = [_report_of(r) for r in results if r.get("status") != NOT_STARTED]
    done = {s.service for s in report.services}
    report.not_started = [name for name in fleet.names if name not in done]
    reasons = [stop_reason(fleet.request, r) for r in results if r.get("status") != NOT_STARTED]
    first = next((r for r in reasons if r is not None), None)
    if report.not_started:
        # A stopping service, the operator's cancel of the fleet, or the event's alarms (or the fleet's record
        # unreadable) keep a service from being admitted.
        report.stopped_by, report.error = first or _not_admitted(fleet, report.not_started[0])
    report.settle()
    report.explain()


def _reported(
    fleet: DurableFleet,
    report: FleetReport,
    started: float,
    clients: Clients,
    notify_once: NotifyOnce,
    bus: EventBus,
    runtime: Runtime,
) -> Mapping[str, Any]:
    """One email, the fleet's final event and its metrics, each in a step; then the result, or the failure."""
    host = fleet.host
    ended = host.context.step(lambda _: host.clock.now(), name="fleet ended", config=ONCE)
    report.duration_seconds = seconds_between(started, ended)
    data = logs.mask_data(report.to_dict())
    data["notification"] = logs.mask_data(notify_once(host.context, data, fleet.config, clients))
    fleet_finished(bus, runtime, data, run_id=host.owner_id)
    if host.publishes_metrics:
        runtime.step("fleet metrics", lambda: _published(data))
    # The execution FAILS with RecycleNotCompleted's message, after every restore and the email.
    raise_if_not_completed(data, runtime)
    return bounded_fleet_result(data)


def _published(data: Mapping[str, Any]) -> dict[str, bool]:
    metrics.publish(data)
    return {"published": True}


def _report_of(data: Mapping[str, Any]) -> RecycleReport:
    """A service's report back from its (possibly shortened) result."""
    return RecycleReport.from_dict({k: v for k, v in data.items() if k in _REPORT_FIELDS})


def _map_services(fleet: DurableFleet) -> list[Mapping[str, Any]]:
    """context.map over the services, max_parallel_services at once, every branch to its end."""
    fleet.before_branches()
    config: MapConfig[str] = MapConfig(
        max_concurrency=fleet.request.max_parallel_services,
        completion_config=CompletionConfig.all_completed(),
        item_namer=lambda name, _index: f"service {name}",
        item_serdes=ResultSerDes(fleet.request, fleet.flag),
    )
    batch = fleet.host.context.map(
        fleet.names, lambda c, n, i, _a: _branch(fleet, c, n, i), name="fleet", config=config
    )
    results: list[Mapping[str, Any]] = [{"service": n, "status": NOT_STARTED} for n in fleet.names]
    for item in batch.all:
        if isinstance(item.result, dict):
            results[item.index] = item.result
    return results


def _branch(fleet: DurableFleet, context: DurableContext, name: str, index: int) -> Mapping[str, Any]:
    """One service in its child context: admitted (a step, so replay keeps the decision), then its run."""
    if not context.step(lambda _: _may_start(fleet), name="admit", config=ONCE):
        return {"service": name, "status": NOT_STARTED}
    try:
        result = run(fleet.branch_host(context, index), fleet.service_request(name), fleet.config, fleet.env)
    except UnrecoverableError:
        raise
    except Exception as e:  # noqa: BLE001 - a service that fails is its report: the other branches go on
        failed = RecycleReport(Status.FAILED, fleet.request.template.cluster_name, name)
        failed.error, failed.error_type = str(e), type(e).__name__
        result = logs.mask_data(failed.to_dict())
    if stop_reason(fleet.request, result) is not None:
        fleet.flag.set()
    return bounded_result(result)


def _not_admitted(fleet: DurableFleet, first: str) -> tuple[Status, str]:
    """Why services were not admitted when no service's run stopped the fleet (a step: replay keeps it)."""
    record, owner = fleet.record, fleet.host.owner_id
    who = fleet.host.context.step(
        lambda _: record.cancelled_by(owner) if record else None, name="fleet cancelled", config=ONCE
    )
    if who:
        return Status.CANCELLED, f"the fleet was cancelled by {who}; {first} and the services after it never started"
    if fleet.request.template.alarm_names:
        return Status.FAILED, f"the event's alarms were not quiet before {first} could start"
    return Status.FAILED, f"the fleet's record could not be read before {first} could start"


def _may_start(fleet: DurableFleet) -> bool:
    """Not after a service stopped the fleet or the operator cancelled it, nor while the event's alarms are
    not quiet."""
    if fleet.flag.is_set():
        return False
    try:
        cancelled = fleet.cancel_watch is not None and fleet.cancel_watch.cancelled_by() is not None
    except AwsCallFailed:
        cancelled = True  # unreadable: start nothing more (the report says why)
    if cancelled:
        fleet.flag.set()
        return False
    alarms: Sequence[str] = fleet.request.template.alarm_names
    if alarms:
        clients, _ = fleet.host.connect(fleet.config)
        template = fleet.request.template
        gateway = ServiceGateway(clients.client("ecs"), None, None, template, cloudwatch=clients.client("cloudwatch"))
        if alarm_problems(gateway, tuple(alarms)):
            fleet.flag.set()
            return False
    return True
