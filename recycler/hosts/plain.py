"""The plain host: one Lambda invocation (or one CLI run) of the pipeline, on the in-process runtime.

Any outcome other than full success becomes RecycleNotCompleted, raised by the Lambda handler after the
restore and the notification, so Lambda's Errors metric and on-failure destinations see it; the CLI returns
it as an exit code instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from recycler.aws.clients import Clients
from recycler.aws.session import get_aws_session
from recycler.hosts.config import AppConfig
from recycler.hosts.environment import Environment
from recycler.hosts.fleet import ExecutorFactory, run_fleet
from recycler.hosts.handoff import FleetHandOff, HandOff
from recycler.hosts.pipeline import (
    NOT_COMPLETED,
    RecycleNotCompleted,
    TimePolicy,
    config_or_none,
    get_config,
    lock_table_name,
    new_owner_id,
    published_refusal,
    raise_if_not_completed,
    refused_event_report,
    register_secrets,
    run,
    summarise,
)
from recycler.model.errors import ConfigError, RecycleError
from recycler.model.fleet import FleetRequest, is_fleet_event, parse_fleet_event
from recycler.model.progress import ProgressSink
from recycler.model.report import NotificationResult, RecycleReport
from recycler.model.request import RecycleRequest, parse_event
from recycler.model.runtime import TOOL_NAME, Clock, LocalRuntime, Runtime, SystemClock
from recycler.notification.notifier import notify
from recycler.observability import logs, metrics
from recycler.run.budget import HEARTBEAT_LEASE_SECONDS
from recycler.run.liveness import Liveness
from recycler.run.ports import RunPolicy

__all__ = [
    "NOT_COMPLETED",
    "PlainHost",
    "RecycleNotCompleted",
    "build_handler",
    "config_or_none",
    "get_config",
    "lambda_handler",
    "lock_table_name",
    "mail_refused_event",
    "new_owner_id",
    "register_secrets",
    "run_recycle",
    "summarise",
]

logger = logging.getLogger(TOOL_NAME)


@dataclass(frozen=True)
class Invocation:
    """What the caller says about this invocation: its deadline, ids, event, and how it ends."""

    remaining_seconds: Callable[[], float | None] = lambda: None
    # Lambda's request id and log group and stream.
    ids: Mapping[str, str | None] = field(default_factory=dict)
    event: dict[str, Any] | None = None
    publishes_metrics: bool = False
    # Set by the Lambda handler, which says what bounded the run and raises what did not complete; the CLI
    # returns it instead.
    time_budget: str | None = None
    # The operator at the CLI: their Ctrl-C, and their view of the run's progress.
    watcher: Watcher = field(default_factory=lambda: Watcher())


@dataclass(frozen=True)
class Watcher:
    """The operator at the CLI: what says they interrupted the run (the signal's name, or None), and where
    the run's progress is shown (None: nowhere, as in Lambda)."""

    interrupted: Callable[[], str | None] = lambda: None
    progress: ProgressSink | None = None


@dataclass
class PlainHost:
    """A Lambda invocation or a CLI run: steps are calls, the deadline is the invocation's (or none)."""

    clock: Clock
    owner_id: str
    requested_by: str
    env: Environment
    invocation: Invocation
    # The caller's session (tests, the simulator); else one from input.json's credentials.
    session: Any = None

    @property
    def progress(self) -> ProgressSink | None:
        return self.invocation.watcher.progress

    @property
    def publishes_metrics(self) -> bool:
        return self.invocation.publishes_metrics

    def remaining_seconds(self) -> float | None:
        return self.invocation.remaining_seconds()

    def interrupted(self) -> str | None:
        return self.invocation.watcher.interrupted()

    @property
    def log_fields(self) -> Mapping[str, Any]:
        return self.invocation.ids

    def connect(self, config: AppConfig) -> tuple[Clients, str | None]:
        session = lock_session = self.session
        if session is None:
            session = get_aws_session(config.aws, session_suffix=self.owner_id, env=self.env.aws)
            # The lock table lives in the function's own account, also when role_arn reaches another one.
            lock_session = (
                get_aws_session(dataclasses.replace(config.aws, role_arn=None, external_id=None), env=self.env.aws)
                if config.aws.role_arn
                else session
            )
        return Clients(lambda: session, lambda: lock_session), session.region_name

    def policy(self, request: RecycleRequest, config: AppConfig, clients: Clients) -> TimePolicy:
        # The run lives in this process: a short lease, renewed on a heartbeat while it waits (recycler.run.budget).
        run = RunPolicy(
            lock_ttl_seconds=HEARTBEAT_LEASE_SECONDS,
            hand_off=self._hand_off(request, config, clients),
            requested_by=self.requested_by,
            liveness=Liveness(interrupted=self.invocation.watcher.interrupted),
        )
        return TimePolicy(runtime=LocalRuntime(self.clock, self.remaining_seconds, logger), run=run)

    def stamp(self, report: RecycleReport) -> None:
        for key in ("request_id", "log_group", "log_stream"):
            setattr(report, key, self.invocation.ids.get(key))

    def notify(self, report: RecycleReport, config: AppConfig, clients: Clients) -> NotificationResult:
        return notify(report.to_dict(), config.notification, clients.session)

    def finish(self, report: RecycleReport, runtime: Runtime) -> dict[str, Any]:
        result = report.to_dict()
        if self.invocation.time_budget is not None:
            result["time_budget"] = self.invocation.time_budget
            raise_if_not_completed(result, runtime)
        return result

    def _hand_off(self, request: RecycleRequest, config: AppConfig, clients: Clients) -> HandOff | None:
        """The durable alias to hand a too-long plan to: only in Lambda, and only when the template set it up."""
        alias = self._durable_alias()
        if alias is None:
            return None
        return HandOff(
            # In the function's own account, as the lock table is.
            lambda_client=clients.lock_session_client("lambda"),
            alias_arn=alias,
            request=request,
            invocation_id=self.owner_id,
            event=dict(self.invocation.event or {"cluster_name": request.cluster, "service_name": request.service}),
        )

    def fleet_hand_off(self, request: FleetRequest, clients: Clients) -> FleetHandOff | None:
        alias = self._durable_alias()
        if alias is None:
            return None
        event = dict(self.invocation.event or {**request.shared, **request.selection()})
        return FleetHandOff(clients.lock_session_client("lambda"), alias, request, self.owner_id, event)

    def _durable_alias(self) -> str | None:
        """The durable alias: only in Lambda (a deadline), and only when the template set it up."""
        alias = self.env.handoff_alias_arn
        return alias if alias and self.remaining_seconds() is not None else None


def run_recycle(
    request: RecycleRequest | FleetRequest,
    config: AppConfig,
    *,
    session: Any = None,
    clock: Clock | None = None,
    remaining_seconds: Callable[[], float | None] = lambda: None,
    owner_id: str | None = None,
    invocation: Mapping[str, str | None] | None = None,
    event: dict[str, Any] | None = None,
    requested_by: str | None = None,
    publish_metrics: bool | None = None,
    environment: Environment | None = None,
    watcher: Watcher | None = None,
    executor: ExecutorFactory | None = None,
) -> dict[str, Any]:
    """Run one recycle with the plain runtime, notify, and return the report as a dict (the CLI's run).

    ``action: status`` and ``cancel`` return what recycler.hosts.control says instead. ``watcher`` is the CLI's
    operator: the signal that interrupted the run (it then stops as a cancel does), and the progress bar.
    A FleetRequest runs the fleet (recycler.hosts.fleet), its services through ``executor`` (tests: the
    simulator's).
    Metrics are published (EMF on stdout) in Lambda, or when ``publish_metrics`` says so.
    """
    env = environment or Environment.from_env()
    owner_id = owner_id or new_owner_id("local")
    host = PlainHost(
        clock=clock or SystemClock(),
        owner_id=owner_id,
        requested_by=requested_by or owner_id,
        env=env,
        invocation=Invocation(
            remaining_seconds=remaining_seconds,
            ids=invocation or {},
            event=event,
            publishes_metrics=publish_metrics if publish_metrics is not None else env.in_lambda,
            watcher=watcher or Watcher(),
        ),
        session=session,
    )
    if isinstance(request, FleetRequest):
        return run_fleet(host, request, config, env, executor)
    return run(host, request, config, env)


def mail_refused_event(
    event: Any,
    error: ConfigError,
    invocation: Mapping[str, str | None],
    env: Environment,
    clock: Clock,
    config: AppConfig | None,
) -> None:
    """A scheduled run's bad event is mailed as REFUSED, since no one watches a schedule's errors.

    Only when input.json (and so the notification settings) loads; the caller raises the event's error
    either way. Never raises itself.
    """
    config = config or config_or_none(env)
    if config is None:
        return
    report = refused_event_report(event, error, invocation, clock.now())
    try:
        session = get_aws_session(config.aws, env=env.aws)
    except (RecycleError, BotoCoreError, ClientError) as e:
        # The password may need no session (a literal one): notify says if it did.
        logger.warning(f"No AWS session for the refusal's email: {e}")
        session = None
    notification: NotificationResult = logs.mask_data(notify(report.to_dict(), config.notification, session))
    report.notification = notification
    published_refusal(report, config, None, env)
    logger.info("Refused event report", extra={"status": "refused", "notification": notification.get("status")})
    if env.in_lambda:
        metrics.publish(report.to_dict())


def build_handler(
    *,
    clock: Clock | None = None,
    session: Any = None,
    config: AppConfig | None = None,
    environment: Environment | None = None,
    executor: ExecutorFactory | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """The plain handler; tests pass a virtual clock, a simulated session, a config, an environment, or how a
    fleet runs its services at once."""

    def handler(event: Any, context: Any) -> dict[str, Any]:
        env = environment or Environment.from_env()
        return _handle(event, context, Seams(clock or SystemClock(), session, config, executor), env)

    return handler


@dataclass(frozen=True)
class Seams:
    """What a test gives the handler in place of the real ones."""

    clock: Clock
    session: Any
    config: AppConfig | None
    executor: ExecutorFactory | None


def _handle(event: Any, context: Any, seams: Seams, env: Environment) -> dict[str, Any]:
    clock, session, config = seams.clock, seams.session, seams.config
    logs.configure(env.log_level, lambda_json=env.lambda_json_logs, in_lambda=env.in_lambda)
    invocation: dict[str, str | None] = {
        "request_id": getattr(context, "aws_request_id", None),
        "log_group": getattr(context, "log_group_name", None),
        "log_stream": getattr(context, "log_stream_name", None),
    }
    try:
        # A fleet goes to the fleet runner before parse_event, which knows one service only.
        request: RecycleRequest | FleetRequest = (
            parse_fleet_event(event) if is_fleet_event(event) else parse_event(event)
        )
    except ConfigError as e:
        mail_refused_event(event, e, invocation, env, clock, config)
        raise
    config = config or get_config(env)
    # Without a Lambda context (a direct call) there is no deadline: run as the CLI does, and say so in the report.
    remaining_millis = getattr(context, "get_remaining_time_in_millis", None)
    bounded = callable(remaining_millis)

    def remaining_seconds() -> float | None:
        return remaining_millis() / 1000.0 if callable(remaining_millis) else None

    owner = invocation["request_id"] or new_owner_id("lambda")
    host = PlainHost(
        clock=clock,
        owner_id=owner,
        requested_by=f"lambda request {owner}",
        env=env,
        invocation=Invocation(
            remaining_seconds=remaining_seconds,
            ids=invocation,
            event=dict(event),
            publishes_metrics=env.in_lambda,
            time_budget="Lambda remaining time" if bounded else "unlimited (no Lambda context)",
        ),
        session=session,
    )
    if isinstance(request, FleetRequest):
        try:
            result = run_fleet(host, request, config, env, seams.executor)
        except ConfigError as e:
            # A selection refused (a service not in the cluster, none tagged): mailed as a bad event is.
            mail_refused_event(event, e, invocation, env, clock, config)
            raise
        if bounded:
            result["time_budget"] = host.invocation.time_budget
        if bounded and request.template.action == "recycle":
            raise_if_not_completed(result, LocalRuntime(clock, remaining_seconds, logger))
        return result
    return run(host, request, config, env)


# What Lambda calls (through lambda_function.py): the real clock, session, input.json and environment.
lambda_handler = build_handler()
