"""The email for a report: subject, headers and the plain-text and HTML bodies.

``render_message`` turns a report into a ``multipart/alternative`` email. It is
pure: no network, no AWS, no secrets. ``outcome_of`` says whether a report is a
"success" or a "failure" for notify_on.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from recycler.notification.addresses import unsafe_header_char
from recycler.notification.content import (
    Sections,
    as_text,
    build_sections,
    headline,
    html_opening,
)
from recycler.notification.errors import UnsafeHeaderError
from recycler.notification.fleet_email import fleet_size, fleet_where, is_fleet, render_fleet_html, render_fleet_text
from recycler.notification.settings import NotificationConfig
from recycler.observability import logs

_SUBJECT_MARKERS: dict[str, str | None] = {
    "succeeded": "SUCCEEDED",
    "dry_run": "DRY RUN",
    "failed": "FAILED",
    "incomplete": "INCOMPLETE",
    "cancelled": "CANCELLED",
    "handed_off": "HANDED OFF",
    "refused": "REFUSED",
}


def render_subject(report: Mapping[str, Any], config: NotificationConfig, now: datetime | None = None) -> str:
    """``{prefix} | {STATUS} | {subject} | {cluster}/{service} | {YYYY-MM-DD}``.

    The service is named, for an inbox that many services feed; a fleet's is ``{cluster} (fleet: {counts})``.
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
        fleet_where(report)
        if is_fleet(report)
        else f"{as_text(report.get('cluster'), 'unknown')}/{as_text(report.get('service'), 'unknown')}",
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
    fleet = is_fleet(report)
    if fleet:
        # A fleet report gathers many services' reports: mask it whole, whoever built it.
        report = logs.mask_data(dict(report))
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
    if fleet:
        # One message for many services: the header says how many, the body names them.
        _set_header(message, "X-ECS-Recycle-Fleet", str(fleet_size(report)))
        message.set_content(render_fleet_text(report))
        message.add_alternative(render_fleet_html(report), subtype="html")
        return message
    _set_header(message, "X-ECS-Recycle-Service", service)

    sections = build_sections(report)
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


def _render_text(report: Mapping[str, Any], s: Sections) -> str:
    width = max(len(label) for label, _ in s.facts) + 1
    lines = [headline(report), ""]
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
    if s.stopped_not_replaced:
        lines += ["", "Stopped, not replaced:"] + [f"  - {t}" for t in s.stopped_not_replaced]
    if s.remaining:
        lines += ["", f"{s.remaining_title}:"] + [f"  - {t}" for t in s.remaining]
    if s.skipped:
        lines += ["", "Tasks skipped:"] + [f"  - {t}" for t in s.skipped]
    if s.external_changes:
        lines += ["", "Changes made by others during the run:"]
        lines += [f"  - {c}" for c in s.external_changes]
    if s.logs or s.logs_url:
        lines += ["", "Logs:"] + [f"  {label}: {value}" for label, value in s.logs]
        if s.logs_url:
            lines.append(f"  {s.logs_url}")
    return "\n".join(lines) + "\n"


def _render_html(report: Mapping[str, Any], s: Sections) -> str:
    e = _html
    parts = html_opening("ECS service task recycle", report.get("status"), headline(report), s.facts, s.error)
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
    if s.stopped_not_replaced:
        parts += ["<h3>Stopped, not replaced</h3>", _html_list(s.stopped_not_replaced)]
    if s.remaining:
        parts += [
            f"<h3>{e(s.remaining_title)}</h3>",
            _html_list(s.remaining, code=True),
        ]
    if s.skipped:
        parts += ["<h3>Tasks skipped</h3>", _html_list(s.skipped)]
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
