"""The typed values that become JSON at an edge give the JSON the report, the checkpoints and the handler always had."""

from __future__ import annotations

import json
from dataclasses import replace

from recycler.aws.gateway import ScalableTarget
from recycler.hosts.control import CancelResult, LockView, Pace, StatusResult
from recycler.model.report import RecycleReport, TaskResult
from recycler.model.states import Status
from recycler.run.capacity import TargetRestore
from recycler.run.ports import HandedOff


def test_a_report_comes_back_from_its_dict_unchanged() -> None:
    report = RecycleReport(Status.INCOMPLETE, "c", "s", task_total=3, plan={"alarms": ("a",)})
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
