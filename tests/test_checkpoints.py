"""Checkpoints, as EC2 instance refresh has them: once a share of the tasks is recycled, the run holds for
checkpoint_delay_seconds with its gates watched and its lock renewed, and puts a Checkpoint Reached event.
An alarm during the hold fails the run, a cancel ends it at once; both restore. The hold counts in every
time rule: the plan, the next batch's fit, the hand-off and durable admission."""

from __future__ import annotations

from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed
from support.eventbridge import detail_types, subscribe

from dev.simulator import FakeLambdaContext
from recycler.aws.gateway import ServiceGateway
from recycler.hosts import control
from recycler.hosts import plain as plain_host
from recycler.hosts.config import parse_config
from recycler.model.errors import ConfigError
from recycler.model.request import DEFAULT_CHECKPOINT_DELAY_SECONDS, parse_event
from recycler.run.selection import Selection, checkpoint_batches

BASE = {"cluster_name": CLUSTER, "service_name": SERVICE}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"checkpoint_percentages": 50}, "checkpoint_percentages"),
        ({"checkpoint_percentages": [0]}, "checkpoint_percentages[0]"),
        ({"checkpoint_percentages": [101]}, "checkpoint_percentages[0]"),
        ({"checkpoint_percentages": [50, 50]}, "checkpoint_percentages[1]"),
        ({"checkpoint_percentages": [60, 40]}, "checkpoint_percentages[1]"),
        ({"checkpoint_percentages": [True]}, "checkpoint_percentages[0]"),
        ({"checkpoint_percentages": list(range(1, 12))}, "checkpoint_percentages"),
        ({"checkpoint_delay_seconds": 60}, "checkpoint_delay_seconds"),
        ({"checkpoint_percentages": [50], "checkpoint_delay_seconds": -1}, "checkpoint_delay_seconds"),
        ({"checkpoint_percentages": [50], "checkpoint_delay_seconds": 172_801}, "checkpoint_delay_seconds"),
    ],
)
def test_a_bad_checkpoint_field_is_named(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_event({**BASE, **event})
    assert error.value.field == field


def test_a_checkpoint_holds_an_hour_unless_the_event_says_otherwise() -> None:
    assert parse_event({**BASE, "checkpoint_percentages": [50]}).checkpoint_delay_seconds == 3600
    assert DEFAULT_CHECKPOINT_DELAY_SECONDS == 3600
    assert parse_event(BASE).checkpoint_delay_seconds == 0


@pytest.mark.parametrize(
    ("sizes", "percentages", "expected"),
    [
        ((1, 1, 1, 1), (25, 50), {1: 25, 2: 50}),
        # one batch passing two checkpoints holds once, at the higher
        ((3, 3, 3, 1), (10, 20, 60), {1: 20, 2: 60}),
        ((2, 2), (100,), {2: 100}),
        ((1, 1, 1), (34,), {2: 34}),
    ],
)
def test_the_batch_that_reaches_each_checkpoint(
    sizes: tuple[int, ...], percentages: tuple[int, ...], expected: dict[int, int]
) -> None:
    batches = tuple(tuple(f"t{n}-{i}" for i in range(size)) for n, size in enumerate(sizes))
    assert checkpoint_batches(Selection(batches, (), ()), percentages) == expected


def _gateway(bed: Bed) -> ServiceGateway:
    return ServiceGateway(bed.ecs, bed.autoscaling, bed.elbv2, parse_event(BASE))


def test_the_run_holds_at_its_checkpoint_and_says_so(bed: Bed) -> None:
    read = subscribe(bed.session)
    bed.add_service(tasks=4, target=(2, 8))
    stopped_at = bed.record_stop_times()

    report = bed.run(wait_time=10, checkpoint_percentages=[50], checkpoint_delay_seconds=300)

    # THEN no task was stopped during the 300 s after the second batch, and the run went on after it
    assert report.status == "succeeded", report.error
    times = sorted(stopped_at.values())
    assert len(times) == 4 and times[2] - times[1] >= 300
    events = read()
    assert detail_types(events).count("ECS Task Recycle Checkpoint Reached") == 1
    checkpoint = next(e["detail"] for e in events if e["detail-type"].endswith("Checkpoint Reached"))
    assert (checkpoint["batch"], checkpoint["checkpoint_percent"], checkpoint["counts"]["recycled"]) == (2, 50, 2)
    bed.assert_capacity_held()
    bed.assert_restored()


def test_a_cancel_during_the_hold_ends_the_run_cancelled_at_once(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(2, 8))
    stopped_at = bed.record_stop_times()
    # the checkpoint comes after the first task (about 130 s in) and holds 600 s: the cancel comes within it
    bed.sim.at(400, "operator cancels", lambda: control.cancel(_gateway(bed), bed.store, bed.clock, "ops"))

    report = bed.run(wait_time=10, checkpoint_percentages=[25], checkpoint_delay_seconds=600)

    assert report.status == "cancelled" and report.error_type == "RecycleCancelled"
    assert len(stopped_at) == 1 and len(report.tasks_recycled) == 1 and len(report.tasks_remaining) == 3
    # at once: a poll, and the restore, not the rest of the hold
    assert bed.clock.now() - bed.clock.start < 400 + 120
    bed.assert_capacity_held()
    bed.assert_restored()


def test_an_alarm_during_the_hold_fails_the_run_and_restores(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(2, 8))
    alarm = bed.add_alarm("web-5xx")
    bed.sim.at(400, "the alarm fires", lambda: bed.sim.set_alarm(alarm, "ALARM", "5xx above 1%"))

    report = bed.run(wait_time=10, alarm_names=[alarm], checkpoint_percentages=[25], checkpoint_delay_seconds=600)

    assert report.status == "failed" and report.error_type == "AlarmTriggered"
    assert len(report.tasks_recycled) == 1 and "5xx above 1%" in (report.error or "")
    bed.assert_restored()


def test_the_plan_lists_the_checkpoints_and_counts_their_holds(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(2, 8))
    without = bed.run(dry_run=True, wait_time=10).plan
    planned = bed.run(dry_run=True, wait_time=10, checkpoint_percentages=[25, 75], checkpoint_delay_seconds=300).plan
    assert without is not None and planned is not None
    assert planned["checkpoints"] == [
        {"percent": 25, "after_batch": 1, "hold_seconds": 300},
        {"percent": 75, "after_batch": 3, "hold_seconds": 300},
    ]
    assert planned["estimated_seconds"] - without["estimated_seconds"] == 600


def test_a_plain_invocation_too_short_for_the_hold_stops_before_the_batch_and_says_how_to_carry_on(bed: Bed) -> None:
    bed.add_service(tasks=4, target=(2, 8))
    stopped_at = bed.record_stop_times()

    # WHEN a 900 s invocation, which may not hand off, is asked to hold an hour after the second task
    report = bed.run(wait_time=10, checkpoint_percentages=[50], hand_off=False)

    # THEN it recycled the first task only (the second batch would reach the hold, which cannot fit), restored,
    # and its carry-on event keeps the checkpoint
    assert report.status == "incomplete", report.error
    assert len(stopped_at) == 1
    assert '"checkpoint_percentages": [50]' in (report.error or "")
    bed.assert_restored()


def test_the_plain_function_hands_a_plan_with_a_long_hold_to_the_durable_one(bed: Bed, durable_alias: Any) -> None:
    bed.add_service(tasks=2, target=(1, 6))
    handler = plain_host.build_handler(clock=bed.clock, config=parse_config({}))

    result = handler({**BASE, "checkpoint_percentages": [50]}, FakeLambdaContext(bed.clock, 900.0, "req-1"))

    assert result["status"] == "handed_off"
    assert bed.originals_stopped() == set()
