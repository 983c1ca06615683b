"""A small line plot of one or two metric series against steps (textual-plotext)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from cockpit.run_history import Series


class MetricPlot(PlotextPlot):
    """One titled plot; `show()` replaces its data and redraws once."""

    def __init__(self, title: str, *, log_y: bool = False, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.title = title
        self.log_y = log_y

    def on_mount(self) -> None:
        super().on_mount()
        self.theme = "pro"  # plain colours: readable in 256-colour terminals and tmux
        self.plt.title(self.title)

    def show(self, series: list[tuple[str, Series]], marks: list[int] | None = None) -> None:
        """Plot each (label, series); vertical marks at the given steps (health warnings)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.theme("pro")
        plt.title(self.title)
        drawn = False
        # a braille cell holds two points across: more than that per column only costs render time
        buckets = max(16, self.size.width or 80)
        for label, data in series:
            steps, values = data.envelope(buckets)
            if not steps:
                continue
            if self.log_y:
                pairs = [(s, v) for s, v in zip(steps, values, strict=True) if v > 0]
                steps, values = [s for s, _ in pairs], [v for _, v in pairs]
                if not steps:
                    continue
                plt.yscale("log")
            plt.plot(steps, values, label=label if len(series) > 1 else None, marker="braille")
            drawn = True
        for step in marks or []:
            plt.vline(step, "red")
        if not drawn:
            plt.title(f"{self.title} (no data yet)")
        self.refresh()
