"""Bits of a chunk's symbols under a prior: the context model or the frozen tables.

Both priors have one interface, `chunk_bits(chunk) -> ChunkBits`, so the bench
measures either with the same bookkeeping, and the tables' figure can be checked
against the real payload length (tests/test_context.py). What neither prior
models is counted the same for both (`ChunkBits.side`): the chunk's step and split
(uniform, as the coder sends them), and whatever else the coder sends. The
noise-fill corrections and the noise-fill envelope cost what the frozen tables say,
or what `codec.context.noise`'s / `codec.context.envelope`'s model says when one is
given (mono chunks; a stereo chunk's side information costs what the tables say).
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
from codec.context.envelope import EnvelopeModel, envelope_features
from codec.context.noise import NoiseModel, noise_features
from codec.scales import ScaleLayout, coefficient_tables


@dataclass(frozen=True)
class ChunkBits:
    """Ideal bits of one chunk: coefficients, gains, noise-fill corrections, noise-fill
    envelope, and the rest (side: step, split, mid/side flag; uniform, the same for
    every prior)."""

    coef: float
    gain: float
    noise: float
    envelope: float
    side: float

    @property
    def total(self) -> float:
        return self.coef + self.gain + self.noise + self.envelope + self.side


class Prior(Protocol):
    def chunk_bits(self, chunk: ChunkSymbols) -> ChunkBits: ...


def table_parts(chunk: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable
                ) -> ChunkBits:
    """The frozen tables' bits of a chunk, by part; `side` is everything else the coder
    sends (step, split, mid/side flag, and any side information a newer layout adds)."""
    q = chunk.coefficients.astype(np.int64)
    table_of = coefficient_tables(layout, chunk.gains, chunk.frame_steps, q)
    coef = entropy.block_bits(q.reshape(-1), table_of.reshape(-1), tables)
    gain = entropy.block_bits(*chunkcoder.gain_residuals(layout, chunk.gains), tables)
    noise = table_noise_bits(chunk, layout, tables)
    envelope = table_envelope_bits(chunk, layout, tables)
    side = chunkcoder.chunk_bits(chunk, layout, tables) - coef - gain - noise - envelope
    return ChunkBits(coef, gain, noise, envelope, side)


def table_noise_bits(chunk: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable
                     ) -> float:
    """The frozen tables' bits of the noise-fill corrections block alone."""
    q = chunk.coefficients.astype(np.int64)
    return entropy.block_bits(*chunkcoder.noise_symbols(layout, chunk.noise, q), tables)


def table_envelope_bits(chunk: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable
                        ) -> float:
    """The frozen tables' bits of the noise-fill envelope block (0 without one)."""
    q = chunk.coefficients.astype(np.int64)
    return entropy.block_bits(*chunkcoder.envelope_symbols(
        layout, chunk.envelope_values(layout), q), tables)


class TablePrior:
    """The shipped coder's frozen tables (with their previous-frame context)."""

    def __init__(self, layout: ScaleLayout, tables: entropy.CdfTable) -> None:
        self.layout, self.tables = layout, tables

    def chunk_bits(self, chunk: ChunkSymbols) -> ChunkBits:
        return table_parts(chunk, self.layout, self.tables)


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
    """The context model; each channel of a chunk is measured on its own. Without a
    noise (envelope) model the noise-fill corrections (envelope) cost what the frozen
    tables say."""

    def __init__(self, model: ContextModel, layout: ScaleLayout,
                 tables: entropy.CdfTable, noise: NoiseModel | None = None,
                 envelope: EnvelopeModel | None = None) -> None:
        self.model, self.layout, self.tables = model.eval(), layout, tables
        self.noise = noise.eval() if noise is not None else None
        self.envelope = envelope.eval() if envelope is not None else None

    @torch.inference_mode()
    def noise_bits(self, chunk: ChunkSymbols) -> float:
        if self.noise is None or chunk.gains.shape[0] != 1:
            return table_noise_bits(chunk, self.layout, self.tables)
        return _model_bits(self.noise, *noise_features(chunk, self.layout,
                                                        self.noise.config.features))

    @torch.inference_mode()
    def envelope_bits(self, chunk: ChunkSymbols) -> float:
        if self.envelope is None or chunk.gains.shape[0] != 1:
            return table_envelope_bits(chunk, self.layout, self.tables)
        return _model_bits(self.envelope, *envelope_features(
            chunk, self.layout, self.envelope.config.features))

    @torch.inference_mode()
    def chunk_bits(self, chunk: ChunkSymbols) -> ChunkBits:
        coef = gain = 0.0
        for ch in range(chunk.gains.shape[0]):
            mono = ChunkSymbols(chunk.step, False, chunk.gains[ch:ch + 1],
                                chunk.noise[ch:ch + 1], chunk.coefficients[ch:ch + 1],
                                chunk.split)
            c, g = frame_bits(self.model, chunk_batch(mono, self.layout))
            coef, gain = coef + float(c.sum()), gain + float(g.sum())
        side = table_parts(chunk, self.layout, self.tables).side
        return ChunkBits(coef, gain, self.noise_bits(chunk), self.envelope_bits(chunk), side)


def _model_bits(model: NoiseModel | EnvelopeModel, feats: np.ndarray,
                targets: np.ndarray) -> float:
    """Summed bits of a side-information model on its features and targets."""
    if not len(targets):
        return 0.0
    return float(model.bits(torch.from_numpy(feats), torch.from_numpy(targets)).sum())
