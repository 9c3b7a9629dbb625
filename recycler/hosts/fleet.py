"""The fleet on the plain host: each selected service's own single-service run (recycler.hosts.pipeline.run),
at most ``max_parallel_services`` at once, then one fleet report and one email.

Each service keeps its own lock, pre-flight, surge, restore, report and metrics; only its email is left to the
fleet's. The fleet decides only which service starts next: none once a run failed under ``stop``, once the
event's alarms are not quiet, once a run ended cancelled, or once the next one no longer fits the invocation.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from recycler.aws.clients import Clients
from recycler.aws.eventbus import EventBus
from recycler.aws.gateway import ServiceGateway
from recycler.aws.services import SelectedService, fleet_selection
from recycler.hosts.config import AppConfig
from recycler.hosts.environment import Environment
from recycler.hosts.handoff import FleetHandOff
from recycler.hosts.pipeline import Host, TimePolicy, lock_table_name, register_secrets, run
from recycler.lock.fleet_record import CancelWatch, FleetRecord, fleet_record_key
from recycler.model.errors import AwsCallFailed, ConfigError, RecycleError
from recycler.model.fleet import FleetRequest
from recycler.model.fleet_report import FleetReport, fleet_answer, seconds_between, whole_service_estimate
from recycler.model.progress import ProgressSink
from recycler.model.report import NotificationResult, RecycleReport
from recycler.model.request import RecycleRequest
from recycler.model.runtime import TOOL_NAME, Clock, Runtime, iso_seconds
from recycler.model.states import Action, OnServiceFailure, Status
from recycler.notification.notifier import notify
from recycler.observability import logs, metrics
from recycler.run.events import fleet_finished, fleet_started
from recycler.run.gates import alarm_problems

logger = logging.getLogger(TOOL_NAME)

# How the fleet runs its services at once; tests pass one that runs them on the simulator's virtual clock.
ExecutorFactory = Callable[[int], Executor]
NO_DURABLE = (
    "a fleet too long for one invocation is handed to the durable function, which this deployment has not set up "
    "(DURABLE_FUNCTION_ALIAS_ARN); give hand_off false to recycle what fits, then the event that carries on"
)


class FleetHost(Host, Protocol):
    """The host a fleet runs on (recycler.hosts.plain.PlainHost): a Host that also knows its time and interrupt."""

    def remaining_seconds(self) -> float | None: ...

    def interrupted(self) -> str | None:
        """The operator's interrupt (the CLI's Ctrl-C): its signal's name, or None."""
        ...

    def fleet_hand_off(self, request: FleetRequest, clients: Clients) -> FleetHandOff | None:
        """The durable alias a fleet too long for this invocation is handed to whole; None when there is none."""
        ...


@dataclass(frozen=True)
class MemberHost:
    """One service's run inside a fleet: the fleet's host with its own lock owner, without its own email or raise,
    and no progress bar (the CLI's bar is one service's)."""

    base: FleetHost
    owner_id: str
    publishes_metrics: bool

    @property
    def clock(self) -> Clock:
        return self.base.clock

    @property
    def requested_by(self) -> str:
        return self.base.requested_by

    @property
    def log_fields(self) -> Mapping[str, Any]:
        return self.base.log_fields

    @property
    def progress(self) -> ProgressSink | None:
        return None

    def connect(self, config: AppConfig) -> tuple[Clients, str | None]:
        return self.base.connect(config)

    def policy(self, request: RecycleRequest, config: AppConfig, clients: Clients) -> TimePolicy:
        return self.base.policy(request, config, clients)

    def stamp(self, report: RecycleReport) -> None:
        self.base.stamp(report)

    def notify(self, report: RecycleReport, config: AppConfig, clients: Clients) -> NotificationResult:
        return {"status": "skipped", "detail": "one email for the whole fleet", "recipients": 0}

    def finish(self, report: RecycleReport, runtime: Runtime) -> dict[str, Any]:
        return report.to_dict()


def member(host: FleetHost, index: int, *, metrics: bool = True) -> MemberHost:
    """The host of the fleet's index-th service."""
    return MemberHost(host, f"{host.owner_id}-{index}", host.publishes_metrics and metrics)


@dataclass
class Gate:
    """Whether the fleet may start another service, and why not (shared by the worker threads)."""

    stopped_by: Status | None = None
    reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self, outcome: Status, reason: str) -> None:
        with self.lock:
            if self.reason is None:
                self.stopped_by, self.reason = outcome, reason

    @property
    def closed(self) -> bool:
        return self.reason is not None


class Fleet:
    """One fleet run: its request, host, config and what it has learnt so far."""

    def __init__(
        self,
        request: FleetRequest,
        host: FleetHost,
        config: AppConfig,
        env: Environment,
        selected: list[SelectedService],
        record: FleetRecord | None = None,
    ) -> None:
        self.request, self.host, self.config, self.env = request, host, config, env
        # The fleet's own item in the lock table, where a cancel of the whole fleet reaches it (None: a dry run).
        self.record = record
        self.cancel_watch = None if record is None else CancelWatch(record, host.owner_id, host.clock)
        self.names = [s.name for s in selected]
        # Each service is run by its ARN, as the selection read it: the ARN names its lock item (one call fewer).
        self.arns = {s.name: s.arn for s in selected if s.arn}
        # Each service's planned seconds, when the invocation's time bounds the fleet.
        self.estimates: dict[str, int] = {}
        self.gate = Gate()

    def service_request(self, name: str) -> RecycleRequest:
        # The fleet decides what fits the invocation; a service alone never hands itself off.
        return dataclasses.replace(self.request.for_service(self.arns.get(name, name)), hand_off=False)

    def one(self, index: int, name: str, request: RecycleRequest | None = None) -> RecycleReport:
        """One service's run, or dry run: its own report."""
        result = run(member(self.host, index), request or self.service_request(name), self.config, self.env)
        return RecycleReport.from_dict(result)


def run_fleet(
    host: FleetHost,
    request: FleetRequest,
    config: AppConfig,
    env: Environment,
    executor: ExecutorFactory | None = None,
) -> dict[str, Any]:
    """A fleet event on the plain host: status/cancel/history per service, or the fleet's recycle and report."""
    register_secrets(config)
    table = lock_table_name(config, request.template, env.lock_table_name)
    clients, region = host.connect(config)
    request.check_region(region)
    selected = fleet_selection(clients.client("ecs"), request.template.cluster_name, request.names, request.tags)
    record = FleetRecord(clients.lock_client(), table, fleet_record_key(request)) if table else None
    fleet = Fleet(request, host, config, env, selected, record)
    names = fleet.names
    with logs.bound(cluster=request.template.cluster_name, fleet=True, **host.log_fields):
        if request.template.action != Action.RECYCLE:
            fleet_cancel = None
            if request.template.action == Action.CANCEL and record is not None:
                # First the fleet (no further service starts), then the services in flight.
                fleet_cancel = record.request_cancel(host.requested_by, host.clock.now()).to_answer()
            answers = [run(member(host, i), fleet.service_request(n), config, env) for i, n in enumerate(names)]
            answer = fleet_answer(request.template.cluster_name, answers, fleet_cancel)
            if request.template.action == Action.STATUS and record is not None:
                answer["fleet_run"] = record.latest()
            return dict(answer)
        return reported(fleet, clients, executor or (lambda n: ThreadPoolExecutor(n, thread_name_prefix="fleet")))


def reported(fleet: Fleet, clients: Clients, executor: ExecutorFactory) -> dict[str, Any]:
    """The fleet's recycle, with its Started and final events, its one email and its totals' metrics."""
    host, config = fleet.host, fleet.config
    runtime = host.policy(fleet.request.template, config, clients).runtime
    # The run's events go to the function's own account, as each service's do.
    bus = EventBus(clients.lock_session_client("events"))

    def announce(report: FleetReport) -> None:
        fleet_started(bus, runtime, logs.mask_data(report.to_dict()), run_id=host.owner_id)

    report = recycle(fleet, executor, announce)
    data = logs.mask_data(report.to_dict())
    data["notification"] = logs.mask_data(notify(data, config.notification, clients.session))
    logger.info("Fleet report", extra={"status": data["status"], "totals": data["totals"]})
    fleet_finished(bus, runtime, data, run_id=host.owner_id)
    if host.publishes_metrics:
        metrics.publish(data)
    return dict(data)


def recycle(fleet: Fleet, executor: ExecutorFactory, announce: Callable[[FleetReport], None]) -> FleetReport:
    """Each service's run (or dry run), at most max_parallel_services at once; the fleet's report."""
    request, clock = fleet.request, fleet.host.clock
    started = clock.now()
    report = FleetReport(
        cluster=request.template.cluster_name,
        selection=request.selection(),
        max_parallel_services=request.max_parallel_services,
        on_service_failure=str(request.on_service_failure),
        started_at=iso_seconds(started),
    )
    began = False
    if request.template.dry_run:
        report.services = [fleet.one(i, name) for i, name in enumerate(fleet.names)]
        report.estimated_seconds = whole_service_estimate(_estimates(report.services), request.max_parallel_services)
        remaining = fleet.host.remaining_seconds()
        if remaining is not None:
            # As the recycle would decide it: too long for this invocation, it goes whole to the durable function.
            report.would_hand_off = request.template.hand_off and report.estimated_seconds > remaining
    elif (hand_off := _fit(fleet)) is not None:
        # Before any service was touched: one durable execution runs the whole fleet.
        report.handed_off = hand_off.start(started).to_dict()
    else:
        if fleet.record is not None:
            fleet.record.begin(fleet.host.owner_id, started)
            began = True
        announce(dataclasses.replace(report, not_started=list(fleet.names)))
        try:
            results = _run_all(fleet, executor)
        except BaseException:
            _ended(fleet, Status.FAILED)
            raise
        report.services = [results[name] for name in fleet.names if name in results]
        report.not_started = [name for name in fleet.names if name not in results]
        report.stopped_by, report.error = fleet.gate.stopped_by, fleet.gate.reason
        _carry_on(fleet, report, started)
    report.settle()
    report.explain()
    report.duration_seconds = seconds_between(started, clock.now())
    if began:
        _ended(fleet, report.status)
    return report


def _ended(fleet: Fleet, status: Status) -> None:
    """The fleet's record says the run is over, and how it ended (what --follow waits for)."""
    if fleet.record is None:
        return
    try:
        fleet.record.end(fleet.host.owner_id, fleet.host.clock.now(), str(status))
    except AwsCallFailed as e:
        # The services are restored, each with its own report: a record left "going" only misleads --follow.
        logger.warning(f"The fleet's record could not be marked ended: {e}")


def _estimates(services: list[RecycleReport]) -> list[int]:
    return [s.plan["estimated_seconds"] if s.plan else 0 for s in services]


def _fit(fleet: Fleet) -> FleetHandOff | None:
    """When the invocation's time bounds the fleet: each service's plan, and whether the whole fleet fits. One that
    does not is handed off whole to the durable alias (unless hand_off false: then what fits runs here)."""
    remaining = fleet.host.remaining_seconds()
    if remaining is None:
        return None
    for index, name in enumerate(fleet.names):
        plan = RecycleReport.from_dict(
            run(
                member(fleet.host, index, metrics=False),
                dataclasses.replace(fleet.service_request(name), dry_run=True),
                fleet.config,
                fleet.env,
            )
        )
        fleet.estimates[name] = _estimates([plan])[0]
    needed = whole_service_estimate(fleet.estimates.values(), fleet.request.max_parallel_services)
    if needed <= remaining or not fleet.request.template.hand_off:
        return None
    hand_off = fleet.host.fleet_hand_off(fleet.request, fleet.host.connect(fleet.config)[0])
    if hand_off is None:
        raise ConfigError("hand_off", f"{NO_DURABLE} (the fleet needs about {needed}s, {remaining:.0f}s remain)")
    return hand_off


def _run_all(fleet: Fleet, executor: ExecutorFactory) -> dict[str, RecycleReport]:
    """Every service that starts, at most max_parallel_services at once: its report, by name."""
    results: dict[str, RecycleReport] = {}
    with executor(fleet.request.max_parallel_services) as pool:
        futures: list[tuple[str, Future[RecycleReport | None]]] = [
            # Each in a copy of this context: its log lines keep the fleet's bound fields.
            (name, pool.submit(contextvars.copy_context().run, _service, fleet, index, name))
            for index, name in enumerate(fleet.names)
        ]
        try:
            for name, future in futures:
                result = future.result()
                if result is not None:
                    results[name] = result
        except BaseException:
            # Killed (or a bug): start nothing more; the runs in flight end on their own and the next run repairs.
            fleet.gate.stop(Status.FAILED, "the fleet run was interrupted")
            for _, future in futures:
                future.cancel()
            raise
    return results


def _service(fleet: Fleet, index: int, name: str) -> RecycleReport | None:
    """One worker's service: None when the fleet may not start it; else its run's report."""
    if fleet.gate.closed or not _may_start(fleet, name):
        return None
    try:
        result = fleet.one(index, name)
    except RecycleError as e:
        # Refused before its engine ran (its session, its lock table): that service failed, the others go on.
        result = RecycleReport(Status.FAILED, fleet.request.template.cluster_name, name)
        result.error, result.error_type = str(e), type(e).__name__
    status, error_type = result.status, result.error_type
    if error_type == "AlarmTriggered" and fleet.request.template.alarm_names:
        fleet.gate.stop(Status.FAILED, f"{name}: {result.error}; no further service started")
    elif status == Status.CANCELLED:
        fleet.gate.stop(Status.CANCELLED, f"{name} was cancelled; no further service started")
    elif status in (Status.FAILED, Status.REFUSED) and fleet.request.on_service_failure == OnServiceFailure.STOP:
        fleet.gate.stop(Status.FAILED, f"{name} ended {status} (on_service_failure stop); no further service started")
    elif status == Status.INCOMPLETE:
        fleet.gate.stop(Status.INCOMPLETE, f"{name} ran out of time; no further service started")
    return result


def _may_start(fleet: Fleet, name: str) -> bool:
    """The fleet's gates before a service starts: the event's alarms, the operator's interrupt, the time left."""
    template = fleet.request.template
    if fleet.host.interrupted() is not None:
        fleet.gate.stop(Status.CANCELLED, "interrupted; no further service started")
        return False
    try:
        cancelled_by = fleet.cancel_watch.cancelled_by() if fleet.cancel_watch else None
    except AwsCallFailed as e:
        fleet.gate.stop(Status.FAILED, f"the fleet's record could not be read ({e}); no further service started")
        return False
    if cancelled_by is not None:
        fleet.gate.stop(Status.CANCELLED, f"the fleet was cancelled by {cancelled_by}; no further service started")
        return False
    if template.alarm_names:
        clients, _ = fleet.host.connect(fleet.config)
        gateway = ServiceGateway(clients.client("ecs"), None, None, template, cloudwatch=clients.client("cloudwatch"))
        problems = alarm_problems(gateway, template.alarm_names)
        if problems:
            fleet.gate.stop(Status.FAILED, f"{problems[0]}; no further service started")
            return False
    remaining = fleet.host.remaining_seconds()
    needed = fleet.estimates.get(name)
    if remaining is not None and needed is not None and needed > remaining:
        fleet.gate.stop(Status.INCOMPLETE, f"{name} needs about {needed}s, {remaining:.0f}s remain")
        return False
    return True


def _carry_on(fleet: Fleet, report: FleetReport, started: float) -> None:
    """A fleet the time cut short: the event that carries on with the services it did not finish."""
    unfinished = report.not_started + [s.service for s in report.services if s.status == Status.INCOMPLETE]
    if report.stopped_by != Status.INCOMPLETE or not unfinished:
        return
    event = {
        **fleet.request.shared,
        "services": sorted(unfinished),
        "started_before": fleet.request.template.carry_on_started_before(started),
    }
    for key in ("max_parallel_services", "on_service_failure"):
        event[key] = getattr(fleet.request, key)
    if event["on_service_failure"] == OnServiceFailure.CONTINUE:
        del event["on_service_failure"]
    report.error = (
        f"{report.error}. {len(unfinished)} services not finished: carry on with the event {json.dumps(event)}"
    )
    report.error_type = "TimeBudgetExhausted"
