"""A small model of the noise-fill corrections, the side information the frame model skips.

Coder 2 sends, per chunk, a correction for every (band, 4-frame segment) that holds
a zero symbol, in band-major order, with two context-free tables (a band's first
one, then deltas). Once the symbols are decoded, a decoder knows more: the band,
the segment's level, how many of the band's symbols are zero there, the band's
previous two corrections, the corrections of the two bands below in the same
segment (decoded before) and the change of the band below from its previous
segment, and the gain change across the segment (an onset). This model is a
categorical over noise_low..noise_high from those nine things (summed embeddings,
then a small MLP), measured in bits like the rest.

Version 3 (``NoiseConfig.features == 14``) adds five more a decoder also has: the
band below's correction in the next segment (band-major order sends it first), the
largest symbol magnitude in the band's segment (0..3+), and the zero bucket of the
band above in the same segment and of this band in the segments before and after.
A version-2 file (nine features) still loads and measures as it did.
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
from codec.scales import ScaleLayout, zero_segments

ZERO_BUCKETS = 8
"""The share of zero symbols in a band's segment, in this many buckets."""
DELTA = 4
"""Changes (the band below's, the gain across a segment) are clipped to -DELTA..DELTA."""
BASE_FEATURES = 9
"""Columns of a version-2 noise model's features."""
FEATURES = 14
"""Columns of `noise_features` now (version 3)."""
MAG_BUCKETS = 4
"""The largest symbol magnitude in a band's segment, clipped to 0..MAG_BUCKETS - 1."""


@dataclass(frozen=True)
class NoiseConfig:
    num_bands: int = 22
    levels: int = 37
    low: int = -16
    high: int = 4
    hidden: int = 48
    features: int = BASE_FEATURES     # FEATURES for a version-3 model

    @property
    def values(self) -> int:
        return self.high - self.low + 1

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def for_layout(cls, layout: ScaleLayout, **kw: int) -> NoiseConfig:
        return cls(num_bands=layout.num_bands, levels=layout.levels, low=layout.noise_low,
                   high=layout.noise_high, **kw)


def noise_features(chunk: ChunkSymbols, layout: ScaleLayout, columns: int = FEATURES
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Features [n, columns] (band, level, zero bucket, previous two in band, band below,
    two bands below, the band below's change, the gain change across the segment; with
    columns == FEATURES also the version-3 five of the module docstring) and targets [n]
    (value - noise_low) of the coded corrections of channel 0, in coded order."""
    q = chunk.coefficients[:1]
    mask = zero_segments(layout, q)[0]                                # [bands, segs]
    noise = chunk.noise[0].astype(np.int64) - layout.noise_low
    bands, segs = mask.shape
    frames = q.shape[-1]
    seg_first = np.arange(segs) * layout.noise_segment
    seg_last = np.minimum(seg_first + layout.noise_segment, frames) - 1
    gains = chunk.gains[0].astype(np.int64)
    levels = frame_levels(layout, gains, chunk.frame_steps)[seg_first]
    zeros = np.add.reduceat((q[0] == 0).astype(np.int64), np.asarray(layout.band_edges[:-1]),
                            axis=0)
    zeros = np.add.reduceat(zeros, seg_first, axis=1)
    width = np.diff(np.asarray(layout.band_edges))[:, None]
    seg_len = np.diff(np.append(seg_first, frames))[None, :]
    bucket = np.minimum(zeros * ZERO_BUCKETS // (width * seg_len), ZERO_BUCKETS - 1)
    none = layout.noise_high - layout.noise_low + 1
    prev, prev2 = previous_coded(noise, mask, 1, none), previous_coded(noise, mask, 2, none)
    coded = np.where(mask, noise, none)
    below, below2 = np.full((bands, segs), none), np.full((bands, segs), none)
    below[1:], below2[2:] = coded[:-1], coded[:-2]
    below_prev = np.full((bands, segs), none)
    below_prev[1:] = prev[:-1]
    change = np.where((below < none) & (below_prev < none),
                      np.clip(below - below_prev, -DELTA, DELTA) + DELTA, 2 * DELTA + 1)
    onset = np.clip(gains[seg_last] - gains[seg_first], -DELTA, DELTA) + DELTA
    grid = lambda x: np.broadcast_to(x, (bands, segs))               # noqa: E731
    cols = [grid(np.arange(bands)[:, None]), grid(levels[None, :]), bucket, prev, prev2,
            below, below2, change, grid(onset[None, :])]
    if columns == FEATURES:
        cols += _decoded_neighbours(q[0], coded, bucket, seg_first, layout, none)
    feats = np.stack(cols, axis=-1)[mask]
    return feats.astype(np.int64), noise[mask].astype(np.int64)


def _decoded_neighbours(q: NDArray[np.int64], coded: NDArray[np.int64],
                        bucket: NDArray[np.int64], seg_first: NDArray[np.int64],
                        layout: ScaleLayout, none: int) -> list[NDArray[np.int64]]:
    """The version-3 features [bands, segs] each: the band below's next correction, the
    largest magnitude in the segment, the zero buckets above, before and after."""
    bands, segs = coded.shape
    edges = np.asarray(layout.band_edges[:-1])
    below_next = np.full((bands, segs), none)
    below_next[1:, :-1] = coded[:-1, 1:]
    largest = np.maximum.reduceat(np.maximum.reduceat(np.abs(q), edges, axis=0), seg_first,
                                  axis=1)
    return [below_next, np.minimum(largest, MAG_BUCKETS - 1),
            *neighbour_buckets(bucket, ZERO_BUCKETS)]


def previous_coded(values: NDArray[np.int64], mask: NDArray[np.bool_], lag: int,
              none: int) -> NDArray[np.int64]:
    """[rows, n]: the `lag`-th coded value before each place along its row (none if absent)."""
    out = np.full(mask.shape, none, np.int64)
    for r in range(mask.shape[0]):
        at = np.flatnonzero(mask[r])
        if not at.size:
            continue
        rank = np.cumsum(mask[r]) - mask[r]              # coded values strictly before
        out[r] = np.where(rank >= lag, values[r, at[np.maximum(rank - lag, 0)]], none)
    return out


class NoiseModel(SideModel):
    """features [n, FEATURES] -> logits [n, values]."""

    def __init__(self, config: NoiseConfig) -> None:
        v = config.values
        sizes = [config.num_bands, config.levels, ZERO_BUCKETS, v + 1, v + 1, v + 1, v + 1,
                 2 * DELTA + 2, 2 * DELTA + 1]
        if config.features == FEATURES:
            sizes += [v + 1, MAG_BUCKETS, ZERO_BUCKETS + 1, ZERO_BUCKETS + 1, ZERO_BUCKETS + 1]
        elif config.features != BASE_FEATURES:
            raise ValueError(f"a noise model has {BASE_FEATURES} or {FEATURES} features, "
                             f"not {config.features}")
        super().__init__(sizes, config.hidden, v)
        self.config = config


def chunk_features(symbols, layout: ScaleLayout) -> tuple[Tensor, Tensor]:
    """Features (all FEATURES) and targets of every chunk of a `SymbolSet`, concatenated."""
    return stacked_features(symbols, layout, noise_features, FEATURES)


def train_noise(symbols, layout: ScaleLayout, steps: int = 3000, batch: int = 4096,
                lr: float = 3e-3, seed: int = 0) -> NoiseModel:
    """Fit a `NoiseModel` on a `SymbolSet` (about a minute on one thread; deterministic)."""
    torch.manual_seed(seed)
    feats, targets = chunk_features(symbols, layout)
    model = NoiseModel(NoiseConfig.for_layout(layout, features=FEATURES))
    return fit(model, feats, targets, steps, batch, lr, seed)
