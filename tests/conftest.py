"""The pytest fixtures and hooks: a clean fake-AWS environment, the test bed, captured logs, and the IAM
cross-check of every engine call at the end of the session. What they use is in tests/support/."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# moto before boto3 clients (simulator imports moto first).
from support.bed import ENGINE_CALLS, Bed, simulated_bed  # noqa: E402
from support.functions import DeployedFunction  # noqa: E402
from support.handoff import FakeDurableAlias, install_durable_alias  # noqa: E402

from dev import simulator  # noqa: E402
from dev.simulator import VirtualClock  # noqa: E402
from recycler.aws import session as aws_session  # noqa: E402

# The cross-check's verdict: (line, is_failure), printed by pytest_terminal_summary.
IAM_SUMMARY: list[tuple[str, bool]] = []
_KEEP_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
    "PYTHONPATH",
    "CI",
    "HYPOTHESIS_PROFILE",
)


@pytest.fixture(autouse=True)
def fake_aws_env() -> Iterator[None]:
    """No real credentials, profiles or endpoints can leak into a test."""
    kept = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env = {
        **kept,
        **simulator.fake_aws_environment(),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    with mock.patch.dict(os.environ, env, clear=True):
        yield


@pytest.fixture
def bed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    with simulated_bed(VirtualClock()) as bed:
        # The handlers find the lock table as the template tells them; undone after the test.
        monkeypatch.setenv("LOCK_TABLE_NAME", simulator.LOCK_TABLE)
        yield bed


@pytest.fixture
def durable_alias(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> FakeDurableAlias:
    """The plain function configured to hand off, with its Lambda client answered by a fake durable alias."""
    return install_durable_alias(monkeypatch)


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line as JSON, the way Lambda's JSON log format would show it."""
    from recycler.observability.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every AWS call any engine run made in this session must be allowed by the template's role."""
    if not ENGINE_CALLS:
        return
    from support import iam

    violations = iam.check_engine_calls(ROOT / "cloudformation.yaml", ENGINE_CALLS)
    if violations:
        IAM_SUMMARY.append((f"IAM cross-check: {len(violations)} engine calls the role would refuse:", True))
        IAM_SUMMARY.extend((f"  {violation}", True) for violation in violations[:20])
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        IAM_SUMMARY.append(
            (f"IAM cross-check: all {len(ENGINE_CALLS)} recorded engine calls are allowed by the role.", False)
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the cross-check's verdict. pytest calls this after ending the "[100%]" line, so it gets its own."""
    for line, failed in IAM_SUMMARY:
        terminalreporter.write_line(line, red=failed)


@pytest.fixture
def deployed(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> DeployedFunction:
    """The deployed function, answering the CLI's Lambda calls (--invoke, --follow) on the bed."""
    function = DeployedFunction(bed)

    class Session:
        def client(self, name: str) -> Any:
            assert name == "lambda"
            return function

    monkeypatch.setattr(aws_session, "get_aws_session", lambda *args, **kwargs: Session())
    return function
