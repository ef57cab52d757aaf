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

from dataclasses import dataclass, replace

import numpy as np
import torch

from codec.chunkcoder import (ChunkSymbols, chunk_bits, encode_chunk, frame_step_indices,
                               noise_bits, symbol_bits)
from codec.entropy import CdfTable, payload_bound_bits
from codec.model.transform import TransformQuantizer, frame_gains, quantize
from codec.scales import NUM_STEPS, ScaleLayout, zero_segments

MAX_CHUNK_SHARE = 3.0
"""A chunk may spend at most this many times the average per-frame budget."""
CHUNK_RECORD_BITS = 8 * (3 + 4 + 3)
"""Worst-case container bits per chunk: length varint, CRC-32, seek-index entry."""


def mid_side(y: torch.Tensor) -> torch.Tensor:
    """[L, R] -> [M, S] = [(L + R), (L - R)] / sqrt 2: orthonormal, so quantization noise
    keeps its power when decoded back to left and right (spec §5.6)."""
    return torch.stack([y[0] + y[1], y[0] - y[1]]) * 0.5 ** 0.5


CHUNK_FIXED_BITS = CHUNK_RECORD_BITS + 64 + 8 + 16
"""Bits every chunk costs whatever its length: record, coder flush, step and split."""
MAX_THRIFT = 2
"""Thrift levels of the noise fill's side information: 1 drops the envelope (corrections
recomputed without it), 2 also keeps one correction per band."""
MAX_SIDE_SHARE = 0.8
"""Above this share of a chunk's target, the noise fill's side information is thrifted
(no envelope, then one correction per band) before any step is searched: at 2 kbps it
would otherwise leave no bits for the coefficients at all."""
MIN_FRAME_BITS = 2.0
"""Payload bits a frame needs at least (gains, noise levels, all-zero symbols)."""


SIDE_FIRST_BITS = (10, 8, 4)
"""Bits set aside per chunk and channel for the side information every chunk restarts,
however short: each band's first noise-fill correction, the first gain, each envelope
region's first value (room for an escape in the first)."""


def chunk_floor_bits(layout: ScaleLayout, channels: int) -> float:
    """Side-information bits any chunk of `channels` channels costs (SIDE_FIRST_BITS)."""
    band, gain, region = SIDE_FIRST_BITS
    return channels * (layout.num_bands * band + gain + layout.envelope_regions * region)


def minimum_payload_bits(chunks: int, frames: int, floor: float = 0.0) -> float:
    """Bits below which no step can fit: every chunk's fixed cost and side-information
    floor (`chunk_floor_bits`), and the frames' own floor."""
    return chunks * (CHUNK_FIXED_BITS + floor) + frames * MIN_FRAME_BITS


@dataclass
class RateController:
    """Spends `budget_bits` (everything but the container's fixed bytes) over `frames`
    frames in `chunks` chunks of `channels` channels: each chunk's fixed cost and
    side-information floor are set aside first, and the rest is shared in proportion
    to frames, so a short last chunk is not starved."""

    layout: ScaleLayout
    tables: CdfTable
    quantizer: TransformQuantizer
    budget_bits: float
    frames: int
    chunks: int
    channels: int = 1

    def __post_init__(self) -> None:
        self.floor = chunk_floor_bits(self.layout, self.channels)
        self.variable = self.budget_bits - self.chunks * (CHUNK_FIXED_BITS + self.floor)
        self.average = self.variable / max(self.frames, 1)
        self.channel_bits: list[float] = []
        self.mid_side_chunks = 0

    def code_chunk(self, y: torch.Tensor) -> tuple[bytes, ChunkSymbols]:
        """Coefficients [channels, C, F] -> (payload, its symbols), updating the budget."""
        frames = y.shape[-1]
        share = self.variable * frames / max(self.frames, frames)
        share = min(share, MAX_CHUNK_SHARE * self.average * frames) + self.floor
        target = share + CHUNK_FIXED_BITS - CHUNK_RECORD_BITS - payload_bound_bits(1)
        symbols = self._search(y, target)
        payload = encode_chunk(symbols, self.layout, self.tables)
        self.variable -= 8 * len(payload) + CHUNK_RECORD_BITS - CHUNK_FIXED_BITS - self.floor
        self.frames -= frames
        self._account(symbols)
        return payload, symbols

    def _account(self, symbols: ChunkSymbols) -> None:
        """Per-channel ideal bits of the chunk (its shared step and flags not counted)."""
        channels = symbols.gains.shape[0]
        if not self.channel_bits:
            self.channel_bits = [0.0] * channels
        self.mid_side_chunks += int(symbols.mid_side)
        for c in range(channels):
            one = ChunkSymbols(symbols.step, False, symbols.gains[c: c + 1],
                               symbols.noise[c: c + 1], symbols.coefficients[c: c + 1],
                               symbols.split, symbols.envelope_values(self.layout)[c: c + 1])
            self.channel_bits[c] += chunk_bits(one, self.layout, self.tables)

    def _search(self, y: torch.Tensor, target: float) -> ChunkSymbols:
        """The finest step whose bits fit the target (the coarsest if none does)."""
        best = _Candidates(self, y)
        if y.shape[0] != 2:
            return best.final(target)
        side = _Candidates(self, mid_side(y), True)
        step = best.finest(target)                  # left/right's first guess, kept
        # exact: the noise fill's side information can differ most (a silent side channel)
        left_right = best.symbols(step, exact=True)
        if self._bits(side.symbols(step, exact=True)) < self._bits(left_right):
            return side.final(target)
        return best.final(target, guess=step, priced=left_right)

    def _bits(self, symbols: ChunkSymbols) -> float:
        return chunk_bits(symbols, self.layout, self.tables)


class _Candidates:
    """One chunk's symbols at any step, for the search. The gains are computed once; the
    noise fill's side information (a small part of the bits that barely depends on the step) is
    priced once at a first guess of the step and added as a constant during the
    bisections, then computed exactly for the final choice."""

    def __init__(self, controller: RateController, y: torch.Tensor, mid_side: bool = False
                 ) -> None:
        self.controller, self.y, self.mid_side = controller, y, mid_side
        self.gains = frame_gains(y, controller.layout)
        layout = controller.layout
        self.zero_noise = np.zeros((y.shape[0], layout.num_bands,
                                    layout.noise_segments(y.shape[-1])), dtype=np.int64)
        self.noise_bits = 0.0
        self.thrift = 0          # 0: full side information; 1: no envelope; 2: flat noise

    def symbols(self, step: int, exact: bool = False, split: int | None = None
                ) -> ChunkSymbols:
        """Symbols with `step` before frame `split` and step + 1 from it (None: no split);
        `exact`: with the noise fill's side information, thrifted to `self.thrift`."""
        layout = self.controller.layout
        frames = self.y.shape[-1]
        steps = frame_step_indices(step, frames if split is None else split, frames)
        q = quantize(self.y, self.gains, steps, layout)
        noise, envelope = self.zero_noise, None
        if exact:
            noise, envelope = self.controller.quantizer.noise_corrections(
                self.y, self.gains, q, steps, with_envelope=self.thrift == 0)
        symbols = ChunkSymbols(step, self.mid_side, self.gains.cpu().numpy(), noise,
                               q.cpu().numpy(), split, envelope if self.thrift == 0 else None)
        return flat_noise(symbols, layout) if exact and self.thrift >= 2 else symbols

    def estimate(self, symbols: ChunkSymbols) -> float:
        return symbol_bits(symbols, self.controller.layout, self.controller.tables) + \
            self.noise_bits

    def finest(self, target: float) -> int:
        """Bisection on the step (the noise block priced at its estimate)."""
        lo, hi = 0, NUM_STEPS - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.estimate(self.symbols(mid)) <= target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def finest_split(self, step: int, target: float) -> int:
        """The most frames that can take `step` (the rest step + 1) within the target.

        Bits grow about linearly with the split, so the split is first interpolated
        between its two ends, then moved frame-group-wise to the exact answer."""
        frames = self.y.shape[-1]
        coarse = self.estimate(self.symbols(step, split=0))
        fine = self.estimate(self.symbols(step, split=frames))
        if fine <= target:
            return frames
        if coarse > target:
            return 0
        split = int(frames * (target - coarse) / max(fine - coarse, 1e-9))
        stride = max(1, frames // 32)
        while split > 0 and self.estimate(self.symbols(step, split=split)) > target:
            split = max(0, split - stride)
        while split + stride <= frames and \
                self.estimate(self.symbols(step, split=split + stride)) <= target:
            split += stride
        return split

    def final(self, target: float, guess: int | None = None,
              priced: ChunkSymbols | None = None) -> ChunkSymbols:
        """Price the noise fill's side information at a first guess of the step (`finest`
        with it unpriced, unless the caller already has it, and maybe its exact symbols
        `priced`), thrift it if it would take more than MAX_SIDE_SHARE of the target,
        search the step and the split, then back off while the exact bits are over the
        target."""
        first = self.finest(target) if guess is None else guess
        self._choose_thrift(first, target, priced)
        step, frames = self.finest(target), self.y.shape[-1]
        split = frames
        if step > 0:
            step -= 1
            split = self.finest_split(step, target)
        chosen = self._back_off_split(step, split, target)
        if self._over(chosen, target):
            coarser = self._finest_fitting(step + 1, target)
            chosen = self._back_off_split(coarser - 1, self.finest_split(coarser - 1, target),
                                          target)
            if self._over(chosen, target):
                chosen = self.symbols(coarser, exact=True)
        while self._over(chosen, target) and self.thrift < MAX_THRIFT:
            self.thrift += 1
            chosen = self.symbols(chosen.step, exact=True, split=chosen.split)
        return chosen

    def _choose_thrift(self, step: int, target: float, priced: ChunkSymbols | None) -> None:
        """Price the side information at `step` (`noise_bits`; `priced`: its exact symbols,
        if already made); where it is over MAX_SIDE_SHARE of the target, thrift it (no
        envelope, then flat noise) first."""
        layout, tables = self.controller.layout, self.controller.tables
        priced = self.symbols(step, exact=True) if priced is None else priced
        self.noise_bits = noise_bits(priced, layout, tables)
        while self.noise_bits > MAX_SIDE_SHARE * target and self.thrift < MAX_THRIFT:
            self.thrift += 1
            self.noise_bits = noise_bits(self.symbols(step, exact=True), layout, tables)

    def _back_off_split(self, step: int, split: int, target: float) -> ChunkSymbols:
        """Exact symbols at (step, split), the split lowered while they are over the target
        (at split 0 every frame takes step + 1)."""
        frames = self.y.shape[-1]
        chosen = self.symbols(step, exact=True, split=split)
        while self._over(chosen, target) and split > 0:
            split = max(0, split - max(1, frames // 16))
            chosen = self.symbols(step, exact=True, split=split)
        return chosen

    def _over(self, symbols: ChunkSymbols, target: float) -> bool:
        return self.controller._bits(symbols) > target

    def _finest_fitting(self, lo: int, target: float) -> int:
        """Bisection on the exact bits over steps lo..255 (no split): the finest step that
        fits, or 255."""
        lo, hi = min(lo, NUM_STEPS - 1), NUM_STEPS - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._over(self.symbols(mid, exact=True), target):
                lo = mid + 1
            else:
                hi = mid
        return lo


def flat_noise(symbols: ChunkSymbols, layout: ScaleLayout) -> ChunkSymbols:
    """The chunk with one noise-fill correction per (channel, band), the median of its
    coded segments' (their changes then cost the least), and no envelope: the fill keeps
    about its level but not its shape over time. Meant for corrections computed without
    an envelope (`noise_corrections(..., with_envelope=False)`)."""
    noise = symbols.noise
    coded = zero_segments(layout, symbols.coefficients)
    counts = np.maximum(coded.sum(axis=-1, keepdims=True), 1)
    ordered = np.sort(np.where(coded, noise, np.iinfo(np.int64).max), axis=-1)
    median = np.take_along_axis(ordered, (counts - 1) // 2, axis=-1)
    flat = np.where(coded, median, 0)
    return replace(symbols, noise=flat.astype(np.int64), envelope=None)
