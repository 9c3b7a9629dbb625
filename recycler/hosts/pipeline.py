"""The one pipeline around the engine, for every host: the plain function, the durable function and the CLI.

secrets -> lock table -> clients and region check -> bound log fields -> status/cancel/history, or the engine ->
masking -> notification -> report log -> metrics -> the host's finish. A host (recycler.hosts.plain,
recycler.hosts.durable) says only what differs: its runtime, its clients, its time policy, and how it ends.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

from botocore.exceptions import BotoCoreError, ClientError

from recycler.aws.clients import Clients
from recycler.aws.eventbus import EventBus
from recycler.aws.gateway import ServiceGateway
from recycler.aws.session import get_aws_session
from recycler.hosts import control
from recycler.hosts.config import AppConfig, load_config, load_config_parameter, parameter_source
from recycler.hosts.environment import Environment
from recycler.lock.record import LOCK_TABLE_ENV
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import ConfigError, RecycleError
from recycler.model.progress import ProgressSink
from recycler.model.report import NotificationResult, RecycleReport
from recycler.model.request import RecycleRequest
from recycler.model.runtime import TOOL_NAME, Clock, NoResult, Runtime, iso_seconds
from recycler.model.states import NOT_COMPLETED, Status
from recycler.observability import logs, metrics
from recycler.run.context import AwsClients, EngineSetup
from recycler.run.engine import Recycler
from recycler.run.events import final_event, publish
from recycler.run.ports import RunPolicy

logger = logging.getLogger(TOOL_NAME)


class RecycleNotCompleted(RecycleError):
    """The run did not fully succeed. The message says what was done and what was restored."""

    def __init__(self, report: Mapping[str, Any]) -> None:
        # Masked here too, so no caller can put a secret into the message.
        self.report = logs.mask_data(report)
        super().__init__(summarise(self.report))


def summarise(report: Mapping[str, Any]) -> str:
    if report.get("fleet"):
        return summarise_fleet(report)
    recycled = len(report.get("tasks_recycled") or [])
    restored = {True: "service restored", False: "RESTORE FAILED", None: "nothing needed restoring"}[
        report.get("restored")
    ]
    actions = "; ".join(report.get("restore_actions") or []) or "none"
    # The count only once the pre-flight knew it: "0 of 0" would misstate a 200-task service.
    total = report.get("task_total")
    counted = f"{recycled} of {total} tasks recycled; " if total is not None else ""
    return (
        f"Task recycle {str(report.get('status', 'failed')).upper()} for "
        f"{report.get('cluster')}/{report.get('service')}: {counted}{restored} (actions: {actions}). "
        f"Error: {report.get('error')}"
    )


def summarise_fleet(report: Mapping[str, Any]) -> str:
    """A fleet's outcome in one line: its services by outcome, its tasks, and why it stopped."""
    totals = report.get("totals") or {}
    outcomes = ", ".join(f"{n} {outcome}" for outcome, n in (totals.get("services") or {}).items()) or "none run"
    not_started = len(report.get("not_started") or [])
    unrestored = [str(s.get("service")) for s in report.get("services") or [] if s.get("restored") is False]
    restored = f"RESTORE FAILED for {', '.join(unrestored)}" if unrestored else "every service restored"
    return (
        f"Fleet task recycle {str(report.get('status', 'failed')).upper()} for cluster {report.get('cluster')}: "
        f"{outcomes}, {not_started} not started; {totals.get('tasks_recycled', 0)} of "
        f"{totals.get('task_total', 0)} tasks recycled; {restored}. Error: {report.get('error')}"
    )


def raise_if_not_completed(result: Mapping[str, Any], runtime: Runtime) -> None:
    """A run that did not do what it was asked is raised, after the restore and the email. A cancelled run did
    what the operator asked, and a handed-off one goes on in the durable function."""
    if result.get("status") in NOT_COMPLETED:
        error = RecycleNotCompleted(result)
        runtime.log(logging.ERROR, str(error), status=result["status"])
        raise error


@dataclass(frozen=True)
class TimePolicy:
    """What the engine gets differently per host: how it runs its steps, and its time rules and hand-off."""

    runtime: Runtime
    run: RunPolicy = field(default_factory=RunPolicy)


class Host(Protocol):
    """Where a run happens. The pipeline asks it for nothing else."""

    @property
    def clock(self) -> Clock: ...

    @property
    def owner_id(self) -> str:
        """The lock's owner: unique to this run (the same in every invocation of one durable execution)."""
        ...

    @property
    def requested_by(self) -> str:
        """Who asks, for a cancel's tag."""
        ...

    @property
    def log_fields(self) -> Mapping[str, Any]:
        """Bound to every log line besides cluster and service."""
        ...

    @property
    def publishes_metrics(self) -> bool: ...

    @property
    def progress(self) -> ProgressSink | None:
        """Who watches the run's progress in this process (the CLI's bar), or None."""
        ...

    def connect(self, config: AppConfig) -> tuple[Clients, str | None]:
        """The clients, and the region they use (checked against the event's ARNs before any call)."""
        ...

    def policy(self, request: RecycleRequest, config: AppConfig, clients: Clients) -> TimePolicy: ...

    def stamp(self, report: RecycleReport) -> None:
        """Where the run's logs are, on the report."""
        ...

    def notify(self, report: RecycleReport, config: AppConfig, clients: Clients) -> NotificationResult:
        """The notifier's answer (JSON: it goes into the report as it is)."""
        ...

    def finish(self, report: RecycleReport, runtime: Runtime) -> dict[str, Any]:
        """The report as this host returns it (or raises it): where it becomes JSON."""
        ...


def run(host: Host, request: RecycleRequest, config: AppConfig, env: Environment) -> dict[str, Any]:
    """One run on any host: status, cancel and history answer from recycler.hosts.control; a recycle, its report."""
    register_secrets(config)
    table = lock_table_name(config, request, env.lock_table_name)
    clients, region = host.connect(config)
    request.check_region(region)
    store = DynamoLockStore(clients.lock_client(), table) if table else None
    with logs.bound(cluster=request.cluster_name, service=request.service_name, **host.log_fields):
        policy = host.policy(request, config, clients)
        if request.action != "recycle":
            assert store is not None  # lock_table_name refuses status, cancel and history without one
            gateway = ServiceGateway(clients.client("ecs"), None, None, request, sts=clients.quick_client("sts"))
            return dict(
                policy.runtime.step(
                    request.action, lambda: control_action(request, gateway, store, host.clock, host.requested_by)
                )
            )
        report = build_engine(host, policy, config, clients, store).run(request)
        host.stamp(report)
        # An AWS error can quote a credential (b'<token>\n'): mask before it is mailed, logged or returned.
        report = masked(report)
        # The restore has already happened; the notifier can no longer hurt the service.
        notification: NotificationResult = logs.mask_data(host.notify(report, config, clients))
        report.notification = notification
        policy.runtime.log(
            logging.INFO,
            "Task recycle report",
            status=report.status,
            notification=notification.get("status"),
        )
        if host.publishes_metrics:
            # A step, so a durable replay of the last invocation does not count the run twice.
            policy.runtime.step("metrics", lambda: published(report))
        return host.finish(report, policy.runtime)


def masked(report: RecycleReport) -> RecycleReport:
    """A copy of the report with every registered secret masked in its strings."""
    return RecycleReport.from_dict(logs.mask_data(report.to_dict()))


def build_engine(
    host: Host, policy: TimePolicy, config: AppConfig, clients: Clients, store: DynamoLockStore | None
) -> Recycler:
    """The engine, built in this one place for every host."""
    aws = AwsClients(
        ecs=clients.client("ecs"),
        autoscaling=clients.client("application-autoscaling"),
        elbv2=clients.client("elbv2"),
        cloudwatch=clients.client("cloudwatch"),
        sts=clients.quick_client("sts"),
        # The run's events go to the function's own account, as its lock does.
        events=clients.lock_session_client("events"),
    )
    setup = EngineSetup(aws, host.clock, policy.runtime, config.recycle, host.owner_id, store, host.progress)
    return Recycler(setup, policy.run)


def published(report: RecycleReport) -> NoResult:
    """The metrics step: its checkpointed result is empty."""
    metrics.publish(report.to_dict())
    return {}


def control_action(
    request: RecycleRequest, gateway: ServiceGateway, store: DynamoLockStore, clock: Clock, requested_by: str
) -> control.StatusAnswer | control.CancelAnswer | control.HistoryAnswer:
    """status, history or cancel: read the lock table (and, to cancel, tag the service); never touch its capacity.

    As JSON: it is the step's checkpoint and the handler's return."""
    result: control.StatusResult | control.CancelResult | control.HistoryResult
    if request.action == "history":
        result = control.history(gateway, store)
        logger.info(f"Task recycle history: {len(result.runs)} run(s)")
        return result.to_dict()
    if request.action == "status":
        result = control.status(gateway, store, clock)
        said = result.state
    else:
        result = control.cancel(gateway, store, clock, requested_by)
        said = result.result
    logger.info(f"Task recycle {request.action}: {said}", extra={"state": result.state})
    return result.to_dict()


class Published(TypedDict, total=False):
    """A refusal's event step: why it was not put (None or absent: it was, or there was none to put)."""

    failed: str | None


def published_refusal(report: RecycleReport, config: AppConfig, session: Any, env: Environment) -> Published:
    """A bad event's refusal, on the bus as any other run's outcome; never raises (a step's result).

    In the function's own account, as every run's events are, also when role_arn reaches another one."""
    event = final_event(report, report.request_id)
    if event is None:
        return {}
    try:
        own = session or get_aws_session(dataclasses.replace(config.aws, role_arn=None, external_id=None), env=env.aws)
    except (RecycleError, BotoCoreError, ClientError) as e:
        logger.warning(f"The refusal's event was not published: no AWS session ({e})")
        return {"failed": str(e)}
    client = Clients(lambda: own, lambda: own).lock_session_client("events")
    return {"failed": publish(EventBus(client), event)}


# By source (RECYCLE_CONFIG_PARAMETER's parameter, RECYCLE_CONFIG's file, or None for the default): in Lambda
# one, read once per cold start. A failed read is not kept: the next invocation tries again.
_configs: dict[str | Path | None, AppConfig] = {}


def get_config(env: Environment | None = None) -> AppConfig:
    """input.json, or the SSM parameter that replaces it, read once per cold start."""
    env = env or Environment.from_env()
    parameter = env.config_parameter_name
    key: str | Path | None = parameter_source(parameter) if parameter else env.config_path
    if key not in _configs:
        config = load_config_parameter(parameter) if parameter else load_config(env.config_path)
        register_secrets(config)
        _configs[key] = config
    return _configs[key]


def config_or_none(env: Environment | None = None) -> AppConfig | None:
    """input.json, or None when it does not load (a refused event is then not mailed: there is nothing to mail
    it with)."""
    try:
        return get_config(env)
    except RecycleError as e:
        logger.warning(f"The refused event is not mailed: input.json does not load either ({e})")
        return None


def register_secrets(config: AppConfig) -> None:
    logs.register_secret(config.aws.secret_key)
    logs.register_secret(config.aws.session_token)
    password = getattr(config.notification, "password", None)
    if isinstance(password, str):
        logs.register_secret(password)


# Used with fullmatch, not match with ^…$: $ also matches before a trailing newline.
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
_TABLE_ARN = re.compile(r"arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}", re.ASCII)


def lock_table_name(config: AppConfig, request: RecycleRequest, from_env: str | None) -> str | None:
    """The lock table: LOCK_TABLE_NAME (the template sets it), else input.json's recycle.lock_table_name.

    A recycle without one is refused here, before any AWS call; a dry run changes nothing and needs none.
    """
    needs_table = not request.dry_run or request.action != "recycle"
    if from_env is not None and from_env != "":
        if not (_TABLE_NAME.fullmatch(from_env) or _TABLE_ARN.fullmatch(from_env)):
            raise ConfigError(LOCK_TABLE_ENV, "is not a DynamoDB table name or table ARN")
        return from_env
    name = config.recycle.lock_table_name
    if name is None and needs_table:
        raise ConfigError(
            LOCK_TABLE_ENV,
            "a recycle needs the lock table, which keeps two runs off one service and lets a killed run be "
            "repaired. Deploy cloudformation.yaml (it creates the table and sets LOCK_TABLE_NAME), then for "
            "the CLI set LOCK_TABLE_NAME to the stack's LockTableName output, or recycle.lock_table_name in "
            "input.json. A dry run works without one",
        )
    return name


def new_owner_id(prefix: str) -> str:
    """A lock owner no other run will ever have."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# A cluster or service name as a refused event's report may repeat it (in the subject and headers too).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,512}", re.ASCII)


def refused_event_report(event: Any, error: ConfigError, where: Mapping[str, str | None], now: float) -> RecycleReport:
    """The report of a run refused for its event: status refused, the error naming the field."""

    def named(key: str) -> str | None:
        value = event.get(key) if isinstance(event, dict) else None
        return value if isinstance(value, str) and _SAFE_NAME.fullmatch(value) else None

    report = RecycleReport(Status.REFUSED, named("cluster_name") or "unknown", named("service_name") or "unknown")
    report.error, report.error_type = str(error), type(error).__name__
    report.started_at = iso_seconds(now)
    for key in ("request_id", "log_group", "log_stream"):
        setattr(report, key, where.get(key))
    return masked(report)
