"""What the report, the message and the email tell the user: every task accounted for, the service named,
a refusal that reads as one, nothing to recycle said plainly, a retried hand-off that is still a hand-off."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed
from support.handoff import FakeDurableAlias

import lambda_function
from dev.simulator import Behaviour, FakeLambdaContext
from recycler.hosts import plain
from recycler.hosts.config import load_config, parse_config
from recycler.hosts.environment import Environment
from recycler.lock.record import LockRecord, Phase, Progress, Snapshot
from recycler.model.errors import ConfigError
from recycler.model.request import parse_event
from recycler.model.settings import RecycleSettings
from recycler.notification.render import render_message
from recycler.notification.settings import parse_notification_config
from recycler.run.watch import ReplacementWatch, WatchState

SENT = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
MAIL = parse_notification_config(
    {"host": "smtp.example.com", "port": 587, "from_email": "recycle@example.com"},
    {"to": ["ops@example.com"]},
)


@pytest.fixture
def handler(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The plain handler on the bed's clock; what it would mail is recorded instead of sent."""
    mailed: list[dict[str, Any]] = []

    def record(report: dict[str, Any], *_: Any, **__: Any) -> dict[str, Any]:
        mailed.append(dict(report))
        return {"status": "sent", "detail": "recorded", "recipients": 1}

    monkeypatch.setattr(plain, "notify", record)
    return mailed


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's clock, with an input.json of defaults."""
    return plain.build_handler(clock=bed.clock, config=parse_config({}))


def _subject_and_text(report: dict[str, Any]) -> tuple[str, str]:
    assert MAIL is not None
    message = render_message(report, MAIL, now=SENT)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(message["Subject"]), str(body.get_content())  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- every original in one list


def test_a_bad_image_after_batch_1_lists_the_stopped_task_with_its_replacements_reason(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 3 originals, and an image that breaks once batch 1's replacement serves (after the surge task's)
    behaviour = Behaviour(start_seconds=40)
    bed.add_service(tasks=3, target=(1, 6), behaviour=behaviour)
    originals = set(bed.snapshots[SERVICE]["tasks"])
    real_served, served = ReplacementWatch.served, []

    def serve_then_break(watch: ReplacementWatch, replacements: WatchState) -> None:
        real_served(watch, replacements)
        served.append(replacements)
        if len(served) == 2:
            behaviour.fail_next_starts = 99

    monkeypatch.setattr(ReplacementWatch, "served", serve_then_break)

    # WHEN the run recycles the first, stops the second, and every replacement after that fails to start
    report = bed.run(wait_time=0, settings=RecycleSettings(max_failed_replacements=2))

    # THEN it failed, and each original is in exactly one list: 1 recycled, 1 stopped and not replaced
    # (with the replacement's stoppedReason), 1 remaining
    assert report.status == "failed" and report.error_type == "ReplacementFailed", report.error
    bed.assert_every_original_in_exactly_one_list(report, originals)
    counts = len(report.tasks_recycled), len(report.tasks_stopped_not_replaced), len(report.tasks_remaining)
    assert counts == (1, 1, 1)
    (stopped,) = report.tasks_stopped_not_replaced
    assert (stopped.index, stopped.batch, stopped.new_task_arn) == (2, 2, None)
    assert "CannotPullContainerError" in (stopped.note or "")
    bed.assert_restored()


# --------------------------------------------------------------------------- refused: another run holds the lock


def _live_surged_lock(bed: Bed, owner: str, desired: int) -> LockRecord:
    now = int(bed.clock.now())
    return LockRecord(
        key=bed.lock_key(),
        owner=owner,
        version=3,
        expires_at=now + 600,
        phase=Phase.SURGED,
        started_at=now - 60,
        snapshot=Snapshot(desired_count=desired, surge=True),
        progress=Progress(total=desired, updated_at=now - 60),
    )


def test_a_run_refused_by_the_lock_reads_as_refused_with_the_holder_and_its_snapshots_counts(
    bed: Bed, handler: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN another run in the middle of its recycle: 4 tasks surged to 5 (its snapshot says 4)
    bed.add_service(tasks=5, target=(1, 8))
    holder = _live_surged_lock(bed, "other-run", desired=4)
    bed.plant_lock(holder)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ecs-task-recycle")
    event = {"cluster_name": CLUSTER, "service_name": SERVICE}

    # WHEN a second run starts through the plain handler
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(plain.RecycleNotCompleted) as raised:
        plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-2"))

    # THEN it still raises (a scheduler sees it), as REFUSED, counting the holder's 4 tasks, not the live 5
    message = str(raised.value)
    assert "REFUSED" in message and "0 of 4 tasks" in message and "FAILED" not in message, message
    report = raised.value.report
    assert report["status"] == "refused" and report["original_desired_count"] == 4 and report["task_total"] == 4
    # AND the report names the holder, its phase and its expiry
    assert report["lock_holder"] == {
        "owner": "other-run",
        "phase": "surged",
        "expires_at": datetime.fromtimestamp(holder.expires_at, UTC).isoformat(timespec="seconds"),
    }
    # AND the email is marked REFUSED and says why in words
    (mailed,) = handler
    subject, text = _subject_and_text(mailed)
    assert subject.startswith("AWS ECS | REFUSED | ") and "FAILED" not in subject
    assert "other-run" in text and "surged" in text
    # AND the metrics count it as refused, not failed
    (line,) = [json.loads(t) for t in out.getvalue().splitlines() if t.startswith("{")]
    assert line["RunsRefused"] == [1.0] and line["RunsFailed"] == [0.0]
    # AND nothing changed: the holder's lock is as it was
    assert bed.lock() == holder


def test_the_cli_exits_2_for_a_run_refused_by_the_lock(
    bed: Bed, handler: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # GIVEN a service another run holds
    bed.add_service(tasks=3, target=(1, 8))
    bed.plant_lock(_live_surged_lock(bed, "other-run", desired=3))

    # WHEN the CLI is asked to recycle it
    config = tmp_path / "input.json"
    config.write_text("{}")
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--config", str(config)], clock=bed.clock)

    # THEN it exits 2 (refused: nothing was done), not 1 (a run that failed), and prints the refused report
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "refused" and printed["lock_holder"]["owner"] == "other-run"
    assert code == 2


# --------------------------------------------------------------------------- the email


def test_the_subject_names_the_cluster_and_service_and_keeps_its_marker() -> None:
    # GIVEN many services feeding one inbox
    report = {"status": "failed", "cluster": "prod", "service": "checkout", "error": "boom"}
    dry = {**report, "status": "dry_run", "error": None}

    # THEN each subject names its cluster/service, between the subject text and the date
    assert _subject_and_text(report)[0] == "AWS ECS | FAILED | ECS Service Task Recycle | prod/checkout | 2026-12-02"
    assert _subject_and_text(dry)[0] == "AWS ECS | DRY RUN | ECS Service Task Recycle | prod/checkout | 2026-12-02"


def test_a_service_with_no_task_to_recycle_says_there_was_nothing_to_recycle(
    bed: Bed, handler: list[dict[str, Any]]
) -> None:
    # GIVEN a service with no running task
    bed.add_service(tasks=0, target=(0, 4))

    # WHEN it is recycled through the handler
    result = plain_handler(bed)({"cluster_name": CLUSTER, "service_name": SERVICE}, FakeLambdaContext(bed.clock))

    # THEN it succeeded, and the email says there was nothing to recycle, not that every task was replaced
    assert result["status"] == "succeeded" and result["task_total"] == 0
    (mailed,) = handler
    _, text = _subject_and_text(mailed)
    assert "nothing to recycle" in text
    assert "every task was replaced" not in text and "0 of 0" not in text


def test_tasks_all_too_young_say_there_was_nothing_to_recycle_and_why(bed: Bed, handler: list[dict[str, Any]]) -> None:
    # GIVEN 2 tasks, both younger than the minimum age asked for
    bed.add_service(tasks=2, target=(1, 4))
    for task in bed.sim.tasks(CLUSTER, SERVICE):
        bed.sim.set_started(task, bed.clock.now() - 600)
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "min_task_age_seconds": 3600}

    result = plain_handler(bed)(event, FakeLambdaContext(bed.clock))

    # THEN the email says nothing needed recycling, and why: both are younger than min_task_age_seconds
    assert result["status"] == "succeeded" and len(result["tasks_skipped"]) == 2
    _, text = _subject_and_text(handler[0])
    assert "nothing to recycle" in text and "2 younger than min_task_age_seconds" in text
    assert "every task was replaced" not in text


def test_the_outcome_line_says_what_stopped_the_run_in_words() -> None:
    # GIVEN a run stopped because its replacements failed to start
    report = {
        "status": "failed",
        "cluster": "prod",
        "service": "web",
        "error": "2 replacement tasks stopped before becoming healthy; last stoppedReason: CannotPull",
        "error_type": "ReplacementFailed",
    }

    # THEN the outcome line reads as a sentence, with no class name in it
    _, text = _subject_and_text(report)
    (outcome,) = [line for line in text.splitlines() if line.startswith("Outcome:")]
    assert "a replacement task failed to start" in outcome
    assert "ReplacementFailed" not in outcome


def test_the_email_lists_the_tasks_stopped_and_not_replaced_and_those_skipped() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:task/prod/"
    report = {
        "status": "failed",
        "cluster": "prod",
        "service": "web",
        "task_total": 3,
        "tasks_recycled": [{"index": 1, "old_task_arn": arn + "aaa", "new_task_arn": arn + "bbb", "seconds": 40.0}],
        "tasks_stopped_not_replaced": [
            {"index": 2, "old_task_arn": arn + "ccc", "note": "its replacement stopped: CannotPull", "batch": 2}
        ],
        "tasks_skipped": [{"index": 3, "old_task_arn": arn + "ddd", "note": "protected until 10:00"}],
        "error_type": "ReplacementFailed",
        "error": "x",
    }
    _, text = _subject_and_text(report)
    assert "Stopped, not replaced:\n  - ccc: its replacement stopped: CannotPull" in text
    assert "Tasks skipped:\n  - ddd: protected until 10:00" in text


# --------------------------------------------------------------------------- messages


def test_the_incomplete_message_gives_the_count_once(bed: Bed) -> None:
    # GIVEN 6 tasks and an invocation with time for about two
    bed.add_service(tasks=6, target=(2, 8))
    engine, _ = bed.engine(timeout=400)

    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE}))

    # THEN the message says "N of 6 tasks recycled" once, and still the event that carries on
    message = plain.summarise(report.to_dict())
    assert report.status == "incomplete", report.error
    assert message.count("of 6 tasks") == 1, message
    assert "carry on with the event" in message
    bed.assert_every_original_in_exactly_one_list(report, set(bed.snapshots[SERVICE]["tasks"]))


# --------------------------------------------------------------------------- a retried hand-off


@pytest.fixture
def mailed_durable_alias(durable_alias: FakeDurableAlias, handler: list[dict[str, Any]]) -> FakeDurableAlias:
    """The hand-off's fake durable alias, with the email captured."""
    return durable_alias


def test_a_retried_hand_off_whose_execution_already_started_reports_handed_off(
    bed: Bed, mailed_durable_alias: FakeDurableAlias
) -> None:
    # GIVEN 40 tasks, too many for one invocation: the first attempt hands the run off
    bed.add_service(tasks=40, target=(1, 50))
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 30}
    first = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-9"))
    assert first["status"] == "handed_off"

    # WHEN Lambda retries the same invocation (same request id), and the durable client says the execution exists
    again = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-9"))

    # THEN the retry reports handed_off, naming the execution, already started; not FAILED "0 of 40"
    assert again["status"] == "handed_off", again.get("error")
    assert again["handed_off"]["execution_name"] == first["handed_off"]["execution_name"]
    assert again["handed_off"]["already_started"] is True and first["handed_off"]["already_started"] is False
    assert mailed_durable_alias.started == [first["handed_off"]["execution_name"]]


def test_a_retried_hand_off_whose_execution_holds_the_lock_reports_handed_off(
    bed: Bed, mailed_durable_alias: FakeDurableAlias
) -> None:
    # GIVEN a hand-off whose durable execution has started and taken the service's lock
    bed.add_service(tasks=40, target=(1, 50))
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 30}
    first = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-10"))
    name = first["handed_off"]["execution_name"]
    holder = _live_surged_lock(bed, f"durable:0123456789abcdef:{name}", desired=40)
    bed.plant_lock(holder)

    # WHEN the same invocation is retried
    again = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-10"))

    # THEN it is the same hand-off, already under way: not a refusal, and the lock is untouched
    assert again["status"] == "handed_off", again.get("error")
    assert again["handed_off"]["execution_name"] == name and again["handed_off"]["already_started"] is True
    assert bed.lock() == holder


# --------------------------------------------------------------------------- a bad event on a schedule


def test_a_bad_event_is_mailed_as_refused_when_the_notification_settings_load(
    bed: Bed, handler: list[dict[str, Any]]
) -> None:
    # GIVEN a scheduled invocation whose event has a bad field
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": -5}

    # WHEN the handler gets it
    with pytest.raises(ConfigError, match="wait_time"):
        plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-bad"))

    # THEN it still raises, and, since nobody watches a schedule, the refusal is mailed, marked REFUSED,
    # naming the service and the field
    (mailed,) = handler
    assert mailed["status"] == "refused" and mailed["error_type"] == "ConfigError" and "wait_time" in mailed["error"]
    assert (mailed["cluster"], mailed["service"], mailed["request_id"]) == (CLUSTER, SERVICE, "req-bad")
    subject, text = _subject_and_text(mailed)
    assert subject.startswith(f"AWS ECS | REFUSED | ECS Service Task Recycle | {CLUSTER}/{SERVICE} | ")
    assert "wait_time" in text


def test_a_bad_event_is_not_mailed_when_the_notification_settings_do_not_load(
    bed: Bed, handler: list[dict[str, Any]], tmp_path: Path
) -> None:
    # GIVEN a bad event, and an input.json that does not load either
    broken = tmp_path / "input.json"
    broken.write_text(json.dumps({"smtpCredentials": {"host": "smtp.example.com"}}))
    with pytest.raises(ConfigError):
        load_config(broken)
    environment = Environment.from_env({"RECYCLE_CONFIG": str(broken)})
    event = {"cluster_name": CLUSTER, "service_name": "bad name!"}

    # THEN the event's own error is raised, and nothing is mailed
    with pytest.raises(ConfigError, match="service_name"):
        plain.build_handler(clock=bed.clock, environment=environment)(event, FakeLambdaContext(bed.clock))
    assert handler == []


def test_a_dry_runs_email_counts_the_tasks_it_would_recycle(bed: Bed) -> None:
    # GIVEN 3 tasks, and a dry run
    bed.add_service(tasks=3, target=(1, 6))
    report = bed.run(dry_run=True)

    # THEN its email says 3 would be recycled (the plan has them; no list of the report does)
    _, text = _subject_and_text(report.to_dict())
    assert "3 task(s) would be recycled" in text
