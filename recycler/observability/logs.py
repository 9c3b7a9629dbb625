"""Structured JSON logging: one line per event, with cluster and service on each.

In Lambda with ``LoggingConfig: LogFormat: JSON`` the runtime's own handler
turns ``extra=`` fields into JSON keys; locally ``JsonFormatter`` does the same.
Fields bound with ``bind()`` are added to every record, whichever module logs
it, through the log-record factory. Registered secret values are masked in
every message, extra field and traceback as a last line of defence; the code
never logs them on purpose. ``mask_data`` applies the same mask to a report
before it is returned, emailed or raised.
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
# Attributes every LogRecord has; anything else on a record came from extra= or bind().
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_NOISY = ("botocore", "boto3", "urllib3", "s3transfer")

_base_factory = logging.getLogRecordFactory()
_base_make_record = logging.Logger.makeRecord


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    if _secrets:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
    return record


def _make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
    # Bound fields go in as `extra`, so a call's own extra= of the same key wins instead of raising.
    bound = _bound.get()
    if bound:
        positional = list(args)
        if len(positional) >= 9:
            positional[8] = {**bound, **(positional[8] or {})}
        else:
            kwargs["extra"] = {**bound, **(kwargs.get("extra") or {})}
        args = tuple(positional)
    record = _base_make_record(self, *args, **kwargs)
    if _secrets:
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, mask_data(value))
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters reuse exc_text when set; the runtime's own JSON formatter reads exc_info itself.
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
    return record


logging.setLogRecordFactory(_record_factory)
logging.Logger.makeRecord = _make_record  # type: ignore[method-assign]


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
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def configure(level: str | int | None = None, *, lambda_json: bool = False, in_lambda: bool = False) -> None:
    """Set levels; install the JSON formatter unless Lambda's JSON log format is active.

    What the environment says (AWS_LAMBDA_LOG_LEVEL or LOG_LEVEL, AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_FUNCTION_NAME)
    comes in from recycler.hosts.environment.
    """
    root = logging.getLogger()
    root.setLevel(level or "INFO")
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if lambda_json:
        return
    if in_lambda and root.handlers:
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
        return
    if not any(getattr(h, "_recycle_json", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._recycle_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
