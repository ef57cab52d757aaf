"""Entropy layer: exact integer model, escapes, efficiency, robustness (spec §5)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from codec.entropy import (
    CODER_PRECISION,
    ESCAPE_WIDTH_SIZE,
    CdfTable,
    decode_symbols,
    encode_symbols,
    ideal_bits,
)
from codec.errors import FormatError, LimitError, WeightsError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def laplace_tables(scales: NDArray[np.float64], half: int = 40,
                   precision: int = 16) -> CdfTable:
    """Discretized Laplace PMFs on -half..half, like an exported learned prior."""
    x = np.arange(-half, half + 1, dtype=np.float64)

    def cdf(z: NDArray[np.float64], s: float) -> NDArray[np.float64]:
        return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0) / s),
                        1 - 0.5 * np.exp(-np.maximum(z, 0) / s))

    pmfs = [cdf(x + 0.5, s) - cdf(x - 0.5, s) for s in scales]
    return CdfTable.from_pmfs(pmfs, [-half] * len(scales), precision)


# --- a pure-integer rANS written from spec §5.3/§5.4, independent of constriction ---

def _uniform_interval(symbol: int, size: int) -> tuple[int, int]:
    per_bin = (1 << 24) // size
    if symbol < size - 1:
        return symbol * per_bin, per_bin
    return symbol * per_bin, (1 << 24) - symbol * per_bin


def reference_encode(symbols: NDArray[np.int32], table_index: NDArray[np.int32],
                     tables: CdfTable) -> bytes:
    """Spec §5 encoder in plain Python integers: (left, prob) list then rANS."""
    shift = CODER_PRECISION - tables.precision
    steps: list[tuple[int, int]] = []
    escapes: list[int] = []
    for row, t in zip(symbols.tolist(), table_index.tolist()):
        cdf = tables.cdf[t].tolist()
        n, off = int(tables.length[t]), int(tables.offset[t])
        for v in row:
            i = v - off
            if not 0 <= i < n - 1:
                i = n - 1
                escapes.append(v)
            steps.append((cdf[i] << shift, (cdf[i + 1] - cdf[i]) << shift))
    pieces: list[tuple[int, int]] = []
    for v in escapes:
        u = 2 * v if v >= 0 else -2 * v - 1
        w = u.bit_length()
        steps.append(_uniform_interval(w, ESCAPE_WIDTH_SIZE))
        m = max(w - 1, 0)
        mant = u - (1 << (w - 1)) if w else 0
        lo = min(m, 16)
        for bits, value in ((lo, mant & ((1 << lo) - 1)), (m - lo, mant >> lo)):
            if bits:
                pieces.append(_uniform_interval(value, 1 << bits))
    steps += pieces
    state, words = 0, []
    for left, prob in reversed(steps):
        if state >> (64 - 24) >= prob:
            words.append(state & 0xFFFFFFFF)
            state >>= 32
        state = ((state // prob) << 24) | (left + state % prob)
    while state:
        words.append(state & 0xFFFFFFFF)
        state >>= 32
    return b"".join(w.to_bytes(4, "little") for w in words)


# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tables() -> CdfTable:
    return laplace_tables(np.linspace(0.3, 6.0, 16))


def test_constriction_matches_pure_integer_rans(tables: CdfTable) -> None:
    """The coder uses exactly the stored integer table (no float re-quantization)."""
    rng = np.random.default_rng(1)
    symbols = np.round(rng.laplace(0, 3.0, (16, 200))).astype(np.int32)
    symbols[3, :6] = [INT32_MIN, INT32_MAX, 41, -41, 1000, -70000]
    index = np.arange(16, dtype=np.int32)
    assert encode_symbols(symbols, index, tables) == reference_encode(symbols, index, tables)


def test_exactness_holds_at_every_precision() -> None:
    rng = np.random.default_rng(2)
    for precision in (8, 12, 16, 20, 24):
        tables = laplace_tables(np.array([0.5, 4.0]), half=20, precision=precision)
        symbols = np.round(rng.laplace(0, 3.0, (2, 300))).astype(np.int32)
        index = np.array([0, 1], dtype=np.int32)
        payload = encode_symbols(symbols, index, tables)
        assert payload == reference_encode(symbols, index, tables)
        assert np.array_equal(decode_symbols(payload, index, 300, tables), symbols)


def test_any_int32_round_trips(tables: CdfTable) -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(INT32_MIN, INT32_MAX, size=(4, 500), endpoint=True, dtype=np.int64)
    values[0, :8] = [INT32_MIN, INT32_MAX, 0, -1, 1, -41, 41, 40]
    symbols = values.astype(np.int32)
    index = np.array([0, 5, 9, 15], dtype=np.int32)
    payload = encode_symbols(symbols, index, tables)
    assert np.array_equal(decode_symbols(payload, index, 500, tables), symbols)
    # an escape costs its table's escape entry + width + mantissa, nothing more
    assert len(payload) * 8 <= ideal_bits(symbols, index, tables) + 64


@pytest.mark.parametrize("kind", ["laplace", "gaussian"])
def test_payload_within_half_percent_of_ideal_on_a_million_symbols(kind: str) -> None:
    """Measured on 1,056,000 symbols in codec-sized chunks (64 channels x 150 frames).

    Payload bits vs sum of -log2 p under the same integer tables: within 0.5 %
    in total, and within ideal + 64 bits (the final state flush) per chunk.
    """
    rng = np.random.default_rng(4)
    scales = np.geomspace(0.15, 6.0, 64)
    tables = laplace_tables(scales, half=60)
    index = np.arange(64, dtype=np.int32)
    total_bits, total_ideal, count = 0, 0.0, 0
    for _ in range(110):
        if kind == "laplace":
            latent = rng.laplace(0.0, scales[:, None], (64, 150))
        else:
            latent = rng.normal(0.0, 1.4 * scales[:, None], (64, 150))
        symbols = np.round(latent).astype(np.int32)
        payload = encode_symbols(symbols, index, tables)
        ideal = ideal_bits(symbols, index, tables)
        assert len(payload) * 8 <= ideal + 64
        assert np.array_equal(decode_symbols(payload, index, 150, tables), symbols)
        total_bits += len(payload) * 8
        total_ideal += ideal
        count += symbols.size
    assert count >= 1_000_000
    assert total_bits <= total_ideal * 1.005


def test_one_big_payload_is_within_a_tenth_of_a_percent(tables: CdfTable) -> None:
    rng = np.random.default_rng(7)
    symbols = np.round(rng.laplace(0, 2.5, (16, 65536))).astype(np.int32)
    index = np.arange(16, dtype=np.int32)
    bits = len(encode_symbols(symbols, index, tables)) * 8
    assert bits <= ideal_bits(symbols, index, tables) * 1.001


def test_fixed_cost_per_chunk_is_at_most_two_words(tables: CdfTable) -> None:
    """Many small payloads: each costs ideal + at most 64 bits (the state flush)."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        symbols = np.round(rng.laplace(0, 2.0, (16, 30))).astype(np.int32)
        index = np.arange(16, dtype=np.int32)
        bits = len(encode_symbols(symbols, index, tables)) * 8
        assert bits <= ideal_bits(symbols, index, tables) + 64


def test_empty_and_zero_row_inputs(tables: CdfTable) -> None:
    index = np.arange(3, dtype=np.int32)
    empty = np.zeros((3, 0), dtype=np.int32)
    assert encode_symbols(empty, index, tables) == b""
    assert decode_symbols(b"", index, 0, tables).shape == (3, 0)
    none = np.zeros((0, 7), dtype=np.int32)
    assert decode_symbols(encode_symbols(none, index[:0], tables), index[:0], 7,
                          tables).shape == (0, 7)


def test_garbage_payloads_raise_format_error_or_decode(tables: CdfTable) -> None:
    rng = np.random.default_rng(6)
    index = np.arange(16, dtype=np.int32)
    outcomes = set()
    for size in list(range(0, 40)) + [400, 4000]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        try:
            out = decode_symbols(data, index, 50, tables)
            assert out.shape == (16, 50) and out.dtype == np.int32
            outcomes.add("decoded")
        except FormatError:
            outcomes.add("error")
    assert outcomes == {"decoded", "error"}


def test_trailing_data_and_zero_word_are_rejected(tables: CdfTable) -> None:
    index = np.arange(2, dtype=np.int32)
    symbols = np.ones((2, 20), dtype=np.int32)
    payload = encode_symbols(symbols, index, tables)
    with pytest.raises(FormatError, match="left after"):
        decode_symbols(payload + b"\x01\x00\x00\x00", index, 20, tables)
    with pytest.raises(FormatError, match="zero word"):
        decode_symbols(payload + b"\x00\x00\x00\x00", index, 20, tables)
    with pytest.raises(FormatError, match="whole number"):
        decode_symbols(payload + b"\x01", index, 20, tables)


def test_symbol_count_limit_is_checked_before_allocating(tables: CdfTable) -> None:
    with pytest.raises(LimitError):
        decode_symbols(b"", np.arange(16, dtype=np.int32), 1 << 30, tables)


def test_from_pmfs_is_deterministic_and_valid() -> None:
    a = laplace_tables(np.array([0.1, 1.0, 30.0]), half=5, precision=8)
    b = laplace_tables(np.array([0.1, 1.0, 30.0]), half=5, precision=8)
    assert a == b
    for counts in a.counts:
        assert counts.sum() == 1 << 8 and counts.min() >= 1 and len(counts) == 12
    # escape entry: max(1 - sum, floor) -> at least one count
    assert all(c[-1] >= 1 for c in a.counts)


def test_arrays_round_trip_and_validation(tables: CdfTable) -> None:
    arrays = tables.to_arrays()
    assert CdfTable.from_arrays(arrays) == tables
    bad = dict(arrays, cdf=arrays["cdf"].copy())
    bad["cdf"][0, 3] = bad["cdf"][0, 2]  # not strictly increasing
    with pytest.raises(WeightsError, match="table 0"):
        CdfTable.from_arrays(bad)
    with pytest.raises(WeightsError, match="missing"):
        CdfTable.from_arrays({"cdf": arrays["cdf"]})
    with pytest.raises(WeightsError, match="precision"):
        CdfTable.from_arrays(dict(arrays, precision=np.array(25)))
    with pytest.raises(WeightsError, match="length"):
        CdfTable.from_arrays(dict(arrays, length=np.full(16, 1, dtype=np.int32)))


def test_ideal_bits_counts_each_symbol(tables: CdfTable) -> None:
    symbols = np.zeros((1, 3), dtype=np.int32)
    index = np.array([2], dtype=np.int32)
    counts = tables.counts[2]
    expected = -3 * np.log2(counts[40] / 2**16)
    assert ideal_bits(symbols, index, tables) == pytest.approx(expected, rel=1e-12)


def test_entropy_and_format_agree_on_shared_constants() -> None:
    from codec import entropy, format

    assert entropy.CODER_ID in format.KNOWN_CODER_IDS
    assert entropy.MAX_CHUNK_SYMBOLS == format.MAX_CHUNK_SYMBOLS
    assert entropy.MAX_TABLE_PRECISION == format.MAX_CDF_PRECISION
