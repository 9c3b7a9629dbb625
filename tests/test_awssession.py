"""AWSSession: credential sources, AssumeRole on the regional endpoint, nothing secret logged."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

import AWSSession
from recycler.model.errors import AwsCallFailed, ConfigError
from recycler.model.settings import AwsCredentials
from recycler.observability import logs

ROLE = "arn:aws:iam::123456789012:role/recycler"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_static_keys_build_the_session() -> None:
    session = AWSSession.get_aws_session(
        AwsCredentials(region_name="eu-west-1", access_key="AKIAEXAMPLE", secret_key=SECRET, session_token="tok")
    )
    credentials = session.get_credentials()
    assert credentials is not None
    assert credentials.access_key == "AKIAEXAMPLE" and credentials.token == "tok"
    assert session.region_name == "eu-west-1"


def test_region_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    assert AWSSession.get_aws_session(AwsCredentials()).region_name == "ap-southeast-2"
    assert AWSSession.get_aws_session(None).region_name == "ap-southeast-2"


def test_unknown_profile_is_a_config_error_naming_profile_name() -> None:
    from botocore.exceptions import ProfileNotFound

    with pytest.raises(ConfigError) as caught:
        AWSSession.get_aws_session(AwsCredentials(profile_name="nope"))
    assert caught.value.field == "awsCredentials.profile_name"
    assert "'nope'" in str(caught.value)
    assert isinstance(caught.value.__cause__, ProfileNotFound)


def test_unknown_aws_profile_in_the_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "missing")
    with pytest.raises(ConfigError) as caught:
        AWSSession.get_aws_session(AwsCredentials())
    assert caught.value.field == "AWS_PROFILE"


@pytest.mark.parametrize(
    "credentials",
    [None, AwsCredentials(), AwsCredentials(access_key="AKIAEXAMPLE", secret_key=SECRET)],
    ids=["none", "default-chain", "static-keys"],
)
def test_no_region_anywhere_is_a_config_error_saying_how_to_set_one(
    monkeypatch: pytest.MonkeyPatch, credentials: AwsCredentials | None
) -> None:
    # GIVEN no region in input.json, the environment or an AWS config file
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    # WHEN a session is built, THEN the error names the key and every way to set it
    with pytest.raises(ConfigError) as caught:
        AWSSession.get_aws_session(credentials)
    assert caught.value.field == "awsCredentials.region_name"
    for way in ("awsCredentials.region_name", "AWS_REGION", "--region"):
        assert way in caught.value.problem


def test_region_from_the_profile_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # GIVEN no region in input.json or the environment, but one in the named profile
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    config_file = tmp_path / "config"
    config_file.write_text("[profile ops]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    # THEN the session takes the profile's region
    assert AWSSession.get_aws_session(AwsCredentials(profile_name="ops")).region_name == "eu-west-3"


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
@pytest.mark.parametrize("region", ["us-east-١", "us-east-1\n", "US EAST"])
def test_malformed_region_in_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, region: str
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv(variable, region)
    with pytest.raises(ConfigError) as caught:
        AWSSession.get_aws_session(AwsCredentials())
    assert caught.value.field == variable


def test_assume_role_uses_regional_sts_a_named_session_and_external_id(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}
    real_client = boto3.Session.client

    def spy(self: boto3.Session, name: str, *args: Any, **kwargs: Any) -> Any:
        client = real_client(self, name, *args, **kwargs)  # type: ignore[call-overload]
        if name == "sts":
            seen["endpoint"] = client.meta.endpoint_url

            def capture(params: dict[str, Any], **_: Any) -> None:
                seen["params"] = params

            client.meta.events.register("provide-client-params.sts.AssumeRole", capture)
        return client

    monkeypatch.setattr(boto3.Session, "client", spy)
    with mock_aws():
        # As the handler does: botocore stays at WARNING (at DEBUG it logs response bodies).
        logs.configure()
        caplog.set_level("DEBUG")
        session = AWSSession.get_aws_session(
            AwsCredentials(region_name="eu-central-1", role_arn=ROLE, external_id="ext-123"),
            session_suffix="x" * 100,
        )
        assumed = session.get_credentials()
        assert assumed is not None
        assert seen["endpoint"] == "https://sts.eu-central-1.amazonaws.com"
        name = seen["params"]["RoleSessionName"]
        assert name.startswith("ecs-task-recycle") and len(name) <= 64
        assert seen["params"]["ExternalId"] == "ext-123"
        assert assumed.token and assumed.secret_key not in caplog.text and assumed.token not in caplog.text


def test_role_without_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ConfigError) as caught:
        AWSSession.get_aws_session(AwsCredentials(role_arn=ROLE))
    assert caught.value.field == "awsCredentials.region_name"


def test_failed_assume_role_is_wrapped_with_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    def deny(self: Any, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole")

    with mock_aws():
        monkeypatch.setattr("botocore.client.BaseClient._make_api_call", lambda self, op, params: deny(self))
        with pytest.raises(AwsCallFailed, match="AccessDenied") as caught:
            AWSSession.get_aws_session(AwsCredentials(region_name="us-east-1", role_arn=ROLE))
        assert isinstance(caught.value.__cause__, ClientError)


def test_clients_use_standard_retries_and_timeouts() -> None:
    client = AWSSession.create_client(boto3.Session(region_name="us-east-1"), "ecs")
    config = client.meta.config
    assert config.retries["mode"] == "standard"
    assert config.connect_timeout == 5 and config.read_timeout == 20


def test_a_quick_client_makes_one_short_try() -> None:
    # The account a not-found error names must not hold that error up: one attempt, short timeouts.
    config = AWSSession.create_quick_client(boto3.Session(region_name="us-east-1"), "sts").meta.config
    assert config.retries["total_max_attempts"] == 1
    assert config.connect_timeout <= 2 and config.read_timeout <= 3


def test_role_session_name_is_trimmed_and_cleaned() -> None:
    name = AWSSession.role_session_name("req id/with spaces" * 10)
    assert len(name) <= 64 and " " not in name and "/" not in name


def test_role_session_name_is_ascii_only() -> None:
    name = AWSSession.role_session_name("réq-٣")
    assert name == "ecs-task-recycle-r-q--"
