"""Build the boto3 session and clients the tool uses.

Base credentials come from a named profile, from static keys, or from the
default chain (in Lambda: the execution role). ``role_arn`` then assumes a role
on top of that base through the regional STS endpoint. Nothing here logs a key,
a secret or a token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

from recycler.aws.gateway import error_code
from recycler.model.errors import AwsCallFailed, ConfigError, shown
from recycler.model.runtime import TOOL_NAME

if TYPE_CHECKING:
    from mypy_boto3_sts.type_defs import AssumeRoleRequestTypeDef

    from recycler.model.settings import AwsCredentials

# The logger keeps the name of the face users know (AWSSession.py), so log filters stay valid.
logger = logging.getLogger("AWSSession")

# RoleSessionName: 2-64 characters of [\w+=,.@-].
_MAX_ROLE_SESSION_NAME = 64
_ASSUMED_ROLE_SECONDS = 3600
# A region from the environment or an AWS config file: one ASCII host label, as botocore
# requires, but matched whole (botocore's own check lets a trailing newline through).
_REGION_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
NO_REGION = "no AWS region is set: set awsCredentials.region_name in input.json, AWS_REGION, or --region (CLI)"

# Standard mode retries throttling and transient errors with jittered backoff;
# the timeouts keep a hung connection from eating the Lambda's time budget.
CLIENT_ATTEMPTS, CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS = 5, 5, 20
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": CLIENT_ATTEMPTS},
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    user_agent_extra=TOOL_NAME,
)
# For a call an error message may use but must never wait on (the account a not-found names).
QUICK_CLIENT_CONFIG = CLIENT_CONFIG.merge(
    Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=3)
)


@dataclass(frozen=True)
class AwsEnvironment:
    """The AWS_* variables our own code reads (recycler.hosts.environment reads them; boto3 reads the rest).

    Empty, boto3 alone decides: AWS_DEFAULT_REGION, AWS_PROFILE and the endpoints are botocore's own.
    """

    region: str | None = None
    # Which variable the region came from, for an error naming it.
    region_variable: str | None = None
    profile: str | None = None
    # AWS_ENDPOINT_URL(_STS) (local testing) wins over the regional STS endpoint.
    endpoint_override: bool = False

    @classmethod
    def of(cls, env: Mapping[str, str]) -> AwsEnvironment:
        variable = next((name for name in ("AWS_REGION", "AWS_DEFAULT_REGION") if env.get(name)), None)
        return cls(
            region=env[variable] if variable else None,
            region_variable=variable,
            profile=env.get("AWS_PROFILE"),
            endpoint_override=bool(env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL")),
        )


_BOTO_ONLY = AwsEnvironment()


def resolve_region(credentials: AwsCredentials | None, env: AwsEnvironment = _BOTO_ONLY) -> str | None:
    """The explicit region, else AWS_REGION, else AWS_DEFAULT_REGION."""
    if credentials is not None and credentials.region_name:
        return credentials.region_name
    return env.region


def role_session_name(suffix: str | None = None) -> str:
    """A RoleSessionName that names the tool, trimmed to STS's 64 characters."""
    name = TOOL_NAME if not suffix else f"{TOOL_NAME}-{suffix}"
    # ASCII only: str.isalnum() is also true for "é" or "٣", which STS refuses.
    cleaned = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "+=,.@-_" else "-" for ch in name)
    return cleaned[:_MAX_ROLE_SESSION_NAME]


def get_aws_session(
    credentials: AwsCredentials | None, session_suffix: str | None = None, env: AwsEnvironment = _BOTO_ONLY
) -> boto3.Session:
    """Return a boto3 Session for the configured credentials.

    Makes no AWS call unless role_arn is set. A missing or malformed region and an
    unknown profile are ConfigErrors, raised before any call.
    """
    base, source = _base_session(credentials, resolve_region(credentials, env), env)
    # Without an explicit region, the profile (or the default one) may name it.
    region = base.region_name
    if not region:
        raise ConfigError("awsCredentials.region_name", NO_REGION)
    if not _REGION_LABEL.fullmatch(region):
        raise ConfigError(_region_source(credentials, env), "is not an AWS region name")

    if credentials is None or not credentials.role_arn:
        logger.debug("AWS session ready", extra={"credential_source": source, "region": region})
        return base

    sts = base.client(
        "sts",
        region_name=region,
        endpoint_url=None if env.endpoint_override else _regional_sts_endpoint(base, region),
        config=CLIENT_CONFIG,
    )
    assume_args: AssumeRoleRequestTypeDef = {
        "RoleArn": credentials.role_arn,
        "RoleSessionName": role_session_name(session_suffix),
        "DurationSeconds": _ASSUMED_ROLE_SECONDS,
    }
    if credentials.external_id:
        assume_args["ExternalId"] = credentials.external_id
    try:
        assumed = sts.assume_role(**assume_args)["Credentials"]
    except (ClientError, BotoCoreError) as e:
        raise AwsCallFailed(f"could not assume role {credentials.role_arn}: {error_code(e)}") from e
    logger.info(
        "Assumed role",
        extra={"role_arn": credentials.role_arn, "credential_source": source, "region": region},
    )
    return boto3.Session(
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
        region_name=region,
    )


def _base_session(
    credentials: AwsCredentials | None, region: str | None, env: AwsEnvironment
) -> tuple[boto3.Session, str]:
    """The session before any role, and where its credentials come from. An unknown profile is a ConfigError."""
    profile = credentials.profile_name if credentials is not None else None
    try:
        if profile:
            base, source = boto3.Session(profile_name=profile, region_name=region), "profile"
        elif credentials is not None and credentials.access_key:
            base = boto3.Session(
                aws_access_key_id=credentials.access_key,
                aws_secret_access_key=credentials.secret_key,
                aws_session_token=credentials.session_token,
                region_name=region,
            )
            source = "static keys"
        else:
            base, source = boto3.Session(region_name=region), "default chain"
        return base, source
    except ProfileNotFound as e:
        field, name = (
            ("awsCredentials.profile_name", profile)
            if profile
            else ("AWS_PROFILE", env.profile or e.kwargs.get("profile"))
        )
        raise ConfigError(
            field, f"profile {shown(name)} is not in the AWS config or credentials files (~/.aws/config)"
        ) from e


def _region_source(credentials: AwsCredentials | None, env: AwsEnvironment) -> str:
    """Where the region came from, named as the user would look for it."""
    if credentials is not None and credentials.region_name:
        return "awsCredentials.region_name"
    return env.region_variable or "region (in the AWS config file)"


def create_client(session: boto3.Session, service_name: str) -> Any:
    """A client with standard retries and timeouts. Honours AWS_ENDPOINT_URL."""
    return session.client(service_name, config=CLIENT_CONFIG)  # type: ignore[call-overload]


def create_quick_client(session: boto3.Session, service_name: str) -> Any:
    """A client that makes one short try: for a call an error message may use but must not wait on."""
    return session.client(service_name, config=QUICK_CLIENT_CONFIG)  # type: ignore[call-overload]


def _regional_sts_endpoint(session: boto3.Session, region: str) -> str:
    partition = session.get_partition_for_region(region)
    suffix = {"aws-cn": "amazonaws.com.cn"}.get(partition, "amazonaws.com")
    return f"https://sts.{region}.{suffix}"
