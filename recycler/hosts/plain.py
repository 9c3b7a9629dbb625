"""One plain run, as the handler and the CLI make it: config, session, engine, notification, report.

Any outcome other than full success becomes RecycleNotCompleted, raised by
the callers after the restore and the notification, so Lambda's Errors metric
and on-failure destinations see it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from recycler.aws.gateway import ServiceReads
from recycler.aws.session import create_client, create_quick_client, get_aws_session
from recycler.hosts import control
from recycler.hosts.config import AppConfig, load_config
from recycler.hosts.handoff import HandOff
from recycler.lock.record import LOCK_TABLE_ENV
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import ConfigError, RecycleError
from recycler.model.report import RecycleReport
from recycler.model.request import RecycleRequest, parse_event
from recycler.model.runtime import Clock, LocalRuntime, SystemClock, iso_seconds
from recycler.model.states import NOT_COMPLETED, Status
from recycler.notification.notifier import notify
from recycler.observability import logs, metrics
from recycler.run.budget import renewed_lock_ttl
from recycler.run.context import AwsClients, EngineSetup
from recycler.run.engine import Recycler
from recycler.run.ports import HANDOFF_ENV, RunPolicy

logger = logging.getLogger("ecs-task-recycle")

_config: AppConfig | None = None


class RecycleNotCompleted(RecycleError):
    """The run did not fully succeed. The message says what was done and what was restored."""

    def __init__(self, report: dict[str, Any]) -> None:
        # Masked here too, so no caller can put a secret into the message.
        self.report = logs.mask_data(report)
        super().__init__(summarise(self.report))


def summarise(report: dict[str, Any]) -> str:
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


def get_config() -> AppConfig:
    """input.json, read once per cold start."""
    global _config
    if _config is None:
        _config = load_config()
        register_secrets(_config)
    return _config


def register_secrets(config: AppConfig) -> None:
    logs.register_secret(config.aws.secret_key)
    logs.register_secret(config.aws.session_token)
    password = getattr(config.notification, "password", None)
    if isinstance(password, str):
        logs.register_secret(password)


# Used with fullmatch, not match with ^…$: $ also matches before a trailing newline.
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
_TABLE_ARN = re.compile(r"arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}", re.ASCII)


def lock_table_name(config: AppConfig, request: RecycleRequest) -> str | None:
    """The lock table: LOCK_TABLE_NAME (the template sets it), else input.json's recycle.lock_table_name.

    A recycle without one is refused here, before any AWS call; a dry run changes nothing and needs none.
    """
    from_env = os.environ.get(LOCK_TABLE_ENV)
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


def run_recycle(
    request: RecycleRequest,
    config: AppConfig,
    *,
    session: Any = None,
    clock: Clock | None = None,
    remaining_seconds: Callable[[], float | None] = lambda: None,
    owner_id: str | None = None,
    invocation: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    requested_by: str | None = None,
    publish_metrics: bool | None = None,
) -> dict[str, Any]:
    """Run one recycle with the plain runtime, notify, and return the report as a dict.

    ``action: status`` and ``cancel`` return what recycler.hosts.control says instead.
    Metrics are published (EMF on stdout) in Lambda, or when ``publish_metrics`` says so.
    """
    register_secrets(config)
    table = lock_table_name(config, request)
    owner_id = owner_id or new_owner_id("local")
    lock_session = session
    if session is None:
        session = get_aws_session(config.aws, session_suffix=owner_id)
        # The lock table lives in the function's own account, also when role_arn reaches another one.
        lock_session = (
            get_aws_session(dataclasses.replace(config.aws, role_arn=None, external_id=None))
            if config.aws.role_arn
            else session
        )
    request.check_region(session.region_name)
    clock = clock or SystemClock()
    unbounded = remaining_seconds() is None
    lock_store = DynamoLockStore(create_client(lock_session, "dynamodb"), table) if table else None
    with logs.bound(cluster=request.cluster_name, service=request.service_name, **(invocation or {})):
        if request.action != "recycle":
            assert lock_store is not None  # lock_table_name refuses status and cancel without one
            reads = ServiceReads(
                create_client(session, "ecs"), None, None, request, sts=create_quick_client(session, "sts")
            )
            return control_action(request, reads, lock_store, clock, requested_by or owner_id)
        runtime = LocalRuntime(clock, remaining_seconds, logger)
        clients = AwsClients(
            ecs=create_client(session, "ecs"),
            autoscaling=create_client(session, "application-autoscaling"),
            elbv2=create_client(session, "elbv2"),
            cloudwatch=create_client(session, "cloudwatch"),
            sts=create_quick_client(session, "sts"),
        )
        policy = RunPolicy(
            # Without a host deadline (the CLI), the lock is renewed after each task instead.
            lock_ttl_seconds=renewed_lock_ttl(config.recycle, request) if unbounded else None,
            hand_off=_hand_off(request, config, lock_session, remaining_seconds, owner_id, event),
        )
        engine = Recycler(EngineSetup(clients, clock, runtime, config.recycle, owner_id, lock_store), policy)
        report: RecycleReport = engine.run(request)
        for key in ("request_id", "log_group", "log_stream"):
            setattr(report, key, (invocation or {}).get(key))
        # An AWS error can quote a credential (b'<token>\n'): mask before it is mailed or returned.
        result = logs.mask_data(report.to_dict())
        # The restore has already happened; the notifier can no longer hurt the service.
        result["notification"] = logs.mask_data(notify(result, config.notification, session))
        logger.info(
            "Task recycle report",
            extra={"status": result["status"], "notification": result["notification"].get("status")},
        )
        if publish_metrics if publish_metrics is not None else bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")):
            metrics.publish(result)
    return result


# A cluster or service name as a refused event's report may repeat it (in the subject and headers too).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,512}", re.ASCII)


def config_or_none() -> AppConfig | None:
    """input.json, or None when it does not load (a refused event is then not mailed: there is nothing to mail
    it with)."""
    try:
        return get_config()
    except RecycleError as e:
        logger.warning(f"The refused event is not mailed: input.json does not load either ({e})")
        return None


def refused_event_report(event: Any, error: ConfigError, invocation: dict[str, Any]) -> dict[str, Any]:
    """The report of a run refused for its event: status refused, the error naming the field."""

    def named(key: str) -> str | None:
        value = event.get(key) if isinstance(event, dict) else None
        return value if isinstance(value, str) and _SAFE_NAME.fullmatch(value) else None

    report = RecycleReport(Status.REFUSED, named("cluster_name") or "unknown", named("service_name") or "unknown")
    report.error, report.error_type = str(error), type(error).__name__
    report.started_at = iso_seconds(SystemClock().now())
    for key in ("request_id", "log_group", "log_stream"):
        setattr(report, key, invocation.get(key))
    return logs.mask_data(report.to_dict())


def mail_refused_event(event: Any, error: ConfigError, invocation: dict[str, Any]) -> None:
    """A scheduled run's bad event is mailed as REFUSED, since no one watches a schedule's errors.

    Only when input.json (and so the notification settings) loads; the caller raises the event's error
    either way. Never raises itself.
    """
    config = config_or_none()
    if config is None:
        return
    result = refused_event_report(event, error, invocation)
    try:
        session = get_aws_session(config.aws)
    except (RecycleError, BotoCoreError, ClientError) as e:
        # The password may need no session (a literal one): notify says if it did.
        logger.warning(f"No AWS session for the refusal's email: {e}")
        session = None
    result["notification"] = logs.mask_data(notify(result, config.notification, session))
    logger.info(
        "Refused event report", extra={"status": "refused", "notification": result["notification"].get("status")}
    )
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        metrics.publish(result)


def control_action(
    request: RecycleRequest, reads: ServiceReads, store: DynamoLockStore, clock: Clock, requested_by: str
) -> dict[str, Any]:
    """status or cancel: read the lock (and, to cancel, tag the service); never touch its capacity."""
    if request.action == "status":
        result = control.status(reads, store, clock)
    else:
        result = control.cancel(reads, store, clock, requested_by)
    logger.info(
        f"Task recycle {request.action}: {result.get('result', result['state'])}", extra={"state": result["state"]}
    )
    return result


def _hand_off(
    request: RecycleRequest,
    config: AppConfig,
    session: Any,
    remaining_seconds: Callable[[], float | None],
    owner_id: str,
    event: dict[str, Any] | None,
) -> HandOff | None:
    """The durable alias to hand a too-long plan to: only in Lambda, and only when the template set it up."""
    alias = os.environ.get(HANDOFF_ENV)
    if not alias or remaining_seconds() is None:
        return None
    return HandOff(
        lambda_client=create_client(session, "lambda"),
        alias_arn=alias,
        request=request,
        invocation_id=owner_id,
        event=dict(event or {"cluster_name": request.cluster, "service_name": request.service}),
    )


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    logs.configure()
    invocation = {
        "request_id": getattr(context, "aws_request_id", None),
        "log_group": getattr(context, "log_group_name", None),
        "log_stream": getattr(context, "log_stream_name", None),
    }
    try:
        request = parse_event(event)
    except ConfigError as e:
        mail_refused_event(event, e, invocation)
        raise
    config = get_config()
    # Without a Lambda context (a direct call) there is no deadline: run as the CLI does,
    # renewing the lock after each task, and say so in the report.
    remaining_millis = getattr(context, "get_remaining_time_in_millis", None)
    bounded = callable(remaining_millis)

    def remaining_seconds() -> float | None:
        return remaining_millis() / 1000.0 if callable(remaining_millis) else None

    owner = invocation["request_id"] or new_owner_id("lambda")
    result = run_recycle(
        request,
        config,
        remaining_seconds=remaining_seconds,
        owner_id=owner,
        invocation=invocation,
        event=dict(event),
        requested_by=f"lambda request {owner}",
    )
    if "status" in result:
        result["time_budget"] = "Lambda remaining time" if bounded else "unlimited (no Lambda context)"
    # A run that did not do what it was asked is raised, after the restore and the email. A cancelled run
    # did what the operator asked, and a handed-off one goes on in the durable function.
    if result.get("status") in NOT_COMPLETED:
        error = RecycleNotCompleted(result)
        logger.error(str(error), extra={"status": result["status"]})
        raise error
    return result
