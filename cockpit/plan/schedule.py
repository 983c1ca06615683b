"""Learning-rate schedules as pure functions of the optimizer step (0-based).

The one definition of the schedules: the trainer sets each step's lr from
`lr_at`, and the health rules (cockpit.health.rules.lr) check the lr a run
reports against the same function. No torch, no numpy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cockpit.plan.presets import TrainConfig

__all__ = [
    "constant_lr",
    "cosine_lr",
    "lr_at",
    "lr_at_time",
    "time_warmdown",
    "wallclock_warmdown_factor",
    "warmdown_lr",
    "warmup_factor",
]


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup from ~0 to 1 over `warmup_steps` (nanoGPT's (it+1)/(warmup+1)); 1 after."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return 1.0


def cosine_lr(
    step: int,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    max_steps: int,
    hold_steps: int = 0,
) -> float:
    """nanoGPT's get_lr: linear warmup, then cosine from lr down to min_lr at max_steps.

    With `hold_steps` > 0 the cosine reaches min_lr at max_steps - hold_steps instead,
    and min_lr is held for the last `hold_steps` steps (seed 002's plan: cosine over
    steps 1000-54000, then min_lr for the last 6000 of 60000).
    """
    if step < warmup_steps:
        return lr * warmup_factor(step, warmup_steps)
    decay_end = max(warmup_steps, max_steps - max(0, hold_steps))
    if step >= decay_end:
        return min_lr
    decay_ratio = (step - warmup_steps) / max(1, decay_end - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)


def warmdown_lr(
    step: int, lr: float, warmup_steps: int, warmdown_steps: int, max_steps: int
) -> float:
    """Parameter-golf's schedule: warmup, flat at lr, then linear to 0 over the last warmdown_steps."""
    if step < warmup_steps:
        return lr * warmup_factor(step, warmup_steps)
    if step >= max_steps:
        return 0.0
    start = max_steps - warmdown_steps
    if warmdown_steps > 0 and step >= start:
        return lr * (max_steps - step) / warmdown_steps
    return lr


def constant_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Warmup, then lr for ever."""
    return lr * warmup_factor(step, warmup_steps)


def lr_at(step: int, train: TrainConfig, scale: float = 1.0) -> float:
    """The learning rate for optimizer step `step` (0-based) under the preset's schedule, times `scale`.

    A step before 0 has lr 0 (the health rules look one step either side of step 0).
    An unknown schedule raises ValueError: presets.validate rejects one before it
    can reach the trainer or the health rules, so meeting one here is a bug.
    """
    if train.schedule == "cosine":
        value = cosine_lr(
            step,
            train.lr,
            train.min_lr,
            train.warmup_steps,
            train.max_steps,
            getattr(train, "min_lr_hold_steps", 0),
        )
    elif train.schedule == "warmdown":
        value = warmdown_lr(
            step, train.lr, train.warmup_steps, train.warmdown_steps, train.max_steps
        )
    elif train.schedule == "constant":
        value = constant_lr(step, train.lr, train.warmup_steps)
    else:
        raise ValueError(f"unknown schedule {train.schedule!r}")
    return value * scale if step >= 0 else 0.0


def wallclock_warmdown_factor(
    elapsed_s: float, steps_done: int, max_time_s: float, warmdown_steps: int
) -> float:
    """Parameter-golf's lr_mul under a wall-clock cap: 1, then linear to 0 at the cap.

    The decay starts when the training time left is warmdown_steps times the mean step
    time so far (elapsed_s / steps_done), so a run the cap ends still warms down.
    1.0 without a cap, without a warmdown, or before the first step has a time.
    """
    if max_time_s <= 0 or warmdown_steps <= 0 or steps_done <= 0:
        return 1.0
    warmdown_s = warmdown_steps * (elapsed_s / steps_done)
    remaining_s = max(max_time_s - elapsed_s, 0.0)
    if remaining_s > warmdown_s:
        return 1.0
    return remaining_s / max(warmdown_s, 1e-9)


def time_warmdown(train: TrainConfig) -> bool:
    """True when the schedule also warms down by wall clock (warmdown with train.max_time_s)."""
    return train.schedule == "warmdown" and train.max_time_s > 0 and train.warmdown_steps > 0


def lr_at_time(
    step: int, train: TrainConfig, elapsed_s: float, steps_done: int, scale: float = 1.0
) -> float:
    """`lr_at`, and under a wall-clock cap (warmdown schedule) no more than the time warmdown allows.

    `elapsed_s` is training time (evals, checkpoints and samples excluded) over `steps_done`
    steps of this process. Whichever warmdown comes first, by steps or by time, decides.
    """
    value = lr_at(step, train, scale)
    if not time_warmdown(train) or step < 0:
        return value
    factor = wallclock_warmdown_factor(
        elapsed_s, steps_done, train.max_time_s, train.warmdown_steps
    )
    return min(value, train.lr * scale * factor)
