"""Bad events and bad input.json: a clear error naming the field, before any AWS call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SERVICE, Bed, load_event

import lambda_function
from config import RecycleRequest, load_config, parse_config, parse_event
from errors import ConfigError

# --------------------------------------------------------------------------- the event


def test_defaults_apply_to_a_minimal_event() -> None:
    request = parse_event({"cluster_name": "c", "service_name": "s"})
    assert request == RecycleRequest("c", "s", maintain_service_state=True, wait_time=30, dry_run=False)


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
    config = load_config()
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


def test_malformed_file_names_the_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"recycle": {"poll_interval_seconds": 5,}}')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1"):
        load_config(path)


def test_config_error_never_echoes_a_secret_value() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ConfigError) as caught:
        parse_config({"awsCredentials": {"secret_key": secret}})
    assert secret not in str(caught.value)
    from config import AwsCredentials

    assert secret not in repr(AwsCredentials(access_key="AKIA", secret_key=secret, session_token=secret))


def test_bad_input_json_fails_the_handler_before_any_aws_call(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed.add_service(tasks=2)
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"recycle": {"max_failed_replacements": "three"}}))
    monkeypatch.setenv("RECYCLE_CONFIG", str(path))
    monkeypatch.setattr(lambda_function, "_config", None)
    with pytest.raises(ConfigError, match=r"recycle\.max_failed_replacements"):
        lambda_function.lambda_handler(load_event("recycle.json"), None)
    assert bed.sim.calls == {}
    bed.assert_restored()
