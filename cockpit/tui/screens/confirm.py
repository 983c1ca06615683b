"""Small dialogs: a yes/no question and a one-line text prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from cockpit.common.format import human_duration
from cockpit.plan.estimate import Estimate
from cockpit.plan.presets import Preset

if TYPE_CHECKING:
    from cockpit.plan.gpu import GpuSpec
    from cockpit.tui.app import CockpitApp


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; y confirms, n or Escape declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            yield Static("[b]y[/] yes    [b]n[/] no", classes="dialog-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class LaunchScreen(ConfirmScreen):
    """The launch question, with `p` to choose the training processes (torchrun ranks, one per GPU).

    Dismissed with yes or no, as every ConfirmScreen; `nproc` is the number of processes
    chosen (1: a plain child).
    """

    BINDINGS = [
        Binding("p", "next_nproc", "Processes"),
        Binding("s", "next_steps", "Steps"),
        Binding("t", "next_time", "Time limit"),
    ]

    def __init__(
        self,
        question: str,
        choices: list[int],
        per_gpu: Callable[[int], str] | None = None,
        max_steps: int = 0,
    ) -> None:
        super().__init__(question)
        self.choices = choices or [1]
        self.nproc = self.choices[0]
        self.per_gpu = per_gpu  # nproc -> the plan's memory on each GPU, as words ("" on a CPU)
        # a short try without the editor: the preset's steps, or fewer; a wall-clock limit
        self.step_choices = [max_steps] + [n for n in TRY_STEPS if n < max_steps]
        self.steps = max_steps
        self.max_time_s = 0.0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            yield Static(self._nproc_line(), id="nproc")
            yield Static(self._limits_line(), id="limits")
            yield Static(
                "[b]y[/] yes  [b]n[/] no  [b]p[/] processes  [b]s[/] steps  [b]t[/] time limit",
                classes="dialog-keys",
            )

    def _limits_line(self) -> str:
        steps = f"{self.steps:,}" + ("" if self.steps == self.step_choices[0] else " (a try)")
        limit = human_duration(self.max_time_s) if self.max_time_s else "none"
        return f"steps: [b]{steps}[/]   time limit: [b]{limit}[/]"

    def action_next_steps(self) -> None:
        i = self.step_choices.index(self.steps) if self.steps in self.step_choices else -1
        self.steps = self.step_choices[(i + 1) % len(self.step_choices)]
        self.query_one("#limits", Static).update(self._limits_line())

    def action_next_time(self) -> None:
        i = TIME_LIMITS_S.index(self.max_time_s) if self.max_time_s in TIME_LIMITS_S else -1
        self.max_time_s = TIME_LIMITS_S[(i + 1) % len(TIME_LIMITS_S)]
        self.query_one("#limits", Static).update(self._limits_line())

    def limited(self, preset: Preset) -> Preset:
        """`preset` with the steps and time limit chosen here (the schedule shrinks to fit)."""
        from cockpit.headless import with_max_steps
        from cockpit.plan.presets import apply_overrides

        if self.steps and self.steps != preset.train.max_steps:
            preset = with_max_steps(preset, self.steps, say=lambda _words: None)
        if self.max_time_s:
            preset = apply_overrides(preset, {"train.max_time_s": self.max_time_s})
        return preset

    def _nproc_line(self) -> str:
        memory = self.per_gpu(self.nproc) if self.per_gpu is not None else ""
        memory = f"\n{memory}" if memory else ""
        if self.nproc == 1:
            return f"processes: [b]1[/] (p: more, one per GPU with torchrun DDP){memory}"
        return (
            f"processes: [b]{self.nproc}[/] (torchrun DDP, the global batch x{self.nproc}){memory}"
        )

    def action_next_nproc(self) -> None:
        i = self.choices.index(self.nproc) if self.nproc in self.choices else -1
        self.nproc = self.choices[(i + 1) % len(self.choices)]
        self.query_one("#nproc", Static).update(self._nproc_line())


TRY_STEPS = (1000, 200, 50)  # the launch dialog's shorter runs, below the preset's own
TIME_LIMITS_S = (0.0, 300.0, 900.0, 3600.0)  # none, 5 min, 15 min, 1 h (train.max_time_s)


def nproc_choices(gpus: int) -> list[int]:
    """1 up to every GPU of this machine; without a GPU, 1 or 2 CPU processes (gloo)."""
    return list(range(1, max(gpus, 2) + 1)) if gpus != 1 else [1]


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text; Enter accepts, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question)
            yield Input(self.value, id="prompt-input")
            yield Static("[b]Enter[/] ok    [b]Esc[/] cancel", classes="dialog-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def launch_question(preset: Preset, est: Estimate, problem: str | None = None) -> str:
    """What a launch will do, for the question before it: size, device, ETA, the verdict, the
    host RAM (on a CPU: the run's tensors; on a GPU: the host side) and, when the plan does not
    fit this machine (`problem`, from prelaunch.plan_problem), why and what would."""
    from cockpit.common.format import human_params, rough_eta
    from cockpit.plan.host import cpu_eta_line, host_memory, load_cpu_speed
    from cockpit.tui.exact import verdict_words

    on_cpu = est.gpu is None
    device = f"this machine's {est.gpu.name}" if est.gpu else "this machine's CPU (no GPU found)"
    host = host_memory(preset, "cpu" if on_cpu else "cuda")
    if on_cpu:
        eta_line = cpu_eta_line(preset, load_cpu_speed())
        verdict = host.verdict
    else:
        eta = (
            f"about {rough_eta(est.eta_s)}"
            if est.eta_s
            else "unknown (GPU peak not in the catalog)"
        )
        eta_line, verdict = f"ETA {eta}", f"{verdict_words(est)}\n{host.verdict}"
    steps = f"{preset.train.max_steps:,} steps"
    misfit = problem is not None or est.fits is False
    head = f"[b]{preset.name}[/] does not fit:" if misfit else f"Launch [b]{preset.name}[/]?"
    why = f"\n[b]{problem}[/]" if problem else ""
    return (
        f"{head}\n{human_params(est.params)} parameters, {steps} on {device}\n"
        f"{eta_line}\n{verdict}{why}\n\n"
        + ("Launch anyway (y forces it)?" if misfit else "Start training now?")
    )


def confirm_launch(app: CockpitApp, preset: Preset, est: Estimate) -> None:
    """Launch `preset` after a yes to a question that names its size, device, ETA and verdict
    (a stray key or click must not start a run)."""
    ok, why = preset.trainable
    if not ok:
        app.notify(f"{preset.name} cannot be trained: {why}", severity="error")
        return

    from cockpit.runs.prelaunch import plan_problem

    problem = plan_problem(preset, "auto", 1)
    gpus = len(app.local_gpus or [])
    question = launch_question(preset, est, problem)
    dialog = LaunchScreen(
        question,
        nproc_choices(gpus),
        per_gpu_memory(preset, est, app.local_gpu_spec),
        preset.train.max_steps,
    )

    def answered(yes: bool | None) -> None:
        if yes:
            nproc = dialog.nproc
            forced = problem is not None or plan_problem(preset, "auto", nproc) is not None
            app.launch_preset(dialog.limited(preset), nproc=nproc, force=forced)

    app.push_screen(dialog, answered)


def per_gpu_memory(
    preset: Preset, est: Estimate, gpu_for: Callable[[int], GpuSpec | None] | None = None
) -> Callable[[int], str] | None:
    """The plan's peak on each GPU for a number of ranks (train.parallel: DDP buckets or FSDP
    shards), against the smallest GPU those ranks use (`gpu_for`; the estimate's GPU without
    it), or None on a CPU, where there is no GPU memory to plan."""
    if est.gpu is None:
        return None
    fallback = est.gpu

    def words(nproc: int) -> str:
        from cockpit.common.format import human_bytes
        from cockpit.plan.estimate import estimate

        gpu = (gpu_for(nproc) if gpu_for is not None else None) or fallback
        peak = estimate(preset, gpu, world_size=nproc).peak_bytes
        return f"peak {human_bytes(peak)} on each GPU of {human_bytes(gpu.memory_bytes)}"

    return words
