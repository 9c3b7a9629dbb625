"""The message: subject, both parts, headers and escaping, as rendered from a report."""

from __future__ import annotations

import dataclasses
import html
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.smtp import RunningServer

import Notification
from recycler.notification.errors import UnsafeHeaderError
from recycler.notification.render import render_message

from .helpers import ARN, REGION, SENT, SUBJECTS, config_for, make_report, parts, relay_config, smtp_section

# --------------------------------------------------------------------------- #
# The message
# --------------------------------------------------------------------------- #


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
