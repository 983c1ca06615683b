"""The estimated VRAM breakdown as one bar against the GPU's memory."""

from __future__ import annotations

from rich.text import Text

from cockpit.common.format import human_bytes
from cockpit.plan.estimate import Estimate

# One colour per memory part, in MemoryBreakdown.items() order (256-colour safe names).
PART_COLORS = ("blue", "cyan", "magenta", "yellow", "green", "bright_red", "white", "bright_black")


def vram_bar(est: Estimate, width: int = 40) -> Text:
    """A bar of `width` cells: each part's share of the GPU's memory (or of the peak without a GPU), then a legend."""
    total = est.gpu.memory_bytes if est.gpu is not None else max(1, est.peak_bytes)
    scale = width / max(total, est.peak_bytes)
    bar = Text()
    used = 0
    for (_label, size), color in zip(est.memory.items(), PART_COLORS, strict=True):
        cells = int(round(size * scale))
        cells = min(cells, width - used)
        if cells > 0:
            bar.append("█" * cells, style=color)
            used += cells
    gpu_cells = int(round(total * scale))
    if used < gpu_cells:
        bar.append("░" * (gpu_cells - used), style="bright_black")
    if est.gpu is not None and est.peak_bytes > est.gpu.memory_bytes:
        bar.append(" OVER", style="bold red")
    bar.append("\n")
    for (label, size), color in zip(est.memory.items(), PART_COLORS, strict=True):
        if size <= 0:
            continue
        bar.append("■ ", style=color)
        bar.append(f"{label} {human_bytes(size)}\n")
    return bar
