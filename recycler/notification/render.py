"""The email for a report: subject, headers and the plain-text and HTML bodies.

``render_message`` turns a report into a ``multipart/alternative`` email. It is
pure: no network, no AWS, no secrets. ``outcome_of`` says whether a report is a
"success" or a "failure" for notify_on.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import quote

from recycler.notification.addresses import unsafe_header_char
from recycler.notification.errors import UnsafeHeaderError
from recycler.notification.settings import NotificationConfig, Outcome

# Report statuses that count as "success" for notify_on. Anything else,
# including a missing or unknown status, is treated as a failure.
_SUCCESS_STATUSES = frozenset({"succeeded", "dry_run"})
_SUBJECT_MARKERS: dict[str, str | None] = {
    "succeeded": None,
    "dry_run": "DRY RUN",
    "failed": "FAILED",
    "incomplete": "INCOMPLETE",
}
# The heading's short status; the Outcome row gives the detail (_describe_outcome).
_HEADLINES: dict[str, str] = {
    "succeeded": "succeeded",
    "dry_run": "dry run",
    "failed": "FAILED",
    "incomplete": "INCOMPLETE",
}
# Application Auto Scaling's SuspendedState flags, as the email names them.
_SCALING_FLAGS: tuple[tuple[str, str], ...] = (
    ("DynamicScalingInSuspended", "scale-in"),
    ("DynamicScalingOutSuspended", "scale-out"),
    ("ScheduledScalingSuspended", "scheduled scaling"),
)
# The engine's restore action for the scalable target, e.g.
# "scalable target Min=2 Max=10 DynamicScalingInSuspended=False, ...".
_TARGET_ACTION = re.compile(
    r"scalable target Min=(?P<min>[0-9]+) Max=(?P<max>[0-9]+) (?P<flags>[A-Za-z=, ]*)", re.ASCII
)

# An AWS region, for the console link: ASCII-only and used with fullmatch, so no Unicode digit passes.
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]", re.ASCII)


def outcome_of(report: Mapping[str, Any]) -> Outcome:
    """Map the report's status to a notify_on outcome.

    succeeded and dry_run are a "success"; failed, incomplete and anything
    unknown or missing are a "failure".
    """
    return "success" if report.get("status") in _SUCCESS_STATUSES else "failure"


def render_subject(report: Mapping[str, Any], config: NotificationConfig, now: datetime | None = None) -> str:
    """``{prefix} | [FAILED | INCOMPLETE | DRY RUN |] {subject} | {YYYY-MM-DD}``.

    The date is ``now`` (the send time, in UTC), the same clock as the Date header.
    """
    status = report.get("status")
    marker = "UNKNOWN OUTCOME"
    if isinstance(status, str) and status in _SUBJECT_MARKERS:
        marker = _SUBJECT_MARKERS[status] or ""
    parts = [
        config.subject_prefix,
        marker,
        config.email_subject,
        (now or datetime.now(UTC)).astimezone(UTC).date().isoformat(),
    ]
    return " | ".join(p for p in parts if p)


def render_message(
    report: Mapping[str, Any],
    config: NotificationConfig,
    now: datetime | None = None,
) -> EmailMessage:
    """Build the email for ``report``. Pure: no network, no AWS, no secrets.

    Raises UnsafeHeaderError when a value bound for a header (from the config or the
    report) holds CR, LF or another control character.
    """
    now = now or datetime.now(UTC)
    cluster = as_text(report.get("cluster"))
    service = as_text(report.get("service"))
    status = as_text(report.get("status"))

    message = EmailMessage()
    _set_header(message, "Subject", render_subject(report, config, now))
    _set_header(message, "From", config.from_email)
    _set_header(message, "To", ", ".join(config.to))
    if config.cc:
        _set_header(message, "Cc", ", ".join(config.cc))
    # Bcc is deliberately never a header: those recipients are envelope-only.
    _set_header(message, "Date", format_datetime(now))
    _set_header(message, "Message-ID", make_msgid("ecs-recycle", domain=_domain(config)))
    # RFC 3834: an automated message; auto-responders should not reply.
    _set_header(message, "Auto-Submitted", "auto-generated")
    # Stable machine-readable headers for inbox rules.
    _set_header(message, "X-ECS-Recycle-Status", status)
    _set_header(message, "X-ECS-Recycle-Cluster", cluster)
    _set_header(message, "X-ECS-Recycle-Service", service)

    sections = _build_sections(report)
    message.set_content(_render_text(report, sections))
    message.add_alternative(_render_html(report, sections), subtype="html")
    return message


def _set_header(message: EmailMessage, name: str, value: str) -> None:
    if unsafe_header_char(value):
        raise UnsafeHeaderError(
            f"refusing to build the {name} header: the value contains CR, LF or "
            "another control character (possible header injection)"
        )
    message[name] = value


def _domain(config: NotificationConfig) -> str:
    return config.envelope_sender.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class _Sections:
    facts: list[tuple[str, str]]
    error: str | None
    restore_actions: list[str]
    restored_target: list[tuple[str, str]]  # label, value; empty when the report has none
    tasks: list[tuple[str, str, str, str]]  # index, old id, new id, seconds
    remaining_title: str
    remaining: list[str]
    external_changes: list[str]
    logs: list[tuple[str, str]]
    logs_url: str | None


def _build_sections(report: Mapping[str, Any]) -> _Sections:
    status = report.get("status")
    recycled = _list(report.get("tasks_recycled"))
    remaining = [_short_id(t) for t in _list(report.get("tasks_remaining"))]
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
        ("Tasks recycled", f"{len(recycled)} of {total_text}"),
        ("Duration", _format_seconds(report.get("duration_seconds"))),
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
                _format_seconds(item.get("seconds")),
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
    return _Sections(
        facts=facts,
        error=as_text(error) if error else None,
        restore_actions=[_describe_restore_action(as_text(a)) for a in _list(report.get("restore_actions"))],
        restored_target=_describe_restored_target(report.get("restored_target")),
        tasks=tasks,
        remaining_title=("Tasks that would be recycled" if status == "dry_run" else "Tasks not recycled"),
        remaining=remaining,
        external_changes=[as_text(c) for c in _list(report.get("external_changes"))],
        logs=logs,
        logs_url=_logs_url(report),
    )


def _headline(report: Mapping[str, Any]) -> str:
    """The heading: a short status line naming the service."""
    status = report.get("status")
    word = _HEADLINES.get(status, "UNKNOWN OUTCOME") if isinstance(status, str) else "UNKNOWN OUTCOME"
    where = f"{as_text(report.get('cluster'), 'unknown')}/{as_text(report.get('service'), 'unknown')}"
    return f"ECS service task recycle {word}: {where}"


def _describe_outcome(report: Mapping[str, Any]) -> str:
    """The Outcome row: what happened, in a sentence the heading does not repeat."""
    status = report.get("status")
    if status == "succeeded":
        return "every task was replaced"
    if status == "dry_run":
        count = len(_list(report.get("tasks_remaining")))
        return f"nothing was changed; {count} task(s) would be recycled"
    if status == "failed":
        error_type = report.get("error_type")
        cause = f"stopped by {as_text(error_type)}" if error_type else "the run stopped"
        return f"{cause}; see the error below" if report.get("error") else f"{cause}; no error was recorded"
    if status == "incomplete":
        count = len(_list(report.get("tasks_remaining")))
        return f"the time budget ran out with {count} task(s) remaining"
    return f"the report's status is {as_text(status, 'missing')!r}, which this version does not know"


def _describe_restore_action(action: str) -> str:
    """One restore action in words; the engine's scalable-target line is spelt out, any other kept as is."""
    match = _TARGET_ACTION.fullmatch(action)
    if not match:
        return action
    flags: dict[str, bool] = {}
    for item in match.group("flags").split(","):
        name, _, value = item.strip().partition("=")
        if value in ("True", "False"):
            flags[name] = value == "True"
    return f"scalable target back to Min {match.group('min')}, Max {match.group('max')}; {_scaling_state(flags)}"


def _scaling_state(suspended: Mapping[str, Any]) -> str:
    """E.g. "scale-in suspended; scale-out and scheduled scaling active"."""
    groups: dict[str, list[str]] = {"suspended": [], "active": [], "in an unknown state": []}
    for key, label in _SCALING_FLAGS:
        value = suspended.get(key)
        state = "suspended" if value is True else "active" if value is False else "in an unknown state"
        groups[state].append(label)
    return "; ".join(f"{_join_words(labels)} {state}" for state, labels in groups.items() if labels)


def _join_words(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _describe_restored_target(target: Any) -> list[tuple[str, str]]:
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


def _render_text(report: Mapping[str, Any], s: _Sections) -> str:
    width = max(len(label) for label, _ in s.facts) + 1
    lines = [_headline(report), ""]
    lines += [f"{label + ':':<{width}} {value}" for label, value in s.facts]
    if s.error:
        lines += ["", "Error:", f"  {s.error}"]
    if s.restore_actions or s.restored_target:
        lines += ["", "Restored:"] + [f"  - {a}" for a in s.restore_actions]
    if s.restored_target:
        target_width = max(len(label) for label, _ in s.restored_target) + 1
        lines += ["", "Scalable target after the restore:"]
        lines += [f"  {label + ':':<{target_width}} {value}" for label, value in s.restored_target]
    if s.tasks:
        lines += ["", "Tasks recycled (old -> new):"]
        lines += [f"  {i}. {old} -> {new} ({secs})" for i, old, new, secs in s.tasks]
    if s.remaining:
        lines += ["", f"{s.remaining_title}:"] + [f"  - {t}" for t in s.remaining]
    if s.external_changes:
        lines += ["", "Changes made by others during the run:"]
        lines += [f"  - {c}" for c in s.external_changes]
    if s.logs or s.logs_url:
        lines += ["", "Logs:"] + [f"  {label}: {value}" for label, value in s.logs]
        if s.logs_url:
            lines.append(f"  {s.logs_url}")
    return "\n".join(lines) + "\n"


def _render_html(report: Mapping[str, Any], s: _Sections) -> str:
    e = _html
    status = report.get("status")
    colour = "#1a7f37" if status in _SUCCESS_STATUSES else "#cf222e"
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>ECS service task recycle</title></head>',
        '<body style="font-family:sans-serif;font-size:14px">',
        f'<h2 style="color:{colour}">{e(_headline(report))}</h2>',
        '<table cellpadding="3">',
    ]
    parts += [f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in s.facts]
    parts.append("</table>")
    if s.error:
        parts += ["<h3>Error</h3>", f"<pre>{e(s.error)}</pre>"]
    if s.restore_actions or s.restored_target:
        parts.append("<h3>Restored</h3>")
    if s.restore_actions:
        parts.append(_html_list(s.restore_actions))
    if s.restored_target:
        parts += ["<p>Scalable target after the restore:</p>", '<table cellpadding="3">']
        parts += [f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in s.restored_target]
        parts.append("</table>")
    if s.tasks:
        parts += [
            "<h3>Tasks recycled</h3>",
            '<table cellpadding="3"><tr><th>#</th><th align=left>Old task</th>'
            "<th align=left>New task</th><th align=left>Time</th></tr>",
        ]
        parts += [
            f"<tr><td>{e(i)}</td><td><code>{e(old)}</code></td><td><code>{e(new)}</code></td><td>{e(secs)}</td></tr>"
            for i, old, new, secs in s.tasks
        ]
        parts.append("</table>")
    if s.remaining:
        parts += [
            f"<h3>{e(s.remaining_title)}</h3>",
            _html_list(s.remaining, code=True),
        ]
    if s.external_changes:
        parts += [
            "<h3>Changes made by others during the run</h3>",
            _html_list(s.external_changes),
        ]
    if s.logs or s.logs_url:
        parts += ["<h3>Logs</h3>", '<table cellpadding="3">']
        parts += [f"<tr><th align=left>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in s.logs]
        parts.append("</table>")
        if s.logs_url:
            parts.append(f'<p><a href="{e(s.logs_url)}">Open the logs in CloudWatch</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_list(items: Sequence[str], code: bool = False) -> str:
    wrap = ("<code>", "</code>") if code else ("", "")
    inner = "".join(f"<li>{wrap[0]}{_html(i)}{wrap[1]}</li>" for i in items)
    return f"<ul>{inner}</ul>"


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


def _format_seconds(value: Any) -> str:
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


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []
