"""Seed 001's environment variables as preset overrides for golf runs.

The parameter-golf baseline reads its settings from the environment
(`MAX_WALLCLOCK_SECONDS=60 ITERATIONS=500 VAL_LOSS_EVERY=0 python train_gpt.py`).
A golf run launched here (model.arch=golf) reads the same names from the
launching command's environment and turns them into `--set` style overrides,
which the launch records in run.json's `overrides` (docs/golf.md has the table).

No torch: the faces call this before anything is launched.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cockpit.plan.presets import Preset, PresetError


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    return float(text)


def _bool01(text: str) -> bool:
    return bool(int(text))


@dataclass(frozen=True)
class EnvField:
    """One seed variable: the preset field it sets and how its text is read."""

    path: str  # a preset field path, or "" when the name is accepted but has no effect here
    read: Callable[[str], Any]
    note: str = ""


ENV_FIELDS: dict[str, EnvField] = {
    # data and bookkeeping
    "DATA_PATH": EnvField(
        "data.source", str, "DIR -> DIR/fineweb_train_*.bin (val: fineweb_val_*)"
    ),
    "TOKENIZER_PATH": EnvField(
        "data.tokenizer_model", str, "the SentencePiece .model, for val_bpb"
    ),
    "SEED": EnvField("train.seed", _int),
    "RUN_ID": EnvField("", str, "runs are named by their directory"),
    # validation
    "VAL_LOSS_EVERY": EnvField("train.eval_interval", _int, "0: only the final eval"),
    "VAL_BATCH_SIZE": EnvField("", _int, "evals run micro-batches of train.batch_size"),
    "TRAIN_LOG_EVERY": EnvField("train.log_interval", _int, "0 is read as 1"),
    # length
    "ITERATIONS": EnvField("train.max_steps", _int, "warmdown_steps is cut to fit"),
    "WARMDOWN_ITERS": EnvField("train.warmdown_steps", _int),
    "WARMUP_STEPS": EnvField("train.priming_steps", _int, "priming steps, then state reset"),
    "TRAIN_BATCH_TOKENS": EnvField(
        "train.batch_size", _int, "tokens // (grad_accum x block_size) sequences"
    ),
    "TRAIN_SEQ_LEN": EnvField("model.block_size", _int, "train.batch_size keeps the tokens"),
    "MAX_WALLCLOCK_SECONDS": EnvField("train.max_time_s", _float),
    "QK_GAIN_INIT": EnvField("model.qk_gain_init", _float),
    # shape
    "VOCAB_SIZE": EnvField("model.vocab_size", _int),
    "NUM_LAYERS": EnvField("model.n_layer", _int),
    "NUM_KV_HEADS": EnvField("model.n_kv_head", _int),
    "MODEL_DIM": EnvField("model.n_embd", _int),
    "NUM_HEADS": EnvField("model.n_head", _int),
    "MLP_MULT": EnvField("model.mlp_ratio", _int),
    "TIE_EMBEDDINGS": EnvField("model.tie_embeddings", _bool01),
    "ROPE_BASE": EnvField("model.rope_base", _float),
    "LOGIT_SOFTCAP": EnvField("model.logit_softcap", _float),
    # optimizer
    "EMBED_LR": EnvField("train.embed_lr", _float),
    "HEAD_LR": EnvField("train.head_lr", _float),
    "TIED_EMBED_LR": EnvField("train.tied_embed_lr", _float),
    "TIED_EMBED_INIT_STD": EnvField("model.tied_embed_init_std", _float),
    "MATRIX_LR": EnvField("train.matrix_lr", _float, "also train.lr, the schedule's peak"),
    "SCALAR_LR": EnvField("train.scalar_lr", _float),
    "MUON_MOMENTUM": EnvField("train.muon_momentum", _float),
    "MUON_BACKEND_STEPS": EnvField("train.muon_backend_steps", _int),
    "MUON_MOMENTUM_WARMUP_START": EnvField("train.muon_momentum_warmup_start", _float),
    "MUON_MOMENTUM_WARMUP_STEPS": EnvField("train.muon_momentum_warmup_steps", _int),
    "BETA1": EnvField("train.beta1", _float),
    "BETA2": EnvField("train.beta2", _float),
    "ADAM_EPS": EnvField("train.adam_eps", _float),
    "GRAD_CLIP_NORM": EnvField("train.grad_clip", _float),
}

# Environment names that look like golf settings: a near miss of one of these warns.
_SETTING_HINTS = ("_LR", "_ITERS", "_STEPS", "_EVERY", "_SIZE", "_SEQ_LEN", "_SECONDS", "MUON_")


@dataclass
class EnvOverrides:
    """What the environment asks of a golf run: overrides to record, and lines to tell the user."""

    overrides: dict[str, Any]
    notes: list[str]  # one line each: names accepted without effect, fields adjusted to fit
    warnings: list[str]  # one line each: unknown names that look like golf settings


def _looks_like_setting(name: str) -> bool:
    return name.isupper() and any(hint in name for hint in _SETTING_HINTS)


def _unknown_names(environ: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted(environ):
        if name in ENV_FIELDS:
            continue
        close = difflib.get_close_matches(name, list(ENV_FIELDS), n=1, cutoff=0.8)
        if close:
            out.append(f"{name} is not a golf setting; did you mean {close[0]}? (ignored)")
        elif _looks_like_setting(name) and name.startswith(("MUON_", "TRAIN_", "VAL_")):
            out.append(f"{name} is not a golf setting (ignored; docs/golf.md lists them)")
    return out


def _read(name: str, text: str) -> Any:
    field = ENV_FIELDS[name]
    try:
        return field.read(text.strip())
    except ValueError:
        kinds: dict[Callable[[str], Any], str] = {
            _int: "a whole number",
            _float: "a number",
            _bool01: "0 or 1",
        }
        kind = kinds.get(field.read, "")
        raise PresetError(field.path or name, f"{name}={text!r} is not {kind}") from None


def env_overrides(
    preset: Preset, environ: Mapping[str, str] | None = None, *, keep: Any = ()
) -> EnvOverrides:
    """The overrides seed 001's variables in `environ` ask of a golf `preset` (none for other archs).

    Fields in `keep` (field paths the user set explicitly, e.g. with --set) are left alone.
    Raises PresetError for a value that does not parse or a result that does not validate.
    """
    env = os.environ if environ is None else environ
    result = EnvOverrides({}, [], [])
    if preset.model.arch != "golf":
        return result
    result.warnings = _unknown_names(env)
    values: dict[str, Any] = {}
    for name in ENV_FIELDS:
        if name not in env:
            continue
        field = ENV_FIELDS[name]
        value = _read(name, env[name])
        if not field.path:
            result.notes.append(f"{name} has no effect here: {field.note}")
        elif field.path in keep:
            result.notes.append(f"{name} ignored: {field.path} was set explicitly")
        else:
            values[name] = value
    result.overrides = _to_fields(preset, values, result.notes)
    return result


def _to_fields(preset: Preset, values: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Seed names and values -> preset field paths and values, with the derived fields."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        path = ENV_FIELDS[name].path
        if name == "DATA_PATH":
            value = os.path.join(os.path.abspath(os.path.expanduser(value)), "fineweb_train_*.bin")
        elif name == "TOKENIZER_PATH":
            value = os.path.abspath(os.path.expanduser(value)) if value else ""
        elif name == "TRAIN_LOG_EVERY":
            value = max(1, value)
        elif name in ("TRAIN_BATCH_TOKENS", "TRAIN_SEQ_LEN"):
            continue  # below: the two together decide the batch
        out[path] = value
    if "MATRIX_LR" in values:
        out["train.lr"] = values["MATRIX_LR"]
    if "TRAIN_BATCH_TOKENS" in values or "TRAIN_SEQ_LEN" in values:
        seq = values.get("TRAIN_SEQ_LEN", preset.model.block_size)
        tokens = values.get("TRAIN_BATCH_TOKENS", preset.tokens_per_step)
        batch = tokens // (preset.train.grad_accum * seq) if seq > 0 else 0
        if batch < 1:
            raise PresetError(
                "train.batch_size",
                f"TRAIN_BATCH_TOKENS={tokens} is less than one sequence of {seq} tokens "
                f"per micro-batch ({preset.train.grad_accum} micro-batches a step)",
            )
        out["model.block_size"] = seq
        out["train.batch_size"] = batch
    _fit_warmdown(preset, out, notes)
    return out


def _fit_warmdown(preset: Preset, out: dict[str, Any], notes: list[str]) -> None:
    """ITERATIONS below the warmdown: the warmdown is cut to the run, as --max-steps does."""
    steps = out.get("train.max_steps", preset.train.max_steps)
    warmup = out.get("train.warmup_steps", preset.train.warmup_steps)
    warmdown = out.get("train.warmdown_steps", preset.train.warmdown_steps)
    if warmup + warmdown > steps:
        out["train.warmdown_steps"] = max(0, steps - warmup)
        notes.append(
            f"train.warmdown_steps={out['train.warmdown_steps']} so the warmdown fits in {steps} steps"
        )
    if out.get("train.eval_interval", None) == 0:
        notes.append("VAL_LOSS_EVERY=0: only the final eval runs")
