"""The notifier's configuration: input.json's smtpCredentials and emailNotification sections.

``parse_notification_config`` validates both once, at load, into a frozen
``NotificationConfig``. Every error is a ``ConfigError`` that names the key and
never echoes a secret. Nothing here touches the network or AWS, and the only
other notification module it imports is ``addresses``: recycler.model.settings loads
this at every parse, and AWSSession (which ``secrets`` needs) imports that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from recycler.model.errors import ConfigError, clip
from recycler.model.fields import reject_unknown
from recycler.notification.addresses import (
    HOSTNAME,
    addr_spec,
    is_ip,
    is_loopback,
    parse_address,
    unsafe_header_char,
)

Security = Literal["starttls", "ssl", "none"]
Outcome = Literal["success", "failure"]

SMTP_SECTION = "smtpCredentials"
EMAIL_SECTION = "emailNotification"

SECURITY_MODES: tuple[Security, ...] = ("starttls", "ssl", "none")
OUTCOMES: tuple[Outcome, ...] = ("success", "failure")
# The one port that means implicit TLS; every other port defaults to STARTTLS.
_IMPLICIT_TLS_PORT = 465
_PORT_FOR_SECURITY: dict[Security, int] = {"starttls": 587, "ssl": 465}

DEFAULT_EMAIL_SUBJECT = "ECS Service Task Recycle"
DEFAULT_SUBJECT_PREFIX = "AWS ECS"
DEFAULT_TIMEOUT_SECONDS = 15.0
MIN_TIMEOUT_SECONDS = 1.0
MAX_TIMEOUT_SECONDS = 300.0
MAX_RECIPIENTS = 100
MAX_HOSTNAME_CHARS = 253
# Secrets Manager SecretId and SSM parameter names (as ARNs) are at most 2048 characters.
MAX_REFERENCE_CHARS = 2048

_SMTP_KEYS = frozenset(
    {
        "host",
        "port",
        "security",
        "username",
        "password",
        "from_email",
        "timeout_seconds",
    }
)
_EMAIL_KEYS = frozenset({"email_subject", "subject_prefix", "to", "cc", "bcc", "notify_on"})
_PASSWORD_REF_KEYS = frozenset({"secrets_manager", "ssm_parameter", "key"})

_PORT_TEXT = re.compile(r"[0-9]{1,10}", re.ASCII)


@dataclass(frozen=True)
class PasswordReference:
    """Where to read the SMTP password at send time. Holds no secret itself."""

    kind: Literal["secrets_manager", "ssm_parameter"]
    name: str
    # Secrets Manager only: the key in a JSON SecretString. None = whole string.
    key: str | None = None

    def describe(self) -> str:
        if self.kind == "secrets_manager":
            suffix = f" (key {clip(repr(self.key))})" if self.key else ""
            return f"Secrets Manager secret {clip(repr(self.name))}{suffix}"
        return f"SSM parameter {clip(repr(self.name))}"


@dataclass(frozen=True)
class NotificationConfig:
    """The validated smtpCredentials and emailNotification sections."""

    host: str
    port: int
    security: Security
    from_email: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    username: str | None = None
    password: str | PasswordReference | None = field(default=None, repr=False)
    email_subject: str = DEFAULT_EMAIL_SUBJECT
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    notify_on: tuple[Outcome, ...] = OUTCOMES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def envelope_sender(self) -> str:
        return addr_spec(self.from_email)

    @property
    def envelope_recipients(self) -> list[str]:
        """To, Cc and Bcc as bare addresses, without duplicates, in order."""
        seen: set[str] = set()
        result: list[str] = []
        for entry in (*self.to, *self.cc, *self.bcc):
            addr = addr_spec(entry)
            if addr.lower() not in seen:
                seen.add(addr.lower())
                result.append(addr)
        return result


def parse_notification_config(
    smtp_section: Mapping[str, Any] | None,
    email_section: Mapping[str, Any] | None,
) -> NotificationConfig | None:
    """Validate both sections. None when smtpCredentials is absent (not configured)."""
    if smtp_section is None:
        return None
    if not isinstance(smtp_section, Mapping):
        raise ConfigError(SMTP_SECTION, "must be a JSON object")
    if email_section is None:
        raise ConfigError(
            f"{EMAIL_SECTION}.to",
            f"is required when {SMTP_SECTION} is set (who should receive the report?)",
        )
    if not isinstance(email_section, Mapping):
        raise ConfigError(EMAIL_SECTION, "must be a JSON object")
    reject_unknown(smtp_section, _SMTP_KEYS, SMTP_SECTION)
    reject_unknown(email_section, _EMAIL_KEYS, EMAIL_SECTION)

    host = _parse_host(smtp_section)
    port, security = _parse_port_and_security(smtp_section, host)
    username = _optional_text(smtp_section, SMTP_SECTION, "username")
    if username and not username.isascii():
        raise ConfigError(
            f"{SMTP_SECTION}.username", "must contain only ASCII characters (SMTP AUTH cannot send any other)"
        )
    password = _parse_password(smtp_section)
    if username and password is None:
        raise ConfigError(f"{SMTP_SECTION}.password", "is required when username is set")
    if password is not None and not username:
        raise ConfigError(
            f"{SMTP_SECTION}.username",
            "is required when password is set (AUTH needs both)",
        )
    if "from_email" not in smtp_section or smtp_section["from_email"] in (None, ""):
        raise ConfigError(f"{SMTP_SECTION}.from_email", "is required")
    from_email = parse_address(smtp_section["from_email"], f"{SMTP_SECTION}.from_email")

    to = _parse_address_list(email_section, "to", required=True)
    cc = _parse_address_list(email_section, "cc", required=False)
    bcc = _parse_address_list(email_section, "bcc", required=False)
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        raise ConfigError(f"{EMAIL_SECTION}.to", f"at most {MAX_RECIPIENTS} recipients in all")

    return NotificationConfig(
        host=host,
        port=port,
        security=security,
        from_email=from_email,
        to=to,
        cc=cc,
        bcc=bcc,
        username=username,
        password=password,
        email_subject=_parse_header_text(email_section, "email_subject", DEFAULT_EMAIL_SUBJECT),
        subject_prefix=_parse_header_text(email_section, "subject_prefix", DEFAULT_SUBJECT_PREFIX),
        notify_on=_parse_notify_on(email_section),
        timeout_seconds=_parse_timeout(smtp_section),
    )


def _parse_host(section: Mapping[str, Any]) -> str:
    name = f"{SMTP_SECTION}.host"
    raw = section.get("host")
    if raw is None or raw == "":
        raise ConfigError(name, "is required")
    if not isinstance(raw, str):
        raise ConfigError(name, f"must be a string, got {type(raw).__name__}")
    host = raw.strip().lower()
    if len(host) > MAX_HOSTNAME_CHARS + 2:
        raise ConfigError(name, f"must be at most {MAX_HOSTNAME_CHARS} characters")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if is_ip(host) or HOSTNAME.fullmatch(host):
        return host
    raise ConfigError(name, "must be a hostname or an IP address")


def _parse_port_and_security(section: Mapping[str, Any], host: str) -> tuple[int, Security]:
    port: int | None = None
    if section.get("port") not in (None, ""):
        port = _parse_port(section["port"])

    security: Security | None = None
    raw_security = section.get("security")
    if raw_security not in (None, ""):
        if not isinstance(raw_security, str) or raw_security.strip().lower() not in SECURITY_MODES:
            raise ConfigError(
                f"{SMTP_SECTION}.security",
                f"must be one of {', '.join(SECURITY_MODES)}",
            )
        security = _as_security(raw_security.strip().lower())

    if security is None:
        # Fail-closed default: STARTTLS is required (never a fallback to plain text),
        # except on 465, where TLS starts with the first byte.
        security = "ssl" if port == _IMPLICIT_TLS_PORT else "starttls"
    if port is None:
        if security == "none":
            raise ConfigError(f"{SMTP_SECTION}.port", "is required with security none")
        port = _PORT_FOR_SECURITY[security]

    if security == "none" and not is_loopback(host):
        raise ConfigError(
            f"{SMTP_SECTION}.security",
            "none (no TLS) is only allowed for a relay on localhost, 127.0.0.1 or ::1",
        )
    return port, security


def _as_security(value: str) -> Security:
    for mode in SECURITY_MODES:
        if mode == value:
            return mode
    raise ValueError(value)  # unreachable: checked by the caller


def _parse_port(raw: Any) -> int:
    name = f"{SMTP_SECTION}.port"
    if isinstance(raw, bool):
        raise ConfigError(name, "must be a port number, got a boolean")
    if isinstance(raw, int):
        port = raw
    elif isinstance(raw, str) and _PORT_TEXT.fullmatch(raw.strip()):
        # Not str.isdigit(): that is true for "²" and other digits int() refuses.
        port = int(raw.strip())
    else:
        raise ConfigError(name, "must be a whole number or a string of digits")
    if not 1 <= port <= 65535:
        raise ConfigError(name, "must be between 1 and 65535")
    return port


def _parse_timeout(section: Mapping[str, Any]) -> float:
    name = f"{SMTP_SECTION}.timeout_seconds"
    raw = section.get("timeout_seconds")
    if raw is None:
        return DEFAULT_TIMEOUT_SECONDS
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ConfigError(name, f"must be a number, got {type(raw).__name__}")
    if not MIN_TIMEOUT_SECONDS <= raw <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(name, f"must be between {MIN_TIMEOUT_SECONDS:g} and {MAX_TIMEOUT_SECONDS:g}")
    return float(raw)


def _optional_text(section: Mapping[str, Any], prefix: str, key: str) -> str | None:
    raw = section.get(key)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"{prefix}.{key}", f"must be a string, got {type(raw).__name__}")
    if unsafe_header_char(raw):
        raise ConfigError(f"{prefix}.{key}", "must not contain line breaks or control characters")
    return raw


def _parse_password(section: Mapping[str, Any]) -> str | PasswordReference | None:
    name = f"{SMTP_SECTION}.password"
    raw = section.get("password")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        if not raw.isascii():
            # smtplib sends AUTH as ASCII: such a password can never log in. Say nothing of where.
            raise ConfigError(name, "must contain only ASCII characters (SMTP AUTH cannot send any other)")
        return raw
    if not isinstance(raw, Mapping):
        # Never echo the value: it may be a mistyped secret.
        raise ConfigError(
            name,
            'must be a string or a reference: {"secrets_manager": "name-or-arn", "key": "..."} '
            'or {"ssm_parameter": "/name"}',
        )
    if set(raw) - _PASSWORD_REF_KEYS:
        # Not named: a key here may be the password itself, typed into the wrong place.
        raise ConfigError(name, f"unknown key in the reference (allowed: {', '.join(sorted(_PASSWORD_REF_KEYS))})")
    kinds = [k for k in ("secrets_manager", "ssm_parameter") if k in raw]
    if len(kinds) != 1:
        raise ConfigError(name, "a reference names exactly one of secrets_manager, ssm_parameter")
    kind = kinds[0]
    target = raw[kind]
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{name}.{kind}", "must be a non-empty string")
    if len(target.strip()) > MAX_REFERENCE_CHARS:
        raise ConfigError(f"{name}.{kind}", f"must be at most {MAX_REFERENCE_CHARS} characters")
    key = raw.get("key")
    if key is not None:
        if kind != "secrets_manager":
            raise ConfigError(f"{name}.key", "only applies to a secrets_manager reference")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{name}.key", "must be a non-empty string")
        if len(key) > MAX_REFERENCE_CHARS:
            raise ConfigError(f"{name}.key", f"must be at most {MAX_REFERENCE_CHARS} characters")
    if kind == "secrets_manager":
        return PasswordReference("secrets_manager", target.strip(), key)
    return PasswordReference("ssm_parameter", target.strip())


def _parse_header_text(section: Mapping[str, Any], key: str, default: str) -> str:
    if key not in section or section[key] is None:
        return default
    raw = section[key]
    name = f"{EMAIL_SECTION}.{key}"
    if not isinstance(raw, str):
        raise ConfigError(name, f"must be a string, got {type(raw).__name__}")
    if unsafe_header_char(raw):
        raise ConfigError(
            name,
            "must not contain CR, LF or other control characters (header injection)",
        )
    return raw.strip()


def _parse_address_list(section: Mapping[str, Any], key: str, required: bool) -> tuple[str, ...]:
    name = f"{EMAIL_SECTION}.{key}"
    raw = section.get(key)
    if raw is None or raw == "" or raw == []:
        if required:
            raise ConfigError(name, "must list at least one email address")
        return ()
    if isinstance(raw, str):
        return (parse_address(raw, name),)
    if not isinstance(raw, list):
        raise ConfigError(name, "must be a list of email addresses")
    if len(raw) > MAX_RECIPIENTS:
        raise ConfigError(name, f"at most {MAX_RECIPIENTS} recipients in all")
    return tuple(parse_address(item, f"{name}[{i}]") for i, item in enumerate(raw))


def _parse_notify_on(section: Mapping[str, Any]) -> tuple[Outcome, ...]:
    name = f"{EMAIL_SECTION}.notify_on"
    raw = section.get("notify_on")
    if raw is None:
        return OUTCOMES
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError(
            name,
            f'must be a non-empty list of "success" and/or "failure" (to send nothing, remove {SMTP_SECTION})',
        )
    for i, item in enumerate(items):
        if item not in OUTCOMES:
            raise ConfigError(f"{name}[{i}]", 'must be "success" or "failure"')
    return tuple(o for o in OUTCOMES if o in items)
