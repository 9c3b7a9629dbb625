"""The deployed function, as Lambda would run it, in the test's process on the bed."""

from __future__ import annotations

import io
import json
from typing import Any

from botocore.exceptions import ClientError

from recycler.hosts import plain
from recycler.hosts.config import parse_config
from support.bed import Bed


class DeployedFunction:
    """The function as Lambda runs it, in this process on the bed: an asynchronous start runs the recycle
    (to its end, on the virtual clock) before the first status is asked; a synchronous invoke answers."""

    def __init__(self, bed: Bed, durable: bool = False) -> None:
        self.handler = plain.build_handler(
            clock=bed.clock, config=parse_config({"recycle": {"poll_interval_seconds": 5}})
        )
        self.durable = durable
        self.invokes: list[dict[str, Any]] = []
        self.started: set[str] = set()

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return {
            "FunctionName": FunctionName,
            **({"DurableConfig": {"ExecutionTimeout": 86400}} if self.durable else {}),
        }

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invokes.append(kwargs)
        event = json.loads(kwargs["Payload"])
        if kwargs.get("InvocationType") == "Event":
            name = kwargs.get("DurableExecutionName")
            if name in self.started:
                code, message = "DurableExecutionAlreadyStartedException", f"{name} already started"
                raise ClientError({"Error": {"Code": code, "Message": message}}, "Invoke")
            if name:
                self.started.add(name)
            try:
                self.handler(event, None)
            except plain.RecycleNotCompleted:
                pass  # Lambda would log it; the run's outcome is in the lock table's history
            return {"StatusCode": 202}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.handler(event, None)).encode())}
