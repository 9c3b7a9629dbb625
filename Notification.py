"""SMTP email report of a recycle's outcome: the public face of ``recycler.notification``.

``notify`` sends the report as configured and never raises: a notifier failure is reported in its result,
and never changes or hides the recycle's own outcome.
"""

from recycler.notification.notifier import notify

__all__ = ["notify"]
