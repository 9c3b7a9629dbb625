"""The durable alias as Lambda answers the plain function's hand-off: one execution per DurableExecutionName."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

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
