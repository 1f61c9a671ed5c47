"""An agent's ``Config`` dataclass to and from JSON (``AGENT_CONFIG``, ``GET /config``, checkpoints).

Any frozen dataclass of ints, floats, bools, strings and tuples works: fields keep their declared
defaults' types, tuples travel as JSON lists, an int is accepted for a float field, and an unknown
or mistyped field is refused with its name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Every field of ``config`` as JSON-able values (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


def config_from_dict(cls: type[C], overrides: dict[str, Any]) -> C:
    """``cls`` with the fields of ``overrides`` over its defaults; raises ValueError naming any
    unknown or mistyped field (and whatever ``cls.__post_init__`` refuses)."""
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in overrides.items():
        default = getattr(defaults, name)
        if isinstance(default, tuple) and isinstance(value, list | tuple):
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise ValueError(
                f"{cls.__name__}.{name} must be {type(default).__name__}, got {value!r}"
            )
        values[name] = value
    return dataclasses.replace(defaults, **values)
