"""Delivery over SMTP: implicit TLS or STARTTLS with a verified certificate, AUTH, one overall deadline.

``send_message`` raises ``DeliveryError`` naming the stage that failed, with a
description of the error meant for the person reading the report.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from typing import Any

from recycler.notification.errors import DeliveryError
from recycler.notification.settings import NotificationConfig


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
