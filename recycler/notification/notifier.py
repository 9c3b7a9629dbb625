"""SMTP email report of a recycle's outcome: the entry to recycler/notification/ (Notification.py re-exports it).

``notify`` decides whether to send, resolves the password (literal, Secrets
Manager or SSM Parameter Store), renders the email, sends it over TLS with a
deadline, logs one structured line and returns a small result dict. It never
raises: a notifier failure is reported, it never changes or hides the recycle's
own outcome.

The parts live in ``recycler.notification``: ``settings`` (the validated
config), ``secrets`` (the password and its redaction), ``render`` (the email)
and ``transport`` (SMTP).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Mapping
from typing import Any

import boto3

from recycler.model.errors import ConfigError
from recycler.model.report import NotificationResult
from recycler.notification.content import as_text, outcome_of
from recycler.notification.errors import DeliveryError, PasswordUnavailableError, UnsafeHeaderError
from recycler.notification.fleet_email import fleet_size, is_fleet
from recycler.notification.render import render_message
from recycler.notification.secrets import redact, resolve_password, secret_forms
from recycler.notification.settings import SMTP_SECTION, NotificationConfig, PasswordReference
from recycler.notification.transport import send_message

# The logger keeps the name of the face users know (Notification.py), so log filters stay valid.
logger = logging.getLogger("Notification")

__all__ = ["notify"]


def notify(
    report: Mapping[str, Any],
    config: NotificationConfig | None,
    session: boto3.Session | None = None,
    *,
    password_cache: dict[PasswordReference, str] | None = None,
) -> NotificationResult:
    """Email the report if configured and wanted. Never raises.

    Returns a NotificationResult: its status, detail and recipients, and the
    message_id when sent. The detail never contains a password.
    """
    secrets: list[str] = []
    result: NotificationResult
    trace: str | None = None
    try:
        result = _notify(report, config, session, password_cache, secrets)
    except Exception as e:  # noqa: BLE001 - the notifier must never raise
        detail = f"unexpected error: {type(e).__name__}: {e}"
        result = {"status": "failed", "detail": detail, "recipients": 0}
        trace = redact("".join(traceback.format_exception(e)), secret_forms(config, secrets))
    forms = secret_forms(config, secrets)
    result["detail"] = redact(str(result.get("detail", "")), forms)
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
) -> NotificationResult:
    if config is None:
        return {
            "status": "not_configured",
            "detail": f"no {SMTP_SECTION} section in input.json",
            "recipients": 0,
        }
    if report.get("status") == "already_running":
        # A second start of a run still going: that run mails its own report when it ends.
        return {"status": "skipped", "detail": "the run is already running; it mails its own report", "recipients": 0}
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


def _log_result(
    report: Mapping[str, Any],
    config: NotificationConfig | None,
    result: NotificationResult,
    trace: str | None,
) -> None:
    extra: dict[str, Any] = {
        "notification_status": result.get("status"),
        "notification_detail": result.get("detail"),
        "recipients": result.get("recipients", 0),
        "cluster": as_text(report.get("cluster")) if isinstance(report, Mapping) else "",
        "service": as_text(report.get("service")) if isinstance(report, Mapping) else "",
        "recycle_status": as_text(report.get("status")) if isinstance(report, Mapping) else "",
    }
    if isinstance(report, Mapping) and is_fleet(report):
        extra["fleet_services"] = fleet_size(report)
    if isinstance(config, NotificationConfig):
        extra.update(smtp_host=config.host, smtp_port=config.port, smtp_security=config.security)
    if result.get("message_id"):
        extra["message_id"] = result["message_id"]
    if trace:
        extra["traceback"] = trace
    status = result.get("status")
    level = logging.ERROR if status == "failed" else logging.INFO
    logger.log(level, "Notification %s: %s", status, result.get("detail"), extra=extra)
