"""Coder 2 (spec §5.6): integer table selection, exact round trips, bit estimates."""

from __future__ import annotations

import numpy as np
import pytest

from codec import chunkcoder, entropy, scales
from codec.chunkcoder import ChunkSymbols, chunk_bits, decode_chunk, encode_chunk
from codec.errors import FormatError
from codec.scales import ScaleLayout, band_levels, coefficient_tables, step_index

LAYOUT = ScaleLayout((0, 2, 4, 8), levels=4, gain_max=15, gamma_eighths=5, gain_ref=6,
                     level_bias=16, noise_segment=3, noise_low=-3, noise_high=1)


def laplace_tables(layout: ScaleLayout, precision: int = 12,
                   extra: tuple[tuple[int, int], ...] = ()) -> entropy.CdfTable:
    """Hand-made tables: wider Laplacians for higher levels, small ones for side info
    (plus `extra` uniform (width, offset) tables at the end)."""
    pmfs, offsets = [], []
    for _band in range(layout.num_bands):
        for level in range(layout.levels):
            v = np.arange(-8, 9)
            pmfs.append(np.exp(-np.abs(v) / (0.3 + level)) * 0.99)
            offsets.append(-8)
    for width, offset in ((layout.gain_max + 1, 0), (9, -4), (5, -3), (5, -2), *extra):
        pmfs.append(np.full(width, 0.98 / width))
        offsets.append(offset)
    return entropy.CdfTable.from_pmfs(pmfs, offsets, precision)


def random_chunk(rng: np.random.Generator, channels: int, frames: int) -> ChunkSymbols:
    """Random integers of one chunk, with a random split frame."""
    gains = np.clip(np.cumsum(rng.integers(-2, 3, (channels, frames)), axis=1) + 7, 0, 15)
    noise = rng.integers(LAYOUT.noise_low, LAYOUT.noise_high + 1,
                         (channels, LAYOUT.num_bands, LAYOUT.noise_segments(frames)))
    coefs = np.round(rng.laplace(0, 3, (channels, LAYOUT.coefficients, frames))).astype(int)
    coefs[0, 0, 0] = 2**31 - 1                       # escapes round-trip too
    noise[~scales.zero_segments(LAYOUT, coefs)] = 0   # only segments with a zero carry one
    return ChunkSymbols(int(rng.integers(0, 256)), channels == 2 and bool(rng.integers(2)),
                        gains, noise, coefs, int(rng.integers(0, frames + 1)))


def test_table_selection_is_integer_floor_arithmetic() -> None:
    gains = np.array([[0, 6, 7, 15]])
    # e = s + ((5 * 4 * (g - 6)) >> 3): floor for negative values
    assert step_index(LAYOUT, gains, 10).tolist() == [[10 - 15, 10, 12, 32]]
    levels = band_levels(LAYOUT, gains, 10)
    expected = np.clip((4 * gains - step_index(LAYOUT, gains, 10) + 16) // 4, 0, 3)
    assert np.array_equal(levels, expected)
    tables = coefficient_tables(LAYOUT, gains, 10)
    assert tables.shape == (1, 8, 4)
    assert np.array_equal(tables[0, 5], 2 * LAYOUT.levels + levels[0])   # bin 5 is band 2


@pytest.mark.parametrize("channels,frames", [(1, 1), (1, 7), (2, 10), (3, 4)])
def test_chunks_round_trip_exactly(channels: int, frames: int) -> None:
    rng = np.random.default_rng(channels * 100 + frames)
    tables = laplace_tables(LAYOUT)
    chunk = random_chunk(rng, channels, frames)
    payload = encode_chunk(chunk, LAYOUT, tables)
    back = decode_chunk(payload, LAYOUT, tables, channels, frames)
    assert (back.step, back.mid_side, back.split) == (chunk.step, chunk.mid_side, chunk.split)
    for name in ("gains", "noise", "coefficients"):
        assert np.array_equal(getattr(back, name), getattr(chunk, name)), name


def test_estimated_bits_match_the_payload() -> None:
    rng = np.random.default_rng(7)
    tables = laplace_tables(LAYOUT)
    chunk = random_chunk(rng, 2, 300)
    chunk.coefficients[0, 0, 0] = 1
    coded = 8 * len(encode_chunk(chunk, LAYOUT, tables))
    ideal = chunk_bits(chunk, LAYOUT, tables)
    assert ideal <= coded <= ideal + entropy.payload_bound_bits(1) + 32
    assert abs(coded - ideal) / ideal < 0.01


def test_decoded_values_outside_the_layout_are_format_errors() -> None:
    tables = laplace_tables(LAYOUT)
    chunk = random_chunk(np.random.default_rng(3), 1, 5)
    chunk.gains[:] = LAYOUT.gain_max
    # a gain difference of +4 from the maximum leaves 0..gain_max: encode by hand
    residual = np.array([LAYOUT.gain_max, 4, 0, 0, 0])
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    flat = chunk.coefficients.reshape(-1)
    order = np.argsort(coefficient_tables(LAYOUT, chunk.gains, chunk.frame_steps).reshape(-1),
                       kind="stable")
    t = coefficient_tables(LAYOUT, chunk.gains, chunk.frame_steps).reshape(-1)[order]
    entropy.push_block(coder, flat[order].astype(np.int64), t, tables)
    entropy.push_block(coder, *chunkcoder.noise_symbols(LAYOUT, chunk.noise,
                                                        chunk.coefficients), tables)
    first = np.array([LAYOUT.gain_first_table] + [LAYOUT.gain_delta_table] * 4)
    entropy.push_block(coder, residual, first, tables)
    coder.encode_reverse(np.array([5], np.int32), constriction.stream.model.Uniform(6))
    coder.encode_reverse(np.array([chunk.step], np.int32),
                         constriction.stream.model.Uniform(scales.NUM_STEPS))
    with pytest.raises(FormatError, match="gain"):
        decode_chunk(entropy.finish(coder), LAYOUT, tables, 1, 5)


def test_garbage_payloads_fail_cleanly() -> None:
    tables = laplace_tables(LAYOUT)
    rng = np.random.default_rng(11)
    for _ in range(200):
        words = rng.integers(1, 2**32, size=int(rng.integers(1, 40)), dtype=np.uint64)
        try:
            decode_chunk(words.astype("<u4").tobytes(), LAYOUT, tables, 2, 6)
        except FormatError:
            pass


def test_coder_id_is_new() -> None:
    assert chunkcoder.CODER_ID == 2 != entropy.CODER_ID


ENVELOPE = ScaleLayout((0, 2, 4, 8), levels=4, gain_max=15, gamma_eighths=5, gain_ref=6,
                       level_bias=16, noise_segment=3, noise_low=-3, noise_high=1,
                       envelope_edges=(0, 1, 3), envelope_low=-2, envelope_high=2)


def envelope_tables() -> entropy.CdfTable:
    """LAYOUT's tables plus the envelope-first and envelope-delta tables."""
    return laplace_tables(LAYOUT, extra=((5, -2), (9, -4)))


def envelope_chunk(rng: np.random.Generator, channels: int, frames: int) -> ChunkSymbols:
    chunk = random_chunk(rng, channels, frames)
    envelope = rng.integers(-2, 3, (channels, 2, frames))
    envelope[~scales.zero_regions(ENVELOPE, chunk.coefficients)] = 0
    chunk.envelope = envelope
    return chunk


def test_envelope_layout_adds_two_tables_and_regions() -> None:
    assert ENVELOPE.envelope_regions == 2 and LAYOUT.envelope_regions == 0
    assert ENVELOPE.num_tables == LAYOUT.num_tables + 2
    assert ENVELOPE.region_of_band().tolist() == [0, 1, 1]
    symbols = np.ones((1, 8, 3), dtype=np.int64)
    symbols[0, 1, 0] = 0              # band 0 (region 0), frame 0
    symbols[0, 7, 2] = 0              # band 2 (region 1), frame 2
    assert scales.zero_regions(ENVELOPE, symbols)[0].tolist() == [[True, False, False],
                                                                  [False, False, True]]
    assert "envelope_edges" not in LAYOUT.to_dict()
    assert ScaleLayout(**{**ENVELOPE.to_dict(), "band_edges": (0, 2, 4, 8),
                          "envelope_edges": (0, 1, 3)}) == ENVELOPE
    for bad in ((0, 2), (1, 3), (0, 2, 2, 3)):
        with pytest.raises(ValueError, match="envelope_edges"):
            ScaleLayout((0, 2, 4, 8), envelope_edges=bad)


@pytest.mark.parametrize("channels,frames", [(1, 1), (1, 9), (2, 10)])
def test_envelope_chunks_round_trip_and_price_exactly(channels: int, frames: int) -> None:
    rng = np.random.default_rng(channels * 10 + frames)
    tables = envelope_tables()
    chunk = envelope_chunk(rng, channels, frames)
    payload = encode_chunk(chunk, ENVELOPE, tables)
    back = decode_chunk(payload, ENVELOPE, tables, channels, frames)
    for name in ("gains", "noise", "coefficients", "envelope"):
        assert np.array_equal(getattr(back, name), getattr(chunk, name)), name
    ideal = chunk_bits(chunk, ENVELOPE, tables)
    assert ideal <= 8 * len(payload) <= ideal + entropy.payload_bound_bits(1) + 32
    sent = scales.zero_regions(ENVELOPE, chunk.coefficients)      # envelope values sent
    firsts = int(sent.any(axis=-1).sum())                          # one per (channel, region)
    extra = chunkcoder.noise_bits(chunk, ENVELOPE, tables) - chunkcoder.noise_bits(
        chunk, LAYOUT, laplace_tables(LAYOUT))          # the same chunk without an envelope
    expected = firsts * np.log2(5 / 0.98) + (int(sent.sum()) - firsts) * np.log2(9 / 0.98)
    assert extra == pytest.approx(expected, rel=0.02)


def test_envelope_values_outside_the_layout_are_refused() -> None:
    tables = envelope_tables()
    chunk = envelope_chunk(np.random.default_rng(5), 1, 6)
    chunk.envelope[0, 0, 0] = 3
    with pytest.raises(ValueError, match="envelope"):
        encode_chunk(chunk, ENVELOPE, tables)
    # a stream whose envelope decodes outside the range: push the block by hand
    import constriction

    chunk.envelope[0, 0, 0] = 0
    good = encode_chunk(chunk, ENVELOPE, tables)
    assert decode_chunk(good, ENVELOPE, tables, 1, 6).envelope is not None
    coder = constriction.stream.stack.AnsCoder()
    residuals, env_tables = chunkcoder.envelope_symbols(ENVELOPE, chunk.envelope,
                                                        chunk.coefficients)
    residuals = residuals.copy()
    residuals[0] = 2
    if residuals.size > 1:
        residuals[1] = 2              # 2 + 2 = 4 > envelope_high
    entropy.push_block(coder, residuals, env_tables, tables)
    entropy.push_block(coder, *chunkcoder.noise_symbols(ENVELOPE, chunk.noise,
                                                        chunk.coefficients), tables)
    t = coefficient_tables(ENVELOPE, chunk.gains, chunk.frame_steps, chunk.coefficients)
    for f in range(5, -1, -1):
        order = np.argsort(t[:, :, f].reshape(-1), kind="stable")
        entropy.push_block(coder, chunk.coefficients[:, :, f].reshape(-1)[order],
                           t[:, :, f].reshape(-1)[order], tables)
    residual = np.concatenate([chunk.gains[:, :1], np.diff(chunk.gains, axis=1)], axis=1)
    first = np.array([ENVELOPE.gain_first_table] + [ENVELOPE.gain_delta_table] * 5)
    entropy.push_block(coder, residual.reshape(-1), first, tables)
    coder.encode_reverse(np.array([chunk.split_frame], np.int32),
                         constriction.stream.model.Uniform(7))
    coder.encode_reverse(np.array([chunk.step], np.int32),
                         constriction.stream.model.Uniform(scales.NUM_STEPS))
    with pytest.raises(FormatError, match="envelope"):
        decode_chunk(entropy.finish(coder), ENVELOPE, tables, 1, 6)
