"""What the notification tests share: the config sections, a report to mail, the message's parts."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from support.smtp import HOST

from recycler.notification.settings import NotificationConfig, parse_notification_config

USERNAME = "mailer@example.com"
PASSWORD = "s3cr3t-Pa55w0rd-never-log-me"
REGION = "eu-west-1"
# Loggers the Lambda handler holds at WARNING (botocore logs response bodies at
# DEBUG), plus the test-only SMTP server and moto.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "mail.log", "moto")
# When the tests' messages are "sent": the subject's date comes from this clock, like the Date header.
SENT = datetime(2026, 11, 28, 21, 10, 30, tzinfo=UTC)
# The subject each outcome gets, when sent at SENT.
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


def make_fleet_report(status: str = "failed", **overrides: Any) -> dict[str, Any]:
    """A fleet report as FleetReport.to_dict() gives it: three services' own reports and one never started."""
    worker_error = "ReplacementFailed: new task stopped (TaskFailedToStart: CannotPullContainerError)"
    services = [
        make_report("succeeded"),
        make_report("failed", service="worker", error_type="ReplacementFailed", error=worker_error),
        make_report(
            "refused",
            service="billing",
            task_total=None,
            tasks_recycled=[],
            tasks_remaining=[],
            error="another run (run-7) holds the lock on billing until 2026-11-28T21:30:00+00:00",
            error_type="LockHeld",
        ),
    ]
    report: dict[str, Any] = {
        "fleet": True,
        "status": status,
        "cluster": "prod-cluster",
        "region": REGION,
        "started_at": "2026-11-28T21:00:00+00:00",
        "duration_seconds": 601.5,
        "selection": {"service_tags": {"recycle": "weekly"}},
        "max_parallel_services": 2,
        "on_service_failure": "continue",
        "totals": {"services": {"succeeded": 1, "failed": 1, "refused": 1}, "tasks_recycled": 5, "task_total": 6},
        "services": services,
        "not_started": ["reports"],
        "error": None,
        "error_type": None,
    }
    report.update(overrides)
    return report
