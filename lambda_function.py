"""Lambda entry point (and local CLI) for ecs-task-recycle.

The handler is thin: validate the event and input.json, build the session,
run the engine, notify, return the report (recycler.invocation). Any outcome
other than full success is raised after the restore and the notification, so
Lambda's Errors metric and on-failure destinations see it.

Run locally against real AWS: ``python lambda_function.py --cluster C --service S --dry-run``
(recycler.cli).
"""

from __future__ import annotations

import sys
from typing import Any

from recycler import logs
from recycler.cli import main
from recycler.errors import ConfigError
from recycler.invocation import (
    NOT_COMPLETED,
    RecycleNotCompleted,
    get_config,
    logger,
    mail_refused_event,
    new_owner_id,
    run_recycle,
)
from recycler.request import parse_event

__all__ = ["lambda_handler", "main"]


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


if __name__ == "__main__":
    sys.exit(main())
