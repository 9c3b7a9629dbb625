"""The Lambda handler end to end on the simulated cluster: report, raise-after-restore, logs, secrets."""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import HTTPClientError
from support.bed import CLUSTER, SERVICE, Bed, load_event
from support.logs import log_lines
from support.smtp import smtp_server

import lambda_function
from dev import simulator
from dev.simulator import Behaviour, FakeLambdaContext
from recycler.aws import clients
from recycler.aws import session as aws_session
from recycler.hosts import plain
from recycler.hosts.config import AppConfig, parse_config
from recycler.model.settings import AwsCredentials
from recycler.observability import logs

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLETOKENxyz0123456789"


HANDLER_CONFIG = parse_config({"recycle": {"poll_interval_seconds": 5}})


@pytest.fixture
def handler_env(bed: Bed) -> Bed:
    return bed


def handler(bed: Bed, config: AppConfig = HANDLER_CONFIG) -> Callable[[Any, Any], dict[str, Any]]:
    """lambda_function.lambda_handler with its own session and clients, on the bed's virtual clock and this
    input.json."""
    return plain.build_handler(clock=bed.clock, config=config)


def test_handler_returns_the_report(handler_env: Bed, captured_logs: io.StringIO) -> None:
    bed = handler_env
    bed.add_service(tasks=3, target=(1, 6))
    context = FakeLambdaContext(bed.clock, 900, "req-42")

    result = handler(bed)(load_event("recycle.json"), context)

    assert result["status"] == "succeeded"
    assert (result["cluster"], result["service"]) == (CLUSTER, SERVICE)
    assert result["original_desired_count"] == 3 and result["task_total"] == 3
    assert len(result["tasks_recycled"]) == 3
    assert {"old_task_arn", "new_task_arn", "seconds"} <= set(result["tasks_recycled"][0])
    assert result["restored"] is True and result["duration_seconds"] > 0
    assert result["notification"]["status"] == "not_configured"
    assert result["request_id"] == "req-42"
    json.dumps(result)  # the report is plain JSON
    bed.assert_restored()

    # Every line is JSON with cluster and service, whichever module logged it.
    lines = log_lines(captured_logs)
    assert lines
    assert all(line.get("cluster") == CLUSTER and line.get("service") == SERVICE for line in lines), lines
    assert all(line.get("request_id") == "req-42" for line in lines)


def test_dry_run_event_returns_the_plan(handler_env: Bed) -> None:
    bed = handler_env
    bed.add_service(tasks=2)
    result = handler(bed)(load_event("dry-run.json"), FakeLambdaContext(bed.clock))
    assert result["status"] == "dry_run"
    assert len(result["plan"]["tasks_to_stop"]) == 2
    assert bed.sim.calls.keys().isdisjoint({"update_service", "stop_task", "tag_resource"})


def test_failure_is_raised_after_restore_and_notification(handler_env: Bed) -> None:
    # GIVEN replacements that never become healthy
    bed = handler_env
    bed.add_service(tasks=3, target=(1, 6), behaviour=Behaviour())
    bed.sim.at(45, "broken release", lambda: setattr(bed.sim.behaviour(CLUSTER, SERVICE), "never_healthy", True))
    config = parse_config({"recycle": {"replacement_timeout_seconds": 60}})

    # WHEN the handler runs, THEN it raises, and the message says what was done and restored
    with pytest.raises(plain.RecycleNotCompleted) as caught:
        handler(bed, config)(load_event("recycle.json"), FakeLambdaContext(bed.clock))
    message = str(caught.value)
    assert "FAILED" in message and "service restored" in message and "desiredCount 4 -> 3" in message
    assert caught.value.report["notification"]["status"] == "not_configured"
    bed.assert_restored()


@pytest.mark.parametrize("action", ["recycle", "status"])
def test_a_cluster_not_found_through_the_handler_names_the_region_and_account(handler_env: Bed, action: str) -> None:
    # GIVEN a service in us-east-1 of account 123456789012, and an event naming a cluster that is not there
    handler_env.add_service(tasks=1)
    event = {"cluster_name": "prod", "service_name": SERVICE, "action": action}
    # WHEN the handler runs, THEN the error says where the handler's own clients looked
    with pytest.raises(Exception) as caught:
        handler(handler_env)(event, FakeLambdaContext(handler_env.clock))
    message = str(caught.value)
    assert "cluster not found: prod" in message, message
    assert "region us-east-1" in message and "account 123456789012" in message, message


def test_incomplete_run_names_the_durable_function(handler_env: Bed) -> None:
    bed = handler_env
    bed.add_service(tasks=8)
    with pytest.raises(plain.RecycleNotCompleted) as caught:
        handler(bed)(load_event("recycle.json"), FakeLambdaContext(bed.clock, 300))
    assert caught.value.report["status"] == "incomplete"
    assert "durable" in str(caught.value)
    bed.assert_restored()


def test_no_secret_reaches_logs_or_report(
    handler_env: Bed, captured_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = handler_env
    bed.add_service(tasks=1)
    config = parse_config(
        {
            "awsCredentials": {
                "region_name": "us-east-1",
                "access_key": "AKIAEXAMPLE",
                "secret_key": SECRET_KEY,
                "session_token": SESSION_TOKEN,
            }
        }
    )
    # Even a careless log line would be masked, once input.json is loaded (get_config registers its secrets).
    plain.register_secrets(config)
    import logging

    logging.getLogger("careless").warning("key was %s", SECRET_KEY)

    result = handler(bed, config)(load_event("recycle.json"), FakeLambdaContext(bed.clock))
    text = captured_logs.getvalue() + json.dumps(result)
    assert SECRET_KEY not in text and SESSION_TOKEN not in text
    assert logs.mask(f"x {SECRET_KEY} y") == "x *** y"


def test_cli_dry_run_against_the_simulated_account(
    bed: Bed, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed.add_service(tasks=2)
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"awsCredentials": {"region_name": "us-east-1"}}))
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--dry-run", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["status"] == "dry_run"


def test_cli_rejects_bad_input_with_exit_code_2_naming_the_flag(capsys: Any) -> None:
    code = lambda_function.main(["--cluster", "bad name", "--service", SERVICE, "--dry-run"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: --cluster: must be an ECS cluster name")


def test_cli_names_the_flag_the_user_typed(capsys: Any) -> None:
    # GIVEN a flag whose value the event validation refuses
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--wait-time", "901", "--dry-run"])
    # THEN the error names --wait-time, not the event field wait_time
    assert code == 2
    assert capsys.readouterr().err == "error: --wait-time: must be between 0 and 900, got 901\n"


def test_cli_names_the_list_flag_and_the_item_of_a_bad_list_value(capsys: Any) -> None:
    # GIVEN an alarm name longer than CloudWatch allows, the event validation's alarm_names[0]
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--dry-run", "--alarm-names", "a" * 300])
    # THEN the error names the flag typed, and which item of it
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --alarm-names[0]: must be an alarm name"), err
    assert "alarm_names" not in err


def test_a_lock_table_name_with_a_trailing_newline_is_refused_naming_it(
    bed: Bed, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN LOCK_TABLE_NAME as `$(...)` or a file can leave it: a good name and a newline
    bed.add_service(tasks=2)
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"awsCredentials": {"region_name": "us-east-1"}}))
    monkeypatch.setenv("LOCK_TABLE_NAME", "ecs-task-recycle-locks\n")
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--config", str(config)])
    # THEN it is refused, named, before any AWS call; the same name as an ARN is refused the same way
    assert code == 2
    assert capsys.readouterr().err.startswith("error: LOCK_TABLE_NAME: is not a DynamoDB table name")
    assert bed.sim.calls == {}
    monkeypatch.setenv("LOCK_TABLE_NAME", "arn:aws:dynamodb:us-east-1:123456789012:table/locks\n")
    assert lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith("error: LOCK_TABLE_NAME: is not a DynamoDB table name")


def test_cli_without_a_region_prints_one_line_and_exits_2(
    bed: Bed, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no region in input.json, the environment or an AWS config file
    bed.add_service(tasks=2)
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"awsCredentials": {"region_name": ""}}))
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    # WHEN the CLI runs
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--dry-run", "--config", str(config)])

    # THEN one line says how to set the region, the exit code is 2, and no AWS call was made
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: awsCredentials.region_name: ")
    assert "AWS_REGION" in err and "--region" in err
    assert bed.sim.calls == {}


def test_cli_region_flag_sets_the_region(
    bed: Bed, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no region anywhere but on the command line
    bed.add_service(tasks=2)
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"awsCredentials": {"region_name": ""}}))
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    argv = ["--cluster", CLUSTER, "--service", SERVICE, "--dry-run", "--config", str(config)]

    # WHEN --region names the simulated account's region, THEN the dry run works there
    assert lambda_function.main([*argv, "--region", simulator.REGION]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "dry_run"

    # WHEN --region is malformed, THEN the flag is named
    assert lambda_function.main([*argv, "--region", "us-east-١"]) == 2
    assert capsys.readouterr().err == "error: --region: is not an AWS region name\n"


def test_cli_with_an_unknown_profile_exits_2_naming_profile_name(tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"awsCredentials": {"profile_name": "no-such-profile"}}))
    code = lambda_function.main(["--cluster", CLUSTER, "--service", SERVICE, "--dry-run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: awsCredentials.profile_name: profile 'no-such-profile' is not")
    assert len(err.strip().splitlines()) == 1


def test_handler_with_an_unknown_profile_raises_a_config_error(
    handler_env: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recycler.model.errors import ConfigError

    bed = handler_env
    bed.add_service(tasks=1)
    config = parse_config({"awsCredentials": {"profile_name": "nope"}})
    with pytest.raises(ConfigError) as caught:
        handler(bed, config)(load_event("recycle.json"), FakeLambdaContext(bed.clock))
    assert caught.value.field == "awsCredentials.profile_name"
    assert bed.sim.calls == {}


def test_handler_without_a_context_runs_with_an_unlimited_budget_and_says_so(handler_env: Bed) -> None:
    # GIVEN a service with more tasks than a short Lambda budget would allow
    bed = handler_env
    bed.add_service(tasks=4, target=(1, 6))

    # WHEN the handler is called directly, with no Lambda context
    result = handler(bed)(load_event("recycle.json"), None)

    # THEN the whole service is recycled and restored, and the report says the budget was unlimited
    assert result["status"] == "succeeded"
    assert len(result["tasks_recycled"]) == 4
    assert result["time_budget"] == "unlimited (no Lambda context)"
    assert result["request_id"] is None
    bed.assert_restored()


def test_handler_with_a_context_reports_a_lambda_budget(handler_env: Bed) -> None:
    bed = handler_env
    bed.add_service(tasks=1)
    result = handler(bed)(load_event("dry-run.json"), FakeLambdaContext(bed.clock))
    assert result["time_budget"] == "Lambda remaining time"


def _check_headers_as_http_client_does(request: Any, **_: Any) -> None:
    """Before moto answers, refuse a header value http.client would refuse, as botocore reports it."""
    connection = http.client.HTTPConnection("localhost")
    try:
        connection.putrequest(request.method, "/", skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
    except ValueError as e:
        raise HTTPClientError(error=e) from e
    finally:
        connection.close()


def test_a_token_quoted_by_an_aws_error_reaches_no_report_log_email_or_exception(
    handler_env: Bed, captured_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a session token with a trailing newline that got past validation (built in code),
    # so every AWS call fails with "Invalid header value b'<token>\\n'"
    bed = handler_env
    bed.add_service(tasks=1)
    token = "IQoJb3JpZ2luX2VjENEWLINETERMINATEDTOKEN0123456789"
    monkeypatch.setattr(aws_session, "CLIENT_CONFIG", Config(retries={"mode": "standard", "max_attempts": 1}))
    real_create_client = clients.create_client

    def create_client(session: Any, name: str) -> Any:
        client = real_create_client(session, name)
        client.meta.events.register_first("before-send", _check_headers_as_http_client_does)
        return client

    monkeypatch.setattr(clients, "create_client", create_client)
    with smtp_server("plain") as relay:
        config = parse_config(
            {
                "smtpCredentials": {
                    "host": "127.0.0.1",
                    "port": relay.port,
                    "security": "none",
                    "from_email": "noreply@example.com",
                },
                "emailNotification": {"to": ["ops@example.com"]},
            }
        )
        aws = AwsCredentials(
            region_name=simulator.REGION, access_key="AKIAEXAMPLE", secret_key=SECRET_KEY, session_token=token + "\n"
        )
        config = dataclasses.replace(config, aws=aws)

        # WHEN the handler runs
        with pytest.raises(plain.RecycleNotCompleted) as caught:
            handler(bed, config)(load_event("recycle.json"), FakeLambdaContext(bed.clock))

    # THEN the run failed on exactly that error, with the token masked in it
    report = caught.value.report
    assert "Invalid header value b'***'" in report["error"], report["error"]
    assert report["notification"]["status"] == "sent", report["notification"]
    [received] = relay.handler.messages
    message = received.parsed()
    text = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert text is not None and rich is not None
    assert "Invalid header value" in text.get_content()
    # ... and the token appears in none of: the report, the log lines, the email, the exception
    for where, content in {
        "report": json.dumps(report),
        "logs": captured_logs.getvalue(),
        "email (raw)": received.content.decode("utf-8", "replace"),
        "email subject": str(message["Subject"]),
        "email text": text.get_content(),
        "email html": rich.get_content(),
        "exception": str(caught.value),
    }.items():
        assert token not in content, f"the token reached the {where}"
