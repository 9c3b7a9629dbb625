"""Status and history: how far a running recycle has got, how the last one went, and the last 20 runs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.bed import CLUSTER, SERVICE, Bed, load_event

from dev import simulator
from dev.simulator import Behaviour, FakeLambdaContext
from recycler.aws.gateway import ServiceGateway
from recycler.hosts import cli, control
from recycler.hosts import plain as invocation
from recycler.hosts.config import parse_config
from recycler.lock.history import HISTORY_LIMIT, HISTORY_RETENTION_SECONDS, RunEntry, RunHistory
from recycler.lock.record import LockRecord, Phase, Progress, Snapshot
from recycler.model.request import parse_event
from recycler.model.settings import RecycleSettings


def _reads(bed: Bed) -> ServiceGateway:
    return ServiceGateway(
        bed.ecs, bed.autoscaling, bed.elbv2, parse_event({"cluster_name": CLUSTER, "service_name": SERVICE})
    )


def _history(bed: Bed) -> RunHistory:
    return RunHistory(bed.inspector.dynamodb, simulator.LOCK_TABLE)


def _history_items(bed: Bed) -> list[dict[str, Any]]:
    return [item for item in bed.lock_items() if "history_of" in item]


# --------------------------------------------------------------------------- status of a running recycle


def test_a_running_status_gives_percent_complete_tasks_to_go_and_heartbeat_age(bed: Bed) -> None:
    # GIVEN a run that holds the lock, 3 of 8 recycled, that last wrote its progress 14 s ago
    bed.add_service(tasks=3)
    now = int(bed.clock.now())
    bed.plant_lock(
        LockRecord(
            key=bed.lock_key(),
            owner="cli-abc",
            version=4,
            expires_at=now + 600,
            phase=Phase.SURGED,
            started_at=now - 300,
            snapshot=Snapshot(desired_count=3, surge=True),
            progress=Progress(recycled=3, total=8, batch=3, updated_at=now - 14),
        )
    )
    # WHEN an operator asks for its status
    status = control.status(_reads(bed), bed.store, bed.clock).to_dict()
    # THEN it says how far the run is, as an instance refresh would, and how fresh its lock is
    assert status["state"] == "running"
    assert status["percent_complete"] == 37 and status["tasks_to_go"] == 5
    assert status["heartbeat_age_seconds"] == 14
    assert status["eta"] is not None
    assert "last_run" not in status


def test_status_during_a_live_run_counts_what_the_lock_says(bed: Bed) -> None:
    # GIVEN a 4-task recycle, asked for its status every 60 s while it runs
    bed.add_service(tasks=4, target=(2, 8))
    seen: list[control.StatusAnswer] = []
    for at in range(60, 900, 60):
        bed.sim.at(
            at, f"status at {at}", lambda: seen.append(control.status(_reads(bed), bed.store, bed.clock).to_dict())
        )
    report = bed.run(wait_time=10)
    assert report.status == "succeeded", report.error
    running = [s for s in seen if s["state"] == "running"]
    # THEN each answer's percentage and tasks to go follow from its progress, and one caught the run midway
    for status in running:
        recycled, total = status["progress"]["recycled"], status["progress"]["total"]
        assert total == 4
        assert status["percent_complete"] == recycled * 100 // total
        assert status["tasks_to_go"] == total - recycled
        assert 0 <= status["heartbeat_age_seconds"] < 300
    assert any(0 < s["percent_complete"] < 100 for s in running), running
    percents = [s["percent_complete"] for s in running]
    assert percents == sorted(percents)


def test_a_stale_status_gives_the_dead_runs_pace_and_how_long_it_has_been_silent(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(2, 6))
    item = bed.expired_lock_item()
    bed.plant_lock(item)
    status = control.status(_reads(bed), bed.store, bed.clock).to_dict()
    assert status["state"] == "stale"
    last_write = max(int(item["progress"]["updated_at"]), int(item["started_at"]))
    assert status["heartbeat_age_seconds"] == int(bed.clock.now()) - last_write
    assert status["tasks_to_go"] == item["progress"]["total"] - item["progress"]["recycled"]
    assert "eta" not in status


# --------------------------------------------------------------------------- the last run


def test_an_idle_status_after_a_failed_run_gives_the_last_run(bed: Bed) -> None:
    # GIVEN a run whose replacements fail to start, so that it fails (and restores)
    behaviour = Behaviour()
    bed.add_service(tasks=4, target=(2, 8), behaviour=behaviour)
    bed.sim.at(45, "image pull breaks", lambda: setattr(behaviour, "fail_next_starts", 99))
    started = bed.clock.now()
    report = bed.run(owner="run-failed", settings=RecycleSettings(max_failed_replacements=3))
    assert report.status == "failed"
    bed.assert_restored()
    # WHEN an operator asks for the status afterwards
    status = control.status(_reads(bed), bed.store, bed.clock).to_dict()
    # THEN it is idle and says who ran the last run, when, how it ended, how far it got and why
    assert status["state"] == "idle"
    last = status["last_run"]
    assert last["owner"] == "run-failed" and last["requested_by"] == "run-failed"
    assert last["status"] == "failed" and last["error_type"] == "ReplacementFailed"
    assert "CannotPullContainerError" in str(last["error"])
    assert last["recycled"] == len(report.tasks_recycled) and last["total"] == 4
    assert last["started_at"] == report.started_at
    assert last["started_at"] <= last["ended_at"]
    assert int(started) <= _epoch(last["ended_at"]) <= bed.clock.now()


def test_an_idle_status_with_no_history_says_nothing_of_a_last_run(bed: Bed) -> None:
    bed.add_service(tasks=2)
    assert "last_run" not in control.status(_reads(bed), bed.store, bed.clock).to_dict()


def _epoch(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp())


# --------------------------------------------------------------------------- history


def test_history_lists_the_last_20_runs_newest_first(bed: Bed) -> None:
    # GIVEN 25 runs in the history of the service, and one of another service
    bed.add_service(tasks=1)
    history, key, now = _history(bed), bed.lock_key(), int(bed.clock.now())
    for n in range(25):
        history.record(key, RunEntry(f"run-{n:02}", "ops", now + 60 * n, now + 60 * n + 30, "succeeded", 1, 1))
    history.record(bed.lock_key("other"), RunEntry("elsewhere", "ops", now, now + 10_000, "succeeded", 1, 1))
    # WHEN an operator asks for the history
    result = control.history(_reads(bed), bed.store).to_dict()
    # THEN it gives this service's 20 newest runs, newest first
    owners = [run["owner"] for run in result["runs"]]
    assert len(owners) == HISTORY_LIMIT
    assert owners == [f"run-{n:02}" for n in range(24, 4, -1)]
    assert result["action"] == "history" and result["service"] == SERVICE


def test_history_follows_pages_past_items_it_cannot_read(bed: Bed) -> None:
    # GIVEN 20 runs, and newer items in the index that are not a run this tool wrote (they are left out)
    bed.add_service(tasks=1)
    history, key, now = _history(bed), bed.lock_key(), int(bed.clock.now())
    for n in range(20):
        history.record(key, RunEntry(f"run-{n:02}", "ops", now + n, now + n, "succeeded", 1, 1))
    for n in range(5):
        bed.plant_lock({"pk": f"{key}#junk{n}", "history_of": key, "ended_at": now + 100 + n, "owner": 7})
    # WHEN the history is read THEN the Query's Limit does not cut it short: every page is followed
    runs = history.latest(key)
    assert [run.owner for run in runs] == [f"run-{n:02}" for n in range(19, -1, -1)]


def test_each_run_that_locks_writes_one_history_item_with_a_90_day_ttl(bed: Bed) -> None:
    # GIVEN two runs of one service, one after the other
    bed.add_service(tasks=2, target=(1, 4))
    first = bed.run(owner="run-a", wait_time=0)
    bed.clock.sleep(120)
    second = bed.run(owner="run-b", wait_time=0)
    assert first.status == second.status == "succeeded"
    # THEN each left one item, keyed by its owner, that TTL removes 90 days after it ended
    items = {item["owner"]["S"]: item for item in _history_items(bed)}
    assert set(items) == {"run-a", "run-b"}
    for owner, item in items.items():
        assert item["pk"]["S"] == f"{bed.lock_key()}#run#{owner}"
        assert int(item["expires_at"]["N"]) - int(item["ended_at"]["N"]) == HISTORY_RETENTION_SECONDS == 90 * 86_400
    # AND the lock item is still the one lock item, released
    lock = bed.lock()
    assert lock is not None and lock.phase == Phase.RELEASED and lock.owner == "run-b"
    # AND the history lists them newest first
    assert [run["owner"] for run in control.history(_reads(bed), bed.store).to_dict()["runs"]] == ["run-b", "run-a"]


def test_a_failed_history_write_is_logged_and_changes_nothing_of_the_outcome(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a lock table that refuses the history item (and only it)
    bed.add_service(tasks=2, target=(1, 4))

    def refuse_history(params: dict[str, Any], **_: Any) -> None:
        if "history_of" in params.get("Item", {}):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem")

    bed.dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", refuse_history)
    # WHEN a run succeeds
    report = bed.run(wait_time=0)
    # THEN it still succeeds, restored and released, and the failed write is in the log
    assert report.status == "succeeded" and report.error is None
    bed.assert_restored()
    assert _history_items(bed) == []
    assert any("history item was not written" in record.getMessage() for record in caplog.records)


def test_a_dry_run_and_a_refused_run_write_no_history(bed: Bed) -> None:
    bed.add_service(tasks=2, target=(1, 4))
    assert bed.run(dry_run=True).status == "dry_run"
    bed.plant_lock(bed.expired_lock_item(expires_at=int(bed.clock.now()) + 600))
    assert bed.run(owner="refused", wait_time=0).status == "refused"
    assert _history_items(bed) == []


def test_a_history_item_is_parsed_back_and_one_this_tool_did_not_write_is_left_out() -> None:
    entry = RunEntry("o", "by", 1_700_000_000, 1_700_000_060, "cancelled", 2, 5, "stopped", "RecycleCancelled")
    item = {k: Decimal(v) if isinstance(v, int) else v for k, v in entry.to_item("key").items()}
    assert RunEntry.from_item(item) == entry
    assert RunEntry.from_item({**item, "ended_at": "yesterday"}) is None
    assert entry.to_dict()["ended_at"] == "2023-11-14T22:14:20+00:00"


# --------------------------------------------------------------------------- the action, the CLI, the handler


def test_history_is_an_action_of_the_event_the_cli_and_the_console_events() -> None:
    assert parse_event(load_event("history.json")).action == "history"
    parser, _ = cli.parser_and_flags()
    assert parser.parse_args(["--cluster", "c", "--service", "s", "--history"]).action == "history"
    with pytest.raises(SystemExit):
        parser.parse_args(["--cluster", "c", "--service", "s", "--history", "--status"])


def test_the_handler_answers_history_with_the_runs_it_recorded(bed: Bed) -> None:
    # GIVEN a recycle through the handler
    bed.add_service(tasks=2, target=(1, 4))
    handler = invocation.build_handler(clock=bed.clock, config=parse_config({"recycle": {"poll_interval_seconds": 5}}))
    result = handler(load_event("recycle.json"), FakeLambdaContext(bed.clock, 900, "req-7"))
    assert result["status"] == "succeeded"
    # WHEN history is asked for through the handler THEN it lists that run, and changes nothing
    before = bed.service_state()
    answer = handler(load_event("history.json"), FakeLambdaContext(bed.clock, 900, "req-8"))
    assert answer["action"] == "history"
    (run,) = answer["runs"]
    assert run["status"] == "succeeded" and run["recycled"] == run["total"] == 2
    assert run["requested_by"].startswith("lambda request")
    assert bed.service_state() == before
