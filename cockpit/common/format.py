"""Number and line formatting shared by headless mode, `gpt-cockpit runs` and the app."""

from __future__ import annotations

import math
from typing import Any

from cockpit.common.numbers import finite, is_number

_MISSING = "-"
# A fixed-point number this large is a column of digits (1e308 with .4f is 314 characters):
# from here on a float is written in e-notation, as 1.0e+308.
FIXED_POINT_LIMIT = 1e9

# Rich markup for each run status, wherever a status is shown (`runs`, the app's screens).
STATUS_STYLES = {
    "queued": "dim cyan",
    "starting": "cyan",
    "running": "bold green",
    "finished": "green",
    "stopped": "yellow",
    "halted": "bold red",
    "crashed": "bold red",
    "killed": "bold red",
    "error": "red",
    "unreadable": "dim red",  # another user's private run: listed, not ours to read
}


def fmt_float(value: Any, spec: str = ".4f") -> str:
    """A number with `spec`; None or a non-number is "-", NaN/inf read as nan/inf/-inf, and a
    fixed-point (or percent) spec's value of 1e9 or more as 1.0e+09 (never a column of
    digits)."""
    if not is_number(value):
        return _MISSING
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    percent = 100.0 if spec.endswith("%") else 1.0
    if spec[-1:] in ("f", "%") and abs(value) * percent >= FIXED_POINT_LIMIT:
        return format(value * percent, ".1e") + ("%" if spec.endswith("%") else "")
    return format(value, spec)


def human_count(value: Any, digits: int = 1) -> str:
    """18600 -> "18.6k", 1.25e6 -> "1.2M", 1.5e9 -> "1.5B" (steps of 1000, B for billions as
    parameter and token counts are said); small values as integers."""
    if not finite(value):
        return fmt_float(value)
    sign = "-" if value < 0 else ""
    value = abs(float(value))
    if value >= 1e15 * 0.9995:  # past T the unit says nothing: 1.0e+308, not 1e296T
        return f"{sign}{value:.1e}"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale * 0.9995:
            return f"{sign}{value / scale:.{digits}f}{unit}"
    return f"{sign}{value:.0f}"


def human_params(value: Any) -> str:
    """Parameter counts as people say them: 124.4M, 0.8M, 12.3k."""
    return human_count(value, digits=1)


def human_bytes(value: Any) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 3.2 GiB."""
    if not finite(value):
        return _MISSING
    size = float(value)
    if abs(size) >= 1024**6:  # past PiB: 1.0e+308 B rather than a column of digits
        return f"{size:.1e} B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return _MISSING  # unreachable


def human_duration(seconds: Any) -> str:
    """A short age or duration: 45s, 3m, 2h05m, 3d4h."""
    if not finite(seconds):
        return _MISSING
    if seconds >= 1e5 * 86400:  # past 273 years the days are a column of digits
        return f"{seconds / 86400:.1e}d"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def rough_eta(seconds: Any) -> str:
    """An estimated duration: as human_duration, but "<1s" rather than "0s" for a blink."""
    if is_number(seconds) and 0 <= seconds < 1:
        return "<1s"
    return human_duration(seconds)


def elapsed(seconds: Any) -> str:
    """Wall time with seconds kept: 41.3s, 1m31s, 2h05m."""
    if not finite(seconds):
        return _MISSING
    if seconds < 60:
        return f"{fmt_float(seconds, '.1f')}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return human_duration(s)


def fmt_eta(seconds: Any) -> str:
    """Time left, counting down visibly: <1s, 42s, 15m59s, 2h05m."""
    if not finite(seconds):
        return _MISSING
    if seconds < 1:
        return "<1s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return human_duration(s)


def fmt_norm(value: Any) -> str:
    """A grad norm: two decimals, or 3 significant digits when large or tiny."""
    if finite(value) and (abs(value) >= 1000 or 0 < abs(value) < 0.01):
        return fmt_float(value, ".2e")
    return fmt_float(value, ".2f")


def step_progress(step: Any, max_steps: int | None) -> str:
    """ "120/2000", or "120" when the total is unknown."""
    return f"{step}/{max_steps}" if max_steps else f"{step}"


def format_step_line(record: dict[str, Any], max_steps: int | None = None) -> str:
    """`step 120/2000 | loss 2.3141 | lr 6.0e-04 | norm 0.91 | 41.2 ms | 18.6k tok/s [| mfu 31.2%]`.

    Fields a record lacks are left out, so the line stays parseable by splitting on " | ".
    """
    parts = [f"step {step_progress(record.get('step', 0), max_steps)}"]
    parts.append(f"loss {fmt_float(record.get('loss'))}")
    if is_number(record.get("lr")):
        parts.append(f"lr {fmt_float(record['lr'], '.1e')}")
    if is_number(record.get("grad_norm")):
        parts.append(f"norm {fmt_norm(record['grad_norm'])}")
    if is_number(record.get("step_ms")):
        parts.append(f"{fmt_float(record['step_ms'], '.1f')} ms")
    if is_number(record.get("tokens_per_s")):
        parts.append(f"{human_count(record['tokens_per_s'])} tok/s")
    if is_number(record.get("mfu")):
        parts.append(f"mfu {fmt_float(record['mfu'] * 100.0, '.1f')}%")  # mfu is a fraction
    return " | ".join(parts)


def format_eval_line(record: dict[str, Any], max_steps: int | None = None) -> str:
    """`eval 250/2000 | val 2.3140 | train 2.2511 | bpb 1.234`."""
    parts = [
        f"eval {step_progress(record.get('step', 0), max_steps)}",
        f"val {fmt_float(record.get('val_loss'))}",
    ]
    if is_number(record.get("train_loss")):
        parts.append(f"train {fmt_float(record['train_loss'])}")
    if is_number(record.get("val_bpb")):
        parts.append(f"bpb {fmt_float(record['val_bpb'], '.3f')}")
    return " | ".join(parts)


def progress_line(
    step: int,
    max_steps: int | None,
    elapsed_s: float | None,
    eta_s: float | None,
    tokens_per_s: float | None,
) -> str:
    """`progress: step 120/2000, elapsed 1m31s, ETA 15m59s, 18.6k tok/s` (unknowns left out)."""
    parts = [f"progress: step {step_progress(step, max_steps)}"]
    if elapsed_s is not None:
        parts.append(f"elapsed {elapsed(elapsed_s)}")
    if eta_s is not None:
        parts.append(f"ETA {fmt_eta(eta_s)}")
    if is_number(tokens_per_s):
        parts.append(f"{human_count(tokens_per_s)} tok/s")
    return ", ".join(parts)


def counted(n: int, noun: str) -> str:
    """'1 warning', '2 warnings'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def health_count(warnings: list[Any]) -> str:
    """The health panel's count: warnings (and critical ones) apart from info notes, e.g.
    '2 warnings, 1 note'; a run with only notes reads '1 note'."""
    notes = sum(1 for w in warnings if w.severity == "info")
    parts = []
    if len(warnings) > notes:
        parts.append(counted(len(warnings) - notes, "warning"))
    if notes:
        parts.append(counted(notes, "note"))
    return ", ".join(parts) or "no warnings"


def status_markup(status: str) -> str:
    """A status in its colour, as Rich markup: "[bold green]running[/]"."""
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


def parse_line(line: str) -> dict[str, str]:
    """Split a step or eval line back into {"step": "120/2000", "loss": "2.3141", ...} (for scripts and tests)."""
    out: dict[str, str] = {}
    for part in line.strip().split(" | "):
        head, _, tail = part.partition(" ")
        if tail.endswith(("ms", "tok/s")) and not head.startswith(("step", "eval")):
            out[tail] = head  # "41.2 ms" -> {"ms": "41.2"}
        elif head:
            out[head] = tail
    return out
