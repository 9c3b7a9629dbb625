"""One read of an SSM parameter: the text of the config that replaces the packaged input.json.

It runs with the function's own credentials (input.json's awsCredentials are in the very text being read), in
the function's region. A SecureString is decrypted: with the AWS managed key no KMS permission is needed,
with a customer managed key the template's SecretsKmsKeyArn grants it through SSM.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from recycler.aws.gateway import error_code
from recycler.aws.session import create_client
from recycler.model.errors import ConfigError

# The types whose value is the text as stored; a StringList's is its items joined by commas.
TEXT_TYPES = ("String", "SecureString")


@dataclass(frozen=True)
class ParameterText:
    """A parameter's value, and its type (String or SecureString)."""

    name: str
    value: str
    type: str


def read_parameter(name: str, field: str, session: boto3.Session | None = None) -> ParameterText:
    """GetParameter (decrypted). Any failure is a ConfigError naming ``field``, with the AWS error code only."""
    try:
        client = create_client(session or boto3.Session(), "ssm")
        parameter = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except ClientError as e:
        raise ConfigError(field, f"cannot be read: {error_code(e)}{_hint(error_code(e))}") from e
    except BotoCoreError as e:
        raise ConfigError(field, f"cannot be read: {type(e).__name__}") from e
    kind = str(parameter.get("Type", ""))
    if kind not in TEXT_TYPES:
        raise ConfigError(field, f"is a {kind or 'parameter of no type'}: store the JSON as a String or SecureString")
    return ParameterText(name, str(parameter.get("Value", "")), kind)


def _hint(code: str) -> str:
    if code == "ParameterNotFound":
        return " (it does not exist in this account and region)"
    if code in ("AccessDeniedException", "AccessDenied"):
        return " (the role may read only the template's ConfigParameterName, and decrypt only with SecretsKmsKeyArn)"
    return ""
