"""What a notification logs (one structured line, no secret) and the .eml export."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from support.smtp import HOST, RunningServer, capture_json_logs

import Notification
from recycler.notification.render import render_message

from .helpers import PASSWORD, QUIET_LOGGERS, SENT, SUBJECTS, config_for, make_report, smtp_section


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
