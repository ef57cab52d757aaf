"""Build the `.aec` test vectors of spec §9 and their expected hashes.

Run `python spec/make_vectors.py` to check the stored vectors against a fresh
build (exit 1 on any difference); run it with `--write` to regenerate them. Only
a deliberate format change (with a version bump) should ever need `--write`.

Everything here is integer and deterministic: the CDF tables are hard-coded
integer counts and the symbols come from a 32-bit LCG, so no float or
library-version detail can change a vector.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from codec import format as fmt
from codec.entropy import CdfTable, decode_symbols, encode_symbols
from codec.format import MetadataBlock, StreamHeader, StreamReader, write_stream

VECTORS = Path(__file__).resolve().parent / "vectors"
PRECISION = 12
LATENT_CHANNELS = 2
SHA = hashlib.sha256(b"aec test-vector decoder weights").digest()


def vector_tables() -> CdfTable:
    """Four tables (2 rate points x 2 latent channels) from hard-coded integer counts."""
    total = 1 << PRECISION
    shapes = [  # counts of symbols offset.. plus the ESCAPE entry last; center absorbs rest
        (-4, [6, 30, 160, 700, 0, 700, 160, 30, 6, 8]),
        (-4, [40, 120, 300, 800, 0, 800, 300, 120, 40, 30]),
        (-2, [100, 600, 0, 600, 100, 16]),
        (-5, [4, 12, 40, 160, 600, 0, 600, 160, 40, 12, 4, 20]),
    ]
    width = max(len(c) for _, c in shapes) + 1
    cdf = np.full((len(shapes), width), total, dtype=np.uint32)
    for t, (_, counts) in enumerate(shapes):
        counts = list(counts)
        center = counts.index(0)
        counts[center] = total - sum(counts)
        cdf[t, : len(counts) + 1] = np.concatenate([[0], np.cumsum(counts)])
    return CdfTable(
        PRECISION, cdf,
        np.array([len(c) for _, c in shapes], dtype=np.int32),
        np.array([o for o, _ in shapes], dtype=np.int32),
    )


def lcg_symbols(seed: int, rows: int, frames: int) -> NDArray[np.int32]:
    """Mostly small values, some out-of-range ones, and both int32 extremes."""
    out = np.zeros((rows, frames), dtype=np.int64)
    x = seed & 0xFFFFFFFF
    for r in range(rows):
        for f in range(frames):
            x = (1664525 * x + 1013904223) & 0xFFFFFFFF
            pick = x >> 24
            if pick < 3:
                out[r, f] = (-(2**31), 2**31 - 1, 1000)[pick]
            elif pick < 12:
                out[r, f] = (x >> 8) % 41 - 20
            else:
                out[r, f] = ((x >> 12) % 7) - 3
    return out.astype(np.int32)


def header(channels: int, num_frames: int, frames_per_chunk: int,
           metadata: tuple[MetadataBlock, ...] = ()) -> StreamHeader:
    """A 24 kHz model geometry (hop 320 -> 75 frames/s) at rate point 1."""
    return StreamHeader(
        sample_rate=48000, channels=channels, num_samples=num_frames * 640,
        model_rate=24000, hop_length=320, latent_channels=LATENT_CHANNELS,
        num_frames=num_frames, frames_per_chunk=frames_per_chunk, encoder_delay=0,
        rate_point=1, model_name="aec-vectors", model_sha256=SHA, coder_id=1,
        cdf_precision=PRECISION, metadata=metadata,
    )


def table_index(h: StreamHeader) -> NDArray[np.int32]:
    """table_index[row] = rate_point * latent_channels + c, row = ch * C + c (contract)."""
    rows = np.arange(h.channels * h.latent_channels)
    return (h.rate_point * h.latent_channels + rows % h.latent_channels).astype(np.int32)


def encode(h: StreamHeader, seed: int, tables: CdfTable,
           seek_index: bool = True) -> bytes:
    """A whole stream of LCG symbols coded chunk by chunk."""
    rows = h.channels * h.latent_channels
    payloads = [
        encode_symbols(lcg_symbols(seed + k, rows, h.chunk_frames(k)), table_index(h), tables)
        for k in range(h.num_chunks)
    ]
    return write_stream(h, payloads, seek_index=seek_index)


def newer_minor(tables: CdfTable) -> bytes:
    """A stream of the next minor version: one extra header field and one unknown
    trailer block, which this reader must skip."""
    data = encode(header(1, 150, 150), 70, tables, seek_index=False)
    size = data[10]
    body, rest = data[11 : 11 + size], data[11 + size + 4 : -8]
    body += b"\x2a"  # a hypothetical 1.1 header field
    covered = bytes([1, fmt.FORMAT_MINOR + 1]) + fmt.encode_varint(len(body)) + body
    block = b"\x5a\x03xyz"
    block += struct.pack("<I", fmt.crc32(block))
    return (fmt.MAGIC + covered + struct.pack("<I", fmt.crc32(covered)) + rest + block
            + fmt.END_MAGIC + struct.pack("<I", len(block)))


def damaged(tables: CdfTable) -> bytes:
    """The multi-chunk stream with one payload byte of chunk 1 flipped."""
    data = bytearray(encode(header(2, 400, 100), 30, tables))
    reader = StreamReader(io.BytesIO(bytes(data)))
    offsets = reader.seek_index.offsets(reader.chunks_start)  # type: ignore[union-attr]
    data[offsets[1] + 3] ^= 0x20
    return bytes(data)


def build(tables: CdfTable) -> dict[str, bytes]:
    """Every vector's bytes by file name."""
    encoder_tag = MetadataBlock(fmt.META_ENCODER, b"aec make_vectors")
    unknown = MetadataBlock(4242, b"a kind this reader does not know")
    vectors = {
        "empty.aec": encode(header(1, 0, 150), 0, tables),
        "one_chunk.aec": encode(header(1, 120, 150), 10, tables),
        "multi_chunk_index.aec": encode(header(2, 400, 100), 30, tables),
        "unknown_metadata.aec": encode(header(1, 75, 50, (encoder_tag, unknown)), 50, tables),
        "newer_minor.aec": newer_minor(tables),
        "damaged_chunk.aec": damaged(tables),
    }
    vectors["newer_major.aec"] = newer_major(vectors["one_chunk.aec"])
    return vectors


def newer_major(data: bytes) -> bytes:
    """The one-chunk stream as major 2.0, with a header CRC that holds (spec §3.1)."""
    size = data[10]
    covered = bytes([2, 0]) + data[10 : 11 + size]
    return fmt.MAGIC + covered + struct.pack("<I", fmt.crc32(covered)) + data[11 + size + 4 :]


def decode_all(data: bytes, tables: CdfTable, ignore_errors: bool = False
               ) -> tuple[StreamHeader, list[NDArray[np.int32] | None]]:
    """Header and every chunk's symbols [rows, frames] (None for a skipped chunk)."""
    reader = StreamReader(io.BytesIO(data))
    h = reader.header
    out: list[NDArray[np.int32] | None] = []
    for chunk in reader.chunks(ignore_errors=ignore_errors):
        if chunk.payload is None:
            out.append(None)
        else:
            out.append(decode_symbols(chunk.payload, table_index(h), chunk.num_frames, tables))
    return h, out


def symbols_sha256(chunks: list[NDArray[np.int32] | None]) -> str:
    """SHA-256 of every decoded chunk as int32 little-endian, row-major, in order."""
    digest = hashlib.sha256()
    for symbols in chunks:
        if symbols is not None:
            digest.update(symbols.astype("<i4").tobytes())
    return digest.hexdigest()


def expectation(name: str, data: bytes, tables: CdfTable) -> dict[str, object]:
    """What a conforming reader must produce for one vector."""
    entry: dict[str, object] = {"stream_sha256": hashlib.sha256(data).hexdigest(),
                                "size_bytes": len(data)}
    errors: dict[str, Callable[[], object]] = {
        "newer_major.aec": lambda: {"error": "UnsupportedVersionError"},
        "damaged_chunk.aec": lambda: {"error": "ChecksumError", "chunk_index": 1},
    }
    if name in errors:
        entry.update(errors[name]())  # type: ignore[arg-type]
    if name == "newer_major.aec":
        return entry
    h, chunks = decode_all(data, tables, ignore_errors=name in errors)
    entry.update({
        "num_chunks": h.num_chunks,
        "skipped_chunks": [k for k, c in enumerate(chunks) if c is None],
        "metadata_kinds": [b.kind for b in h.metadata],
        "symbols_sha256": symbols_sha256(chunks),
        "header": {k: getattr(h, k) for k in fmt._HEADER_INTS} | {"model_name": h.model_name},
    })
    return entry


def tables_json(tables: CdfTable) -> str:
    """The tables as JSON (integers only), stored next to the vectors."""
    return json.dumps({
        "precision": tables.precision,
        "cdf": tables.cdf.tolist(),
        "length": tables.length.tolist(),
        "offset": tables.offset.tolist(),
    }, indent=1) + "\n"


def load_tables(path: Path = VECTORS / "tables.json") -> CdfTable:
    """Read tables.json back into a CdfTable (validated)."""
    raw = json.loads(path.read_text())
    return CdfTable.from_arrays({
        "precision": np.array(raw["precision"]),
        "cdf": np.array(raw["cdf"], dtype=np.int64),
        "length": np.array(raw["length"], dtype=np.int64),
        "offset": np.array(raw["offset"], dtype=np.int64),
    })


def expected_files() -> dict[str, bytes]:
    """Every file of spec/vectors/ as it should be: vectors, tables, expected.json."""
    tables = vector_tables()
    vectors = build(tables)
    expected = {name: expectation(name, data, tables) for name, data in vectors.items()}
    files = dict(vectors)
    files["tables.json"] = tables_json(tables).encode()
    files["expected.json"] = (json.dumps(expected, indent=1, sort_keys=True) + "\n").encode()
    return files


def main(argv: list[str]) -> int:
    """Check (default) or regenerate (--write) spec/vectors/."""
    files = expected_files()
    if "--write" in argv:
        VECTORS.mkdir(exist_ok=True)
        for name, data in files.items():
            (VECTORS / name).write_bytes(data)
        print(f"wrote {len(files)} files to {VECTORS}")
        return 0
    stale = [n for n, d in files.items()
             if not (VECTORS / n).exists() or (VECTORS / n).read_bytes() != d]
    print("stale: " + ", ".join(stale) if stale else "all vectors up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
