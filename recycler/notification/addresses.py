"""What an email address, an SMTP host and a header value may look like.

Shared by the config (which validates them once, at load) and the renderer
(which checks every header value again before it is set).
"""

from __future__ import annotations

import ipaddress
import re
from email.headerregistry import Address
from typing import Any

from recycler.model.errors import ConfigError

# Longest "Display Name <local@domain>" accepted: an addr-spec is at most 254
# characters (RFC 5321), which leaves ample room for a name. Checked before any
# pattern runs, so a pathological value costs nothing.
MAX_ADDRESS_CHARS = 512

# RFC 5321 dot-atom local part and an ASCII domain. Internationalised
# addresses (SMTPUTF8) are deliberately not accepted. Every pattern is ASCII-only,
# used with fullmatch, and free of overlapping quantifiers, so it runs in linear time.
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"(?P<local>{_LOCAL_PART})@(?P<domain>{_LABEL}(?:\.{_LABEL})*)", re.ASCII)
# The display name is a quoted string (then blanks) or a run of anything but <, > and ".
# The old lazy name followed by \s* let both take the same blanks: quadratic on long runs of spaces.
_NAME_ADDR = re.compile(r'(?P<name>"[^"]*"[ \t]*|[^<>"]*)<(?P<addr>[^<>]+)>', re.ASCII)
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)


def parse_address(raw: Any, name: str) -> str:
    """Validate ``a@b.c`` or ``Display Name <a@b.c>`` and return the header form."""
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(name, "must be a non-empty email address string")
    if len(raw) > MAX_ADDRESS_CHARS:
        raise ConfigError(name, f"is longer than {MAX_ADDRESS_CHARS} characters")
    if unsafe_header_char(raw):
        raise ConfigError(
            name,
            "must not contain CR, LF or other control characters (header injection)",
        )
    text = raw.strip()
    display_name = ""
    match = _NAME_ADDR.fullmatch(text)
    if match:
        display_name = match.group("name").strip().strip('"').strip()
        text = match.group("addr").strip()
    spec = _ADDR_SPEC.fullmatch(text)
    if not spec or len(text) > 254 or len(spec.group("local")) > 64:
        raise ConfigError(name, "is not a valid email address (expected name@example.com)")
    domain = spec.group("domain")
    if "." not in domain and domain.lower() != "localhost":
        raise ConfigError(name, "is not a valid email address (the domain needs a dot)")
    try:
        return str(Address(display_name=display_name, addr_spec=text))
    except (ValueError, IndexError) as e:
        raise ConfigError(name, "is not a valid email address") from e


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsafe_header_char(value: str) -> bool:
    """True for CR, LF, any other line separator, or a control character."""
    return any((ord(ch) < 32 and ch != "\t") or ch in "\x7f\x85\u2028\u2029" for ch in value)


def addr_spec(entry: str) -> str:
    """The bare ``local@domain`` of an entry ``parse_address`` accepted, for the SMTP envelope."""
    match = _NAME_ADDR.fullmatch(entry)
    return match.group("addr").strip() if match else entry.strip()
