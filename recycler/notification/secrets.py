"""The SMTP password: a literal from input.json, or read from Secrets Manager or SSM at send time.

Also every form in which a password can leak (itself and the base64 that AUTH
puts on the wire), so the notifier can strip them from any text it reports.
This is the one notification module that needs AWS clients.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from recycler.aws import session as aws_session
from recycler.aws.gateway import error_code
from recycler.notification.errors import PasswordUnavailableError
from recycler.notification.settings import NotificationConfig, PasswordReference

# The name the notifier has always logged under (the README documents it), not this module's.
logger = logging.getLogger("Notification")


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
        raise PasswordUnavailableError(f"could not read {ref.describe()}: {error_code(e)}") from e
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
            service, region_name=region, config=aws_session.CLIENT_CONFIG
        )
    return aws_session.create_client(session, service)


def _arn_region(name: str) -> str | None:
    if not name.startswith("arn:"):
        return None
    parts = name.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


def secret_forms(config: NotificationConfig | None, secrets: list[str]) -> list[str]:
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


def redact(text: str, forms: Sequence[str]) -> str:
    for form in forms:
        text = text.replace(form, "***")
    return text
