"""Container layer: exact layout, versions, limits, damage handling (spec §2-§8)."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import PipeReader

from codec import format as fmt
from codec.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    TruncatedError,
    UnsupportedVersionError,
)
from codec.format import (
    MAGIC,
    Chunk,
    MetadataBlock,
    StreamHeader,
    StreamReader,
    StreamWriter,
    encode_varint,
    read_stream,
    write_stream,
)

SHA = hashlib.sha256(b"decoder weights").digest()


def make_header(**changes: object) -> StreamHeader:
    base = StreamHeader(
        sample_rate=44100, channels=1, num_samples=441000, model_rate=24000,
        hop_length=320, latent_channels=64, num_frames=750, frames_per_chunk=150,
        encoder_delay=0, rate_point=2, model_name="aec-base", model_sha256=SHA,
        coder_id=1, cdf_precision=16,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def payloads_for(header: StreamHeader, size: int = 1480) -> list[bytes]:
    return [bytes([k % 251]) * size for k in range(header.num_chunks)]


def rebuild(major: int, minor: int, body: bytes, rest: bytes = b"") -> bytes:
    """A header with a correct CRC around an arbitrary body (to reach deeper checks)."""
    covered = bytes([major, minor]) + encode_varint(len(body)) + body
    return MAGIC + covered + struct.pack("<I", fmt.crc32(covered)) + rest


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """(header body, everything after the header) of a stream with a 1-byte size."""
    size = data[10]
    assert size < 0x80
    return data[11 : 11 + size], data[11 + size + 4 :]


def NonSeekable(data: bytes) -> PipeReader:
    """A pipe-like reader: no seek, no tell, reads of at most 7 bytes."""
    return PipeReader(data, 7)


# --- layout ---------------------------------------------------------------------------

def test_crc_and_varint_basics() -> None:
    assert fmt.crc32(b"123456789") == 0xCBF43926
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    # 441000 = 26 << 14 | 0x75 << 7 | 0x28
    assert encode_varint(441000) == bytes([0xA8, 0xF5, 0x1A])


def test_header_bytes_follow_the_spec_table() -> None:
    header = make_header(metadata=(MetadataBlock(fmt.META_ENCODER, b"aec 0.1.0"),))
    data = header.pack()
    assert data[:8] == b"\x89AEC\r\n\x1a\n"
    assert data[8:10] == bytes([1, 2])
    body, rest = split_header(data)
    assert rest == b""
    expected = b"".join(encode_varint(v) for v in (
        44100, 1, 441000, 24000, 320, 64, 750, 150, 0, 2, 1, 16))
    expected += b"\x08aec-base" + SHA + b"\x01\x01\x09aec 0.1.0"
    assert body == expected
    assert data[-4:] == struct.pack("<I", fmt.crc32(data[8:-4]))


def test_round_trip_with_metadata_and_last_short_chunk() -> None:
    meta = (MetadataBlock(fmt.META_TAGS, "TITLE=é".encode()), MetadataBlock(900, b"\x00" * 5))
    header = make_header(num_frames=701, metadata=meta)
    assert header.num_chunks == 5 and header.chunk_frames(4) == 101
    payloads = payloads_for(header)
    payloads[2] = b""  # an all-zero-index chunk can have an empty payload
    got_header, chunks = read_stream(write_stream(header, payloads))
    assert got_header == header
    assert [c.payload for c in chunks] == payloads
    assert [c.num_frames for c in chunks] == [150, 150, 150, 150, 101]


def test_chunk_record_layout_and_crc_covers_index() -> None:
    header = make_header(num_frames=300)
    data = write_stream(header, [b"ab", b"cd"], seek_index=False)
    body, rest = split_header(data)
    record0 = b"\x02ab" + struct.pack("<I", fmt.crc32(b"\x00\x00\x00\x00" + b"\x02ab"))
    record1 = b"\x02cd" + struct.pack("<I", fmt.crc32(b"\x01\x00\x00\x00" + b"\x02cd"))
    assert rest == record0 + record1 + b"END\x00" + struct.pack("<I", 0)
    swapped = data[: len(data) - len(rest)] + record1 + record0 + rest[-8:]
    with pytest.raises(ChecksumError) as info:
        read_stream(swapped)
    assert info.value.chunk_index == 0


def test_seek_index_layout() -> None:
    header = make_header(num_frames=300)
    data = write_stream(header, [b"ab", b"cdef"])
    index_body = b"\x02\x07\x09"
    block = b"I" + b"\x03" + index_body
    assert data.endswith(block + struct.pack("<I", fmt.crc32(block)) + b"END\x00"
                         + struct.pack("<I", len(block) + 4))


def test_overhead_of_a_ten_second_6kbps_file_is_under_two_percent() -> None:
    """7500 bytes total: header (model name, SHA-256, encoder block), CRCs, index, end."""
    header = make_header(metadata=(MetadataBlock(fmt.META_ENCODER, b"aec 0.1.0"),))
    total = 7500
    fixed = len(write_stream(header, [b""] * header.num_chunks))
    per_chunk_payload = (total - fixed) // header.num_chunks
    data = write_stream(header, payloads_for(header, per_chunk_payload))
    overhead = len(data) - per_chunk_payload * header.num_chunks
    assert overhead < 150
    assert overhead / len(data) < 0.02


# --- versions --------------------------------------------------------------------------

def test_newer_major_is_refused_before_anything_else() -> None:
    body, rest = split_header(write_stream(make_header(), payloads_for(make_header())))
    with pytest.raises(UnsupportedVersionError, match="2.0"):
        read_stream(rebuild(2, 0, body, rest))           # a valid 2.0 header CRC
    assert UnsupportedVersionError.exit_code == 6


@pytest.mark.parametrize("major", [0, 2, 255])
def test_major_0_or_a_major_failing_its_crc_is_damage(major: int) -> None:
    """Issue 13 item 14: a flipped version byte is damage (exit 4), not a newer aec."""
    data = bytearray(write_stream(make_header(), payloads_for(make_header())))
    data[8] = major
    with pytest.raises(FormatError, match="damaged or not an .aec stream") as info:
        read_stream(bytes(data))
    assert type(info.value) is FormatError and info.value.exit_code == 4
    with pytest.raises(FormatError, match="damaged or not an .aec stream"):
        read_stream(MAGIC + bytes([major]) + bytes(range(7, 40)))   # random bytes


def test_newer_minor_is_read_skipping_unknown_fields_and_trailer_blocks() -> None:
    header = make_header(num_frames=300)
    data = write_stream(header, [b"ab", b"cd"], seek_index=False)
    body, rest = split_header(data)
    chunks_part = rest[:-8]
    future = bytes([0x5A])  # a trailer block a 1.7 writer might add: tag, size, body, CRC
    future = future + b"\x02zz"
    future += struct.pack("<I", fmt.crc32(future))
    newer = rebuild(1, 7, body + b"\x05future-field", chunks_part + future
                    + b"END\x00" + struct.pack("<I", len(future)))
    got, chunks = read_stream(newer)
    assert got == header and [c.payload for c in chunks] == [b"ab", b"cd"]
    same_minor = rebuild(1, 0, body + b"\x05", chunks_part + b"END\x00" + bytes(4))
    with pytest.raises(FormatError, match="unexpected bytes"):
        read_stream(same_minor)


def test_unknown_coder_is_refused() -> None:
    body, rest = split_header(write_stream(make_header(), payloads_for(make_header())))
    patched = body.replace(b"\x02\x01\x10\x08aec", b"\x02\x07\x10\x08aec")
    with pytest.raises(UnsupportedVersionError, match="coder id 7"):
        read_stream(rebuild(1, 0, patched, rest))


# --- limits and malformed headers ------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("channels", 65), ("channels", 0), ("sample_rate", 10**7), ("frames_per_chunk", 0),
    ("cdf_precision", 25), ("rate_point", 256), ("latent_channels", 5000),
])
def test_header_limits_are_enforced_by_writer_and_reader(field: str, value: int) -> None:
    with pytest.raises(LimitError, match=field):
        make_header(**{field: value})
    body, rest = split_header(write_stream(make_header(), payloads_for(make_header())))
    position = fmt._HEADER_INTS.index(field)
    fields = [44100, 1, 441000, 24000, 320, 64, 750, 150, 0, 2, 1, 16]
    old = b"".join(encode_varint(v) for v in fields)
    fields[position] = value
    new = b"".join(encode_varint(v) for v in fields)
    with pytest.raises(LimitError, match=field):
        read_stream(rebuild(1, 0, body.replace(old, new), rest))


def test_symbols_per_chunk_limit() -> None:
    with pytest.raises(LimitError, match="MAX_CHUNK_SYMBOLS"):
        make_header(channels=64, latent_channels=4096, frames_per_chunk=150)


def test_chunk_count_is_checked_against_the_remaining_bytes() -> None:
    body, rest = split_header(write_stream(make_header(), payloads_for(make_header())))
    huge = body.replace(encode_varint(750), encode_varint(150 * 10**6), 1)
    with pytest.raises(TruncatedError, match="announces"):
        StreamReader(io.BytesIO(rebuild(1, 0, huge, rest)))


def test_header_errors_name_what_and_where() -> None:
    data = write_stream(make_header(), payloads_for(make_header()))
    with pytest.raises(FormatError, match="magic"):
        read_stream(b"\x89AEC\n" + data[5:])  # CR LF -> LF, as a text-mode copy does
    damaged = bytearray(data)
    damaged[20] ^= 0x40
    with pytest.raises(FormatError, match=r"header CRC-32 mismatch.*at byte"):
        read_stream(bytes(damaged))
    body, rest = split_header(data)
    with pytest.raises(FormatError, match="not UTF-8"):
        read_stream(rebuild(1, 0, body.replace(b"aec-base", b"aec\xffbase"), rest))
    with pytest.raises(FormatError, match="minimally"):
        read_stream(rebuild(1, 0, body.replace(b"\x02\x01\x10", b"\x82\x00\x01\x10"), rest))
    with pytest.raises(LimitError, match="metadata blocks"):
        read_stream(rebuild(1, 0, body[:-1] + encode_varint(65), rest))


def test_every_truncation_raises_a_format_error() -> None:
    header = make_header(num_frames=300, metadata=(MetadataBlock(5, b"xyz"),))
    data = write_stream(header, [b"abcdefgh", b"ijk"])
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            read_stream(data[:cut])
        with pytest.raises(FormatError):
            reader = StreamReader(NonSeekable(data[:cut]))  # type: ignore[arg-type]
            list(reader.chunks())
    with pytest.raises(FormatError, match="after the end block"):
        read_stream(data + b"\x00")


# --- damaged chunks ---------------------------------------------------------------------

def test_damaged_chunk_is_named_and_skipped_with_ignore_errors() -> None:
    header = make_header()
    payloads = payloads_for(header)
    data = bytearray(write_stream(header, payloads))
    reader = StreamReader(io.BytesIO(bytes(data)))
    offset = reader.seek_index.offsets(reader.chunks_start)[2]  # type: ignore[union-attr]
    data[offset + 100] ^= 0x01
    with pytest.raises(ChecksumError) as info:
        read_stream(bytes(data))
    assert info.value.chunk_index == 2 and "chunk 2" in str(info.value)
    _, chunks = read_stream(bytes(data), ignore_errors=True)
    assert [c.payload for c in chunks] == payloads[:2] + [None] + payloads[3:]
    assert isinstance(chunks[2].error, ChecksumError)


def test_resync_after_a_damaged_length_uses_the_seek_index() -> None:
    header = make_header()
    payloads = payloads_for(header)
    data = bytearray(write_stream(header, payloads))
    start = len(header.pack())
    record = 2 + 1480 + 4
    data[start + record] = 0xFF  # chunk 1's length: 0xFF 0x8B -> a wrong, huge length
    data[start + record + 1] = 0xFF
    _, chunks = read_stream(bytes(data), ignore_errors=True)
    assert [c.payload is None for c in chunks] == [False, True, False, False, False]
    assert chunks[1].error is not None and "chunk 1" in str(chunks[1].error)


def test_without_an_index_a_lost_position_conceals_the_rest() -> None:
    header = make_header()
    payloads = payloads_for(header)
    data = bytearray(write_stream(header, payloads, seek_index=False))
    start = len(header.pack())
    data[start + 1486] = 0xFF
    data[start + 1487] = 0xFF
    _, chunks = read_stream(bytes(data), ignore_errors=True)
    assert [c.payload is None for c in chunks] == [False, True, True, True, True]
    # a damaged payload (length intact) still resyncs through the length field
    data = bytearray(write_stream(header, payloads, seek_index=False))
    data[start + 1486 + 50] ^= 0x10
    _, chunks = read_stream(bytes(data), ignore_errors=True)
    assert [c.payload is None for c in chunks] == [False, True, False, False, False]


def test_truncated_stream_with_ignore_errors_yields_every_chunk() -> None:
    header = make_header()
    data = write_stream(header, payloads_for(header))
    reader = StreamReader(NonSeekable(data[:3000]))  # type: ignore[arg-type]
    chunks = list(reader.chunks(ignore_errors=True))
    assert [c.payload is None for c in chunks] == [False, True, True, True, True]
    assert all(isinstance(c.error, TruncatedError) for c in chunks[1:])


# --- access patterns ---------------------------------------------------------------------

def test_random_access_and_ranges() -> None:
    header = make_header()
    payloads = payloads_for(header)
    data = write_stream(header, payloads)
    reader = StreamReader(io.BytesIO(data))
    assert reader.read_chunk(3) == Chunk(3, 150, payloads[3])
    assert [c.payload for c in reader.chunks(start=1, stop=3)] == payloads[1:3]
    no_index = StreamReader(io.BytesIO(write_stream(header, payloads, seek_index=False)))
    assert no_index.seek_index is None
    assert no_index.read_chunk(4).payload == payloads[4]


def test_stream_inside_a_larger_file_and_from_a_pipe() -> None:
    header = make_header()
    payloads = payloads_for(header)
    data = write_stream(header, payloads)
    buf = io.BytesIO(b"junk" + data)
    buf.seek(4)
    assert [c.payload for c in StreamReader(buf).chunks()] == payloads
    pipe = StreamReader(NonSeekable(data))  # type: ignore[arg-type]
    assert [c.payload for c in pipe.chunks()] == payloads


def test_writer_checks_chunk_count() -> None:
    header = make_header(num_frames=300)
    with pytest.raises(FormatError, match="only 2"):
        write_stream(header, [b"a", b"b", b"c"])
    with pytest.raises(FormatError, match="1 of 2"):
        write_stream(header, [b"a"])
    buf = io.BytesIO()
    with pytest.raises(RuntimeError):
        with StreamWriter(buf, header) as writer:
            writer.write_chunk(b"a")
            raise RuntimeError("encoder failed")
    with pytest.raises(TruncatedError):
        read_stream(buf.getvalue())


def test_empty_stream() -> None:
    header = make_header(num_samples=0, num_frames=0)
    data = write_stream(header, [])
    assert read_stream(data) == (header, [])


def test_byte_layer_does_not_import_torch() -> None:
    code = ("import sys, codec.format, codec.entropy; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_spec_limit_table_matches_the_code() -> None:
    """spec/aec.md §8 is normative: its limit values are the module's constants."""
    import re
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[1] / "spec" / "aec.md").read_text()
    rows = re.findall(r"^\| `(MAX_[A-Z_]+)` \| ([0-9^]+) \|", spec, flags=re.M)
    assert len(rows) >= 18
    for name, text in rows:
        base, _, power = text.partition("^")
        value = int(base) ** int(power) if power else int(base)
        assert getattr(fmt, name) == value, name


def test_spec_overhead_example_is_exact() -> None:
    """spec §10: 144 bytes with an encoder block, 133 without, for 10 s at 6 kbps."""
    for metadata, expected in (((MetadataBlock(fmt.META_ENCODER, b"aec 0.1.0"),), 144),
                               ((), 133)):
        header = make_header(metadata=metadata)
        payloads = [b"\x01" * 1471] * 5  # 2-byte lengths, like real 6 kbps chunks
        data = write_stream(header, payloads)
        assert len(data) - sum(map(len, payloads)) == expected
