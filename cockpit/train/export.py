"""`gpt-cockpit export`: a run's weights as safetensors plus a config another program can read.

gpt    Hugging Face's GPT-2 layout (config.json + model.safetensors) that transformers'
       GPT2LMHeadModel loads as it is: Conv1D weights are nn.Linear's transposed, a tied
       lm_head is left to transformers to tie, and bias=False becomes zero biases (GPT-2
       always has them). Our MLP uses exact GELU, so the config says "gelu", not GPT-2's
       "gelu_new".
golf, bdh
       model.safetensors (our own parameter names) + cockpit_config.json (the model
       section of the preset); `load_exported` builds our model class from them again.

Every export also writes cockpit_tokenizer.json (the run's tokenizer as saved in its
checkpoint, a char vocabulary included) and a README.md saying how to load it and
what the token ids mean.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from cockpit import arch as archs
from cockpit.common.fsutil import atomic_write_text
from cockpit.plan.presets import ModelConfig
from cockpit.train.models import LanguageModel, build_model
from cockpit.train.sample import RunModel, SampleError

CONFIG = "config.json"
OUR_CONFIG = "cockpit_config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "cockpit_tokenizer.json"
README = "README.md"
INSTALL = "pip install 'gpt-cockpit[export]' (or pip install safetensors)"

# our GPT's per-block Linear weights that GPT-2 stores as Conv1D (in, out): transposed
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _safetensors() -> Any:
    try:
        import safetensors.torch as st
    except ImportError:
        raise SampleError(f"export needs the safetensors package: {INSTALL}") from None
    return st


def gpt2_state_dict(model: LanguageModel, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our GPT's weights under GPT-2's names and shapes (contiguous fp32 copies)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # the same tensor as transformer.wte.weight: transformers ties it again
        value = tensor.detach().float()
        if name.endswith(CONV1D):
            value = value.t()
        out[name] = value.contiguous().cpu()
    if not cfg.bias:  # GPT-2 has biases everywhere; zeros compute what ours computes
        c, inner = cfg.n_embd, cfg.mlp_ratio * cfg.n_embd
        sizes = {"ln_1": c, "ln_2": c, "attn.c_attn": 3 * c, "attn.c_proj": c}
        sizes.update({"mlp.c_fc": inner, "mlp.c_proj": c})
        for i in range(cfg.n_layer):
            for part, size in sizes.items():
                out[f"transformer.h.{i}.{part}.bias"] = torch.zeros(size)
        out["transformer.ln_f.bias"] = torch.zeros(cfg.n_embd)
    return out


def gpt2_config(cfg: ModelConfig, tokenizer_state: dict[str, Any]) -> dict[str, Any]:
    """config.json for transformers' GPT2LMHeadModel."""
    eot = 50256 if tokenizer_state.get("name") in ("gpt2", "r50k_base") else None
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.mlp_ratio * cfg.n_embd,
        "activation_function": "gelu",  # exact GELU, as our MLP computes (GPT-2's own is gelu_new)
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": bool(cfg.tie_embeddings),
        "bos_token_id": eot,
        "eos_token_id": eot,
        "use_cache": True,
        "dtype": "float32",
        "torch_dtype": "float32",
        "cockpit_tokenizer": tokenizer_note(tokenizer_state, cfg.vocab_size),
    }


def tokenizer_note(state: dict[str, Any], vocab_size: int) -> str:
    """What the token ids mean, in one sentence (for config.json and the README)."""
    name = str(state.get("name", "byte"))
    if name == "char":
        n = len(str(state.get("chars", "")))
        return (
            f"char: id i is the i-th character of the run's sorted vocabulary of {n} characters "
            f"(in {TOKENIZER}); ids {n}..{vocab_size - 1} are padding no text uses. "
            "No Hugging Face tokenizer matches it: encode and decode with that list."
        )
    if name == "byte":
        return (
            "byte: id i is the UTF-8 byte i (256 ids"
            + (f"; ids 256..{vocab_size - 1} are padding" if vocab_size > 256 else "")
            + "). No Hugging Face tokenizer matches it: encode with text.encode('utf-8')."
        )
    if name == "gpt2":
        return (
            "gpt2: tiktoken's GPT-2 BPE, the same ids as transformers' GPT2TokenizerFast('gpt2')."
        )
    if name == "sentencepiece":
        return (
            f"sentencepiece: the pieces of the SentencePiece model {state.get('model_file')} "
            "(sentencepiece.SentencePieceProcessor(model_file=...) encodes and decodes them)."
        )
    if name == "pretokenized":
        return "pretokenized: the ids of the run's token files; no tokenizer was saved with it."
    return f"{name}: tiktoken's {name} encoding (tiktoken.get_encoding('{name}'))."


def export_run(rm: RunModel, out_dir: str | Path, run_id: str) -> list[Path]:
    """Write the run's model to `out_dir` (made if missing); the files written."""
    st = _safetensors()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SampleError(f"--to {out}: not a directory")
    out.mkdir(parents=True, exist_ok=True)
    cfg = rm.preset.model
    written = []
    hf = archs.supports(cfg.arch, "hf_export")  # the spec's export layout
    if hf:
        tensors = gpt2_state_dict(rm.model, cfg)
        config = gpt2_config(cfg, rm.tokenizer_state)
    else:
        own = _unshared(rm.model.export_module())  # your own model: under its own names
        tensors = {k: v.detach().float().contiguous().cpu() for k, v in own.items()}
        config = {
            "format": "gpt-cockpit",
            "arch": cfg.arch,
            "model": dataclasses.asdict(cfg),
            "tokenizer": tokenizer_note(rm.tokenizer_state, cfg.vocab_size),
        }
    meta = {"format": "pt", "source": "gpt-cockpit", "run": run_id, "step": str(rm.step)}
    weights = out / WEIGHTS
    st.save_file(tensors, str(weights), metadata=meta)
    written.append(weights)
    name = CONFIG if hf else OUR_CONFIG
    atomic_write_text(out / name, json.dumps(config, indent=2) + "\n")
    atomic_write_text(out / TOKENIZER, json.dumps(rm.tokenizer_state, indent=2) + "\n")
    atomic_write_text(out / README, readme(rm, run_id))
    written += [out / name, out / TOKENIZER, out / README]
    return written


def _unshared(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor once (safetensors refuses aliases)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor
    return out


def load_exported(folder: str | Path) -> LanguageModel:
    """A golf or bdh export (model.safetensors + cockpit_config.json) as our model class again."""
    st = _safetensors()
    folder = Path(folder)
    config = json.loads((folder / OUR_CONFIG).read_text(encoding="utf-8"))
    model = build_model(ModelConfig(**config["model"]))
    weights = st.load_file(str(folder / WEIGHTS))
    missing, unexpected = model.export_module().load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if config["model"].get("tie_embeddings") else set()
    if set(missing) - tied or unexpected:
        raise SampleError(f"{folder}: weights do not fit ({missing=}, {unexpected=})")
    return model.eval()


def readme(rm: RunModel, run_id: str) -> str:
    cfg = rm.preset.model
    note = tokenizer_note(rm.tokenizer_state, cfg.vocab_size)
    head = (
        f"# {run_id}\n\nExported by gpt-cockpit from {rm.path.name} (step {rm.step}): "
        f"{cfg.arch}, {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, "
        f"context {cfg.block_size}, vocab_size {cfg.vocab_size}.\n\n"
        f"Tokens: {note}\n\n"
    )
    if archs.supports(cfg.arch, "hf_export"):
        return head + (
            "Load it with transformers (Hugging Face's GPT-2 layout):\n\n"
            "```python\nfrom transformers import GPT2LMHeadModel\n"
            "model = GPT2LMHeadModel.from_pretrained('THIS_FOLDER')\n```\n"
        )
    return head + (
        f"`{WEIGHTS}` holds the weights under gpt-cockpit's own parameter names and "
        f"`{OUR_CONFIG}` the model section of the preset. Load it back with:\n\n"
        "```python\nfrom cockpit.train.export import load_exported\n"
        "model = load_exported('THIS_FOLDER')\n```\n"
    )
