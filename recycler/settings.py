"""input.json, validated once per cold start into frozen dataclasses.

Every error names the offending key (``ConfigError.field``) and never repeats
a secret value; it is raised before any AWS call.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recycler.errors import ConfigError
from recycler.fields import reject_unknown
from recycler.notification.settings import NotificationConfig, parse_notification_config

# Every pattern is ASCII-only and used with fullmatch: \d would take any Unicode
# digit, and $ would let a trailing newline through.
_ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]", re.ASCII)

CONFIG_ENV_VAR = "RECYCLE_CONFIG"
# input.json sits beside lambda_function.py, one folder up.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "input.json"
# input.json is a few hundred bytes; anything near this is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024


# --------------------------------------------------------------------------- #
# input.json
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class AwsCredentials:
    """The awsCredentials section. Secret fields never appear in repr()."""

    region_name: str | None = None
    profile_name: str | None = None
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RecycleSettings:
    """The optional recycle section: engine tunables."""

    # services_stable polls every 15 s; 5 s keeps the overshoot per step small.
    poll_interval_seconds: float = 5.0
    replacement_timeout_seconds: int = 600
    max_failed_replacements: int = 3
    # Enough for three restore calls, each retried, with botocore's own retries.
    restore_reserve_seconds: int = 60
    # ECS keeps saying "unable to place a task" and no new task has appeared for this long: give up.
    placement_timeout_seconds: int = 120
    # After the last batch, keep watching the alarms this long; one that fires fails the run.
    alarm_watch_seconds: int = 0
    # The lock table, for local runs; in Lambda the template's LOCK_TABLE_NAME wins.
    lock_table_name: str | None = None


@dataclass(frozen=True)
class AppConfig:
    """Everything input.json holds, validated."""

    aws: AwsCredentials = AwsCredentials()
    recycle: RecycleSettings = RecycleSettings()
    # None when no SMTP section is present.
    notification: NotificationConfig | None = None
    source: str = "<defaults>"


_SECTIONS = {"awsCredentials", "smtpCredentials", "emailNotification", "recycle"}
_AWS_KEYS = {f for f in AwsCredentials.__dataclass_fields__}
_RECYCLE_LIMITS: dict[str, tuple[type, float, float]] = {
    "poll_interval_seconds": (float, 0.5, 300),
    "replacement_timeout_seconds": (int, 30, 3600),
    "max_failed_replacements": (int, 1, 50),
    "placement_timeout_seconds": (int, 30, 3600),
    "alarm_watch_seconds": (int, 0, 3600),
    "restore_reserve_seconds": (int, 10, 600),
}


def config_path() -> Path:
    """input.json beside this module, unless RECYCLE_CONFIG names another file."""
    override = os.environ.get(CONFIG_ENV_VAR)
    return Path(override) if override else DEFAULT_CONFIG_PATH


def load_config(path: Path | None = None) -> AppConfig:
    """Read and validate input.json. Errors name the key, never its value."""
    path = path or config_path()
    try:
        # Bounded: RECYCLE_CONFIG may name a huge file, or /dev/zero, which never ends.
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(str(path), f"cannot read config file: {e.strerror}") from e
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            str(path),
            f"is larger than 1 MB ({MAX_CONFIG_BYTES} bytes), the limit for a config file: is it the right file?",
        )
    try:
        # utf-8-sig: a byte-order mark from a Windows editor is not an error.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # The decoder's own message quotes the byte: say only where it is.
        raise ConfigError(str(path), f"is not UTF-8 text (invalid byte at offset {e.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            str(path), f"not valid JSON (line {e.lineno}, column {e.colno}): {json_error_reason(e)}"
        ) from e
    except RecursionError:
        raise ConfigError(str(path), "not valid JSON: nested too deeply") from None
    except ValueError:
        # Python refuses integers of more than 4300 digits.
        raise ConfigError(str(path), "not valid JSON: a number is too long") from None
    return parse_config(document, source=str(path))


_NOT_JSON = "comments and trailing commas are not JSON"


def json_error_reason(error: json.JSONDecodeError) -> str:
    """Why the text is not JSON, in words, for the usual mistakes. Never quotes the text: it may hold a secret."""
    text, pos = error.doc, error.pos
    ahead = text[pos:].lstrip()
    behind = text[:pos].rstrip()
    if not text.strip():
        return "the file is empty"
    if ahead.startswith(("//", "/*", "#")):
        return f"a comment ({_NOT_JSON})"
    # Python 3.13 names a trailing comma itself and points at it; 3.11 points at the bracket after it.
    if "trailing comma" in error.msg or (behind.endswith(",") and ahead[:1] in ("}", "]")):
        return f"a trailing comma before a closing bracket ({_NOT_JSON})"
    if error.msg == "Extra data":
        return "more text after the end of the JSON object (an extra closing bracket?)"
    if ahead.startswith("'"):
        return "single quotes: JSON keys and strings take double quotes"
    if error.msg.startswith("Expecting property name"):
        return "keys and strings take double quotes"
    if error.msg == "Expecting value" and ahead.startswith(("True", "False", "None")):
        return "true, false and null are lower case in JSON (None is null)"
    if error.msg == "Expecting ',' delimiter":
        return "a comma is missing between two items"
    if error.msg.startswith("Invalid control character"):
        return "a line break or tab inside a string (write \\n or \\t)"
    if error.msg.startswith("Unterminated string"):
        return "a string is not closed (a missing double quote)"
    # The decoder's own words name no part of the text.
    return error.msg[:1].lower() + error.msg[1:]


def parse_config(document: Any, source: str = "<inline>") -> AppConfig:
    """Validate an already-parsed input.json document."""
    if not isinstance(document, Mapping):
        raise ConfigError("input.json", "must be a JSON object")
    reject_unknown(document, _SECTIONS, what="unknown section")

    aws = _parse_aws(_section(document, "awsCredentials"))
    recycle = _parse_recycle(_section(document, "recycle"))

    notification = parse_notification_config(
        _section(document, "smtpCredentials", allow_missing=True),
        _section(document, "emailNotification", allow_missing=True),
    )
    return AppConfig(aws=aws, recycle=recycle, notification=notification, source=source)


def _parse_aws(section: Mapping[str, Any]) -> AwsCredentials:
    prefix = "awsCredentials"
    reject_unknown(section, _AWS_KEYS, prefix)
    values: dict[str, str | None] = {}
    for key in sorted(_AWS_KEYS):
        raw = section.get(key)
        if raw is None or raw == "":
            values[key] = None
        elif isinstance(raw, str):
            _check_credential_text(f"{prefix}.{key}", raw, header=key in _HEADER_KEYS)
            values[key] = raw
        else:
            raise ConfigError(f"{prefix}.{key}", "must be a string")
    credentials = AwsCredentials(**values)
    if credentials.region_name and not is_region_name(credentials.region_name):
        raise ConfigError(f"{prefix}.region_name", "is not an AWS region name")
    if credentials.role_arn and not _ROLE_ARN.fullmatch(credentials.role_arn):
        raise ConfigError(f"{prefix}.role_arn", "is not an IAM role ARN")
    if bool(credentials.access_key) != bool(credentials.secret_key):
        missing = "secret_key" if credentials.access_key else "access_key"
        raise ConfigError(f"{prefix}.{missing}", "access_key and secret_key go together")
    if credentials.session_token and not credentials.access_key:
        raise ConfigError(f"{prefix}.session_token", "needs access_key and secret_key")
    if credentials.profile_name and credentials.access_key:
        raise ConfigError(f"{prefix}.profile_name", "give either a profile or static keys, not both")
    if credentials.external_id and not credentials.role_arn:
        raise ConfigError(f"{prefix}.external_id", "only applies with role_arn")
    return credentials


_LOCK_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
# Sent as HTTP headers (or signed into them): printable ASCII only, or every AWS call fails.
_HEADER_KEYS = frozenset({"access_key", "secret_key", "session_token"})


def is_region_name(value: str) -> bool:
    """True for an AWS region name such as eu-west-1 (ASCII only)."""
    return _REGION.fullmatch(value) is not None


def _check_credential_text(name: str, value: str, header: bool) -> None:
    """Refuse whitespace and control characters (a pasted newline, say). Never echoes the value."""
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise ConfigError(name, "must not contain spaces, line breaks or other whitespace or control characters")
    if header and not value.isascii():
        raise ConfigError(name, "must contain only ASCII characters")


def _parse_recycle(section: Mapping[str, Any]) -> RecycleSettings:
    prefix = "recycle"
    reject_unknown(section, {*_RECYCLE_LIMITS, "lock_table_name"}, prefix)
    values: dict[str, Any] = {}
    table = section.get("lock_table_name")
    if table is not None:
        if not isinstance(table, str) or not _LOCK_TABLE.fullmatch(table):
            raise ConfigError(f"{prefix}.lock_table_name", "must be a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
        values["lock_table_name"] = table
    for key, (kind, low, high) in _RECYCLE_LIMITS.items():
        if key not in section:
            continue
        raw = section[key]
        # bool is an int subclass; true/false is never a number of seconds.
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{prefix}.{key}", f"must be a number, got {type(raw).__name__}")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ConfigError(f"{prefix}.{key}", "must be a finite number")
        # Never float() an int: 10**400 would overflow. int and float compare exactly.
        if kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ConfigError(f"{prefix}.{key}", "must be a whole number")
        if not low <= raw <= high:
            raise ConfigError(f"{prefix}.{key}", f"must be between {low:g} and {high:g}")
        values[key] = kind(raw)
    return RecycleSettings(**values)


def _section(document: Mapping[str, Any], name: str, allow_missing: bool = False) -> Any:
    value = document.get(name)
    if value is None:
        return None if allow_missing else {}
    if not isinstance(value, Mapping):
        raise ConfigError(name, "must be a JSON object")
    return value
