"""The typed values that become JSON at an edge give the JSON the report, the checkpoints and the handler always had."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import replace
from pathlib import Path

from aws_durable_execution_sdk_python.serdes import SerDesContext

from recycler.aws.gateway import ScalableTarget
from recycler.hosts.control import CancelResult, LockView, Pace, StatusResult
from recycler.hosts.durable import PollStateSerDes
from recycler.model.report import (
    HandOffReport,
    PlannedCheckpoint,
    PlannedHandOff,
    PlannedLeftAlone,
    PlannedRepair,
    PlannedSurge,
    RecycleReport,
    ReportPlan,
    TaskResult,
)
from recycler.model.states import Status
from recycler.run.capacity import TargetRestore
from recycler.run.gates import StopReason
from recycler.run.hold import AlarmWatch
from recycler.run.plan import CheckpointPlan, LeftAlone, Plan, RepairPlan, Surge
from recycler.run.ports import HandedOff, HandOffDecision
from recycler.run.watch import WatchState

ROOT = Path(__file__).resolve().parent.parent
# Untyped JSON in runtime code, to_dict/from_dict signatures aside: only at the edges now (the handlers' events
# and returns, the report's bounded result, a step's checkpointed decision, the lock's DynamoDB items, log lines
# and EMF documents, the settings parser's keyword values, the history's item). Issue 17 took it from 63 to 28;
# the run history's DynamoDB item made it 29, and the CLI's invoke (the event it sends, the answer it reads
# back from the function) 31; the fleet's three edges (a fleet member host's finish, the fleet's handler return,
# its report with events and email) 34.
# Lower it as it drops.
MAX_UNTYPED_JSON = 34
_UNTYPED = re.compile(r"dict\[str, Any\]")
_JSON_EDGE = re.compile(r"def (to|from)_dict\(")

PLAN: ReportPlan = {
    "stale_lock_to_repair": None,
    "tasks_to_stop": ["t1"],
    "batches": 1,
    "batch_size": 1,
    "left_alone": {
        "started_at_or_after_started_before": 0,
        "younger_than_min_task_age": 0,
        "beyond_max_tasks": 0,
        "protected": "checked just before each batch is stopped",
    },
    "surge": {"desired_count": "1 -> 2", "suspend": [], "raise_max_capacity": False},
    "lock_table": "locks",
    "alarms": ("a",),
    "hand_off": None,
    "estimated_seconds": 60,
    "estimate_basis": "basis",
    "run_key": None,
    "checkpoints": [],
}

# A replacement wait's state as a durable checkpoint held it when the engine passed the runtime JSON itself.
OLDER_WATCH_CHECKPOINT = (
    '{"since":100.0,"count":2,"done":false,"failures":1,"failed_arns":["f"],"serving":{"n1":30.5},'
    '"new_seen":1,"last_new_at":20.0,"candidate":"n1","stop":{"kind":"cancel","detail":"by ops"},'
    '"tracked":["n1"],"failed_count_seen":null,"new_task_arns":[],"seconds":0.0,"started_seconds":null}'
)


def test_a_report_comes_back_from_its_dict_unchanged() -> None:
    report = RecycleReport(Status.INCOMPLETE, "c", "s", task_total=3, plan=PLAN)
    report.tasks_recycled.append(TaskResult(1, "old", "new", 12.5, batch=1))
    report.tasks_skipped.append(TaskResult(0, "young", None, 0.0, "younger than the minimum age"))
    report.tasks_remaining.append("left")
    again = RecycleReport.from_dict(report.to_dict())
    assert again == report
    assert json.dumps(again.to_dict()) == json.dumps(report.to_dict())


def test_status_and_cancel_keep_their_keys_in_order() -> None:
    view = LockView("run-1", "surged", "2026-01-01T00:00:00Z", {"recycled": 1, "total": 2, "batch": 1}, "later")
    running = StatusResult("running", "c", "s", lock=view).to_dict()
    assert list(running) == [
        "action", "state", "cluster", "service", "owner", "phase", "started_at", "progress", "lock_expires_at", "eta"
    ]  # fmt: skip
    # A run's pace comes after its lock, and the ETA stays last.
    paced = StatusResult("running", "c", "s", lock=replace(view, pace=Pace(50, 1, 12, None))).to_dict()
    assert list(paced)[-5:] == ["lock_expires_at", "percent_complete", "tasks_to_go", "heartbeat_age_seconds", "eta"]
    stale = StatusResult("stale", "c", "s", cancel_requested="by ops", lock=view).to_dict()
    assert list(stale)[4] == "cancel_requested" and list(stale)[-1] == "note"
    assert list(StatusResult("idle", "c", "s").to_dict()) == ["action", "state", "cluster", "service"]
    assert list(CancelResult("idle", "c", "s", "nothing").to_dict()) == [
        "action",
        "cluster",
        "service",
        "state",
        "result",
    ]
    assert list(CancelResult("running", "c", "s", "asked", owner="o").to_dict())[-2:] == ["owner", "result"]


def test_a_hand_off_gives_its_status_code_only_when_it_started_the_execution() -> None:
    started = HandedOff("name", "alias", False, "follow", status_code=None).to_dict()
    assert list(started) == ["execution_name", "durable_alias", "already_started", "follow", "status_code"]
    assert "status_code" not in HandedOff("name", "alias", True, "follow").to_dict()


def test_a_target_restore_step_result_leaves_out_the_call_it_made() -> None:
    restore = TargetRestore(["a"], [], ScalableTarget(1, 4, {"f": False}), register_flags={"f": False})
    data = restore.to_dict()
    assert data == {
        "actions": ["a"],
        "external": [],
        "restored_target": {"min_capacity": 1, "max_capacity": 4, "suspended": {"f": False}},
    }
    assert TargetRestore.from_dict(data).to_dict() == data
    assert TargetRestore([], []).to_dict() == {"actions": [], "external": []}


def test_a_wait_state_checkpoint_of_an_older_execution_replays_to_the_same_text() -> None:
    context = SerDesContext("op", "arn")
    serdes = PollStateSerDes(WatchState)
    state = serdes.deserialize(OLDER_WATCH_CHECKPOINT, context)
    assert state.stop == StopReason("cancel", "by ops") and state.serving == {"n1": 30.5} and not state.done
    assert serdes.serialize(state, context) == OLDER_WATCH_CHECKPOINT
    alarm = PollStateSerDes(AlarmWatch)
    assert alarm.serialize(AlarmWatch(), context) == '{"done":false}'
    assert alarm.deserialize('{"done":true}', context) == AlarmWatch(done=True)


def test_the_report_plan_types_have_the_fields_of_the_records_they_are_the_json_of() -> None:
    pairs = [
        (ReportPlan, Plan),
        (PlannedRepair, RepairPlan),
        (PlannedLeftAlone, LeftAlone),
        (PlannedSurge, Surge),
        (PlannedHandOff, HandOffDecision),
        (PlannedCheckpoint, CheckpointPlan),
        (HandOffReport, HandedOff),
    ]
    for typed, record in pairs:
        assert list(typed.__annotations__) == [f.name for f in dataclasses.fields(record)], typed.__name__


def test_untyped_json_stays_at_the_edges() -> None:
    paths = sorted((ROOT / "recycler").rglob("*.py")) + sorted(ROOT.glob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in paths
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _UNTYPED.search(line) and not _JSON_EDGE.search(line)
    ]
    assert len(found) <= MAX_UNTYPED_JSON, found
