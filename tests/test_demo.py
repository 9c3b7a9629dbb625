"""`make demo`: a recycle of the simulated service, its report, the email it sent, and on a terminal the bar."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from support.terminal import Terminal

from dev import demo


@pytest.fixture(autouse=True)
def own_logging() -> Iterator[None]:
    """The demo sets up the root logger as a program does (basicConfig, force): put back the suite's."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("botocore", "boto3", "urllib3", "mail.log")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


def test_the_demo_recycles_every_task_and_shows_the_report_and_the_email(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert '"status": "succeeded"' in out and "=== Email received by the local SMTP server" in out
    assert f"Serving tasks never fell below {demo.TASKS} (N={demo.TASKS})" in out
    assert "[t+" in out  # each event on its own line, on simulated time


def test_the_demo_at_a_terminal_shows_the_live_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)

    assert demo.main() == 0

    shown = terminal.getvalue()
    assert f"{demo.TASKS}/{demo.TASKS}" in shown and "100%" in shown and "recycle succeeded" in shown
    # the run's lines are still there, above the bar, on simulated time
    assert "[t+" in shown and "Task 1 recycled" in shown
