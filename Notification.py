"""SMTP email report of a recycle's outcome.

Three pieces, usable separately:

* ``parse_notification_config`` validates the ``smtpCredentials`` and
  ``emailNotification`` sections of input.json once, at load, into a frozen
  ``NotificationConfig``. Every error is a ``ConfigError`` that names the key and
  never echoes a secret.
* ``render_message`` turns a report into a ``multipart/alternative`` email
  (plain text and HTML). It is pure: no network, no AWS.
* ``notify`` decides whether to send, resolves the password (literal, Secrets
  Manager or SSM Parameter Store), sends over TLS with a deadline, logs one
  structured line and returns a small result dict. It never raises: a notifier
  failure is reported, it never changes or hides the recycle's own outcome.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import re
import smtplib
import ssl
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import quote

import boto3
from botocore.exceptions import BotoCoreError, ClientError

import AWSSession
from recycler.errors import ConfigError
from recycler.notification.addresses import MAX_ADDRESS_CHARS, unsafe_header_char
from recycler.notification.errors import DeliveryError, NotificationError, PasswordUnavailableError, UnsafeHeaderError
from recycler.notification.settings import (
    DEFAULT_TIMEOUT_SECONDS,
    SMTP_SECTION,
    NotificationConfig,
    Outcome,
    PasswordReference,
    parse_notification_config,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_ADDRESS_CHARS",
    "DeliveryError",
    "NotificationConfig",
    "NotificationError",
    "PasswordReference",
    "PasswordUnavailableError",
    "UnsafeHeaderError",
    "notify",
    "outcome_of",
    "parse_notification_config",
    "render_message",
    "render_subject",
    "resolve_password",
    "send_message",
]

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

_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]", re.ASCII)

# --------------------------------------------------------------------------- #
# The message
# --------------------------------------------------------------------------- #


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
    cluster = _text(report.get("cluster"))
    service = _text(report.get("service"))
    status = _text(report.get("status"))

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
        ("Cluster", _text(report.get("cluster"), "unknown")),
        ("Service", _text(report.get("service"), "unknown")),
        ("Region", _text(report.get("region"), "unknown")),
        ("Account", _text(report.get("account"), "unknown")),
        ("Outcome", _describe_outcome(report)),
        (
            "Original desired count",
            _text(report.get("original_desired_count"), "unknown"),
        ),
        ("Tasks recycled", f"{len(recycled)} of {total_text}"),
        ("Duration", _format_seconds(report.get("duration_seconds"))),
        ("Service restored", _describe_restored(report.get("restored"))),
        ("Started at", _text(report.get("started_at"), "unknown")),
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
        (label, _text(report.get(key)))
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
        error=_text(error) if error else None,
        restore_actions=[_describe_restore_action(_text(a)) for a in _list(report.get("restore_actions"))],
        restored_target=_describe_restored_target(report.get("restored_target")),
        tasks=tasks,
        remaining_title=("Tasks that would be recycled" if status == "dry_run" else "Tasks not recycled"),
        remaining=remaining,
        external_changes=[_text(c) for c in _list(report.get("external_changes"))],
        logs=logs,
        logs_url=_logs_url(report),
    )


def _headline(report: Mapping[str, Any]) -> str:
    """The heading: a short status line naming the service."""
    status = report.get("status")
    word = _HEADLINES.get(status, "UNKNOWN OUTCOME") if isinstance(status, str) else "UNKNOWN OUTCOME"
    where = f"{_text(report.get('cluster'), 'unknown')}/{_text(report.get('service'), 'unknown')}"
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
        cause = f"stopped by {_text(error_type)}" if error_type else "the run stopped"
        return f"{cause}; see the error below" if report.get("error") else f"{cause}; no error was recorded"
    if status == "incomplete":
        count = len(_list(report.get("tasks_remaining")))
        return f"the time budget ran out with {count} task(s) remaining"
    return f"the report's status is {_text(status, 'missing')!r}, which this version does not know"


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
    text = _text(arn, "unknown")
    return text.rsplit("/", 1)[-1] or text


def _format_seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "unknown"
    seconds = float(value)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{seconds:.1f} s ({int(minutes)} min {rest:02.0f} s)"


def _text(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


# --------------------------------------------------------------------------- #
# The password
# --------------------------------------------------------------------------- #


def resolve_password(
    config: NotificationConfig,
    session: boto3.Session | None,
    cache: dict[PasswordReference, str] | None = None,
) -> str | None:
    """The literal password, or the referenced one read from AWS now.

    ``cache`` lives for one invocation: pass the same dict to avoid a second
    read. Nothing is cached across invocations, so a rotated secret is picked
    up by the next run.
    """
    password = config.password
    if password is None or isinstance(password, str):
        return password
    if cache is not None and password in cache:
        return cache[password]
    value = _read_reference(password, session or boto3.Session())
    if cache is not None:
        cache[password] = value
    return value


def _read_reference(ref: PasswordReference, session: boto3.Session) -> str:
    try:
        if ref.kind == "secrets_manager":
            client = _client_for(session, "secretsmanager", ref.name)
            response = client.get_secret_value(SecretId=ref.name)
            value = _secret_value(ref, response)
        else:
            client = _client_for(session, "ssm", ref.name)
            parameter = client.get_parameter(Name=ref.name, WithDecryption=True)["Parameter"]
            if parameter.get("Type") != "SecureString":
                logger.warning(
                    "SMTP password parameter is not a SecureString",
                    extra={
                        "parameter": ref.name,
                        "parameter_type": parameter.get("Type"),
                    },
                )
            value = parameter.get("Value")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "ClientError")
        raise PasswordUnavailableError(f"could not read {ref.describe()}: {code}") from e
    except BotoCoreError as e:
        raise PasswordUnavailableError(f"could not read {ref.describe()}: {type(e).__name__}") from e
    if not isinstance(value, str) or not value:
        raise PasswordUnavailableError(f"{ref.describe()} is empty")
    if not value.isascii():
        # smtplib's own error would quote a character of the password and its position.
        raise PasswordUnavailableError(f"{ref.describe()} holds characters outside ASCII, which SMTP AUTH cannot send")
    return value


def _secret_value(ref: PasswordReference, response: Mapping[str, Any]) -> str | None:
    secret = response.get("SecretString")
    if secret is None and response.get("SecretBinary") is not None:
        try:
            secret = bytes(response["SecretBinary"]).decode("utf-8")
        except UnicodeDecodeError:
            raise PasswordUnavailableError(f"{ref.describe()} is binary, not text") from None
    if ref.key is None:
        return secret if isinstance(secret, str) else None
    try:
        document = json.loads(secret) if isinstance(secret, str) else None
    except json.JSONDecodeError:
        # The decoder's message can quote the secret: never pass it on.
        raise PasswordUnavailableError(f"{ref.describe()} is not a JSON object, so it has no key {ref.key!r}") from None
    if not isinstance(document, dict) or ref.key not in document:
        raise PasswordUnavailableError(f"{ref.describe()} has no key {ref.key!r}")
    value = document[ref.key]
    return value if isinstance(value, str) else None


def _client_for(session: boto3.Session, service: str, name: str) -> Any:
    """A client in the ARN's region when it differs from the session's."""
    region = _arn_region(name)
    if region and region != session.region_name:
        return session.client(  # type: ignore[call-overload]
            service, region_name=region, config=AWSSession.CLIENT_CONFIG
        )
    return AWSSession.create_client(session, service)


def _arn_region(name: str) -> str | None:
    if not name.startswith("arn:"):
        return None
    parts = name.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


# --------------------------------------------------------------------------- #
# Transport
# --------------------------------------------------------------------------- #


class _DeadlineSMTP(smtplib.SMTP):
    """smtplib.SMTP whose every read and write shares one overall deadline.

    Connecting (and, for implicit TLS, the handshake) uses ``timeout``; after
    that each command gets whatever is left before ``deadline``.
    """

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(*args, **kwargs)

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the SMTP exchange ran past timeout_seconds")
        if self.sock is not None:
            self.sock.settimeout(remaining)

    def send(self, s: Any) -> None:
        self._arm()
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        self._arm()
        return super().getreply()


class _DeadlineSMTPSSL(_DeadlineSMTP, smtplib.SMTP_SSL):
    """Implicit TLS (port 465 style) with the same deadline."""


def send_message(message: EmailMessage, config: NotificationConfig, password: str | None) -> list[str]:
    """Deliver ``message`` to every To, Cc and Bcc address; return those accepted.

    Certificate verification always uses ``ssl.create_default_context()``.
    ``security=starttls`` fails if the server does not offer STARTTLS; AUTH is
    used only when a username is configured. The whole exchange must finish
    within ``config.timeout_seconds``. Raises DeliveryError naming the stage.
    """
    recipients = config.envelope_recipients
    context = ssl.create_default_context()
    deadline = time.monotonic() + config.timeout_seconds
    client: _DeadlineSMTP | None = None
    stage = "connect"
    try:
        # The constructor connects and reads the greeting.
        if config.security == "ssl":
            client = _DeadlineSMTPSSL(
                config.host, config.port, timeout=config.timeout_seconds, context=context, deadline=deadline
            )
        else:
            client = _DeadlineSMTP(config.host, config.port, timeout=config.timeout_seconds, deadline=deadline)
        stage = "EHLO"
        client.ehlo()
        if config.security == "starttls":
            stage = "STARTTLS"
            if not client.has_extn("starttls"):
                raise DeliveryError(stage, "the server does not offer STARTTLS, which security=starttls requires")
            client.starttls(context=context)
            client.ehlo()
        if config.username:
            stage = "AUTH"
            client.login(config.username, password or "")
        stage = "send"
        refused = client.send_message(message, from_addr=config.envelope_sender, to_addrs=recipients)
        stage = "QUIT"
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the message was accepted; a rude goodbye changes nothing
    except DeliveryError:
        if client is not None:
            client.close()
        raise
    except (smtplib.SMTPException, OSError) as e:
        if client is not None:
            client.close()
        raise DeliveryError(stage, _describe_transport_error(e, config)) from e
    return [r for r in recipients if r not in refused]


def _describe_transport_error(error: BaseException, config: NotificationConfig) -> str:
    where = f"{config.host}:{config.port}"
    # smtplib turns a read timeout or reset into SMTPServerDisconnected; say what really happened.
    if isinstance(error, smtplib.SMTPServerDisconnected) and isinstance(error.__context__, OSError):
        error = error.__context__
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return f"authentication failed ({error.smtp_code} {_decode(error.smtp_error)})"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(sorted(error.recipients))
        return f"every recipient was refused ({refused})"
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return f"the server does not support this ({error})"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"{where} closed the connection ({error or 'no reason given'})"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"the server answered {error.smtp_code} {_decode(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPException):
        return f"{type(error).__name__}: {error}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the TLS certificate of {where} was not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS error with {where} ({error.reason or error})"
    if isinstance(error, TimeoutError):
        return f"no answer from {where} within {config.timeout_seconds:g} s"
    if isinstance(error, ConnectionRefusedError):
        return f"{where} refused the connection (is the server down?)"
    if isinstance(error, OSError):
        return f"network error with {where} ({error.strerror or type(error).__name__})"
    return type(error).__name__


def _decode(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


# --------------------------------------------------------------------------- #
# notify
# --------------------------------------------------------------------------- #


def notify(
    report: Mapping[str, Any],
    config: NotificationConfig | None,
    session: boto3.Session | None = None,
    *,
    password_cache: dict[PasswordReference, str] | None = None,
) -> dict[str, Any]:
    """Email the report if configured and wanted. Never raises.

    Returns ``{"status": "sent" | "failed" | "not_configured" | "skipped",
    "detail": str, "recipients": int}`` plus ``"message_id"`` when sent. The
    detail never contains a password.
    """
    secrets: list[str] = []
    result: dict[str, Any]
    try:
        result = _notify(report, config, session, password_cache, secrets)
    except Exception as e:  # noqa: BLE001 - the notifier must never raise
        detail = f"unexpected error: {type(e).__name__}: {e}"
        result = {"status": "failed", "detail": detail, "recipients": 0}
        trace = _redact("".join(traceback.format_exception(e)), _secret_forms(config, secrets))
        result["_traceback"] = trace
    forms = _secret_forms(config, secrets)
    result["detail"] = _redact(str(result.get("detail", "")), forms)
    trace = result.pop("_traceback", None)
    # A logging failure must not escape either.
    with contextlib.suppress(Exception):
        _log_result(report, config, result, trace)
    return result


def _notify(
    report: Mapping[str, Any],
    config: NotificationConfig | None,
    session: boto3.Session | None,
    cache: dict[PasswordReference, str] | None,
    secrets: list[str],
) -> dict[str, Any]:
    if config is None:
        return {
            "status": "not_configured",
            "detail": f"no {SMTP_SECTION} section in input.json",
            "recipients": 0,
        }
    outcome = outcome_of(report)
    if outcome not in config.notify_on:
        return {
            "status": "skipped",
            "detail": f"notify_on is {list(config.notify_on)}; this run was a {outcome}",
            "recipients": 0,
        }
    if isinstance(config.password, str):
        secrets.append(config.password)
    try:
        message = render_message(report, config)
        password = resolve_password(config, session, cache if cache is not None else {})
        if password:
            secrets.append(password)
        accepted = send_message(message, config, password)
    except UnsafeHeaderError as e:
        return {
            "status": "failed",
            "detail": f"message not built: {e}",
            "recipients": 0,
        }
    except PasswordUnavailableError as e:
        return {"status": "failed", "detail": f"password: {e}", "recipients": 0}
    except DeliveryError as e:
        return {"status": "failed", "detail": str(e), "recipients": 0}
    except ConfigError as e:
        return {"status": "failed", "detail": f"configuration: {e}", "recipients": 0}
    wanted = len(config.envelope_recipients)
    detail = f"sent to {len(accepted)} of {wanted} recipient(s) via {config.host}:{config.port}"
    if len(accepted) < wanted:
        refused = sorted(set(config.envelope_recipients) - set(accepted))
        detail += f"; refused: {', '.join(refused)}"
    return {
        "status": "sent",
        "detail": detail,
        "recipients": len(accepted),
        "message_id": str(message["Message-ID"]),
    }


def _secret_forms(config: NotificationConfig | None, secrets: list[str]) -> list[str]:
    """Each secret, plus the base64 forms AUTH LOGIN and AUTH PLAIN put on the wire."""
    username = getattr(config, "username", None) or ""
    forms: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        forms.append(secret)
        forms.append(base64.b64encode(secret.encode()).decode())
        forms.append(base64.b64encode(f"\0{username}\0{secret}".encode()).decode())
    return sorted(set(forms), key=len, reverse=True)


def _redact(text: str, forms: Sequence[str]) -> str:
    for form in forms:
        text = text.replace(form, "***")
    return text


def _log_result(
    report: Mapping[str, Any],
    config: NotificationConfig | None,
    result: Mapping[str, Any],
    trace: str | None,
) -> None:
    extra: dict[str, Any] = {
        "notification_status": result.get("status"),
        "notification_detail": result.get("detail"),
        "recipients": result.get("recipients", 0),
        "cluster": _text(report.get("cluster")) if isinstance(report, Mapping) else "",
        "service": _text(report.get("service")) if isinstance(report, Mapping) else "",
        "recycle_status": _text(report.get("status")) if isinstance(report, Mapping) else "",
    }
    if isinstance(config, NotificationConfig):
        extra.update(smtp_host=config.host, smtp_port=config.port, smtp_security=config.security)
    if result.get("message_id"):
        extra["message_id"] = result["message_id"]
    if trace:
        extra["traceback"] = trace
    status = result.get("status")
    level = logging.ERROR if status == "failed" else logging.INFO
    logger.log(level, "Notification %s: %s", status, result.get("detail"), extra=extra)
