"""The lock: two runs at once, forged and tampered lock state, and the restore's phases.

Two runs are interleaved at every AWS call on one virtual clock
(tests/interleave.py): exactly one may proceed, and the service must end
exactly as it was. Whatever the lock item or a service tag says, nothing is
applied that the tool would not have written itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed
from support.interleave import interleaving
from support.invariants import MUTATING
from support.logs import log_lines

import lambda_function
from dev.simulator import REGION, FakeLambdaContext
from recycler.aws import clients
from recycler.aws.gateway import ServiceGateway
from recycler.hosts import cli, control, plain
from recycler.hosts.config import parse_config
from recycler.lock.record import LockRecord, Phase, Progress, Snapshot
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import AwsCallFailed, LockCorrupt, LockHeld, LockLost, RecycleError
from recycler.model.report import NotificationResult, RecycleReport
from recycler.model.request import parse_event
from recycler.run.preflight import LEGACY_LOCK_TAG_KEY


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock, with an input.json of defaults."""
    return plain.build_handler(clock=bed.clock, config=parse_config({}))


OFFSETS = [step / 2 for step in range(11)]  # the second run starts 0, 0.5, ... 5 s after the first


def _assert_exactly_one_proceeded(bed: Bed, outcomes: list[RecycleReport]) -> None:
    statuses = sorted((r.status, r.error_type) for r in outcomes)
    assert statuses == [("refused", "LockHeld"), ("succeeded", None)], [(r.status, r.error) for r in outcomes]
    loser = next(r for r in outcomes if r.status == "refused")
    # The refused run changed nothing, so it has nothing to restore either.
    assert loser.restored is None and loser.tasks_recycled == [] and loser.restore_actions == []
    bed.assert_restored()
    bed.assert_capacity_held()
    bed.assert_each_original_stopped_at_most_once()
    assert bed.originals_stopped() == set(bed.snapshots[SERVICE]["tasks"])


@pytest.mark.parametrize("offset", OFFSETS)
def test_two_plain_runs_started_together_exactly_one_proceeds(bed: Bed, offset: float) -> None:
    # GIVEN a service with a scalable target at its maximum (the surge must widen it)
    bed.add_service(tasks=3, target=(1, 3))
    request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 5})
    first, _ = bed.engine(owner="req-a")
    second, _ = bed.engine(owner="req-b")

    # WHEN two plain runs start `offset` seconds apart and alternate at every AWS call
    with interleaving(bed.clock, bed.ecs, bed.autoscaling, bed.elbv2, bed.dynamodb) as inter:
        inter.add("a", lambda: first.run(request))
        inter.add("b", lambda: second.run(request), start_after=offset)
        done = inter.run()

    # THEN exactly one proceeded, and the service is exactly as it was
    assert inter.switches >= 2
    assert all(p.error is None for p in done.values()), {n: p.error for n, p in done.items()}
    _assert_exactly_one_proceeded(bed, [p.result for p in done.values()])


@pytest.mark.parametrize("offset", OFFSETS[::2])
def test_two_cli_runs_started_together_exactly_one_proceeds(
    bed: Bed, offset: float, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # GIVEN the CLI (every run a fresh owner id) on the simulated cluster's clock
    bed.add_service(tasks=3, target=(2, 6))
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"recycle": {"poll_interval_seconds": 5}}))
    reports: dict[str, dict[str, Any]] = {}
    real_run_recycle = cli.run_recycle

    def recording_run_recycle(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = real_run_recycle(*args, **kwargs)
        reports[inter.participant() or "?"] = result
        return result

    monkeypatch.setattr(cli, "run_recycle", recording_run_recycle)
    argv = ["--cluster", CLUSTER, "--service", SERVICE, "--wait-time", "5", "--config", str(config)]

    # WHEN two CLI runs start `offset` seconds apart, alternating at every AWS call of their own clients
    with interleaving(bed.clock) as inter:
        inter.interleave_clients_of(monkeypatch, clients)
        inter.add("a", lambda: lambda_function.main(argv, clock=bed.clock))
        inter.add("b", lambda: lambda_function.main(argv, clock=bed.clock), start_after=offset)
        done = inter.run()

    # THEN one exits 0, the other 2 (refused by the lock, nothing changed), and the service is as it was
    assert sorted(p.result for p in done.values()) == [0, 2], {n: (p.result, p.error) for n, p in done.items()}
    statuses = sorted((r["status"], r["error_type"]) for r in reports.values())
    assert statuses == [("refused", "LockHeld"), ("succeeded", None)]
    bed.assert_restored()
    bed.assert_capacity_held()
    bed.assert_each_original_stopped_at_most_once()


def test_a_second_cli_run_while_the_first_is_live_is_refused_not_repaired(bed: Bed) -> None:
    # GIVEN a CLI run (no deadline: lock renewed after every task) that is midway
    bed.add_service(tasks=3, target=(2, 6))
    first, _ = bed.engine(owner=plain.new_owner_id("cli"), timeout=None, lock_ttl=900)
    second, _ = bed.engine(owner=plain.new_owner_id("cli"), timeout=None, lock_ttl=900)
    request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 5})
    later: list[RecycleReport] = []
    for at in (30, 60, 100):
        bed.sim.at(at, "second cli run", lambda: later.append(second.run(request)))

    # WHEN the first runs, and a second CLI run starts 30, 60 and 100 s in
    report = first.run(request)

    # THEN every second run was refused while the first held the lock, and capacity never dropped
    assert report.status == "succeeded", report.error
    assert [r.error_type for r in later] == ["LockHeld"] * 3
    bed.assert_restored()
    bed.assert_capacity_held()


@pytest.mark.parametrize("offset", [0.0, 1.0, 2.5, 5.0])
@pytest.mark.parametrize("durable_first", [True, False], ids=["durable-first", "plain-first"])
def test_a_plain_run_and_a_durable_run_started_together_exactly_one_proceeds(
    bed: Bed, offset: float, durable_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dev import durable_support
    from recycler.hosts import durable, execution_name

    # GIVEN a service, the plain engine, and the durable function under the SDK's test runner
    bed.add_service(tasks=3, target=(1, 3))
    request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 5})
    plain_engine, _ = bed.engine(owner="req-plain")
    config = parse_config({"recycle": {"poll_interval_seconds": 5}})
    handler = durable.build_handler(clock=bed.clock, session=bed.session, config=config)
    payload = json.dumps({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 5})
    name = execution_name.durable_execution_name(CLUSTER, SERVICE)

    with interleaving(bed.clock, bed.ecs, bed.autoscaling, bed.elbv2, bed.dynamodb) as inter:
        inter.interleave_clients_of(monkeypatch, clients)
        # The durable report, as the execution notifies it once (a failed execution's result is only its error).
        reports: list[dict[str, Any]] = []
        real_notify = durable.notify

        def recording_notify(report: dict[str, Any], *args: Any, **kwargs: Any) -> NotificationResult:
            reports.append(report)
            return real_notify(report, *args, **kwargs)

        monkeypatch.setattr(durable, "notify", recording_notify)

        def each_invocation(event: Any, context: Any) -> Any:
            # Each invocation runs on one of the runner's threads: it works for "durable", and
            # starts when the virtual clock has reached the wake-up its last wait asked for.
            inter.adopt("durable")
            return handler(event, context)

        def durable_wait(_clock: Any, wake: Any) -> float:
            # A durable wait: the execution is suspended until then; the other run goes on meanwhile.
            inter.pause("durable", wake.timestamp())
            return 0.0

        monkeypatch.setattr(durable_support.SimulatedTimeClock, "arm", durable_wait)

        def run_durable() -> Any:
            with (
                durable_support.fast_checkpoint_shutdown(),
                durable_support.durable_runner(bed.clock, each_invocation) as runner,
            ):
                runner.run(input=payload, execution_name=name, execution_timeout=120)
            assert len(reports) == 1
            return reports[0]

        inter.add("durable", run_durable, start_after=0.0 if durable_first else offset)
        inter.add("plain", lambda: plain_engine.run(request), start_after=offset if durable_first else 0.0)
        done = inter.run()

    # THEN exactly one proceeded (the durable one fails after its report, which says LockHeld)
    assert all(p.error is None for p in done.values()), {n: p.error for n, p in done.items()}
    durable_report, plain_report = done["durable"].result, done["plain"].result
    outcomes = sorted(
        [
            (plain_report.status, plain_report.error_type or ""),
            (durable_report["status"], durable_report["error_type"] or ""),
        ]
    )
    assert outcomes == [("refused", "LockHeld"), ("succeeded", "")], (plain_report.error, durable_report)
    bed.assert_restored()
    bed.assert_capacity_held()
    bed.assert_each_original_stopped_at_most_once()


# --------------------------------------------------------------------------- a lost race costs no read


def _lock_for(owner: str, now: int, version: int = 1) -> LockRecord:
    return LockRecord(
        key="arn:aws:ecs:us-east-1:123456789012:cluster/c/web",
        owner=owner,
        version=version,
        expires_at=now + 600,
        phase=Phase.ACQUIRED,
        started_at=now,
        snapshot=Snapshot(desired_count=3, surge=True),
        progress=Progress(total=3, updated_at=now),
    )


@pytest.mark.parametrize("item_returned", [True, False], ids=["item-returned", "no-item-read-instead"])
def test_a_lost_race_names_the_holder_from_the_failed_write_without_a_second_read(
    bed: Bed, item_returned: bool
) -> None:
    # GIVEN a lock another run holds, and (or not) DynamoDB sending the item back with a failed condition
    now = int(bed.clock.now())
    bed.store.acquire(_lock_for("winner", now), None)
    if not item_returned:

        def drop_item(parsed: dict[str, Any], **_: Any) -> None:
            parsed.pop("Item", None)

        for write in ("PutItem", "UpdateItem"):
            bed.dynamodb.meta.events.register(f"after-call.dynamodb.{write}", drop_item)
    reads = bed.calls.get("GetItem", 0)
    # WHEN this run's acquire and its write of a lock it no longer holds fail their conditions
    with pytest.raises(LockHeld) as held:
        bed.store.acquire(_lock_for("loser", now), None)
    with pytest.raises(LockLost) as lost:
        bed.store.write(replace(_lock_for("loser", now), version=1), phase=Phase.SURGING)
    # THEN both name the holder, from the item the failed write returned: one read fewer each
    assert held.value.holder is not None and held.value.holder["owner"] == "winner"
    assert "held by winner" in str(lost.value)
    assert bed.calls.get("GetItem", 0) - reads == (0 if item_returned else 2)


# --------------------------------------------------------------------------- forged and tampered state


FORGED_TAG = "v=1 owner=x exp=0 desired=0 surge=1 target=1 min=0 max=0 susp=111 landed=1"


def test_a_forged_lock_tag_is_never_trusted(bed: Bed) -> None:
    # GIVEN a principal allowed only to tag the service planted the old tag lock, "expired", claiming a surge
    arn = bed.add_service(tasks=3, target=(2, 6))
    bed.ecs.tag_resource(resourceArn=arn, tags=[{"key": LEGACY_LOCK_TAG_KEY, "value": FORGED_TAG}])
    bed.calls.clear()

    # WHEN the next run starts
    report = bed.run(wait_time=0)

    # THEN nothing of it was applied: the service was recycled and restored to what it really was
    assert report.status == "succeeded", report.error
    bed.assert_restored()
    bed.assert_capacity_held()
    # AND the tag is reported as untrusted, not silently ignored
    assert any(LEGACY_LOCK_TAG_KEY in note and "not trusted" in note for note in report.external_changes)


# Each case: what the item says, and the attribute the refusal must name.
TAMPERED: dict[str, tuple[dict[str, Any], str]] = {
    "min above max": ({"snapshot": {"target": {"min": 5, "max": 1}}}, "snapshot.target"),
    "negative desired": ({"snapshot": {"desired_count": -1}}, "snapshot.desired_count"),
    "huge desired": ({"snapshot": {"desired_count": 10**9}}, "snapshot.desired_count"),
    "unknown phase": ({"phase": "draining"}, "phase"),
    "string version": ({"version": "7"}, "version"),
    "no snapshot": ({"snapshot": None}, "snapshot"),
    "surge of 1000": ({"snapshot": {"surge_size": 1000}}, "snapshot.surge_size"),
    "flags not booleans": (
        {"snapshot": {"target": {"suspended": {"DynamicScalingInSuspended": "yes"}}}},
        "snapshot.target.suspended.DynamicScalingInSuspended",
    ),
    "restore that adds tasks": ({"phase": "restoring", "restore": {"from": 3, "to": 9}}, "restore.to"),
    "restore that removes more than the surge": ({"phase": "restoring", "restore": {"from": 9, "to": 3}}, "restore"),
    # Times outside 2020..2100: no run of this tool wrote them, and formatting one can fail (year 19391).
    "expiry in year 19391": ({"expires_at": 2**39}, "expires_at"),
    "expiry before 2020": ({"expires_at": 1_000}, "expires_at"),
    "start in year 19391": ({"started_at": 2**39}, "started_at"),
    "progress time in year 19391": ({"progress": {"updated_at": 2**39}}, "progress.updated_at"),
    # A run that surged had at least one task, and never surged by more than the tasks it set out to recycle.
    "surged from desired 0": ({"snapshot": {"desired_count": 0}}, "snapshot.desired_count"),
    "surge above the run's task total": ({"snapshot": {"surge_size": 4}}, "snapshot.surge_size"),
    "surged without a surge": ({"snapshot": {"surge": False}}, "snapshot.surge"),
    "restore to 0": ({"phase": "restoring", "restore": {"from": 1, "to": 0}}, "restore.to"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_lock_item_is_refused_loudly_and_nothing_is_applied(bed: Bed, case: str, captured_logs: Any) -> None:
    # GIVEN a service that looks surged, and an expired lock item with values this tool never writes
    bed.add_service(tasks=3, target=(2, 6))
    overrides, field = TAMPERED[case]
    bed.plant_lock(bed.expired_lock_item(**overrides))
    target_before, desired_before = bed.sim.scalable_target(CLUSTER, SERVICE), bed.desired()

    # WHEN the next run starts
    report = bed.run(wait_time=0)

    # THEN it refuses, saying the item is not one this tool wrote and which attribute, and changes nothing
    assert report.status == "failed" and report.error_type == "LockCorrupt", report.error
    assert "nothing was applied" in (report.error or "") and f"({field} " in (report.error or ""), report.error
    assert any(
        line["level"] == "ERROR" and "LockCorrupt" == line.get("error_type") for line in log_lines(captured_logs)
    )
    assert MUTATING.isdisjoint(bed.calls)
    assert bed.desired() == desired_before and bed.sim.scalable_target(CLUSTER, SERVICE) == target_before


def test_a_well_formed_expired_item_is_repaired_from_its_phase(bed: Bed) -> None:
    # GIVEN a run that died surged (desired 4 of 3, scale-in and scheduled scaling suspended by it)
    bed.add_service(tasks=3, target=(2, 6))
    bed.plant_lock(bed.expired_lock_item())
    bed.sim.set_desired(CLUSTER, SERVICE, 4)
    suspended = {
        "DynamicScalingInSuspended": True,
        "DynamicScalingOutSuspended": False,
        "ScheduledScalingSuspended": True,
    }
    bed.autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{CLUSTER}/{SERVICE}",
        ScalableDimension="ecs:service:DesiredCount",
        SuspendedState=suspended,
    )
    bed.clock.sleep(100)

    # WHEN the next run starts
    report = bed.run(wait_time=0)

    # THEN it first removed exactly the one surged task and resumed scaling, then recycled, then restored
    assert report.status == "succeeded", report.error
    assert any("repaired expired lock of run-0: desiredCount 4 -> 3" in a for a in report.restore_actions)
    bed.assert_restored()


# --------------------------------------------------------------------------- the restore's phases


def test_a_failed_desired_count_restore_leaves_the_target_surged_for_the_repair(bed: Bed) -> None:
    # GIVEN a service at MaxCapacity (restoring Max while surged would clamp it), whose restore UpdateService
    # is denied on every attempt
    bed.add_service(tasks=2, target=(1, 2))
    bed.sim.fail("update_service", "AccessDeniedException", times=10, after_calls=1)

    report = bed.run(wait_time=0)

    # THEN the run fails loudly, the scalable target was NOT restored (Max still 3), nothing was clamped
    assert report.status == "failed" and report.restored is False and "RESTORE FAILED" in (report.error or "")
    assert bed.desired() == 3
    target = bed.sim.scalable_target(CLUSTER, SERVICE)
    assert target is not None and target["MaxCapacity"] == 3
    lock = bed.lock()
    assert lock is not None and lock.phase in (Phase.SURGED, Phase.RESTORING)

    # WHEN the permission is back and the lock has expired, the next run repairs from the recorded phase
    bed.sim.faults.clear()
    bed.clock.sleep(2000)
    report = bed.run(owner="run-2", wait_time=0)

    # THEN exactly the surged task was removed (2, not 1), and the service is as it was
    assert report.status == "succeeded", report.error
    bed.assert_restored()


def test_a_lock_that_could_not_be_released_is_not_a_success_and_costs_no_task(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the release (the last write to the lock item) fails on every attempt
    bed.add_service(tasks=2, target=(1, 4))
    real_write = bed.store.write

    def write(current: Any, **changes: Any) -> Any:
        if changes.get("phase") == Phase.RELEASED:
            raise AwsCallFailed("UpdateItem failed: AccessDeniedException: simulated")
        return real_write(current, **changes)

    monkeypatch.setattr(bed.store, "write", write)

    report = bed.run(wait_time=0)

    # THEN the service is restored, but the run does not report success
    assert report.restored is True
    assert report.status == "failed" and "could not be released" in (report.error or "")
    assert bed.desired() == 2
    lock = bed.lock()
    assert lock is not None and lock.phase == Phase.TARGET_RESTORED

    # WHEN the next run comes after the lock expired
    monkeypatch.undo()
    bed.clock.sleep(2000)
    report = bed.run(owner="run-2", wait_time=0)

    # THEN it finds nothing to undo: no task is removed, and the recycle goes ahead
    assert report.status == "succeeded", report.error
    assert not any("desiredCount" in a and "repaired" in a for a in report.restore_actions)
    bed.assert_restored()


def test_an_operators_scalable_target_change_mid_run_is_kept(bed: Bed) -> None:
    # GIVEN a 3-task service with a 2/6 target, and an operator who moves it to 5/10 mid-run
    bed.add_service(tasks=3, target=(2, 6))

    def operator() -> None:
        bed.autoscaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=f"service/{CLUSTER}/{SERVICE}",
            ScalableDimension="ecs:service:DesiredCount",
            MinCapacity=5,
            MaxCapacity=10,
        )

    bed.sim.at(100, "operator", operator)
    report = bed.run(wait_time=0)

    # THEN the restore undid only the run's own suspension, and kept the operator's 5/10
    assert report.status == "succeeded", report.error
    target = bed.sim.scalable_target(CLUSTER, SERVICE)
    assert target is not None and (target["MinCapacity"], target["MaxCapacity"]) == (5, 10)
    assert not any(target["SuspendedState"].values())
    assert any("MinCapacity was changed by another actor" in c for c in report.external_changes)
    assert any("MaxCapacity was changed by another actor" in c for c in report.external_changes)
    assert report.restored_target == {
        "min_capacity": 5,
        "max_capacity": 10,
        "suspended": dict.fromkeys(target["SuspendedState"], False),
    }


def test_a_suspension_flag_set_before_the_run_stays_set_even_when_repaired(bed: Bed) -> None:
    # GIVEN scheduled scaling suspended by the operator before the run, and a run killed surged
    flags = {"DynamicScalingInSuspended": False, "DynamicScalingOutSuspended": False, "ScheduledScalingSuspended": True}
    bed.add_service(tasks=3, target=(1, 3), suspended=flags)
    bed.clock.kill_at = bed.clock.now() + 60
    with pytest.raises(BaseException, match="killed"):
        bed.run(owner="run-1")

    # WHEN the next run repairs it and recycles
    bed.clock.sleep(2000)
    bed.adopt_live_tasks_as_originals()
    report = bed.run(owner="run-2", wait_time=0)

    # THEN the operator's flag is still set, the run's own flags are off again, Max is back to 3
    assert report.status == "succeeded", report.error
    bed.assert_restored()


def test_the_restore_says_in_words_what_it_undid_on_the_scalable_target(bed: Bed) -> None:
    # GIVEN a service at MaxCapacity (the surge widens Max and suspends scale-in and scheduled scaling)
    bed.add_service(tasks=2, target=(1, 2))
    report = bed.run(wait_time=0)
    # THEN the report reads as words, and carries the target as the restore left it
    assert report.status == "succeeded", report.error
    assert "scalable target: MaxCapacity 3 -> 2; scale-in and scheduled scaling resumed" in report.restore_actions
    assert not any("Suspended" in action or "=" in action for action in report.restore_actions)
    assert report.restored_target == {
        "min_capacity": 1,
        "max_capacity": 2,
        "suspended": {
            "DynamicScalingInSuspended": False,
            "DynamicScalingOutSuspended": False,
            "ScheduledScalingSuspended": False,
        },
    }


def test_a_run_paused_past_its_lock_and_taken_over_stops_no_further_task(bed: Bed) -> None:
    # GIVEN a run whose lock lasts 60 s past each write, and a long pause after each batch
    bed.add_service(tasks=3, target=(1, 6))
    stop_times = bed.record_stop_times()
    owners_at_stop: list[str] = []
    bed.ecs.meta.events.register(
        "before-call.ecs.StopTask", lambda **_: owners_at_stop.append(getattr(bed.lock(), "owner", ""))
    )
    # WHEN, during the first pause, its lock expires and another run takes it over
    taken_over: list[float] = []

    def take_over() -> None:
        taken_over.append(bed.clock.now())
        record = bed.lock()
        assert record is not None
        bed.plant_lock(
            replace(record, owner="run-2", version=record.version + 1, expires_at=int(bed.clock.now()) + 900)
        )

    bed.sim.at(200, "take over", take_over)
    engine, _ = bed.engine(owner="run-1", timeout=None, lock_ttl=60)
    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 300}))

    # THEN the run found it out before its next stop: every StopTask went out under its own lock
    assert taken_over and report.error_type == "LockLost", report.error
    assert owners_at_stop and set(owners_at_stop) == {"run-1"}
    assert all(at < taken_over[0] for at in stop_times.values())
    assert len(report.tasks_recycled) == 1


# --------------------------------------------------------------------------- items no run could write


def _status_event() -> dict[str, Any]:
    return {"cluster_name": CLUSTER, "service_name": SERVICE, "action": "status"}


def test_a_lock_expiring_in_year_19391_is_corrupt_for_status_and_for_a_run(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a lock item whose expiry (2**39) lies in year 19391, which no clock of this tool ever gives
    bed.add_service(tasks=3, target=(2, 6))
    bed.plant_lock(bed.expired_lock_item(expires_at=2**39))
    before = bed.service_state()

    # WHEN an operator asks for the status, THEN it is LockCorrupt naming expires_at, not a raw ValueError
    with pytest.raises(LockCorrupt, match=r"\(expires_at "):
        plain_handler(bed)(_status_event(), FakeLambdaContext(bed.clock))

    # WHEN a run starts, THEN it fails LockCorrupt naming expires_at, and the service is as it was
    report = bed.run(wait_time=0)
    assert report.status == "failed" and report.error_type == "LockCorrupt", (report.error_type, report.error)
    assert "(expires_at " in (report.error or "")
    assert bed.service_state() == before


def test_status_gives_no_eta_rather_than_one_past_2100(bed: Bed) -> None:
    # GIVEN a live run that started in 2020 and has recycled 1 of a million tasks by now (an ETA past 2100)
    bed.add_service(tasks=3, target=(2, 6))
    now = int(bed.clock.now())
    started = 1_577_836_800 + 1
    progress = {"recycled": 1, "total": 10**6, "batch": 1, "updated_at": now}
    bed.plant_lock(bed.expired_lock_item(expires_at=now + 600, started_at=started, progress=progress))
    reads = ServiceGateway(bed.ecs, None, None, parse_event({"cluster_name": CLUSTER, "service_name": SERVICE}))

    # WHEN an operator asks for its status
    status = control.status(reads, bed.store, bed.clock).to_dict()

    # THEN it is running, with no ETA instead of a time that cannot be shown
    assert status["state"] == "running" and status["eta"] is None


# The two items the issue forged: each took a 3-task service to 0 before they were refused.
FORGED_ITEMS: dict[str, tuple[dict[str, Any], str]] = {
    "surged from 0 by 100": (
        {"phase": "surged", "snapshot": {"desired_count": 0, "surge_size": 100}},
        "snapshot.desired_count",
    ),
    "restoring 3 to 0": (
        {"phase": "restoring", "restore": {"from": 3, "to": 0}, "snapshot": {"surge_size": 3}},
        "restore.to",
    ),
}


@pytest.mark.parametrize("case", sorted(FORGED_ITEMS))
def test_a_forged_item_takes_a_three_task_service_nowhere(bed: Bed, case: str) -> None:
    # GIVEN a 3-task service, and an expired lock item this tool could never have written
    bed.add_service(tasks=3, target=(2, 6))
    overrides, field = FORGED_ITEMS[case]
    bed.plant_lock(bed.expired_lock_item(**overrides))
    target_before = bed.sim.scalable_target(CLUSTER, SERVICE)

    # WHEN the next run starts (its repair would have applied the item)
    report = bed.run(wait_time=0)

    # THEN it is refused as LockCorrupt naming the attribute, desired stays 3 and the target is unchanged
    assert report.status == "failed" and report.error_type == "LockCorrupt", report.error
    assert f"({field} " in (report.error or ""), report.error
    bed.sim.reconcile()
    assert bed.desired() == 3 and bed.sim.scalable_target(CLUSTER, SERVICE) == target_before
    assert MUTATING.isdisjoint(bed.calls)


def test_a_repair_that_would_take_running_tasks_to_desired_0_keeps_one(bed: Bed) -> None:
    # GIVEN a well-formed expired lock (3 surged by 1), and an operator who since set desiredCount 1, so the
    # repair would remove "the surged task" and take the service to 0 while a task runs
    bed.add_service(tasks=3, target=(1, 6))
    bed.plant_lock(bed.expired_lock_item(snapshot={"target": {"min": 1}}))
    bed.sim.set_desired(CLUSTER, SERVICE, 1)
    bed.clock.sleep(300)
    bed.sim.reconcile()
    assert bed.sim.service(CLUSTER, SERVICE).running_count >= 1

    # WHEN the next run starts (a dry run first, then the real one)
    plan = bed.run(wait_time=0, dry_run=True).plan
    assert plan is not None
    report = bed.run(wait_time=0)

    # THEN the plan shows the repair keeping one task, and the repair does: desired stays 1, the operator's
    # change is reported, the dead run's lock is released, and the recycle itself goes on from there
    repair = plan["stale_lock_to_repair"]
    assert repair is not None, plan
    assert repair["desired_count"] is None and "never takes a running service to 0" in str(repair), repair
    assert bed.desired() == 1, (report.status, report.error, report.restore_actions)
    assert any("never takes a running service to 0" in change for change in report.external_changes)
    assert report.status == "succeeded", report.error
    assert not bed.held()


def test_a_restore_never_takes_a_service_with_running_tasks_to_0(bed: Bed) -> None:
    # GIVEN a run on 3 tasks (surge of 1), and an operator who sets desiredCount to 1 midway
    bed.add_service(tasks=3)
    bed.sim.at(100, "operator scales to 1", lambda: bed.sim.set_desired(CLUSTER, SERVICE, 1))

    # WHEN the run restores (it would remove "its" surged task: 1 -> 0)
    report = bed.run(wait_time=30)

    # THEN the service keeps a task, the report says why, and the lock is released
    assert bed.desired() == 1, (report.status, report.error, report.restore_actions)
    assert any("0" in change and "running" in change for change in report.external_changes), report.external_changes
    assert not bed.held()


def test_a_run_does_not_lock_a_service_whose_desired_count_is_0(bed: Bed) -> None:
    # GIVEN a service that ECS shows at desiredCount 0 while its 2 tasks still want to run (the moment after a
    # scale to 0, before the scheduler marks them for stopping)
    bed.add_service(tasks=2)

    def scaled_to_zero(parsed: dict[str, Any], **_: Any) -> None:
        for service in parsed.get("services", []):
            service["desiredCount"] = 0

    bed.ecs.meta.events.register("after-call.ecs.DescribeServices", scaled_to_zero)

    # WHEN a run starts
    report = bed.run(wait_time=0)

    # THEN it refuses before taking the lock (its snapshot would say desired 0 with a surge), changing nothing
    assert report.status == "failed" and "desiredCount is 0" in (report.error or ""), report.error
    assert bed.lock_items() == []
    assert MUTATING.isdisjoint(bed.calls)


# --------------------------------------------------------------------------- a lock table that does not exist

MISSING_TABLE = "no-such-lock-table"


def _assert_names_the_missing_table(message: str) -> None:
    assert f"lock table '{MISSING_TABLE}' not found in region {REGION}" in message, message
    assert "LOCK_TABLE_NAME" in message and "Requested resource not found" not in message, message


def test_a_run_on_a_lock_table_that_does_not_exist_names_it_its_region_and_the_setting(bed: Bed) -> None:
    # GIVEN LOCK_TABLE_NAME naming a table that was never created
    bed.add_service(tasks=2)
    bed.store = DynamoLockStore(bed.dynamodb, MISSING_TABLE)
    # The template's role names its own table only: a call to another is this test's point, not a role gap.
    bed.record_calls = False
    before = bed.service_state()

    # WHEN a run starts
    report = bed.run(wait_time=0)

    # THEN it fails naming the table, the region and LOCK_TABLE_NAME, and changes nothing
    assert report.status == "failed", report.error
    _assert_names_the_missing_table(report.error or "")
    assert bed.service_state() == before


def test_status_on_a_lock_table_that_does_not_exist_names_it(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    bed.add_service(tasks=2)
    monkeypatch.setenv("LOCK_TABLE_NAME", MISSING_TABLE)
    with pytest.raises(RecycleError) as caught:
        plain_handler(bed)(_status_event(), FakeLambdaContext(bed.clock))
    _assert_names_the_missing_table(str(caught.value))


def test_every_lock_table_write_names_a_missing_table(bed: Bed) -> None:
    # GIVEN a lock store on a table that does not exist
    store = DynamoLockStore(bed.dynamodb, MISSING_TABLE)
    now = int(bed.clock.now())
    record = LockRecord(
        key="k",
        owner="me",
        version=1,
        expires_at=now + 60,
        phase=Phase.ACQUIRED,
        started_at=now,
        snapshot=Snapshot(desired_count=3, surge=True),
        progress=Progress(total=3, updated_at=now),
    )
    # WHEN it acquires (PutItem) or writes (UpdateItem), THEN the error names the table, region and setting
    for attempt in (lambda: store.acquire(record, None), lambda: store.write(record, phase=Phase.SURGING)):
        with pytest.raises(AwsCallFailed) as caught:
            attempt()
        _assert_names_the_missing_table(str(caught.value))
