"""Tolerant readers for values found in run.json and events.jsonl.

Every function takes what a file held and a default, and returns a value of the
field's type or the default: a reader meets files written by older or newer
versions, by hand, or cut short, and must never fail on one.
"""

from __future__ import annotations

import math
from typing import Any

from cockpit.common.numbers import as_float

# No count a writer makes (a step, a pid, tokens, bytes) comes near this; a larger one (1e308
# read as an int) would print as a 309-digit column and overflow float arithmetic.
MAX_COUNT = 2**53


def as_int(value: Any, default: Any = None) -> Any:
    """An int (a float with an integral value counts) of at most 2^53 in size; bools and
    anything else read as `default`."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value if abs(value) <= MAX_COUNT else default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value) if abs(value) <= MAX_COUNT else default
    return default


def as_str(value: Any, default: Any = None) -> Any:
    return value if isinstance(value, str) else default


def as_bool(value: Any, default: Any = None) -> Any:
    return value if isinstance(value, bool) else default


def as_dict(value: Any, default: Any = None) -> Any:
    return dict(value) if isinstance(value, dict) else default


def as_str_list(value: Any, default: Any = None) -> Any:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return default


# The reader for each annotation the run.json and event dataclasses use.
BY_ANNOTATION = {
    "int": as_int,
    "int | None": as_int,
    "float": as_float,
    "float | None": as_float,
    "str": as_str,
    "str | None": as_str,
    "bool": as_bool,
    "bool | None": as_bool,
    "dict[str, Any]": as_dict,
    "dict[str, Any] | None": as_dict,
    "list[str] | None": as_str_list,
}

# The type a well-formed value of each annotation has, as the writer produced it: a value of
# exactly this type is taken as it is (the readers above are for everything else).
EXACT_TYPE = {
    "int": int,
    "int | None": int,
    "float": float,
    "float | None": float,
    "str": str,
    "str | None": str,
    "bool": bool,
    "bool | None": bool,
}
