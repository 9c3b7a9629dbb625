"""The README agrees with the code: its payloads parse, its tables name every field, its commands exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recycler import cli
from recycler.request import _EVENT_FIELDS, parse_event
from recycler.settings import _RECYCLE_LIMITS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    start = README.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    rest = README[start + len(heading) + 2 :]
    end = re.search(rf"\n{level} ", rest)
    return rest[: end.start()] if end else rest


def _table_keys(section: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def test_every_payload_in_the_readme_is_a_valid_event() -> None:
    payloads = re.findall(r"--payload '([^']*)'", README)
    assert len(payloads) >= 5
    for payload in payloads:
        parse_event(json.loads(payload))


def test_every_example_event_in_the_event_section_is_valid() -> None:
    examples = re.findall(r"^\{\"cluster_name\".*\}$", _section("## The event"), flags=re.MULTILINE)
    assert len(examples) >= 3
    for example in examples:
        parse_event(json.loads(example))


def test_the_event_table_has_a_row_for_every_field_and_no_other() -> None:
    assert _table_keys(_section("## The event")) == _EVENT_FIELDS


def test_the_recycle_table_has_a_row_for_every_key() -> None:
    assert set(_RECYCLE_LIMITS) <= _table_keys(_section("### `recycle` (optional)"))


def test_every_cli_flag_the_readme_names_exists(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    known = set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out))
    section = _section("## Local CLI against real AWS")
    named = set(re.findall(r"`(--[a-z][a-z-]+)", section)) | set(
        re.findall(r"lambda_function\.py[^\n]*?( --[a-z-]+)", section)
    )
    named = {flag.strip() for flag in named}
    assert named and named <= known, named - known


def test_every_durable_start_in_the_readme_is_named() -> None:
    """An asynchronous start of the durable alias carries --durable-execution-name (idempotent starts)."""
    commands = re.findall(r"^ *aws lambda invoke(?:[^\n]*\\\n)*[^\n]*", README, flags=re.MULTILINE)
    durable_starts = [c for c in commands if "--invocation-type Event" in c]
    assert len(durable_starts) >= 2
    for command in durable_starts:
        assert '--durable-execution-name "$NAME"' in command, command


def test_the_prerequisites_say_aws_cli_v2_is_required() -> None:
    prerequisites = _section("### Prerequisites")
    assert "AWS CLI v2" in prerequisites and "v1 is not supported" in prerequisites


def test_the_plain_invocation_capacity_is_stated_one_way() -> None:
    """The README once said "about 20 tasks" in one place and 11 in another; the benchmark's 11 is the figure."""
    assert "about 20 tasks" not in README
    claims = set(re.findall(r"(\d+) tasks one at a time", README))
    assert claims <= {"11", "200"}, claims
