"""A fleet: several services in one event, each its own single-service run, at most max_parallel_services at
once, on the simulator (the services' threads take turns on a cooperative virtual clock)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.bed import CLUSTER, Bed, simulated_bed
from support.eventbridge import subscribe
from support.fleet import NAMES, add_services, surged_counts
from support.handoff import DURABLE_ALIAS_ARN, install_durable_alias
from support.threads import CooperativeClock, CooperativeExecutor

from dev import simulator
from dev.simulator import FakeLambdaContext, LambdaKilled
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.lock.record import LockRecord, Progress, Snapshot
from recycler.model.errors import ConfigError
from recycler.model.fleet import is_fleet_event, parse_fleet_event
from recycler.model.fleet_report import fleet_status, whole_service_estimate
from recycler.model.request import utc_text
from recycler.model.states import Phase, Status

CONFIG = parse_config({"recycle": {"poll_interval_seconds": 5, "max_failed_replacements": 2}})


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    """The bed on a clock the fleet's threads share."""
    with simulated_bed(CooperativeClock()) as bed:
        monkeypatch.setenv("LOCK_TABLE_NAME", simulator.LOCK_TABLE)
        yield bed


def handler(bed: Bed) -> Callable[[Any, Any], dict[str, Any]]:
    clock = bed.clock
    assert isinstance(clock, CooperativeClock)
    return plain.build_handler(clock=clock, config=CONFIG, executor=lambda n: CooperativeExecutor(clock, n))


def event(**fields: Any) -> dict[str, Any]:
    return {"cluster_name": CLUSTER, "services": NAMES, "wait_time": 5, **fields}


def by_service(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["service"]: s for s in result["services"]}


def test_three_services_are_each_recycled_never_more_than_two_surged_at_once(fleet: Bed) -> None:
    add_services(fleet)
    counts = surged_counts(fleet)
    read_events = subscribe(fleet.session)
    result = handler(fleet)(event(max_parallel_services=2), FakeLambdaContext(fleet.clock))
    assert result["fleet"] is True and result["status"] == "succeeded"
    assert result["totals"] == {"services": {"succeeded": 3}, "tasks_recycled": 6, "task_total": 6}
    assert [s["service"] for s in result["services"]] == NAMES and result["not_started"] == []
    assert all(s["notification"]["status"] == "skipped" for s in result["services"])
    assert result["notification"]["status"] == "not_configured"
    for name in NAMES:
        fleet.assert_restored(name)
        fleet.assert_capacity_held(name)
    # Two at once, never three.
    assert max(counts) == 2
    # One Started and one final event for the fleet, besides each service's own.
    fleet_events = [e for e in read_events() if e["detail"].get("fleet") is True]
    assert [e["detail-type"] for e in fleet_events] == ["ECS Task Recycle Started", "ECS Task Recycle Succeeded"]
    assert fleet_events[0]["detail"]["services"] == NAMES
    assert fleet_events[1]["detail"]["counts"]["tasks_recycled"] == 6


def test_one_at_a_time_is_the_default(fleet: Bed) -> None:
    add_services(fleet)
    counts = surged_counts(fleet)
    result = handler(fleet)(event(), FakeLambdaContext(fleet.clock))
    assert result["status"] == "succeeded" and max(counts) == 1


def test_a_failing_service_fails_the_fleet_and_the_others_go_on(fleet: Bed) -> None:
    add_services(fleet, failing="svc-b")
    with pytest.raises(plain.RecycleNotCompleted) as raised:
        handler(fleet)(event(max_parallel_services=2), FakeLambdaContext(fleet.clock))
    result = raised.value.report
    assert result["status"] == "failed"
    outcomes = {name: s["status"] for name, s in by_service(result).items()}
    assert outcomes == {"svc-a": "succeeded", "svc-b": "failed", "svc-c": "succeeded"}
    assert result["totals"]["services"] == {"failed": 1, "succeeded": 2}
    for name in NAMES:
        fleet.assert_restored(name)
    assert "Fleet" in str(raised.value) and "1 failed" in str(raised.value)
    assert result["error"].startswith("svc-b failed") and result["error_type"] == "ReplacementFailed"


def test_with_stop_no_service_starts_after_a_failure(fleet: Bed) -> None:
    add_services(fleet, failing="svc-a")
    before = {name: fleet.service_state(name) for name in ("svc-b", "svc-c")}
    with pytest.raises(plain.RecycleNotCompleted) as raised:
        handler(fleet)(event(on_service_failure="stop"), FakeLambdaContext(fleet.clock))
    result = raised.value.report
    assert result["status"] == "failed" and result["not_started"] == ["svc-b", "svc-c"]
    assert [s["service"] for s in result["services"]] == ["svc-a"]
    fleet.assert_restored("svc-a")
    for name, state in before.items():
        assert fleet.service_state(name) == state and fleet.lock(name) is None


def _live_lock(bed: Bed, name: str) -> None:
    now = int(bed.clock.now())
    bed.plant_lock(
        LockRecord(
            key=bed.lock_key(name),
            owner="someone-else",
            version=1,
            expires_at=now + 3600,
            phase=Phase.ACQUIRED,
            started_at=now,
            snapshot=Snapshot(desired_count=2, surge=True),
            progress=Progress(recycled=0, total=2, batch=0, updated_at=now),
        )
    )


def test_a_held_lock_refuses_that_service_only(fleet: Bed) -> None:
    add_services(fleet)
    _live_lock(fleet, "svc-b")
    before = fleet.service_state("svc-b")
    with pytest.raises(plain.RecycleNotCompleted) as raised:
        handler(fleet)(event(), FakeLambdaContext(fleet.clock))
    result = raised.value.report
    assert {n: s["status"] for n, s in by_service(result).items()} == {
        "svc-a": "succeeded",
        "svc-b": "refused",
        "svc-c": "succeeded",
    }
    # A refused service counts as failed in the fleet's status.
    assert result["status"] == "failed"
    assert fleet.service_state("svc-b") == before
    fleet.assert_restored("svc-a")
    fleet.assert_restored("svc-c")


def test_a_fleet_alarm_firing_mid_fleet_starts_no_new_service_and_restores_all(fleet: Bed) -> None:
    add_services(fleet, tasks=3)
    alarm = fleet.add_alarm("fleet-5xx")
    fleet.sim.at(60, "alarm fires", lambda: fleet.sim.set_alarm(alarm, "ALARM", "errors"))
    counts = surged_counts(fleet)
    with pytest.raises(plain.RecycleNotCompleted) as raised:
        handler(fleet)(event(alarm_names=[alarm], max_parallel_services=2), FakeLambdaContext(fleet.clock))
    result = raised.value.report
    assert result["status"] == "failed" and result["not_started"] == ["svc-c"]
    assert {s["status"] for s in result["services"]} == {"failed"}
    assert "fleet-5xx" in result["error"]
    for name in NAMES:
        fleet.assert_restored(name)
    assert max(counts) <= 2


def test_a_cancel_mid_fleet_ends_it_cancelled_and_starts_no_new_service(fleet: Bed) -> None:
    from recycler.aws.gateway import ServiceGateway
    from recycler.hosts import control
    from recycler.model.request import parse_event

    add_services(fleet, tasks=3)

    def cancel() -> None:
        request = parse_event({"cluster_name": CLUSTER, "service_name": "svc-a"})
        reads = ServiceGateway(fleet.ecs, fleet.autoscaling, fleet.elbv2, request)
        assert control.cancel(reads, fleet.store, fleet.clock, "operator").state == "running"

    fleet.sim.at(60, "operator cancels", cancel)
    result = handler(fleet)(event(), FakeLambdaContext(fleet.clock))
    assert result["status"] == "cancelled" and result["not_started"] == ["svc-b", "svc-c"]
    for name in NAMES:
        fleet.assert_restored(name)


def test_a_cancel_arriving_between_two_services_stops_the_fleet(fleet: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    from recycler.hosts import fleet as fleet_host

    add_services(fleet)
    answers: list[dict[str, Any]] = []
    real_one = fleet_host.Fleet.one

    def one_then_cancel(self: Any, index: int, name: str, request: Any = None) -> Any:
        report = real_one(self, index, name, request)
        if name == "svc-a" and request is None:
            # svc-a has ended and released its lock; svc-b has not started: no service holds a lock now.
            answers.append(handler(fleet)(event(action="cancel"), FakeLambdaContext(fleet.clock)))
        return report

    monkeypatch.setattr(fleet_host.Fleet, "one", one_then_cancel)
    result = handler(fleet)(event(), FakeLambdaContext(fleet.clock, 900, "fleet-run"))
    (answer,) = answers
    assert answer["fleet_cancel"].startswith("requested") and "fleet-run" in answer["fleet_cancel"]
    assert [a["state"] for a in answer["services"]] == ["idle", "idle", "idle"]
    assert result["status"] == "cancelled" and result["not_started"] == ["svc-b", "svc-c"]
    assert [s["status"] for s in result["services"]] == ["succeeded"] and "cancelled by" in result["error"]
    for name in NAMES:
        fleet.assert_restored(name)


def test_a_cancel_with_no_fleet_going_says_so_and_the_next_fleet_is_not_cancelled(fleet: Bed) -> None:
    add_services(fleet)
    answer = handler(fleet)(event(action="cancel"), FakeLambdaContext(fleet.clock))
    assert answer["fleet_cancel"].startswith("no fleet run")
    first = handler(fleet)(event(), FakeLambdaContext(fleet.clock, 900, "first"))
    # Once a fleet run has ended, a cancel of its selection finds nothing going, and the next run starts clean.
    late = handler(fleet)(event(action="cancel"), FakeLambdaContext(fleet.clock))
    assert late["fleet_cancel"].startswith("no fleet run")
    second = handler(fleet)(event(), FakeLambdaContext(fleet.clock, 900, "second"))
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")


def test_cancel_status_and_history_with_a_fleet_answer_per_service(fleet: Bed) -> None:
    add_services(fleet)
    _live_lock(fleet, "svc-b")
    context = FakeLambdaContext(fleet.clock)
    cancel = handler(fleet)(event(action="cancel"), context)
    assert cancel["fleet"] is True and cancel["cluster"] == CLUSTER
    assert {a["service"]: a["state"] for a in cancel["services"]} == {
        "svc-a": "idle",
        "svc-b": "running",
        "svc-c": "idle",
    }
    status = handler(fleet)(event(action="status"), context)
    assert [a["action"] for a in status["services"]] == ["status"] * 3
    history = handler(fleet)(event(action="history"), context)
    assert [a["service"] for a in history["services"]] == NAMES


def test_a_kill_mid_fleet_is_repaired_per_service_by_the_next_fleet_run(fleet: Bed) -> None:
    add_services(fleet, tasks=3)
    clock = fleet.clock
    assert isinstance(clock, CooperativeClock)
    clock.kill_at = clock.now() + 90
    with pytest.raises(LambdaKilled):
        handler(fleet)(event(max_parallel_services=2), FakeLambdaContext(clock))
    # The two services in flight died holding their locks. (A third may have taken its lock too: in Lambda
    # nothing runs after a kill, but here the pool can pick svc-c up before the kill reaches the runner.)
    assert fleet.held("svc-a") and fleet.held("svc-b")
    clock.killed = False
    clock.sleep(2000)
    result = handler(fleet)(event(max_parallel_services=2), FakeLambdaContext(clock))
    assert result["status"] == "succeeded"
    for name in NAMES:
        fleet.assert_restored(name)


def test_a_dry_run_gives_each_plan_and_the_fleet_estimate(fleet: Bed) -> None:
    add_services(fleet)
    result = handler(fleet)(event(dry_run=True, max_parallel_services=2), FakeLambdaContext(fleet.clock))
    assert result["status"] == "dry_run" and fleet.lock_items() == []
    plans = [s["plan"]["estimated_seconds"] for s in result["services"]]
    assert result["plan"]["estimated_seconds"] == whole_service_estimate(plans, 2) == plans[0] + plans[2]
    # It fits this invocation: the recycle would run here, not in the durable function.
    assert result["plan"]["would_hand_off"] is False


def test_a_dry_run_of_a_fleet_too_long_says_it_would_be_handed_off(fleet: Bed) -> None:
    add_services(fleet, tasks=3)
    result = handler(fleet)(event(dry_run=True, wait_time=30), FakeLambdaContext(fleet.clock, 500))
    assert result["plan"]["would_hand_off"] is True and result["plan"]["estimated_seconds"] > 500
    assert fleet.lock_items() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"services": ["svc-a", "nope"]}, "services[1]"),
        ({"services": ["svc-a", "svc-a"]}, "services[1]"),
        ({"services": []}, "services"),
        ({"service_name": "svc-a"}, "services"),
        ({"service_tags": {"team": "x"}}, "service_tags"),
        ({"max_parallel_services": 21}, "max_parallel_services"),
        ({"on_service_failure": "halt"}, "on_service_failure"),
    ],
)
def test_a_bad_selection_is_refused_naming_the_field_with_no_change(
    fleet: Bed, changes: dict[str, Any], field: str
) -> None:
    add_services(fleet)
    before = fleet.service_state("svc-a")
    with pytest.raises(ConfigError) as raised:
        handler(fleet)(event(**changes), FakeLambdaContext(fleet.clock))
    assert raised.value.field == field
    fleet.assert_nothing_changed(before, "svc-a")


def test_the_fleet_event_fields() -> None:
    assert is_fleet_event({"cluster_name": "c", "service_tags": {"k": "v"}})
    assert not is_fleet_event({"cluster_name": "c", "service_name": "s"})
    fleet = parse_fleet_event({"cluster_name": "c", "service_tags": {"b": "2", "a": ""}, "batch_size": 2})
    assert fleet.service_tags == (("a", ""), ("b", "2")) and fleet.for_service("x").batch_size == 2
    assert fleet.for_service("x").service == "x"
    for tags, field in (
        ({"k" * 129: "v"}, "service_tags."),
        ({"k": "v" * 257}, "service_tags.k"),
        ({"k": 1}, "service_tags.k"),
    ):
        with pytest.raises(ConfigError, match="tag") as raised:
            parse_fleet_event({"cluster_name": "c", "service_tags": tags})
        assert raised.value.field.startswith(field)
    with pytest.raises(ConfigError) as raised:
        parse_fleet_event({"cluster_name": "c", "services": [f"s{i}" for i in range(101)]})
    assert raised.value.field == "services"


def test_the_fleet_status_is_the_worst_outcome() -> None:
    assert fleet_status(["succeeded", "succeeded"]) == Status.SUCCEEDED
    assert fleet_status(["succeeded", "cancelled", "incomplete"]) == Status.INCOMPLETE
    assert fleet_status(["refused", "incomplete"]) == Status.FAILED
    assert fleet_status(["succeeded"], Status.CANCELLED) == Status.CANCELLED
    assert fleet_status(["dry_run", "dry_run"]) == Status.DRY_RUN
    assert whole_service_estimate([100, 100, 100], 2) == 200


def test_the_cli_runs_a_fleet_and_names_the_flag_of_a_bad_one(
    fleet: Bed, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from recycler.hosts import cli

    config = tmp_path / "input.json"
    config.write_text("{}")
    monkeypatch.setenv("RECYCLE_CONFIG", str(config))
    add_services(fleet)
    base = ["--cluster", CLUSTER, "--json", "--wait-time", "5"]
    # One at a time: the one worker thread and the waiting main thread never run at once.
    assert cli.main([*base, "--services", *NAMES], clock=fleet.clock) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fleet"] is True and result["status"] == "succeeded"
    assert result["totals"]["tasks_recycled"] == 6
    for name in NAMES:
        fleet.assert_restored(name)
    assert cli.main([*base, "--services", "svc-a", "--max-parallel-services", "0"], clock=fleet.clock) == 2
    assert "--max-parallel-services" in capsys.readouterr().err
    assert cli.main([*base, "--services", "svc-a", "--status"], clock=fleet.clock) == 0
    assert [a["state"] for a in json.loads(capsys.readouterr().out)["services"]] == ["idle"]
    with pytest.raises(SystemExit):
        cli.main(["--cluster", CLUSTER, "--service", "svc-a", "--services", "svc-b"])


def test_a_fleet_too_long_without_a_durable_function_is_refused_naming_hand_off_and_changes_nothing(
    fleet: Bed,
) -> None:
    add_services(fleet, tasks=3)
    before = {name: fleet.service_state(name) for name in NAMES}
    with pytest.raises(ConfigError) as raised:
        handler(fleet)(event(wait_time=30), FakeLambdaContext(fleet.clock, 500))
    assert raised.value.field == "hand_off" and "hand_off false" in raised.value.problem
    for name in NAMES:
        fleet.assert_nothing_changed(before[name], name)


def test_a_fleet_too_long_for_the_invocation_is_handed_whole_to_one_durable_execution(
    fleet: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    alias = install_durable_alias(monkeypatch)
    add_services(fleet, tasks=3)
    before = {name: fleet.service_state(name) for name in NAMES}
    read_events = subscribe(fleet.session)
    started = fleet.clock.now()
    fleet_event = event(wait_time=30, max_parallel_services=2)
    result = handler(fleet)(fleet_event, FakeLambdaContext(fleet.clock, 500, "req-fleet"))
    # One asynchronous start of the durable alias for the whole fleet, before any service was touched.
    assert result["status"] == "handed_off" and result["services"] == [] and result["not_started"] == []
    (invoke,) = alias.invokes
    assert invoke["InvocationType"] == "Event" and invoke["FunctionName"] == DURABLE_ALIAS_ARN
    name = invoke["DurableExecutionName"]
    assert name == result["handed_off"]["execution_name"] and name.startswith(f"fleet-{CLUSTER}-")
    payload = json.loads(invoke["Payload"])
    assert payload == {**fleet_event, "hand_off": False, "started_before": utc_text(started)}
    assert parse_fleet_event(payload).names == tuple(NAMES)
    for service in NAMES:
        fleet.assert_nothing_changed(before[service], service)
        assert fleet.lock(service) is None
    # Its final event says so; one email for the fleet.
    finals = [e["detail-type"] for e in read_events() if e["detail"].get("fleet") is True]
    assert finals == ["ECS Task Recycle Handed Off"]
    # A retry of the same invocation starts no second execution: it follows the first.
    again = handler(fleet)(fleet_event, FakeLambdaContext(fleet.clock, 500, "req-fleet"))
    assert again["handed_off"]["already_started"] is True and again["handed_off"]["execution_name"] == name
    assert [i["DurableExecutionName"] for i in alias.invokes] == [name, name]


def test_a_fleet_that_fits_is_not_handed_off(fleet: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    alias = install_durable_alias(monkeypatch)
    add_services(fleet)
    result = handler(fleet)(event(), FakeLambdaContext(fleet.clock))
    assert result["status"] == "succeeded" and alias.invokes == []


def test_with_hand_off_false_a_long_fleet_recycles_what_fits_and_gives_the_carry_on_event(fleet: Bed) -> None:
    import json

    add_services(fleet, tasks=3)
    started = fleet.clock.now()
    with pytest.raises(plain.RecycleNotCompleted) as raised:
        handler(fleet)(event(wait_time=30, hand_off=False), FakeLambdaContext(fleet.clock, 500))
    result = raised.value.report
    assert result["status"] == "incomplete" and result["error_type"] == "TimeBudgetExhausted"
    done = [s["service"] for s in result["services"] if s["status"] == "succeeded"]
    assert done and result["not_started"]
    carry_on = json.loads(result["error"].split("carry on with the event ", 1)[1])
    assert carry_on["services"] == [n for n in NAMES if n not in done]
    assert carry_on["hand_off"] is False and carry_on["started_before"] == utc_text(started)
    # The carry-on is a valid fleet event, and every service is as it was or recycled.
    parse_fleet_event(carry_on)
    for name in NAMES:
        fleet.assert_restored(name)


def test_an_entry_point_without_fleets_names_the_fleet_field() -> None:
    from recycler.model.request import parse_event

    with pytest.raises(ConfigError, match="fleet") as raised:
        parse_event({"cluster_name": "c", "service_name": "s", "max_parallel_services": 2})
    assert raised.value.field == "max_parallel_services"


def test_service_tags_select_every_service_carrying_all_of_them(fleet: Bed) -> None:
    add_services(fleet)
    for name in ("svc-a", "svc-c"):
        arn = fleet.sim.service(CLUSTER, name).arn
        with fleet.sim.unobserved():
            fleet.ecs.tag_resource(resourceArn=arn, tags=[{"key": "recycle", "value": "weekly"}])
    before = fleet.service_state("svc-b")
    tagged = {"cluster_name": CLUSTER, "service_tags": {"recycle": "weekly"}, "wait_time": 5}
    result = handler(fleet)(tagged, FakeLambdaContext(fleet.clock))
    assert result["status"] == "succeeded" and result["selection"] == {"service_tags": {"recycle": "weekly"}}
    assert [s["service"] for s in result["services"]] == ["svc-a", "svc-c"]
    assert fleet.service_state("svc-b") == before
    with pytest.raises(ConfigError) as raised:
        handler(fleet)({**tagged, "service_tags": {"recycle": "never"}}, FakeLambdaContext(fleet.clock))
    assert raised.value.field == "service_tags"
