"""Coder 2 (spec §5.6): one chunk's integers <-> one rANS payload.

A chunk of the transform coder carries, in decoding order:

1. its step index (``Uniform(256)``) and the split frame (``Uniform(F + 1)``): frames
   before the split use the step, later ones the step + 1, so that the rate can
   be set finer than one step;
2. for stereo streams only, the mid/side flag (``Uniform(2)``);
3. the frame gains of every channel: the first with the gain-first table, each
   later one as the difference to the previous frame with the gain-delta table;
4. the MDCT symbols, one block per frame: each symbol with the table
   `scales.coefficient_tables` picks from the step, the decoded gain and the
   previous frame's symbols around its bin, grouped by table (ascending id, then
   channel, bin), so that a run of one table is one coder call;
5. the noise-fill corrections of the (channel, band, segment)s that hold a zero
   symbol, in that order: a band's first one with the noise-first table, later
   ones as the change from the band's previous one with the noise-delta table;
6. with envelope regions in the layout (spec 1.2), the noise-fill envelope of the
   (channel, region, frame)s that hold a zero symbol, coded the same way along the
   frames with the envelope-first and envelope-delta tables.

Every block (the gains, each frame's symbols, the noise levels, the envelope) ends with its
escapes (`entropy.push_block`). Integers only:
nothing here is a float, so CPU and GPU machines decode the same symbols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import constriction
import numpy as np
from numpy.typing import NDArray

from codec import entropy
from codec.errors import FormatError
from codec.scales import (NUM_STEPS, ScaleLayout, coefficient_tables, frame_tables,
                          zero_regions, zero_segments)

CODER_ID = 2
"""Header `coder_id` of the transform coder's chunk layout (spec §5.6)."""
MAX_FRAMES = (1 << 16) - 1
"""Most frames in a coder-2 chunk (the split is coded with Uniform(F + 1) <= 2**16)."""


@dataclass
class ChunkSymbols:
    """The integers of one chunk: step, mid/side flag, gains [ch, F], noise-fill
    corrections [ch, bands, segments], symbols [ch, C, F] and the noise-fill envelope
    [ch, R, F] (None: all zero, e.g. a layout without envelope regions)."""

    step: int
    mid_side: bool
    gains: NDArray[np.int64]
    noise: NDArray[np.int64]
    coefficients: NDArray[np.int64]
    split: int | None = None          # None: every frame uses `step`
    envelope: NDArray[np.int64] | None = None

    def envelope_values(self, layout: ScaleLayout) -> NDArray[np.int64]:
        """The envelope as an array [ch, R, F] (zeros when None)."""
        if self.envelope is not None:
            return self.envelope.astype(np.int64)
        return np.zeros((self.gains.shape[0], layout.envelope_regions, self.gains.shape[1]),
                        dtype=np.int64)

    @property
    def frame_steps(self) -> NDArray[np.int64]:
        """[F] step index of every frame: step before the split, step + 1 from it."""
        return frame_step_indices(self.step, self.split_frame, self.gains.shape[1])

    @property
    def split_frame(self) -> int:
        return self.gains.shape[1] if self.split is None else int(self.split)


def frame_step_indices(step: int, split: int, frames: int) -> NDArray[np.int64]:
    """step for frames [0, split), step + 1 for frames [split, frames)."""
    return step + (np.arange(frames) >= split).astype(np.int64)


def gain_residuals(layout: ScaleLayout, gains: NDArray[np.int64]
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Flat gain symbols (first absolute, then deltas, channel-major) and their tables."""
    residual = np.concatenate([gains[:, :1], np.diff(gains, axis=1)], axis=1)
    tables = np.full(gains.shape, layout.gain_delta_table, dtype=np.int64)
    tables[:, 0] = layout.gain_first_table
    return residual.reshape(-1), tables.reshape(-1)


def _first_delta(values: NDArray[np.int64], mask: NDArray[np.bool_], first_table: int,
                 delta_table: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The coded values (where mask, in C order) and their tables: along the last axis,
    each run's first coded value absolute, later ones as the change from the previous one."""
    length = mask.shape[-1]
    coded_at = np.where(mask, np.arange(length), -1)
    last = np.maximum.accumulate(coded_at, axis=-1)
    before = np.concatenate([np.full(mask.shape[:-1] + (1,), -1), last[..., :-1]], axis=-1)
    previous = np.take_along_axis(values, np.maximum(before, 0), axis=-1)
    residual = values - np.where(before >= 0, previous, 0)
    tables = np.where(before >= 0, delta_table, first_table)
    return residual[mask].astype(np.int64), tables[mask].astype(np.int64)


def _from_first_delta(residuals: NDArray[np.int64], mask: NDArray[np.bool_]
                      ) -> NDArray[np.int64]:
    """Inverse of `_first_delta`; places without a coded value get 0."""
    placed = np.zeros(mask.shape, dtype=np.int64)
    placed[mask] = residuals
    return np.where(mask, np.cumsum(placed, axis=-1), 0)


def noise_symbols(layout: ScaleLayout, noise: NDArray[np.int64], coefficients: NDArray[np.int64]
                  ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The coded noise residuals (channel, band, segment order, where a zero exists) and
    their tables: first per (channel, band) absolute, later ones as differences."""
    return _first_delta(noise, zero_segments(layout, coefficients), layout.noise_first_table,
                        layout.noise_delta_table)


def envelope_symbols(layout: ScaleLayout, envelope: NDArray[np.int64],
                     coefficients: NDArray[np.int64]
                     ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The coded envelope residuals (channel, region, frame order, where a zero exists)
    and their tables: first per (channel, region) absolute, later ones as differences."""
    if not layout.envelope_regions:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _first_delta(envelope, zero_regions(layout, coefficients),
                        layout.envelope_first_table, layout.envelope_delta_table)


def _pop_first_delta(coder: Any, mask: NDArray[np.bool_], first_table: int, delta_table: int,
                     tables: entropy.CdfTable) -> NDArray[np.int64]:
    """Decode a block that `_first_delta` coded: its tables follow from the mask alone."""
    _, table_of = _first_delta(np.zeros(mask.shape, np.int64), mask, first_table, delta_table)
    return _from_first_delta(entropy.pop_block(coder, table_of, tables), mask)


def _push_coefficients(coder: Any, symbols: ChunkSymbols, layout: ScaleLayout,
                       tables: entropy.CdfTable) -> None:
    """One block per frame, last frame pushed first (a stack), each in table order."""
    q = symbols.coefficients.astype(np.int64)
    table_of = coefficient_tables(layout, symbols.gains, symbols.frame_steps, q)
    for f in range(q.shape[-1] - 1, -1, -1):
        frame_tables_ = table_of[:, :, f].reshape(-1)
        order = np.argsort(frame_tables_, kind="stable")
        entropy.push_block(coder, q[:, :, f].reshape(-1)[order], frame_tables_[order], tables)


def _pop_coefficients(coder: Any, layout: ScaleLayout, tables: entropy.CdfTable,
                      gains: NDArray[np.int64], steps: NDArray[np.int64]) -> NDArray[np.int64]:
    """Frame by frame: each frame's tables need the previous frame's symbols."""
    channels, frames = gains.shape
    q = np.zeros((channels, layout.coefficients, frames), dtype=np.int64)
    previous = None
    for f in range(frames):
        table_of = frame_tables(layout, gains[:, f], int(steps[f]), previous).reshape(-1)
        order = np.argsort(table_of, kind="stable")
        values = np.empty(order.size, dtype=np.int64)
        values[order] = entropy.pop_block(coder, table_of[order], tables)
        q[:, :, f] = previous = values.reshape(channels, layout.coefficients)
    return q


def _check(symbols: ChunkSymbols, layout: ScaleLayout) -> None:
    channels, frames = symbols.gains.shape
    if symbols.coefficients.shape != (channels, layout.coefficients, frames):
        raise ValueError("coefficients must be [channels, C, frames] like the gains")
    if not 0 <= symbols.step < NUM_STEPS:
        raise ValueError(f"step index {symbols.step} outside 0..{NUM_STEPS - 1}")
    if not 0 <= symbols.split_frame <= frames or frames > MAX_FRAMES:
        raise ValueError(f"split {symbols.split_frame} outside 0..{frames} or too many frames")
    if symbols.gains.size and (symbols.gains.min() < 0 or symbols.gains.max() > layout.gain_max):
        raise ValueError(f"gains outside 0..{layout.gain_max}")
    segments = (channels, layout.num_bands, layout.noise_segments(frames))
    if symbols.noise.shape != segments:
        raise ValueError(f"noise corrections must be {segments}")
    if symbols.noise.size and (symbols.noise.min() < layout.noise_low
                               or symbols.noise.max() > layout.noise_high):
        raise ValueError("noise corrections outside the layout's range")
    if symbols.mid_side and channels != 2:
        raise ValueError("mid/side needs exactly two channels")
    envelope = symbols.envelope_values(layout)
    if envelope.shape != (channels, layout.envelope_regions, frames):
        raise ValueError(f"envelope must be {(channels, layout.envelope_regions, frames)}")
    if envelope.size and (envelope.min() < layout.envelope_low
                          or envelope.max() > layout.envelope_high):
        raise ValueError("envelope values outside the layout's range")


def encode_chunk(symbols: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable) -> bytes:
    """One chunk's integers -> its payload (spec §5.6)."""
    _check(symbols, layout)
    coder = constriction.stream.stack.AnsCoder()
    coefficients = symbols.coefficients.astype(np.int64)
    if layout.envelope_regions:
        entropy.push_block(coder, *envelope_symbols(layout, symbols.envelope_values(layout),
                                                    coefficients), tables)
    entropy.push_block(coder, *noise_symbols(layout, symbols.noise, coefficients), tables)
    _push_coefficients(coder, symbols, layout, tables)
    entropy.push_block(coder, *gain_residuals(layout, symbols.gains.astype(np.int64)), tables)
    if symbols.gains.shape[0] == 2:
        coder.encode_reverse(np.array([int(symbols.mid_side)], np.int32),
                             constriction.stream.model.Uniform(2))
    frames = symbols.gains.shape[1]
    coder.encode_reverse(np.array([symbols.split_frame], np.int32),
                         constriction.stream.model.Uniform(frames + 1))
    coder.encode_reverse(np.array([symbols.step], np.int32),
                         constriction.stream.model.Uniform(NUM_STEPS))
    return entropy.finish(coder)


def decode_chunk(payload: bytes, layout: ScaleLayout, tables: entropy.CdfTable,
                 channels: int, frames: int) -> ChunkSymbols:
    """Inverse of `encode_chunk`; FormatError for any payload an encoder cannot write."""
    if not 1 <= frames <= MAX_FRAMES:
        raise FormatError(f"a coder-2 chunk holds 1..{MAX_FRAMES} frames, not {frames}")
    coder = entropy.open_payload(payload)
    step = int(coder.decode(constriction.stream.model.Uniform(NUM_STEPS), 1)[0])
    split = int(coder.decode(constriction.stream.model.Uniform(frames + 1), 1)[0])
    mid_side = channels == 2 and bool(coder.decode(constriction.stream.model.Uniform(2), 1)[0])
    first = np.full((channels, frames), layout.gain_delta_table, dtype=np.int64)
    first[:, 0] = layout.gain_first_table
    residual = entropy.pop_block(coder, first.reshape(-1), tables).reshape(channels, frames)
    gains = np.cumsum(residual, axis=1)
    if gains.size and (gains.min() < 0 or gains.max() > layout.gain_max):
        raise FormatError(f"payload decodes a frame gain outside 0..{layout.gain_max}")
    coefficients = _pop_coefficients(coder, layout, tables, gains,
                                     frame_step_indices(step, split, frames))
    noise = _pop_first_delta(coder, zero_segments(layout, coefficients),
                             layout.noise_first_table, layout.noise_delta_table, tables)
    if noise.size and (noise.min() < layout.noise_low or noise.max() > layout.noise_high):
        raise FormatError("payload decodes a noise-fill correction outside the layout's range")
    envelope = None
    if layout.envelope_regions:
        envelope = _pop_first_delta(coder, zero_regions(layout, coefficients),
                                    layout.envelope_first_table, layout.envelope_delta_table,
                                    tables)
        if envelope.size and (envelope.min() < layout.envelope_low
                              or envelope.max() > layout.envelope_high):
            raise FormatError("payload decodes a noise-fill envelope value outside the "
                              "layout's range")
    entropy.check_empty(coder)
    return ChunkSymbols(step, mid_side, gains, noise, coefficients, split, envelope)


def chunk_bits(symbols: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable) -> float:
    """Ideal bits of a chunk's payload (the coder adds at most 64, spec §5.3)."""
    return symbol_bits(symbols, layout, tables) + noise_bits(symbols, layout, tables)


def symbol_bits(symbols: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable) -> float:
    """Ideal bits of everything but the noise block.

    A block's ideal bits do not depend on the coding order, so no sort is needed.
    """
    flat = symbols.coefficients.astype(np.int64)
    coef_tables = coefficient_tables(layout, symbols.gains, symbols.frame_steps, flat).reshape(-1)
    flat = flat.reshape(-1)
    bits = entropy.block_bits(flat, coef_tables, tables)
    bits += entropy.block_bits(*gain_residuals(layout, symbols.gains.astype(np.int64)), tables)
    side = np.log2(NUM_STEPS) + np.log2(symbols.gains.shape[1] + 1)
    return bits + side + (1.0 if symbols.gains.shape[0] == 2 else 0.0)


def noise_bits(symbols: ChunkSymbols, layout: ScaleLayout, tables: entropy.CdfTable) -> float:
    """Ideal bits of the noise fill's side information: the noise and envelope blocks."""
    coefficients = symbols.coefficients.astype(np.int64)
    bits = entropy.block_bits(*noise_symbols(layout, symbols.noise, coefficients), tables)
    if layout.envelope_regions:
        bits += entropy.block_bits(*envelope_symbols(layout, symbols.envelope_values(layout),
                                                     coefficients), tables)
    return bits
