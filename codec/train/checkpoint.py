"""Resumable checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint folder holds ``model.safetensors`` (weights), ``optimizer.safetensors``
(Adam moments, keyed by parameter name) and ``state.json`` (step, Adam step,
rate-control state, configs). Data order and noise are functions of the step,
so nothing else is needed to resume exactly. Files are written with
`codec.train.tensorfile` (torch only), so an accelerator machine without the
safetensors package can resume and save.

Compact copies, for committing (`python -m codec.train.checkpoint SRC DST`):

- ``--level bf16``: weights and Adam moments in bf16 (half of fp32 weights +
  moments). Resuming is close to, not bit-identical with, the uninterrupted run.
- ``--level weights``: bf16 weights only (a sixth of the full checkpoint).
  Resuming is a *warm restart*: Adam starts with fresh moments, and the
  learning rate ramps up again over `warmup_steps` from the checkpoint's step
  (`TrainState.lr_warmup_from`), so the first steps do not jump.

Loading casts whatever is stored to the model's dtype, so any level resumes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codec.train.config import TrainConfig
from codec.train.tensorfile import load_tensors as load_file
from codec.train.tensorfile import save_tensors as save_file

LEVELS: tuple[str, ...] = ("full", "bf16", "weights")


@dataclass(frozen=True)
class RateControl:
    """Per rate point: the rate multiplier and an EMA of the coded kbps.

    The multiplier is beta = exp(log_beta) - push: positive (penalize bits) while
    the rate is above target; once log_beta sits at its floor and the rate is
    still below target, `push` grows and the multiplier turns negative (reward
    bits), so every rate point reaches its target even while the decoder
    cannot yet make good use of the extra bits.
    """

    log_beta: tuple[float, ...]
    ema_kbps: tuple[float, ...]
    push: tuple[float, ...] = ()

    def betas(self) -> list[float]:
        """The signed rate multipliers, one per rate point."""
        push = self.push or (0.0,) * len(self.log_beta)
        return [math.exp(b) - p for b, p in zip(self.log_beta, push, strict=True)]


@dataclass(frozen=True)
class TrainState:
    """Everything besides tensors that a resumed run needs."""

    step: int
    rate_control: RateControl
    audio_seconds: float = 0.0       # audio seen by all processes so far
    wall_seconds: float = 0.0        # training wall time so far
    lr_warmup_from: int = 0          # the learning-rate warm-up starts here (warm restarts)


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainState, config: TrainConfig, compact: bool = False) -> None:
    """Write atomically: a temporary folder renamed over the old one."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    moments, adam_step = _adam_moments(model, optimizer, torch.bfloat16 if compact else None)
    save_file(moments, str(tmp / "optimizer.safetensors"))
    meta = {"state": asdict(state), "adam_step": adam_step, "compact": compact,
            "train_config": json.loads(config.to_json())}
    (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")
    _replace_folder(tmp, directory)


def _replace_folder(tmp: Path, directory: Path) -> None:
    """Put a finished temporary folder in place of `directory` (the old one removed last)."""
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _adam_moments(model: nn.Module, optimizer: torch.optim.Optimizer,
                  dtype: torch.dtype | None) -> tuple[dict[str, torch.Tensor], float]:
    moments: dict[str, torch.Tensor] = {}
    adam_step = 0.0
    for name, param in model.named_parameters():
        st = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                t = st[key].detach().cpu()
                moments[f"{name}.{key}"] = (t.to(dtype) if dtype else t).contiguous()
        if "step" in st:
            adam_step = float(st["step"])
    return moments, adam_step


def load_checkpoint(directory: Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None) -> tuple[TrainState, dict[str, Any]]:
    """Restore weights (and optimizer moments); returns the state and the saved train config."""
    meta = json.loads((directory / "state.json").read_text())
    own = model.state_dict()
    weights = load_file(str(directory / "model.safetensors"))
    model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in weights.items()})
    st = meta["state"]
    saved = st["rate_control"]
    rc = RateControl(tuple(saved["log_beta"]), tuple(saved["ema_kbps"]),
                     tuple(saved.get("push", ())))
    warm_from = int(st.get("lr_warmup_from", 0))
    moments_file = directory / "optimizer.safetensors"
    if optimizer is not None and moments_file.exists():
        _restore_adam(model, optimizer, load_file(str(moments_file)), meta["adam_step"])
    elif optimizer is not None:
        warm_from = int(st["step"])          # weights-only: warm restart (module docstring)
    state = TrainState(st["step"], rc, st["audio_seconds"], st["wall_seconds"], warm_from)
    return state, meta["train_config"]


def _restore_adam(model: nn.Module, optimizer: torch.optim.Optimizer,
                  moments: dict[str, torch.Tensor], adam_step: float) -> None:
    for name, param in model.named_parameters():
        if f"{name}.exp_avg" not in moments:
            continue
        optimizer.state[param] = {
            "step": torch.tensor(adam_step),
            "exp_avg": moments[f"{name}.exp_avg"].to(param.dtype).to(param.device).clone(),
            "exp_avg_sq": moments[f"{name}.exp_avg_sq"].to(param.dtype).to(param.device).clone(),
        }


def compact_copy(source: Path, target: Path, level: str = "bf16") -> None:
    """Copy a checkpoint at a compact `level` ("full", "bf16" or "weights"), replacing `target`.

    For committing to the repo (module docstring). The copy is written to a
    temporary folder and swapped in, so `target` is replaced in place.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    dtype = None if level == "full" else torch.bfloat16
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _cast_file(source / "model.safetensors", tmp / "model.safetensors", dtype)
    if level != "weights":
        _cast_file(source / "optimizer.safetensors", tmp / "optimizer.safetensors", dtype)
    meta = json.loads((source / "state.json").read_text())
    meta["compact"] = level != "full"
    meta["level"] = level
    (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")
    _replace_folder(tmp, target)


def _cast_file(source: Path, target: Path, dtype: torch.dtype | None) -> None:
    tensors = load_file(str(source))
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(target))


def main(argv: list[str] | None = None) -> int:
    """`python -m codec.train.checkpoint SRC DST [--level bf16|weights|full]`: compact copy."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m codec.train.checkpoint",
                                description=compact_copy.__doc__)
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.add_argument("--level", choices=LEVELS, default="bf16",
                   help="bf16: weights + moments in bf16; weights: bf16 weights only "
                        "(warm restart); full: a plain copy")
    args = p.parse_args(argv)
    compact_copy(args.source, args.target, args.level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
