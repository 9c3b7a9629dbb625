"""The environment, read once: every variable the runtime uses, in one frozen value the hosts pass down.

Only recycler.hosts reads os.environ (tests/test_layout.py checks): the rooms below take what they need as
parameters, so a test passes an Environment instead of patching the process. boto3 still reads its own
AWS_* variables (credentials, AWS_DEFAULT_REGION, AWS_PROFILE, AWS_ENDPOINT_URL) itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from recycler.aws import session
from recycler.aws.session import AwsEnvironment
from recycler.lock.record import LOCK_TABLE_ENV
from recycler.model.errors import ConfigError
from recycler.model.settings import AwsCredentials
from recycler.run.budget import (
    DEFAULT_EXECUTION_TIMEOUT_SECONDS,
    EXECUTION_TIMEOUT_ENV,
    MAX_EXECUTION_TIMEOUT_SECONDS,
)
from recycler.run.ports import HANDOFF_ENV

CONFIG_ENV_VAR = "RECYCLE_CONFIG"
# The template's ConfigParameterName: an SSM parameter holding input.json's JSON.
CONFIG_PARAMETER_ENV = "RECYCLE_CONFIG_PARAMETER"
FUNCTION_NAME_ENV = "AWS_LAMBDA_FUNCTION_NAME"


@dataclass(frozen=True)
class Environment:
    """What the template (or the shell) set. Values are kept as given; a host validates what it uses."""

    lock_table_name: str | None = None
    handoff_alias_arn: str | None = None
    config_file: str | None = None
    config_parameter: str | None = None
    # Raw, and parsed only by the durable host: a plain function never sets it, and must not fail on it.
    execution_timeout: str | None = None
    function_name: str | None = None
    log_level: str | None = None
    lambda_json_logs: bool = False
    aws: AwsEnvironment = field(default_factory=AwsEnvironment)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, required: Iterable[str] = ()) -> Environment:
        """Read the variables once. A variable in ``required`` that is unset or empty is a ConfigError naming it."""
        env = os.environ if environ is None else environ
        for name in required:
            if not env.get(name):
                raise ConfigError(name, "is not set in the function's environment")
        return cls(
            lock_table_name=env.get(LOCK_TABLE_ENV),
            handoff_alias_arn=env.get(HANDOFF_ENV),
            config_file=env.get(CONFIG_ENV_VAR),
            config_parameter=env.get(CONFIG_PARAMETER_ENV) or None,
            execution_timeout=env.get(EXECUTION_TIMEOUT_ENV),
            function_name=env.get(FUNCTION_NAME_ENV),
            log_level=env.get("AWS_LAMBDA_LOG_LEVEL") or env.get("LOG_LEVEL"),
            lambda_json_logs=env.get("AWS_LAMBDA_LOG_FORMAT") == "JSON",
            aws=AwsEnvironment.of(env),
        )

    @property
    def in_lambda(self) -> bool:
        return bool(self.function_name)

    @property
    def config_path(self) -> Path | None:
        """input.json as RECYCLE_CONFIG names it, or None for the default beside the package."""
        return Path(self.config_file) if self.config_file else None

    @property
    def config_parameter_name(self) -> str | None:
        """The SSM parameter RECYCLE_CONFIG_PARAMETER names, or None for input.json. Both set is an error."""
        name = self.config_parameter
        if not name:
            return None
        if self.config_file:
            raise ConfigError(CONFIG_PARAMETER_ENV, f"and {CONFIG_ENV_VAR} are both set: set one of them")
        if not name.startswith("/") or len(name) > 1011 or any(c.isspace() for c in name):
            raise ConfigError(CONFIG_PARAMETER_ENV, "must be an SSM parameter name starting with /")
        return name

    @property
    def execution_timeout_seconds(self) -> int:
        """The durable function's ExecutionTimeout, as the template passes it."""
        raw = self.execution_timeout
        if raw is None or raw == "":
            return DEFAULT_EXECUTION_TIMEOUT_SECONDS
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(EXECUTION_TIMEOUT_ENV, "must be a whole number of seconds") from None
        if not 1 <= value <= MAX_EXECUTION_TIMEOUT_SECONDS:
            raise ConfigError(EXECUTION_TIMEOUT_ENV, f"must be between 1 and {MAX_EXECUTION_TIMEOUT_SECONDS}")
        return value


def get_aws_session(credentials: AwsCredentials | None, session_suffix: str | None = None) -> boto3.Session:
    """recycler.aws.session's session, with the AWS_* variables as the environment has them now (AWSSession.py's)."""
    return session.get_aws_session(credentials, session_suffix, Environment.from_env().aws)


def resolve_region(credentials: AwsCredentials | None) -> str | None:
    """The explicit region, else AWS_REGION, else AWS_DEFAULT_REGION (AWSSession.py's)."""
    return session.resolve_region(credentials, Environment.from_env().aws)
