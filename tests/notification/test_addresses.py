"""Address parsing runs in linear time, and the name-addr forms still parse."""

from __future__ import annotations

import time

import pytest

from recycler.model.errors import ConfigError
from recycler.notification.addresses import MAX_ADDRESS_CHARS
from recycler.notification.settings import parse_notification_config

from .helpers import config_for, email_section, smtp_section

PATHOLOGICAL = {
    "spaces": " " * 30_000,
    "spaces-then-x": " " * 30_000 + "x",
    "name-without-bracket": "a" * 30_000,
    "name-then-spaces": "a" + " " * 30_000 + "b",
    "spaces-before-bracket": "a" + " " * 30_000 + "<",
    "spaces-before-address": "a" + " " * 30_000 + "<x",
    "tabs-inside": "a" + "\t" * 30_000 + "b",
    "open-brackets": "<" * 30_000,
    "quote-then-spaces": '"' + " " * 30_000,
    "quoted-then-spaces": '"a"' + " " * 30_000 + "x",
    "long-local-part": "a" * 30_000 + "@example.com",
    "long-domain": "a@" + "a" * 30_000,
    "dotted-domain": "a@" + "a." * 15_000,
    "just-under-the-limit": " " * (MAX_ADDRESS_CHARS - 1) + "x",
    "quoted-under-the-limit": '"a"' + " " * (MAX_ADDRESS_CHARS - 10) + "x",
}


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
@pytest.mark.parametrize("value", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_given_a_pathological_address_when_parsing_then_it_is_refused_quickly(field: str, value: str) -> None:
    # GIVEN a value built to make a backtracking pattern work hard
    email = email_section(**{field: [value]})
    # WHEN it is parsed
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587), email)
    elapsed = time.perf_counter() - started
    # THEN it is refused, naming the entry, in well under half a second
    assert caught.value.field == f"emailNotification.{field}[0]"
    assert elapsed < 0.5, f"{elapsed:.2f} s"


def test_given_too_many_recipients_when_parsing_then_the_list_is_refused_before_each_is_parsed() -> None:
    email = email_section(to=[" " * 400] * 100_000)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(smtp_section(587), email)
    assert caught.value.field == "emailNotification.to"
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('"Doe, John"   <john@example.com>', '"Doe, John" <john@example.com>'),
        ("Team Lead<lead@example.com>", "Team Lead <lead@example.com>"),
        ("  Team   Lead   <lead@example.com>  ", "Team   Lead <lead@example.com>"),
        ("<bare@example.com>", "bare@example.com"),
    ],
)
def test_given_name_addr_forms_when_parsing_then_they_still_parse(entry: str, expected: str) -> None:
    assert config_for(smtp_section(587), email_section(to=[entry])).to == (expected,)
