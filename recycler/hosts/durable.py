"""The long-running mode: the same engine, as a Lambda durable execution.

A plain invocation stops at 15 minutes. Here the engine (recycler.run.engine)
runs under the Lambda durable execution SDK instead of ``LocalRuntime``:

- every AWS read or write the engine makes is a checkpointed step
  ("stop task 3", "renew lock 3", "restore desired count", ...);
- every ``wait_time`` pause and head start is a durable wait;
- every "wait until the replacement serves" is a durable wait-for-condition.

Waits suspend the function without compute; each resumption replays the
handler from the top and gets completed steps back from their checkpoints,
so nothing the engine did is done twice. The algorithm is the one in
``recycler.run.engine.Recycler`` and the steps around it are the one pipeline
(recycler.hosts.pipeline); this module only supplies the durable host: the
runtime, the duration bound checked before anything changes
(recycler.run.budget), the notification step and the bounded result.
durable_function.py is the Lambda handler's face.

This is the only module that imports the durable SDK.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig, StepSemantics
from aws_durable_execution_sdk_python.exceptions import DurableExecutionsError, DurableOperationError
from aws_durable_execution_sdk_python.retries import RetryPresets, RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.types import DurableExecutionArn
from aws_durable_execution_sdk_python.waits import WaitForConditionConfig, WaitForConditionDecision

from recycler.aws.clients import Clients
from recycler.aws.session import get_aws_session, resolve_region
from recycler.hosts.checkpoints import SERDES, PollStateSerDes, S
from recycler.hosts.config import AppConfig
from recycler.hosts.durable_fleet import run_durable_fleet
from recycler.hosts.environment import Environment
from recycler.hosts.pipeline import (
    NOT_COMPLETED,
    RecycleNotCompleted,
    TimePolicy,
    config_or_none,
    get_config,
    published,
    published_refusal,
    raise_if_not_completed,
    refused_event_report,
    run,
)
from recycler.model import errors
from recycler.model.errors import AwsCallFailed, ConfigError
from recycler.model.fleet import is_fleet_event, parse_fleet_event
from recycler.model.report import NotificationResult, RecycleReport
from recycler.model.request import RecycleRequest, parse_event
from recycler.model.runtime import TOOL_NAME, Clock, Runtime, SystemClock
from recycler.notification.notifier import notify
from recycler.observability import logs
from recycler.run.budget import (
    STEP_ATTEMPTS,
    bounded_result,
    check_duration_bound,
    durable_batch_seconds,
    lock_ttl_seconds,
)
from recycler.run.ports import RunPolicy

__all__ = ["NOT_COMPLETED", "RecycleNotCompleted", "build_handler", "lambda_handler", "run_durable_recycle"]

T = TypeVar("T")

logger = logging.getLogger(TOOL_NAME)

# A step that failed on an AWS error (after botocore's own retries) is tried twice more,
# at most 2 s and then 4 s later. Refusals (PreflightError, LockHeld) and bugs are not retried,
# and the restore steps never raise: they retry inside and report what failed.
STEP_RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=STEP_ATTEMPTS,
        initial_delay=Duration.from_seconds(2),
        max_delay=Duration.from_seconds(10),
        backoff_rate=2,
        retryable_error_types=[AwsCallFailed],
    )
)


class DurableRuntime:
    """Run the engine's steps and waits as durable operations.

    ``remaining_seconds`` is measured against the execution's deadline, not
    the invocation's: a single invocation only ever does a few steps before
    the next wait suspends it. The engine reads it only inside steps and
    checks, so a replay sees the checkpointed decisions, never a new clock.
    """

    def __init__(
        self,
        context: DurableContext,
        clock: Clock,
        execution_deadline: float,
        log: logging.Logger | None = None,
    ) -> None:
        self.context = context
        self.clock = clock
        self.execution_deadline = execution_deadline
        self.logger = log or logger
        self._step_config = StepConfig(retry_strategy=STEP_RETRY, serdes=SERDES)

    def step(self, name: str, fn: Callable[[], T]) -> T:
        try:
            return self.context.step(lambda _: fn(), name=name, config=self._step_config)
        except DurableOperationError as e:
            raise _engine_error(e) from e

    def sleep(self, name: str, seconds: int) -> None:
        # Durable waits are whole seconds, at least one.
        self.context.wait(Duration.from_seconds(max(1, int(seconds))), name=name)

    def wait_until(
        self,
        name: str,
        check: Callable[[S], S],
        initial: S,
        poll_seconds: float,
    ) -> S:
        delay = Duration.from_seconds(max(1, math.ceil(poll_seconds)))

        def strategy(state: S, _attempt: int) -> WaitForConditionDecision:
            if state.done:
                return WaitForConditionDecision.stop_polling()
            return WaitForConditionDecision.continue_waiting(delay)

        config: WaitForConditionConfig[S] = WaitForConditionConfig(
            wait_strategy=strategy, initial_state=initial, serdes=PollStateSerDes(type(initial))
        )
        try:
            return self.context.wait_for_condition(lambda state, _: check(state), config, name=name)
        except DurableOperationError as e:
            raise _engine_error(e) from e

    def remaining_seconds(self) -> float | None:
        return self.execution_deadline - self.clock.now()

    def log(self, level: int, message: str, **fields: Any) -> None:
        # A replay re-runs the code between steps: log each line once, as the SDK's logger does.
        if self.context.is_replaying():
            return
        self.logger.log(level, message, extra=fields)


def _engine_error(error: DurableOperationError) -> Exception:
    """The engine's own error type back from a failed step or check.

    The SDK checkpoints a failure as (type name, message) and raises a
    StepError / WaitForConditionError built from it, the same on first run and
    on replay. The engine tells "incomplete" (TimeBudgetExhausted) from
    "failed" by type, so rebuild ours; anything else stays as the SDK raised it.
    """
    module, _, name = (error.error_type or "").rpartition(".")
    ours = errors.rebuilt(name, error.message or name) if module == errors.__name__ else None
    return ours or error


def _execution_budget(context: DurableContext, clock: Clock, timeout: int) -> dict[str, float]:
    """When this execution must be done by, from its own start (an Event invocation may wait in a queue)."""
    started = clock.now()
    try:
        operation = context.state.get_execution_operation()
        if operation is not None and operation.start_timestamp is not None:
            started = min(started, operation.start_timestamp.timestamp())
    except (AttributeError, DurableExecutionsError):
        pass
    deadline = started + timeout
    return {"started": started, "deadline": deadline, "remaining": deadline - clock.now()}


OUT_OF_TIME_HINT = (
    "start a new execution with that event (the lock and the expired-lock repair make that safe), "
    "or redeploy with a longer DurableExecutionTimeout"
)


@dataclass
class DurableHost:
    """A durable execution: steps are checkpoints, the deadline is the execution's, and the result is bounded."""

    context: DurableContext
    clock: Clock
    env: Environment
    session: Any = None
    publishes_metrics: bool = True
    # Nobody watches a durable execution's progress in its process: status and EventBridge say it.
    progress: None = None

    @property
    def execution_arn(self) -> str:
        return str(self.context.execution_context.durable_execution_arn)

    @property
    def owner_id(self) -> str:
        return _owner_id(self.execution_arn)

    @property
    def requested_by(self) -> str:
        return self.owner_id

    @property
    def log_fields(self) -> Mapping[str, Any]:
        request_id = getattr(self.context.lambda_context, "aws_request_id", None)
        return {"execution_arn": self.execution_arn, "request_id": request_id}

    def connect(self, config: AppConfig) -> tuple[Clients, str | None]:
        session, owner = self.session, self.owner_id
        clients = Clients(
            lambda: session or get_aws_session(config.aws, session_suffix=owner[:32], env=self.env.aws),
            # The lock table lives in the function's own account, also when role_arn reaches another one.
            lambda: session or get_aws_session(replace(config.aws, role_arn=None, external_id=None), env=self.env.aws),
        )
        return clients, session.region_name if session is not None else resolve_region(config.aws, self.env.aws)

    def policy(self, request: RecycleRequest, config: AppConfig, clients: Clients) -> TimePolicy:
        timeout = self.env.execution_timeout_seconds
        budget = self.context.step(
            lambda _: _execution_budget(self.context, self.clock, timeout),
            name="execution budget",
            config=StepConfig(retry_strategy=RetryPresets.none(), serdes=SERDES),
        )
        runtime = DurableRuntime(self.context, self.clock, budget["deadline"], logger)
        runtime.log(
            logging.INFO,
            f"Durable recycle {_execution_name(self.execution_arn)} started",
            deadline=budget["deadline"],
            execution_timeout=timeout,
        )
        run = RunPolicy(
            lock_ttl_seconds=lock_ttl_seconds(config.recycle, request),
            batch_fit=durable_batch_seconds,
            admission=lambda preflight, selection: check_duration_bound(
                preflight, selection, request, config.recycle, budget["remaining"], timeout
            ),
            out_of_time_hint=OUT_OF_TIME_HINT,
        )
        return TimePolicy(runtime=runtime, run=run)

    def stamp(self, report: RecycleReport) -> None:
        # An execution spans many invocations and log streams: point at the execution instead.
        report.request_id = self.execution_arn
        report.log_group = getattr(self.context.lambda_context, "log_group_name", None)
        report.log_stream = None

    def notify(self, report: RecycleReport, config: AppConfig, clients: Clients) -> NotificationResult:
        return _notify_once(self.context, report.to_dict(), config, clients)

    def finish(self, report: RecycleReport, runtime: Runtime) -> dict[str, Any]:
        result = report.to_dict()
        # The execution FAILS with RecycleNotCompleted's message, after the restore and the email.
        raise_if_not_completed(result, runtime)
        return bounded_result(result)


def run_durable_recycle(
    event: Any,
    context: DurableContext,
    *,
    clock: Clock,
    session: Any = None,
    config: AppConfig | None = None,
    environment: Environment | None = None,
) -> dict[str, Any]:
    """One durable recycle: validate, bound, run the engine, notify once, report (or fail)."""
    env = environment or Environment.from_env()
    logs.configure(env.log_level, lambda_json=env.lambda_json_logs, in_lambda=env.in_lambda)
    if is_fleet_event(event):
        fleet = parse_fleet_event(event)  # ConfigError before any AWS call
        host = DurableHost(context, clock, env, session)
        return dict(run_durable_fleet(host, fleet, config or get_config(env), env, _notify_once))
    try:
        request = parse_event(event)  # ConfigError before any AWS call
    except ConfigError as e:
        _mail_refused_event(event, e, DurableHost(context, clock, env, session), config)
        raise
    host = DurableHost(context, clock, env, session)
    return run(host, request, config or get_config(env), env)


def _mail_refused_event(event: Any, error: ConfigError, host: DurableHost, config: AppConfig | None) -> None:
    """A schedule may start this function too: its bad event is mailed as REFUSED when input.json loads."""
    loaded = config or config_or_none(host.env)
    if loaded is None:
        return
    report = refused_event_report(event, error, {"request_id": host.execution_arn}, host.clock.now())
    session = host.session
    clients = Clients(lambda: session or get_aws_session(loaded.aws, env=host.env.aws), lambda: session)
    report.notification = logs.mask_data(_notify_once(host.context, report.to_dict(), loaded, clients))
    host.context.step(lambda _: published(report), name="metrics")
    host.context.step(lambda _: published_refusal(report, loaded, session, host.env), name="event final")


def _notify_once(
    context: DurableContext, report: Mapping[str, Any], config: AppConfig, clients: Clients
) -> NotificationResult:
    """Send the report in one step that is never retried, so the email goes out at most once."""
    at_most_once = StepConfig(retry_strategy=RetryPresets.none(), step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY)
    try:
        return context.step(
            lambda _: notify(report, config.notification, clients.session), name="notify", config=at_most_once
        )
    except DurableOperationError as e:
        # notify() never raises: this is an invocation that died while sending.
        detail = f"the notification step was interrupted and is not repeated: {e.message}"
        return {"status": "failed", "recipients": 0, "detail": detail}


def _owner_id(execution_arn: str) -> str:
    """The lock owner: the same in every invocation of this execution, different in any other.

    A hash of the whole execution ARN (unique), then the execution name for the
    operator reading the lock item or ``action: status``.
    """
    digest = hashlib.sha256(execution_arn.encode()).hexdigest()[:16]
    return f"durable:{digest}:{_execution_name(execution_arn)}"


def _execution_name(execution_arn: str) -> str:
    parsed = DurableExecutionArn.from_arn(execution_arn)
    return parsed.execution_name if parsed else execution_arn


def build_handler(
    *,
    clock: Clock | None = None,
    session: Any = None,
    config: AppConfig | None = None,
    environment: Environment | None = None,
) -> Callable[[Any, Any], Any]:
    """The durable handler; tests pass a virtual clock, a simulated session, a config and an environment."""

    def handler(event: Any, context: DurableContext) -> dict[str, Any]:
        return run_durable_recycle(
            event, context, clock=clock or SystemClock(), session=session, config=config, environment=environment
        )

    return durable_execution(handler)


# What Lambda calls (through durable_function.py): the handler with the real clock, session and config.
lambda_handler = build_handler()
