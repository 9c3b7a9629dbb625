"""logs: registered secrets are masked in every form, in messages, extra fields, tracebacks and data."""

from __future__ import annotations

import io
import json
import logging

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
