"""Record a real training run with a loss spike, for the health replay test.

A tiny byte-level GPT whose learning rate warms up towards a far too high peak
(1.5 for AdamW, 1500x the tiny presets' 1e-3): it learns while the lr is low;
near the top of the warmup the loss jumps (about 2x its recent mean), stays
high while the lr is high, and recovers as the cosine decay brings the lr down.
The run's events become tests/data/spike_run.events.jsonl (step, eval and
warning records, a few hundred lines) and its preset
tests/data/spike_run.preset.json.

Two ways to make it:

    python bench/record_spike_run.py                # the real child: gpt-cockpit --no-ui --set ...
    python bench/record_spike_run.py --standalone   # a self-contained torch loop writing cockpit events

`--engine auto` (the default) uses the real child when the training engine and
headless mode are installed, else the standalone loop. Both train on CPU and
take well under a minute.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cockpit.plan.presets import Preset, apply_overrides  # noqa: E402
from cockpit.rundir import EventWriter, read_events  # noqa: E402

OUT_DIR = REPO / "tests" / "data"
EVENTS_OUT = OUT_DIR / "spike_run.events.jsonl"
PRESET_OUT = OUT_DIR / "spike_run.preset.json"

# The recipe: a tiny model and an lr ramp (warmup) towards 1.5, then cosine decay; clipping
# stays on, as a user would have it, and the spike happens anyway.
OVERRIDES = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "model.vocab_size=256",
    "model.dropout=0.0",
    "train.batch_size=32",
    "train.grad_accum=1",
    "train.max_steps=250",
    "train.lr=1.5",
    "train.min_lr=0.01",
    "train.schedule=cosine",
    "train.warmup_steps=100",
    "train.grad_clip=1.0",
    "train.eval_interval=50",
    "train.eval_steps=4",
    "train.log_interval=10",
    "train.sample_tokens=0",
    "train.dtype=fp32",
    "train.seed=1337",
    "data.tokenizer=byte",
]


def spike_preset(extra: list[str] | None = None) -> Preset:
    """The recipe as a validated preset."""
    return apply_overrides(
        Preset(name="spike_run", description="tiny GPT, lr far too high"), OVERRIDES + (extra or [])
    )


def engine_available() -> bool:
    """True when the training child and headless mode are installed."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("cockpit.headless", "cockpit.train.__main__", "torch")
    )


# --------------------------------------------------------------------------- the real child


def record_with_child(run_dir: Path, extra: list[str]) -> Path:
    """Train through `gpt-cockpit --no-ui` and return the run's events file."""
    base = (
        run_dir.parent / "spike_run_base.json"
    )  # the default preset, so no built-in preset is needed
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(
        json.dumps(Preset(name="spike_run", description="tiny GPT, lr far too high").to_dict()),
        encoding="utf-8",
    )
    cmd = [
        sys.executable,
        "-m",
        "cockpit",
        "--no-ui",
        "--device",
        "cpu",
        "--preset",
        str(base),
        "--run-dir",
        str(run_dir),
    ]
    for item in OVERRIDES + extra:
        cmd += ["--set", item]
    print("$", " ".join(cmd), file=sys.stderr)
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    print(proc.stdout[-3000:], file=sys.stderr)
    print(
        f"child exited {proc.returncode} after {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    events = run_dir / "events.jsonl"
    if not events.is_file():
        raise SystemExit(f"the run wrote no events ({run_dir}); see the output above")
    return events


# --------------------------------------------------------------------------- the standalone loop


def stdlib_text(limit_bytes: int = 400_000) -> str:
    """Python's own standard library source, a corpus every machine has."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        size += len(text)
        if size >= limit_bytes:
            break
    return "".join(parts)[:limit_bytes]


def record_standalone(run_dir: Path, preset: Preset) -> Path:
    """Train a tiny GPT in this process with torch and write step/eval events as the trainer does."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    m, t = preset.model, preset.train
    torch.manual_seed(t.seed)
    data = torch.tensor(list(stdlib_text().encode("utf-8")), dtype=torch.long)
    n_val = int(len(data) * preset.data.val_fraction)
    train_data, val_data = data[:-n_val], data[-n_val:]
    gen = torch.Generator().manual_seed(t.seed)

    def batch(split: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(split) - m.block_size - 1, (t.batch_size,), generator=gen)
        x = torch.stack([split[i : i + m.block_size] for i in ix])
        y = torch.stack([split[i + 1 : i + 1 + m.block_size] for i in ix])
        return x, y

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(m.n_embd), nn.LayerNorm(m.n_embd)
            self.qkv = nn.Linear(m.n_embd, 3 * m.n_embd, bias=False)
            self.proj = nn.Linear(m.n_embd, m.n_embd, bias=False)
            self.mlp = nn.Sequential(
                nn.Linear(m.n_embd, 4 * m.n_embd, bias=False),
                nn.GELU(),
                nn.Linear(4 * m.n_embd, m.n_embd, bias=False),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, s, m.n_head, c // m.n_head).transpose(1, 2) for z in (q, k, v))
            y = (
                F.scaled_dot_product_attention(q, k, v, is_causal=True)
                .transpose(1, 2)
                .reshape(b, s, c)
            )
            x = x + self.proj(y)
            return x + self.mlp(self.ln2(x))

    class TinyGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(m.vocab_size, m.n_embd)
            self.wpe = nn.Embedding(m.block_size, m.n_embd)
            self.blocks = nn.ModuleList(Block() for _ in range(m.n_layer))
            self.ln_f = nn.LayerNorm(m.n_embd)

        def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T  # tied embeddings
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    model = TinyGPT()
    for module in (
        model.modules()
    ):  # nanoGPT's init: N(0, 0.02) weights, so the first loss is about ln(vocab)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
    opt = torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay
    )
    from cockpit.plan.schedule import lr_at

    tokens_per_step = preset.tokens_per_step
    events_path = run_dir / "events.jsonl"
    with EventWriter(events_path) as writer:
        writer.emit(
            "start",
            0,
            preset=preset.name,
            recorder="bench/record_spike_run.py (standalone torch loop)",
        )
        for step in range(
            1, t.max_steps + 1
        ):  # steps count completed optimizer steps from 1, as the trainer's events
            started = time.perf_counter()
            lr = lr_at(step - 1, t)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = batch(train_data)
            loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                if t.grad_clip > 0
                else torch.tensor(0.0)
            )
            opt.step()
            step_ms = (time.perf_counter() - started) * 1000.0
            writer.emit(
                "step",
                step,
                loss=float(loss.detach()),
                lr=lr,
                grad_norm=float(norm),
                tokens_per_s=tokens_per_step / (step_ms / 1000.0),
                step_ms=step_ms,
                tokens=step * tokens_per_step,
            )
            if t.eval_interval and step % t.eval_interval == 0:
                with torch.no_grad():
                    val = (
                        sum(float(model(*batch(val_data))) for _ in range(t.eval_steps))
                        / t.eval_steps
                    )
                    tr = (
                        sum(float(model(*batch(train_data))) for _ in range(t.eval_steps))
                        / t.eval_steps
                    )
                writer.emit("eval", step, val_loss=val, train_loss=tr)
        writer.emit("end", t.max_steps, reason="finished")
    return events_path


# --------------------------------------------------------------------------- saving


def save_recording(events: Path, preset: Preset) -> list[dict]:
    """Copy the run's step/eval/warning/end records into tests/data (samples and checkpoints dropped)."""
    keep = ("start", "step", "eval", "warning", "end")
    records = [r for r in read_events(events) if r["event"] in keep]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = EVENTS_OUT.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with EventWriter(tmp) as writer:
        writer.write_many(records)
    os.replace(tmp, EVENTS_OUT)
    PRESET_OUT.write_text(json.dumps(preset.to_dict(), indent=2) + "\n", encoding="utf-8")
    return records


def describe(records: list[dict], preset: Preset) -> None:
    """Print the loss curve around its biggest jump and what the health monitor says about it."""
    from cockpit.health import HealthMonitor

    steps = [r for r in records if r["event"] == "step" and math.isfinite(r.get("loss", math.nan))]
    jumps = [(b["loss"] - a["loss"], b["step"]) for a, b in zip(steps, steps[1:], strict=False)]
    rise, at = max(jumps)
    print(
        f"{len(records)} records, {len(steps)} steps; biggest one-step rise {rise:+.3f} at step {at}"
    )
    for r in steps:
        if at - 5 <= r["step"] <= at + 5:
            print(f"  step {r['step']:4d}  loss {r['loss']:.4f}  norm {r['grad_norm']:.3f}")
    for w in HealthMonitor(preset).replay(records):
        print(f"  warning {w.rule} at step {w.step}: {w.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--standalone", action="store_true", help="use the standalone torch loop")
    group.add_argument(
        "--child",
        action="store_true",
        help="use the real training child (fails if it is not installed)",
    )
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more overrides",
    )
    parser.add_argument(
        "--keep-run", metavar="DIR", help="train into DIR and keep it (default: a temp folder)"
    )
    args = parser.parse_args(argv)

    preset = spike_preset(args.extra)
    use_child = args.child or (not args.standalone and engine_available())
    work = Path(args.keep_run) if args.keep_run else Path(tempfile.mkdtemp(prefix="spike-run-"))
    run_dir = work if args.keep_run else work / "run"
    try:
        if use_child:
            events = record_with_child(run_dir, args.extra)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            events = record_standalone(run_dir, preset)
        records = save_recording(events, preset)
        print(
            f"engine: {'gpt-cockpit child' if use_child else 'standalone torch loop'}; wrote {EVENTS_OUT.relative_to(REPO)}"
        )
        describe(records, preset)
    finally:
        if not args.keep_run:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
