"""Packing entries by their memory plans: what-if GPUs, the CPU's cores and RAM, a night simulated."""

from __future__ import annotations

import pytest

from cockpit.campaign import planning
from cockpit.campaign.backend import Placement
from cockpit.campaign.packing import (
    Gpu,
    Ledger,
    Machine,
    Need,
    Refusal,
    busy_gpu_hours,
    place,
    simulate,
)
from cockpit.campaign.store import NewEntry, Queue

GIB = 1024**3


def gpus(*sizes_gib: float) -> Machine:
    return Machine(
        tuple(Gpu(i, "G", int(s * GIB)) for i, s in enumerate(sizes_gib)),
        cores=8,
        ram_bytes=64 * GIB,
    )


def need(i: int, gib: float, *, n: int = 1, seconds: float = 3600.0, share: float = 1.0) -> Need:
    return Need(i, "gpu", n, gpu_bytes=int(gib * GIB), seconds=seconds, share=share)


def test_small_runs_share_a_gpu_until_it_is_full():
    machine, ledger = gpus(80), Ledger()
    placed = []
    for i in range(10):
        got = place(need(i, 15), machine, ledger)
        if isinstance(got, Refusal):
            assert not got.never and "waits for GPU memory" in got.reason
            break
        ledger.take(i, got)
        placed.append(got)
    assert len(placed) == 5  # 5 x 15 GiB <= 80 GiB < 6 x 15
    assert ledger.gpu_bytes[0] <= 80 * GIB


def test_best_fit_fills_the_fuller_gpu_and_keeps_a_whole_one_free():
    machine, ledger = gpus(80, 80), Ledger()
    ledger.take(0, Placement(gpus=(0,), planned_bytes=50 * GIB))
    got = place(need(1, 20), machine, ledger)
    assert got.gpus == (0,)  # beside the 50 GiB run, leaving GPU 1 whole
    ledger.take(1, got)
    assert place(need(2, 70), machine, ledger).gpus == (1,)


def test_a_multi_gpu_entry_needs_room_on_each_of_its_gpus():
    machine, ledger = gpus(40, 40, 40), Ledger()
    ledger.take(0, Placement(gpus=(1,), planned_bytes=30 * GIB))
    got = place(need(1, 25, n=2), machine, ledger)
    assert got.gpus == (0, 2)
    ledger.take(1, got)
    refused = place(need(2, 25, n=2), machine, ledger)
    assert isinstance(refused, Refusal) and not refused.never


@pytest.mark.parametrize(
    ("the_need", "words"),
    [
        (need(1, 90), "the largest GPU here offers"),
        (need(1, 10, n=3), "needs 3 GPUs; this machine has 2"),
        (Need(1, "gpu", 1, problem="preset: unknown field"), "preset: unknown field"),
    ],
)
def test_an_entry_that_can_never_fit_says_why(the_need, words):
    got = place(the_need, gpus(80, 80), Ledger())
    assert isinstance(got, Refusal) and got.never and words in got.reason


def test_memory_other_processes_hold_makes_an_entry_wait_not_fail():
    machine = Machine((Gpu(0, "G", 10 * GIB, usable_bytes=80 * GIB),), 8, 64 * GIB)
    got = place(need(1, 20), machine, Ledger())
    assert isinstance(got, Refusal) and not got.never


def test_cpu_entries_share_the_cores_and_the_ram():
    machine = Machine((), cores=8, ram_bytes=4 * GIB)
    ledger = Ledger()
    cpu = [Need(i, "any", 1, ram_bytes=1 * GIB, seconds=60) for i in range(5)]
    first = place(cpu[0], machine, ledger, waiting_cpu=4)
    assert first.threads == 2 and first.gpus == ()  # 8 cores among 4 waiting
    ledger.take(0, first, GIB)
    for i in (1, 2, 3):
        ledger.take(i, place(cpu[i], machine, ledger, waiting_cpu=4 - i), GIB)
    assert ledger.cores == 8
    refused = place(cpu[4], machine, ledger)
    assert isinstance(refused, Refusal) and "CPU core" in refused.reason
    capped = Machine((), cores=8, ram_bytes=4 * GIB, max_threads=1)
    assert place(cpu[0], capped, Ledger(), waiting_cpu=1).threads == 1
    small = Machine((), cores=8, ram_bytes=GIB // 2)
    assert place(cpu[0], small, Ledger()).never


def test_a_night_packed_takes_fewer_gpu_hours_than_one_at_a_time():
    machine = gpus(80)
    needs = [need(i, 10, seconds=3600, share=0.25) for i in range(4)] + [need(9, 60, seconds=3600)]
    packed = simulate(needs, machine)
    serial = simulate(needs, machine, one_at_a_time=True)
    assert all(s.end_s is not None for s in packed)
    assert busy_gpu_hours(serial) == pytest.approx(5.0)
    # the four small runs together keep the GPU fully busy for one hour; the big one waits for memory
    assert busy_gpu_hours(packed) == pytest.approx(2.0)
    for t in sorted({s.start_s for s in packed}):  # at no moment over the GPU's memory
        live = [s for s in packed if s.start_s <= t < s.end_s]
        assert sum(s.placement.planned_bytes for s in live) <= 80 * GIB


def test_runs_that_ask_for_more_than_the_gpu_slow_each_other():
    packed = simulate([need(1, 10, seconds=100), need(2, 10, seconds=100)], gpus(80))
    assert [s.end_s for s in packed] == [pytest.approx(200), pytest.approx(200)]


def test_after_orders_entries_and_a_never_starting_one_holds_its_followers():
    machine = gpus(80)
    slots = {
        s.entry_id: s
        for s in simulate(
            [need(1, 10, seconds=50), need(2, 10, seconds=50), need(3, 100), need(4, 10)],
            machine,
            after={2: 1, 4: 3},
        )
    }
    assert slots[2].start_s == pytest.approx(slots[1].end_s)
    assert slots[3].placement is None and "largest GPU" in slots[3].reason
    assert slots[4].placement is None and "#3" in slots[4].reason


@pytest.mark.parametrize(
    ("text", "count", "name"),
    [("H100", 1, "H100"), ("4xA100-80GB", 4, "A100-80GB"), ("2x t4", 2, "T4")],
)
def test_what_if_gpus_come_from_the_catalog(text, count, name):
    machine, specs = planning.whatif_machine(text)
    assert len(machine.gpus) == count and {s.name for s in specs.values()} == {name}


def test_an_unknown_what_if_gpu_is_one_line():
    with pytest.raises(planning.PlanError, match="unknown GPU 'Z9000'; known: "):
        planning.parse_gpu_request("Z9000")


def test_several_builtin_presets_plan_onto_one_h100(tmp_path):
    with Queue(tmp_path / "q.db") as q:
        entries = q.add(
            [NewEntry(n) for n in ("tiny_char", "small_char", "shakespeare_char", "small", "150M")]
        )
    machine, specs = planning.whatif_machine("H100")
    needs = [planning.need_for(e, machine, specs, check_launch=False) for e in entries]
    assert all(n.gpu_bytes and n.gpu_bytes < machine.gpus[0].capacity_bytes for n in needs)
    sizes = {e.preset: n.gpu_bytes for e, n in zip(entries, needs, strict=True)}
    assert sizes["tiny_char"] < sizes["small"] < sizes["150M"]
    slots = simulate(needs, machine)
    starting_now = [s for s in slots if s.start_s == 0]
    assert len(starting_now) == 5  # all of them fit beside each other at once
    assert sum(s.placement.planned_bytes for s in starting_now) <= machine.gpus[0].capacity_bytes


def test_a_preset_that_does_not_load_is_a_problem_not_a_crash(tmp_path):
    with Queue(tmp_path / "q.db") as q:
        (e,) = q.add([NewEntry("tiny_char", overrides={"model.n_head": 7})])
    machine, specs = planning.whatif_machine("H100")
    n = planning.need_for(e, machine, specs, check_launch=False)
    assert n.problem.startswith("preset: ")
    assert place(n, machine, Ledger()).never


def test_the_cpu_thread_variable_is_the_trainers():
    from cockpit.train.threads import THREADS_ENV

    assert planning.CPU_THREADS_ENV == THREADS_ENV


def test_gpu_runs_also_need_host_ram_for_their_cuda_runtime():
    machine = Machine((Gpu(0, "G", 80 * GIB),), cores=8, ram_bytes=10 * GIB)
    ledger = Ledger()
    small = [Need(i, "gpu", 1, gpu_bytes=GIB, ram_bytes=3 * GIB, seconds=60) for i in range(5)]
    placed = 0
    for n in small:
        got = place(n, machine, ledger)
        if isinstance(got, Refusal):
            assert not got.never and got.reason.startswith("waits for RAM")
            break
        ledger.take(n.entry_id, got, n.ram_bytes)
        placed += 1
    assert placed == 3  # 3 x 3 GiB of host RAM fit in 10 GiB, a fourth does not
    huge = Need(9, "gpu", 1, gpu_bytes=GIB, ram_bytes=20 * GIB)
    assert place(huge, machine, Ledger()).never


def test_a_planned_gpu_entry_counts_its_host_side(tmp_path):
    with Queue(tmp_path / "q.db") as q:
        (e,) = q.add([NewEntry("small_char")])
    machine, specs = planning.whatif_machine("H100")
    n = planning.need_for(e, machine, specs, check_launch=False)
    assert n.ram_bytes >= 3 * GIB  # the CUDA runtime's host memory at least
    assert machine.ram_bytes > 1000 * GIB  # a what-if host is not a limit
