"""A small model of the noise-fill envelope, the last block of a coder-2 chunk.

Coder 2 sends, per chunk, an envelope value (3 dB steps, envelope_low..envelope_high)
for every (region, frame) whose region holds a zero symbol, region-major, with two
context-free tables (a region's first value, then the change from its previous one).
When a decoder reaches that block it already knows much more: every symbol and gain
of the chunk, every noise-fill correction, and the envelope of the regions below in
all frames. This model is a categorical over the envelope's values from features of
those (summed embeddings, then a small MLP), measured in bits like the other parts:

- the region, the frame's level (frame gain over step, as the tables key on it), the
  share of zero symbols in the region that frame, the frame's gain change;
- the region's previous two coded values (the sequence varies slowly);
- the region below: its value at this frame and the next one, and its change from
  the frame before (regions move together);
- the mean noise-fill correction of the region's bands in the frame's segment;
- version 3 (``EnvelopeConfig.features == 14``): the largest symbol magnitude in the
  region that frame (0..3+), and the zero buckets of the region above that frame and of
  this region in the frames before and after. A version-2 file (ten features) still
  loads and measures as it did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from codec.chunkcoder import ChunkSymbols
from codec.context.model import frame_levels
from codec.context.side import SideModel, fit, neighbour_buckets, stacked_features
from codec.context.noise import previous_coded
from codec.scales import ScaleLayout, zero_regions, zero_segments

ZERO_BUCKETS = 8
"""The share of zero symbols in a region's frame, in this many buckets."""
DELTA = 4
"""Gain changes and the region below's changes are clipped to -DELTA..DELTA."""
BASE_FEATURES = 10
"""Columns of a version-2 envelope model's features."""
FEATURES = 14
"""Columns of `envelope_features` now (version 3)."""
MAG_BUCKETS = 4
"""The largest symbol magnitude in a region's frame, clipped to 0..MAG_BUCKETS - 1."""


@dataclass(frozen=True)
class EnvelopeConfig:
    regions: int = 3
    levels: int = 37
    low: int = -8
    high: int = 8
    noise_low: int = -16
    noise_high: int = 4
    hidden: int = 64
    features: int = BASE_FEATURES     # FEATURES for a version-3 model

    @property
    def values(self) -> int:
        return self.high - self.low + 1

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def for_layout(cls, layout: ScaleLayout, **kw: int) -> EnvelopeConfig:
        return cls(regions=layout.envelope_regions, levels=layout.levels,
                   low=layout.envelope_low, high=layout.envelope_high,
                   noise_low=layout.noise_low, noise_high=layout.noise_high, **kw)


def _region_noise(chunk: ChunkSymbols, layout: ScaleLayout, frames: int) -> NDArray[np.int64]:
    """[R, F]: mean noise-fill correction of each region's coded bands in the frame's
    segment, rounded, minus noise_low (noise_high - noise_low + 1 where none is coded)."""
    mask = zero_segments(layout, chunk.coefficients[:1])[0]               # [bands, S]
    noise = np.where(mask, chunk.noise[0], 0).astype(np.float64)
    region = layout.region_of_band()
    total = np.stack([noise[region == r].sum(0) for r in range(layout.envelope_regions)])
    count = np.stack([mask[region == r].sum(0) for r in range(layout.envelope_regions)])
    none = layout.noise_high - layout.noise_low + 1
    mean = np.where(count > 0, np.round(total / np.maximum(count, 1)) - layout.noise_low, none)
    return mean.astype(np.int64)[:, np.arange(frames) // layout.noise_segment]


def envelope_features(chunk: ChunkSymbols, layout: ScaleLayout, columns: int = FEATURES
                      ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Features [n, columns] (BASE_FEATURES: version 2; FEATURES: version 3) and targets
    [n] (value - envelope_low) of the coded envelope values of channel 0, in coded order
    (region, frame where the region holds a zero)."""
    q = chunk.coefficients[:1]
    regions, frames = layout.envelope_regions, q.shape[-1]
    if not regions:
        return np.zeros((0, columns), np.int64), np.zeros(0, np.int64)
    mask = zero_regions(layout, q)[0]                                     # [R, F]
    env = chunk.envelope_values(layout)[0] - layout.envelope_low          # [R, F] >= 0
    none = layout.envelope_high - layout.envelope_low + 1
    coded = np.where(mask, env, none)
    gains = chunk.gains[0].astype(np.int64)
    level = frame_levels(layout, gains, chunk.frame_steps)
    first_bins = np.asarray(layout.band_edges)[list(layout.envelope_edges)]
    zeros = np.add.reduceat((q[0] == 0).astype(np.int64), first_bins[:-1], axis=0)
    bucket = np.minimum(zeros * ZERO_BUCKETS // np.diff(first_bins)[:, None], ZERO_BUCKETS - 1)
    gain_delta = np.clip(np.diff(gains, prepend=gains[:1]), -DELTA, DELTA) + DELTA
    gain_delta[0] = 2 * DELTA + 1                                         # chunk's first frame
    below = np.full((regions, frames), none, np.int64)
    below[1:] = coded[:-1]
    below_next = np.full((regions, frames), none, np.int64)
    below_next[:, :-1] = below[:, 1:]
    below_prev = np.full((regions, frames), none, np.int64)
    below_prev[:, 1:] = below[:, :-1]
    change = np.where((below < none) & (below_prev < none),
                      np.clip(below - below_prev, -DELTA, DELTA) + DELTA, 2 * DELTA + 1)
    grid = lambda x: np.broadcast_to(x, (regions, frames))                # noqa: E731
    cols = [grid(np.arange(regions)[:, None]), grid(level[None, :]), bucket,
            grid(gain_delta[None, :]), previous_coded(env, mask, 1, none),
            previous_coded(env, mask, 2, none), below, below_next, change,
            _region_noise(chunk, layout, frames)]
    if columns == FEATURES:
        cols += _decoded_neighbours(q[0], bucket, first_bins)
    feats = np.stack(cols, axis=-1)[mask]
    return feats.astype(np.int64), env[mask].astype(np.int64)


def _decoded_neighbours(q: NDArray[np.int64], bucket: NDArray[np.int64],
                        first_bins: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    """The version-3 features [R, F] each: the largest magnitude in the region's frame,
    the zero buckets of the region above, and of this region the frame before and after."""
    largest = np.maximum.reduceat(np.abs(q), first_bins[:-1], axis=0)
    return [np.minimum(largest, MAG_BUCKETS - 1), *neighbour_buckets(bucket, ZERO_BUCKETS)]


class EnvelopeModel(SideModel):
    """features [n, FEATURES] -> logits [n, values]."""

    def __init__(self, config: EnvelopeConfig) -> None:
        v, noise = config.values, config.noise_high - config.noise_low + 2
        sizes = [config.regions, config.levels, ZERO_BUCKETS, 2 * DELTA + 2, v + 1, v + 1,
                 v + 1, v + 1, 2 * DELTA + 2, noise]
        if config.features == FEATURES:
            sizes += [MAG_BUCKETS, ZERO_BUCKETS + 1, ZERO_BUCKETS + 1, ZERO_BUCKETS + 1]
        elif config.features != BASE_FEATURES:
            raise ValueError(f"an envelope model has {BASE_FEATURES} or {FEATURES} features, "
                             f"not {config.features}")
        super().__init__(sizes, config.hidden, v)
        self.config = config


def chunk_features(symbols, layout: ScaleLayout) -> tuple[Tensor, Tensor]:
    """Features and targets of every chunk of a `SymbolSet`, concatenated."""
    return stacked_features(symbols, layout, envelope_features, FEATURES)


def train_envelope(symbols, layout: ScaleLayout, steps: int = 3000, batch: int = 4096,
                   lr: float = 3e-3, seed: int = 0) -> EnvelopeModel:
    """Fit an `EnvelopeModel` on a `SymbolSet` (a minute or two on one thread;
    deterministic)."""
    torch.manual_seed(seed)
    feats, targets = chunk_features(symbols, layout)
    model = EnvelopeModel(EnvelopeConfig.for_layout(layout, features=FEATURES))
    return fit(model, feats, targets, steps, batch, lr, seed)
