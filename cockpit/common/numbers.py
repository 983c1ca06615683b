"""What counts as a number in a value read back from a file or an event.

One owner for the test the run-directory readers (cockpit.rundir), the health rules
and the formatters all make: an int or a float, and never a bool (json reads `true`
as True, which is an int to Python). A leaf module: it imports nothing of cockpit,
so every layer can use it without an import cycle (cockpit.rundir imports
cockpit.health, whose rules read event fields too).
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard


def is_number(value: Any) -> TypeGuard[int | float]:
    """An int or a float, NaN and infinities included; booleans are not numbers here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> TypeGuard[int | float]:
    """A finite int or float (booleans are not numbers here)."""
    return is_number(value) and math.isfinite(value)


def as_float(value: Any, default: Any = None) -> Any:
    """A float (ints widen; NaN and infinities are kept); bools and anything else read as `default`."""
    return float(value) if is_number(value) else default


def as_finite(value: Any) -> float | None:
    """A finite number as a float; anything else (NaN, infinities, booleans, missing) as None."""
    return float(value) if finite(value) else None
