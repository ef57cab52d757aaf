"""A small model of the noise-fill corrections, the side information the frame model skips.

Coder 2 sends, per chunk, a correction for every (band, 4-frame segment) that holds
a zero symbol, in band-major order, with two context-free tables (a band's first
one, then deltas). Once the symbols are decoded, a decoder knows more: the band,
the segment's level, how many of the band's symbols are zero there, the band's
previous correction and the band below's correction in the same segment (decoded
before). This model is a categorical over noise_low..noise_high from those five
things (summed embeddings, then a small MLP), measured in bits like the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from codec.chunkcoder import ChunkSymbols
from codec.context.model import frame_levels, nats_to_bits
from codec.scales import ScaleLayout, zero_segments

ZERO_BUCKETS = 8
"""The share of zero symbols in a band's segment, in this many buckets."""


@dataclass(frozen=True)
class NoiseConfig:
    num_bands: int = 22
    levels: int = 37
    low: int = -16
    high: int = 4
    hidden: int = 32

    @property
    def values(self) -> int:
        return self.high - self.low + 1

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def for_layout(cls, layout: ScaleLayout, **kw: int) -> NoiseConfig:
        return cls(num_bands=layout.num_bands, levels=layout.levels, low=layout.noise_low,
                   high=layout.noise_high, **kw)


def noise_features(chunk: ChunkSymbols, layout: ScaleLayout
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Features [n, 5] (band, level, zero bucket, previous in band, band below) and
    targets [n] (value - noise_low) of the coded corrections of channel 0, in coded order."""
    q = chunk.coefficients[:1]
    mask = zero_segments(layout, q)[0]                                # [bands, segs]
    noise = chunk.noise[0]
    bands, segs = mask.shape
    frames = q.shape[-1]
    seg_first = np.arange(segs) * layout.noise_segment
    levels = frame_levels(layout, chunk.gains[0], chunk.frame_steps)[seg_first]
    zeros = np.add.reduceat((q[0] == 0).astype(np.int64), np.asarray(layout.band_edges[:-1]),
                            axis=0)
    zeros = np.add.reduceat(zeros, seg_first, axis=1)
    width = np.diff(np.asarray(layout.band_edges))[:, None]
    seg_len = np.diff(np.append(seg_first, frames))[None, :]
    bucket = np.minimum(zeros * ZERO_BUCKETS // (width * seg_len), ZERO_BUCKETS - 1)
    none = layout.noise_high - layout.noise_low + 1
    coded_at = np.where(mask, np.arange(segs), -1)
    last = np.maximum.accumulate(coded_at, axis=1)
    before = np.concatenate([np.full((bands, 1), -1), last[:, :-1]], axis=1)
    prev = np.take_along_axis(noise, np.maximum(before, 0), axis=1) - layout.noise_low
    prev = np.where(before >= 0, prev, none)
    below = np.full((bands, segs), none)
    below[1:] = np.where(mask[:-1], noise[:-1] - layout.noise_low, none)
    band = np.broadcast_to(np.arange(bands)[:, None], (bands, segs))
    level = np.broadcast_to(levels[None, :], (bands, segs))
    feats = np.stack([band, level, bucket, prev, below], axis=-1)[mask]
    return feats.astype(np.int64), (noise[mask] - layout.noise_low).astype(np.int64)


class NoiseModel(nn.Module):
    """features [n, 5] -> logits [n, values]."""

    def __init__(self, config: NoiseConfig) -> None:
        super().__init__()
        self.config = config
        h, v = config.hidden, config.values
        self.band = nn.Embedding(config.num_bands, h)
        self.level = nn.Embedding(config.levels, h)
        self.zeros = nn.Embedding(ZERO_BUCKETS, h)
        self.prev = nn.Embedding(v + 1, h)
        self.below = nn.Embedding(v + 1, h)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, v))

    def forward(self, feats: Tensor) -> Tensor:
        x = (self.band(feats[:, 0]) + self.level(feats[:, 1]) + self.zeros(feats[:, 2])
             + self.prev(feats[:, 3]) + self.below(feats[:, 4]))
        return self.out(x)

    def bits(self, feats: Tensor, targets: Tensor) -> Tensor:
        """[n] bits of each correction."""
        return nats_to_bits(F.cross_entropy(self(feats), targets, reduction="none"))


def chunk_features(symbols, layout: ScaleLayout) -> tuple[Tensor, Tensor]:
    """Features and targets of every chunk of a `SymbolSet`, concatenated."""
    feats, targets = [], []
    for i in range(symbols.num_chunks):
        f, t = noise_features(symbols.chunk(i), layout)
        feats.append(f)
        targets.append(t)
    cat = (lambda xs, shape: torch.from_numpy(np.concatenate(xs)) if xs   # noqa: E731
           else torch.zeros(shape, dtype=torch.long))
    return cat(feats, (0, 5)), cat(targets, (0,))


def train_noise(symbols, layout: ScaleLayout, steps: int = 3000, batch: int = 4096,
                lr: float = 3e-3, seed: int = 0) -> NoiseModel:
    """Fit a `NoiseModel` on a `SymbolSet` (about a minute on one thread; deterministic)."""
    torch.manual_seed(seed)
    feats, targets = chunk_features(symbols, layout)
    model = NoiseModel(NoiseConfig.for_layout(layout))
    if not len(targets):
        return model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        idx = torch.randint(0, len(targets), (batch,), generator=generator)
        loss = model.bits(feats[idx], targets[idx]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()
