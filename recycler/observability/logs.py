"""Structured JSON logging: one line per event, with cluster and service on each.

In Lambda with ``LoggingConfig: LogFormat: JSON`` the runtime's own handler
turns record fields into JSON keys; locally ``JsonFormatter`` does the same.
Nothing is patched process-wide: ``configure()`` puts a ``LogContext`` filter on
the root logger's handlers, and ``JsonFormatter`` applies the same step itself.
On those handlers every record, whichever logger made it, carries the fields
bound with ``bound()`` (a botocore retry line then still says which service it
was for) and has registered secret values masked in its message, extra fields
and traceback, as a last line of defence; the code never logs them on purpose.
A handler this module was not given sees records as the standard library made
them. ``mask_data`` applies the same mask to a report before it is returned,
emailed or raised.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)
_secrets: set[str] = set()
# The same values, longest first, so that a form containing another is masked whole.
_ordered: list[str] = []
_MASK = "***"
# Shorter values would mask ordinary words.
_MIN_SECRET_CHARS = 6
# Attributes every LogRecord has; anything else on a record came from extra= or bound().
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_NOISY = ("botocore", "boto3", "urllib3", "s3transfer")


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def prepare(record: logging.LogRecord) -> None:
    """Add the bound fields to record and mask registered secrets in it, in place.

    Running it again on the same record changes nothing, so a record that passes
    two handlers holding the filter comes out the same.
    """
    bound = _bound.get()
    if bound:
        extras = _extra_fields(record)
        # Bound fields first and a call's own extra= of the same key winning, as when they went in as extra=.
        for key in extras:
            delattr(record, key)
        for key, value in {**bound, **extras}.items():
            setattr(record, key, value)
    if not _secrets:
        return
    message = record.getMessage()
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, None
    for key, value in _extra_fields(record).items():
        setattr(record, key, mask_data(value))
    if record.exc_info and record.exc_info[1] is not None:
        # Formatters reuse exc_text when set; the runtime's own JSON formatter reads exc_info itself.
        record.exc_text = mask(logging.Formatter().formatException(record.exc_info))


class LogContext(logging.Filter):
    """A handler filter: bound fields and the secret mask on every record the handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        prepare(record)
        return True


def mask(text: str) -> str:
    """Replace every registered secret value, in every registered form, in text."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def mask_data(value: Any) -> Any:
    """A copy of value with every string inside dicts, lists and tuples masked (keys too)."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask_data(k): mask_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_data(v) for v in value)
    return value


def secret_forms(value: str) -> set[str]:
    """The ways a secret shows up in text: raw, stripped, repr() of the str and of its bytes, JSON-escaped.

    A token ending in a newline reaches an error as ``Invalid header value b'…\\n'``:
    the raw value is not in that text, but the body of its bytes repr is.
    """
    forms = {
        value,
        value.strip(),
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    for encoding in ("utf-8", "latin-1"):
        try:
            forms.add(repr(value.encode(encoding))[2:-1])
        except UnicodeEncodeError:
            pass
    return {form for form in forms if len(form) >= _MIN_SECRET_CHARS}


def register_secret(value: str | None) -> None:
    """Never let this value, in any of its forms, reach a log line, a report or an email."""
    if not value:
        return
    forms = secret_forms(value)
    if forms - _secrets:
        _secrets.update(forms)
        _ordered[:] = sorted(_secrets, key=len, reverse=True)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add fields (cluster, service, request_id) to every record logged inside the block."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Also on a handler that configure() never saw, such as one added after it ran.
        prepare(record)
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_extra_fields(record))
        if record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def attach(handler: logging.Handler) -> None:
    """Give handler the LogContext filter, once."""
    if not any(isinstance(f, LogContext) for f in handler.filters):
        handler.addFilter(LogContext())


def configure(level: str | int | None = None, *, lambda_json: bool = False, in_lambda: bool = False) -> None:
    """Set levels; filter the root handlers; install the JSON formatter unless Lambda's JSON log format is active.

    What the environment says (AWS_LAMBDA_LOG_LEVEL or LOG_LEVEL, AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_FUNCTION_NAME)
    comes in from recycler.hosts.environment.
    """
    root = logging.getLogger()
    root.setLevel(level or "INFO")
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not lambda_json:
        if in_lambda and root.handlers:
            for handler in root.handlers:
                handler.setFormatter(JsonFormatter())
        elif not any(getattr(h, "_recycle_json", False) for h in root.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonFormatter())
            handler._recycle_json = True  # type: ignore[attr-defined]
            root.addHandler(handler)
    for handler in root.handlers:
        attach(handler)
