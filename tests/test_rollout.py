"""Rollout controls: batches, oldest-first and zone-balanced selection, resumable runs, max_tasks,
task protection, and a fast, clear failure when ECS cannot place a task.

Each test states what must hold of the service (capacity, restore, which tasks were stopped).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.bed import CLUSTER, SERVICE, Bed, load_event

from dev.simulator import Behaviour
from recycler.model.errors import ConfigError
from recycler.model.request import parse_event, utc_text
from recycler.model.settings import RecycleSettings
from recycler.run.selection import TaskInfo, batches_of, select

# --------------------------------------------------------------------------- selection, pure


def _tasks(zones: str, started: list[float] | None = None) -> list[TaskInfo]:
    return [TaskInfo(f"arn:task/{i:02d}", (started[i] if started else float(i)), zone) for i, zone in enumerate(zones)]


def test_one_at_a_time_is_oldest_first() -> None:
    tasks = _tasks("abcab", started=[50, 10, 40, 20, 30])
    assert [b[0] for b in batches_of(sorted(tasks, key=lambda t: t.started_at or 0), 1)] == [
        "arn:task/01",
        "arn:task/03",
        "arn:task/04",
        "arn:task/02",
        "arn:task/00",
    ]


def test_a_batch_takes_one_task_from_each_zone_while_zones_are_even() -> None:
    # GIVEN nine tasks, three per zone, oldest first
    batches = batches_of(_tasks("abcabcabc"), 3)
    # THEN every batch holds one task of each zone, the oldest of each
    zone_of = {t.arn: t.zone for t in _tasks("abcabcabc")}
    assert [sorted(str(zone_of[a]) for a in b) for b in batches] == [["a", "b", "c"]] * 3
    assert batches[0] == ("arn:task/00", "arn:task/01", "arn:task/02")


@given(
    zones=st.lists(st.sampled_from("abcd"), min_size=1, max_size=60),
    size=st.integers(min_value=1, max_value=12),
)
def test_batches_cover_every_task_once_and_take_from_the_fullest_zone(zones: list[str], size: int) -> None:
    tasks = _tasks("".join(zones))
    batches = batches_of(tasks, size)
    # THEN every task is in exactly one batch, no batch is too big, only the last may be smaller
    assert sorted(a for b in batches for a in b) == sorted(t.arn for t in tasks)
    assert all(0 < len(b) <= size for b in batches)
    assert all(len(b) == size for b in batches[:-1])
    assert len(batches) == math.ceil(len(tasks) / size)
    # AND no zone loses more at once than its share, rounded up, of what is left
    zone_of = {t.arn: t.zone for t in tasks}
    left = Counter(zone_of.values())
    for batch in batches:
        taken = Counter(zone_of[a] for a in batch)
        total = sum(left.values())
        for zone, count in taken.items():
            assert count <= math.ceil(len(batch) * left[zone] / total) + 1
        left -= taken


def test_young_tasks_are_left_alone_and_max_tasks_takes_the_oldest() -> None:
    now = 10_000.0
    tasks = _tasks("aaaaaa", started=[now - 50, now - 9000, now - 7000, now - 100, now - 8000, now - 6000])
    selection = select(tasks, now, batch_size=2, min_task_age_seconds=3600, max_tasks=3)
    assert {arn for arn, _ in selection.left_alone} == {"arn:task/00", "arn:task/03"}
    assert all("younger than min_task_age_seconds (3600s)" in note for _, note in selection.left_alone)
    assert selection.chosen == ("arn:task/01", "arn:task/04", "arn:task/02")
    assert selection.beyond_max == ("arn:task/05",)


# --------------------------------------------------------------------------- the event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 101),
        ("batch_size", "2"),
        ("batch_size", 2.5),
        ("min_task_age_seconds", -1),
        ("min_task_age_seconds", True),
        ("max_tasks", 0),
        ("max_tasks", 5001),
        ("max_tasks", "5"),
    ],
)
def test_a_bad_rollout_field_is_named(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_event({"cluster_name": "c", "service_name": "s", field: value})
    assert caught.value.field == field


def test_rollout_fields_default_to_one_at_a_time_everything() -> None:
    request = parse_event({"cluster_name": "c", "service_name": "s", "max_tasks": None})
    assert (request.batch_size, request.min_task_age_seconds, request.max_tasks) == (1, 0, None)


# --------------------------------------------------------------------------- batches on the simulated cluster


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_batches_keep_capacity_between_n_and_n_plus_the_batch(bed: Bed, batch_size: int) -> None:
    # GIVEN seven tasks (the last batch is smaller unless the size divides seven)
    bed.add_service(tasks=7, target=(2, 7))

    # WHEN recycled in batches, with the surge
    report = bed.run(batch_size=batch_size, wait_time=10)

    # THEN every original was replaced once, serving never below N, live never above N + batch_size
    assert report.status == "succeeded", report.error
    key = f"{CLUSTER}:{SERVICE}"
    assert bed.sim.observed.min_serving[key] >= 7
    assert bed.sim.observed.max_live[key] <= 7 + batch_size
    assert bed.originals_stopped() == set(bed.snapshots[SERVICE]["tasks"])
    bed.assert_each_original_stopped_at_most_once()
    bed.assert_restored()
    # AND each recycled task says which batch it was in; batches are full but for the last
    per_batch = Counter(t.batch or 0 for t in report.tasks_recycled)
    assert sorted(per_batch) == list(range(1, math.ceil(7 / batch_size) + 1))
    assert all(n == batch_size for b, n in per_batch.items() if b != max(per_batch))


@pytest.mark.parametrize("batch_size", [2, 3])
def test_without_the_surge_capacity_never_drops_below_n_minus_the_batch(bed: Bed, batch_size: int) -> None:
    bed.add_service(tasks=6, target=(1, 6))
    report = bed.run(batch_size=batch_size, maintain_service_state=False, wait_time=0)
    assert report.status == "succeeded", report.error
    key = f"{CLUSTER}:{SERVICE}"
    assert bed.sim.observed.min_serving[key] >= 6 - batch_size
    assert bed.sim.observed.max_live[key] <= 6
    bed.assert_restored()


def test_tasks_are_recycled_oldest_first(bed: Bed) -> None:
    bed.add_service(tasks=5)
    started = {t.task_arn: t.started_at for t in bed.sim.tasks(CLUSTER, SERVICE)}
    report = bed.run(wait_time=0)
    order = [t.old_task_arn for t in sorted(report.tasks_recycled, key=lambda t: t.index)]
    assert order == sorted(started, key=lambda arn: started[arn])


def test_a_batch_takes_its_tasks_from_every_zone(bed: Bed) -> None:
    # GIVEN nine tasks spread over three zones
    bed.add_service(tasks=9)
    zone_of = {t.task_arn: t.availability_zone for t in bed.sim.tasks(CLUSTER, SERVICE)}
    assert Counter(zone_of.values()) == Counter({"us-east-1a": 3, "us-east-1b": 3, "us-east-1c": 3})

    report = bed.run(batch_size=3, wait_time=0)

    # THEN each batch stopped one task in each zone
    assert report.status == "succeeded", report.error
    for batch in (1, 2, 3):
        zones = sorted(zone_of[t.old_task_arn] for t in report.tasks_recycled if t.batch == batch)
        assert zones == ["us-east-1a", "us-east-1b", "us-east-1c"]


def test_max_tasks_recycles_the_oldest_and_reports_the_rest_as_remaining(bed: Bed) -> None:
    # GIVEN the nightly "refresh the 3 oldest" on an 8-task service
    bed.add_service(tasks=8, target=(2, 10))
    started = {t.task_arn: t.started_at for t in bed.sim.tasks(CLUSTER, SERVICE)}
    oldest = sorted(started, key=lambda arn: started[arn])

    report = bed.run(max_tasks=3, wait_time=0)

    # THEN the run succeeded: it did what it was asked
    assert report.status == "succeeded", report.error
    assert {t.old_task_arn for t in report.tasks_recycled} == set(oldest[:3])
    assert bed.originals_stopped() == set(oldest[:3])
    assert set(report.tasks_remaining) == set(oldest[3:])
    bed.assert_restored()


def test_young_tasks_are_skipped_with_a_note_and_never_stopped(bed: Bed) -> None:
    # GIVEN two tasks that started ten minutes ago, among five
    bed.add_service(tasks=5)
    young = bed.snapshots[SERVICE]["tasks"][:2]
    for task in bed.sim.tasks(CLUSTER, SERVICE):
        if task.task_arn in young:
            bed.sim.set_started(task, bed.clock.now() - 600)

    report = bed.run(min_task_age_seconds=3600, wait_time=0)

    assert report.status == "succeeded", report.error
    skipped = {t.old_task_arn: t.note for t in report.tasks_skipped}
    assert set(skipped) == set(young)
    assert all(note and "younger than min_task_age_seconds (3600s)" in note for note in skipped.values())
    assert not bed.originals_stopped() & set(young)
    assert report.task_total == 3 and len(report.tasks_recycled) == 3


def test_an_incomplete_plain_run_says_how_to_carry_on_and_the_next_run_does(bed: Bed) -> None:
    # GIVEN a plain invocation too short for eight tasks
    bed.add_service(tasks=8, target=(2, 10))
    originals = set(bed.snapshots[SERVICE]["tasks"])
    first_started = bed.clock.now()
    first = bed.run(timeout=400)
    assert first.status == "incomplete" and first.restored is True
    resume = json.loads(str(first.error).split("carry on with the event ", 1)[1].split("}", 1)[0] + "}")
    assert resume["started_before"] == utc_text(first_started) and resume["cluster_name"] == CLUSTER
    assert "min_task_age_seconds" not in resume

    # WHEN invoked again with that event a little later
    bed.clock.sleep(120)
    bed.sim.reconcile()
    live = {t.task_arn for t in bed.sim.tasks(CLUSTER, SERVICE) if t.desired_status == "RUNNING"}
    second = bed.run(owner="run-2", **{k: v for k, v in resume.items() if k not in ("cluster_name", "service_name")})

    # THEN it carried on with the tasks the first did not reach, and left what the first replaced alone
    assert second.status == "succeeded", second.error
    first_done = {t.old_task_arn for t in first.tasks_recycled}
    assert {t.old_task_arn for t in second.tasks_recycled} == originals - first_done
    # (the restore's scale-in may have taken one of the first run's new tasks; the others still run)
    replaced_by_first = {t.new_task_arn for t in first.tasks_recycled} & live
    assert replaced_by_first and replaced_by_first <= {t.old_task_arn for t in second.tasks_skipped}
    bed.assert_each_original_stopped_at_most_once()
    bed.assert_restored()


def _resume_event(error: str | None) -> dict[str, Any]:
    assert error and "carry on with the event " in error, error
    return dict(json.loads(error.split("carry on with the event ", 1)[1].split("}", 1)[0] + "}"))


def test_time_running_out_during_a_wait_still_gives_the_event_that_carries_on(bed: Bed) -> None:
    # GIVEN starts that slow from 40 s to 500 s after the first batches, in a 600 s invocation
    behaviour = Behaviour()
    bed.add_service(tasks=6, target=(2, 10), behaviour=behaviour)
    bed.sim.at(200, "slow starts", lambda: setattr(behaviour, "start_seconds", 500.0))

    report = bed.run(timeout=600, wait_time=0)

    # THEN the run stopped inside a replacement's wait, restored, and says how to carry on
    assert report.status == "incomplete" and report.restored is True
    assert "while waiting for a replacement" in str(report.error)
    resume = _resume_event(report.error)
    assert (
        resume["started_before"] == str(report.started_at).replace("+00:00", "Z") and resume["service_name"] == SERVICE
    )
    assert f"{len(report.tasks_remaining)} tasks remain" in str(report.error)
    bed.assert_restored()


def test_the_event_that_carries_on_keeps_the_gates_and_the_age_asked_for(bed: Bed) -> None:
    # GIVEN a gated run with a minimum age shorter than the run itself
    bed.add_service(tasks=8, target=(2, 10))
    bed.add_alarm("web-5xx")
    report = bed.run(
        timeout=400, alarm_names=["web-5xx"], use_service_alarms=False, hand_off=False, min_task_age_seconds=60
    )
    assert report.status == "incomplete", report.error

    resume = _resume_event(report.error)
    # THEN the re-invocation is gated as this run was, keeps the minimum age the user asked for, and skips
    # every task this run started by its start time
    assert resume["alarm_names"] == ["web-5xx"]
    assert resume["use_service_alarms"] is False and resume["hand_off"] is False
    assert resume["min_task_age_seconds"] == 60
    assert resume["started_before"] == str(report.started_at).replace("+00:00", "Z")
    assert parse_event(resume).alarm_names == ("web-5xx",)


def test_a_protected_task_is_never_stopped(bed: Bed) -> None:
    # GIVEN one task protected from the start, and another that protects itself mid-run
    bed.add_service(tasks=5, target=(1, 8))
    ordered = sorted(bed.sim.tasks(CLUSTER, SERVICE), key=lambda t: t.started_at)
    early, late = ordered[1].task_arn, ordered[4].task_arn
    bed.sim.protect(early, 3600)
    bed.sim.at(100, "the task protects itself", lambda: bed.sim.protect(late, 3600))

    report = bed.run(wait_time=10)

    # THEN neither was stopped, each is skipped with "protected" and the expiry, and the rest were recycled
    assert report.status == "succeeded", report.error
    skipped = {t.old_task_arn: t.note or "" for t in report.tasks_skipped}
    assert set(skipped) == {early, late}
    assert all("protected" in note and "until 20" in note for note in skipped.values())
    assert not bed.originals_stopped() & {early, late}
    assert len(report.tasks_recycled) == 3
    bed.assert_restored()
    bed.assert_capacity_held()


def test_an_unplaceable_surge_fails_fast_with_ecs_own_words_and_restores(bed: Bed) -> None:
    # GIVEN a cluster with room for exactly the service's five tasks
    bed.add_service(tasks=5, target=(2, 10), behaviour=Behaviour(capacity=5))
    started = bed.clock.now()

    report = bed.run(wait_time=0)

    # THEN it failed on placement, long before replacement_timeout_seconds, quoting ECS
    assert report.status == "failed" and report.error_type == "PlacementFailed"
    assert "was unable to place a task" in (report.error or "")
    assert bed.clock.now() - started < RecycleSettings().replacement_timeout_seconds / 2
    assert bed.sim.observed.stops == {}
    bed.assert_restored()


def test_a_replacement_that_cannot_be_placed_fails_fast_and_capacity_comes_back(bed: Bed) -> None:
    # GIVEN room for N + 1, and a batch of two (the surge places one task, not two)
    bed.add_service(tasks=4, target=(2, 10), behaviour=Behaviour(capacity=5))
    report = bed.run(batch_size=2, wait_time=0)
    assert report.status == "failed" and report.error_type == "PlacementFailed"
    bed.assert_restored()


def test_a_task_stuck_in_provisioning_is_reported_by_that_state(bed: Bed) -> None:
    # GIVEN capacity-provider scaling that never delivers: new tasks stay PROVISIONING
    behaviour = Behaviour()
    bed.add_service(tasks=3, target=(1, 6), behaviour=behaviour)
    behaviour.provisioning_seconds = 10**6

    report = bed.run(settings=RecycleSettings(replacement_timeout_seconds=120), wait_time=0)

    assert report.status == "failed" and report.error_type == "ReplacementTimeout"
    assert "PROVISIONING" in (report.error or "")
    bed.assert_restored()


def test_the_dry_run_plan_counts_batches_and_what_is_left_alone(bed: Bed) -> None:
    bed.add_service(tasks=7, target=(1, 7))
    report = bed.run(dry_run=True, batch_size=3, max_tasks=6)
    assert report.status == "dry_run" and report.plan is not None
    plan = report.plan
    assert plan["batches"] == 2 and plan["batch_size"] == 3 and len(plan["tasks_to_stop"]) == 6
    assert plan["left_alone"]["beyond_max_tasks"] == 1
    surge = plan["surge"]
    assert surge is not None and surge["desired_count"] == "7 -> 10" and surge["raise_max_capacity"] is True
    # (each batch and the surge: the service's tasks started in 40 s, plus a 5 s poll; then wait_time)
    assert plan["estimated_seconds"] == (2 + 1) * (40 + 5) + 2 * 30
    # The task list is in the plan only, not again in tasks_remaining.
    assert report.tasks_remaining == []


# --------------------------------------------------------------------------- console test events and the CLI


def test_the_batch_console_event_recycles_in_batches(bed: Bed) -> None:
    event = load_event("batch.json")
    bed.add_service(tasks=10, target=(2, 12))
    engine, _ = bed.engine()
    report = engine.run(parse_event(event))
    assert report.status == "succeeded", report.error
    assert max(t.batch or 0 for t in report.tasks_recycled) == 2
    assert bed.sim.observed.max_live[f"{CLUSTER}:{SERVICE}"] <= 10 + event["batch_size"]
    bed.assert_restored()


def test_the_nightly_console_event_refreshes_the_five_oldest_of_a_day_or_more(bed: Bed) -> None:
    request = parse_event(load_event("nightly-oldest.json"))
    bed.add_service(tasks=8)
    young = bed.snapshots[SERVICE]["tasks"][0]
    for task in bed.sim.tasks(CLUSTER, SERVICE):
        # Three days old, but for one started an hour ago.
        age = 3600 if task.task_arn == young else 3 * 86_400 + len(task.task_arn)
        bed.sim.set_started(task, bed.clock.now() - age)
    engine, _ = bed.engine()
    report = engine.run(request)
    assert report.status == "succeeded", report.error
    assert len(report.tasks_recycled) == 5 and young not in bed.originals_stopped()
    assert len(report.tasks_remaining) == 2 and [t.old_task_arn for t in report.tasks_skipped] == [young]


def test_the_cli_takes_the_rollout_fields_as_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from recycler.hosts import cli

    seen: list[Any] = []

    def run_recycle(request: Any, config: Any, **_: Any) -> dict[str, Any]:
        seen.append(request)
        return {"status": "dry_run"}

    monkeypatch.setattr(cli, "run_recycle", run_recycle)
    argv = ["--cluster", "c", "--service", "s", "--dry-run", "--batch-size", "4", "--max-tasks", "9"]
    assert cli.main([*argv, "--min-task-age-seconds", "3600"]) == 0
    assert (seen[0].batch_size, seen[0].max_tasks, seen[0].min_task_age_seconds) == (4, 9, 3600)
    # A bad value is named by its flag
    assert cli.main(["--cluster", "c", "--service", "s", "--batch-size", "0"]) == 2
