"""Invoking the deployed functions from an operator's terminal (``lambda_function.py --invoke/--follow``).

Both calls go through the Lambda API directly, so none is re-sent by a client read timeout the way a
synchronous ``aws lambda invoke`` of a long recycle is: a recycle is started asynchronously, and only
the short ``status`` answer is waited for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from recycler.aws.gateway import aws_errors
from recycler.model.errors import AwsCallFailed

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# The template's alias of the durable function: a durable function is invoked through a qualified ARN only.
DURABLE_ALIAS = "live"


def is_durable(lambda_client: LambdaClient, function_name: str) -> bool:
    """Whether the function is a durable one (it has a DurableConfig), which is started through its alias."""
    with aws_errors("GetFunctionConfiguration"):
        configuration = lambda_client.get_function_configuration(FunctionName=function_name)
    return bool(configuration.get("DurableConfig"))


def qualified(function_name: str) -> str:
    """The function through its alias, unless the name already carries a qualifier (name:alias, arn:…:alias)."""
    unqualified_parts = 7 if function_name.startswith("arn:") else 1
    if len(function_name.split(":")) > unqualified_parts:
        return function_name
    return f"{function_name}:{DURABLE_ALIAS}"


def start_async(lambda_client: LambdaClient, function_name: str, event: dict[str, Any]) -> int | None:
    """Start the function on the event (InvocationType Event): Lambda queues it and answers at once."""
    with aws_errors("Invoke"):
        response = lambda_client.invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode()
        )
    return response.get("StatusCode")


def ask(lambda_client: LambdaClient, function_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke the function synchronously for a short answer (``action: status``), and return what it returned."""
    with aws_errors("Invoke"):
        response = lambda_client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
    body = response["Payload"].read()
    try:
        answer = json.loads(body or b"null")
    except ValueError as e:
        raise AwsCallFailed(f"{function_name} answered something that is not JSON: {body[:200]!r}") from e
    if response.get("FunctionError") or not isinstance(answer, dict):
        message = answer.get("errorMessage") if isinstance(answer, dict) else answer
        raise AwsCallFailed(f"{function_name} failed to answer: {message}")
    return answer
