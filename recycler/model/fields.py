"""Checks shared by the event and input.json: each raises a ConfigError naming the field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, overload

from recycler.model.errors import ConfigError, clip, shown


def unknown_keys(section: Mapping[Any, Any], allowed: Iterable[str]) -> list[str]:
    """The keys not in ``allowed``, sorted, as text (to be clipped before they are echoed)."""
    return sorted(str(k) for k in set(section) - set(allowed))


def reject_unknown(
    section: Mapping[Any, Any], allowed: Iterable[str], prefix: str = "", what: str = "unknown key"
) -> None:
    """Refuse the first unknown key, clipped, and list the allowed ones: a typo is fixed in one go."""
    names = sorted(allowed)
    unknown = unknown_keys(section, names)
    if unknown:
        field = f"{prefix}.{clip(unknown[0])}" if prefix else clip(unknown[0])
        raise ConfigError(field, f"{what} (allowed: {', '.join(names)})")


def require_str(event: Mapping[str, Any], name: str) -> str:
    if name not in event or event[name] is None:
        raise ConfigError(name, "is required")
    value = event[name]
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ConfigError(name, "must not be empty")
    return value.strip()


def optional_bool(event: Mapping[str, Any], name: str, default: bool) -> bool:
    if name not in event:
        return default
    value = event[name]
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be a JSON boolean (true or false), got {shown(value)}")
    return value


@overload
def optional_int(event: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int: ...


@overload
def optional_int(event: Mapping[str, Any], name: str, default: None, low: int, high: int) -> int | None: ...


def optional_int(event: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer field in [low, high]; absent (or JSON null where the default is None) gives the default."""
    if name not in event or (default is None and event[name] is None):
        return default
    value = event[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {shown(value)}")
    return value
