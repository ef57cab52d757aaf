"""Checkpoint -> shipped weights: freeze the prior into integer CDF tables, measure rates.

`python -m codec.train.export --checkpoint RUN/checkpoint --corpus /work/corpus
--out codec/pretrained/aec-base`

Each rate point's `measured_kbps` is measured here on fixed held-out clips
(`split.eval_clips`) with real entropy-coded bytes (`codec.entropy.encode_symbols`),
per clip coded as one payload: payload bytes x 8 / duration. Container
overhead (header, chunk framing) is not included; it is reported by the API.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from numpy.typing import NDArray

from codec import entropy
from codec.entropy import CdfTable
from codec.train.checkpoint import load_checkpoint
from codec.train.config import TrainConfig
from codec.train.network import TrainableCodec
from codec.train.split import eval_clips
from codec.weights import ModelConfig, save_model

EVAL_SECONDS = 10.0      # at most this much of each held-out clip


def load_trainable(checkpoint: Path) -> tuple[TrainableCodec, TrainConfig, int]:
    """(model in eval mode, its train config, step) from a checkpoint folder."""
    import json

    meta = json.loads((checkpoint / "state.json").read_text())
    cfg = TrainConfig.from_dict(meta["train_config"])
    model = TrainableCodec(cfg.model)
    state, _ = load_checkpoint(checkpoint, model, None)
    return model.eval().requires_grad_(False), cfg, state.step


def export_tables(model: TrainableCodec, precision: int) -> CdfTable:
    """Integer CDF tables of every (rate point, channel), via CdfTable.from_pmfs.

    A table may hold at most 2**(precision - 6) entries, so that the count floor
    of 1 per entry takes at most 1/64 of the probability mass.
    """
    pmfs, offsets = model.prior.export_pmfs(max_length=2 ** (precision - 6))
    return CdfTable.from_pmfs(pmfs, offsets, precision)


def read_eval_audio(paths: list[Path], sample_rate: int) -> list[NDArray[np.float32]]:
    """The first EVAL_SECONDS of each clip, mono float32."""
    clips = []
    for path in paths:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True,
                            frames=int(EVAL_SECONDS * sample_rate))
        if sr != sample_rate:
            raise ValueError(f"{path}: {sr} Hz, model rate is {sample_rate}")
        clips.append(audio[:, 0])
    return clips


@dataclass(frozen=True)
class CodedClip:
    """One clip through the codec at one rate point."""

    symbols: NDArray[np.int32]      # [C, F]
    payload_bytes: int
    model_bits: float               # -log2 P under the float prior
    table_bits: float               # -log2 P under the integer tables
    decoded: NDArray[np.float32]    # [num_samples]


@torch.no_grad()
def code_clip(model: TrainableCodec, tables: CdfTable, audio: NDArray[np.float32],
              rate_point: int) -> CodedClip:
    """Encode -> quantize -> entropy-code -> dequantize -> decode one clip (whole signal)."""
    hop, c = model.config.hop_length, model.config.latent_channels
    padded = -(-len(audio) // hop) * hop
    x = torch.zeros(1, 1, padded)
    x[0, 0, : len(audio)] = torch.from_numpy(audio)
    symbols = model.quantizer.quantize(model.encoder(x), rate_point)
    rows = symbols[0].numpy().astype(np.int32)
    index = (rate_point * c + np.arange(c)).astype(np.int32)
    payload = entropy.encode_symbols(rows, index, tables)
    p = model.prior.likelihood(symbols[0].float(), rate_point * c).clamp_min(1e-9)
    x_hat = model.decoder(model.quantizer.dequantize(symbols, rate_point))
    return CodedClip(rows, len(payload), float(-torch.log2(p).sum()),
                     float(entropy.ideal_bits(rows, index, tables)),
                     x_hat[0, 0, : len(audio)].numpy())


def measure_kbps(model: TrainableCodec, tables: CdfTable,
                 clips: list[NDArray[np.float32]]) -> tuple[float, ...]:
    """Per rate point: total payload bits / total duration, in kbps."""
    seconds = sum(len(a) for a in clips) / model.config.model_rate
    rates = []
    for r in range(len(model.config.rate_points)):
        total = sum(code_clip(model, tables, a, r).payload_bytes for a in clips)
        rates.append(round(total * 8 / seconds / 1000, 3))
    return tuple(rates)


def export(checkpoint: Path, corpus: Path, out_stem: Path,
           precision: int | None = None) -> ModelConfig:
    """Write the shipped files for a checkpoint; returns the config with measured rates.

    `precision` (bits of the integer CDF tables) defaults to the model config's.
    """
    model, _, _ = load_trainable(checkpoint)
    config = model.config
    if precision is not None:
        config = dataclasses.replace(config, cdf_precision=precision)
    tables = export_tables(model, config.cdf_precision)
    clips = read_eval_audio(eval_clips(corpus), model.config.model_rate)
    config = config.with_measured(measure_kbps(model, tables, clips))
    save_model(out_stem, config, model.encoder, model.decoder, model.quantizer, tables)
    return config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.train.export", description=__doc__)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--corpus", required=True, type=Path, help="corpus root (held-out clips)")
    p.add_argument("--out", type=Path, default=Path("codec/pretrained/aec-base"),
                   help="output name stem (default codec/pretrained/aec-base)")
    p.add_argument("--precision", type=int,
                   help="CDF table precision in bits (default: the model config's)")
    p.add_argument("--threads", type=int, help="torch threads (1 is faster beside a training job)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = export(args.checkpoint, args.corpus, args.out, args.precision)
    for rp in config.rate_points:
        print(f"rate point {rp.index}: nominal {rp.nominal_kbps} kbps, "
              f"measured {rp.measured_kbps} kbps", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
