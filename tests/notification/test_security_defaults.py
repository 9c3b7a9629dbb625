"""Security defaults to STARTTLS on any port but 465, and fails closed."""

from __future__ import annotations

from support.smtp import PasswordAuthenticator, RunningServer, smtp_server

import Notification

from .helpers import PASSWORD, USERNAME, config_for, make_report, smtp_section


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
