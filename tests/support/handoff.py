"""The durable alias as Lambda answers the plain function's hand-off: one execution per DurableExecutionName."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from recycler.aws import clients
from recycler.run.ports import HANDOFF_ENV

DURABLE_ALIAS_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ecs-task-recycle-durable:live"


class FakeDurableAlias:
    """Records every asynchronous invoke; a second start under a name already started is refused, as Lambda does."""

    def __init__(self) -> None:
        self.invokes: list[dict[str, Any]] = []
        self.started: list[str] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invokes.append(kwargs)
        name = kwargs["DurableExecutionName"]
        if name in self.started:
            code, message = "DurableExecutionAlreadyStartedException", f"{name} already started"
            raise ClientError({"Error": {"Code": code, "Message": message}}, "Invoke")
        self.started.append(name)
        return {"StatusCode": 202}


def install_durable_alias(monkeypatch: pytest.MonkeyPatch) -> FakeDurableAlias:
    """The plain function configured to hand off, with its Lambda client answered by a fake durable alias."""
    alias = FakeDurableAlias()
    monkeypatch.setenv(HANDOFF_ENV, DURABLE_ALIAS_ARN)
    real_create_client = clients.create_client
    monkeypatch.setattr(
        clients,
        "create_client",
        lambda session, name: alias if name == "lambda" else real_create_client(session, name),
    )
    return alias
