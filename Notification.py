"""SMTP notification of a recycle's outcome. (Placeholder contract; completed by issue 3.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def parse_notification_config(smtp_section: Mapping[str, Any] | None, email_section: Mapping[str, Any] | None) -> Any:
    return None


def notify(report: Mapping[str, Any], config: Any, session: Any = None) -> dict[str, Any]:
    return {"status": "not_configured", "detail": "no smtpCredentials section in input.json"}
