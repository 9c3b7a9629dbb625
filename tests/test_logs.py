"""logs: registered secrets are masked in every form, in messages, extra fields, tracebacks and data."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from support.logs import log_lines

from recycler.observability import logs

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLOGSTESTKEY"


@pytest.mark.parametrize(
    "form",
    [
        lambda s: s,
        lambda s: repr(s),
        lambda s: repr(s.encode()),
        lambda s: json.dumps(s),
        lambda s: f"Invalid header value {(s + chr(10)).encode()!r}",
        lambda s: json.dumps({"error": repr((s + chr(10)).encode())}),
    ],
    ids=["raw", "repr", "bytes-repr", "json", "header-error", "json-of-bytes-repr"],
)
def test_a_registered_secret_is_masked_in_each_form_it_takes(form: object) -> None:
    # GIVEN a secret with a trailing newline, registered as input.json gave it
    logs.register_secret(SECRET + "\n")
    # WHEN it shows up raw, repr'd, as bytes or JSON-escaped, THEN the mask removes it
    text = form(SECRET + "\n")  # type: ignore[operator]
    assert SECRET in text
    assert SECRET not in logs.mask(text)


def test_mask_data_masks_every_string_in_nested_data_and_leaves_the_rest() -> None:
    logs.register_secret(SECRET)
    report = {
        "status": "failed",
        "error": f"boom {SECRET!r}",
        "tasks_recycled": [{"note": SECRET, "seconds": 1.5}],
        "restored": None,
        "pair": (SECRET, 3),
    }
    masked = logs.mask_data(report)
    assert SECRET not in json.dumps(masked)
    assert masked["tasks_recycled"][0]["seconds"] == 1.5 and masked["restored"] is None
    assert masked["pair"] == ("***", 3)
    assert report["error"] == f"boom {SECRET!r}", "the input is not changed"


def test_a_secret_in_an_extra_field_or_traceback_is_masked(captured_logs: io.StringIO) -> None:
    # GIVEN a registered secret
    logs.register_secret(SECRET)
    logger = logging.getLogger("careless")
    # WHEN it is logged in an extra field and inside an exception's message
    logger.warning("detail attached", extra={"detail": f"token {(SECRET + chr(10)).encode()!r}", "items": [SECRET]})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        logger.exception("it failed")
    # THEN no line holds it
    assert SECRET not in captured_logs.getvalue()
    lines = log_lines(captured_logs)
    assert lines[0]["items"] == ["***"]
    assert "***" in lines[1]["exception"]


def test_short_values_are_not_registered() -> None:
    logs.register_secret("abc")
    assert logs.mask("abc def") == "abc def"


def test_importing_the_module_patches_nothing_process_wide() -> None:
    # GIVEN a fresh interpreter, WHEN it imports the module and configures logging as a handler does
    check = (
        "import logging; make, factory = logging.Logger.makeRecord, logging.getLogRecordFactory();"
        "from recycler.observability import logs; logs.configure();"
        "assert logging.Logger.makeRecord is make and logging.getLogRecordFactory() is factory is logging.LogRecord"
    )
    # THEN the Logger class and the record factory are still the standard library's own
    subprocess.run([sys.executable, "-c", check], check=True, cwd=Path(__file__).parent.parent)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_handler_that_was_not_given_the_filter_sees_records_as_the_library_made_them() -> None:
    # GIVEN a registered secret, bound fields, and a third-party logger with a handler of its own
    logs.register_secret(SECRET)
    logger = logging.getLogger("thirdparty.plain")
    keep = _Keep()
    logger.addHandler(keep)
    logger.propagate = False
    try:
        with logs.bound(cluster="prod", service="web"):
            logger.warning("saw %s", SECRET, extra={"detail": SECRET})
    finally:
        logger.removeHandler(keep)
        logger.propagate = True
    # THEN nothing of this module touched the record: no bound field, the message as given
    [record] = keep.records
    assert not hasattr(record, "cluster") and record.getMessage() == f"saw {SECRET}"
    assert record.detail == SECRET  # type: ignore[attr-defined]


def test_on_a_filtered_handler_every_logger_is_masked_and_carries_the_bound_fields() -> None:
    # Decision: the filter masks every record its handler emits, a library's too (a library's error
    # can quote a token), and stamps the bound fields on them too, so a botocore warning names its service.
    logs.register_secret(SECRET)
    logger = logging.getLogger("thirdparty.filtered")
    keep = _Keep()
    logs.attach(keep)
    logs.attach(keep)
    logger.addHandler(keep)
    logger.propagate = False
    try:
        with logs.bound(cluster="prod", service="web"):
            logger.warning("saw %s", SECRET, extra={"service": "own", "detail": [SECRET]})
    finally:
        logger.removeHandler(keep)
        logger.propagate = True
    assert len(keep.filters) == 1
    [record] = keep.records
    assert record.getMessage() == "saw ***"
    assert (record.cluster, record.service, record.detail) == ("prod", "own", ["***"])  # type: ignore[attr-defined]


def test_bound_fields_come_first_and_a_call_of_the_same_key_wins(captured_logs: io.StringIO) -> None:
    logger = logging.getLogger("ecs-task-recycle")
    with logs.bound(cluster="prod", service="web"):
        logger.warning("one", extra={"batch": 1, "service": "other"})
    [line] = log_lines(captured_logs)
    assert list(line)[4:] == ["cluster", "service", "batch"]
    assert line["service"] == "other"
