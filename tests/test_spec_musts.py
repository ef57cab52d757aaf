"""One named test per MUST of spec/aec.md, each citing its section.

Streams are forged with valid CRCs (tests/forge.py), so each test breaks exactly
one rule and reaches the check behind the CRC. Each asserts the error class the
spec names (an exact class where the spec names one, never "any AecError").
Where a check is not implemented yet the test is `xfail(strict=True)` naming the
issue, so it turns into a failure the moment the check lands.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import forge
from codec import format as fmt
from codec.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    ModelMismatchError,
    TruncatedError,
    UnsupportedVersionError,
)


@contextlib.contextmanager
def exactly(error: type[Exception]) -> Iterator[Any]:
    """pytest.raises that also refuses subclasses: FormatError must not be a LimitError."""
    with pytest.raises(error) as info:
        yield info
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


#: A minor version newer than this reader's (spec §3.1 step 4).
NEWER_MINOR = fmt.FORMAT_MINOR + 1
#: A coder_id this reader does not implement.
UNKNOWN_CODER_ID = 255


@pytest.fixture(params=["seekable", "pipe"])
def pipe(request) -> bool:
    return request.param == "pipe"


def test_forged_baseline_stream_is_valid(pipe) -> None:
    """The forgeries below differ from this valid stream in one rule each."""
    h, chunks = forge.read_all(forge.stream(), pipe=pipe)
    assert h.num_chunks == 2 and all(c is not None and c.shape == (2, 4) for c in chunks)


# ---------------------------------------------------------------- §1 conventions


def test_s1_varint_must_be_minimal_in_the_header_body(pipe) -> None:
    """§1: a varint of two or more bytes MUST NOT end in 0x00."""
    body = forge.header_body(raw={"channels": forge.padded_varint(1, 2)})
    with exactly(FormatError) as caught:
        forge.read_all(forge.stream(head=forge.header(body)), pipe=pipe)
    assert "minimal" in str(caught.value)


def test_s1_varint_must_be_minimal_in_the_seek_index() -> None:
    """§1 and §6: a non-minimal size in the (CRC-valid) seek index is malformed."""
    records = [forge.chunk(k, p) for k, p in enumerate(forge.payloads())]
    entries = b"".join(forge.padded_varint(len(r), 3) for r in records)
    trailer = forge.index_block([], count=2, entries=entries)
    data = forge.stream(records=records, trailer=trailer)
    with exactly(FormatError):
        forge.read_all(data)
    assert fmt.StreamReader(io.BytesIO(data)).seek_index is None


def test_s1_varint_is_at_most_10_bytes() -> None:
    """§1: a varint is at most 10 bytes."""
    body = forge.header_body(raw={"sample_rate": b"\x80" * 10 + b"\x01"})
    with exactly(FormatError):
        forge.read_all(forge.stream(head=forge.header(body)))


# ---------------------------------------------------------------- §3.1 header


def test_s31_1_magic_is_checked(pipe) -> None:
    """§3.1 step 1: wrong magic is a FormatError "not an .aec stream"."""
    data = bytearray(forge.stream())
    data[4] = ord("X")
    with exactly(FormatError) as caught:
        forge.read_all(bytes(data), pipe=pipe)
    assert "not an .aec stream" in str(caught.value)


@pytest.mark.parametrize("major", [2, 255])
def test_s31_2_newer_major_is_refused_before_its_body_is_parsed(pipe, major) -> None:
    """§3.1 step 2: a newer major is UnsupportedVersionError (exit code 6), however
    its (CRC-valid) body and everything after it look."""
    data = forge.header(b"\xff" * 7 + b"\x00", major=major) + b"\x80" * 9
    with exactly(UnsupportedVersionError) as caught:
        forge.read_all(data, pipe=pipe)
    assert caught.value.exit_code == 6


def test_s31_3_header_size_is_limited_even_when_the_bytes_are_there() -> None:
    """§3.1 step 3 and §8: header_size > MAX_HEADER_BYTES is a LimitError, even for a
    newer minor (which would skip the padding) with every byte present and a valid CRC;
    a header of exactly MAX_HEADER_BYTES is read."""
    body = forge.header_body()
    body += bytes(fmt.MAX_HEADER_BYTES + 1 - len(body))
    with exactly(LimitError):
        forge.read_all(forge.stream(head=forge.header(body, minor=NEWER_MINOR)))
    # one byte less is a valid 1.1 stream
    with_room = forge.header_body()
    with_room += bytes(fmt.MAX_HEADER_BYTES - len(with_room))
    forge.read_all(forge.stream(head=forge.header(with_room, minor=NEWER_MINOR)))


def test_s31_3_header_size_must_fit_the_stream(pipe) -> None:
    """§3.1 step 3: header_size larger than the remaining bytes is a TruncatedError."""
    body = forge.header_body()
    head = forge.header(body, size_bytes=forge.varint(len(body) + 5000))
    with exactly(TruncatedError):
        forge.read_all(head[:-4] + b"....", pipe=pipe)


def test_s31_3_header_crc_is_verified(pipe) -> None:
    """§3.1 step 3: a header whose CRC does not match is a FormatError."""
    head = bytearray(forge.header())
    head[12] ^= 0x01                                       # a body byte, CRC unchanged
    with exactly(FormatError) as caught:
        forge.read_all(forge.stream(head=bytes(head)), pipe=pipe)
    assert "CRC" in str(caught.value)


def test_s31_4_newer_minor_ignores_appended_header_bytes(pipe) -> None:
    """§3.1 step 4: a newer minor's extra body bytes are ignored."""
    head = forge.header(forge.header_body(extra=b"\x07new"), minor=NEWER_MINOR)
    h, chunks = forge.read_all(forge.stream(head=head), pipe=pipe)
    assert h.num_frames == 8 and len(chunks) == 2


def test_s31_4_leftover_header_bytes_are_an_error_for_a_known_minor(pipe) -> None:
    """§3.1 step 4: if minor is not newer, leftover body bytes are an error."""
    head = forge.header(forge.header_body(extra=b"\x07"))
    with exactly(FormatError):
        forge.read_all(forge.stream(head=head), pipe=pipe)


# ---------------------------------------------------------------- §3.2 body fields

OUT_OF_RANGE = [
    ("sample_rate", 0), ("sample_rate", fmt.MAX_SAMPLE_RATE + 1), ("channels", 0),
    ("channels", fmt.MAX_CHANNELS + 1), ("num_samples", fmt.MAX_NUM_SAMPLES + 1),
    ("model_rate", 0), ("hop_length", 0), ("hop_length", fmt.MAX_HOP_LENGTH + 1),
    ("latent_channels", 0), ("num_frames", fmt.MAX_NUM_FRAMES + 1),
    ("frames_per_chunk", 0), ("frames_per_chunk", fmt.MAX_FRAMES_PER_CHUNK + 1),
    ("encoder_delay", fmt.MAX_ENCODER_DELAY + 1), ("rate_point", fmt.MAX_RATE_POINT + 1),
    ("coder_id", 256), ("cdf_precision", 0), ("cdf_precision", fmt.MAX_CDF_PRECISION + 1),
]


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_s32_every_field_is_range_checked(field, value) -> None:
    """§3.2 and §8: each integer is range-checked: LimitError."""
    head = forge.header(forge.header_body({field: value}))
    with exactly(LimitError):
        forge.read_all(forge.stream(head=head))


def test_s32_unknown_coder_id_is_unsupported(pipe) -> None:
    """§3.2: a coder_id the reader does not implement is UnsupportedVersionError."""
    assert UNKNOWN_CODER_ID not in fmt.KNOWN_CODER_IDS
    head = forge.header(forge.header_body({"coder_id": UNKNOWN_CODER_ID}))
    with exactly(UnsupportedVersionError):
        forge.read_all(forge.stream(head=head), pipe=pipe)


def test_s32_model_name_must_be_utf8(pipe) -> None:
    """§3.2: a model name that is not valid UTF-8 is a FormatError."""
    head = forge.header(forge.header_body(model_name=b"\xff\xfe"))
    with exactly(FormatError):
        forge.read_all(forge.stream(head=head), pipe=pipe)


def rewrite_header(data: bytes, **changes) -> bytes:
    """The same stream with header fields changed and the header CRC recomputed."""
    reader = fmt.StreamReader(io.BytesIO(data))
    h = reader.header
    sha = changes.pop("model_sha256", h.model_sha256)
    values = {name: getattr(h, name) for name in forge.FIELDS} | changes
    meta = [forge.metadata_block(b.kind, b.payload) for b in h.metadata]
    body = forge.header_body(values, model_name=h.model_name.encode(), sha=sha,
                             metadata=meta)
    return forge.header(body) + data[reader.chunks_start:]


@pytest.fixture(scope="module")
def tiny_stream(tiny) -> bytes:
    """0.5 s of a tone coded by the tiny untrained model (conftest.py)."""
    t = np.arange(12000) / 24000
    return tiny.encode((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000)


def test_s32_decoder_refuses_other_weights(tiny, tiny_stream) -> None:
    """§3.2: weights whose SHA-256 differs from model_sha256: ModelMismatchError."""
    tiny.decode(tiny_stream)
    forged = rewrite_header(tiny_stream, model_sha256=bytes(32))
    with pytest.raises(ModelMismatchError):
        tiny.decode(forged)


def test_s32_decoder_checks_cdf_precision(tiny, tiny_stream) -> None:
    """§3.2: a decoder MUST check cdf_precision against its tables."""
    precision = tiny.model.tables.precision
    forged = rewrite_header(tiny_stream, cdf_precision=24 if precision != 24 else 20)
    with pytest.raises((ModelMismatchError, FormatError), match="precision"):
        tiny.decode(forged)


@pytest.mark.parametrize("change", ["double", "max", "delay"])
def test_sample_count_must_fit_the_frames(tiny, tiny_stream, change) -> None:
    """§3.2 derived values (issue 13 item 3): a header promising more samples than its
    frames hold is a FormatError before any audio is written."""
    h = fmt.StreamReader(io.BytesIO(tiny_stream)).header
    changes = {"double": {"num_samples": 2 * h.num_samples},
               "max": {"num_samples": fmt.MAX_NUM_SAMPLES},
               "delay": {"encoder_delay": fmt.MAX_ENCODER_DELAY}}[change]
    with pytest.raises(FormatError):
        tiny.decode(rewrite_header(tiny_stream, **changes))


# ---------------------------------------------------------------- §3.3 metadata


def test_s33_all_metadata_together_is_limited() -> None:
    """§3.3: payloads of all blocks together MUST NOT exceed MAX_METADATA_BYTES."""
    half = fmt.MAX_METADATA_BYTES // 2 + 1
    blocks = [forge.metadata_block(100, bytes(half)), forge.metadata_block(101, bytes(half))]
    head = forge.header(forge.header_body(metadata=blocks))
    with exactly(LimitError):
        forge.read_all(forge.stream(head=head))


def test_s33_unknown_kinds_are_skipped_and_kept(pipe) -> None:
    """§3.3: readers MUST skip (and SHOULD keep) blocks of unknown kinds."""
    head = forge.header(forge.header_body(metadata=[forge.metadata_block(4242, b"?x")]))
    h, chunks = forge.read_all(forge.stream(head=head), pipe=pipe)
    assert [(b.kind, b.payload) for b in h.metadata] == [(4242, b"?x")] and len(chunks) == 2


def test_s33_invalid_contents_of_a_known_kind_do_not_fail(tmp_path, capsys) -> None:
    """§3.3: a reader MUST NOT fail on invalid contents of a known kind (library and
    `aec info`)."""
    from codec import cli

    blocks = [forge.metadata_block(fmt.META_ENCODER, b"\xff\xfe"),
              forge.metadata_block(fmt.META_TAGS, b"\xc3"),
              forge.metadata_block(fmt.META_SOURCE, b"{not json")]
    data = forge.stream(head=forge.header(forge.header_body(metadata=blocks)))
    h, _ = forge.read_all(data)
    assert len(h.metadata) == 3
    (tmp_path / "m.aec").write_bytes(data)
    assert cli.main(["info", str(tmp_path / "m.aec"), "--json"]) == 0
    assert cli.main(["info", str(tmp_path / "m.aec")]) == 0
    capsys.readouterr()


# ---------------------------------------------------------------- §4 chunks


def test_s4_chunk_length_is_limited(pipe) -> None:
    """§4: length > MAX_CHUNK_BYTES is a LimitError (before reading the payload)."""
    record = forge.varint(fmt.MAX_CHUNK_BYTES + 1) + bytes(16)
    data = forge.header() + record + bytes(64)
    with exactly(LimitError):
        forge.read_all(data, pipe=pipe)


def test_s4_chunk_length_must_fit_the_stream() -> None:
    """§4: length + 4 beyond the remaining bytes is a TruncatedError (size known)."""
    payloads = forge.payloads()
    records = [forge.chunk(0, payloads[0]),
               forge.chunk(1, payloads[1], length_bytes=forge.varint(10_000))]
    with exactly(TruncatedError):
        forge.read_all(forge.stream(records=records, index=False))


def test_s4_crc_mismatch_is_a_checksum_error_naming_the_chunk(pipe) -> None:
    """§4 and §8: a CRC mismatch is a ChecksumError with the chunk index and offset."""
    good = forge.stream()
    reader = fmt.StreamReader(io.BytesIO(good))
    second = reader.seek_index.offsets(reader.chunks_start)[1]
    data = bytearray(good)
    data[second + 2] ^= 0x10                                # a payload byte of chunk 1
    with exactly(ChecksumError) as caught:
        forge.read_all(bytes(data), pipe=pipe)
    assert caught.value.chunk_index == 1 and caught.value.exit_code == 5
    assert "chunk 1" in str(caught.value) and f"at byte {second}" in str(caught.value)


def test_s4_moved_chunks_fail_their_crc() -> None:
    """§4: the index k is in the CRC, so swapped (valid) records fail at chunk 0."""
    records = [forge.chunk(k, p) for k, p in enumerate(forge.payloads())]
    with exactly(ChecksumError) as caught:
        forge.read_all(forge.stream(records=records[::-1]))
    assert caught.value.chunk_index == 0


def damaged_middle(index: bool) -> bytes:
    """Three chunks, chunk 1's payload damaged (its CRC no longer matches)."""
    fields = {"num_frames": 12}
    records = [forge.chunk(k, p) for k, p in enumerate(forge.payloads(fields))]
    records[1] = records[1][:2] + bytes([records[1][2] ^ 0x01]) + records[1][3:]
    return forge.stream(fields, records=records, index=index)


@pytest.mark.parametrize("index", [True, False])
def test_s4_ignore_errors_resumes_after_a_damaged_chunk(index, pipe) -> None:
    """§4: with ignore_errors chunk 1 is missing and chunk 2 decodes, via the seek index
    or the damaged record's own length."""
    _, chunks = forge.read_all(damaged_middle(index), pipe=pipe, ignore_errors=True)
    assert chunks[0] is not None and chunks[1] is None and chunks[2] is not None


# ---------------------------------------------------------------- §5 entropy coding


@pytest.mark.parametrize("payload", [b"\x01\x00\x00", b"\x01\x00\x00\x00\x00\x00\x00\x00",
                                     b"\x01\x00\x00\x00"])
def test_s53_malformed_payloads_are_format_errors(payload) -> None:
    """§5.3: length not a multiple of 4, a zero last word, or a final state that is not
    0 with no words left: FormatError (inside a CRC-valid record)."""
    records = [forge.chunk(0, payload), forge.chunk(1, forge.payloads()[1])]
    with exactly(FormatError):
        forge.read_all(forge.stream(records=records))


# ---------------------------------------------------------------- §6 trailer and seek index


def records_and_sizes() -> tuple[list[bytes], list[int]]:
    records = [forge.chunk(k, p) for k, p in enumerate(forge.payloads())]
    return records, [len(r) for r in records]


def test_s6_index_count_must_equal_the_chunk_count() -> None:
    """§6: count MUST equal N: strict reading fails, random access ignores the index."""
    records, sizes = records_and_sizes()
    data = forge.stream(records=records, trailer=forge.index_block(sizes + [5]))
    with exactly(FormatError):
        forge.read_all(data)
    assert fmt.StreamReader(io.BytesIO(data)).seek_index is None


def test_s6_index_sizes_must_add_up_to_the_chunk_area() -> None:
    """§6: sizes that do not add up make random access unavailable (never wrong)."""
    records, sizes = records_and_sizes()
    data = forge.stream(records=records, trailer=forge.index_block([sizes[0], sizes[1] + 1]))
    reader = fmt.StreamReader(io.BytesIO(data))
    assert reader.seek_index is None
    assert reader.read_chunk(1).payload == forge.payloads()[1]   # found by walking


def test_s6_index_must_match_the_chunk_records() -> None:
    """§6: a sequential reader validates the index against the records it read, even when
    the sizes add up."""
    records, sizes = records_and_sizes()
    data = forge.stream(records=records, trailer=forge.index_block([sizes[0] + 1,
                                                                    sizes[1] - 1]))
    with exactly(FormatError) as caught:
        forge.read_all(data)
    assert "index" in str(caught.value)


def test_s6_minor_0_reader_rejects_unknown_trailer_tags(pipe) -> None:
    """§6: a reader of minor 0 MUST reject tags other than the seek index."""
    records, sizes = records_and_sizes()
    trailer = forge.index_block(sizes) + forge.trailer_block(0x5A, b"future")
    with exactly(FormatError) as caught:
        forge.read_all(forge.stream(records=records, trailer=trailer), pipe=pipe)
    assert "tag" in str(caught.value)


def test_s6_older_minor_reader_skips_unknown_trailer_tags(pipe) -> None:
    """§6: a reader of an older minor than the stream's MUST skip unknown tags."""
    records, sizes = records_and_sizes()
    trailer = forge.trailer_block(0x5A, b"future") + forge.index_block(sizes)
    head = forge.header(forge.header_body(), minor=NEWER_MINOR)
    data = forge.stream(head=head, records=records, trailer=trailer)
    _, chunks = forge.read_all(data, pipe=pipe)
    assert len(chunks) == 2
    assert fmt.StreamReader(io.BytesIO(data)).seek_index is not None


# ---------------------------------------------------------------- §7 end block


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_s7_trailer_size_must_equal_the_actual_size(delta, pipe) -> None:
    """§7: trailer_size MUST equal the trailer's byte size."""
    good = forge.stream()
    size = struct.unpack("<I", good[-4:])[0]
    data = good[:-4] + struct.pack("<I", size + delta)
    with exactly(FormatError) as caught:
        forge.read_all(data, pipe=pipe)
    assert "trailer" in str(caught.value)


def test_s7_missing_end_block_is_truncated(pipe) -> None:
    """§7: a stream without an end block is truncated."""
    with exactly(TruncatedError):
        forge.read_all(forge.stream()[:-8], pipe=pipe)


def test_s7_bytes_after_the_end_block_are_an_error(pipe) -> None:
    """§7: nothing may follow the end block."""
    with exactly(FormatError):
        forge.read_all(forge.stream() + b"\x00", pipe=pipe)


# ---------------------------------------------------------------- §8 limits


def test_s8_chunk_count_is_limited() -> None:
    """§8: N > MAX_NUM_CHUNKS is a LimitError."""
    head = forge.header(forge.header_body({"num_frames": fmt.MAX_NUM_CHUNKS + 1,
                                           "frames_per_chunk": 1}))
    with exactly(LimitError):
        forge.read_all(head + forge.end_block(0))


def test_s8_chunk_count_must_fit_the_stream_size() -> None:
    """§8: N * 5 + 8 beyond the bytes after the header is refused before reading chunks."""
    head = forge.header(forge.header_body({"num_frames": 4000, "frames_per_chunk": 1}))
    with exactly(TruncatedError):
        forge.read_all(head + forge.end_block(0))


def test_s8_symbols_per_chunk_are_limited() -> None:
    """§8: channels * latent_channels * frames_per_chunk > MAX_CHUNK_SYMBOLS: LimitError."""
    head = forge.header(forge.header_body({"channels": 64, "latent_channels": 4096,
                                           "frames_per_chunk": 17}))
    with exactly(LimitError):
        forge.read_all(head + forge.end_block(0))


def test_s8_metadata_count_and_model_name_are_limited() -> None:
    """§8: more than MAX_METADATA_BLOCKS blocks, or a model name over 255 bytes."""
    blocks = [forge.metadata_block(9, b"")] * (fmt.MAX_METADATA_BLOCKS + 1)
    with exactly(LimitError):
        forge.read_all(forge.stream(head=forge.header(forge.header_body(metadata=blocks))))
    with exactly(LimitError):
        forge.read_all(forge.stream(head=forge.header(forge.header_body(
            model_name=b"n" * (fmt.MAX_MODEL_NAME_BYTES + 1)))))
