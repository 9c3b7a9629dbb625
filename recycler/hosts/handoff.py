"""Hand-off: a plan too long for this plain invocation starts the long-running (durable) function instead.

The template tells the plain function the durable alias (DURABLE_FUNCTION_ALIAS_ARN).
Before anything is changed, if the plan's estimate does not fit the time this
invocation has left, the plain function invokes the alias asynchronously with a
deterministic DurableExecutionName (a retry of the same invocation starts no
second execution) and returns ``handed_off`` with how to follow it. The event's
``hand_off: false`` refuses that: the run then does what fits and reports
``incomplete``, with the event that carries on.

A fleet too long for the invocation is handed off whole (FleetHandOff): one durable execution runs every
service, with the SDK's map, under a name of the cluster, the selection and this invocation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from recycler.aws.gateway import error_code, start_execution
from recycler.hosts.execution_name import durable_execution_name, durable_fleet_execution_name
from recycler.model.errors import AwsCallFailed
from recycler.model.fleet import FleetRequest
from recycler.model.request import RecycleRequest
from recycler.run.budget import PlanFit
from recycler.run.ports import HandedOff, HandOffDecision

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# Lambda's answer to a second start under one DurableExecutionName (a retried invocation).
ALREADY_STARTED = "DurableExecutionAlreadyStartedException"


@dataclass
class HandOff:
    """Decides whether to hand the run to the durable alias, and starts it there."""

    lambda_client: LambdaClient
    alias_arn: str
    request: RecycleRequest
    # Whose invocation this is: the same caller gets the same execution name.
    invocation_id: str
    # The event as the durable function should get it.
    event: dict[str, Any]

    def decide(self, fit: PlanFit) -> HandOffDecision:
        """Hand off a plan that does not fit this invocation, unless the event says hand_off false."""
        return HandOffDecision(
            would_hand_off=bool(self.request.hand_off and not fit.fits),
            estimated_seconds=fit.estimated_seconds,
            available_seconds=fit.available_seconds,
            durable_alias=self.alias_arn,
            execution_name=self.execution_name(),
        )

    def execution_name(self) -> str:
        run_key = hashlib.sha256(self.invocation_id.encode()).hexdigest()[:12]
        return durable_execution_name(self.request.cluster, self.request.service, run_key)

    def start(self, run_started_at: float) -> HandedOff:
        """Invoke the alias asynchronously (InvocationType Event) under the deterministic execution name.

        The execution gets this run's cut-off (its start, or the event's own if earlier), as a carry-on
        would: what this run's chain started before the hand-off stays out of it, and so does any task
        the execution starts, in every event it hands back.
        """
        return started_or_following(self, self.request.carry_on_started_before(run_started_at))

    def owns(self, lock_owner: str | None) -> bool:
        """Whether a lock's owner is the durable execution this invocation starts (recycler.hosts.durable names it)."""
        return (
            bool(lock_owner)
            and str(lock_owner).startswith("durable:")
            and (str(lock_owner).rsplit(":", 1)[-1] == self.execution_name())
        )

    def following(self, already_started: bool) -> HandedOff:
        """The report's handed_off: the execution, and how to follow it."""
        status = {"cluster_name": self.request.cluster, "service_name": self.request.service, "action": "status"}
        return handed_off(self.alias_arn, self.execution_name(), status, already_started)


@dataclass
class FleetHandOff:
    """Hands a whole fleet too long for this invocation to the durable alias: one execution for every service."""

    lambda_client: LambdaClient
    alias_arn: str
    request: FleetRequest
    invocation_id: str
    # The fleet's event as the durable function should get it (only read).
    event: Mapping[str, Any]

    def execution_name(self) -> str:
        run_key = hashlib.sha256(self.invocation_id.encode()).hexdigest()[:12]
        return durable_fleet_execution_name(
            self.request.template.cluster_name,
            services=self.request.names,
            service_tags=self.request.tags,
            run_key=run_key,
        )

    def start(self, run_started_at: float) -> HandedOff:
        """Invoke the alias asynchronously under the fleet's execution name, before any service was changed."""
        return started_or_following(self, self.request.template.carry_on_started_before(run_started_at))

    def following(self, already_started: bool) -> HandedOff:
        status = {"cluster_name": self.request.cluster, **self.request.selection(), "action": "status"}
        return handed_off(self.alias_arn, self.execution_name(), status, already_started)


def handed_off(alias_arn: str, name: str, status_event: Mapping[str, Any], already_started: bool) -> HandedOff:
    """The report's handed_off: the execution, and how to follow it (its status event, to either function)."""
    return HandedOff(
        execution_name=name,
        durable_alias=alias_arn,
        already_started=already_started,
        follow=(
            f"aws lambda list-durable-executions-by-function --function-name {alias_arn} "
            f"--durable-execution-name {name}; or invoke either function with {json.dumps(status_event)}"
        ),
    )


def started_or_following(hand_off: HandOff | FleetHandOff, cut_off: str) -> HandedOff:
    """Start the execution with the event, never handed off again and with this run's cut-off; a retry of this
    invocation (the name already started) follows the first one's."""
    payload = json.dumps({**hand_off.event, "hand_off": False, "started_before": cut_off})
    try:
        status_code = start_execution(
            hand_off.lambda_client, hand_off.alias_arn, hand_off.execution_name(), payload.encode()
        )
    except AwsCallFailed as e:
        if error_code(e) != ALREADY_STARTED:
            raise
        return hand_off.following(already_started=True)
    return replace(hand_off.following(already_started=False), status_code=status_code)
