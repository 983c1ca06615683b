"""`gpt-cockpit plot`: a run's (or several runs') curves as one PNG, for reports and issues.

Four panels: train loss, val loss, learning rate, grad norm (log scale); one colour
per run; each health warning a dashed vertical line on the loss and grad-norm
panels (orange for warning, red for critical) with its rule named once in the
legend. matplotlib (the `plot` extra) is imported when a picture is drawn, with the
Agg backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cockpit.runs.compare import RunCurves

INSTALL = "pip install matplotlib (or pip install 'gpt-cockpit[plot]')"
SEVERITY_COLOURS = {"warning": "#e69f00", "critical": "#d62728"}


class PlotUnavailable(RuntimeError):
    """matplotlib is missing; the message says how to install it."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"plot needs matplotlib: {INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mark_warnings(ax: Any, curves: RunCurves, align: str, labelled: set[str]) -> None:
    for step, severity, rule in curves.warnings:
        label = f"{severity}: {rule}"
        ax.axvline(
            curves.x(step, align),
            color=SEVERITY_COLOURS.get(severity, "#e69f00"),
            linestyle="--",
            linewidth=0.9,
            label=None if label in labelled else label,
        )
        labelled.add(label)


def draw(runs: list[RunCurves], out: str | Path, align: str = "step", title: str = "") -> Path:
    """Draw the runs' curves into `out` (a .png); returns the path."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), dpi=110, constrained_layout=True)
    (ax_loss, ax_val), (ax_lr, ax_norm) = axes
    panels = (
        (ax_loss, "train loss", "loss", False),
        (ax_val, "val loss", "val", False),
        (ax_lr, "learning rate", "lr", False),
        (ax_norm, "grad norm", "grad_norm", True),
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    many = len(runs) > 1
    for i, curves in enumerate(runs):
        colour = colours[i % len(colours)]
        name = curves.run_id if many else "train"
        for ax, _title, attr, _log in panels:
            series = curves.aligned(getattr(curves, attr), align)
            marker = "o" if attr == "val" else None
            label = curves.run_id if many else (None if attr != "loss" else name)
            ax.plot(
                series.steps,
                series.values,
                color=colour,
                marker=marker,
                markersize=3,
                linewidth=1.2,
                label=label,
            )
        best = curves.best_val
        if best is not None:
            x = curves.x(best[1], align)
            ax_val.plot([x], [best[0]], marker="*", markersize=11, color=colour, linestyle="none")
            ax_val.annotate(
                f"best {best[0]:.4f} @ {best[1]}",
                (x, best[0]),
                textcoords="offset points",
                xytext=(-8, 10),
                ha="right",
                fontsize=8,
                color=colour,
            )
    labelled: set[str] = set()
    for curves in runs:
        _mark_warnings(ax_loss, curves, align, labelled)
        _mark_warnings(ax_norm, curves, align, set(labelled))
    xlabel = "tokens" if align == "tokens" else "step"
    for ax, panel_title, _attr, log in panels:
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if log:
            ax.set_yscale("log")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize=8, loc="upper right")
    if many:
        ax_val.legend(fontsize=8, loc="upper right")
    fig.suptitle(
        title or ", ".join(f"{c.run_id} ({c.preset_name}, {c.status})" for c in runs), fontsize=11
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
