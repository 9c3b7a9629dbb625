"""Transport against real SMTP servers: STARTTLS, implicit TLS, AUTH, refusals and failures reported."""

from __future__ import annotations

import json
import time

import pytest
from support.smtp import (
    PasswordAuthenticator,
    RunningServer,
    TLSMaterial,
    capture_json_logs,
    free_port,
    silent_server,
    smtp_server,
)

import Notification

from .helpers import PASSWORD, QUIET_LOGGERS, USERNAME, config_for, make_report, relay_config, smtp_section


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
