"""Following a run from a terminal (``--invoke F --follow``, ``--follow``): the status answers a function gives
drive the view, and the exit status says how the run ended."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from dev.simulator import VirtualClock
from recycler.hosts.follow import APPEAR_SECONDS, EXIT_CODES, Follower, exit_code
from recycler.model.progress import LiveProgress
from recycler.model.runtime import iso_seconds

T0 = VirtualClock().now()


def running(started: float, recycled: int, total: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "action": "status",
        "state": "running",
        "owner": "lambda 1",
        "phase": "surged",
        "started_at": iso_seconds(started),
        "progress": {"recycled": recycled, "total": total, "batch": recycled},
        "percent_complete": recycled * 100 // total,
        "eta": iso_seconds(started + 600),
        **extra,
    }


def idle(last: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"action": "status", "state": "idle"}
    if last is not None:
        answer["last_run"] = last
    return answer


def last_run(started: float, status: str, recycled: int = 4, error: str | None = None) -> dict[str, Any]:
    return {
        "owner": "lambda 1",
        "started_at": iso_seconds(started),
        "ended_at": iso_seconds(started + 300),
        "status": status,
        "recycled": recycled,
        "total": 4,
        "error": error,
    }


class Script:
    """The function's answers, one per poll; the last is repeated once they run out."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers: Iterator[dict[str, Any]] = iter(answers)
        self.last = answers[-1]
        self.asked = 0

    def __call__(self) -> Mapping[str, Any]:
        self.asked += 1
        self.last = next(self.answers, self.last)
        return self.last


def follow(answers: list[dict[str, Any]], since: float | None, run_key: str | None = None) -> tuple[Any, list[Any]]:
    shown: list[LiveProgress] = []
    clock = VirtualClock()
    clock.t = T0 + 10
    result = Follower(Script(answers), clock, shown.append).follow(since, run_key)
    return result, shown


def test_a_run_started_here_is_followed_to_its_end() -> None:
    # GIVEN the last run on record is yesterday's, and the new run appears on the third answer
    yesterday = last_run(T0 - 86_400, "failed", 1, "boom")
    answers = [
        idle(yesterday),
        idle(yesterday),
        running(T0 + 2, 0),
        running(T0 + 2, 2),
        idle(last_run(T0 + 2, "succeeded")),
    ]

    result, shown = follow(answers, since=T0)

    # THEN yesterday's run is not taken for it, the progress is shown in order, and it ends succeeded
    assert result.status == "succeeded"
    assert [p.recycled for p in shown if p.recycled is not None] == [0, 2, 4]
    assert shown[-1].status == "succeeded"
    assert exit_code(result.status) == 0


@pytest.mark.parametrize(("status", "code"), [("failed", 1), ("refused", 2), ("incomplete", 3), ("cancelled", 130)])
def test_the_exit_status_follows_the_outcome(status: str, code: int) -> None:
    result, _ = follow([running(T0, 1), idle(last_run(T0, status, 1, "why"))], since=T0)
    assert result.status == status and exit_code(result.status) == code
    assert "why" in result.message


def test_a_run_that_never_appears_ends_the_follow_with_where_to_look() -> None:
    old = idle(last_run(T0 - 3600, "succeeded"))
    script = Script([old])
    clock = VirtualClock()
    result = Follower(script, clock, lambda _: None).follow(since=clock.now())
    assert result.status is None and exit_code(result.status) == 1
    assert "aws logs tail" in result.message
    # it kept asking for as long as a queued start may take, and no longer
    assert APPEAR_SECONDS <= clock.now() - VirtualClock().now() <= APPEAR_SECONDS + 10


def test_a_run_that_dies_holding_the_lock_is_a_failure() -> None:
    result, _ = follow([running(T0, 1), {"action": "status", "state": "stale", "started_at": iso_seconds(T0)}], T0)
    assert result.status == "failed" and "repairs" in result.message


def test_following_with_nothing_started_reports_the_run_going_or_the_last_one() -> None:
    result, shown = follow([running(T0 - 900, 3), idle(last_run(T0 - 900, "cancelled", 3))], since=None)
    assert result.status == "cancelled" and shown[0].recycled == 3
    result, _ = follow([idle(last_run(T0 - 900, "succeeded"))], since=None)
    assert result.status == "succeeded"
    result, _ = follow([idle()], since=None)
    assert exit_code(result.status) == 0 and "none is on record" in result.message


def test_a_second_start_of_the_same_run_follows_the_one_already_going() -> None:
    # GIVEN the run under this run_key started an hour before this second start
    answers = [running(T0 - 3600, 2, run_key="20261204"), idle(last_run(T0 - 3600, "succeeded"))]
    result, shown = follow(answers, since=T0, run_key="20261204")
    assert result.status == "succeeded" and shown[0].recycled == 2


def test_every_outcome_has_an_exit_status_and_only_success_is_zero() -> None:
    assert {code for status, code in EXIT_CODES.items() if status not in ("succeeded", "dry_run", "handed_off")} >= {
        1,
        2,
        3,
        130,
    }
    assert exit_code("something new") == 1
