"""Range checks of settings: each names the setting, the rule and the value; NaN never passes."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from expokit.core.checks import finite, in_range, positive, whole


def test_values_in_range_pass_unchanged() -> None:
    assert positive("x", 0.5) == 0.5
    assert finite("x", -3) == -3
    assert in_range("x", 1.0, 0, 1, low_open=True) == 1.0
    assert whole("n", 4, 1, 4) == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: positive("max roll", -1, "deg"),
            r"max roll must be a finite number > 0 \(deg\), got -1",
        ),
        (lambda: positive("max roll", 0.0), r"max roll must be a finite number > 0, got 0.0"),
        (
            lambda: positive("max shift", math.nan, "px"),
            r"max shift must be a finite number \(px\), got nan",
        ),
        (lambda: finite("expected EV", math.inf), r"expected EV must be a finite number, got inf"),
        (lambda: positive("gain", True), r"gain must be a number, got True"),
        (lambda: positive("gain", "0.1"), r"gain must be a number, got '0.1'"),
        (
            lambda: in_range("coverage", 0, 0, 1, low_open=True),
            r"coverage must be in \(0, 1\], got 0",
        ),
        (lambda: in_range("ratio", 1, 0, 1, high_open=True), r"ratio must be in \[0, 1\), got 1"),
        (lambda: whole("pairs", 0, 1), r"pairs must be >= 1, got 0"),
        (lambda: whole("pairs", 21, 1, 20), r"pairs must be in 1..20, got 21"),
        (lambda: whole("pairs", 2.0, 1), r"pairs must be a whole number, got 2.0"),
        (lambda: whole("pairs", False, 0), r"pairs must be a whole number, got False"),
    ],
)
def test_a_value_out_of_range_names_the_setting_rule_and_value(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()
