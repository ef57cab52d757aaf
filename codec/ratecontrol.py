"""Whole-stream bitrate for the transform coder: a step per chunk, searched while encoding.

`--kbps K` is the rate of the whole file (all channels, container included), as
with opusenc and lame. The encoder knows the stream's duration and fixed costs
up front, so it spends the remaining bit budget chunk by chunk: each chunk gets
its share of what is left (in proportion to its frames, at most
`MAX_CHUNK_SHARE` times the average), and takes the finest step whose exact
ideal bit count, plus the coder's and the container's worst-case overhead,
fits that share. Bits a cheap chunk leaves unused go to later chunks, so the
file lands just under K; it never goes over while K is at least what the
coarsest step costs.

Stereo chunks are coded as mid/side when that is cheaper at the chosen step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from codec.chunkcoder import ChunkSymbols, chunk_bits, encode_chunk
from codec.entropy import CdfTable, payload_bound_bits
from codec.model.transform import TransformQuantizer, frame_gains, quantize
from codec.scales import NUM_STEPS, ScaleLayout

MAX_CHUNK_SHARE = 3.0
"""A chunk may spend at most this many times the average per-frame budget."""
CHUNK_RECORD_BITS = 8 * (3 + 4 + 3)
"""Worst-case container bits per chunk: length varint, CRC-32, seek-index entry."""


@dataclass
class RateController:
    """Spends `budget_bits` of payload over `frames` frames, chunk by chunk."""

    layout: ScaleLayout
    tables: CdfTable
    quantizer: TransformQuantizer
    budget_bits: float
    frames: int

    def __post_init__(self) -> None:
        self.average = self.budget_bits / max(self.frames, 1)

    def code_chunk(self, y: torch.Tensor) -> tuple[bytes, ChunkSymbols]:
        """Coefficients [channels, C, F] -> (payload, its symbols), updating the budget."""
        frames = y.shape[-1]
        share = self.budget_bits * frames / max(self.frames, frames)
        target = min(share, MAX_CHUNK_SHARE * self.average * frames)
        target -= CHUNK_RECORD_BITS + payload_bound_bits(1)
        symbols = self._search(y, target)
        payload = encode_chunk(symbols, self.layout, self.tables)
        self.budget_bits -= 8 * len(payload) + CHUNK_RECORD_BITS
        self.frames -= frames
        return payload, symbols

    def _search(self, y: torch.Tensor, target: float) -> ChunkSymbols:
        """The finest step whose bits fit the target (the coarsest if none does)."""
        best = _Candidates(self, y)
        if y.shape[0] == 2:
            side = _Candidates(self, torch.stack([(y[0] + y[1]) / 2, (y[0] - y[1]) / 2]), True)
            step = best.finest(target)
            if self._bits(side.symbols(step)) < self._bits(best.symbols(step)):
                best = side
        return best.final(target)

    def _bits(self, symbols: ChunkSymbols) -> float:
        return chunk_bits(symbols, self.layout, self.tables)



class _Candidates:
    """One chunk's symbols at any step, for the search: gains computed once, and the
    noise corrections (which cost a little and barely depend on the step) only for
    the final choice."""

    def __init__(self, controller: RateController, y: torch.Tensor, mid_side: bool = False
                 ) -> None:
        self.controller, self.y, self.mid_side = controller, y, mid_side
        self.gains = frame_gains(y, controller.layout)
        layout = controller.layout
        self.zero_noise = np.zeros((y.shape[0], layout.num_bands,
                                    layout.noise_segments(y.shape[-1])), dtype=np.int64)

    def symbols(self, step: int, exact: bool = False) -> ChunkSymbols:
        layout = self.controller.layout
        q = quantize(self.y, self.gains, step, layout)
        noise = (self.controller.quantizer.noise_corrections(self.y, self.gains, q, step)
                 if exact else self.zero_noise)
        return ChunkSymbols(step, self.mid_side, self.gains.cpu().numpy(), noise,
                            q.cpu().numpy())

    def finest(self, target: float) -> int:
        """Bisection on the step with the noise corrections left at zero."""
        lo, hi = 0, NUM_STEPS - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.controller._bits(self.symbols(mid)) <= target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def final(self, target: float) -> ChunkSymbols:
        """Exact symbols at the finest step that still fits once the corrections count."""
        step = self.finest(target)
        chosen = self.symbols(step, exact=True)
        while step < NUM_STEPS - 1 and self.controller._bits(chosen) > target:
            step += 1
            chosen = self.symbols(step, exact=True)
        return chosen
