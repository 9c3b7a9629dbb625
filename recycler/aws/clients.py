"""The session and clients of one durable invocation, made on first use.

Most durable resumptions replay to where they stopped and then make one or two
calls, or none; an AssumeRole and half a dozen clients each time would be most
of their billed time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recycler.aws.session import create_client, create_quick_client


class Clients:
    """The session and clients of one invocation, made on first use (see the module's note for why)."""

    def __init__(self, make_session: Callable[[], Any], make_lock_session: Callable[[], Any]) -> None:
        self._make_session = make_session
        self._make_lock_session = make_lock_session
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = self._make_session()
        return self._session

    def client(self, service_name: str) -> Any:
        return LazyClient(lambda: create_client(self.session, service_name))

    def quick_client(self, service_name: str) -> Any:
        return LazyClient(lambda: create_quick_client(self.session, service_name))

    def lock_client(self) -> Any:
        return self.lock_session_client("dynamodb")

    def lock_session_client(self, service_name: str) -> Any:
        """A client in the function's own account (the lock table, the durable alias), also under role_arn."""
        return LazyClient(lambda: create_client(self._make_lock_session(), service_name))


class LazyClient:
    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)
