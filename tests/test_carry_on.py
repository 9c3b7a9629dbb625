"""Carrying on after an incomplete run: the event it hands back names an absolute cut-off (started_before).

What must hold: a chain of re-invocations with the event each incomplete run gives recycles exactly the
originals the first run did not reach, each once, and never a task one of the runs started, whatever
the tasks' ages and however long the operator waits between invocations.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.bed import CLUSTER, SERVICE, Bed, load_event

from recycler.model.errors import ConfigError
from recycler.model.report import RecycleReport
from recycler.model.request import parse_event, utc_text
from recycler.run.selection import TaskInfo, select

NOW = 1_800_000_000.0

# --------------------------------------------------------------------------- the field


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("text", ["2026-12-02T10:00:00Z", "2026-12-02T10:00:00+00:00"])
def test_started_before_takes_an_iso_utc_time(text: str) -> None:
    request = parse_event({"cluster_name": "c", "service_name": "s", "started_before": text})
    assert request.started_before == datetime(2026, 12, 2, 10, tzinfo=UTC).timestamp()
    assert utc_text(request.started_before) == "2026-12-02T10:00:00Z"


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-02T10:00:00",  # naive: whose 10:00?
        "2026-12-02T10:00:00+02:00",  # not UTC
        "2026-12-02T10:00:00-00:00",
        "2026-12-02",
        "2026-13-02T10:00:00Z",
        "2026-12-02T25:00:00Z",
        "2026-12-02 10:00:00Z",
        "yesterday",
        "",
        "2026-12-02T10:00:00Z\n",
        "２０２６-12-02T10:00:00Z",
        1_764_669_600,
        True,
        ["2026-12-02T10:00:00Z"],
    ],
)
def test_a_bad_started_before_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_event({"cluster_name": "c", "service_name": "s", "started_before": value})
    assert caught.value.field == "started_before"
    assert "ISO 8601 UTC" in caught.value.problem


def test_the_carry_on_cut_off_is_the_run_start_or_an_earlier_one_the_event_gave() -> None:
    plain = parse_event({"cluster_name": "c", "service_name": "s"})
    # (whole seconds, rounded down: a task started in the run's own second is not one of its replacements)
    assert plain.carry_on_started_before(NOW + 0.7) == _iso(NOW)
    earlier = parse_event({"cluster_name": "c", "service_name": "s", "started_before": _iso(NOW - 3600)})
    assert earlier.carry_on_started_before(NOW) == _iso(NOW - 3600)
    later = parse_event({"cluster_name": "c", "service_name": "s", "started_before": _iso(NOW + 3600)})
    assert later.carry_on_started_before(NOW) == _iso(NOW)


def test_the_cli_takes_started_before(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from recycler.hosts import cli

    seen: list[Any] = []

    def run_recycle(request: Any, config: Any, **_: Any) -> dict[str, Any]:
        seen.append(request)
        return {"status": "dry_run"}

    monkeypatch.setattr(cli, "run_recycle", run_recycle)
    argv = ["--cluster", "c", "--service", "s", "--dry-run"]
    assert cli.main([*argv, "--started-before", "2026-12-02T10:00:00Z"]) == 0
    assert seen[0].started_before == datetime(2026, 12, 2, 10, tzinfo=UTC).timestamp()
    # A bad value is named by its flag
    assert cli.main([*argv, "--started-before", "2026-12-02T10:00:00"]) == 2
    assert "--started-before:" in capsys.readouterr().err


# --------------------------------------------------------------------------- selection, pure


def test_a_task_started_at_or_after_the_cut_off_is_left_alone_with_a_note() -> None:
    tasks = [TaskInfo("arn:task/old", NOW - 7200, "a"), TaskInfo("arn:task/at", NOW, "a")]
    tasks += [TaskInfo("arn:task/new", NOW + 60, "a"), TaskInfo("arn:task/unknown", None, "a")]
    selection = select(tasks, NOW + 600, 1, 0, None, started_before=NOW)
    assert set(selection.chosen) == {"arn:task/old", "arn:task/unknown"}
    notes = dict(selection.left_alone)
    assert set(notes) == {"arn:task/at", "arn:task/new"}
    assert all(f"at or after started_before ({_iso(NOW)})" in note for note in notes.values())
    assert selection.after_started_before == 2


@given(
    ages=st.lists(st.integers(min_value=0, max_value=10 * 86_400), min_size=0, max_size=40),
    cut_off=st.integers(min_value=-86_400, max_value=10 * 86_400),
    min_age=st.sampled_from([0, 600, 3600]),
    max_tasks=st.none() | st.integers(min_value=1, max_value=40),
)
def test_no_task_at_or_after_the_cut_off_is_ever_chosen(
    ages: list[int], cut_off: int, min_age: int, max_tasks: int | None
) -> None:
    tasks = [TaskInfo(f"arn:task/{i:02d}", NOW - age, "a") for i, age in enumerate(ages)]
    selection = select(tasks, NOW, 2, min_age, max_tasks, started_before=NOW - cut_off)
    started = {t.arn: t.started_at or 0.0 for t in tasks}
    # THEN nothing chosen started at or after the cut-off, and every task is in exactly one list
    assert all(started[arn] < NOW - cut_off for arn in selection.chosen)
    alone = [arn for arn, _ in selection.left_alone]
    assert sorted([*selection.chosen, *alone, *selection.beyond_max]) == sorted(started)
    late = {arn for arn, at in started.items() if at >= NOW - cut_off}
    assert late <= set(alone) and selection.after_started_before == len(late)


# --------------------------------------------------------------------------- chains on the plain function


def _resume_event(report: RecycleReport) -> dict[str, Any]:
    error = report.error or ""
    assert "carry on with the event " in error, error
    event = dict(json.loads(error.split("carry on with the event ", 1)[1].split("}", 1)[0] + "}"))
    return {k: v for k, v in event.items() if k not in ("cluster_name", "service_name")}


def _plain_chain(bed: Bed, timeout: float, gap: float, **event: Any) -> list[RecycleReport]:
    """Invoke, then re-invoke with the event each incomplete run gives, until a run ends otherwise."""
    reports = [bed.run(owner="run-1", timeout=timeout, **event)]
    while reports[-1].status == "incomplete" and len(reports) < 8:
        assert reports[-1].restored is True
        bed.clock.sleep(gap)
        bed.sim.reconcile()
        reports.append(bed.run(owner=f"run-{len(reports) + 1}", timeout=timeout, **_resume_event(reports[-1])))
    return reports


def _assert_chain_recycled_exactly_the_originals(bed: Bed, reports: list[RecycleReport]) -> None:
    originals = set(bed.snapshots[SERVICE]["tasks"])
    assert len(reports) > 1 and reports[0].status == "incomplete"
    assert reports[-1].status == "succeeded", reports[-1].error
    recycled = [t.old_task_arn for r in reports for t in r.tasks_recycled]
    # THEN every original was recycled exactly once, by one run of the chain
    assert sorted(recycled) == sorted(originals)
    # AND each re-invocation took exactly what the runs before it had not reached
    done: set[str] = set()
    for report in reports:
        mine = {t.old_task_arn for t in report.tasks_recycled}
        assert mine == (originals - done) - set(report.tasks_remaining)
        done |= mine
    # AND no task a run of the chain started was stopped: each was left alone, saying why
    bed.assert_each_original_stopped_at_most_once()
    for report in reports[1:]:
        for skipped in report.tasks_skipped:
            assert skipped.old_task_arn not in originals
            assert "at or after started_before" in (skipped.note or ""), skipped.note
    bed.assert_restored()


@pytest.mark.parametrize("gap", [120, 2 * 3600])
def test_the_issue_repro_a_young_service_carried_on_recycles_the_originals_it_had_not_reached(
    bed: Bed, gap: float
) -> None:
    # GIVEN 16 tasks that all started 30 minutes ago, in a plain invocation that fits about 11 of them
    bed.add_service(tasks=16, target=(2, 20))
    for task in bed.sim.tasks(CLUSTER, SERVICE):
        bed.sim.set_started(task, bed.clock.now() - 1800)

    # WHEN re-invoked with the event each incomplete run gives, soon after or two hours later
    reports = _plain_chain(bed, timeout=900, gap=gap)

    # THEN the chain recycled the 5 it had not reached, and none of the first run's replacements
    assert 0 < len(reports[0].tasks_recycled) < 16
    assert len(reports[1].tasks_recycled) == 16 - len(reports[0].tasks_recycled)
    _assert_chain_recycled_exactly_the_originals(bed, reports)


def test_a_chain_with_tasks_younger_and_older_than_an_hour(bed: Bed) -> None:
    # GIVEN 12 tasks: six started three hours ago, six five minutes ago; invocations that fit about four
    bed.add_service(tasks=12, target=(2, 16))
    for index, task in enumerate(sorted(bed.sim.tasks(CLUSTER, SERVICE), key=lambda t: t.task_arn)):
        bed.sim.set_started(task, bed.clock.now() - (3 * 3600 if index % 2 else 300))

    reports = _plain_chain(bed, timeout=400, gap=60, wait_time=10)

    assert len(reports) >= 3
    _assert_chain_recycled_exactly_the_originals(bed, reports)


def test_the_carry_on_keeps_the_users_own_minimum_age_and_an_earlier_cut_off(bed: Bed) -> None:
    # GIVEN an event with its own cut-off, an hour before this run, and a minimum age of a minute
    bed.add_service(tasks=8, target=(2, 10))
    cut_off = _iso(bed.clock.now() - 3600)
    report = bed.run(timeout=400, min_task_age_seconds=60, started_before=cut_off)
    assert report.status == "incomplete", report.error

    # THEN the event that carries on keeps both as they were
    resume = _resume_event(report)
    assert resume["started_before"] == cut_off and resume["min_task_age_seconds"] == 60


def test_the_dry_run_counts_the_tasks_the_cut_off_leaves_alone(bed: Bed) -> None:
    bed.add_service(tasks=5)
    late = bed.snapshots[SERVICE]["tasks"][:2]
    for task in bed.sim.tasks(CLUSTER, SERVICE):
        if task.task_arn in late:
            bed.sim.set_started(task, bed.clock.now() - 60)
    report = bed.run(dry_run=True, started_before=_iso(bed.clock.now() - 600))
    assert report.plan is not None
    assert report.plan["left_alone"]["started_at_or_after_started_before"] == 2
    assert report.plan["left_alone"]["younger_than_min_task_age"] == 0
    assert set(report.plan["tasks_to_stop"]) == set(bed.snapshots[SERVICE]["tasks"]) - set(late)


def test_the_carry_on_console_event_leaves_alone_what_started_after_its_cut_off(bed: Bed) -> None:
    event = load_event("carry-on.json")
    request = parse_event(event)
    assert request.started_before is not None
    bed.add_service(tasks=4)
    # (every task started a day before the event's cut-off, but one that restarted just after it)
    bed.clock.sleep(request.started_before + 3600 - bed.clock.now())
    late = bed.snapshots[SERVICE]["tasks"][0]
    for task in bed.sim.tasks(CLUSTER, SERVICE):
        at = request.started_before + (60 if task.task_arn == late else -86_400)
        bed.sim.set_started(task, at)
    engine, _ = bed.engine()
    report = engine.run(request)
    assert report.status == "succeeded", report.error
    assert [t.old_task_arn for t in report.tasks_skipped] == [late]
    assert late not in bed.originals_stopped() and len(report.tasks_recycled) == 3
