"""A fleet run's one email: the subject names the cluster and the counts, the body has a table of the services,
the totals and the services never started; notify_on reads the fleet's status; every value is escaped."""

from __future__ import annotations

import html

import pytest
from support.smtp import RunningServer, capture_json_logs

import Notification
from recycler.notification.errors import UnsafeHeaderError
from recycler.notification.fleet_email import ERROR_CLIP
from recycler.notification.render import render_message, render_subject

from .helpers import (
    QUIET_LOGGERS,
    SENT,
    config_for,
    email_section,
    make_fleet_report,
    make_report,
    parts,
    relay_config,
    smtp_section,
)


def _twenty_services() -> dict[str, object]:
    services = [make_report("succeeded", service=f"svc-{i:02}") for i in range(18)]
    services += [make_report("failed", service=f"svc-{i:02}") for i in (18, 19)]
    return make_fleet_report(
        "failed",
        cluster="prod",
        services=services,
        not_started=[],
        totals={"services": {"succeeded": 18, "failed": 2}, "tasks_recycled": 58, "task_total": 60},
    )


def test_a_fleet_subject_names_the_cluster_and_the_services_counts() -> None:
    # GIVEN a fleet of 20 services, 2 of which failed
    report = _twenty_services()
    # THEN the subject follows the single run's, with the fleet's counts where the service would be
    config = config_for(smtp_section(587), email_section(email_subject="ECS Service Task Recycle"))
    assert render_subject(report, config, SENT) == (
        "AWS ECS | FAILED | ECS Service Task Recycle | prod (fleet: 18 succeeded, 2 failed of 20 services) | 2026-11-28"
    )
    # AND the prefix setting applies as it does to a single run's (empty: no prefix)
    config = config_for(smtp_section(587), email_section(subject_prefix=""))
    assert render_subject(make_fleet_report("failed"), config, SENT) == (
        "FAILED | ECS Service Task Recycle Completed | prod-cluster "
        "(fleet: 1 succeeded, 1 failed, 1 refused, 1 not started of 4 services) | 2026-11-28"
    )


def test_a_fleet_is_mailed_once_with_a_table_of_its_services(local_relay: RunningServer) -> None:
    # GIVEN a fleet where one service succeeded, one failed, one was refused and one never started
    report = make_fleet_report("failed")
    # WHEN it is mailed through a real SMTP server
    with capture_json_logs(QUIET_LOGGERS) as logged:
        result = Notification.notify(report, relay_config(local_relay.port), None)
    # THEN one message arrives, its headers naming the fleet (no single service)
    assert result["status"] == "sent", result
    [received] = local_relay.handler.messages
    message = received.parsed()
    assert message["Subject"].startswith("AWS ECS | FAILED | ECS Service Task Recycle Completed | prod-cluster (fleet:")
    assert message["X-ECS-Recycle-Status"] == "failed" and message["X-ECS-Recycle-Fleet"] == "4"
    assert message["X-ECS-Recycle-Service"] is None
    text, rich = parts(message)
    # AND both parts say the totals, each service's outcome, recycled/total, duration and error
    for body in (text, rich):
        assert "1 succeeded, 1 failed, 1 refused, 1 not started of 4 services" in body
        assert "5 of 6" in body and "every service tagged recycle=weekly" in body
        for service, outcome, recycled in (
            ("web-api", "succeeded", "3/3"),
            ("worker", "failed", "2/3"),
            ("billing", "refused", "0/unknown"),
        ):
            assert service in body and outcome in body and recycled in body
        assert "CannotPullContainerError" in body and "holds the lock on billing" in body
        assert "130.2 s" in body and "reports" in body
    lines = text.splitlines()
    assert "  web-api  succeeded  3/3        130.2 s (2 min 10 s)" in lines
    assert lines[-2:] == ["Services not started:", "  - reports"]
    assert "<li><code>reports</code></li>" in rich
    # AND the log line says it was a fleet's email
    [line] = [entry for entry in logged.lines() if entry["logger"] == "Notification"]
    assert line["fleet_services"] == 4 and line["recycle_status"] == "failed"


@pytest.mark.parametrize(
    ("status", "notify_on", "sent"),
    [
        ("succeeded", ["failure"], False),
        ("failed", ["failure"], True),
        ("incomplete", ["failure"], True),
        ("failed", ["success"], False),
        ("cancelled", ["success"], True),
        ("dry_run", ["success"], True),
    ],
)
def test_notify_on_reads_the_fleets_status(
    local_relay: RunningServer, status: str, notify_on: list[str], sent: bool
) -> None:
    # GIVEN a fleet whose services include successes whatever the fleet's own status is
    report = make_fleet_report(status)
    # WHEN it is mailed with notify_on
    result = Notification.notify(report, relay_config(local_relay.port, notify_on=notify_on), None)
    # THEN the fleet's status decides, as a single run's does
    assert (result["status"] == "sent") is sent, result
    assert len(local_relay.handler.messages) == int(sent)


def test_every_value_of_a_fleet_is_escaped_and_a_long_error_is_clipped() -> None:
    # GIVEN service names and errors that are markup, with line breaks, and one very long error
    long_error = "x" * 1000
    services = [
        make_report("failed", service="<script>alert('x')</script>", error="bad <b>thing</b>\r\nBcc: x@example.net"),
        make_report("failed", service="long", error=long_error),
    ]
    report = make_fleet_report("failed", services=services, not_started=["<img src=x>"], error="<i>fleet</i>")
    # WHEN rendered
    text, rich = parts(render_message(report, config_for(smtp_section(587)), now=SENT))
    # THEN the HTML shows every value as text, never as markup
    assert "<script>" not in rich and "<b>" not in rich and "<img" not in rich and "<i>" not in rich
    assert html.escape("<script>alert('x')</script>", quote=True) in rich
    assert "bad &lt;b&gt;thing&lt;/b&gt; Bcc: x@example.net" in rich and "&lt;img src=x&gt;" in rich
    # AND a service's error is one line in the table, clipped to ERROR_CLIP characters
    assert "bad <b>thing</b> Bcc: x@example.net" in text and "\nBcc:" not in text
    clipped = "x" * (ERROR_CLIP - 1) + "…"
    assert clipped in text and clipped in rich and "x" * ERROR_CLIP not in text + rich


def test_a_fleet_value_bound_for_a_header_with_a_line_break_is_refused(local_relay: RunningServer) -> None:
    report = make_fleet_report("failed", cluster="prod\r\nBcc: attacker@example.net")
    with pytest.raises(UnsafeHeaderError):
        render_message(report, relay_config(local_relay.port))
    result = Notification.notify(report, relay_config(local_relay.port), None)
    assert result["status"] == "failed" and local_relay.handler.messages == []


def test_a_registered_secret_in_a_services_error_never_reaches_the_fleet_email() -> None:
    from recycler.observability import logs

    logs.register_secret("fleet-s3cr3t-token-value")
    services = [make_report("failed", service="worker", error="AccessDenied for fleet-s3cr3t-token-value")]
    report = make_fleet_report("failed", services=services)
    message = render_message(report, config_for(smtp_section(587)), now=SENT)
    assert "fleet-s3cr3t-token-value" not in message.as_string()
    assert all("fleet-s3cr3t-token-value" not in body for body in parts(message))


@pytest.mark.parametrize("status", ["succeeded", "dry_run", "incomplete", "cancelled", "refused", "something-new"])
def test_each_fleet_outcome_renders_its_own_words(status: str) -> None:
    report = make_fleet_report(status, error="alarm api-5xx went into ALARM" if status == "refused" else None)
    text, rich = parts(render_message(report, config_for(smtp_section(587)), now=SENT))
    heading = text.splitlines()[0]
    assert heading.startswith("ECS fleet task recycle ") and "prod-cluster (fleet:" in heading
    [outcome] = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Outcome:")]
    assert outcome and outcome not in heading
    assert ("which this version does not know" in outcome) is (status == "something-new")
    assert html.escape(outcome, quote=True) in rich


def test_a_fleet_report_with_missing_keys_still_renders() -> None:
    text, rich = parts(render_message({"fleet": True, "status": "failed"}, config_for(smtp_section(587)), now=SENT))
    assert "unknown (fleet: none of 0 services)" in text
    assert [" ".join(line.split()) for line in text.splitlines() if line.startswith("Tasks")] == [
        "Tasks recycled: 0 of 0"
    ]
    assert "<h3>Services</h3>" not in rich


def test_a_handed_off_fleet_names_its_execution() -> None:
    report = make_fleet_report("handed_off", services=[], not_started=["a", "b"], totals={"services": {}})
    report["handed_off"] = {"execution_name": "fleet-prod-20261128"}
    text, _ = parts(render_message(report, config_for(smtp_section(587)), now=SENT))
    assert "durable execution fleet-prod-20261128 runs the fleet" in text
