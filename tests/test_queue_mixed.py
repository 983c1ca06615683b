"""The queue on a machine of mixed GPUs: each entry planned, placed, timed and charged on its card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cockpit.__main__ import main
from cockpit.campaign import planning
from cockpit.campaign.backend import Backend, Placement, RunState
from cockpit.campaign.forecast import forecast
from cockpit.campaign.money import Limits
from cockpit.campaign.packing import Gpu, GpuPlan, Ledger, Machine, Need, Refusal, place, simulate
from cockpit.campaign.scheduler import Scheduler
from cockpit.campaign.store import NewEntry, Queue
from cockpit.plan import estimate as est
from cockpit.plan import gpu as gpu_module
from cockpit.plan.gpu import GpuStatus, lookup_gpu

GIB = 1024**3
BYTE = {"data.tokenizer": "byte"}  # no BPE files here
H100, T4 = lookup_gpu("H100"), lookup_gpu("T4")


def status(index: int, name: str, total_gib: float, capability: tuple[int, int]) -> GpuStatus:
    total = int(total_gib * GIB)
    return GpuStatus(index, name, total, 0, total, 0.0, None, None, None, capability)


# NVML's view of a workstation with a T4 first and an H100 second (PCI order)
FAKE_T4_H100 = [
    status(0, "Tesla T4", 15, (7, 5)),
    status(1, "NVIDIA H100 80GB HBM3", 80, (9, 0)),
]


@pytest.fixture
def fake_gpus(monkeypatch):
    monkeypatch.setattr(gpu_module, "query_gpus", lambda *a, **k: FAKE_T4_H100)
    monkeypatch.setattr(planning, "query_gpus", lambda *a, **k: FAKE_T4_H100)


@pytest.fixture
def queue(tmp_path):
    with Queue(tmp_path / "q.sqlite3") as q:
        yield q


def entry(queue, preset: str, tmp_path: Path, **overrides):
    (e,) = queue.add(
        [NewEntry(preset, overrides={**BYTE, **overrides}, runs_root=str(tmp_path / "runs"))]
    )
    return e


# --------------------------------------------------------------------------- packing


def mixed() -> Machine:
    """GPU 0 an H100-like card, GPU 1 a T4-like one (the packer only sees their numbers)."""
    return Machine(
        (Gpu(0, "H100", 79 * GIB), Gpu(1, "T4", int(14.75 * GIB))), cores=8, ram_bytes=64 * GIB
    )


def two_plans(i: int, h100: tuple[float, float], t4: tuple[float, float], share=1.0) -> Need:
    """A need with (GiB, seconds) on the H100 (GPU 0) and on the T4 (GPU 1)."""
    plans = {
        0: GpuPlan(int(h100[0] * GIB), h100[1], share),
        1: GpuPlan(int(t4[0] * GIB), t4[1], share),
    }
    return Need(i, "gpu", 1, plans[0].gpu_bytes, 0, plans[0].seconds, share, per_gpu=plans)


def test_an_entry_too_big_for_the_t4_goes_to_the_h100_though_the_t4_is_the_best_fit():
    machine, ledger = mixed(), Ledger()
    # 12 GiB in bf16 on the H100; 16 GiB in fp16 without flash attention on the T4
    need = two_plans(1, (12, 600), (16, 9000))
    assert place(need, machine, ledger).gpus == (0,)
    # the H100 full: it waits for it rather than being put on the T4
    ledger.take(9, Placement(gpus=(0,), planned_bytes=70 * GIB))
    got = place(need, machine, ledger)
    assert isinstance(got, Refusal) and not got.never
    assert "waits for GPU memory" in got.reason and "GPU 0 H100" in got.reason


def test_an_entry_that_fits_neither_card_never_starts_and_says_so_per_card():
    got = place(two_plans(1, (90, 600), (95, 9000)), mixed(), Ledger())
    assert isinstance(got, Refusal) and got.never
    assert "90.0 GiB on H100, which offers 79.0 GiB" in got.reason
    assert "95.0 GiB on T4, which offers 14.8 GiB" in got.reason


def test_a_run_goes_where_it_finishes_first():
    machine, ledger = mixed(), Ledger()
    big = two_plans(1, (10, 600), (12, 9000))
    assert place(big, machine, ledger).gpus == (0,)  # fits both: the H100 is 15x faster
    ledger.take(1, Placement(gpus=(0,), planned_bytes=10 * GIB), share=1.0)
    # a second one shares the H100 (twice 600 s) rather than take 9000 s on the idle T4
    assert place(two_plans(2, (10, 600), (12, 9000)), machine, ledger).gpus == (0,)
    # a launch-bound run that the H100 would slow to 2x (two busy runs already) takes the T4,
    # where it is barely slower alone
    ledger.take(2, Placement(gpus=(0,), planned_bytes=10 * GIB), share=1.0)
    small = two_plans(3, (1, 60), (1.2, 70), share=0.2)
    assert place(small, machine, ledger).gpus == (1,)


def test_it_waits_for_a_busy_faster_card_only_when_that_finishes_it_sooner():
    machine, ledger = mixed(), Ledger()
    ledger.take(1, Placement(gpus=(0,), planned_bytes=75 * GIB), share=1.0)
    need = two_plans(2, (10, 600), (12, 9000))
    soon = place(need, machine, ledger, frees_in={0: 300.0})  # 300 + 600 s < 9000 s
    assert isinstance(soon, Refusal) and not soon.never and "waits for GPU 0 H100" in soon.reason
    late = place(need, machine, ledger, frees_in={0: 20000.0})  # the T4 now is sooner
    assert late.gpus == (1,)
    assert place(need, machine, ledger).gpus == (1,)  # when the H100 frees is unknown


def test_a_night_on_mixed_cards_is_timed_by_each_cards_plan():
    a = two_plans(1, (60, 600), (12, 9000))  # starts on the H100, holds most of it
    b = two_plans(2, (30, 600), (13, 6000))  # cannot join it, nor fit the T4: waits for it
    c = two_plans(3, (2, 100), (2, 200), share=0.1)  # small: fits beside a on the H100
    slots = {s.entry_id: s for s in simulate([a, b, c], mixed())}
    # a and c share the H100 (1.1 of its compute) until c ends: 100 s of work at 1/1.1
    assert slots[3].placement.gpus == (0,) and slots[3].end_s == pytest.approx(110)
    assert slots[1].placement.gpus == (0,) and slots[1].end_s == pytest.approx(610)
    # b ran on neither card meanwhile, then takes the H100's 600 s, not the T4's 6000
    assert slots[2].placement.gpus == (0,) and slots[2].start_s == pytest.approx(610)
    assert slots[2].end_s == pytest.approx(1210)


def test_a_multi_gpu_run_on_mixed_cards_steps_at_the_slowest_ones_pace():
    plans = {0: GpuPlan(10 * GIB, 600, 1.0), 1: GpuPlan(12 * GIB, 9000, 1.0)}
    need = Need(1, "gpu", 2, 10 * GIB, 0, 600, 1.0, per_gpu=plans)
    got = place(need, mixed(), Ledger())
    assert got.gpus == (0, 1) and got.planned_bytes == 12 * GIB  # the larger plan on each
    placed = need.placed_on(got.gpus)
    assert placed.seconds == 9000 and placed.gpu_bytes == 12 * GIB


# --------------------------------------------------------------------------- planning


def test_gpu_lists_parse_into_a_what_if_machine_in_the_order_given():
    machine, specs = planning.whatif_machine("2xA100-80GB+A100-40GB, T4")
    assert [g.name for g in machine.gpus] == ["A100-80GB", "A100-80GB", "A100-40GB", "T4"]
    assert [specs[i].name for i in range(4)] == [g.name for g in machine.gpus]
    assert machine.label == "2xA100-80GB + A100-40GB + T4"
    assert machine.gpus[3].capacity_bytes == T4.usable_bytes
    for bad in ("H100,Z9000", ",", "40xH100,40xT4"):
        with pytest.raises(planning.PlanError):
            planning.whatif_machine(bad)


def test_each_card_gets_its_own_plan_and_the_eta_follows_its_peak(queue, tmp_path):
    e = entry(queue, "350M_1024", tmp_path)
    machine, specs = planning.whatif_machine("H100,T4")
    need = planning.need_for(e, machine, specs, check_launch=False)
    h, t = need.plan_on(0), need.plan_on(1)
    preset = planning.entry_preset(e)
    # the T4 has no bf16: it trains (and is planned) in fp16
    assert est.training_dtype(preset, H100) == "bf16" and est.training_dtype(preset, T4) == "fp16"
    assert t.gpu_bytes > T4.usable_bytes  # 26 GiB: this entry can only ever run on the H100
    # compute-bound: the time past the start follows the cards' peaks (989 bf16 / 65 fp16)
    ratio = (t.seconds - planning.START_S) / (h.seconds - planning.START_S)
    assert ratio == pytest.approx(H100.peak_flops("bf16") / T4.peak_flops("fp16"), rel=1e-6)
    assert 0 < h.share < t.share <= 1  # the H100's start is a larger part of its short run
    # until placed it shows the first GPU's plan; on a machine of one kind it has one plan
    assert (need.gpu_bytes, need.seconds) == (h.gpu_bytes, h.seconds)
    one = planning.need_for(e, *planning.whatif_machine("4xA100-80GB"), check_launch=False)
    assert one.per_gpu == {}


def test_nvml_reports_a_t4_and_an_h100_the_big_entry_lands_on_the_h100(queue, tmp_path, fake_gpus):
    big = entry(queue, "350M_1024", tmp_path)
    small = entry(queue, "tiny", tmp_path)
    machine, specs = planning.local_machine()
    assert "T4" in specs[0].name and "H100" in specs[1].name
    assert [g.whole_bytes for g in machine.gpus] == [T4.usable_bytes, H100.usable_bytes]
    fc = forecast(queue.entries(), machine, specs)
    assert fc.slots[big.id].placement.gpus == (1,)  # the H100 (NVML index 1)
    h100_alone = planning.need_for(big, *planning.whatif_machine("H100"), check_launch=False)
    # its ETA (and so its cost) is the H100's, not GPU 0's T4
    assert fc.needs[big.id].seconds == pytest.approx(h100_alone.seconds)
    assert fc.slots[big.id].end_s == pytest.approx(h100_alone.seconds)
    assert fc.slots[small.id].placement is not None


def test_the_queue_list_shows_the_eta_and_cost_of_the_card_it_will_run_on(
    queue, tmp_path, fake_gpus, monkeypatch
):
    from cockpit.campaign import view

    monkeypatch.setenv("GPT_COCKPIT_PRICE_PER_GPU_HOUR", "3")
    big = entry(queue, "350M_1024", tmp_path)
    shown = view.build_view(queue, gpus=[], now=1000.0)
    (row,) = [r for r in shown.rows if r["id"] == big.id]
    h100 = planning.need_for(big, *planning.whatif_machine("H100"), check_launch=False)
    t4 = planning.need_for(big, *planning.whatif_machine("T4"), check_launch=False)
    assert row["device"] == "cuda:1"
    assert row["eta"] == pytest.approx(1000.0 + h100.seconds)
    assert row["to_finish"] == pytest.approx(3 * h100.seconds / 3600)
    assert t4.seconds > 10 * h100.seconds  # GPU 0's plan would have been far off


class Recording(Backend):
    """A backend that starts nothing and says every run is running (placement decisions only)."""

    name = "recording"

    def __init__(self) -> None:
        self.started: dict[int, Placement] = {}

    def start(self, entry, run_dir, placement, *, resume):
        self.started[entry.id] = placement
        return str(entry.id)

    def poll(self, entry):
        return RunState("running")

    def stop(self, entry, *, checkpoint=True):
        return True

    def cancel(self, entry):
        return True


def test_the_scheduler_starts_each_entry_on_a_card_its_plan_fits(queue, tmp_path, fake_gpus):
    first = entry(queue, "gpt2_124m", tmp_path)
    second = entry(queue, "350M_1024", tmp_path)
    third = entry(queue, "500M_1024", tmp_path)  # neither beside those two nor on the T4
    huge = entry(queue, "gpt2_124m", tmp_path, **{"train.batch_size": 512})
    backend = Recording()
    s = Scheduler(
        queue,
        backend,
        limits=Limits(price_per_gpu_hour=2.0),
        check_launch=False,
        tick_s=0.0,
        say=lambda line: None,
    )
    s.tick()
    assert backend.started[first.id].gpus == (1,) and backend.started[second.id].gpus == (1,)
    h100 = planning.whatif_machine("H100")
    for e in (first, second):  # the plan recorded is the H100's (the queue list's ETA)
        got = queue.get(e.id)
        alone = planning.need_for(e, *h100, check_launch=False)
        assert got.planned_seconds == pytest.approx(alone.seconds)
        assert got.planned_bytes == alone.gpu_bytes
    waiting = queue.get(third.id)
    assert waiting.state == "queued" and "waits for GPU memory" in waiting.reason
    # it shows the plan of the card it waits for, not GPU 0's T4
    alone = planning.need_for(third, *h100, check_launch=False)
    assert waiting.planned_seconds == pytest.approx(alone.seconds)
    assert third.id not in backend.started
    never = queue.get(huge.id)
    assert never.state == "failed" and "never starts here" in never.reason
    assert "on NVIDIA H100 80GB HBM3, which offers 79.1 GiB" in never.reason
    assert "on Tesla T4, which offers 14.8 GiB" in never.reason


def test_queue_plan_shows_a_mixed_machine(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("350M_1024", "tiny"):
        assert main(["queue", "add", name, "--set", "data.tokenizer=byte"]) == 0
    capsys.readouterr()
    code = main(["queue", "plan", "--gpu", "T4,H100", "--price-per-gpu-hour", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    plan = json.loads(out)
    assert [g["name"] for g in plan["gpus"]] == ["T4", "H100"]
    code = main(["queue", "plan", "--gpu", "T4,H100"])
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].startswith("plan for T4 + H100: GPU 0 T4 14.8 GiB, GPU 1 H100")
    (row,) = [line for line in out.splitlines() if "350M_1024" in line]
    assert "cuda:1" in row and "start now" in row


@pytest.mark.parametrize(
    "argv, words",
    [
        (["plan", "--gpu", "H100,Z9000"], "unknown GPU 'Z9000'"),
        (["plan", "--gpu", "40xH100+30xT4"], "between 1 and 64 GPUs"),
        (["plan", "--on", "slurm", "--gpu", "H100,T4"], "named as one kind"),
    ],
)
def test_a_bad_gpu_list_is_one_line_exit_2(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert main(["queue", "add", "tiny", "--set", "data.tokenizer=byte"]) == 0
    capsys.readouterr()
    assert main(["queue", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and words in err
