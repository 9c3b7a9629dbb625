"""Bad events and bad input.json: a clear error naming the field, before any AWS call."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from support.bed import EVENTS, SERVICE, Bed, load_event

import lambda_function
from recycler.hosts.config import load_config, parse_config
from recycler.hosts.environment import Environment
from recycler.model.errors import ConfigError
from recycler.model.fleet import FLEET_FIELDS, is_fleet_event, parse_fleet_event
from recycler.model.request import RecycleRequest, parse_event, utc_text

# --------------------------------------------------------------------------- the event


def test_defaults_apply_to_a_minimal_event() -> None:
    request = parse_event({"cluster_name": "c", "service_name": "s"})
    assert request == RecycleRequest("c", "s", maintain_service_state=True, wait_time=30, dry_run=False)


# The console test events that are wrong on purpose, to show the error.
DELIBERATELY_BAD_EVENTS = {"typo.json", "string-boolean.json"}


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("*.json")))
def test_every_console_test_event_is_valid_unless_it_shows_an_error(name: str) -> None:
    event = load_event(name)
    if name in DELIBERATELY_BAD_EVENTS:
        with pytest.raises(ConfigError):
            parse_event(event)
        return
    if is_fleet_event(event):
        fleet = parse_fleet_event(event)
        request = fleet.for_service(SERVICE)
        event = {k: v for k, v in event.items() if k not in FLEET_FIELDS}
        assert fleet.services or fleet.service_tags
    else:
        request = parse_event(event)
    assert request.service_name == SERVICE
    # Every key the event sets is one the request carries, with the value it gave.
    for key, value in event.items():
        if key not in ("cluster_name", "service_name"):
            carried = getattr(request, key)
            if key == "started_before":
                # (carried as epoch seconds, for the selection to compare with startedAt)
                carried = utc_text(carried)
            assert carried == (tuple(value) if isinstance(value, list) else value), key


def test_arns_are_accepted_and_reduced_to_names() -> None:
    request = parse_event(load_event("arn.json"))
    assert request.cluster_name == "demo-cluster" and request.service_name == "web"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (load_event("typo.json"), "wait_tme"),
        (load_event("string-boolean.json"), "maintain_service_state"),
        ({"service_name": "s"}, "cluster_name"),
        ({"cluster_name": "c"}, "service_name"),
        ({"cluster_name": "", "service_name": "s"}, "cluster_name"),
        ({"cluster_name": "bad name!", "service_name": "s"}, "cluster_name"),
        ({"cluster_name": "c", "service_name": "x" * 256}, "service_name"),
        ({"cluster_name": "c", "service_name": "arn:aws:ecs:us-east-1:1234:service/c/s"}, "service_name"),
        ({"cluster_name": "c", "service_name": "arn:aws:ecs:us-east-1:123456789012:service/other/s"}, "service_name"),
        ({"cluster_name": 5, "service_name": "s"}, "cluster_name"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": -1}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": 901}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": "30"}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": 30.5}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": True}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", "dry_run": 1}, "dry_run"),
        (["c", "s"], "event"),
    ],
)
def test_bad_event_names_the_field(event: Any, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_event(event)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_bad_event_reaches_no_aws_call(bed: Bed) -> None:
    # GIVEN a real service on the simulated cluster
    bed.add_service(tasks=2)
    desired = bed.desired()

    # WHEN the handler gets an event with a typo
    with pytest.raises(ConfigError, match="wait_tme"):
        lambda_function.lambda_handler(load_event("typo.json"), None)

    # THEN no AWS call was made and nothing changed
    assert bed.sim.calls == {}
    assert bed.desired() == desired and bed.lock() is None
    bed.assert_restored(SERVICE)


# --------------------------------------------------------------------------- input.json


def test_shipped_input_json_is_valid_and_holds_no_credentials() -> None:
    path = Path(__file__).resolve().parent.parent / "input.json"
    config = load_config(path)
    document = json.loads(path.read_text())
    aws = document.get("awsCredentials", {})
    for secret in ("access_key", "secret_key", "session_token"):
        assert not aws.get(secret)
    assert "password" not in json.dumps(document.get("smtpCredentials", {}))
    assert config.recycle.poll_interval_seconds == 5


def test_recycle_config_env_var_names_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.json"
    path.write_text(json.dumps({"recycle": {"poll_interval_seconds": 2, "max_failed_replacements": 5}}))
    monkeypatch.setenv("RECYCLE_CONFIG", str(path))
    config = load_config(Environment.from_env().config_path)
    assert config.recycle.poll_interval_seconds == 2.0 and config.recycle.max_failed_replacements == 5


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"recycle": {"poll_interval_seconds": "5"}}, "recycle.poll_interval_seconds"),
        ({"recycle": {"replacement_timeout_seconds": 10.5}}, "recycle.replacement_timeout_seconds"),
        ({"recycle": {"max_failed_replacements": 0}}, "recycle.max_failed_replacements"),
        ({"recycle": {"restore_reserve_seconds": True}}, "recycle.restore_reserve_seconds"),
        ({"recycle": {"poll_interval": 5}}, "recycle.poll_interval"),
        ({"recycle": []}, "recycle"),
        ({"awsCredentials": {"region_name": 5}}, "awsCredentials.region_name"),
        ({"awsCredentials": {"region_name": "moon-1"}}, "awsCredentials.region_name"),
        ({"awsCredentials": {"access_key": "AKIAEXAMPLE"}}, "awsCredentials.secret_key"),
        ({"awsCredentials": {"role_arn": "arn:aws:iam::12:role/x"}}, "awsCredentials.role_arn"),
        ({"awsCredentials": {"external_id": "x"}}, "awsCredentials.external_id"),
        ({"awsCredentials": {"profile": "p"}}, "awsCredentials.profile"),
        ({"awsCredential": {}}, "awsCredential"),
    ],
)
def test_bad_input_json_names_the_key(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("document", "field", "allowed"),
    [
        ({"awsCredential": {}}, "awsCredential", ["awsCredentials", "emailNotification", "recycle"]),
        ({"awsCredentials": {"profile": "p"}}, "awsCredentials.profile", ["profile_name", "region_name", "role_arn"]),
        ({"recycle": {"poll_interval": 5}}, "recycle.poll_interval", ["poll_interval_seconds", "lock_table_name"]),
        (
            {
                "smtpCredentials": {"host": "smtp.example.com", "pasword": "x"},
                "emailNotification": {"from_email": "a@example.com", "to": ["b@example.com"]},
            },
            "smtpCredentials.pasword",
            ["password", "username"],
        ),
    ],
    ids=["section", "awsCredentials", "recycle", "smtpCredentials"],
)
def test_an_unknown_key_anywhere_in_input_json_lists_the_allowed_keys(
    document: dict[str, Any], field: str, allowed: list[str]
) -> None:
    # GIVEN a misspelt key, at the top or in any section; WHEN input.json is parsed
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    # THEN the error names it and lists what that place allows
    assert caught.value.field == field
    assert "allowed: " in caught.value.problem
    for key in allowed:
        assert key in caught.value.problem


def test_malformed_file_names_the_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"recycle": {"poll_interval_seconds": 5,}}')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1"):
        load_config(path)


SECRET_IN_FILE = "hunter2-secret-value"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{\n  // the region\n  "awsCredentials": {}\n}', 2, "a comment"),
        ('{\n  "recycle": {} /* tunables */\n}', 2, "a comment"),
        ('{\n  # the region\n  "recycle": {}\n}', 2, "a comment"),
        ('{\n  "recycle": {"poll_interval_seconds": 5,\n  }\n}', 2, "a trailing comma"),
        ('{"recycle": {"poll_interval_seconds": 5},\n}', 1, "a trailing comma"),
        ('{"recycle": {"poll_interval_seconds": [5, ]}}', 1, "a trailing comma"),
        ("{'recycle': {}}", 1, "single quotes"),
        ("{recycle: {}}", 1, "keys and strings take double quotes"),
        ('{"recycle": {"poll_interval_seconds": True}}', 1, "true, false and null are lower case"),
        ('{"recycle": {}}\n}', 2, "after the end"),
        ('{"recycle": {} "awsCredentials": {}}', 1, "a comma is missing"),
        ('{"smtpCredentials": {"password": "' + SECRET_IN_FILE + '\n"}}', 1, "line break"),
        ('{"smtpCredentials": {"password": "' + SECRET_IN_FILE + "}}", 1, "not closed"),
        ("", 1, "the file is empty"),
        ("  \n", 2, "the file is empty"),
    ],
    ids=[
        "line-comment",
        "block-comment",
        "hash-comment",
        "trailing-comma-object",
        "trailing-comma-top",
        "trailing-comma-array",
        "single-quotes",
        "bare-key",
        "python-true",
        "extra-data",
        "missing-comma",
        "raw-newline",
        "unterminated",
        "empty",
        "blank",
    ],
)
def test_malformed_json_says_why_and_where_without_echoing_the_text(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    # GIVEN an input.json with a mistake people make in JSON (comments and trailing commas most of all)
    path = tmp_path / "input.json"
    path.write_text(text)

    # WHEN it is loaded
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    # THEN the error names the file, the line and column, and why; it repeats nothing of the text
    message = str(caught.value)
    assert caught.value.field == str(path)
    assert f"not valid JSON (line {line}, column " in message
    assert reason in message, message
    assert SECRET_IN_FILE not in message
    if reason in ("a comment", "a trailing comma"):
        assert "comments and trailing commas are not JSON" in message


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 5 * 1024 * 1024])
def test_a_config_file_over_1_mb_is_refused_naming_the_file_and_the_limit(tmp_path: Path, size: int) -> None:
    # GIVEN a config file larger than any input.json could reasonably be (valid JSON, even)
    path = tmp_path / "huge.json"
    path.write_text('{"recycle": {}, "x": "' + "a" * size + '"}')
    # WHEN it is loaded, THEN the error names the file and the limit
    with pytest.raises(ConfigError, match=r"larger than 1 MB") as caught:
        load_config(path)
    assert caught.value.field == str(path)


def test_recycle_config_naming_dev_zero_is_a_bounded_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN RECYCLE_CONFIG naming an endless file
    monkeypatch.setenv("RECYCLE_CONFIG", "/dev/zero")
    # WHEN the config is loaded, THEN it stops at the limit with a clear error (not memory exhaustion)
    with pytest.raises(ConfigError, match=r"larger than 1 MB") as caught:
        load_config(Environment.from_env().config_path)
    assert caught.value.field == "/dev/zero"


def test_a_config_file_just_under_the_limit_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    document = '{"recycle": {"poll_interval_seconds": 2}}'
    path.write_text(document + " " * (1024 * 1024 - len(document)))
    assert load_config(path).recycle.poll_interval_seconds == 2.0


def test_config_error_never_echoes_a_secret_value() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ConfigError) as caught:
        parse_config({"awsCredentials": {"secret_key": secret}})
    assert secret not in str(caught.value)
    from recycler.model.settings import AwsCredentials

    assert secret not in repr(AwsCredentials(access_key="AKIA", secret_key=secret, session_token=secret))


def test_bad_input_json_fails_the_handler_before_any_aws_call(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed.add_service(tasks=2)
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"recycle": {"max_failed_replacements": "three"}}))
    monkeypatch.setenv("RECYCLE_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"recycle\.max_failed_replacements"):
        lambda_function.lambda_handler(load_event("recycle.json"), None)
    assert bed.sim.calls == {}
    bed.assert_restored()


# --------------------------------------------------------------------------- ASCII only


def test_unicode_digits_in_a_cluster_arn_reach_no_aws_call(bed: Bed) -> None:
    # GIVEN a real service, and a cluster ARN whose account id is written in Arabic-Indic digits
    bed.add_service(tasks=2)
    event = {"cluster_name": "arn:aws:ecs:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:cluster/c", "service_name": SERVICE}

    # WHEN the handler gets it, THEN it is refused as a bad cluster_name before any AWS call
    with pytest.raises(ConfigError) as caught:
        lambda_function.lambda_handler(event, None)
    assert caught.value.field == "cluster_name"
    assert bed.sim.calls == {}


def test_unicode_digit_in_the_region_reaches_no_aws_call(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN input.json whose region ends in ARABIC-INDIC DIGIT ONE
    bed.add_service(tasks=2)
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"awsCredentials": {"region_name": "us-east-١"}}), encoding="utf-8")
    monkeypatch.setenv("RECYCLE_CONFIG", str(path))

    # WHEN the handler runs, THEN the region is refused before any AWS call
    with pytest.raises(ConfigError) as caught:
        lambda_function.lambda_handler(load_event("recycle.json"), None)
    assert caught.value.field == "awsCredentials.region_name"
    assert bed.sim.calls == {}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"awsCredentials": {"region_name": "us-east-1\n"}}, "awsCredentials.region_name"),
        ({"awsCredentials": {"role_arn": "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/r"}}, "awsCredentials.role_arn"),
        ({"awsCredentials": {"role_arn": "arn:aws:iam::123456789012:role/ré"}}, "awsCredentials.role_arn"),
    ],
)
def test_non_ascii_or_trailing_newline_fails_the_pattern(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert caught.value.field == field


# --------------------------------------------------------------------------- credentials


TOKEN = "FQoGZXIvYXdzEXAMPLETOKENxyz0123456789"


@pytest.mark.parametrize("key", ["access_key", "secret_key", "session_token", "external_id", "profile_name"])
@pytest.mark.parametrize("bad", ["\n", " ", "\t", "\r\n", "\x00", "\u2028", "\u200b"])
def test_whitespace_or_control_character_in_a_credential_is_refused_without_echo(key: str, bad: str) -> None:
    # GIVEN a credential pasted with a stray character (a trailing newline, say)
    aws = {
        "access_key": "AKIAEXAMPLE0000",
        "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "session_token": TOKEN,
    }
    if key in ("external_id", "profile_name"):
        aws = {"role_arn": "arn:aws:iam::123456789012:role/r"} if key == "external_id" else {}
    value = f"{TOKEN}{bad}"
    aws[key] = value

    # WHEN input.json is parsed
    with pytest.raises(ConfigError) as caught:
        parse_config({"awsCredentials": aws})

    # THEN the error names the key and repeats nothing of the value
    assert caught.value.field == f"awsCredentials.{key}"
    assert TOKEN not in str(caught.value)


def test_non_ascii_session_token_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"awsCredentials": {"access_key": "AKIA0000", "secret_key": "s" * 40, "session_token": "tökenvalue"}}
        )
    assert caught.value.field == "awsCredentials.session_token"
    assert "tökenvalue" not in str(caught.value)


def test_role_arn_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"awsCredentials": {"role_arn": "arn:aws:iam::123456789012:role/r\n"}})
    assert caught.value.field == "awsCredentials.role_arn"


# --------------------------------------------------------------------------- input that escaped ConfigError


@pytest.mark.parametrize("key", ["poll_interval_seconds", "replacement_timeout_seconds", "max_failed_replacements"])
@pytest.mark.parametrize("value", [10**400, -(10**400), 10**5000], ids=["1e400", "-1e400", "1e5000"])
def test_huge_recycle_number_is_a_config_error(key: str, value: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"recycle": {key: value}})
    assert caught.value.field == f"recycle.{key}"
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_recycle_number_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"recycle": {"poll_interval_seconds": ' + text + "}}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == "recycle.poll_interval_seconds"


def test_deeply_nested_input_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"recycle": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        load_config(path)
    assert caught.value.field == str(path)


def test_a_number_too_long_for_python_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"recycle": {"poll_interval_seconds": 1' + "0" * 5000 + "}}")
    with pytest.raises(ConfigError, match="number is too long") as caught:
        load_config(path)
    assert caught.value.field == str(path)


def test_non_utf8_input_json_is_a_config_error_that_does_not_print_the_byte(tmp_path: Path) -> None:
    # GIVEN a file saved as Latin-1 ("é" is the single byte 0xe9)
    path = tmp_path / "input.json"
    path.write_bytes('{"smtpCredentials": {"password": "caf\u00e9-secret"}}'.encode("latin-1"))
    # WHEN it is loaded, THEN the error says where, never what
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load_config(path)
    assert caught.value.field == str(path)
    assert "0xe9" not in str(caught.value) and "\\xe9" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"recycle": {"poll_interval_seconds": 2}}).encode())
    assert load_config(path).recycle.poll_interval_seconds == 2.0


# --------------------------------------------------------------------------- long input in errors


MEGA = "a" * 10**6


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"cluster_name": "c", "service_name": "s", "dry_run": MEGA}, "dry_run"),
        ({"cluster_name": "c", "service_name": "s", "maintain_service_state": MEGA}, "maintain_service_state"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": 10**400}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", "wait_time": 10**5000}, "wait_time"),
        ({"cluster_name": "c", "service_name": "s", MEGA: 1}, MEGA),
    ],
    ids=["dry_run", "maintain_service_state", "wait_time-1e400", "wait_time-1e5000", "unknown-key"],
)
def test_event_errors_echo_at_most_80_characters(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_event(event)
    message = str(caught.value)
    assert len(message) < 400
    assert caught.value.field.startswith(field[:80])
    if len(field) > 80:
        assert caught.value.field == "a" * 80 + "… (1000000 characters)"


@pytest.mark.parametrize(
    ("document", "prefix"),
    [
        ({MEGA: {}}, ""),
        ({"awsCredentials": {MEGA: "x"}}, "awsCredentials."),
        ({"recycle": {MEGA: 1}}, "recycle."),
    ],
    ids=["section", "awsCredentials", "recycle"],
)
def test_unknown_keys_in_input_json_are_clipped(document: dict[str, Any], prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert caught.value.field == prefix + "a" * 80 + "… (1000000 characters)"
    assert len(str(caught.value)) < 400


# --------------------------------------------------------------------------- the environment


def test_the_environment_is_read_once_into_a_frozen_value() -> None:
    # GIVEN the variables the template sets WHEN they are read THEN each lands in its field, as given
    env = Environment.from_env(
        {
            "LOCK_TABLE_NAME": "locks",
            "DURABLE_FUNCTION_ALIAS_ARN": "arn:aws:lambda:us-east-1:123456789012:function:d:live",
            "RECYCLE_CONFIG": "/etc/recycle.json",
            "DURABLE_EXECUTION_TIMEOUT_SECONDS": "3600",
            "AWS_LAMBDA_FUNCTION_NAME": "ecs-task-recycle",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    assert (env.lock_table_name, env.config_path, env.execution_timeout_seconds) == (
        "locks",
        Path("/etc/recycle.json"),
        3600,
    )
    assert env.handoff_alias_arn and env.handoff_alias_arn.endswith(":live") and env.in_lambda
    # AWS_REGION wins over AWS_DEFAULT_REGION, and an error about it names it
    assert (env.aws.region, env.aws.region_variable) == ("eu-west-1", "AWS_REGION")
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.lock_table_name = "other"  # type: ignore[misc]
    # AND nothing set is nothing assumed: no table, the default input.json, a day's execution, not in Lambda
    empty = Environment.from_env({})
    assert (empty.lock_table_name, empty.config_path, empty.in_lambda) == (None, None, False)
    assert empty.execution_timeout_seconds == 86_400


def test_a_missing_required_variable_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        Environment.from_env({"LOCK_TABLE_NAME": ""}, required=("LOCK_TABLE_NAME",))
    assert caught.value.field == "LOCK_TABLE_NAME" and "not set" in caught.value.problem
