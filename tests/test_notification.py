"""Notification.py against real SMTP servers (aiosmtpd on 127.0.0.1, trustme CA).

GIVEN / WHEN / THEN: each test builds its world, calls the public API once, and
checks what the server received, what notify() returned and what was logged.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from support.smtp import (
    HOST,
    PasswordAuthenticator,
    RunningServer,
    TLSMaterial,
    capture_json_logs,
    free_port,
    make_tls_material,
    silent_server,
    smtp_server,
)

import Notification
from recycler.model.errors import ConfigError
from recycler.notification.addresses import MAX_ADDRESS_CHARS
from recycler.notification.errors import UnsafeHeaderError
from recycler.notification.render import render_message
from recycler.notification.secrets import resolve_password
from recycler.notification.settings import (
    DEFAULT_TIMEOUT_SECONDS,
    NotificationConfig,
    PasswordReference,
    parse_notification_config,
)

USERNAME = "mailer@example.com"
PASSWORD = "s3cr3t-Pa55w0rd-never-log-me"
REGION = "eu-west-1"
# Loggers the Lambda handler holds at WARNING (botocore logs response bodies at
# DEBUG), plus the test-only SMTP server and moto.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "mail.log", "moto")


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials, no real endpoints, and no inherited CA bundle."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return make_tls_material(tmp_path_factory.mktemp("trusted-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return make_tls_material(tmp_path_factory.mktemp("other-ca"), name="other")


@pytest.fixture
def trust_ca(tls: TLSMaterial, monkeypatch: pytest.MonkeyPatch) -> None:
    # ssl.create_default_context() reads SSL_CERT_FILE when the context is made.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_pem))


@pytest.fixture
def starttls_server(tls: TLSMaterial, trust_ca: None) -> Iterator[RunningServer]:
    with smtp_server("starttls", tls, PasswordAuthenticator(USERNAME, PASSWORD)) as server:
        yield server


@pytest.fixture
def implicit_tls_server(tls: TLSMaterial, trust_ca: None) -> Iterator[RunningServer]:
    with smtp_server("implicit_tls", tls, PasswordAuthenticator(USERNAME, PASSWORD)) as server:
        yield server


@pytest.fixture
def local_relay() -> Iterator[RunningServer]:
    with smtp_server("plain") as server:
        yield server


def smtp_section(port: int | str | None, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "username": USERNAME,
        "password": PASSWORD,
        "from_email": "ECS Recycle <noreply@example.com>",
    }
    section.update(overrides)
    return {k: v for k, v in section.items() if v is not None}


def email_section(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "email_subject": "ECS Service Task Recycle Completed",
        "subject_prefix": "AWS ECS",
        "to": ["admin@example.com"],
        "cc": ["Team Lead <lead@example.com>"],
        "bcc": ["audit@example.com"],
    }
    section.update(overrides)
    return {k: v for k, v in section.items() if v is not None}


def config_for(smtp: dict[str, Any], email: dict[str, Any] | None = None) -> NotificationConfig:
    config = parse_notification_config(smtp, email if email is not None else email_section())
    assert config is not None
    return config


def relay_config(port: int, **email_overrides: Any) -> NotificationConfig:
    """A localhost relay without TLS or AUTH: the cheapest real server."""
    return config_for(
        smtp_section(port, security="none", username=None, password=None), email_section(**email_overrides)
    )


ARN = "arn:aws:ecs:eu-west-1:123456789012:task/prod-cluster/"


def make_report(status: str = "succeeded", **overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "status": status,
        "cluster": "prod-cluster",
        "service": "web-api",
        "region": REGION,
        "account": "123456789012",
        "original_desired_count": 3,
        "task_total": 3,
        "tasks_recycled": [
            {"index": 1, "old_task_arn": ARN + "aaa111", "new_task_arn": ARN + "bbb222", "seconds": 42.5},
            {"index": 2, "old_task_arn": ARN + "ccc333", "new_task_arn": ARN + "ddd444", "seconds": 61.0},
        ],
        "tasks_remaining": [ARN + "eee555"],
        "restored": True,
        "restore_actions": ["desiredCount 4 -> 3"],
        "external_changes": [],
        "duration_seconds": 130.25,
        "error": None,
        "request_id": "c0ffee00-1234-5678-9abc-def012345678",
        "log_group": "/aws/lambda/ecs-task-recycle",
        "log_stream": "2026/11/28/[$LATEST]0123456789abcdef",
        "started_at": "2026-11-28T21:04:05+00:00",
    }
    if status == "succeeded":
        report["tasks_recycled"].append(
            {"index": 3, "old_task_arn": ARN + "eee555", "new_task_arn": ARN + "fff666", "seconds": 40.0}
        )
        report["tasks_remaining"] = []
    if status == "failed":
        report["error"] = "ReplacementFailed: new task stopped (TaskFailedToStart: CannotPullContainerError)"
    report.update(overrides)
    return report


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    return plain.get_content(), rich.get_content()


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# The message
# --------------------------------------------------------------------------- #

# When the tests' messages are "sent": the subject's date comes from this clock, like the Date header.
SENT = datetime(2026, 11, 28, 21, 10, 30, tzinfo=UTC)
SUBJECTS = {
    "succeeded": "AWS ECS | SUCCEEDED | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "dry_run": "AWS ECS | DRY RUN | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "failed": "AWS ECS | FAILED | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "incomplete": "AWS ECS | INCOMPLETE | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "cancelled": "AWS ECS | CANCELLED | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "handed_off": "AWS ECS | HANDED OFF | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "refused": "AWS ECS | REFUSED | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28",
    "something-new": (
        "AWS ECS | UNKNOWN OUTCOME | ECS Service Task Recycle Completed | prod-cluster/web-api | 2026-11-28"
    ),
}


@pytest.mark.parametrize("status", sorted(SUBJECTS))
def test_given_each_outcome_when_rendered_then_subject_says_so_plainly(status: str) -> None:
    message = render_message(make_report(status), config_for(smtp_section(587)), now=SENT)
    assert message["Subject"] == SUBJECTS[status]
    assert message["X-ECS-Recycle-Status"] == status


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("succeeded", "success"), ("cancelled", "success"), ("handed_off", "success"), ("failed", "failure")],
)
def test_given_a_cancel_or_hand_off_when_filtered_then_it_counts_as_what_was_asked_for(
    status: str, outcome: str
) -> None:
    from recycler.notification.content import outcome_of

    # An operator's cancel, or a hand-off to the durable function, is not something that went wrong.
    assert outcome_of(make_report(status)) == outcome
    text, _ = parts(render_message(make_report(status), config_for(smtp_section(587)), now=SENT))
    assert "which this version does not know" not in text


def test_given_a_success_when_sent_then_both_parts_carry_the_whole_report(
    local_relay: RunningServer,
) -> None:
    # GIVEN a successful run and a local relay
    config = relay_config(local_relay.port)
    # WHEN the report is mailed
    result = Notification.notify(make_report("succeeded"), config, None)
    # THEN it arrives as multipart/alternative with a plain and an HTML part
    assert result["status"] == "sent", result
    [received] = local_relay.handler.messages
    message = received.parsed()
    assert message.get_content_type() == "multipart/alternative"
    sent_on = parsedate_to_datetime(message["Date"]).astimezone(UTC).date().isoformat()
    subject = f"AWS ECS | SUCCEEDED | ECS Service Task Recycle Completed | prod-cluster/web-api | {sent_on}"
    assert message["Subject"] == subject
    assert message["From"] == "ECS Recycle <noreply@example.com>"
    assert message["To"] == "admin@example.com"
    assert message["Cc"] == "Team Lead <lead@example.com>"
    assert message["Message-ID"] == result["message_id"]
    text, rich = parts(message)
    for body in (text, rich):
        for expected in ("prod-cluster", "web-api", REGION, "123456789012", "3 of 3", "succeeded"):
            assert expected in body
        assert "aaa111" in body and "bbb222" in body and "42.5 s" in body
        assert "130.2 s" in body
        assert "c0ffee00-1234-5678-9abc-def012345678" in body
        assert "/aws/lambda/ecs-task-recycle" in body
        assert ARN not in body, "task ids are shown short, not as full ARNs"
    assert "1. aaa111 -> bbb222 (42.5 s)" in text
    assert "Original desired count: 3" in text
    assert "Service restored:       yes" in text
    assert "Error" not in text
    assert "console.aws.amazon.com/cloudwatch" in rich


def test_given_a_failure_when_rendered_then_error_and_restore_are_shown() -> None:
    report = make_report("failed", restored=True, restore_actions=["desiredCount 4 -> 3", "scale-in resumed"])
    message = render_message(report, config_for(smtp_section(587)))
    text, rich = parts(message)
    assert message["Subject"].startswith("AWS ECS | FAILED |")
    for body in (text, rich):
        assert "FAILED" in body
        assert "2 of 3" in body
        assert "CannotPullContainerError" in body
        assert "scale-in resumed" in body
        assert "eee555" in body  # the task that was not recycled
    assert "desiredCount 4 -> 3" in text
    assert "desiredCount 4 -&gt; 3" in rich


def test_given_an_incomplete_run_when_rendered_then_remaining_tasks_and_restore_state_are_shown() -> None:
    report = make_report("incomplete", restored=False, restore_actions=[])
    message = render_message(report, config_for(smtp_section(587)))
    text, rich = parts(message)
    assert message["Subject"].startswith("AWS ECS | INCOMPLETE |")
    assert text.startswith("ECS service task recycle INCOMPLETE: prod-cluster/web-api\n")
    assert "Outcome:                the time budget ran out with 1 task(s) remaining" in text
    assert "Tasks not recycled:\n  - eee555" in text
    assert "Service restored:       NO" in text
    assert "<code>eee555</code>" in rich


def test_given_a_report_with_missing_keys_when_rendered_then_it_still_renders() -> None:
    message = render_message({"status": "failed"}, config_for(smtp_section(587)))
    text, _ = parts(message)
    assert "Cluster:" in text and "unknown" in text
    assert "0 of unknown" in text


def test_given_bcc_recipients_when_sent_then_they_get_the_mail_but_no_header_names_them(
    local_relay: RunningServer,
) -> None:
    config = relay_config(local_relay.port)
    Notification.notify(make_report(), config, None)
    [received] = local_relay.handler.messages
    assert received.rcpt_tos == ["admin@example.com", "lead@example.com", "audit@example.com"]
    assert received.mail_from == "noreply@example.com"
    message = received.parsed()
    assert message["Bcc"] is None
    assert b"audit@example.com" not in received.content


def test_given_service_name_with_markup_when_rendered_then_html_is_escaped() -> None:
    # GIVEN a service name that is also HTML
    report = make_report(service="<script>alert('x')</script>", cluster="a&b")
    # WHEN the message is rendered
    _, rich = parts(render_message(report, config_for(smtp_section(587))))
    # THEN the HTML part shows it as text, never as markup
    assert "<script>" not in rich
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in rich
    assert "a&amp;b" in rich


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(service=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1))
def test_given_any_printable_service_name_when_rendered_then_html_holds_it_escaped(service: str) -> None:
    report = make_report(service=service)
    message = render_message(report, config_for(smtp_section(587)))
    text, rich = parts(message)
    assert html.escape(service, quote=True) in rich
    assert service in text


@pytest.mark.parametrize("field", ["service", "cluster", "status"])
def test_given_crlf_in_a_report_value_bound_for_a_header_when_notifying_then_nothing_is_sent(
    local_relay: RunningServer, field: str
) -> None:
    # GIVEN a report value that would inject a header if passed through
    report = make_report(**{field: "web\r\nBcc: attacker@example.net"})
    config = relay_config(local_relay.port)
    # WHEN rendering it directly, THEN it is refused
    with pytest.raises(UnsafeHeaderError):
        render_message(report, config)
    # WHEN notifying, THEN the notifier reports a failure instead of raising, and sends nothing
    result = Notification.notify(report, config, None)
    assert result["status"] == "failed"
    assert "header" in result["detail"]
    assert local_relay.handler.messages == []


def test_given_crlf_in_a_config_subject_built_in_code_when_rendering_then_it_is_refused() -> None:
    # GIVEN a config that bypassed validation (built in code)
    config = dataclasses.replace(config_for(smtp_section(587)), email_subject="Hi\r\nBcc: x@example.net")
    with pytest.raises(UnsafeHeaderError):
        render_message(make_report(), config)


# --------------------------------------------------------------------------- #
# Transport, against real servers
# --------------------------------------------------------------------------- #


def test_given_starttls_listener_with_auth_when_notifying_then_mail_is_sent_over_tls_and_authenticated(
    starttls_server: RunningServer,
) -> None:
    # GIVEN a 587-style server that requires STARTTLS and AUTH, with a trusted certificate
    config = config_for(smtp_section(starttls_server.port, security="starttls"))
    # WHEN the report is mailed
    result = Notification.notify(make_report("failed"), config, None)
    # THEN it was accepted for all three recipients, over TLS, as our user
    assert result["status"] == "sent", result
    assert result["recipients"] == 3
    [received] = starttls_server.handler.messages
    assert received.over_tls
    assert received.authenticated_as == USERNAME
    assert received.parsed()["Subject"].startswith("AWS ECS | FAILED |")
    assert PASSWORD.encode() not in received.content


def test_given_implicit_tls_listener_when_notifying_then_mail_is_sent(implicit_tls_server: RunningServer) -> None:
    config = config_for(smtp_section(str(implicit_tls_server.port), security="ssl"))
    result = Notification.notify(make_report(), config, None)
    assert result["status"] == "sent", result
    [received] = implicit_tls_server.handler.messages
    assert received.authenticated_as == USERNAME
    assert received.over_tls


def test_given_wrong_password_when_notifying_then_failure_is_reported_not_raised(
    starttls_server: RunningServer,
) -> None:
    wrong = "wrong-" + PASSWORD
    config = config_for(smtp_section(starttls_server.port, security="starttls", password=wrong))
    with capture_json_logs(QUIET_LOGGERS) as logs:
        result = Notification.notify(make_report(), config, None)
    assert result["status"] == "failed"
    assert result["detail"].startswith("AUTH: authentication failed (535")
    assert starttls_server.handler.messages == []
    # smtplib tries each offered mechanism (PLAIN, then LOGIN) before giving up.
    assert starttls_server.authenticator is not None
    assert set(starttls_server.authenticator.attempts) == {USERNAME}
    assert wrong not in json.dumps(result) and wrong not in logs.text()


def test_given_server_is_down_when_notifying_then_failure_is_reported(trust_ca: None) -> None:
    config = config_for(smtp_section(free_port(), security="starttls"))
    result = Notification.notify(make_report(), config, None)
    assert result["status"] == "failed"
    assert result["detail"].startswith("connect:")
    assert "refused the connection" in result["detail"]


def test_given_server_that_never_answers_when_notifying_then_it_times_out(trust_ca: None) -> None:
    # GIVEN a listener that accepts the connection and never sends a greeting
    with silent_server() as port:
        config = config_for(smtp_section(port, security="starttls", timeout_seconds=1))
        # WHEN notifying
        started = time.monotonic()
        result = Notification.notify(make_report(), config, None)
        elapsed = time.monotonic() - started
    # THEN the notifier gives up after its timeout and says so
    assert result["status"] == "failed"
    assert "no answer from" in result["detail"] and "within 1 s" in result["detail"]
    assert 0.9 <= elapsed < 3


def test_given_certificate_from_an_untrusted_ca_when_notifying_then_connection_is_refused(
    tls: TLSMaterial, other_ca: TLSMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the client trusts a different CA from the one that signed the server's certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca.ca_pem))
    authenticator = PasswordAuthenticator(USERNAME, PASSWORD)
    with smtp_server("starttls", tls, authenticator) as server:
        config = config_for(smtp_section(server.port, security="starttls"))
        # WHEN notifying
        result = Notification.notify(make_report(), config, None)
    # THEN TLS fails, no credentials are offered and nothing is delivered
    assert result["status"] == "failed"
    assert result["detail"].startswith("STARTTLS:")
    assert "not trusted" in result["detail"]
    assert authenticator.attempts == []
    assert server.handler.messages == []


def test_given_untrusted_certificate_on_implicit_tls_when_notifying_then_connection_is_refused(
    tls: TLSMaterial, other_ca: TLSMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca.ca_pem))
    with smtp_server("implicit_tls", tls, PasswordAuthenticator(USERNAME, PASSWORD)) as server:
        result = Notification.notify(make_report(), config_for(smtp_section(server.port, security="ssl")), None)
    assert result["status"] == "failed"
    assert "not trusted" in result["detail"]
    assert server.handler.messages == []


def test_given_server_without_starttls_when_security_is_starttls_then_nothing_is_sent_in_clear(
    trust_ca: None,
) -> None:
    # GIVEN a server that offers AUTH but no STARTTLS
    authenticator = PasswordAuthenticator(USERNAME, PASSWORD)
    with smtp_server("plain", authenticator=authenticator) as server:
        config = config_for(smtp_section(server.port, security="starttls"))
        result = Notification.notify(make_report(), config, None)
    # THEN the notifier refuses to downgrade: no password, no message
    assert result["status"] == "failed"
    assert result["detail"].startswith("STARTTLS: the server does not offer STARTTLS")
    assert authenticator.attempts == []
    assert server.handler.messages == []


def test_given_server_refusing_one_recipient_when_notifying_then_sent_to_the_rest_and_refusal_reported() -> None:
    with smtp_server("plain", refuse=frozenset({"lead@example.com"})) as server:
        result = Notification.notify(make_report("failed"), relay_config(server.port), None)
    assert result["status"] == "sent"
    assert result["recipients"] == 2
    assert "sent to 2 of 3" in result["detail"] and "refused: lead@example.com" in result["detail"]
    [received] = server.handler.messages
    assert received.rcpt_tos == ["admin@example.com", "audit@example.com"]


def test_given_server_refusing_every_recipient_when_notifying_then_failure_is_reported() -> None:
    with smtp_server("plain", refuse=frozenset({"admin@example.com"})) as server:
        config = relay_config(server.port, cc=None, bcc=None)
        result = Notification.notify(make_report("failed"), config, None)
    assert result["status"] == "failed"
    assert result["detail"] == "send: every recipient was refused (admin@example.com)"
    assert server.handler.messages == []


def test_given_notify_on_failure_only_when_run_succeeds_then_mail_is_skipped(local_relay: RunningServer) -> None:
    config = relay_config(local_relay.port, notify_on=["failure"])
    assert Notification.notify(make_report("succeeded"), config, None)["status"] == "skipped"
    assert Notification.notify(make_report("dry_run"), config, None)["status"] == "skipped"
    assert local_relay.handler.messages == []
    # ... and a failed or partial run is still mailed
    assert Notification.notify(make_report("failed"), config, None)["status"] == "sent"
    assert Notification.notify(make_report("incomplete"), config, None)["status"] == "sent"
    assert len(local_relay.handler.messages) == 2


def test_given_a_broken_config_object_when_notifying_then_notify_still_does_not_raise() -> None:
    result = Notification.notify(make_report(), "not a config", None)  # type: ignore[arg-type]
    assert result["status"] == "failed"
    assert result["detail"].startswith("unexpected error:")


# --------------------------------------------------------------------------- #
# Password references, in moto
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Logs
# --------------------------------------------------------------------------- #


def test_given_any_notification_when_it_finishes_then_one_structured_line_is_logged_without_secrets(
    starttls_server: RunningServer,
) -> None:
    config = config_for(smtp_section(starttls_server.port, security="starttls"))
    with capture_json_logs(QUIET_LOGGERS) as logs:
        result = Notification.notify(make_report("failed"), config, None)
    assert result["status"] == "sent"
    ours = [line for line in logs.lines() if line["logger"] == "Notification"]
    assert len(ours) == 1
    [line] = ours
    assert line["notification_status"] == "sent"
    assert line["cluster"] == "prod-cluster" and line["service"] == "web-api"
    assert line["recycle_status"] == "failed"
    assert line["smtp_host"] == HOST and line["smtp_security"] == "starttls"
    assert line["recipients"] == 3
    assert PASSWORD not in logs.text()


def test_given_eml_export_when_saved_then_it_parses_back(tmp_path: Path) -> None:
    # The demo saves the rendered message beside the report.
    message = render_message(make_report(), config_for(smtp_section(587)), now=SENT)
    path = tmp_path / "report.eml"
    path.write_bytes(message.as_bytes())
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == SUBJECTS["succeeded"]
    assert PASSWORD not in path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- #
# Input that must stay a ConfigError, and never show a secret
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Address parsing runs in linear time
# --------------------------------------------------------------------------- #

PATHOLOGICAL = {
    "spaces": " " * 30_000,
    "spaces-then-x": " " * 30_000 + "x",
    "name-without-bracket": "a" * 30_000,
    "name-then-spaces": "a" + " " * 30_000 + "b",
    "spaces-before-bracket": "a" + " " * 30_000 + "<",
    "spaces-before-address": "a" + " " * 30_000 + "<x",
    "tabs-inside": "a" + "\t" * 30_000 + "b",
    "open-brackets": "<" * 30_000,
    "quote-then-spaces": '"' + " " * 30_000,
    "quoted-then-spaces": '"a"' + " " * 30_000 + "x",
    "long-local-part": "a" * 30_000 + "@example.com",
    "long-domain": "a@" + "a" * 30_000,
    "dotted-domain": "a@" + "a." * 15_000,
    "just-under-the-limit": " " * (MAX_ADDRESS_CHARS - 1) + "x",
    "quoted-under-the-limit": '"a"' + " " * (MAX_ADDRESS_CHARS - 10) + "x",
}


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
@pytest.mark.parametrize("value", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_given_a_pathological_address_when_parsing_then_it_is_refused_quickly(field: str, value: str) -> None:
    # GIVEN a value built to make a backtracking pattern work hard
    email = email_section(**{field: [value]})
    # WHEN it is parsed
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587), email)
    elapsed = time.perf_counter() - started
    # THEN it is refused, naming the entry, in well under half a second
    assert caught.value.field == f"emailNotification.{field}[0]"
    assert elapsed < 0.5, f"{elapsed:.2f} s"


def test_given_too_many_recipients_when_parsing_then_the_list_is_refused_before_each_is_parsed() -> None:
    email = email_section(to=[" " * 400] * 100_000)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587), email)
    assert caught.value.field == "emailNotification.to"
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('"Doe, John"   <john@example.com>', '"Doe, John" <john@example.com>'),
        ("Team Lead<lead@example.com>", "Team Lead <lead@example.com>"),
        ("  Team   Lead   <lead@example.com>  ", "Team   Lead <lead@example.com>"),
        ("<bare@example.com>", "bare@example.com"),
    ],
)
def test_given_name_addr_forms_when_parsing_then_they_still_parse(entry: str, expected: str) -> None:
    assert config_for(smtp_section(587), email_section(to=[entry])).to == (expected,)


# --------------------------------------------------------------------------- #
# Security defaults to STARTTLS on any port but 465
# --------------------------------------------------------------------------- #


def test_given_a_seed_style_config_on_another_port_when_notifying_then_starttls_is_used(
    starttls_server: RunningServer,
) -> None:
    # GIVEN a config with a string port that is neither 587 nor 465, and no security key
    config = config_for(smtp_section(str(starttls_server.port)))
    assert config.security == "starttls"
    # WHEN notifying
    result = Notification.notify(make_report(), config, None)
    # THEN it was sent over STARTTLS, authenticated
    assert result["status"] == "sent", result
    [received] = starttls_server.handler.messages
    assert received.over_tls and received.authenticated_as == USERNAME


def test_given_default_security_and_a_server_without_starttls_when_notifying_then_it_fails_closed(
    trust_ca: None,
) -> None:
    # GIVEN a server on a non-standard port that offers AUTH but no STARTTLS, and no security key
    authenticator = PasswordAuthenticator(USERNAME, PASSWORD)
    with smtp_server("plain", authenticator=authenticator) as server:
        config = config_for(smtp_section(server.port))
        result = Notification.notify(make_report(), config, None)
    # THEN nothing went out in clear: no password, no message
    assert result["status"] == "failed"
    assert result["detail"].startswith("STARTTLS: the server does not offer STARTTLS")
    assert authenticator.attempts == []
    assert server.handler.messages == []


# --------------------------------------------------------------------------- #
# Rendering: one clock, distinct heading and outcome, readable restore
# --------------------------------------------------------------------------- #


def test_given_a_run_that_started_the_day_before_when_sent_then_subject_and_date_header_agree(
    local_relay: RunningServer,
) -> None:
    # GIVEN a run that started long before it is mailed (a day earlier)
    report = make_report(started_at="2001-02-03T23:59:00+00:00")
    # WHEN it is sent
    result = Notification.notify(report, relay_config(local_relay.port), None)
    assert result["status"] == "sent"
    message = local_relay.handler.messages[0].parsed()
    # THEN the subject's date is the Date header's date, in UTC
    sent_on = parsedate_to_datetime(message["Date"]).astimezone(UTC).date().isoformat()
    assert message["Subject"].endswith(f" | {sent_on}")
    assert "2001-02-03" not in message["Subject"]


def test_given_a_time_just_after_midnight_when_rendered_then_subject_and_date_header_use_it() -> None:
    now = datetime(2026, 11, 29, 0, 10, tzinfo=UTC)
    message = render_message(
        make_report(started_at="2026-11-28T23:50:00+00:00"), config_for(smtp_section(587)), now=now
    )
    assert message["Subject"].endswith(" | 2026-11-29")
    assert parsedate_to_datetime(message["Date"]) == now


@pytest.mark.parametrize("status", ["succeeded", "dry_run", "failed", "incomplete", "something-new"])
def test_given_each_outcome_when_rendered_then_heading_and_outcome_row_say_different_things(status: str) -> None:
    report = make_report(status, error_type="ReplacementFailed" if status == "failed" else None)
    text, rich = parts(render_message(report, config_for(smtp_section(587))))
    heading = text.splitlines()[0]
    [outcome] = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Outcome:")]
    # The heading is a short status line naming the service; the outcome row is the detail.
    assert heading.startswith("ECS service task recycle ") and heading.endswith(": prod-cluster/web-api")
    assert outcome and outcome not in heading and heading not in outcome
    assert text.count(outcome) == 1
    assert f'<h2 style="color:{"#1a7f37" if status in ("succeeded", "dry_run") else "#cf222e"}">' in rich
    assert rich.count(html.escape(outcome, quote=True)) == 1


def test_given_a_failure_when_rendered_then_the_outcome_row_says_what_stopped_it_in_words() -> None:
    report = make_report("failed", error_type="ReplacementFailed")
    text, _ = parts(render_message(report, config_for(smtp_section(587))))
    assert text.startswith("ECS service task recycle FAILED: prod-cluster/web-api\n")
    assert "Outcome:                stopped because a replacement task failed to start; see the error below" in text


def test_given_restore_actions_when_rendered_then_each_is_listed_in_both_parts() -> None:
    actions = ["desiredCount 4 -> 3", "scalable target: MaxCapacity 4 -> 3; scale-in and scheduled scaling resumed"]
    text, rich = parts(render_message(make_report(restore_actions=actions), config_for(smtp_section(587))))
    for action in actions:
        assert f"  - {action}" in text
        assert f"<li>{html.escape(action)}</li>" in rich


def test_given_an_action_in_another_wording_when_rendered_then_it_is_listed_as_is() -> None:
    action = "scalable target restored <to what it was>"
    text, rich = parts(render_message(make_report(restore_actions=[action]), config_for(smtp_section(587))))
    assert f"  - {action}" in text
    assert f"<li>{html.escape(action)}</li>" in rich


def test_given_a_structured_restored_target_when_rendered_then_both_parts_show_a_table() -> None:
    # GIVEN the engine's structured restored_target beside its action strings
    target = {
        "min_capacity": 2,
        "max_capacity": 10,
        "suspended": {
            "DynamicScalingInSuspended": True,
            "DynamicScalingOutSuspended": False,
            "ScheduledScalingSuspended": False,
        },
    }
    report = make_report(restore_actions=["desiredCount 4 -> 3"], restored_target=target)
    # WHEN rendered
    text, rich = parts(render_message(report, config_for(smtp_section(587))))
    # THEN the text part has aligned lines and the HTML part a table
    assert (
        "Scalable target after the restore:\n"
        "  Min capacity:      2\n"
        "  Max capacity:      10\n"
        "  Scale-in:          suspended\n"
        "  Scale-out:         active\n"
        "  Scheduled scaling: active\n"
    ) in text
    for label, value in [("Min capacity", "2"), ("Max capacity", "10"), ("Scale-in", "suspended")]:
        assert f"<tr><th align=left>{label}</th><td>{value}</td></tr>" in rich
    assert rich.index("<h3>Restored</h3>") < rich.index("<th align=left>Min capacity</th>")


@pytest.mark.parametrize("target", [None, "Min=2", {"min_capacity": "two"}, {"suspended": None}])
def test_given_an_absent_or_odd_restored_target_when_rendered_then_it_still_renders(target: Any) -> None:
    text, _ = parts(render_message(make_report(restored_target=target), config_for(smtp_section(587))))
    if isinstance(target, dict):
        assert "Scalable target after the restore:" in text and "unknown" in text
    else:
        assert "Scalable target after the restore:" not in text
