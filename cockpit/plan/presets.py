"""Presets: what to train, how, and on which data.

A preset is three sections (model, train, data) plus a name and a description.
On disk it is one small JSON file. Built-in presets ship in `presets/`; user
presets live in a per-user config folder and may `extends` a built-in, recording
only the fields that differ.

Every way into a Preset (a file, a dict, a `--set key=value`) goes through
`preset_from_dict`, which either returns a valid Preset or raises PresetError
naming the field path and the fix. It never raises anything else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cockpit import arch as archs
from cockpit.common.fsutil import atomic_write_text

# Tokenizers a preset may name, with their vocabulary sizes where fixed.
# "char" takes its vocabulary from the corpus (known only once data is read);
# "pretokenized" means the data files already hold token ids (.bin, shards).
TOKENIZER_VOCAB: dict[str, int | None] = {
    "byte": 256,
    "char": None,
    "pretokenized": None,
    "gpt2": 50257,
    "r50k_base": 50257,
    "p50k_base": 50281,
    "cl100k_base": 100277,
    "o200k_base": 200019,
}

ARCHS = archs.names()  # the built-in architectures (cockpit/arch/); or PATH.py:ClassName
SCHEDULES = ("cosine", "warmdown", "constant")
DTYPES = ("auto", "bf16", "fp16", "fp32")
OPTIMIZERS = ("adamw", "muon")
ANOMALY_RESPONSES = ("warn", "halt", "rollback")
PARALLEL_MODES = ("ddp", "fsdp")  # under torchrun: replicate (DDP) or shard (FSDP2) the model
MAX_INT = (
    2**53
)  # integer fields beyond this are typos, and would overflow float arithmetic downstream


class PresetError(ValueError):
    """A preset that cannot be used; `path` is the dotted field path, if any."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


@dataclass
class ModelConfig:
    """The network: shape and architecture."""

    arch: str = "gpt"  # gpt (nanoGPT), golf (parameter-golf baseline), bdh (BDH), or PATH.py:ClassName (your own)
    n_layer: int = 4  # transformer blocks (bdh: layers share one set of weights)
    n_head: int = 4  # attention (query) heads
    n_kv_head: int = 0  # key/value heads for grouped-query attention; 0 = same as n_head
    n_embd: int = 128  # residual stream width
    block_size: int = 64  # context length in tokens
    vocab_size: int = 256  # embedding rows; may exceed the tokenizer's vocab (padding)
    dropout: float = 0.0  # dropout probability in [0, 1)
    bias: bool = False  # biases in Linear and LayerNorm layers (gpt)
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * n_embd (gpt, golf)
    tie_embeddings: bool = True  # share the token embedding with the output head
    rope_base: float = 10000.0  # rotary embedding base (golf, bdh)
    logit_softcap: float = 0.0  # softcap * tanh(logits / softcap) before the loss; 0 = off (golf)
    qk_gain_init: float = 1.5  # initial per-head query gain (golf)
    mlp_internal_dim_multiplier: int = 128  # N = mult * n_embd // n_head (bdh)
    num_streams: int = 1  # parallel residual streams mixed by learned weights (gpt); 1 = off
    mixing_iters: int = 10  # Sinkhorn iterations normalising the streams' mix (num_streams > 1)
    mixing_temperature: float = 1.0  # softness of the mixing weights; lower is closer to plain
    loss_chunk: int = 0  # fused head + cross-entropy over chunks of this many tokens, never all logits at once; 0 = off (gpt, golf)
    tied_embed_init_std: float = 0.005  # std of the token embedding's normal init (golf)
    # your own model's extra keys (model.arch = PATH.py:ClassName): kept as given, written back
    # into the model section, and passed to its class as attributes of its config
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """The optimisation: batch, schedule, precision, evaluation, safety."""

    batch_size: int = 12  # micro-batch: sequences per forward pass
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000  # optimizer steps
    max_time_s: float = 0.0  # wall-clock cap in seconds; 0 = none
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # floor of the cosine schedule
    schedule: str = (
        "cosine"  # cosine (warmup, cosine to min_lr) | warmdown (linear to 0) | constant
    )
    warmup_steps: int = 100  # linear warmup from 0 to lr
    warmdown_steps: int = 0  # steps of the final linear decay to 0 (schedule=warmdown)
    min_lr_hold_steps: int = 0  # last steps held at min_lr; the cosine ends before them (cosine)
    weight_decay: float = 0.1  # AdamW decay on matrices (not on biases, norms, gains)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.99  # AdamW second-moment decay
    grad_clip: float = 1.0  # global grad-norm clip; 0 = off
    optimizer: str = "adamw"  # the only optimizer for now
    dtype: str = "auto"  # auto: bf16 on GPUs that have it, fp16+GradScaler otherwise, fp32 on CPU
    compile: bool = False  # torch.compile the model
    activation_checkpointing: bool = False  # recompute block activations in backward
    eval_interval: int = 250  # steps between evaluations (and checkpoints); 0 = only at the end
    eval_steps: int = 20  # batches per evaluation
    log_interval: int = 10  # steps between metric read-backs / printed lines
    sample_tokens: int = 200  # tokens of generated text at each eval; 0 = none
    seed: int = 1337  # seeds Python, NumPy and torch
    on_anomaly: str = "warn"  # response to non-finite loss or a spike: warn | halt | rollback
    max_rollbacks: int = 3  # give up (halt) after this many rollbacks
    rollback_lr_factor: float = 1.0  # multiply lr by this after each rollback
    oom_retry: bool = True  # on CUDA OOM halve the micro-batch and double accumulation
    loggers: str = ""  # also log metrics to: tensorboard, wandb (comma-separated; a JSON list too)
    # optimizer=muon (the parameter-golf baseline, seed 001): Muon for the blocks' matrices, Adam
    # for the rest, each role at its own rate; every rate follows the schedule's lr / train.lr
    matrix_lr: float = 0.04  # Muon rate of the 2-D matrices (MATRIX_LR)
    embed_lr: float = 0.6  # Adam rate of an untied token embedding (EMBED_LR)
    tied_embed_lr: float = 0.05  # Adam rate of a tied token embedding (TIED_EMBED_LR)
    head_lr: float = 0.008  # Adam rate of an untied output head (HEAD_LR)
    scalar_lr: float = 0.04  # Adam rate of scalars, vectors, gains and mixes (SCALAR_LR)
    adam_eps: float = 1e-8  # Adam epsilon of the muon optimizer's Adam groups (ADAM_EPS)
    muon_momentum: float = 0.95  # Muon momentum after its warmup (MUON_MOMENTUM)
    muon_momentum_warmup_start: float = 0.85  # Muon momentum at step 0 (MUON_MOMENTUM_WARMUP_START)
    muon_momentum_warmup_steps: int = 500  # steps of the linear momentum warmup; 0 = none
    muon_backend_steps: int = 5  # Newton-Schulz iterations per Muon update (MUON_BACKEND_STEPS)
    eval_full_val: bool = (
        False  # evaluate on the whole val split in order (golf), not eval_steps random batches
    )
    priming_steps: int = 0  # steps run, then undone (weights, optimizer, data, RNG) before training: primes kernels (golf WARMUP_STEPS)
    parallel: str = (
        "ddp"  # several ranks: ddp (replicated) | fsdp (FSDP2: weights, grads, optimizer sharded)
    )
    # several ranks keep the preset's tokens per step: accumulation divided by the world size
    # (golf's reference: 8 micro-batches on one GPU, 8 // world_size on each of several)
    keep_global_batch: bool = False


@dataclass
class DataConfig:
    """Where the tokens come from."""

    source: str = (
        "default"  # "default" (embedded corpus), a text file or folder, a .bin, or a shard glob
    )
    tokenizer: str = "char"  # byte | char | gpt2 | r50k_base | p50k_base | cl100k_base | o200k_base | pretokenized
    val_fraction: float = 0.1  # the last fraction of the tokens is the validation split
    tokenizer_model: str = (
        ""  # a SentencePiece .model for bits per byte on token shards (golf TOKENIZER_PATH)
    )


@dataclass
class Preset:
    """A named, described, validated training configuration."""

    name: str
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    extends: str = ""  # name of the preset this one was derived from (user presets)
    source_path: str = field(default="", compare=False)  # where it was loaded from; not saved
    builtin: bool = field(default=False, compare=False)  # shipped with gpt-cockpit; not saved

    def to_dict(self) -> dict[str, Any]:
        """The preset as it is saved (all fields, no load-time bookkeeping)."""
        out = asdict(self)
        out["model"].update(out["model"].pop("extra"))  # your own model's keys, in the section
        out.pop("source_path")
        out.pop("builtin")
        if not out["extends"]:
            out.pop("extends")
        return out

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimizer step (per process)."""
        t = self.train
        return t.batch_size * t.grad_accum * self.model.block_size

    @property
    def trainable(self) -> tuple[bool, str]:
        """Whether the engine can train this architecture, and why not if it cannot."""
        return arch_trainable(self.model.arch)


# Architectures the engine trains (cockpit/train/models' registry; a test checks they agree
# with cockpit/arch's). The planning core only needs the names.
_TRAINABLE_ARCHS = archs.names()


def arch_trainable(arch: str) -> tuple[bool, str]:
    """(True, "") if the engine can train `arch`, else (False, reason).

    A model file of your own (PATH.py:ClassName) counts as trainable here: whether it imports,
    builds and returns the right shapes is measured before launch (cockpit.runs.prelaunch)."""
    if arch in _TRAINABLE_ARCHS or archs.is_own_model(arch):
        return True, ""
    return False, f"unknown architecture {arch!r}"


# --------------------------------------------------------------------------- parsing

_SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}
_TOP_LEVEL = {"name", "description", "model", "train", "data", "extends"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _field_types(cls: type) -> dict[str, type]:
    """The typed fields of a section (not ModelConfig.extra, which holds the keys it lacks)."""
    hints = {"int": int, "float": float, "str": str, "bool": bool}
    # the annotations are strings (from __future__ import annotations): "int", "float", ...
    return {f.name: hints[str(f.type)] for f in dataclasses.fields(cls) if str(f.type) in hints}


def _unquote(text: str, kind: type) -> str:
    """ " (drop the quotes)" where the string is a number in quotes ("3e-4"), else nothing."""
    try:
        number = kind(text.strip())
    except ValueError:
        return ""
    return " (drop the quotes)" if math.isfinite(number) else ""


def _coerce(path: str, value: Any, kind: type) -> Any:
    """Check one JSON value against the field's type; ints are accepted for floats."""
    if kind is bool:
        if not isinstance(value, bool):
            raise PresetError(path, f"must be true or false, not {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str):
                raise PresetError(
                    path, f"must be a whole number, not the string {value!r}{_unquote(value, int)}"
                )
            raise PresetError(path, f"must be a whole number, not {value!r}")
        if abs(value) > MAX_INT:  # beyond this, sizes overflow float arithmetic in the estimator
            raise PresetError(
                path,
                f"must be at most {MAX_INT:,} in size, not a {len(str(abs(value)))}-digit number",
            )
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                raise PresetError(
                    path, f"must be a number, not the string {value!r}{_unquote(value, float)}"
                )
            raise PresetError(path, f"must be a number, not {value!r}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            shown = value if isinstance(value, float) else f"a {len(str(abs(value)))}-digit number"
            raise PresetError(path, f"must be a finite number, not {shown}")
        return float(value)
    if not isinstance(value, str):
        raise PresetError(path, f"must be a string, not {value!r}")
    return value


def _section_from_dict(section: str, raw: Any, base: Any) -> Any:
    cls = _SECTIONS[section]
    if not isinstance(raw, dict):
        raise PresetError(section, f"must be an object of fields, not {type(raw).__name__}")
    types = _field_types(cls)
    values = asdict(base)
    # your own model's section keeps the keys we do not know: they are its config's
    own = section == "model" and archs.is_own_model(str(raw.get("arch", values["arch"])))
    if section == "model":
        values["extra"] = dict(values["extra"]) if own else {}
    for key, value in raw.items():
        path = f"{section}.{key}"
        if own and key not in types:
            values["extra"][key] = _extra_value(path, value)
            continue
        if key not in types:
            close = _closest(str(key), types)
            hint = (
                f"; did you mean {section}.{close}?"
                if close
                else f"; known fields: {', '.join(types)}"
            )
            raise PresetError(path, f"unknown field{hint}")
        if path in LIST_FIELDS and isinstance(value, list):  # ["tensorboard", "wandb"]
            value = ",".join(_coerce(path, v, str) for v in value)
        values[key] = _coerce(path, value, types[key])
    return cls(**values)


def _extra_value(path: str, value: Any) -> Any:
    """An extra key of your own model's section: any JSON value whose numbers are finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PresetError(path, f"must be a finite number, not {value}")
    if isinstance(value, dict):
        return {k: _extra_value(f"{path}.{k}", v) for k, v in value.items()}
    if isinstance(value, list):
        return [_extra_value(path, v) for v in value]
    return value


def _closest(word: str, choices: Any) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else ""


def preset_from_dict(raw: Any, *, base: Preset | None = None, name: str = "") -> Preset:
    """Build and validate a Preset from parsed JSON; fields missing from `raw` come from `base`."""
    if not isinstance(raw, dict):
        raise PresetError("", f"a preset must be a JSON object, not {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_LEVEL:
            close = _closest(str(key), _TOP_LEVEL)
            hint = (
                f"; did you mean {close!r}?"
                if close
                else f"; allowed: {', '.join(sorted(_TOP_LEVEL))}"
            )
            raise PresetError(str(key), f"unknown top-level key{hint}")
    start = base or Preset(name=name or "unnamed")
    preset_name = raw.get("name", name or start.name)
    preset_name = _coerce("name", preset_name, str)
    description = _coerce("description", raw.get("description", start.description), str)
    extends = _coerce("extends", raw.get("extends", start.extends), str)
    sections = {}
    for section in _SECTIONS:
        sections[section] = _section_from_dict(
            section, raw.get(section, {}), getattr(start, section)
        )
    preset = Preset(name=preset_name, description=description, extends=extends, **sections)
    validate(preset)
    return preset


def validate(preset: Preset) -> None:
    """Raise PresetError naming the first field that is wrong and how to fix it.

    The checks run in a fixed order (name, model, train, data), so a preset with several
    problems always reports the same one first.
    """
    _check_name(preset.name)
    _check_model_shape(preset.model)
    _check_model_ranges(preset.model)
    _check_model_streams(preset.model)
    _check_train_steps(preset.train)
    _check_train_choices(preset.train)
    _check_train_ranges(preset.train)
    _check_optimizer_groups(preset.train)
    _check_data(preset.data, preset.model)
    _check_loggers(preset.train)
    _check_bounds(preset)


LOGGERS = ("tensorboard", "wandb")  # train.loggers: where metrics also go (cockpit.train.loggers)
LIST_FIELDS = ("train.loggers",)  # string fields a JSON preset may also give as a list of strings


def logger_names(value: str) -> list[str]:
    """train.loggers as names: "tensorboard, wandb" -> ["tensorboard", "wandb"]."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _check_loggers(t: TrainConfig) -> None:
    for name in logger_names(t.loggers):
        _check_choice("train.loggers", name, LOGGERS, "logger")


def _check_at_least_one(section: str, config: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(config, key) < 1:
            raise PresetError(f"{section}.{key}", f"must be at least 1, not {getattr(config, key)}")


def _check_not_negative(section: str, config: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(config, key) < 0:
            raise PresetError(
                f"{section}.{key}", f"must not be negative, not {getattr(config, key)}"
            )


def _check_choice(path: str, value: str, choices: Any, what: str) -> None:
    if value not in choices:
        raise PresetError(path, f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise PresetError(
            "name",
            f"{name!r} is not a usable name: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit",
        )


def _check_model_shape(m: ModelConfig) -> None:
    """The architecture name, the sizes, and how width, heads and kv heads fit together."""
    if not archs.is_own_model(m.arch):
        _check_choice("model.arch", m.arch, ARCHS, "architecture")
    _check_at_least_one(
        "model", m, ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "mlp_ratio")
    )
    if m.n_kv_head < 0:
        raise PresetError(
            "model.n_kv_head", f"must be 0 (same as n_head) or positive, not {m.n_kv_head}"
        )
    if m.n_embd % m.n_head:
        raise PresetError(
            "model.n_embd",
            f"{m.n_embd} is not divisible by model.n_head={m.n_head}; pick a width that is a multiple of the head count "
            f"(e.g. {max(m.n_head, round(m.n_embd / m.n_head) * m.n_head)})",
        )
    kv = m.n_kv_head or m.n_head
    if m.n_head % kv:
        raise PresetError("model.n_kv_head", f"{kv} must divide model.n_head={m.n_head}")
    if m.arch in archs.SPECS:
        problem = archs.get_spec(m.arch).check(m)  # what the architecture itself needs
        if problem:
            raise PresetError(*problem)


def _check_model_ranges(m: ModelConfig) -> None:
    """The model's ranges, then the features its architecture must support."""
    if not 0.0 <= m.dropout < 1.0:
        raise PresetError("model.dropout", f"must be in [0, 1), not {m.dropout}")
    if m.logit_softcap < 0:
        raise PresetError("model.logit_softcap", "must be 0 (off) or positive")
    if m.rope_base <= 0:
        raise PresetError("model.rope_base", "must be positive")
    if m.loss_chunk < 0:
        raise PresetError("model.loss_chunk", "must be 0 (off) or a number of tokens per chunk")
    if m.loss_chunk and not archs.supports(m.arch, "chunked_loss"):
        raise PresetError(
            "model.loss_chunk",
            f"the chunked loss is for {' and '.join(archs.supporting('chunked_loss'))}; set it to 0",
        )

    if m.tied_embed_init_std <= 0:
        raise PresetError("model.tied_embed_init_std", "must be positive")


def _check_model_streams(m: ModelConfig) -> None:
    """Seed 000's residual-stream variant: how many streams, and how their mix is normalised."""
    _check_at_least_one("model", m, ("num_streams", "mixing_iters"))
    if m.num_streams > 1 and not archs.supports(m.arch, "streams"):
        built = " and ".join(archs.supporting("streams"))
        raise PresetError(
            "model.num_streams",
            f"parallel residual streams are built for arch {built} only, not {m.arch}; set it to 1",
        )
    if m.mixing_temperature <= 0:
        raise PresetError(
            "model.mixing_temperature", f"must be positive, not {m.mixing_temperature} (try 1.0)"
        )


def _check_train_steps(t: TrainConfig) -> None:
    """Counts, the learning rates, and warmup against the length of the run."""
    _check_at_least_one(
        "train", t, ("batch_size", "grad_accum", "max_steps", "eval_steps", "log_interval")
    )
    _check_not_negative(
        "train",
        t,
        (
            "warmup_steps",
            "warmdown_steps",
            "min_lr_hold_steps",
            "eval_interval",
            "sample_tokens",
            "max_rollbacks",
            "seed",
        ),
    )
    if t.lr <= 0:
        raise PresetError("train.lr", f"must be positive, not {t.lr}")
    if t.min_lr < 0:
        raise PresetError("train.min_lr", f"must not be negative, not {t.min_lr}")
    if t.min_lr > t.lr:
        raise PresetError(
            "train.min_lr",
            f"{t.min_lr:g} is above train.lr={t.lr:g}; a floor above the peak is not a decay (try {t.lr / 10:g})",
        )
    if t.warmup_steps >= t.max_steps:
        raise PresetError(
            "train.warmup_steps",
            f"{t.warmup_steps} is not below train.max_steps={t.max_steps}; warmup must end before training does",
        )


def _check_train_choices(t: TrainConfig) -> None:
    """The named choices: schedule (and warmdown's length), dtype, optimizer, anomaly response."""
    _check_choice("train.schedule", t.schedule, SCHEDULES, "schedule")
    if t.schedule == "warmdown" and t.warmup_steps + t.warmdown_steps > t.max_steps:
        raise PresetError(
            "train.warmdown_steps",
            f"warmup ({t.warmup_steps}) + warmdown ({t.warmdown_steps}) exceed train.max_steps={t.max_steps}",
        )
    _check_min_lr_hold(t)
    _check_choice("train.dtype", t.dtype, DTYPES, "dtype")
    _check_choice("train.optimizer", t.optimizer, OPTIMIZERS, "optimizer")
    _check_choice("train.on_anomaly", t.on_anomaly, ANOMALY_RESPONSES, "response")
    _check_choice("train.parallel", t.parallel, PARALLEL_MODES, "mode")


def _check_min_lr_hold(t: TrainConfig) -> None:
    """The min_lr hold belongs to the cosine schedule, and warmup plus hold must fit in the run."""
    if not t.min_lr_hold_steps:
        return
    if t.schedule != "cosine":
        raise PresetError(
            "train.min_lr_hold_steps",
            f"only the cosine schedule holds min_lr, not {t.schedule}; set it to 0",
        )
    if t.warmup_steps + t.min_lr_hold_steps > t.max_steps:
        raise PresetError(
            "train.min_lr_hold_steps",
            f"warmup ({t.warmup_steps}) + hold ({t.min_lr_hold_steps}) exceed train.max_steps={t.max_steps}; "
            f"the cosine needs steps between them (try {max(0, (t.max_steps - t.warmup_steps) // 10)})",
        )


def _check_train_ranges(t: TrainConfig) -> None:
    _check_not_negative("train", t, ("weight_decay", "grad_clip", "max_time_s"))
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(t, key) < 1.0:
            raise PresetError(f"train.{key}", f"must be in [0, 1), not {getattr(t, key)}")
    if not 0.0 < t.rollback_lr_factor <= 1.0:
        raise PresetError(
            "train.rollback_lr_factor", f"must be in (0, 1], not {t.rollback_lr_factor}"
        )


def _check_optimizer_groups(t: TrainConfig) -> None:
    """The muon optimizer's per-role rates, momenta and Newton-Schulz steps."""
    for key in ("matrix_lr", "embed_lr", "tied_embed_lr", "head_lr", "scalar_lr", "adam_eps"):
        if getattr(t, key) <= 0:
            raise PresetError(f"train.{key}", f"must be positive, not {getattr(t, key)}")
    for key in ("muon_momentum", "muon_momentum_warmup_start"):
        if not 0.0 <= getattr(t, key) < 1.0:
            raise PresetError(f"train.{key}", f"must be in [0, 1), not {getattr(t, key)}")
    _check_not_negative("train", t, ("muon_momentum_warmup_steps", "priming_steps"))
    if t.muon_backend_steps < 1:
        raise PresetError(
            "train.muon_backend_steps", f"must be at least 1, not {t.muon_backend_steps}"
        )


def _check_data(d: DataConfig, m: ModelConfig) -> None:
    """The tokenizer (and the vocabulary it needs), the validation split and the source."""
    _check_choice("data.tokenizer", d.tokenizer, TOKENIZER_VOCAB, "tokenizer")
    vocab = TOKENIZER_VOCAB[d.tokenizer]
    if vocab is not None and vocab > m.vocab_size:
        raise PresetError(
            "model.vocab_size",
            f"{m.vocab_size} is smaller than the {d.tokenizer} tokenizer's {vocab} tokens; set it to at least {vocab}"
            + (" (50304, a multiple of 64, is faster)" if vocab == 50257 else ""),
        )
    if not 0.0 < d.val_fraction < 0.5:
        raise PresetError("data.val_fraction", f"must be in (0, 0.5), not {d.val_fraction}")
    if not d.source:
        raise PresetError("data.source", 'must name a file, folder or glob, or be "default"')


# The sane range of each numeric field that is not a shape, and why: a value outside it makes
# training meaningless (train.lr=1e308 trained on NaN losses and "finished") or never ends a
# step. Shape fields (layers, widths, heads, context, batch, vocabulary) have no upper bound
# here: how large a model fits is the memory plan's to say, with the memory it needs.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "model.rope_base": (10.0, 1e9, "rotary bases in use run from 1e4 to 1e7"),
    "model.logit_softcap": (0.0, 1e4, "a softcap above 1e4 never caps a logit (0 is off)"),
    "model.qk_gain_init": (0.0, 100.0, "it multiplies attention logits at init (usual 1.5)"),
    "model.mixing_iters": (1, 1000, "Sinkhorn runs them at every forward and converges in tens"),
    "model.mixing_temperature": (1e-3, 1e3, "outside it the mix is one-hot or uniform (usual 1)"),
    "model.tied_embed_init_std": (1e-6, 10.0, "the embedding's init std (usual 0.005 to 0.02)"),
    "train.lr": (0.0, 10.0, "a learning rate above 10 diverges at once (usual 1e-4 to 1e-2)"),
    "train.max_time_s": (0.0, 1e8, "a cap over 1e8 s (3 years) is no cap (0 is none)"),
    "train.weight_decay": (0.0, 10.0, "each step shrinks weights by lr x weight_decay (usual 0.1)"),
    "train.grad_clip": (0.0, 1e6, "a clip above 1e6 never clips (0 is off)"),
    "train.eval_steps": (1, 10**6, "batches per evaluation (train.eval_full_val reads all)"),
    "train.sample_tokens": (0, 10**5, "generated one at a time at every evaluation"),
    "train.seed": (0, 2**32 - 1, "NumPy's generator takes a 32-bit seed"),
    "train.max_rollbacks": (0, 1000, "each one reloads a checkpoint (usual 3)"),
    "train.matrix_lr": (0.0, 10.0, "a rate above 10 diverges at once (usual 0.02 to 0.05)"),
    "train.embed_lr": (0.0, 10.0, "a rate above 10 diverges at once (usual 0.6)"),
    "train.tied_embed_lr": (0.0, 10.0, "a rate above 10 diverges at once (usual 0.05)"),
    "train.head_lr": (0.0, 10.0, "a rate above 10 diverges at once (usual 0.008)"),
    "train.scalar_lr": (0.0, 10.0, "a rate above 10 diverges at once (usual 0.04)"),
    "train.adam_eps": (1e-30, 1.0, "above 1 it drowns the gradient; below 1e-30 it is 0 in fp32"),
    "train.muon_backend_steps": (1, 100, "Newton-Schulz runs them at every update (usual 5)"),
    "train.priming_steps": (0, 10**4, "priming only warms kernels up (golf: 20)"),
}


def _check_bounds(preset: Preset) -> None:
    """Each bounded field within its range, the reason in the message."""
    for path, (low, high, why) in BOUNDS.items():
        value = get_field(preset, path)
        if not low <= value <= high:
            shown = [f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in (low, high, value)]
            raise PresetError(
                path, f"must be between {shown[0]} and {shown[1]}, not {shown[2]}: {why}"
            )


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key=value`; the value is read as JSON where it parses, else kept as a string."""
    if "=" not in text:
        raise PresetError(text, "an override is written key=value, e.g. train.lr=3e-4")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not key:
        raise PresetError(text, "an override needs a field name before '=', e.g. train.lr=3e-4")
    value_text = value_text.strip()
    try:
        value = json.loads(value_text, parse_constant=_reject_constant)
    except PresetError as exc:  # before ValueError, its base class
        raise PresetError(key, exc.message) from None
    except (ValueError, RecursionError):
        value = value_text
    return key, value


def _reject_constant(token: str) -> Any:
    raise PresetError("", f"{token} is not allowed; use a finite number")


def apply_overrides(preset: Preset, overrides: list[str] | dict[str, Any]) -> Preset:
    """Return a new, validated preset with dotted-path overrides applied (e.g. `train.lr=3e-4`).

    A bare field name is accepted when it is unambiguous (`lr=3e-4`).
    """
    pairs = (
        list(overrides.items())
        if isinstance(overrides, dict)
        else [parse_override(o) for o in overrides]
    )
    raw = preset.to_dict()
    own = archs.is_own_model(str(dict(pairs).get("model.arch", preset.model.arch)))
    for key, value in pairs:
        if (
            own
            and key.startswith("model.")
            and key.split(".", 1)[1] not in _field_types(ModelConfig)
        ):
            raw["model"][key.split(".", 1)[1]] = value  # an extra key of your own model
            continue
        path = resolve_field_path(key)
        if path in ("name", "description", "extends"):
            raw[path] = value
            continue
        section, fname = path.split(".", 1)
        raw[section][fname] = value
    result = preset_from_dict(raw)
    result.builtin = False
    result.source_path = preset.source_path
    return result


def field_paths() -> list[str]:
    """Every dotted field path a preset has, in declaration order."""
    out: list[str] = []
    for section, cls in _SECTIONS.items():
        out.extend(f"{section}.{name}" for name in _field_types(cls))
    return out


def resolve_field_path(key: str) -> str:
    """Turn `lr` or `train.lr` into `train.lr`; raise PresetError for unknown or ambiguous keys."""
    if key in ("name", "description", "extends"):
        return key
    paths = field_paths()
    if key in paths:
        return key
    matches = [p for p in paths if p.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise PresetError(key, f"is ambiguous; write one of {', '.join(matches)}")
    close = _closest(key, paths + [p.split(".", 1)[1] for p in paths])
    hint = f"; did you mean {close}?" if close else ""
    raise PresetError(key, f"unknown field{hint}")


def get_field(preset: Preset, path: str) -> Any:
    """Read a dotted field path from a preset."""
    if "." not in path:
        return getattr(preset, path)
    section, fname = path.split(".", 1)
    return getattr(getattr(preset, section), fname)


# --------------------------------------------------------------------------- files


def builtin_dir() -> Path:
    """The folder of built-in presets: inside the installed wheel, else the repo's presets/."""
    package = Path(__file__).resolve().parent.parent  # cockpit/
    packaged = package / "_builtin_presets"
    if packaged.is_dir():
        return packaged
    return package.parent / "presets"


def user_dir() -> Path:
    """The per-user preset folder ($GPT_COCKPIT_CONFIG/presets, else the platform config dir)."""
    env = os.environ.get("GPT_COCKPIT_CONFIG")
    if env:
        return Path(env) / "presets"
    from platformdirs import user_config_dir

    return Path(user_config_dir("gpt-cockpit")) / "presets"


def parse_json_text(text: str, where: str = "") -> Any:
    """Parse JSON, refusing NaN/Infinity, with an error that says where it broke."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except PresetError as exc:
        raise PresetError("", f"{where}: {exc.message}" if where else exc.message) from None
    except json.JSONDecodeError as exc:
        prefix = f"{where}: " if where else ""
        raise PresetError(
            "", f"{prefix}not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise PresetError("", f"{where}: not valid JSON ({exc})") from None


def load_preset_file(path: str | os.PathLike[str], *, builtin: bool = False) -> Preset:
    """Load one preset file; a user preset's `extends` is resolved against the built-ins."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PresetError("", f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PresetError("", f"{p} is not UTF-8 text") from None
    raw = parse_json_text(text, str(p))
    base = None
    if isinstance(raw, dict) and isinstance(raw.get("extends"), str) and raw["extends"]:
        parent = _find_file(raw["extends"], include_user=not builtin, exclude=p)
        if parent is None:
            raise PresetError("extends", f"{raw['extends']!r} is not a known preset")
        base = load_preset_file(parent, builtin=parent.parent == builtin_dir())
    try:
        preset = preset_from_dict(raw, base=base, name=p.stem)
    except PresetError as exc:
        raise PresetError(exc.path, f"{exc.message} (in {p})") from None
    preset.source_path = str(p)
    preset.builtin = builtin
    return _own_model_beside(preset, p)


def _own_model_beside(preset: Preset, preset_file: Path) -> Preset:
    """model.arch = PATH.py:ClassName is relative to the preset file where the file is there
    (made absolute here, so every later reader finds it), else to the working directory."""
    arch = preset.model.arch
    if not archs.is_own_model(arch) or Path(archs.split_own_model(arch)[0]).is_absolute():
        return preset
    path = archs.resolve_model_file(arch, str(preset_file))
    if path.is_file() and path != Path.cwd() / archs.split_own_model(arch)[0]:
        preset.model.arch = f"{path}:{archs.split_own_model(arch)[1]}"
    return preset


def _find_file(name: str, *, include_user: bool = True, exclude: Path | None = None) -> Path | None:
    folders = ([user_dir()] if include_user else []) + [builtin_dir()]
    for folder in folders:
        candidate = folder / f"{name}.json"
        if candidate.is_file() and candidate != exclude:
            return candidate
    return None


def scan_presets() -> tuple[list[Preset], list[tuple[Path, str]]]:
    """Every preset that loads (as `list_presets`) and every file that does not, with the reason
    (as `preset_problems`), from one read of the folders: the app's presets screen wants both."""
    found: dict[str, Preset] = {}
    problems = []
    for folder, builtin in ((builtin_dir(), True), (user_dir(), False)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                found[path.stem] = load_preset_file(path, builtin=builtin)
            except PresetError as exc:
                problems.append((path, str(exc)))
    return list(found.values()), problems


def list_presets() -> list[Preset]:
    """Built-in presets, then user presets (a user preset of the same name hides the built-in).

    Files that do not load are skipped here; `preset_problems()` lists them.
    """
    return scan_presets()[0]


def preset_problems() -> list[tuple[Path, str]]:
    """Preset files that fail to load, with the reason."""
    return scan_presets()[1]


def load_preset(name_or_path: str) -> Preset:
    """Find a preset by name (user first, then built-in) or load it from a path."""
    candidate = Path(name_or_path)
    if name_or_path.endswith(".json") or candidate.is_file():
        if not candidate.is_file():
            raise PresetError("", f"no preset file at {candidate}")
        return load_preset_file(
            candidate, builtin=candidate.parent.resolve() == builtin_dir().resolve()
        )
    found = _find_file(name_or_path)
    if found is None:
        names = sorted(
            {p.stem for d in (builtin_dir(), user_dir()) if d.is_dir() for p in d.glob("*.json")}
        )
        close = _closest(name_or_path, names)
        hint = f"; did you mean {close}?" if close else ""
        raise PresetError(
            "", f"no preset named {name_or_path!r}{hint} (`gpt-cockpit presets` lists them)"
        )
    return load_preset_file(found, builtin=found.parent == builtin_dir())


def diff_from(preset: Preset, base: Preset) -> dict[str, Any]:
    """The sections and fields where `preset` differs from `base` (what a user preset records)."""
    ours, theirs = preset.to_dict(), base.to_dict()
    out: dict[str, Any] = {}
    for section in _SECTIONS:
        changed = {k: v for k, v in ours[section].items() if theirs[section].get(k) != v}
        if changed:
            out[section] = changed
    return out


def save_user_preset(preset: Preset, *, extends: str | None = None) -> Path:
    """Validate and atomically save `preset` to the user folder; returns the path.

    With `extends`, only the fields that differ from that preset are written.
    """
    validate(preset)
    if extends:
        base = load_preset(extends)
        body: dict[str, Any] = {
            "name": preset.name,
            "description": preset.description,
            "extends": base.name,
        }
        body.update(diff_from(preset, base))
    else:
        body = preset.to_dict()
    path = user_dir() / f"{preset.name}.json"
    atomic_write_text(path, json.dumps(body, indent=2) + "\n")
    return path
