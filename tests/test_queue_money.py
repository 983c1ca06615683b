"""Price, budget and deadline: where a price comes from, what a deadline means, what a run costs."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from cockpit.campaign.locations import queue_config_path
from cockpit.campaign.money import (
    LimitError,
    Limits,
    fmt_dollars,
    parse_deadline,
    parse_money,
    resolve_price,
)


def test_the_price_comes_from_the_option_then_the_variable_then_the_config_file(monkeypatch):
    assert resolve_price(None) == (None, "")
    path = queue_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"price_per_gpu_hour": 2.49}))
    assert resolve_price(None) == (2.49, str(path))
    monkeypatch.setenv("GPT_COCKPIT_PRICE_PER_GPU_HOUR", "$3")
    assert resolve_price(None)[0] == 3.0
    assert resolve_price("1.5") == (1.5, "--price-per-gpu-hour")


def test_a_config_file_that_does_not_parse_is_one_line():
    path = queue_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.raises(LimitError, match="cannot read it"):
        resolve_price(None)


@pytest.mark.parametrize("text", ["lots", "-1", "nan", "inf", ""])
def test_money_must_be_a_finite_number_of_dollars(text):
    with pytest.raises(LimitError, match="--budget"):
        parse_money(text, "--budget")


def test_a_time_of_day_is_the_next_one():
    evening = dt.datetime(2026, 12, 6, 23, 0).timestamp()
    assert dt.datetime.fromtimestamp(parse_deadline("07:00", evening)) == dt.datetime(
        2026, 12, 7, 7, 0
    )
    morning = dt.datetime(2026, 12, 6, 5, 0).timestamp()
    assert dt.datetime.fromtimestamp(parse_deadline("07:00", morning)) == dt.datetime(
        2026, 12, 6, 7, 0
    )


def test_a_date_in_the_past_is_refused():
    now = dt.datetime(2026, 12, 6, 12, 0).timestamp()
    assert parse_deadline("2026-12-07 07:00", now) > now
    with pytest.raises(LimitError, match="in the past"):
        parse_deadline("2026-12-06 07:00", now)
    with pytest.raises(LimitError, match="HH:MM"):
        parse_deadline("25:99", now)


def test_dollars_need_a_price_and_a_budget_needs_one_too():
    assert Limits().dollars(3600) is None and fmt_dollars(None) == "-"
    assert Limits(price_per_gpu_hour=2.0).dollars(1800) == pytest.approx(1.0)
    assert fmt_dollars(1234.5) == "$1,234.50"
    with pytest.raises(LimitError, match="--budget needs a price"):
        Limits(budget=10).check()
