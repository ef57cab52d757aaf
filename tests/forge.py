"""Hand-built `.aec` streams with valid CRCs, written from spec/aec.md, not from codec/format.py.

A bit flip is caught by a CRC; a forged stream whose CRCs are right reaches the
checks behind them. These helpers build each part of spec §2 from its bytes so
that a test can break exactly one rule: a header (§3) with any field, size or
version, chunk records (§4), trailer blocks and the seek index (§6), and the end
block (§7). Used by tests/test_spec_musts.py and tests/test_fuzz.py.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAGIC = b"\x89AEC\r\n\x1a\n"
END_MAGIC = b"END\x00"
INDEX_TAG = 0x49
#: Header integer fields in spec §3.2 order.
FIELDS = ("sample_rate", "channels", "num_samples", "model_rate", "hop_length",
          "latent_channels", "num_frames", "frames_per_chunk", "encoder_delay",
          "rate_point", "coder_id", "cdf_precision")
#: A small valid stream's header, matching the spec/vectors/tables.json tables (P = 12,
#: 2 latent channels, rate point 1): 8 frames in 2 chunks of 4.
DEFAULTS: dict[str, int] = {
    "sample_rate": 24000, "channels": 1, "num_samples": 2400, "model_rate": 24000,
    "hop_length": 300, "latent_channels": 2, "num_frames": 8, "frames_per_chunk": 4,
    "encoder_delay": 0, "rate_point": 1, "coder_id": 1, "cdf_precision": 12,
}


def crc(data: bytes) -> bytes:
    """CRC-32/ISO-HDLC as u32 little-endian (spec §1)."""
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


def varint(value: int) -> bytes:
    """Minimal unsigned LEB128 (spec §1)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def padded_varint(value: int, length: int) -> bytes:
    """A NON-minimal varint of `length` bytes (continuation bits on zero groups)."""
    groups = [(value >> (7 * i)) & 0x7F for i in range(length)]
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def metadata_block(kind: int, payload: bytes) -> bytes:
    return varint(kind) + varint(len(payload)) + payload


def header_body(fields: dict[str, Any] | None = None, *, model_name: bytes = b"forged",
                sha: bytes = bytes(32), metadata: Sequence[bytes] = (),
                extra: bytes = b"", raw: dict[str, bytes] | None = None) -> bytes:
    """The §3.2 body; `raw` replaces a field's varint bytes verbatim."""
    values = DEFAULTS | (fields or {})
    raw = raw or {}
    body = b"".join(raw.get(name, varint(values[name]) if name in values else b"")
                    for name in FIELDS)
    body += varint(len(model_name)) + model_name + sha
    return body + varint(len(metadata)) + b"".join(metadata) + extra


def header(body: bytes | None = None, *, major: int = 1, minor: int = 0,
           size_bytes: bytes | None = None) -> bytes:
    """The §3.1 header around a body, with its CRC recomputed over what is written."""
    body = header_body() if body is None else body
    covered = bytes([major, minor]) + (varint(len(body)) if size_bytes is None
                                       else size_bytes) + body
    return MAGIC + covered + crc(covered)


def chunk(k: int, payload: bytes, *, length_bytes: bytes | None = None) -> bytes:
    """A §4 record: length varint, payload, CRC of u32(k) || length bytes || payload."""
    length = varint(len(payload)) if length_bytes is None else length_bytes
    return length + payload + crc(struct.pack("<I", k) + length + payload)


def trailer_block(tag: int, body: bytes) -> bytes:
    """A §6 block: tag, size varint, body, CRC."""
    covered = bytes([tag]) + varint(len(body)) + body
    return covered + crc(covered)


def index_block(sizes: Sequence[int], count: int | None = None,
                entries: bytes | None = None) -> bytes:
    """The §6 seek index: count then one size varint per chunk record."""
    body = varint(len(sizes) if count is None else count)
    body += b"".join(varint(s) for s in sizes) if entries is None else entries
    return trailer_block(INDEX_TAG, body)


def end_block(trailer_size: int) -> bytes:
    """The §7 end block."""
    return END_MAGIC + struct.pack("<I", trailer_size)


def load_tables() -> Any:
    """The spec vectors' tables (P = 12, rate points 0-1 x latent channels 0-1)."""
    from codec.entropy import CdfTable

    raw = json.loads((ROOT / "spec" / "vectors" / "tables.json").read_text())
    return CdfTable.from_arrays({k: np.array(v) for k, v in raw.items()})


def table_index(fields: dict[str, int] | None = None) -> np.ndarray:
    """Row r = ch * C + c uses table rate_point * C + c (spec §4)."""
    f = DEFAULTS | (fields or {})
    rows = np.arange(f["channels"] * f["latent_channels"]) % f["latent_channels"]
    return (f["rate_point"] * f["latent_channels"] + rows).astype(np.int32)


def payloads(fields: dict[str, int] | None = None, seed: int = 0) -> list[bytes]:
    """Valid rANS payloads for every chunk the header announces (spec §5)."""
    from codec.entropy import encode_symbols

    f = DEFAULTS | (fields or {})
    rng = np.random.default_rng(seed)
    rows = f["channels"] * f["latent_channels"]
    out = []
    for start in range(0, f["num_frames"], f["frames_per_chunk"]):
        frames = min(f["frames_per_chunk"], f["num_frames"] - start)
        symbols = rng.integers(-3, 4, size=(rows, frames)).astype(np.int32)
        out.append(bytes(encode_symbols(symbols, table_index(f), load_tables())))
    return out


def stream(fields: dict[str, int] | None = None, *, head: bytes | None = None,
           records: Sequence[bytes] | None = None, trailer: bytes | None = None,
           index: bool = True) -> bytes:
    """A whole stream; each part defaults to the valid one for `fields`."""
    head = header(header_body(fields)) if head is None else head
    if records is None:
        records = [chunk(k, p) for k, p in enumerate(payloads(fields))]
    if trailer is None:
        trailer = index_block([len(r) for r in records]) if index else b""
    return head + b"".join(records) + trailer + end_block(len(trailer))


class Pipe(io.RawIOBase):
    """A non-seekable source with short reads, like stdin."""

    def __init__(self, data: bytes, max_read: int = 4093) -> None:
        self._buf = io.BytesIO(data)
        self._max_read = max_read

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(min(n, self._max_read) if n and n > 0 else n)


def read_all(data: bytes, *, pipe: bool = False, ignore_errors: bool = False
             ) -> tuple[Any, list[Any]]:
    """Header and every chunk, each payload entropy-decoded, as a decoder does it.

    Returns (header, [symbols or None per chunk]).
    """
    from codec.entropy import decode_symbols
    from codec.format import StreamReader

    reader = StreamReader(Pipe(data) if pipe else io.BytesIO(data))  # type: ignore[arg-type]
    h = reader.header
    tables = load_tables()
    index = (h.rate_point * h.latent_channels
             + np.arange(h.channels * h.latent_channels) % h.latent_channels).astype(np.int32)
    out = []
    for c in reader.chunks(ignore_errors=ignore_errors):
        out.append(None if c.payload is None else
                   decode_symbols(c.payload, index, c.num_frames, tables))
    return h, out
