"""Hand-off: a plan too long for this plain invocation starts the long-running (durable) function instead.

The template tells the plain function the durable alias (DURABLE_FUNCTION_ALIAS_ARN).
Before anything is changed, if the plan's estimate does not fit the time this
invocation has left, the plain function invokes the alias asynchronously with a
deterministic DurableExecutionName (a retry of the same invocation starts no
second execution) and returns ``handed_off`` with how to follow it. The event's
``hand_off: false`` refuses that: the run then does what fits and reports
``incomplete``, with the event that carries on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recycler.aws import aws_errors, error_code
from recycler.errors import AwsCallFailed
from recycler.execution_name import durable_execution_name
from recycler.preflight import Preflight, plan_seconds
from recycler.request import RecycleRequest
from recycler.selection import Selection
from recycler.settings import RecycleSettings

HANDOFF_ENV = "DURABLE_FUNCTION_ALIAS_ARN"
# Lambda's answer to a second start under one DurableExecutionName (a retried invocation).
ALREADY_STARTED = "DurableExecutionAlreadyStartedException"


def plan_fits(
    preflight: Preflight,
    selection: Selection,
    request: RecycleRequest,
    settings: RecycleSettings,
    remaining: float | None,
) -> dict[str, Any]:
    """Whether the plan's estimate fits what this invocation has left after the restore's reserve.

    The same rule decides the hand-off and a dry run's time_budget check. No deadline (the CLI) always fits.
    """
    needed = plan_seconds(preflight, selection, request, settings)
    available = None if remaining is None else remaining - settings.restore_reserve_seconds
    return {
        "fits": available is None or needed <= available or not selection.batches,
        "estimated_seconds": round(needed),
        "available_seconds": None if available is None else round(available),
    }


@dataclass
class HandOff:
    """Decides whether to hand the run to the durable alias, and starts it there."""

    lambda_client: Any
    alias_arn: str
    request: RecycleRequest
    settings: RecycleSettings
    remaining_seconds: Callable[[], float | None]
    # Whose invocation this is: the same caller gets the same execution name.
    invocation_id: str
    # The event as the durable function should get it.
    event: dict[str, Any]

    def decide(self, preflight: Preflight, selection: Selection) -> dict[str, Any]:
        """Whether the plan fits this invocation; JSON, for the dry-run plan and the step."""
        fits = plan_fits(preflight, selection, self.request, self.settings, self.remaining_seconds())
        return {
            "would_hand_off": bool(self.request.hand_off and not fits["fits"]),
            "estimated_seconds": fits["estimated_seconds"],
            "available_seconds": fits["available_seconds"],
            "durable_alias": self.alias_arn,
            "execution_name": self.execution_name(),
        }

    def execution_name(self) -> str:
        run_key = hashlib.sha256(self.invocation_id.encode()).hexdigest()[:12]
        return durable_execution_name(self.request.cluster, self.request.service, run_key)

    def start(self, run_started_at: float) -> dict[str, Any]:
        """Invoke the alias asynchronously (InvocationType Event) under the deterministic execution name.

        The execution gets this run's cut-off (its start, or the event's own if earlier), as a carry-on
        would: what this run's chain started before the hand-off stays out of it, and so does any task
        the execution starts, in every event it hands back.
        """
        name = self.execution_name()
        cut_off = self.request.carry_on_started_before(run_started_at)
        payload = json.dumps({**self.event, "hand_off": False, "started_before": cut_off})
        try:
            with aws_errors("Invoke"):
                response = self.lambda_client.invoke(
                    FunctionName=self.alias_arn,
                    InvocationType="Event",
                    DurableExecutionName=name,
                    Payload=payload.encode(),
                )
        except AwsCallFailed as e:
            if error_code(e) != ALREADY_STARTED:
                raise
            # A retry of this invocation: the execution the first attempt started does the recycle.
            return self.following(already_started=True)
        return {**self.following(already_started=False), "status_code": response.get("StatusCode")}

    def owns(self, lock_owner: str | None) -> bool:
        """Whether a lock's owner is the durable execution this invocation starts (recycler.durable names it)."""
        return (
            bool(lock_owner)
            and str(lock_owner).startswith("durable:")
            and (str(lock_owner).rsplit(":", 1)[-1] == self.execution_name())
        )

    def following(self, already_started: bool) -> dict[str, Any]:
        """The report's handed_off: the execution, and how to follow it."""
        name = self.execution_name()
        return {
            "execution_name": name,
            "durable_alias": self.alias_arn,
            "already_started": already_started,
            "follow": (
                f"aws lambda list-durable-executions-by-function --function-name {self.alias_arn} "
                f"--durable-execution-name {name}; or invoke either function with "
                f'{{"cluster_name": "{self.request.cluster}", "service_name": "{self.request.service}", '
                f'"action": "status"}}'
            ),
        }
