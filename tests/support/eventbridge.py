"""The run's EventBridge events, read back as a team would route them: a rule on moto's default bus, matching the
tool's source, with an SQS queue as its target."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dev import simulator

SOURCE = "ecs-task-recycle"


def subscribe(session: Any, name: str = "recycle-events") -> Callable[[], list[dict[str, Any]]]:
    """A rule for the tool's events, to a new queue; returns a reader of every event delivered since the last read."""
    config = simulator.sim_client_config()
    sqs, events = session.client("sqs", config=config), session.client("events", config=config)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName="default", EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule=name, EventBusName="default", Targets=[{"Id": "queue", "Arn": arn}])

    def read() -> list[dict[str, Any]]:
        delivered: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return delivered
            for message in messages:
                delivered.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return read


def detail_types(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["detail-type"]) for e in events]
