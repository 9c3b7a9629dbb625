"""Input that must stay a ConfigError, and never show a secret."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from support.smtp import RunningServer, capture_json_logs

import Notification
from recycler.model.errors import ConfigError
from recycler.notification.render import render_message
from recycler.notification.settings import parse_notification_config

from .helpers import PASSWORD, QUIET_LOGGERS, REGION, config_for, email_section, make_report, parts, smtp_section


def test_given_an_unknown_key_in_the_password_reference_when_parsing_then_neither_key_nor_value_is_shown() -> None:
    # GIVEN the password typed where a reference key belongs
    reference = {"secrets_manager": "smtp/creds", PASSWORD: PASSWORD}
    # WHEN it is parsed
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587, password=reference), email_section())
    # THEN the error names the password key, and shows nothing of what was typed
    assert caught.value.field == "smtpCredentials.password"
    assert PASSWORD not in str(caught.value) and PASSWORD not in caught.value.field


def test_given_a_non_ascii_literal_password_when_parsing_then_it_is_refused_without_a_hint() -> None:
    password = "pass-wörd-1234"
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587, password=password), email_section())
    assert caught.value.field == "smtpCredentials.password"
    message = str(caught.value)
    assert "ö" not in message and "\\xf6" not in message and "position" not in message
    assert "ASCII" in message


def test_given_a_non_ascii_username_when_parsing_then_it_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587, username="jörg@example.com"), email_section())
    assert caught.value.field == "smtpCredentials.username"


@mock_aws
def test_given_a_referenced_non_ascii_password_when_notifying_then_the_failure_reveals_nothing(
    starttls_server: RunningServer,
) -> None:
    # GIVEN a referenced password that smtplib could never send
    password = "s3cr3t-pässword-never-log-me"
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name="smtp/intl", SecretString=password)
    config = config_for(
        smtp_section(starttls_server.port, security="starttls", password={"secrets_manager": "smtp/intl"})
    )
    # WHEN notifying
    with capture_json_logs(QUIET_LOGGERS) as logs:
        result = Notification.notify(make_report(), config, boto3.Session(region_name=REGION))
    # THEN the notification fails, naming the reference and nothing of the password
    assert result["status"] == "failed"
    assert result["detail"].startswith("password: Secrets Manager secret 'smtp/intl'")
    assert "ASCII" in result["detail"]
    for text in (result["detail"], logs.text()):
        assert "ä" not in text and "\\xe4" not in text and "position" not in text
        assert "s3cr3t" not in text
    assert starttls_server.handler.messages == []


def test_given_a_long_unknown_key_when_parsing_then_the_error_is_short() -> None:
    smtp = smtp_section(587)
    smtp["x" * 10**6] = 1
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp, email_section())
    assert caught.value.field == "smtpCredentials." + "x" * 80 + "… (1000000 characters)"
    assert len(str(caught.value)) < 400


def test_given_a_huge_reference_name_when_parsing_then_it_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587, password={"ssm_parameter": "/" + "p" * 10**6}), email_section())
    assert caught.value.field == "smtpCredentials.password.ssm_parameter"
    assert len(str(caught.value)) < 400


def test_given_a_region_with_a_unicode_digit_when_rendered_then_no_console_link_is_made() -> None:
    _, rich = parts(render_message(make_report(region="eu-west-١"), config_for(smtp_section(587))))
    assert "console.aws.amazon.com" not in rich
