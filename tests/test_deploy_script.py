"""cloudformation_deploy.sh, run against a stub `aws` that records its calls.

No AWS account is involved: the stub writes each invocation's arguments to a
log, answers describe-stacks with made-up outputs, and can be told that the
package is already uploaded or that the deploy fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "cloudformation_deploy.sh"
FUNCTION = "ecs-task-recycle-fn"
ALIAS_ARN = f"arn:aws:lambda:eu-west-1:123456789012:function:{FUNCTION}-durable:live"

STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AWS_STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "head-object" in args:
    sys.exit(int(os.environ.get("AWS_STUB_HEAD_OBJECT", "255")))
if "deploy" in args and os.environ.get("AWS_STUB_FAIL_DEPLOY"):
    print("An error occurred (ValidationError)", file=sys.stderr)
    sys.exit(255)
if "describe-stacks" in args:
    query = args[args.index("--query") + 1]
    outputs = {{
        "FunctionName": "{FUNCTION}",
        "LogGroupName": "/aws/lambda/{FUNCTION}",
        "DurableFunctionAliasArn": "{ALIAS_ARN}",
    }}
    print(next(v for k, v in outputs.items() if f"'{{k}}'" in query))
"""
REQUIRED = ["--stack-name", "recycler", "--bucket", "artifacts-123", "--cluster", "prod", "--services", "web,api"]


class Run:
    def __init__(self, result: subprocess.CompletedProcess[str], log: Path) -> None:
        self.code = result.returncode
        self.out = result.stdout
        self.err = result.stderr
        self.calls: list[list[str]] = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )

    def call(self, *words: str) -> list[str]:
        """The one recorded aws call containing all of ``words``."""
        matching = [c for c in self.calls if all(w in c for w in words)]
        assert len(matching) == 1, f"{words}: {matching} in {self.calls}"
        return matching[0]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "prebuilt.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return {}\n")
    return path


Deploy = Callable[..., Run]


@pytest.fixture
def deploy(tmp_path: Path, package: Path) -> Deploy:
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    stub = stub_dir / "aws"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "aws-calls.jsonl"

    def run(*args: str, prebuilt: bool = True, **env: str) -> Run:
        log.unlink(missing_ok=True)  # each run is judged on its own calls
        environment = {
            "PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "AWS_STUB_LOG": str(log),
            **({"LAMBDA_ZIP": str(package)} if prebuilt else {}),
            **env,
        }
        result = subprocess.run(
            [str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=300, check=False
        )
        return Run(result, log)

    return run


def overrides(call: list[str]) -> dict[str, str]:
    values = call[call.index("--parameter-overrides") + 1 :]
    return dict(v.split("=", 1) for v in values)


# --------------------------------------------------------------------------- #
# Bad input: usage, a non-zero exit, and no AWS call
# --------------------------------------------------------------------------- #


def test_help_prints_usage_and_calls_nothing(deploy: Deploy) -> None:
    run = deploy("--help")
    assert run.code == 0
    assert "Usage:" in run.out and "--stack-name" in run.out and "LAMBDA_ZIP" in run.out
    assert run.calls == []


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("--stack-name", "stack name is required"),
        ("--bucket", "artifact bucket is required"),
        ("--cluster", "target cluster is required"),
        ("--services", "target services are required"),
    ],
)
def test_missing_required_setting_is_a_usage_error_before_any_aws_call(deploy: Deploy, drop: str, message: str) -> None:
    # GIVEN every required flag but one
    index = REQUIRED.index(drop)
    args = REQUIRED[:index] + REQUIRED[index + 2 :]
    # WHEN the script runs
    run = deploy(*args)
    # THEN it names the missing setting, shows the usage, and touches nothing
    assert run.code == 2
    assert message in run.err
    assert "Usage:" in run.err
    assert run.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack-name", "1-bad"], "invalid stack name"),
        (["--bucket", "Not_A_Bucket"], "invalid S3 bucket name"),
        (["--services", "web, api"], "invalid --services"),
        (["--services", ",".join(f"s{i}" for i in range(11))], "invalid --services"),
        (["--cluster", "prod/web"], "invalid cluster name"),
        (["--schedule", "rate(7 days)"], "--schedule needs --schedule-service"),
        (
            ["--schedule", "rate(7 days)", "--schedule-service", "web", "--schedule-target", "fast"],
            "standard or durable",
        ),
        (["--parameter", "not-a-pair"], "Key=Value"),
        (["--frobnicate"], "unknown argument: --frobnicate"),
        (["--region"], "--region needs a value"),
    ],
)
def test_bad_input_is_a_usage_error_before_any_aws_call(deploy: Deploy, args: list[str], message: str) -> None:
    run = deploy(*REQUIRED, *args)
    assert run.code == 2, run.err
    assert message in run.err
    assert run.calls == []


def test_empty_environment_value_counts_as_missing(deploy: Deploy) -> None:
    run = deploy("--bucket", "artifacts-123", "--cluster", "prod", "--services", "web", STACK_NAME="")
    assert run.code == 2 and "stack name is required" in run.err
    assert run.calls == []


# --------------------------------------------------------------------------- #
# The happy path
# --------------------------------------------------------------------------- #


def test_deploy_uploads_under_the_content_hash_and_deploys_through_the_template(deploy: Deploy, package: Path) -> None:
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    key = f"ecs-task-recycle/{sha}.zip"
    # WHEN the script deploys
    run = deploy(*REQUIRED, "--region", "eu-west-1", "--profile", "ops")
    assert run.code == 0, run.err
    # THEN the package goes to S3 under its content hash
    copy = run.call("s3", "cp")
    assert copy[copy.index("cp") + 1 :][:2] == [str(package), f"s3://artifacts-123/{key}"]
    # AND the stack is deployed from the template with the package's location
    stack = run.call("cloudformation", "deploy")
    assert stack[stack.index("--stack-name") + 1] == "recycler"
    assert Path(stack[stack.index("--template-file") + 1]) == ROOT / "cloudformation.yaml"
    assert stack[stack.index("--capabilities") + 1] == "CAPABILITY_NAMED_IAM"
    assert stack[stack.index("--s3-bucket") + 1] == "artifacts-123"  # no template size limit
    assert overrides(stack) == {
        "ArtifactBucket": "artifacts-123",
        "ArtifactKey": key,
        "TargetClusterName": "prod",
        "TargetServiceNames": "web,api",
    }
    # AND the code is never pushed around the template
    assert not any("update-function-code" in c or "lambda" in c for c in run.calls)
    # AND every call uses the region and profile
    for call in run.calls:
        assert call[:4] == ["--region", "eu-west-1", "--profile", "ops"], call
    # AND the function name comes from the stack outputs
    query = run.call("describe-stacks", "Stacks[0].Outputs[?OutputKey=='FunctionName'].OutputValue")
    assert query[query.index("--stack-name") + 1] == "recycler"
    assert sha in run.out


def test_printed_invoke_command_is_ready_to_paste(deploy: Deploy) -> None:
    from recycler.request import parse_event

    run = deploy(*REQUIRED, "--region", "eu-west-1")
    assert run.code == 0, run.err
    assert f"aws lambda invoke --region eu-west-1 --function-name {FUNCTION}" in run.out
    assert f"--function-name {ALIAS_ARN}" in run.out and "--invocation-type Event" in run.out
    assert f"aws logs tail --region eu-west-1 /aws/lambda/{FUNCTION} --follow" in run.out
    payloads = re.findall(r"--payload '([^']*)'", run.out)
    assert len(payloads) == 3
    for payload in payloads:
        request = parse_event(json.loads(payload))
        assert (request.cluster, request.service) == ("prod", "web")
    assert json.loads(payloads[0])["dry_run"] is True


def test_printed_durable_start_is_named_and_the_name_line_runs(deploy: Deploy) -> None:
    """The durable start carries --durable-execution-name, computed by a line that runs as printed."""
    from recycler.execution_name import durable_execution_name

    run = deploy(*REQUIRED, "--region", "eu-west-1")
    assert run.code == 0, run.err
    durable_start = run.out[run.out.index(f"--function-name {ALIAS_ARN}") :].split("response.json")[0]
    assert '--durable-execution-name "$NAME"' in durable_start
    name_line = next(line.strip() for line in run.out.splitlines() if line.strip().startswith("NAME=$("))
    # Run it as a user would paste it: with a plain python3 and no site-packages.
    shell = f'python3() {{ {sys.executable} -S -E "$@"; }}; {name_line}; printf %s "$NAME"'
    day_before = datetime.now(UTC).strftime("%Y%m%d")
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=False, cwd="/")
    assert result.returncode == 0, result.stderr
    days = {day_before, datetime.now(UTC).strftime("%Y%m%d")}  # a run across midnight sees either
    assert result.stdout in {durable_execution_name("prod", "web", day) for day in days}


def test_settings_come_from_the_environment_and_flags_win(deploy: Deploy) -> None:
    env = {
        "STACK_NAME": "from-env",
        "ARTIFACT_BUCKET": "env-bucket",
        "TARGET_CLUSTER": "env-cluster",
        "TARGET_SERVICES": "*",
        "AWS_REGION": "ap-southeast-2",
        "ARTIFACT_PREFIX": "builds/recycle/",
    }
    run = deploy(**env)
    assert run.code == 0, run.err
    stack = run.call("cloudformation", "deploy")
    assert stack[stack.index("--stack-name") + 1] == "from-env"
    assert stack[:2] == ["--region", "ap-southeast-2"]
    assert overrides(stack)["TargetServiceNames"] == "*"
    assert overrides(stack)["ArtifactKey"].startswith("builds/recycle/")
    assert '--payload \'{"cluster_name": "env-cluster", "service_name": "SERVICE_NAME"' in run.out
    # A flag overrides its variable
    run = deploy("--stack-name", "from-flag", **env)
    assert run.code == 0, run.err
    stack = run.call("cloudformation", "deploy")
    assert stack[stack.index("--stack-name") + 1] == "from-flag"


def test_an_uploaded_package_is_not_uploaded_again(deploy: Deploy) -> None:
    run = deploy(*REQUIRED, AWS_STUB_HEAD_OBJECT="0")
    assert run.code == 0, run.err
    assert not any("cp" in c for c in run.calls)
    assert "already in s3://" in run.out
    run.call("cloudformation", "deploy")


def test_a_failed_deploy_fails_the_script_and_reports_nothing(deploy: Deploy) -> None:
    run = deploy(*REQUIRED, AWS_STUB_FAIL_DEPLOY="1")
    assert run.code != 0
    assert not any("describe-stacks" in c for c in run.calls)
    assert "aws lambda invoke" not in run.out


def test_schedule_and_extra_parameters_become_overrides(deploy: Deploy) -> None:
    run = deploy(
        *REQUIRED,
        "--schedule",
        "cron(0 3 ? * SUN *)",
        "--schedule-service",
        "web",
        "--schedule-timezone",
        "Europe/Berlin",
        "--schedule-target",
        "durable",
        "--function-name",
        "recycler-fn",
        "--parameter",
        "LogLevel=DEBUG",
    )
    assert run.code == 0, run.err
    values = overrides(run.call("cloudformation", "deploy"))
    assert values["ScheduleExpression"] == "cron(0 3 ? * SUN *)"
    assert values["ScheduleServiceName"] == "web"
    assert values["ScheduleClusterName"] == ""
    assert values["ScheduleTimezone"] == "Europe/Berlin"
    assert values["ScheduleTarget"] == "durable"
    assert values["FunctionName"] == "recycler-fn"
    assert values["LogLevel"] == "DEBUG"


def test_an_empty_schedule_removes_it_and_no_schedule_flag_keeps_it(deploy: Deploy) -> None:
    removed = overrides(deploy(*REQUIRED, "--schedule", "").call("cloudformation", "deploy"))
    assert removed["ScheduleExpression"] == ""
    assert "ScheduleServiceName" not in removed
    kept = overrides(deploy(*REQUIRED).call("cloudformation", "deploy"))
    assert "ScheduleExpression" not in kept


def test_without_a_prebuilt_package_the_real_build_runs(deploy: Deploy, tmp_path: Path) -> None:
    # SKIP_DEPS keeps the build offline and fast; the build itself is tested in test_build.py.
    build_dir = tmp_path / "build"
    run = deploy(*REQUIRED, prebuilt=False, SKIP_DEPS="1", BUILD_DIR=str(build_dir))
    assert run.code == 0, run.err
    built = build_dir / "ecs-task-recycle.zip"
    sha = hashlib.sha256(built.read_bytes()).hexdigest()
    assert run.call("s3", "cp")[-3:-1] == [str(built), f"s3://artifacts-123/ecs-task-recycle/{sha}.zip"]
    assert "sha256:" in run.err  # the build's own report
    assert "SKIP_DEPS is set" in run.err  # and a warning that such a package is not deployable
