"""Deliberate bugs, applied by monkeypatching, to prove the tests notice a broken codec.

`scripts/mutants.sh` runs the relevant tests once per mutant with
`AEC_MUTANT=<name>` in the environment and `tests/mutant_site` on PYTHONPATH.
Its `sitecustomize.py` calls `apply()` at interpreter start, so the bug is live
in pytest itself and in every `aec` subprocess the tests start. No source file
is edited. Each mutant must make at least one test fail ("killed").

The reader-check mutants replace one private function of `codec/format.py` by
a copy without one check the spec requires (spec/aec.md section noted).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

MUTANTS: dict[str, Callable[[], None]] = {}


def mutant(func: Callable[[], None]) -> Callable[[], None]:
    MUTANTS[func.__name__] = func
    return func


# ---------------------------------------------------------------- model-side mutants


def _scale_decoder_output(gain: float) -> None:
    from codec import api

    original = api._StreamDecoder._push_model_rate

    def push(self: Any, block: Any) -> None:
        original(self, block * np.float32(gain))
    api._StreamDecoder._push_model_rate = push


@mutant
def decoder_gain_half() -> None:
    """The decoder's output at half amplitude (-6 dB)."""
    _scale_decoder_output(0.5)


@mutant
def decoder_gain_double() -> None:
    """The decoder's output at double amplitude (+6 dB)."""
    _scale_decoder_output(2.0)


@mutant
def decoder_silence() -> None:
    """The decoder writes silence of the right length."""
    _scale_decoder_output(0.0)


def _patch_window(change: Callable[[Any, int, int, Any], Any]) -> None:
    from codec import api

    original = api._ModelRateBuffer.window

    def window(self: Any, start: int, stop: int) -> Any:
        return change(self, start, stop, original)
    api._ModelRateBuffer.window = window


#: One latent frame of the shipped model: 320 samples at 24 kHz (75 frames/s).
FRAME_SAMPLES = 320


@mutant
def encoder_frame_shift() -> None:
    """The encoder sees its input one latent frame (FRAME_SAMPLES model-rate samples) late."""
    from codec import api

    hop = FRAME_SAMPLES

    def late(self: Any, start: int, stop: int, original: Any) -> Any:
        out = np.zeros((self._buffer.shape[0], stop - start), dtype=np.float32)
        if stop - hop > 0:
            got = original(self, max(0, start - hop), stop - hop)
            out[:, out.shape[1] - got.shape[1]:] = got
        return out
    _patch_window(late)
    drop = api._ModelRateBuffer.drop_before
    api._ModelRateBuffer.drop_before = lambda self, index: drop(self, max(0, index - hop))


@mutant
def channel_swap() -> None:
    """The encoder codes the channels in reverse order."""
    _patch_window(lambda self, start, stop, original: original(self, start, stop)[::-1].copy())


@mutant
def channel_mixdown() -> None:
    """The encoder codes the mono mix in every channel."""
    def mix(self: Any, start: int, stop: int, original: Any) -> Any:
        block = original(self, start, stop)
        return np.repeat(block.mean(axis=0, keepdims=True), block.shape[0], axis=0)
    _patch_window(mix)


@mutant
def untrained_decoder() -> None:
    """Freshly initialised decoder weights under the shipped identity."""
    from codec import weights

    original = weights.load_model

    def load(*args: Any, **kwargs: Any) -> Any:
        model = original(*args, **kwargs)
        for module in model.decoder.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return model
    weights.load_model = load


# ---------------------------------------------------------------- reader-check mutants


@mutant
def no_chunk_crc_check() -> None:
    """Chunk CRC mismatches pass unnoticed (spec §4)."""
    from codec import format as fmt

    def read_chunk(src: Any, k: int) -> Any:
        at = src.pos
        length = fmt._read_varint(src, f"chunk {k} length")
        if length > fmt.MAX_CHUNK_BYTES:
            raise fmt.LimitError(f"chunk {k}: length {length} too big", at)
        payload = src.read_exact(length, f"chunk {k} payload")
        src.read_exact(4, f"chunk {k} CRC-32")
        return payload, src.pos - at, None
    fmt._read_chunk = read_chunk


@mutant
def no_canonical_varint_check() -> None:
    """Non-minimal varints are accepted (spec §1)."""
    from codec import format as fmt

    def read_varint(src: Any, what: str) -> int:
        value = 0
        for i in range(fmt.MAX_VARINT_BYTES):
            byte = src.read_exact(1, what)[0]
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return value
        raise fmt.FormatError(f"{what}: varint too long", src.pos)
    fmt._read_varint = read_varint


@mutant
def no_unknown_trailer_tag_check() -> None:
    """A 1.0 reader skips unknown trailer tags instead of rejecting them (spec §6)."""
    from codec import format as fmt

    original = fmt._read_trailer_block
    fmt._read_trailer_block = lambda src, known_minor: original(src, False)


@mutant
def no_trailer_size_check() -> None:
    """The end block's trailer_size is not compared with the trailer (spec §7)."""
    from codec import format as fmt

    def read_end(src: Any, trailer_start: int) -> None:
        at = src.pos - 1
        rest = src.read_exact(len(fmt.END_MAGIC) - 1 + 4, "end block")
        magic, _ = fmt._END.unpack(fmt.END_MAGIC[:1] + rest)
        if magic != fmt.END_MAGIC:
            raise fmt.FormatError("bad end block", at)
    fmt._read_end_block_rest = read_end


@mutant
def no_index_records_check() -> None:
    """A sequential reader does not compare the seek index with the records (spec §6)."""
    from codec import format as fmt

    class Sizes(list):  # compares equal to anything: the check can never fire
        def __eq__(self, other: object) -> bool:
            return True

        def __ne__(self, other: object) -> bool:
            return False

    original = fmt._ChunkWalk.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.sizes = Sizes(self.sizes)
    fmt._ChunkWalk.__init__ = init


@mutant
def no_index_sum_check() -> None:
    """The seek index is used even when its sizes do not add up to the chunk area (spec §6)."""
    from codec import format as fmt

    original = fmt._parse_index_body
    fmt.StreamReader._load_index = _load_index_without_sum(original)


def _load_index_without_sum(parse: Any) -> Any:
    from codec import format as fmt

    def load_index(self: Any) -> Any:
        src = self._src
        if src.size is None or src.size - self.chunks_start < fmt._END.size:
            return None
        src.seek(src.size - fmt._END.size)
        magic, trailer_size = fmt._END.unpack(src.read_exact(fmt._END.size, "end block"))
        trailer_start = src.size - fmt._END.size - trailer_size
        if magic != fmt.END_MAGIC or trailer_start < self.chunks_start:
            return None
        cur = fmt._Cursor(fmt._seek_read(src, trailer_start, trailer_size), trailer_start)
        while cur.remaining:
            tag, body, body_at = fmt._read_trailer_block_strict(cur)
            if tag == fmt.INDEX_TAG:
                return parse(fmt._Cursor(body, body_at), self.header.num_chunks)
        return None
    return load_index


@mutant
def no_max_header_bytes_check() -> None:
    """header_size is not checked against MAX_HEADER_BYTES (spec §3.1 step 3)."""
    from codec import format as fmt

    fmt.MAX_HEADER_BYTES = 1 << 64


@mutant
def no_cdf_precision_check() -> None:
    """The decoder ignores the stream's cdf_precision (spec §3.2)."""
    from codec import api, format as fmt

    original = api.Codec._check_stream

    def check(self: Any, header: Any) -> None:
        precision = self.model.tables.precision
        if header.cdf_precision != precision:
            header = _with_field(fmt, header, cdf_precision=precision)
        original(self, header)
    api.Codec._check_stream = check


def _with_field(fmt: Any, header: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(header, **changes)


def apply(name: str) -> None:
    """Apply the named mutant (see `MUTANTS`); an unknown name is an error."""
    if name not in MUTANTS:
        raise SystemExit(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}")
    MUTANTS[name]()


def apply_from_environment() -> None:
    """Apply $AEC_MUTANT if it is set (called by tests/mutant_site/sitecustomize.py)."""
    name = os.environ.get("AEC_MUTANT")
    if name:
        apply(name)


if __name__ == "__main__":
    print("\n".join(MUTANTS))
