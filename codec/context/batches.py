"""Training windows of a `SymbolSet`: T frames each, with HISTORY frames of the past.

Windows never cross a chunk boundary (a chunk is coded on its own); the history
before a chunk's first frame is zeros (gains and steps -1), exactly what the
model sees when it measures or codes a chunk. The order of windows is a
function of the epoch only, so training resumes exactly from a step number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from codec.context.model import HISTORY, frame_levels
from codec.context.symbols import SymbolSet
from codec.scales import ScaleLayout


@dataclass
class Batch:
    """Model inputs and targets; `mask` [B, T] marks real frames."""

    q: Tensor            # [B, T + H, C] int64
    gains: Tensor        # [B, T + H]
    steps: Tensor        # [B, T + H]
    levels: Tensor       # [B, T]
    mask: Tensor         # [B, T] bool


def windows(symbols: SymbolSet, length: int) -> NDArray[np.int64]:
    """[W, 3] (start, stop, chunk_start) of every window of <= `length` frames."""
    out = []
    for a, b in zip(symbols.chunk_start[:-1], symbols.chunk_start[1:]):
        out += [(s, min(s + length, b), a) for s in range(int(a), int(b), length)]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def make_batch(symbols: SymbolSet, layout: ScaleLayout, spans: NDArray[np.int64],
               length: int) -> Batch:
    """Stack windows (start, stop, chunk_start) into one padded batch."""
    n, c = len(spans), symbols.q.shape[1]
    q = np.zeros((n, length + HISTORY, c), np.int64)
    gains = np.full((n, length + HISTORY), -1, np.int64)
    steps = np.full((n, length + HISTORY), -1, np.int64)
    mask = np.zeros((n, length), bool)
    for i, (s, e, a) in enumerate(spans):
        lo = max(int(a), int(s) - HISTORY)
        at = HISTORY - (int(s) - lo)
        q[i, at: at + e - lo] = symbols.q[lo:e]
        gains[i, at: at + e - lo] = symbols.gains[lo:e]
        steps[i, at: at + e - lo] = symbols.steps[lo:e]
        mask[i, : e - s] = True
    levels = frame_levels(layout, gains[:, HISTORY:], np.maximum(steps[:, HISTORY:], 0))
    t = torch.from_numpy
    return Batch(t(q), t(gains), t(steps), t(levels), t(mask))


def epoch_order(count: int, epoch: int, seed: int) -> NDArray[np.int64]:
    """The window order of one epoch (deterministic)."""
    return np.random.default_rng([seed, epoch]).permutation(count)
