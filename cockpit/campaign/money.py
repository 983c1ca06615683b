"""Money and time: the price per GPU-hour, a budget, a deadline, and what runs cost.

A price comes from `--price-per-gpu-hour`, else $GPT_COCKPIT_PRICE_PER_GPU_HOUR, else
"price_per_gpu_hour" in the config folder's queue.json; with none there are no dollars, only
GPU-hours. A run is charged the GPU time it holds: a GPU shared by k runs charges each 1/k of
its time, a run on N GPUs N times its time (CPU runs cost no GPU-hours). A budget counts
from the start of `queue run`; a deadline is a time of day (the next one) or a date and time.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass

from cockpit.campaign.locations import PRICE_ENV, queue_config_path


class LimitError(ValueError):
    """A price, budget or deadline that cannot be used; the message is one line."""


def parse_money(text: str | float, what: str) -> float:
    """A non-negative finite number of dollars ("25", "$25", "2.49")."""
    raw = str(text).strip().lstrip("$").strip()
    try:
        value = float(raw)
    except ValueError:
        raise LimitError(f"{what} must be a number of dollars, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise LimitError(f"{what} must be a number of dollars of 0 or more, not {text!r}")
    return value


def resolve_price(option: str | float | None) -> tuple[float | None, str]:
    """(dollars per GPU-hour or None, where it came from)."""
    if option is not None:
        return parse_money(option, "--price-per-gpu-hour"), "--price-per-gpu-hour"
    env = os.environ.get(PRICE_ENV, "").strip()
    if env:
        return parse_money(env, f"${PRICE_ENV}"), f"${PRICE_ENV}"
    path = queue_config_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as exc:
        raise LimitError(f"{path}: cannot read it ({exc})") from None
    value = raw.get("price_per_gpu_hour") if isinstance(raw, dict) else None
    if value is None:
        return None, ""
    return parse_money(value, f"price_per_gpu_hour in {path}"), str(path)


def parse_deadline(text: str, now: float) -> float:
    """`HH:MM` (the next such time, within a day) or `YYYY-MM-DD HH:MM` (must be ahead)."""
    raw = text.strip()
    local_now = dt.datetime.fromtimestamp(now)
    try:
        clock = dt.datetime.strptime(raw, "%H:%M")
    except ValueError:
        clock = None
    if clock is not None:
        when = local_now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
        if when <= local_now:
            when += dt.timedelta(days=1)
        return when.timestamp()
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            when = dt.datetime.strptime(raw, fmt)
            break
        except ValueError:
            continue
    else:
        raise LimitError(f"--until wants HH:MM or YYYY-MM-DD HH:MM, not {text!r}")
    if when.timestamp() <= now:
        raise LimitError(f"--until {text} is in the past")
    return when.timestamp()


@dataclass(frozen=True)
class Limits:
    """What a night may spend: dollars, a deadline, and the price that turns hours into dollars."""

    price_per_gpu_hour: float | None = None
    budget: float | None = None  # dollars, counted from the scheduler's start
    until: float | None = None  # epoch seconds

    def check(self) -> None:
        """A budget needs a price (LimitError otherwise)."""
        if self.budget is not None and self.price_per_gpu_hour is None:
            raise LimitError(
                f"--budget needs a price per GPU-hour: --price-per-gpu-hour, ${PRICE_ENV}, "
                f"or price_per_gpu_hour in {queue_config_path()}"
            )

    def dollars(self, gpu_seconds: float) -> float | None:
        """The cost of `gpu_seconds` (None without a price)."""
        if self.price_per_gpu_hour is None:
            return None
        return gpu_seconds / 3600.0 * self.price_per_gpu_hour


def fmt_dollars(value: float | None) -> str:
    """$12.34, or - without a price."""
    return "-" if value is None else f"${value:,.2f}"
