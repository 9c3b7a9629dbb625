"""What the email says about a report: the outcome, the sections, and the readable forms of its values.

recycler.notification.render lays these out as the subject, headers and the
text and HTML bodies.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from recycler.notification.settings import Outcome

# Report statuses that count as "success" for notify_on. Anything else,
# including a missing or unknown status, is treated as a failure.
# A cancel is what the operator asked for, and a hand-off goes on in the durable function: neither is a failure.
SUCCESS_STATUSES = frozenset({"succeeded", "dry_run", "cancelled", "handed_off"})


# The heading's short status; the Outcome row gives the detail (_describe_outcome).
HEADLINES: dict[str, str] = {
    "succeeded": "succeeded",
    "dry_run": "dry run",
    "failed": "FAILED",
    "incomplete": "INCOMPLETE",
    "cancelled": "CANCELLED",
    "handed_off": "handed off to the long-running function",
    "refused": "REFUSED",
}

# What stopped a run, in words, by the error's type (the report keeps the type in error_type).
_CAUSES: dict[str, str] = {
    "ReplacementFailed": "stopped because a replacement task failed to start",
    "ReplacementTimeout": "stopped because no replacement became healthy in time",
    "PlacementFailed": "stopped because ECS could not place a replacement task",
    "AlarmTriggered": "stopped because a gating alarm went into ALARM",
    "AwsCallFailed": "stopped because an AWS call failed",
    "RestoreFailed": "stopped because the service could not be put back",
    "LockLost": "stopped because another run took the service over",
    "LockCorrupt": "refused because the lock item holds values this tool never writes",
    "ServiceNotFound": "refused because the cluster or service was not found",
    "PreflightError": "refused before any change: the service cannot be recycled as it is",
    "ConfigError": "refused because the event or the configuration is invalid",
    "LockHeld": "refused because another run holds the service's lock",
}


# Application Auto Scaling's SuspendedState flags, as the email names them.
_SCALING_FLAGS: tuple[tuple[str, str], ...] = (
    ("DynamicScalingInSuspended", "scale-in"),
    ("DynamicScalingOutSuspended", "scale-out"),
    ("ScheduledScalingSuspended", "scheduled scaling"),
)


# An AWS region, for the console link: ASCII-only and used with fullmatch, so no Unicode digit passes.
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]", re.ASCII)


def outcome_of(report: Mapping[str, Any]) -> Outcome:
    """Map the report's status to a notify_on outcome.

    succeeded and dry_run are a "success"; failed, incomplete and anything
    unknown or missing are a "failure".
    """
    return "success" if report.get("status") in SUCCESS_STATUSES else "failure"


@dataclass(frozen=True)
class Sections:
    facts: list[tuple[str, str]]
    error: str | None
    restore_actions: list[str]
    restored_target: list[tuple[str, str]]  # label, value; empty when the report has none
    tasks: list[tuple[str, str, str, str]]  # index, old id, new id, seconds
    remaining_title: str
    remaining: list[str]
    stopped_not_replaced: list[str]  # "id: why", each stopped by the run with no replacement serving
    skipped: list[str]  # "id: why"
    external_changes: list[str]
    logs: list[tuple[str, str]]
    logs_url: str | None


def build_sections(report: Mapping[str, Any]) -> Sections:
    status = report.get("status")
    recycled = as_list(report.get("tasks_recycled"))
    remaining = [_short_id(t) for t in as_list(report.get("tasks_remaining"))]
    total = report.get("task_total")
    total_text = str(total) if isinstance(total, int) else "unknown"

    facts = [
        ("Cluster", as_text(report.get("cluster"), "unknown")),
        ("Service", as_text(report.get("service"), "unknown")),
        ("Region", as_text(report.get("region"), "unknown")),
        ("Account", as_text(report.get("account"), "unknown")),
        ("Outcome", _describe_outcome(report)),
        (
            "Original desired count",
            as_text(report.get("original_desired_count"), "unknown"),
        ),
        ("Tasks recycled", "none: nothing to recycle" if total == 0 else f"{len(recycled)} of {total_text}"),
        ("Duration", format_seconds(report.get("duration_seconds"))),
        ("Service restored", _describe_restored(report.get("restored"))),
        ("Started at", as_text(report.get("started_at"), "unknown")),
    ]

    tasks: list[tuple[str, str, str, str]] = []
    for position, entry in enumerate(recycled, start=1):
        item = entry if isinstance(entry, Mapping) else {}
        index = item.get("index")
        tasks.append(
            (
                str(index) if isinstance(index, int) else str(position),
                _short_id(item.get("old_task_arn")),
                _short_id(item.get("new_task_arn")),
                format_seconds(item.get("seconds")),
            )
        )

    logs = [
        (label, as_text(report.get(key)))
        for label, key in (
            ("Log group", "log_group"),
            ("Log stream", "log_stream"),
            ("Request id", "request_id"),
        )
        if report.get(key)
    ]
    error = report.get("error")
    return Sections(
        facts=facts,
        error=as_text(error) if error else None,
        restore_actions=[as_text(a) for a in as_list(report.get("restore_actions"))],
        restored_target=describe_restored_target(report.get("restored_target")),
        tasks=tasks,
        remaining_title=("Tasks that would be recycled" if status == "dry_run" else "Tasks not recycled"),
        remaining=remaining,
        stopped_not_replaced=_noted(report.get("tasks_stopped_not_replaced")),
        skipped=_noted(report.get("tasks_skipped")),
        external_changes=[as_text(c) for c in as_list(report.get("external_changes"))],
        logs=logs,
        logs_url=_logs_url(report),
    )


def headline(report: Mapping[str, Any]) -> str:
    """The heading: a short status line naming the service."""
    status = report.get("status")
    word = HEADLINES.get(status, "UNKNOWN OUTCOME") if isinstance(status, str) else "UNKNOWN OUTCOME"
    where = f"{as_text(report.get('cluster'), 'unknown')}/{as_text(report.get('service'), 'unknown')}"
    return f"ECS service task recycle {word}: {where}"


def _describe_outcome(report: Mapping[str, Any]) -> str:
    """The Outcome row: what happened, in a sentence the heading does not repeat."""
    status = report.get("status")
    if status == "succeeded":
        recycled, total = len(as_list(report.get("tasks_recycled"))), report.get("task_total")
        if total == 0:
            return _nothing_to_recycle(report)
        if isinstance(total, int) and recycled < total:
            return f"{recycled} of {total} tasks were replaced; the others were skipped (listed below)"
        return "every task was replaced"
    if status == "dry_run":
        plan = report.get("plan")
        count = len(as_list(plan.get("tasks_to_stop") if isinstance(plan, Mapping) else report.get("tasks_remaining")))
        refusals = [as_text(e.get("problem")) for e in as_list(report.get("would_refuse")) if isinstance(e, Mapping)]
        refused = f"; but the real run would be refused: {'; '.join(refusals)}" if refusals else ""
        if not count:
            return f"nothing was changed; there is nothing to recycle{refused}"
        return f"nothing was changed; {count} task(s) would be recycled{refused}"
    if status == "refused":
        holder = report.get("lock_holder")
        if isinstance(holder, Mapping):
            return (
                f"refused: another run ({as_text(holder.get('owner'), 'unknown')}, phase "
                f"{as_text(holder.get('phase'), 'unknown')}) holds the service's lock until "
                f"{as_text(holder.get('expires_at'), 'unknown')}; nothing was changed"
            )
        return "refused before any change; see the error below"
    if status == "failed":
        error_type = report.get("error_type")
        cause = _CAUSES.get(as_text(error_type), "the run stopped on an unexpected error")
        if not error_type:
            cause = "the run stopped"
        return f"{cause}; see the error below" if report.get("error") else f"{cause}; no error was recorded"
    if status == "incomplete":
        count = len(as_list(report.get("tasks_remaining")))
        return f"the time budget ran out with {count} task(s) remaining"
    if status == "cancelled":
        count = len(as_list(report.get("tasks_remaining")))
        return f"an operator cancelled it; no further task was stopped, {count} task(s) remaining"
    if status == "handed_off":
        handed = report.get("handed_off") or {}
        name = as_text(handed.get("execution_name"), "unknown") if isinstance(handed, Mapping) else "unknown"
        return f"too long for one invocation: the durable execution {name} does the recycle"
    return f"the report's status is {as_text(status, 'missing')!r}, which this version does not know"


def _nothing_to_recycle(report: Mapping[str, Any]) -> str:
    """A run that found no task to recycle, and why (the skipped tasks' notes say)."""
    notes = [as_text(t.get("note")) for t in as_list(report.get("tasks_skipped")) if isinstance(t, Mapping)]
    young = sum("min_task_age_seconds" in note for note in notes)
    reasons = [f"{young} younger than min_task_age_seconds"] if young else []
    if len(notes) > young:
        reasons.append(f"{len(notes) - young} left alone (listed below)")
    later = len(as_list(report.get("tasks_remaining")))
    if later:
        reasons.append(f"{later} beyond max_tasks")
    return "there was nothing to recycle: " + ("; ".join(reasons) if reasons else "the service runs no task")


def _noted(entries: Any) -> list[str]:
    """Task entries as "id: why"."""
    noted = []
    for entry in as_list(entries):
        item = entry if isinstance(entry, Mapping) else {}
        note = as_text(item.get("note"))
        noted.append(f"{_short_id(item.get('old_task_arn'))}: {note}" if note else _short_id(item.get("old_task_arn")))
    return noted


def describe_restored_target(target: Any) -> list[tuple[str, str]]:
    """The report's structured restored_target as label/value rows; [] when absent or not a mapping."""
    if not isinstance(target, Mapping):
        return []
    suspended = target.get("suspended")
    flags = suspended if isinstance(suspended, Mapping) else {}

    def capacity(key: str) -> str:
        value = target.get(key)
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else "unknown"

    rows = [("Min capacity", capacity("min_capacity")), ("Max capacity", capacity("max_capacity"))]
    for key, label in _SCALING_FLAGS:
        value = flags.get(key)
        rows.append((label.capitalize(), "suspended" if value is True else "active" if value is False else "unknown"))
    return rows


def _describe_restored(restored: Any) -> str:
    if restored is True:
        return "yes"
    if restored is False:
        return "NO - the service may still be scaled up or have scaling suspended; check it"
    return "nothing needed restoring"


def _logs_url(report: Mapping[str, Any]) -> str | None:
    """A CloudWatch console link, for the standard partition only."""
    region, group = report.get("region"), report.get("log_group")
    if not (isinstance(region, str) and _REGION.fullmatch(region) and isinstance(group, str)):
        return None
    if region.startswith(("cn-", "us-gov-", "us-iso")) or not group:
        return None

    def enc(value: str) -> str:
        # The console double-encodes path parts, with "$25" standing for "%".
        return quote(value, safe="").replace("%", "$25")

    url = (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{enc(group)}"
    )
    stream = report.get("log_stream")
    if isinstance(stream, str) and stream:
        url += f"/log-events/{enc(stream)}"
    return url


def _short_id(arn: Any) -> str:
    text = as_text(arn, "unknown")
    return text.rsplit("/", 1)[-1] or text


def format_seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "unknown"
    seconds = float(value)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{seconds:.1f} s ({int(minutes)} min {rest:02.0f} s)"


def as_text(value: Any, default: str = "") -> str:
    """A report value as text: ``default`` for None (missing), else its str()."""
    return default if value is None else str(value)


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def html_opening(
    title: str, status: Any, heading: str, facts: Sequence[tuple[str, str]], error: str | None
) -> list[str]:
    """The start of an HTML report: its title, the coloured heading, the facts table, and the error."""

    def e(value: Any) -> str:
        return html.escape(str(value), quote=True)

    colour = "#1a7f37" if status in SUCCESS_STATUSES else "#cf222e"
    parts = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{e(title)}</title></head>',
        '<body style="font-family:sans-serif;font-size:14px">',
        f'<h2 style="color:{colour}">{e(heading)}</h2>',
        '<table cellpadding="3">',
    ]
    parts += [f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts]
    parts.append("</table>")
    if error:
        parts += ["<h3>Error</h3>", f"<pre>{e(error)}</pre>"]
    return parts
