"""spec/vectors: stored bytes, expected hashes, regeneration, and a second decoder.

`reference_decode` below is an independent pure-Python rANS decoder written from
spec §5 (no constriction): the vectors must decode to the same symbols with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from codec import errors
from codec.entropy import CdfTable
from conftest import load_make_vectors

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"
EXPECTED = json.loads((VECTORS / "expected.json").read_text())


MV = load_make_vectors()
TABLES: CdfTable = MV.load_tables()


def reference_decode(payload: bytes, rows: list[int], n: int, tables: CdfTable
                     ) -> list[list[int]]:
    """Spec §5.3/§5.4 decoder in plain integers."""
    words = [int.from_bytes(payload[i : i + 4], "little") for i in range(0, len(payload), 4)]
    state = 0
    if words:
        state = words.pop()
        while words and state < 1 << 32:
            state = (state << 32) | words.pop()

    def pop(find: object) -> int:
        nonlocal state
        quantile = state & 0xFFFFFF
        symbol, left, prob = find(quantile)  # type: ignore[operator]
        state = (state >> 24) * prob + quantile - left
        if state < 1 << 32 and words:
            state = (state << 32) | words.pop()
        return int(symbol)

    def categorical(t: int) -> object:
        shift = 24 - tables.precision
        cdf = [c << shift for c in tables.cdf[t, : tables.length[t] + 1].tolist()]

        def find(q: int) -> tuple[int, int, int]:
            i = max(j for j in range(len(cdf) - 1) if cdf[j] <= q)
            return i, cdf[i], cdf[i + 1] - cdf[i]
        return find

    def uniform(size: int) -> object:
        per = (1 << 24) // size

        def find(q: int) -> tuple[int, int, int]:
            s = min(q // per, size - 1)
            return s, s * per, per if s < size - 1 else (1 << 24) - s * per
        return find

    out = [[pop(categorical(t)) for _ in range(n)] for t in rows]
    escapes = [(r, i) for r, t in enumerate(rows) for i in range(n)
               if out[r][i] == tables.length[t] - 1]
    widths = [pop(uniform(33)) for _ in escapes]
    for (r, i), w in zip(escapes, widths):
        m = max(w - 1, 0)
        lo_bits, hi_bits = min(m, 16), m - min(m, 16)
        lo = pop(uniform(1 << lo_bits)) if lo_bits else 0
        hi = pop(uniform(1 << hi_bits)) if hi_bits else 0
        u = ((1 << (w - 1)) if w else 0) + lo + (hi << lo_bits)
        out[r][i] = u // 2 if u % 2 == 0 else -(u + 1) // 2
    for r, t in enumerate(rows):
        for i in range(n):
            if (r, i) not in set(escapes):
                out[r][i] += int(tables.offset[t])
    assert state == 0 and not words  # the stream is consumed exactly
    return out


def test_vectors_are_all_listed() -> None:
    on_disk = {p.name for p in VECTORS.glob("*.aec")}
    assert on_disk == set(EXPECTED)
    assert {"empty.aec", "one_chunk.aec", "multi_chunk_index.aec",
            "unknown_metadata.aec"} <= on_disk


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_bytes_and_decoded_symbols(name: str) -> None:
    data = (VECTORS / name).read_bytes()
    want = EXPECTED[name]
    assert hashlib.sha256(data).hexdigest() == want["stream_sha256"]
    if "error" in want:
        with pytest.raises(getattr(errors, want["error"])) as info:
            MV.decode_all(data, TABLES)
        if "chunk_index" in want:
            assert info.value.chunk_index == want["chunk_index"]
    if want.get("error") == "UnsupportedVersionError":
        return
    header, chunks = MV.decode_all(data, TABLES, ignore_errors="error" in want)
    assert MV.symbols_sha256(chunks) == want["symbols_sha256"]
    assert [k for k, c in enumerate(chunks) if c is None] == want["skipped_chunks"]
    assert [b.kind for b in header.metadata] == want["metadata_kinds"]
    for key, value in want["header"].items():
        assert getattr(header, key) == value


@pytest.mark.parametrize("name", ["one_chunk.aec", "multi_chunk_index.aec",
                                  "unknown_metadata.aec", "newer_minor.aec"])
def test_an_independent_integer_decoder_agrees(name: str) -> None:
    import io

    from codec.format import StreamReader

    reader = StreamReader(io.BytesIO((VECTORS / name).read_bytes()))
    rows = MV.table_index(reader.header).tolist()
    _, ours = MV.decode_all((VECTORS / name).read_bytes(), TABLES)
    for chunk, symbols in zip(reader.chunks(), ours):
        assert chunk.payload is not None and symbols is not None
        ref = reference_decode(chunk.payload, rows, chunk.num_frames, TABLES)
        assert np.array_equal(np.array(ref, dtype=np.int64).reshape(symbols.shape), symbols)


def test_vectors_use_escapes_and_int32_extremes() -> None:
    _, chunks = MV.decode_all((VECTORS / "multi_chunk_index.aec").read_bytes(), TABLES)
    values: NDArray[np.int32] = np.concatenate([c.reshape(-1) for c in chunks if c is not None])
    assert values.min() == -(2**31) and values.max() == 2**31 - 1


def test_regenerating_gives_identical_bytes() -> None:
    for name, data in MV.expected_files().items():
        assert (VECTORS / name).read_bytes() == data, f"{name} differs; see spec/make_vectors.py"
