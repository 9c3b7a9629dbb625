"""Password references resolved in moto: Secrets Manager and SSM SecureString, at send time."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from support.smtp import RunningServer, capture_json_logs

import Notification
from recycler.notification.secrets import resolve_password
from recycler.notification.settings import PasswordReference

from .helpers import PASSWORD, QUIET_LOGGERS, REGION, USERNAME, config_for, email_section, make_report, smtp_section


@mock_aws
def test_given_secrets_manager_reference_when_notifying_then_password_is_read_at_send_time(
    starttls_server: RunningServer,
) -> None:
    # GIVEN the password lives in a JSON secret, not in input.json
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="ecs-recycle/smtp", SecretString=json.dumps({"username": USERNAME, "password": PASSWORD})
    )
    reference = {"secrets_manager": "ecs-recycle/smtp", "key": "password"}
    config = config_for(smtp_section(starttls_server.port, security="starttls", password=reference))
    # WHEN notifying through a session
    with capture_json_logs(QUIET_LOGGERS) as logs:
        result = Notification.notify(make_report(), config, boto3.Session(region_name=REGION))
    # THEN the server accepted that password, and it appears nowhere else
    assert result["status"] == "sent", result
    assert starttls_server.handler.messages[0].authenticated_as == USERNAME
    assert PASSWORD not in json.dumps(result)
    assert PASSWORD not in logs.text()
    assert PASSWORD.encode() not in starttls_server.handler.messages[0].content


@mock_aws
def test_given_secrets_manager_arn_and_plain_string_when_notifying_then_whole_string_is_the_password(
    starttls_server: RunningServer,
) -> None:
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(Name="plain", SecretString=PASSWORD)["ARN"]
    config = config_for(smtp_section(starttls_server.port, security="starttls", password={"secrets_manager": arn}))
    result = Notification.notify(make_report(), config, boto3.Session(region_name=REGION))
    assert result["status"] == "sent", result


@mock_aws
def test_given_secret_in_another_region_when_resolving_then_the_arns_region_is_used() -> None:
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="far", SecretString=PASSWORD)[
        "ARN"
    ]
    config = config_for(smtp_section(587, password={"secrets_manager": arn}))
    assert resolve_password(config, boto3.Session(region_name=REGION)) == PASSWORD


@mock_aws
def test_given_ssm_securestring_reference_when_notifying_then_password_is_decrypted_and_used(
    starttls_server: RunningServer,
) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/ecs-recycle/smtp-password", Value=PASSWORD, Type="SecureString"
    )
    config = config_for(
        smtp_section(
            starttls_server.port, security="starttls", password={"ssm_parameter": "/ecs-recycle/smtp-password"}
        )
    )
    with capture_json_logs(QUIET_LOGGERS) as logs:
        result = Notification.notify(make_report(), config, boto3.Session(region_name=REGION))
    assert result["status"] == "sent", result
    assert starttls_server.handler.messages[0].authenticated_as == USERNAME
    assert PASSWORD not in logs.text()


@mock_aws
@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"secrets_manager": "missing"}, "password: could not read Secrets Manager secret 'missing'"),
        ({"secrets_manager": "plain", "key": "password"}, "is not a JSON object, so it has no key 'password'"),
        ({"secrets_manager": "json", "key": "pass"}, "has no key 'pass'"),
        ({"ssm_parameter": "/missing"}, "password: could not read SSM parameter '/missing': ParameterNotFound"),
    ],
)
def test_given_unresolvable_reference_when_notifying_then_failure_is_reported_and_nothing_sent(
    local_relay: RunningServer, reference: dict[str, str], expected: str
) -> None:
    # GIVEN a reference that cannot be turned into a password
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="plain", SecretString=PASSWORD)
    sm.create_secret(Name="json", SecretString=json.dumps({"password": PASSWORD}))
    config = config_for(
        smtp_section(local_relay.port, security="none", password=reference), email_section(cc=None, bcc=None)
    )
    # WHEN notifying
    with capture_json_logs(QUIET_LOGGERS) as logs:
        result = Notification.notify(make_report(), config, boto3.Session(region_name=REGION))
    # THEN the failure is a report entry naming the reference, never the secret
    assert result["status"] == "failed"
    assert expected in result["detail"]
    assert local_relay.handler.messages == []
    assert PASSWORD not in result["detail"] and PASSWORD not in logs.text()


@mock_aws
def test_given_a_cache_when_resolving_twice_then_aws_is_read_once_per_invocation() -> None:
    # GIVEN a secret resolved once into this invocation's cache
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="rotating", SecretString=PASSWORD)
    config = config_for(smtp_section(587, password={"secrets_manager": "rotating"}))
    session = boto3.Session(region_name=REGION)
    cache: dict[PasswordReference, str] = {}
    assert resolve_password(config, session, cache) == PASSWORD
    # WHEN the secret changes during the invocation
    sm.put_secret_value(SecretId="rotating", SecretString="rotated-value")
    # THEN the same invocation keeps its value, and a new invocation reads afresh
    assert resolve_password(config, session, cache) == PASSWORD
    assert resolve_password(config, session, {}) == "rotated-value"
