"""Raw setting values (YAML, environment strings, flags) turned into typed ones.

Scalars as before: booleans from ``true``/``off``..., integers, floats,
strings. Lists (``tuple[str, ...]`` settings) come as YAML lists, or as JSON
or comma-separated text; mappings (``Mapping[str, str]``) as YAML mappings
or JSON objects. A list or mapping arrives frozen (a tuple, a read-only
mapping) so ``Settings`` stays immutable.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from armada_jobservice.server.errors import ConfigError


def _coerce_list(name: str, value: Any) -> tuple[str, ...]:
    # A string (environment, flag) is JSON when it looks like a list, else comma-separated.
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(name, "expected a list of strings")
    return tuple(str(v).strip() for v in value if str(v).strip())


def _coerce_mapping(name: str, value: Any) -> Mapping[str, str]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, Mapping) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise ConfigError(name, "expected a mapping of names to strings")
    return types.MappingProxyType({str(k): str(v) for k, v in value.items()})


def coerce_as(kind: Any, name: str, value: Any, *, secret: bool = False) -> Any:
    """*value* of setting *name* as *kind*; ``ConfigError`` naming *name* if it is not one.

    The error repeats the value unless the setting is a *secret*.
    """
    if value is None:
        return None
    origin = typing.get_origin(kind)
    try:
        if origin is tuple:
            return _coerce_list(name, value)
        if origin is Mapping:
            return _coerce_mapping(name, value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str | int | float):
            raise ValueError(value)
        return str(value)
    except (TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        shown = "a secret" if secret else repr(value)
        raise ConfigError(name, f"expected {kind.__name__}, got {shown}") from exc
