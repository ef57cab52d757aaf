"""Bits of a chunk's symbols under a prior: the context model or the frozen tables.

Both priors have one interface, `chunk_bits(chunk) -> ChunkBits`, so the bench
measures either with the same bookkeeping, and the tables' figure can be checked
against the real payload length (tests/test_context.py). What neither prior
models is counted the same for both (`side_bits`): the chunk's step and split
(uniform, as the coder sends them) and the noise-fill corrections (the frozen
tables' cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codec import chunkcoder, entropy
from codec.chunkcoder import ChunkSymbols
from codec.context.batches import Batch
from codec.context.model import ContextModel, coef_classes, escape_bits, frame_levels, nats_to_bits
from codec.context.model import HISTORY
from codec.scales import NUM_STEPS, ScaleLayout, coefficient_tables


@dataclass(frozen=True)
class ChunkBits:
    """Ideal bits of one chunk: the coefficients, the gains, and the rest (side)."""

    coef: float
    gain: float
    side: float

    @property
    def total(self) -> float:
        return self.coef + self.gain + self.side


class Prior(Protocol):
    def chunk_bits(self, chunk: ChunkSymbols) -> ChunkBits: ...


def side_bits(chunk: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable) -> float:
    """Step + split (uniform) and the noise block (frozen tables): the same for every prior."""
    frames = chunk.gains.shape[1]
    ms = 1.0 if chunk.gains.shape[0] == 2 else 0.0
    return (np.log2(NUM_STEPS) + np.log2(frames + 1) + ms
            + chunkcoder.noise_bits(chunk, layout, tables))


class TablePrior:
    """The shipped coder's frozen tables (with their previous-frame context)."""

    def __init__(self, layout: ScaleLayout, tables: entropy.CdfTable) -> None:
        self.layout, self.tables = layout, tables

    def chunk_bits(self, chunk: ChunkSymbols) -> ChunkBits:
        q = chunk.coefficients.astype(np.int64)
        table_of = coefficient_tables(self.layout, chunk.gains, chunk.frame_steps, q)
        coef = entropy.block_bits(q.reshape(-1), table_of.reshape(-1), self.tables)
        gain = entropy.block_bits(*chunkcoder._gain_residuals(self.layout, chunk.gains),
                                  self.tables)
        return ChunkBits(coef, gain, side_bits(chunk, self.layout, self.tables))


def frame_bits(model: ContextModel, batch: Batch) -> tuple[Tensor, Tensor]:
    """Bits of every frame's coefficients and gain [B, T] (padding frames: 0)."""
    gain_logits, coef_logits = model(batch.q, batch.gains, batch.steps, batch.levels)
    a = model.config.alphabet
    target = batch.q[:, HISTORY:]
    ce = F.cross_entropy(coef_logits.reshape(-1, coef_logits.shape[-1]),
                         coef_classes(target, a).reshape(-1), reduction="none")
    coef = nats_to_bits(ce).view(target.shape) + escape_bits(target, a)
    g = batch.gains[:, HISTORY:]
    gain = nats_to_bits(F.cross_entropy(gain_logits.reshape(-1, gain_logits.shape[-1]),
                                        g.clamp_min(0).reshape(-1), reduction="none"))
    mask = batch.mask.float()
    return coef.sum(dim=2) * mask, gain.view(g.shape) * mask


def chunk_batch(chunk: ChunkSymbols, layout: ScaleLayout) -> Batch:
    """One mono chunk as a batch of one window (HISTORY frames of zeros before it)."""
    q = chunk.coefficients[0].T.astype(np.int64)                 # [F, C]
    frames = q.shape[0]
    pad = lambda x, fill: np.concatenate(                         # noqa: E731
        [np.full((HISTORY,) + x.shape[1:], fill, np.int64), x.astype(np.int64)])
    gains, steps = chunk.gains[0], chunk.frame_steps
    levels = frame_levels(layout, gains, steps)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x))[None]   # noqa: E731
    return Batch(t(pad(q, 0)), t(pad(gains, -1)), t(pad(steps, -1)), t(levels),
                 torch.ones(1, frames, dtype=torch.bool))


class NeuralPrior:
    """The context model; each channel of a chunk is measured on its own."""

    def __init__(self, model: ContextModel, layout: ScaleLayout,
                 tables: entropy.CdfTable) -> None:
        self.model, self.layout, self.tables = model.eval(), layout, tables

    @torch.inference_mode()
    def chunk_bits(self, chunk: ChunkSymbols) -> ChunkBits:
        coef = gain = 0.0
        for ch in range(chunk.gains.shape[0]):
            mono = ChunkSymbols(chunk.step, False, chunk.gains[ch:ch + 1],
                                chunk.noise[ch:ch + 1], chunk.coefficients[ch:ch + 1],
                                chunk.split)
            c, g = frame_bits(self.model, chunk_batch(mono, self.layout))
            coef, gain = coef + float(c.sum()), gain + float(g.sum())
        return ChunkBits(coef, gain, side_bits(chunk, self.layout, self.tables))
