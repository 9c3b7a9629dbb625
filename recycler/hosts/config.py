"""input.json: found (RECYCLE_CONFIG, an SSM parameter, or beside the package), read within a bound, and validated.

The sections' own rules live with what they configure: the run's (recycler.model.settings) and the
email's (recycler.notification.settings).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recycler.model.errors import ConfigError
from recycler.model.fields import reject_unknown
from recycler.model.settings import AwsCredentials, RecycleSettings, parse_aws, parse_recycle
from recycler.notification.settings import NotificationConfig, parse_notification_config

if TYPE_CHECKING:
    from recycler.aws.parameters import ParameterText

# input.json sits beside lambda_function.py, one folder up.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "input.json"


# input.json is a few hundred bytes; anything near this is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AppConfig:
    """Everything input.json holds, validated."""

    aws: AwsCredentials = field(default_factory=AwsCredentials)
    recycle: RecycleSettings = field(default_factory=RecycleSettings)
    # None when no SMTP section is present.
    notification: NotificationConfig | None = None
    source: str = "<defaults>"


_SECTIONS = {"awsCredentials", "smtpCredentials", "emailNotification", "recycle"}


def load_config(path: Path | None = None) -> AppConfig:
    """Read and validate input.json (RECYCLE_CONFIG's file, else the one beside the package). Errors name the
    key, never its value."""
    path = path or DEFAULT_CONFIG_PATH
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
    return parse_config(_json_document(text, str(path)), source=str(path))


def parameter_source(name: str) -> str:
    """How errors and the report name a config read from SSM."""
    return f"SSM parameter {name}"


def load_config_parameter(name: str, read: Callable[[str, str], ParameterText] | None = None) -> AppConfig:
    """The same JSON as input.json, read from an SSM parameter (String or SecureString) and validated alike.

    Every error names the parameter. A password or secret key in clear is refused: a config in SSM is read
    by whoever may read the parameter, so the SMTP password stays in Secrets Manager (or an SSM SecureString
    of its own), referenced by name."""
    if read is None:
        # Here, not at the top: the deploy script's event check imports this module without boto3.
        from recycler.aws.parameters import read_parameter

        read = read_parameter
    source = parameter_source(name)
    text = read(name, source).value
    try:
        config = parse_config(_json_document(text, source), source=source)
    except ConfigError as e:
        if e.field.startswith(source):
            raise
        raise ConfigError(f"{source}: {e.field}", e.problem) from e
    _refuse_secrets_in_clear(config, source)
    return config


def _refuse_secrets_in_clear(config: AppConfig, source: str) -> None:
    password = config.notification.password if config.notification else None
    if isinstance(password, str):
        raise ConfigError(
            f"{source}: smtpCredentials.password",
            'must be a reference in a config read from SSM: {"secrets_manager": "name-or-arn"} or '
            '{"ssm_parameter": "/name"}, never the password itself',
        )
    if config.aws.secret_key or config.aws.session_token:
        raise ConfigError(
            f"{source}: awsCredentials",
            "must not hold keys in a config read from SSM: use the function's role, or role_arn",
        )


def _json_document(text: str, source: str) -> Any:
    """The parsed JSON, or a ConfigError naming ``source`` and saying why (never quoting the text)."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError(source, f"is larger than 1 MB ({MAX_CONFIG_BYTES} bytes), the limit for a config")
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as e:
        raise ConfigError(source, f"not valid JSON (line {e.lineno}, column {e.colno}): {json_error_reason(e)}") from e
    except RecursionError:
        raise ConfigError(source, "not valid JSON: nested too deeply") from None
    except ValueError:
        # Python refuses integers of more than 4300 digits.
        raise ConfigError(source, "not valid JSON: a number is too long") from None


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

    aws = parse_aws(_section(document, "awsCredentials"))
    recycle = parse_recycle(_section(document, "recycle"))

    notification = parse_notification_config(
        _section(document, "smtpCredentials", allow_missing=True),
        _section(document, "emailNotification", allow_missing=True),
    )
    return AppConfig(aws=aws, recycle=recycle, notification=notification, source=source)


def _section(document: Mapping[str, Any], name: str, allow_missing: bool = False) -> Any:
    value = document.get(name)
    if value is None:
        return None if allow_missing else {}
    if not isinstance(value, Mapping):
        raise ConfigError(name, "must be a JSON object")
    return value
