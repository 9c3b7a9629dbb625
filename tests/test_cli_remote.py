"""The CLI against the deployed function: ``--invoke F`` starts the run there asynchronously (never a
synchronous invoke a client timeout could re-send), ``--follow`` follows it to its end through the same
function's ``status``, and the exit status says how it ended."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed
from support.fleet import NAMES, add_services
from support.functions import DeployedFunction
from support.terminal import Terminal

import lambda_function
from dev.simulator import Behaviour
from recycler.hosts.execution_name import durable_execution_name, durable_fleet_execution_name
from recycler.hosts.remote import todays_run_key

ARGV = ["--cluster", CLUSTER, "--service", SERVICE, "--wait-time", "5"]


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_invoke_and_follow_starts_the_run_asynchronously_and_follows_it_to_success(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    bed.add_service(tasks=3, target=(1, 6))

    code = lambda_function.main([*ARGV, "--invoke", "ecs-task-recycle", "--follow"], clock=bed.clock)

    out = _lines(capsys.readouterr().out)
    # THEN the recycle was started once, asynchronously, with today's run_key; every other call only asked
    starts = [i for i in deployed.invokes if i.get("InvocationType") == "Event"]
    assert len(starts) == 1 and starts[0]["FunctionName"] == "ecs-task-recycle"
    assert json.loads(starts[0]["Payload"])["run_key"] == todays_run_key(bed.clock.start)
    asked = [json.loads(i["Payload"]) for i in deployed.invokes if i.get("InvocationType") != "Event"]
    assert asked and all(a["action"] == "status" for a in asked)
    # and the follow ended with the run's outcome, and the service is as it was
    assert out[-1]["followed"] == "succeeded" and code == 0
    bed.assert_restored()
    bed.assert_capacity_held()


def test_a_failed_run_followed_exits_1_with_its_error(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a service whose replacements fail to start (the image cannot be pulled)
    behaviour = Behaviour()
    bed.add_service(tasks=2, target=(1, 6), behaviour=behaviour)
    bed.sim.at(45, "image pull breaks", lambda: setattr(behaviour, "fail_next_starts", 99))

    code = lambda_function.main([*ARGV, "--invoke", "ecs-task-recycle", "--follow"], clock=bed.clock)

    followed = _lines(capsys.readouterr().out)[-1]
    assert (followed["followed"], code) == ("failed", 1)
    assert "CannotPullContainerError" in followed["message"]
    bed.assert_restored()


def test_invoke_of_the_durable_function_starts_its_alias_under_the_runs_execution_name_once(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    bed.add_service(tasks=2, target=(1, 6))
    deployed.durable = True
    argv = [*ARGV, "--invoke", "ecs-task-recycle-durable", "--run-key", "weekly"]

    assert lambda_function.main(argv, clock=bed.clock) == 0
    # WHEN the same command is given again
    assert lambda_function.main(argv, clock=bed.clock) == 0

    starts = [i for i in deployed.invokes if i.get("InvocationType") == "Event"]
    name = durable_execution_name(CLUSTER, SERVICE, "weekly")
    assert [(s["FunctionName"], s["DurableExecutionName"]) for s in starts] == [
        ("ecs-task-recycle-durable:live", name)
    ] * 2
    # THEN the second start is no second run: Lambda refused it, and the CLI says it follows the first
    messages = [line["message"] for line in _lines(capsys.readouterr().out) if "invoked" in line]
    assert messages[0].startswith("started") and messages[1].startswith("already started")
    assert len(deployed.started) == 1


def test_follow_alone_reports_the_last_run_through_the_lock_table(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    bed.add_service(tasks=2, target=(1, 6))
    bed.run(wait_time=5)
    assert deployed.invokes == []

    code = lambda_function.main([*ARGV, "--follow"], clock=bed.clock)

    followed = _lines(capsys.readouterr().out)[-1]
    assert (followed["followed"], code) == ("succeeded", 0)
    # it read the lock table itself: the function was never invoked
    assert deployed.invokes == []


@pytest.mark.parametrize("extra", [["--dry-run"], ["--status"], ["--history"]])
def test_invoke_only_starts_a_recycle(bed: Bed, deployed: DeployedFunction, extra: list[str], capsys: Any) -> None:
    assert lambda_function.main([*ARGV, "--invoke", "f", *extra], clock=bed.clock) == 2
    assert "--invoke" in capsys.readouterr().err and deployed.invokes == []


def test_a_bad_event_is_refused_before_anything_is_invoked(bed: Bed, deployed: DeployedFunction, capsys: Any) -> None:
    assert lambda_function.main([*ARGV, "--invoke", "f", "--run-key", "not a key"], clock=bed.clock) == 2
    assert "--run-key" in capsys.readouterr().err and deployed.invokes == []


def test_every_event_field_has_a_cli_flag_of_its_name() -> None:
    from recycler.hosts import cli
    from recycler.model.fleet import FLEET_FIELDS
    from recycler.model.request import _EVENT_FIELDS

    _, flags = cli.parser_and_flags()
    assert set(flags) == _EVENT_FIELDS | set(FLEET_FIELDS)
    for field, flag in flags.items():
        if field != "action":
            assert flag.lstrip("-").replace("no-", "", 1).replace("-", "_") in (field, field.removesuffix("_name")), (
                flag
            )


def test_a_run_at_a_terminal_shows_a_live_bar_and_its_log_lines_above_it(
    bed: Bed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    bed.add_service(tasks=3, target=(1, 6))
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"recycle": {"poll_interval_seconds": 5}}))
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    code = lambda_function.main([*ARGV, "--config", str(config)], clock=bed.clock)

    shown = terminal.getvalue()
    assert code == 0
    # THEN the bar counted to the end and said how the run went, with the run's lines as text, not JSON
    assert "3/3" in shown and "100%" in shown and "recycle succeeded" in shown
    assert "Task 1 recycled" in shown and '"level"' not in shown
    # and stdout still has the report
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"


def test_json_at_a_terminal_keeps_json_lines(
    bed: Bed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    bed.add_service(tasks=2, target=(1, 6))
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"recycle": {"poll_interval_seconds": 5}}))
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    assert lambda_function.main([*ARGV, "--config", str(config), "--json"], clock=bed.clock) == 0

    assert "recycle succeeded" not in terminal.getvalue()


def test_invoke_starts_a_fleet_in_the_durable_function_as_one_execution_per_selection_and_run_key(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    add_services(bed)
    originals = {service: live(bed, service) for service in NAMES}
    deployed.durable = True
    argv = ["--cluster", CLUSTER, "--services", *NAMES, "--wait-time", "5", "--invoke", "ecs-task-recycle-durable"]

    assert lambda_function.main(argv, clock=bed.clock) == 0
    assert lambda_function.main(argv, clock=bed.clock) == 0

    # One execution for the fleet under today's run_key; the second start follows it.
    starts = [i for i in deployed.invokes if i.get("InvocationType") == "Event"]
    name = durable_fleet_execution_name(CLUSTER, services=NAMES, run_key=todays_run_key(bed.clock.now()))
    assert [s["DurableExecutionName"] for s in starts] == [name, name] and len(deployed.started) == 1
    payload = json.loads(starts[0]["Payload"])
    assert payload["services"] == NAMES and payload["run_key"] == todays_run_key(bed.clock.now())
    lines = [line for line in _lines(capsys.readouterr().out) if "invoked" in line]
    assert lines[1]["message"].startswith("already started") and lines[0]["watch"].endswith("--status")
    # The fleet ran there (the fake function runs it at its start): each service recycled and restored.
    for service in NAMES:
        assert live(bed, service) and not live(bed, service) & originals[service]
        bed.assert_restored(service)


def live(bed: Bed, service: str) -> set[str]:
    return {t.task_arn for t in bed.sim.tasks(CLUSTER, service) if t.desired_status == "RUNNING"}


def test_invoke_and_follow_a_fleet_ends_with_the_fleets_status(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    add_services(bed, failing="svc-b")
    argv = ["--cluster", CLUSTER, "--services", *NAMES, "--wait-time", "5", "--invoke", "f", "--follow"]
    # The fake function runs the fleet at its start; the follow then asks it for the fleet's status.
    code = lambda_function.main(argv, clock=bed.clock)
    lines = _lines(capsys.readouterr().out)
    followed = lines[-1]
    assert (followed["followed"], code) == ("failed", 1) and followed["message"].startswith("fleet failed")
    answers = [line for line in lines if line.get("fleet") is True]
    assert answers and answers[-1]["fleet_run"]["status"] == "failed" and answers[-1]["fleet_run"]["ended_at"]
    assert deployed.invokes[0]["InvocationType"] == "Event"


def test_follow_alone_reports_the_last_fleet_run_through_the_lock_table(
    bed: Bed, deployed: DeployedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    add_services(bed)
    argv = ["--cluster", CLUSTER, "--services", *NAMES, "--follow"]
    # Nothing on record yet: said, and no failure.
    assert lambda_function.main(argv, clock=bed.clock) == 0
    assert "no fleet run" in _lines(capsys.readouterr().out)[-1]["message"]
    assert lambda_function.main(["--cluster", CLUSTER, "--services", *NAMES, "--wait-time", "5"], clock=bed.clock) == 0
    capsys.readouterr()
    assert lambda_function.main(argv, clock=bed.clock) == 0
    assert _lines(capsys.readouterr().out)[-1]["followed"] == "succeeded" and deployed.invokes == []
