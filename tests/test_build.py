"""lambda_build.sh: a clean, reproducible package of the runtime files and nothing else.

Most tests build with SKIP_DEPS=1 (no network, well under a second). One test
runs the full build, with the pinned dependencies from PyPI (or pip's cache),
and imports the handlers from the unpacked zip in an isolated interpreter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "lambda_build.sh"
PACKAGER = ROOT / "scripts" / "lambda_package.py"
# What ships: the top-level faces and the recycler package. dev/ (simulator, demo, benchmark) never does.
SHIPPED_PACKAGE = "recycler"
FORBIDDEN_PARTS = {"tests", "dev", "bench", "scripts", ".ci", "__pycache__", ".venv", "build", ".git", "bin"}


def build(build_dir: Path, deps: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(build_dir)),
        "BUILD_DIR": str(build_dir),
        **{k: os.environ[k] for k in ("PYENV_ROOT", "TMPDIR") if k in os.environ},
        **({} if deps else {"SKIP_DEPS": "1"}),
        **env,
    }
    return subprocess.run([str(BUILD)], env=environment, capture_output=True, text=True, timeout=600, check=False)


def built(build_dir: Path, **env: str) -> Path:
    result = build(build_dir, False, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return build_dir / "ecs-task-recycle.zip"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_project_files() -> set[str]:
    faces = {p.name for p in ROOT.glob("*.py")}
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / SHIPPED_PACKAGE).rglob("*.py")}
    return faces | package | {"input.json"}


def project_files(package: Path) -> set[str]:
    """Entries that came from the repository: everything no dependency's RECORD lists."""
    archive = zipfile.ZipFile(package)
    names = archive.namelist()
    from_dependencies = set()
    for record in (n for n in names if n.endswith(".dist-info/RECORD")):
        from_dependencies |= {line.split(",", 1)[0] for line in archive.read(record).decode().splitlines()}
    return {n for n in names if n not in from_dependencies and ".dist-info/" not in n}


# --------------------------------------------------------------------------- #
# Contents
# --------------------------------------------------------------------------- #


def test_package_holds_exactly_the_runtime_files(tmp_path: Path) -> None:
    # GIVEN the repository WHEN it is built without dependencies
    package = built(tmp_path / "build")
    names = zipfile.ZipFile(package).namelist()
    # THEN it holds the runtime modules and input.json, and nothing else
    assert set(names) == expected_project_files()
    assert "lambda_function.py" in names and "recycler/run/engine.py" in names
    for name in names:
        assert not FORBIDDEN_PARTS.intersection(Path(name).parts), name
        assert not name.endswith((".pyc", ".md", ".txt", ".sh")) and name != "Makefile", name


def test_entries_are_sorted_dated_1980_and_world_readable(tmp_path: Path) -> None:
    package = built(tmp_path / "build")
    infos = zipfile.ZipFile(package).infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
        assert info.external_attr >> 16 == 0o100644, info.filename
        assert not info.is_dir()


def test_build_prints_path_size_and_sha256(tmp_path: Path) -> None:
    result = build(tmp_path / "build")
    assert result.returncode == 0, result.stderr
    package = tmp_path / "build" / "ecs-task-recycle.zip"
    lines = dict(
        line.split(":", 1) for line in result.stdout.splitlines() if line.startswith(("zip:", "size:", "sha256:"))
    )
    assert Path(lines["zip"].strip()) == package
    assert lines["size"].strip() == f"{package.stat().st_size} bytes"
    assert lines["sha256"].strip() == sha256(package)


def test_build_starts_from_a_clean_folder(tmp_path: Path) -> None:
    build_dir = tmp_path / "build"
    (build_dir / "package").mkdir(parents=True)
    (build_dir / "package" / "stale_module.py").write_text("x = 1\n")
    (build_dir / "leftover.txt").write_text("old\n")
    package = built(build_dir)
    assert "stale_module.py" not in zipfile.ZipFile(package).namelist()
    assert not (build_dir / "leftover.txt").exists()


# --------------------------------------------------------------------------- #
# Reproducibility
# --------------------------------------------------------------------------- #


def copy_of_repository(destination: Path) -> Path:
    """The build inputs, copied with fresh timestamps (shutil.copy, not copy2)."""
    (destination / "scripts").mkdir(parents=True)
    for path in [*ROOT.glob("*.py"), ROOT / "input.json", BUILD, *ROOT.glob("requirements*.txt")]:
        shutil.copy(path, destination / path.name)
    for path in (ROOT / SHIPPED_PACKAGE).rglob("*.py"):
        (destination / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, destination / path.relative_to(ROOT))
    shutil.copy(PACKAGER, destination / "scripts" / PACKAGER.name)
    shutil.copy(ROOT / "scripts" / "lambda-constraints.txt", destination / "scripts")
    return destination


def test_two_builds_of_the_same_sources_have_the_same_hash(tmp_path: Path) -> None:
    first = built(tmp_path / "one")
    # GIVEN the same sources elsewhere, with other timestamps
    copy = copy_of_repository(tmp_path / "copy")
    second = tmp_path / "two" / "ecs-task-recycle.zip"
    result = subprocess.run(
        [str(copy / "lambda_build.sh")],
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(tmp_path)),
            **{k: os.environ[k] for k in ("PYENV_ROOT",) if k in os.environ},
            "BUILD_DIR": str(second.parent),
            "SKIP_DEPS": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # THEN the zip is byte for byte the same
    assert sha256(first) == sha256(second)
    # AND a fixed SOURCE_DATE_EPOCH changes the timestamps, reproducibly
    dated = built(tmp_path / "three", SOURCE_DATE_EPOCH="1767225600")
    assert sha256(dated) != sha256(first)
    assert sha256(dated) == sha256(built(tmp_path / "four", SOURCE_DATE_EPOCH="1767225600"))


def test_full_build_bundles_the_pinned_dependencies_reproducibly(tmp_path: Path) -> None:
    # GIVEN a full build (pinned boto3 and the durable SDK, for the Lambda platform)
    result = build(tmp_path / "one", deps=True)
    if result.returncode != 0:
        pytest.fail(f"full build failed (PyPI or pip's cache must be reachable):\n{result.stdout}{result.stderr}")
    package = tmp_path / "one" / "ecs-task-recycle.zip"
    names = zipfile.ZipFile(package).namelist()
    # THEN the project files are the same as without dependencies, and the dependencies are there
    assert project_files(package) == expected_project_files()
    for module in ("boto3", "botocore", "aws_durable_execution_sdk_python", "urllib3"):
        assert f"{module}/__init__.py" in names, module
    assert "boto3-1.44.8.dist-info/METADATA" in names
    assert not any(n.startswith("bin/") or "__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(Path(n).parts[0] in {"tests", "dev", "bench", "scripts"} for n in names)
    # AND the handlers import from the unpacked zip alone, with no site-packages
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(package).extractall(unpacked)
    handlers = ["lambda_function"] + (["durable_function"] if (ROOT / "durable_function.py").exists() else [])
    probe = (
        f"import {', '.join(handlers)}, boto3, aws_durable_execution_sdk_python, sys;"
        f"assert boto3.__file__.startswith({str(unpacked)!r}), boto3.__file__;"
        "print(boto3.__version__)"
    )
    isolated = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": str(unpacked), "AWS_REGION": "us-east-1", "PATH": os.environ["PATH"]},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert isolated.returncode == 0, isolated.stderr
    assert isolated.stdout.strip() == "1.44.8"
    # AND a second full build has the same hash
    again = build(tmp_path / "two", deps=True)
    assert again.returncode == 0, again.stderr
    assert sha256(tmp_path / "two" / "ecs-task-recycle.zip") == sha256(package)


# --------------------------------------------------------------------------- #
# Guards
# --------------------------------------------------------------------------- #


def fake_repo(tmp_path: Path, modules: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(BUILD, repo / "lambda_build.sh")
    shutil.copy2(PACKAGER, repo / "scripts" / "lambda_package.py")
    (repo / "input.json").write_text("{}\n")
    for name, source in modules.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(source)
    return repo


def packaged_files(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / "lambda_package.py"), "files", "--source", str(repo)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_only_modules_the_handlers_import_are_packaged(tmp_path: Path) -> None:
    repo = fake_repo(
        tmp_path,
        {
            "lambda_function.py": "import engine\nfrom helpers.text import fmt\nimport json\n",
            "durable_function.py": "def lambda_handler(event, context):\n    from engine import run\n",
            "engine.py": "import boto3\nfrom errors import Oops\n",
            "errors.py": "class Oops(Exception): ...\n",
            "helpers/__init__.py": "",
            "helpers/text.py": "def fmt(): ...\n",
            "helpers/__pycache__/text.cpython-313.pyc": "",
            "simulator.py": "import engine\n",
            "unused.py": "x = 1\n",
        },
    )
    result = packaged_files(repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "durable_function.py",
        "engine.py",
        "errors.py",
        "helpers/__init__.py",
        "helpers/text.py",
        "input.json",
        "lambda_function.py",
    ]


def test_a_runtime_import_of_a_dev_only_module_fails_the_build(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path, {"lambda_function.py": "import simulator\n", "simulator.py": "x = 1\n"})
    result = packaged_files(repo)
    assert result.returncode == 1
    assert "development-only module" in result.stderr and "simulator" in result.stderr


def test_missing_handler_or_input_json_fails_the_build(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path, {"recycle.py": "x = 1\n"})
    result = packaged_files(repo)
    assert result.returncode == 1 and "lambda_function.py not found" in result.stderr
    (repo / "lambda_function.py").write_text("x = 1\n")
    (repo / "input.json").unlink()
    result = packaged_files(repo)
    assert result.returncode == 1 and "input.json not found" in result.stderr


def test_build_refuses_to_delete_its_own_sources(tmp_path: Path) -> None:
    # A copy of the build in a scratch repository, so a broken guard destroys only the copy.
    repo = fake_repo(tmp_path, {"lambda_function.py": "x = 1\n"})
    for target in (repo, tmp_path):
        result = subprocess.run(
            [str(repo / "lambda_build.sh"), "--skip-deps"],
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "BUILD_DIR": str(target)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert "refusing" in result.stderr
        assert (repo / "lambda_function.py").exists()


def test_build_rejects_unknown_arguments_and_a_missing_python(tmp_path: Path) -> None:
    result = subprocess.run([str(BUILD), "--frobnicate"], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Usage:" in result.stderr
    result = build(tmp_path / "build", PYTHON=str(tmp_path / "no-such-python"))
    assert result.returncode == 1 and "PYTHON=" in result.stderr
