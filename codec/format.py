"""The `.aec` container: header, CRC-checked chunks, seek index, end block.

`spec/aec.md` is normative; section numbers in comments refer to it. This
module never touches tensors or the entropy coder: it moves opaque chunk
payloads between bytes and the `StreamHeader` / `Chunk` / `SeekIndex` records.

Every length and count read from a stream is checked against the limits below
and against the bytes that remain before anything is allocated; malformed input
raises a `FormatError` subclass naming the byte offset (and the chunk index).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, Protocol

from codec.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    TruncatedError,
    UnsupportedVersionError,
)

__all__ = [
    "MAGIC", "FORMAT_MAJOR", "FORMAT_MINOR", "END_MAGIC", "INDEX_TAG",
    "KNOWN_CODER_IDS", "META_ENCODER", "META_TAGS", "META_SOURCE",
    "MAX_SAMPLE_RATE", "MAX_CHANNELS", "MAX_NUM_SAMPLES", "MAX_HOP_LENGTH",
    "MAX_LATENT_CHANNELS", "MAX_NUM_FRAMES", "MAX_FRAMES_PER_CHUNK", "MAX_NUM_CHUNKS",
    "MAX_ENCODER_DELAY", "MAX_RATE_POINT", "MAX_CODER_ID", "MAX_CDF_PRECISION",
    "MAX_MODEL_NAME_BYTES", "MAX_METADATA_BLOCKS", "MAX_METADATA_KIND",
    "MAX_METADATA_BYTES", "MAX_HEADER_BYTES", "MAX_CHUNK_BYTES", "MAX_CHUNK_SYMBOLS",
    "MAX_TRAILER_BYTES", "MIN_CHUNK_RECORD_BYTES",
    "MetadataBlock", "StreamHeader", "Chunk", "SeekIndex", "StreamWriter", "StreamReader",
    "write_stream", "read_stream", "encode_varint", "crc32", "pack_chunk",
    "check_sample_count",
    # re-exported so callers can catch them as format.FormatError etc.
    "FormatError", "TruncatedError", "LimitError", "ChecksumError", "UnsupportedVersionError",
]

# --- spec §2: constants --------------------------------------------------------------
MAGIC = b"\x89AEC\r\n\x1a\n"
"""8 bytes; the high bit, CR LF, ^Z and LF catch 7-bit and text-mode damage (like PNG)."""
FORMAT_MAJOR = 1
FORMAT_MINOR = 2
INDEX_TAG = 0x49  # "I": seek index trailer block (spec §6)
END_MAGIC = b"END\x00"  # first 4 bytes of the end block (spec §7)
KNOWN_CODER_IDS = frozenset({1, 2})  # rANS of spec §5: 1 = per-row tables, 2 = §5.6 chunks
END_BLOCK_BYTES = 8      # "END\0" + u32 trailer_size (spec §7)
INDEX_FIXED_BYTES = 1 + 5 + 5 + 4  # seek index tag, size and count varints (bound), CRC-32
META_ENCODER, META_TAGS, META_SOURCE = 1, 2, 3  # known metadata kinds (spec §3.3)

# --- spec §8: limits a reader enforces -----------------------------------------------
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_NUM_SAMPLES = 1 << 40
MAX_HOP_LENGTH = 1 << 16
MAX_LATENT_CHANNELS = 4096
MAX_NUM_FRAMES = 1 << 32
MAX_FRAMES_PER_CHUNK = 1 << 16
MAX_NUM_CHUNKS = 1 << 20
MAX_ENCODER_DELAY = 1 << 24
MAX_RATE_POINT = 255
MAX_CODER_ID = 255
MAX_CDF_PRECISION = 24
MAX_MODEL_NAME_BYTES = 255
MAX_METADATA_BLOCKS = 64
MAX_METADATA_KIND = 0xFFFF
MAX_METADATA_BYTES = 1 << 16
MAX_HEADER_BYTES = 1 << 17
MAX_CHUNK_BYTES = 1 << 24
MAX_CHUNK_SYMBOLS = 1 << 22
MAX_TRAILER_BYTES = 1 << 28
MIN_CHUNK_RECORD_BYTES = 5  # 1-byte length + 4-byte CRC
MAX_VARINT_BYTES = 10

_U32 = struct.Struct("<I")
_VERSION = struct.Struct("<BB")
_END = struct.Struct("<4sI")
_READ_PIECE = 1 << 20  # bounded reads: never allocate more than what arrived + 1 MiB
_HEADER_INTS = (
    "sample_rate", "channels", "num_samples", "model_rate", "hop_length",
    "latent_channels", "num_frames", "frames_per_chunk", "encoder_delay",
    "rate_point", "coder_id", "cdf_precision",
)
_INT_RANGES: dict[str, tuple[int, int]] = {
    "sample_rate": (1, MAX_SAMPLE_RATE), "channels": (1, MAX_CHANNELS),
    "num_samples": (0, MAX_NUM_SAMPLES), "model_rate": (1, MAX_SAMPLE_RATE),
    "hop_length": (1, MAX_HOP_LENGTH), "latent_channels": (1, MAX_LATENT_CHANNELS),
    "num_frames": (0, MAX_NUM_FRAMES), "frames_per_chunk": (1, MAX_FRAMES_PER_CHUNK),
    "encoder_delay": (0, MAX_ENCODER_DELAY), "rate_point": (0, MAX_RATE_POINT),
    "coder_id": (0, MAX_CODER_ID), "cdf_precision": (1, MAX_CDF_PRECISION),
}


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32/ISO-HDLC (zlib, PNG, gzip): check value of b'123456789' is 0xCBF43926."""
    return zlib.crc32(data, value) & 0xFFFFFFFF


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant group first (spec §2.2)."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint value {value} outside 0..2**64-1")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Reader(Protocol):
    def read_exact(self, n: int, what: str) -> bytes: ...

    @property
    def pos(self) -> int: ...


def _read_varint(src: _Reader, what: str) -> int:
    """Decode one minimal LEB128 varint of at most 10 bytes (spec §2.2)."""
    start = src.pos
    value = 0
    for i in range(MAX_VARINT_BYTES):
        byte = src.read_exact(1, what)[0]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise FormatError(f"{what}: varint is not minimally encoded", start)
            if value >= 1 << 64:
                raise FormatError(f"{what}: varint exceeds 64 bits", start)
            return value
    raise FormatError(f"{what}: varint longer than {MAX_VARINT_BYTES} bytes", start)


class _Cursor:
    """Reads fields out of an in-memory block; offsets are absolute stream offsets."""

    def __init__(self, data: bytes, base: int) -> None:
        self._data = data
        self._base = base
        self._at = 0

    @property
    def pos(self) -> int:
        return self._base + self._at

    @property
    def remaining(self) -> int:
        return len(self._data) - self._at

    def read_exact(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise TruncatedError(
                f"{what}: needs {n} bytes but its block has {self.remaining} left", self.pos)
        piece = self._data[self._at : self._at + n]
        self._at += n
        return piece


class _Source:
    """A file object with a position counter, bounded reads and a known size if seekable."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self.seekable = _is_seekable(fileobj)
        self._origin = fileobj.tell() if self.seekable else 0
        self.size: int | None = None
        if self.seekable:
            self.size = fileobj.seek(0, io.SEEK_END) - self._origin
            fileobj.seek(self._origin)
        self._pos = 0

    @property
    def pos(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        self._f.seek(self._origin + pos)
        self._pos = pos

    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self._pos

    def read_exact(self, n: int, what: str) -> bytes:
        left = self.remaining()
        if left is not None and n > left:
            raise TruncatedError(f"{what}: needs {n} bytes but only {left} remain", self._pos)
        pieces: list[bytes] = []
        need = n
        while need:
            piece = self._f.read(min(need, _READ_PIECE))
            if not piece:
                raise TruncatedError(f"{what}: needs {n} bytes, stream ends after "
                                     f"{n - need}", self._pos)
            pieces.append(piece)
            need -= len(piece)
        self._pos += n
        return b"".join(pieces)

    def at_end(self) -> bool:
        left = self.remaining()
        if left is not None:
            return left == 0
        return self._f.read(1) == b""  # a non-seekable stream: peeking consumes


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


# --- spec §3: header -----------------------------------------------------------------


@dataclass(frozen=True)
class MetadataBlock:
    """A typed, length-prefixed header block; readers keep unknown kinds (spec §3.3)."""

    kind: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.kind <= MAX_METADATA_KIND:
            raise LimitError(f"metadata kind {self.kind} outside 0..{MAX_METADATA_KIND}")
        if len(self.payload) > MAX_METADATA_BYTES:
            raise LimitError(f"metadata block of {len(self.payload)} bytes exceeds "
                             f"MAX_METADATA_BYTES = {MAX_METADATA_BYTES}")


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs before the first chunk; field names follow spec §3.2."""

    sample_rate: int
    channels: int
    num_samples: int
    model_rate: int
    hop_length: int
    latent_channels: int
    num_frames: int
    frames_per_chunk: int
    encoder_delay: int
    rate_point: int
    model_name: str
    model_sha256: bytes
    coder_id: int
    cdf_precision: int
    metadata: tuple[MetadataBlock, ...] = ()

    def __post_init__(self) -> None:
        _validate_header(self)

    @property
    def num_chunks(self) -> int:
        """Chunks in the stream: ceil(num_frames / frames_per_chunk)."""
        return -(-self.num_frames // self.frames_per_chunk)

    def chunk_frames(self, k: int) -> int:
        """Frames in chunk k: frames_per_chunk, except a shorter last chunk."""
        if not 0 <= k < self.num_chunks:
            raise IndexError(f"chunk {k} outside 0..{self.num_chunks - 1}")
        return min(self.frames_per_chunk, self.num_frames - k * self.frames_per_chunk)

    def pack(self) -> bytes:
        """The header bytes of spec §3.1: magic, version, size, body, CRC-32."""
        body = b"".join(encode_varint(getattr(self, name)) for name in _HEADER_INTS)
        name = self.model_name.encode("utf-8")
        body += encode_varint(len(name)) + name + self.model_sha256
        body += encode_varint(len(self.metadata))
        for block in self.metadata:
            body += encode_varint(block.kind) + encode_varint(len(block.payload))
            body += block.payload
        covered = _VERSION.pack(FORMAT_MAJOR, FORMAT_MINOR) + encode_varint(len(body)) + body
        return MAGIC + covered + _U32.pack(crc32(covered))


def _validate_header(h: StreamHeader) -> None:
    """Raise LimitError/FormatError unless every field is within spec §8."""
    for name in _HEADER_INTS:
        value = getattr(h, name)
        low, high = _INT_RANGES[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise LimitError(f"header field {name} = {value!r} outside {low}..{high}")
    if len(h.model_name.encode("utf-8")) > MAX_MODEL_NAME_BYTES:
        raise LimitError(f"model_name longer than {MAX_MODEL_NAME_BYTES} UTF-8 bytes")
    if not isinstance(h.model_sha256, bytes) or len(h.model_sha256) != 32:
        raise FormatError("model_sha256 must be 32 bytes")
    if h.num_chunks > MAX_NUM_CHUNKS:
        raise LimitError(f"{h.num_chunks} chunks exceed MAX_NUM_CHUNKS = {MAX_NUM_CHUNKS}")
    symbols = h.channels * h.latent_channels * h.frames_per_chunk
    if symbols > MAX_CHUNK_SYMBOLS:
        raise LimitError(f"channels x latent_channels x frames_per_chunk = {symbols} "
                         f"exceeds MAX_CHUNK_SYMBOLS = {MAX_CHUNK_SYMBOLS}")
    _validate_metadata(h.metadata)


def _validate_metadata(blocks: tuple[MetadataBlock, ...]) -> None:
    if len(blocks) > MAX_METADATA_BLOCKS:
        raise LimitError(f"{len(blocks)} metadata blocks exceed {MAX_METADATA_BLOCKS}")
    total = sum(len(b.payload) for b in blocks)
    if total > MAX_METADATA_BYTES:
        raise LimitError(f"metadata of {total} bytes exceeds {MAX_METADATA_BYTES}")


def _read_header(src: _Source) -> tuple[StreamHeader, int]:
    """Parse and validate spec §3.1 at the stream start: (header, format minor)."""
    magic = src.read_exact(len(MAGIC), "magic")
    if magic != MAGIC:
        raise FormatError(f"not an .aec stream: magic {magic!r}, expected {MAGIC!r}", 0)
    start = src.pos
    major, minor = _VERSION.unpack(src.read_exact(2, "version"))
    if major == 0:
        raise FormatError("damaged or not an .aec stream: format major 0 does not exist", start)
    if major != FORMAT_MAJOR:
        _refuse_other_major(src, major, minor, start)
    size = _read_varint(src, "header size")
    if size > MAX_HEADER_BYTES:
        raise LimitError(f"header size {size} exceeds MAX_HEADER_BYTES = {MAX_HEADER_BYTES}",
                         start + 2)
    size_bytes = encode_varint(size)
    body_at = src.pos
    body = src.read_exact(size, "header body")
    stored = _U32.unpack(src.read_exact(4, "header CRC-32"))[0]
    computed = crc32(_VERSION.pack(major, minor) + size_bytes + body)
    if stored != computed:
        raise FormatError(f"header CRC-32 mismatch: stored {stored:08x}, computed "
                          f"{computed:08x}", body_at + size)
    return _parse_header_body(_Cursor(body, body_at), minor), minor


def _refuse_other_major(src: _Source, major: int, minor: int, start: int) -> None:
    """A newer major is UnsupportedVersionError only if its header CRC holds (spec §3.1).

    The header framing (version, size, body, CRC) is the same in every major, so a
    flipped version byte or random bytes after the magic fail the CRC: those are
    damage (FormatError, exit 4), not a stream from the future.
    """
    try:
        size = _read_varint(src, "header size")
        if size > MAX_HEADER_BYTES:
            raise LimitError(f"header size {size} exceeds MAX_HEADER_BYTES", start + 2)
        body = src.read_exact(size, "header body")
        stored = _U32.unpack(src.read_exact(4, "header CRC-32"))[0]
    except FormatError as exc:
        raise FormatError(f"damaged or not an .aec stream: format major {major}, "
                          f"unreadable header ({exc})", start) from None
    if stored != crc32(_VERSION.pack(major, minor) + encode_varint(size) + body):
        raise FormatError(f"damaged or not an .aec stream: format major {major} with a "
                          f"header CRC-32 mismatch", start)
    raise UnsupportedVersionError(
        f"format version {major}.{minor} is not supported; this reader knows "
        f"{FORMAT_MAJOR}.{FORMAT_MINOR} (a newer major needs a newer aec)", start)


def check_sample_count(header: StreamHeader) -> None:
    """The frames must hold the samples the header promises (spec §3.2), else FormatError.

    After resampling num_samples to model_rate (ceil) and dropping encoder_delay, the
    decoder needs num_frames * hop_length >= model samples + encoder_delay; a header
    that promises more (a forged num_samples or encoder_delay) would decode short.
    """
    model_samples = -(-header.num_samples * header.model_rate // header.sample_rate)
    need = model_samples + header.encoder_delay if model_samples else 0
    have = header.num_frames * header.hop_length
    if need > have:
        raise FormatError(f"header promises {header.num_samples} samples at "
                          f"{header.sample_rate} Hz (= {model_samples} at {header.model_rate} Hz "
                          f"after an encoder delay of {header.encoder_delay}), but its "
                          f"{header.num_frames} frames hold only {have}")


def _parse_header_body(cur: _Cursor, minor: int) -> StreamHeader:
    """Fields of spec §3.2 in order; a newer minor may append bytes we skip."""
    at = cur.pos
    ints = {name: _read_varint(cur, f"header field {name}") for name in _HEADER_INTS}
    name_length = _read_varint(cur, "model_name length")
    if name_length > MAX_MODEL_NAME_BYTES:
        raise LimitError(f"model_name length {name_length} exceeds {MAX_MODEL_NAME_BYTES}",
                         cur.pos)
    name_at = cur.pos
    try:
        model_name = cur.read_exact(name_length, "model_name").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"model_name is not UTF-8: {exc.reason}", name_at) from None
    sha = cur.read_exact(32, "model_sha256")
    metadata = _parse_metadata(cur)
    if cur.remaining and minor <= FORMAT_MINOR:
        raise FormatError(f"{cur.remaining} unexpected bytes at the end of a "
                          f"{FORMAT_MAJOR}.{minor} header", cur.pos)
    try:
        header = StreamHeader(model_name=model_name, model_sha256=sha, metadata=metadata,
                              **ints)
    except FormatError as exc:
        raise type(exc)(f"header: {exc}", at) from None
    if header.coder_id not in KNOWN_CODER_IDS:
        raise UnsupportedVersionError(
            f"entropy coder id {header.coder_id} is unknown (known: "
            f"{sorted(KNOWN_CODER_IDS)})", at)
    return header


def _parse_metadata(cur: _Cursor) -> tuple[MetadataBlock, ...]:
    """Metadata blocks of spec §3.3: count, then kind, size, payload each."""
    count_at = cur.pos
    count = _read_varint(cur, "metadata count")
    if count > MAX_METADATA_BLOCKS:
        raise LimitError(f"{count} metadata blocks exceed {MAX_METADATA_BLOCKS}", count_at)
    blocks = []
    for i in range(count):
        kind = _read_varint(cur, f"metadata block {i} kind")
        if kind > MAX_METADATA_KIND:
            raise LimitError(f"metadata block {i} kind {kind} exceeds {MAX_METADATA_KIND}",
                             cur.pos)
        size = _read_varint(cur, f"metadata block {i} size")
        if size > MAX_METADATA_BYTES:
            raise LimitError(f"metadata block {i} size {size} exceeds {MAX_METADATA_BYTES}",
                             cur.pos)
        blocks.append(MetadataBlock(kind, cur.read_exact(size, f"metadata block {i}")))
    return tuple(blocks)


# --- spec §4: chunks -----------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One chunk's payload, or None when damaged and the reader was told to skip it."""

    index: int
    num_frames: int
    payload: bytes | None
    error: FormatError | None = None
    offset: int | None = field(default=None, compare=False)  # record start, when known


def _chunk_crc(index: int, length_bytes: bytes, payload: bytes) -> int:
    """CRC-32 over u32le(index) || length varint || payload (spec §4)."""
    return crc32(payload, crc32(length_bytes, crc32(_U32.pack(index))))


def pack_chunk(index: int, payload: bytes) -> bytes:
    """One chunk record: varint length, payload, CRC-32 (spec §4)."""
    if len(payload) > MAX_CHUNK_BYTES:
        raise LimitError(f"chunk {index}: {len(payload)} bytes exceed MAX_CHUNK_BYTES = "
                         f"{MAX_CHUNK_BYTES}")
    length = encode_varint(len(payload))
    return length + payload + _U32.pack(_chunk_crc(index, length, payload))


def _read_chunk(src: _Source, k: int) -> tuple[bytes | None, int, ChecksumError | None]:
    """Read chunk k at the current position: (payload, record size, CRC error or None).

    Raises FormatError (naming the chunk) when the record cannot even be delimited;
    a CRC mismatch is returned instead, since the record's end is still known.
    """
    at = src.pos
    length = _read_varint(src, f"chunk {k} length")
    if length > MAX_CHUNK_BYTES:
        raise LimitError(f"chunk {k}: length {length} exceeds MAX_CHUNK_BYTES = "
                         f"{MAX_CHUNK_BYTES}", at)
    length_bytes = encode_varint(length)
    payload = src.read_exact(length, f"chunk {k} payload")
    stored = _U32.unpack(src.read_exact(4, f"chunk {k} CRC-32"))[0]
    size = src.pos - at
    computed = _chunk_crc(k, length_bytes, payload)
    if stored != computed:
        return None, size, ChecksumError(
            f"CRC-32 mismatch: stored {stored:08x}, computed {computed:08x}", k, at)
    return payload, size, None


# --- spec §6/§7: seek index and end block --------------------------------------------


@dataclass(frozen=True)
class SeekIndex:
    """Byte size of every chunk record, so chunk k starts at first + sum(sizes[:k])."""

    record_sizes: tuple[int, ...]

    def offsets(self, first: int) -> tuple[int, ...]:
        """Absolute start offset of every chunk, given the first chunk's offset."""
        out, at = [], first
        for size in self.record_sizes:
            out.append(at)
            at += size
        return tuple(out)

    def pack(self) -> bytes:
        """Trailer block of spec §6: tag, varint size, body, CRC-32."""
        body = encode_varint(len(self.record_sizes))
        body += b"".join(encode_varint(s) for s in self.record_sizes)
        covered = bytes([INDEX_TAG]) + encode_varint(len(body)) + body
        return covered + _U32.pack(crc32(covered))


def _parse_index_body(cur: _Cursor, num_chunks: int) -> SeekIndex:
    count_at = cur.pos
    count = _read_varint(cur, "seek index count")
    if count != num_chunks:
        raise FormatError(f"seek index lists {count} chunks, header has {num_chunks}",
                          count_at)
    if count * 1 > cur.remaining:  # every size is at least one varint byte
        raise TruncatedError(f"seek index lists {count} chunks in {cur.remaining} bytes",
                             count_at)
    sizes = []
    for k in range(count):
        size = _read_varint(cur, f"seek index entry {k}")
        if not MIN_CHUNK_RECORD_BYTES <= size <= MAX_CHUNK_BYTES + 8:
            raise FormatError(f"seek index entry {k}: record size {size} impossible", cur.pos)
        sizes.append(size)
    if cur.remaining:
        raise FormatError(f"{cur.remaining} unexpected bytes in the seek index", cur.pos)
    return SeekIndex(tuple(sizes))


def _read_trailer_block(src: _Source | _Cursor, known_minor: bool
                        ) -> tuple[int, bytes, int] | None:
    """One tagged trailer block (tag, body, body offset); None at the end block."""
    at = src.pos
    tag = src.read_exact(1, "trailer block tag")[0]
    if tag == END_MAGIC[0]:
        return None
    size = _read_varint(src, "trailer block size")
    if size > MAX_TRAILER_BYTES:
        raise LimitError(f"trailer block size {size} exceeds {MAX_TRAILER_BYTES}", at)
    body_at = src.pos
    body = src.read_exact(size, "trailer block")
    stored = _U32.unpack(src.read_exact(4, "trailer block CRC-32"))[0]
    if stored != crc32(bytes([tag]) + encode_varint(size) + body):
        raise FormatError(f"trailer block {tag:#04x} CRC-32 mismatch", at)
    if tag != INDEX_TAG and known_minor:
        raise FormatError(f"unknown trailer block tag {tag:#04x}", at)
    return tag, body, body_at


def _read_end_block_rest(src: _Source | _Cursor, trailer_start: int) -> None:
    """Rest of the 8-byte end block after its first byte (spec §7)."""
    at = src.pos - 1
    rest = src.read_exact(len(END_MAGIC) - 1 + 4, "end block")
    magic, size = _END.unpack(END_MAGIC[:1] + rest)
    if magic != END_MAGIC:
        raise FormatError(f"bad end block {magic!r}, expected {END_MAGIC!r}", at)
    if size != at - trailer_start:
        raise FormatError(f"end block says the trailer has {size} bytes, found "
                          f"{at - trailer_start}", at)


# --- writer --------------------------------------------------------------------------


class StreamWriter:
    """Writes a stream to a binary file object: header now, chunks as they come.

    `close()` writes the seek index (if asked for) and the end block; it does not
    close the file object. As a context manager it closes only on success, so an
    aborted stream has no end block and every reader reports it truncated.
    """

    def __init__(self, fileobj: BinaryIO, header: StreamHeader, *,
                 seek_index: bool = True) -> None:
        self._f = fileobj
        self.header = header
        self._seek_index = seek_index
        self._sizes: list[int] = []
        self._closed = False
        fileobj.write(header.pack())

    def write_chunk(self, payload: bytes) -> None:
        """Append the next chunk's payload (chunks are numbered in call order)."""
        if self._closed:
            raise ValueError("write_chunk on a closed StreamWriter")
        k = len(self._sizes)
        if k >= self.header.num_chunks:
            raise FormatError(f"chunk {k}: header announces only {self.header.num_chunks}")
        record = pack_chunk(k, bytes(payload))
        self._f.write(record)
        self._sizes.append(len(record))

    def close(self) -> None:
        """Write the trailer; every announced chunk must have been written."""
        if self._closed:
            return
        if len(self._sizes) != self.header.num_chunks:
            raise FormatError(f"stream closed after {len(self._sizes)} of "
                              f"{self.header.num_chunks} chunks")
        trailer = SeekIndex(tuple(self._sizes)).pack() if self._seek_index else b""
        self._f.write(trailer + _END.pack(END_MAGIC, len(trailer)))
        self._closed = True

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()


def write_stream(header: StreamHeader, payloads: Iterable[bytes], *,
                 seek_index: bool = True) -> bytes:
    """Whole stream as bytes (thin wrapper over `StreamWriter`)."""
    buf = io.BytesIO()
    with StreamWriter(buf, header, seek_index=seek_index) as writer:
        for payload in payloads:
            writer.write_chunk(payload)
    return buf.getvalue()


# --- reader --------------------------------------------------------------------------


@dataclass
class _ChunkWalk:
    """Where the next chunk starts; `lost` when a damaged record hid it."""

    pos: int
    lost: bool = False
    sizes: list[int] = field(default_factory=list)
    unreachable: FormatError | None = None  # shared by every chunk after a lost position


class StreamReader:
    """Reads a stream from a binary file object; the header is validated at once.

    With a seekable file object the reader also knows the stream size (so every
    length is checked against the bytes that remain) and can use the seek index
    for random access (`read_chunk`) and to resynchronize after a damaged chunk.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._src = _Source(fileobj)
        self.header, self.format_minor = _read_header(self._src)
        self.chunks_start = self._src.pos
        self._check_size_plausible()
        self._index: SeekIndex | None = None
        self._offsets: tuple[int, ...] = ()
        self._index_loaded = False

    def _check_size_plausible(self) -> None:
        """Reject a header announcing more chunks than the stream can hold (spec §8)."""
        left = self._src.remaining()
        need = self.header.num_chunks * MIN_CHUNK_RECORD_BYTES + _END.size
        if left is not None and need > left:
            raise TruncatedError(f"header announces {self.header.num_chunks} chunks, needing "
                                 f"at least {need} bytes, but only {left} remain",
                                 self.chunks_start)

    @property
    def size_bytes(self) -> int | None:
        """The whole stream's size in bytes, if the file object can tell (seekable)."""
        return self._src.size

    @property
    def bytes_read(self) -> int:
        """Bytes consumed from the stream start so far (the size, once the trailer is read)."""
        return self._src.pos

    # -- sequential reading --

    def chunks(self, *, ignore_errors: bool = False, start: int = 0,
               stop: int | None = None) -> Iterator[Chunk]:
        """Yield chunks start..stop-1 in order (all by default), then check the trailer.

        A damaged chunk raises ChecksumError/FormatError naming its index; with
        ignore_errors it is yielded as Chunk(payload=None, error=...) and reading
        resumes at the next chunk (via its length field or the seek index).
        """
        stop = self.header.num_chunks if stop is None else stop
        if not 0 <= start <= stop <= self.header.num_chunks:
            raise ValueError(f"chunk range {start}..{stop} outside 0..{self.header.num_chunks}")
        walk = _ChunkWalk(self._chunk_offset(start))
        if self._src.seekable:
            self._src.seek(walk.pos)
        for k in range(start, stop):
            yield self._next_chunk(walk, k, ignore_errors)
        if start == 0 and stop == self.header.num_chunks and not ignore_errors:
            self._read_trailer(walk)

    def _next_chunk(self, walk: _ChunkWalk, k: int, ignore_errors: bool) -> Chunk:
        frames = self.header.chunk_frames(k)
        if walk.lost and not self._resync(walk, k):
            if walk.unreachable is None:
                walk.unreachable = TruncatedError(
                    f"chunks {k}..{self.header.num_chunks - 1}: position unknown after damaged "
                    f"chunk {k - 1} and no seek index", walk.pos)
            return Chunk(k, frames, None, walk.unreachable)
        at = walk.pos
        try:
            payload, size, crc_error = _read_chunk(self._src, k)
        except FormatError as exc:
            if not ignore_errors:
                raise _with_chunk(exc, k) from None
            walk.lost = True
            return Chunk(k, frames, None, _with_chunk(exc, k), at)
        walk.sizes.append(size)
        walk.pos += size
        if crc_error is not None:
            if not ignore_errors:
                raise crc_error
            walk.lost = self.seek_index is not None  # trust the index over the length
            return Chunk(k, frames, None, crc_error, at)
        return Chunk(k, frames, payload, None, at)

    def _resync(self, walk: _ChunkWalk, k: int) -> bool:
        """Jump to chunk k via the seek index; False if there is none."""
        index = self.seek_index
        if index is None:
            return False
        walk.pos = self._offsets[k]
        self._src.seek(walk.pos)
        walk.lost = False
        return True

    def _read_trailer(self, walk: _ChunkWalk) -> None:
        """Strict check of spec §6/§7 after the last chunk, then of the end of stream."""
        src = self._src
        trailer_start = src.pos
        known = self.format_minor <= FORMAT_MINOR
        while (block := _read_trailer_block(src, known)) is not None:
            tag, body, body_at = block
            if tag == INDEX_TAG:
                index = _parse_index_body(_Cursor(body, body_at), self.header.num_chunks)
                if list(index.record_sizes) != walk.sizes:
                    raise FormatError("seek index does not match the chunk records", body_at)
        _read_end_block_rest(src, trailer_start)
        if not src.at_end():
            raise FormatError("unexpected bytes after the end block", src.pos)

    # -- random access --

    @property
    def seek_index(self) -> SeekIndex | None:
        """The stream's seek index if it has a valid one and the file is seekable."""
        if not self._index_loaded:
            self._index_loaded = True
            here = self._src.pos
            try:
                self._index = self._load_index()
            except FormatError:
                self._index = None
            finally:
                if self._src.seekable:
                    self._src.seek(here)
            if self._index is not None:
                self._offsets = self._index.offsets(self.chunks_start)
        return self._index

    def _load_index(self) -> SeekIndex | None:
        """Find the trailer from the end block and parse its seek index (spec §7)."""
        src = self._src
        if src.size is None or src.size - self.chunks_start < _END.size:
            return None
        src.seek(src.size - _END.size)
        magic, trailer_size = _END.unpack(src.read_exact(_END.size, "end block"))
        trailer_start = src.size - _END.size - trailer_size
        if magic != END_MAGIC or trailer_start < self.chunks_start:
            return None
        cur = _Cursor(_seek_read(src, trailer_start, trailer_size), trailer_start)
        while cur.remaining:
            tag, body, body_at = _read_trailer_block_strict(cur)
            if tag == INDEX_TAG:
                index = _parse_index_body(_Cursor(body, body_at), self.header.num_chunks)
                if sum(index.record_sizes) != trailer_start - self.chunks_start:
                    raise FormatError("seek index sizes do not add up to the chunk area",
                                      body_at)
                return index
        return None

    def _chunk_offset(self, k: int) -> int:
        """Start of chunk k: from the seek index, else by walking the length fields."""
        if k == 0:
            return self.chunks_start
        if self.seek_index is not None:
            return self._offsets[k]
        if not self._src.seekable:
            raise FormatError("starting past chunk 0 needs a seekable stream")
        self._src.seek(self.chunks_start)
        for j in range(k):
            _read_chunk(self._src, j)  # a CRC mismatch still delimits the record
        return self._src.pos

    def read_chunk(self, k: int) -> Chunk:
        """Chunk k alone (random access; decode a time range without reading it all)."""
        return next(self.chunks(start=k, stop=k + 1))


def _read_trailer_block_strict(cur: _Cursor) -> tuple[int, bytes, int]:
    block = _read_trailer_block(cur, known_minor=False)
    if block is None:
        raise FormatError("end block inside the trailer", cur.pos - 1)
    return block


def _seek_read(src: _Source, pos: int, n: int) -> bytes:
    src.seek(pos)
    return src.read_exact(n, "trailer")


def _with_chunk(exc: FormatError, k: int) -> FormatError:
    """The same error type with the chunk index in its message (offset kept)."""
    if isinstance(exc, ChecksumError) or f"chunk {k}" in str(exc):
        return exc
    message = str(exc)
    if exc.offset is not None:
        message = message.removesuffix(f" (at byte {exc.offset})")
    return type(exc)(f"chunk {k}: {message}", exc.offset)


def read_stream(data: bytes, *, ignore_errors: bool = False
                ) -> tuple[StreamHeader, list[Chunk]]:
    """Parse a whole stream held in memory (thin wrapper over `StreamReader`)."""
    reader = StreamReader(io.BytesIO(data))
    return reader.header, list(reader.chunks(ignore_errors=ignore_errors))
