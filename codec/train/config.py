"""`TrainConfig`: every knob of a training run, saved as JSON in the run folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from codec.weights import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (the model architecture is `model`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 1_000_000            # stop after this many optimizer steps
    batch_size: int = 8               # crops per process per step (spread over rate points)
    crop_seconds: float = 1.0
    lr: float = 1e-3                  # encoder / decoder
    lr_rate: float = 1e-2             # prior and gains learn faster (DESIGN "knobs")
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    wave_weight: float = 2.0          # waveform (batch SNR) term, in units of 10 dB
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    beta_init: float = 0.03           # rate weight per kbps, adapted per rate point
    beta_step: float = 0.005          # rate-control step on log(beta)
    beta_min: float = 1e-4
    beta_max: float = 10.0
    push_step: float = 5e-5           # growth of the negative multiplier below target, per step
    silence_dbfs: float = -50.0       # crops quieter than this are redrawn
    kind_weights: tuple[float, ...] = (0.4, 0.35, 0.25)   # speech, music, sfx
    cache_mb: int = 3000              # decoded-audio cache per process
    bf16: bool = False                # bf16 autocast on the conv stacks
    seed: int = 0
    log_every: int = 20
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0   # 0: time-based only

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a (possibly partial) dict; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        data = dict(data)
        if "model" in data and isinstance(data["model"], dict):
            merged = {**asdict(ModelConfig()), **data["model"]}
            data["model"] = ModelConfig.from_json(json.dumps(merged))
        for key in ("fft_sizes", "kind_weights"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
