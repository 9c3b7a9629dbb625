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

import contextlib
import logging
import smtplib
import ssl
import time
import traceback
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import boto3

from recycler.errors import ConfigError
from recycler.notification.addresses import MAX_ADDRESS_CHARS
from recycler.notification.errors import DeliveryError, NotificationError, PasswordUnavailableError, UnsafeHeaderError
from recycler.notification.render import as_text, outcome_of, render_message, render_subject
from recycler.notification.secrets import redact, resolve_password, secret_forms
from recycler.notification.settings import (
    DEFAULT_TIMEOUT_SECONDS,
    SMTP_SECTION,
    NotificationConfig,
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
        trace = redact("".join(traceback.format_exception(e)), secret_forms(config, secrets))
        result["_traceback"] = trace
    forms = secret_forms(config, secrets)
    result["detail"] = redact(str(result.get("detail", "")), forms)
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
        "cluster": as_text(report.get("cluster")) if isinstance(report, Mapping) else "",
        "service": as_text(report.get("service")) if isinstance(report, Mapping) else "",
        "recycle_status": as_text(report.get("status")) if isinstance(report, Mapping) else "",
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
