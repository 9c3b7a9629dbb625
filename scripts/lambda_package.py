"""Helpers for lambda_build.sh: choose the runtime files, and write a reproducible zip.

``stage``   copies the Lambda entry points, every top-level module they import
            (followed transitively through the source, with ``ast``), and the
            data files into the staging folder. Nothing else from the repository
            goes in: no tests, benchmarks, simulator, demo, docs or caches.
``zip``     writes the staging folder as a zip with sorted entries, a fixed
            timestamp and normalised permissions, then prints its path, size and
            sha256. The same inputs always give the same bytes.
``files``   prints the runtime files ``stage`` would copy, one per line.

Standard library only, so any Python 3.11+ can run it.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

# The handlers Lambda loads, and the two other public faces (a user's code in the function may import them).
# The first is required; the others are packaged, with what they import, where they exist.
ENTRY_POINTS = ("lambda_function.py", "durable_function.py", "AWSSession.py", "Notification.py")
REQUIRED_ENTRY_POINT = "lambda_function.py"
# Files the code reads at run time, beside lambda_function.py.
DATA_FILES = ("input.json",)
# Modules that exist only for development. A runtime module that imports one of
# them is a packaging bug, so the build fails instead of shipping them.
DEV_ONLY_MODULES = frozenset({"dev", "simulator", "demo", "conftest", "tests", "bench", "scripts", "setup"})
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")

# 1980-01-01 is the earliest time a zip entry can carry. SOURCE_DATE_EPOCH (the
# reproducible-builds convention) overrides it.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--: Lambda needs world-readable files


class PackagingError(Exception):
    """The runtime files cannot be determined or packaged."""


def _imported_top_level_names(path: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise PackagingError(f"{path.name}: cannot parse ({e.msg}, line {e.lineno})") from e
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _local_module_files(source: Path, name: str) -> list[Path]:
    """The repository files that make up top-level module ``name``, or [] if it is not local."""
    module = source / f"{name}.py"
    if module.is_file():
        return [module]
    package = source / name
    if (package / "__init__.py").is_file():
        return sorted(p for p in package.rglob("*.py") if not SKIPPED_PARTS.intersection(p.relative_to(source).parts))
    return []


def runtime_files(source: Path) -> list[Path]:
    """Entry points, the local modules they import (transitively), and the data files."""
    if not (source / REQUIRED_ENTRY_POINT).is_file():
        raise PackagingError(f"{REQUIRED_ENTRY_POINT} not found in {source}")
    selected: dict[Path, None] = {}
    pending = [source / name for name in ENTRY_POINTS if (source / name).is_file()]
    seen_modules: set[str] = set()
    while pending:
        path = pending.pop()
        if path in selected:
            continue
        selected[path] = None
        for name in sorted(_imported_top_level_names(path)):
            if name in seen_modules:
                continue
            files = _local_module_files(source, name)
            if not files:
                continue  # standard library or a third-party dependency
            if name in DEV_ONLY_MODULES or name.startswith("test_"):
                raise PackagingError(
                    f"{path.relative_to(source)} imports {name!r}, a development-only module that "
                    "is never packaged; move that import out of the runtime code"
                )
            seen_modules.add(name)
            pending.extend(files)
    for name in DATA_FILES:
        data = source / name
        if not data.is_file():
            raise PackagingError(f"{name} not found in {source}")
        selected[data] = None
    return sorted(selected, key=lambda p: p.relative_to(source).as_posix())


def stage(source: Path, target: Path) -> list[str]:
    copied = []
    for path in runtime_files(source):
        relative = path.relative_to(source)
        destination = target / relative
        if destination.exists():
            raise PackagingError(f"{relative} would overwrite a file a dependency installed")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        copied.append(relative.as_posix())
    return copied


def _zip_date_time() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ZIP_EPOCH
    moment = time.gmtime(max(int(epoch), 315532800))  # not before 1980-01-01
    return (moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min, moment.tm_sec)


def _packaged(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.is_file() and not SKIPPED_PARTS.intersection(parts) and not path.name.endswith(SKIPPED_SUFFIXES)


def write_zip(root: Path, output: Path) -> tuple[int, str]:
    """Zip ``root`` reproducibly into ``output``; return (size in bytes, sha256 hex)."""
    files = sorted((p for p in root.rglob("*") if _packaged(p, root)), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise PackagingError(f"nothing to package in {root}")
    date_time = _zip_date_time()
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=date_time)
            info.create_system = 3  # Unix, so external_attr carries the mode
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(output)
    data = output.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    files_cmd = commands.add_parser("files", help="print the runtime files")
    files_cmd.add_argument("--source", type=Path, required=True)
    stage_cmd = commands.add_parser("stage", help="copy the runtime files into the staging folder")
    stage_cmd.add_argument("--source", type=Path, required=True)
    stage_cmd.add_argument("--target", type=Path, required=True)
    zip_cmd = commands.add_parser("zip", help="write the staging folder as a reproducible zip")
    zip_cmd.add_argument("--source", type=Path, required=True)
    zip_cmd.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "files":
            for path in runtime_files(args.source.resolve()):
                print(path.relative_to(args.source.resolve()).as_posix())
        elif args.command == "stage":
            for name in stage(args.source.resolve(), args.target.resolve()):
                print(f"  + {name}")
        else:
            size, digest = write_zip(args.source.resolve(), args.output.resolve())
            print(f"zip:    {args.output}")
            print(f"size:   {size} bytes")
            print(f"sha256: {digest}")
    except PackagingError as e:
        print(f"lambda_package: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
