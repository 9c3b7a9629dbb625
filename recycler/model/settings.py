"""input.json, validated once per cold start into frozen dataclasses.

Every error names the offending key (``ConfigError.field``) and never repeats
a secret value; it is raised before any AWS call.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recycler.model.errors import ConfigError
from recycler.model.fields import reject_unknown

# Every pattern is ASCII-only and used with fullmatch: \d would take any Unicode
# digit, and $ would let a trailing newline through.
_ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]", re.ASCII)


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


_AWS_KEYS = {f for f in AwsCredentials.__dataclass_fields__}
_RECYCLE_LIMITS: dict[str, tuple[type, float, float]] = {
    "poll_interval_seconds": (float, 0.5, 300),
    "replacement_timeout_seconds": (int, 30, 3600),
    "max_failed_replacements": (int, 1, 50),
    "placement_timeout_seconds": (int, 30, 3600),
    "alarm_watch_seconds": (int, 0, 3600),
    "restore_reserve_seconds": (int, 10, 600),
}


def parse_aws(section: Mapping[str, Any]) -> AwsCredentials:
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


def parse_recycle(section: Mapping[str, Any]) -> RecycleSettings:
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
