"""A small line plot of one or two metric series against steps (textual-plotext)."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from cockpit.runs.history import Series, envelope

# plotext rounds each point's screen position as value * 1e8 and spans the axis as max - min:
# a value near float's limit (1.8e308) overflows to inf there and its tick code raises. No loss,
# lr or grad norm a person reads is this large, so a point beyond it is left out like an inf.
PLOT_LIMIT = 1e100


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Ticks for an axis of log10 values from `low` to `high`, labelled with the values themselves."""
    first, last = math.ceil(low), math.floor(high)
    if last - first >= 1:  # two or more whole decades: one tick per decade (at most five)
        step = max(1, math.ceil((last - first + 1) / 5))
        ticks = [float(t) for t in range(first, last + 1, step)]
    elif high > low:
        ticks = [low, (low + high) / 2, high]
    else:
        ticks = [low]
    return ticks, [f"{10**t:.2g}" for t in ticks]


def step_ticks(low: int, high: int, count: int) -> list[int]:
    """Up to `count` whole steps from `low` to `high` (plotext's own ticks are fractional)."""
    if high <= low:
        return [low]
    return sorted({round(low + i * (high - low) / (count - 1)) for i in range(count)})


def value_ticks(low: float, high: float) -> tuple[list[float], list[str]] | None:
    """E-notation ticks for values too small or large to read as decimals (an lr of 3e-4); else None."""
    span = max(abs(low), abs(high))
    if span == 0 or 1e-2 <= span < 1e4:
        return None
    ticks = [low + i * (high - low) / 3 for i in range(4)] if high > low else [low]
    return ticks, [f"{t:.1e}" for t in ticks]


class MetricPlot(PlotextPlot):
    """One titled plot; `show()` replaces its data and redraws once.

    A log-scaled plot draws log10 of its values on a linear axis whose ticks are labelled
    with the values: plotext's own log scale transforms its stored data in place on every
    build, so each redraw (a resize is one) took the log of the log until it failed.
    """

    def __init__(self, title: str, *, log_y: bool = False, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.title = title
        self.log_y = log_y

    def on_mount(self) -> None:
        super().on_mount()
        self.theme = "pro"  # plain colours: readable in 256-colour terminals and tmux
        self.plt.title(self.title)

    def _points(self, data: Series, buckets: int) -> tuple[list[int], list[float]]:
        """The finite points to draw (positive ones as log10 on a log plot)."""
        if not self.log_y:  # off-scale points go before the envelope, or they would be its picks
            pairs = [(s, v) for s, v in zip(*data.finite(), strict=True) if abs(v) <= PLOT_LIMIT]
            return envelope([s for s, _ in pairs], [v for _, v in pairs], buckets)
        steps, values = data.envelope(buckets)
        pairs = [(s, math.log10(v)) for s, v in zip(steps, values, strict=True) if v > 0]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def show(
        self,
        series: list[tuple[str, Series]],
        marks: list[int] | None = None,
        colors: list[str] | None = None,
    ) -> None:
        """Plot each (label, series); vertical marks at the given steps (health warnings).

        `colors` (plotext names, one per series) pin each line's colour, so a table beside the
        plot can name the same colour when the plot is too small for its legend.
        """
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.theme("pro")
        plt.title(self.title)
        drawn: list[float] = []
        xs: list[int] = []
        # a braille cell holds two points across: more than that per column only costs render time
        buckets = max(16, self.size.width or 80)
        for i, (label, data) in enumerate(series):
            steps, values = self._points(data, buckets)
            if not steps:
                continue
            name = label if len(series) > 1 else None
            color = {"color": colors[i % len(colors)]} if colors else {}
            if (
                len(steps) == 1
            ):  # a lone point (the first eval) is one braille dot: too small to see
                plt.scatter(steps, values, label=name, marker="●", **color)
            else:
                plt.plot(steps, values, label=name, marker="braille", **color)
            drawn += values
            xs += (steps[0], steps[-1])
        for step in marks or []:
            plt.vline(step, "red")
        if not drawn:
            plt.title(f"{self.title} (no data yet)")
            self.refresh()
            return
        count = max(2, min(5, (self.size.width or 80) // 14))
        x_ticks: list[float] = [*step_ticks(min(xs), max(xs), count)]  # whole steps
        plt.xticks(x_ticks)
        if self.log_y:
            plt.yticks(*log_ticks(min(drawn), max(drawn)))
        elif (ticks := value_ticks(min(drawn), max(drawn))) is not None:
            plt.yticks(*ticks)
        self.refresh()
