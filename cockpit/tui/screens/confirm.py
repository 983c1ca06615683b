"""Small dialogs: a yes/no question and a one-line text prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from cockpit.plan.estimate import Estimate
from cockpit.plan.presets import Preset

if TYPE_CHECKING:
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

    BINDINGS = [Binding("p", "next_nproc", "Processes")]

    def __init__(
        self, question: str, choices: list[int], per_gpu: Callable[[int], str] | None = None
    ) -> None:
        super().__init__(question)
        self.choices = choices or [1]
        self.nproc = self.choices[0]
        self.per_gpu = per_gpu  # nproc -> the plan's memory on each GPU, as words ("" on a CPU)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            yield Static(self._nproc_line(), id="nproc")
            yield Static("[b]y[/] yes    [b]n[/] no    [b]p[/] processes", classes="dialog-keys")

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
        eta_line, verdict = f"ETA {eta}", f"{est.verdict}\n{host.verdict}"
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
    screen = LaunchScreen(question, nproc_choices(gpus), per_gpu_memory(preset, est))

    def answered(yes: bool | None) -> None:
        if yes:
            nproc = screen.nproc
            forced = problem is not None or plan_problem(preset, "auto", nproc) is not None
            app.launch_preset(preset, nproc=nproc, force=forced)

    app.push_screen(screen, answered)


def per_gpu_memory(preset: Preset, est: Estimate) -> Callable[[int], str] | None:
    """The plan's peak on each GPU for a number of ranks (train.parallel: DDP buckets or FSDP
    shards), or None on a CPU, where there is no GPU memory to plan."""
    if est.gpu is None:
        return None
    gpu = est.gpu

    def words(nproc: int) -> str:
        from cockpit.common.format import human_bytes
        from cockpit.plan.estimate import estimate

        peak = estimate(preset, gpu, world_size=nproc).peak_bytes
        return f"peak {human_bytes(peak)} on each GPU of {human_bytes(gpu.memory_bytes)}"

    return words
