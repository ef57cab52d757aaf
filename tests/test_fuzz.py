"""Seeded fuzzing of spec/vectors: every damaged stream raises the error its damage calls for.

Each case reads the header, every chunk (strict, or with ignore_errors on odd
cases; from a seekable buffer, or from a pipe on every third case) and
entropy-decodes every payload. Anything but success or an AecError
subclass fails the test with the seed needed to replay the case. Mutations:
bit flips, truncations, insertions, deletions, chunk-length edits, version
edits, and header/index edits with the CRC recomputed (to reach the checks
behind the CRC).

A case with one mutation, read strictly, must end in the error class its
mutation class calls for (`expected_outcomes`): a truncation is a
TruncatedError, a flipped payload bit a ChecksumError naming that chunk, a
flipped header bit a FormatError, a rewritten seek index a FormatError, and so
on; none may decode cleanly. Targeted forgeries, one per spec MUST, are in
tests/test_spec_musts.py.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PipeReader

from codec import chunkcoder
from codec import format as fmt
from codec.entropy import CdfTable, decode_symbols
from codec.errors import AecError, ChecksumError, FormatError
from codec.format import StreamReader
from codec.scales import ScaleLayout

ROOT = Path(__file__).resolve().parents[1]
VECTORS = sorted((ROOT / "spec" / "vectors").glob("*.aec"))
NUM_CASES = 10_000
MAX_CASE_S = 1.0
TRACE_EVERY = 25  # tracemalloc slows Python down; measure allocation on a sample


def load_tables() -> CdfTable:
    import json

    raw = json.loads((ROOT / "spec" / "vectors" / "tables.json").read_text())
    return CdfTable.from_arrays({k: np.array(v) for k, v in raw.items()})


TABLES = load_tables()


def load_coder2() -> tuple[ScaleLayout, CdfTable]:
    """Layout and tables of the coder-2 vectors (spec §9, tables_coder2.json)."""
    import json

    raw = json.loads((ROOT / "spec" / "vectors" / "tables_coder2.json").read_text())
    layout = raw.pop("layout")
    layout["band_edges"] = tuple(layout["band_edges"])
    return (ScaleLayout(**layout),
            CdfTable.from_arrays({k: np.array(v) for k, v in raw.items()}))


CODER2 = load_coder2()


def Pipe(data: bytes) -> PipeReader:
    """A non-seekable source with reads of at most 4093 bytes, like stdin."""
    return PipeReader(data, 4093)


def decode_everything(data: bytes, ignore_errors: bool, pipe: bool = False) -> str:
    """Header + all chunks + entropy decode, as `Codec.decode` would do it: "decoded", or
    "damaged:K,..." naming the chunks reported damaged (with ignore_errors)."""
    reader = StreamReader(Pipe(data) if pipe else io.BytesIO(data))  # type: ignore[arg-type]
    h = reader.header
    if h.coder_id == chunkcoder.CODER_ID:
        return decode_coder2(reader, ignore_errors)
    rows = np.arange(h.channels * h.latent_channels)
    index = (h.rate_point * h.latent_channels + rows % h.latent_channels).astype(np.int32)
    if index.size and index.max() >= TABLES.num_tables:
        raise FormatError("rate point / latent channels do not match the model's tables")
    damaged = []
    for chunk in reader.chunks(ignore_errors=ignore_errors):
        if chunk.payload is None:
            damaged.append(chunk.index)
        else:
            decode_symbols(chunk.payload, index, chunk.num_frames, TABLES)
    return f"damaged:{','.join(map(str, damaged))}" if damaged else "decoded"


def decode_coder2(reader: StreamReader, ignore_errors: bool) -> str:
    """`decode_everything` for a coder-2 stream (spec §5.6) with the vectors' layout."""
    layout, tables = CODER2
    if (reader.header.latent_channels != layout.coefficients
            or reader.header.cdf_precision != tables.precision):
        raise FormatError("latent channels / precision do not match the coder-2 tables")
    damaged = []
    for chunk in reader.chunks(ignore_errors=ignore_errors):
        if chunk.payload is None:
            damaged.append(chunk.index)
        else:
            chunkcoder.decode_chunk(chunk.payload, layout, tables, reader.header.channels,
                                    chunk.num_frames)
    return f"damaged:{','.join(map(str, damaged))}" if damaged else "decoded"


# --- mutations -----------------------------------------------------------------------

def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def insert(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]


def delete(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 16) :]


def edit_version(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 10:
        return flip_bits(data, rng)
    out = bytearray(data)
    out[8 + rng.randrange(2)] = rng.choice([0, 1, 2, 3, 127, 255])
    return bytes(out)


def random_varint(rng: random.Random) -> bytes:
    value = rng.choice([0, 1, 127, 128, 2**14, 2**24, 2**32 - 1, 2**63, 2**64 - 1,
                        rng.randrange(2**20)])
    return fmt.encode_varint(value)


def edit_chunk_length(data: bytes, rng: random.Random) -> bytes:
    """Replace a chunk's length varint (found through the seek index) with another."""
    try:
        reader = StreamReader(io.BytesIO(data))
        index = reader.seek_index
    except AecError:
        index = None
    if index is None or not index.record_sizes:
        return flip_bits(data, rng)
    at = rng.choice(index.offsets(reader.chunks_start))
    ends = [i for i in range(min(10, len(data) - at)) if data[at + i] < 0x80]
    old = 1 + ends[0] if ends else 1
    return data[:at] + random_varint(rng) + data[at + old :]


def edit_header_with_crc(data: bytes, rng: random.Random) -> bytes:
    """Change header body bytes (or insert a varint) and recompute the header CRC."""
    size = data[10] if len(data) > 10 else 0x80
    if size >= 0x80 or len(data) < 15 + size or size == 0:
        return flip_bits(data, rng)
    body = bytearray(data[11 : 11 + size])
    if rng.random() < 0.5:
        body[rng.randrange(len(body))] = rng.randrange(256)
    else:
        at = rng.randrange(len(body) + 1)
        body[at:at] = random_varint(rng)
    covered = data[8:10] + fmt.encode_varint(len(body)) + bytes(body)
    return (fmt.MAGIC + covered + struct.pack("<I", fmt.crc32(covered))
            + data[11 + size + 4 :])


def edit_trailer_with_crc(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the seek index (CRC recomputed) with random sizes or counts."""
    end = data[-8:]
    if len(data) < 16 or end[:4] != fmt.END_MAGIC:
        return flip_bits(data, rng)
    trailer = struct.unpack("<I", end[4:])[0]
    if trailer == 0 or trailer > len(data) - 8:
        return flip_bits(data, rng)
    body = b"".join(random_varint(rng) for _ in range(rng.randint(0, 6)))
    block = bytes([fmt.INDEX_TAG]) + fmt.encode_varint(len(body)) + body
    block += struct.pack("<I", fmt.crc32(block))
    return data[: len(data) - 8 - trailer] + block + fmt.END_MAGIC + struct.pack("<I", len(block))


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    flip_bits, flip_bits, truncate, insert, delete, edit_version,
    edit_chunk_length, edit_header_with_crc, edit_header_with_crc, edit_trailer_with_crc,
]


def mutate(seed: int) -> bytes:
    """The seeded case: one vector with one or a few mutations applied."""
    return mutate_named(seed)[0]


def mutate_named(seed: int) -> tuple[bytes, bytes, list[str]]:
    """(mutated stream, source vector, names of the mutations applied) of a seeded case."""
    rng = random.Random(seed)
    source = VECTORS[seed % len(VECTORS)].read_bytes()
    data, names = source, []
    for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 4)):
        if data:
            mutation = MUTATIONS[rng.randrange(len(MUTATIONS))]
            data = mutation(data, rng)
            names.append(mutation.__name__)
    return data, source, names


# --- what each mutation class must raise (strict reading, one mutation) ---------------

ANY_ERROR = frozenset({"ChecksumError", "TruncatedError", "LimitError", "FormatError",
                       "UnsupportedVersionError"})
#: A damaged length or size field: the record ends elsewhere, so any of these.
FIELD_DAMAGE = frozenset({"ChecksumError", "TruncatedError", "LimitError", "FormatError"})
#: A flipped major byte fails the header CRC; an older reader refused it as newer.
MAJOR_DAMAGE = frozenset({"FormatError", "UnsupportedVersionError"})


@functools.cache
def pristine_outcome(source: bytes) -> str:
    """Strict outcome of an unmutated vector."""
    try:
        return decode_everything(source, ignore_errors=False)
    except ChecksumError as exc:
        return f"ChecksumError:{exc.chunk_index}"
    except AecError as exc:
        return type(exc).__name__


def stream_regions(source: bytes) -> list[tuple[int, int, str]]:
    """(start, end, label) of every part of a pristine vector, in stream order (spec §2)."""
    reader = StreamReader(io.BytesIO(source))
    regions = [(0, 8, "magic"), (8, 9, "major"), (9, 10, "minor")]
    size_end = 10 + next(i for i in range(10) if source[10 + i] < 0x80) + 1
    regions += [(10, size_end, "header_size"), (size_end, reader.chunks_start, "header")]
    end = len(source) - 8
    trailer = end - struct.unpack("<I", source[-4:])[0]
    starts = [c.offset for c in reader.chunks()]       # newer_minor.aec has no seek index
    for k, (at, stop) in enumerate(zip(starts, [*starts[1:], trailer])):
        length_end = at + next(i for i in range(10) if source[at + i] < 0x80) + 1
        regions += [(at, length_end, "length"), (length_end, stop, f"chunk:{k}")]
    regions += [(trailer, end, "trailer"), (end, end + 4, "end_magic"),
                (end + 4, end + 8, "trailer_size")]
    return regions


def flip_outcomes(source: bytes, data: bytes) -> frozenset[str]:
    """Strict outcome of bit flips: decided by the first damaged part of the stream."""
    first = next(i for i, (a, b) in enumerate(zip(source, data)) if a != b)
    label = next(lab for start, end, lab in stream_regions(source) if start <= first < end)
    if label.startswith("chunk:"):
        return frozenset({f"ChecksumError:{label[6:]}"})
    return {"magic": frozenset({"FormatError"}), "major": MAJOR_DAMAGE,
            "minor": frozenset({"FormatError"}), "header": frozenset({"FormatError"}),
            "trailer_size": frozenset({"FormatError"})}.get(label, FIELD_DAMAGE)


def expected_outcomes(name: str, source: bytes, data: bytes) -> frozenset[str]:
    """What strict reading of a one-mutation case must give; "decoded" only if allowed.

    A vector that is itself refused (newer major, damaged chunk) stays refused.
    """
    if data == source:
        return frozenset({pristine_outcome(source)})
    if pristine_outcome(source) != "decoded":
        return ANY_ERROR
    if name == "flip_bits" and len(data) == len(source):
        return flip_outcomes(source, data)
    if name == "truncate":
        return frozenset({"TruncatedError"})
    if name == "edit_version":
        return MAJOR_DAMAGE if data[8] != source[8] else frozenset({"FormatError"})
    if name == "edit_chunk_length":
        return FIELD_DAMAGE
    if name == "edit_trailer_with_crc":
        return frozenset({"FormatError", "TruncatedError"})
    if name == "edit_header_with_crc":       # a changed field may still be valid
        return ANY_ERROR | {"decoded"}
    return ANY_ERROR                          # insert, delete: detected, never decoded


def outcome_matches(outcome: str, expected: frozenset[str]) -> bool:
    """ChecksumError:K must name chunk K; other classes compare by name."""
    return outcome in expected or outcome.split(":")[0] in expected


def decode_case(seed: int, data: bytes) -> tuple[str, float, int]:
    """(outcome, seconds, traced peak bytes or -1) of decoding one mutated stream."""
    trace = seed % TRACE_EVERY == 0
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        outcome = decode_everything(data, ignore_errors=seed % 2 == 1, pipe=seed % 3 == 2)
    except ChecksumError as exc:
        outcome = f"ChecksumError:{exc.chunk_index}"
    except AecError as exc:
        outcome = type(exc).__name__
    elapsed = time.perf_counter() - start
    peak = -1
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, elapsed, peak


def declared_symbols(data: bytes) -> int:
    """Symbols per chunk the (possibly fuzzed) header declares, if it parses."""
    try:
        h = StreamReader(io.BytesIO(data)).header
    except AecError:
        return 0
    return h.channels * h.latent_channels * h.frames_per_chunk


def test_fuzzed_vectors_decode_or_raise_aec_error() -> None:
    outcomes: dict[str, int] = {}
    slowest = 0.0
    wrong: list[str] = []
    for seed in range(NUM_CASES):
        data, source, names = mutate_named(seed)
        size = len(data)
        try:
            outcome, elapsed, peak = decode_case(seed, data)
        except Exception as exc:  # anything not an AecError is a bug: show the seed
            pytest.fail(f"case {seed}: {type(exc).__name__}: {exc}")
        if len(names) == 1 and seed % 2 == 0:
            expected = expected_outcomes(names[0], source, data)
            if not outcome_matches(outcome, expected):
                wrong.append(f"case {seed} ({names[0]}): {outcome}, expected one of "
                             f"{sorted(expected)}")
        outcome = outcome.split(":")[0]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        slowest = max(slowest, elapsed)
        assert elapsed < MAX_CASE_S, f"case {seed} took {elapsed:.2f} s"
        if peak >= 0:
            assert peak < 64 * size + (1 << 20), f"case {seed}: peak {peak} for {size} bytes"
    assert sum(outcomes.values()) == NUM_CASES
    assert not wrong, f"{len(wrong)} cases raised the wrong error:\n" + "\n".join(wrong[:20])
    # both sides were exercised, and the damage checks all fired
    assert outcomes.get("decoded", 0) > 100
    for kind in ("ChecksumError", "TruncatedError", "LimitError", "FormatError",
                 "UnsupportedVersionError"):
        assert outcomes.get(kind, 0) > 10, (kind, outcomes)


def test_allocation_is_bounded_by_input_and_declared_geometry() -> None:
    """Worst case over a sample: a crafted header may declare big chunks (<= limit)."""
    for seed in range(0, 2000, 7):
        rng = random.Random(seed)
        data = edit_header_with_crc(VECTORS[seed % len(VECTORS)].read_bytes(), rng)
        tracemalloc.start()
        try:
            decode_everything(data, ignore_errors=True)
        except AecError:
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        bound = 64 * len(data) + 40 * declared_symbols(data) + (1 << 20)
        assert peak < bound, f"case {seed}: peak {peak} > {bound}"


# --- issue 13: header forgeries with valid CRCs, decoded through the API ------------------

#: Header fields a forger changes together, each to a value its spec range allows.
_FORGEABLE = {
    "num_samples": lambda rng, v: rng.choice([0, 1, v - 1, v + 1, 2 * v, 1 << 40]),
    "encoder_delay": lambda rng, v: rng.choice([0, v + 1, 1 << 10, 1 << 24]),
    "sample_rate": lambda rng, v: rng.choice([1, 8000, 12345, 44100, 767999, 768000]),
    "num_frames": lambda rng, v: rng.choice([0, 1, v - 1, v + 1, 2 * v]),
    "frames_per_chunk": lambda rng, v: rng.choice([1, 3, v - 1, v + 1, 1 << 16]),
    "channels": lambda rng, v: rng.choice([1, 2, 3, 64]),
    "cdf_precision": lambda rng, v: rng.choice([1, 12, 16, 20, 24]),
    "model_rate": lambda rng, v: rng.choice([1, 16000, 48000]),
    "hop_length": lambda rng, v: rng.choice([1, v // 2, 2 * v]),
    "rate_point": lambda rng, v: rng.choice([0, 1, 2, 255]),
}


def test_forged_headers_with_valid_crcs_decode_exactly_or_raise_aec_errors(tiny,
                                                                           one_thread) -> None:
    """Inconsistent but CRC-valid headers (issue 13): every decode either returns exactly
    the samples and channels the header promises, or raises an AecError subclass before
    any sample is delivered; never another exception, never a short result."""
    import dataclasses

    from codec.api import ArraySink

    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 2400)).astype(np.float32)
    source = tiny.encode(audio, 24000)
    reader = StreamReader(io.BytesIO(source))
    header, body = reader.header, source[reader.chunks_start:]
    outcomes: dict[str, int] = {}
    for seed in range(300):
        rng = random.Random(seed)
        fields = {name: forge(rng, getattr(header, name)) for name, forge in
                  rng.sample(sorted(_FORGEABLE.items()), rng.randint(1, 3))}
        try:
            forged = dataclasses.replace(header, **fields).pack() + body
        except AecError:
            continue                                   # outside the spec ranges: not forgeable
        sink = ArraySink()
        try:
            tiny.decode_from(io.BytesIO(forged), sink, ignore_errors=seed % 2 == 1)
        except AecError as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            continue
        except Exception as exc:                       # noqa: BLE001 - the point of the test
            pytest.fail(f"seed {seed} {fields}: {type(exc).__name__}: {exc}")
        got = sink.audio()
        promised = dataclasses.replace(header, **fields)
        assert got.shape == (promised.channels, promised.num_samples), (seed, fields)
        outcomes["decoded"] = outcomes.get("decoded", 0) + 1
    assert outcomes.get("decoded", 0) > 5 and outcomes.get("FormatError", 0) > 20, outcomes
