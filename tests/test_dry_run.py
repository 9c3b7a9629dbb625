"""The dry run rehearses the real run: every refusal it would meet, and the repair it would make first.

A dry run changes nothing and raises for none of the refusals: it lists each one in the report's
``would_refuse`` as ``{"check": ..., "problem": ...}``, and the CLI exits 1 when that list is not empty.
After a crash, its plan starts with the repair the run will make, in the run's own words, and plans the
recycle from the service as the repair leaves it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed
from support.invariants import SIM_MUTATING
from test_durable import durable  # noqa: F401 - the durable execution fixture, on the same bed

import lambda_function
from dev.simulator import Behaviour, FakeLambdaContext
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.lock.record import LOCK_TABLE_ENV, LockRecord, Phase, Progress, Snapshot
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import PreflightError
from recycler.run.ports import HANDOFF_ENV


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock, with a 5 s poll in input.json."""
    return plain.build_handler(clock=bed.clock, config=parse_config({"recycle": {"poll_interval_seconds": 5}}))


def _checks(report: Any) -> dict[str, str]:
    """would_refuse as check -> problem (each check appears once in these tests)."""
    entries = report["would_refuse"] if isinstance(report, dict) else report.would_refuse
    assert all(set(entry) == {"check", "problem"} for entry in entries), entries
    return {entry["check"]: entry["problem"] for entry in entries}


@pytest.fixture
def handler_env(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> Bed:
    """The entry points on the bed's virtual clock, with an input.json of defaults."""
    return bed


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"recycle": {"poll_interval_seconds": 5}}))
    return ["--cluster", CLUSTER, "--service", SERVICE, "--dry-run", "--config", str(config), *extra]


# --------------------------------------------------------------------------- the three cases


def test_a_misspelt_alarm_is_a_would_refuse_entry_and_the_real_run_refuses_it(bed: Bed) -> None:
    # GIVEN a service, one real alarm and a misspelling of it in alarm_names
    bed.add_service(tasks=3, target=(1, 6))
    bed.add_alarm("web-5xx")
    before = bed.service_state()

    # WHEN a dry run is asked for
    report = bed.run(dry_run=True, alarm_names=["web-5xx", "web-5xxx"])

    # THEN it returns its plan, with the missing alarm named under "alarms", and changes nothing
    assert report.status == "dry_run" and report.plan is not None and report.error is None
    assert "'web-5xxx' does not exist" in _checks(report)["alarms"]
    bed.assert_nothing_changed(before)

    # AND the real run is refused for that very alarm
    real = bed.run(alarm_names=["web-5xx", "web-5xxx"])
    assert real.status == "failed" and "'web-5xxx' does not exist" in (real.error or "")
    bed.assert_nothing_changed(before)


def test_an_alarm_in_alarm_is_a_would_refuse_entry(bed: Bed) -> None:
    # GIVEN a gating alarm that is firing
    bed.add_service(tasks=2)
    bed.add_alarm("web-5xx")
    bed.sim.set_alarm("web-5xx", "ALARM", "5xx above 10")
    before = bed.service_state()

    report = bed.run(dry_run=True, alarm_names=["web-5xx"])

    # THEN the dry run names it with its reason, and changes nothing
    assert report.status == "dry_run"
    assert "'web-5xx' is already in ALARM: 5xx above 10" in _checks(report)["alarms"]
    bed.assert_nothing_changed(before)


def test_a_lock_table_that_does_not_exist_is_a_would_refuse_entry(bed: Bed) -> None:
    # GIVEN a lock table name that names no table
    bed.add_service(tasks=3, target=(1, 6))
    bed.store = DynamoLockStore(bed.dynamodb, "no-such-table")
    # The template's role reaches only its own table: calls to this one are not for the IAM cross-check.
    bed.record_calls = False
    before = bed.service_state()

    # WHEN a dry run is asked for
    report = bed.run(dry_run=True)

    # THEN the plan is still made (every other check ran), the table's problem is listed, nothing changed
    assert report.status == "dry_run" and report.plan is not None
    assert len(report.plan["tasks_to_stop"]) == 3
    problem = _checks(report)["lock_table"]
    assert "not found" in problem and "no-such-table" in problem and "LOCK_TABLE_NAME" in problem, problem
    bed.assert_nothing_changed(before)

    # AND the real run fails on it
    real = bed.run()
    assert real.status == "failed" and "lock table 'no-such-table' not found" in (real.error or "")
    bed.assert_nothing_changed(before)


def test_no_lock_table_at_all_is_a_would_refuse_entry_naming_the_variable(
    handler_env: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no LOCK_TABLE_NAME and no recycle.lock_table_name
    bed = handler_env
    monkeypatch.delenv(LOCK_TABLE_ENV)
    bed.add_service(tasks=2)
    before = bed.service_state()

    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "dry_run": True}
    result = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-1"))

    # THEN the plan is there, and the refusal a recycle would meet names LOCK_TABLE_NAME
    assert result["status"] == "dry_run" and len(result["plan"]["tasks_to_stop"]) == 2
    assert LOCK_TABLE_ENV in _checks(result)["lock_table"]
    bed.assert_nothing_changed(before)


def test_a_plan_too_long_for_the_invocation_without_a_hand_off_is_a_would_refuse_entry(handler_env: Bed) -> None:
    # GIVEN 40 tasks, a 900 s invocation and no durable alias to hand off to
    bed = handler_env
    bed.add_service(tasks=40, target=(1, 50))
    before = bed.service_state()

    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "dry_run": True}
    result = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-1"))

    # THEN time_budget says the plan does not fit and there is no hand-off; nothing changed
    assert result["status"] == "dry_run"
    problem = _checks(result)["time_budget"]
    assert str(result["plan"]["estimated_seconds"]) in problem and "hand-off" in problem
    bed.assert_nothing_changed(before)

    # AND a plan that fits has no such entry
    bed.add_service(tasks=2, service="api")
    small = plain_handler(bed)({**event, "service_name": "api"}, FakeLambdaContext(bed.clock, 900, "req-2"))
    assert small["status"] == "dry_run" and small["would_refuse"] == []


def test_a_long_plan_with_hand_off_false_is_refused_but_one_that_hands_off_is_not(
    handler_env: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the durable alias configured, and a plan too long for one invocation
    bed = handler_env
    monkeypatch.setenv(HANDOFF_ENV, "arn:aws:lambda:us-east-1:123456789012:function:ecs-task-recycle-durable:live")
    bed.add_service(tasks=40, target=(1, 50))
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "dry_run": True}

    # WHEN the event allows the hand-off, THEN the durable function would take it: nothing to refuse
    handed = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-1"))
    assert handed["plan"]["hand_off"]["would_hand_off"] is True and handed["would_refuse"] == []

    # WHEN it says hand_off false, THEN time_budget names the field
    kept = plain_handler(bed)({**event, "hand_off": False}, FakeLambdaContext(bed.clock, 900, "req-2"))
    assert "hand_off" in _checks(kept)["time_budget"]


def test_the_cli_exits_1_when_the_dry_run_would_be_refused(
    handler_env: Bed, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a service and a lock table that does not exist
    bed = handler_env
    bed.add_service(tasks=2)
    bed.add_alarm("web-5xx")
    before = bed.service_state()

    # WHEN the dry run is clean, THEN exit 0 with an empty would_refuse
    assert lambda_function.main(_cli(tmp_path), clock=bed.clock) == 0
    assert json.loads(capsys.readouterr().out)["would_refuse"] == []

    # WHEN an alarm is misspelt, THEN exit 1, the report printed, the alarm named
    assert lambda_function.main(_cli(tmp_path, "--alarm-names", "web-5xxx"), clock=bed.clock) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "dry_run" and "web-5xxx" in _checks(printed)["alarms"]

    # WHEN the lock table does not exist, THEN exit 1 as well
    monkeypatch.setenv(LOCK_TABLE_ENV, "no-such-table")
    assert lambda_function.main(_cli(tmp_path), clock=bed.clock) == 1
    assert "lock_table" in _checks(json.loads(capsys.readouterr().out))
    bed.assert_nothing_changed(before)


# --------------------------------------------------------------------------- the other refusals


def test_a_live_lock_and_a_deployment_in_progress_are_both_listed(bed: Bed) -> None:
    # GIVEN a deployment in progress and another run's live lock
    bed.add_service(tasks=2, behaviour=Behaviour(rollout_state="IN_PROGRESS"))
    now = int(bed.clock.now())
    held = LockRecord(
        bed.lock_key(), "other-run", 7, now + 600, Phase.SURGED, now - 60, Snapshot(2, True), progress=Progress(total=2)
    )
    bed.plant_lock(held)
    before = bed.service_state()

    report = bed.run(dry_run=True)

    # THEN both are listed (the real run would stop at the first), and neither the service nor the lock changed
    checks = _checks(report)
    assert "other-run" in checks["lock"] and "IN_PROGRESS" in checks["deployment"]
    assert report.status == "dry_run" and report.error is None
    assert {op for op in bed.sim.calls if op in SIM_MUTATING} == set()
    assert bed.service_state() == before and bed.lock() == held


def test_a_missing_service_is_a_would_refuse_entry_not_an_error(bed: Bed) -> None:
    bed.add_service(tasks=2)
    report = bed.run(service="no-such-service", dry_run=True)
    assert report.status == "dry_run" and report.error is None and report.plan is None
    assert "no-such-service" in _checks(report)["service"]
    assert report.task_total is None


def test_the_durable_admission_is_a_time_budget_entry(bed: Bed) -> None:
    # GIVEN a host whose admission refuses the plan (the durable function's ExecutionTimeout bound)
    bed.add_service(tasks=3)

    def admission(*_: Any) -> None:
        raise PreflightError("3 tasks should take about 900s, more than the 600s left")

    engine, _ = bed.engine(admission=admission)
    from recycler.model.request import parse_event

    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "dry_run": True}))
    assert report.status == "dry_run" and "more than the 600s left" in _checks(report)["time_budget"]


# --------------------------------------------------------------------------- after a crash (item 14)


def _crashed_surged(bed: Bed) -> dict[str, Any]:
    """A run that died surged: desired 4 of 3, Max widened 3 -> 4, scale-in and scheduled scaling suspended."""
    bed.add_service(tasks=3, target=(2, 3))
    item = bed.expired_lock_item(snapshot={"target": {"max": 3}})
    bed.plant_lock(item)
    bed.autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{CLUSTER}/{SERVICE}",
        ScalableDimension="ecs:service:DesiredCount",
        MaxCapacity=4,
        SuspendedState={
            **item["snapshot"]["target"]["suspended"],
            "DynamicScalingInSuspended": True,
            "ScheduledScalingSuspended": True,
        },
    )
    bed.sim.set_desired(CLUSTER, SERVICE, 4)
    bed.clock.sleep(100)
    # ECS has started the surge's task by now (the simulator catches up on its next call).
    bed.sim.reconcile()
    bed.sim.calls.clear()
    return item


def _is_iso_utc(text: Any) -> bool:
    return isinstance(text, str) and datetime.fromisoformat(text).utcoffset() == UTC.utcoffset(None)


def test_a_dry_run_after_a_crash_shows_the_repair_first_and_plans_from_the_original_count(bed: Bed) -> None:
    # GIVEN a service a crashed run left surged, with its expired lock
    _crashed_surged(bed)
    before, lock_before = bed.service_state(), bed.lock()

    # WHEN a dry run is asked for
    report = bed.run(dry_run=True, owner="dry")
    plan = report.plan
    assert report.status == "dry_run" and plan is not None and report.would_refuse == []

    # THEN the plan starts with the repair: who, which phase, ISO 8601 UTC times, desired 4 -> 3, the target
    assert next(iter(plan)) == "stale_lock_to_repair"
    repair = plan["stale_lock_to_repair"]
    assert repair is not None and repair["owner"] == "run-0" and repair["phase"] == "surged"
    assert _is_iso_utc(repair["expired_at"]) and _is_iso_utc(repair["started_at"])
    assert repair["desired_count"] == "4 -> 3"
    target = str(repair["scalable_target"])
    assert "MaxCapacity 4 -> 3" in target and "scale-in" in target

    # AND the run is planned from the original count, not the surged one
    assert report.original_desired_count == 3
    surge = plan["surge"]
    assert surge is not None and surge["desired_count"] == "3 -> 4"
    assert surge["raise_max_capacity"] is True

    # AND nothing changed: the service is still surged, the lock item as it was
    assert {op for op in bed.sim.calls if op in SIM_MUTATING} == set()
    assert bed.service_state() == before and bed.lock() == lock_before

    # AND the real run repairs exactly what the plan said
    real = bed.run(wait_time=0)
    assert real.status == "succeeded", real.error
    repaired = [a.split(": ", 1)[1] for a in real.restore_actions if a.startswith("repaired expired lock of run-0")]
    assert repaired == repair["actions"]


def test_a_lock_item_this_tool_never_wrote_is_a_would_refuse_entry(bed: Bed) -> None:
    # GIVEN an expired lock item whose snapshot has Min above Max
    item = _crashed_surged(bed)
    bed.plant_lock({**item, "snapshot": {**item["snapshot"], "target": {**item["snapshot"]["target"], "min": 5}}})
    before = bed.service_state()

    report = bed.run(dry_run=True)

    # THEN the dry run names the item under "lock" and changes nothing; the service is still planned
    assert report.status == "dry_run" and report.plan is not None
    assert "not one this tool wrote" in _checks(report)["lock"]
    assert {op for op in bed.sim.calls if op in SIM_MUTATING} == set()
    assert bed.service_state() == before


def test_the_email_of_a_dry_run_says_what_the_real_run_would_refuse(bed: Bed) -> None:
    # GIVEN a dry run of three tasks gated by a misspelt alarm
    from recycler.notification.content import build_sections

    bed.add_service(tasks=3)
    report = bed.run(dry_run=True, alarm_names=["web-5xxx"]).to_dict()

    # THEN the email's outcome counts the plan's tasks and quotes the refusal
    outcome = dict(build_sections(report).facts)["Outcome"]
    assert outcome.startswith("nothing was changed; 3 task(s) would be recycled; but the real run would be refused")
    assert "'web-5xxx' does not exist" in outcome


def test_a_durable_dry_run_lists_the_execution_timeout_under_time_budget(
    bed: Bed,
    durable: Any,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the durable function with a 1 h ExecutionTimeout, and 40 tasks one at a time (about 2.3 h)
    from recycler.run import budget as durable_bounds

    monkeypatch.setenv(durable_bounds.EXECUTION_TIMEOUT_ENV, "3600")
    bed.add_service(tasks=40, target=(1, 50))
    before = bed.service_state()

    # WHEN a durable dry run is asked for
    outcome = durable(dry_run=True)

    # THEN the execution succeeds with the plan, the admission's refusal listed under time_budget; nothing changed
    assert outcome.result.status.name == "SUCCEEDED", outcome.result
    report = outcome.report
    assert report["status"] == "dry_run" and len(report["plan"]["tasks_to_stop"]) == 40
    assert "ExecutionTimeout (3600s)" in _checks(report)["time_budget"]
    bed.assert_nothing_changed(before)
