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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from codec import chunkcoder
from codec import format as fmt
from codec.chunkcoder import ChunkSymbols, decode_chunk, encode_chunk
from codec.entropy import CdfTable, decode_symbols, encode_symbols
from codec.format import MetadataBlock, StreamHeader, StreamReader, write_stream
from codec.scales import ScaleLayout, zero_regions, zero_segments

VECTORS = Path(__file__).resolve().parent / "vectors"
PRECISION = 12
LATENT_CHANNELS = 2
SHA = hashlib.sha256(b"aec test-vector decoder weights").digest()


def tables_from_counts(shapes: list[tuple[int, list[int]]], precision: int) -> CdfTable:
    """Tables from (offset, counts) pairs: counts of the symbols offset.. plus ESCAPE last;
    the single 0 entry (the center) absorbs what is left of 2**precision."""
    total = 1 << precision
    width = max(len(c) for _, c in shapes) + 1
    cdf = np.full((len(shapes), width), total, dtype=np.uint32)
    for t, (_, counts) in enumerate(shapes):
        counts = list(counts)
        center = counts.index(0)
        counts[center] = total - sum(counts)
        cdf[t, : len(counts) + 1] = np.concatenate([[0], np.cumsum(counts)])
    return CdfTable(
        precision, cdf,
        np.array([len(c) for _, c in shapes], dtype=np.int32),
        np.array([o for o, _ in shapes], dtype=np.int32),
    )


def vector_tables() -> CdfTable:
    """Four tables (2 rate points x 2 latent channels) from hard-coded integer counts."""
    return tables_from_counts([
        (-4, [6, 30, 160, 700, 0, 700, 160, 30, 6, 8]),
        (-4, [40, 120, 300, 800, 0, 800, 300, 120, 40, 30]),
        (-2, [100, 600, 0, 600, 100, 16]),
        (-5, [4, 12, 40, 160, 600, 0, 600, 160, 40, 12, 4, 20]),
    ], PRECISION)


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


def build(tables: CdfTable, model: Coder2Model) -> dict[str, bytes]:
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
    vectors["coder2_mono.aec"] = coder2_mono(model)
    vectors["coder2_stereo.aec"] = coder2_stereo(model)
    return vectors


def newer_major(data: bytes) -> bytes:
    """The one-chunk stream as major 2.0, with a header CRC that holds (spec §3.1)."""
    size = data[10]
    covered = bytes([2, 0]) + data[10 : 11 + size]
    return fmt.MAGIC + covered + struct.pack("<I", fmt.crc32(covered)) + data[11 + size + 4 :]


# --- coder 2 (spec §5.6) ------------------------------------------------------------

CODER2_PRECISION = 11
CODER2_LAYOUT = ScaleLayout((0, 2, 4, 8), levels=4, gain_max=15, gamma_eighths=5, gain_ref=8,
                            level_bias=16, noise_segment=3, noise_low=-4, noise_high=2,
                            contexts=3, envelope_edges=(0, 1, 3), envelope_low=-3,
                            envelope_high=3)
CODER2_SHA = hashlib.sha256(b"aec test-vector coder-2 decoder weights").digest()
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class Coder2Model(NamedTuple):
    """What a coder-2 decoder needs besides the stream: the scale layout and the tables.

    (A NamedTuple, not a dataclass: tests load this script without registering it in
    sys.modules, which dataclasses need.)
    """

    layout: ScaleLayout
    tables: CdfTable


def coefficient_counts(band: int, level: int, context: int = 0) -> tuple[int, list[int]]:
    """(offset, counts) of table (band * L + level) * K + context: wider for higher levels
    and contexts, and an escape count that grows with the band, so that every table
    differs."""
    half = 1 + level + band // 2 + context            # direct range -half..half
    tails = [max(1, (512 * (level + 1)) >> (2 * d)) for d in range(1, half + 1)]
    return -half, tails[::-1] + [0] + tails + [4 << band]


def coder2_tables() -> Coder2Model:
    """T = B*L*K + 6 tables at P = 11: coefficient tables, then gain-first, gain-delta,
    noise and envelope tables whose direct ranges are narrower than the values the
    vectors use, so every block of spec §5.6 has escapes."""
    layout = CODER2_LAYOUT
    shapes = [coefficient_counts(b, level, context) for b in range(layout.num_bands)
              for level in range(layout.levels) for context in range(layout.contexts)]
    shapes += [
        (0, [40, 80, 160, 320, 0, 320, 160, 80, 30]),  # gain first: 0..7 direct
        (-3, [30, 100, 400, 0, 400, 100, 30, 20]),     # gain delta: -3..3 direct
        (-2, [200, 500, 0, 300, 60]),                  # noise first: -2..1 direct of -4..2
        (-1, [300, 0, 300, 40]),                       # noise delta: -1..1 direct
        (-1, [150, 0, 150, 50]),                       # envelope first: -1..1 of -3..3
        (-2, [60, 200, 0, 200, 60, 30]),               # envelope delta: -2..2 of -6..6
    ]
    return Coder2Model(layout, tables_from_counts(shapes, CODER2_PRECISION))


def lcg_words(seed: int) -> Iterator[int]:
    """The 32-bit LCG of `lcg_symbols`, yielding its top 24 bits."""
    x = seed & 0xFFFFFFFF
    while True:
        x = (1664525 * x + 1013904223) & 0xFFFFFFFF
        yield x >> 8


def lcg_gains(words: Iterator[int], channels: int, frames: int) -> NDArray[np.int64]:
    """[channels, frames] gains 0..15: a random walk with steps -3..3 and some jumps of 6."""
    gains = np.zeros((channels, frames), dtype=np.int64)
    for c in range(channels):
        g = next(words) % 16
        for f in range(frames):
            if f:
                r = next(words) % 16
                g = min(15, max(0, g + (r % 7 - 3 if r < 14 else 6 * (2 * (r - 14) - 1))))
            gains[c, f] = g
    return gains


def coder2_chunk(seed: int, channels: int, frames: int, step: int,
                 mid_side: bool) -> ChunkSymbols:
    """One chunk's integers from the LCG: gains, noise corrections, coefficients."""
    layout = CODER2_LAYOUT
    words = lcg_words(seed)
    gains = lcg_gains(words, channels, frames)
    shape = (channels, layout.num_bands, layout.noise_segments(frames))
    noise = np.array([next(words) % 7 - 4 for _ in range(int(np.prod(shape)))],
                     dtype=np.int64).reshape(shape)
    coefficients = lcg_symbols(seed, channels * layout.coefficients, frames).astype(np.int64)
    coefficients = coefficients.reshape(channels, -1, frames)
    bins, frame = np.meshgrid(np.arange(layout.coefficients), np.arange(frames), indexing="ij")
    coefficients[:, (bins < 4) & ((bins + frame) % 3 == 0)] = 0   # zeros in bands 0 and 1
    noise[~zero_segments(layout, coefficients)] = 0   # only segments with a zero carry one
    split = next(words) % (frames + 1)
    shape = (channels, layout.envelope_regions, frames)
    envelope = np.array([next(words) % 7 - 3 for _ in range(int(np.prod(shape)))],
                        dtype=np.int64).reshape(shape)
    envelope[~zero_regions(layout, coefficients)] = 0  # only regions with a zero carry one
    return ChunkSymbols(step, mid_side, gains, noise, coefficients, split, envelope)


def coder2_header(channels: int, num_frames: int, frames_per_chunk: int) -> StreamHeader:
    """The transform coder's geometry: hop = C = 8 bins, encoder delay C/2, one frame more
    than the samples need (spec §5.6), 48 kHz input to a 24 kHz model, 6 kbps requested."""
    hop = CODER2_LAYOUT.coefficients
    model_samples = (num_frames - 1) * hop - hop // 2
    return StreamHeader(
        sample_rate=48000, channels=channels, num_samples=2 * model_samples,
        model_rate=24000, hop_length=hop, latent_channels=CODER2_LAYOUT.coefficients,
        num_frames=num_frames, frames_per_chunk=frames_per_chunk, encoder_delay=hop // 2,
        rate_point=6, model_name="aec-vectors-coder2", model_sha256=CODER2_SHA,
        coder_id=chunkcoder.CODER_ID, cdf_precision=CODER2_PRECISION,
    )


def encode_coder2(h: StreamHeader, chunks: list[ChunkSymbols], model: Coder2Model) -> bytes:
    """A coder-2 stream (with a seek index) of the given chunks."""
    payloads = [encode_chunk(c, model.layout, model.tables) for c in chunks]
    return write_stream(h, payloads, seek_index=True)


def coder2_mono(model: Coder2Model) -> bytes:
    """Mono, 2 chunks of 12 + 7 frames (7 is not a multiple of noise_segment = 3)."""
    h = coder2_header(1, 19, 12)
    chunks = [coder2_chunk(200 + k, 1, h.chunk_frames(k), step, False)
              for k, step in enumerate((40, 35))]
    return encode_coder2(h, chunks, model)


def coder2_stereo(model: Coder2Model) -> bytes:
    """Stereo, 3 chunks of 16 + 16 + 8 frames, mid_side on, off, on; steps 41, 255
    (every level clamps to 0) and 0 (every level clamps to L - 1); chunk 0 escapes
    INT32_MAX and INT32_MIN among its coefficients."""
    h = coder2_header(2, 40, 16)
    chunks = [coder2_chunk(300 + k, 2, h.chunk_frames(k), step, mid_side)
              for k, (step, mid_side) in enumerate(((41, True), (255, False), (0, True)))]
    chunks[0].coefficients[0, 0, 0] = INT32_MAX
    chunks[0].coefficients[1, 7, -1] = INT32_MIN
    return encode_coder2(h, chunks, model)


def decode_coder2(data: bytes, model: Coder2Model, ignore_errors: bool = False
                  ) -> tuple[StreamHeader, list[ChunkSymbols | None]]:
    """Header and every chunk's integers of a coder-2 stream (None for a skipped chunk)."""
    reader = StreamReader(io.BytesIO(data))
    h = reader.header
    out: list[ChunkSymbols | None] = []
    for chunk in reader.chunks(ignore_errors=ignore_errors):
        out.append(None if chunk.payload is None else decode_chunk(
            chunk.payload, model.layout, model.tables, h.channels, chunk.num_frames))
    return h, out


def coder2_flat(symbols: ChunkSymbols) -> NDArray[np.int32]:
    """A chunk's gains [ch, F], noise [ch, B, S], coefficients [ch, C, F] and envelope
    [ch, R, F], row-major, concatenated: the int32 values `symbols_sha256` hashes for
    coder 2 (spec §9)."""
    parts = (symbols.gains, symbols.noise, symbols.coefficients,
             symbols.envelope if symbols.envelope is not None else np.zeros(0, np.int64))
    return np.concatenate([p.reshape(-1) for p in parts]).astype(np.int32)


def coder2_tables_json(model: Coder2Model) -> str:
    """The coder-2 layout and tables as JSON (integers only), stored next to the vectors."""
    raw = json.loads(tables_json(model.tables))
    return json.dumps({"layout": model.layout.to_dict()} | raw, indent=1) + "\n"


def load_coder2(path: Path = VECTORS / "tables_coder2.json") -> Coder2Model:
    """Read tables_coder2.json back into a layout and a CdfTable (validated)."""
    raw = json.loads(path.read_text())
    layout = dict(raw.pop("layout"))
    layout["band_edges"] = tuple(layout["band_edges"])
    layout["envelope_edges"] = tuple(layout.get("envelope_edges", ()))
    return Coder2Model(ScaleLayout(**layout), load_tables(path))


def decode_all(data: bytes, tables: CdfTable, ignore_errors: bool = False,
               model: Coder2Model | None = None
               ) -> tuple[StreamHeader, list[NDArray[np.int32] | None]]:
    """Header and every chunk's symbols (None for a skipped chunk): [rows, frames] for
    coder 1; for coder 2 (with `model`, by default tables_coder2.json) `coder2_flat`."""
    reader = StreamReader(io.BytesIO(data))
    h = reader.header
    if h.coder_id == chunkcoder.CODER_ID:
        _, chunks = decode_coder2(data, model or load_coder2(), ignore_errors)
        return h, [None if c is None else coder2_flat(c) for c in chunks]
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


def expectation(name: str, data: bytes, tables: CdfTable,
                model: Coder2Model) -> dict[str, object]:
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
    h, chunks = decode_all(data, tables, ignore_errors=name in errors, model=model)
    if h.coder_id == chunkcoder.CODER_ID:
        entry.update(coder2_expectation(data, model))
    entry.update({
        "num_chunks": h.num_chunks,
        "skipped_chunks": [k for k, c in enumerate(chunks) if c is None],
        "metadata_kinds": [b.kind for b in h.metadata],
        "symbols_sha256": symbols_sha256(chunks),
        "header": {k: getattr(h, k) for k in fmt._HEADER_INTS} | {"model_name": h.model_name},
    })
    return entry


def coder2_expectation(data: bytes, model: Coder2Model) -> dict[str, object]:
    """The per-chunk step indices and mid/side flags of a coder-2 vector."""
    _, chunks = decode_coder2(data, model)
    return {"steps": [c.step for c in chunks if c is not None],
            "mid_side": [c.mid_side for c in chunks if c is not None]}


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
    tables, model = vector_tables(), coder2_tables()
    vectors = build(tables, model)
    expected = {name: expectation(name, data, tables, model) for name, data in vectors.items()}
    files = dict(vectors)
    files["tables.json"] = tables_json(tables).encode()
    files["tables_coder2.json"] = coder2_tables_json(model).encode()
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
