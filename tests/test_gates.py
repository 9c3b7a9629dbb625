"""Safety gates and operator control: CloudWatch alarms, cancel and status.

What must hold: once an alarm fires or a cancel comes, no further task is
stopped; the replacements in flight finish, so capacity is back to N; the
service is restored; and the outcome names the alarm (failed) or is cancelled.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed, load_event
from support.invariants import MUTATING

import lambda_function
from dev.simulator import Behaviour, FakeLambdaContext
from recycler.aws.gateway import ServiceGateway
from recycler.hosts import cli, control, plain
from recycler.hosts.config import parse_config
from recycler.model.errors import ConfigError
from recycler.model.request import parse_event
from recycler.model.settings import RecycleSettings
from recycler.run.gates import CANCEL_TAG_KEY, CancelRequest


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock, with an input.json of defaults."""
    return plain.build_handler(clock=bed.clock, config=parse_config({}))


def _cancel_tag(bed: Bed) -> str | None:
    tags = bed.sim.service(CLUSTER, SERVICE).tags or []
    return next((t["value"] for t in tags if t["key"] == CANCEL_TAG_KEY), None)


def _reads(bed: Bed) -> ServiceGateway:
    return ServiceGateway(
        bed.ecs, bed.autoscaling, bed.elbv2, parse_event({"cluster_name": CLUSTER, "service_name": SERVICE})
    )


def _assert_nothing_changed(bed: Bed, before: dict[str, Any]) -> None:
    """No mutating ECS, Application Auto Scaling or DynamoDB call reached the backend, and the service is as it was."""
    # Not vacuous: the simulator saw the calls of the handler's own clients (it reads the service first).
    assert bed.sim.calls.get("describe_services", 0) > 0, bed.sim.calls
    bed.assert_nothing_changed(before)


# --------------------------------------------------------------------------- the event


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"action": "restart"}, "action"),
        ({"alarm_names": "web-5xx"}, "alarm_names"),
        ({"alarm_names": ["ok", ""]}, "alarm_names[1]"),
        ({"alarm_names": ["bad\nname"]}, "alarm_names[0]"),
        ({"alarm_names": [f"a{i}" for i in range(101)]}, "alarm_names"),
        ({"use_service_alarms": "yes"}, "use_service_alarms"),
        ({"hand_off": 0}, "hand_off"),
    ],
)
def test_a_bad_gate_field_is_named(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_event({"cluster_name": "c", "service_name": "s", **event})
    assert caught.value.field == field


# --------------------------------------------------------------------------- alarms


def test_an_alarm_that_fires_mid_run_stops_the_run_after_the_replacements_in_flight(bed: Bed) -> None:
    # GIVEN a 5-task service gated by an alarm that goes into ALARM 100 s in
    bed.add_service(tasks=5, target=(2, 10))
    alarm = bed.add_alarm("web-5xx")
    stopped_at = bed.record_stop_times()
    bed.sim.at(100, "errors", lambda: bed.sim.set_alarm(alarm, "ALARM", "Threshold Crossed: 42 5xx in 1 minute"))

    report = bed.run(alarm_names=[alarm], wait_time=10)

    # THEN no task was stopped after the alarm fired, the run failed naming it and why, and the service is back
    assert report.status == "failed" and report.error_type == "AlarmTriggered"
    assert "web-5xx" in (report.error or "") and "Threshold Crossed: 42 5xx" in (report.error or "")
    fired = bed.clock.start + 100
    assert stopped_at and all(at < fired for at in stopped_at.values())
    assert 0 < len(report.tasks_recycled) < 5 and len(report.tasks_remaining) == 5 - len(report.tasks_recycled)
    bed.assert_capacity_held()
    bed.assert_restored()
    bed.assert_each_original_stopped_at_most_once()


def test_a_stopped_run_with_max_tasks_still_lists_the_tasks_beyond_it_as_remaining(bed: Bed) -> None:
    # GIVEN "the 4 oldest of 6", gated by an alarm that fires 100 s in
    bed.add_service(tasks=6, target=(2, 10))
    alarm = bed.add_alarm("web-5xx")
    bed.sim.at(100, "errors", lambda: bed.sim.set_alarm(alarm, "ALARM", "Threshold Crossed"))

    report = bed.run(alarm_names=[alarm], max_tasks=4, wait_time=10)

    # THEN every original is either recycled or remaining, the two beyond max_tasks included
    assert report.error_type == "AlarmTriggered", report.error
    recycled = {t.old_task_arn for t in report.tasks_recycled}
    assert 0 < len(recycled) < 4
    assert recycled.isdisjoint(report.tasks_remaining)
    assert recycled | set(report.tasks_remaining) == set(bed.snapshots[SERVICE]["tasks"])
    bed.assert_restored()


def test_an_alarm_already_firing_refuses_the_run_before_anything_changes(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 6))
    alarm = bed.add_alarm("web-latency")
    bed.sim.set_alarm(alarm, "ALARM", "p99 above 2 s")
    report = bed.run(alarm_names=[alarm])
    assert report.status == "failed" and report.error_type == "PreflightError"
    assert "web-latency" in (report.error or "") and "already in ALARM: p99 above 2 s" in (report.error or "")
    assert MUTATING.isdisjoint(bed.calls)
    bed.assert_restored()


@pytest.mark.parametrize("state", ["OK", "INSUFFICIENT_DATA"])
def test_ok_and_insufficient_data_do_not_block(bed: Bed, state: str) -> None:
    bed.add_service(tasks=2)
    alarm = bed.add_alarm("web-5xx")
    bed.sim.set_alarm(alarm, state, "no data yet")
    report = bed.run(alarm_names=[alarm], wait_time=0)
    assert report.status == "succeeded", report.error


def test_a_misspelt_alarm_refuses_the_run_naming_it(bed: Bed) -> None:
    bed.add_service(tasks=2)
    bed.add_alarm("web-5xx")
    report = bed.run(alarm_names=["web-5xx", "web-5xxx"])
    assert report.status == "failed" and "alarm 'web-5xxx' does not exist" in (report.error or "")
    assert MUTATING.isdisjoint(bed.calls)


def test_the_services_own_deployment_alarms_gate_the_run(bed: Bed) -> None:
    # GIVEN a service whose deployment alarms (enabled) include one that is firing, and no alarm_names
    bed.add_service(tasks=2)
    alarm = bed.add_alarm("web-deploy-errors")
    bed.sim.set_alarm(alarm, "ALARM", "errors during the last deployment")
    service: Any = bed.sim.service(CLUSTER, SERVICE)
    service.deployment_configuration = {"alarms": {"alarmNames": [alarm], "enable": True, "rollback": True}}

    # WHEN recycled, THEN the service's own alarm refuses it
    report = bed.run(wait_time=0)
    assert report.status == "failed" and "web-deploy-errors" in (report.error or "")

    # AND with use_service_alarms false the run goes ahead
    report = bed.run(owner="run-2", use_service_alarms=False, wait_time=0)
    assert report.status == "succeeded", report.error


def test_an_alarm_that_fires_while_watching_after_the_last_task_fails_the_run(bed: Bed) -> None:
    bed.add_service(tasks=2, target=(1, 4))
    alarm = bed.add_alarm("web-5xx")
    # Two tasks take about 40 + 2 x (40 + 10) s; the alarm fires 60 s into a 300 s watch.
    bed.sim.at(200, "late errors", lambda: bed.sim.set_alarm(alarm, "ALARM", "errors after the recycle"))
    settings = RecycleSettings(alarm_watch_seconds=300)
    report = bed.run(alarm_names=[alarm], wait_time=10, settings=settings)
    assert len(report.tasks_recycled) == 2
    assert report.status == "failed" and "errors after the recycle" in (report.error or "")
    bed.assert_restored()


def test_a_long_alarm_watch_keeps_the_lock_alive_and_the_run_ends_succeeded(bed: Bed) -> None:
    # GIVEN a CLI-style run (no time limit, the lock lasts 720 s past each write) and a one-hour alarm watch
    bed.add_service(tasks=2, target=(1, 4))
    alarm = bed.add_alarm("web-5xx")
    lock_left: list[float] = []
    for at in range(300, 3_900, 300):
        bed.sim.at(
            at, f"status at {at}", lambda: lock_left.append((bed.lock() or _no_lock()).expires_at - bed.clock.now())
        )
    engine, _ = bed.engine(timeout=None, settings=RecycleSettings(alarm_watch_seconds=3_600), lock_ttl=720)
    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "alarm_names": [alarm]}))

    # THEN the watch ran to its end, and at no point of it did the lock look abandoned to another run
    assert report.status == "succeeded", report.error
    assert (report.duration_seconds or 0) >= 3_600
    assert len(lock_left) == 12 and min(lock_left) > 0
    bed.assert_restored()


def _no_lock() -> Any:
    raise AssertionError("the lock item vanished during the run")


def test_an_alarm_watch_that_cannot_fit_the_invocation_is_not_started(bed: Bed) -> None:
    # GIVEN a 900 s plain, two tasks, and a one-hour alarm watch
    bed.add_service(tasks=2, target=(1, 4))
    alarm = bed.add_alarm("web-5xx")
    settings = RecycleSettings(alarm_watch_seconds=3_600)
    plan = bed.run(alarm_names=[alarm], dry_run=True, settings=settings).plan
    unwatched = bed.run(alarm_names=[alarm], dry_run=True).plan
    assert plan and unwatched and plan["estimated_seconds"] == unwatched["estimated_seconds"] + 3_600

    report = bed.run(alarm_names=[alarm], settings=settings)

    # THEN the run stopped before the batch the watch would follow, inside the plain, restored,
    # and says how to carry on
    assert report.status == "incomplete" and "carry on with the event" in (report.error or "")
    assert (report.duration_seconds or 0) < 900
    bed.assert_restored()


def test_a_watch_the_time_budget_cuts_short_ends_incomplete_and_restored(bed: Bed) -> None:
    # GIVEN starts slower than the estimate, so the watch begins later than planned in a 900 s invocation
    behaviour = Behaviour()
    bed.add_service(tasks=1, target=(1, 4), behaviour=behaviour)
    alarm = bed.add_alarm("web-5xx")
    bed.sim.at(30, "slow starts", lambda: setattr(behaviour, "start_seconds", 500.0))
    report = bed.run(alarm_names=[alarm], wait_time=0, settings=RecycleSettings(alarm_watch_seconds=400))

    # THEN the task was recycled, the watch stopped where the budget ended it, and the service went back
    assert len(report.tasks_recycled) == 1
    assert report.status == "incomplete" and "alarm watch" in (report.error or ""), report.error
    assert (report.duration_seconds or 0) < 900
    bed.assert_restored()


def test_an_alarm_deleted_mid_run_stops_the_run_as_one_in_alarm_does(bed: Bed) -> None:
    # GIVEN a 5-task service gated by an alarm that someone deletes 100 s in
    bed.add_service(tasks=5, target=(2, 10))
    alarm = bed.add_alarm("web-5xx")
    stopped_at = bed.record_stop_times()
    bed.sim.at(100, "alarm deleted", lambda: bed.sim.delete_alarm(alarm))

    report = bed.run(alarm_names=[alarm], wait_time=10)

    # THEN the gate did not switch off: no task was stopped after the deletion, the run failed naming the
    # alarm, and the service is back
    assert report.status == "failed" and report.error_type == "AlarmTriggered", report.error
    assert "alarm 'web-5xx' no longer exists" in (report.error or "")
    gone = bed.clock.start + 100
    assert stopped_at and all(at < gone for at in stopped_at.values())
    assert 0 < len(report.tasks_recycled) < 5 and len(report.tasks_remaining) == 5 - len(report.tasks_recycled)
    bed.assert_capacity_held()
    bed.assert_restored()
    bed.assert_each_original_stopped_at_most_once()


def test_the_simulator_deletes_an_alarm(bed: Bed) -> None:
    alarm = bed.add_alarm("web-5xx")
    bed.sim.delete_alarm(alarm)
    assert bed.cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"] == []


# --------------------------------------------------------------------------- cancel and status


def test_a_cancel_mid_run_stops_gracefully_and_restores(bed: Bed) -> None:
    # GIVEN a running recycle, and an operator who cancels it 100 s in
    bed.add_service(tasks=5, target=(2, 10))
    stopped_at = bed.record_stop_times()
    asked: list[control.CancelAnswer] = []
    bed.sim.at(
        100,
        "operator cancels",
        lambda: asked.append(control.cancel(_reads(bed), bed.store, bed.clock, "ops@pager").to_dict()),
    )

    report = bed.run(wait_time=10)

    # THEN the cancel was accepted, no task was stopped after it, the service is restored and the tag gone
    assert asked[0]["state"] == "running" and "cancel requested" in asked[0]["result"]
    assert report.status == "cancelled" and report.error_type == "RecycleCancelled"
    assert "ops@pager" in (report.error or "")
    assert all(at < bed.clock.start + 100 for at in stopped_at.values())
    assert len(report.tasks_recycled) + len(report.tasks_remaining) == 5
    bed.assert_capacity_held()
    bed.assert_restored()
    assert _cancel_tag(bed) is None


def test_a_cancel_with_nothing_running_says_so_and_leaves_no_tag(bed: Bed) -> None:
    bed.add_service(tasks=2)
    result = control.cancel(_reads(bed), bed.store, bed.clock, "ops").to_dict()
    assert result["state"] == "idle" and "no recycle in progress" in result["result"]
    assert _cancel_tag(bed) is None


def test_a_stale_cancel_tag_is_removed_and_reported_and_does_not_cancel_the_run(bed: Bed) -> None:
    arn = bed.add_service(tasks=2)
    stale = CancelRequest("ops", bed.clock.now() - 3600).to_tag_value()
    bed.ecs.tag_resource(resourceArn=arn, tags=[{"key": CANCEL_TAG_KEY, "value": stale}])
    report = bed.run(wait_time=0)
    assert report.status == "succeeded", report.error
    assert any("stale" in change and CANCEL_TAG_KEY in change for change in report.external_changes)
    assert _cancel_tag(bed) is None
    bed.assert_restored()


def test_a_cancel_from_a_requester_whose_clock_runs_behind_still_cancels_the_run(bed: Bed) -> None:
    # GIVEN an operator whose clock is ten minutes slow: their cancel is dated before the run started
    bed.add_service(tasks=5, target=(2, 10))
    stopped_at = bed.record_stop_times()
    slow_clock = types.SimpleNamespace(now=lambda: bed.clock.now() - 600)
    asked: list[float] = []

    def cancel() -> None:
        assert control.cancel(_reads(bed), bed.store, slow_clock, "ops laptop").to_dict()["state"] == "running"
        asked.append(bed.clock.now())

    bed.sim.at(100, "operator cancels", cancel)
    report = bed.run(wait_time=10)

    # THEN it names the run it is for, so the run honours it whatever the clocks say
    assert report.status == "cancelled" and "requested by ops laptop" in (report.error or ""), report.error
    assert asked and all(at < asked[0] for at in stopped_at.values())
    assert _cancel_tag(bed) is None
    bed.assert_restored()


def test_a_cancel_left_for_an_earlier_run_does_not_cancel_the_next_one(bed: Bed) -> None:
    # GIVEN a cancel tag naming another run, dated after this run starts
    arn = bed.add_service(tasks=2)
    other = CancelRequest("ops", bed.clock.now() + 5, run="an-earlier-run").to_tag_value()
    bed.ecs.tag_resource(resourceArn=arn, tags=[{"key": CANCEL_TAG_KEY, "value": other}])
    report = bed.run(wait_time=0)
    # THEN it is stale for this run: removed, reported, and the run carries on
    assert report.status == "succeeded", report.error
    assert any("stale" in change for change in report.external_changes)
    assert _cancel_tag(bed) is None


@pytest.mark.parametrize(
    "value",
    [
        "please stop",
        # The documented shape, but dated before the run started (a requester's clock that runs behind).
        "by=ops at=2020-01-01T00:00:00+00:00",
        "by=ops at=yesterday",
        "",
    ],
)
def test_a_cancel_tag_written_by_hand_mid_run_cancels_it_whatever_its_value(bed: Bed, value: str) -> None:
    # GIVEN a running recycle, and an operator who tags the service by hand 100 s in, in a format of their own
    arn = bed.add_service(tasks=5, target=(2, 10))
    stopped_at = bed.record_stop_times()
    tag = {"key": CANCEL_TAG_KEY, "value": value}
    bed.sim.at(100, "operator tags", lambda: bed.ecs.tag_resource(resourceArn=arn, tags=[tag]))

    report = bed.run(wait_time=10)

    # THEN the tag was not there when the run took its lock, so it is a cancel for this run: no task was
    # stopped after it, the run ends cancelled and restored, and the tag is gone
    assert report.status == "cancelled" and report.error_type == "RecycleCancelled", report.error
    if value == "please stop":
        assert "please stop" in (report.error or "")
    assert stopped_at and all(at < bed.clock.start + 100 for at in stopped_at.values())
    assert 0 < len(report.tasks_recycled) < 5 and len(report.tasks_remaining) == 5 - len(report.tasks_recycled)
    bed.assert_capacity_held()
    bed.assert_restored()
    assert _cancel_tag(bed) is None


def test_a_cancel_tag_naming_another_run_written_mid_run_does_not_cancel_it(bed: Bed) -> None:
    # GIVEN a running recycle, and a cancel for another run that lands on the service 100 s in
    arn = bed.add_service(tasks=3, target=(1, 6))
    other = CancelRequest("ops", bed.clock.now() + 100, run="another-run").to_tag_value()
    tag = {"key": CANCEL_TAG_KEY, "value": other}
    bed.sim.at(100, "cancel for another run", lambda: bed.ecs.tag_resource(resourceArn=arn, tags=[tag]))

    report = bed.run(wait_time=10)

    # THEN it is stale for this run, which recycles every task
    assert report.status == "succeeded", report.error
    assert len(report.tasks_recycled) == 3
    bed.assert_restored()


def test_an_unreadable_cancel_tag_already_there_at_the_start_is_stale(bed: Bed) -> None:
    # GIVEN a free-form cancel tag left on the service before the run
    arn = bed.add_service(tasks=2)
    bed.ecs.tag_resource(resourceArn=arn, tags=[{"key": CANCEL_TAG_KEY, "value": "please stop"}])
    report = bed.run(wait_time=0)
    # THEN it was on the service when the run took its lock: removed, reported, and the run carries on
    assert report.status == "succeeded", report.error
    assert any("stale" in change and "please stop" in change for change in report.external_changes)
    assert _cancel_tag(bed) is None


def test_status_while_running_and_when_idle(bed: Bed) -> None:
    # GIVEN a recycle of four tasks, asked for its status midway
    bed.add_service(tasks=4, target=(1, 8))
    seen: list[control.StatusAnswer] = []
    bed.sim.at(150, "status", lambda: seen.append(control.status(_reads(bed), bed.store, bed.clock).to_dict()))

    report = bed.run(wait_time=10)

    # THEN midway it was running, with the owner, progress, expiry and an ETA after the start
    assert report.status == "succeeded", report.error
    running = seen[0]
    assert running["state"] == "running" and running["owner"] == "run-1"
    assert running["progress"]["total"] == 4 and 0 < running["progress"]["recycled"] < 4
    assert running["eta"] and running["eta"] > running["started_at"] and running["lock_expires_at"]
    # AND afterwards it is idle, still saying how far the last run got
    idle = control.status(_reads(bed), bed.store, bed.clock).to_dict()
    assert idle["state"] == "idle" and idle["progress"] == {"recycled": 4, "total": 4, "batch": 4}


def test_status_of_a_run_that_died_is_stale(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 6))
    bed.clock.kill_at = bed.clock.now() + 100
    with pytest.raises(BaseException, match="killed"):
        bed.run()
    bed.clock.sleep(2000)
    stale = control.status(_reads(bed), bed.store, bed.clock).to_dict()
    assert stale["state"] == "stale" and "repairs" in stale["note"]


def test_status_and_cancel_through_the_handler_change_nothing_but_the_tag(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed.add_service(tasks=2, target=(1, 4))
    context = FakeLambdaContext(bed.clock)
    before = bed.service_state()
    status = plain_handler(bed)(load_event("status.json"), context)
    assert status["state"] == "idle" and status["action"] == "status"
    cancel = plain_handler(bed)(load_event("cancel.json"), context)
    assert cancel["state"] == "idle"
    # The handler builds its own clients: what counts is what reached the simulated backend.
    _assert_nothing_changed(bed, before)
    assert _cancel_tag(bed) is None


@pytest.fixture
def entry_points(bed: Bed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Bed:
    """The handler and the CLI build their own session and clients; here they run on the bed's virtual clock
    (passed in), and the CLI reads an input.json of defaults."""
    config = tmp_path / "input.json"
    config.write_text("{}")
    monkeypatch.setenv("RECYCLE_CONFIG", str(config))
    return bed


def test_the_handler_returns_a_cancelled_run_and_does_not_raise(entry_points: Bed) -> None:
    # GIVEN a recycle through the plain handler, and an operator who cancels it 100 s in
    bed = entry_points
    bed.add_service(tasks=5, target=(2, 10))
    bed.sim.at(
        100, "operator cancels", lambda: control.cancel(_reads(bed), bed.store, bed.clock, "ops@pager").to_dict()
    )
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 10}

    # WHEN the handler runs, THEN it returns (a raise would fail the test here): the operator asked for this
    result = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-9"))

    assert result["status"] == "cancelled" and result["error_type"] == "RecycleCancelled"
    assert "ops@pager" in result["error"]
    assert 0 < len(result["tasks_recycled"]) < 5
    bed.assert_restored()
    assert _cancel_tag(bed) is None


def test_the_cli_exits_0_for_a_cancelled_run(entry_points: Bed, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a recycle through the CLI, and an operator who cancels it 100 s in
    bed = entry_points
    bed.add_service(tasks=5, target=(2, 10))
    bed.sim.at(
        100, "operator cancels", lambda: control.cancel(_reads(bed), bed.store, bed.clock, "ops@pager").to_dict()
    )

    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--wait-time", "10"], clock=bed.clock)

    # THEN it exits 0 and prints the cancelled report
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "cancelled" and "ops@pager" in report["error"]
    assert code == 0
    bed.assert_restored()
    assert _cancel_tag(bed) is None


@pytest.mark.parametrize(("entry", "requester"), [("cli", "cli user@host"), ("lambda", "lambda request req-cancel")])
def test_a_cancel_names_the_whole_requester_in_status_and_in_the_error(
    entry_points: Bed, monkeypatch: pytest.MonkeyPatch, entry: str, requester: str
) -> None:
    # GIVEN a running recycle, and an operator who cancels it 100 s in through the CLI (user "user" on host
    # "host") or the handler (request req-cancel), then asks for its status: both requesters hold a space
    bed = entry_points
    bed.add_service(tasks=5, target=(2, 10))
    ask: Callable[[str], dict[str, Any]]
    if entry == "cli":
        monkeypatch.setattr(cli, "getpass", types.SimpleNamespace(getuser=lambda: "user"))
        monkeypatch.setattr(cli, "socket", types.SimpleNamespace(gethostname=lambda: "host"))
        answers: list[dict[str, Any]] = []
        real_run_recycle = cli.run_recycle

        def recording_run_recycle(*args: Any, **kwargs: Any) -> dict[str, Any]:
            answers.append(real_run_recycle(*args, **kwargs))
            return answers[-1]

        monkeypatch.setattr(cli, "run_recycle", recording_run_recycle)

        def ask(action: str) -> dict[str, Any]:
            assert cli.main(["--cluster", CLUSTER, "--service", SERVICE, f"--{action}"], clock=bed.clock) == 0
            return answers[-1]

    else:

        def ask(action: str) -> dict[str, Any]:
            event = {"cluster_name": CLUSTER, "service_name": SERVICE, "action": action}
            return plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-cancel"))

    seen: dict[str, dict[str, Any]] = {}
    bed.sim.at(100, "operator cancels", lambda: seen.setdefault("cancel", ask("cancel")))
    bed.sim.at(100, "operator asks for status", lambda: seen.setdefault("status", ask("status")))

    report = bed.run(wait_time=10)

    # THEN the cancel, the status and the run's error all name the whole requester, not its first word
    asked = f"requested by {requester} at "
    assert seen["cancel"]["state"] == "running" and asked in seen["cancel"]["result"]
    assert seen["status"]["state"] == "running" and seen["status"]["cancel_requested"].startswith(asked)
    assert report.status == "cancelled" and asked in (report.error or ""), report.error
    bed.assert_restored()
    assert _cancel_tag(bed) is None
