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

from AWSSession import create_client, get_aws_session
from Notification import notify
from recycler import logs
from recycler.engine import Recycler
from recycler.errors import ConfigError, RecycleError
from recycler.lock import LOCK_TABLE_ENV
from recycler.lock_store import DynamoLockStore
from recycler.report import RecycleReport
from recycler.request import RecycleRequest
from recycler.runtime import Clock, LocalRuntime, SystemClock
from recycler.settings import AppConfig, load_config

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
    return (
        f"Task recycle {str(report.get('status', 'failed')).upper()} for "
        f"{report.get('cluster')}/{report.get('service')}: {recycled} of {report.get('task_total', 0)} tasks "
        f"recycled; {restored} (actions: {actions}). Error: {report.get('error')}"
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


_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$", re.ASCII)
_TABLE_ARN = re.compile(r"^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}$", re.ASCII)


def lock_table_name(config: AppConfig, request: RecycleRequest) -> str | None:
    """The lock table: LOCK_TABLE_NAME (the template sets it), else input.json's recycle.lock_table_name.

    A recycle without one is refused here, before any AWS call; a dry run changes nothing and needs none.
    """
    from_env = os.environ.get(LOCK_TABLE_ENV)
    if from_env is not None and from_env != "":
        if not (_TABLE_NAME.match(from_env) or _TABLE_ARN.match(from_env)):
            raise ConfigError(LOCK_TABLE_ENV, "is not a DynamoDB table name or table ARN")
        return from_env
    name = config.recycle.lock_table_name
    if name is None and not request.dry_run:
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
) -> dict[str, Any]:
    """Run one recycle with the plain runtime, notify, and return the report as a dict."""
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
    with logs.bound(cluster=request.cluster_name, service=request.service_name, **(invocation or {})):
        runtime = LocalRuntime(clock, remaining_seconds, logger)
        engine = Recycler(
            ecs=create_client(session, "ecs"),
            autoscaling=create_client(session, "application-autoscaling"),
            elbv2=create_client(session, "elbv2"),
            clock=clock,
            runtime=runtime,
            settings=config.recycle,
            owner_id=owner_id,
            # Without a host deadline (the CLI), the lock is renewed after each task instead.
            lock_ttl_seconds=_renewed_lock_ttl(config, request) if unbounded else None,
            lock_store=DynamoLockStore(create_client(lock_session, "dynamodb"), table) if table else None,
        )
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
    return result


def _renewed_lock_ttl(config: AppConfig, request: RecycleRequest) -> float:
    settings = config.recycle
    return float(settings.replacement_timeout_seconds + request.wait_time + settings.restore_reserve_seconds + 120)
