"""Notification.py and recycler/notification, one file per part, against real SMTP servers (aiosmtpd on
127.0.0.1, trustme CA). Fixtures are in conftest.py, the config sections and report they mail in helpers.py.

GIVEN / WHEN / THEN: each test builds its world, calls the public API once, and
checks what the server received, what notify() returned and what was logged.
"""
