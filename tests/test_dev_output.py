"""What a developer sees: `make` says what each venv step does, and pytest's own lines stay apart.

Each of these failed before its fix (issue 12, items 19 and 20).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def _recipe(target: str) -> list[str]:
    """The command lines of a Makefile rule, without their leading tab."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line[1:])
    return recipe


def test_each_venv_build_step_says_what_it_does_before_it_starts() -> None:
    recipe = _recipe("$(STAMP)")
    # What each step's line must name: the virtualenv, pip's upgrade, the requirements file it installs.
    steps = [
        (i, line)
        for i, line in enumerate(recipe)
        if not line.startswith("@echo ") and re.search(r"\bpip\b|-m venv\b", line)
    ]
    assert len(steps) >= 3, recipe
    for i, command in steps:
        before = recipe[i - 1] if i else ""
        assert before.startswith("@echo "), f"no progress line before {command!r}"
        said = before.lower()
        if "-m venv" in command:
            assert "virtualenv" in said or "venv" in said, (before, command)
        elif requirements := re.search(r"-r\s+(\S+)", command):
            assert requirements.group(1) in said, (before, command)
        else:
            assert "pip" in said, (before, command)
    dev = [recipe[i - 1] for i, line in steps if "-r requirements-dev.txt" in line]
    assert dev and "about a minute" in dev[0], dev


_TINY_TEST = """
def test_one_engine_run(bed):
    bed.add_service(tasks=1)
    assert bed.run(wait_time=0).status == "succeeded"
"""


def test_the_iam_cross_check_gets_a_line_of_its_own(tmp_path: Path) -> None:
    # GIVEN a one-test session that loads the repository's conftest (and so its session-end IAM cross-check)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_tiny.py").write_text(_TINY_TEST)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "test_tiny.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # THEN the progress line ends at "[100%]", and the cross-check's verdict starts a line of its own
    assert any(line.rstrip().endswith("[100%]") for line in lines), result.stdout
    verdicts = [line for line in lines if "IAM cross-check" in line]
    assert verdicts, result.stdout
    # ...and ends it: nothing of pytest's before or after it on the same line.
    verdict = re.compile(r"IAM cross-check: (all \d+ recorded engine calls are allowed by the role\.|.* would refuse:)")
    assert all(verdict.fullmatch(line.rstrip()) for line in verdicts), result.stdout
    assert not any("[100%]" in line and "IAM cross-check" in line for line in lines), result.stdout
