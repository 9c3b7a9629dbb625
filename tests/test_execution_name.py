"""The durable execution's name: valid, stable and unique per service, and the CLI that prints it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import durable_function
from recycler.hosts import execution_name
from recycler.model.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_execution_name_is_valid_stable_and_unique_per_service() -> None:
    valid = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
    name = execution_name.durable_execution_name("prod", "web")
    assert valid.match(name) and name.startswith("recycle-prod-web-")
    # Names and ARNs give the same name; another service never does, even one that reads the same.
    arn = "arn:aws:ecs:eu-west-1:123456789012:service/prod/web"
    assert execution_name.durable_execution_name("prod", arn) == name
    assert execution_name.durable_execution_name("a-b", "c") != execution_name.durable_execution_name("a", "b-c")
    # Long names are cut to 64 and stay apart by their hash.
    long_a = execution_name.durable_execution_name("c" * 200, "s" * 200 + "a")
    long_b = execution_name.durable_execution_name("c" * 200, "s" * 200 + "b")
    assert len(long_a) == 64 and valid.match(long_a) and long_a != long_b
    # A run key lets the same service be recycled again while the last execution is retained.
    dated = execution_name.durable_execution_name("prod", "web", run_key="20260107")
    assert dated == f"{name}-20260107" and valid.match(dated)
    assert len(execution_name.durable_execution_name("c" * 200, "s" * 200, run_key="x" * 20)) == 64
    for bad in ("2026/01/07", "", "k" * 21):
        with pytest.raises(ConfigError):
            execution_name.durable_execution_name("prod", "web", run_key=bad)
    with pytest.raises(ConfigError):
        execution_name.durable_execution_name("bad name", "web")


def test_execution_name_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert durable_function.main(["--cluster", "prod", "--service", "web", "--run-key", "20260107"]) == 0
    assert capsys.readouterr().out.strip() == execution_name.durable_execution_name("prod", "web", "20260107")
    assert durable_function.main(["--cluster", "prod", "--service", "web", "--run-key", "a/b"]) == 2


def test_a_run_key_with_a_trailing_newline_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        execution_name.durable_execution_name("prod", "web", run_key="abc\n")
    assert refused.value.field == "run_key"
    assert durable_function.main(["--cluster", "prod", "--service", "web", "--run-key", "abc\n"]) == 2
    assert capsys.readouterr().err.startswith("error: --run-key: must be 1-20 letters")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--cluster", "c\u0661", "--service", "s"], "--cluster"),
        (["--cluster", "c", "--service", "bad name"], "--service"),
        (["--cluster", "c", "--service", "s", "--run-key", "a/b"], "--run-key"),
    ],
)
def test_execution_name_cli_names_the_flag_the_user_typed(argv: list[str], flag: str) -> None:
    # GIVEN the name CLI as the README runs it: `python3 durable_function.py`, with no site-packages (no boto3)
    result = subprocess.run(
        [sys.executable, "-S", str(ROOT / "durable_function.py"), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # THEN it runs on the standard library alone, and its error names the flag, not the event field
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {flag}: "), result.stderr
    assert "Traceback" not in result.stderr
