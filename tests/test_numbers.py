"""cockpit.common.numbers: the one test of "a number" that the run-directory readers, health and format share."""

from __future__ import annotations

import math

from cockpit.common.numbers import as_finite, as_float, finite, is_number


def test_booleans_and_text_are_not_numbers_nan_is():
    assert [is_number(v) for v in (1, 2.5, math.nan, True, "1", None)] == [1, 1, 1, 0, 0, 0]
    assert [finite(v) for v in (1, 2.5, math.inf, math.nan, False)] == [1, 1, 0, 0, 0]
    assert as_float(3) == 3.0 and isinstance(as_float(3), float) and as_float(True) is None
    assert math.isinf(as_float(-math.inf)) and as_float("2", 0.0) == 0.0
    assert as_finite(2) == 2.0 and as_finite(math.nan) is None and as_finite(True) is None
