"""Where entries fit: GPUs by their memory plans, the CPU by cores and RAM; and a night simulated.

Pure arithmetic on numbers the planner (cockpit.campaign.planning) gives: nothing here reads
a preset, NVML or the queue, so the packing is tested on what-if machines as it runs on real
ones. A GPU entry fits a GPU when its planned bytes (reserved + headroom, per GPU) and those of
every run already placed there sum to no more than what the GPU offers this queue (usable
memory less what other processes hold). Among the GPUs where it fits, the fullest wins (best
fit), which leaves whole GPUs free for the big entries behind it.

On a machine with GPUs of different kinds an entry carries one plan per GPU (its bytes, time
and share on that card: a T4 trains in fp16 at a fifteenth of an H100's pace), is fitted
against each GPU's own plan, and goes where it would finish first (its time there, slowed by
the compute the runs already there keep busy); between equal cards the fullest still wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from cockpit.campaign.backend import Placement
from cockpit.common.format import counted, human_bytes, human_duration

MIN_THREADS = 1  # a CPU run is granted at least this many threads (cores)


@dataclass(frozen=True)
class Gpu:
    """One GPU as the packer sees it."""

    index: int
    name: str
    capacity_bytes: int  # what this queue may fill now: usable memory less other processes' share
    usable_bytes: int = 0  # the device's usable memory (0: the same as capacity_bytes)

    @property
    def whole_bytes(self) -> int:
        """What an empty GPU offers (decides whether an entry can ever fit)."""
        return self.usable_bytes or self.capacity_bytes


@dataclass(frozen=True)
class Machine:
    """What the queue may use: GPUs, CPU cores and RAM."""

    gpus: tuple[Gpu, ...]
    cores: int
    ram_bytes: int  # RAM runs may use (available memory when the scheduler looked)
    label: str = "this machine"
    max_threads: int = 0  # threads one CPU run is granted at most (0: no cap)


@dataclass(frozen=True)
class GpuPlan:
    """One entry's plan on one kind of GPU."""

    gpu_bytes: int  # planned bytes on that GPU: reserved with headroom, plus the CUDA context
    seconds: float | None  # training time alone on it (None: unknown)
    share: float = 1.0  # the fraction of that GPU's compute it keeps busy alone (0..1]


@dataclass(frozen=True)
class Need:
    """What one entry asks for, as planned for one machine."""

    entry_id: int
    device: str  # "any" | "cpu" | "gpu" (as queued)
    gpus: int  # GPUs it trains on when it gets GPUs
    gpu_bytes: int | None = None  # planned bytes per GPU (None: no plan, see problem)
    ram_bytes: int = 0  # planned host RAM: a CPU run's tensors, a GPU run's CUDA runtime and data
    seconds: float | None = None  # planned training time alone on its device (None: unknown)
    share: float = 1.0  # the fraction of a GPU's compute it keeps busy alone (0..1]
    problem: str = ""  # why it cannot be planned at all (a bad preset, no such GPU)
    # the plan on each GPU (by index) of a machine whose GPUs are of several kinds; empty on
    # a machine of one kind, where gpu_bytes, seconds and share hold on every GPU
    per_gpu: dict[int, GpuPlan] = field(default_factory=dict, compare=False)

    def on_gpu(self, machine: Machine) -> bool:
        """It trains on GPUs here: a gpu entry, or an any entry on a machine with GPUs."""
        return self.device == "gpu" or (self.device == "any" and bool(machine.gpus))

    def plan_on(self, index: int) -> GpuPlan:
        """Its plan on GPU `index` (the one plan where the machine has one kind of GPU)."""
        own = self.per_gpu.get(index)
        return own if own is not None else GpuPlan(self.gpu_bytes or 0, self.seconds, self.share)

    def likely(self, machine: Machine) -> Need:
        """This need as planned on the card where it would run fastest among those that can
        hold it (what a waiting entry shows); itself on a machine of one kind."""
        if not self.per_gpu:
            return self
        can = [g for g in machine.gpus if self.plan_on(g.index).gpu_bytes <= g.whole_bytes]
        if not can:
            return self
        fastest = min(can, key=lambda g: (_seconds_or_inf(self.plan_on(g.index)), g.index))
        return self.placed_on([fastest.index])

    def placed_on(self, gpus: Iterable[int]) -> Need:
        """This need as planned on these GPUs: the largest of their memory plans, and the
        slowest card's time and share (a multi-GPU run steps at its slowest rank's pace)."""
        chosen = list(gpus)
        if not self.per_gpu or not chosen:
            return self
        plans = [self.plan_on(g) for g in chosen]
        slowest = max(plans, key=_seconds_or_inf)
        return replace(
            self,
            gpu_bytes=max(p.gpu_bytes for p in plans),
            seconds=slowest.seconds,
            share=slowest.share,
        )


def _seconds_or_inf(plan: GpuPlan) -> float:
    return math.inf if plan.seconds is None else plan.seconds


@dataclass
class Ledger:
    """What is placed now: planned bytes and runs per GPU, cores and RAM in use."""

    gpu_bytes: dict[int, int] = field(default_factory=dict)
    gpu_runs: dict[int, list[int]] = field(default_factory=dict)
    cores: int = 0
    ram_bytes: int = 0
    shares: dict[int, float] = field(default_factory=dict)  # each placed GPU run's compute share

    def take(
        self, entry_id: int, placement: Placement, ram_bytes: int = 0, *, share: float = 1.0
    ) -> None:
        """Count a placed entry in (`share`: the compute it keeps busy on each of its GPUs;
        a run whose share is not known counts as keeping its GPU busy)."""
        if placement.gpus:
            self.shares[entry_id] = share
        for g in placement.gpus:
            self.gpu_bytes[g] = self.gpu_bytes.get(g, 0) + (placement.planned_bytes or 0)
            self.gpu_runs.setdefault(g, []).append(entry_id)
        if not placement.gpus:
            self.cores += placement.threads or MIN_THREADS
        self.ram_bytes += ram_bytes  # a GPU run's host side too

    def give_back(self, entry_id: int, placement: Placement, ram_bytes: int = 0) -> None:
        """Count an ended entry out."""
        self.shares.pop(entry_id, None)
        for g in placement.gpus:
            self.gpu_bytes[g] = max(0, self.gpu_bytes.get(g, 0) - (placement.planned_bytes or 0))
            runs = self.gpu_runs.get(g, [])
            if entry_id in runs:
                runs.remove(entry_id)
        if not placement.gpus:
            self.cores = max(0, self.cores - (placement.threads or MIN_THREADS))
        self.ram_bytes = max(0, self.ram_bytes - ram_bytes)

    def free_bytes(self, gpu: Gpu) -> int:
        return gpu.capacity_bytes - self.gpu_bytes.get(gpu.index, 0)

    def load(self, index: int) -> float:
        """The compute the runs placed on GPU `index` keep busy (1.0: all of it)."""
        return sum(self.shares.get(e, 1.0) for e in self.gpu_runs.get(index, []))


@dataclass(frozen=True)
class Refusal:
    """Why an entry is not placed: `never` when no amount of waiting helps on this machine."""

    reason: str
    never: bool = False


def never_fits(need: Need, machine: Machine) -> str | None:
    """Why `need` cannot run on `machine` even when it is empty (None: it can, some day)."""
    if need.problem:
        return need.problem
    if need.on_gpu(machine):
        if need.gpus > len(machine.gpus):
            have = counted(len(machine.gpus), "GPU") if machine.gpus else "no GPU"
            return f"needs {counted(need.gpus, 'GPU')}; {machine.label} has {have}"
        if need.gpu_bytes is None:
            return "no memory plan"
        if need.per_gpu:
            return _never_fits_mixed(need, machine)
        biggest = sorted((g.whole_bytes for g in machine.gpus), reverse=True)[need.gpus - 1]
        if need.gpu_bytes > biggest:
            return (
                f"needs {human_bytes(need.gpu_bytes)} per GPU with headroom; the largest "
                f"GPU here offers {human_bytes(biggest)}"
            )
    if need.ram_bytes > machine.ram_bytes:
        return (
            f"needs {human_bytes(need.ram_bytes)} of RAM; {machine.label} has "
            f"{human_bytes(machine.ram_bytes)} available"
        )
    return None


def _never_fits_mixed(need: Need, machine: Machine) -> str | None:
    """never_fits on GPUs of several kinds: each GPU against the entry's plan for that card."""
    can = [g for g in machine.gpus if need.plan_on(g.index).gpu_bytes <= g.whole_bytes]
    if len(can) >= need.gpus:
        return None
    kinds: dict[str, str] = {}  # one phrase per kind of GPU, in the machine's order
    for g in machine.gpus:
        kinds.setdefault(
            g.name,
            f"{human_bytes(need.plan_on(g.index).gpu_bytes)} on {g.name}, which offers "
            f"{human_bytes(g.whole_bytes)}",
        )
    where = f" ({len(can)} GPU(s) here can hold it)" if need.gpus > 1 and can else ""
    return f"needs per GPU with headroom: {'; '.join(kinds.values())}{where}"


def _finish_rank(need: Need, gpu: Gpu, ledger: Ledger) -> float:
    """Seconds `need` would take on `gpu` beside what runs there (its share of the compute)."""
    plan = need.plan_on(gpu.index)
    return _seconds_or_inf(plan) * max(1.0, ledger.load(gpu.index) + plan.share)


def _place_mixed(
    need: Need, machine: Machine, ledger: Ledger, frees_in: dict[int, float]
) -> Placement | Refusal:
    """place on GPUs of several kinds: each GPU holds the plan for its card; the entry goes
    where it would finish first, the fullest of equal choices first (best fit). It waits for
    a faster card that is busy when that card, once its runs end, would still finish it first."""
    fitting = [g for g in machine.gpus if ledger.free_bytes(g) >= need.plan_on(g.index).gpu_bytes]
    fitting.sort(key=lambda g: (_finish_rank(need, g, ledger), ledger.free_bytes(g), g.index))
    if fitting and need.gpus == 1:
        now = fitting[0]
        done_now = _finish_rank(need, now, ledger)
        for g in machine.gpus:
            plan = need.plan_on(g.index)
            if g in fitting or plan.gpu_bytes > g.whole_bytes or plan.seconds is None:
                continue
            later = frees_in.get(g.index, math.inf) + plan.seconds
            if later < done_now:
                return Refusal(
                    f"waits for GPU {g.index} {g.name}: done in ~{human_duration(later)} "
                    f"there, against ~{human_duration(done_now)} on GPU {now.index} {now.name} now"
                )
    chosen = fitting[: need.gpus]
    if len(chosen) == need.gpus:
        # a multi-GPU run holds its largest plan on each of its GPUs
        planned = need.placed_on(g.index for g in chosen).gpu_bytes or 0
        chosen = [g for g in fitting if ledger.free_bytes(g) >= planned][: need.gpus]
        largest = need.placed_on(g.index for g in chosen).gpu_bytes or 0
        if any(ledger.free_bytes(g) < largest for g in chosen):
            chosen = []  # no set of GPUs holds the largest of its plans on each: it waits
    if len(chosen) < need.gpus:
        can = [g for g in machine.gpus if need.plan_on(g.index).gpu_bytes <= g.whole_bytes]
        freest = max(can, key=lambda g: (ledger.free_bytes(g), -g.index))
        return Refusal(
            f"waits for GPU memory: needs {human_bytes(need.plan_on(freest.index).gpu_bytes)}"
            + (f" on each of {need.gpus} GPUs" if need.gpus > 1 else "")
            + f", the freest GPU that can hold it (GPU {freest.index} {freest.name}) has "
            + human_bytes(max(0, ledger.free_bytes(freest)))
        )
    if ledger.ram_bytes + need.ram_bytes > machine.ram_bytes:
        return _waits_for_ram(need, machine, ledger)
    indices = tuple(sorted(g.index for g in chosen))
    return Placement(gpus=indices, planned_bytes=need.placed_on(indices).gpu_bytes)


def _waits_for_ram(need: Need, machine: Machine, ledger: Ledger) -> Refusal:
    free = max(0, machine.ram_bytes - ledger.ram_bytes)
    return Refusal(f"waits for RAM: needs {human_bytes(need.ram_bytes)}, {human_bytes(free)} free")


def cpu_threads(free_cores: int, waiting_cpu: int) -> int:
    """Threads for the next CPU run: the free cores shared among the CPU entries that wait."""
    return max(MIN_THREADS, free_cores // max(1, waiting_cpu))


def place(
    need: Need,
    machine: Machine,
    ledger: Ledger,
    *,
    waiting_cpu: int = 1,
    frees_in: dict[int, float] | None = None,
) -> Placement | Refusal:
    """Where `need` goes now (best fit), or why not (`never` when it cannot ever run here).

    `frees_in`: seconds until the runs on each GPU end (GPUs of several kinds: an entry may
    wait for a faster card rather than start on a slow one)."""
    why = never_fits(need, machine)
    if why:
        return Refusal(why, never=True)
    if need.on_gpu(machine):
        assert need.gpu_bytes is not None
        if need.per_gpu:
            return _place_mixed(need, machine, ledger, frees_in or {})
        fitting = [g for g in machine.gpus if ledger.free_bytes(g) >= need.gpu_bytes]
        if len(fitting) < need.gpus:
            best = max((ledger.free_bytes(g) for g in machine.gpus), default=0)
            return Refusal(
                f"waits for GPU memory: needs {human_bytes(need.gpu_bytes)}"
                + (f" on each of {need.gpus} GPUs" if need.gpus > 1 else "")
                + f", the freest GPU has {human_bytes(max(0, best))}"
            )
        if ledger.ram_bytes + need.ram_bytes > machine.ram_bytes:
            return _waits_for_ram(need, machine, ledger)
        fitting.sort(key=lambda g: (ledger.free_bytes(g), g.index))  # fullest first: best fit
        chosen = tuple(sorted(g.index for g in fitting[: need.gpus]))
        return Placement(gpus=chosen, planned_bytes=need.gpu_bytes)
    free_cores = machine.cores - ledger.cores
    if free_cores < MIN_THREADS:
        return Refusal(f"waits for a CPU core: {ledger.cores} of {machine.cores} in use")
    if ledger.ram_bytes + need.ram_bytes > machine.ram_bytes:
        return _waits_for_ram(need, machine, ledger)
    threads = min(free_cores, cpu_threads(free_cores, waiting_cpu))
    if machine.max_threads:
        threads = min(threads, machine.max_threads)
    return Placement(threads=threads, planned_bytes=need.ram_bytes)


# --------------------------------------------------------------------------- a night simulated


@dataclass(frozen=True)
class Slot:
    """One entry in a simulated night: where and when it would run."""

    entry_id: int
    placement: Placement | None
    start_s: float | None  # seconds from now (None: never starts)
    end_s: float | None
    reason: str = ""  # why it never starts, or "" when it does


@dataclass
class _Live:
    need: Need
    placement: Placement
    left_s: float  # alone-seconds of training left


def _rates(live: dict[int, _Live]) -> dict[int, float]:
    """Each run's speed (1 = as fast as alone): a GPU whose runs together ask for more than all
    of its compute shares it out (processor sharing); a CPU run has its own cores."""
    demand: dict[int, float] = {}
    for run in live.values():
        for g in run.placement.gpus:
            demand[g] = demand.get(g, 0.0) + run.need.share
    out = {}
    for entry_id, run in live.items():
        slow = max((demand[g] for g in run.placement.gpus), default=1.0)
        out[entry_id] = 1.0 / max(1.0, slow)
    return out


def _frees_in(live: dict[int, _Live]) -> dict[int, float]:
    """Seconds until each busy GPU's runs have all ended, at the pace they share it now."""
    rates = _rates(live)
    out: dict[int, float] = {}
    for entry_id, run in live.items():
        for g in run.placement.gpus:
            out[g] = max(out.get(g, 0.0), run.left_s / rates[entry_id])
    return out


def simulate(
    needs: Iterable[Need],
    machine: Machine,
    *,
    after: dict[int, int] | None = None,
    one_at_a_time: bool = False,
    running: Iterable[tuple[Need, Placement, float]] = (),
    ledger: Ledger | None = None,
) -> list[Slot]:
    """When and where each need would run, in order, if every plan holds.

    `after` maps an entry to the entry it waits for; `running` are runs already placed with
    the alone-seconds they have left; `one_at_a_time` gives each run the machine alone (the
    bash loop this queue replaces), for comparison. An entry with no time plan counts one hour.
    """
    after = dict(after or {})
    ledger = ledger or Ledger()
    waiting = list(needs)
    live: dict[int, _Live] = {}
    slots: dict[int, Slot] = {}
    for need, placement, left in running:
        need = need.placed_on(placement.gpus)
        live[need.entry_id] = _Live(need, placement, left)
        slots[need.entry_id] = Slot(need.entry_id, placement, 0.0, None)
    done: set[int] = set()
    never: set[int] = set()
    clock = 0.0
    while True:
        for need in list(waiting):  # start what fits, in queue order
            wait_for = after.get(need.entry_id)
            if wait_for in never:
                waiting.remove(need)
                never.add(need.entry_id)
                why = f"waits for #{wait_for}, which never starts"
                slots[need.entry_id] = Slot(need.entry_id, None, None, None, why)
                continue
            if wait_for is not None and wait_for not in done:
                continue
            if one_at_a_time and live:
                break
            cpu_left = sum(1 for n in waiting if not n.on_gpu(machine))
            frees_in = _frees_in(live)
            got = place(need, machine, ledger, waiting_cpu=cpu_left, frees_in=frees_in)
            if isinstance(got, Refusal):
                if got.never:
                    waiting.remove(need)
                    slots[need.entry_id] = Slot(need.entry_id, None, None, None, got.reason)
                    never.add(need.entry_id)
                continue
            waiting.remove(need)
            placed = need.placed_on(got.gpus)  # its plan on the GPUs it got
            ledger.take(need.entry_id, got, need.ram_bytes, share=placed.share)
            live[need.entry_id] = _Live(placed, got, placed.seconds if placed.seconds else 3600.0)
            slots[need.entry_id] = Slot(need.entry_id, got, clock, None)
        if not live:
            if any(after.get(n.entry_id) in never for n in waiting):
                continue  # one more pass says which wait for an entry that never starts
            break
        rates = _rates(live)
        finish_in = {i: run.left_s / rates[i] for i, run in live.items()}
        step = min(finish_in.values())
        clock += step
        for i, run in list(live.items()):
            run.left_s -= step * rates[i]
            if finish_in[i] <= step + 1e-9:
                ledger.give_back(i, run.placement, run.need.ram_bytes)
                del live[i]
                done.add(i)
                if i in slots:
                    slots[i] = Slot(i, run.placement, slots[i].start_s, clock)
    for need in waiting:  # waits for an entry that is not in this plan
        why = f"waits for #{after.get(need.entry_id)}"
        slots[need.entry_id] = Slot(need.entry_id, None, None, None, why)
    return list(slots.values())


def gpu_hours(slots: Iterable[Slot], machine: Machine) -> float:
    """GPU-hours the GPUs are held from the first start to each GPU's last end."""
    last: dict[int, float] = {}
    for s in slots:
        if s.placement is None or s.end_s is None:
            continue
        for g in s.placement.gpus:
            last[g] = max(last.get(g, 0.0), s.end_s)
    return sum(last.values()) / 3600.0


def busy_gpu_hours(slots: Iterable[Slot]) -> float:
    """GPU-hours during which each GPU holds at least one run (idle gaps not counted)."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for s in slots:
        if s.placement is None or s.start_s is None or s.end_s is None:
            continue
        for g in s.placement.gpus:
            spans.setdefault(g, []).append((s.start_s, s.end_s))
    total = 0.0
    for pieces in spans.values():
        heap = sorted(pieces)
        end = -1.0
        for a, b in heap:
            if a > end:
                total += b - a
                end = b
            elif b > end:
                total += b - end
                end = b
    return total / 3600.0
