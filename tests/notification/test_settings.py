"""The notification settings: parsed, normalised, refused naming the key, the password never shown."""

from __future__ import annotations

from typing import Any

import pytest

import Notification
from recycler.model.errors import ConfigError
from recycler.notification.settings import DEFAULT_TIMEOUT_SECONDS, PasswordReference, parse_notification_config

from .helpers import PASSWORD, config_for, email_section, make_report, smtp_section


def test_given_no_smtp_section_when_parsing_then_notifications_are_not_configured() -> None:
    # GIVEN input.json without smtpCredentials (emailNotification alone is ignored)
    # WHEN it is parsed
    config = parse_notification_config(None, email_section())
    # THEN there is nothing to configure, and notify reports exactly that
    assert config is None
    result = Notification.notify(make_report(), None, None)
    assert result["status"] == "not_configured"
    assert result["recipients"] == 0


def test_given_smtp_without_email_section_when_parsing_then_error_names_email_to() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587), None)
    assert caught.value.field == "emailNotification.to"


@pytest.mark.parametrize(
    ("port", "security", "expected"),
    [
        ("587", None, (587, "starttls")),
        (587, None, (587, "starttls")),
        ("465", None, (465, "ssl")),
        (2525, "starttls", (2525, "starttls")),
        (2525, None, (2525, "starttls")),
        ("25", None, (25, "starttls")),
        (465, "starttls", (465, "starttls")),
        (None, "ssl", (465, "ssl")),
        (None, None, (587, "starttls")),
        (" 25 ", "NONE", (25, "none")),
    ],
)
def test_given_port_as_string_or_number_when_parsing_then_transport_follows_port_or_security(
    port: int | str | None, security: str | None, expected: tuple[int, str]
) -> None:
    # GIVEN the seed's string port, a number, or an explicit security
    config = config_for(smtp_section(port, security=security, host="localhost"))
    # THEN the port and transport are resolved as documented
    assert (config.port, config.security) == expected


def test_given_seed_style_config_when_parsing_then_addresses_and_defaults_are_normalised() -> None:
    config = config_for(
        smtp_section("587"),
        email_section(to=["admin@example.com", "Doe, John <john@example.com>"], notify_on=None),
    )
    assert config.to == ("admin@example.com", '"Doe, John" <john@example.com>')
    assert config.notify_on == ("success", "failure")
    assert config.timeout_seconds == DEFAULT_TIMEOUT_SECONDS
    assert config.envelope_recipients == [
        "admin@example.com",
        "john@example.com",
        "lead@example.com",
        "audit@example.com",
    ]


@pytest.mark.parametrize(
    ("smtp_overrides", "email_overrides", "field"),
    [
        ({"port": "abc"}, {}, "smtpCredentials.port"),
        ({"port": 0}, {}, "smtpCredentials.port"),
        ({"port": 70000}, {}, "smtpCredentials.port"),
        ({"port": True}, {}, "smtpCredentials.port"),
        ({"port": "²"}, {}, "smtpCredentials.port"),
        ({"port": "٥٨٧"}, {}, "smtpCredentials.port"),
        ({"port": "12345678901"}, {}, "smtpCredentials.port"),
        ({"port": 10**400}, {}, "smtpCredentials.port"),
        ({"security": "tls"}, {}, "smtpCredentials.security"),
        ({"host": "smtp.example.com", "port": 25, "security": "none"}, {}, "smtpCredentials.security"),
        ({"host": "smtp example com"}, {}, "smtpCredentials.host"),
        ({"host": None}, {}, "smtpCredentials.host"),
        ({"from_email": None}, {}, "smtpCredentials.from_email"),
        ({"from_email": "not-an-address"}, {}, "smtpCredentials.from_email"),
        ({"password": None}, {}, "smtpCredentials.password"),
        ({"username": None}, {}, "smtpCredentials.username"),
        ({"password": {"secrets_manager": "a", "ssm_parameter": "/b"}}, {}, "smtpCredentials.password"),
        ({"password": {"ssm_parameter": "/b", "key": "k"}}, {}, "smtpCredentials.password.key"),
        ({"password": {"vault": "x"}}, {}, "smtpCredentials.password"),
        ({"timeout_seconds": 0}, {}, "smtpCredentials.timeout_seconds"),
        ({"timeout_seconds": "15"}, {}, "smtpCredentials.timeout_seconds"),
        ({"pasword": "typo"}, {}, "smtpCredentials.pasword"),
        ({}, {"to": []}, "emailNotification.to"),
        ({}, {"to": None}, "emailNotification.to"),
        ({}, {"to": ["admin@example.com", "admin@"]}, "emailNotification.to[1]"),
        ({}, {"to": ["admin@example.com", "a@b.com\r\nBcc: evil@example.net"]}, "emailNotification.to[1]"),
        ({}, {"cc": ["ok@example.com", "no-domain@localdomain"]}, "emailNotification.cc[1]"),
        ({}, {"bcc": "two@example.com three@example.com"}, "emailNotification.bcc"),
        ({}, {"notify_on": []}, "emailNotification.notify_on"),
        ({}, {"notify_on": ["success", "always"]}, "emailNotification.notify_on[1]"),
        ({}, {"email_subject": "Done\r\nBcc: evil@example.net"}, "emailNotification.email_subject"),
        ({}, {"subject_prefix": "AWS\nECS"}, "emailNotification.subject_prefix"),
        ({}, {"reply_to": "x@example.com"}, "emailNotification.reply_to"),
    ],
)
def test_given_invalid_config_when_parsing_then_error_names_the_key_and_never_the_password(
    smtp_overrides: dict[str, Any], email_overrides: dict[str, Any], field: str
) -> None:
    # GIVEN one bad key in an otherwise valid configuration
    smtp = smtp_section(587)
    smtp.update(smtp_overrides)
    smtp = {k: v for k, v in smtp.items() if v is not None}
    email = email_section()
    email.update(email_overrides)
    email = {k: v for k, v in email.items() if v is not None}
    # WHEN it is parsed
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp, email)
    # THEN the error names that key, and holds no secret
    assert caught.value.field == field
    assert PASSWORD not in str(caught.value)


def test_given_password_of_wrong_type_when_parsing_then_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587, password=918273645), email_section())
    assert caught.value.field == "smtpCredentials.password"
    assert "918273645" not in str(caught.value)


def test_given_a_config_when_printed_then_the_password_is_hidden() -> None:
    config = config_for(smtp_section(587))
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)


def test_given_password_references_when_parsing_then_they_are_kept_as_references() -> None:
    sm = config_for(smtp_section(587, password={"secrets_manager": "smtp/creds", "key": "password"}))
    ssm = config_for(smtp_section(587, password={"ssm_parameter": "/smtp/password"}))
    assert sm.password == PasswordReference("secrets_manager", "smtp/creds", "password")
    assert ssm.password == PasswordReference("ssm_parameter", "/smtp/password")
