"""The notifier's exceptions, apart so every notification module can raise them without importing another.

``Notification.notify`` turns each into a failed result; none escapes it.
"""

from __future__ import annotations

from recycler.model.errors import RecycleError


class NotificationError(RecycleError):
    """The notification could not be sent. The message never holds a secret."""


class UnsafeHeaderError(NotificationError, ValueError):
    """A header value holds a line break or control character (header injection)."""


class PasswordUnavailableError(NotificationError):
    """The SMTP password reference could not be resolved."""


class DeliveryError(NotificationError):
    """Connecting, securing, authenticating or sending failed at ``stage``."""

    def __init__(self, stage: str, problem: str) -> None:
        super().__init__(f"{stage}: {problem}")
        self.stage = stage
        self.problem = problem
