"""One way to turn botocore's errors into the tool's own: AwsCallFailed, naming the call and the AWS error code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from recycler.errors import AwsCallFailed


@contextmanager
def aws_errors(operation: str) -> Iterator[None]:
    """Turn botocore's errors into AwsCallFailed, naming the call and the AWS error code."""
    try:
        yield
    except ClientError as e:
        message = e.response.get("Error", {}).get("Message", "")
        detail = f"{error_code(e)}: {message}" if message else error_code(e)
        raise AwsCallFailed(f"{e.operation_name} failed: {detail}") from e
    except BotoCoreError as e:
        raise AwsCallFailed(f"{operation} failed: {e}") from e


def error_code(error: BaseException | None) -> str:
    """The AWS error code of a ClientError (or of the one an AwsCallFailed wraps), else the type name."""
    if isinstance(error, AwsCallFailed):
        error = error.__cause__
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
