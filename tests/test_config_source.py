"""The config from an SSM parameter (RECYCLE_CONFIG_PARAMETER, the template's ConfigParameterName), in moto.

input.json stays the packaged default; the parameter replaces it so recipients and SMTP settings change
without a rebuild. It is read once per process, validated by the same loader, and every error names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support import iam

from recycler.hosts import pipeline
from recycler.hosts.config import load_config_parameter
from recycler.hosts.environment import Environment
from recycler.model.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cloudformation.yaml"
NAME = "/ecs-task-recycle/config"
SOURCE = f"SSM parameter {NAME}"
CONFIG: dict[str, Any] = {
    "recycle": {"poll_interval_seconds": 5},
    "smtpCredentials": {
        "host": "smtp.example.com",
        "port": 587,
        "username": "user@example.com",
        "password": {"secrets_manager": "ecs-task-recycle/smtp", "key": "password"},
        "from_email": "ECS Recycle <noreply@example.com>",
    },
    "emailNotification": {"to": ["ops@example.com"], "cc": ["lead@example.com"]},
}


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ssm")
        pipeline._configs.clear()
        yield client
        pipeline._configs.clear()


def put(client: Any, value: Any, kind: str = "SecureString") -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    client.put_parameter(Name=NAME, Value=text, Type=kind, Overwrite=True)


def env_with(parameter: str | None = NAME, **more: str) -> Environment:
    variables = {"RECYCLE_CONFIG_PARAMETER": parameter} if parameter is not None else {}
    return Environment.from_env({**variables, **more})


def recorded_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every call the loader's SSM clients make, as (service, operation, params)."""
    from recycler.aws import parameters

    calls: list[tuple[str, str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.service_model.service_name, model.name, dict(params)))

    def recording_client(session: Any, service_name: str) -> Any:
        client = create_client(session, service_name)
        client.meta.events.register("before-parameter-build.*.*", record)
        return client

    create_client = parameters.create_client
    monkeypatch.setattr(parameters, "create_client", recording_client)
    return calls


# --------------------------------------------------------------------------- the source


def test_the_environment_names_the_parameter_and_empty_means_input_json() -> None:
    assert Environment.from_env({"RECYCLE_CONFIG_PARAMETER": NAME}).config_parameter_name == NAME
    # The template sets the variable to "" when ConfigParameterName is empty.
    assert Environment.from_env({"RECYCLE_CONFIG_PARAMETER": ""}).config_parameter_name is None
    assert Environment.from_env({}).config_parameter_name is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"RECYCLE_CONFIG_PARAMETER": NAME, "RECYCLE_CONFIG": "/tmp/input.json"}, "both set"),
        ({"RECYCLE_CONFIG_PARAMETER": "ecs-task-recycle/config"}, "starting with /"),
        ({"RECYCLE_CONFIG_PARAMETER": "/a b"}, "starting with /"),
    ],
    ids=["both", "relative", "space"],
)
def test_a_wrong_parameter_setting_is_refused_naming_the_variable(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        pipeline.get_config(Environment.from_env(variables))
    assert raised.value.field == "RECYCLE_CONFIG_PARAMETER"
    assert message in raised.value.problem


@pytest.mark.parametrize("kind", ["String", "SecureString"])
def test_the_parameter_replaces_input_json(ssm: Any, kind: str) -> None:
    # GIVEN the config in SSM, with recipients the packaged input.json does not have
    put(ssm, CONFIG, kind)
    # WHEN the hosts load their config
    config = pipeline.get_config(env_with())
    # THEN it is the parameter's, validated into the same AppConfig
    assert config.source == SOURCE
    assert config.notification is not None
    assert config.notification.to == ("ops@example.com",)
    assert config.notification.cc == ("lead@example.com",)
    assert config.recycle.poll_interval_seconds == 5
    # AND without the variable, the packaged input.json is still the default
    assert pipeline.get_config(env_with(None)).notification is None


def test_the_parameter_is_read_once_per_process(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(ssm, CONFIG)
    calls = recorded_calls(monkeypatch)
    first = pipeline.get_config(env_with())
    # GIVEN the recipients changed in SSM after the cold start
    put(ssm, {**CONFIG, "emailNotification": {"to": ["new@example.com"]}})
    # THEN this process keeps what it read (a new cold start reads the new value)
    assert pipeline.get_config(env_with()) is first
    assert [op for _, op, _ in calls] == ["GetParameter"]
    pipeline._configs.clear()
    assert pipeline.get_config(env_with()).notification.to == ("new@example.com",)  # type: ignore[union-attr]


def test_a_failed_read_is_not_kept(ssm: Any) -> None:
    with pytest.raises(ConfigError):
        pipeline.get_config(env_with())
    put(ssm, CONFIG)
    assert pipeline.get_config(env_with()).source == SOURCE


# --------------------------------------------------------------------------- errors name the parameter


@pytest.mark.parametrize(
    ("value", "kind", "field", "message"),
    [
        (None, "", SOURCE, "ParameterNotFound"),
        ('{"recycle": {},}', "String", SOURCE, "trailing comma"),
        ("[1]", "String", f"{SOURCE}: input.json", "must be a JSON object"),
        ('{"recyle": {}}', "String", f"{SOURCE}: recyle", "unknown section"),
        (
            {**CONFIG, "smtpCredentials": {**CONFIG["smtpCredentials"], "port": "smtp"}},
            "SecureString",
            f"{SOURCE}: smtpCredentials.port",
            "",
        ),
        ("a,b", "StringList", SOURCE, "String or SecureString"),
    ],
    ids=["missing", "trailing-comma", "not-object", "unknown-section", "bad-port", "string-list"],
)
def test_every_error_names_the_parameter(ssm: Any, value: Any, kind: str, field: str, message: str) -> None:
    if value is not None:
        put(ssm, value, kind)
    with pytest.raises(ConfigError) as raised:
        pipeline.get_config(env_with())
    assert raised.value.field == field
    assert message in raised.value.problem
    assert str(raised.value).startswith(SOURCE)


def test_a_password_in_clear_is_refused_and_never_repeated(ssm: Any) -> None:
    # GIVEN a config in SSM that carries the SMTP password itself
    put(ssm, {**CONFIG, "smtpCredentials": {**CONFIG["smtpCredentials"], "password": "hunter2-secret"}})
    # THEN it is refused: the password stays in Secrets Manager, referenced by name
    with pytest.raises(ConfigError) as raised:
        pipeline.get_config(env_with())
    assert raised.value.field == f"{SOURCE}: smtpCredentials.password"
    assert "secrets_manager" in raised.value.problem
    assert "hunter2" not in str(raised.value)


def test_access_keys_in_clear_are_refused(ssm: Any) -> None:
    put(ssm, {**CONFIG, "awsCredentials": {"access_key": "AKIAEXAMPLE", "secret_key": "s3cr3t-value"}})
    with pytest.raises(ConfigError) as raised:
        pipeline.get_config(env_with())
    assert raised.value.field == f"{SOURCE}: awsCredentials"
    assert "s3cr3t" not in str(raised.value)


def test_the_loader_takes_any_reader() -> None:
    from recycler.aws.parameters import ParameterText

    config = load_config_parameter(NAME, lambda name, _field: ParameterText(name, json.dumps(CONFIG), "String"))
    assert config.source == SOURCE


# --------------------------------------------------------------------------- IAM


def test_the_read_is_allowed_on_exactly_the_templates_parameter(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the calls the loader makes, recorded from botocore
    put(ssm, CONFIG)
    calls = recorded_calls(monkeypatch)
    pipeline.get_config(env_with())
    requests = [c for service, op, params in calls for c in iam.calls_from_api(service, op, params)]
    assert [r["action"] for r in requests] == ["ssm:GetParameter"]
    params = {
        "ArtifactBucket": "artifacts-123456789012",
        "ArtifactKey": "k.zip",
        "TargetClusterName": "prod",
        "TargetServiceNames": "web",
    }
    # THEN the role allows them with ConfigParameterName set to that parameter, and not otherwise
    assert iam.check_calls(TEMPLATE, requests, {**params, "ConfigParameterName": NAME}) == []
    assert iam.check_calls(TEMPLATE, requests, params) != []
    assert iam.check_calls(TEMPLATE, requests, {**params, "ConfigParameterName": f"{NAME}-other"}) != []


def test_the_template_gives_both_functions_the_parameter_name() -> None:
    template = iam.load_template(TEMPLATE)
    for function in ("Function", "DurableFunction"):
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["RECYCLE_CONFIG_PARAMETER"] == {"Ref": "ConfigParameterName"}
