"""The training child starts without torch's compiler when its run does not compile, and the
measuring child of your own model never loads it either; its CPU thread policy reaches OpenMP.

torch.optim imports torch._dynamo (about 1.2 s of CPU, as much as torch) to mark code it never
compiles in an eager run; the child defers it (cockpit/train/eager.py). A real child process
trains an eager run to its end and never loads it, and the same process can still compile.
The same child, started without the tests' thread settings, says which thread policy it chose
(cockpit/train/threads.py) and OpenMP shows it took it: libgomp reads its variables once, as
torch loads it, and `--device auto` asks torch about CUDA before training.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import events_of, make_run

from cockpit.train import __main__ as child
from cockpit.train import eager, threads

ROOT = Path(__file__).resolve().parent.parent

# The child's entry point as `python -m cockpit.train` calls it, then what was loaded; then a
# compile in the same process (the stand-in gives way to the real module and forwards to it).
EAGER_CHILD = """
import json, sys
from cockpit.train.__main__ import main
from cockpit.train import eager
code = main(["--run-dir", sys.argv[1], "--device", "auto"], own_process=True)  # no GPU here
stand_in = sys.modules[eager.NAME]
out = {"code": code, "deferred": isinstance(stand_in, eager.DeferredDynamo),
       "loaded_while_training": eager.dynamo_loaded()}
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel  # what a torchrun rank wraps its model in
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
ddp = DistributedDataParallel(torch.nn.Linear(4, 4))
ddp(torch.ones(2, 4)).sum().backward()
out["ddp_grads"] = ddp.module.weight.grad is not None and not ddp._use_python_reducer
out["loaded_by_ddp"] = eager.dynamo_loaded()
dist.destroy_process_group()
from torch.utils.flop_counter import FlopCounterMode  # what the measuring child runs
layer = torch.nn.Linear(4, 4, device="meta")
with FlopCounterMode(display=False) as counter:
    layer(torch.empty(2, 4, device="meta")).sum().backward()
out["flops"] = counter.get_total_flops()
out["loaded_while_measuring"] = eager.dynamo_loaded()
import torch._dynamo.config  # a submodule: the real package is needed for its path
compiled = torch.compile(lambda x: (x * 2).sum(), backend="eager")
out["compiled"] = compiled(torch.ones(3)).item()
out["loaded_after"] = eager.dynamo_loaded()
out["real_in_place"] = sys.modules[eager.NAME] is torch._dynamo and stand_in.real() is torch._dynamo
out["real_is_a_package"] = hasattr(torch._dynamo, "__path__") and hasattr(torch._dynamo, "__file__")
fn = lambda: 1
out["disable_forwards"] = stand_in.disable(fn) is not fn  # the real one wraps it
print(json.dumps(out))
"""


def openmp_settings(stderr: str) -> dict[str, str]:
    """The variables libgomp shows when it loads with OMP_DISPLAY_ENV=VERBOSE (`  NAME = 'v'`)."""
    return dict(re.findall(r"^\s+(\w+) = '([^']*)'", stderr, flags=re.MULTILINE))


def test_an_eager_child_trains_without_the_compiler_says_its_threads_and_can_still_compile(
    tmp_path,
):
    run_dir = make_run(tmp_path, "train.max_steps=4", "train.eval_interval=2")
    cleared = (threads.THREADS_ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in cleared}  # the child's own choice
    proc = subprocess.run(
        [sys.executable, "-c", EAGER_CHILD, str(run_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "OMP_DISPLAY_ENV": "VERBOSE"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    cores = threads.usable_cores()
    openmp = openmp_settings(proc.stderr)
    if cores >= threads.SPARE_FROM:
        line = f"cpu threads: {cores - 1} of {cores} usable cores, OMP_WAIT_POLICY=PASSIVE"
        assert openmp["OMP_WAIT_POLICY"] == "PASSIVE", proc.stderr
    else:  # nothing to spare: torch's own count (one a core), a short spin (GOMP_SPINCOUNT)
        line = f"cpu threads: {cores} of {cores} usable cores, OMP_WAIT_POLICY=default"
        assert openmp["GOMP_SPINCOUNT"] == threads.SHORT_SPIN, proc.stderr
    assert line in proc.stdout.splitlines()
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 0
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"
    assert [r["step"] for r in events_of(run_dir, "checkpoint")][-1] == 4
    assert out["deferred"] and not out["loaded_while_training"]
    # a DDP rank joins its process group and wraps its model without the compiler too
    assert out["ddp_grads"] and not out["loaded_by_ddp"]
    # 2·B·in·out for the forward and again for the weight's gradient (the input needs none)
    assert out["flops"] == 2 * (2 * 2 * 4 * 4) and not out["loaded_while_measuring"]
    assert out["compiled"] == 6.0 and out["loaded_after"]
    assert out["real_in_place"] and out["real_is_a_package"] and out["disable_forwards"]


@pytest.mark.parametrize(
    ("overrides", "own_process", "device", "deferred"),
    [
        ((), True, "auto", True),  # `python -m cockpit.train` on an eager run, no GPU here
        ((), True, "cpu", True),
        ((), True, "cuda", False),  # a CUDA run loads torch's compiler as torch does
        (("train.compile=true",), True, "cpu", False),  # torch.compile needs it at once
        ((), False, "cpu", False),  # main() called in a process that may compile later (tests)
    ],
)
def test_only_an_eager_cpu_run_in_its_own_process_defers_the_compiler(
    tmp_path, monkeypatch, overrides, own_process, device, deferred
):
    run_dir = make_run(tmp_path, *overrides)
    calls = []
    monkeypatch.setattr(eager, "defer_dynamo", lambda: calls.append(1) or True)
    monkeypatch.setattr(child, "_train", lambda *a, **k: 0)
    argv = ["--run-dir", str(run_dir), "--device", device]
    assert child.main(argv, own_process=own_process) == 0
    assert bool(calls) is deferred


def test_the_thread_policy_is_set_before_the_device_probe_loads_torch(tmp_path, monkeypatch):
    """libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when torch loads it, and
    `--device auto` asks torch about CUDA: the policy must be in place before that question."""
    run_dir = make_run(tmp_path)
    order: list[str] = []
    monkeypatch.setattr(child, "wait_politely", lambda: order.append("policy"))
    monkeypatch.setattr(child, "_on_cpu", lambda device: order.append("probe") or True)
    monkeypatch.setattr(eager, "defer_dynamo", lambda: order.append("defer") or True)
    monkeypatch.setattr(child, "_train", lambda *a, **k: order.append("train") or 0)
    assert child.main(["--run-dir", str(run_dir)], own_process=True) == 0
    assert order == ["policy", "probe", "defer", "train"]


def test_an_unreadable_preset_is_left_to_the_trainer_to_report(tmp_path):
    run_dir = make_run(tmp_path)
    (run_dir / "preset.json").write_text("{not json", encoding="utf-8")
    assert child._compiles(str(run_dir))  # no stand-in: the trainer's own error path runs as ever


def test_a_process_that_loaded_the_compiler_keeps_it(monkeypatch):
    real = object()
    monkeypatch.setitem(sys.modules, eager.NAME, real)
    assert eager.defer_dynamo() is False
    assert sys.modules[eager.NAME] is real and eager.dynamo_loaded()


def test_the_stand_in_answers_as_torch_does_outside_a_compile():
    stand_in = eager.DeferredDynamo()

    def fn():
        return 1

    assert (
        stand_in.disable(fn) is fn and stand_in.disable(fn, recursive=False, wrapping=False) is fn
    )
    assert stand_in.disable()(fn) is fn  # the decorator form
    assert stand_in.graph_break() is None
    with pytest.raises(AttributeError):
        stand_in.__file__  # noqa: B018  # inspect and pickle probe every module: no load for them
    assert stand_in.__dict__["_real"] is None


def test_the_stand_in_answers_a_ddp_rank_and_forwards_the_rest_of_those_modules():
    stand_in = eager.DeferredDynamo()
    assert stand_in.utils.get_optimize_ddp_mode() != "python_reducer"  # DDP's C++ reducer
    assert stand_in.trace_rules.clear_lru_cache() is None
    assert stand_in.__dict__["_real"] is None  # neither question loaded the compiler
    part = stand_in.utils
    counters = part.counters  # anything else of it: the real module's, loaded for it
    assert stand_in.__dict__["_real"] is not None and counters is stand_in.real().utils.counters
    assert part.get_optimize_ddp_mode is stand_in.real().utils.get_optimize_ddp_mode
    assert stand_in.utils is stand_in.real().utils  # loaded: the stand-in only forwards


def test_a_torchrun_rank_leaves_without_the_interpreters_teardown(monkeypatch, capsys):
    """Under torchrun the child ends with os._exit once everything is written (DDP's reducer
    torn down after the process group can deadlock a finished rank in gloo's destructor)."""
    left: list[int] = []

    def hard_exit(code: int) -> None:
        left.append(code)
        raise SystemExit("os._exit")

    monkeypatch.setattr(child.os, "_exit", hard_exit)
    monkeypatch.setenv("WORLD_SIZE", "2")
    print("written before leaving", end="")
    with pytest.raises(SystemExit, match="os._exit"):
        child.leave(3)
    assert left == [3] and capsys.readouterr().out == "written before leaving"
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(SystemExit) as ended:
        child.leave(0)
    assert ended.value.code == 0 and left == [3]
