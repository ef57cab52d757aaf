"""Symbols (int32) <-> payload bytes with frozen integer CDF tables and rANS.

The normative description is `spec/aec.md` §5; this module is one implementation
of it on top of `constriction` 0.5.0 (`stack.AnsCoder`: 32-bit words, 64-bit
state, 24-bit probability precision).

Why the tables reach the coder exactly: `constriction`'s `Categorical` model
takes float weights ``w_i`` and quantizes them as
``left(i) = floor(sum_{j<i} w_j * scale) + i`` with
``scale = (2**24 - n) / sum(w)``.  We feed ``w_i = count_i * 2**(24 - P) - 1``,
which are integers below ``2**24`` (exact in float32 and float64), so
``sum(w) = 2**24 - n``, ``scale == 1.0`` exactly, every partial sum is exact,
and ``left(i) == cdf[i] * 2**(24 - P)``: the coder uses precisely the stored
integer table scaled to 24 bits.  `tests/test_entropy.py` proves it by
comparing against a pure-integer rANS (`reference_encode`) byte for byte.

Chunk payload layout (spec §5.4), in decoding order:
1. every row's symbols, row 0 first, each coded with its row's table (an
   out-of-range value codes the table's ESCAPE entry);
2. for every escaped value in row-major order, its width
   ``n = bit_length(zigzag(v))`` (0..32) with ``Uniform(33)``;
3. for every escaped value in the same order, the ``n - 1`` bits below the
   leading one of ``zigzag(v)``: the low ``min(n - 1, 16)`` bits, then the
   remaining high bits, each piece with ``Uniform(2**bits)`` (pieces of 0 bits
   are not coded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import constriction
import numpy as np
from numpy.typing import NDArray

from codec.errors import FormatError, LimitError, WeightsError

__all__ = [
    "CODER_ID",
    "CODER_PRECISION",
    "MAX_TABLE_PRECISION",
    "MAX_TABLE_LENGTH",
    "MAX_NUM_TABLES",
    "MAX_CHUNK_SYMBOLS",
    "ESCAPE_WIDTH_SIZE",
    "CdfTable",
    "encode_symbols",
    "decode_symbols",
    "ideal_bits",
    "block_bits",
    "push_block",
    "pop_block",
    "open_payload",
    "check_empty",
    "finish",
]

CODER_ID = 1
"""Header `coder_id` of rANS as specified in spec §5 (constriction 0.5.0 AnsCoder)."""
CODER_PRECISION = 24
"""Probability precision (bits) of the rANS coder; tables are scaled up to it."""
MAX_TABLE_PRECISION = 24
MAX_TABLE_LENGTH = 1 << 16
"""Most entries (escape included) a table may have."""
MAX_NUM_TABLES = 1 << 16
MAX_CHUNK_SYMBOLS = 1 << 22
"""Most symbols one payload may carry (4 Mi); bounds the decoder's allocation."""
ESCAPE_WIDTH_SIZE = 33
"""Alphabet of the escape width ``n`` in 0..32 (coded with ``Uniform(33)``)."""
ESCAPE_PIECE_BITS = 16
"""Mantissa bits are coded in pieces of at most this many bits."""

_WORD = np.dtype("<u4")
_Model = Any  # constriction models are untyped extension objects


@dataclass(frozen=True)
class CdfTable:
    """Frozen integer CDF tables, selected per row by an integer index.

    Table t codes symbol values offset[t] .. offset[t] + length[t] - 2 directly;
    entry length[t] - 1 is the ESCAPE entry, after which the out-of-range value is
    coded exactly (any int32 round-trips).  cdf[t] is [0, c_0, c_0 + c_1, ...,
    2**precision] over its first length[t] + 1 entries; later entries are padding
    (written as 2**precision) and never read.
    """

    precision: int
    cdf: NDArray[np.uint32]
    length: NDArray[np.int32]
    offset: NDArray[np.int32]

    def __post_init__(self) -> None:
        _validate_table(self.precision, self.cdf, self.length, self.offset)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CdfTable):
            return NotImplemented
        return self.precision == other.precision and all(
            np.array_equal(a, b) for a, b in zip(self.to_arrays().values(),
                                                 other.to_arrays().values())
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_pmfs(
        cls,
        pmfs: Sequence[NDArray[np.float64]],
        offsets: Sequence[int],
        precision: int = 16,
    ) -> CdfTable:
        """Quantize float PMFs to integer tables deterministically (spec §5.2).

        pmfs[t][i] is the model probability of symbol offsets[t] + i; the escape
        entry gets max(1 - sum, 2**-precision); every entry gets a count >= 1.
        """
        if len(pmfs) != len(offsets) or not pmfs:
            raise WeightsError("from_pmfs needs one offset per pmf and at least one pmf")
        counts = [_quantize_pmf(np.asarray(p, dtype=np.float64), precision) for p in pmfs]
        width = max(len(c) for c in counts) + 1
        cdf = np.full((len(counts), width), 1 << precision, dtype=np.uint32)
        for t, c in enumerate(counts):
            cdf[t, 0] = 0
            cdf[t, 1 : len(c) + 1] = np.cumsum(c)
        length = np.array([len(c) for c in counts], dtype=np.int32)
        return cls(precision, cdf, length, np.asarray(offsets, dtype=np.int32))

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """Arrays for safetensors storage; `precision` travels as a 0-d int32 array."""
        return {
            "cdf": self.cdf,
            "length": self.length,
            "offset": self.offset,
            "precision": np.array(self.precision, dtype=np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> CdfTable:
        """Inverse of `to_arrays`; raises WeightsError on any inconsistency."""
        missing = {"cdf", "length", "offset", "precision"} - set(arrays)
        if missing:
            raise WeightsError(f"CDF table arrays missing: {sorted(missing)}")
        precision = np.asarray(arrays["precision"])
        if precision.size != 1 or not np.issubdtype(precision.dtype, np.integer):
            raise WeightsError("CDF table precision must be one integer")
        return cls(
            int(precision.reshape(())),
            _as_dtype(arrays["cdf"], np.uint32, 2, "cdf"),
            _as_dtype(arrays["length"], np.int32, 1, "length"),
            _as_dtype(arrays["offset"], np.int32, 1, "offset"),
        )

    @property
    def num_tables(self) -> int:
        """Number of tables (rows of `cdf`)."""
        return int(self.cdf.shape[0])

    @cached_property
    def counts(self) -> list[NDArray[np.int64]]:
        """Per table, the integer count of each entry (escape last); sums to 2**precision."""
        wide = self.cdf.astype(np.int64)
        return [wide[t, 1 : n + 1] - wide[t, :n] for t, n in enumerate(self.length.tolist())]

    @cached_property
    def costs(self) -> NDArray[np.float64]:
        """[T, max length]: -log2 p of every entry (bits); padding entries cost 0."""
        out = np.zeros((self.num_tables, int(self.length.max())), dtype=np.float64)
        for t, c in enumerate(self.counts):
            out[t, : c.size] = self.precision - np.log2(c.astype(np.float64))
        return out

    @cached_property
    def _offset64(self) -> NDArray[np.int64]:
        return self.offset.astype(np.int64)

    @cached_property
    def _escape64(self) -> NDArray[np.int64]:
        """The escape entry of each table (its last)."""
        return self.length.astype(np.int64) - 1

    @cached_property
    def _models(self) -> list[_Model]:
        """One constriction model per table, reproducing the integer table exactly."""
        shift = CODER_PRECISION - self.precision
        return [
            constriction.stream.model.Categorical(
                ((c << shift) - 1).astype(np.float64), perfect=False
            )
            for c in self.counts
        ]


def _as_dtype(array: NDArray[Any], dtype: type, ndim: int, name: str) -> NDArray[Any]:
    """Check an integer array's rank and convert it without wrap-around."""
    a = np.asarray(array)
    if a.ndim != ndim or not np.issubdtype(a.dtype, np.integer):
        raise WeightsError(f"CDF table '{name}' must be a {ndim}-d integer array")
    info = np.iinfo(dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise WeightsError(f"CDF table '{name}' values do not fit {np.dtype(dtype).name}")
    return a.astype(dtype)


def _validate_table(precision: int, cdf: NDArray[Any], length: NDArray[Any],
                    offset: NDArray[Any]) -> None:
    """Raise WeightsError unless the arrays form valid tables (spec §5.2)."""
    if not 1 <= precision <= MAX_TABLE_PRECISION:
        raise WeightsError(f"CDF precision {precision} outside 1..{MAX_TABLE_PRECISION}")
    if cdf.dtype != np.uint32 or length.dtype != np.int32 or offset.dtype != np.int32:
        raise WeightsError("CDF table dtypes must be cdf uint32, length/offset int32")
    if cdf.ndim != 2 or length.shape != (cdf.shape[0],) or offset.shape != length.shape:
        raise WeightsError("CDF table shapes must be cdf [T, L + 1], length [T], offset [T]")
    if not 1 <= cdf.shape[0] <= MAX_NUM_TABLES:
        raise WeightsError(f"number of CDF tables {cdf.shape[0]} outside 1..{MAX_NUM_TABLES}")
    if length.min() < 2 or length.max() > min(cdf.shape[1] - 1, MAX_TABLE_LENGTH):
        raise WeightsError("CDF table length outside 2..min(cdf width - 1, 65536)")
    if int((offset.astype(np.int64) + length - 2).max()) > np.iinfo(np.int32).max:
        raise WeightsError("CDF table offset + length - 2 exceeds int32")
    for t, n in enumerate(length.tolist()):
        row = cdf[t, : n + 1].astype(np.int64)
        if row[0] != 0 or row[-1] != 1 << precision or np.any(np.diff(row) < 1):
            raise WeightsError(f"CDF table {t} is not 0 < strictly increasing < 2**{precision}")


def _quantize_pmf(pmf: NDArray[np.float64], precision: int) -> NDArray[np.int64]:
    """Counts (escape last) >= 1 summing to 2**precision; largest count absorbs rounding."""
    if pmf.ndim != 1 or pmf.size < 1 or not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        raise WeightsError("each pmf must be a non-empty 1-d array of finite values >= 0")
    total = 1 << precision
    if pmf.size + 1 > min(total, MAX_TABLE_LENGTH):
        raise WeightsError(f"pmf of {pmf.size} entries does not fit precision {precision}")
    escape = max(1.0 - float(pmf.sum()), 2.0**-precision)
    probs = np.append(pmf, escape)
    counts: NDArray[np.int64] = np.maximum(
        np.floor(probs / probs.sum() * total + 0.5).astype(np.int64), 1)
    counts[int(np.argmax(counts))] += total - int(counts.sum())
    if counts.min() < 1:  # only when many floors of 1 overflow a tiny table
        raise WeightsError(f"pmf of {pmf.size} entries cannot be quantized at {precision}")
    return counts


def _row_tables(table_index: NDArray[Any], rows: int, tables: CdfTable) -> NDArray[np.int64]:
    """Validate table_index against the symbol rows; return it as int64."""
    idx = np.asarray(table_index)
    if idx.shape != (rows,) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"table_index must be an integer array of shape ({rows},)")
    if rows and (idx.min() < 0 or idx.max() >= tables.num_tables):
        raise ValueError(f"table_index outside 0..{tables.num_tables - 1}")
    return idx.astype(np.int64)


def _zigzag(values: NDArray[np.int64]) -> NDArray[np.int64]:
    """Map int32 values to 0..2**32-1: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return np.where(values >= 0, 2 * values, -2 * values - 1)


def _unzigzag(u: NDArray[np.int64]) -> NDArray[np.int64]:
    """Inverse of `_zigzag`."""
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


def _bit_length(u: NDArray[np.int64]) -> NDArray[np.int64]:
    """Number of significant bits of each non-negative value (0 for 0)."""
    out = np.zeros(u.shape, dtype=np.int64)
    rest = u.copy()
    for shift in (16, 8, 4, 2, 1):
        big = rest >= (1 << shift)
        out += big * shift
        rest = np.where(big, rest >> shift, rest)
    return out + (rest > 0)


def _piece_sizes(widths: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Bits of the low and high mantissa piece of each escape (spec §5.4)."""
    mantissa = np.maximum(widths - 1, 0)
    low = np.minimum(mantissa, ESCAPE_PIECE_BITS)
    return low, mantissa - low


def _escape_pieces(values: NDArray[np.int64]) -> tuple[NDArray[np.int32], NDArray[np.int32],
                                                      NDArray[np.int32]]:
    """Widths, mantissa pieces and their Uniform sizes for escaped values (spec §5.4)."""
    u = _zigzag(values)
    widths = _bit_length(u)
    low_bits, high_bits = _piece_sizes(widths)
    mantissa = u - np.where(widths > 0, np.left_shift(1, np.maximum(widths - 1, 0)), 0)
    low = mantissa & ((1 << low_bits) - 1)
    high = mantissa >> low_bits
    pieces = np.stack([low, high], axis=1).reshape(-1)
    bits = np.stack([low_bits, high_bits], axis=1).reshape(-1)
    keep = bits > 0
    return (widths.astype(np.int32), pieces[keep].astype(np.int32),
            (1 << bits[keep]).astype(np.int32))


def _coded_indices(symbols: NDArray[np.int64], rows: NDArray[np.int64],
                   tables: CdfTable) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Table entry index of every symbol (escape entry for out-of-range ones).

    `rows` holds the table of each symbol, or of each row of a 2-d `symbols`.
    """
    index, escaped = _entry_indices(symbols, rows, tables)
    return index.astype(np.int32), escaped


def _entry_indices(symbols: NDArray[np.int64], rows: NDArray[np.int64],
                   tables: CdfTable) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """`_coded_indices` as int64. A negative index compares as a huge unsigned one, so
    one unsigned comparison finds both ends of the direct range (the rate search calls
    this for every candidate step: it is on the encoder's hot path)."""
    shape = (-1, 1) if symbols.ndim == 2 else (-1,)
    offset = tables._offset64[rows].reshape(shape)
    escape = np.ascontiguousarray(tables._escape64[rows].reshape(shape))
    index = np.ascontiguousarray(np.asarray(symbols, dtype=np.int64) - offset)
    escaped = index.view(np.uint64) >= escape.view(np.uint64)
    return np.where(escaped, escape, index), escaped


def _check_symbols(symbols: NDArray[Any]) -> NDArray[np.int64]:
    """Symbols as int64 [rows, n]; rejects non-integer or out-of-int32 input."""
    s = np.asarray(symbols)
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.integer):
        raise ValueError("symbols must be a 2-d integer array [rows, n]")
    if s.size > MAX_CHUNK_SYMBOLS:
        raise LimitError(f"{s.size} symbols exceed MAX_CHUNK_SYMBOLS = {MAX_CHUNK_SYMBOLS}")
    wide = s.astype(np.int64)
    if wide.size and (wide.min() < -(2**31) or wide.max() > 2**31 - 1):
        raise ValueError("symbols must fit int32")
    return wide


def encode_symbols(symbols: NDArray[np.int32], table_index: NDArray[np.int32],
                   tables: CdfTable) -> bytes:
    """Code symbols [rows, n] (row i with table table_index[i]) as one rANS payload.

    The payload is the coder's uint32 words, little-endian (spec §5.3); it is
    independent of any other chunk.
    """
    wide = _check_symbols(symbols)
    rows = _row_tables(table_index, wide.shape[0], tables)
    coder = constriction.stream.stack.AnsCoder()
    push_block(coder, wide.reshape(-1), np.repeat(rows, wide.shape[1]), tables)
    return finish(coder)


def finish(coder: Any) -> bytes:
    """The payload of a stack coder: its uint32 words, little-endian (spec §5.3)."""
    return bytes(np.asarray(coder.get_compressed(), dtype=_WORD).tobytes())


def _runs(table_of: NDArray[np.int64]) -> list[tuple[int, int, int]]:
    """(start, stop, table) of every run of equal consecutive table ids."""
    if not table_of.size:
        return []
    cuts = np.flatnonzero(np.diff(table_of)) + 1
    starts = np.concatenate([[0], cuts]).tolist()
    stops = np.concatenate([cuts, [table_of.size]]).tolist()
    return [(a, b, int(table_of[a])) for a, b in zip(starts, stops)]


def push_block(coder: Any, symbols: NDArray[np.int64], table_of: NDArray[np.int64],
               tables: CdfTable) -> None:
    """Push one block onto a stack coder, so that `pop_block` returns it (spec §5.4).

    In decoding order a block is: every symbol's categorical step with its own
    table (`table_of[i]`), then the escape widths, then the escape mantissas.
    A stack pops last-in first: push blocks in reverse decoding order.
    """
    index, escaped = _coded_indices(symbols, table_of, tables)
    if escaped.any():
        widths, pieces, sizes = _escape_pieces(symbols[escaped])
        if pieces.size:
            coder.encode_reverse(pieces, constriction.stream.model.Uniform(), sizes)
        coder.encode_reverse(widths, constriction.stream.model.Uniform(ESCAPE_WIDTH_SIZE))
    models = tables._models
    for start, stop, t in reversed(_runs(table_of)):
        coder.encode_reverse(index[start:stop], models[t])


def pop_block(coder: Any, table_of: NDArray[np.int64], tables: CdfTable) -> NDArray[np.int64]:
    """Inverse of `push_block`: the block's symbols (int64), FormatError on bad escapes."""
    index = np.zeros(table_of.shape, dtype=np.int64)
    models = tables._models
    for start, stop, t in _runs(table_of):
        index[start:stop] = coder.decode(models[t], stop - start)
    out = index + tables.offset.astype(np.int64)[table_of]
    escaped = index == tables.length.astype(np.int64)[table_of] - 1
    if escaped.any():
        out[escaped] = _decode_escapes(coder, int(escaped.sum()))
        _check_escapes(out, escaped, table_of, tables)
    return out


def _payload_words(payload: bytes) -> NDArray[np.uint32]:
    """Payload bytes as native uint32 words; FormatError if not a valid rANS stream."""
    if len(payload) % 4:
        raise FormatError(f"payload of {len(payload)} bytes is not a whole number of words")
    words = np.frombuffer(payload, dtype=_WORD).astype(np.uint32)
    if words.size and words[-1] == 0:
        raise FormatError("payload ends in a zero word, which rANS never writes")
    return words


def decode_symbols(payload: bytes, table_index: NDArray[np.int32], num_symbols: int,
                   tables: CdfTable) -> NDArray[np.int32]:
    """Inverse of `encode_symbols`: returns symbols [rows, num_symbols].

    Any payload either decodes or raises FormatError (garbage may also decode to
    some symbols; the container's CRC is what detects damage).
    """
    num_rows = int(np.asarray(table_index).shape[0]) if np.ndim(table_index) == 1 else -1
    rows = _row_tables(table_index, num_rows, tables)
    if num_symbols < 0 or num_rows * num_symbols > MAX_CHUNK_SYMBOLS:
        raise LimitError(f"{num_rows} x {num_symbols} symbols outside 0..MAX_CHUNK_SYMBOLS")
    coder = open_payload(payload)
    out = pop_block(coder, np.repeat(rows, num_symbols), tables)
    check_empty(coder)
    return out.reshape(rows.shape[0], num_symbols).astype(np.int32)


def open_payload(payload: bytes) -> Any:
    """A stack coder positioned to pop a payload's first symbol; FormatError if malformed."""
    return constriction.stream.stack.AnsCoder(_payload_words(payload))


def check_empty(coder: Any) -> None:
    """After the last symbol the coder must be empty (spec §5.3)."""
    if not coder.is_empty():
        raise FormatError("payload has data left after the last symbol")


def _decode_escapes(coder: Any, count: int) -> NDArray[np.int64]:
    """Exact values of `count` escaped symbols (spec §5.4)."""
    widths = np.asarray(
        coder.decode(constriction.stream.model.Uniform(ESCAPE_WIDTH_SIZE), count), np.int64)
    low_bits, high_bits = _piece_sizes(widths)
    bits = np.stack([low_bits, high_bits], axis=1).reshape(-1)
    coded = bits > 0
    pieces = np.zeros(bits.shape, dtype=np.int64)
    if coded.any():
        sizes = (1 << bits[coded]).astype(np.int32)
        pieces[coded] = coder.decode(constriction.stream.model.Uniform(), sizes)
    low, high = pieces.reshape(-1, 2).T
    lead = np.where(widths > 0, np.left_shift(1, np.maximum(widths - 1, 0)), 0)
    return _unzigzag(lead + low + (high << low_bits))


def _check_escapes(values: NDArray[np.int64], escaped: NDArray[np.bool_],
                   rows: NDArray[np.int64], tables: CdfTable) -> None:
    """Escaped values must be int32 and outside the table's direct range (spec §5.4)."""
    _, again = _coded_indices(values, rows, tables)
    picked = values[escaped]
    if np.any(~again[escaped]) or picked.min() < -(2**31) or picked.max() > 2**31 - 1:
        raise FormatError("payload escapes a value that is in range or exceeds int32")


def ideal_bits(symbols: NDArray[np.int32], table_index: NDArray[np.int32],
               tables: CdfTable) -> float:
    """Sum of -log2 p of the symbols [rows, n] under the integer tables, escapes included.

    An escaped value costs -log2 p(ESCAPE) + log2(33)-ish for its width (the exact
    Uniform(33) probability) + its n - 1 mantissa bits: exactly the model the
    payload codes with, so payload bits - ideal_bits is the coder's own overhead.
    """
    wide = _check_symbols(symbols)
    rows = _row_tables(table_index, wide.shape[0], tables)
    return block_bits(wide.reshape(-1), np.repeat(rows, wide.shape[1]), tables)


def block_bits(symbols: NDArray[np.int64], table_of: NDArray[np.int64],
               tables: CdfTable) -> float:
    """Ideal bits of one block (`push_block`'s symbols and tables), escapes included."""
    index, escaped = _entry_indices(symbols, table_of, tables)
    costs = tables.costs
    total = float(np.take(costs.reshape(-1), table_of * costs.shape[1] + index).sum())
    if not escaped.any():
        return total
    widths, _, sizes = _escape_pieces(symbols[escaped])
    width_bits = -np.log2(_uniform_probability(widths, ESCAPE_WIDTH_SIZE) / 2.0**24)
    return total + float(width_bits.sum()) + float(np.log2(sizes.astype(np.float64)).sum())


def _uniform_probability(symbols: NDArray[np.int32], size: int) -> NDArray[np.float64]:
    """constriction's `Uniform(size)` integer probability of each symbol (spec §5.3)."""
    per_bin = (1 << CODER_PRECISION) // size
    last = (1 << CODER_PRECISION) - (size - 1) * per_bin
    return np.where(symbols == size - 1, last, per_bin).astype(np.float64)


def payload_bound_bits(num_symbols: int) -> int:
    """Upper bound of rANS's fixed cost: the final 64-bit state flush (spec §5.3)."""
    return 64 if num_symbols else 0

