"""Headless mode: preset resolution, printed lines, exit codes and signals (with the fake child)."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_trainer import cockpit_command, use_fake_trainer

from cockpit import rundir, runs
from cockpit.__main__ import main
from cockpit.common.format import (
    format_eval_line,
    format_step_line,
    human_bytes,
    human_count,
    human_duration,
    parse_line,
)
from cockpit.headless import Follower
from cockpit.health import HealthConfig, HealthMonitor
from cockpit.plan import presets
from cockpit.rundir import read_events

TINY = [
    "--set",
    "train.log_interval=5",
    "--set",
    "train.eval_interval=10",
    "--set",
    "train.warmup_steps=2",
]


def headless(tmp_path: Path, *extra: str) -> list[str]:
    """argv for a short headless run in tmp_path."""
    return ["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "20", *TINY, *extra]


def only_run(tmp_path: Path) -> Path:
    (run_dir,) = list((tmp_path / "runs").iterdir())
    return run_dir


# --------------------------------------------------------------------------- lines


@pytest.mark.parametrize(
    ("record", "max_steps", "expected"),
    [
        (
            {
                "step": 120,
                "loss": 2.31412,
                "lr": 6e-4,
                "grad_norm": 0.912,
                "step_ms": 41.23,
                "tokens_per_s": 18600.0,
            },
            2000,
            "step 120/2000 | loss 2.3141 | lr 6.0e-04 | norm 0.91 | 41.2 ms | 18.6k tok/s",
        ),
        (
            {
                "step": 5,
                "loss": 2.0,
                "lr": 1e-3,
                "grad_norm": 1.0,
                "step_ms": 10.0,
                "tokens_per_s": 2.5e6,
                "mfu": 0.312,
            },
            10,
            "step 5/10 | loss 2.0000 | lr 1.0e-03 | norm 1.00 | 10.0 ms | 2.5M tok/s | mfu 31.2%",
        ),
        (
            {"step": 7, "loss": math.nan, "grad_norm": math.inf},
            None,
            "step 7 | loss nan | norm inf",
        ),
        (
            {"step": 3, "loss": 1.0, "grad_norm": 12345.0, "mfu": None},
            9,
            "step 3/9 | loss 1.0000 | norm 1.23e+04",
        ),
    ],
)
def test_step_line(record, max_steps, expected):
    assert format_step_line(record, max_steps) == expected


def test_eval_line_and_parse_back():
    line = format_eval_line(
        {"step": 250, "val_loss": 2.314, "train_loss": 2.2511, "val_bpb": 1.2341}, 2000
    )
    assert line == "eval 250/2000 | val 2.3140 | train 2.2511 | bpb 1.234"
    assert format_eval_line({"step": 1, "val_loss": 3.0, "val_bpb": None}) == "eval 1 | val 3.0000"
    step = parse_line(
        "step 120/2000 | loss 2.3141 | lr 6.0e-04 | norm 0.91 | 41.2 ms | 18.6k tok/s"
    )
    assert step == {
        "step": "120/2000",
        "loss": "2.3141",
        "lr": "6.0e-04",
        "norm": "0.91",
        "ms": "41.2",
        "tok/s": "18.6k",
    }


@pytest.mark.parametrize(
    ("func", "value", "expected"),
    [
        (human_count, 999, "999"),
        (human_count, 18_600, "18.6k"),
        (human_count, 124_439_808, "124.4M"),
        (human_count, None, "-"),
        (human_bytes, 512, "512 B"),
        (human_bytes, 3 * 2**30, "3.0 GiB"),
        (human_duration, 45, "45s"),
        (human_duration, 190, "3m"),
        (human_duration, 7500, "2h05m"),
        (human_duration, 3 * 86400 + 4 * 3600, "3d4h"),
        (human_duration, math.nan, "-"),
    ],
)
def test_human_numbers(func, value, expected):
    assert func(value) == expected


# --------------------------------------------------------------------------- a run, in process


def test_headless_run_prints_clean_step_lines(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, warn_at=7)
    assert main(headless(tmp_path)) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert all(line.startswith(("step ", "eval ")) for line in lines), out
    steps = [parse_line(line) for line in lines if line.startswith("step ")]
    # the first step, then every log_interval (5) up to max_steps
    assert [s["step"] for s in steps] == ["1/20", "5/20", "10/20", "15/20", "20/20"]
    assert all({"loss", "lr", "norm", "ms", "tok/s"} <= set(s) for s in steps)
    losses = [float(s["loss"]) for s in steps]
    assert losses[-1] < losses[0]
    assert [line.split(" | ")[0] for line in lines if line.startswith("eval ")] == [
        "eval 10/20",
        "eval 20/20",
    ]
    run_dir = only_run(tmp_path)
    assert f"gpt-cockpit: run {run_dir} (pid " in err
    assert "Ctrl-C stops with a checkpoint" in err
    assert "[loss_spike]" in err and "tip: lower train.lr" in err
    assert "sample at step 10" in err and "checkpoint last at step 10" in err
    assert "end: finished at step 20/20" in err
    assert rundir.read_run_info(run_dir).status == "finished"
    preset = rundir.load_run_preset(run_dir)
    assert preset.train.max_steps == 20 and preset.train.log_interval == 5


def test_mfu_is_printed_as_percent(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, mfu=0.25)
    assert main(headless(tmp_path)) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(" | mfu 25.0%")


def test_max_steps_shrinks_a_warmup_that_no_longer_fits(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "12"]) == 0
    err = capsys.readouterr().err
    assert "train.warmup_steps=1" in err
    assert rundir.load_run_preset(only_run(tmp_path)).train.warmup_steps == 1


def test_max_steps_of_one_says_one_step(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "so the schedule fits in 1 step\n" in err and "1 steps" not in err


def test_data_path_is_recorded(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    text = tmp_path / "corpus.txt"
    text.write_text("hello world\n" * 100)
    monkeypatch.chdir(tmp_path)
    assert main(headless(tmp_path, "--data", "corpus.txt")) == 0
    assert rundir.load_run_preset(only_run(tmp_path)).data.source == str(text)  # made absolute


def test_user_preset_by_name(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    preset = presets.apply_overrides(
        presets.Preset(name="mine"), {"train.max_steps": 10, "train.warmup_steps": 1}
    )
    presets.save_user_preset(preset)
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--preset", "mine"]) == 0
    assert "step 10/10" in capsys.readouterr().out
    assert only_run(tmp_path).name.endswith("-mine")


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--set", "train.lr=abc"],
            "gpt-cockpit: error: train.lr: must be a number, not the string 'abc'",
        ),
        (["--set", "train.lrr=1"], "gpt-cockpit: error: train.lrr: unknown field; did you mean"),
        (
            ["--set", "model.n_embd=100", "--set", "model.n_head=3"],
            "gpt-cockpit: error: model.n_embd: 100 is not divisible",
        ),
        (["--set", "nonsense"], "gpt-cockpit: error: nonsense: an override is written key=value"),
        (
            ["--data", "/no/such/corpus.txt"],
            "gpt-cockpit: error: --data: no such file or folder: /no/such/corpus.txt",
        ),
        (
            ["--data", "/no/such/shard_*.bin"],
            "gpt-cockpit: error: --data: no files match /no/such/shard_*.bin",
        ),
        (["--preset", "no_such_preset"], "gpt-cockpit: error: no preset named 'no_such_preset'"),
        (
            ["--set", "data.source=/no/such/dir"],
            "gpt-cockpit: error: data.source: no such file or folder: /no/such/dir",
        ),
        (
            ["--preset", "golf_baseline", "--set", "data.source=/no/such/fineweb_train_*.bin"],
            "gpt-cockpit: error: data.source: no files match /no/such/fineweb_train_*.bin",
        ),
        (["--max-steps", "0"], "gpt-cockpit: error: train.max_steps: must be at least 1"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, extra, message):
    use_fake_trainer(monkeypatch)
    argv = ["--no-ui", "--runs-dir", str(tmp_path / "runs"), *extra]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(message), err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_default_preset_is_tiny_char(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "10"]) == 0
    preset = rundir.load_run_preset(only_run(tmp_path))
    assert preset.name == "tiny_char" and preset.train.max_steps == 10


def test_missing_default_preset_falls_back_but_a_broken_one_is_an_error(
    tmp_path, monkeypatch, capsys
):
    use_fake_trainer(monkeypatch)
    monkeypatch.setattr("cockpit.headless.builtin_dir", lambda: tmp_path / "none")
    monkeypatch.setattr("cockpit.plan.presets.builtin_dir", lambda: tmp_path / "none")
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "10"]) == 0
    assert (
        "preset 'tiny_char' is not installed; using the built-in defaults"
        in capsys.readouterr().err
    )
    presets.user_dir().mkdir(parents=True)
    (presets.user_dir() / "tiny_char.json").write_text('{"train": {"lr": "fast"}}')
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs2"), "--max-steps", "10"]) == 2
    err = capsys.readouterr().err
    assert "gpt-cockpit: error: train.lr: must be a number" in err and "not installed" not in err


def test_untrainable_arch_is_refused(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    monkeypatch.setattr(
        presets,
        "arch_trainable",
        lambda arch: (False, "the bdh model is not built yet") if arch == "bdh" else (True, ""),
    )
    argv = headless(tmp_path, "--set", "model.arch=bdh")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err.strip().splitlines()[-1]
        == "gpt-cockpit: error: model.arch: 'bdh' cannot be trained yet: the bdh model is not built yet"
    )
    assert not (tmp_path / "runs").exists()


def test_run_dir_that_holds_a_run_is_refused(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch)
    run_dir = tmp_path / "myrun"
    assert main(headless(tmp_path, "--run-dir", str(run_dir))) == 0
    capsys.readouterr()
    assert main(headless(tmp_path, "--run-dir", str(run_dir))) == 2
    assert "already holds a run; use `gpt-cockpit resume" in capsys.readouterr().err


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("option", "reason"),
    [({"halt_at": 6}, "halted"), ({"error_at": 6}, "crashed")],
)
def test_failed_end_exits_1(tmp_path, monkeypatch, capsys, option, reason):
    use_fake_trainer(monkeypatch, **option)
    assert main(headless(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"end: {reason} at step 6/20" in err
    if reason == "crashed":
        assert "gpt-cockpit: error: step 6: RuntimeError: injected failure" in err
    assert rundir.read_run_info(only_run(tmp_path)).status == reason


def test_child_dying_without_end_reports_crash_with_console_tail(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, die_at=8)
    assert main(headless(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "the training process exited with code 1 without an `end` event (crashed)" in err
    assert "console.log ---" in err and "fake trainer: dying at step 8" in err
    assert rundir.read_run_info(only_run(tmp_path)).status == "crashed"


def test_child_that_cannot_start_reports_console_tail(tmp_path, monkeypatch, capsys):
    def broken(run_dir, *, device="auto", resume=False):
        return [sys.executable, "-c", "import sys; print('boom: no such module'); sys.exit(3)"]

    monkeypatch.setattr(runs, "child_command", broken)
    assert main(headless(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "exited with code 3 without an `end` event" in err
    assert "boom: no such module" in err


def test_bad_lines_are_skipped_and_counted(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, bad_line_at=3)
    assert main(headless(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert "step 20/20" in out
    assert "skipped 1 unreadable line(s)" in err


def test_a_silent_live_run_is_reported_as_stalled(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, step_s=0.01, pause_at=5, pause_s=1.5)
    run_dir = rundir.create_run_dir(
        presets.apply_overrides(
            presets.Preset(name="t"),
            {"train.max_steps": 10, "train.warmup_steps": 1, "train.log_interval": 1},
        ),
        root=tmp_path,
    )
    handle = runs.launch(run_dir)
    out, err = io.StringIO(), io.StringIO()
    monitor = HealthMonitor(config=HealthConfig(stall_min_s=0.5, stall_factor=5.0))
    follower = Follower(run_dir, process=handle.process, out=out, err=err, health=monitor)
    assert follower.follow() == 0
    text = err.getvalue()
    assert text.count("[stalled]") == 1, text  # once per silence, not every second
    assert "warning: step 5: [stalled] no events for" in text
    assert "step 10/10" in out.getvalue()


# --------------------------------------------------------------------------- signals, in a real process


def start_headless(tmp_path: Path, step_s: float = 0.02, **extra: str) -> subprocess.Popen[str]:
    """`--no-ui` on the fake child: 400 steps of `step_s` (8 s by default: live for as long as a
    test waits for its first steps and signals it, without sleeping long for those steps)."""
    env = {**os.environ, "FAKE_TRAINER": f"step_s={step_s}", "PYTHONUNBUFFERED": "1"}
    cmd = cockpit_command(
        "--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "400", *TINY
    )
    # A session of its own, so a signal to its group is what a terminal's Ctrl-C does.
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_steps(tmp_path: Path, n: int, timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs_dir = tmp_path / "runs"
        if runs_dir.is_dir():
            for run_dir in runs_dir.iterdir():
                steps = [
                    r for r in read_events(run_dir / rundir.EVENTS_JSONL) if r["event"] == "step"
                ]
                if len(steps) >= n:
                    return run_dir
        time.sleep(0.05)
    raise AssertionError("the run did not advance")


def test_ctrl_c_stops_with_checkpoint_and_exits_0(tmp_path):
    proc = start_headless(tmp_path)
    run_dir = wait_for_steps(tmp_path, 10)
    os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal does
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopping after this step (Ctrl-C again to kill)" in err
    assert "end: stopped" in err
    events = read_events(run_dir / rundir.EVENTS_JSONL)
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped"
    assert any(r["event"] == "checkpoint" for r in events)
    assert rundir.read_run_info(run_dir).status == "stopped"
    assert all(line.startswith(("step ", "eval ")) for line in out.splitlines())
    last_step = [line for line in out.splitlines() if line.startswith("step ")][-1]
    assert last_step.startswith(
        f"step {events[-1]['step']}/400 "
    )  # the stop step, even between intervals


def test_sigint_to_headless_alone_still_stops_the_child(tmp_path):
    proc = start_headless(tmp_path)
    run_dir = wait_for_steps(tmp_path, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert rundir.read_run_info(run_dir).status == "stopped"


def test_sigterm_is_forwarded(tmp_path):
    proc = start_headless(tmp_path)
    run_dir = wait_for_steps(tmp_path, 5)
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "end: stopped" in err
    assert rundir.read_run_info(run_dir).status == "stopped"


def test_sighup_to_the_group_stops_with_a_checkpoint(tmp_path):
    """The SSH session dropping: SIGHUP to the whole group is a stop, not a death."""
    proc = start_headless(tmp_path)
    run_dir = wait_for_steps(tmp_path, 5)
    os.killpg(proc.pid, signal.SIGHUP)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "end: stopped" in err
    events = read_events(run_dir / rundir.EVENTS_JSONL)
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped"
    assert rundir.read_run_info(run_dir).status == "stopped"


def test_a_second_ctrl_c_after_the_run_stopped_kills_nothing(tmp_path):
    """Fast steps: the first Ctrl-C has stopped the run with its checkpoint before the next ones
    land. Ctrl-C keeps coming until the process is gone, so some land while it says goodbye."""
    proc = start_headless(tmp_path, step_s=0.005)
    run_dir = wait_for_steps(tmp_path, 10)
    os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 20
    while not [r for r in read_events(run_dir / rundir.EVENTS_JSONL) if r["event"] == "end"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    while proc.poll() is None:
        assert time.monotonic() < deadline
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.002)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "end: stopped" in err
    assert "killed" not in err
    assert rundir.read_run_info(run_dir).status == "stopped"


def test_the_signal_scope_gives_back_its_handlers_unless_the_process_ends_with_it(tmp_path):
    """In-process callers (the tests, the app) get their handlers back; the command line ignores
    signals after the run's end, through the interpreter's shutdown."""
    from cockpit.headless import SignalScope

    follower = Follower(tmp_path)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with SignalScope(follower):
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert {sig: signal.getsignal(sig) for sig in before} == before
    try:
        with SignalScope(follower, last=True):
            pass
        assert {sig: signal.getsignal(sig) for sig in before} == dict.fromkeys(
            before, signal.SIG_IGN
        )
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt, no stop request
        time.sleep(0.01)
        assert follower.stop_requests == 0
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_second_ctrl_c_kills_and_exits_130(tmp_path):
    proc = start_headless(tmp_path, step_s=0.2)
    run_dir = wait_for_steps(tmp_path, 1)
    info = rundir.read_run_info(run_dir)
    # Slow steps, so the second Ctrl-C lands before the first one has been acted on.
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert not rundir.pid_alive(info.pid, info.pid_start_time)
    assert "killed: the steps since the last checkpoint are lost" in err
    info = rundir.read_run_info(run_dir)  # written by headless, not left "running" or "crashed"
    assert (info.status, info.end_message) == ("killed", "killed by a second Ctrl-C")


def test_a_kill_whose_record_comes_after_the_exit_is_still_a_kill(tmp_path, monkeypatch):
    """`stop --kill` says so in run.json, signals, then records the kill: the following
    terminal may see the child die between the last two, and must not call it a crash."""
    from cockpit.rundir import process

    proc = start_headless(tmp_path, step_s=0.05)
    run_dir = wait_for_steps(tmp_path, 3)
    monkeypatch.setattr(process, "record_killed", lambda *_: "running")  # the killer is slow
    assert rundir.stop_run(run_dir, kill=True)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "killed at once (SIGKILL): the steps since the last checkpoint are lost" in err
    info = rundir.read_run_info(run_dir)  # recorded by the following terminal
    assert (info.status, info.end_reason) == ("killed", "killed")


def test_a_kill_from_another_terminal_is_a_kill_not_a_crash(tmp_path):
    """`gpt-cockpit stop RUN --kill` elsewhere: the following terminal says killed, exits 130."""
    proc = start_headless(tmp_path, step_s=0.05)
    run_dir = wait_for_steps(tmp_path, 3)
    assert rundir.stop_run(run_dir, kill=True)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "killed at once (SIGKILL): the steps since the last checkpoint are lost" in err
    assert "crashed" not in err
    assert rundir.read_run_info(run_dir).status == "killed"


def test_closed_stdout_stops_the_run_with_a_checkpoint(tmp_path):
    """`gpt-cockpit --no-ui ... | head -1`: the run stops cleanly instead of training unseen."""
    proc = start_headless(tmp_path, step_s=0.01)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("step 1/400")
    proc.stdout.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.wait(timeout=20) == 0, err
    assert "stdout was closed: stopping the run with a checkpoint" in err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert rundir.read_run_info(only_run(tmp_path)).status == "stopped"


@pytest.mark.slow
def test_real_child_trains_a_tiny_model_headless(tmp_path):
    """End to end with the torch child: clean step lines, a falling loss, exit 0."""
    pytest.importorskip("torch")
    for module in ("cockpit.train.models", "cockpit.train.data", "cockpit.text.tokenizers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} has not landed yet")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 400)
    cmd = [
        sys.executable, "-m", "cockpit", "--no-ui", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
        "--max-steps", "40", "--data", str(corpus),
        "--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.n_embd=32", "--set", "model.block_size=32",
        "--set", "train.batch_size=8", "--set", "train.lr=3e-3", "--set", "train.log_interval=10",
        "--set", "train.eval_interval=20", "--set", "train.eval_steps=2", "--set", "train.sample_tokens=16",
        "--set", "data.tokenizer=char",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith(("step ", "eval ")) for line in lines), result.stdout
    steps = [parse_line(line) for line in lines if line.startswith("step ")]
    assert steps[0]["step"] == "1/40" and steps[-1]["step"] == "40/40"
    assert float(steps[-1]["loss"]) < float(steps[0]["loss"])
    assert [line.split(" | ")[0] for line in lines if line.startswith("eval ")] == [
        "eval 20/40",
        "eval 40/40",
    ]
    assert "end: finished at step 40/40" in result.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert rundir.read_run_info(run_dir).status == "finished"
    assert (run_dir / rundir.CHECKPOINTS / "last.pt").is_file()


def test_ctrl_c_before_the_child_exists_still_stops_it(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, step_s=0.05)
    real_launch = runs.launch

    def launch_after_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # lands while the child is being spawned
        time.sleep(0.05)
        return real_launch(*args, **kwargs)

    monkeypatch.setattr(runs, "launch", launch_after_ctrl_c)
    argv = ["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "400", *TINY]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "stopping after this step" in err and "end: stopped" in err
    assert rundir.read_run_info(only_run(tmp_path)).status == "stopped"


def test_help_lists_headless_options():
    result = subprocess.run(
        [sys.executable, "-m", "cockpit", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "--no-ui" in result.stdout and "--max-steps" in result.stdout


def test_step_events_reach_a_script_line_by_line(tmp_path):
    """stdout is flushed per poll, so a reader sees lines while the run goes on."""
    proc = start_headless(tmp_path, step_s=0.02)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("step 1/400")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=20)
    assert json.loads((only_run(tmp_path) / rundir.RUN_JSON).read_text())["status"] == "stopped"


def test_a_run_directory_that_cannot_be_made_is_a_usage_error(tmp_path, monkeypatch, capsys):
    long_dir = tmp_path / ("r" * 300)  # one name over the file system's 255
    assert main(["--no-ui", "--run-dir", str(long_dir), "--max-steps", "5", *TINY]) == 2
    err = capsys.readouterr().err
    assert "cannot create the run directory" in err and "File name too long" in err
    assert "Traceback" not in err

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    runs_dir = tmp_path / "ro"
    assert main(["--no-ui", "--runs-dir", str(runs_dir), "--max-steps", "5", *TINY]) == 2
    err = capsys.readouterr().err
    # the --runs-dir check before anything starts says it (one line), or the creation does
    assert "Read-only file system" in err and str(runs_dir) in err
    assert len(err.strip().splitlines()) == 1
