"""Saving and loading the context model: resumable checkpoints and the shipped files.

Shipped: ``<name>.context.safetensors`` (fp32 weights) + ``<name>.context.json``
(network config, the generation step, the decoder SHA-256 of the codec model whose
symbols it learned, training summary). Loading checks that SHA against the codec,
because a context model of another codec's symbols measures and generates nonsense.

A checkpoint folder holds ``model.safetensors``, ``optimizer.safetensors`` (Adam
moments and step counts per parameter) and ``state.json``; everything else in a run
(window order, learning rate) is a function of the step, so resuming is exact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from codec.context.model import READABLE_VERSIONS, ContextConfig, ContextModel
from codec.context.envelope import EnvelopeConfig, EnvelopeModel
from codec.context.noise import NoiseConfig, NoiseModel
from codec.errors import WeightsError

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_NAME = "aec-base"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def save_checkpoint(directory: Path, model: ContextModel, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> None:
    """Weights, Adam state and `state` (JSON), each file replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters()}
    moments = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                moments[f"{names[id(p)]}.{key}"] = torch.as_tensor(value).clone()
    _write_tensors(directory / "model.safetensors", model.state_dict())
    _write_tensors(directory / "optimizer.safetensors", moments)
    _write_json(directory / "state.json", {**state, "config": model.config.to_dict()})


def load_checkpoint(directory: Path, model: ContextModel,
                    optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights and Adam state in place; returns the saved state dict."""
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    moments = load_file(str(directory / "optimizer.safetensors"))
    for name, p in model.named_parameters():
        got = {k.rsplit(".", 1)[1]: v for k, v in moments.items()
               if k.rsplit(".", 1)[0] == name}
        if got:
            optimizer.state[p] = got
    return json.loads((directory / "state.json").read_text())


def export(model: ContextModel, meta: dict[str, Any], out_dir: Path,
           name: str = DEFAULT_NAME) -> tuple[Path, Path]:
    """Write the shipped pair (weights + JSON config); the noise-fill models, if the
    model has them (`model.noise`, `model.envelope`), are in the same file under
    ``noise.`` and ``envelope.``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.context.safetensors"
    config = out_dir / f"{name}.context.json"
    extra: dict[str, Any] = {}
    if model.noise is not None:
        extra["noise_config"] = model.noise.config.to_dict()
    if model.envelope is not None:
        extra["envelope_config"] = model.envelope.config.to_dict()
    _write_tensors(weights, {k: v.float() for k, v in model.state_dict().items()})
    _write_json(config, {**meta, **extra, "config": model.config.to_dict()})
    return weights, config


def load(codec: Any, path: str | Path | None = None) -> tuple[ContextModel, dict[str, Any]]:
    """The context model for a loaded `Codec` (default: the shipped one), in eval mode;
    its noise-fill models (or None) are `model.noise` and `model.envelope`.

    `path` is the weights file (its JSON config beside it, same stem).
    WeightsError if a file is missing or the model was trained on another codec.
    """
    weights = Path(path) if path else PRETRAINED / f"{DEFAULT_NAME}.context.safetensors"
    config_path = weights.with_name(weights.name.replace(".safetensors", ".json"))
    if not weights.is_file() or not config_path.is_file():
        raise WeightsError(f"context model not found: {weights} (and {config_path.name})")
    meta = json.loads(config_path.read_text())
    want = codec.model.decoder_sha256.hex()
    if meta.get("decoder_sha256") != want:
        raise WeightsError(f"context model {weights.name} was trained on codec decoder "
                           f"{meta.get('decoder_sha256')}, but the loaded codec is {want}; "
                           "retrain it (python -m codec.context.train)")
    version = meta.get("config", {}).get("version", 1)
    if version not in READABLE_VERSIONS:
        raise WeightsError(f"context model {weights.name} has network version {version}, this "
                           f"code reads versions {', '.join(map(str, READABLE_VERSIONS))}; "
                           "retrain it "
                           "(python -m codec.context.train)")
    model = ContextModel(ContextConfig(**meta["config"]))
    if "noise_config" in meta:
        model.noise = NoiseModel(NoiseConfig(**meta["noise_config"]))
    if "envelope_config" in meta:
        model.envelope = EnvelopeModel(EnvelopeConfig(**meta["envelope_config"]))
    model.load_state_dict(load_file(str(weights)))
    model.set_layout(codec.model.config.layout())
    return model.eval(), meta
